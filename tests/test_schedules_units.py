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


# Durations with units in the text ----------------------------------------

# 1000 sequences of 64 tokens, batch 4Kitok = 64 sequences for 4Mitok =
# 65536 sequences (65.536 epochs).
TOKENS = lrjax.batch.parse('stages(4Kitok@4Mitok,seq=64,n=1000)')
# 20 updates of 100 (2 epochs), then 4 of 500 (2 epochs).
RAMP = BatchSchedule((Stage(100, epochs=2), Stage(500, epochs=2)), 1000)


def test_token_durations_convert_exactly_to_epochs():
  # 110Kitok = 112640 tokens = 1760 sequences = 1.76 epochs; 4Kitok = 4096
  # tokens = 64 sequences = 0.064 epochs.
  p = S.parse(
    'warmup(cosine(1e-3,length=110Kitok),length=4Kitok)', TOKENS, seq_len=64
  )
  assert str(p) == 'in_epochs(warmup(cosine(0.001,length=1.76),length=0.064))'
  assert p.unit == 'epoch' and S.parse(str(p)) == p
  # Its values, under jit, against the closed form: a linear warmup from
  # 0.1 x 1e-3 over 0.064 epochs, then a cosine over 1.76 epochs.
  t = np.array([0.0, 0.032, 0.064, 0.944, 1.824, 3.0])
  x = np.clip((t - 0.064) / 1.76, 0, 1)
  want = np.where(
    t < 0.064,
    1e-3 * (0.1 + 0.9 * t / 0.064),
    1e-3 * 0.5 * (1 + np.cos(np.pi * x)),
  )
  np.testing.assert_allclose(values(p, t), want, rtol=2e-6, atol=1e-10)
  # 64000ex = 64 epochs; 2.5ep = 2.5 epochs.
  assert str(S.parse('multistep(0.1,milestones=2.5ep/64000ex)', TOKENS)) == (
    'in_epochs(multistep(0.1,milestones=2.5/64))'
  )


def test_inexact_token_counts_name_the_nearest_exact_ones():
  with pytest.raises(
    ValueError,
    match=r'cosine\(\): length=100tok: tokens=100 \(100\) is not a multiple '
    r'of seq=64 tokens per sequence: use 64 \(1 sequence\) or 128 \(2 '
    r'sequences\)',
  ):
    S.parse('cosine(1e-3,length=100tok)', TOKENS, seq_len=64)
  # Into updates (batch 64 sequences = 4096 tokens): 6Kitok = 96 sequences
  # ends inside the second update; 4Kitok and 8Kitok end on updates.
  with pytest.raises(
    ValueError,
    match=r'length=6Kitok is 6144 tokens \(96 sequences\), which does not '
    r'end on an update .*: use 4Kitok \(1 update\) or 8Kitok \(2 updates\)',
  ):
    S.parse('in_updates(cosine(1e-3,length=6Kitok))', TOKENS, seq_len=64)
  assert str(
    S.parse('in_updates(cosine(1e-3,length=8Kitok))', TOKENS, seq_len=64)
  ) == ('in_updates(cosine(0.001,length=2))')


def test_update_durations_convert_through_the_batch_schedule():
  # 10 updates = 1000 examples = 1 epoch; 22 updates = 20 x 100 + 2 x 500
  # = 3000 examples = 3 epochs.
  p = S.parse('multistep(0.1,milestones=10up/22up)', RAMP)
  assert p == S.in_epochs(S.multistep(0.1, milestones=[1, 3]))
  # A duration is a point on its policy's clock: the cosine starts after a
  # 20-update warmup (epoch 2), so its 4 updates are of 500: 2 epochs.
  p = S.parse('warmup(cosine(0.1,length=4up),length=20up)', RAMP)
  assert str(p) == 'in_epochs(warmup(cosine(0.1,length=2),length=2))'
  # From epoch 1.5 (update 15, batch 100): 4 updates = 0.4 epochs.
  assert 'cosine(0.1,length=0.4)' in str(
    S.parse('warmup(cosine(0.1,length=4up),length=1.5)', RAMP)
  )
  with pytest.raises(ValueError, match='falls inside an update, and the'):
    S.parse('warmup(cosine(0.1,length=4up),length=1.95)', RAMP)


def test_epoch_durations_convert_to_updates_exactly_or_name_the_nearest():
  # 2.5 epochs = 2500 examples = 20 updates of 100 + 1 of 500.
  p = S.parse('in_updates(cosine(1e-3,length=2.5ep))', RAMP)
  assert p == S.in_updates(S.cosine(1e-3, length=21))
  assert S.parse('noam(512,warmup=2ep)', RAMP) == S.noam(512, warmup=20)
  assert str(
    S.parse('switch_on_plateau(noam(512,warmup=1000ex),clock=update)', RAMP)
  ) == ('switch_on_plateau(noam(512,warmup=10),clock=update)')
  # A noam inside a warmup: the warmup's length is in updates too.
  assert S.parse('warmup(noam(512,warmup=10),length=1ep)', RAMP) == S.warmup(
    S.noam(512, warmup=10), length=10
  )
  with pytest.raises(
    ValueError,
    match=r'length=2.3ep is 2300 examples, .* use 2000ex \(20 updates\) or '
    r'2500ex \(21 updates\)',
  ):
    S.parse('in_updates(cosine(1e-3,length=2.3ep))', RAMP)


@pytest.mark.parametrize(
  'text, kwargs, match',
  [
    ('cosine(1e-3,length=500up)', {}, 'only against a batch schedule'),
    ('in_updates(cosine(1,length=2ep))', {}, 'only against a batch schedule'),
    ('cosine(1e-3,length=4Kitok)', dict(batch_schedule=RAMP), 'no sequence'),
    ('constant(3up)', {}, r'only durations take a unit .* constant: none'),
    ('cosine(1,length=2.5up)', dict(batch_schedule=RAMP), 'a whole number'),
    ('cosine(1,length=1.5ex)', dict(batch_schedule=RAMP), 'a whole number'),
  ],
)
def test_unit_errors_name_what_is_needed(text, kwargs, match):
  with pytest.raises(ValueError, match=match):
    S.parse(text, **kwargs)


def test_durations_in_the_policys_own_unit_need_no_schedule():
  assert S.parse('cosine(0.1,length=90ep)') == S.in_epochs(
    S.cosine(0.1, length=90)
  )
  assert S.parse('in_updates(cosine(0.1,length=90up))') == S.in_updates(
    S.cosine(0.1, length=90)
  )
  with pytest.raises(TypeError, match='must be a lrjax.batch.BatchSchedule'):
    S.parse('constant(1)', 'stages(16@2,n=100)')


def test_durations_are_placed_on_the_outer_clock():
  p = S.join(
    [
      S.warmup(S.cosine(1.0, length=10), length=2),
      S.multistep(0.1, milestones=[3, 6]),
    ],
    boundaries=[20],
  )
  got = [(d.policy, d.arg, d.value, d.end, d.kind) for d in p.durations()]
  assert got == [
    ('join', 'boundaries[0]', 20, 20, 'end'),
    ('warmup', 'length', 2, 2, 'warmup'),
    ('cosine', 'length', 10, 12, 'end'),
    ('multistep', 'milestones[0]', 3, 23, 'end'),
    ('multistep', 'milestones[1]', 6, 26, 'end'),
  ]
  unshifted = S.warmup(S.cosine(1.0, length=10), length=2, shift=False)
  assert [d.end for d in unshifted.durations()] == [2, 10]
  assert S.warmup(optax.constant_schedule(1.0), length=3).durations() == (
    ('warmup', 'length', 3, 3, 'warmup'),
  )
