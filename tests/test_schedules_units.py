"""Plain callables compose; units are explicit and checked where they can be."""

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax import schedules as S
from lrjax.batch import BatchSchedule, Stage


def values(policy, ts):
  return np.asarray(jax.jit(policy)(jnp.asarray(ts)), np.float64)


def test_optax_schedules_compose_like_policies():
  ts = np.arange(0, 130)
  ref = optax.cosine_decay_schedule(0.4, decay_steps=90)
  mixed = S.warmup(ref, length=5)
  same = S.warmup(S.cosine(0.4, length=90), length=5)
  # optax's cosine is evaluated as (1 + cos) / 2 in float32: ~1e-7 absolute.
  np.testing.assert_allclose(
    values(mixed, ts), values(same, ts), rtol=1e-6, atol=1e-7
  )
  # join, scale, clip and product take them too (optax's own values).
  lin = optax.linear_schedule(1.0, 0.0, transition_steps=100)
  np.testing.assert_allclose(
    values(S.join([S.constant(1.0), lin], [10]), ts),
    np.where(ts < 10, 1.0, np.clip(1.0 - (ts - 10) / 100, 0.0, 1.0)),
    atol=1e-6,
  )
  np.testing.assert_allclose(
    values(S.scale(lin, 0.5), ts), 0.5 * np.clip(1 - ts / 100, 0, 1), atol=1e-6
  )
  np.testing.assert_allclose(
    values(S.clip(lin, low=0.2), ts),
    np.maximum(np.clip(1 - ts / 100, 0, 1), 0.2),
    atol=1e-6,
  )
  np.testing.assert_allclose(
    values(S.product([lin, lambda t: 2.0]), ts),
    2 * np.clip(1 - ts / 100, 0, 1),
    atol=1e-6,
  )


def test_a_plain_callable_has_no_text_form_and_says_so():
  p = S.warmup(optax.cosine_decay_schedule(0.4, decay_steps=90), length=5)
  assert str(p) == (
    'warmup(<callable cosine_decay_schedule.<locals>.schedule: no text '
    'form>,length=5)'
  )
  assert not p.has_text
  assert S.warmup(S.cosine(0.4, length=90), length=5).has_text
  with pytest.raises(ValueError, match='no text form; build that policy'):
    S.parse(str(p))
  with pytest.raises(TypeError, match='cannot pickle .* no text form'):
    pickle.dumps(p)
  # Immutable: copies are the object itself.
  assert copy.deepcopy(p) is p and copy.copy(p) is p
  # Hashable and comparable: equal when built from the same callable.
  fn = optax.linear_schedule(0.1, 0.0, 10)
  assert S.scale(fn, 2.0) == S.scale(fn, 2.0)
  assert S.scale(fn, 2.0) != S.scale(optax.linear_schedule(0.1, 0, 10), 2.0)
  assert len({S.scale(fn, 2.0), S.scale(fn, 2.0)}) == 1


def test_compositions_refuse_what_is_not_a_schedule():
  with pytest.raises(TypeError, match=r'policy=0.1 must be a Policy or a'):
    S.warmup(0.1, length=5)
  plateau = S.reduce_on_plateau(0.1)
  with pytest.raises(TypeError, match='stateful .* cannot be composed'):
    S.scale(plateau, 2.0)


def test_in_epochs_and_in_updates_carry_the_unit():
  base = S.cosine(0.4, length=90)
  e = S.in_epochs(base)
  u = S.in_updates(S.cosine(0.4, length=9000))
  assert (base.unit, e.unit, u.unit) == (None, 'epoch', 'update')
  assert str(e) == 'in_epochs(cosine(0.4,length=90))'
  assert S.parse(str(e)).unit == 'epoch'
  ts = np.arange(0, 100)
  np.testing.assert_array_equal(values(e, ts), values(base, ts))
  # The unit flows through compositions; mixing units is refused.
  assert S.warmup(e, length=5).unit == 'epoch'
  assert S.join([e, S.constant(0.1)], [90]).unit == 'epoch'
  with pytest.raises(ValueError, match=r'join: the policies mix units'):
    S.join([e, u], [90])
  with pytest.raises(ValueError, match='already counts epochs'):
    S.in_updates(e)
  assert S.in_epochs(e) is e
  # An optax schedule is a function of update counts: say so.
  assert S.in_updates(optax.linear_schedule(0.1, 0.0, 10)).unit == 'update'


def test_per_update_refuses_a_policy_of_updates_but_takes_the_rest():
  bs = BatchSchedule((Stage(100, epochs=2), Stage(500, epochs=2)), 1000)
  epochs = S.in_epochs(S.linear(1.0, end=0.0, length=4))
  lr = lrjax.per_update(epochs, bs)
  # 20 updates of 100 (2 epochs), then 4 of 500: epoch 3 at update 22.
  assert float(lr(22)) == pytest.approx(0.25)
  for bad in (
    S.in_updates(S.cosine(0.1, length=1000)),
    S.noam(512, warmup=4000),
    S.warmup(S.noam(512, warmup=400), length=10),
  ):
    with pytest.raises(ValueError, match='counts updates .* not epochs'):
      lrjax.per_update(bad, bs)
  with pytest.raises(TypeError, match='stateful .* give it to optax'):
    lrjax.per_update(S.reduce_on_plateau(0.1), bs)
  # Plain callables and policies without a unit work as before.
  assert float(lrjax.per_update(lambda ep: ep * 0 + 0.5, bs)(3)) == 0.5
  assert float(lrjax.per_update(S.constant(0.2), bs)(30)) == pytest.approx(0.2)


def test_switch_on_plateau_clock_must_match_the_unit():
  with pytest.raises(ValueError, match="count updates but clock='epoch'"):
    S.switch_on_plateau([S.in_updates(S.constant(0.1)), S.constant(0.01)])
  with pytest.raises(ValueError, match="count epochs but clock='update'"):
    S.switch_on_plateau([S.in_epochs(S.constant(0.1))], clock='update')
  s = S.switch_on_plateau([S.noam(512, warmup=10)], clock='update')
  assert str(s) == 'switch_on_plateau(noam(512,warmup=10),clock=update)'
