"""Text form of policies: `parse(text)` (the printer is `str(policy)`).

Grammar (no spaces needed; spaces are ignored)::

  call  := NAME '(' [arg (',' arg)*] ')'
  arg   := [NAME '='] value
  value := atom ('/' atom)*          # a list, e.g. 60/120/160
  atom  := NUMBER | 'true' | 'false' | NAME | call
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING

from lrjax.schedules import _policy as P

if TYPE_CHECKING:
  from lrjax.schedules._policy import Policy
  from lrjax.schedules._state import ReduceOnPlateau, SwitchOnPlateau

_TOKEN = re.compile(
  r'\s*(?:(?P<num>[-+]?(?:inf(?![A-Za-z0-9_])|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))'
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
    return build(name, args, kwargs)

  def value(self):
    items = [self.atom()]
    while self.peek()[1] == '/':
      self.take('op', '/')
      items.append(self.atom())
    return items[0] if len(items) == 1 else tuple(items)

  def atom(self):
    kind, val, _ = self.peek()
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


def parse(text: str) -> Policy | ReduceOnPlateau | SwitchOnPlateau:
  """Parses the text form of a policy: the inverse of `str(policy)`.

  Args:
    text: e.g. `multistep(0.1,milestones=60/120/160,gamma=0.2)` or
      `warmup(cosine(0.4,length=90),length=5)`; lists are separated by `/`,
      booleans are `true`/`false`, choices are bare words.

  Returns:
    The `Policy` (or, for `reduce_on_plateau` and `switch_on_plateau`, the
    stateful schedule). `str(parse(s)) == s` for canonical text `s` (what
    `str` prints: defaults left out, numbers in their shortest form).

  Raises:
    TypeError: if `text` is not a string.
    ValueError: naming the unknown policy (with the known ones), the unknown,
      missing or invalid argument, or the column where parsing failed; or
      for the printed form of a plain callable (`<callable ...>`), which has
      no text form.

  Examples:
    >>> from lrjax import schedules
    >>> s = schedules.parse('multistep(0.1,milestones=60/120/160,gamma=0.2)')
    >>> print(f'{float(s(120)):.4f}')
    0.0040
    >>> print(schedules.parse('warmup(cosine(0.4, length=90), length=5)'))
    warmup(cosine(0.4,length=90),length=5)
  """
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
  out = parser.call()
  if parser.i != len(parser.tokens):
    _, val, col = parser.peek()
    raise ValueError(
      f'cannot parse {text!r}: unexpected {val!r} at column {col} after the '
      'policy'
    )
  return out
