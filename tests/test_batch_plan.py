"""Accumulation plan and optax.MultiSteps' every_k_schedule over a ramp."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax.batch import BatchSchedule, Stage, parse, plan


def test_plan_table():
  s = parse('stages(64@1,256@1,96@1,n=1000)')
  # Per device (4 replicas): 16, 64, 24; largest divisor <= 32.
  p = plan(s, num_replicas=4, max_device_batch=32)
  assert [(x.micro_batch, x.accum_steps) for x in p.stages] == [
    (16, 1),
    (32, 2),
    (24, 1),
  ]
  assert p.micro_batches == (16, 24, 32)
  assert p.needs_accumulation
  # Largest divisor <= 20: 16 of 16, 16 of 64, 12 of 24.
  p = plan(s, num_replicas=4, max_device_batch=20)
  assert [(x.micro_batch, x.accum_steps) for x in p.stages] == [
    (16, 1),
    (16, 4),
    (12, 2),
  ]
  assert p.micro_batches == (12, 16)
  # Micro-batches multiple of 8: 24 -> 8 (x3).
  p = plan(s, num_replicas=4, max_device_batch=20, micro_batch_multiple=8)
  assert [(x.micro_batch, x.accum_steps) for x in p.stages] == [
    (16, 1),
    (16, 4),
    (8, 3),
  ]
  # Everything fits: no accumulation.
  p = plan(s, num_replicas=1, max_device_batch=256)
  assert not p.needs_accumulation and p.micro_batches == (64, 96, 256)


def test_stage_plan_bookkeeping():
  s = BatchSchedule(
    (Stage(8, updates=3), Stage(16, updates=2), Stage(32, updates=2)), 64
  )
  p = plan(s, num_replicas=1, max_device_batch=8)
  assert [x.accum_steps for x in p.stages] == [1, 2, 4]
  assert [x.start_update for x in p.stages] == [0, 3, 5]
  assert [x.start_micro_step for x in p.stages] == [0, 3, 7]
  assert [x.num_micro_steps for x in p.stages] == [3, 4, 8]
  assert p.num_micro_steps == 15
  assert p.stage_plan(2).batch_size == 32
  with pytest.raises(IndexError, match='stage=3'):
    p.stage_plan(3)


def test_prime_per_device_batch_falls_back_to_small_micro_batches(caplog):
  p = plan(parse('stages(508@1,n=1000)'), num_replicas=4, max_device_batch=64)
  assert (p.stages[0].micro_batch, p.stages[0].accum_steps) == (1, 127)
  assert 'a multiple of 256 (e.g. 512)' in caplog.text
  caplog.clear()
  plan(parse('stages(512@1,n=1000)'), num_replicas=4, max_device_batch=64)
  assert 'accumulation' not in caplog.text


@pytest.mark.parametrize(
  'text, kwargs, match',
  [
    (
      'stages(130@1,n=1000)',
      dict(num_replicas=4, max_device_batch=64),
      'batch_size=130 is not divisible by num_replicas.*nearest feasible '
      'batch sizes: 128, 132',
    ),
    (
      'stages(64@1,100@1,n=1000)',
      dict(num_replicas=4, max_device_batch=64, micro_batch_multiple=8),
      'stage 1: batch_size=100.*96, 128',
    ),
    (
      'stages(64@1,n=1000)',
      dict(num_replicas=4, max_device_batch=0),
      'max_device_batch=0 must be >= 1',
    ),
    (
      'stages(64@1,n=1000)',
      dict(num_replicas=0, max_device_batch=8),
      'num_replicas=0 must be >= 1',
    ),
    (
      'stages(64@1,n=1000)',
      dict(num_replicas=2, max_device_batch=4, micro_batch_multiple=8),
      'max_device_batch=4 is below micro_batch_multiple=8',
    ),
  ],
)
def test_infeasible_requests(text, kwargs, match):
  with pytest.raises(ValueError, match=match):
    plan(parse(text), **kwargs)


def test_every_k_schedule_table_under_jit():
  s = BatchSchedule(
    (Stage(8, updates=3), Stage(16, updates=2), Stage(32, updates=2)), 64
  )
  p = plan(s, num_replicas=1, max_device_batch=8)
  got = jax.jit(jax.vmap(p.every_k_schedule))(jnp.arange(10, dtype=jnp.int32))
  np.testing.assert_array_equal(got, [1, 1, 1, 2, 2, 4, 4, 4, 4, 4])
  assert got.dtype == jnp.int32


def test_multisteps_performs_exactly_the_planned_updates_over_a_ramp():
  # Three stages with k = 1, 2, 4 micro-steps per update; the micro-steps at
  # which the inner SGD applies, by hand: 0, 1, 2 | 4, 6 | 10, 14.
  s = BatchSchedule(
    (Stage(8, updates=3), Stage(16, updates=2), Stage(32, updates=2)), 64
  )
  p = plan(s, num_replicas=1, max_device_batch=8)
  tx = optax.MultiSteps(optax.sgd(1.0), every_k_schedule=p.every_k_schedule)
  params = jnp.zeros(())
  state = tx.init(params)

  @jax.jit
  def micro_step(params, state, grad):
    updates, state = tx.update(grad, state, params)
    return optax.apply_updates(params, updates), state

  applied = []
  for i in range(p.num_micro_steps):
    before = float(params)
    # The gradient of micro-step i is i + 1; an update applies the mean.
    params, state = micro_step(params, state, jnp.float32(i + 1))
    if float(params) != before:
      applied.append(i)
  assert applied == [0, 1, 2, 4, 6, 10, 14]
  assert int(state.gradient_step) == s.num_updates == 7
  assert int(state.mini_step) == 0
  # Sum of the means of the gradients 1..15 grouped as planned.
  groups = [[1], [2], [3], [4, 5], [6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
  assert float(params) == pytest.approx(-sum(np.mean(g) for g in groups))


def _run_multisteps(p):
  tx = optax.MultiSteps(optax.sgd(1.0), every_k_schedule=p.every_k_schedule)
  params = jnp.zeros(())
  state = tx.init(params)

  @jax.jit
  def micro_step(params, state):
    updates, state = tx.update(jnp.ones(()), state, params)
    return optax.apply_updates(params, updates), state

  applied = []
  for i in range(p.num_micro_steps):
    before = float(params)
    params, state = micro_step(params, state)
    if float(params) != before:
      applied.append(i)
  return applied, state


def test_multisteps_counts_with_several_replicas():
  # 4 replicas, M = 8: per device 8 -> k 1, 32 -> k 4, 96 -> k 12. Applied at
  # micro-steps 0..4 | 8, 12, 16 | 28, 40.
  s = parse('stages(32@5up,128@3up,384@2up,n=10000)')
  p = plan(s, num_replicas=4, max_device_batch=8)
  assert [x.accum_steps for x in p.stages] == [1, 4, 12]
  assert p.num_micro_steps == 5 + 12 + 24
  applied, state = _run_multisteps(p)
  assert applied == [0, 1, 2, 3, 4, 8, 12, 16, 28, 40]
  assert int(state.gradient_step) == 10 and int(state.mini_step) == 0


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
  replicas=st.integers(1, 8),
  per_device=st.lists(st.integers(1, 300), min_size=1, max_size=5),
  cap=st.integers(1, 64),
)
def test_property_plan_splits_exactly_with_the_largest_micro_batch(
  replicas, per_device, cap
):
  s = BatchSchedule(
    tuple(Stage(replicas * p, updates=3) for p in per_device), 10_000
  )
  p = plan(s, num_replicas=replicas, max_device_batch=cap)
  for stage, per in zip(p.stages, per_device, strict=True):
    m, k = stage.micro_batch, stage.accum_steps
    assert replicas * m * k == stage.batch_size
    assert 1 <= m <= cap and per % m == 0
    assert not any(per % d == 0 for d in range(m + 1, min(per, cap) + 1))
  assert p.num_micro_steps == sum(3 * x.accum_steps for x in p.stages)
  assert set(p.micro_batches) == {x.micro_batch for x in p.stages}
