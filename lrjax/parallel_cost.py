r"""Projected wall time of a batch schedule on P data-parallel devices.

Growing the batch instead of decaying the LR buys fewer parameter updates
(Smith et al. 2018). On one device that buys nothing: an update on a batch
of 640 costs five updates on 128. On P devices a batch is split into P
micro-batches that run at once, so an update costs one per-device step on
the micro-batch plus one all-reduce of the gradients, and fewer, larger
updates finish sooner. This module projects that cost from a per-device
step time measured on one machine and a latency-bandwidth model of a ring
all-reduce (Patarasuk & Yuan 2009; Thakur et al. 2005).

The model's assumptions, stated once:

- Data parallelism only; every update all-reduces every gradient (float32
  by default) once, with a flat ring over the devices in use and no overlap
  of communication with computation.
- The per-device step time depends on the micro-batch alone (fitted
  :math:`t(b) = t_0 + t_1 b` from measured steps), as if the target devices
  were the measuring machine; scale it for faster devices.
- A stage of global batch :math:`B` uses :math:`r = \min(P, B)` devices
  (a device cannot take less than one example), each a micro-batch of
  :math:`\lceil B / r \rceil`, split into accumulation steps when the
  micro-batch exceeds the per-device memory cap.
- Input pipelines, evaluation and checkpoints cost nothing.

References:
  Smith, Kindermans, Ying, Le. "Don't Decay the Learning Rate, Increase the
  Batch Size." ICLR 2018.
  Patarasuk, Yuan. "Bandwidth optimal all-reduce algorithms for clusters of
  workstations." J. Parallel Distrib. Comput. 69(2), 2009.
  Thakur, Rabenseifner, Gropp. "Optimization of collective communication
  operations in MPICH." IJHPCA 19(1), 2005.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Link:
  """A latency-bandwidth (alpha-beta) model of one link of the ring.

  Attributes:
    latency_s: seconds per message (alpha), start-up of one ring step.
    bandwidth: bytes per second one device sends to its ring neighbour.
    name: what the constants stand for (for reports).
  """

  latency_s: float
  bandwidth: float
  name: str = ''

  def __post_init__(self):
    if not self.latency_s >= 0:
      raise ValueError(f'latency_s={self.latency_s} must be >= 0 seconds')
    if not self.bandwidth > 0:
      raise ValueError(f'bandwidth={self.bandwidth} must be > 0 bytes/s')


#: A GPU cluster: one 400 Gb/s InfiniBand NDR port per GPU (NVIDIA DGX H100:
#: eight ConnectX-7 400 Gb/s ports for eight GPUs). Past one node a flat
#: ring runs at its slowest link, the network, so 50 GB/s; the 10 us
#: latency per ring step is an assumption of the order NCCL reaches across
#: nodes. Sources in BUILD.md.
GPU_CLUSTER = Link(latency_s=10e-6, bandwidth=50e9, name='gpu')

#: A TPU v5e slice: 400 GB/s bidirectional inter-chip interconnect per chip
#: over 4 ports (Cloud TPU v5e documentation), so 100 GB/s per port; a
#: bidirectional ring on one port. The 5 us latency is an assumption.
TPU_SLICE = Link(latency_s=5e-6, bandwidth=100e9, name='tpu')

LINKS = {'gpu': GPU_CLUSTER, 'tpu': TPU_SLICE}


def ring_allreduce_seconds(num_devices: int, num_bytes: float, link: Link):
  r"""Seconds of a ring all-reduce of `num_bytes` over `num_devices`.

  A reduce-scatter then an all-gather, each :math:`P - 1` steps that move
  :math:`n / P` bytes per device:

  .. math::
     T(P, n) = 2 (P - 1) \alpha + 2 \frac{P - 1}{P} \frac{n}{\beta}

  with :math:`\alpha` the latency and :math:`\beta` the bandwidth; zero on
  one device.

  Args:
    num_devices: devices in the ring (P >= 1).
    num_bytes: bytes of the gradient each device holds (n >= 0).
    link: the link's latency and bandwidth.

  Returns:
    Seconds.

  Raises:
    ValueError: for P < 1 or n < 0.

  Examples:
    >>> link = Link(latency_s=1e-5, bandwidth=1e9)
    >>> ring_allreduce_seconds(1, 4e6, link)
    0.0
    >>> round(ring_allreduce_seconds(4, 4e6, link), 6)  # 6e-5 + 1.5 * 4e-3
    0.00606
  """
  if num_devices < 1:
    raise ValueError(f'{num_devices=} must be >= 1')
  if num_bytes < 0:
    raise ValueError(f'{num_bytes=} must be >= 0')
  p = num_devices
  return 2 * (p - 1) * link.latency_s + 2 * (p - 1) / p * (
    num_bytes / link.bandwidth
  )


@dataclasses.dataclass(frozen=True)
class StepTime:
  r"""Per-device seconds of one micro-step, linear in the micro-batch.

  .. math::
     t(b) = t_0 + t_1 b

  Attributes:
    intercept: :math:`t_0`, seconds of a step whatever its batch (launch,
      optimizer update).
    per_example: :math:`t_1`, seconds per example of the micro-batch.
  """

  intercept: float
  per_example: float

  def __call__(self, micro_batch: float) -> float:
    return self.intercept + self.per_example * micro_batch

  @classmethod
  def fit(cls, micro_batches: Sequence[float], seconds: Sequence[float]):
    """Least-squares line through measured (micro-batch, seconds) points.

    Two or more distinct micro-batches fit both coefficients. One
    micro-batch (or a fit with a negative coefficient) gives a line through
    the origin: the step time proportional to the micro-batch, which is
    optimistic for micro-batches smaller than the measured ones.

    Args:
      micro_batches: the micro-batch of each measurement.
      seconds: seconds per micro-step of each measurement.

    Returns:
      The fitted :class:`StepTime`.

    Raises:
      ValueError: for no points, mismatched lengths or non-positive values.

    Examples:
      >>> t = StepTime.fit([32, 64, 128], [0.005, 0.007, 0.011])
      >>> round(t.intercept, 9), round(t.per_example, 12)
      (0.003, 6.25e-05)
    """
    b = np.asarray(micro_batches, np.float64)
    t = np.asarray(seconds, np.float64)
    if b.size == 0 or b.shape != t.shape:
      raise ValueError(
        f'micro_batches ({b.size}) and seconds ({t.size}) must be the same '
        'non-zero length'
      )
    if not (np.all(b > 0) and np.all(t > 0)):
      raise ValueError('micro_batches and seconds must all be > 0')
    if np.unique(b).size >= 2:
      slope, intercept = np.polyfit(b, t, 1)
      if intercept >= 0 and slope >= 0:
        return cls(float(intercept), float(slope))
    return cls(0.0, float(np.sum(b * t) / np.sum(b * b)))


@dataclasses.dataclass(frozen=True)
class StagePlan:
  """One stage's execution on P devices.

  Attributes:
    batch_size: the stage's global batch B.
    updates: parameter updates in the stage.
    devices: devices in use, min(P, B).
    micro_batch: examples per device per micro-step.
    accum_steps: micro-steps per update.
    seconds_per_update: projected seconds of one update.
  """

  batch_size: int
  updates: int
  devices: int
  micro_batch: int
  accum_steps: int
  seconds_per_update: float

  @property
  def seconds(self) -> float:
    return self.updates * self.seconds_per_update


def plan_stage(
  batch_size: int,
  updates: int,
  num_devices: int,
  step: StepTime,
  link: Link,
  gradient_bytes: float,
  max_device_batch: int | None = None,
) -> StagePlan:
  r"""Projects one stage (B, U updates) onto `num_devices` devices.

  .. math::
     r = \min(P, B), \quad m = \lceil B / r \rceil, \quad
     k = \lceil m / c \rceil, \quad b = \lceil m / k \rceil, \\
     T_\text{update} = k\, t(b) + T_\text{ring}(r, n)

  with :math:`c` the per-device cap on the micro-batch (none: :math:`k=1`).

  Args:
    batch_size: the stage's global batch (>= 1).
    updates: updates in the stage (>= 0).
    num_devices: devices available (>= 1).
    step: per-device step time as a function of the micro-batch.
    link: the all-reduce's link model.
    gradient_bytes: bytes all-reduced per update.
    max_device_batch: per-device cap on the micro-batch (None: no cap).

  Returns:
    The stage's :class:`StagePlan`.

  Raises:
    ValueError: for a non-positive batch, device count or cap, or negative
      updates.

  Examples:
    >>> s = plan_stage(640, 10, 8, StepTime(0.001, 1e-4),
    ...                Link(0.0, 1e9), gradient_bytes=0)
    >>> s.micro_batch, s.accum_steps, round(s.seconds_per_update, 6)
    (80, 1, 0.009)
  """
  if batch_size < 1:
    raise ValueError(f'{batch_size=} must be >= 1')
  if updates < 0:
    raise ValueError(f'{updates=} must be >= 0')
  if num_devices < 1:
    raise ValueError(f'{num_devices=} must be >= 1')
  if max_device_batch is not None and max_device_batch < 1:
    raise ValueError(f'{max_device_batch=} must be >= 1 or None')
  devices = min(num_devices, batch_size)
  per_device = math.ceil(batch_size / devices)
  accum = 1
  if max_device_batch is not None:
    accum = math.ceil(per_device / max_device_batch)
  micro = math.ceil(per_device / accum)
  seconds = accum * step(micro) + ring_allreduce_seconds(
    devices, gradient_bytes, link
  )
  return StagePlan(batch_size, updates, devices, micro, accum, seconds)


def project(
  stages: Sequence[tuple[int, int]],
  num_devices: int,
  step: StepTime,
  link: Link,
  gradient_bytes: float,
  max_device_batch: int | None = None,
) -> tuple[float, list[StagePlan]]:
  """Projected seconds of a whole batch schedule on `num_devices` devices.

  Args:
    stages: ``(batch_size, updates)`` of each stage, in order.
    num_devices: devices available.
    step: per-device step time as a function of the micro-batch.
    link: the all-reduce's link model.
    gradient_bytes: bytes all-reduced per update.
    max_device_batch: per-device cap on the micro-batch (None: no cap).

  Returns:
    ``(seconds, plans)``: the total and each stage's :class:`StagePlan`.

  Examples:
    >>> total, _ = project([(128, 100), (640, 20)], 8, StepTime(0.0, 1e-4),
    ...                    Link(0.0, 1e9), gradient_bytes=0)
    >>> round(total, 6)  # 100 x 16e-4 + 20 x 80e-4
    0.32
  """
  plans = [
    plan_stage(b, u, num_devices, step, link, gradient_bytes, max_device_batch)
    for b, u in stages
  ]
  return float(sum(p.seconds for p in plans)), plans


def step_time_from_records(
  records: Mapping[str, Sequence[float]],
) -> tuple[list[int], list[float]]:
  """Median seconds per micro-step at each micro-batch, from train records.

  Each record of metrics.jsonl carries ``micro_batch``, ``accum_steps`` and
  ``steps_per_sec`` (updates per second since the previous record), so one
  micro-step took ``1 / (steps_per_sec * accum_steps)`` seconds. The first
  record of each micro-batch is dropped when the micro-batch has more than
  one (it may include a compilation or the first stage's warm-up).

  Args:
    records: train-record columns (``micro_batch``, ``accum_steps``,
      ``steps_per_sec``), e.g. a run's ``train`` columns.

  Returns:
    ``(micro_batches, seconds)``, sorted by micro-batch.

  Raises:
    ValueError: when a column is missing.

  Examples:
    >>> step_time_from_records({'micro_batch': [32, 32, 32, 64, 64],
    ...   'accum_steps': [1, 1, 1, 2, 2],
    ...   'steps_per_sec': [10.0, 100.0, 50.0, 10.0, 20.0]})
    ([32, 64], [0.015, 0.025])
  """
  for key in ('micro_batch', 'accum_steps', 'steps_per_sec'):
    if key not in records:
      raise ValueError(f'records lack the column {key!r} (train records)')
  micro = np.asarray(records['micro_batch'], np.float64)
  accum = np.asarray(records['accum_steps'], np.float64)
  rate = np.asarray(records['steps_per_sec'], np.float64)
  ok = np.isfinite(micro) & np.isfinite(rate) & (rate > 0)
  out_b, out_t = [], []
  for b in sorted(set(micro[ok].astype(int).tolist())):
    idx = np.flatnonzero(ok & (micro == b))
    if idx.size > 1:
      idx = idx[1:]
    out_b.append(int(b))
    out_t.append(float(np.median(1.0 / (rate[idx] * accum[idx]))))
  return out_b, out_t


def stages_from_records(
  steps: Sequence[int], batch_sizes: Sequence[int]
) -> list[tuple[int, int]]:
  """A run's batch schedule as trained, ``(batch_size, updates)`` per stage.

  For a schedule decided while training (e.g. `lrjax.train.train_adaptive`)
  there is no plan to project, only the train records. Each record logs the
  updates done so far (``step``) and the batch in force; the updates since
  the previous record are counted at the record's batch, and consecutive
  records of one batch form one stage. A boundary is therefore placed to
  within the records' spacing.

  Args:
    steps: the update count of each record, increasing.
    batch_sizes: the batch size of each record.

  Returns:
    ``(batch_size, updates)`` of each stage, in order; the updates sum to
    the last step.

  Raises:
    ValueError: for columns of different lengths.

  Examples:
    >>> stages_from_records([10, 20, 30, 40], [32, 32, 64, 64])
    [(32, 20), (64, 20)]
  """
  if len(steps) != len(batch_sizes):
    raise ValueError(
      f'steps ({len(steps)}) and batch_sizes ({len(batch_sizes)}) must be '
      'the same length'
    )
  stages: list[tuple[int, int]] = []
  last = 0
  for step, size in zip(steps, batch_sizes, strict=True):
    step, size = int(step), int(size)
    if stages and stages[-1][0] == size:
      stages[-1] = (size, stages[-1][1] + step - last)
    else:
      stages.append((size, step - last))
    last = step
  return stages


def project_grid(
  stages: Sequence[tuple[int, int]],
  devices: Sequence[int],
  links: Mapping[str, Link],
  step: StepTime,
  gradient_bytes: float,
  max_device_batch: int | None = None,
) -> dict[str, dict[int, tuple[float, list[StagePlan]]]]:
  """:func:`project` of one batch schedule under every link and device count.

  Args:
    stages: ``(batch_size, updates)`` of each stage, in order.
    devices: the device counts P to project at.
    links: the all-reduce link models, by name (e.g. :data:`LINKS`).
    step: per-device step time as a function of the micro-batch.
    gradient_bytes: bytes all-reduced per update.
    max_device_batch: per-device cap on the micro-batch (None: no cap).

  Returns:
    ``{link name: {P: (seconds, plans)}}``, as :func:`project` returns.

  Examples:
    >>> grid = project_grid([(128, 100), (640, 20)], [1, 8],
    ...                     {'free': Link(0.0, 1e9)}, StepTime(0.0, 1e-4),
    ...                     gradient_bytes=0)
    >>> {p: round(s, 6) for p, (s, _) in grid['free'].items()}
    {1: 2.56, 8: 0.32}
  """
  return {
    name: {
      p: project(stages, p, step, link, gradient_bytes, max_device_batch)
      for p in devices
    }
    for name, link in links.items()
  }


def project_wall_time(
  records: Sequence[Mapping[str, Sequence[float]]],
  schedules: Mapping[str, Sequence[tuple[int, int]]],
  devices: Sequence[int],
  links: Mapping[str, Link],
  gradient_bytes: float,
  max_device_batch: int | None = None,
) -> dict[str, Any]:
  r"""Each batch schedule's projected seconds, the step time fitted to runs.

  Pools the measured (micro-batch, seconds) points of every run
  (:func:`step_time_from_records`), fits one :class:`StepTime` through them
  (:meth:`StepTime.fit`) and projects every schedule with
  :func:`project_grid`: for link :math:`\ell` and :math:`P` devices,

  .. math::
     T_\ell(P) = \sum_\text{stages} U \bigl(k\, t(b)
       + T_\text{ring}(\min(P, B), n)\bigr)

  with :math:`t(b)` the fitted step time (see :func:`plan_stage`).

  Args:
    records: the train-record columns of every measured run (``micro_batch``,
      ``accum_steps``, ``steps_per_sec``).
    schedules: ``(batch_size, updates)`` of each stage, by schedule name.
    devices: the device counts P to project at.
    links: the all-reduce link models, by name (e.g. :data:`LINKS`).
    gradient_bytes: bytes all-reduced per update.
    max_device_batch: per-device cap on the micro-batch (None: no cap).

  Returns:
    JSON-ready ``{'step_time', 'step_time_points', 'gradient_bytes',
    'devices', 'links', 'rows'}``: the fitted line and its points, the
    inputs, and one row per schedule with ``schedule``, ``num_updates`` and,
    per link key and P, ``<key>_<P>`` (seconds) and ``<key>_<P>_stages``
    (each stage's :class:`StagePlan` as a dict).

  Raises:
    ValueError: when a record lacks a column, or no record measured a step.

  Examples:
    >>> records = [{'micro_batch': [32, 32, 64, 64], 'accum_steps': [1] * 4,
    ...             'steps_per_sec': [1.0, 200.0, 1.0, 1 / 0.007]}]
    >>> out = project_wall_time(records, {'a': [(128, 10)]}, [1, 2],
    ...                         {'free': Link(0.0, 1e9)}, gradient_bytes=0)
    >>> [round(out['rows'][0][f'free_{p}'], 6) for p in (1, 2)]
    [0.11, 0.07]
  """
  points = [
    p
    for columns in records
    for p in zip(*step_time_from_records(columns), strict=True)
  ]
  if not points:
    raise ValueError('no record measured a step (steps_per_sec > 0)')
  step = StepTime.fit(*zip(*points, strict=True))
  rows = []
  for name, stages in schedules.items():
    grid = project_grid(
      stages, devices, links, step, gradient_bytes, max_device_batch
    )
    row = {'schedule': name, 'num_updates': sum(u for _, u in stages)}
    for key, by_devices in grid.items():
      for p, (seconds, plans) in by_devices.items():
        row[f'{key}_{p}'] = seconds
        row[f'{key}_{p}_stages'] = [dataclasses.asdict(s) for s in plans]
    rows.append(row)
  return {
    'step_time': dataclasses.asdict(step),
    'step_time_points': points,
    'gradient_bytes': gradient_bytes,
    'devices': list(devices),
    'links': {k: dataclasses.asdict(v) for k, v in links.items()},
    'rows': rows,
  }
