"""Settings declared once: a dataclass field is the flag and the config.

A study's settings are a frozen dataclass of `setting` fields (default and
check), each followed by its help text as an attribute docstring (the
string under the field, as pydantic's ``use_attribute_docstrings`` reads
it): `define_flags` makes one absl flag per field, `read_flags` builds the
dataclass from the parsed flags, and `check_settings` tests each field,
naming its flag. Adding a field adds the flag, its parsing and its check.
A help text computed at import time is passed as ``help_text``. Nothing
here defines a flag until `define_flags` is called: importing lrjax
registers none.

Examples:
  >>> import dataclasses
  >>> @dataclasses.dataclass(frozen=True)
  ... class Probe:  # defined in a doctest: no source to read, so help_text=
  ...   steps: int = setting(100, check=at_least(1), help_text='Updates.')
  ...   lrs: tuple[float, ...] = setting((0.1, 1.0), help_text='LRs tried.')
  >>> check_settings(Probe(steps=0))
  Traceback (most recent call last):
  ...
  ValueError: --steps=0 must be >= 1
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import sys
import textwrap
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import flags

FLAGS = flags.FLAGS

#: A field's condition: value -> None when it holds, else what it must be.
Check = Callable[[Any], 'str | None']


def setting(
  default: Any,
  *,
  choices: Sequence[str] | None = None,
  check: Check | None = None,
  none_if_empty: bool = False,
  repeated: bool = False,
  help_text: str | None = None,
) -> Any:
  """A dataclass field that is also an absl flag.

  Args:
    default: the config's default and the flag's.
    help_text: the flag's help when it is computed; else the field's
      attribute docstring is.
    choices: the allowed values of a text setting (an enum flag).
    check: ``check(value) -> None | 'must be ...'``, tested by
      `check_settings`.
    none_if_empty: a flag value that is empty or 0 means None (off).
    repeated: a list given as a repeated flag (items may hold commas).
  """
  return dataclasses.field(
    default=default,
    metadata={
      'setting': True,
      'help': help_text,
      'choices': tuple(choices) if choices else None,
      'check': check,
      'none_if_empty': none_if_empty,
      'repeated': repeated,
    },
  )


def at_least(bound: float, note: str = '') -> Check:
  """The check ``value >= bound``."""
  return lambda v: None if v >= bound else f'must be >= {bound}{note}'


def above(bound: float, note: str = '') -> Check:
  """The check ``value > bound``."""
  return lambda v: None if v > bound else f'must be > {bound}{note}'


def fraction(note: str = '') -> Check:
  """The check ``0 <= value < 1``."""
  return lambda v: None if 0 <= v < 1 else f'must be in [0, 1){note}'


def positive() -> Check:
  """The check: a non-empty list of numbers > 0."""
  return lambda v: None if v and min(v) > 0 else 'must be positive numbers'


def increasing(low: float, high: float, example: str) -> Check:
  """The check: a non-empty, strictly increasing list in (low, high)."""

  return lambda v: (
    None
    if v and low < v[0] and v[-1] < high and list(v) == sorted(set(v))
    else f'must be increasing numbers in ({low:g}, {high:g}), e.g. {example}'
  )


def distinct(note: str = '') -> Check:
  """The check: a non-empty list of distinct values."""
  return lambda v: (
    None
    if v and len(set(v)) == len(v)
    else f'must be a non-empty list of distinct values{note}'
  )


def _settings(cls: type) -> list[dataclasses.Field]:
  return [f for f in dataclasses.fields(cls) if 'setting' in f.metadata]


@functools.cache
def _docstrings(cls: type) -> dict[str, str]:
  """Each field's attribute docstring in ``cls`` and its bases, as one
  paragraph."""
  docs = {}
  for klass in reversed(cls.__mro__[:-1]):
    try:
      body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
    except (OSError, TypeError):  # no source: a class made in a doctest
      continue
    for field, doc in zip(body, body[1:], strict=False):
      if (
        isinstance(field, ast.AnnAssign)
        and isinstance(doc, ast.Expr)
        and isinstance(doc.value, ast.Constant)
        and isinstance(doc.value.value, str)
      ):
        docs[field.target.id] = ' '.join(doc.value.value.split())
  return docs


def _help(cls: type, field: dataclasses.Field) -> str:
  text = field.metadata['help'] or _docstrings(cls).get(field.name)
  if not text:
    raise TypeError(
      f'setting {cls.__name__}.{field.name} has no help: write it as a '
      'docstring under the field, or pass help_text='
    )
  return text


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _kind(cls: type, field: dataclasses.Field) -> tuple[str, type]:
  """(flag kind, element type) of a field from its annotation."""
  hint = _hints(cls)[field.name]
  if typing.get_origin(hint) is not tuple:  # X | Y | None: X
    args = typing.get_args(hint)
    hint = next((a for a in args if a is not type(None)), hint)
  if typing.get_origin(hint) is tuple:
    return 'list', typing.get_args(hint)[0]
  kinds = {bool: 'bool', int: 'integer', float: 'float'}
  return kinds.get(hint, 'string'), hint


#: The modules whose flags `define_flags` defined: what flags.cfg repeats.
OWN_MODULES: set[str] = set()


def define_flags(
  cls: type, *, skip: Sequence[str] = (), module: str = ''
) -> None:
  """Defines one absl flag per `setting` field of ``cls`` but ``skip``, under
  ``module`` (default: ``cls``'s); one defined already is left as it is, so
  settings classes may share a flag."""
  module = module or cls.__module__
  if module == '__main__':  # absl files (and --help shows) a script's flags
    module = sys.argv[0]  # under its path
  OWN_MODULES.add(module)
  for field in _settings(cls):
    if field.name in skip or field.name in FLAGS:
      continue
    kind, _ = _kind(cls, field)
    meta, default = field.metadata, field.default
    kwargs = {
      'help': _help(cls, field),
      'module_name': module,
    }
    if meta['repeated']:
      kind, default = 'multi_string', list(default)
    elif meta['choices']:
      kind = 'enum'
      kwargs['enum_values'] = meta['choices']
    elif kind == 'list':
      default = [str(v) for v in default]
    # DEFINE_bool, _integer, _float, _string, _list, _enum or _multi_string.
    getattr(flags, f'DEFINE_{kind}')(field.name, default, **kwargs)


def read_flags(
  cls: type, defaults: Mapping[str, Any] | None = None, **fixed: Any
) -> Any:
  """Builds ``cls`` (unchecked: see `check_settings`) from ``fixed`` and the parsed
  flags; a flag not given is set to ``defaults[name]`` if there, so that
  ``flags.cfg`` repeats the run. ValueError names a list flag that does not
  parse."""
  values = dict(fixed)
  for field in _settings(cls):
    if field.name in fixed:
      continue
    flag = FLAGS[field.name]
    if defaults and field.name in defaults and not flag.present:
      value = defaults[field.name]
      if isinstance(value, tuple):
        value = [str(v) for v in value]
      setattr(FLAGS, field.name, value)
    value = FLAGS[field.name].value
    kind, item = _kind(cls, field)
    if field.metadata['none_if_empty'] and not value:
      value = None
    elif kind == 'list':
      try:
        value = tuple(item(v) for v in value)
      except ValueError:
        raise ValueError(
          f'--{field.name}={",".join(value)} must be a comma-separated list '
          f'of {item.__name__} values'
        ) from None
    values[field.name] = value
  return cls(**values)


def refuse(problems: Mapping[str, bool]) -> None:
  """Raises ValueError with the first message whose condition holds."""
  message = next((m for m, failed in problems.items() if failed), None)
  if message:
    raise ValueError(message)


def check_settings(settings: Any) -> None:
  """Tests every `setting` field's condition (ValueError naming the first
  failing flag, its value and what it must be)."""
  for field in _settings(type(settings)):
    test, choices = field.metadata['check'], field.metadata['choices']
    value = getattr(settings, field.name)
    if value is None:
      continue
    problem = test(value) if test is not None else None
    if choices and value not in choices:
      problem = f'must be one of {", ".join(choices)}'
    if problem:
      shown = ','.join(map(str, value)) if isinstance(value, tuple) else value
      raise ValueError(f'--{field.name}={shown} {problem}')
