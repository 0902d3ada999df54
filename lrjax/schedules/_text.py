"""Text form of policies: `parse(text)` (the printer is `str(policy)`).

Grammar (no spaces needed; spaces are ignored)::

  call  := NAME '(' [arg (',' arg)*] ')'
  arg   := [NAME '='] value
  value := atom ('/' atom)*          # a list, e.g. 60/120/160
  atom  := NUMBER | DURATION | 'true' | 'false' | NAME | call
  DURATION := NUMBER ('ep' | 'up' | 'ex') | COUNT 'tok'
  COUNT := NUMBER ['k' | 'M' | 'G' | 'T' | 'Ki' | 'Mi' | 'Gi' | 'Ti']

Durations with a unit use the batch text's vocabulary (`lrjax.batch.parse`):
`ep` epochs, `up` updates, `ex` examples, `tok` tokens. They convert to
the unit of the policy that holds them, against a batch schedule (see
`parse`).
"""

from __future__ import annotations

import dataclasses
import fractions
import inspect
import numbers
import re
from typing import TYPE_CHECKING, Any

from lrjax.schedules import _policy as P

if TYPE_CHECKING:
  from lrjax.schedules._policy import Policy
  from lrjax.schedules._state import ReduceOnPlateau, SwitchOnPlateau

_TOKEN = re.compile(
  r'\s*(?:(?P<dur>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?'
  r'(?:(?:Ki|Mi|Gi|Ti|k|M|G|T)?tok|ep|up|ex)(?![A-Za-z0-9_]))'
  r'|(?P<num>[-+]?(?:inf(?![A-Za-z0-9_])|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))'
  r'|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[(),=/]))'
)


class _Parser:
  def __init__(self, text: str):
    self.text = text
    self.tokens = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
      m = _TOKEN.match(stripped, pos)
      if not m or m.end() == pos:
        raise ValueError(
          f'cannot parse {text!r} at column {pos}: unexpected '
          f'{stripped[pos : pos + 10]!r}'
        )
      kind = m.lastgroup
      self.tokens.append((kind, m.group(kind), m.start(kind)))
      pos = m.end()
    self.i = 0

  def peek(self):
    return self.tokens[self.i] if self.i < len(self.tokens) else (None, '', -1)

  def take(self, kind=None, value=None):
    tok = self.peek()
    if (
      tok[0] is None or (kind and tok[0] != kind) or (value and tok[1] != value)
    ):
      want = value or kind
      where = f'column {tok[2]}' if tok[0] else 'the end'
      raise ValueError(
        f'cannot parse {self.text!r}: expected {want!r} at {where}'
      )
    self.i += 1
    return tok

  def call(self):
    _, name, col = self.take('name')
    if self.peek()[1] != '(':
      raise ValueError(
        f'cannot parse {self.text!r}: expected "(" after {name!r} (a policy '
        f'is written name(args), e.g. constant(0.1))'
      )
    self.take('op', '(')
    args, kwargs = [], {}
    if self.peek()[1] != ')':
      while True:
        kind, val, _ = self.peek()
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if kind == 'name' and nxt is not None and nxt[1] == '=':
          self.i += 2
          if val in kwargs:
            raise ValueError(f'{name}(): argument {val!r} given twice')
          kwargs[val] = self.value()
        else:
          if kwargs:
            raise ValueError(
              f'{name}(): a positional argument follows keyword arguments'
            )
          args.append(self.value())
        if self.peek()[1] == ',':
          self.take('op', ',')
          continue
        break
    self.take('op', ')')
    return _Call(name, args, kwargs)

  def value(self):
    items = [self.atom()]
    while self.peek()[1] == '/':
      self.take('op', '/')
      items.append(self.atom())
    return items[0] if len(items) == 1 else tuple(items)

  def atom(self):
    kind, val, _ = self.peek()
    if kind == 'dur':
      self.i += 1
      return _Amount(val)
    if kind == 'num':
      self.i += 1
      if re.fullmatch(r'[-+]?\d+', val):
        return int(val)
      return float(val)
    if kind == 'name':
      nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
      if nxt is not None and nxt[1] == '(':
        return self.call()
      self.i += 1
      if val in ('true', 'false'):
        return val == 'true'
      return val
    self.take('value')


def build(name: str, args, kwargs):
  """Calls the builder registered as `name`, naming what is wrong if any."""
  if name not in P.REGISTRY:
    known = ', '.join(sorted(P.REGISTRY))
    raise ValueError(f'unknown policy {name!r}; known policies: {known}')
  builder = P.REGISTRY[name]
  sig = inspect.signature(builder)
  try:
    sig.bind(*args, **kwargs)
  except TypeError as e:
    params = ', '.join(sig.parameters)
    unknown = [k for k in kwargs if k not in sig.parameters]
    if unknown:
      raise ValueError(
        f'{name}(): unknown argument {unknown[0]!r}; its arguments are: '
        f'{params}'
      ) from None
    missing = [
      k
      for i, (k, p) in enumerate(sig.parameters.items())
      if p.default is inspect.Parameter.empty
      and i >= len(args)
      and k not in kwargs
    ]
    if missing:
      raise ValueError(
        f'{name}(): missing argument {missing[0]!r}; its arguments are: '
        f'{params}'
      ) from None
    raise ValueError(f'{name}(): {e}; its arguments are: {params}') from None
  try:
    return builder(*args, **kwargs)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{name}(): {e}') from e


_UNIT_NAMES = {
  'ep': 'epochs',
  'up': 'updates',
  'ex': 'examples',
  'tok': 'tokens',
}


@dataclasses.dataclass
class _Call:
  """A parsed call, built once the units of its durations are known."""

  name: str
  args: list
  kwargs: dict


class _Amount:
  """A duration with a unit: `2.5ep`, `500up`, `64000ex`, `110Kitok`."""

  def __init__(self, text: str):
    self.text = text
    self.unit = 'tok' if text.endswith('tok') else text[-2:]
    self.count = text[: -len(self.unit)]

  def whole(self, where: str) -> int:
    if not self.count.isdigit() or int(self.count) < 1:
      raise ValueError(
        f'{where}={self.text}: a whole number of {_UNIT_NAMES[self.unit]} '
        '>= 1 is needed'
      )
    return int(self.count)


def _number(x: fractions.Fraction) -> int | float:
  return int(x) if x.denominator == 1 else float(x)


def _exact(value):
  """A number as the exact rational it is written as (floats as decimals)."""
  if isinstance(value, fractions.Fraction):
    return value
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    return value
  if isinstance(value, numbers.Integral):
    return fractions.Fraction(int(value))
  return fractions.Fraction(repr(float(value)))


class _Units:
  """Converts text durations with a unit to epochs or updates.

  Every duration is a point on the clock of the policy that holds it; the
  clock starts at `origin` (in the context unit) on the outermost policy's
  clock, so a duration in updates converts to epochs (or one in epochs,
  examples or tokens to updates) as the difference of two points, exactly.
  With `nominal`, nothing is converted (only checked: whole counts, tokens
  that the sequence length divides): `TrainConfig.validate` without the
  dataset size.
  """

  def __init__(self, schedule=None, seq_len=None, nominal=False):
    self.schedule = schedule
    self.seq_len = seq_len
    self.nominal = nominal
    self.to_epochs = False

  def _examples(self, amount: _Amount, where: str) -> fractions.Fraction:
    """The amount in examples (tokens through the sequence length)."""
    from lrjax.batch._tokens import parse_count, to_sequences  # noqa: PLC0415

    if amount.unit == 'ex':
      return fractions.Fraction(amount.whole(where))
    if amount.unit == 'ep':
      return fractions.Fraction(amount.count) * self.schedule.num_examples
    if self.seq_len is None:
      raise ValueError(
        f'{where}={amount.text} is in tokens but no sequence length is '
        "known: give the batch text a ',seq=T' (or pass seq_len=T)"
      )
    try:
      tokens = parse_count(amount.count, 'tokens')
      return fractions.Fraction(to_sequences(tokens, self.seq_len))
    except ValueError as e:
      raise ValueError(f'{where}={amount.text}: {e}') from None

  def convert(
    self, amount: _Amount, where: str, context: str, origin
  ) -> fractions.Fraction:
    """`amount` in `context` units (`'epoch'` or `'update'`), from `origin`."""
    if context == 'epoch':
      self.to_epochs = True
    if self.nominal:
      if amount.unit == 'tok':
        return self._examples(amount, where)
      if amount.unit in ('up', 'ex'):
        return fractions.Fraction(amount.whole(where))
      return fractions.Fraction(amount.count)
    native = {'epoch': 'ep', 'update': 'up'}[context]
    if amount.unit == native:
      if native == 'up':
        return fractions.Fraction(amount.whole(where))
      return fractions.Fraction(amount.count)
    if self.schedule is None:
      raise ValueError(
        f'{where}={amount.text} is in {_UNIT_NAMES[amount.unit]}, which '
        f'converts to {context}s only against a batch schedule: pass '
        'batch_schedule= (and seq_len= for tokens) to '
        'lrjax.schedules.parse; the trainer passes its batch schedule'
      )
    if context == 'epoch':
      return self._to_epochs(amount, where, origin)
    return self._to_updates(amount, where, origin)

  def _to_epochs(self, amount, where, origin) -> fractions.Fraction:
    s = self.schedule
    n = s.num_examples
    if amount.unit != 'up':
      return self._examples(amount, where) / n
    updates = amount.whole(where)
    start = origin * n
    u0 = s.update_at_examples(start)
    if s.examples_at(u0) == start:
      return fractions.Fraction(s.examples_at(u0 + updates) - start, n)
    # The clock starts inside update u0 - 1: exact only at a batch that
    # does not change over the span.
    sizes = {s.stages[s._host_stage(u)[1]].batch_size for u in (u0 - 1, u0)}
    last = s.stages[s._host_stage(u0 + updates - 1)[1]].batch_size
    if (
      len(sizes | {last}) == 1
      and s._host_stage(u0 - 1)[1] == (s._host_stage(u0 + updates - 1)[1])
    ):
      return fractions.Fraction(updates * last, n)
    raise ValueError(
      f'{where}={amount.text} counts updates from epoch {float(origin):g}, '
      'which falls inside an update, and the batch size changes within '
      'them: give this duration in epochs, examples or tokens'
    )

  def _to_updates(self, amount, where, origin) -> fractions.Fraction:
    from lrjax.batch._tokens import format_count  # noqa: PLC0415

    s = self.schedule
    if origin.denominator != 1:
      raise ValueError(
        f'{where}={amount.text}: the policy starts at update '
        f'{float(origin):g}, not a whole update, so a duration in '
        f'{_UNIT_NAMES[amount.unit]} has no exact update count; give it '
        'in updates (up)'
      )
    u0 = int(origin)
    start = s.examples_at(u0)
    target = start + self._examples(amount, where)
    u1 = s.update_at_examples(target)
    if s.examples_at(u1) == target:
      return fractions.Fraction(u1 - u0)

    def text(u):
      examples = s.examples_at(u) - start
      if amount.unit == 'tok':
        words = f'{format_count(examples * self.seq_len)}tok'
      else:
        words = f'{examples}ex'
      return f'{words} ({u - u0} update{"" if u - u0 == 1 else "s"})'

    near = ' or '.join(text(u) for u in (u1 - 1, u1) if u > u0)
    what = f'{_number(target - start)} examples'
    if amount.unit == 'tok':
      tokens = (target - start) * self.seq_len
      what = f'{_number(tokens)} tokens ({_number(target - start)} sequences)'
    raise ValueError(
      f'{where}={amount.text} is {what}, which '
      f'does not end on an update of the batch schedule (the policy counts '
      f'updates, from update {u0}): use {near}'
    )


def _bind(node: _Call):
  """The node's bound arguments, or None where they do not bind."""
  builder = P.REGISTRY.get(node.name)
  if builder is None:
    return None
  try:
    return inspect.signature(builder).bind(*node.args, **node.kwargs)
  except TypeError:
    return None


def _inner(value):
  """The calls in an argument value (a call or a list of them)."""
  items = value if isinstance(value, tuple) else (value,)
  return [v for v in items if isinstance(v, _Call)]


def _declared(node: _Call) -> str | None:
  """The unit a call fixes: its builder's, else its inner policies'."""
  bound = _bind(node)
  if bound is None:
    return None
  spec = P.time_spec(node.name)
  if spec.unit is not None:
    return spec.unit_of(P.bound_args(node.name, bound.arguments.items()))
  units = {
    _declared(c) for value in bound.arguments.values() for c in _inner(value)
  } - {None}
  return units.pop() if len(units) == 1 else None


def _resolve(node: _Call, units: _Units, context: str | None, origin):
  """Builds `node`, its durations with units converted to its unit."""
  bound = _bind(node)
  if bound is None:
    return build(node.name, node.args, node.kwargs)  # raises, naming why
  own = _declared(node)
  if own is not None and own != context:
    context, origin = own, fractions.Fraction(0)
  spec = P.time_spec(node.name)
  arguments = {}
  for key, value in bound.arguments.items():
    items = value if isinstance(value, tuple) else (value,)
    if not any(isinstance(v, _Amount) for v in items):
      arguments[key] = value
      continue
    if spec.kind(key) is None:
      names = ', '.join(k for k, _ in spec.durations) or 'none'
      raise ValueError(
        f'{node.name}(): {key}={"/".join(getattr(v, "text", str(v)) for v in items)}: only '
        f'durations take a unit (ep, up, ex, tok); those of {node.name}: '
        f'{names}'
      )
    where = f'{node.name}(): {key}'
    out = tuple(
      units.convert(v, where, context or 'epoch', origin)
      if isinstance(v, _Amount)
      else v
      for v in items
    )
    arguments[key] = out if isinstance(value, tuple) else out[0]
  exact = {k: _exact_all(v) for k, v in arguments.items()}
  starts = {}
  if spec.origins is not None:
    try:
      starts = spec.origins(P.bound_args(node.name, exact.items()))
    except (TypeError, ValueError, KeyError):
      starts = {}  # the builder names what is wrong
  for key, value in arguments.items():
    if not _inner(value):
      arguments[key] = _plain(value)
      continue
    items = value if isinstance(value, tuple) else (value,)
    offsets = starts.get(key, 0)
    offsets = offsets if isinstance(offsets, tuple) else (offsets,) * len(items)
    out = tuple(
      _resolve(v, units, context, origin + _exact(o))
      if isinstance(v, _Call)
      else _plain(v)
      for v, o in zip(items, offsets, strict=False)
    )
    arguments[key] = out if isinstance(value, tuple) else out[0]
  return build(node.name, [], arguments)


def _exact_all(value):
  if isinstance(value, tuple):
    return tuple(_exact(v) for v in value)
  return _exact(value)


def _plain(value):
  """Converted durations as numbers: int when whole, else float."""
  if isinstance(value, tuple):
    return tuple(_plain(v) for v in value)
  if isinstance(value, fractions.Fraction):
    return _number(value)
  return value


def parse(
  text: str, batch_schedule: Any = None, *, seq_len: int | None = None
) -> Policy | ReduceOnPlateau | SwitchOnPlateau:
  """Parses the text form of a policy: the inverse of `str(policy)`.

  Durations may carry a unit, in the batch text's vocabulary: `2.5ep`
  (epochs), `500up` (updates), `64000ex` (examples) or `110Kitok` (tokens,
  with the suffixes k M G T Ki Mi Gi Ti). Each converts, exactly, to the
  unit of the policy that holds it: updates inside a policy of updates
  (`in_updates(...)`, `noam`, `switch_on_plateau(...,clock=update)` and
  compositions of them), epochs anywhere else, where the result is marked
  `in_epochs(...)` (its numbers are then epochs; the trainer and
  `lrjax.batch.per_update` read a policy without a unit in epochs too).
  Tokens become sequences (`seq_len` must divide the count), examples
  become epochs (over the schedule's `num_examples`), and updates become
  epochs through `batch_schedule`'s update <-> examples bookkeeping (a
  duration is a point on its policy's clock, so `500up` inside a warmup
  counts the 500 updates after the warmup). Into updates, a duration in
  epochs, examples or tokens must end on an update; otherwise the error
  names the two nearest exact counts. Converted durations print as
  numbers: `str(parse(s, bs))` is the canonical text in epochs or
  updates, which `parse` reads back without the schedule.

  Args:
    text: e.g. `multistep(0.1,milestones=60/120/160,gamma=0.2)` or
      `warmup(cosine(0.4,length=90),length=5)`; lists are separated by `/`,
      booleans are `true`/`false`, choices are bare words.
    batch_schedule: the `lrjax.batch.BatchSchedule` that durations in
      updates, examples or tokens convert against (None: only durations
      already in the policy's unit, `ep` in a policy of epochs and `up`
      in one of updates, can be given a unit).
    seq_len: tokens per sequence, for durations in tokens (the `seq=` of
      the batch text).

  Returns:
    The `Policy` (or, for `reduce_on_plateau` and `switch_on_plateau`, the
    stateful schedule). `str(parse(s)) == s` for canonical text `s` (what
    `str` prints: defaults left out, numbers in their shortest form).

  Raises:
    TypeError: if `text` is not a string or `batch_schedule` not a
      BatchSchedule.
    ValueError: naming the unknown policy (with the known ones), the unknown,
      missing or invalid argument, or the column where parsing failed; or
      for the printed form of a plain callable (`<callable ...>`), which has
      no text form; or for a duration with a unit that cannot convert
      (what is missing, or the nearest exact counts).

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.parse('multistep(0.1,milestones=60/120/160,gamma=0.2)')
    >>> print(f'{float(s(120)):.4f}')
    0.0040
    >>> print(schedules.parse('warmup(cosine(0.4, length=90), length=5)'))
    warmup(cosine(0.4,length=90),length=5)
    >>> from lrjax import batch
    >>> bs = batch.parse('stages(4Kitok@4Mitok,seq=64,n=1000)')
    >>> print(schedules.parse(
    ...   'warmup(cosine(1e-3,length=110Kitok),length=4Kitok)', bs, seq_len=64))
    in_epochs(warmup(cosine(0.001,length=1.76),length=0.064))
    >>> print(schedules.parse('cosine(1e-3,length=25up)', bs))
    in_epochs(cosine(0.001,length=1.6))
  """
  from lrjax.batch._schedule import BatchSchedule  # noqa: PLC0415

  if batch_schedule is not None and not isinstance(
    batch_schedule, BatchSchedule
  ):
    raise TypeError(
      f'batch_schedule={batch_schedule!r} must be a '
      'lrjax.batch.BatchSchedule or None'
    )
  if seq_len is not None and (
    isinstance(seq_len, bool)
    or not isinstance(seq_len, numbers.Integral)
    or seq_len < 1
  ):
    raise ValueError(f'seq_len={seq_len!r} must be an integer >= 1')
  return parse_with(text, _Units(batch_schedule, seq_len))


def parse_with(text: str, units: _Units):
  """`parse` with a given converter of durations (see `_Units`)."""
  if not isinstance(text, str):
    raise TypeError(f'text={text!r} must be a string')
  if '<callable' in text:
    raise ValueError(
      f'cannot parse {text!r}: it holds a plain callable (<callable ...>), '
      'which has no text form; build that policy in Python'
    )
  parser = _Parser(text)
  if not parser.tokens:
    raise ValueError(
      'cannot parse an empty policy text: write e.g. constant(0.1)'
    )
  node = parser.call()
  if parser.i != len(parser.tokens):
    _, val, col = parser.peek()
    raise ValueError(
      f'cannot parse {text!r}: unexpected {val!r} at column {col} after the '
      'policy'
    )
  out = _resolve(node, units, None, fractions.Fraction(0))
  if units.to_epochs and isinstance(out, P.Policy) and out.unit is None:
    from lrjax.schedules._compose import in_epochs  # noqa: PLC0415

    out = in_epochs(out)
  return out
