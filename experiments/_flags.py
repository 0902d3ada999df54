"""Settings declared once: a dataclass field is the flag and the config.

An experiment's settings are a frozen dataclass whose fields are declared
with `setting` (default, help text, check). `define` makes one absl flag
per field (the flag's name is the field's), `read` builds the dataclass
from the parsed flags, and `check` tests every field's condition and names
the flag in its message. So a setting is written once: adding a field adds
the flag, its parsing, its check and its place in the config.

Examples:
  >>> import dataclasses
  >>> @dataclasses.dataclass(frozen=True)
  ... class Probe:
  ...   steps: int = setting(100, 'Updates of the probe.', check=at_least(1))
  ...   lrs: tuple[float, ...] = setting((0.1, 1.0), 'LRs tried.')
  >>> check(Probe(steps=0))
  Traceback (most recent call last):
  ...
  ValueError: --steps=0 must be >= 1
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import flags

FLAGS = flags.FLAGS

#: A field's condition: value -> None when it holds, else what it must be.
Check = Callable[[Any], 'str | None']


def setting(
  default: Any,
  help_text: str,
  *,
  choices: Sequence[str] | None = None,
  check: Check | None = None,
  none_if_empty: bool = False,
  repeated: bool = False,
) -> Any:
  """A dataclass field that is also an absl flag.

  Args:
    default: the config's default and the flag's.
    help_text: the flag's help.
    choices: the allowed values of a text setting (an enum flag).
    check: ``check(value) -> None | 'must be ...'``, tested by `check`.
    none_if_empty: a flag value that is empty or 0 means None (off).
    repeated: a list setting given as a repeated flag (``--policy=a
      --policy=b``), for items that hold commas.

  Returns:
    A `dataclasses.field` carrying the flag's metadata.
  """
  return dataclasses.field(
    default=default,
    metadata={
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
  """The check: a non-empty, strictly increasing list in (``low``,
  ``high``)."""

  def check(v: Sequence[float]) -> str | None:
    if v and low < v[0] and v[-1] < high and list(v) == sorted(set(v)):
      return None
    return f'must be increasing numbers in ({low:g}, {high:g}), e.g. {example}'

  return check


def distinct(note: str = '') -> Check:
  """The check: a non-empty list of distinct values."""
  return lambda v: (
    None
    if v and len(set(v)) == len(v)
    else f'must be a non-empty list of distinct values{note}'
  )


def _settings(cls: type) -> list[dataclasses.Field]:
  return [f for f in dataclasses.fields(cls) if 'help' in f.metadata]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _kind(cls: type, field: dataclasses.Field) -> tuple[str, type]:
  """(flag kind, element type) of a field from its annotation."""
  hint = _hints(cls)[field.name]
  args = [a for a in typing.get_args(hint) if a is not type(None)]
  if typing.get_origin(hint) is tuple:
    return 'list', args[0] if args else str
  base = args[0] if args and typing.get_origin(hint) is not None else hint
  if typing.get_origin(base) is tuple:
    return 'list', typing.get_args(base)[0]
  return {bool: 'bool', int: 'integer', float: 'float'}.get(
    base, 'string'
  ), base


def define(cls: type, *, skip: Sequence[str] = (), module: str = '') -> None:
  """Defines one absl flag per `setting` field of ``cls`` (not ``skip``).

  A flag defined already (by another settings class of the same name and
  kind) is left as it is, so two experiments' settings may share one.

  Args:
    cls: a dataclass whose fields were declared with `setting`.
    skip: field names that get no flag.
    module: the module the flags are listed under (``flags.cfg`` keeps
      the flags of ``experiments`` modules); default: ``cls``'s module.
  """
  for field in _settings(cls):
    if field.name in skip or field.name in FLAGS:
      continue
    kind, _ = _kind(cls, field)
    meta, default = field.metadata, field.default
    args = (field.name, default, meta['help'])
    kwargs = {'module_name': module or cls.__module__}
    if meta['repeated']:
      flags.DEFINE_multi_string(
        field.name, list(default), meta['help'], **kwargs
      )
    elif meta['choices']:
      flags.DEFINE_enum(
        field.name, default, meta['choices'], meta['help'], **kwargs
      )
    elif kind == 'list':
      flags.DEFINE_list(
        field.name, [str(v) for v in default], meta['help'], **kwargs
      )
    elif kind == 'bool':
      flags.DEFINE_bool(*args, **kwargs)
    elif kind == 'integer':
      flags.DEFINE_integer(*args, **kwargs)
    elif kind == 'float':
      flags.DEFINE_float(*args, **kwargs)
    else:
      flags.DEFINE_string(*args, **kwargs)


def _parse(cls: type, field: dataclasses.Field, value: Any) -> Any:
  kind, item = _kind(cls, field)
  if field.metadata['none_if_empty'] and not value:
    return None
  if kind == 'list':
    try:
      return tuple(item(v) for v in value)
    except ValueError:
      raise ValueError(
        f'--{field.name}={",".join(value)} must be a comma-separated list '
        f'of {item.__name__} values'
      ) from None
  return value


def read(cls: type, defaults: Mapping[str, Any] | None = None, **fixed: Any):
  """Builds ``cls`` from the parsed flags.

  Args:
    cls: the settings dataclass.
    defaults: values for flags not given on the command line (another
      experiment family's defaults, e.g. the language models'); the flag
      is set to it, so that the workdir's ``flags.cfg`` repeats the run.
    **fixed: fields not read from flags (e.g. nested settings).

  Returns:
    The settings (not checked yet: see `check`).

  Raises:
    ValueError: for a list flag that does not parse, naming it.
  """
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
    values[field.name] = _parse(cls, field, FLAGS[field.name].value)
  return cls(**values)


def check(settings: Any) -> None:
  """Tests every `setting` field's condition.

  Raises:
    ValueError: for the first that fails, naming the flag, its value and
      what it must be.
  """
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
