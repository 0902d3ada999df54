"""The `Policy` type, the registry of builders, and shared jit-safe helpers."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Builders by text name (aliases included); filled by `register`.
REGISTRY: dict[str, Callable[..., Any]] = {}
# Canonical text name -> builder whose signature gives the defaults.
_CANONICAL: dict[str, Callable[..., Any]] = {}
# Builder -> what its arguments mean in time (see `TimeSpec`).
_TIME: dict[Callable[..., Any], TimeSpec] = {}

_INT32_MAX = 2**31 - 1

# Kinds of duration arguments: `end` (a point the run should reach: a
# decay's length, a milestone, a boundary), `warmup` (the end of a warmup)
# and `time` (a time scale or a point that need not be reached).
DURATION_KINDS = ('end', 'warmup', 'time')


@dataclasses.dataclass(frozen=True)
class TimeSpec:
  """Which arguments of a builder are in units of t, and its own unit.

  Attributes:
    durations: argument name -> kind (`DURATION_KINDS`); a list argument
      (milestones, boundaries) holds one duration per element. Every one
      is a point on the policy's own clock (t = 0 where the policy starts),
      so text durations in tokens or updates convert as points.
    unit: the unit the builder fixes for t: `'update'`, `'epoch'`, a
      callable of the bound arguments (e.g. a `clock=` argument), or None
      (its inner policies decide).
    origins: for compositions, a callable of the bound arguments giving
      where each inner policy's clock starts on this policy's clock:
      `{argument: start or tuple of starts}`; None: every inner policy
      sees this policy's t.
  """

  durations: tuple[tuple[str, str], ...] = ()
  unit: str | Callable[[dict[str, Any]], str | None] | None = None
  origins: Callable[[dict[str, Any]], dict[str, Any]] | None = None

  def kind(self, arg: str) -> str | None:
    """The kind of the duration argument `arg`, or None if not one."""
    return dict(self.durations).get(arg)

  def unit_of(self, arguments: dict[str, Any]) -> str | None:
    """The unit fixed by the builder called with `arguments` (bound)."""
    return self.unit(arguments) if callable(self.unit) else self.unit


def register(
  name: str,
  *,
  canonical: bool = True,
  durations: dict[str, str] | None = None,
  unit=None,
  origins=None,
):
  """Registers a builder under `name` for `parse` (and for printing).

  Args:
    name: the text name.
    canonical: whether `str(policy)` uses this name (False: an alias).
    durations: argument name -> kind (`DURATION_KINDS`), the arguments in
      units of t (for text durations with units and for `durations()`).
    unit: the unit the builder fixes (see `TimeSpec`).
    origins: where inner policies' clocks start (see `TimeSpec`).
  """
  for kind in (durations or {}).values():
    check_choice('kind', kind, DURATION_KINDS)

  def wrap(fn):
    REGISTRY[name] = fn
    if canonical:
      _CANONICAL[name] = fn
    if fn not in _TIME or durations or unit or origins:
      _TIME[fn] = TimeSpec(tuple((durations or {}).items()), unit, origins)
    return fn

  return wrap


def time_spec(name: str) -> TimeSpec:
  """The `TimeSpec` of the builder registered as `name` (aliases too)."""
  return _TIME.get(REGISTRY.get(name), TimeSpec())


class Duration(NamedTuple):
  """A duration argument of a policy, placed on the outermost clock.

  Attributes:
    policy: the text name of the builder that has it (e.g. `cosine`).
    arg: the argument, with an index for lists (`milestones[1]`).
    value: the value as given, in units of t on the builder's own clock.
    end: where it falls on the clock of the policy `durations()` was
      called on: `value` plus the start of the builder's clock (a warmup
      with `shift=True` starts its inner policy's clock at its length; a
      `join` starts policy i at boundary i - 1).
    kind: `end`, `warmup` or `time` (`DURATION_KINDS`).
  """

  policy: str
  arg: str
  value: float
  end: float
  kind: str


# The text name of a plain callable wrapped into a Policy (no text form).
CALLABLE = '<callable>'


@dataclasses.dataclass(frozen=True)
class Policy:
  """A schedule of progress `t`: a frozen, hashable, jit-safe callable.

  `policy(t)` returns a float32 scalar (or an array shaped like `t`). `t` is
  progress: an update count when the policy is used directly as an
  `optax.Schedule`, or epochs when converted by `lrjax.batch.per_update`.
  Equality and hashing follow the text form, so a policy can be a static
  argument of `jax.jit` or a key of a dict; pickling goes through the text
  form too, and copies are the policy itself (it is immutable). Negative
  `t` is treated as 0.

  A policy that wraps a plain callable (an `optax.Schedule` given to a
  composition such as `warmup`) has no text form: `str` shows the callable
  as `<callable NAME: no text form>`, `has_text` is False, it equals only a
  policy built from the same callable object, and it cannot be pickled.

  Attributes:
    name: the builder's text name.
    args: the arguments that differ from the builder's defaults, in signature
      order, as `(name, value)` pairs.
    unit: what `t` counts, when the policy says so: `'epoch'` (built with
      `in_epochs`, for `lrjax.batch.per_update`), `'update'` (built with
      `in_updates` or by an update-domain builder such as `noam`, for
      optax directly), or None (either; the caller decides).
  """

  name: str
  args: tuple[tuple[str, Any], ...]
  fn: Callable[[jax.Array], jax.Array] = dataclasses.field(
    compare=False, repr=False
  )
  unit: str | None = dataclasses.field(default=None, compare=False)

  def __call__(self, t: jax.typing.ArrayLike) -> jax.Array:
    return jnp.asarray(self.fn(as_progress(t)), jnp.float32)

  def __str__(self) -> str:
    if self.name == CALLABLE:
      return _callable_text(self.args[0][1])
    return format_call(self.name, self.args)

  def __repr__(self) -> str:
    return f'Policy({str(self)!r})'

  @property
  def has_text(self) -> bool:
    """Whether `parse(str(self))` rebuilds this policy (no plain callable)."""
    return self.name != CALLABLE and all(
      _has_text(value) for _, value in self.args
    )

  def durations(self) -> tuple[Duration, ...]:
    """Every duration argument of this policy and of its inner policies.

    Arguments left at their defaults count too (e.g. `noise`'s `begin=0`).
    A plain callable inside has no known durations.

    Returns:
      The `Duration`s, outer before inner, each with its `end` on this
      policy's clock (in this policy's unit, `unit`).

    Examples:
      >>> from lrjax import schedules
      >>> p = schedules.warmup(schedules.cosine(0.4, length=90), length=5)
      >>> [(d.policy, d.arg, d.end, d.kind) for d in p.durations()]
      [('warmup', 'length', 5, 'warmup'), ('cosine', 'length', 95, 'end')]
    """
    return tuple(_durations(self, 0))

  def __copy__(self) -> Policy:
    return self

  def __deepcopy__(self, memo) -> Policy:
    del memo
    return self

  def __reduce__(self):
    # Pickle through the text form (the closure is not picklable).
    if not self.has_text:
      raise TypeError(
        f'cannot pickle {self}: it wraps a plain callable, which has no text '
        'form; build it from lrjax.schedules policies only, or pickle the '
        'parts that make it'
      )
    from lrjax.schedules._text import parse  # noqa: PLC0415

    return (parse, (str(self),))


def bound_args(name: str, args) -> dict[str, Any]:
  """All arguments of the builder `name`, defaults included, by name."""
  sig = inspect.signature(_CANONICAL.get(name) or REGISTRY[name])
  out = {
    k: p.default
    for k, p in sig.parameters.items()
    if p.default is not inspect.Parameter.empty
  }
  out.update(dict(args))
  return out


def _durations(policy: Policy, origin):
  if policy.name == CALLABLE:
    return
  spec = time_spec(policy.name)
  arguments = bound_args(policy.name, policy.args)
  for arg, kind in spec.durations:
    value = arguments.get(arg)
    if value is None:
      continue
    if isinstance(value, tuple):
      for i, v in enumerate(value):
        yield Duration(policy.name, f'{arg}[{i}]', v, origin + v, kind)
    else:
      yield Duration(policy.name, arg, value, origin + value, kind)
  starts = spec.origins(arguments) if spec.origins else {}
  for arg, value in arguments.items():
    if isinstance(value, Policy):
      yield from _durations(value, origin + starts.get(arg, 0))
    elif isinstance(value, tuple):
      offsets = starts.get(arg, (0,) * len(value))
      for v, start in zip(value, offsets, strict=True):
        if isinstance(v, Policy):
          yield from _durations(v, origin + start)


def _has_text(value) -> bool:
  if isinstance(value, Policy):
    return value.has_text
  if isinstance(value, tuple):
    return all(_has_text(v) for v in value)
  return True


def _callable_text(fn) -> str:
  name = getattr(fn, '__qualname__', None) or type(fn).__qualname__
  return f'<callable {name}: no text form>'


def is_stateful(value) -> bool:
  """Whether `value` is an optax stateful schedule (plateau policies)."""
  return all(hasattr(value, a) for a in ('init', 'update', '__call__'))


def as_policy(name: str, value) -> Policy:
  """`value` as a `Policy`: a Policy as is, a plain callable wrapped.

  A plain callable (an `optax.Schedule`, a function of `t`) is called with
  the progress the composition gives it (int32 or float32, >= 0); its unit
  is unknown (None) unless wrapped with `in_epochs` / `in_updates`.

  Raises:
    TypeError: for a stateful (plateau) schedule or a non-callable, naming
      the argument.
  """
  if isinstance(value, Policy):
    return value
  if is_stateful(value):
    raise TypeError(
      f'{name}={value} is a stateful (plateau) schedule, which decides from '
      'the values passed to tx.update and cannot be composed: give it to '
      'optax (or the trainer) directly'
    )
  if not callable(value):
    raise TypeError(
      f'{name}={value!r} must be a Policy or a callable of t (an '
      'optax.Schedule), e.g. constant(0.1) or optax.linear_schedule(...)'
    )

  def fn(t):
    return jnp.asarray(value(t), jnp.float32)

  return Policy(CALLABLE, (('fn', value),), fn)


def common_unit(name: str, policies: Sequence[Policy]) -> str | None:
  """The unit shared by `policies` (None if none says); a mix is an error."""
  units = {p.unit for p in policies} - {None}
  if len(units) > 1:
    raise ValueError(
      f'{name}: the policies mix units ({", ".join(str(p) for p in policies)}'
      '): some count epochs (in_epochs) and some updates (in_updates); '
      'build them all in one unit'
    )
  return units.pop() if units else None


def format_call(name: str, args: tuple[tuple[str, Any], ...]) -> str:
  """`name(first,key=value,...)`: the first parameter is positional."""
  first = next(iter(inspect.signature(_CANONICAL[name]).parameters))
  parts = []
  for i, (key, value) in enumerate(args):
    text = format_value(value)
    parts.append(text if i == 0 and key == first else f'{key}={text}')
  return f'{name}({",".join(parts)})'


def kept_args(name: str, **args) -> tuple[tuple[str, Any], ...]:
  """The `(key, value)` pairs that differ from the builder's defaults.

  The first parameter is always kept, so the text starts with it.
  """
  params = inspect.signature(_CANONICAL[name]).parameters
  first = next(iter(params))
  kept = []
  for key, value in args.items():
    default = params[key].default
    if key != first and default is not inspect.Parameter.empty:
      if _same(value, default):
        continue
    kept.append((key, value))
  return tuple(kept)


def make(
  name: str,
  fn: Callable[[jax.Array], jax.Array],
  *,
  unit: str | None = None,
  **args,
) -> Policy:
  """Builds a `Policy` keeping only the arguments that differ from defaults."""
  return Policy(name, kept_args(name, **args), fn, unit)


def _same(a, b) -> bool:
  if a is None or b is None:
    return a is b
  if isinstance(a, (str, bool)) or isinstance(b, (str, bool)):
    return type(a) is type(b) and a == b
  try:
    return bool(a == b)
  except (TypeError, ValueError):
    return False


def format_number(x) -> str:
  """Shortest text that parses back to the same number (`1.0` -> `1`)."""
  if isinstance(x, (bool, np.bool_)):
    return 'true' if x else 'false'
  if isinstance(x, (int, np.integer)):
    return str(int(x))
  x = float(x)
  if math.isinf(x):
    return 'inf' if x > 0 else '-inf'
  text = repr(x)
  if text.endswith('.0'):
    text = text[:-2]
  return text


def format_value(value) -> str:
  if isinstance(value, tuple):
    return '/'.join(format_value(v) for v in value)
  if isinstance(value, str):
    return value
  if isinstance(value, (int, float, np.number, bool)):
    return format_number(value)
  return str(value)


def as_progress(t: jax.typing.ArrayLike) -> jax.Array:
  """Progress as int32 (integer `t`) or float32 (anything else), >= 0.

  Python ints beyond int32 become float32, since int64 is off in JAX.
  """
  if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
    if 0 <= int(t) <= _INT32_MAX:
      return jnp.asarray(int(t), jnp.int32)
    return jnp.maximum(jnp.asarray(float(t), jnp.float32), 0.0)
  t = jnp.asarray(t)
  if jnp.issubdtype(t.dtype, jnp.signedinteger):
    return jnp.maximum(t.astype(jnp.int32), 0)
  if jnp.issubdtype(t.dtype, jnp.integer):
    return t.astype(jnp.float32)
  return jnp.maximum(t.astype(jnp.float32), 0.0)


def is_int(t: jax.Array) -> bool:
  return jnp.issubdtype(t.dtype, jnp.integer)


def f32(t: jax.Array) -> jax.Array:
  return jnp.asarray(t, jnp.float32)


def count_ge(t: jax.Array, bounds: Sequence[float]) -> jax.Array:
  """Number of `bounds` that `t` has reached (`t >= b`), int32, jit-safe.

  Integer `t` is compared exactly in int32 against `ceil(b)`; a bound past
  the int32 range is never reached by integer `t`.
  """
  if not bounds:
    return jnp.zeros(jnp.shape(t), jnp.int32)
  if is_int(t):
    ints = [math.ceil(b) for b in bounds]
    ints = [b for b in ints if b <= _INT32_MAX]
    if not ints:
      return jnp.zeros(jnp.shape(t), jnp.int32)
    arr = jnp.asarray(ints, jnp.int32)
  else:
    arr = jnp.asarray(bounds, jnp.float32)
  return jnp.sum(t[..., None] >= arr, axis=-1, dtype=jnp.int32)


def segment(
  t: jax.Array, starts: Sequence[float]
) -> tuple[jax.Array, jax.Array]:
  """Index of the segment holding `t` and the local time since its start.

  `starts` is increasing with `starts[0] == 0`. The local time is computed in
  int32 for integer `t` and integer starts, so it is exact at boundaries.
  """
  idx = count_ge(t, starts[1:])
  if is_int(t) and all(float(s).is_integer() for s in starts):
    kept = [int(s) for s in starts if s <= _INT32_MAX]
    local = f32(t - jnp.asarray(kept, jnp.int32)[idx])
  else:
    local = f32(t) - jnp.asarray(starts, jnp.float32)[idx]
    local = jnp.maximum(local, 0.0)
  return idx, local


def periodic(t: jax.Array, period: float) -> tuple[jax.Array, jax.Array]:
  """`(k, r)` with `t = k * period + r`, `0 <= r < period`, float32 both.

  Exact in int32 for integer `t` and integer `period`.
  """
  if is_int(t) and float(period).is_integer():
    p = int(period)
    k = t // p
    return f32(k), f32(t - k * p)
  tf = f32(t)
  p = jnp.float32(period)
  k = jnp.floor(tf / p)
  r = tf - k * p
  over = r >= p
  k = jnp.where(over, k + 1, k)
  r = jnp.where(over, r - p, r)
  under = r < 0
  k = jnp.where(under, k - 1, k)
  r = jnp.where(under, r + p, r)
  return k, jnp.clip(r, 0.0, p)


def power(base: float, exponent: jax.Array) -> jax.Array:
  """`base ** exponent` for a Python `base` > 0, in float32, to ~1 ulp.

  Raising `float32(base)` alone compounds the rounding of the base with the
  exponent (a relative drift of about `exponent * 1e-8`: 4e-6 at
  `0.99 ** 400`), and `exp(exponent * log(base))` in float32 loses
  `|log(result)| * 6e-8`. So: `float32(base) ** exponent` (XLA's pow is
  accurate for a float32 base) times `exp(exponent * r)`, where
  `r = log(base) - log(float32(base))` is the base's rounding, taken in
  float64. Exact for bases that float32 holds (0.5, 0.25, 2). A base < 1
  underflows to 0 and a base > 1 overflows to inf for large exponents
  (callers bound it); the correction is clipped so it never turns 0 into
  NaN.
  """
  e = f32(exponent)
  if base == 1.0:
    return jnp.ones_like(e)
  hi = float(np.float32(base))
  if hi == 0.0 or math.isinf(hi):
    return jnp.exp(e * jnp.float32(math.log(base)))
  out = jnp.power(jnp.float32(hi), e)
  r = math.log(base) - math.log(hi)
  if r != 0.0:
    out = out * jnp.exp(jnp.clip(e * jnp.float32(r), -88.0, 88.0))
  return out


# Eager validation, with errors that name the argument and the fix.


def check_float(
  name: str, value, *, low=None, high=None, low_open=False, high_open=False
) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise TypeError(f'{name}={value!r} must be a number')
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f'{name}={value!r} must be finite')
  if low is not None:
    if low_open and not value > low:
      raise ValueError(f'{name}={value!r} must be > {low}')
    if not low_open and not value >= low:
      raise ValueError(f'{name}={value!r} must be >= {low}')
  if high is not None:
    if high_open and not value < high:
      raise ValueError(f'{name}={value!r} must be < {high}')
    if not high_open and not value <= high:
      raise ValueError(f'{name}={value!r} must be <= {high}')
  return value


def check_duration(name: str, value, *, allow_zero: bool = False):
  """A duration in units of t: int stays int, else float; > 0 (or >= 0)."""
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise TypeError(
      f'{name}={value!r} must be a number (a duration in units of t)'
    )
  if isinstance(value, (int, np.integer)):
    value = int(value)
  else:
    value = float(value)
    if not math.isfinite(value):
      raise ValueError(f'{name}={value!r} must be finite')
    if value.is_integer():
      value = int(value)
  if allow_zero and value < 0:
    raise ValueError(f'{name}={value!r} must be >= 0')
  if not allow_zero and value <= 0:
    raise ValueError(f'{name}={value!r} must be > 0')
  return value


def check_choice(name: str, value, choices: Sequence[str]) -> str:
  if value not in choices:
    raise ValueError(f'{name}={value!r} must be one of {", ".join(choices)}')
  return value


def check_bool(name: str, value) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f'{name}={value!r} must be true or false')
  return bool(value)


def as_tuple(value) -> tuple:
  if isinstance(value, (list, tuple)):
    return tuple(value)
  if isinstance(value, np.ndarray):
    return tuple(value.tolist())
  return (value,)
