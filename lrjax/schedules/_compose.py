"""Composition: warmup, join, scale, clip, product, noise, and units.

Every composition takes lrjax policies or plain callables of t (an
`optax.Schedule`, a function); a plain callable is wrapped (see
`lrjax.schedules.Policy`) and leaves the result without a text form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from lrjax.schedules import _policy as P
from lrjax.schedules._formula import warmup_factor
from lrjax.schedules._policy import Policy, register

# A policy, or a plain callable of t such as an optax.Schedule.
PolicyLike = Policy | Callable[[Any], Any]


def _warmup_origins(args: dict[str, Any]) -> dict[str, Any]:
  # With shift, the inner policy's clock starts when the warmup ends.
  return {'policy': args['length'] if args['shift'] else 0}


def _join_origins(args: dict[str, Any]) -> dict[str, Any]:
  # Policy i starts at boundary i - 1 (the first at 0).
  return {'policies': (0, *P.as_tuple(args['boundaries']))}


@register('warmup', durations={'length': 'warmup'}, origins=_warmup_origins)
def warmup(
  policy: PolicyLike,
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
  x)/2` (`cosine`), :math:`s + (1 - s)(1 - \\sqrt{1 - x})` (`sqrt`, Hugging
  Face's "1-sqrt") or :math:`s^{1 - x}` (`exponential`, geometric from s to
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

  `policy` may be a plain callable, e.g. an `optax.Schedule`: it is called
  with the progress t (int32 or float32) the warmup gives it, and the
  result has no text form.

  Args:
    policy: the policy that follows (a Policy or a callable of t).
    length: :math:`L`, the warmup duration (units of t).
    shape: `linear`, `cosine`, `sqrt` or `exponential`.
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
    >>> import optax
    >>> s = schedules.warmup(optax.cosine_decay_schedule(0.4, 90), length=5)
    >>> print(s)
    warmup(<callable cosine_decay_schedule.<locals>.schedule: no text form>,length=5)
    >>> print([round(float(s(t)), 4) for t in (0, 5, 50, 95)])
    [0.04, 0.4, 0.2, 0.0]

  References:
    Goyal et al. 2017, Accurate, Large Minibatch SGD: Training ImageNet in
    1 Hour.
  """
  policy = P.as_policy('policy', policy)
  length = P.check_duration('length', length)
  shape = P.check_choice(
    'shape', shape, ('linear', 'cosine', 'sqrt', 'exponential')
  )
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
    if shape == 'exponential':
      x = jnp.clip(P.f32(t) / jnp.float32(length), 0.0, 1.0)
      w = jnp.exp((1.0 - x) * jnp.float32(math.log(start)))
    else:
      w = warmup_factor(t, length, start, shape)
    target = inner(P.as_progress(t_join))
    after = inner(jnp.maximum(t - length, 0)) if shift else inner(t)
    return jnp.where(t < length, w * target, after)

  return P.make(
    'warmup',
    fn,
    unit=policy.unit,
    policy=policy,
    length=length,
    shape=shape,
    start=start,
    shift=shift,
  )


@register('join', durations={'boundaries': 'end'}, origins=_join_origins)
def join(policies, boundaries) -> Policy:
  """Policies one after another, each on its own clock (optax.join_schedules).

  .. math:: f(t) = p_i(t - b_{i}) \\quad\\text{for } b_i \\le t < b_{i+1},
    \\ b_0 = 0

  `boundaries` are absolute, in units of t; policy i sees the local time
  since its start, like `optax.join_schedules` and PyTorch's `SequentialLR`.

  Args:
    policies: n >= 2 policies or callables of t (text: separated by `/`).
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
    P.as_policy(f'policies[{i}]', p) for i, p in enumerate(P.as_tuple(policies))
  )
  unit = P.common_unit('join', policies)
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

  return P.make('join', fn, unit=unit, policies=policies, boundaries=boundaries)


register('sequence', canonical=False)(join)


@register('scale')
def scale(policy: PolicyLike, factor: float) -> Policy:
  """A policy times a constant factor.

  .. math:: f(t) = c\\, p(t)

  Args:
    policy: the policy (or a callable of t).
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
  policy = P.as_policy('policy', policy)
  factor = P.check_float('factor', factor)
  inner = policy.fn
  return P.make(
    'scale',
    lambda t: factor * inner(t),
    unit=policy.unit,
    policy=policy,
    factor=factor,
  )


@register('clip')
def clip(
  policy: PolicyLike, low: float | None = None, high: float | None = None
) -> Policy:
  """A policy clipped to `[low, high]` (either may be omitted).

  .. math:: f(t) = \\min(\\max(p(t), a), b)

  Args:
    policy: the policy (or a callable of t).
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
  policy = P.as_policy('policy', policy)
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

  return P.make('clip', fn, unit=policy.unit, policy=policy, low=low, high=high)


@register('product')
def product(policies) -> Policy:
  """The product of policies (e.g. a base value times a decay factor).

  .. math:: f(t) = \\prod_i p_i(t)

  Args:
    policies: one or more policies or callables of t (text: separated by
      `/`).

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
    P.as_policy(f'policies[{i}]', p) for i, p in enumerate(P.as_tuple(policies))
  )
  if not policies:
    raise ValueError('product needs at least one policy')
  unit = P.common_unit('product', policies)
  fns = [p.fn for p in policies]

  def fn(t):
    out = fns[0](t)
    for f in fns[1:]:
      out = out * f(t)
    return out

  return P.make('product', fn, unit=unit, policies=policies)


def _with_unit(name: str, unit: str, policy) -> Policy:
  policy = P.as_policy('policy', policy)
  if policy.unit == unit:
    return policy
  if policy.unit is not None:
    raise ValueError(
      f'{name}({policy}): the policy already counts {policy.unit}s; a '
      'policy has one unit'
    )
  return P.make(name, policy.fn, unit=unit, policy=policy)


@register('in_epochs', unit='epoch')
def in_epochs(policy: PolicyLike) -> Policy:
  """Marks a policy as a function of epochs, for `lrjax.batch.per_update`.

  The values are those of `policy`; the result carries `unit='epoch'`
  (text `in_epochs(...)`), so the mistake of giving it to optax as a
  schedule of update counts can be caught where the unit is checked:
  `in_updates` refuses it, compositions refuse to mix it with an update
  policy, and `switch_on_plateau(clock='update')` refuses it. A policy
  without a unit (the default) works both ways, as before.

  Args:
    policy: a policy or a callable of t (epochs).

  Returns:
    The same values as a `Policy` with `unit='epoch'`.

  Raises:
    ValueError: if `policy` already counts updates (`in_updates`, `noam`).

  Examples:
    >>> from lrjax import schedules
    >>> p = schedules.in_epochs(schedules.cosine(0.4, length=90))
    >>> print(p, p.unit)
    in_epochs(cosine(0.4,length=90)) epoch
  """
  return _with_unit('in_epochs', 'epoch', policy)


@register('in_updates', unit='update')
def in_updates(policy: PolicyLike) -> Policy:
  """Marks a policy as a function of update counts (an optax schedule).

  The values are those of `policy`; the result carries `unit='update'`
  (text `in_updates(...)`), so `lrjax.batch.per_update` refuses it
  instead of reading its durations as epochs, and the trainer gives it to
  optax as it is, a schedule of the real update count. Wrapping a policy
  given to optax directly in `in_updates` checks it is not an epoch policy.

  Args:
    policy: a policy or a callable of t (update counts), e.g. an
      `optax.Schedule`.

  Returns:
    The same values as a `Policy` with `unit='update'`.

  Raises:
    ValueError: if `policy` already counts epochs (`in_epochs`).

  Examples:
    >>> from lrjax import schedules
    >>> p = schedules.in_updates(schedules.cosine(0.4, length=9000))
    >>> print(p, p.unit)
    in_updates(cosine(0.4,length=9000)) update
  """
  return _with_unit('in_updates', 'update', policy)


@register('noise', durations={'begin': 'end', 'until': 'time'})
def noise(
  policy: PolicyLike,
  pct: float = 0.67,
  begin: float = 0,
  until: float | None = None,
  kind: str = 'normal',
  std: float = 1.0,
  seed: int = 42,
) -> Policy:
  """Multiplicative noise on a policy (timm's LR noise), jit-safe.

  .. math:: f(t) = p(t)\\,(1 + n_{\\lfloor t \\rfloor}) \\quad
    \\text{for } b \\le t < u, \\qquad p(t) \\text{ elsewhere}

  where :math:`n_j` is drawn once per integer step :math:`j =
  \\lfloor t \\rfloor` (per update, or per epoch when t is epochs) from a
  normal of scale `std` truncated to :math:`|n| < ` `pct` (`normal`) or
  uniformly from :math:`(-\\text{pct}, \\text{pct})` (`uniform`), with a key
  folded from `seed` and j: the same t always gets the same value. These
  are the distributions of timm's schedulers (`noise_range_t=(b, u)` or
  `b`, `noise_pct`, `noise_std`, `noise_type`, `noise_seed`); the draws
  themselves differ (timm seeds torch's generator with `seed + j`).

  Args:
    policy: the policy (or a callable of t).
    pct: the noise bound, in (0, 1] (timm's default 0.67).
    begin: :math:`b \\ge 0`, where the noise starts (units of t).
    until: :math:`u > b`, where it stops, or None (never).
    kind: `normal` or `uniform`.
    std: the normal's scale before truncation (> 0).
    seed: an integer seed.

  Returns:
    The `Policy`, within `[(1 - pct) p(t), (1 + pct) p(t)]` for p >= 0.

  Raises:
    ValueError: on `pct` outside (0, 1], `until <= begin`, a bad `kind`,
      `std <= 0` or a non-integer `seed`.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.noise(schedules.constant(1.0), pct=0.1, begin=2)
    >>> v = [float(s(t)) for t in (0, 1, 2, 2.5, 3)]
    >>> v[:2], v[2] == v[3], all(0.9 < x < 1.1 for x in v)
    ([1.0, 1.0], True, True)

  References:
    timm `Scheduler` (noise_range_t, noise_pct, noise_std, noise_type).
  """
  policy = P.as_policy('policy', policy)
  pct = P.check_float('pct', pct, low=0, low_open=True, high=1)
  begin = P.check_duration('begin', begin, allow_zero=True)
  if until is not None:
    until = P.check_duration('until', until)
    if not until > begin:
      raise ValueError(f'until={until} must be > begin={begin}')
  kind = P.check_choice('kind', kind, ('normal', 'uniform'))
  std = P.check_float('std', std, low=0, low_open=True)
  if isinstance(seed, bool) or not float(seed).is_integer():
    raise ValueError(f'seed={seed!r} must be an integer')
  seed = int(seed)
  inner = policy.fn
  bound = pct / std

  def draw(j):
    key = jax.random.fold_in(jax.random.key(seed), j)
    if kind == 'uniform':
      return jax.random.uniform(key, (), jnp.float32, -pct, pct)
    return std * jax.random.truncated_normal(
      key, -bound, bound, (), jnp.float32
    )

  def fn(t):
    j = jnp.floor(jnp.minimum(P.f32(t), 2.0**31 - 128)).astype(jnp.int32)
    if P.is_int(t):
      j = t.astype(jnp.int32)
    n = jax.vmap(draw)(jnp.ravel(j)).reshape(jnp.shape(j))
    on = t >= begin
    if until is not None:
      on = on & (t < until)
    return inner(t) * jnp.where(on, 1.0 + n, 1.0)

  return P.make(
    'noise',
    fn,
    unit=policy.unit,
    policy=policy,
    pct=pct,
    begin=begin,
    until=until,
    kind=kind,
    std=std,
    seed=seed,
  )
