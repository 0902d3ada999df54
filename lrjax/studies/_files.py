"""A study's files: JSON of configs and results, tables, variables as .npz."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lrjax import _atomic


def jsonable(obj: Any) -> Any:
  """JSON-ready values of configs and results.

  Dataclasses become dicts of their fields, lrjax policies and batch
  schedules their text, numpy arrays lists, numpy scalars numbers, and
  non-finite floats None (JSON has no NaN).

  Examples:
    >>> jsonable({'lr': np.float32(0.5), 'b': (1, 2), 'loss': float('nan')})
    {'lr': 0.5, 'b': [1, 2], 'loss': None}
  """
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return {
      f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
    }
  if isinstance(obj, Mapping):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, list | tuple):
    return [jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return jsonable(obj.tolist())
  if isinstance(obj, bool | str) or obj is None:
    return obj
  if isinstance(obj, int | np.integer):
    return int(obj)
  if isinstance(obj, float | np.floating):
    value = float(obj)
    return value if math.isfinite(value) else None
  if hasattr(obj, 'shape') and getattr(obj, 'shape', None) == ():
    return jsonable(float(obj))
  return str(obj)


def write_json(path: str, obj: Any) -> None:
  """Writes `jsonable` of ``obj`` atomically (a kill leaves the old file or
  the new one)."""
  write_text(path, json.dumps(jsonable(obj), indent=2) + '\n')


def write_text(path: str, text: str) -> None:
  """Writes ``text`` atomically (a kill leaves the old file or the new one)."""
  _atomic.write_text(path, text)


def read_json(path: str) -> Any:
  """The JSON in ``path``, or None when it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (FileNotFoundError, ValueError):
    return None


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub markdown table.

  Examples:
    >>> print(markdown_table(['policy', 'acc'], [['cosine', '96.1']]), end='')
    | policy | acc |
    |---|---|
    | cosine | 96.1 |
  """
  lines = [
    '| ' + ' | '.join(header) + ' |',
    '|' + '|'.join('---' for _ in header) + '|',
  ]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def save_variables(path: str, variables: Any) -> None:
  """Writes nested dicts of arrays to ``path`` as ``.npz``, one array per
  leaf named by its key path (``params/Dense_0/kernel``).

  No pickle: reading a workdir shared between people never runs code.
  """
  from flax import traverse_util

  flat = traverse_util.flatten_dict(variables, sep='/')
  with open(path, 'wb') as fh:
    np.savez(fh, **{k: np.asarray(v) for k, v in flat.items()})


def load_variables(path: str) -> dict[str, Any]:
  """Reads what `save_variables` wrote (``allow_pickle=False``)."""
  from flax import traverse_util

  with np.load(path, allow_pickle=False) as data:
    flat = {name: data[name] for name in data.files}
  return traverse_util.unflatten_dict(flat, sep='/')
