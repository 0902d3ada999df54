"""Learning rate range test: an exploration-based LR policy.

Train for a few hundred updates while the learning rate sweeps from tiny to
huge, record the loss, and read a good LR off the curve: where the loss
falls fastest, a tenth of where it is lowest, or inside its longest valley.
The original parameters are never modified: the sweep trains a copy.

References:
  Smith 2017, "Cyclical Learning Rates for Training Neural Networks", WACV
  (the LR range test). Howard, Gugger 2020, "fastai: A Layered API for Deep
  Learning" (suggestions 'minimum / 10', 'steepest', 'valley').
  Wu, Liu et al. 2019, "Demystifying Learning Rate Policies for High
  Accuracy Training of Deep Neural Networks" (LRBench: formula-, state- and
  exploration-based policies).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

#: The names of :func:`suggest`'s suggestions, in its order.
SUGGESTIONS = ('steepest', 'minimum_over_10', 'valley')


class RangeTestResult(NamedTuple):
  """Result of :func:`lr_range_test`.

  Attributes:
    lrs: the learning rate of each recorded update.
    losses: the loss of each update's batch, before the update.
    smoothed: bias-corrected EMA of ``losses`` (:func:`smooth`); it trails
      them by :func:`ema_lag` updates.
    suggestions: ``{'steepest', 'minimum_over_10', 'valley'}`` -> LR (see
      :func:`suggest`), read off ``smoothed``.
    stopped_early: whether the sweep stopped on divergence.
    beta: the EMA decay that made ``smoothed``.
  """

  lrs: np.ndarray
  losses: np.ndarray
  smoothed: np.ndarray
  suggestions: dict[str, float]
  stopped_early: bool
  beta: float = 0.98


def sweep(
  min_lr: float, max_lr: float, num_steps: int, mode: str = 'exp'
) -> np.ndarray:
  """The learning rates of the sweep.

  .. math::
    \\eta_i = \\eta_{\\min} (\\eta_{\\max}/\\eta_{\\min})^{i/(n-1)}
    \\;\\text{(exp)}, \\qquad
    \\eta_i = \\eta_{\\min} + (\\eta_{\\max} - \\eta_{\\min}) \\frac{i}{n-1}
    \\;\\text{(linear)}, \\qquad i = 0, \\dots, n-1

  Args:
    min_lr: first LR, > 0.
    max_lr: last LR, > min_lr.
    num_steps: n >= 2.
    mode: 'exp' or 'linear'.

  Returns:
    float64 array of n learning rates.

  Raises:
    ValueError: for bad arguments.

  Examples:
    >>> print(sweep(1e-3, 1.0, 4).round(6).tolist())
    [0.001, 0.01, 0.1, 1.0]
    >>> print(sweep(0.1, 0.4, 4, mode='linear').round(6).tolist())
    [0.1, 0.2, 0.3, 0.4]
  """
  if not min_lr > 0:
    raise ValueError(f'{min_lr=} must be > 0')
  if not max_lr > min_lr:
    raise ValueError(f'{max_lr=} must be > min_lr={min_lr}')
  if num_steps < 2:
    raise ValueError(f'{num_steps=} must be >= 2')
  frac = np.arange(num_steps) / (num_steps - 1)
  if mode == 'exp':
    return min_lr * (max_lr / min_lr) ** frac
  if mode == 'linear':
    return min_lr + (max_lr - min_lr) * frac
  raise ValueError(f"{mode=} must be 'exp' or 'linear'")


def smooth(losses: Any, beta: float = 0.98) -> np.ndarray:
  """Bias-corrected exponential moving average.

  .. math::
    m_i = \\beta m_{i-1} + (1 - \\beta) \\ell_i, \\; m_{-1} = 0, \\qquad
    \\bar\\ell_i = m_i / (1 - \\beta^{i+1})

  Args:
    losses: 1-D sequence.
    beta: decay in [0, 1).

  Returns:
    float64 array.

  Examples:
    >>> print(smooth([1.0, 2.0], beta=0.5).tolist())
    [1.0, 1.6666666666666667]
  """
  if not 0.0 <= beta < 1.0:
    raise ValueError(f'{beta=} must be in [0, 1)')
  out, m = [], 0.0
  for i, loss in enumerate(np.asarray(losses, np.float64)):
    m = beta * m + (1 - beta) * loss
    out.append(m / (1 - beta ** (i + 1)))
  return np.asarray(out, np.float64)


def ema_lag(beta: float, step: Any) -> np.ndarray:
  """How many updates the smoothed curve of :func:`smooth` trails by.

  :func:`smooth` at step :math:`i` is a weighted mean of the losses
  :math:`\\ell_{i-j}`, :math:`j = 0, \\dots, i`, with weights proportional
  to :math:`\\beta^j`. Its lag is the weights' mean :math:`j`:

  .. math::
    L_i = \\frac{\\sum_{j=0}^{i} j \\beta^j}{\\sum_{j=0}^{i} \\beta^j}
        = \\frac{\\beta}{1 - \\beta}
          - \\frac{(i + 1) \\beta^{i+1}}{1 - \\beta^{i+1}}

  On losses that change linearly in the update index, the smoothed value
  at step :math:`i` is exactly the loss of step :math:`i - L_i`. The lag
  grows from 0 at the first step to :math:`\\beta / (1 - \\beta)` (49
  updates at fastai's 0.98): on a 100-update sweep the smoothed curve's
  minimum, and the suggestions read off it, sit tens of updates (a large
  factor in LR on an exponential sweep) after the raw losses' features.
  fastai's suggestions were tuned on this lagged curve, so lrjax keeps it
  and states the lag (:func:`lrjax.plots.plot_lr_finder` writes it on the
  figure) instead of drawing a zero-lag smoother whose suggestions would
  differ from fastai's.

  Args:
    beta: the EMA decay in [0, 1).
    step: update index (or array of them), >= 0.

  Returns:
    float64 array of lags in updates, the shape of ``step``.

  Raises:
    ValueError: for ``beta`` outside [0, 1) or a negative step.

  Examples:
    >>> print(ema_lag(0.5, [0, 1, 100]).round(6).tolist())
    [0.0, 0.333333, 1.0]
  """
  if not 0.0 <= beta < 1.0:
    raise ValueError(f'{beta=} must be in [0, 1)')
  i = np.asarray(step, np.float64)
  if np.any(i < 0):
    raise ValueError(f'{step=} must be >= 0')
  if beta == 0.0:
    return np.zeros_like(i)
  tail = beta ** (i + 1)
  return beta / (1 - beta) - (i + 1) * tail / (1 - tail)


def suggest(
  lrs: Any,
  smoothed: Any,
  *,
  log_x: bool = True,
  skip_start: int | None = None,
  skip_end: int | None = None,
) -> dict[str, float]:
  """Suggested learning rates from a (smoothed) range-test curve.

  With :math:`n` points and :math:`i^* = \\arg\\min_i \\bar\\ell_i`:

  - ``'minimum_over_10'``: :math:`\\eta_{i^*} / 10`.
  - ``'steepest'``: :math:`\\eta_j` with

    .. math::
      j = \\arg\\min_{a \\le j \\le e} \\frac{d\\bar\\ell}{du}, \\qquad
      e = \\arg\\min_{a \\le i < n - b} \\bar\\ell_i,

    :math:`u = \\log\\eta` (``log_x``) or :math:`u = \\eta`, the
    derivative by second-order central differences on the window
    :math:`[a, e]` (one-sided at its ends, ``numpy.gradient``). The first
    :math:`a` = ``skip_start`` points are the EMA's warm-up, where the
    smoothed loss still averages only a few noisy batches and its slope is
    noise; the last :math:`b` = ``skip_end`` points and everything after
    the window's minimum :math:`e` are the divergence tail. The defaults
    :math:`a = \\lfloor n/10 \\rfloor`, :math:`b = \\lfloor n/20
    \\rfloor` skip 10 and 5 points of a 100-point sweep, as fastai does.
  - ``'valley'``: the longest run :math:`[s, e]` of consecutive strictly
    decreasing values; :math:`\\eta_{s + \\lfloor 2(e - s)/3 \\rfloor}`.

  Args:
    lrs: 1-D learning rates (increasing).
    smoothed: 1-D smoothed losses, same length (>= 2).
    log_x: differentiate with respect to log LR.
    skip_start: points skipped at the start for 'steepest' (>= 0); None
      = :math:`\\lfloor n/10 \\rfloor`.
    skip_end: points skipped at the end for 'steepest' (>= 0); None =
      :math:`\\lfloor n/20 \\rfloor`.

  Returns:
    The three suggestions as Python floats.

  Raises:
    ValueError: for mismatched or too short inputs, or skips that leave
      fewer than 2 points.

  Examples:
    >>> lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    >>> s = suggest(lrs, [2.0, 1.95, 1.0, 0.9, 0.85, 5.0])
    >>> print(s['steepest'], s['minimum_over_10'], s['valley'])
    0.01 0.1 0.01
    >>> # A warm-up artefact at the start: skipped, it no longer wins.
    >>> s = suggest(lrs, [9.0, 2.0, 1.9, 1.0, 0.95, 5.0], skip_start=1)
    >>> print(s['steepest'])
    0.01
  """
  lrs = np.asarray(lrs, np.float64)
  y = np.asarray(smoothed, np.float64)
  if lrs.shape != y.shape or lrs.ndim != 1 or lrs.size < 2:
    raise ValueError(
      f'{lrs.shape=} and {y.shape=} must be equal 1-D shapes of length >= 2'
    )
  n = y.size
  skip_start = n // 10 if skip_start is None else skip_start
  skip_end = n // 20 if skip_end is None else skip_end
  if skip_start < 0 or skip_end < 0 or n - skip_start - skip_end < 2:
    raise ValueError(
      f'{skip_start=} and {skip_end=} must be >= 0 and leave at least 2 of '
      f'the {n} points'
    )
  y_finite = np.where(np.isfinite(y), y, np.inf)
  best = int(np.argmin(y_finite))
  lo, hi = skip_start, n - skip_end
  end = max(lo + int(np.argmin(y_finite[lo:hi])), lo + 1)
  u = np.log(lrs[lo : end + 1]) if log_x else lrs[lo : end + 1]
  slope = np.gradient(y[lo : end + 1], u)
  steepest = lo + int(np.argmin(np.where(np.isfinite(slope), slope, np.inf)))
  start = run_start = 0
  longest = 0
  for i in range(1, len(y)):
    if not y[i] < y[i - 1]:
      run_start = i
    if i - run_start > longest:
      longest, start = i - run_start, run_start
  valley = start + (2 * longest) // 3
  return {
    'steepest': float(lrs[steepest]),
    'minimum_over_10': float(lrs[best] / 10),
    'valley': float(lrs[valley]),
  }


_INJECTED = (
  optax.InjectHyperparamsState,
  optax.InjectStatefulHyperparamsState,
)


def _is_injected(node: Any) -> bool:
  return isinstance(node, _INJECTED)


def _map_injected(fn: Callable[[Any], Any], state: Any) -> Any:
  """Applies ``fn`` to every injected-hyperparameter state, nested ones too.

  ``fn`` sees each node after its ``inner_state`` has been mapped.
  """

  def visit(node):
    if not _is_injected(node):
      return node
    return fn(node._replace(inner_state=_map_injected(fn, node.inner_state)))

  return jax.tree_util.tree_map(visit, state, is_leaf=_is_injected)


def _injected_lrs(state: Any) -> list[Any]:
  """Every ``hyperparams['learning_rate']`` in the state tree."""
  found = []

  def collect(node):
    if 'learning_rate' in node.hyperparams:
      found.append(node.hyperparams['learning_rate'])
    return node

  _map_injected(collect, state)
  return found


def _set_lr(state: Any, lr: jax.Array) -> Any:
  """Sets every ``hyperparams['learning_rate']`` in the state tree to lr."""

  def set_one(node):
    if 'learning_rate' not in node.hyperparams:
      return node
    hp = dict(node.hyperparams)
    hp['learning_rate'] = jnp.asarray(
      lr, jnp.asarray(hp['learning_rate']).dtype
    )
    return node._replace(hyperparams=hp)

  return _map_injected(set_one, state)


def _as_injected(optimizer: Any) -> optax.GradientTransformation:
  if isinstance(optimizer, optax.GradientTransformation):
    return optimizer
  if not callable(optimizer):
    raise TypeError(
      f'{optimizer=} must be a factory lr -> GradientTransformation or an '
      'optax.inject_hyperparams transformation with a learning_rate'
    )
  return optax.inject_hyperparams(
    lambda learning_rate: optimizer(learning_rate)
  )(learning_rate=0.0)


def lr_range_test(
  loss_fn: Callable[[Any, Any], jax.Array],
  params: Any,
  optimizer: Callable[[float], optax.GradientTransformation]
  | optax.GradientTransformation,
  batches: Iterable[Any],
  *,
  min_lr: float = 1e-7,
  max_lr: float = 10.0,
  num_steps: int = 100,
  mode: str = 'exp',
  beta: float = 0.98,
  diverge_factor: float = 4.0,
) -> RangeTestResult:
  """Runs the LR range test and suggests learning rates.

  For :math:`i = 0, 1, \\dots`: take the next batch, record its loss
  :math:`\\ell_i` at the current parameters, then update them with learning
  rate :math:`\\eta_i` (:func:`sweep`). Stop after ``num_steps`` updates,
  when ``batches`` runs out, or on divergence:
  :math:`\\bar\\ell_i > k \\min_{j \\le i} \\bar\\ell_j` (k =
  ``diverge_factor``) or a non-finite loss. The update step is compiled
  once; the LR enters it as an argument through
  ``optax.inject_hyperparams``.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` (mean loss of the batch).
    params: initial parameters (left unchanged).
    optimizer: a factory ``lr -> optax.GradientTransformation`` (e.g.
      ``lambda lr: optax.sgd(lr, momentum=0.9)``), or a transformation
      whose state holds an injected ``learning_rate``
      (``optax.inject_hyperparams``). Every ``hyperparams['learning_rate']``
      in the state tree, nested or wrapped ones included, is set to the
      swept LR before each update, and checked to be in force after it.
    batches: iterable of batches (e.g. the trainer's input pipeline).
    min_lr: first LR.
    max_lr: last LR.
    num_steps: updates in the full sweep.
    mode: 'exp' (default) or 'linear'.
    beta: EMA decay for the smoothed loss (:func:`smooth`).
    diverge_factor: k > 1 of the divergence rule.

  Returns:
    A :class:`RangeTestResult`.

  Raises:
    ValueError: for bad arguments, an empty ``batches``, an optimizer state
      with no injected ``learning_rate``, one whose ``learning_rate`` is
      a schedule (it would override the sweep), or one that accumulates
      gradients (``optax.MultiSteps``).

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> loss = lambda w, b: 0.5 * jnp.sum((w - b) ** 2)  # curvature 1
    >>> batches = [jnp.array([1.0, -1.0]) * (-1) ** i for i in range(100)]
    >>> r = lr_range_test(loss, jnp.full(2, 5.0), optax.sgd, batches,
    ...                   min_lr=1e-3, max_lr=10.0, num_steps=100)
    >>> print(r.stopped_early, len(r.lrs))  # diverges once lr > 2
    True 87
    >>> print(f"{r.suggestions['minimum_over_10']:.3f}")
    0.142

  References:
    Smith 2017, "Cyclical Learning Rates for Training Neural Networks".
  """
  lrs = sweep(min_lr, max_lr, num_steps, mode)
  if not diverge_factor > 1:
    raise ValueError(f'{diverge_factor=} must be > 1')
  tx = _as_injected(optimizer)
  # Copy so that donation or in-place updates elsewhere never reach params.
  work = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), params)
  opt_state = tx.init(work)
  if not _injected_lrs(opt_state):
    raise ValueError(
      'optimizer state has no hyperparams["learning_rate"]: pass a factory '
      'lr -> GradientTransformation or use optax.inject_hyperparams'
    )

  def is_multi(node):
    return isinstance(node, optax.MultiStepsState)

  if any(map(is_multi, jax.tree_util.tree_leaves(opt_state, is_multi))):
    # Accumulation applies one update per k batches: the recorded loss of
    # each batch would not follow the LR of its own update.
    raise ValueError(
      'optimizer accumulates gradients (optax.MultiSteps): pass it without '
      'every_k_schedule; the range test applies one update per batch'
    )

  @jax.jit
  def step(p, state, batch, lr):
    loss, grads = jax.value_and_grad(loss_fn)(p, batch)
    updates, state = tx.update(grads, _set_lr(state, lr), p)
    used = jnp.stack(
      [jnp.asarray(v, jnp.float32) for v in _injected_lrs(state)]
    )
    return optax.apply_updates(p, updates), state, loss, used

  losses, smoothed = [], []
  m, best, stopped = 0.0, math.inf, False
  for i, batch in zip(range(num_steps), batches, strict=False):
    work, opt_state, loss, used = step(work, opt_state, batch, lrs[i])
    used = np.asarray(used)
    if not np.allclose(used, lrs[i], rtol=1e-6, atol=0.0):
      raise ValueError(
        f'optimizer ran update {i} at learning_rate={used.tolist()}, not '
        f'the swept {lrs[i]:.6g}: its learning_rate is a schedule, which '
        'overrides the sweep; pass a float learning_rate (a factory '
        'lr -> GradientTransformation passes the swept one)'
      )
    loss = float(loss)
    losses.append(loss)
    m = beta * m + (1 - beta) * loss
    s = m / (1 - beta ** (i + 1))
    smoothed.append(s)
    best = min(best, s)
    if not math.isfinite(loss) or s > diverge_factor * best:
      stopped = True
      break
  if not losses:
    raise ValueError('batches yielded no batch')
  n = len(losses)
  smoothed_ = np.asarray(smoothed, np.float64)
  suggestions = (
    suggest(lrs[:n], smoothed_, log_x=mode == 'exp')
    if n >= 2
    else {k: float('nan') for k in SUGGESTIONS}
  )
  return RangeTestResult(
    lrs=lrs[:n],
    losses=np.asarray(losses, np.float64),
    smoothed=smoothed_,
    suggestions=suggestions,
    stopped_early=stopped,
    beta=beta,
  )


__all__ = [
  'SUGGESTIONS',
  'RangeTestResult',
  'ema_lag',
  'lr_range_test',
  'smooth',
  'suggest',
  'sweep',
]
