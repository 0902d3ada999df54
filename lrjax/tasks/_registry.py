"""Named tasks: a builder per name, so a command line or a config file can
say what to train."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lrjax.train import Task

_REGISTRY: dict[str, Callable[..., Task]] = {}


def register(name: str, builder: Callable[..., Task]) -> None:
  """Registers ``builder(**kwargs) -> Task`` under ``name``.

  Raises:
    ValueError: if ``name`` is already registered.
  """
  if name in _REGISTRY:
    raise ValueError(f'task {name!r} is already registered')
  _REGISTRY[name] = builder


def registered() -> tuple[str, ...]:
  """The registered task names."""
  return tuple(sorted(_REGISTRY))


def get(name: str, **kwargs: Any) -> Task:
  """The task ``name`` built with ``kwargs``.

  Raises:
    ValueError: for an unknown name (listing the registered ones).
    TypeError: when the builder returns something other than a Task.

  Examples:
    >>> import numpy as np
    >>> from lrjax import tasks, train
    >>> def toy(n=8):
    ...   return train.Task(
    ...       model=(lambda key, x: {'w': np.zeros((2,), np.float32)},
    ...              lambda p, x: x @ p['w']),
    ...       loss=lambda y, b: (((y - b['y']) ** 2).mean(), {}),
    ...       train_data={'x': np.ones((n, 2), np.float32),
    ...                   'y': np.ones(n, np.float32)},
    ...       inputs='x', name='toy')
    >>> tasks.register('toy_doctest', toy)
    >>> tasks.get('toy_doctest', n=4).num_train
    4
  """
  if name not in _REGISTRY:
    raise ValueError(
      f'task {name!r} is not registered; registered: {registered()} '
      '(lrjax.tasks.register)'
    )
  task = _REGISTRY[name](**kwargs)
  if not isinstance(task, Task):
    raise TypeError(f'the builder of task {name!r} returned {task!r}')
  return task
