"""Accumulation plan: micro-batch per device and accumulation steps per stage."""

from __future__ import annotations

import dataclasses
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from lrjax.batch._schedule import BatchSchedule


class StagePlan(NamedTuple):
  """How one stage's global batch is executed.

  Attributes:
    batch_size: global batch B of the stage.
    micro_batch: examples per device per micro-step m.
    accum_steps: micro-steps per optimizer update k (``D * m * k == B``).
    num_updates: optimizer updates of the stage.
    start_update: optimizer update index at which the stage starts.
    start_micro_step: micro-step index at which the stage starts.
  """

  batch_size: int
  micro_batch: int
  accum_steps: int
  num_updates: int
  start_update: int
  start_micro_step: int

  @property
  def num_micro_steps(self) -> int:
    return self.num_updates * self.accum_steps


def _feasible(batch: int, unit: int) -> str:
  lo, hi = unit * (batch // unit), unit * (batch // unit + 1)
  return ', '.join(str(x) for x in (lo, hi) if x > 0)


@dataclasses.dataclass(frozen=True)
class AccumulationPlan:
  """The execution plan of a BatchSchedule on ``num_replicas`` devices.

  Built by :func:`plan`. Attributes: ``batch_schedule``, ``num_replicas``,
  ``max_device_batch``, ``stages`` (one :class:`StagePlan` per stage).
  """

  batch_schedule: BatchSchedule
  num_replicas: int
  max_device_batch: int
  stages: tuple[StagePlan, ...]

  @property
  def micro_batches(self) -> tuple[int, ...]:
    """Distinct per-device micro-batch sizes, sorted: the compiled shapes."""
    return tuple(sorted({s.micro_batch for s in self.stages}))

  @property
  def needs_accumulation(self) -> bool:
    """Whether any stage accumulates more than one micro-step."""
    return any(s.accum_steps > 1 for s in self.stages)

  @property
  def num_micro_steps(self) -> int:
    """Micro-steps over the whole schedule."""
    last = self.stages[-1]
    return last.start_micro_step + last.num_micro_steps

  def stage_plan(self, stage: int) -> StagePlan:
    """The plan of stage number ``stage`` (0-based)."""
    if not 0 <= stage < len(self.stages):
      raise IndexError(f'stage={stage} must be in [0, {len(self.stages)})')
    return self.stages[stage]

  def every_k_schedule(self, gradient_step: jax.typing.ArrayLike) -> jax.Array:
    """``optax.MultiSteps``'s ``every_k_schedule`` (jit-safe, int32).

    Its argument is MultiSteps' ``gradient_step``, the number of real
    optimizer updates performed so far, so the k in force is that of the stage
    containing update number ``gradient_step``, and each stage performs exactly
    its planned number of updates. Past the end, the last stage's k.
    """
    idx = self.batch_schedule.stage_at(gradient_step)
    ks = jnp.asarray(np.asarray([s.accum_steps for s in self.stages], np.int32))
    return ks[idx]


def plan(
  batch_schedule: BatchSchedule,
  num_replicas: int,
  max_device_batch: int,
  micro_batch_multiple: int = 1,
) -> AccumulationPlan:
  """Plans micro-batches and gradient accumulation for every stage.

  For each stage with global batch :math:`B` on :math:`D` replicas with at most
  :math:`M` examples per device per micro-step, the largest micro-batch
  :math:`m` that works and the accumulation steps :math:`k`:

  .. math::
    D \\, m \\, k = B, \\qquad m \\le M, \\qquad
    m = \\max \\{ d : d \\mid B / D,\\ d \\le M,\\ u \\mid d \\},

  with :math:`u` = ``micro_batch_multiple``. The trainer compiles one step per
  distinct :math:`m` (:attr:`AccumulationPlan.micro_batches`) and feeds
  :meth:`AccumulationPlan.every_k_schedule` to ``optax.MultiSteps``. A per
  device batch with no divisor near :math:`M` (e.g. a prime) gives a small
  :math:`m` and many micro-steps (logged as a warning naming a batch size
  that splits well): choose batch sizes with many divisors.

  Args:
    batch_schedule: the BatchSchedule.
    num_replicas: data-parallel devices D >= 1.
    max_device_batch: M, the most examples one device fits in one micro-step.
    micro_batch_multiple: u, the micro-batch must be a multiple of this
      (e.g. 8 for TPU tiles).

  Returns:
    An :class:`AccumulationPlan`.

  Raises:
    ValueError: when a stage cannot be planned (batch not divisible by
      ``num_replicas * micro_batch_multiple``, ``max_device_batch`` below
      ``micro_batch_multiple``, ...), naming the argument and the nearest
      feasible batch sizes.

  Examples:
    >>> from lrjax.batch import parse, plan
    >>> p = plan(parse('stages(64@1,256@1,n=1000)'), num_replicas=4,
    ...          max_device_batch=32)
    >>> [(s.micro_batch, s.accum_steps) for s in p.stages]
    [(16, 1), (32, 2)]
    >>> p.micro_batches, p.needs_accumulation
    ((16, 32), True)
  """
  if not isinstance(batch_schedule, BatchSchedule):
    raise TypeError(
      f'batch_schedule={batch_schedule!r} must be a BatchSchedule'
    )
  for name, value in (
    ('num_replicas', num_replicas),
    ('max_device_batch', max_device_batch),
    ('micro_batch_multiple', micro_batch_multiple),
  ):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
      raise TypeError(f'{name}={value!r} must be an int')
    if value < 1:
      raise ValueError(f'{name}={value} must be >= 1')
  if max_device_batch < micro_batch_multiple:
    raise ValueError(
      f'max_device_batch={max_device_batch} is below '
      f'micro_batch_multiple={micro_batch_multiple}: no micro-batch fits'
    )
  unit = num_replicas * micro_batch_multiple
  plans = []
  micro_start = 0
  for i, (b, n, start) in enumerate(
    zip(
      batch_schedule.batch_size_per_stage,
      batch_schedule.num_updates_per_stage,
      batch_schedule.boundaries,
      strict=True,
    )
  ):
    if b % unit:
      raise ValueError(
        f'stage {i}: batch_size={b} is not divisible by num_replicas * '
        f'micro_batch_multiple = {num_replicas} * {micro_batch_multiple}; '
        f'nearest feasible batch sizes: {_feasible(b, unit)} (see '
        'lrjax.batch.round_batch_size)'
      )
    per_device = b // num_replicas
    m = max(
      d
      for d in range(
        micro_batch_multiple,
        min(per_device, max_device_batch) + 1,
        micro_batch_multiple,
      )
      if per_device % d == 0
    )
    if per_device > max_device_batch and 2 * m <= max_device_batch:
      # Poor split (e.g. a prime per-device batch): say which batch fits well.
      good = num_replicas * max_device_batch
      logging.warning(
        'stage %d: batch %d gives micro-batch %d x %d accumulation steps per '
        'device (max_device_batch=%d); a multiple of %d (e.g. %d) would '
        'use full micro-batches',
        i,
        b,
        m,
        per_device // m,
        max_device_batch,
        good,
        good * max(1, round(b / good)),
      )
    plans.append(StagePlan(b, m, per_device // m, n, start, micro_start))
    micro_start += n * (per_device // m)
  return AccumulationPlan(
    batch_schedule, num_replicas, max_device_batch, tuple(plans)
  )
