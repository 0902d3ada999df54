"""Composition: warmup, join (piecewise with local clocks), scale, clip, product."""

from __future__ import annotations

import math

import jax.numpy as jnp

from lrjax.schedules import _policy as P
from lrjax.schedules._policy import Policy, register


@register('warmup')
def warmup(
  policy: Policy,
  length: float,
  shape: str = 'linear',
  start: float = 0.1,
  shift: bool = True,
) -> Policy:
  """Warmup in front of any policy; the first update does not use 0.

  .. math:: f(t) = \\begin{cases} w(t / L)\\, p(t_0) & t < L \\\\
    p(t - L) \\text{ (shift) or } p(t) & t \\ge L \\end{cases}

  with :math:`t_0 = 0` (shift) or :math:`L` (no shift), and the factor
  :math:`w(x) = s + (1 - s) x` (`linear`), :math:`s + (1 - s)(1 - \\cos \\pi
  x)/2` (`cosine`) or :math:`s^{1 - x}` (`exponential`, geometric from s to
  1; needs s > 0). So the value at t = 0 is `start` times the target: 0 only
  when asked with `start=0`. Conventions elsewhere: optax's linear warmup
  starts at its `init_value` at count 0; PyTorch's `LinearLR` starts at
  `start_factor` (default 1/3); Hugging Face's `get_*_schedule_with_warmup`
  start at 0 (the first update is wasted); timm starts at `warmup_lr_init`.
  `warmup(p, L, start=s)` equals `LinearLR(start_factor=s, total_iters=L)`
  chained before `p` with `SequentialLR(milestones=[L])`.

  Durations: with `shift=True` (default) the inner policy runs on its own
  clock that starts when the warmup ends, so its durations EXCLUDE the
  warmup and the total is `L` plus the inner's length (PyTorch
  `SequentialLR`, optax `join_schedules`). With `shift=False` the inner
  policy sees the global t, so its durations INCLUDE the warmup (Goyal et
  al.: milestones 30/60/80 counted from the start, warmup over the first 5
  epochs). Either way the ramp ends on the inner policy's value where it
  takes over, so the schedule is continuous; timm's warmup
  (`warmup_prefix=False`) instead ramps to the base value and then jumps to
  its cosine at `L` (a difference of at most the inner decay over `L`).

  Args:
    policy: the policy that follows.
    length: :math:`L`, the warmup duration (units of t).
    shape: `linear`, `cosine` or `exponential`.
    start: :math:`s \\in [0, 1]`, the factor at t = 0.
    shift: whether the inner policy's clock starts after the warmup.

  Returns:
    The `Policy`, text `warmup(inner,length=L,...)`.

  Raises:
    ValueError: on `length <= 0`, `start` outside [0, 1], or
      `start=0` with `shape='exponential'`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.warmup(schedules.cosine(0.4, length=90), length=5)
    >>> print(s)
    warmup(cosine(0.4,length=90),length=5)
    >>> print([round(float(s(t)), 4) for t in (0, 5, 50, 95)])
    [0.04, 0.4, 0.2, 0.0]

  References:
    Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in
    1 Hour.
  """
  P.check_policy('policy', policy)
  length = P.check_duration('length', length)
  shape = P.check_choice('shape', shape, ('linear', 'cosine', 'exponential'))
  start = P.check_float('start', start, low=0, high=1)
  shift = P.check_bool('shift', shift)
  if shape == 'exponential' and start == 0:
    raise ValueError(
      "start=0 is impossible with shape='exponential' (geometric growth from "
      '0): use start > 0 or shape=linear'
    )
  inner = policy.fn
  t_join = 0 if shift else length

  def fn(t):
    x = jnp.clip(P.f32(t) / jnp.float32(length), 0.0, 1.0)
    if shape == 'linear':
      w = start + (1.0 - start) * x
    elif shape == 'cosine':
      w = start + (1.0 - start) * (1.0 - jnp.cos(jnp.pi * x)) / 2.0
    else:
      w = jnp.exp((1.0 - x) * jnp.float32(math.log(start)))
    target = inner(P.as_progress(t_join))
    after = inner(jnp.maximum(t - length, 0)) if shift else inner(t)
    return jnp.where(t < length, w * target, after)

  return P.make(
    'warmup',
    fn,
    policy=policy,
    length=length,
    shape=shape,
    start=start,
    shift=shift,
  )


@register('join')
def join(policies, boundaries) -> Policy:
  """Policies one after another, each on its own clock (optax.join_schedules).

  .. math:: f(t) = p_i(t - b_{i}) \\quad\\text{for } b_i \\le t < b_{i+1},
    \\ b_0 = 0

  `boundaries` are absolute, in units of t; policy i sees the local time
  since its start, like `optax.join_schedules` and PyTorch's `SequentialLR`.

  Args:
    policies: n >= 2 policies (text: separated by `/`).
    boundaries: n - 1 strictly increasing durations > 0.

  Returns:
    The `Policy`.

  Raises:
    ValueError: on a count mismatch or unsorted boundaries.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.join(
    ...   [schedules.constant(0.1), schedules.linear(0.1, end=0.0, length=10)],
    ...   boundaries=[5],
    ... )
    >>> print(s)
    join(constant(0.1)/linear(0.1,end=0,length=10),boundaries=5)
    >>> print([round(float(s(t)), 4) for t in (0, 4, 5, 10, 15)])
    [0.1, 0.1, 0.1, 0.05, 0.0]

  References:
    optax `join_schedules`; PyTorch `SequentialLR`. `sequence(...)` parses
    as `join(...)`.
  """
  policies = tuple(
    P.check_policy(f'policies[{i}]', p)
    for i, p in enumerate(P.as_tuple(policies))
  )
  boundaries = tuple(
    P.check_duration(f'boundaries[{i}]', b)
    for i, b in enumerate(P.as_tuple(boundaries))
  )
  if len(policies) != len(boundaries) + 1:
    raise ValueError(
      f'join of {len(policies)} policies needs {len(policies) - 1} '
      f'boundaries, got boundaries={boundaries}'
    )
  for a, b in zip(boundaries, boundaries[1:], strict=False):
    if not b > a:
      raise ValueError(f'boundaries={boundaries} must be strictly increasing')
  starts = (0,) + boundaries
  fns = [p.fn for p in policies]

  def fn(t):
    idx = P.count_ge(t, boundaries)
    vals = [f(jnp.maximum(t - s, 0)) for f, s in zip(fns, starts, strict=True)]
    return jnp.select([idx == i for i in range(len(vals))], vals)

  return P.make('join', fn, policies=policies, boundaries=boundaries)


register('sequence', canonical=False)(join)


@register('scale')
def scale(policy: Policy, factor: float) -> Policy:
  """A policy times a constant factor.

  .. math:: f(t) = c\\, p(t)

  Args:
    policy: the policy.
    factor: :math:`c`, finite.

  Returns:
    The `Policy`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.scale(schedules.step(1.0, length=2, gamma=0.5), 0.2)
    >>> print([round(float(s(t)), 4) for t in (0, 2)])
    [0.2, 0.1]

  References:
    Goyal et al. 2017 (linear scaling rule: scale by B / 256).
  """
  P.check_policy('policy', policy)
  factor = P.check_float('factor', factor)
  inner = policy.fn
  return P.make(
    'scale', lambda t: factor * inner(t), policy=policy, factor=factor
  )


@register('clip')
def clip(
  policy: Policy, low: float | None = None, high: float | None = None
) -> Policy:
  """A policy clipped to `[low, high]` (either may be omitted).

  .. math:: f(t) = \\min(\\max(p(t), a), b)

  Args:
    policy: the policy.
    low: :math:`a`, or None for no lower bound.
    high: :math:`b \\ge a`, or None for no upper bound.

  Returns:
    The `Policy`.

  Raises:
    ValueError: if both bounds are None or `low > high`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.clip(schedules.linear(0.0, end=1.0, length=10), low=0.2)
    >>> print([round(float(s(t)), 4) for t in (0, 5)])
    [0.2, 0.5]

  References:
    PyTorch `ReduceLROnPlateau`'s `min_lr` plays the same role.
  """
  P.check_policy('policy', policy)
  if low is None and high is None:
    raise ValueError('clip needs low= or high= (or both)')
  if low is not None:
    low = P.check_float('low', low)
  if high is not None:
    high = P.check_float('high', high)
  if low is not None and high is not None and low > high:
    raise ValueError(f'low={low} must be <= high={high}')
  inner = policy.fn

  def fn(t):
    return jnp.clip(inner(t), low, high)

  return P.make('clip', fn, policy=policy, low=low, high=high)


@register('product')
def product(policies) -> Policy:
  """The product of policies (e.g. a base value times a decay factor).

  .. math:: f(t) = \\prod_i p_i(t)

  Args:
    policies: one or more policies (text: separated by `/`).

  Returns:
    The `Policy`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.product(
    ...   [schedules.constant(0.5), schedules.linear(1.0, end=0.0, length=4)]
    ... )
    >>> print(s)
    product(constant(0.5)/linear(1,end=0,length=4))
    >>> print([float(s(t)) for t in (0, 2, 4)])
    [0.5, 0.25, 0.0]

  References:
    LRBench's composite policies (Wu et al. 2019).
  """
  policies = tuple(
    P.check_policy(f'policies[{i}]', p)
    for i, p in enumerate(P.as_tuple(policies))
  )
  if not policies:
    raise ValueError('product needs at least one policy')
  fns = [p.fn for p in policies]

  def fn(t):
    out = fns[0](t)
    for f in fns[1:]:
      out = out * f(t)
    return out

  return P.make('product', fn, policies=policies)
