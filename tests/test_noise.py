"""Tests for lrjax.noise: two-batch estimators, EMA state, slicing, policy.

Ground truths: expectations enumerated over every subset of a small set of
per-example gradients (numpy, itertools), gradients of least squares in
closed form, and the exact B_simple of logistic regression on digits from
per-example gradients.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from lrjax import noise

# Six per-example "gradients" in R^2.
_G = np.array(
  [[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [-2.0, 1.5], [0.0, 0.5], [1.5, 1.0]]
)


def _expected_sq_norm(batch_size):
  """E|mean of a uniform batch without replacement|^2, by enumeration."""
  subsets = list(itertools.combinations(range(len(_G)), batch_size))
  return np.mean([np.sum(_G[list(s)].mean(0) ** 2) for s in subsets])


def _truth():
  mean = _G.mean(0)
  g2 = np.sum(mean**2)
  trace = np.sum((_G - mean) ** 2) / (len(_G) - 1)
  return g2, trace


def test_estimate_is_unbiased_without_replacement_with_correction():
  g2, trace = _truth()
  e2, e4 = _expected_sq_norm(2), _expected_sq_norm(4)
  est_g2, est_tr = noise.estimate(e2, e4, 2, 4, num_examples=len(_G))
  np.testing.assert_allclose(est_g2, g2, rtol=1e-5)
  np.testing.assert_allclose(est_tr, trace, rtol=1e-5)
  # Without the correction |G|^2 is low by exactly tr(Sigma) / N.
  raw_g2, raw_tr = noise.estimate(e2, e4, 2, 4)
  np.testing.assert_allclose(raw_g2, g2 - trace / len(_G), rtol=1e-5)
  np.testing.assert_allclose(raw_tr, trace, rtol=1e-5)


def test_estimate_infinite_population_closed_form():
  # E|G_B|^2 = |G|^2 + tr/B with |G|^2 = 0.3, tr = 12.
  g2, tr = 0.3, 12.0
  small, big = g2 + tr / 4, g2 + tr / 64
  host = noise.estimate(small, big, 4, 64)
  jitted = jax.jit(noise.estimate)(small, big, 4, 64)
  for got in (host, jitted):
    np.testing.assert_allclose(got, (g2, tr), rtol=1e-5)
  assert isinstance(host[0], (np.ndarray, np.floating))
  assert isinstance(jitted[0], jax.Array)


def test_estimate_validates_sizes():
  with pytest.raises(ValueError, match='b_big'):
    noise.estimate(1.0, 1.0, 8, 8)
  with pytest.raises(ValueError, match='b_small'):
    noise.estimate(1.0, 1.0, 0, 8)
  with pytest.raises(ValueError, match='num_examples'):
    noise.estimate(1.0, 1.0, 1, 8, num_examples=1)


_PAIRS = [(10.0, 4.0), (12.0, 5.0), (9.0, 3.5), (11.0, 4.5), (8.0, 4.2)]

# Hand table for the pairs (s, b) above at B_small = 8, B_big = 32 (no
# finite-population correction):
# |G|^2 = (32 b - 8 s) / 24 = (4 b - s) / 3 and tr = (s - b) / (1/8 - 1/32)
# = 32 (s - b) / 3, pair by pair. The bias-corrected EMA with decay 0.8
# after 5 updates weighs them 0.2 * 0.8^(4 - k) = 0.08192, 0.1024, 0.128,
# 0.16, 0.2, divided by their sum 1 - 0.8^5 = 0.67232.
_G2 = np.array([6.0, 8.0, 5.0, 7.0, 8.8]) / 3
_TR = 32 * np.array([6.0, 7.0, 5.5, 6.5, 3.8]) / 3
_W = np.array([0.08192, 0.1024, 0.128, 0.16, 0.2]) / 0.67232
# = (1.61024, 39.59808) / 0.67232, so B_simple = 39.59808 / 1.61024.
_EMA_G2, _EMA_TR = _W @ _G2, _W @ _TR


def test_state_host_matches_hand_ema():
  state = noise.init()
  assert math.isnan(float(noise.b_simple(state)))
  for s, b in _PAIRS:
    state = noise.update(state, s, b, 8, 32, decay=0.8)
  np.testing.assert_allclose(
    noise.averages(state), (_EMA_G2, _EMA_TR), rtol=1e-5
  )
  np.testing.assert_allclose(
    noise.b_simple(state), 39.59808 / 1.61024, rtol=1e-5
  )
  assert int(state.count) == len(_PAIRS)


def test_first_update_is_bias_corrected():
  state = noise.update(noise.init(), 10.0, 4.0, 8, 32, decay=0.99)
  np.testing.assert_allclose(noise.averages(state), (2.0, 64.0), rtol=1e-5)


def test_state_under_jit_scan_matches_host():
  pairs = jnp.asarray(_PAIRS, jnp.float32)

  @jax.jit
  def run(pairs):
    def body(state, p):
      return noise.update(state, p[0], p[1], 8, 32, decay=0.8), None

    state, _ = jax.lax.scan(
      body, jax.tree.map(jnp.asarray, noise.init()), pairs
    )
    return state, noise.b_simple(state)

  state, b = run(pairs)
  np.testing.assert_allclose(b, 39.59808 / 1.61024, rtol=1e-5)
  assert int(state.count) == len(_PAIRS)


def test_b_simple_nan_when_g2_not_positive():
  # |G_small|^2 = |G_big|^2 * B_big / B_small gives g2 = 0.
  state = noise.update(noise.init(), 4.0, 1.0, 8, 32)
  assert math.isnan(float(noise.b_simple(state)))


def test_update_validates_decay():
  with pytest.raises(ValueError, match='decay'):
    noise.update(noise.init(), 2.0, 1.0, 1, 2, decay=1.0)


def test_sliced_sq_norms_least_squares():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(12, 3)).astype(np.float32)
  y = rng.normal(size=12).astype(np.float32)
  w = np.array([0.5, -1.0, 2.0], np.float32)

  def loss(w, batch):
    xb, yb = batch
    return 0.5 * jnp.mean((xb @ w - yb) ** 2)

  def hand_grad(xb, yb):
    return xb.T @ (xb @ w - yb) / len(yb)

  r = jax.jit(lambda w, b: noise.sliced_sq_norms(jax.grad(loss), w, b, 3))(
    w, (x, y)
  )
  slices = [hand_grad(x[i : i + 4], y[i : i + 4]) for i in (0, 4, 8)]
  full = hand_grad(x, y)
  np.testing.assert_allclose(r.grad, full, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    r.sq_norm_small, np.mean([np.sum(g**2) for g in slices]), rtol=1e-5
  )
  np.testing.assert_allclose(r.sq_norm_big, np.sum(full**2), rtol=1e-5)
  assert (r.b_small, r.b_big) == (4, 12)


def test_sliced_sq_norms_validates():
  f = jax.grad(lambda w, x: jnp.mean(w * x))
  with pytest.raises(ValueError, match='num_slices'):
    noise.sliced_sq_norms(f, 1.0, jnp.ones(6), 4)
  with pytest.raises(ValueError, match='num_slices'):
    noise.sliced_sq_norms(f, 1.0, jnp.ones(6), 1)


@pytest.mark.parametrize(
  'sizes, expected',
  [
    ([32, 96], 4),  # 4 divides both
    ([32, 90], 2),  # 90 = 2 * 45
    ([33, 66], 1),  # 33 is odd: no slicing
    ([8], 4),
  ],
)
def test_slice_count_is_the_largest_of_4_2_1_dividing_every_batch(
  sizes, expected
):
  assert noise.slice_count(sizes) == expected


def test_slice_count_of_micro_batches():
  # Batch 6, at most 4 a device: micro-batch 3 (the largest divisor <= 4),
  # which only 1 divides; the batch itself takes 2.
  assert noise.slice_count([6], max_device_batch=4) == 1
  assert noise.slice_count([6]) == 2
  # Batch 24 on 2 devices, at most 6 each: 12 per device, micro-batch 6.
  assert noise.slice_count([24], num_devices=2, max_device_batch=6) == 2
  # Batches 16 and 48 on one device, at most 16: micro-batches 16 and 16.
  assert noise.slice_count([16, 48], max_device_batch=16) == 4


def test_slice_count_checks_a_given_count():
  assert noise.slice_count([32, 90], 2) == 2
  assert noise.slice_count([33], 3) == 3
  with pytest.raises(
    ValueError, match=r'noise_slices=4 must divide every batch size \[32, 90\]'
  ):
    noise.slice_count([90, 32, 90], 4, name='noise_slices')
  with pytest.raises(
    ValueError, match=r'num_slices=4 must divide every micro-batch \[3\]'
  ):
    noise.slice_count([6], 4, max_device_batch=4)
  with pytest.raises(ValueError, match='num_slices=-1 must be >= 0'):
    noise.slice_count([32], -1)
  with pytest.raises(ValueError, match='batch_sizes is empty'):
    noise.slice_count([])


def test_exact_matches_numpy():
  g2, trace = _truth()
  got = noise.exact({'a': jnp.asarray(_G[:, :1]), 'b': jnp.asarray(_G[:, 1])})
  np.testing.assert_allclose(got, (g2, trace, trace / g2), rtol=1e-5)


# Digits, multinomial logistic regression: the tracker against exact B_simple.


def _digits_loss(w, batch):
  x, t = batch
  logits = x @ w['W'] + w['b']
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, t))


@pytest.fixture(scope='module')
def digits_logreg():
  x, y = load_digits(return_X_y=True)
  x = jnp.asarray(x / 16.0, jnp.float32)
  y = jnp.asarray(y, jnp.int32)
  grad = jax.grad(_digits_loss)

  @jax.jit
  def descend(w):  # move off the symmetric start: 20 full-batch GD steps
    def body(_, w):
      return jax.tree.map(lambda p, g: p - 0.5 * g, w, grad(w, (x, y)))

    return jax.lax.fori_loop(0, 20, body, w)

  w = descend({'W': jnp.zeros((64, 10)), 'b': jnp.zeros(10)})
  per_example = jax.vmap(jax.grad(_digits_loss), in_axes=(None, 0))(
    w, (x[:, None], y[:, None])
  )
  return x, y, w, noise.exact(per_example)


@pytest.fixture(scope='module')
def digits_pairs(digits_logreg):
  """Squared norms of 500 (B_small=16, B_big=256) pairs at fixed params."""
  x, y, w, _ = digits_logreg
  n, bs, bb = x.shape[0], 16, 256
  rng = np.random.default_rng(0)
  idx = np.stack([rng.permutation(n)[:bb] for _ in range(500)])

  @jax.jit
  def norms(idx):
    def one(i):
      r = noise.sliced_sq_norms(
        jax.grad(_digits_loss), w, (x[i], y[i]), bb // bs
      )
      return jnp.stack([r.sq_norm_small, r.sq_norm_big])

    return jax.vmap(one)(idx)

  return norms(idx), bs, bb, n


def _track(pairs, bs, bb, num_examples):
  @jax.jit
  def run(pairs):
    def body(state, p):
      state = noise.update(state, p[0], p[1], bs, bb, 0.998, num_examples)
      return state, None

    init = jax.tree.map(jnp.asarray, noise.init())
    state, _ = jax.lax.scan(body, init, pairs)
    return noise.b_simple(state)

  return float(run(pairs))


def test_tracker_within_10_percent_of_exact(digits_logreg, digits_pairs):
  *_, (_, _, exact_b) = digits_logreg
  pairs, bs, bb, n = digits_pairs
  assert 100 < float(exact_b) < 200  # well inside (bs, N): a fair test
  est = _track(pairs, bs, bb, num_examples=n)
  # Observed about 1%; 5% leaves room for the sampling noise of 500 pairs.
  assert abs(est / float(exact_b) - 1) < 0.05


def test_uncorrected_tracker_shows_finite_population_bias(
  digits_logreg, digits_pairs
):
  *_, (g2, trace, _) = digits_logreg
  pairs, bs, bb, n = digits_pairs
  est = _track(pairs, bs, bb, num_examples=None)
  # Without the correction the |G|^2 average converges to |G|^2 - tr/N.
  biased = float(trace) / (float(g2) - float(trace) / n)
  assert abs(est / biased - 1) < 0.05


# Adaptive batch policy.


def test_realisable_sizes():
  assert noise.realisable_sizes(8, 64) == (8, 16, 32, 64)
  assert noise.realisable_sizes(8, 63) == (8, 16, 32)
  assert noise.realisable_sizes(24, 96, kind='multiple') == (24, 48, 72, 96)
  with pytest.raises(ValueError, match='max_batch_size'):
    noise.realisable_sizes(8, 4)
  with pytest.raises(ValueError, match='kind'):
    noise.realisable_sizes(8, 64, kind='fib')


_SIZES = (32, 64, 128, 256, 512, 1024)


@pytest.mark.parametrize(
  'kwargs,b_simple,current,expected',
  [
    ({}, 300.0, 32, 64),  # growth capped at 2x
    ({}, 300.0, 128, 256),  # round down below the estimate
    ({}, 300.0, 256, 256),  # already there
    ({}, 40.0, 256, 256),  # never shrinks by default
    ({'allow_shrink': True}, 40.0, 256, 32),
    ({'max_growth': math.inf}, 700.0, 32, 512),
    ({'max_growth': math.inf, 'rounding': 'nearest'}, 700.0, 32, 512),
    ({'max_growth': math.inf, 'rounding': 'nearest'}, 800.0, 32, 1024),
    ({'max_growth': math.inf, 'max_batch_size': 300}, 5000.0, 32, 256),
    ({}, float('nan'), 64, 64),  # no estimate yet: keep
    ({}, 10.0, 48, 64),  # unrealisable current: next size above
  ],
)
def test_adaptive_batch_table(kwargs, b_simple, current, expected):
  policy = noise.AdaptiveBatch(sizes=_SIZES, **kwargs)
  assert policy(b_simple, current) == expected


def test_adaptive_batch_validates():
  with pytest.raises(ValueError, match='sizes'):
    noise.AdaptiveBatch(sizes=())
  with pytest.raises(ValueError, match='max_growth'):
    noise.AdaptiveBatch(sizes=_SIZES, max_growth=0.5)
  with pytest.raises(ValueError, match='rounding'):
    noise.AdaptiveBatch(sizes=_SIZES, rounding='up')
  with pytest.raises(ValueError, match='max_batch_size'):
    noise.AdaptiveBatch(sizes=_SIZES, max_batch_size=16)


@settings(max_examples=200, deadline=None)
@given(
  b=st.floats(0.0, 1e6),
  current=st.sampled_from(_SIZES),
  growth=st.floats(1.0, 8.0),
  shrink=st.booleans(),
  cap=st.sampled_from([None, 100, 600]),
)
def test_adaptive_batch_properties(b, current, growth, shrink, cap):
  policy = noise.AdaptiveBatch(
    sizes=_SIZES, max_growth=growth, allow_shrink=shrink, max_batch_size=cap
  )
  nxt = policy(b, current)
  assert nxt in _SIZES
  limit = cap or _SIZES[-1]
  if current <= limit:
    assert nxt <= max(limit, current)
    assert nxt <= growth * current * (1 + 1e-9) or nxt == current
  if not shrink and current <= limit:
    assert nxt >= current
  # Rounding down never overshoots the estimate when it grows.
  if nxt > current:
    assert nxt <= b * (1 + 1e-9)


def test_plot_noise_scale(tmp_path):
  from lrjax.plots import plot_noise_scale

  path = tmp_path / 'noise.png'
  fig = plot_noise_scale(
    [0, 1, 2, 3],
    [float('nan'), 80.0, 120.0, 150.0],
    batch_size=[32, 64, 64, 128],
    exact=([2], [118.0]),
    path=str(path),
  )
  assert path.stat().st_size > 0
  estimate, batch, exact = fig.axes[0].lines
  np.testing.assert_array_equal(estimate.get_xdata(), [1, 2, 3])  # NaN skipped
  np.testing.assert_array_equal(exact.get_ydata(), [118.0])
  assert fig.axes[0].get_yscale() == 'log'


@pytest.mark.parametrize('check_vma', [True, False])
def test_data_parallel_source_matches_slices(check_vma):
  # Per-device gradients (B_small) and their all-reduced mean (B_big) under
  # shard_map over 4 devices give the same norms as 4 slices on one device.
  from jax.sharding import Mesh, PartitionSpec

  mesh = Mesh(np.array(jax.devices()[:4]), ('batch',))
  rng = np.random.default_rng(1)
  x = rng.normal(size=(16, 3)).astype(np.float32)
  y = rng.normal(size=16).astype(np.float32)
  w = np.array([0.5, -1.0, 2.0], np.float32)

  def loss(w, batch):
    return 0.5 * jnp.mean((batch[0] @ w - batch[1]) ** 2)

  def per_device(w, xb, yb):
    if check_vma:
      # Pitfall: with check_vma (the default) the gradient with respect to
      # replicated parameters comes back already summed over devices; cast
      # them to device-varying first to get the per-device gradient.
      w = jax.lax.pcast(w, 'batch', to='varying')
    g = jax.grad(loss)(w, (xb, yb))
    local = noise.sq_norm(g)
    g = jax.lax.pmean(g, 'batch')
    return jax.lax.pmean(local, 'batch'), noise.sq_norm(g)

  spec = PartitionSpec('batch')
  small, big = jax.jit(
    jax.shard_map(
      per_device,
      mesh=mesh,
      in_specs=(PartitionSpec(), spec, spec),
      out_specs=(PartitionSpec(), PartitionSpec()),
      check_vma=check_vma,
    )
  )(w, x, y)
  r = noise.sliced_sq_norms(jax.grad(loss), w, (x, y), 4)
  np.testing.assert_allclose(small, r.sq_norm_small, rtol=1e-5)
  np.testing.assert_allclose(big, r.sq_norm_big, rtol=1e-5)


def test_defaults_benchmark_replays_the_trainers_tracker():
  from benchmarks.bench_noise_defaults import replay

  # Batch 32 in 4 slices, N = 1437. Norms built so that one estimate is
  # exactly |G|^2 = 2, tr(Sigma) = 64: tr = (s - g) / (1/8 - 1/32) needs
  # s - g = 6; |G|^2 = (32 g - 8 s) / 24 + tr / N needs g = 4 - 64 / N.
  n = 1437
  big = np.full(6, 4.0 - 64.0 / n)
  small = big + 6.0
  # The exact values: |G|^2 1, 1, 4, 4, 4, 4 and tr(Sigma) 10 throughout.
  g2 = np.array([1.0, 1.0, 4.0, 4.0, 4.0, 4.0])
  tr = np.full(6, 10.0)
  steps, readings, targets = replay(small, big, g2, tr, 32, 4, 0.5, 2, n)
  # Fed every 2nd update (1-based, as the trainer): updates 2, 4, 6.
  np.testing.assert_array_equal(steps, [1, 3, 5])
  np.testing.assert_allclose(readings, 32.0, rtol=1e-5)
  # EMAs of the exact values at decay 0.5 over updates 2, 4, 6:
  # |G|^2 0.5, 2.25, 3.125; tr 5, 7.5, 8.75 (the bias corrections cancel).
  np.testing.assert_allclose(
    targets, [5 / 0.5, 7.5 / 2.25, 8.75 / 3.125], rtol=1e-12
  )


def test_growth_by_hand():
  # Quarters of 8: medians of (1, 3) and (6, 8) are 2 and 7: ratio 3.5.
  # Ranks 0 2 1 3 4 6 5 7 against 7..0: sum d^2 = 164, so Spearman's
  # rho = 1 - 6 * 164 / (8 * 63) = -20/21.
  ratio, rho = noise.growth([1, 3, 2, 4, 5, 7, 6, 8], [8, 7, 6, 5, 4, 3, 2, 1])
  assert ratio == 3.5
  assert rho == pytest.approx(-20 / 21)
  # NaNs drop their pair: 1, 3, 4, ..., 9 against 8..1 are left, quarter
  # medians 2 and 8.5.
  ratio, rho = noise.growth(
    [1, np.nan, 2, 3, 4, 5, 6, 7, 8, 9], [8, 1, np.nan, 7, 6, 5, 4, 3, 2, 1]
  )
  assert (ratio, rho) == (4.25, pytest.approx(-1.0))
  assert all(map(math.isnan, noise.growth(np.arange(7.0), np.arange(7.0))))
  assert all(map(math.isnan, noise.growth(np.ones(8), np.ones(9))))
