"""lrjax.recipe: the decisions from hand-computed tables, the probes on a
problem whose noise scale is known exactly, and the power-law fit on
synthetic data with known exponents."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import batch as lbatch
from lrjax import recipe, schedules, tasks, train

# --- decide: hand-computed tables ------------------------------------------

N = 20000
BUDGET = recipe.Budget(epochs=20)
COMMON = dict(probe_lr=0.05, probe_batch=32, b_simple=300.0, num_examples=N)


def lr_at(text, epochs):
  policy = schedules.parse(text)
  return [float(policy(jnp.float32(t))) for t in epochs]


def test_ramp_when_the_batch_can_grow_fivefold():
  # B_simple/2 = 150 -> start 128 (2^7); cap min(1024, N/10 = 2000) -> 1024.
  # Peak LR: linear rule 0.05 * 128/32 = 0.2; warmup 5/90 * 20 = 1.111
  # epochs from 0.05 (start factor 0.25). Smith's ramp with milestones at
  # 30/60/80% (6, 12, 16): 128 -> 640 at 6, 3200 capped at 1024 at 12 (LR x
  # 1024/3200 = 0.32), LR x 0.2 at 16.
  r = recipe.decide(**COMMON, budget=BUDGET, max_device_batch=1024)
  assert (r.start_batch, r.max_batch, r.decay, r.rule) == (
    128,
    1024,
    'ramp',
    'linear',
  )
  assert r.peak_lr == pytest.approx(0.2, rel=1e-12)
  assert r.warmup_epochs == pytest.approx(1.111)
  schedule = lbatch.parse(r.batch)
  assert schedule.batch_sizes == (128, 640, 1024)
  assert schedule.num_examples == N
  # Stages run whole updates: 6 epochs at 128 are 937.5 -> 938 updates.
  assert schedule.num_epochs == pytest.approx(20, rel=1e-3)
  got = lr_at(r.lr, [0.0, 1.111, 10.0, 13.0, 17.0])
  want = [0.05, 0.2, 0.2, 0.2 * 0.32, 0.2 * 0.32 * 0.2]
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_cosine_with_sqrt_rule_for_adam_when_capped():
  # Two devices x 64 = 128 = the cap: start = top = 128, no room for a ramp.
  # sqrt rule: 0.05 * sqrt(128/32) = 0.1. Adam's warmup (Ma & Yarats): from
  # 0 over 2/(1 - 0.999) = 2000 updates of 128 = 12.8 epochs of N = 20000,
  # longer than Goyal's 1.111, capped at half the budget: 10 epochs.
  r = recipe.decide(
    **COMMON,
    budget=BUDGET,
    optimizer='adam',
    num_devices=2,
    max_device_batch=64,
  )
  assert (r.start_batch, r.max_batch, r.decay, r.rule) == (
    128,
    128,
    'cosine',
    'sqrt',
  )
  assert r.batch == 'stages(128@20,n=20000)'
  assert r.warmup_epochs == 10
  got = lr_at(r.lr, [0.0, 5.0, 10.0, 20.0])
  np.testing.assert_allclose(got, [0, 0.05, 0.1, 0], rtol=1e-5, atol=1e-7)
  # Half-way through the cosine (epoch 10 + 10/2): half the peak.
  assert lr_at(r.lr, [15.0])[0] == pytest.approx(0.05, rel=1e-4)


def test_adam_warmup_is_2_over_1_minus_beta2_updates():
  # b2 = 0.99: 200 updates of 128 = 1.28 epochs (> Goyal's 1.111), from 0.
  r = recipe.decide(
    **COMMON,
    budget=BUDGET,
    optimizer='adamw',
    b2=0.99,
    num_devices=2,
    max_device_batch=64,
  )
  assert r.warmup_epochs == pytest.approx(1.28, rel=1e-12)
  got = lr_at(r.lr, [0.0, 0.64, 1.28])
  np.testing.assert_allclose(got, [0, 0.05, 0.1], rtol=1e-5, atol=1e-7)
  # b2 = 0.9: 20 updates = 0.128 epochs; the LR was scaled up x2, so
  # Goyal's 5/90 of the budget, 1.111 epochs, is longer.
  r = recipe.decide(
    **COMMON,
    budget=BUDGET,
    optimizer='adamw',
    b2=0.9,
    num_devices=2,
    max_device_batch=64,
  )
  assert r.warmup_epochs == pytest.approx(1.111, rel=1e-12)
  assert lr_at(r.lr, [0.0])[0] == 0.0
  # SGD keeps Goyal's warmup from the tested LR.
  r = recipe.decide(**COMMON, budget=BUDGET, max_device_batch=128)
  assert r.warmup_epochs == pytest.approx(1.111, rel=1e-12)
  assert lr_at(r.lr, [0.0])[0] == pytest.approx(0.05, rel=1e-6)


def test_wsd_when_continuable():
  r = recipe.decide(
    **COMMON, budget=BUDGET, max_device_batch=256, continuable=True
  )
  assert r.decay == 'wsd'
  # 1-sqrt cooldown over the last 4 epochs: at 18, 0.2 (1 - sqrt(2/4)).
  got = lr_at(r.lr, [0.0, 10.0, 18.0, 20.0])
  want = [0.05, 0.2, 0.2 * (1 - math.sqrt(0.5)), 0.0]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_no_warmup_when_the_lr_scales_down():
  # B_simple/2 = 20 -> start 16 < probe batch 32: LR 0.025, nothing untested.
  r = recipe.decide(
    probe_lr=0.05,
    probe_batch=32,
    b_simple=40.0,
    num_examples=N,
    budget=BUDGET,
    max_device_batch=64,
  )
  assert (r.start_batch, r.peak_lr, r.warmup_epochs) == (16, 0.025, 0.0)
  assert r.decay == 'cosine'
  assert r.lr == 'cosine(0.025,length=20)'


def test_probe_fraction_and_budget_units():
  r = recipe.decide(
    **COMMON,
    budget=recipe.Budget(tokens=400000 * 128, seq_len=128),
    probe_examples=4000,
  )
  assert r.budget_examples == 400000
  assert r.probe_fraction == pytest.approx(0.01)
  assert '1.0% of the budget' in r.summary()
  assert r.flags() == f"--lr='{r.lr}' --batch='{r.batch}'"


@pytest.mark.parametrize(
  'changes, match',
  [
    (dict(b_simple=0.0), 'b_simple'),
    (dict(probe_lr=float('nan')), 'probe_lr'),
    (dict(spread=1.0), 'spread'),
    (dict(optimizer='rmsprop'), 'optimizer'),
    (dict(probe_batch=0), 'probe_batch'),
    (dict(max_device_batch=0), 'max_device_batch'),
    (dict(optimizer='adam', b2=1.0), r'b2=1.0 must be in \[0, 1\)'),
    (dict(num_devices=8, max_device_batch=1, num_examples=50), 'num_devices'),
    (dict(budget=recipe.Budget()), 'exactly one of epochs'),
    (dict(budget=recipe.Budget(epochs=1, examples=5)), 'exactly one'),
    (dict(budget=recipe.Budget(tokens=1000)), 'seq_len'),
    (dict(budget=recipe.Budget(epochs=-1)), 'epochs=-1'),
  ],
)
def test_bad_arguments_are_named(changes, match):
  kwargs = dict(COMMON, budget=BUDGET)
  kwargs.update(changes)
  with pytest.raises(ValueError, match=match):
    recipe.decide(**kwargs)


# --- the probes on a problem with a known noise scale ----------------------

# Every example's loss is s_i F(w), so every per-example gradient is
# s_i grad F(w) and, at any w,
#   B_simple = tr(Sigma) / |G|^2 = var(s) / mean(s)^2  (divisor N - 1):
# the noise scale is the same all along the probe's run. s = 1 +- a with
# equal counts gives mean 1, var a^2 N / (N - 1).
# F(w) = h w_0^2 / 2 + sqrt(1 + w_1^2) from w = (0.05, 20): the quadratic
# (curvature h = 4) makes gradient descent diverge above 2/h, and the
# pseudo-Huber term keeps |grad F| near 1 through the short noise probe.
NUM = 16384
A2 = 24.0
H = 4.0


def objective(w):
  return 0.5 * H * w[0] ** 2 + jnp.sqrt(1 + w[1] ** 2)


def objective_grad(w):
  return np.array([H * w[0], w[1] / np.sqrt(1 + w[1] ** 2)])


def exact_b_simple():
  return A2 * NUM / (NUM - 1)


def known_task():
  rng = np.random.default_rng(0)
  signs = rng.permutation(np.repeat([-1.0, 1.0], NUM // 2))
  s = (1 + math.sqrt(A2) * signs).astype(np.float32)

  def apply(w, x):
    return jnp.broadcast_to(objective(w), x.shape[:1])

  return train.Task(
    model=train.from_functions(lambda key, x: jnp.array([0.05, 20.0]), apply),
    loss=lambda out, b: (jnp.mean(b['s'] * out), {}),
    train_data={'x': np.zeros((NUM, 1), np.float32), 's': s},
    inputs='x',
  )


def test_known_task_has_the_closed_form_noise_scale():
  from lrjax import noise

  task = known_task()
  s = task.train_data.take(np.arange(NUM))['s']
  w = np.array([0.3, -2.0])
  per_example = s[:, None] * objective_grad(w)[None, :]
  _, _, b = noise.exact(per_example)
  assert float(b) == pytest.approx(exact_b_simple(), rel=1e-4)


def test_noise_probe_measures_the_exact_noise_scale():
  task = known_task()
  measured = [
    recipe.probe_noise(
      task, lr=0.1, batch_size=512, num_updates=50, momentum=0.0, seed=seed
    ).b_simple
    for seed in range(6)
  ]
  # One probe averages 50 unbiased but noisy estimates: over 100 seeds (a
  # NumPy replica of the estimator on these batches) the ratio has mean
  # 23.6 and a relative spread of 11%, so each probe is within 3 spreads
  # and the mean of six within 15%.
  for b in measured:
    assert b == pytest.approx(exact_b_simple(), rel=0.33)
  assert np.mean(measured) == pytest.approx(exact_b_simple(), rel=0.15)


def test_warm_updates_train_without_measuring():
  task = known_task()
  kwargs = dict(lr=0.1, batch_size=512, num_updates=6, momentum=0.0, seed=2)
  # decay=0 keeps only the last update's estimate; so does a probe whose
  # first 5 of 6 updates only train, on the same batches and parameters.
  last = recipe.probe_noise(task, decay=0.0, **kwargs)
  warm = recipe.probe_noise(task, warm_updates=5, **kwargs)
  assert warm.b_simple == pytest.approx(last.b_simple, rel=1e-6)
  assert len(warm.history) == 1 and len(last.history) == 6
  assert warm.examples == last.examples == 6 * 512
  with pytest.raises(ValueError, match=r'warm_updates=6 must be in \[0, '):
    recipe.probe_noise(task, warm_updates=6, **kwargs)


def test_recommend_picks_the_theory_batch_range_and_a_stable_lr():
  task = known_task()
  budget = recipe.Budget(epochs=100)
  r = recipe.recommend(task, budget, momentum=0.0, probe_batch=512, seed=0)
  # Theory: B_simple = 24.0 -> start = the largest 2^j <= B/2 = 12, i.e. 8
  # (any estimate in [16, 32) gives it); the cap is N/10 = 1638 -> 1024 (no
  # hardware cap given), room for Smith's ramp.
  assert r.b_simple == pytest.approx(exact_b_simple(), rel=0.25)
  assert (r.start_batch, r.max_batch, r.decay) == (8, 1024, 'ramp')
  # Gradient descent on the mean loss is stable below 2/h; the range test's
  # minimum / 10 must lie inside that range, within a factor 20 of its end.
  assert 0.1 / H < r.probe_lr < 2 / H
  # The linear rule scales it from the probe batch to the start batch.
  assert r.peak_lr == pytest.approx(r.probe_lr * 8 / 512, rel=1e-3)
  assert schedules.parse(r.lr)(0.0) == pytest.approx(r.peak_lr, rel=1e-6)
  parsed = lbatch.parse(r.batch)
  # Smith's ramp: x5 at 30, 60 and 80 epochs while 8 * 5^k <= 1024.
  assert parsed.batch_sizes == (8, 40, 200, 1000)
  assert parsed.num_epochs == pytest.approx(100, rel=1e-3)
  # The range test stopped on divergence after some of its 100 updates.
  updates = r.probe_examples / 512 - 50
  assert 10 <= updates < 100 and updates == int(updates)
  assert r.probe_fraction == pytest.approx(r.probe_examples / (100 * NUM))
  assert r.probe_fraction < 0.1


def test_recommend_is_deterministic_given_its_seed():
  task = known_task()
  kwargs = dict(
    momentum=0.0, probe_batch=128, range_test_steps=40, noise_updates=20
  )
  a = recipe.recommend(task, recipe.Budget(epochs=10), seed=3, **kwargs)
  b = recipe.recommend(task, recipe.Budget(epochs=10), seed=3, **kwargs)
  assert a == b


def test_recommend_validates_before_probing():
  with pytest.raises(ValueError, match='exactly one of epochs'):
    recipe.recommend(known_task(), recipe.Budget())
  with pytest.raises(ValueError, match='suggestion'):
    recipe.recommend(known_task(), recipe.Budget(epochs=1), suggestion='best')


def square_task():
  """loss(w) = mean((w x - 2 x)^2) = (w - 2)^2 mean(x^2), from w = 0."""
  x = np.array([[1.0], [-1.0], [2.0], [-2.0]], np.float32)
  return train.Task(
    model=(lambda key, x: jnp.zeros(1), lambda w, x: w * x),
    loss=lambda y, b: (jnp.mean((y - 2 * b['x']) ** 2), {}),
    train_data={'x': x},
    inputs='x',
  )


def test_probe_lr_sweeps_the_given_batches_in_order():
  a = {'x': np.array([[1.0], [-1.0]], np.float32)}  # mean(x^2) = 1
  b = {'x': np.array([[2.0], [-2.0]], np.float32)}  # mean(x^2) = 4
  lr, r = recipe.probe_lr(
    square_task(),
    batch_size=2,
    momentum=0.0,
    num_steps=3,
    min_lr=0.01,
    max_lr=0.04,
    beta=0.5,
    data=[a, b, a],
  )
  # By hand: loss m (w - 2)^2, gradient 2 m (w - 2), w <- w - lr * grad:
  # w = 0, 0 + 0.01 * 4 = 0.04, 0.04 + 0.02 * 15.68 = 0.3536.
  np.testing.assert_allclose(r.lrs, [0.01, 0.02, 0.04], rtol=1e-12)
  losses = [4.0, 4 * 1.96**2, 1.6464**2]
  np.testing.assert_allclose(r.losses, losses, rtol=1e-6)
  # EMA at beta 0.5, bias-corrected: m_i = (m_{i-1} + l_i) / 2.
  m0 = losses[0] / 2
  m1 = (m0 + losses[1]) / 2
  m2 = (m1 + losses[2]) / 2
  smoothed = [m0 / 0.5, m1 / 0.75, m2 / 0.875]
  np.testing.assert_allclose(r.smoothed, smoothed, rtol=1e-6)
  assert r.beta == 0.5 and not r.stopped_early
  # The smoothed minimum is the first point: minimum / 10 = 0.001.
  assert lr == pytest.approx(0.001, rel=1e-12)


def test_probe_lr_without_a_suggestion_raises_unless_not_strict():
  a = {'x': np.array([[1.0], [-1.0]], np.float32)}
  kwargs = dict(batch_size=2, num_steps=2, min_lr=0.1, max_lr=0.2, data=[a])
  with pytest.raises(ValueError, match=r'diverged after 1 update\(s\)'):
    recipe.probe_lr(square_task(), **kwargs)
  lr, r = recipe.probe_lr(square_task(), strict=False, **kwargs)
  assert math.isnan(lr)
  assert r.losses.tolist() == [4.0] and r.lrs.tolist() == [0.1]


# --- power-law fits ---------------------------------------------------------

# DeepSeek LLM's fits: eta_opt = 0.3118 C^-0.1250, B_opt = 0.2920 C^0.3271.
LAWS = [(0.3118, -0.125), (0.2920, 0.3271)]


@pytest.mark.parametrize('a, b', LAWS)
def test_fit_recovers_exact_power_laws(a, b):
  x = np.logspace(17, 20, 7)
  law = recipe.fit_power_law(x, a * x**b)
  assert law.exponent == pytest.approx(b, rel=1e-9)
  assert law.coefficient == pytest.approx(a, rel=1e-6)
  assert law(1e21) == pytest.approx(a * 1e21**b, rel=1e-6)


@pytest.mark.parametrize('a, b', LAWS)
def test_bootstrap_interval_covers_the_known_exponent(a, b):
  rng = np.random.default_rng(1)
  x = np.repeat(np.logspace(17, 20, 6), 5)
  sigma = 0.1
  y = a * x**b * np.exp(sigma * rng.standard_normal(x.size))
  r = recipe.bootstrap_power_law(x, y, at=[1e22], num_resamples=400)
  lo, hi = r.exponent_ci
  assert lo < b < hi
  # The slope's standard error: sigma / sqrt(sum (u - mean u)^2), u = ln x.
  u = np.log(x)
  se = sigma / np.sqrt(np.sum((u - u.mean()) ** 2))
  assert abs(r.fit.exponent - b) < 3 * se
  assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.35)
  p_lo, p_hi = r.prediction_ci[0]
  assert p_lo < r.prediction[0] < p_hi
  assert r.prediction[0] == pytest.approx(r.fit(1e22))


def test_bootstrap_of_exact_points_has_zero_width():
  x = [1.0, 10.0, 100.0]
  r = recipe.bootstrap_power_law(x, [3.0, 30.0, 300.0], num_resamples=20)
  assert r.exponent_ci == pytest.approx((1.0, 1.0))
  assert r.coefficient_ci == pytest.approx((3.0, 3.0))
  assert r.resamples.shape == (20, 2)


def test_near_optimal_keeps_deepseeks_band():
  budgets = [1, 1, 1, 2, 2, 2]
  lrs = [0.1, 0.2, 0.4, 0.1, 0.2, 0.4]
  losses = [2.0, 1.002, 1.0, float('nan'), 0.9, 0.9023]
  c, v = recipe.near_optimal(budgets, lrs, losses)  # 0.25%
  assert c.tolist() == [1.0, 1.0, 2.0]
  assert v.tolist() == [0.2, 0.4, 0.2]


@pytest.mark.parametrize(
  'x, y, match',
  [
    ([1.0, 2.0], [1.0], 'same length'),
    ([1.0, -2.0], [1.0, 1.0], 'x='),
    ([1.0, 2.0], [0.0, 1.0], 'y='),
    ([2.0, 2.0], [1.0, 1.0], '2 distinct'),
  ],
)
def test_fit_rejects_bad_points(x, y, match):
  with pytest.raises(ValueError, match=match):
    recipe.fit_power_law(x, y)


def test_bootstrap_rejects_bad_settings():
  with pytest.raises(ValueError, match='level'):
    recipe.bootstrap_power_law([1, 2], [1, 2], level=1.0)
  with pytest.raises(ValueError, match='num_resamples'):
    recipe.bootstrap_power_law([1, 2], [1, 2], num_resamples=5)


def test_recommend_takes_a_named_task_and_the_optimizer():
  task = tasks.image_classification(
    'synthetic', 'mlp', synthetic_examples=512, synthetic_shape=(8, 8, 1)
  )
  r = recipe.recommend(
    task,
    recipe.Budget(epochs=30),
    optimizer='adam',
    probe_batch=32,
    range_test_steps=30,
    noise_updates=10,
  )
  assert r.rule == 'sqrt'  # the config's optimizer
  assert r.budget_examples == 30 * 512
  schedules.parse(r.lr)
  assert lbatch.parse(r.batch).num_examples == 512


# --- a wall-clock budget ------------------------------------------------------


@pytest.mark.parametrize(
  'measured, expected',
  [
    ({128: 0.2, 1024: 0.9}, (0.1, 0.7 / 896)),  # exact through two points
    ({16: 0.08}, (0.0, 0.005)),  # one batch: proportional
    # a < 0 by least squares: proportional, c = sum t B / sum B^2.
    ({10: 0.1, 20: 0.3}, (0.0, (0.1 * 10 + 0.3 * 20) / (100 + 400))),
    ({10: 0.3, 20: 0.2}, (0.25, 0.0)),  # c < 0: constant at the mean
    # Three points on a line with noise: the least-squares line by hand,
    # B = 8, 16, 32 (sum 56, sum of squares 1344), t = 0.11, 0.13, 0.2
    # (sum 0.44), sum B t = 9.36:
    # c = (3 x 9.36 - 56 x 0.44) / (3 x 1344 - 56^2), a = (0.44 - 56 c) / 3.
    (
      {8: 0.11, 16: 0.13, 32: 0.2},
      (
        0.44 / 3 - (9.36 * 3 - 56 * 0.44) / (1344 * 3 - 56**2) * 56 / 3,
        (9.36 * 3 - 56 * 0.44) / (1344 * 3 - 56**2),
      ),
    ),
  ],
)
def test_step_time_model_by_hand(measured, expected):
  a, c = recipe.step_time_model(measured)
  assert (a, c) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
  'measured, match',
  [({}, 'empty'), ({0: 0.1}, r'step_seconds\[0\]'), ({8: 0.0}, 'finite')],
)
def test_step_time_model_rejects_bad_measurements(measured, match):
  with pytest.raises(ValueError, match=match):
    recipe.step_time_model(measured)


def test_seconds_budget_through_the_ramp_by_hand():
  # Start 128, cap 1024: the ramp's batches 128, 640, 1024, 1024 over 30,
  # 30, 20, 20% of the examples. t(B) = 0.1 + 0.00078125 B (through
  # (128, 0.2) and (1024, 0.9)): seconds per example
  #   0.3 * 0.2/128 + 0.3 * 0.6/640 + 0.4 * 0.9/1024 = 0.0011015625,
  # so 440.625 s train on 400000 examples = 20 epochs of N = 20000; the
  # stages keep 937.5, 187.5 and 156.25 updates (>= 100).
  r = recipe.decide(
    **COMMON,
    budget=recipe.Budget(seconds=440.625),
    max_device_batch=1024,
    step_seconds={128: 0.2, 1024: 0.9},
    probe_updates={32: 150},
  )
  assert r.decay == 'ramp'
  assert r.seconds_per_example == pytest.approx(0.0011015625, rel=1e-12)
  assert r.budget_examples == pytest.approx(400000, rel=1e-12)
  assert lbatch.parse(r.batch).num_epochs == pytest.approx(20, rel=1e-3)
  assert lbatch.parse(r.batch).batch_sizes == (128, 640, 1024)
  # The probes: 150 updates at t(32) = 0.125 s = 18.75 s of the budget.
  assert r.probe_seconds == pytest.approx(18.75, rel=1e-12)
  assert r.probe_fraction == pytest.approx(18.75 / 440.625, rel=1e-12)
  assert '18.8 s' in r.summary() and '4.3% of the budget' in r.summary()
  assert any('440.625 s = 400000 examples' in x for x in r.reasons)


def test_seconds_budget_too_short_for_the_ramp_by_hand():
  # A quarter of the seconds above: through the ramp (0.0011015625 s per
  # example) 110.15625 s are 100000 examples, and the stages at 640 and
  # 1024 keep 0.3 * 100000 / 640 = 46.875 and 0.4 * 100000 / 1024 = 39.06
  # updates (< 100); the next cap, 512, is below 5 x 128: no ramp. At the constant batch 128, t(128)/128 =
  # 0.2/128 s per example: 110.15625 s = 70500 examples.
  r = recipe.decide(
    **COMMON,
    budget=recipe.Budget(seconds=110.15625),
    max_device_batch=1024,
    step_seconds={128: 0.2, 1024: 0.9},
  )
  assert r.decay == 'cosine'
  assert r.budget_examples == pytest.approx(70500, rel=1e-12)
  assert r.batch == 'stages(128@3.525,n=20000)'
  assert any('batch 1024 only 39 updates' in x for x in r.reasons)


def test_ramp_capped_where_its_stages_keep_enough_updates():
  # The LM's budget: 128 Ki tokens of sequences of 64 = 2048 sequences,
  # N = 20000 (0.1024 epochs). B_simple = 2 -> start 1; hardware 16 x 8 =
  # 128. Caps 128, 64, 32: the stage at 25 keeps 0.2 * 2048 / 25 = 16.4
  # updates; 16: the stage at 16 keeps 0.4 * 2048 / 16 = 51.2. Cap 8: 1, 5
  # and 8 keep 614.4, 122.88 and 102.4 updates (>= 100). Peak LR: the sqrt
  # rule, 4e-3 * sqrt(1/8) = 1.414e-3, warmed up from 0 over 2/(1 - 0.99)
  # = 200 updates of 1 = 0.01 epochs. The LR takes the rest of Smith's
  # decay: x 8/25 = 0.32 at 60% (0.06144 epochs), x 0.2 at 80%.
  r = recipe.decide(
    probe_lr=4e-3,
    probe_batch=8,
    b_simple=2.0,
    num_examples=20000,
    budget=recipe.Budget(tokens=131072, seq_len=64),
    optimizer='adamw',
    b2=0.99,
    max_device_batch=16,
    max_accumulation=8,
  )
  assert (r.start_batch, r.max_batch, r.decay) == (1, 8, 'ramp')
  assert r.warmup_epochs == pytest.approx(0.01, rel=1e-12)
  assert r.peak_lr == pytest.approx(0.001414, rel=1e-12)
  assert lbatch.parse(r.batch).batch_sizes == (1, 5, 8)
  got = lr_at(r.lr, [0.0, 0.005, 0.06, 0.07, 0.09])
  want = [0, 0.000707, 0.001414, 0.001414 * 0.32, 0.001414 * 0.32 * 0.2]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert any(
    'capped at 16 would give its stage at batch 16 only 51 updates' in x
    and 'stops at 8' in x
    for x in r.reasons
  )


def test_seconds_budget_at_a_constant_batch_by_hand():
  # The cap 128 = the start: one stage (cosine). One measured batch:
  # t(B) = 0.2 B / 128, 0.2/128 s per example; 31.25 s = 20000 examples.
  r = recipe.decide(
    **COMMON,
    budget=recipe.Budget(seconds=31.25),
    max_device_batch=128,
    step_seconds={128: 0.2},
  )
  assert r.decay == 'cosine'
  assert r.budget_examples == pytest.approx(20000, rel=1e-12)
  assert r.batch == 'stages(128@1,n=20000)'
  assert r.probe_seconds == 0.0


def test_seconds_budget_needs_step_times():
  with pytest.raises(ValueError, match='step_seconds'):
    recipe.decide(**COMMON, budget=recipe.Budget(seconds=60))
  with pytest.raises(ValueError, match='exactly one'):
    recipe.decide(**COMMON, budget=recipe.Budget(seconds=60, epochs=1))


class FakeClock:
  """Returns the given readings in order (one per call)."""

  def __init__(self, readings):
    self.readings = list(readings)

  def __call__(self):
    return self.readings.pop(0)


def test_recommend_times_the_steps_with_an_injected_clock():
  # The timing probe runs at the ends of the schedule's batch range, the
  # theory's start 8 and cap 1024: three timed updates each, 0.05 s at 8
  # and 0.11 s at 1024, so t(B) = 0.05 + 0.06 (B - 8) / 1016. Through the
  # ramp that is 2.347e-3 s per example: 1500 s train on 639k examples,
  # and the last stage (20% at batch 1000) keeps 128 updates (>= 100).
  clock = FakeClock([0, 0.05, 1, 1.05, 2, 2.05, 3, 3.11, 4, 4.11, 5, 5.11])
  r = recipe.recommend(
    known_task(),
    recipe.Budget(seconds=1500.0),
    momentum=0.0,
    probe_batch=512,
    clock=clock,
    seed=0,
  )
  assert not clock.readings  # every timed update read the clock twice
  assert (r.start_batch, r.max_batch, r.decay) == (8, 1024, 'ramp')
  c = 0.06 / 1016
  a = 0.05 - 8 * c
  per_example = sum(
    f * (a + c * b) / b
    for b, f in ((8, 0.3), (40, 0.3), (200, 0.2), (1000, 0.2))
  )
  assert r.seconds_per_example == pytest.approx(per_example, rel=1e-9)
  assert r.budget_examples == pytest.approx(1500.0 / per_example, rel=1e-9)
  assert 0.2 * r.budget_examples / 1000 >= 100
  # Probe updates: L of the range test and 50 of the noise probe at 512,
  # 3 + 1 of the timing probe at 8 and at 1024.
  steps = (r.probe_examples - 50 * 512 - 4 * 8 - 4 * 1024) / 512
  assert steps == int(steps) and 10 <= steps <= 100
  assert r.probe_seconds == pytest.approx(
    (steps + 50) * (a + 512 * c) + 4 * 0.05 + 4 * 0.11, rel=1e-9
  )
  assert r.probe_fraction == pytest.approx(r.probe_seconds / 1500.0)
