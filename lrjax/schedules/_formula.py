"""Formula-based policies: closed forms in progress `t`.

Every builder validates eagerly, returns a jit-safe `Policy`, and is exact at
its boundaries for integer `t` (the piecewise parts are computed in int32).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lrjax.schedules import _policy as P
from lrjax.schedules._policy import Policy, register

_AMPLITUDES = ('const', 'half', 'exp')


@register('constant')
def constant(value: float) -> Policy:
  """A fixed value (LRBench's FIX).

  .. math:: f(t) = k_0

  Args:
    value: the value :math:`k_0`.

  Returns:
    The `Policy`; text `constant(value)` (`fixed(...)` parses too).

  Raises:
    ValueError: if `value` is not finite.

  Examples:
    >>> from lrjax import schedules
    >>> print(f'{float(schedules.constant(0.1)(1000)):.4f}')
    0.1000

  References:
    Wu et al. 2019, Demystifying learning rate policies (LRBench), FIX.
  """
  value = P.check_float('value', value)
  return P.make(
    'constant', lambda t: jnp.full(jnp.shape(t), value), value=value
  )


register('fixed', canonical=False)(constant)


@register('step')
def step(value: float, length: float, gamma: float = 0.1) -> Policy:
  """Step decay: multiply by `gamma` every `length` (PyTorch StepLR).

  .. math:: f(t) = k_0 \\gamma^{\\lfloor t / l \\rfloor}

  Same values as `torch.optim.lr_scheduler.StepLR(step_size=l, gamma)` at
  epoch `t`, Caffe's "step" and LRBench's STEP.

  Args:
    value: initial value :math:`k_0`.
    length: :math:`l`, the duration of each step (units of t).
    gamma: factor applied at each step, in (0, 1].

  Returns:
    The `Policy`, bounded by `[0, value]` for `value >= 0`.

  Raises:
    ValueError: on a non-finite value, `length <= 0` or `gamma` outside (0, 1].

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.step(0.1, length=30)
    >>> print([round(float(s(t)), 6) for t in (0, 29, 30, 60)])
    [0.1, 0.1, 0.01, 0.001]

  References:
    Jia et al. 2014, Caffe; Wu et al. 2019 (LRBench), STEP.
  """
  value = P.check_float('value', value)
  length = P.check_duration('length', length)
  gamma = P.check_float('gamma', gamma, low=0, low_open=True, high=1)

  def fn(t):
    k, _ = P.periodic(t, length)
    return value * P.power(gamma, k)

  return P.make('step', fn, value=value, length=length, gamma=gamma)


@register('multistep')
def multistep(
  value: float,
  milestones,
  gamma: float | None = None,
  factors=None,
) -> Policy:
  """Piecewise constant: multiply at each milestone (PyTorch MultiStepLR).

  .. math:: f(t) = k_0 \\prod_{i: m_i \\le t} \\gamma_i

  with :math:`\\gamma_i = \\gamma` (default 0.1) or the per-milestone
  `factors`. Same values as `MultiStepLR(milestones, gamma)` at epoch `t`
  (bisect_right: the new value holds from the milestone on); PyTorch also
  accepts repeated milestones (the factor then applies twice), lrjax asks for
  strictly increasing ones and per-milestone `factors` instead.

  Args:
    value: initial value :math:`k_0`.
    milestones: strictly increasing durations > 0 (units of t).
    gamma: one factor for every milestone (> 0); default 0.1.
    factors: a factor per milestone (> 0); exclusive with `gamma`.

  Returns:
    The `Policy`; its values are the running products above.

  Raises:
    ValueError: on unsorted milestones, a length mismatch, or both `gamma`
      and `factors`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.multistep(0.1, milestones=(60, 120, 160), gamma=0.2)
    >>> print([round(float(s(t)), 6) for t in (0, 59, 60, 120, 160)])
    [0.1, 0.1, 0.02, 0.004, 0.0008]
    >>> print(s)
    multistep(0.1,milestones=60/120/160,gamma=0.2)

  References:
    Goyal et al. 2017; He et al. 2016 (ResNet schedule); LRBench NSTEP.
  """
  value = P.check_float('value', value)
  milestones = tuple(
    P.check_duration(f'milestones[{i}]', m)
    for i, m in enumerate(P.as_tuple(milestones))
  )
  if not milestones:
    raise ValueError('milestones=() must name at least one milestone')
  for a, b in zip(milestones, milestones[1:], strict=False):
    if not b > a:
      raise ValueError(f'milestones={milestones} must be strictly increasing')
  if factors is not None and gamma is not None:
    raise ValueError('give either gamma or factors, not both')
  if factors is not None:
    factors = tuple(
      P.check_float(f'factors[{i}]', f, low=0, low_open=True)
      for i, f in enumerate(P.as_tuple(factors))
    )
    if len(factors) != len(milestones):
      raise ValueError(
        f'factors={factors} must have one factor per milestone '
        f'({len(milestones)})'
      )
    each = factors
  else:
    if gamma is not None:
      gamma = P.check_float('gamma', gamma, low=0, low_open=True)
    each = (0.1 if gamma is None else gamma,) * len(milestones)
  levels = [value]
  for f in each:
    levels.append(levels[-1] * f)
  if not all(math.isfinite(v) for v in levels):
    raise ValueError(f'the products of factors overflow: {levels}')
  table = jnp.asarray(levels, jnp.float32)

  def fn(t):
    return table[P.count_ge(t, milestones)]

  return P.make(
    'multistep',
    fn,
    value=value,
    milestones=milestones,
    gamma=gamma,
    factors=factors,
  )


@register('exponential')
def exponential(
  value: float, gamma: float, length: float = 1, staircase: bool = False
) -> Policy:
  """Exponential decay, continuous or staircase (PyTorch ExponentialLR).

  .. math:: f(t) = k_0 \\gamma^{t / l} \\quad\\text{or}\\quad
    k_0 \\gamma^{\\lfloor t / l \\rfloor}

  With `length=1` and integer `t` both equal `ExponentialLR(gamma)`; this is
  LRBench's EXP and optax's `exponential_decay(transition_steps=l)`.

  Args:
    value: initial value :math:`k_0`.
    gamma: decay per `length`, in (0, 1].
    length: :math:`l` (units of t).
    staircase: decay in whole steps of `length`.

  Returns:
    The `Policy`, within `[0, value]` for `value >= 0` (underflows to 0).

  Raises:
    ValueError: on `gamma` outside (0, 1] or `length <= 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.exponential(1.0, gamma=0.5, length=2)
    >>> print([float(s(t)) for t in (0, 1, 2, 4)])
    [1.0, 0.7071067690849304, 0.5, 0.25]

  References:
    Wu et al. 2019 (LRBench), EXP.
  """
  value = P.check_float('value', value)
  gamma = P.check_float('gamma', gamma, low=0, low_open=True, high=1)
  length = P.check_duration('length', length)
  staircase = P.check_bool('staircase', staircase)

  def fn(t):
    k, r = P.periodic(t, length)
    e = k if staircase else k + r / jnp.float32(length)
    return value * P.power(gamma, e)

  return P.make(
    'exponential',
    fn,
    value=value,
    gamma=gamma,
    length=length,
    staircase=staircase,
  )


@register('inverse_time')
def inverse_time(value: float, gamma: float, power: float = 1.0) -> Policy:
  """Inverse-time decay (Caffe's and LRBench's INV).

  .. math:: f(t) = k_0 (1 + \\gamma t)^{-p}

  Args:
    value: initial value :math:`k_0`.
    gamma: :math:`\\gamma \\ge 0`, per unit of t.
    power: :math:`p \\ge 0`.

  Returns:
    The `Policy`, within `[0, value]` for `value >= 0`.

  Raises:
    ValueError: on a negative `gamma` or `power`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.inverse_time(0.1, gamma=0.5, power=2)
    >>> print([round(float(s(t)), 6) for t in (0, 2, 6)])
    [0.1, 0.025, 0.00625]

  References:
    Jia et al. 2014, Caffe ("inv"); Wu et al. 2019 (LRBench), INV.
  """
  value = P.check_float('value', value)
  gamma = P.check_float('gamma', gamma, low=0)
  power = P.check_float('power', power, low=0)

  def fn(t):
    return value * jnp.exp(-power * jnp.log1p(gamma * P.f32(t)))

  return P.make('inverse_time', fn, value=value, gamma=gamma, power=power)


@register('polynomial')
def polynomial(
  value: float, length: float, end: float = 0.0, power: float = 1.0
) -> Policy:
  """Polynomial decay to `end` over `length`, then `end` (PyTorch PolynomialLR).

  .. math:: f(t) = (k_0 - k_e) (1 - \\min(t, l) / l)^p + k_e

  With `end=0` equals `PolynomialLR(total_iters=l, power=p)`, Caffe's "poly"
  and optax's `polynomial_schedule`.

  Args:
    value: initial value :math:`k_0`.
    length: :math:`l` (units of t).
    end: final value :math:`k_e`.
    power: :math:`p > 0`.

  Returns:
    The `Policy`, between `end` and `value`.

  Raises:
    ValueError: on `length <= 0` or `power <= 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.polynomial(1.0, length=4, power=2)
    >>> print([float(s(t)) for t in (0, 2, 4, 9)])
    [1.0, 0.25, 0.0, 0.0]

  References:
    Jia et al. 2014, Caffe ("poly"); Wu et al. 2019 (LRBench), POLY.
  """
  value = P.check_float('value', value)
  length = P.check_duration('length', length)
  end = P.check_float('end', end)
  power = P.check_float('power', power, low=0, low_open=True)

  def fn(t):
    frac = 1.0 - _fraction(t, length)
    return (value - end) * frac**power + end

  return P.make(
    'polynomial', fn, value=value, length=length, end=end, power=power
  )


@register('linear')
def linear(value: float, end: float, length: float) -> Policy:
  """Linear interpolation from `value` to `end` over `length` (LinearLR).

  .. math:: f(t) = k_0 + (k_e - k_0) \\min(t, l) / l

  PyTorch's `LinearLR(start_factor=a, end_factor=b, total_iters=l)` on a base
  value `v` equals `linear(a * v, end=b * v, length=l)`.

  Args:
    value: value at t = 0.
    end: value from `t = length` on.
    length: :math:`l` (units of t).

  Returns:
    The `Policy`, between `value` and `end`.

  Raises:
    ValueError: on `length <= 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.linear(0.0, end=1.0, length=4)
    >>> print([float(s(t)) for t in (0, 1, 4, 5)])
    [0.0, 0.25, 1.0, 1.0]

  References:
    PyTorch `torch.optim.lr_scheduler.LinearLR`.
  """
  value = P.check_float('value', value)
  end = P.check_float('end', end)
  length = P.check_duration('length', length)

  def fn(t):
    return value + (end - value) * _fraction(t, length)

  return P.make('linear', fn, value=value, end=end, length=length)


@register('sigmoid')
def sigmoid(
  value: float, gamma: float, center: float, low: float = 0.0
) -> Policy:
  """Logistic curve between `low` and `value` (LRBench's SIG).

  .. math:: f(t) = k_l + (k_0 - k_l) / (1 + e^{-\\gamma (t - c)})

  `gamma > 0` rises toward `value`, `gamma < 0` decays toward `low`. With
  `low=0` this is LRBench's SIG with :math:`l = c`.

  Args:
    value: the upper level :math:`k_0`.
    gamma: steepness per unit of t, non-zero.
    center: :math:`c`, where the curve is half way (units of t).
    low: the lower level :math:`k_l`.

  Returns:
    The `Policy`, between `low` and `value`.

  Raises:
    ValueError: on `gamma == 0` or `center < 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.sigmoid(0.1, gamma=-1.0, center=10)
    >>> print([round(float(s(t)), 4) for t in (0, 10, 20)])
    [0.1, 0.05, 0.0]

  References:
    Wu et al. 2019 (LRBench), SIG.
  """
  value = P.check_float('value', value)
  gamma = P.check_float('gamma', gamma)
  if gamma == 0:
    raise ValueError('gamma=0.0 must be non-zero (use constant() instead)')
  center = P.check_duration('center', center, allow_zero=True)
  low = P.check_float('low', low)

  def fn(t):
    return low + (value - low) * jax.nn.sigmoid(gamma * (P.f32(t) - center))

  return P.make('sigmoid', fn, value=value, gamma=gamma, center=center, low=low)


@register('cosine')
def cosine(value: float, length: float, end: float = 0.0) -> Policy:
  """Cosine annealing to a floor, then the floor (SGDR without restarts).

  .. math:: f(t) = k_e + (k_0 - k_e) (1 + \\cos(\\pi \\min(t, l) / l)) / 2

  Equals PyTorch's `CosineAnnealingLR(T_max=l, eta_min=k_e)` for t <= l;
  after `l` PyTorch keeps following the cosine back up (period 2l), lrjax
  holds `end` (like optax's `cosine_decay_schedule` and timm).

  Args:
    value: initial value :math:`k_0`.
    length: :math:`l` (units of t).
    end: the floor :math:`k_e`.

  Returns:
    The `Policy`, between `end` and `value`.

  Raises:
    ValueError: on `length <= 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.cosine(0.4, length=90)
    >>> print([round(float(s(t)), 6) for t in (0, 45, 90, 200)])
    [0.4, 0.2, 0.0, 0.0]

  References:
    Loshchilov & Hutter 2017, SGDR: Stochastic Gradient Descent with Warm
    Restarts.
  """
  value = P.check_float('value', value)
  length = P.check_duration('length', length)
  end = P.check_float('end', end)

  def fn(t):
    rem = jnp.float32(length) - jnp.minimum(P.f32(t), jnp.float32(length))
    return end + (value - end) * _half_cos_rem(rem / jnp.float32(length))

  return P.make('cosine', fn, value=value, length=length, end=end)


@register('cosine_restarts')
def cosine_restarts(
  value: float,
  period: float,
  mult: int = 1,
  decay: float = 1.0,
  end: float = 0.0,
) -> Policy:
  """Cosine annealing with warm restarts (SGDR).

  .. math:: f(t) = k_e + (k_0 d^i - k_e) (1 + \\cos(\\pi r / T_i)) / 2,
    \\quad T_i = T_0 m^i

  where cycle :math:`i` starts at :math:`T_0 (m^i - 1)/(m - 1)` (or
  :math:`i T_0` for m = 1) and :math:`r` is the time since its start.
  Equals PyTorch's `CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)` for
  `decay=1`; `decay` is timm's `cycle_decay` (peak of cycle i is
  :math:`k_0 d^i`), so this also equals timm's `CosineLRScheduler` without
  warmup and `k_decay=1`, until the decayed peak would fall below `end`:
  lrjax then keeps the peak at `end` (bounds `[end, value]`), timm lets the
  curve go below its `lr_min`. Past t = 2**41 the last cycle holds `end`.

  Args:
    value: peak of the first cycle :math:`k_0`.
    period: :math:`T_0`, length of the first cycle (units of t).
    mult: integer :math:`m \\ge 1`, growth of the cycle length.
    decay: :math:`d \\in (0, 1]`, peak decay per cycle.
    end: the floor :math:`k_e` (<= value).

  Returns:
    The `Policy`, between `end` and `value`.

  Raises:
    ValueError: on a non-integer or < 1 `mult`, `decay` outside (0, 1],
      `period <= 0` or `end > value`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.cosine_restarts(1.0, period=10, mult=2, decay=0.5)
    >>> print([round(float(s(t)), 4) for t in (0, 5, 10, 20, 30)])
    [1.0, 0.5, 0.5, 0.25, 0.25]

  References:
    Loshchilov & Hutter 2017, SGDR; timm `CosineLRScheduler`.
  """
  value = P.check_float('value', value)
  period = P.check_duration('period', period)
  if isinstance(mult, bool) or not float(mult).is_integer() or mult < 1:
    raise ValueError(f'mult={mult!r} must be an integer >= 1')
  mult = int(mult)
  decay = P.check_float('decay', decay, low=0, low_open=True, high=1)
  end = P.check_float('end', end)
  if end > value:
    raise ValueError(f'end={end} must be <= value={value}')
  if mult == 1:

    def fn(t):
      i, r = P.periodic(t, period)
      peak = jnp.maximum(value * P.power(decay, i), end)
      rem = (jnp.float32(period) - r) / jnp.float32(period)
      return end + (peak - end) * _half_cos_rem(rem)

  else:
    starts, lengths = [0], [period]
    while starts[-1] <= 2**41:
      starts.append(starts[-1] + lengths[-1])
      lengths.append(lengths[-1] * mult)
    lengths_arr = jnp.asarray(lengths, jnp.float32)

    def fn(t):
      i, r = P.segment(t, starts)
      peak = jnp.maximum(value * P.power(decay, i), end)
      rem = jnp.clip((lengths_arr[i] - r) / lengths_arr[i], 0.0, 1.0)
      return end + (peak - end) * _half_cos_rem(rem)

  return P.make(
    'cosine_restarts',
    fn,
    value=value,
    period=period,
    mult=mult,
    decay=decay,
    end=end,
  )


def _onecycle_points(length, pct_start, three_phase, offset):
  """Phase ends; `offset=1` places them as PyTorch's OneCycleLR does."""
  e1 = float(pct_start * length) - offset
  if three_phase:
    return (e1, 2 * e1, length - offset)
  return (e1, length - offset)


def _check_onecycle(length, pct_start, anneal, three_phase, offset):
  length = P.check_duration('length', length)
  pct_start = P.check_float(
    'pct_start', pct_start, low=0, low_open=True, high=1, high_open=True
  )
  anneal = P.check_choice('anneal', anneal, ('cos', 'linear'))
  three_phase = P.check_bool('three_phase', three_phase)
  offset = P.check_duration('offset', offset, allow_zero=True)
  ends = _onecycle_points(length, pct_start, three_phase, offset)
  starts = (0.0,) + ends[:-1]
  for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
    if not b > a:
      raise ValueError(
        f'phase {i} of one-cycle is empty (it ends at {b}, starts at {a}): '
        f'raise length={length} or pct_start={pct_start} so that '
        f'pct_start * length > offset={offset} (and < length / 2 for '
        'three_phase)'
      )
  return length, pct_start, anneal, three_phase, offset, starts, ends


def _phases(t, starts, ends, points, anneal):
  """Anneals `points[i] -> points[i + 1]` on phase i; holds the last after."""
  tf = P.f32(t)
  out = jnp.full(jnp.shape(tf), points[-1], jnp.float32)
  for i in reversed(range(len(ends))):
    a, b = starts[i], ends[i]
    pct = jnp.clip((tf - a) / jnp.float32(b - a), 0.0, 1.0)
    # A convex combination, so each phase ends exactly on its end value.
    w = _half_cos(pct) if anneal == 'cos' else 1.0 - pct
    v = points[i] * w + points[i + 1] * (1.0 - w)
    out = jnp.where(tf <= b, v, out)
  return out


@register('onecycle')
def onecycle(
  value: float,
  length: float,
  pct_start: float = 0.3,
  anneal: str = 'cos',
  div_factor: float = 25.0,
  final_div_factor: float = 1e4,
  three_phase: bool = False,
  offset: float = 0,
) -> Policy:
  """Smith's one-cycle policy (optax's, or PyTorch's OneCycleLR with offset=1).

  .. math:: k_i = k_0 / \\delta,\\ k_m = k_i / \\delta_f;\\quad
    f: k_i \\to k_0 \\text{ on } [0, e_1],\\ k_0 \\to k_m
    \\text{ on } [e_1, l - 1]

  with :math:`e_1 = p\\,l - o` and the last phase ending at :math:`l - o`
  (offset :math:`o`), annealing
  :math:`a + (b - a)(1 - \\cos(\\pi x))/2` (`cos`) or linear in the phase
  fraction x. `three_phase`: :math:`k_i \\to k_0` on :math:`[0, e_1]`,
  :math:`k_0 \\to k_i` on :math:`[e_1, 2 e_1]`, :math:`k_i \\to k_m` on
  :math:`[2 e_1, l - o]`. The default `offset=0` keeps durations in units
  of t (the peak at :math:`p\\,l`, the end at :math:`l`), as optax's
  `cosine_onecycle_schedule(transition_steps=l)` does (for integer
  :math:`p\\,l`); use it when t is epochs. `offset=1` reproduces PyTorch's
  per-step convention exactly: `OneCycleLR(max_lr=k_0, total_steps=l,
  pct_start, anneal_strategy, div_factor, final_div_factor, three_phase)`
  at step t <= l - 1 (PyTorch places the phase ends one step early so the
  last of `l` steps reaches the minimum; it raises past `l` steps, lrjax
  holds :math:`k_m`). Use `onecycle_momentum` for the momentum.

  Args:
    value: the peak :math:`k_0` (PyTorch's `max_lr`).
    length: total duration :math:`l` (PyTorch's `total_steps`).
    pct_start: fraction :math:`p` of `length` spent rising.
    anneal: `cos` or `linear`.
    div_factor: :math:`\\delta`, initial value = value / div_factor.
    final_div_factor: :math:`\\delta_f`, final = initial / final_div_factor.
    three_phase: PyTorch's three-phase variant (fast.ai style).
    offset: :math:`o`, 0 (units of t) or 1 (PyTorch's steps).

  Returns:
    The `Policy`, between the final value and `value`.

  Raises:
    ValueError: on an empty phase (`pct_start * length <= offset`), bad
      factors.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.onecycle(1.0, length=10, pct_start=0.2, anneal='linear')
    >>> print([round(float(s(t)), 6) for t in (0, 1, 2, 6, 10)])
    [0.04, 0.52, 1.0, 0.500002, 4e-06]
    >>> s = schedules.onecycle(1.0, length=11, pct_start=0.2, anneal='linear',
    ...                        offset=1)
    >>> print([round(float(s(t)), 6) for t in (0, 1.2, 10)])
    [0.04, 1.0, 4e-06]

  References:
    Smith & Topin 2019, Super-convergence; PyTorch `OneCycleLR`.
  """
  value = P.check_float('value', value, low=0, low_open=True)
  length, pct_start, anneal, three_phase, offset, starts, ends = (
    _check_onecycle(length, pct_start, anneal, three_phase, offset)
  )
  div_factor = P.check_float('div_factor', div_factor, low=0, low_open=True)
  final_div_factor = P.check_float(
    'final_div_factor', final_div_factor, low=0, low_open=True
  )
  initial = value / div_factor
  final = initial / final_div_factor
  if three_phase:
    points = (initial, value, initial, final)
  else:
    points = (initial, value, final)

  def fn(t):
    return _phases(t, starts, ends, points, anneal)

  return P.make(
    'onecycle',
    fn,
    value=value,
    length=length,
    pct_start=pct_start,
    anneal=anneal,
    div_factor=div_factor,
    final_div_factor=final_div_factor,
    three_phase=three_phase,
    offset=offset,
  )


@register('onecycle_momentum')
def onecycle_momentum(
  length: float,
  low: float = 0.85,
  high: float = 0.95,
  pct_start: float = 0.3,
  anneal: str = 'cos',
  three_phase: bool = False,
  offset: float = 0,
) -> Policy:
  """The momentum that goes with `onecycle`: high -> low -> high.

  .. math:: f: m_h \\to m_l \\text{ on } [0, e_1],\\ m_l \\to m_h
    \\text{ on } [e_1, l - o]

  Same phases as `onecycle` with the same arguments; `three_phase` holds
  :math:`m_h` on the third phase. Equals the momentum (or Adam's beta1)
  PyTorch's `OneCycleLR(cycle_momentum=True, base_momentum=m_l,
  max_momentum=m_h)` sets when `offset=1`.

  Args:
    length: total duration :math:`l`.
    low: :math:`m_l`, momentum at the learning-rate peak.
    high: :math:`m_h`, momentum at the ends.
    pct_start: as in `onecycle`.
    anneal: `cos` or `linear`.
    three_phase: as in `onecycle`.
    offset: as in `onecycle` (1 for PyTorch's values).

  Returns:
    The `Policy`, within `[low, high]`.

  Raises:
    ValueError: if `low > high` or a phase is empty.

  Examples:
    >>> from lrjax import schedules
    >>> m = schedules.onecycle_momentum(10, pct_start=0.2, anneal='linear')
    >>> print([round(float(m(t)), 6) for t in (0, 2, 10)])
    [0.95, 0.85, 0.95]

  References:
    Smith 2018, A disciplined approach to neural network hyper-parameters;
    PyTorch `OneCycleLR`.
  """
  length, pct_start, anneal, three_phase, offset, starts, ends = (
    _check_onecycle(length, pct_start, anneal, three_phase, offset)
  )
  low = P.check_float('low', low)
  high = P.check_float('high', high)
  if low > high:
    raise ValueError(f'low={low} must be <= high={high}')
  points = (high, low, high, high) if three_phase else (high, low, high)

  def fn(t):
    return _phases(t, starts, ends, points, anneal)

  return P.make(
    'onecycle_momentum',
    fn,
    length=length,
    low=low,
    high=high,
    pct_start=pct_start,
    anneal=anneal,
    three_phase=three_phase,
    offset=offset,
  )


def linear_warmup_factor(t, length, start):
  return start + (1.0 - start) * _fraction(t, length)


@register('wsd')
def wsd(
  value: float,
  length: float,
  cooldown: float,
  warmup: float = 0,
  start: float = 0.1,
  end: float = 0.0,
  shape: str = 'linear',
) -> Policy:
  """Warmup-stable-decay (trapezoid): warmup, hold `value`, cool down.

  .. math:: f(t) = \\begin{cases}
    k_0 (s + (1 - s) t / w) & t < w \\\\
    k_0 & w \\le t < l - c \\\\
    k_e + (k_0 - k_e) g((t - l + c) / c) & l - c \\le t
    \\end{cases}

  with :math:`g(x) = 1 - x` (`linear`), :math:`(1 + \\cos \\pi x)/2`
  (`cosine`) or :math:`1 - \\sqrt{x}` (`sqrt`, the 1-sqrt cooldown of Hägele
  et al.), :math:`x` clipped to [0, 1]. `length` is the total and INCLUDES
  the warmup and the cooldown; the warmup starts at the fraction `start` of
  `value` (never 0 unless asked), like `warmup`.

  Args:
    value: the stable value :math:`k_0`.
    length: total duration :math:`l` (warmup + stable + cooldown).
    cooldown: :math:`c`, the final decay's duration.
    warmup: :math:`w >= 0`, the linear warmup's duration.
    start: :math:`s \\in [0, 1]`, warmup start as a fraction of `value`.
    end: :math:`k_e`, value at and after `length`.
    shape: `linear`, `cosine` or `sqrt`.

  Returns:
    The `Policy`, within `[min(end, s k_0), k_0]`.

  Raises:
    ValueError: if `warmup + cooldown > length` or a bad `shape`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.wsd(1.0, length=100, cooldown=20, warmup=10, start=0)
    >>> print([round(float(s(t)), 4) for t in (0, 5, 10, 80, 95, 100)])
    [0.0, 0.5, 1.0, 1.0, 0.25, 0.0]

  References:
    Hu et al. 2024, MiniCPM; Hägele et al. 2024, Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations.
  """
  value = P.check_float('value', value)
  length = P.check_duration('length', length)
  cooldown = P.check_duration('cooldown', cooldown)
  warmup = P.check_duration('warmup', warmup, allow_zero=True)
  start = P.check_float('start', start, low=0, high=1)
  end = P.check_float('end', end)
  shape = P.check_choice('shape', shape, ('linear', 'cosine', 'sqrt'))
  if warmup + cooldown > length:
    raise ValueError(
      f'warmup={warmup} + cooldown={cooldown} must be <= length={length} '
      '(length includes both)'
    )
  decay_start = length - cooldown

  def fn(t):
    x = _fraction(jnp.maximum(t - decay_start, 0), cooldown)
    if shape == 'linear':
      g = 1.0 - x
    elif shape == 'cosine':
      g = _half_cos(x)
    else:
      g = 1.0 - jnp.sqrt(x)
    v = jnp.where(t >= decay_start, end + (value - end) * g, value)
    if warmup:
      v = jnp.where(
        t < warmup, value * linear_warmup_factor(t, warmup, start), v
      )
    return v

  return P.make(
    'wsd',
    fn,
    value=value,
    length=length,
    cooldown=cooldown,
    warmup=warmup,
    start=start,
    end=end,
    shape=shape,
  )


@register('tanh_decay')
def tanh_decay(
  value: float,
  length: float,
  end: float = 0.0,
  lower: float = -6.0,
  upper: float = 3.0,
) -> Policy:
  """Hyperbolic-tangent decay (HTD), then its final value.

  .. math:: f(t) = k_e + (k_0 - k_e) (1 - \\tanh(L + (U - L)
    \\min(t, l) / l)) / 2

  Note :math:`f(0) = k_e + (k_0 - k_e)(1 - \\tanh L)/2`, slightly below
  :math:`k_0` (0.999994 of it for L = -6), as in the paper.

  Args:
    value: :math:`k_0`.
    length: :math:`l` (units of t).
    end: :math:`k_e`.
    lower: :math:`L`, paper default -6.
    upper: :math:`U > L`, paper default 3.

  Returns:
    The `Policy`, between `end` and `value`.

  Raises:
    ValueError: on `upper <= lower` or `length <= 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.tanh_decay(1.0, length=9, lower=-3, upper=3)
    >>> print([round(float(s(t)), 4) for t in (0, 4.5, 9, 20)])
    [0.9975, 0.5, 0.0025, 0.0025]

  References:
    Hsueh et al. 2019, Stochastic Gradient Descent with Hyperbolic-Tangent
    Decay on Classification.
  """
  value = P.check_float('value', value)
  length = P.check_duration('length', length)
  end = P.check_float('end', end)
  lower = P.check_float('lower', lower)
  upper = P.check_float('upper', upper)
  if not upper > lower:
    raise ValueError(f'upper={upper} must be > lower={lower}')

  def fn(t):
    x = lower + (upper - lower) * _fraction(t, length)
    return end + (value - end) * (1.0 - jnp.tanh(x)) / 2.0

  return P.make(
    'tanh_decay',
    fn,
    value=value,
    length=length,
    end=end,
    lower=lower,
    upper=upper,
  )


# Cyclical families (Smith 2017, LRBench).


def _check_cyclic(low, high, length, amplitude, gamma):
  low = P.check_float('low', low)
  high = P.check_float('high', high)
  if low > high:
    raise ValueError(f'low={low} must be <= high={high}')
  length = P.check_duration('length', length)
  amplitude = P.check_choice('amplitude', amplitude, _AMPLITUDES)
  gamma = P.check_float('gamma', gamma, low=0, low_open=True, high=1)
  return low, high, length, amplitude, gamma


def _scale(t, k, amplitude, gamma):
  if amplitude == 'half':
    return P.power(0.5, k)
  if amplitude == 'exp':
    return P.power(gamma, t)
  return 1.0


def _wave(t, up, down, phase, wave):
  """Cycle index k and wave position u in [0, 1] (0 = low, 1 = high).

  The triangle rises over `up` and falls over `down`; `phase='down'` starts
  at the top (LRBench's "D" variants), shifting the clock by `up` while
  keeping integer arithmetic exact.
  """
  cycle = up + down
  k, r = P.periodic(t, cycle)
  if phase == 'down':
    r = r + jnp.float32(up)
    wrap = r >= cycle
    k = jnp.where(wrap, k + 1, k)
    r = jnp.where(wrap, r - cycle, r)
  u = jnp.where(r <= up, r / jnp.float32(up), (cycle - r) / jnp.float32(down))
  u = jnp.clip(u, 0.0, 1.0)
  if wave == 'sine':
    u = jnp.sin(jnp.pi / 2 * u)
  elif wave == 'cosine':
    u = (1.0 - jnp.cos(jnp.pi * u)) / 2.0
  return k, u


@register('triangular')
def triangular(
  low: float,
  high: float,
  length: float,
  amplitude: str = 'const',
  gamma: float = 1.0,
  phase: str = 'up',
  length_down: float | None = None,
) -> Policy:
  """Cyclical triangle wave (Smith's CLR; LRBench TRI, TRI2, TRIEXP, D...).

  .. math:: f(t) = k_0 + (k_1 - k_0)\\, u(t)\\, s(t)

  :math:`u` rises linearly 0 -> 1 over `length` and falls back over
  `length_down` (default `length`); :math:`s = 1` (`const`),
  :math:`2^{-k}` with k completed cycles (`half`, Smith's triangular2) or
  :math:`\\gamma^t` (`exp`, Smith's exp_range). `phase='down'` starts at
  `high` (LRBench's DTRI family). Equals PyTorch's `CyclicLR(base_lr=k_0,
  max_lr=k_1, step_size_up=length, step_size_down=length_down, mode, gamma)`
  and LRBench's TRI, TRI2, TRIEXP (l = length) at iteration t.

  Args:
    low: :math:`k_0`.
    high: :math:`k_1 \\ge k_0`.
    length: the half cycle (rise), units of t.
    amplitude: `const`, `half` or `exp`.
    gamma: :math:`\\gamma \\in (0, 1]` for `exp`.
    phase: `up` (start at low) or `down` (start at high).
    length_down: the fall (default: `length`).

  Returns:
    The `Policy`, within `[low, high]`.

  Raises:
    ValueError: if `low > high`, a bad `amplitude` or `phase`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.triangular(0.1, high=1.0, length=4)
    >>> print([round(float(s(t)), 4) for t in (0, 2, 4, 8)])
    [0.1, 0.55, 1.0, 0.1]

  References:
    Smith 2017, Cyclical Learning Rates for Training Neural Networks.
  """
  low, high, length, amplitude, gamma = _check_cyclic(
    low, high, length, amplitude, gamma
  )
  phase = P.check_choice('phase', phase, ('up', 'down'))
  down = (
    length
    if length_down is None
    else P.check_duration('length_down', length_down)
  )

  def fn(t):
    k, u = _wave(t, length, down, phase, 'triangle')
    return low + (high - low) * u * _scale(t, k, amplitude, gamma)

  return P.make(
    'triangular',
    fn,
    low=low,
    high=high,
    length=length,
    amplitude=amplitude,
    gamma=gamma,
    phase=phase,
    length_down=None if length_down is None else down,
  )


@register('triangular2', canonical=False)
def triangular2(low: float, high: float, length: float) -> Policy:
  """Smith's triangular2: `triangular(..., amplitude='half')`.

  .. math:: f(t) = k_0 + (k_1 - k_0)\\, u(t)\\, 2^{-\\lfloor t / 2l \\rfloor}

  Args:
    low: :math:`k_0`.
    high: :math:`k_1`.
    length: the half cycle :math:`l`.

  Returns:
    The `Policy` (text form: `triangular(...,amplitude=half)`).

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.triangular2(0.0, high=1.0, length=2)
    >>> print([float(s(t)) for t in (2, 6, 10)])
    [1.0, 0.5, 0.25]

  References:
    Smith 2017, Cyclical Learning Rates for Training Neural Networks.
  """
  return triangular(low, high, length, amplitude='half')


@register('exp_range', canonical=False)
def exp_range(low: float, high: float, length: float, gamma: float) -> Policy:
  """Smith's exp_range: `triangular(..., amplitude='exp', gamma=gamma)`.

  .. math:: f(t) = k_0 + (k_1 - k_0)\\, u(t)\\, \\gamma^t

  Args:
    low: :math:`k_0`.
    high: :math:`k_1`.
    length: the half cycle :math:`l`.
    gamma: :math:`\\gamma \\in (0, 1]`.

  Returns:
    The `Policy` (text form: `triangular(...,amplitude=exp,gamma=...)`).

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.exp_range(0.0, high=1.0, length=2, gamma=0.5)
    >>> print([float(s(t)) for t in (1, 2)])
    [0.25, 0.25]

  References:
    Smith 2017, Cyclical Learning Rates for Training Neural Networks.
  """
  return triangular(low, high, length, amplitude='exp', gamma=gamma)


@register('sine')
def sine(
  low: float,
  high: float,
  length: float,
  amplitude: str = 'const',
  gamma: float = 1.0,
  phase: str = 'up',
) -> Policy:
  """Cyclical sine wave (LRBench's SIN, SIN2, SINEXP and DSIN family).

  .. math:: f(t) = k_0 + (k_1 - k_0) |\\sin(\\pi t' / 2l)|\\, s(t)

  with :math:`t' = t` (`up`) or :math:`t + l` (`down`) and the amplitude
  :math:`s` of `triangular` (`half`: :math:`2^{-\\lfloor t'/2l \\rfloor}`,
  `exp`: :math:`\\gamma^t`). Equals LRBench's SIN/SIN2/SINEXP and
  DSIN/DSIN2/DSINEXP with l = length.

  Args:
    low: :math:`k_0`.
    high: :math:`k_1 \\ge k_0`.
    length: :math:`l`, the half period (low to high).
    amplitude: `const`, `half` or `exp`.
    gamma: :math:`\\gamma \\in (0, 1]` for `exp`.
    phase: `up` (start at low) or `down` (start at high).

  Returns:
    The `Policy`, within `[low, high]`.

  Raises:
    ValueError: if `low > high`, a bad `amplitude` or `phase`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.sine(0.0, high=1.0, length=3)
    >>> print([round(float(s(t)), 4) for t in (0, 1, 3, 6)])
    [0.0, 0.5, 1.0, 0.0]

  References:
    Wu et al. 2019, Demystifying Learning Rate Policies (LRBench).
  """
  low, high, length, amplitude, gamma = _check_cyclic(
    low, high, length, amplitude, gamma
  )
  phase = P.check_choice('phase', phase, ('up', 'down'))

  def fn(t):
    k, u = _wave(t, length, length, phase, 'sine')
    return low + (high - low) * u * _scale(t, k, amplitude, gamma)

  return P.make(
    'sine',
    fn,
    low=low,
    high=high,
    length=length,
    amplitude=amplitude,
    gamma=gamma,
    phase=phase,
  )


@register('cosine_cyclic')
def cosine_cyclic(
  low: float,
  high: float,
  length: float,
  amplitude: str = 'const',
  gamma: float = 1.0,
  phase: str = 'down',
) -> Policy:
  """Cyclical raised cosine (LRBench's COS, COS2, COSEXP and UPCOS family).

  .. math:: f(t) = k_0 + (k_1 - k_0) (1 + \\cos(\\pi t' / l)) / 2\\, s(t)

  with :math:`t' = t` (`down`, LRBench's COS: starts at high) or
  :math:`t + l` (`up`, LRBench's UPCOS: starts at low) and the amplitude
  :math:`s` of `triangular` (`half` halves at each low point, as COS2 and
  UPCOS2 do; `exp`: :math:`\\gamma^t`). The period is `2 * length`, as in
  LRBench's code (`cos(pi t / l)`), so COS, SIN and TRI with the same
  `length` share their periods; the LRBench paper's table writes COS with a
  period of `l`. lrjax follows the code, where `length` always is the half
  period.

  Args:
    low: :math:`k_0`.
    high: :math:`k_1 \\ge k_0`.
    length: :math:`l`, the half period (high to low).
    amplitude: `const`, `half` or `exp`.
    gamma: :math:`\\gamma \\in (0, 1]` for `exp`.
    phase: `down` (start at high, COS) or `up` (start at low, UPCOS).

  Returns:
    The `Policy`, within `[low, high]`.

  Raises:
    ValueError: if `low > high`, a bad `amplitude` or `phase`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.cosine_cyclic(0.0, high=1.0, length=4)
    >>> print([round(float(s(t)), 4) for t in (0, 2, 4, 8)])
    [1.0, 0.5, 0.0, 1.0]

  References:
    Wu et al. 2019, Demystifying Learning Rate Policies (LRBench).
  """
  low, high, length, amplitude, gamma = _check_cyclic(
    low, high, length, amplitude, gamma
  )
  phase = P.check_choice('phase', phase, ('up', 'down'))

  def fn(t):
    k, u = _wave(t, length, length, phase, 'cosine')
    return low + (high - low) * u * _scale(t, k, amplitude, gamma)

  return P.make(
    'cosine_cyclic',
    fn,
    low=low,
    high=high,
    length=length,
    amplitude=amplitude,
    gamma=gamma,
    phase=phase,
  )


@register('sawtooth')
def sawtooth(
  low: float,
  high: float,
  length: float,
  shape: str = 'linear',
  amplitude: str = 'const',
  gamma: float = 1.0,
) -> Policy:
  """Restarts: fall from `high` to `low` every `length` (LRBench's RSW family).

  .. math:: f(t) = k_0 + (k_1 - k_0)\\, g(1 - r / l)\\, s(t),
    \\quad r = t \\bmod l

  with :math:`g(x) = x` (`linear`, RSW), :math:`\\sin(\\pi x / 2)`
  (`sine`, SINRSW) or :math:`(1 - \\cos \\pi x)/2` (`cosine`, COSRSW) and
  :math:`s = 1`, :math:`2^{-\\lfloor t/l \\rfloor}` (`half`, ...RSW2) or
  :math:`\\gamma^t` (`exp`, ...RSWEXP). Cycles are half-open,
  :math:`[n l, (n + 1) l)`: at t = n l lrjax gives the restart value (high),
  where LRBench's code (`-t/l - floor(-t/l)`) gives the previous cycle's end
  (low); everywhere else the values agree.

  Args:
    low: :math:`k_0`.
    high: :math:`k_1 \\ge k_0`.
    length: :math:`l`, the cycle.
    shape: `linear`, `sine` or `cosine`.
    amplitude: `const`, `half` or `exp`.
    gamma: :math:`\\gamma \\in (0, 1]` for `exp`.

  Returns:
    The `Policy`, within `[low, high]`.

  Raises:
    ValueError: if `low > high`, a bad `shape` or `amplitude`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.sawtooth(0.0, high=1.0, length=4)
    >>> print([float(s(t)) for t in (0, 1, 3, 4)])
    [1.0, 0.75, 0.25, 1.0]

  References:
    Wu et al. 2019, Demystifying Learning Rate Policies (LRBench).
  """
  low, high, length, amplitude, gamma = _check_cyclic(
    low, high, length, amplitude, gamma
  )
  shape = P.check_choice('shape', shape, ('linear', 'sine', 'cosine'))

  def fn(t):
    k, r = P.periodic(t, length)
    x = jnp.clip(1.0 - r / jnp.float32(length), 0.0, 1.0)
    if shape == 'sine':
      x = jnp.sin(jnp.pi / 2 * x)
    elif shape == 'cosine':
      x = (1.0 - jnp.cos(jnp.pi * x)) / 2.0
    return low + (high - low) * x * _scale(t, k, amplitude, gamma)

  return P.make(
    'sawtooth',
    fn,
    low=low,
    high=high,
    length=length,
    shape=shape,
    amplitude=amplitude,
    gamma=gamma,
  )


def _fraction(t, length):
  """min(t, length) / length in float32, exact at t = length."""
  return jnp.clip(P.f32(t) / jnp.float32(length), 0.0, 1.0)


def _half_cos(x):
  return (1.0 + jnp.cos(jnp.pi * x)) / 2.0


def _half_cos_rem(rem):
  """(1 + cos(pi (1 - rem))) / 2 as sin(pi rem / 2)**2: accurate near 0."""
  return jnp.sin(jnp.pi / 2 * rem) ** 2
