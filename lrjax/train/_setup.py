"""Resolving a TrainConfig into concrete objects (schedules, plan, data)."""

from __future__ import annotations

import bisect
import numbers
from typing import Any

import jax
import numpy as np

from lrjax.train._config import TrainConfig


def make_plan(
  schedule: Any, num_replicas: int, max_device_batch: int | None
) -> Any:
  """The accumulation plan (``lrjax.batch.plan``), errors naming fields.

  Raises:
    ValueError: (naming ``batch`` or ``max_device_batch``) when a stage's
      batch cannot be split over the replicas.
  """
  from lrjax import batch as lbatch

  for i, b in enumerate(schedule.batch_size_per_stage):
    if b % num_replicas:
      raise ValueError(
        f'batch: stage {i} batch size {b} is not divisible by the '
        f'{num_replicas} devices; use a multiple of {num_replicas} or set '
        'num_devices to a divisor of it'
      )
  cap = max_device_batch or max(schedule.batch_size_per_stage)
  try:
    return lbatch.plan(schedule, num_replicas, cap)
  except ValueError as e:
    raise ValueError(f'batch / max_device_batch={max_device_batch}: {e}') from e


def stage_of(schedule: Any, update: int) -> int:
  """Host-side stage index of ``update`` (the last stage past the end)."""
  return max(bisect.bisect_right(schedule.boundaries, update) - 1, 0)


def batch_schedule(config: TrainConfig, num_examples: int) -> Any:
  """The config's BatchSchedule over ``num_examples`` (validated)."""
  from lrjax import batch as lbatch

  value = config.batch
  try:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
      schedule = lbatch.BatchSchedule(
        (lbatch.Stage(int(value), epochs=config.num_epochs),), num_examples
      )
    elif isinstance(value, str):
      schedule = lbatch.parse(value, num_examples=num_examples)
    elif isinstance(value, lbatch.BatchSchedule):
      schedule = value
    else:
      raise ValueError(f'batch={value!r} must be text, a BatchSchedule or int')
  except (ValueError, TypeError) as e:
    if str(e).startswith('batch'):
      raise
    raise ValueError(f'batch={value!r}: {e}') from e
  if schedule.num_examples != num_examples:
    raise ValueError(
      f'batch: the schedule is over {schedule.num_examples} examples but the '
      f'training split has {num_examples}; fix n= in the batch text'
    )
  for b in schedule.batch_size_per_stage:
    if b > num_examples:
      raise ValueError(
        f'batch: batch size {b} is larger than the training split '
        f'({num_examples} examples); use a batch <= {num_examples}'
      )
  return schedule


def policy(value: Any, name: str) -> Any:
  """A float, a Policy, or a plateau policy from a config value."""
  if isinstance(value, numbers.Real) and not isinstance(value, bool):
    return float(value)
  if isinstance(value, str):
    try:
      return float(value)
    except ValueError:
      pass
    from lrjax import schedules

    try:
      return schedules.parse(value)
    except (ValueError, TypeError) as e:
      raise ValueError(f'{name}={value!r} does not parse: {e}') from e
  if callable(value):
    return value
  raise ValueError(f'{name}={value!r} must be a float, policy text or Policy')


def is_stateful(p: Any) -> bool:
  return hasattr(p, 'init') and hasattr(p, 'update')


def as_schedule(p: Any, schedule: Any) -> Any:
  """Constant float, per-update optax schedule, or a stateful schedule."""
  if isinstance(p, float) or is_stateful(p):
    return p
  from lrjax.batch import per_update

  return per_update(p, schedule)


def load_datasets(config: TrainConfig) -> tuple[Any, Any]:
  """(train, test) Datasets of the config."""
  from lrjax import data

  if config.dataset == 'synthetic':
    kw = dict(
      image_shape=tuple(config.synthetic_shape),
      num_classes=config.synthetic_classes,
      seed=config.seed,
    )
    train = data.synthetic(config.synthetic_examples, split='train', **kw)
    test = data.synthetic(
      max(config.synthetic_examples // 4, 1), split='test', **kw
    )
    return train, test
  train = data.load(config.dataset, split='train', data_dir=config.data_dir)
  test = data.load(config.dataset, split='test', data_dir=config.data_dir)
  return train, test


def select_devices(config: TrainConfig) -> list[Any]:
  """Global devices ordered by process; ``num_devices`` per process."""
  per_process = config.num_devices or jax.local_device_count()
  out = []
  for p in range(jax.process_count()):
    mine = [d for d in jax.devices() if d.process_index == p]
    mine.sort(key=lambda d: d.id)
    if per_process > len(mine):
      raise ValueError(
        f'num_devices={per_process} exceeds the {len(mine)} devices of '
        f'process {p}; lower it or set it to None'
      )
    out.extend(mine[:per_process])
  return out


def as_numpy_state(tree: Any) -> Any:
  return jax.tree.map(np.asarray, tree)
