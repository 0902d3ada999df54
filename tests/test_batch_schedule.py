"""BatchSchedule bookkeeping, text form and per_update, against hand tables."""

import fractions
import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax.batch import BatchSchedule, Stage, parse, per_update

# N = 1000. Stage targets (examples) and the update each stage ends at:
#   300 @ 1 epoch:   target 1000, ceil(1000/300) = 4 updates, seen 1200
#   400 @ 1000 ex:   target 2000, ceil(800/400) = 2 updates,  seen 2000
#   250 @ 3 updates: target 2750, exactly 3 updates,          seen 2750
#   500 @ 2 epochs:  target 4750, ceil(2000/500) = 4 updates, seen 4750
MIXED = BatchSchedule(
  (
    Stage(300, epochs=1),
    Stage(400, examples=1000),
    Stage(250, updates=3),
    Stage(500, epochs=2),
  ),
  num_examples=1000,
)
# update -> (examples seen, batch size of that update, stage); 13 is past the
# end and 14 extrapolates at the last batch size.
TABLE = {
  0: (0, 300, 0),
  1: (300, 300, 0),
  2: (600, 300, 0),
  3: (900, 300, 0),
  4: (1200, 400, 1),
  5: (1600, 400, 1),
  6: (2000, 250, 2),
  7: (2250, 250, 2),
  8: (2500, 250, 2),
  9: (2750, 500, 3),
  10: (3250, 500, 3),
  11: (3750, 500, 3),
  12: (4250, 500, 3),
  13: (4750, 500, 3),
  14: (5250, 500, 3),
}


def test_canonical_form():
  assert MIXED.num_updates_per_stage == (4, 2, 3, 4)
  assert MIXED.boundaries == (0, 4, 6, 9)
  assert MIXED.examples_at_boundaries == (0, 1200, 2000, 2750)
  assert MIXED.num_updates == 13
  assert MIXED.num_examples_total == 4750
  assert MIXED.num_epochs == 4.75
  assert MIXED.batch_sizes == (250, 300, 400, 500)
  assert MIXED.batch_size_per_stage == (300, 400, 250, 500)
  assert MIXED.num_stages == 4
  canon = MIXED.canonical()
  assert str(canon) == 'stages(300@4up,400@2up,250@3up,500@4up,n=1000)'
  for u in TABLE:
    assert canon.examples_at(u) == MIXED.examples_at(u)


@pytest.mark.parametrize('update', sorted(TABLE))
def test_host_bookkeeping_at_every_boundary(update):
  examples, _, stage = TABLE[update]
  assert MIXED.examples_at(update) == examples
  assert MIXED.epoch_at_host(update) == examples / 1000
  assert MIXED.update_at_examples(examples) == update
  assert MIXED.update_at_examples(examples + 1) == update + 1
  assert int(MIXED.stage_at(update)) == stage


def test_jit_methods_match_table():
  updates = np.asarray(sorted(TABLE), np.int32)
  want_b = np.asarray([TABLE[u][1] for u in updates], np.int32)
  want_s = np.asarray([TABLE[u][2] for u in updates], np.int32)
  want_e = np.asarray([TABLE[u][0] / 1000 for u in updates], np.float32)
  b = jax.jit(MIXED.batch_size_at)(updates)
  s = jax.jit(MIXED.stage_at)(updates)
  e = jax.jit(MIXED.epoch_at)(updates)
  assert b.dtype == jnp.int32 and s.dtype == jnp.int32
  assert e.dtype == jnp.float32
  np.testing.assert_array_equal(b, want_b)
  np.testing.assert_array_equal(s, want_s)
  np.testing.assert_allclose(e, want_e, rtol=1e-7)
  # Scalars, a traced int32 count, a float progress and a negative count.
  assert int(jax.jit(MIXED.batch_size_at)(jnp.int32(5))) == 400
  assert float(MIXED.epoch_at(5.5)) == pytest.approx(1.8, rel=1e-6)
  assert float(MIXED.epoch_at(-3)) == 0.0
  assert int(MIXED.stage_at(-3)) == 0


def test_epoch_to_update_across_stages():
  # Epoch e -> fewest updates whose examples reach e * 1000.
  table = {
    0: 0,
    0.1: 1,
    0.9: 3,
    1: 4,
    1.2: 4,
    1.21: 5,
    2: 6,
    2.5: 8,
    2.75: 9,
    3: 10,
    4.75: 13,
    5: 14,
  }
  for epoch, update in table.items():
    assert MIXED.update_at_epoch(epoch) == update, epoch
    e = MIXED.epoch_at_host(update)
    assert e >= epoch
    if update:
      assert MIXED.epoch_at_host(update - 1) < epoch


def test_total_examples_within_one_batch_of_epochs_times_n():
  n = 50000
  schedule = BatchSchedule(
    tuple(Stage(b, epochs=0.37) for b in (128, 333, 1000, 777, 4096)), n
  )
  target = 0
  for i, b in enumerate(schedule.batch_size_per_stage):
    target += 18500  # 0.37 * 50000, exact: no drift from the float 0.37
    end = schedule.examples_at(schedule.boundaries[i]) + (
      schedule.num_updates_per_stage[i] * b
    )
    assert 0 <= end - target < b
  assert 0 <= schedule.num_examples_total - 5 * 18500 < 4096


def test_epoch_at_keeps_float32_precision_up_to_2_pow_31():
  n = 1281167
  schedule = BatchSchedule(
    (Stage(1024, updates=2**30), Stage(3072, updates=2**30 - 1)), n
  )
  assert schedule.num_updates == 2**31 - 1
  updates = [0, 2**24 + 1, 2**30 - 1, 2**30, 2**30 + 12345, 2**31 - 2]
  got = jax.jit(schedule.epoch_at)(jnp.asarray(updates, jnp.int32))
  want = np.asarray([schedule.examples_at(u) / n for u in updates])
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-7)
  assert int(schedule.batch_size_at(jnp.int32(2**31 - 1))) == 3072


def test_too_many_updates_is_rejected():
  with pytest.raises(ValueError, match='2\\*\\*31'):
    BatchSchedule((Stage(1, updates=2**31),), 10)


@pytest.mark.parametrize(
  'make, match',
  [
    (lambda: BatchSchedule((), 10), 'stages'),
    (lambda: BatchSchedule((Stage(1, epochs=1),), 0), 'num_examples'),
    (lambda: BatchSchedule((Stage(11, epochs=1),), 10), 'batch_size=11'),
    (lambda: Stage(0, epochs=1), 'batch_size'),
    (lambda: Stage(-4, epochs=1), 'batch_size'),
    (lambda: Stage(8, epochs=0), 'epochs'),
    (lambda: Stage(8, epochs=-1.5), 'epochs'),
    (lambda: Stage(8, epochs=float('nan')), 'epochs'),
    (lambda: Stage(8, epochs=float('inf')), 'epochs'),
    (lambda: Stage(8, examples=0), 'examples'),
    (lambda: Stage(8, updates=-1), 'updates'),
    (lambda: Stage(8), 'exactly one of'),
    (lambda: Stage(8, epochs=1, updates=3), 'exactly one of'),
    (
      lambda: BatchSchedule(
        (Stage(300, epochs=1), Stage(10, examples=100)), 1000
      ),
      'stages\\[1\\].*no update',
    ),
  ],
)
def test_bad_input_names_the_argument(make, match):
  with pytest.raises((ValueError, TypeError), match=match):
    make()


def test_host_methods_reject_negative_input():
  with pytest.raises(ValueError, match='update'):
    MIXED.examples_at(-1)
  with pytest.raises(ValueError, match='examples'):
    MIXED.update_at_examples(-1)
  with pytest.raises(ValueError, match='epoch'):
    MIXED.update_at_epoch(-0.5)


def test_frozen_and_hashable():
  again = BatchSchedule(MIXED.stages, 1000)
  assert again == MIXED and hash(again) == hash(MIXED)
  with pytest.raises(AttributeError):
    MIXED.num_examples = 5


# Text form ------------------------------------------------------------------


@pytest.mark.parametrize(
  'text, stages',
  [
    ('stages(128@60,640@60,3200@80,n=50000)', ((128, 60), (640, 60))),
    ('stages(32@100up,64@0.5,128@6400ex,n=1797)', ((32, None), (64, 0.5))),
    ('stages(8@2.25,n=100)', ((8, 2.25),)),
    ('stages(8@1e-05,n=10000000)', ((8, 1e-05),)),
  ],
)
def test_text_round_trip(text, stages):
  schedule = parse(text)
  assert str(schedule) == text
  assert parse(str(schedule)) == schedule
  for stage, (batch, epochs) in zip(schedule.stages, stages, strict=False):
    assert stage.batch_size == batch and stage.epochs == epochs


def test_text_variants():
  a = parse(' stages( 128@60ep , 640@500up ) ', num_examples=50000)
  assert a.stages == (Stage(128, epochs=60), Stage(640, updates=500))
  assert str(a) == 'stages(128@60,640@500up,n=50000)'
  assert str(parse('stages(8@1e3,n=100)')) == 'stages(8@1000,n=100)'
  b = parse('stages(128@64000ex,n=50000)', num_examples=50000)
  assert b.stages == (Stage(128, examples=64000),)


@pytest.mark.parametrize(
  'text, num_examples, match',
  [
    ('stages(128@60)', None, 'num_examples'),
    ('stages(128@60,n=100)', 200, 'n=100 but num_examples=200'),
    ('stages()', 100, 'no stage'),
    ('stages(n=100)', None, 'no stage'),
    ('steps(128@60)', 100, 'expected'),
    ('stages(128@)', 100, "'128@' is malformed"),
    ('stages(128@1.5up)', 100, 'whole number of updates'),
    ('stages(128@1e)', 100, 'malformed'),
    ('stages(128@1e3up)', 100, 'whole number of updates'),
    ('stages(0@1)', 100, 'batch_size'),
    ('stages(200@1)', 100, 'batch_size=200 is above'),
    ('stages(8@1,n=x)', None, 'n='),
  ],
)
def test_parse_errors(text, num_examples, match):
  with pytest.raises(ValueError, match=match):
    parse(text, num_examples=num_examples)


# Property tests -------------------------------------------------------------

_stage = st.tuples(
  st.integers(1, 400),
  st.sampled_from(['epochs', 'examples', 'updates']),
  st.integers(1, 40),
)


def _build(n, raw):
  stages = []
  for batch, kind, amount in raw:
    batch = min(batch, n)
    if kind == 'epochs':
      stages.append(Stage(batch, epochs=amount / 8))
    elif kind == 'examples':
      stages.append(Stage(batch, examples=amount * 97))
    else:
      stages.append(Stage(batch, updates=amount))
  try:
    return BatchSchedule(tuple(stages), n)
  except ValueError as e:
    hypothesis.assume('no update' not in str(e))
    raise


def _probe_updates(schedule):
  """Every stage boundary +-1, the end, and a spread in between."""
  total = schedule.num_updates
  probe = {0, 1, total - 1, total, total + 1}
  for b in schedule.boundaries:
    probe.update({max(b - 1, 0), b, b + 1})
  probe.update(int(u) for u in np.linspace(0, total, 16))
  return sorted(probe)


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(
  n=st.integers(400, 5000), raw=st.lists(_stage, min_size=1, max_size=6)
)
def test_property_bookkeeping(n, raw):
  schedule = _build(n, raw)
  probe = _probe_updates(schedule)
  seen = [schedule.examples_at(u) for u in probe]
  # Monotone: strictly increasing, by at most the largest batch per update.
  largest = max(schedule.batch_sizes)
  for i in range(1, len(probe)):
    assert 0 < seen[i] - seen[i - 1] <= largest * (probe[i] - probe[i - 1])
  # The conversions are inverse of each other.
  for u, e in zip(probe, seen, strict=True):
    assert schedule.update_at_examples(e) == u
    assert schedule.update_at_examples(e + 1) == u + 1
    for target in (max(e - 1, 0), e + 2):
      v = schedule.update_at_examples(target)
      assert schedule.examples_at(v) >= target
      assert v == 0 or schedule.examples_at(v - 1) < target
  # Cumulative targets: within one batch after every stage (exact rationals).
  target = fractions.Fraction(0)
  for i, stage in enumerate(schedule.stages):
    target += stage.duration_examples(n)
    end = schedule.examples_at(
      schedule.boundaries[i] + schedule.num_updates_per_stage[i]
    )
    if stage.updates is None:
      assert 0 <= end - target < stage.batch_size
  for epoch in (0, 0.5, 1.25, schedule.num_epochs):
    exact = fractions.Fraction(repr(float(epoch))) * n
    u = schedule.update_at_epoch(epoch)
    assert schedule.examples_at(u) >= exact
    if u:
      assert schedule.examples_at(u - 1) < exact
  assert str(parse(str(schedule))) == str(schedule)
  assert parse(str(schedule)) == schedule


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
  n=st.integers(400, 5000), raw=st.lists(_stage, min_size=1, max_size=4)
)
def test_property_jit_tables_match_host(n, raw):
  schedule = _build(n, raw)
  # A fixed-size probe keeps the eager op shapes (and compilations) shared.
  probe = _probe_updates(schedule)
  probe = np.asarray((probe * 64)[:64], np.int32)
  got_e = np.asarray(schedule.epoch_at(probe), np.float64)
  got_b = np.asarray(schedule.batch_size_at(probe))
  want_e = np.asarray([schedule.examples_at(int(u)) / n for u in probe])
  want_b = np.asarray(
    [
      schedule.examples_at(int(u) + 1) - schedule.examples_at(int(u))
      for u in probe
    ]
  )
  np.testing.assert_allclose(got_e, want_e, rtol=2e-7, atol=0)
  np.testing.assert_array_equal(got_b, want_b)


# per_update -------------------------------------------------------------------


def test_per_update_inside_inject_hyperparams_under_jit():
  # LR 0.1 before epoch 2, 0.01 after: count c uses epoch_at(c), so updates
  # 0..5 (epochs 0 .. 1.6) get 0.1 and updates 6.. (epoch >= 2.0) get 0.01.
  lr = per_update(lambda epoch: jnp.where(epoch < 2, 0.1, 0.01), MIXED)
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
  params = jnp.zeros(())
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jnp.ones(()), state, params)
    return optax.apply_updates(params, updates), state

  seen_lr = []
  for _ in range(14):
    params, state = step(params, state)
    seen_lr.append(float(state.hyperparams['learning_rate']))
  want = [0.1] * 6 + [0.01] * 8
  np.testing.assert_allclose(seen_lr, want, rtol=1e-7)
  np.testing.assert_allclose(float(params), -sum(want), rtol=1e-6)


def test_per_update_of_a_policy_over_epochs_table():
  schedule = per_update(lambda t: 1.0 + t, MIXED)
  counts = np.asarray(sorted(TABLE), np.int32)
  want = np.asarray([1 + TABLE[c][0] / 1000 for c in counts], np.float32)
  got = jax.jit(jax.vmap(schedule))(counts)
  np.testing.assert_allclose(got, want, rtol=1e-7)
  assert got.dtype == jnp.float32


def test_per_update_constant_and_errors():
  assert float(jax.jit(per_update(0.9, MIXED))(7)) == pytest.approx(0.9)
  with pytest.raises(TypeError, match='batch_schedule'):
    per_update(0.1, 'stages(1@1,n=2)')
  with pytest.raises(TypeError, match='policy'):
    per_update('cosine', MIXED)


def test_per_update_is_finite_past_the_end():
  lr = per_update(lambda t: 0.1 * jnp.exp(-t), MIXED)
  value = float(jax.jit(lr)(jnp.int32(2**31 - 1)))
  assert math.isfinite(value) and value >= 0


def test_per_update_with_an_lrjax_schedules_policy():
  from lrjax import schedules

  # multistep over epochs: 0.1, x0.1 from epoch 2, x0.1 from epoch 4.
  policy = schedules.multistep(0.1, milestones=(2, 4), gamma=0.1)
  lr = jax.jit(per_update(policy, MIXED))
  for count, (examples, _, _) in TABLE.items():
    epoch = examples / 1000
    want = 0.1 * 0.1 ** ((epoch >= 2) + (epoch >= 4))
    assert float(lr(count)) == pytest.approx(want, rel=1e-6), count


def test_host_methods_return_python_ints_for_numpy_input():
  got = MIXED.examples_at(np.int64(10))
  assert type(got) is int and got == 3250
  assert type(MIXED.update_at_examples(np.int64(3250))) is int


def test_update_at_examples_is_exact_beyond_float_precision():
  # 2**60 examples at batch 3: a float division would be off by far more
  # than one update.
  s = BatchSchedule((Stage(3, updates=5),), 100)
  n = 2**60 + 1
  assert s.update_at_examples(n) == -(-n // 3)
  assert s.update_at_examples(fractions.Fraction(7, 2)) == 2
  assert s.update_at_examples(3.5) == 2
