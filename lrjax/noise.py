"""Gradient noise scale B_simple (McCandlish et al. 2018, appendix A).

The simple noise scale of a loss with true gradient G and per-example gradient
covariance Sigma is

.. math::
  \\mathcal{B}_{\\mathrm{simple}} = \\frac{\\operatorname{tr}(\\Sigma)}{|G|^2}.

A gradient averaged over a batch of B examples has
:math:`\\mathbb{E}|G_B|^2 = |G|^2 + \\operatorname{tr}(\\Sigma) / B`, so two
squared norms at batch sizes :math:`B_s < B_b` give unbiased estimates of
both quantities (:func:`estimate`). Single estimates are very noisy: keep an
exponential moving average of each (:class:`NoiseScaleState`,
:func:`update`) and report the ratio of the averages (:func:`b_simple`).

Sources of the two batch sizes:

- Data parallel over R devices, per-device batch b: ``B_small = b`` and
  ``sq_norm_small`` = mean over devices of each device's squared gradient
  norm (``lax.pmean`` of the local ``sq_norm``); ``B_big = R b`` and
  ``sq_norm_big`` = squared norm of the all-reduced gradient. Nearly free.
  :func:`data_parallel_grad` computes both inside ``jax.pmap`` or
  ``jax.shard_map`` (:func:`data_parallel_sq_norms` from gradients already
  computed). Under ``jax.shard_map`` with ``check_vma=True`` (the
  default), ``jax.grad`` with respect to *replicated* parameters returns
  the gradient already summed over devices: ``data_parallel_grad`` casts
  the parameters to varying first, and ``data_parallel_sq_norms`` raises
  on such a reduced gradient instead of returning B_simple = 0.
- One device: split the batch into k equal slices, compute the slice
  gradients together with ``vmap`` (:func:`sliced_sq_norms`): ``B_small =
  B / k``, ``sq_norm_small`` = mean over slices, ``B_big = B`` with the mean
  of the slice gradients. Costs k per-slice backward passes in one program
  and k gradient-sized buffers.
- Gradient accumulation over K micro-batches of size b: ``B_small = b``,
  ``sq_norm_small`` = mean over micro-batches of their squared norms (add
  each one's norm as it is accumulated), ``B_big = K b``, ``sq_norm_big`` =
  squared norm of the accumulated (mean) gradient. With R devices as well,
  ``B_small`` is the per-device micro-batch and ``B_big = R K b``.

In each case the slices are disjoint, equally sized parts of the big batch,
and gradients are of the *mean* loss over their examples.

Smith et al.'s analytic SGD noise scale :math:`g = \\epsilon (N/B - 1)/(1 -
m)` (:func:`lrjax.rules.noise_scale`) is a different quantity: it measures
the noise the *optimizer* injects at a learning rate; B_simple measures the
batch size at which the *gradient* noise equals its signal, and the batch
size beyond which larger batches return less per example (McCandlish et
al.'s critical batch size is close to it). Log both side by side.

Batch size policy: :class:`AdaptiveBatch` grows the batch toward the measured
B_simple, rounded to a few realisable sizes so few shapes are compiled.

References:
  McCandlish, Kaplan, Amodei and the OpenAI Dota Team 2018, "An Empirical
  Model of Large-Batch Training", arXiv:1812.06162, appendix A.
  Smith, Kindermans, Ying, Le 2018, "Don't Decay the Learning Rate, Increase
  the Batch Size", ICLR.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from lrjax import batch as lbatch


def _xp(*args: Any):
  """jax.numpy when any argument is a jax array (or tracer), else numpy."""
  leaves = jax.tree_util.tree_leaves(args)
  return jnp if any(isinstance(x, jax.Array) for x in leaves) else np


def _check_sizes(b_small: Any, b_big: Any) -> None:
  """Validates concrete batch sizes; traced sizes are trusted."""
  try:
    bs, bb = float(b_small), float(b_big)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return
  if not bs > 0:
    raise ValueError(f'{b_small=} must be > 0')
  if not bb > bs:
    raise ValueError(f'{b_big=} must be > b_small={b_small}')


def sq_norm(tree: Any) -> jax.Array:
  """Squared L2 norm of a pytree of arrays, accumulated in float32.

  .. math::
    |g|^2 = \\sum_{\\ell} \\sum_i g_{\\ell, i}^2

  Args:
    tree: pytree of arrays (e.g. gradients).

  Returns:
    float32 scalar.

  Examples:
    >>> import jax.numpy as jnp
    >>> print(float(sq_norm({'a': jnp.array([3.0]), 'b': jnp.array([4.0])})))
    25.0
  """
  leaves = jax.tree_util.tree_leaves(tree)
  return sum(
    (jnp.sum(jnp.square(jnp.asarray(x, jnp.float32))) for x in leaves),
    jnp.zeros((), jnp.float32),
  )


def estimate(
  sq_norm_small: ArrayLike,
  sq_norm_big: ArrayLike,
  b_small: ArrayLike,
  b_big: ArrayLike,
  num_examples: int | None = None,
) -> tuple[Any, Any]:
  """Unbiased estimates of |G|^2 and tr(Sigma) from two batch sizes.

  .. math::
    |\\mathcal{G}|^2 = \\frac{B_b |G_{B_b}|^2 - B_s |G_{B_s}|^2}{B_b - B_s},
    \\qquad
    \\mathcal{S} = \\frac{|G_{B_s}|^2 - |G_{B_b}|^2}{1/B_s - 1/B_b}

  Both follow from :math:`\\mathbb{E}|G_B|^2 = |G|^2 + \\operatorname{tr}
  (\\Sigma)/B`. Either estimate may be negative for one pair of batches;
  averages over many pairs converge. With the small batches being disjoint
  slices of a big batch drawn without replacement from N examples,
  :math:`\\mathcal{S}` is unbiased for the sample covariance (divisor N - 1)
  and :math:`|\\mathcal{G}|^2` is low by :math:`\\operatorname{tr}
  (\\Sigma)/N`.

  Works on Python/numpy floats (host) and on jax arrays (under jit).

  Args:
    sq_norm_small: :math:`|G_{B_s}|^2`, the squared norm of a gradient over
      B_small examples (or the mean of several such squared norms).
    sq_norm_big: :math:`|G_{B_b}|^2` over B_big examples.
    b_small: the small batch size, > 0.
    b_big: the big batch size, > b_small.
    num_examples: the dataset size N for the finite-population correction
      (None: the infinite-population formulas above).

  Returns:
    ``(g2, trace)``: the estimates of :math:`|G|^2` and
    :math:`\\operatorname{tr}(\\Sigma)`.

  Raises:
    ValueError: for concrete batch sizes with ``b_big <= b_small`` or
      ``b_small <= 0``.

  Examples:
    >>> # |G|^2 = 2, tr(Sigma) = 64: E|G_8|^2 = 10, E|G_32|^2 = 4.
    >>> g2, tr = estimate(10.0, 4.0, 8, 32)
    >>> print(f'{g2:.3f} {tr:.3f}')
    2.000 64.000

  References:
    McCandlish et al. 2018, "An Empirical Model of Large-Batch Training",
    appendix A.1.
  """
  _check_sizes(b_small, b_big)
  xp = _xp(sq_norm_small, sq_norm_big, b_small, b_big)
  dtype = xp.float32
  s = xp.asarray(sq_norm_small, dtype)
  b = xp.asarray(sq_norm_big, dtype)
  bs = xp.asarray(b_small, dtype)
  bb = xp.asarray(b_big, dtype)
  g2 = (bb * b - bs * s) / (bb - bs)
  trace = (s - b) / (1 / bs - 1 / bb)
  if num_examples is not None:
    if num_examples < 2:
      raise ValueError(f'{num_examples=} must be >= 2 (or None)')
    g2 = g2 + trace / xp.asarray(num_examples, dtype)
  return g2, trace


class NoiseScaleState(NamedTuple):
  """Moving averages of the two unbiased estimates.

  Attributes:
    g2: exponential moving average of the :math:`|G|^2` estimates (biased
      toward its zero start; :func:`averages` corrects it).
    trace: exponential moving average of the :math:`\\operatorname{tr}
      (\\Sigma)` estimates.
    weight: total weight of the averages, :math:`1 - \\prod_t \\beta_t`
      (the bias correction; 0 before the first update).
    count: number of updates.
  """

  g2: Any
  trace: Any
  weight: Any
  count: Any


def init() -> NoiseScaleState:
  """The empty state (float32 / int32 numpy scalars: host- and jit-usable).

  Returns:
    A :class:`NoiseScaleState` of zeros.
  """
  z = np.float32(0.0)
  return NoiseScaleState(g2=z, trace=z, weight=z, count=np.int32(0))


def update(
  state: NoiseScaleState,
  sq_norm_small: ArrayLike,
  sq_norm_big: ArrayLike,
  b_small: ArrayLike,
  b_big: ArrayLike,
  decay: ArrayLike = 0.95,
  num_examples: int | None = None,
) -> NoiseScaleState:
  """Adds one pair of squared norms to the moving averages.

  .. math::
    m_t = \\beta m_{t-1} + (1 - \\beta) x_t, \\qquad
    w_t = \\beta w_{t-1} + (1 - \\beta), \\qquad
    \\hat m_t = m_t / w_t

  separately for :math:`x = |\\mathcal{G}|^2` and :math:`x = \\mathcal{S}`
  (:func:`estimate`); :math:`w_t = 1 - \\beta^t` for a constant decay.

  Works under ``jax.jit`` (jax arrays in, jax arrays out) and on the host
  (numpy / Python floats in, numpy out).

  Args:
    state: the previous state (from :func:`init` or :func:`update`).
    sq_norm_small: squared gradient norm at the small batch size.
    sq_norm_big: squared gradient norm at the big batch size.
    b_small: the small batch size.
    b_big: the big batch size.
    decay: the EMA decay :math:`\\beta` in [0, 1).
    num_examples: the dataset size N when the batches are drawn without
      replacement (finite-population correction, see :func:`estimate`);
      None for the infinite-population formulas.

  Returns:
    The new state.

  Raises:
    ValueError: for a concrete decay outside [0, 1) or bad batch sizes.

  Examples:
    >>> s = init()
    >>> for small, big in [(10.0, 4.0), (12.0, 5.0)]:
    ...   s = update(s, small, big, 8, 32, decay=0.9)
    >>> print(f'{float(b_simple(s)):.2f}', int(s.count))
    29.61 2
  """
  if isinstance(decay, (int, float)) and not 0.0 <= decay < 1.0:
    raise ValueError(f'{decay=} must be in [0, 1)')
  g2, trace = estimate(sq_norm_small, sq_norm_big, b_small, b_big, num_examples)
  xp = _xp(state, g2, decay)
  beta = xp.asarray(decay, xp.float32)
  one = xp.asarray(1.0, xp.float32)
  return NoiseScaleState(
    g2=beta * xp.asarray(state.g2, xp.float32) + (one - beta) * g2,
    trace=beta * xp.asarray(state.trace, xp.float32) + (one - beta) * trace,
    weight=beta * xp.asarray(state.weight, xp.float32) + (one - beta),
    count=xp.asarray(state.count, xp.int32) + xp.asarray(1, xp.int32),
  )


def averages(state: NoiseScaleState) -> tuple[Any, Any]:
  """Bias-corrected averages ``(g2, trace)``; NaN before the first update.

  .. math::
    \\hat{|G|^2} = m^{G}_t / w_t, \\qquad \\hat{S} = m^{S}_t / w_t
  """
  xp = _xp(state)
  w = xp.asarray(state.weight, xp.float32)
  safe = xp.where(w > 0, w, xp.asarray(1.0, xp.float32))
  nan = xp.asarray(xp.nan, xp.float32)
  g2 = xp.where(w > 0, xp.asarray(state.g2, xp.float32) / safe, nan)
  trace = xp.where(w > 0, xp.asarray(state.trace, xp.float32) / safe, nan)
  return g2, trace


def b_simple(state: NoiseScaleState) -> Any:
  """The noise scale estimate: ratio of the averaged estimates.

  .. math::
    \\hat{\\mathcal{B}}_{\\mathrm{simple}} = \\frac{\\hat S}{\\hat{|G|^2}}

  (The bias corrections cancel in the ratio.) NaN before the first update
  or while the :math:`|G|^2` average is not positive (noise dominates the
  measurement: take more or bigger batches).

  Args:
    state: a :class:`NoiseScaleState`.

  Returns:
    float32 scalar (jax under jit, numpy on the host).

  Examples:
    >>> s = update(init(), 10.0, 4.0, 8, 32)
    >>> print(f'{float(b_simple(s)):.1f}')
    32.0
  """
  xp = _xp(state)
  g2, trace = averages(state)
  ok = g2 > 0
  safe = xp.where(ok, g2, xp.asarray(1.0, xp.float32))
  return xp.where(ok, trace / safe, xp.asarray(xp.nan, xp.float32))


class SlicedNorms(NamedTuple):
  """Result of :func:`sliced_sq_norms`.

  Attributes:
    grad: the gradient of the whole batch (mean of the slice gradients),
      usable for the parameter update.
    sq_norm_small: mean over slices of the slices' squared gradient norms.
    sq_norm_big: squared norm of ``grad``.
    b_small: examples per slice.
    b_big: examples in the batch.
    aux: the per-slice auxiliary outputs stacked on a leading axis (None
      unless ``has_aux``).
  """

  grad: Any
  sq_norm_small: jax.Array
  sq_norm_big: jax.Array
  b_small: int
  b_big: int
  aux: Any = None


def sliced_sq_norms(
  grad_fn: Callable[..., Any],
  params: Any,
  batch: Any,
  num_slices: int,
  *,
  has_aux: bool = False,
) -> SlicedNorms:
  """Squared gradient norms of a batch and of its slices, on one device.

  The batch (a pytree whose leaves share a leading axis of size B) is split
  into ``num_slices`` disjoint equal slices; their gradients are computed
  together with ``jax.vmap``. Because ``grad_fn`` returns the gradient of a
  *mean* loss, the batch gradient is the mean of the slice gradients:

  .. math::
    G_{B} = \\frac1k \\sum_{j=1}^k G^{(j)}_{B/k}, \\quad
    |G_{B_s}|^2 \\approx \\frac1k \\sum_j |G^{(j)}_{B/k}|^2, \\quad
    B_s = B/k, \\; B_b = B.

  Feed the result to :func:`update`. Memory: k gradient-sized buffers.

  Args:
    grad_fn: ``grad_fn(params, batch) -> grads`` (or ``(grads, aux)`` with
      ``has_aux``) of the mean loss over the batch.
    params: the parameters.
    batch: pytree of arrays with a common leading axis B.
    num_slices: k >= 2, a divisor of B.
    has_aux: whether ``grad_fn`` also returns an auxiliary output.

  Returns:
    A :class:`SlicedNorms`.

  Raises:
    ValueError: if ``num_slices < 2`` or does not divide the batch.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> grad_fn = jax.grad(lambda w, x: jnp.mean((x - w) ** 2))
    >>> r = sliced_sq_norms(grad_fn, 0.0, jnp.array([1.0, 3.0, 0.0, 4.0]), 2)
    >>> # slice gradients -4 and -4, batch gradient -4
    >>> print(float(r.sq_norm_small), float(r.sq_norm_big), r.b_small, r.b_big)
    16.0 16.0 2 4
  """
  leaves = jax.tree_util.tree_leaves(batch)
  if not leaves:
    raise ValueError('batch must contain at least one array')
  size = leaves[0].shape[0]
  if num_slices < 2:
    raise ValueError(f'{num_slices=} must be >= 2')
  if size % num_slices:
    raise ValueError(f'{num_slices=} must divide the batch size {size}')
  per = size // num_slices
  sliced = jax.tree_util.tree_map(
    lambda x: x.reshape((num_slices, per, *x.shape[1:])), batch
  )
  out = jax.vmap(grad_fn, in_axes=(None, 0))(params, sliced)
  grads, aux = out if has_aux else (out, None)
  per_slice = jax.vmap(sq_norm)(grads)
  grad = jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), grads)
  return SlicedNorms(
    grad=grad,
    sq_norm_small=jnp.mean(per_slice),
    sq_norm_big=sq_norm(grad),
    b_small=per,
    b_big=size,
    aux=aux,
  )


#: The slice counts :func:`slice_count` chooses from, most slices first.
SLICE_COUNTS = (4, 2, 1)


def slice_count(
  batch_sizes: Iterable[int],
  num_slices: int = 0,
  *,
  num_devices: int = 1,
  max_device_batch: int | None = None,
  name: str = 'num_slices',
) -> int:
  """The slices of a one-device noise estimate (``NoiseConfig.num_slices``).

  The one-device estimate cuts each micro-batch :math:`m` the run trains
  with into :math:`k` equal slices (:func:`sliced_sq_norms`), so :math:`k`
  must divide all of them. Given ``num_slices``, that is checked; given
  none (0), the largest of :data:`SLICE_COUNTS` that divides them all:

  .. math::
    k = \\max \\{ k \\in \\{4, 2, 1\\} : k \\mid m \\text{ for every } m \\},

  where :math:`k = 1` means no one-device estimate. Four slices give
  :math:`B_s = B / 4`: on digits 8 scatter slightly less than 4 at 2.7x the
  cost, and 2 cost the same as 4 and scatter more.

  Args:
    batch_sizes: every global batch size the run may train with (a
      schedule's ``batch_sizes``, an adaptive rule's candidates), at least
      one.
    num_slices: the slice count wanted, >= 0 (0: automatic).
    num_devices: data-parallel devices D of :func:`lrjax.batch.plan`.
    max_device_batch: the most examples per device per micro-step: the
      micro-batches are then :func:`lrjax.batch.plan`'s for these batch
      sizes on ``num_devices`` devices. None: the batch sizes themselves
      (no accumulation).
    name: how errors name ``num_slices`` (e.g. the flag that sets it).

  Returns:
    :math:`k` >= 1.

  Raises:
    ValueError: for no batch sizes, a negative ``num_slices``, one that
      does not divide every micro-batch (naming them and ``name``), or a
      batch size :func:`lrjax.batch.plan` cannot plan.

  Examples:
    >>> slice_count([32, 96]), slice_count([32, 90]), slice_count([33])
    (4, 2, 1)
    >>> slice_count([6144], max_device_batch=2048)  # micro-batch 2048
    4
    >>> slice_count([32, 90], 4, name='noise_slices')
    Traceback (most recent call last):
    ...
    ValueError: noise_slices=4 must divide every batch size [32, 90]; ...
  """
  sizes = sorted(set(batch_sizes))
  if not sizes:
    raise ValueError('batch_sizes is empty: give at least one batch size')
  if num_slices < 0:
    raise ValueError(f'{name}={num_slices} must be >= 0 (0 = automatic)')
  what = 'batch size'
  if max_device_batch is not None:
    what = 'micro-batch'
    every_size = lbatch.BatchSchedule(
      tuple(lbatch.Stage(b, updates=1) for b in sizes), max(sizes)
    )
    sizes = list(
      lbatch.plan(every_size, num_devices, max_device_batch).micro_batches
    )
  if num_slices:
    if any(b % num_slices for b in sizes):
      raise ValueError(
        f'{name}={num_slices} must divide every {what} {sizes}; pick a '
        'divisor or 0 (automatic)'
      )
    return num_slices
  return next(k for k in SLICE_COUNTS if all(b % k == 0 for b in sizes))


class DataParallelNorms(NamedTuple):
  """Result of :func:`data_parallel_sq_norms` / :func:`data_parallel_grad`.

  Attributes:
    grad: the all-reduced (mean over devices) gradient, for the update.
    sq_norm_small: mean over devices of each device's squared gradient
      norm (batch ``B_small`` = the per-device batch).
    sq_norm_big: squared norm of ``grad`` (``B_big`` = devices x
      per-device batch).
    num_devices: the size of the mapped axis.
    aux: the loss's auxiliary output (None unless ``has_aux``).
  """

  grad: Any
  sq_norm_small: jax.Array
  sq_norm_big: jax.Array
  num_devices: int
  aux: Any = None


def _varying_axes(x: Any) -> frozenset[str]:
  aval = jax.typeof(x)
  kind = getattr(aval, 'manual_axis_type', None)
  if kind is not None:
    return frozenset(getattr(kind, 'varying', ()))
  return frozenset(getattr(aval, 'vma', ()))


def _mapped_axis_size(axis_name: str) -> int:
  try:
    size = jax.lax.axis_size(axis_name)
  except NameError as e:
    raise ValueError(
      f'axis_name={axis_name!r} is not bound: call this inside jax.pmap '
      f'(axis_name={axis_name!r}) or jax.shard_map over a mesh axis of that '
      'name'
    ) from e
  if size < 2:
    raise ValueError(
      f'the axis {axis_name!r} has {size} device: the per-device and '
      'all-reduced gradients are the same batch, so they carry no noise-scale '
      'information; on one device use sliced_sq_norms'
    )
  return size


def data_parallel_sq_norms(
  local_grads: Any, axis_name: str = 'batch'
) -> DataParallelNorms:
  """The two squared norms of data-parallel training, inside the map.

  Call it inside ``jax.pmap`` or ``jax.shard_map`` with each device's
  gradient of its own batch (not yet all-reduced):

  .. math::
    |G_{B_s}|^2 \\approx \\frac1D \\sum_d |g_d|^2, \\quad
    G_{B_b} = \\frac1D \\sum_d g_d, \\quad B_s = b, \\; B_b = D b.

  Feed ``sq_norm_small``, ``sq_norm_big``, ``b`` and ``D b`` to
  :func:`update`.

  Args:
    local_grads: this device's gradient (a pytree).
    axis_name: the mapped device axis.

  Returns:
    A :class:`DataParallelNorms` (the same on every device).

  Raises:
    ValueError: outside a map over ``axis_name``, on an axis of one device,
      or, under ``shard_map`` with ``check_vma=True``, for gradients that
      are not varying over ``axis_name``: ``jax.grad`` with respect to
      replicated parameters has already summed them over the devices, which
      would make both norms equal and B_simple 0. Use
      :func:`data_parallel_grad`, or ``jax.lax.pcast(params, axis_name,
      to='varying')`` before ``jax.grad``.

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jax.sharding import Mesh, PartitionSpec as P
    >>> mesh = Mesh(np.array(jax.devices()[:2]), ('batch',))
    >>> def norms(g):
    ...   r = data_parallel_sq_norms(g[0])
    ...   return r.sq_norm_small, r.sq_norm_big
    >>> f = jax.shard_map(norms, mesh=mesh, in_specs=P('batch'),
    ...                   out_specs=(P(), P()))
    >>> [float(v) for v in f(jnp.array([1.0, 3.0]))]  # (1+9)/2, 2^2
    [5.0, 4.0]
  """
  size = _mapped_axis_size(axis_name)
  checked = axis_name in _varying_axes(jax.lax.axis_index(axis_name))
  if checked:
    reduced = [
      x
      for x in jax.tree_util.tree_leaves(local_grads)
      if axis_name not in _varying_axes(x)
    ]
    if reduced:
      raise ValueError(
        f'{len(reduced)} gradient leaves are not varying over '
        f'{axis_name!r}: under shard_map (check_vma=True) jax.grad with '
        'respect to replicated parameters returns the gradient already '
        'summed over the devices, and the noise scale would be 0. Use '
        'lrjax.noise.data_parallel_grad, or cast the parameters with '
        f"jax.lax.pcast(params, {axis_name!r}, to='varying') before jax.grad"
      )
  sq_small = jax.lax.pmean(sq_norm(local_grads), axis_name)
  grad = jax.lax.pmean(local_grads, axis_name)
  return DataParallelNorms(grad, sq_small, sq_norm(grad), size)


def data_parallel_grad(
  loss_fn: Callable[..., Any],
  params: Any,
  *args: Any,
  axis_name: str = 'batch',
  has_aux: bool = False,
) -> DataParallelNorms:
  """Per-device gradients of ``loss_fn`` and the two squared norms.

  Works the same under ``jax.pmap`` and under ``jax.shard_map`` with or
  without ``check_vma`` (the parameters are cast to varying first where
  that matters), so the per-device gradient is never a reduced one.

  Args:
    loss_fn: ``loss_fn(params, *args) -> loss`` (or ``(loss, aux)`` with
      ``has_aux``), the mean loss of this device's batch.
    params: the (replicated) parameters.
    *args: this device's batch and anything else ``loss_fn`` takes.
    axis_name: the mapped device axis.
    has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

  Returns:
    A :class:`DataParallelNorms` with the all-reduced gradient.

  Raises:
    ValueError: as :func:`data_parallel_sq_norms`.
  """
  _mapped_axis_size(axis_name)
  if axis_name in _varying_axes(jax.lax.axis_index(axis_name)):
    params = jax.tree_util.tree_map(
      lambda p: (
        p
        if axis_name in _varying_axes(p)
        else jax.lax.pcast(p, axis_name, to='varying')
      ),
      params,
    )
  out = jax.grad(loss_fn, has_aux=has_aux)(params, *args)
  grads, aux = out if has_aux else (out, None)
  return data_parallel_sq_norms(grads, axis_name)._replace(aux=aux)


def exact(per_example_grads: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Exact |G|^2, tr(Sigma) and B_simple from per-example gradients.

  .. math::
    G = \\frac1N \\sum_i g_i, \\quad
    \\operatorname{tr}(\\Sigma) = \\frac{1}{N-1} \\sum_i |g_i - G|^2, \\quad
    \\mathcal{B}_{\\mathrm{simple}} = \\operatorname{tr}(\\Sigma) / |G|^2

  (divisor N - 1: the value the two-batch estimator is unbiased for when
  batches are drawn without replacement). Use ``jax.vmap(jax.grad(loss))``
  over the whole dataset to get ``per_example_grads``; cost N gradients.

  Args:
    per_example_grads: pytree whose leaves have a leading axis N >= 2.

  Returns:
    ``(g2, trace, b_simple)`` as float32 scalars.

  Examples:
    >>> import jax.numpy as jnp
    >>> g2, tr, b = exact(jnp.array([[1.0], [3.0]]))
    >>> print(float(g2), float(tr), float(b))
    4.0 2.0 0.5
  """
  leaves = [
    jnp.asarray(x, jnp.float32).reshape((x.shape[0], -1))
    for x in jax.tree_util.tree_leaves(per_example_grads)
  ]
  n = leaves[0].shape[0]
  if n < 2:
    raise ValueError(f'need at least 2 per-example gradients, got {n}')
  mean = [jnp.mean(x, axis=0) for x in leaves]
  g2 = sum(jnp.sum(m**2) for m in mean)
  trace = sum(
    jnp.sum((x - m) ** 2) for x, m in zip(leaves, mean, strict=True)
  ) / (n - 1)
  return g2, trace, trace / g2


def realisable_sizes(
  base: int, max_batch_size: int, *, kind: str = 'pow2'
) -> tuple[int, ...]:
  """Batch sizes a data-parallel plan can realise, up to a maximum.

  ``kind='pow2'``: ``base * 2**j``; ``kind='multiple'``: ``base * j``. Use
  ``base = num_devices * micro_batch`` so every size keeps the compiled
  micro-batch shape (growth then only adds accumulation steps).

  Args:
    base: the smallest size, >= 1.
    max_batch_size: the largest allowed size, >= base.
    kind: 'pow2' or 'multiple'.

  Returns:
    Sorted tuple of sizes.

  Raises:
    ValueError: for bad arguments.

  Examples:
    >>> print(realisable_sizes(32, 300))
    (32, 64, 128, 256)
    >>> print(realisable_sizes(32, 100, kind='multiple'))
    (32, 64, 96)
  """
  if base < 1:
    raise ValueError(f'{base=} must be >= 1')
  if max_batch_size < base:
    raise ValueError(f'{max_batch_size=} must be >= base={base}')
  if kind == 'pow2':
    return tuple(
      base * 2**j for j in range(int(math.log2(max_batch_size / base)) + 1)
    )
  if kind == 'multiple':
    return tuple(base * j for j in range(1, max_batch_size // base + 1))
  raise ValueError(f"{kind=} must be 'pow2' or 'multiple'")


@dataclasses.dataclass(frozen=True)
class AdaptiveBatch:
  """Batch size policy that grows the batch toward the measured B_simple.

  Given the current noise scale estimate :math:`\\hat B` and the current
  batch :math:`B_t`, the next batch is

  .. math::
    B_{t+1} = \\operatorname{round}_{\\mathcal{R}}\\big(
      \\min(\\hat B, \\gamma B_t, B_{\\max})\\big),
    \\qquad B_{t+1} \\ge B_t \\text{ unless shrinking is allowed}

  where :math:`\\operatorname{round}_{\\mathcal{R}}` picks a size from the
  realisable set :math:`\\mathcal{R}` (the largest one not above the target
  for ``rounding='down'``, the nearest in log scale for ``'nearest'``) and
  :math:`\\gamma` is ``max_growth``. Beyond B_simple a larger batch gains
  little per example (McCandlish et al.), so growth stops there. A NaN
  estimate keeps the current batch. Pure: call it on the host between
  steps; the realisable set keeps the number of compiled shapes small.

  Attributes:
    sizes: realisable batch sizes (e.g. :func:`realisable_sizes`).
    max_batch_size: upper bound (None: the largest of ``sizes``).
    max_growth: largest factor per call, >= 1 (``math.inf``: jump).
    allow_shrink: whether the batch may decrease when B_simple falls.
    rounding: 'down' or 'nearest'.

  Examples:
    >>> policy = AdaptiveBatch(sizes=(32, 64, 128, 256, 512), max_growth=2.0)
    >>> print(policy(b_simple=300.0, current=32))
    64
    >>> print(policy(b_simple=300.0, current=128))
    256
    >>> print(policy(b_simple=300.0, current=256))
    256
    >>> print(policy(b_simple=40.0, current=256))
    256

  References:
    McCandlish et al. 2018, "An Empirical Model of Large-Batch Training".
  """

  sizes: Sequence[int]
  max_batch_size: int | None = None
  max_growth: float = 2.0
  allow_shrink: bool = False
  rounding: str = 'down'

  def __post_init__(self):
    sizes = tuple(sorted({int(s) for s in self.sizes}))
    if not sizes or sizes[0] < 1:
      raise ValueError(f'sizes={self.sizes!r} must be positive integers')
    object.__setattr__(self, 'sizes', sizes)
    if self.max_batch_size is not None and self.max_batch_size < sizes[0]:
      raise ValueError(
        f'max_batch_size={self.max_batch_size} must be >= the smallest size '
        f'{sizes[0]}'
      )
    if not self.max_growth >= 1.0:
      raise ValueError(f'max_growth={self.max_growth} must be >= 1')
    if self.rounding not in ('down', 'nearest'):
      raise ValueError(
        f"rounding={self.rounding!r} must be 'down' or 'nearest'"
      )

  def __call__(self, b_simple: float, current: int) -> int:
    """Returns the next batch size (a Python int from ``sizes``)."""
    cap = self.max_batch_size or self.sizes[-1]
    allowed = [s for s in self.sizes if s <= cap]
    estimate_ = float(b_simple)
    if math.isnan(estimate_):
      return int(current)
    target = min(max(estimate_, 1.0), self.max_growth * current, cap)
    if self.rounding == 'down':
      below = [s for s in allowed if s <= target * (1 + 1e-9)]
      nxt = below[-1] if below else allowed[0]
    else:
      nxt = min(allowed, key=lambda s: abs(math.log(s / target)))
    if not self.allow_shrink and nxt < current:
      # Keep the current size if realisable, else the smallest one above it.
      above = [s for s in allowed if s >= current]
      nxt = above[0] if above else allowed[-1]
    return int(nxt)


def growth(
  estimates: ArrayLike, losses: ArrayLike, *, min_count: int = 8
) -> tuple[float, float]:
  r"""How a run's measured B_simple moves as its training loss falls.

  Of the steps where both the logged estimate :math:`\hat B_i` and the
  loss :math:`L_i` are finite (n of them, :math:`q = \lfloor n/4 \rfloor`):

  .. math::
    \mathrm{ratio} = \frac{\operatorname{median}(\hat B_{n-q+1..n})}
      {\operatorname{median}(\hat B_{1..q})}, \qquad
    \rho = \operatorname{corr}(\operatorname{rank}\hat B,
      \operatorname{rank} L),

  Spearman's rank correlation (ties ranked in order of appearance). A ratio
  above 1 with a negative :math:`\rho` is McCandlish et al.'s prediction
  that the noise scale grows as the loss falls.

  Args:
    estimates: logged B_simple estimates (NaN where none was measured).
    losses: the training loss logged at the same steps.
    min_count: fewer finite pairs than this give NaNs.

  Returns:
    ``(ratio, rho)``, NaNs when the shapes differ or too few are finite.

  Examples:
    >>> growth([1, 3, 2, 4, 5, 7, 6, 8], [8, 7, 6, 5, 4, 3, 2, 1])
    (3.5, -0.952380952380952...)

  References:
    McCandlish et al. 2018, "An Empirical Model of Large-Batch Training",
    section 3.
  """
  noise, loss = np.asarray(estimates, float), np.asarray(losses, float)
  if noise.shape != loss.shape:
    return math.nan, math.nan
  keep = np.isfinite(noise) & np.isfinite(loss)
  noise, loss = noise[keep], loss[keep]
  if noise.size < max(min_count, 4):
    return math.nan, math.nan
  q = noise.size // 4
  rank = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731
  return (
    float(np.median(noise[-q:]) / np.median(noise[:q])),
    float(np.corrcoef(rank(noise), rank(loss))[0, 1]),
  )


__all__ = [
  'AdaptiveBatch',
  'DataParallelNorms',
  'NoiseScaleState',
  'SLICE_COUNTS',
  'SlicedNorms',
  'averages',
  'b_simple',
  'data_parallel_grad',
  'data_parallel_sq_norms',
  'estimate',
  'exact',
  'growth',
  'init',
  'realisable_sizes',
  'slice_count',
  'sliced_sq_norms',
  'sq_norm',
  'update',
]
