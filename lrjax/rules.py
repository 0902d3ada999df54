"""Scaling rules that tie the learning rate, the batch size and momentum.

Smith et al. (2018) model SGD with momentum as a stochastic differential
equation whose noise scale is

.. math::
  g = \\frac{\\epsilon}{1 - m}\\left(\\frac{N}{B} - 1\\right)
    \\approx \\frac{\\epsilon N}{B (1 - m)} \\quad (B \\ll N),

with learning rate :math:`\\epsilon`, momentum :math:`m`, batch size
:math:`B` and dataset size :math:`N`. Settings with equal :math:`g` train
alike (given the same number of epochs): hence the linear scaling rule
:math:`B \\propto \\epsilon` (Goyal et al., 2017), the momentum rule
:math:`B \\propto 1/(1 - m)`, and "increase the batch size instead of decaying
the learning rate".

All functions work on Python numbers (returning Python floats) and on JAX
arrays (jit-safe, returning arrays); arguments are validated when they are
concrete Python numbers.

References:
  Smith, Kindermans, Ying, Le. Don't Decay the Learning Rate, Increase the
  Batch Size. ICLR 2018. https://arxiv.org/abs/1711.00489

  Goyal et al. Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour.
  2017. https://arxiv.org/abs/1706.02677

  Krizhevsky. One weird trick for parallelizing convolutional neural
  networks. 2014. https://arxiv.org/abs/1404.5997 (square-root scaling)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = [
  'SCALING_RULES',
  'breakdown_batch',
  'effective_lr',
  'linear_scaling',
  'linear_scaling_warmup',
  'momentum_rule',
  'noise_scale',
  'preserve_noise_scale',
  'scaled_lr',
  'sqrt_scaling',
]


def _concrete(x) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _positive(x, name: str):
  if _concrete(x) and not (math.isfinite(x) and x > 0):
    raise ValueError(f'{name}={x!r} must be finite and > 0')


def _momentum(m, name: str = 'momentum'):
  if _concrete(m) and not (math.isfinite(m) and 0 <= m < 1):
    raise ValueError(f'{name}={m!r} must be in [0, 1)')


def noise_scale(
  lr: jax.typing.ArrayLike,
  batch_size: jax.typing.ArrayLike,
  num_examples: jax.typing.ArrayLike,
  momentum: jax.typing.ArrayLike = 0.0,
  exact: bool = True,
):
  """SGD noise scale g of Smith et al. (2018).

  .. math::
    g_\\mathrm{exact} = \\frac{\\epsilon}{1 - m}\\left(\\frac{N}{B} - 1\\right),
    \\qquad
    g_{B \\ll N} = \\frac{\\epsilon N}{B (1 - m)}.

  Args:
    lr: learning rate :math:`\\epsilon` > 0.
    batch_size: global batch size :math:`B`, 1 <= B <= N.
    num_examples: dataset size :math:`N`.
    momentum: momentum coefficient :math:`m` in [0, 1).
    exact: the exact form (default) or the :math:`B \\ll N` approximation.

  Returns:
    g, a Python float for Python inputs, else a jax.Array.

  Raises:
    ValueError: for non-positive lr, batch_size or num_examples, batch_size
      above num_examples, or momentum outside [0, 1).

  Examples:
    >>> from lrjax import rules
    >>> print(f'{rules.noise_scale(0.1, 128, 50000, 0.9):.3f}')
    389.625
    >>> print(f'{rules.noise_scale(0.1, 128, 50000, 0.9, exact=False):.3f}')
    390.625

  References:
    Smith et al. 2018, Don't Decay the Learning Rate, Increase the Batch Size,
    eq. (1) and section 4.
  """
  _positive(lr, 'lr')
  _positive(batch_size, 'batch_size')
  _positive(num_examples, 'num_examples')
  _momentum(momentum)
  if _concrete(batch_size) and _concrete(num_examples):
    if batch_size > num_examples:
      raise ValueError(
        f'batch_size={batch_size!r} must be <= num_examples={num_examples!r}'
      )
  ratio = num_examples / batch_size
  if exact:
    ratio = ratio - 1
  return lr * ratio / (1 - momentum)


def effective_lr(lr: jax.typing.ArrayLike, momentum: jax.typing.ArrayLike):
  """Effective learning rate of SGD with (heavy-ball) momentum.

  .. math::
    \\epsilon_\\mathrm{eff} = \\frac{\\epsilon}{1 - m}.

  Args:
    lr: learning rate > 0.
    momentum: momentum in [0, 1).

  Returns:
    The effective learning rate (float for Python inputs).

  Examples:
    >>> from lrjax import rules
    >>> print(f'{rules.effective_lr(0.1, 0.9):.4f}')
    1.0000

  References:
    Smith et al. 2018, section 4.
  """
  _positive(lr, 'lr')
  _momentum(momentum)
  return lr / (1 - momentum)


def linear_scaling(
  batch_size: jax.typing.ArrayLike,
  base_lr: jax.typing.ArrayLike = 0.1,
  base_batch_size: jax.typing.ArrayLike = 256,
):
  """Linear scaling rule of Goyal et al. (2017): LR proportional to batch.

  .. math::
    \\epsilon(B) = \\epsilon_0 \\frac{B}{B_0}.

  Args:
    batch_size: the global batch size B > 0.
    base_lr: the learning rate :math:`\\epsilon_0` at the base batch size.
    base_batch_size: :math:`B_0` (256 in the paper).

  Returns:
    The learning rate for ``batch_size``.

  Examples:
    >>> from lrjax import rules
    >>> print(f'{rules.linear_scaling(8192):.2f}')
    3.20

  References:
    Goyal et al. 2017, Accurate, Large Minibatch SGD, section 2.1.
  """
  _positive(batch_size, 'batch_size')
  _positive(base_lr, 'base_lr')
  _positive(base_batch_size, 'base_batch_size')
  return base_lr * batch_size / base_batch_size


def sqrt_scaling(
  batch_size: jax.typing.ArrayLike,
  base_lr: jax.typing.ArrayLike = 0.1,
  base_batch_size: jax.typing.ArrayLike = 256,
):
  """Square-root scaling rule: LR proportional to the root of the batch.

  Keeps the variance of the update constant (Krizhevsky 2014; Hoffer et al.
  2017).

  .. math::
    \\epsilon(B) = \\epsilon_0 \\sqrt{B / B_0}.

  Args:
    batch_size: the global batch size B > 0.
    base_lr: the learning rate at the base batch size.
    base_batch_size: the base batch size.

  Returns:
    The learning rate for ``batch_size``.

  Examples:
    >>> from lrjax import rules
    >>> print(f'{rules.sqrt_scaling(1024):.2f}')
    0.20

  References:
    Krizhevsky 2014, One weird trick for parallelizing convolutional neural
    networks; Hoffer, Hubara, Soudry 2017, Train longer, generalize better.
  """
  _positive(batch_size, 'batch_size')
  _positive(base_lr, 'base_lr')
  _positive(base_batch_size, 'base_batch_size')
  ratio = batch_size / base_batch_size
  if _concrete(ratio):
    return base_lr * math.sqrt(ratio)
  return base_lr * jnp.sqrt(ratio)


SCALING_RULES = ('none', 'linear', 'sqrt')


def scaled_lr(
  rule: str,
  batch_size: jax.typing.ArrayLike,
  base_lr: jax.typing.ArrayLike,
  base_batch_size: jax.typing.ArrayLike,
):
  r"""The learning rate a named scaling rule gives at a batch size.

  .. math::
    \epsilon(B) = \epsilon_0 \text{ (none)}, \quad
    \epsilon_0 \frac{B}{B_0} \text{ (linear)}, \quad
    \epsilon_0 \sqrt{B / B_0} \text{ (sqrt)}.

  Args:
    rule: one of ``SCALING_RULES``: ``'none'`` (the base LR at every batch),
      ``'linear'`` (`linear_scaling`) or ``'sqrt'`` (`sqrt_scaling`).
    batch_size: the global batch size B > 0.
    base_lr: the learning rate :math:`\epsilon_0` at the base batch size.
    base_batch_size: :math:`B_0`.

  Returns:
    The learning rate for ``batch_size``.

  Raises:
    ValueError: for an unknown rule, or a concrete non-positive argument.

  Examples:
    >>> from lrjax import rules
    >>> [rules.scaled_lr(r, 64, 0.1, 16) for r in rules.SCALING_RULES]
    [0.1, 0.4, 0.2]

  References:
    Goyal et al. 2017, section 2.1 (linear); Krizhevsky 2014 (sqrt).
  """
  if rule not in SCALING_RULES:
    raise ValueError(f'{rule=} must be one of {SCALING_RULES}')
  if rule == 'linear':
    return linear_scaling(batch_size, base_lr, base_batch_size)
  if rule == 'sqrt':
    return sqrt_scaling(batch_size, base_lr, base_batch_size)
  _positive(batch_size, 'batch_size')
  _positive(base_batch_size, 'base_batch_size')
  _positive(base_lr, 'base_lr')
  return base_lr


def momentum_rule(
  batch_size: jax.typing.ArrayLike,
  momentum: jax.typing.ArrayLike,
  new_momentum: jax.typing.ArrayLike,
):
  """Batch size that keeps g when momentum changes (B proportional to 1/(1-m)).

  .. math::
    B' = B \\frac{1 - m}{1 - m'}.

  Args:
    batch_size: the batch size at momentum ``momentum``.
    momentum: the current momentum m in [0, 1).
    new_momentum: the new momentum m' in [0, 1).

  Returns:
    The (generally non-integer) batch size B'; round it with
    :func:`lrjax.batch.round_batch_size`.

  Examples:
    >>> from lrjax import rules
    >>> print(f'{rules.momentum_rule(640, 0.9, 0.98):.1f}')
    3200.0

  References:
    Smith et al. 2018, section 5.3 ("increased momentum coefficient").
  """
  _positive(batch_size, 'batch_size')
  _momentum(momentum)
  _momentum(new_momentum, 'new_momentum')
  return batch_size * (1 - momentum) / (1 - new_momentum)


def preserve_noise_scale(
  lr: float,
  batch_size: float,
  momentum: float = 0.0,
  *,
  target_lr: float | None = None,
  target_batch_size: float | None = None,
  target_momentum: float | None = None,
  num_examples: float | None = None,
) -> float:
  """Given two of (lr, B, m) for a target, the third that keeps g.

  The reference setting ``(lr, batch_size, momentum)`` fixes
  :math:`g`; give exactly two of ``target_lr``, ``target_batch_size``,
  ``target_momentum`` and get the third. Without ``num_examples`` the
  :math:`B \\ll N` form is used,

  .. math::
    \\frac{\\epsilon'}{B'(1 - m')} = \\frac{\\epsilon}{B(1 - m)};

  with it, the exact form
  :math:`\\epsilon'(N/B' - 1)/(1 - m') = \\epsilon(N/B - 1)/(1 - m)`.

  Args:
    lr: reference learning rate.
    batch_size: reference batch size.
    momentum: reference momentum.
    target_lr: the target learning rate, or None to solve for it.
    target_batch_size: the target batch size, or None to solve for it.
    target_momentum: the target momentum, or None to solve for it.
    num_examples: dataset size for the exact form (None: approximate form).

  Returns:
    The missing quantity (a Python float; a batch size is not rounded).

  Raises:
    ValueError: unless exactly two targets are given, for invalid values, or
      when no momentum in [0, 1) preserves g.

  Examples:
    >>> from lrjax import rules
    >>> b = rules.preserve_noise_scale(0.1, 128, 0.9, target_lr=0.5,
    ...                                target_momentum=0.9)
    >>> print(f'{b:.1f}')
    640.0
    >>> m = rules.preserve_noise_scale(0.1, 128, 0.9, target_lr=0.1,
    ...                                target_batch_size=640)
    >>> print(f'{m:.2f}')
    0.98

  References:
    Smith et al. 2018, sections 3-5.
  """
  _positive(lr, 'lr')
  _positive(batch_size, 'batch_size')
  _momentum(momentum)
  targets = dict(
    target_lr=target_lr,
    target_batch_size=target_batch_size,
    target_momentum=target_momentum,
  )
  missing = [k for k, v in targets.items() if v is None]
  if len(missing) != 1:
    raise ValueError(
      f'give exactly two of target_lr, target_batch_size, target_momentum; '
      f'got {targets}'
    )
  if target_lr is not None:
    _positive(target_lr, 'target_lr')
  if target_batch_size is not None:
    _positive(target_batch_size, 'target_batch_size')
  if target_momentum is not None:
    _momentum(target_momentum, 'target_momentum')
  if num_examples is not None:
    _positive(num_examples, 'num_examples')
    for name, b in (
      ('batch_size', batch_size),
      ('target_batch_size', target_batch_size),
    ):
      if b is not None and b >= num_examples:
        raise ValueError(
          f'{name}={b!r} must be < num_examples={num_examples!r} in the '
          'exact form (g is 0 at B = N)'
        )
    # q(B) = N/B - 1 replaces 1/B of the approximate form.
    q = lambda b: num_examples / b - 1  # noqa: E731
  else:
    q = lambda b: 1 / b  # noqa: E731
  g = lr * q(batch_size) / (1 - momentum)
  if missing == ['target_lr']:
    return float(g * (1 - target_momentum) / q(target_batch_size))
  if missing == ['target_momentum']:
    m = 1 - target_lr * q(target_batch_size) / g
    if not 0 <= m < 1:
      raise ValueError(
        f'no momentum in [0, 1) keeps g={g:g} with target_lr={target_lr!r} '
        f'and target_batch_size={target_batch_size!r} (it would be {m:g}); '
        'lower target_lr or raise target_batch_size'
      )
    return float(m)
  # Solve for B: q(B) = g (1 - m') / lr'.
  r = g * (1 - target_momentum) / target_lr
  return float(num_examples / (1 + r) if num_examples is not None else 1 / r)


def linear_scaling_warmup(
  batch_size: int,
  base_lr: float = 0.1,
  base_batch_size: int = 256,
  warmup_epochs: float = 5.0,
):
  """Goyal et al.'s gradual warmup to the linearly scaled LR, over epochs.

  .. math::
    \\epsilon(t) = \\epsilon_0 + (\\hat\\epsilon - \\epsilon_0)
      \\min(1, t / t_w), \\qquad \\hat\\epsilon = \\epsilon_0 B / B_0,

  where :math:`t` is in epochs and :math:`t_w` is ``warmup_epochs``. The LR
  starts at the base LR (never at 0), reaches the scaled LR after
  ``warmup_epochs`` and stays there. It is ``lrjax.schedules.linear``; for
  the paper's warmup followed by step decays counted from the start, use
  ``schedules.warmup(schedules.multistep(lr_hat, milestones=(30, 60, 80)),
  length=5, start=base_lr / lr_hat, shift=False)``. Convert it to a step
  schedule with :func:`lrjax.batch.per_update`.

  Args:
    batch_size: the global batch size B.
    base_lr: :math:`\\epsilon_0`, the LR at ``base_batch_size``.
    base_batch_size: :math:`B_0`.
    warmup_epochs: :math:`t_w` >= 0 (0: no warmup).

  Returns:
    An ``lrjax.schedules.Policy`` over epochs.

  Examples:
    >>> from lrjax import rules
    >>> w = rules.linear_scaling_warmup(8192)
    >>> print(w)
    linear(0.1,end=3.2,length=5)
    >>> [round(float(w(t)), 4) for t in (0, 2.5, 5, 90)]
    [0.1, 1.65, 3.2, 3.2]

  References:
    Goyal et al. 2017, section 2.2 ("gradual warmup").
  """
  from lrjax import schedules

  target = linear_scaling(batch_size, base_lr, base_batch_size)
  if not (
    _concrete(warmup_epochs)
    and math.isfinite(warmup_epochs)
    and warmup_epochs >= 0
  ):
    raise ValueError(f'{warmup_epochs=} must be finite and >= 0')
  target = float(f'{target:.12g}')
  if warmup_epochs == 0:
    return schedules.constant(target)
  return schedules.linear(base_lr, end=target, length=warmup_epochs)


def breakdown_batch(
  batch_sizes: Sequence[int],
  values: Sequence[float],
  tolerance: float,
  *,
  higher_is_better: bool = True,
) -> int | None:
  """The batch size at which a scaling rule breaks down in a batch sweep.

  Trained under the rule at each of the increasing ``batch_sizes``, runs
  reach the final metric ``values`` (e.g. test accuracy, or a validation
  loss with ``higher_is_better=False``). The rule breaks down at the first
  batch :math:`B_k` whose value is more than ``tolerance`` worse than that
  of the first, smallest batch :math:`B_0`:

  .. math::
    B^* = \\min \\{B_k : v_k < v_0 - \\tau\\}

  (:math:`v_k > v_0 + \\tau` for a loss), a non-finite value (a diverged
  run) always counting as worse. Goyal et al. (2017) read their Figure 1
  this way: the linear scaling rule with warmup holds up to batch 8k.

  Args:
    batch_sizes: the sweep's batch sizes, increasing.
    values: the metric at each batch (its mean over seeds).
    tolerance: :math:`\\tau` >= 0, in the metric's unit.
    higher_is_better: whether a higher value is better (accuracy) or worse
      (a loss).

  Returns:
    The first batch size that is more than ``tolerance`` worse than the
    first, or None when the rule holds over the whole sweep.

  Raises:
    ValueError: when ``values`` and ``batch_sizes`` differ in length or
      are empty, or ``tolerance`` is negative.

  Examples:
    >>> from lrjax import rules
    >>> rules.breakdown_batch([32, 64, 128], [0.95, 0.94, 0.90], 0.02)
    128
    >>> print(rules.breakdown_batch([32, 64], [0.95, 0.94], 0.02))
    None
    >>> rules.breakdown_batch(
    ...   [8, 16, 32], [2.0, 2.04, 2.2], 0.05, higher_is_better=False
    ... )
    32

  References:
    Goyal et al. 2017, section 5.2 and Figure 1.
  """
  if len(values) != len(batch_sizes) or not values:
    raise ValueError(
      f'{len(values)=} must equal {len(batch_sizes)=} and be at least 1'
    )
  if not tolerance >= 0:
    raise ValueError(f'{tolerance=} must be >= 0')
  first = values[0]
  for batch, value in zip(batch_sizes, values, strict=True):
    if higher_is_better:
      worse = value < first - tolerance
    else:
      worse = value > first + tolerance
    if worse or not math.isfinite(value):
      return int(batch)
  return None
