"""Resolving a TrainConfig into concrete objects (schedules, plan, data)."""

from __future__ import annotations

import bisect
import dataclasses
import numbers
import re
from typing import Any

import jax
import numpy as np
from absl import logging

from lrjax.train._config import TrainConfig
from lrjax.train._parallel import Runner
from lrjax.train._step import make_optimizer, make_train_body


@dataclasses.dataclass(frozen=True)
class Setup:
  """A TrainConfig resolved into the objects a run is made of.

  Attributes:
    task: what is trained (model, loss, metrics, data).
    num_train: examples in the training split.
    schedule: the BatchSchedule over the training split.
    plan: its accumulation plan over the replicas.
    replicas: devices over all processes.
    total_updates: updates of the whole run (``max_updates`` applied).
    tx: the optimizer (its LR, momentum and weight-decay schedules, the
      accumulation and the skipping of non-finite updates inside).
    runner: places state and batches on the devices, compiles the step.
    schedule_free: whether the optimizer is the same whatever the batch
      schedule (every policy a constant, a function of updates or
      state-based, and no accumulation), so that another schedule can run
      on the same compiled steps.
  """

  task: Any
  num_train: int
  schedule: Any
  plan: Any
  replicas: int
  total_updates: int
  tx: Any
  runner: Runner
  schedule_free: bool = False


def build(
  config: TrainConfig,
  task: Any,
  *,
  schedule: Any = None,
  inside: tuple[Any, ...] = (),
  candidates: tuple[int, ...] = (),
) -> Setup:
  """Builds the schedule, plan, optimizer and runner of a run.

  Args:
    config: a validated config.
    task: what to train (a :class:`lrjax.train.Task`).
    schedule: the BatchSchedule in force (None: the config's); a hook may
      have changed it.
    inside: the hooks' ``inside_step`` functions, computed in the step.
    candidates: batch sizes hooks may put in force later: planned now
      (divisible by the devices, within the noise settings), and when one
      of them accumulates the optimizer accumulates from the start.

  Returns:
    The Setup; nothing is compiled yet.

  Raises:
    ValueError: for a batch schedule, device count, policy or noise setting
      that does not fit the data or the devices (naming the field and the
      fix).
  """
  num_train = task.num_train
  if config.augment and not hasattr(task.train_data, 'augmentation'):
    raise ValueError(
      f'augment=True, but the training data of task {task.name!r} is not a '
      'lrjax.data.Dataset with an augmentation; set augment=False (augment '
      'in the model or the source)'
    )
  if config.plateau_metric.startswith('test_') and task.eval_data is None:
    raise ValueError(
      f'plateau_metric={config.plateau_metric!r} monitors an evaluation '
      f'metric, but task {task.name!r} has no evaluation data'
    )
  if schedule is None:
    schedule = batch_schedule(config, num_train)
  devices = select_devices(config)
  plan = make_plan(schedule, len(devices), config.max_device_batch)
  candidates_need_accumulation = False
  if candidates:
    from lrjax import batch as lbatch

    every = lbatch.BatchSchedule(
      tuple(lbatch.Stage(b, updates=1) for b in sorted(set(candidates))),
      num_train,
    )
    every_plan = make_plan(every, len(devices), config.max_device_batch)
    check_noise(config, every_plan, len(devices))
    candidates_need_accumulation = every_plan.needs_accumulation
  lr = policy(config.lr, 'lr', schedule, seq_len(config.batch))
  momentum = policy(
    config.momentum, 'momentum', schedule, seq_len(config.batch)
  )
  weight_decay = policy(
    config.weight_decay, 'weight_decay', schedule, seq_len(config.batch)
  )
  check_noise(config, plan, len(devices))
  total_updates = schedule.num_updates
  if config.max_updates is not None:
    total_updates = min(total_updates, config.max_updates)
  skip = config.nan_policy == 'skip'
  if config.accumulate is False and (
    plan.needs_accumulation or candidates_need_accumulation
  ):
    raise ValueError(
      'accumulate=False, but the batch schedule needs accumulation over '
      f'max_device_batch={config.max_device_batch}; raise max_device_batch '
      'or set accumulate=None'
    )
  accumulate = (
    plan.needs_accumulation
    or candidates_need_accumulation
    or bool(config.accumulate)
  )
  policies = (lr, momentum, weight_decay)
  scheduled = [as_schedule(p, schedule) for p in policies]
  tx = make_optimizer(
    config.optimizer,
    learning_rate=scheduled[0],
    momentum=scheduled[1],
    weight_decay=scheduled[2],
    b2=config.b2,
    clip_norm=config.clip_norm,
    every_k_schedule=plan.every_k_schedule if accumulate else None,
    skip_non_finite=skip,
  )
  runner = Runner(
    make_train_body(
      task.train_loss,
      tx,
      skip_non_finite=skip,
      plateau_metric=config.plateau_metric,
      inside=inside,
      pack_collectives=jax.process_count() > 1
      and all(d.platform == 'cpu' for d in devices),
    ),
    devices,
    config.parallel,
    task.example(),
    num_inside=len(inside),
    compiler_options=config.compiler_options,
  )
  return Setup(
    task=task,
    num_train=num_train,
    schedule=schedule,
    plan=plan,
    replicas=len(devices),
    total_updates=total_updates,
    tx=tx,
    runner=runner,
    schedule_free=not accumulate
    and all(a is p for a, p in zip(scheduled, policies, strict=True)),
  )


def check_noise(config: TrainConfig, plan: Any, num_replicas: int) -> None:
  """Checks that one device can estimate the noise scale under ``plan``.

  With several devices the estimate compares per-device and global
  gradients; with one it slices each micro-batch into
  ``noise.num_slices`` parts, which needs more than one slice (warned
  about) and slices of equal size.

  Raises:
    ValueError: when ``noise.num_slices`` does not divide a stage's
      micro-batch.
  """
  noise = config.noise
  if not noise.enabled or num_replicas != 1:
    return
  if noise.num_slices == 1:
    logging.warning(
      'noise.enabled with one device and noise.num_slices=1 cannot estimate '
      'the noise scale (noise_scale stays NaN); set noise.num_slices > 1'
    )
    return
  for s in plan.stages:
    if s.micro_batch % noise.num_slices:
      raise ValueError(
        f'noise.num_slices={noise.num_slices} must divide the '
        f'micro-batch {s.micro_batch}; choose a divisor'
      )


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


def policy(
  value: Any, name: str, schedule: Any = None, seq_len: int | None = None
) -> Any:
  """A float, a Policy, a plateau policy or a callable from a config value.

  Text is parsed against ``schedule`` (durations in tokens, updates or
  examples convert exactly; ``seq_len`` for tokens). With a schedule, a
  policy whose durations do not fit the run is warned about once
  (``TrainConfig.validate`` says how).
  """
  from lrjax.train import _config

  if isinstance(value, numbers.Real) and not isinstance(value, bool):
    return float(value)
  if isinstance(value, str):
    try:
      return float(value)
    except ValueError:
      pass
    from lrjax import schedules

    try:
      value = schedules.parse(value, schedule, seq_len=seq_len)
    except (ValueError, TypeError) as e:
      raise ValueError(f'{name}={value!r} does not parse: {e}') from e
  if callable(value):
    if schedule is not None:
      _config.warn_fit(value, name, schedule)
    return value
  raise ValueError(f'{name}={value!r} must be a float, policy text or Policy')


def seq_len(batch: Any) -> int | None:
  """The ``seq=`` (tokens per sequence) of batch text, else None."""
  if not isinstance(batch, str):
    return None
  found = re.search(r'(?<![A-Za-z0-9_])seq\s*=\s*(\d+)', batch)
  return int(found.group(1)) if found else None


def is_stateful(p: Any) -> bool:
  return hasattr(p, 'init') and hasattr(p, 'update')


def as_schedule(p: Any, schedule: Any) -> Any:
  """A constant float, a stateful schedule, or an optax schedule of updates.

  A policy over epochs (a lrjax Policy whose unit is 'epoch' or None) is
  converted with ``lrjax.batch.per_update``; a policy of updates
  (``unit='update'``: ``in_updates``, ``noam``) and a plain callable (an
  optax schedule, a function of the count) are schedules of the real
  update count already, as optax defines them, and are used as they are.
  """
  from lrjax.schedules import Policy

  if isinstance(p, float) or is_stateful(p):
    return p
  if not isinstance(p, Policy) or p.unit == 'update':
    return p
  from lrjax.batch import per_update

  return per_update(p, schedule)


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
