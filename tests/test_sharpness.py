"""Tests for lrjax.sharpness on quadratics with known Hessians.

For f(x + y) = 0.5 y^T H y + g^T y + f0 with diagonal H the box maximum
separates per coordinate: max over |y_i| <= b_i of 0.5 h_i y_i^2 + g_i y_i
is 0.5 h_i b_i^2 + |g_i| b_i at a vertex, or -g_i^2 / (2 h_i) at the interior
stationary point when h_i < 0 and |g_i / h_i| <= b_i, whichever is larger.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import sharpness, train

_X = np.array([1.0, -2.0, 0.5, 0.0, 3.0], np.float32)
_H = np.array([2.0, 1.0, -4.0, 0.5, -1.0], np.float32)
_GR = np.array([0.3, -0.2, 0.1, 0.0, 0.4], np.float32)
_F0 = 0.7


def _quadratic(x0, h, g, f0):
  h, g, x0 = jnp.asarray(h), jnp.asarray(g), jnp.asarray(x0)

  def f(z):
    y = z - x0
    return 0.5 * jnp.sum(h * y * y) + jnp.dot(g, y) + f0

  return f


def _box_max(h, g, b):
  total = 0.0
  for hi, gi, bi in zip(h, g, b, strict=True):
    best = 0.5 * hi * bi**2 + abs(gi) * bi
    if hi < 0 and abs(gi / hi) <= bi:
      best = max(best, -(gi**2) / (2 * hi))
    total += best
  return total


def test_full_space_sharpness_matches_box_maximum():
  eps = 0.1
  b = eps * (np.abs(_X.astype(np.float64)) + 1)
  expected = _box_max(_H, _GR, b) / (1 + _F0) * 100
  # Coordinate 2 has its maximum inside the box: a non-trivial case.
  assert abs(_GR[2] / _H[2]) < b[2]
  r = sharpness.eps_sharpness(
    _quadratic(_X, _H, _GR, _F0), _X, eps=eps, max_iter=200
  )
  np.testing.assert_allclose(r.bound, b, rtol=1e-6)
  np.testing.assert_allclose(r.loss, _F0, rtol=1e-6)
  np.testing.assert_allclose(r.sharpness, expected, rtol=1e-4)


def test_subspace_sharpness_matches_box_maximum():
  # A = [2 e_0, 0.5 e_2]: f(x + A y) is diagonal in y with curvatures
  # (4 h_0, 0.25 h_2), linear terms (2 g_0, 0.5 g_2), A^+ x = (x_0/2, 2 x_2).
  a = np.zeros((5, 2), np.float32)
  a[0, 0], a[2, 1] = 2.0, 0.5
  eps = 0.2
  coords = np.array([_X[0] / 2, 2 * _X[2]], np.float64)
  b = eps * (np.abs(coords) + 1)
  h = np.array([4 * _H[0], 0.25 * _H[2]], np.float64)
  g = np.array([2 * _GR[0], 0.5 * _GR[2]], np.float64)
  expected = _box_max(h, g, b) / (1 + _F0) * 100
  r = sharpness.eps_sharpness(
    _quadratic(_X, _H, _GR, _F0), _X, eps=eps, subspace=a, max_iter=200
  )
  np.testing.assert_allclose(r.bound, b, rtol=1e-5)
  np.testing.assert_allclose(r.sharpness, expected, rtol=1e-4)


def test_pga_exact_on_convex_quadratic():
  # Convex in every coordinate: the maximum is the vertex sign(g) * b, which
  # signed steps of 2.5 b / K reach and clip to exactly.
  h = np.abs(_H)
  g = np.where(_GR == 0, 0.05, _GR).astype(np.float32)
  eps = 0.1
  b = eps * (np.abs(_X.astype(np.float64)) + 1)
  expected = _box_max(h, g, b) / (1 + _F0) * 100
  f = _quadratic(_X, h, g, _F0)
  for method in ('pga', 'lbfgsb'):
    r = sharpness.eps_sharpness(f, _X, eps=eps, method=method, max_iter=20)
    np.testing.assert_allclose(r.sharpness, expected, rtol=1e-4)


def test_random_subspace_default_and_seeded():
  # f(z) = 0.5 (c . z)^2 at x = 0: the box is eps = 1e-3 in every coordinate
  # of y, and f(A y) = 0.5 (w . y)^2 with w = A^T c is largest at the vertex
  # y = eps sign(w): 0.5 (eps |w|_1)^2, a closed form over all 2^100
  # vertices (any other vertex can flip a sign to grow |w . y|).
  c = np.random.default_rng(0).normal(size=200).astype(np.float32)
  cj = jnp.asarray(c)
  r1 = sharpness.eps_sharpness(
    lambda z: 0.5 * jnp.dot(cj, z) ** 2, jnp.zeros(200), subspace=100, seed=3
  )
  assert r1.y.shape == (100,)
  a = sharpness.random_subspace(200, 100, seed=3)
  np.testing.assert_array_equal(a, sharpness.random_subspace(200, 100, 3))
  assert not np.allclose(a, sharpness.random_subspace(200, 100, 4))
  np.testing.assert_allclose(r1.bound, 1e-3, rtol=1e-6)
  w = np.asarray(a, np.float64).T @ c
  expected = 0.5 * (1e-3 * np.abs(w).sum()) ** 2 * 100
  np.testing.assert_allclose(r1.sharpness, expected, rtol=1e-4)
  # The check tells seeds apart: seed 4's subspace has another maximum.
  w4 = np.asarray(sharpness.random_subspace(200, 100, 4), np.float64).T @ c
  assert abs(np.abs(w4).sum() / np.abs(w).sum() - 1) > 1e-3


def test_sharpness_validates():
  f = _quadratic(_X, _H, _GR, _F0)
  with pytest.raises(ValueError, match='eps'):
    sharpness.eps_sharpness(f, _X, eps=0.0)
  with pytest.raises(ValueError, match='method'):
    sharpness.eps_sharpness(f, _X, method='adam')
  with pytest.raises(ValueError, match='subspace'):
    sharpness.eps_sharpness(f, _X, subspace=np.ones((4, 2)))
  with pytest.raises(ValueError, match='p='):
    sharpness.random_subspace(5, 6)


def _dense_hessian(eigs, seed=0):
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigs),) * 2))
  return (q * np.asarray(eigs)) @ q.T, q


def test_hvp_matches_matrix():
  h, _ = _dense_hessian([5.0, 3.0, 1.0, -0.5, 0.2])
  hj = jnp.asarray(h, jnp.float32)
  f = lambda x: 0.5 * x @ hj @ x + jnp.sum(x**3) / 6  # noqa: E731
  x = np.array([0.1, -0.2, 0.3, 0.0, 1.0], np.float32)
  v = np.array([1.0, 2.0, -1.0, 0.5, 0.0], np.float32)
  # Hessian of sum(x^3)/6 is diag(x).
  np.testing.assert_allclose(
    sharpness.hvp(f, x, v), (h + np.diag(x)) @ v, rtol=1e-5, atol=1e-5
  )


def test_top_eigenvalue_dense_under_jit():
  eigs = [5.0, 3.0, 1.0, -0.5, 0.2]
  h, q = _dense_hessian(eigs)
  hj = jnp.asarray(h, jnp.float32)
  f = lambda x: 0.5 * x @ hj @ x + x[0]  # noqa: E731
  lam, v = jax.jit(lambda x: sharpness.top_eigenvalue(f, x, num_iters=100))(
    jnp.ones(5)
  )
  # Error decays as (3/5)^100 ~ 1e-22: only float32 rounding remains.
  np.testing.assert_allclose(lam, 5.0, rtol=1e-5)
  assert abs(float(jnp.dot(v, jnp.asarray(q[:, 0], jnp.float32)))) > 1 - 1e-5


def test_hessian_trace_diagonal_exact():
  h = np.array([1.0, -2.0, 3.5, 0.25], np.float32)
  f = lambda x: 0.5 * jnp.sum(h * x**2) + jnp.sum(x)  # noqa: E731
  # v^T H v = sum_i h_i v_i^2 = tr(H) for every Rademacher v.
  est = sharpness.hessian_trace(f, jnp.ones(4), num_samples=3, key=1)
  np.testing.assert_allclose(est, h.sum(), rtol=1e-6)


def test_hessian_trace_dense_within_sampling_error():
  h, _ = _dense_hessian([5.0, 3.0, 1.0, -0.5, 0.2], seed=1)
  hj = jnp.asarray(h, jnp.float32)
  f = lambda x: 0.5 * x @ hj @ x  # noqa: E731
  m = 4000
  est = float(sharpness.hessian_trace(f, jnp.zeros(5), num_samples=m, key=0))
  # Var(v^T H v) = 2 sum_{i != k} H_ik^2: allow 4 standard errors.
  off = h - np.diag(np.diag(h))
  se = math.sqrt(2 * np.sum(off**2) / m)
  assert abs(est - np.trace(h)) < 4 * se
  assert se < 0.1  # and the bound is informative


def test_flatten_roundtrip():
  params = {'w': jnp.arange(6.0).reshape(2, 3), 'b': jnp.array([1.0, 2.0])}
  f, x, unravel = sharpness.flatten(
    lambda p: jnp.sum(p['w'] ** 2) + jnp.sum(p['b']), params
  )
  assert x.shape == (8,)
  np.testing.assert_allclose(f(x), 55.0 + 3.0)
  np.testing.assert_array_equal(unravel(x)['w'], params['w'])


def test_interpolate_linear_and_curved():
  xs = {'w': jnp.array([1.0, 0.0])}
  xl = {'w': jnp.array([0.0, 2.0])}

  def metrics(p, target):
    return {
      'loss': jnp.sum((p['w'] - target) ** 2),
      'accuracy': jnp.sum(p['w']),
    }

  alphas = [-1.0, 0.0, 0.5, 1.0, 2.0]
  data = {'train': jnp.zeros(2), 'test': jnp.ones(2)}
  r = sharpness.interpolate(metrics, xs, xl, data, alphas=alphas)
  a = np.asarray(alphas)
  w = np.stack([1 - a, 2 * a], axis=1)
  np.testing.assert_allclose(r.metrics['train']['loss'], (w**2).sum(1), 1e-6)
  np.testing.assert_allclose(
    r.metrics['test']['loss'], ((w - 1) ** 2).sum(1), 1e-6
  )
  np.testing.assert_allclose(r.metrics['train']['accuracy'], w.sum(1), 1e-6)
  c = sharpness.interpolate(metrics, xs, xl, data, alphas=alphas, path='curved')
  wc = np.stack([np.cos(np.pi * a / 2), 2 * np.sin(np.pi * a / 2)], axis=1)
  np.testing.assert_allclose(
    c.metrics['train']['loss'], (wc**2).sum(1), rtol=1e-5, atol=1e-6
  )
  assert c.path == 'curved'
  default = sharpness.interpolate(metrics, xs, xl, {'train': jnp.zeros(2)})
  np.testing.assert_allclose(default.alphas, np.linspace(-1, 2, 31))
  with pytest.raises(ValueError, match='path'):
    sharpness.interpolate(metrics, xs, xl, data, path='spline')


def test_plot_interpolation(tmp_path):
  from lrjax.plots import plot_interpolation

  r = sharpness.Interpolation(
    np.linspace(-1, 2, 4),
    {
      'train': {'loss': np.arange(4.0), 'accuracy': np.ones(4)},
      'test': {'loss': np.arange(4.0) + 1, 'accuracy': np.zeros(4)},
    },
    'linear',
  )
  path = tmp_path / 'interp.png'
  fig = plot_interpolation(r, path=str(path))
  assert path.stat().st_size > 0
  assert [ax.get_ylabel() for ax in fig.axes] == ['loss', 'accuracy']
  np.testing.assert_array_equal(
    fig.axes[0].lines[1].get_ydata(), np.arange(4.0) + 1
  )


@pytest.fixture(scope='module')
def digits_logreg():
  from sklearn.datasets import load_digits

  x, y = load_digits(return_X_y=True)
  x = jnp.asarray(x[:500] / 16.0, jnp.float32)
  y = jnp.asarray(y[:500], jnp.int32)
  rng = np.random.default_rng(0)
  params = {
    'W': jnp.asarray(0.1 * rng.normal(size=(64, 10)), jnp.float32),
    'b': jnp.zeros(10),
  }

  def loss(p):
    logits = x @ p['W'] + p['b']
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  f, x0, _ = sharpness.flatten(loss, params)
  f = jax.jit(f)
  dense = np.asarray(jax.jit(jax.hessian(f))(x0), np.float64)
  return f, x0, dense


def test_real_model_hessian_against_dense(digits_logreg):
  f, x0, dense = digits_logreg
  top = np.max(np.abs(np.linalg.eigvalsh(dense)))
  lam, _ = jax.jit(lambda z: sharpness.top_eigenvalue(f, z, num_iters=100))(x0)
  np.testing.assert_allclose(lam, top, rtol=1e-4)
  m = 200
  tr = jax.jit(lambda z: sharpness.hessian_trace(f, z, num_samples=m))(x0)
  off = dense - np.diag(np.diag(dense))
  se = math.sqrt(2 * np.sum(off**2) / m)
  assert abs(float(tr) - np.trace(dense)) < 4 * se


def test_real_model_sharpness_between_bounds(digits_logreg):
  f, x0, dense = digits_logreg
  eps = 1e-3
  r = sharpness.eps_sharpness(f, x0, eps=eps)
  b = eps * (np.abs(np.asarray(x0, np.float64)) + 1)
  f0 = float(f(x0))
  grad = np.asarray(jax.grad(f)(x0), np.float64)
  # Lower bound: the loss at the box vertex along the gradient's signs.
  vertex = float(f(x0 + jnp.asarray(np.sign(grad) * b, jnp.float32)))
  # Upper bound (second order, exact up to O(eps^3)): |g| . b + l_max |b|^2/2.
  lmax = np.max(np.linalg.eigvalsh(dense))
  upper = np.abs(grad) @ b + 0.5 * lmax * b @ b
  assert r.max_loss >= vertex - 1e-6
  assert r.sharpness <= upper / (1 + f0) * 100 * 1.01
  assert r.sharpness >= (vertex - f0) / (1 + f0) * 100 * 0.99


@pytest.mark.parametrize('start', ['zero', 'half_box'])
def test_eps_sharpness_of_a_linear_loss_from_either_start(start):
  # f(z) = w . z at x = 0: the box |y_i| <= eps (0 + 1) = 0.1 holds the
  # maximum at y = 0.1 sign(w): 0.1 (1 + 2 + 0.5) = 0.35, f(x) = 0, so
  # phi = 0.35 / 1 x 100 = 35, whichever start the ascent leaves from.
  w = jnp.asarray([1.0, -2.0, 0.5])
  r = sharpness.eps_sharpness(
    lambda z: jnp.dot(w, z), jnp.zeros(3), eps=0.1, start=start
  )
  assert r.sharpness == pytest.approx(35.0, rel=1e-5)


def test_eps_sharpness_start_names_the_argument():
  with pytest.raises(ValueError, match='start'):
    sharpness.eps_sharpness(lambda z: z.sum(), jnp.zeros(2), start='one')


# ------------------------------------------------------------ on a task


def _shift_model():
  """out = w x + shift in eval mode (shift: the model state, fixed); in
  training mode out = w x + 100, so a value that used it is far off."""

  def init(key, x):
    del key, x
    return {'w': np.float32(0.0)}, {'shift': np.float32(0.0)}

  def apply(params, model_state, x, *, train, rng):
    del rng
    shift = 100.0 if train else model_state['shift']
    return params['w'] * x + shift, model_state

  return train.Model(init, apply)


def _squared_error(out, batch):
  d = out - batch['y']
  return jnp.mean(d**2), {'err': jnp.mean(jnp.abs(d))}


def _shift_task(x, y):
  return train.Task(
    model=_shift_model(),
    loss=_squared_error,
    train_data={'x': np.float32(x), 'y': np.float32(y)},
    inputs='x',
  )


def test_task_loss_is_eval_mode_with_the_state_fixed():
  # w = 1, shift = 0.5 on x = (1, -1), y = (1, 1): out = (1.5, -0.5),
  # d = (0.5, -1.5): loss (0.25 + 2.25) / 2 = 1.25, dloss/dw = mean(2 d x)
  # = (1 + 3) / 2 = 2.
  task = _shift_task([1.0, -1.0], [1.0, 1.0])
  batch = task.train_data.take(np.arange(2))
  loss = jax.jit(sharpness.task_loss(task, batch, {'shift': 0.5}))
  params = {'w': jnp.float32(1.0)}
  assert float(loss(params)) == 1.25
  assert float(jax.jit(jax.grad(loss))(params)['w']) == 2.0
  # Without a model state there is no shift to read: none is made up.
  with pytest.raises(KeyError, match='shift'):
    sharpness.task_loss(task, batch)(params)


def test_task_metrics_of_the_whole_variables():
  # As above: loss 1.25, err = (0.5 + 1.5) / 2 = 1.
  task = _shift_task([1.0, -1.0], [1.0, 1.0])
  batch = task.train_data.take(np.arange(2))
  metrics = jax.jit(sharpness.task_metrics(task))
  m = metrics({'params': {'w': 1.0}, 'shift': 0.5}, batch)
  assert {k: float(v) for k, v in m.items()} == {'loss': 1.25, 'err': 1.0}
  with pytest.raises(ValueError, match='params'):
    metrics({'w': 1.0, 'shift': 0.5}, batch)


@pytest.mark.parametrize('chunk', [1, 2, 5, 1024])
def test_mean_loss_over_chunks_is_the_mean(chunk):
  # w = 1, shift = 0, y = 0: per-example losses x^2 = 1, 4, 9, 16, 25,
  # mean 55 / 5 = 11 however the examples are chunked (chunk 2: (2 * 2.5 +
  # 2 * 12.5 + 25) / 5).
  x = [1.0, 2.0, 3.0, 4.0, 5.0]
  task = _shift_task(x, [0.0] * 5)
  batch = task.train_data.take(np.arange(5))
  loss = sharpness.mean_loss(task, batch, chunk=chunk)
  assert loss({'params': {'w': 1.0}, 'shift': 0.0}) == 11.0


def test_mean_loss_validates_chunk():
  task = _shift_task([1.0], [0.0])
  with pytest.raises(ValueError, match='chunk=0'):
    sharpness.mean_loss(task, task.train_data.take(np.arange(1)), chunk=0)


def _params_task(loss, n=2, rows=None):
  """A task whose model returns its parameter vector minus the model
  state's shift (eval mode), whatever the inputs."""

  def init(key, x):
    del key, x
    return np.zeros(3, np.float32), {'shift': np.zeros(3, np.float32)}

  def apply(params, model_state, x, *, train, rng):
    del x, rng
    return params - (0.0 if train else model_state['shift']), model_state

  data = {'x': np.zeros((n, 1), np.float32)} if rows is None else rows
  return train.Task(
    model=train.Model(init, apply), loss=loss, train_data=data, inputs='x'
  )


def test_measure_at_a_quadratic_minimum():
  # f(p) = 0.5 sum h (p - s)^2 with s = (1, 1, 1) the model state, at its
  # minimum p = s: f = 0, Hessian diag(1, 4, 2), top eigenvalue 4. The box
  # is b = eps (|p| + 1) = 2 eps; from the half box the maximum is the
  # vertex, 0.5 sum(h) (2 eps)^2 = 0.5 * 7 * 0.04 = 0.14 (x 100 / (1 + 0));
  # from y = 0 the gradient is 0: no ascent, phi = 0.
  h = jnp.asarray([1.0, 4.0, 2.0])

  def loss(out, batch):
    del batch
    return 0.5 * jnp.sum(h * out**2), {'norm': jnp.sum(out**2)}

  task = _params_task(loss, n=3)
  ones = np.ones(3, np.float32)
  m = sharpness.measure(
    task,
    {'params': ones, 'shift': ones},
    task.train_data.take(np.arange(3)),
    eps=(0.1,),
    starts=('zero', 'half_box'),
  )
  assert list(m.sharpness) == [('zero', 0.1), ('half_box', 0.1)]
  assert m.sharpness['zero', 0.1] == 0.0
  assert m.sharpness['half_box', 0.1] == pytest.approx(14.0, rel=1e-5)
  # Power iteration error ~ (2/4)^(2 * 20).
  assert m.top_eigenvalue == pytest.approx(4.0, rel=1e-6)
  assert (m.loss, m.metrics, m.num_examples) == (0.0, {'norm': 0.0}, 3)


def test_measure_of_a_linear_loss_in_full_space_and_subspace():
  # f(p) = cbar . p, cbar = mean of the rows (2, -4, 0), (0, 0, 1)
  # = (1, -2, 0.5), at p = 0: f = 0, a flat Hessian. The box is |y_i| <=
  # eps, the maximum at y = eps sign: full space 100 eps |cbar|_1 = 35 for
  # eps = 0.1, 17.5 for 0.05, from either start; in the subspace
  # f(A y) = (A^T cbar) . y, 100 eps |A^T cbar|_1, A the seeded n x p
  # matrix with p = min(100, 3) = 3.
  rows = {'x': np.zeros((2, 1), np.float32)}
  rows['c'] = np.float32([[2.0, -4.0, 0.0], [0.0, 0.0, 1.0]])

  def loss(out, batch):
    return jnp.mean(batch['c'] @ out), {}

  task = _params_task(loss, rows=rows)
  zeros = np.zeros(3, np.float32)
  m = sharpness.measure(
    task,
    {'params': zeros, 'shift': zeros},
    task.train_data.take(np.arange(2)),
    eps=(0.1, 0.05),
    seed=3,
  )
  cbar = np.array([1.0, -2.0, 0.5])
  a = np.asarray(sharpness.random_subspace(3, 3, seed=3), np.float64)
  subspace = np.abs(a.T @ cbar).sum()
  for eps in (0.1, 0.05):
    for start in ('zero', 'half_box'):
      assert m.sharpness[start, eps] == pytest.approx(350 * eps, rel=1e-5)
    assert m.sharpness['subspace', eps] == pytest.approx(
      100 * eps * subspace, rel=1e-5
    )
  assert len(m.sharpness) == 6
  assert (m.top_eigenvalue, m.loss, m.metrics, m.num_examples) == (
    0.0,
    0.0,
    {},
    2,
  )


@pytest.mark.parametrize(
  'kwargs, match',
  [
    ({'eps': ()}, 'eps'),
    ({'eps': (1e-3, 0.0)}, 'eps'),
    ({'starts': ()}, 'starts'),
    ({'starts': ('zero', 'one')}, 'starts'),
    ({'subspace': 0}, 'subspace=0'),
    ({'max_iter': 0}, 'max_iter=0'),
    ({'hessian_iters': 0}, 'hessian_iters=0'),
  ],
)
def test_measure_validates(kwargs, match):
  task = _params_task(lambda out, batch: (jnp.sum(out), {}))
  zeros = np.zeros(3, np.float32)
  batch = task.train_data.take(np.arange(2))
  with pytest.raises(ValueError, match=match):
    sharpness.measure(task, {'params': zeros, 'shift': zeros}, batch, **kwargs)


def test_measure_names_missing_params():
  task = _params_task(lambda out, batch: (jnp.sum(out), {}))
  with pytest.raises(ValueError, match='params'):
    sharpness.measure(task, {'w': 0.0}, task.train_data.take(np.arange(2)))
