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


@register('step', durations={'length': 'end'})
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


@register('multistep', durations={'milestones': 'end'})
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


@register('exponential', durations={'length': 'time'})
def exponential(
  value: float,
  gamma: float,
  length: float = 1,
  staircase: bool = False,
  end: float | None = None,
) -> Policy:
  """Exponential decay or growth, continuous or staircase (ExponentialLR).

  .. math:: f(t) = k_0 \\gamma^{t / l} \\quad\\text{or}\\quad
    k_0 \\gamma^{\\lfloor t / l \\rfloor},

  then bounded by `end`: :math:`\\max(f, k_e)` for a decay
  (:math:`\\gamma < 1`), :math:`\\min(f, k_e)` for a growth
  (:math:`\\gamma > 1`). With `length=1` and integer `t` this equals
  PyTorch's `ExponentialLR(gamma)`; it is LRBench's EXP and optax's
  `exponential_decay(init_value=k_0, transition_steps=l, decay_rate=gamma,
  staircase, end_value=k_e)` (optax's `transition_begin=b` is
  `join([constant(k_0), exponential(...)], boundaries=b)`). A rate above 1
  warms up by growth (optax's `decay_rate > 1`); it needs `end`, the cap it
  grows to, so the value stays finite for every t. The power is taken to
  about one float32 ulp (`gamma` is not rounded to float32 first).

  Args:
    value: initial value :math:`k_0` (> 0 for a growth).
    gamma: factor per `length`, > 0: below 1 decays, above 1 grows.
    length: :math:`l` (units of t).
    staircase: change in whole steps of `length`.
    end: :math:`k_e`, the floor of a decay (<= value) or the cap of a
      growth (>= value, required); None: no floor.

  Returns:
    The `Policy`, within `[end or 0, value]` for a decay of `value >= 0`,
    within `[value, end]` for a growth.

  Raises:
    ValueError: on `gamma <= 0`, `length <= 0`, a growth without `end` or
      with `end < value`, or a decay with `end > value`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.exponential(1.0, gamma=0.5, length=2)
    >>> print([float(s(t)) for t in (0, 1, 2, 4)])
    [1.0, 0.7071067690849304, 0.5, 0.25]
    >>> g = schedules.exponential(0.01, gamma=2, end=0.1)
    >>> print([round(float(g(t)), 6) for t in (0, 1, 3, 4, 100)])
    [0.01, 0.02, 0.08, 0.1, 0.1]

  References:
    Wu et al. 2019 (LRBench), EXP; optax `exponential_decay`.
  """
  value = P.check_float('value', value)
  gamma = P.check_float('gamma', gamma, low=0, low_open=True)
  length = P.check_duration('length', length)
  staircase = P.check_bool('staircase', staircase)
  if end is not None:
    end = P.check_float('end', end)
  if gamma > 1:
    if end is None:
      raise ValueError(
        f'gamma={gamma} > 1 grows without bound: give end=, the value it '
        'grows to (optax end_value)'
      )
    if not value > 0:
      raise ValueError(f'value={value} must be > 0 for a growth (gamma > 1)')
    if end < value:
      raise ValueError(
        f'end={end} must be >= value={value} for a growth (gamma > 1)'
      )
  elif end is not None and end > value:
    raise ValueError(
      f'end={end} must be <= value={value} for a decay (gamma <= 1)'
    )

  def fn(t):
    k, r = P.periodic(t, length)
    e = k if staircase else k + r / jnp.float32(length)
    v = value * P.power(gamma, e)
    if end is None:
      return v
    return jnp.minimum(v, end) if gamma > 1 else jnp.maximum(v, end)

  return P.make(
    'exponential',
    fn,
    value=value,
    gamma=gamma,
    length=length,
    staircase=staircase,
    end=end,
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


@register('inverse_sqrt', durations={'warmup': 'warmup', 'timescale': 'time'})
def inverse_sqrt(
  value: float,
  warmup: float,
  timescale: float | None = None,
  start: float = 0.1,
) -> Policy:
  """Linear warmup, then inverse-square-root decay (HF, big_vision).

  .. math:: f(t) = \\begin{cases}
    k_0 (s + (1 - s) t / w) & t < w \\\\
    k_0 \\sqrt{\\tau / (t - w + \\tau)} & t \\ge w
    \\end{cases}

  With `start=0` this is Hugging Face's `get_inverse_sqrt_schedule(
  num_warmup_steps=w, timescale=tau)` on a base rate :math:`k_0` (its
  timescale also defaults to the warmup) and big_vision's `rsqrt` schedule;
  with :math:`\\tau = w` it is the Transformer's ("noam") decay,
  :math:`k_0 \\sqrt{w / t}`, see `noam`. The warmup starts at the fraction
  `start` of :math:`k_0` (never 0 unless asked), like `warmup`.

  Args:
    value: the peak :math:`k_0`, reached at :math:`t = w`.
    warmup: :math:`w \\ge 0`, the warmup's duration (units of t).
    timescale: :math:`\\tau > 0`; default `warmup` (required when
      `warmup=0`).
    start: :math:`s \\in [0, 1]`, the warmup's first value as a fraction of
      `value`.

  Returns:
    The `Policy`, within `[0, value]` for `value >= 0`.

  Raises:
    ValueError: on a negative `warmup`, `timescale <= 0`, `warmup=0`
      without `timescale`, or `start` outside [0, 1].

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.inverse_sqrt(1.0, warmup=4, start=0)
    >>> print([float(s(t)) for t in (0, 2, 4, 16)])
    [0.0, 0.5, 1.0, 0.5]

  References:
    Vaswani et al. 2017, Attention Is All You Need; Zhai et al. 2022,
    Scaling Vision Transformers (rsqrt with a timescale).
  """
  value = P.check_float('value', value)
  warmup = P.check_duration('warmup', warmup, allow_zero=True)
  if timescale is None:
    if not warmup:
      raise ValueError(
        'warmup=0 needs timescale= (the decay is sqrt(timescale / (t + '
        'timescale)))'
      )
    tau = warmup
  else:
    timescale = P.check_duration('timescale', timescale)
    tau = timescale
  start = P.check_float('start', start, low=0, high=1)
  shift = float(tau - warmup)

  def fn(t):
    tf = P.f32(t)
    v = value * jnp.sqrt(jnp.float32(tau) / jnp.maximum(tf + shift, tau))
    if warmup:
      v = jnp.where(
        t < warmup, value * warmup_factor(t, warmup, start, 'linear'), v
      )
    return v

  return P.make(
    'inverse_sqrt',
    fn,
    value=value,
    warmup=warmup,
    timescale=timescale,
    start=start,
  )


@register('noam', durations={'warmup': 'warmup'}, unit='update')
def noam(d_model: float, warmup: int, factor: float = 1.0) -> Policy:
  """The Transformer's schedule (Vaswani et al. 2017), counted in updates.

  .. math:: f(t) = c\\, d^{-1/2} \\min((t + 1)^{-1/2}, (t + 1)\\, w^{-3/2})

  The paper's `step_num` is :math:`t + 1`: the first update (t = 0) is
  step 1, so it never uses 0. The peak :math:`c (d w)^{-1/2}` is reached at
  step :math:`w`, then the value decays as :math:`1 / \\sqrt{t + 1}`. The
  formula is defined on update counts, so the policy carries
  `unit='update'`: `lrjax.batch.per_update` refuses it; for a schedule in
  epochs use `inverse_sqrt` (the same shape with a peak value).

  Args:
    d_model: :math:`d > 0`, the model width (512 in the paper).
    warmup: :math:`w \\ge 1`, warmup updates (4000 in the paper).
    factor: :math:`c > 0`, a scale on top (1 in the paper).

  Returns:
    The `Policy` (unit `update`), within `(0, c (d w)^{-1/2}]`.

  Raises:
    ValueError: on `d_model <= 0`, `warmup < 1` or `factor <= 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.noam(512, warmup=4000)
    >>> print([f'{float(s(t)):.3e}' for t in (0, 3999, 15999)])
    ['1.747e-07', '6.988e-04', '3.494e-04']

  References:
    Vaswani et al. 2017, Attention Is All You Need, section 5.3.
  """
  d_model = P.check_float('d_model', d_model, low=0, low_open=True)
  if isinstance(warmup, bool) or not float(warmup).is_integer() or warmup < 1:
    raise ValueError(f'warmup={warmup!r} must be an integer >= 1 (updates)')
  warmup = int(warmup)
  factor = P.check_float('factor', factor, low=0, low_open=True)
  scale = factor / math.sqrt(d_model)
  ramp = warmup**-1.5

  def fn(t):
    step = P.f32(t) + 1.0
    return scale * jnp.minimum(jax.lax.rsqrt(step), step * jnp.float32(ramp))

  return P.make(
    'noam', fn, unit='update', d_model=d_model, warmup=warmup, factor=factor
  )


@register('polynomial', durations={'length': 'end'})
def polynomial(
  value: float,
  length: float,
  end: float = 0.0,
  power: float = 1.0,
  k_decay: float = 1.0,
) -> Policy:
  """Polynomial decay to `end` over `length`, then `end` (PyTorch PolynomialLR).

  .. math:: f(t) = (k_0 - k_e) (1 - (\\min(t, l) / l)^k)^p + k_e

  With `end=0` and `k=1` equals `PolynomialLR(total_iters=l, power=p)`,
  Caffe's "poly" and optax's `polynomial_schedule`; with :math:`k \\ne 1`
  timm's `PolyLRScheduler(k_decay=k)` (one cycle).

  Args:
    value: initial value :math:`k_0`.
    length: :math:`l` (units of t).
    end: final value :math:`k_e`.
    power: :math:`p > 0`.
    k_decay: :math:`k > 0`, timm's k-decay (Zhang et al. 2020): above 1
      keeps the value high longer, below 1 drops it sooner.

  Returns:
    The `Policy`, between `end` and `value`.

  Raises:
    ValueError: on `length <= 0`, `power <= 0` or `k_decay <= 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.polynomial(1.0, length=4, power=2)
    >>> print([float(s(t)) for t in (0, 2, 4, 9)])
    [1.0, 0.25, 0.0, 0.0]

  References:
    Jia et al. 2014, Caffe ("poly"); Wu et al. 2019 (LRBench), POLY; Zhang
    et al. 2020, k-decay: A New Method For Learning Rate Schedule.
  """
  value = P.check_float('value', value)
  length = P.check_duration('length', length)
  end = P.check_float('end', end)
  power = P.check_float('power', power, low=0, low_open=True)
  k_decay = P.check_float('k_decay', k_decay, low=0, low_open=True)

  def fn(t):
    frac = _k_remaining(_remaining(t, length, length), k_decay)
    return (value - end) * frac**power + end

  return P.make(
    'polynomial',
    fn,
    value=value,
    length=length,
    end=end,
    power=power,
    k_decay=k_decay,
  )


@register('linear', durations={'length': 'end'})
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


@register('sigmoid', durations={'center': 'time'})
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


@register('cosine', durations={'length': 'end'})
def cosine(
  value: float,
  length: float,
  end: float = 0.0,
  exponent: float = 1.0,
  k_decay: float = 1.0,
) -> Policy:
  """Cosine annealing to a floor, then the floor (SGDR without restarts).

  .. math:: f(t) = k_e + (k_0 - k_e)
    \\left[\\frac{1 + \\cos(\\pi x^k)}{2}\\right]^p,
    \\quad x = \\min(t, l) / l

  Equals PyTorch's `CosineAnnealingLR(T_max=l, eta_min=k_e)` for t <= l
  (p = k = 1); after `l` PyTorch keeps following the cosine back up (period
  2l), lrjax holds `end`, like optax and timm. It is optax's
  `cosine_decay_schedule(init_value=k_0, decay_steps=l, alpha=k_e / k_0,
  exponent=p)` and timm's `CosineLRScheduler(t_initial=l, lr_min=k_e,
  k_decay=k)` (one cycle, no warmup). The bracket is evaluated as
  :math:`\\sin^2(\\pi (1 - x^k) / 2)` with :math:`1 - x^k` computed from
  the time left, so it keeps float32's relative precision near the floor.

  Args:
    value: initial value :math:`k_0`.
    length: :math:`l` (units of t).
    end: the floor :math:`k_e`.
    exponent: :math:`p > 0`, optax's `exponent`.
    k_decay: :math:`k > 0`, timm's `k_decay` (above 1 stays high longer).

  Returns:
    The `Policy`, between `end` and `value`.

  Raises:
    ValueError: on `length <= 0`, `exponent <= 0` or `k_decay <= 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.cosine(0.4, length=90)
    >>> print([round(float(s(t)), 6) for t in (0, 45, 90, 200)])
    [0.4, 0.2, 0.0, 0.0]

  References:
    Loshchilov & Hutter 2017, SGDR: Stochastic Gradient Descent with Warm
    Restarts; Zhang et al. 2020, k-decay: A New Method For Learning Rate
    Schedule.
  """
  value = P.check_float('value', value)
  length = P.check_duration('length', length)
  end = P.check_float('end', end)
  exponent = P.check_float('exponent', exponent, low=0, low_open=True)
  k_decay = P.check_float('k_decay', k_decay, low=0, low_open=True)

  def fn(t):
    rem = _k_remaining(_remaining(t, length, length), k_decay)
    h = _half_cos_rem(rem)
    if exponent != 1.0:
      h = h**exponent
    return end + (value - end) * h

  return P.make(
    'cosine',
    fn,
    value=value,
    length=length,
    end=end,
    exponent=exponent,
    k_decay=k_decay,
  )


# Cycle tables stop past this t (float32 t beyond it is not meaningful).
_HORIZON = 2**120


def _check_restarts(period, mult, decay, limit):
  period = P.check_duration('period', period)
  if isinstance(mult, bool):
    raise TypeError(f'mult={mult!r} must be a number >= 1')
  mult = P.check_float('mult', mult, low=1)
  if mult.is_integer():
    mult = int(mult)
  decay = P.check_float('decay', decay, low=0, low_open=True, high=1)
  if limit is not None:
    if isinstance(limit, bool) or not float(limit).is_integer() or limit < 1:
      raise ValueError(
        f'limit={limit!r} must be an integer >= 1 (the number of cycles), '
        'or None for no limit'
      )
    limit = int(limit)
  return period, mult, decay, limit


# Non-integer `mult`: cycles tabulated (starts exact to float32) up to here.
_TABLE_T = 2**31
_TABLE_SIZE = 4096


def _cycles(t, period, mult):
  """`(i, rem)`: the cycle holding `t` and the fraction of it left.

  Cycle i lasts :math:`T_0 m^i` and starts at :math:`T_0 (m^i - 1)/(m - 1)`
  (:math:`i T_0` for m = 1). `i` is float32; `rem` is in [0, 1], computed
  from the time left in the cycle so it is accurate near the cycle's end.
  An integer `mult` uses a table of starts, exact in int32 for integer `t`
  and `period`, up to a cycle that starts past 2**120. Any other `mult` uses a table of starts
  computed in float64 (each start within half a float32 ulp) for the cycles
  that begin before 2**31 (at most 4096 of them), and beyond it the closed
  form for i in float32, corrected so that the start of cycle i is <= t <
  the start of cycle i + 1: cycles continue for every t.
  """
  if mult == 1:
    k, r = P.periodic(t, period)
    return k, (jnp.float32(period) - r) / jnp.float32(period)
  if isinstance(mult, int):
    starts, lengths = [0], [period]
    while starts[-1] <= _HORIZON:
      starts.append(starts[-1] + lengths[-1])
      lengths.append(lengths[-1] * mult)
    lengths = [min(x, 2.0**127) for x in lengths]
    i, r = P.segment(t, starts)
    size = jnp.asarray(lengths, jnp.float32)[i]
    return P.f32(i), jnp.clip((size - r) / size, 0.0, 1.0)
  tf = P.f32(t)
  starts, lengths = [0.0], [float(period)]
  while starts[-1] <= _TABLE_T and len(starts) <= _TABLE_SIZE:
    starts.append(starts[-1] + lengths[-1])
    lengths.append(lengths[-1] * mult)
  table = jnp.asarray(starts, jnp.float32)
  sizes = jnp.asarray(lengths[:-1], jnp.float32)
  n = len(starts) - 1  # cycles fully in the table
  idx = jnp.clip(jnp.searchsorted(table, tf, side='right') - 1, 0, n - 1)
  rem_table = (table[idx + 1] - tf) / sizes[idx]

  log_m = math.log(mult)

  def start(i):
    return jnp.float32(period / (mult - 1)) * (P.power(mult, i) - 1.0)

  i = jnp.floor(
    jnp.log1p(tf * jnp.float32((mult - 1) / period)) / jnp.float32(log_m)
  )
  i = jnp.maximum(i, 0.0)
  i = jnp.where(tf < start(i), i - 1.0, i)
  i = jnp.where(tf >= start(i + 1.0), i + 1.0, i)
  i = jnp.maximum(i, float(n))
  size = jnp.float32(period) * P.power(mult, i)
  rem_closed = (start(i + 1.0) - tf) / size
  inside = tf < table[-1]
  i = jnp.where(inside, P.f32(idx), i)
  rem = jnp.where(inside, rem_table, rem_closed)
  return i, jnp.clip(rem, 0.0, 1.0)


@register('cosine_restarts', durations={'period': 'end'})
def cosine_restarts(
  value: float,
  period: float,
  mult: float = 1,
  decay: float = 1.0,
  end: float = 0.0,
  limit: int | None = None,
  k_decay: float = 1.0,
) -> Policy:
  """Cosine annealing with warm restarts (SGDR; timm's CosineLRScheduler).

  .. math:: f(t) = k_e + (\\max(k_0 d^i, k_e) - k_e)
    \\frac{1 + \\cos(\\pi (r / T_i)^k)}{2}, \\quad T_i = T_0 m^i

  where cycle :math:`i` starts at :math:`T_0 (m^i - 1)/(m - 1)` (or
  :math:`i T_0` for m = 1) and :math:`r` is the time since its start; after
  `limit` cycles the value holds `end`. Equals PyTorch's
  `CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)` (integer m, d = 1,
  no limit) and timm's `CosineLRScheduler(t_initial=T_0, lr_min=k_e,
  cycle_mul=m, cycle_decay=d, cycle_limit=limit, k_decay=k)` without warmup
  (timm's `cycle_limit` defaults to 1, lrjax's `limit` to no limit; timm's
  `cycle_mul` may be any number >= 1, as `mult` here). One difference: when
  the decayed peak :math:`k_0 d^i` falls below `end`, lrjax holds the peak
  at `end` (bounds `[end, value]`), where timm lets the curve go below its
  `lr_min`. An integer `mult` is exact at every restart for integer t (its
  cycle table is int32); a non-integer one tabulates the cycles that start
  before 2**31 (each start within half a float32 ulp) and uses the closed
  form beyond. The cycles go on for every t a float32 can hold, for any
  `mult` (an integer `mult`'s table ends past t = 2**120, and the value
  holds `end` after that last cycle).

  Args:
    value: peak of the first cycle :math:`k_0`.
    period: :math:`T_0`, length of the first cycle (units of t).
    mult: :math:`m \\ge 1`, growth of the cycle length (any number).
    decay: :math:`d \\in (0, 1]`, peak decay per cycle.
    end: the floor :math:`k_e` (<= value).
    limit: the number of cycles, after which the value holds `end`; None
      for no limit.
    k_decay: :math:`k > 0`, timm's k-decay inside each cycle.

  Returns:
    The `Policy`, between `end` and `value`.

  Raises:
    ValueError: on `mult < 1`, `decay` outside (0, 1], `period <= 0`,
      `end > value`, `limit < 1` or `k_decay <= 0`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.cosine_restarts(1.0, period=10, mult=2, decay=0.5)
    >>> print([round(float(s(t)), 4) for t in (0, 5, 10, 20, 30)])
    [1.0, 0.5, 0.5, 0.25, 0.25]
    >>> s = schedules.cosine_restarts(1.0, period=4, mult=1.5, limit=2)
    >>> print([round(float(s(t)), 4) for t in (0, 2, 4, 7, 10, 99)])
    [1.0, 0.5, 1.0, 0.5, 0.0, 0.0]

  References:
    Loshchilov & Hutter 2017, SGDR; timm `CosineLRScheduler`; Zhang et al.
    2020, k-decay.
  """
  value = P.check_float('value', value)
  period, mult, decay, limit = _check_restarts(period, mult, decay, limit)
  end = P.check_float('end', end)
  if end > value:
    raise ValueError(f'end={end} must be <= value={value}')
  k_decay = P.check_float('k_decay', k_decay, low=0, low_open=True)

  def fn(t):
    i, rem = _cycles(t, period, mult)
    peak = jnp.maximum(value * P.power(decay, i), end)
    v = end + (peak - end) * _half_cos_rem(_k_remaining(rem, k_decay))
    if limit is not None:
      v = jnp.where(i < limit, v, end)
    return v

  return P.make(
    'cosine_restarts',
    fn,
    value=value,
    period=period,
    mult=mult,
    decay=decay,
    end=end,
    limit=limit,
    k_decay=k_decay,
  )


@register('tanh_restarts', durations={'period': 'end'})
def tanh_restarts(
  value: float,
  period: float,
  mult: float = 1,
  decay: float = 1.0,
  end: float = 0.0,
  limit: int | None = None,
  lower: float = -6.0,
  upper: float = 3.0,
) -> Policy:
  """Hyperbolic-tangent decay with warm restarts (timm's TanhLRScheduler).

  .. math:: f(t) = k_e + (\\max(k_0 d^i, k_e) - k_e)
    \\frac{1 - \\tanh(L + (U - L)\\, r / T_i)}{2}, \\quad T_i = T_0 m^i

  with the cycles of `cosine_restarts` (:math:`r` the time since cycle
  :math:`i` started; after `limit` cycles the value holds `end`). Equals
  timm's `TanhLRScheduler(t_initial=T_0, lb=L, ub=U, lr_min=k_e,
  cycle_mul=m, cycle_decay=d, cycle_limit=limit)` without warmup, up to the
  same floor on the peak as `cosine_restarts`. The defaults L = -6, U = 3
  are the paper's (and `tanh_decay`'s); timm's are L = -7, U = 3. As in
  `tanh_decay`, a cycle starts slightly below its peak. Evaluated as
  :math:`\\sigma(-2x)` (the same value as :math:`(1 - \\tanh x)/2`, without
  its cancellation near the floor).

  Args:
    value: peak of the first cycle :math:`k_0`.
    period: :math:`T_0`, length of the first cycle (units of t).
    mult: :math:`m \\ge 1`, growth of the cycle length.
    decay: :math:`d \\in (0, 1]`, peak decay per cycle.
    end: the floor :math:`k_e` (<= value).
    limit: the number of cycles, or None for no limit.
    lower: :math:`L`.
    upper: :math:`U > L`.

  Returns:
    The `Policy`, between `end` and `value`.

  Raises:
    ValueError: as `cosine_restarts`, or on `upper <= lower`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.tanh_restarts(1.0, period=10, lower=-3, upper=3)
    >>> print([round(float(s(t)), 4) for t in (0, 5, 10, 15)])
    [0.9975, 0.5, 0.9975, 0.5]

  References:
    Hsueh et al. 2019, Stochastic Gradient Descent with Hyperbolic-Tangent
    Decay on Classification; timm `TanhLRScheduler`.
  """
  value = P.check_float('value', value)
  period, mult, decay, limit = _check_restarts(period, mult, decay, limit)
  end = P.check_float('end', end)
  if end > value:
    raise ValueError(f'end={end} must be <= value={value}')
  lower = P.check_float('lower', lower)
  upper = P.check_float('upper', upper)
  if not upper > lower:
    raise ValueError(f'upper={upper} must be > lower={lower}')

  def fn(t):
    i, rem = _cycles(t, period, mult)
    peak = jnp.maximum(value * P.power(decay, i), end)
    x = upper - (upper - lower) * rem
    v = end + (peak - end) * jax.nn.sigmoid(-2.0 * x)
    if limit is not None:
      v = jnp.where(i < limit, v, end)
    return v

  return P.make(
    'tanh_restarts',
    fn,
    value=value,
    period=period,
    mult=mult,
    decay=decay,
    end=end,
    limit=limit,
    lower=lower,
    upper=upper,
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
  """Anneals `points[i] -> points[i + 1]` on phase i; holds the last after.

  Each phase is the mix `a w(rem) + b w(x)` of its two end values, with
  `x` the fraction of the phase done and `rem` the fraction left, each
  computed directly (never as `1 - other`), `w(u) = sin^2(pi u / 2)`
  (`cos`) or `u` (`linear`): accurate near both ends, and exactly on the
  end value at the phase's end.
  """
  tf = P.f32(t)
  out = jnp.full(jnp.shape(tf), points[-1], jnp.float32)
  for i in reversed(range(len(ends))):
    a, b = starts[i], ends[i]
    span = jnp.float32(b - a)
    done = jnp.clip((tf - jnp.float32(a)) / span, 0.0, 1.0)
    left = jnp.clip((jnp.float32(b) - tf) / span, 0.0, 1.0)
    if anneal == 'cos':
      done, left = _half_cos_rem(done), _half_cos_rem(left)
    v = points[i] * left + points[i + 1] * done
    out = jnp.where(tf <= b, v, out)
  return out


@register('onecycle', durations={'length': 'end'})
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


@register('onecycle_momentum', durations={'length': 'end'})
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


def warmup_factor(t, length, start, shape):
  """`s + (1 - s) w(t / length)` for t < length: linear, cosine or 1-sqrt.

  `w(x)` is `x`, `(1 - cos(pi x))/2 = sin^2(pi x / 2)` or
  `1 - sqrt(1 - x) = x / (1 + sqrt(1 - x))` (the forms without
  cancellation near x = 0).
  """
  x = _fraction(t, length)
  if shape == 'cosine':
    x = _half_cos_rem(x)
  elif shape == 'sqrt':
    x = x / (1.0 + jnp.sqrt(_remaining(t, length, length)))
  return start + (1.0 - start) * x


@register(
  'wsd', durations={'length': 'end', 'cooldown': 'time', 'warmup': 'warmup'}
)
def wsd(
  value: float,
  length: float,
  cooldown: float,
  warmup: float = 0,
  start: float = 0.1,
  end: float = 0.0,
  shape: str = 'linear',
  warmup_shape: str = 'linear',
) -> Policy:
  """Warmup-stable-decay (trapezoid): warmup, hold `value`, cool down.

  .. math:: f(t) = \\begin{cases}
    k_0 (s + (1 - s)\\, h(t / w)) & t < w \\\\
    k_0 & w \\le t < l - c \\\\
    k_e + (k_0 - k_e)\\, g((t - l + c) / c) & l - c \\le t
    \\end{cases}

  with the cooldown :math:`g(x) = 1 - x` (`linear`),
  :math:`(1 + \\cos \\pi x)/2` (`cosine`) or :math:`1 - \\sqrt{x}` (`sqrt`,
  the 1-sqrt cooldown of Hägele et al.) and the warmup :math:`h(x) = x`
  (`linear`), :math:`(1 - \\cos \\pi x)/2` (`cosine`) or
  :math:`1 - \\sqrt{1 - x}` (`sqrt`, Hugging Face's "1-sqrt" warmup),
  :math:`x` clipped to [0, 1]; each is evaluated from the time done and the
  time left, so it keeps float32's relative precision near both ends.
  `length` is the total and INCLUDES the warmup and the cooldown.

  The two ends are given differently, on purpose: `start` is a FACTOR of
  `value` (the warmup's first value is `start * value`, as in `warmup` and
  PyTorch's `LinearLR(start_factor)`), while `end` is an absolute VALUE (as
  every decay's `end` in lrjax and optax's `end_value`). Hugging Face's
  `get_wsd_schedule(num_warmup_steps=w, num_decay_steps=c,
  num_training_steps=l, warmup_type, decay_type, min_lr_ratio=r)` on a base
  rate :math:`k_0` is `wsd(k_0, length=l, cooldown=c, warmup=w, start=r,
  end=r * k_0, shape, warmup_shape)` (its "1-sqrt" is `sqrt` here).

  Args:
    value: the stable value :math:`k_0`.
    length: total duration :math:`l` (warmup + stable + cooldown).
    cooldown: :math:`c`, the final decay's duration.
    warmup: :math:`w >= 0`, the warmup's duration.
    start: :math:`s \\in [0, 1]`, warmup start as a fraction of `value`.
    end: :math:`k_e`, value at and after `length` (absolute).
    shape: the cooldown: `linear`, `cosine` or `sqrt`.
    warmup_shape: the warmup: `linear`, `cosine` or `sqrt`.

  Returns:
    The `Policy`, within `[min(end, s k_0), k_0]`.

  Raises:
    ValueError: if `warmup + cooldown > length` or a bad `shape` or
      `warmup_shape`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.wsd(1.0, length=100, cooldown=20, warmup=10, start=0)
    >>> print([round(float(s(t)), 4) for t in (0, 5, 10, 80, 95, 100)])
    [0.0, 0.5, 1.0, 1.0, 0.25, 0.0]
    >>> s = schedules.wsd(1.0, length=100, cooldown=20, warmup=10, start=0,
    ...                   warmup_shape='sqrt', shape='sqrt')
    >>> print([round(float(s(t)), 4) for t in (0, 5, 10, 85, 100)])
    [0.0, 0.2929, 1.0, 0.5, 0.0]

  References:
    Hu et al. 2024, MiniCPM; Hägele et al. 2024, Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations; Hugging Face
    `get_wsd_schedule`.
  """
  value = P.check_float('value', value)
  length = P.check_duration('length', length)
  cooldown = P.check_duration('cooldown', cooldown)
  warmup = P.check_duration('warmup', warmup, allow_zero=True)
  start = P.check_float('start', start, low=0, high=1)
  end = P.check_float('end', end)
  shape = P.check_choice('shape', shape, ('linear', 'cosine', 'sqrt'))
  warmup_shape = P.check_choice(
    'warmup_shape', warmup_shape, ('linear', 'cosine', 'sqrt')
  )
  if warmup + cooldown > length:
    raise ValueError(
      f'warmup={warmup} + cooldown={cooldown} must be <= length={length} '
      '(length includes both)'
    )
  decay_start = length - cooldown

  def fn(t):
    left = _remaining(t, length, cooldown)
    if shape == 'linear':
      g = left
    elif shape == 'cosine':
      g = _half_cos_rem(left)
    else:
      done = _fraction(jnp.maximum(t - decay_start, 0), cooldown)
      g = left / (1.0 + jnp.sqrt(done))
    v = jnp.where(t >= decay_start, end + (value - end) * g, value)
    if warmup:
      v = jnp.where(
        t < warmup,
        value * warmup_factor(t, warmup, start, warmup_shape),
        v,
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
    warmup_shape=warmup_shape,
  )


@register('tanh_decay', durations={'length': 'end'})
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
    # (1 - tanh x) / 2 == sigmoid(-2 x), without the cancellation near 1.
    x = upper - (upper - lower) * _remaining(t, length, length)
    return end + (value - end) * jax.nn.sigmoid(-2.0 * x)

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
    u = _half_cos_rem(u)  # (1 - cos(pi u)) / 2, accurate near u = 0
  return k, u


@register('triangular', durations={'length': 'end', 'length_down': 'time'})
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


@register('triangular2', canonical=False, durations={'length': 'end'})
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


@register('exp_range', canonical=False, durations={'length': 'end'})
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


@register(
  'triangular_momentum', durations={'length': 'end', 'length_down': 'time'}
)
def triangular_momentum(
  length: float,
  low: float = 0.8,
  high: float = 0.9,
  amplitude: str = 'const',
  gamma: float = 1.0,
  length_down: float | None = None,
) -> Policy:
  """The momentum that goes with `triangular`: high when the LR is low.

  .. math:: f(t) = m_h - (m_h - m_l)\\, u(t)\\, s(t)

  with the wave :math:`u` and the amplitude :math:`s` of `triangular`
  (`const`: 1; `half`: :math:`2^{-k}` after k cycles; `exp`:
  :math:`\\gamma^t`), so it mirrors `triangular(low_lr, high_lr, length,
  amplitude, gamma, length_down=...)`. Equals the momentum (or Adam's beta1)
  that PyTorch's `CyclicLR(step_size_up=length, step_size_down=length_down,
  mode, gamma, cycle_momentum=True, base_momentum=m_l, max_momentum=m_h)`
  sets at iteration t, for `mode='triangular'` (`const`), `'triangular2'`
  (`half`) and `'exp_range'` (`exp`); PyTorch's defaults are m_l = 0.8,
  m_h = 0.9.

  Args:
    length: the half cycle (the LR's rise), units of t.
    low: :math:`m_l`, the momentum at the LR's peak.
    high: :math:`m_h \\ge m_l`, the momentum at the LR's base.
    amplitude: `const`, `half` or `exp`.
    gamma: :math:`\\gamma \\in (0, 1]` for `exp`.
    length_down: the fall (default: `length`).

  Returns:
    The `Policy`, within `[low, high]`.

  Raises:
    ValueError: if `low > high`, or a bad `amplitude`, `gamma` or length.

  Examples:
    >>> from lrjax import schedules
    >>> m = schedules.triangular_momentum(2, amplitude='half')
    >>> print([round(float(m(t)), 4) for t in (0, 1, 2, 4, 6)])
    [0.9, 0.85, 0.8, 0.9, 0.85]

  References:
    Smith 2017, Cyclical Learning Rates for Training Neural Networks;
    Smith 2018, A disciplined approach to neural network hyper-parameters;
    PyTorch `CyclicLR`.
  """
  low, high, length, amplitude, gamma = _check_cyclic(
    low, high, length, amplitude, gamma
  )
  down = (
    length
    if length_down is None
    else P.check_duration('length_down', length_down)
  )

  def fn(t):
    k, u = _wave(t, length, down, 'up', 'triangle')
    return high - (high - low) * u * _scale(t, k, amplitude, gamma)

  return P.make(
    'triangular_momentum',
    fn,
    length=length,
    low=low,
    high=high,
    amplitude=amplitude,
    gamma=gamma,
    length_down=None if length_down is None else down,
  )


@register('sine', durations={'length': 'end'})
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


@register('cosine_cyclic', durations={'length': 'end'})
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


@register('sawtooth', durations={'length': 'end'})
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
      x = _half_cos_rem(x)
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


def _remaining(t, until, length):
  """`clip(until - t, 0, length) / length`: the fraction of `length` left.

  Computed from the difference itself (in int32 for integer `t` and
  `until`), so it keeps its relative precision as it goes to 0, where
  `1 - t / length` would not.
  """
  if P.is_int(t) and float(until).is_integer() and until <= 2**31 - 1:
    left = P.f32(jnp.clip(int(until) - t, 0, None))
  else:
    left = jnp.maximum(jnp.float32(until) - P.f32(t), 0.0)
  return jnp.minimum(left, jnp.float32(length)) / jnp.float32(length)


def _k_remaining(rem, k):
  """`1 - (1 - rem)**k` (timm's k-decay) without cancellation near rem = 0."""
  if k == 1.0:
    return rem
  return -jnp.expm1(k * jnp.log1p(-rem))


def _half_cos_rem(rem):
  """(1 + cos(pi (1 - rem))) / 2 as sin(pi rem / 2)**2: accurate near 0."""
  return jnp.sin(jnp.pi / 2 * rem) ** 2
