"""Builders: Smith's equivalent ramps, linear/geometric ramps, cyclic."""

import jax
import numpy as np
import pytest

from lrjax import rules, schedules
from lrjax.batch import (
  BatchSchedule,
  cyclic,
  from_lr_decay,
  geometric_ramp,
  linear_ramp,
  parse,
  per_update,
  round_batch_size,
  seesaw,
  to_text,
)

N = 50000
SMITH = dict(
  milestones=(60, 120, 160), factors=0.2, num_epochs=200, momentum=0.9
)


def _smith(cap):
  return from_lr_decay(0.1, 128, N, max_batch_size=cap, **SMITH)


def test_smith_three_schedules_hand_table():
  decay, hybrid, increase = _smith(128), _smith(3200), _smith(N)
  assert str(decay.batch_schedule) == 'stages(128@200,n=50000)'
  assert str(decay.lr) == 'multistep(0.1,milestones=60/120/160,gamma=0.2)'
  assert str(hybrid.batch_schedule) == 'stages(128@60,640@60,3200@80,n=50000)'
  assert str(hybrid.lr) == 'multistep(0.1,milestones=160,gamma=0.2)'
  assert str(increase.batch_schedule) == (
    'stages(128@60,640@60,3200@40,16000@40,n=50000)'
  )
  assert str(increase.lr) == 'constant(0.1)'
  for r in (decay, hybrid, increase):
    assert str(schedules.parse(str(r.lr))) == str(r.lr)
  # Updates by hand: ceil(3e6/128) = 23438 (seen 3000064), then
  # ceil(2999936/640) = 4688 (6000384), ceil(1999616/3200) = 625 (8000384),
  # ceil(1999616/16000) = 125 (10000384).
  assert decay.batch_schedule.num_updates == 78125
  assert increase.batch_schedule.num_updates_per_stage == (
    23438,
    4688,
    625,
    125,
  )
  assert increase.batch_schedule.num_examples_total == 10000384
  assert hybrid.batch_schedule.num_updates_per_stage == (23438, 4688, 1250)
  for r in (decay, hybrid, increase):
    assert r.momentum == 0.9
    assert r.noise_scale_ratio == pytest.approx((1.0,) * 4, rel=1e-12)
    assert 0 <= r.batch_schedule.num_examples_total - 200 * N < 16000


def test_default_cap_is_a_tenth_of_the_dataset():
  r = from_lr_decay(0.1, 128, N, **SMITH)
  assert r.batch_schedule.batch_size_per_stage == (128, 640, 3200, 5000)
  # The LR takes the rest of the /5: 16000 / 5000 = 3.2.
  assert str(r.lr) == 'multistep(0.1,milestones=160,gamma=0.3125)'


def test_noise_scale_identical_across_smith_schedules_at_every_epoch():
  # g = lr N / (B (1 - m)) = 0.1 * 50000 / (128 * 0.1) = 390.625, / 5 per
  # milestone.
  def g_hand(epoch):
    return 390.625 / 5 ** sum(epoch >= m for m in (60, 120, 160))

  runs = [_smith(128), _smith(3200), _smith(N), _smith(None)]
  for r in runs:
    schedule = r.batch_schedule
    lr = jax.jit(jax.vmap(per_update(r.lr, schedule)))
    for offset in (0, 0.5):
      epochs = [e + offset for e in range(200)]
      updates = [schedule.update_at_epoch(e) for e in epochs]
      counts = np.asarray(updates, np.int32)
      got = rules.noise_scale(
        np.asarray(lr(counts), np.float64),
        np.asarray(schedule.batch_size_at(counts), np.float64),
        N,
        r.momentum,
        exact=False,
      )
      want = [g_hand(schedule.epoch_at_host(u)) for u in updates]
      # float32 LR values: 1 ulp.
      np.testing.assert_allclose(got, want, rtol=2e-7)
      # Stage switches happen at the first update past each milestone.
      if offset == 0:
        np.testing.assert_allclose(got, [g_hand(e) for e in epochs], rtol=2e-7)


def test_increased_initial_lr_and_momentum_variants():
  # lr x5 -> batch x5; momentum 0.9 -> 0.98 -> batch x5 again.
  r = from_lr_decay(0.1, 128, N, lr_scale=5, **SMITH, max_batch_size=N)
  # The last ideal batch, 80000, is above the cap N: B = N, LR x 50000/80000.
  assert r.batch_schedule.batch_size_per_stage == (640, 3200, 16000, N)
  lrs = [float(r.lr(e)) for e in (0, 159, 160)]
  assert lrs == pytest.approx((0.5, 0.5, 0.5 * 50000 / 80000), rel=1e-7)
  r = from_lr_decay(
    0.1, 128, N, lr_scale=5, new_momentum=0.98, **SMITH, max_batch_size=N
  )
  assert r.momentum == 0.98
  assert r.batch_schedule.batch_size_per_stage[:2] == (3200, 16000)
  assert float(r.lr(0)) == pytest.approx(0.5)


def test_rounding_to_realisable_sizes_reports_the_change_of_g():
  r = from_lr_decay(0.1, 128, N, multiple_of=24, **SMITH)
  # nearest multiples of 24: 128 -> 120, 640 -> 648, 3200 -> 3192; the cap
  # 5000 -> 4992 with the LR solved for it (g kept).
  assert r.batch_schedule.batch_size_per_stage == (120, 648, 3192, 4992)
  assert r.noise_scale_ratio == pytest.approx(
    (128 / 120, 640 / 648, 3200 / 3192, 1.0), rel=1e-12
  )
  lrs = [float(r.lr(e)) for e in (0, 159, 160)]
  assert lrs == pytest.approx((0.1, 0.1, 0.1 / 5**3 * 4992 / 128), rel=1e-7)


def test_exact_noise_scale_form():
  r = from_lr_decay(0.1, 128, N, exact=True, **SMITH)
  # Hand table. The exact g = lr (N/B - 1) / (1 - m) starts at
  # 0.1 (50000/128 - 1) / 0.1 = 389.625 and falls 5x per milestone: 77.925,
  # 15.585, 3.117. At LR 0.1 = 1 - m the batch that keeps g is N / (1 + g):
  # 128, 633.51, 3014.77, and 12144.8 above the default cap N/10 = 5000.
  # Rounded: 128, 634, 3015; the cap stage solves the LR instead:
  # 3.117 (1 - m) / (50000/5000 - 1).
  assert r.batch_schedule.batch_size_per_stage == (128, 634, 3015, 5000)
  lrs = [float(r.lr(e)) for e in (0, 60, 120, 160)]
  assert lrs == pytest.approx((0.1, 0.1, 0.1, 3.117 * 0.1 / 9), rel=1e-7)
  # Rounding moves g by (N/B - 1) / (N/B_ideal - 1) = (N/B - 1) / g.
  assert r.noise_scale_ratio == pytest.approx(
    (1.0, (50000 / 634 - 1) / 77.925, (50000 / 3015 - 1) / 15.585, 1.0),
    rel=1e-9,
  )


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(milestones=(120, 60)), 'milestones'),
    (dict(milestones=(60, 60)), 'milestones'),
    (dict(milestones=(0, 60)), 'milestones'),
    (dict(milestones=(60, 250)), 'milestones'),
    (dict(factors=float('nan')), 'factors'),
    (dict(factors=float('inf')), 'factors'),
    (dict(factors=-0.2), 'factors'),
    (dict(factors=5), r'factors.*\(0, 1\].*1/5'),
    (dict(factors=(0.2, 0.2, 1.5)), 'factors'),
    (dict(factors=(0.2, 0.2)), 'factors'),
    (dict(batch_size=0), 'batch_size'),
    (dict(batch_size=-128), 'batch_size'),
    (dict(batch_size=60000), 'batch_size'),
    (dict(lr=0.0), 'lr'),
    (dict(lr=float('nan')), 'lr'),
    (dict(momentum=1.0), 'momentum'),
    (dict(new_momentum=-0.1), 'momentum'),
    (dict(max_batch_size=60000), 'max_batch_size'),
    (dict(max_batch_size=0), 'max_batch_size'),
    (dict(num_epochs=0), 'num_epochs'),
    (dict(multiple_of=0), 'multiple_of'),
    (dict(lr_scale=0), 'lr_scale'),
  ],
)
def test_from_lr_decay_bad_input(kwargs, match):
  args = dict(lr=0.1, batch_size=128, num_examples=N, **SMITH)
  args.update(kwargs)
  with pytest.raises((ValueError, TypeError), match=match):
    from_lr_decay(**args)


def test_round_batch_size_rule():
  table = [
    ((100, 1), 100),
    ((100.4, 1), 100),
    ((100.5, 1), 101),  # ties up
    ((12, 8), 16),  # 1.5 -> 2
    ((11.9, 8), 8),
    ((1, 8), 8),  # at least one multiple
    ((3200, 24), 3192),
    ((5000, 24, 4999), 4992),  # capped to the largest multiple below the cap
  ]
  for args, want in table:
    assert round_batch_size(*args) == want, args
  with pytest.raises(ValueError, match='batch_size'):
    round_batch_size(0)
  with pytest.raises(ValueError, match='batch_size'):
    round_batch_size(float('nan'))
  with pytest.raises(ValueError, match='multiple_of'):
    round_batch_size(10, 0)
  with pytest.raises(ValueError, match='max_batch_size'):
    round_batch_size(10, 8, 7)


def test_linear_ramp_megatron_table():
  s = linear_ramp(
    32, 128, 32, ramp_examples=3000, num_epochs=5, num_examples=1000
  )
  assert str(s) == 'stages(32@1000ex,64@1000ex,96@1000ex,128@2000ex,n=1000)'
  # ceil(1000/32) = 32 (seen 1024), ceil(976/64) = 16 (2048),
  # ceil(952/96) = 10 (3008), ceil(1992/128) = 16 (5056).
  assert s.num_updates_per_stage == (32, 16, 10, 16)
  assert s.num_examples_total == 5056
  # Ramp in epochs with a length not divisible by the steps: the example
  # targets 333.33, 666.67, 1000 round up, without drift.
  s = linear_ramp(8, 32, 8, ramp_epochs=1, num_epochs=2, num_examples=1000)
  assert s.stages[0].examples == 334 and s.stages[1].examples == 333
  assert s.stages[2].examples == 333 and s.stages[3].examples == 1000
  assert s.batch_size_per_stage == (8, 16, 24, 32)


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (
      dict(start=30),
      'start=30 is not a multiple of multiple_of=8; nearest realisable: 24, 32',
    ),
    (dict(stop=112), 'stop - start = 80 must be a multiple of increment=32'),
    (dict(increment=0), 'increment'),
    (dict(increment=12), 'increment=12 must be a multiple'),
    (dict(stop=2000), 'stop=2000 is above num_examples'),
    (dict(stop=16, start=32), 'stop'),
    (dict(num_epochs=0.5), 'num_epochs'),
    (dict(ramp_epochs=None), 'ramp_epochs'),
  ],
)
def test_linear_ramp_bad_input(kwargs, match):
  args = dict(
    start=32,
    stop=128,
    increment=32,
    ramp_epochs=1,
    num_epochs=3,
    num_examples=1000,
    multiple_of=8,
  )
  args.update(kwargs)
  with pytest.raises((ValueError, TypeError), match=match):
    linear_ramp(**args)


def test_geometric_ramp_table():
  s = geometric_ramp(
    8,
    96,
    2,
    ramp_examples=4000,
    num_epochs=6,
    num_examples=1000,
    multiple_of=8,
  )
  # 8, 16, 32, 64 are below 96: four steps of 1000 examples, then 96.
  assert s.batch_size_per_stage == (8, 16, 32, 64, 96)
  assert [st.examples for st in s.stages] == [1000] * 4 + [2000]
  s = geometric_ramp(
    10, 100, 3, ramp_epochs=2, num_epochs=2, num_examples=900, multiple_of=5
  )
  # 10, 30, 90 (< 100), each 600 examples; 100 gets no time.
  assert s.batch_size_per_stage == (10, 30, 90)
  with pytest.raises(ValueError, match='factor'):
    geometric_ramp(8, 96, 1, ramp_epochs=1, num_epochs=2, num_examples=1000)
  with pytest.raises(ValueError, match='factor'):
    geometric_ramp(
      8, 96, float('inf'), ramp_epochs=1, num_epochs=2, num_examples=1000
    )


def test_cyclic_table():
  # 1/B between 1/400 and 1/100; stage middles at phases 1/8, 3/8, 5/8, 7/8
  # give triangle heights 1/4, 3/4, 3/4, 1/4; the excursion halves per cycle.
  def batch(height, cycle):
    return round(1 / (1 / 400 + (1 / 100 - 1 / 400) * 0.5**cycle * height))

  s = cyclic(
    100,
    400,
    cycle_epochs=1,
    num_epochs=2.5,
    num_examples=4000,
    stages_per_cycle=4,
  )
  want = [batch(h, c) for c in (0, 1, 2) for h in (0.25, 0.75, 0.75, 0.25)]
  want = want[:10]  # 2.5 cycles
  merged = [want[0]]
  for b in want[1:]:
    if b != merged[-1]:
      merged.append(b)
  assert list(s.batch_size_per_stage) == merged
  assert merged[:3] == [229, 123, 229]
  assert 0 <= s.num_examples_total - 10000 < max(merged)
  with pytest.raises(ValueError, match='decay'):
    cyclic(100, 400, cycle_epochs=1, num_epochs=2, num_examples=4000, decay=2)
  with pytest.raises(ValueError, match='stages_per_cycle'):
    cyclic(
      100,
      400,
      cycle_epochs=1,
      num_epochs=2,
      num_examples=4000,
      stages_per_cycle=1,
    )
  with pytest.raises(ValueError, match='cycle_epochs'):
    cyclic(100, 400, cycle_epochs=0, num_epochs=2, num_examples=4000)


def test_builders_return_batch_schedules():
  assert isinstance(_smith(None).batch_schedule, BatchSchedule)


def test_round_schedule_makes_a_plan_feasible():
  from lrjax.batch import parse, plan, round_schedule

  s = parse('stages(100@1,250@40up,96@500ex,n=1000)')
  with pytest.raises(ValueError, match='nearest feasible batch sizes: 96, 104'):
    plan(s, num_replicas=8, max_device_batch=16)
  r, ratios = round_schedule(s, 8)
  # 100 -> 104 (12.5 rounds up), 250 -> 248, 96 stays; durations kept.
  assert str(r) == 'stages(104@1,248@40up,96@500ex,n=1000)'
  assert ratios == pytest.approx((100 / 104, 250 / 248, 1.0), rel=1e-15)
  # Per device 13 (prime, fits), 31 (prime, > 16: 31 micro-steps of 1), 12.
  p = plan(r, num_replicas=8, max_device_batch=16)
  assert [(x.micro_batch, x.accum_steps) for x in p.stages] == [
    (13, 1),
    (1, 31),
    (12, 1),
  ]
  with pytest.raises(ValueError, match='multiple_of'):
    round_schedule(s, 0)


def test_plot_batch_schedule_draws_equal_g_over_epochs(tmp_path):
  from lrjax import plots

  runs = {
    'decay': _smith(128),
    'increase': (_smith(N).batch_schedule, _smith(N).lr, 0.9),
  }
  path = tmp_path / 'smith.png'
  fig = plots.plot_batch_schedule(runs, num_points=401, path=str(path))
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  g_epochs, g_updates = fig.axes[4], fig.axes[5]
  probe = np.arange(0.5, 200, 1.0)
  want = [390.625 / 5 ** sum(e >= m for m in (60, 120, 160)) for e in probe]
  for line in g_epochs.get_lines():
    x, y = line.get_data()
    # steps-post: the value at e is that of the last sample at or before e;
    # samples every 0.5 epoch include each milestone.
    got = np.asarray(y)[np.searchsorted(x, probe, side='right') - 1]
    np.testing.assert_allclose(got, want, rtol=2e-7)
  last_update = [line.get_data()[0][-1] for line in g_updates.get_lines()]
  assert last_update == [78125, 28876]
  with pytest.raises(ValueError, match='runs'):
    plots.plot_batch_schedule({})
  with pytest.raises(ValueError, match='runs'):
    plots.plot_batch_schedule({'x': (1, 2)})


def test_from_lr_policy_reads_piecewise_constant_policies():
  from lrjax.batch import from_lr_policy

  kw = dict(num_epochs=200, momentum=0.9, max_batch_size=N)
  by_args = from_lr_decay(0.1, 128, N, max_batch_size=N, **SMITH)
  text = 'multistep(0.1,milestones=60/120/160,gamma=0.2)'
  for policy in (text, schedules.parse(text)):
    r = from_lr_policy(policy, 128, N, **kw)
    assert r.batch_schedule == by_args.batch_schedule
    assert str(r.lr) == str(by_args.lr)
  # step every 60 epochs over 180 epochs: milestones 60, 120.
  r = from_lr_policy(
    'step(0.1,length=60,gamma=0.2)', 128, N, num_epochs=180, max_batch_size=N
  )
  assert str(r.batch_schedule) == 'stages(128@60,640@60,3200@60,n=50000)'
  r = from_lr_policy('constant(0.1)', 128, N, num_epochs=10)
  assert str(r.batch_schedule) == 'stages(128@10,n=50000)'
  assert str(r.lr) == 'constant(0.1)'
  with pytest.raises(ValueError, match='cosine.*not a piecewise-constant'):
    from_lr_policy('cosine(0.1,length=200)', 128, N, num_epochs=200)


def test_derived_lrs_read_as_12_significant_digits():
  # 0.3 * 3 is 0.8999999999999999 in floats; the policy's text says 0.9.
  r = from_lr_decay(0.3, 128, N, lr_scale=3, **SMITH, max_batch_size=N)
  # ideal batches 384 * 5^i = 384, 1920, 9600, 48000: all below the cap.
  assert (
    str(r.batch_schedule) == 'stages(384@60,1920@60,9600@40,48000@40,n=50000)'
  )
  assert str(r.lr) == 'constant(0.9)'
  # Capped at 5000 from epoch 120: factors 5000/9600 then 1/5.
  r = from_lr_decay(0.3, 128, N, lr_scale=3, **SMITH)
  assert str(r.lr) == (
    'multistep(0.9,milestones=120/160,factors=0.520833333333/0.2)'
  )
  assert r.noise_scale_ratio == pytest.approx((1.0,) * 4, rel=1e-11)
  # 0.7 * 0.1 is 0.06999999999999999 in floats.
  r = from_lr_decay(0.7, 128, N, lr_scale=0.1, **SMITH, max_batch_size=N)
  assert str(r.lr) == 'constant(0.07)'


# ------------------------------------------------------------ Seesaw

R2 = np.sqrt(2.0)


def _stage_lrs(r):
  """The LR in force at the first update of each stage, under jit."""
  schedule = r.batch_schedule
  firsts = np.cumsum((0,) + schedule.num_updates_per_stage[:-1])
  lr = jax.jit(jax.vmap(per_update(r.lr, schedule)))
  return np.asarray(lr(np.asarray(firsts, np.int32)), np.float64)


def test_seesaw_step_decay_hand_table():
  # LR /2 at 30, 60, 90 becomes LR x 1/sqrt2 and batch x2 at each.
  r = seesaw(1.0, 32, N, milestones=(30, 60, 90), num_epochs=120)
  assert r.batch_schedule.batch_size_per_stage == (32, 64, 128, 256)
  np.testing.assert_allclose(
    _stage_lrs(r), [1, 1 / R2, 1 / 2, 1 / (2 * R2)], rtol=2e-7
  )
  assert str(r.decay) == 'multistep(1,milestones=30/60/90,gamma=0.5)'
  assert r.milestones == (30, 60, 90)
  assert r.noise_scale_ratio == pytest.approx((1.0,) * 4, rel=1e-12)
  # Updates by hand: 1.5e6 examples per 30 epochs. 1.5e6/32 = 46875
  # (seen 1500000); ceil(1.5e6/64) = 23438 (3000032); ceil(1499968/128)
  # = 11719 (4500064); ceil(1499936/256) = 5860 (6000224). The decay at
  # 32 takes 6e6/32 = 187500.
  assert r.batch_schedule.num_updates_per_stage == (46875, 23438, 11719, 5860)
  assert r.batch_schedule.num_examples_total == 6000224
  # The same step decay given as a policy, or its text, or a step policy.
  for lr in (
    'multistep(1,milestones=30/60/90,gamma=0.5)',
    schedules.step(1.0, length=30, gamma=0.5),
  ):
    again = seesaw(lr, 32, N, num_epochs=120)
    assert again.batch_schedule == r.batch_schedule
    np.testing.assert_allclose(_stage_lrs(again), _stage_lrs(r), rtol=1e-7)


def test_seesaw_keeps_lr_over_sqrt_batch_of_the_decay_at_every_epoch():
  # Adam's invariant: eta / sqrt(B) of the seesaw run equals the decay's
  # 2^-k / sqrt(32) in every stage k (1 / 2^k / sqrt(32) by hand).
  r = seesaw(1.0, 32, N, milestones=(30, 60, 90), num_epochs=120)
  schedule = r.batch_schedule
  lr = jax.jit(jax.vmap(per_update(r.lr, schedule)))
  epochs = [0, 15, 30, 45, 60, 89, 90, 119]
  updates = np.asarray([schedule.update_at_epoch(e) for e in epochs], np.int32)
  got = np.asarray(lr(updates), np.float64) / np.sqrt(
    np.asarray(schedule.batch_size_at(updates), np.float64)
  )
  k = np.asarray([sum(e >= m for m in (30, 60, 90)) for e in epochs])
  np.testing.assert_allclose(got, 0.5**k / np.sqrt(32), rtol=2e-7)


def test_seesaw_discretises_a_cosine_where_it_has_halved():
  # cosine(t) = (1 + cos(pi t / T)) / 2 falls to 2^-k at
  # t_k = T / pi * arccos(2^(1-k) - 1): 50, 66.667, 76.980 for T = 100.
  # It falls to 0, so the cuts are counted (max_cuts).
  t = [100 / np.pi * np.arccos(2.0 ** (1 - k) - 1) for k in (1, 2, 3)]
  r = seesaw(
    schedules.cosine(1.0, length=100), 32, N, num_epochs=100, max_cuts=3
  )
  # 6 significant digits of a float32 bisection: 1e-5 relative.
  np.testing.assert_allclose(r.milestones, t, rtol=1e-5)
  assert r.batch_schedule.batch_size_per_stage == (32, 64, 128, 256)
  np.testing.assert_allclose(
    _stage_lrs(r), [1, 1 / R2, 1 / 2, 1 / (2 * R2)], rtol=2e-7
  )
  with pytest.raises(ValueError, match='give max_cuts'):
    seesaw(schedules.cosine(1.0, length=100), 32, N, num_epochs=100)


def test_seesaw_cosine_after_a_warmup_cuts_in_global_epochs():
  # warmup over 10 epochs, then a cosine from 1 to 0.2 over 90: falls to
  # 1/2 and 1/4 (1/8 < 0.2 is never reached) where
  # 0.2 + 0.8 (1 + cos x) / 2 = 2^-k, x = arccos(2 (2^-k - 0.2) / 0.8 - 1).
  x = [np.arccos(2 * (2.0**-k - 0.2) / 0.8 - 1) for k in (1, 2)]
  t = [10 + 90 / np.pi * a for a in x]
  policy = 'warmup(cosine(1,length=90,end=0.2),length=10)'
  r = seesaw(policy, 32, N, num_epochs=100)
  np.testing.assert_allclose(r.milestones, t, rtol=1e-5)
  assert r.batch_schedule.batch_size_per_stage == (32, 64, 128)
  lr = r.lr
  # The warmup ramps from 0.1 to 1 over the first 10 epochs, unchanged.
  assert float(lr(0)) == pytest.approx(0.1, rel=1e-6)
  assert float(lr(5)) == pytest.approx(0.55, rel=1e-6)
  assert float(lr(t[0] - 0.01)) == pytest.approx(1.0, rel=1e-6)
  assert float(lr(t[0] + 0.01)) == pytest.approx(1 / R2, rel=1e-6)
  assert float(lr(99)) == pytest.approx(0.5, rel=1e-6)
  assert str(lr) == f'seesaw({policy},length=100)'
  assert str(schedules.parse(str(lr))) == str(lr)


def test_seesaw_cap_hands_the_rest_of_the_decay_to_the_lr():
  # Cap 128 = 4 x 32: the third cut cannot double the batch; the LR
  # falls by 2 there as the decay does: 1, 1/sqrt2, 1/2, 1/4.
  kw = dict(milestones=(30, 60, 90), num_epochs=120)
  r = seesaw(1.0, 32, N, max_batch_size=128, **kw)
  assert str(r.batch_schedule) == 'stages(32@30,64@30,128@60,n=50000)'
  np.testing.assert_allclose(
    [float(r.lr(e)) for e in (0, 30, 60, 90)], [1, 1 / R2, 0.5, 0.25], rtol=2e-7
  )
  assert str(r.lr) == (
    'seesaw(multistep(1,milestones=30/60/90,gamma=0.5),length=120,growth=4)'
  )
  # A measured B_simple of 100.7 as the cap, multiples of 8: 96 = 3 x 32.
  # The second cut jumps to the cap: eta = 1/4 sqrt(96/32) keeps
  # eta / sqrt(B) = 2^-2 / sqrt(32); the third halves it.
  r = seesaw(1.0, 32, N, max_batch_size=100.7, multiple_of=8, **kw)
  assert r.batch_schedule.batch_size_per_stage == (32, 64, 96)
  np.testing.assert_allclose(
    [float(r.lr(e)) for e in (0, 30, 60, 90)],
    [1, 1 / R2, np.sqrt(3) / 4, np.sqrt(3) / 8],
    rtol=2e-7,
  )
  assert r.noise_scale_ratio == pytest.approx((1.0,) * 4, rel=1e-12)
  # No growth at all (cap = batch): the decay itself.
  r = seesaw(1.0, 32, N, max_batch_size=32, **kw)
  assert str(r.batch_schedule) == 'stages(32@120,n=50000)'
  np.testing.assert_allclose(
    [float(r.lr(e)) for e in (0, 30, 60, 90)], [1, 0.5, 0.25, 0.125], rtol=2e-7
  )


def test_seesaw_rounding_reports_the_change_of_lr_over_sqrt_batch():
  # Factor 3 from 10, multiples of 4: 30 -> 32 (ratio sqrt(30/32)), 90 ->
  # 88 (sqrt(90/88)); the LR keeps the rule, x 1/sqrt3 per cut.
  r = seesaw(
    1.0, 12, N, milestones=(1, 2), factor=3, num_epochs=3, multiple_of=4
  )
  assert r.batch_schedule.batch_size_per_stage == (12, 36, 108)
  r = seesaw(1.0, 10, N, milestones=(1, 2), factor=3, num_epochs=3)
  assert r.batch_schedule.batch_size_per_stage == (10, 30, 90)
  r = seesaw(
    1.0, 12, N, milestones=(1, 2), factor=2.5, num_epochs=3, multiple_of=4
  )
  # 12 x 2.5 = 30 -> 32; 12 x 6.25 = 75 -> 76.
  assert r.batch_schedule.batch_size_per_stage == (12, 32, 76)
  assert r.noise_scale_ratio == pytest.approx(
    (1.0, np.sqrt(30 / 32), np.sqrt(75 / 76)), rel=1e-12
  )


def test_seesaw_in_tokens_and_as_batch_text():
  # seq 16, 4096 sequences (64 Ki tokens = 1 epoch): 512 tokens = 32
  # sequences, the cap 2 Ki tokens = 128; LR /2 at 0.25 and 0.5 epochs.
  text = (
    'seesaw(start=512tok, lr=multistep(1,milestones=0.25/0.5,gamma=0.5), '
    'total=64Kitok, max=2Kitok, seq=16, n=4096)'
  )
  s = parse(text)
  assert s.batch_size_per_stage == (32, 64, 128)
  assert to_text(s, seq_len=16) == (
    'stages(512tok@0.25,1Kitok@0.25,2Kitok@0.5,seq=16,n=4096)'
  )
  # Updates: 1024 / 32 = 32, 1024 / 64 = 16, 2048 / 128 = 16.
  assert s.num_updates_per_stage == (32, 16, 16)
  r = seesaw(
    'multistep(1,milestones=0.25/0.5,gamma=0.5)',
    32,
    4096,
    num_epochs=1,
    max_batch_size=128,
  )
  assert r.batch_schedule == s
  with pytest.raises(ValueError, match="not one of seesaw's keys"):
    parse('seesaw(start=32,lr=constant(1),total=1,bogus=2,n=64)')
  with pytest.raises(ValueError, match='seesaw needs lr='):
    parse('seesaw(start=32,total=1,n=64)')


@pytest.mark.parametrize(
  'lr, kwargs, match',
  [
    (1.0, {}, 'give milestones'),
    ('constant(1)', dict(milestones=(1,)), 'go with a number lr'),
    (1.0, dict(milestones=(1,), factor=1), 'factor=1 must be > 1'),
    (1.0, dict(milestones=(1,), max_batch_size=20), 'below batch_size=32'),
    (
      1.0,
      dict(milestones=(1,), max_batch_size=35, multiple_of=8),
      r'multiple of 8: 32\) is below',
    ),
    ('constant(0)', {}, 'must start > 0'),
  ],
)
def test_seesaw_errors_name_the_argument(lr, kwargs, match):
  kwargs = {'num_epochs': 3, **kwargs}
  if 'multiple_of' in kwargs:
    with pytest.raises(ValueError, match=match):
      seesaw(lr, 40, N, **kwargs)
    return
  with pytest.raises(ValueError, match=match):
    seesaw(lr, 32, N, **kwargs)
