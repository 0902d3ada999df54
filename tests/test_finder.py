"""Tests for lrjax.finder (LR range test).

Ground truths: hand-computed sweeps, EMAs and suggestions, and SGD on a
quadratic whose iterates follow a scalar recurrence written out in numpy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

from lrjax import finder, models


def test_sweep_values():
  np.testing.assert_allclose(
    finder.sweep(1e-4, 1.0, 5), [1e-4, 1e-3, 1e-2, 1e-1, 1.0], rtol=1e-12
  )
  np.testing.assert_allclose(
    finder.sweep(0.5, 2.0, 4, mode='linear'), [0.5, 1.0, 1.5, 2.0]
  )
  with pytest.raises(ValueError, match='min_lr'):
    finder.sweep(0.0, 1.0, 5)
  with pytest.raises(ValueError, match='max_lr'):
    finder.sweep(1.0, 1.0, 5)
  with pytest.raises(ValueError, match='num_steps'):
    finder.sweep(0.1, 1.0, 1)
  with pytest.raises(ValueError, match='mode'):
    finder.sweep(0.1, 1.0, 5, mode='cos')


def test_smooth_bias_corrected():
  # beta = 0.5: m = 0.5, 1.25, 2.125; corrections 0.5, 0.75, 0.875.
  np.testing.assert_allclose(
    finder.smooth([1.0, 2.0, 3.0], beta=0.5),
    [1.0, 1.25 / 0.75, 2.125 / 0.875],
    rtol=1e-12,
  )
  with pytest.raises(ValueError, match='beta'):
    finder.smooth([1.0], beta=1.0)


@pytest.mark.parametrize('beta', [0.0, 0.5, 0.9, 0.98])
def test_ema_lag_is_the_smoothed_ramps_delay(beta):
  # On a ramp l_i = 3 + 2 i the smoothed value at step i is a weighted mean
  # of l_{i-j} with weights beta^j, so it equals 3 + 2 (i - L_i), L_i the
  # weights' mean j, summed here term by term.
  steps = np.arange(150)
  by_sum = np.array(
    [
      np.sum(np.arange(i + 1) * beta ** np.arange(i + 1))
      / np.sum(beta ** np.arange(i + 1))
      for i in steps
    ]
  )
  np.testing.assert_allclose(
    finder.ema_lag(beta, steps), by_sum, rtol=1e-12, atol=1e-12
  )
  smoothed = finder.smooth(3.0 + 2.0 * steps, beta=beta)
  np.testing.assert_allclose(
    smoothed, 3.0 + 2.0 * (steps - by_sum), rtol=1e-12, atol=1e-9
  )
  # Far from the start the lag is beta / (1 - beta): 49 updates at 0.98.
  assert finder.ema_lag(beta, 10_000) == pytest.approx(beta / (1 - beta))


def test_smooth_of_a_step_and_ema_lag_bad_inputs():
  # A unit step at s: the weight on steps >= s is
  # (1 - beta^(i-s+1)) / (1 - beta^(i+1)) of the total.
  beta, s = 0.9, 20
  i = np.arange(60)
  smoothed = finder.smooth((i >= s).astype(float), beta=beta)
  expected = np.where(
    i >= s, (1 - beta ** (i - s + 1)) / (1 - beta ** (i + 1)), 0.0
  )
  np.testing.assert_allclose(smoothed, expected, rtol=1e-12, atol=1e-15)
  with pytest.raises(ValueError, match='beta=1.0 must be in'):
    finder.ema_lag(1.0, 3)
  with pytest.raises(ValueError, match='step=-1 must be >= 0'):
    finder.ema_lag(0.9, -1)


@pytest.mark.parametrize(
  'curve,expected',
  [
    # minimum at index 4; slopes (uniform log grid, central differences):
    # [-.05, -.5, -.525, -.075, -.05]; decreasing run 0..4 -> 0 + 8 // 3.
    ([2.0, 1.95, 1.0, 0.9, 0.85, 5.0], (2, 4, 2)),
    # a bump splits the runs: 0..1 (length 1) and 2..5 (length 3) -> 2 + 2.
    ([3.0, 2.9, 3.5, 2.0, 1.0, 0.5], (3, 5, 4)),
  ],
)
def test_suggest_table(curve, expected):
  lrs = np.logspace(-5, 0, len(curve))
  got = finder.suggest(lrs, curve)
  assert tuple(got) == finder.SUGGESTIONS
  steepest, best, valley = expected
  np.testing.assert_allclose(got['steepest'], lrs[steepest], rtol=1e-12)
  np.testing.assert_allclose(got['minimum_over_10'], lrs[best] / 10, rtol=1e-12)
  np.testing.assert_allclose(got['valley'], lrs[valley], rtol=1e-12)


def test_suggest_validates():
  with pytest.raises(ValueError, match='shape'):
    finder.suggest([1.0, 2.0], [1.0])
  with pytest.raises(ValueError, match='skip_start'):
    finder.suggest([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], skip_start=2)
  with pytest.raises(ValueError, match='skip_end'):
    finder.suggest([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], skip_end=-1)


def _tanh_curve(n=100, center=40, width=6.0):
  """A range-test curve with known steepest descent, warm-up and tail.

  On a uniform log-LR grid the clean curve is -tanh((i - center) / width),
  whose derivative -sech^2 is steepest at i = center exactly (and its
  central differences too, by symmetry and concavity). The first 4 points
  carry 3 / 2^i more (an EMA warm-up artefact, falling faster than the
  clean curve's 1 / width per point), and the curve diverges after 90.
  """
  lrs = np.logspace(-4, 1, n)
  i = np.arange(n)
  y = 2.0 - np.tanh((i - center) / width)
  y[:4] += 3.0 / 2.0 ** i[:4]
  y[91:] += 0.5 * (i[91:] - 90) ** 2
  return lrs, y


def test_suggest_steepest_skips_warmup_and_tail():
  lrs, y = _tanh_curve()
  got = finder.suggest(lrs, y)
  np.testing.assert_allclose(got['steepest'], lrs[40], rtol=1e-12)
  # With nothing skipped the warm-up artefact wins: the old behaviour.
  first = finder.suggest(lrs, y, skip_start=0, skip_end=0)
  np.testing.assert_allclose(first['steepest'], lrs[0], rtol=1e-12)


def test_suggest_steepest_window_is_before_the_minimum():
  # Steepest fall at 40, minimum near 60; then the loss rises by 0.2 per
  # point to 80 and falls by 0.25 per point to 95 (steeper than 40's 1/6),
  # still above the minimum: a fall after the minimum is not a suggestion.
  lrs = np.logspace(-4, 1, 100)
  i = np.arange(100)
  y = 2.0 - np.tanh((i - 40) / 6.0)
  y += 0.2 * np.clip(i - 60, 0, 20) - 0.25 * np.clip(i - 80, 0, 15)
  assert int(np.argmin(y)) <= 60 and y[80:].min() > y.min()
  got = finder.suggest(lrs, y)
  np.testing.assert_allclose(got['steepest'], lrs[40], rtol=1e-12)


def _targets(n):
  return [np.array([1.0, -2.0], np.float32) * (-1) ** i for i in range(n)]


def _numpy_sgd(w, h, lrs, targets, momentum=0.0, beta=0.98, k=4.0):
  """Losses of SGD (optax convention: trace = g + m trace, w -= lr trace),
  and their bias-corrected EMA, up to the divergence stop."""
  w = np.asarray(w, np.float64)
  trace = np.zeros_like(w)
  losses, smoothed, m, best = [], [], 0.0, np.inf
  for i, (lr, b) in enumerate(zip(lrs, targets, strict=False)):
    losses.append(0.5 * h * np.sum((w - b) ** 2))
    trace = h * (w - b) + momentum * trace
    w = w - lr * trace
    m = beta * m + (1 - beta) * losses[-1]
    smoothed.append(m / (1 - beta ** (i + 1)))
    best = min(best, smoothed[-1])
    if smoothed[-1] > k * best:
      break
  return np.asarray(losses), np.asarray(smoothed)


def _brute_suggestions(lrs, y, log_x):
  """The suggestions by their documented definitions, found by brute force.

  Both sweeps are uniform grids in u (log LR or LR), where second-order
  central differences are (y[i+1] - y[i-1]) / 2du, one-sided at the ends;
  the valley is the longest strictly decreasing run of all (start, end)
  pairs, the first on ties.
  """
  n = len(y)
  a, b = n // 10, n // 20
  e = max(a + int(np.argmin(y[a : n - b])), a + 1)
  u = np.log(lrs) if log_x else np.asarray(lrs)
  du = (u[-1] - u[0]) / (n - 1)
  w = y[a : e + 1]
  slope = [(w[1] - w[0]) / du]
  slope += [(w[i + 1] - w[i - 1]) / (2 * du) for i in range(1, len(w) - 1)]
  slope += [(w[-1] - w[-2]) / du]
  runs = [
    (j - i, -i)
    for i in range(n)
    for j in range(i, n)
    if all(y[k + 1] < y[k] for k in range(i, j))
  ]
  length, start = max(runs)
  return {
    'steepest': lrs[a + int(np.argmin(slope))],
    'minimum_over_10': lrs[int(np.argmin(y))] / 10,
    'valley': lrs[-start + 2 * length // 3],
  }


def _assert_suggestions(got, lrs, y, log_x):
  want = _brute_suggestions(np.asarray(lrs), np.asarray(y), log_x)
  assert set(got) == set(want)
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-12, err_msg=key)


def _quadratic(h):
  return lambda w, b: 0.5 * h * jnp.sum((w - b) ** 2)


@pytest.mark.parametrize('mode', ['exp', 'linear'])
def test_sgd_on_quadratic_matches_recurrence(mode):
  h, n = 2.0, 60
  lrs = finder.sweep(1e-3, 3.0, n, mode)
  r = finder.lr_range_test(
    _quadratic(h),
    jnp.full(2, 4.0),
    optax.sgd,
    _targets(n),
    min_lr=1e-3,
    max_lr=3.0,
    num_steps=n,
    mode=mode,
  )
  expected, smoothed = _numpy_sgd([4.0, 4.0], h, lrs, _targets(n))
  # lr > 2/h = 1 diverges: the sweep stops before its end.
  assert r.stopped_early and len(r.losses) == len(expected) < n
  np.testing.assert_allclose(r.losses, expected, rtol=2e-5)
  np.testing.assert_allclose(r.lrs, lrs[: len(expected)], rtol=1e-12)
  np.testing.assert_allclose(r.smoothed, smoothed, rtol=2e-5)
  _assert_suggestions(r.suggestions, r.lrs, smoothed, log_x=mode == 'exp')


def test_factory_and_injected_optimizer_agree_with_momentum():
  h, n = 1.0, 40
  kwargs = dict(min_lr=1e-3, max_lr=1.0, num_steps=n)
  params = jnp.full(2, 3.0)
  a = finder.lr_range_test(
    _quadratic(h),
    params,
    lambda lr: optax.sgd(lr, momentum=0.9),
    _targets(n),
    **kwargs,
  )
  injected = optax.inject_hyperparams(optax.sgd)(
    learning_rate=0.5, momentum=0.9
  )
  b = finder.lr_range_test(
    _quadratic(h), params, injected, _targets(n), **kwargs
  )
  expected, _ = _numpy_sgd(
    [3.0, 3.0], h, finder.sweep(1e-3, 1.0, n), _targets(n), 0.9
  )
  np.testing.assert_allclose(a.losses, expected, rtol=2e-5)
  np.testing.assert_allclose(b.losses, a.losses, rtol=1e-6)


def test_params_untouched_and_short_iterator():
  params = {'w': np.array([1.0, 2.0], np.float32), 'v': jnp.array([3.0])}
  saved = jax.tree.map(np.array, params)

  def loss(p, b):
    return jnp.sum((p['w'] - b) ** 2) + jnp.sum(p['v'] ** 2)

  batches = (np.zeros(2, np.float32) for _ in range(5))
  r = finder.lr_range_test(loss, params, optax.adam, batches, num_steps=100)
  assert len(r.losses) == 5 and not r.stopped_early
  for key in saved:
    np.testing.assert_array_equal(np.asarray(params[key]), saved[key])


def test_one_update_has_every_suggestion_as_nan():
  loss = _quadratic(1.0)
  r = finder.lr_range_test(loss, jnp.ones(2), optax.sgd, _targets(1))
  assert len(r.losses) == 1 and not r.stopped_early
  assert tuple(r.suggestions) == finder.SUGGESTIONS
  assert all(np.isnan(v) for v in r.suggestions.values())


def test_errors():
  loss = _quadratic(1.0)
  with pytest.raises(ValueError, match='inject_hyperparams'):
    finder.lr_range_test(loss, jnp.ones(2), optax.sgd(0.1), _targets(3))
  with pytest.raises(ValueError, match='no batch'):
    finder.lr_range_test(loss, jnp.ones(2), optax.sgd, [])
  with pytest.raises(ValueError, match='diverge_factor'):
    finder.lr_range_test(
      loss, jnp.ones(2), optax.sgd, _targets(3), diverge_factor=1.0
    )
  with pytest.raises(TypeError, match='factory'):
    finder.lr_range_test(loss, jnp.ones(2), 0.1, _targets(3))


def test_flax_model_on_digits():
  x, y = load_digits(return_X_y=True)
  x = (x[:512] / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
  y = y[:512].astype(np.int32)
  model = models.get('logreg', 10)
  params = jax.jit(model.init)(jax.random.key(0), x[:1])['params']

  def loss(p, batch):
    logits = model.apply({'params': p}, batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch[1]
    ).mean()

  rng = np.random.default_rng(0)
  batches = ((x[i], y[i]) for i in rng.integers(0, 512, (120, 64)))
  r = finder.lr_range_test(
    loss,
    params,
    lambda lr: optax.sgd(lr, momentum=0.9),
    batches,
    min_lr=1e-4,
    max_lr=100.0,
    num_steps=120,
  )
  # The loss starts near log(10), falls well below it, then diverges.
  assert abs(r.losses[0] - np.log(10)) < 0.3
  assert r.smoothed.min() < 0.6 * r.smoothed[0]
  assert r.stopped_early
  # The suggestions are read off this curve by their definitions, and all
  # lie where the smoothed loss still falls, before its minimum.
  _assert_suggestions(r.suggestions, r.lrs, r.smoothed, log_x=True)
  best = int(np.argmin(r.smoothed))
  for key in ('steepest', 'valley'):
    i = int(np.argmin(np.abs(r.lrs - r.suggestions[key])))
    assert 0 < i < best and r.smoothed[i + 1] < r.smoothed[i - 1], key


def test_plot_lr_finder_marks_suggestions(tmp_path):
  from lrjax.plots import plot_lr_finder

  r = finder.lr_range_test(
    _quadratic(2.0),
    jnp.full(2, 4.0),
    optax.sgd,
    _targets(60),
    min_lr=1e-3,
    max_lr=3.0,
    num_steps=60,
  )
  path = tmp_path / 'finder.png'
  fig = plot_lr_finder(r, path=str(path))
  ax = fig.axes[0]
  assert path.stat().st_size > 0
  assert ax.get_xscale() == 'log'
  verticals = [line.get_xdata()[0] for line in ax.lines[2:-1]]
  np.testing.assert_allclose(sorted(verticals), sorted(r.suggestions.values()))


def _closed_form_sgd_losses(w0, h, lrs):
  """0.5 h |w|^2 under plain SGD: w_{i+1} = (1 - lr_i h) w_i."""
  w0 = np.asarray(w0, np.float64)
  factors = np.concatenate([[1.0], np.cumprod(1.0 - h * np.asarray(lrs))])
  return 0.5 * h * np.sum(w0**2) * factors[: len(lrs)] ** 2


def _trainer_sgd(learning_rate, **kw):
  from lrjax.train import make_optimizer

  return make_optimizer(
    'sgd', learning_rate=learning_rate, momentum=0.0, weight_decay=0.0, **kw
  )


@pytest.mark.parametrize(
  'optimizer',
  [
    # A factory whose transformation injects its own learning_rate: the
    # sweep used to set only the outer one and train at LR 0.
    _trainer_sgd,
    _trainer_sgd(0.0),
    _trainer_sgd(0.0, skip_non_finite=True),
    optax.chain(
      optax.clip(1e3), optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)
    ),
  ],
  ids=['factory', 'transformation', 'apply_if_finite', 'chain'],
)
def test_nested_learning_rate_is_the_swept_one(optimizer):
  h, n = 1.5, 8
  lrs = finder.sweep(0.05, 0.6, n)
  zeros = [np.zeros(2, np.float32)] * n
  r = finder.lr_range_test(
    _quadratic(h),
    jnp.array([3.0, -1.0]),
    optimizer,
    zeros,
    min_lr=0.05,
    max_lr=0.6,
    num_steps=n,
  )
  expected = _closed_form_sgd_losses([3.0, -1.0], h, lrs)
  assert r.losses[-1] < 0.1 * r.losses[0]  # the parameters moved
  np.testing.assert_allclose(r.losses, expected, rtol=1e-5)


def test_scheduled_learning_rate_raises():
  # A schedule overrides the swept LR at every update: no silent sweep.
  for lr in (optax.constant_schedule(0.05), lambda count: 0.01 * count):
    with pytest.raises(ValueError, match='schedule.*float learning_rate'):
      finder.lr_range_test(
        _quadratic(1.0),
        jnp.ones(2),
        _trainer_sgd(lr),
        _targets(5),
        min_lr=0.05,
        max_lr=0.5,
        num_steps=5,
      )


def test_gradient_accumulation_raises():
  with pytest.raises(ValueError, match='MultiSteps.*every_k_schedule'):
    finder.lr_range_test(
      _quadratic(1.0),
      jnp.ones(2),
      _trainer_sgd(0.0, every_k_schedule=2),
      _targets(5),
      num_steps=5,
    )


def _hand_curve():
  # Raw losses: start 2.3, a noisy batch at 3.1 early on, a lowest batch
  # at 0.4, then the divergence spike (40, inf). The smoothed curve falls
  # from 2.3 to its minimum 0.7 at index 5, then climbs to 9.
  return finder.RangeTestResult(
    lrs=np.logspace(-4, 0, 8),
    losses=np.array([2.3, 3.1, 1.5, 1.0, 0.4, 0.8, 40.0, np.inf]),
    smoothed=np.array([2.3, 2.5, 2.0, 1.4, 0.9, 0.7, 3.0, 9.0]),
    suggestions={'minimum_over_10': 1e-3},
    stopped_early=True,
  )


def test_lr_finder_ylim_spans_the_data_up_to_the_start_not_the_spike():
  from lrjax.plots import lr_finder_ylim

  # Lowest loss 0.4 (a raw batch); highest smoothed loss up to the smoothed
  # minimum 2.5; margin 5% of 2.1 = 0.105.
  lo, hi = lr_finder_ylim(_hand_curve())
  assert (lo, hi) == (pytest.approx(0.295), pytest.approx(2.605))
  # Several curves: the lowest loss and the highest start of them all.
  other = _hand_curve()._replace(
    losses=np.array([2.0, 1.2, 0.9, 0.6, 5.0, 7.0, 9.0, 9.0]),
    smoothed=np.array([2.8, 2.0, 1.5, 1.1, 1.9, 3.0, 5.0, 7.0]),
  )
  lo, hi = lr_finder_ylim({'a': _hand_curve(), 'b': other})
  assert (lo, hi) == (pytest.approx(0.4 - 0.12), pytest.approx(2.8 + 0.12))
  nothing = _hand_curve()._replace(
    losses=np.full(8, np.nan), smoothed=np.full(8, np.inf)
  )
  assert lr_finder_ylim(nothing) is None


def test_plot_lr_finder_draws_the_given_suggestion_clipped_and_states_lag():
  from lrjax.plots import plot_lr_finder

  curves = {'seed 0': _hand_curve(), 'seed 1': _hand_curve()}
  fig = plot_lr_finder(curves, suggestions={'recommended': 2.5e-3})
  ax = fig.axes[0]
  # Two lines per seed (raw, smoothed), the one suggestion, the lag note.
  assert len(ax.lines) == 6
  assert ax.lines[-2].get_xdata()[0] == 2.5e-3
  assert ax.get_ylim() == (pytest.approx(0.295), pytest.approx(2.605))
  # The smoothed minimum is at index 5: weights 0.98^j, j = 0..5, sum
  # 5.70788, sum of j 0.98^j 13.93345, lag 2.441 updates; the sweep's ratio
  # is 10^(4/7) per update, so the factor in LR is 10^(4/7 * 2.441) = 24.8.
  note = ax.lines[-1].get_label().replace('\n', ' ')
  assert note == (
    'smoothed: EMA beta=0.98, lags 2 updates (x25 in LR) at its minimum'
  )
  assert not ax.lines[-1].get_xdata().size


def test_a_long_legend_widens_the_figure_instead_of_squeezing_the_axes():
  from lrjax.plots import plot_lines

  def axes_inches(label):
    fig = plot_lines([1, 2, 3], {label: [3.0, 2.0, 2.5]})
    return fig.axes[0].get_position().width * fig.get_size_inches()[0]

  short = axes_inches('a')
  # A 47-character label, as lrbench's: without widening, a 5.5-inch
  # figure left the axes about 1.6 inches of their 4.3.
  long = axes_inches('range test: cosine(0.03054,length=20) (2 seeds)')
  # The legend sits right of the axes; the axes keep (within tight_layout's
  # rounding) the width they have beside a one-letter legend.
  assert long == pytest.approx(short, rel=0.02)
