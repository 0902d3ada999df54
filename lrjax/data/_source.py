"""Any random-access data as a source of batches of example dicts.

The trainer reads its data through one method, ``take(indices) -> batch``,
where the batch is a dict of numpy arrays whose first axis is the batch.
`as_source` gives that method to what users have: a lrjax `Dataset`, a
dict of numpy arrays, or anything with ``__len__`` and ``__getitem__``
returning example dicts (a TFDS ``data_source``, a list of dicts, a grain
source).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Source(Protocol):
  """What the trainer reads: a sized, random-access source of batches.

  Attributes:
    num_examples: examples in the split.
  """

  num_examples: int

  def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The examples at ``indices`` as one batch (dict of arrays [n, ...]).

    The trainer passes ``augment_seed=`` and ``epochs=`` (the epoch each
    example was drawn in) only with ``augment=True``, which needs a lrjax
    ``Dataset``."""


class ArraySource:
  """A dict of equally long arrays as a source.

  Args:
    arrays: name -> array ``[N, ...]`` (one example per row).
    name: a name for logs.

  Raises:
    ValueError: for an empty dict, non-array values or unequal lengths.

  Examples:
    >>> import numpy as np
    >>> src = ArraySource({'x': np.arange(6.0).reshape(3, 2), 'y': np.ones(3)})
    >>> src.num_examples, src.take(np.array([2, 0]))['x'].tolist()
    (3, [[4.0, 5.0], [0.0, 1.0]])
  """

  def __init__(self, arrays: Mapping[str, Any], name: str = 'arrays') -> None:
    if not arrays:
      raise ValueError('the dict of arrays is empty: give at least one array')
    self.arrays = {str(k): np.asarray(v) for k, v in arrays.items()}
    lengths = {
      k: (v.shape[0] if v.ndim else None) for k, v in self.arrays.items()
    }
    if None in lengths.values() or len(set(lengths.values())) != 1:
      raise ValueError(
        f'the arrays must share their first (example) axis; got lengths '
        f'{lengths}'
      )
    self.num_examples = int(next(iter(lengths.values())))
    if self.num_examples < 1:
      raise ValueError('the arrays hold no example (first axis of length 0)')
    self.name = name

  def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The examples at ``indices`` (an int array) as one batch."""
    return {k: v[indices] for k, v in self.arrays.items()}


class ItemSource:
  """Anything with ``__len__`` and ``__getitem__(i) -> dict`` as a source.

  Uses the object's ``__getitems__`` (TFDS and grain sources have it) to
  read a batch in one call where it exists. Each key of the example dicts
  becomes an array of the batch, stacked with numpy.

  Args:
    items: the random-access source.
    name: a name for logs.

  Raises:
    ValueError: for an empty source.
  """

  def __init__(self, items: Any, name: str | None = None) -> None:
    self.items = items
    self.num_examples = int(len(items))
    if self.num_examples < 1:
      raise ValueError(f'the data source {items!r} is empty')
    self.name = name or type(items).__name__

  def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The examples at ``indices`` (an int array), stacked per key."""
    keys = [int(i) for i in np.asarray(indices).reshape(-1)]
    getitems = getattr(self.items, '__getitems__', None)
    rows = getitems(keys) if getitems else [self.items[i] for i in keys]
    if not rows:
      raise ValueError('take needs at least one index')
    first = rows[0]
    if not isinstance(first, Mapping):
      raise ValueError(
        f'{self.name}[i] must be a dict of arrays (one example); got '
        f'{type(first).__name__}'
      )
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in first}


def as_source(data: Any) -> Any:
  """The object itself if it has ``take`` and ``num_examples``, else a
  wrapper: `ArraySource` for a dict of arrays, `ItemSource` for a sized
  random-access source.

  Args:
    data: a lrjax `Dataset` or `Source`, a dict of arrays, or an object with
      ``__len__`` and ``__getitem__``.

  Returns:
    An object with ``num_examples`` and ``take(indices)``.

  Raises:
    TypeError: for anything else (naming what is accepted).
  """
  if hasattr(data, 'take') and hasattr(data, 'num_examples'):
    return data
  if isinstance(data, Mapping):
    return ArraySource(data)
  if hasattr(data, '__len__') and hasattr(data, '__getitem__'):
    return ItemSource(data)
  raise TypeError(
    f'data of type {type(data).__name__} is not a source: give a dict of '
    'numpy arrays, an object with __len__ and __getitem__ (a TFDS '
    'data_source), or one with num_examples and take(indices)'
  )


def example_batch(source: Any, size: int = 1) -> dict[str, np.ndarray]:
  """The first ``size`` examples of ``source`` as a batch (shapes, dtypes)."""
  size = min(size, source.num_examples)
  batch = source.take(np.arange(size))
  if not isinstance(batch, Mapping) or not batch:
    raise ValueError(
      f'take() of the data must return a non-empty dict of arrays; got '
      f'{type(batch).__name__}'
    )
  return {k: np.asarray(v) for k, v in batch.items()}
