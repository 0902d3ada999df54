"""Sharpness of a minimum: Keskar's eps-sharpness, Hessian spectrum, 1-D plots.

All measurements take the loss as a function ``f(x)`` of a *flat* float32
parameter vector x over a fixed dataset; :func:`flatten` turns a loss of a
parameter pytree into one (via ``jax.flatten_util.ravel_pytree``).

- :func:`eps_sharpness`: the relative rise of the loss over a small box
  around x, in the full space or a random subspace (Keskar et al. 2017).
- :func:`top_eigenvalue` (power iteration) and :func:`hessian_trace`
  (Hutchinson) from Hessian-vector products, never forming the Hessian.
- :func:`interpolate`: metrics along the line (or Keskar's curved path)
  through a small-batch and a large-batch solution.
- On a :class:`lrjax.train.Task`: :func:`task_loss` (its loss as a function
  of the parameters), :func:`task_metrics`, :func:`mean_loss` and
  :func:`measure` (every measurement above at a trained model).

References:
  Keskar, Mudigere, Nocedal, Smelyanskiy, Tang 2017, "On Large-Batch
  Training for Deep Learning: Generalization Gap and Sharp Minima", ICLR.
  Goodfellow, Vinyals, Saxe 2015, "Qualitatively characterizing neural
  network optimization problems", ICLR (1-D interpolation).
  Hutchinson 1989, "A stochastic estimator of the trace of the influence
  matrix for Laplacian smoothing splines".
  Pearlmutter 1994, "Fast exact multiplication by the Hessian".
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

if TYPE_CHECKING:
  from lrjax.train import Task

FlatFn = Callable[[jax.Array], jax.Array]


def flatten(loss_fn: Callable[[Any], Any], params: Any):
  """A loss of a parameter pytree as a function of a flat vector.

  Args:
    loss_fn: ``loss_fn(params) -> scalar`` (close over the dataset).
    params: the parameter pytree to flatten around.

  Returns:
    ``(f, x, unravel)``: ``f(x_flat) = loss_fn(unravel(x_flat))``, the flat
    float32 vector of ``params`` and the inverse of the flattening.

  Examples:
    >>> import jax.numpy as jnp
    >>> f, x, unravel = flatten(lambda p: p['a'] * p['b'].sum(),
    ...                         {'a': 2.0, 'b': jnp.ones(3)})
    >>> print(x.shape, float(f(x)))
    (4,) 6.0
  """
  x, unravel = ravel_pytree(params)
  x = jnp.asarray(x, jnp.float32)
  return (lambda v: loss_fn(unravel(v))), x, unravel


def hvp(f: FlatFn, x: ArrayLike, v: ArrayLike) -> jax.Array:
  """Hessian-vector product by forward-over-reverse differentiation.

  .. math::
    H v = \\frac{\\partial}{\\partial t} \\nabla f(x + t v) \\Big|_{t=0}

  Args:
    f: scalar function of a flat vector.
    x: the point.
    v: the direction (same shape as x).

  Returns:
    :math:`\\nabla^2 f(x) v`.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = lambda x: 0.5 * (3 * x[0] ** 2 + x[1] ** 2) + x[0] * x[1]
    >>> print(hvp(f, jnp.zeros(2), jnp.array([1.0, 0.0])).tolist())
    [3.0, 1.0]

  References:
    Pearlmutter 1994, "Fast exact multiplication by the Hessian".
  """
  return jax.jvp(jax.grad(f), (x,), (v,))[1]


def top_eigenvalue(
  f: FlatFn,
  x: ArrayLike,
  *,
  num_iters: int = 100,
  key: jax.Array | int = 0,
) -> tuple[jax.Array, jax.Array]:
  """Largest-magnitude Hessian eigenvalue by power iteration.

  .. math::
    v_{k+1} = \\frac{H v_k}{\\|H v_k\\|}, \\qquad
    \\lambda = v_K^\\top H v_K

  Converges to the eigenvalue of largest magnitude at the rate
  :math:`|\\lambda_2/\\lambda_1|^k`; near a minimum that is the largest
  (positive) curvature. Runs as one ``lax.fori_loop`` (jit-compatible).

  Args:
    f: scalar function of a flat vector.
    x: the point.
    num_iters: number of Hessian-vector products, >= 1.
    key: PRNG key or integer seed of the random start.

  Returns:
    ``(eigenvalue, eigenvector)`` (the Rayleigh quotient and unit vector).

  Raises:
    ValueError: if ``num_iters < 1``.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = lambda x: 0.5 * jnp.sum(jnp.array([1.0, 4.0, 2.0]) * x ** 2)
    >>> lam, v = top_eigenvalue(f, jnp.ones(3))
    >>> print(f'{float(lam):.4f}')
    4.0000
  """
  if num_iters < 1:
    raise ValueError(f'{num_iters=} must be >= 1')
  x = jnp.asarray(x, jnp.float32)
  if isinstance(key, int):
    key = jax.random.key(key)
  v = jax.random.normal(key, x.shape, jnp.float32)
  v = v / jnp.linalg.norm(v)

  def body(_, v):
    w = hvp(f, x, v)
    return w / jnp.maximum(jnp.linalg.norm(w), 1e-30)

  v = jax.lax.fori_loop(0, num_iters, body, v)
  return jnp.vdot(v, hvp(f, x, v)), v


def hessian_trace(
  f: FlatFn,
  x: ArrayLike,
  *,
  num_samples: int = 100,
  key: jax.Array | int = 0,
) -> jax.Array:
  """Hutchinson's estimate of the Hessian trace with Rademacher probes.

  .. math::
    \\operatorname{tr}(H) = \\mathbb{E}_v[v^\\top H v]
    \\approx \\frac1m \\sum_{j=1}^m v_j^\\top H v_j, \\quad
    v_{j,i} \\in \\{-1, +1\\}

  The variance of one sample is :math:`2 \\sum_{i \\ne k} H_{ik}^2`, so the
  estimate is exact for a diagonal Hessian. Samples run in a ``lax.scan``
  (one HVP in memory at a time).

  Args:
    f: scalar function of a flat vector.
    x: the point.
    num_samples: number m of probe vectors, >= 1.
    key: PRNG key or integer seed.

  Returns:
    The float32 estimate.

  Raises:
    ValueError: if ``num_samples < 1``.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = lambda x: 0.5 * jnp.sum(jnp.array([1.0, 4.0, 2.0]) * x ** 2)
    >>> print(f'{float(hessian_trace(f, jnp.ones(3), num_samples=4)):.4f}')
    7.0000

  References:
    Hutchinson 1989; Avron, Toledo 2011, "Randomized algorithms for
    estimating the trace of an implicit symmetric positive semi-definite
    matrix".
  """
  if num_samples < 1:
    raise ValueError(f'{num_samples=} must be >= 1')
  x = jnp.asarray(x, jnp.float32)
  if isinstance(key, int):
    key = jax.random.key(key)

  def body(total, k):
    v = jax.random.rademacher(k, x.shape, jnp.float32)
    return total + jnp.vdot(v, hvp(f, x, v)), None

  keys = jax.random.split(key, num_samples)
  total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), keys)
  return total / num_samples


class SharpnessResult(NamedTuple):
  """Result of :func:`eps_sharpness`.

  Attributes:
    sharpness: :math:`\\phi_{x,f}(\\epsilon, A)` in percent.
    loss: :math:`f(x)`.
    max_loss: the largest loss found in the box, :math:`f(x + A y^*)`.
    y: the maximiser :math:`y^*` (length n, or p in a subspace).
    bound: the box half-widths :math:`\\epsilon(|(A^+ x)_i| + 1)`.
  """

  sharpness: float
  loss: float
  max_loss: float
  y: np.ndarray
  bound: np.ndarray


def random_subspace(n: int, p: int = 100, seed: int = 0) -> jax.Array:
  """A seeded random n x p matrix with i.i.d. N(0, 1/p) entries.

  Args:
    n: parameter dimension.
    p: subspace dimension, 1 <= p <= n.
    seed: integer seed.

  Returns:
    float32 ``[n, p]``.
  """
  if not 1 <= p <= n:
    raise ValueError(f'{p=} must be in [1, n={n}]')
  a = jax.random.normal(jax.random.key(seed), (n, p), jnp.float32)
  return a / math.sqrt(p)


def eps_sharpness(
  f: FlatFn,
  x: ArrayLike,
  *,
  eps: float = 1e-3,
  subspace: int | ArrayLike | None = None,
  seed: int = 0,
  method: str = 'lbfgsb',
  max_iter: int = 10,
  start: str = 'half_box',
) -> SharpnessResult:
  """Keskar et al.'s eps-sharpness of f at x.

  .. math::
    \\phi_{x,f}(\\epsilon, A) = \\frac{\\max_{y \\in C_\\epsilon}
      f(x + A y) - f(x)}{1 + f(x)} \\times 100,
    \\qquad
    C_\\epsilon = \\{ y : |y_i| \\le \\epsilon (|(A^+ x)_i| + 1) \\}

  with :math:`A = I` (full space, ``subspace=None``) or a random
  :math:`n \\times p` matrix (``subspace=p``, see :func:`random_subspace`,
  or pass the matrix itself); :math:`A^+` is the pseudo-inverse, computed
  from the p x p normal equations. The maximisation starts at ``start``:

  - ``'zero'``: :math:`y_0 = 0`, the definition's own point, so the value
    does not depend on a chosen starting point; at an exact minimum the
    gradient vanishes and a local maximiser does not move (the value is
    then 0, a lower bound like any other);
  - ``'half_box'`` (default): :math:`y_0 = \\tfrac12 b \\odot s` with
    :math:`s_i` the sign of the gradient at y = 0 (a seeded random sign
    where it is zero), which moves off an exact minimum;

  and uses

  - ``'lbfgsb'``: scipy's L-BFGS-B on :math:`-f(x + Ay)` with the box as
    bounds, ``max_iter`` iterations (Keskar et al. used L-BFGS-B with few
    iterations: the value is a lower bound of the true box maximum);
  - ``'pga'``: projected signed-gradient ascent in JAX (one compiled loop),
    :math:`y \\leftarrow \\Pi_C(y + \\tfrac{2.5}{K} b \\odot
    \\operatorname{sign} \\nabla)`, K = ``max_iter`` steps, keeping the
    best iterate.

  Args:
    f: loss of a flat float32 parameter vector over a fixed dataset.
    x: the flat parameters.
    eps: box size, > 0 (Keskar et al.: 1e-3 and 5e-4).
    subspace: None (full space), an int p, or an n x p matrix A.
    seed: seed of the random subspace.
    method: 'lbfgsb' or 'pga'.
    max_iter: iterations of the maximiser, >= 1.
    start: ``'half_box'`` or ``'zero'``, the maximiser's starting point.

  Returns:
    A :class:`SharpnessResult`.

  Raises:
    ValueError: for bad arguments.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = lambda z: 0.5 * jnp.sum(z ** 2)  # f(x) = 0 at x = 0
    >>> r = eps_sharpness(f, jnp.zeros(4), eps=0.1)
    >>> print(f'{r.sharpness:.3f}')  # 0.5 * 4 * 0.1**2 * 100
    2.000
    >>> # From y = 0 at an exact minimum the gradient is 0: no ascent.
    >>> print(eps_sharpness(f, jnp.zeros(4), eps=0.1, start='zero').sharpness)
    0.0

  References:
    Keskar et al. 2017, "On Large-Batch Training for Deep Learning:
    Generalization Gap and Sharp Minima", section 2.2.
  """
  if not eps > 0:
    raise ValueError(f'{eps=} must be > 0')
  if max_iter < 1:
    raise ValueError(f'{max_iter=} must be >= 1')
  if method not in ('lbfgsb', 'pga'):
    raise ValueError(f"{method=} must be 'lbfgsb' or 'pga'")
  if start not in ('half_box', 'zero'):
    raise ValueError(f"{start=} must be 'half_box' or 'zero'")
  x = jnp.asarray(x, jnp.float32)
  n = x.shape[0]
  if subspace is None:
    a = None
    coords = x
  else:
    a = (
      random_subspace(n, subspace, seed)
      if isinstance(subspace, int)
      else jnp.asarray(subspace, jnp.float32)
    )
    if a.ndim != 2 or a.shape[0] != n:
      raise ValueError(f'subspace matrix shape {a.shape} must be ({n}, p)')
    # A^+ x = (A^T A)^{-1} A^T x for A of full column rank.
    coords = jnp.linalg.solve(a.T @ a, a.T @ x)
  bound = eps * (jnp.abs(coords) + 1.0)

  def lift(y):
    return x + (y if a is None else a @ y)

  def g(y):
    return f(lift(y))

  value_and_grad = jax.jit(jax.value_and_grad(g))  # compiled once
  zero = jnp.zeros_like(bound)
  f0, grad0 = value_and_grad(zero)
  f0 = float(f0)
  sign = jnp.sign(grad0)
  coin = jax.random.rademacher(jax.random.key(seed), bound.shape, jnp.float32)
  y0 = (
    zero if start == 'zero' else 0.5 * bound * jnp.where(sign == 0, coin, sign)
  )
  if method == 'lbfgsb':
    y, fmax = _lbfgsb(value_and_grad, bound, y0, max_iter)
  else:
    y, fmax = _pga(g, bound, y0, max_iter)
  fmax = max(fmax, f0)
  return SharpnessResult(
    sharpness=(fmax - f0) / (1.0 + f0) * 100.0,
    loss=f0,
    max_loss=fmax,
    y=np.asarray(y),
    bound=np.asarray(bound),
  )


def _lbfgsb(value_and_grad, bound, y0, max_iter):
  from scipy import optimize  # scikit-learn's dependency; see BUILD.md

  def fun(y):  # minimise -f
    v, d = value_and_grad(jnp.asarray(y, jnp.float32))
    return -float(v), -np.asarray(d, np.float64)

  b = np.asarray(bound, np.float64)
  res = optimize.minimize(
    fun,
    np.asarray(y0, np.float64),
    jac=True,
    method='L-BFGS-B',
    bounds=optimize.Bounds(-b, b),
    options={'maxiter': max_iter},
  )
  y = np.clip(res.x, -b, b).astype(np.float32)
  return y, float(value_and_grad(jnp.asarray(y))[0])


def _pga(g, bound, y0, max_iter):
  step = 2.5 / max_iter * bound
  grad = jax.grad(g)

  @jax.jit
  def run():
    def body(_, carry):
      y, best_y, best = carry
      y = jnp.clip(y + step * jnp.sign(grad(y)), -bound, bound)
      v = g(y)
      better = v > best
      return y, jnp.where(better, y, best_y), jnp.where(better, v, best)

    init = (y0, y0, g(y0))
    _, best_y, best = jax.lax.fori_loop(0, max_iter, body, init)
    return best_y, best

  y, v = run()
  return np.asarray(y), float(v)


class Interpolation(NamedTuple):
  """Result of :func:`interpolate`.

  Attributes:
    alphas: the path parameters.
    metrics: ``{dataset name: {metric name: values over alphas}}``.
    path: 'linear' or 'curved'.
  """

  alphas: np.ndarray
  metrics: dict[str, dict[str, np.ndarray]]
  path: str


def path_point(x_small: Any, x_large: Any, alpha: float, path: str = 'linear'):
  """A point on the path between two parameter pytrees.

  .. math::
    x_{\\mathrm{lin}}(\\alpha) = \\alpha x_l + (1 - \\alpha) x_s, \\qquad
    x_{\\mathrm{curved}}(\\alpha) = \\sin(\\tfrac{\\pi\\alpha}{2}) x_l
      + \\cos(\\tfrac{\\pi\\alpha}{2}) x_s

  Both pass through :math:`x_s` at 0 and :math:`x_l` at 1. The curved path
  is the curvilinear path of Keskar et al.'s appendix as we read it: it
  keeps the norm of the interpolant from dipping between two solutions of
  similar norm (for orthogonal :math:`x_s, x_l` of equal norm it stays on
  the sphere), so a barrier on it is not an artefact of shrinking weights.

  Args:
    x_small: parameters found with small batches (alpha = 0).
    x_large: parameters found with large batches (alpha = 1).
    alpha: the path parameter.
    path: 'linear' or 'curved'.

  Returns:
    The interpolated pytree.

  Examples:
    >>> print(float(path_point(1.0, 3.0, 0.5)), float(path_point(1.0, 3.0, 2.0)))
    2.0 5.0
  """
  if path == 'linear':
    a, b = alpha, 1.0 - alpha
  elif path == 'curved':
    a, b = math.sin(math.pi * alpha / 2), math.cos(math.pi * alpha / 2)
  else:
    raise ValueError(f"{path=} must be 'linear' or 'curved'")
  return jax.tree_util.tree_map(
    lambda xl, xs: a * xl + b * xs, x_large, x_small
  )


def interpolate(
  metrics_fn: Callable[[Any, Any], Mapping[str, ArrayLike]],
  x_small: Any,
  x_large: Any,
  datasets: Mapping[str, Any],
  *,
  alphas: Sequence[float] | None = None,
  path: str = 'linear',
) -> Interpolation:
  """Metrics along the path from a small-batch to a large-batch solution.

  Evaluates ``metrics_fn(path_point(x_small, x_large, a, path), data)`` for
  each alpha (default 31 points in [-1, 2]) and dataset (e.g. train and
  test); see :func:`path_point` for the paths.

  Args:
    metrics_fn: ``(params, data) -> {'loss': ..., 'accuracy': ...}``
      (jitted here).
    x_small: small-batch solution (pytree).
    x_large: large-batch solution (same structure).
    datasets: ``{name: data}`` passed to ``metrics_fn``.
    alphas: path parameters (default ``np.linspace(-1, 2, 31)``).
    path: 'linear' or 'curved'.

  Returns:
    An :class:`Interpolation`.

  Examples:
    >>> import jax.numpy as jnp
    >>> fn = lambda w, d: {'loss': jnp.mean((w - d) ** 2)}
    >>> r = interpolate(fn, 0.0, 2.0, {'train': jnp.array([1.0])},
    ...                 alphas=[0.0, 0.5, 1.0])
    >>> print(r.metrics['train']['loss'].tolist())
    [1.0, 0.0, 1.0]

  References:
    Goodfellow et al. 2015; Keskar et al. 2017, section 2.2.
  """
  alphas = np.asarray(
    np.linspace(-1.0, 2.0, 31) if alphas is None else alphas, np.float64
  )
  if alphas.ndim != 1 or alphas.size == 0:
    raise ValueError(f'{alphas=} must be a non-empty 1-D sequence')
  if path not in ('linear', 'curved'):
    raise ValueError(f"{path=} must be 'linear' or 'curved'")
  fn = jax.jit(metrics_fn)
  out: dict[str, dict[str, list[float]]] = {name: {} for name in datasets}
  for a in alphas:
    params = path_point(x_small, x_large, float(a), path)
    for name, data in datasets.items():
      for k, v in fn(params, data).items():
        out[name].setdefault(k, []).append(float(v))
  metrics = {
    name: {k: np.asarray(v) for k, v in m.items()} for name, m in out.items()
  }
  return Interpolation(alphas=alphas, metrics=metrics, path=path)


def _params_and_state(variables: Mapping[str, Any]) -> tuple[Any, Any]:
  """``(params, model_state)`` of ``{'params': ..., **model_state}``."""
  if 'params' not in variables:
    raise ValueError(
      f'variables with keys {sorted(variables)} have no "params"; give '
      "{'params': params, **model_state} (lrjax.studies.final_variables)"
    )
  return variables['params'], {
    k: v for k, v in variables.items() if k != 'params'
  }


def task_metrics(
  task: Task,
) -> Callable[[Mapping[str, Any], Any], dict[str, jax.Array]]:
  """A task's loss and metrics as a function of its variables, eval mode.

  .. math::
    (\\theta, s), B \\mapsto \\ell\\big(m(\\theta, s, x_B), B\\big)

  with :math:`m` the model in evaluation mode (batch-norm statistics
  :math:`s` as they are, no dropout) and :math:`\\ell` the task's loss and
  metrics (:meth:`lrjax.train.Task.eval_means`). The whole variables are
  one argument, so :func:`interpolate` moves the model state along the path
  too.

  Args:
    task: a :class:`lrjax.train.Task`.

  Returns:
    ``metrics(variables, batch) -> {'loss': ..., **task metrics}``, scalars;
    ``variables`` is ``{'params': params, **model_state}`` (as
    :func:`lrjax.studies.final_variables` returns) and ``batch`` a batch of
    the task's data (``task.train_data.take(indices)``). Jit-compatible.

  Raises:
    ValueError: (when called) for variables without ``'params'``.

  Examples:
    >>> import numpy as np
    >>> from lrjax import train
    >>> # loss = mean((w x - 2 x)^2) = (w - 2)^2, err = mean |w x - 2 x|.
    >>> def loss(y, b):
    ...   d = y - 2 * b['x']
    ...   return (d**2).mean(), {'err': abs(d).mean()}
    >>> task = train.Task(
    ...   model=(lambda key, x: np.zeros(1, np.float32), lambda w, x: w * x),
    ...   loss=loss,
    ...   train_data={'x': np.array([[1.0], [-1.0]], np.float32)},
    ...   inputs='x',
    ... )
    >>> m = task_metrics(task)({'params': np.float32([4.0])},
    ...                        task.train_data.take(np.arange(2)))
    >>> print({k: float(v) for k, v in m.items()})
    {'loss': 4.0, 'err': 2.0}
  """

  def metrics(variables, batch):
    params, model_state = _params_and_state(variables)
    return task.eval_means(params, model_state, batch)

  return metrics


def task_loss(
  task: Task, batch: Any, model_state: Any = None
) -> Callable[[Any], jax.Array]:
  """A task's loss on fixed examples as a function of its parameters.

  .. math::
    L(\\theta) = \\ell\\big(m(\\theta, s, x_B), B\\big)

  the task's mean loss :math:`\\ell` of the model's evaluation-mode outputs
  on the examples :math:`B`, the model state :math:`s` (batch-norm
  statistics) fixed: the function whose sharpness :func:`eps_sharpness`,
  :func:`top_eigenvalue` and :func:`hessian_trace` measure (after
  :func:`flatten`).

  Args:
    task: a :class:`lrjax.train.Task`.
    batch: the examples, a batch of the task's data (e.g. the whole
      training set, ``task.train_data.take(np.arange(task.num_train))``).
    model_state: the model's non-trained state (None: none).

  Returns:
    ``loss(params) -> float32 scalar``, differentiable and jit-compatible.

  Examples:
    >>> import jax
    >>> import numpy as np
    >>> from lrjax import train
    >>> # loss(w) = mean((w x - 2 x)^2) = (w - 2)^2 on x = +-1.
    >>> batch = {'x': np.array([[1.0], [-1.0]], np.float32)}
    >>> task = train.Task(
    ...   model=(lambda key, x: np.zeros(1, np.float32), lambda w, x: w * x),
    ...   loss=lambda y, b: (((y - 2 * b['x']) ** 2).mean(), {}),
    ...   train_data=batch,
    ...   inputs='x',
    ... )
    >>> loss = task_loss(task, batch)
    >>> w = np.float32([3.0])
    >>> print(float(loss(w)), float(jax.grad(loss)(w)[0]))  # 1, 2 (w - 2)
    1.0 2.0
  """
  metrics = task_metrics(task)
  state = dict(model_state or {})

  def loss(params):
    return metrics({'params': params, **state}, batch)['loss']

  return loss


def mean_loss(
  task: Task, batch: Any, *, chunk: int = 1024
) -> Callable[[Mapping[str, Any]], float]:
  """A task's mean loss over many examples, a chunk of them a call.

  .. math::
    L = \\frac{1}{n} \\sum_j n_j L_j

  over chunks :math:`j` of :math:`n_j` examples with mean loss :math:`L_j`
  (:func:`task_metrics`, eval mode), so that the memory of a big model
  stays that of ``chunk`` examples; the mean of the task's loss over all
  :math:`n` examples when that loss is a mean over examples. The sum is
  taken on the host in float64. E.g. the training loss that
  :class:`lrjax.train.LossStop` checks.

  Args:
    task: a :class:`lrjax.train.Task`.
    batch: the examples, a batch of the task's data.
    chunk: examples a call, >= 1 (the last call takes the rest).

  Returns:
    ``loss(variables) -> float`` of ``{'params': ..., **model_state}``
    (compiled once, for the chunk's shape and the rest's).

  Raises:
    ValueError: if ``chunk < 1``.

  Examples:
    >>> import numpy as np
    >>> from lrjax import train
    >>> # loss = mean((w - 2)^2 x^2): 1, 1 and 4 at w = 3, mean 2.
    >>> batch = {'x': np.array([[1.0], [-1.0], [2.0]], np.float32)}
    >>> task = train.Task(
    ...   model=(lambda key, x: np.zeros(1, np.float32), lambda w, x: w * x),
    ...   loss=lambda y, b: (((y - 2 * b['x']) ** 2).mean(), {}),
    ...   train_data=batch,
    ...   inputs='x',
    ... )
    >>> print(mean_loss(task, batch, chunk=2)({'params': np.float32([3.0])}))
    2.0
  """
  if chunk < 1:
    raise ValueError(f'{chunk=} must be >= 1')
  metrics = jax.jit(task_metrics(task))
  n = _num_examples(batch)

  def loss(variables):
    total = 0.0
    for start in range(0, n, chunk):
      rows = operator.itemgetter(slice(start, start + chunk))
      part = jax.tree.map(rows, batch)
      total += float(metrics(variables, part)['loss']) * _num_examples(part)
    return total / n

  return loss


def _num_examples(batch: Any) -> int:
  return int(np.shape(jax.tree.leaves(batch)[0])[0])


#: The box maximisations of :func:`measure` at each eps: in the full space
#: from :math:`y_0 = 0` and from the half box, and in a random subspace from
#: its half box (see :func:`eps_sharpness`).
STARTS = ('zero', 'half_box', 'subspace')


class Measurement(NamedTuple):
  """Result of :func:`measure`.

  Attributes:
    sharpness: ``{(start, eps): phi}``, the eps-sharpness in percent of
      each of :data:`STARTS` measured and each eps.
    top_eigenvalue: the Hessian's top eigenvalue (power iteration).
    loss: the task's loss on the examples, :math:`f(x)`.
    metrics: the task's other metrics on the examples (e.g. accuracy).
    num_examples: how many examples everything was measured on.
  """

  sharpness: dict[tuple[str, float], float]
  top_eigenvalue: float
  loss: float
  metrics: dict[str, float]
  num_examples: int


def measure(
  task: Task,
  variables: Mapping[str, Any],
  batch: Any,
  *,
  eps: Sequence[float] = (1e-3, 5e-4),
  starts: Sequence[str] = STARTS,
  subspace: int = 100,
  max_iter: int = 10,
  hessian_iters: int = 20,
  seed: int = 0,
) -> Measurement:
  """The sharpness of a task's trained model, as Keskar et al. measure it.

  On :math:`f(\\theta) =` :func:`task_loss` of the examples in ``batch``
  (model state fixed, eval mode), at the trained parameters :math:`x`: the
  eps-sharpness

  .. math::
    \\phi_{x,f}(\\epsilon, A) = \\frac{\\max_{y \\in C_\\epsilon}
      f(x + A y) - f(x)}{1 + f(x)} \\times 100

  of each eps and start (:func:`eps_sharpness`, ``max_iter`` L-BFGS-B
  iterations; ``'subspace'``: :math:`A` a random :math:`n \\times p`
  matrix, p = min(``subspace``, n)), the top eigenvalue of
  :math:`\\nabla^2 f(x)` (:func:`top_eigenvalue`), and the task's loss and
  metrics at :math:`x`. Every value is a lower bound of the box maximum's;
  ``'zero'`` is 0 at an exact minimum.

  Args:
    task: a :class:`lrjax.train.Task`.
    variables: the trained ``{'params': params, **model_state}``
      (:func:`lrjax.studies.final_variables`).
    batch: the examples, a batch of the task's data (Keskar et al.: the
      whole training set).
    eps: box sizes, each > 0 (Keskar et al.: 1e-3 and 5e-4).
    starts: which of :data:`STARTS` to measure at each eps.
    subspace: the random subspace's dimension p, >= 1.
    max_iter: iterations of each box maximisation, >= 1.
    hessian_iters: power iterations of the top eigenvalue, >= 1.
    seed: draws the subspace, the coin signs of the half box and the
      power iteration's start.

  Returns:
    A :class:`Measurement`.

  Raises:
    ValueError: for an empty ``eps`` or ``starts``, an unknown start, a
      setting out of its range or variables without ``'params'``.

  Examples:
    >>> import numpy as np
    >>> from lrjax import train
    >>> # f(w) = (w_0^2 + 4 w_1^2) / 2 at its minimum w = 0: Hessian
    >>> # diag(1, 4); from the half box the maximum is the vertex,
    >>> # (0.1^2 + 4 * 0.1^2) / 2 * 100 = 2.5 %; from y = 0 no ascent.
    >>> h = np.float32([1.0, 4.0])
    >>> task = train.Task(
    ...   model=(lambda key, x: np.zeros(2, np.float32), lambda w, x: w),
    ...   loss=lambda w, b: (0.5 * (h * w**2).sum(), {}),
    ...   train_data={'x': np.zeros((3, 1), np.float32)},
    ...   inputs='x',
    ... )
    >>> m = measure(task, {'params': np.zeros(2, np.float32)},
    ...             task.train_data.take(np.arange(3)), eps=(0.1,),
    ...             starts=('zero', 'half_box'))
    >>> print({k: round(v, 4) for k, v in m.sharpness.items()})
    {('zero', 0.1): 0.0, ('half_box', 0.1): 2.5}
    >>> print(round(m.top_eigenvalue, 4), m.loss, m.num_examples)
    4.0 0.0 3

  References:
    Keskar et al. 2017, "On Large-Batch Training for Deep Learning:
    Generalization Gap and Sharp Minima", section 2.2.
  """
  if not eps:
    raise ValueError(f'{eps=} must name at least one box size')
  if not all(e > 0 for e in eps):
    raise ValueError(f'{eps=} must all be > 0')
  if not starts or not set(starts) <= set(STARTS):
    raise ValueError(f'{starts=} must be some of {STARTS}')
  for name, value in (
    ('subspace', subspace),
    ('max_iter', max_iter),
    ('hessian_iters', hessian_iters),
  ):
    if value < 1:
      raise ValueError(f'{name}={value} must be >= 1')
  params, model_state = _params_and_state(variables)
  f, x, _ = flatten(task_loss(task, batch, model_state), params)
  f = jax.jit(f)
  options = {
    'zero': {'start': 'zero'},
    'half_box': {},
    'subspace': {'subspace': min(subspace, x.size)},
  }
  sharpness = {
    (start, e): float(
      eps_sharpness(
        f, x, eps=e, max_iter=max_iter, seed=seed, **options[start]
      ).sharpness
    )
    for e in eps
    for start in starts
  }
  lam, _ = top_eigenvalue(f, x, num_iters=hessian_iters, key=seed)
  metrics = jax.jit(task_metrics(task))(variables, batch)
  return Measurement(
    sharpness=sharpness,
    top_eigenvalue=float(lam),
    loss=float(f(x)),
    metrics={k: float(v) for k, v in metrics.items() if k != 'loss'},
    num_examples=_num_examples(batch),
  )


__all__ = [
  'STARTS',
  'Interpolation',
  'Measurement',
  'SharpnessResult',
  'eps_sharpness',
  'flatten',
  'hessian_trace',
  'hvp',
  'interpolate',
  'mean_loss',
  'measure',
  'path_point',
  'random_subspace',
  'task_loss',
  'task_metrics',
  'top_eigenvalue',
]
