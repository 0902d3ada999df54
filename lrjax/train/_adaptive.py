"""Adaptive batch size: grow the batch toward the measured noise scale.

McCandlish et al. (2018) show that the batch size worth using is about the
gradient noise scale B_simple, and that B_simple grows as training
progresses. :class:`AdaptiveBatchHook` decides, every ``every_epochs``
epochs, the next segment's batch with :class:`lrjax.noise.AdaptiveBatch`
from the trainer's tracked B_simple, over a small set of realisable sizes
(compiled in the background when the run starts), and puts the new batch
in force from that update on. ``train_adaptive`` is one
``train_and_evaluate`` call with that hook: one workdir, one
``metrics.jsonl``, one checkpoint series, one compilation per shape.

Everything the trainer guarantees holds: LR, momentum and weight-decay
policies stay in epochs (the schedule in force keeps the stages already
trained, so every policy agrees for the updates done), the decisions are a
function of the checkpointed noise-scale state, and a killed run resumes
exactly (the hook's decisions and the schedule in force are in the
checkpoint). ``workdir/adaptive.json`` lists the decisions when it ends.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
from absl import logging

from lrjax import _atomic
from lrjax import noise as lnoise
from lrjax.train._config import TrainConfig
from lrjax.train._hooks import Hook, HookResult, StepInfo
from lrjax.train._loop import TrainResult, train_and_evaluate

DECISIONS_FILE = 'adaptive.json'


@dataclasses.dataclass(frozen=True)
class AdaptiveConfig:
  """How :func:`train_adaptive` grows the batch.

  The candidate sizes are :func:`lrjax.noise.realisable_sizes` from the
  config's starting ``batch`` up to ``max_batch_size`` (``kind='pow2'``:
  ``batch * 2**j``; ``'multiple'``: ``batch * j``), so every size splits over
  the devices exactly as the starting batch does.

  Attributes:
    max_batch_size: the largest batch (the paper's advice: about N/10).
    every_epochs: epochs between decisions (> 0).
    max_growth: largest factor per decision, >= 1.
    kind: 'pow2' or 'multiple'.
    allow_shrink: let the batch decrease when B_simple falls.
    rounding: 'down' (largest size not above the target) or 'nearest'
      (nearest in log scale).

  Examples:
    >>> a = AdaptiveConfig(max_batch_size=300, every_epochs=2)
    >>> print(a.sizes(32))
    (32, 64, 128, 256)
  """

  max_batch_size: int
  every_epochs: float = 1.0
  max_growth: float = 2.0
  kind: str = 'pow2'
  allow_shrink: bool = False
  rounding: str = 'down'

  def sizes(self, start: int) -> tuple[int, ...]:
    """The realisable batch sizes from ``start`` to ``max_batch_size``."""
    return lnoise.realisable_sizes(start, self.max_batch_size, kind=self.kind)

  def policy(self, start: int) -> lnoise.AdaptiveBatch:
    """The :class:`lrjax.noise.AdaptiveBatch` over :meth:`sizes`."""
    return lnoise.AdaptiveBatch(
      sizes=self.sizes(start),
      max_batch_size=self.max_batch_size,
      max_growth=self.max_growth,
      allow_shrink=self.allow_shrink,
      rounding=self.rounding,
    )

  def validate(self, config: TrainConfig) -> None:
    """Raises ValueError naming the field and the fix."""
    start = config.batch
    if not isinstance(start, int) or isinstance(start, bool) or start < 1:
      raise ValueError(
        f'batch={start!r} must be the starting batch size (an int >= 1) '
        'with an adaptive batch; the schedule is decided while training'
      )
    if not isinstance(self.max_batch_size, int) or self.max_batch_size < start:
      raise ValueError(
        f'adaptive.max_batch_size={self.max_batch_size!r} must be an int >= '
        f'the starting batch={start}'
      )
    if not (
      isinstance(self.every_epochs, (int, float))
      and 0 < self.every_epochs <= config.num_epochs
    ):
      raise ValueError(
        f'adaptive.every_epochs={self.every_epochs!r} must be in '
        f'(0, num_epochs={config.num_epochs}]'
      )
    if self.kind not in ('pow2', 'multiple'):
      raise ValueError(
        f"adaptive.kind={self.kind!r} must be 'pow2' or 'multiple'"
      )
    try:
      self.policy(start)
    except ValueError as e:
      raise ValueError(f'adaptive: {e}') from e
    if not config.noise.enabled:
      raise ValueError(
        'noise.enabled must be True with an adaptive batch: the decisions '
        'read the measured noise scale (on one device also set '
        'noise.num_slices > 1)'
      )
    if config.max_updates is not None:
      raise ValueError(
        f'max_updates={config.max_updates} is not supported with an adaptive '
        'batch (the updates are not known in advance); shorten num_epochs'
      )


@dataclasses.dataclass(frozen=True)
class AdaptiveResult:
  """What :func:`train_adaptive` returns.

  Attributes:
    result: the run's TrainResult.
    schedule: the realised BatchSchedule (one stage per segment).
    decisions: per segment, ``dict(epoch=..., batch=..., b_simple=...)``:
      the epoch it starts at, its batch and the B_simple it was chosen from
      (None for the first, or when the estimate was not yet finite: the
      batch then stays).
    wall_time: seconds of this call.
    compile_seconds: per-device micro-batch -> seconds spent compiling its
      step in this call (every candidate size's shape, in the background).
  """

  result: TrainResult
  schedule: Any
  decisions: tuple[dict[str, Any], ...]
  wall_time: float
  compile_seconds: dict[int, float]


def _segment_schedule(
  batches: list[int], every: float, total: float, n: int
) -> Any:
  """One stage per segment, ``every`` epochs each, the last one cut at
  ``total``."""
  from lrjax import batch as lbatch

  stages = []
  for i, b in enumerate(batches):
    start = i * every
    length = min(every, total - start)
    stages.append(lbatch.Stage(int(b), epochs=_clean(length)))
  return lbatch.BatchSchedule(tuple(stages), n)


def _num_segments(every: float, total: float) -> int:
  k = 1
  while k * every < total - 1e-12:
    k += 1
  return k


class AdaptiveBatchHook(Hook):
  """McCandlish's adaptive batch as a trainer hook.

  The run is cut into segments of ``adaptive.every_epochs`` epochs (the
  last one shorter), one stage each. At the first update of segment k
  (the end of segment k - 1) the hook reads the trainer's B_simple
  (``StepInfo.noise_scale``, the noise tracker runs first) and decides
  segment k's batch with :class:`lrjax.noise.AdaptiveBatch`; the segments
  not decided yet keep the last decision. It is ``sync``, so the decision
  takes effect at exactly that update.

  Args:
    adaptive: how the batch grows.
    start: the first segment's batch.
    num_epochs: the run's length.
    num_train: training examples N.

  Attributes:
    decisions: per segment decided so far, ``dict(epoch=..., batch=...,
      b_simple=...)`` (``b_simple`` None for the first segment, or when the
      estimate was not finite yet: the batch then stays).
  """

  sync = True

  def __init__(
    self,
    adaptive: AdaptiveConfig,
    start: int,
    num_epochs: float,
    num_train: int,
  ) -> None:
    self.batch_sizes = adaptive.sizes(start)
    self.decisions: list[dict[str, Any]] = [
      {'epoch': 0.0, 'batch': start, 'b_simple': None}
    ]
    self._policy = adaptive.policy(start)
    self._every = float(adaptive.every_epochs)
    self._total = float(num_epochs)
    self._segments = _num_segments(self._every, self._total)
    self._n = num_train
    self._boundaries = self.schedule().boundaries

  @property
  def name(self) -> str:
    return 'adaptive_batch'

  def schedule(self) -> Any:
    """The batch schedule of the decisions so far (the rest at the last)."""
    batches = [int(d['batch']) for d in self.decisions]
    batches += [batches[-1]] * (self._segments - len(batches))
    return _segment_schedule(batches, self._every, self._total, self._n)

  def due(self, update: int) -> bool:
    k = len(self.decisions)
    return k < self._segments and update == self._boundaries[k]

  def on_step(self, info: StepInfo, value: Any) -> HookResult | None:
    del value
    b_hat = info.noise_scale
    current = int(self.decisions[-1]['batch'])
    nxt = self._policy(b_hat, current)
    epoch = _clean(len(self.decisions) * self._every)
    logging.info(
      'Adaptive batch at epoch %.4g: B_simple %.1f, batch %d -> %d',
      epoch,
      b_hat,
      current,
      nxt,
    )
    self.decisions.append(
      {
        'epoch': epoch,
        'batch': nxt,
        'b_simple': b_hat if math.isfinite(b_hat) else None,
      }
    )
    self._boundaries = self.schedule().boundaries
    if nxt == current:
      return None
    return HookResult(batch_schedule=self.schedule())

  def state(self) -> dict[str, Any]:
    return {'decisions': self.decisions}

  def restore(self, state: Any) -> None:
    decisions = [dict(d) for d in state['decisions']]
    outside = [
      d['batch'] for d in decisions if d['batch'] not in self.batch_sizes
    ]
    if outside:
      raise ValueError(
        f'the checkpoint holds adaptive decisions {outside} outside the batch '
        f'sizes {self.batch_sizes}: it is from another adaptive setting; use '
        'a new workdir'
      )
    self.decisions = decisions
    self._boundaries = self.schedule().boundaries


def _clean(x: float) -> float:
  """Rounds float residue (``0.30000000000000004``) to 12 significant
  digits, so that a segment is the decimal a user would write."""
  return float(f'{x:.12g}')


def _write_decisions(
  workdir: str, hook: AdaptiveBatchHook, adaptive: AdaptiveConfig
) -> None:
  if jax.process_index() != 0:
    return
  decisions = {
    'sizes': list(hook.batch_sizes),
    'decisions': hook.decisions,
    'adaptive': dataclasses.asdict(adaptive),
  }
  _atomic.write_text(
    os.path.join(workdir, DECISIONS_FILE), json.dumps(decisions, indent=1)
  )


def train_adaptive(
  config: TrainConfig,
  adaptive: AdaptiveConfig,
  workdir: str,
  task: Any,
  *,
  hooks: Sequence[Hook] = (),
  overwrite: bool = False,
) -> AdaptiveResult:
  """Trains with a batch that grows toward the measured noise scale.

  Starting at ``config.batch``, every ``adaptive.every_epochs`` epochs the
  next batch is

  .. math::
    B_{k+1} = \\operatorname{round}_{\\mathcal{R}}\\big(
      \\min(\\hat B_{\\mathrm{simple}}, \\gamma B_k, B_{\\max})\\big)

  (:class:`lrjax.noise.AdaptiveBatch`), with :math:`\\hat B_{\\mathrm{simple}}`
  the trainer's tracked estimate at the end of segment k, in one
  ``train_and_evaluate`` call with :class:`AdaptiveBatchHook`. The LR,
  momentum and weight decay stay policies over epochs. When some candidate
  batch needs gradient accumulation (above devices x ``max_device_batch``)
  the whole run is under ``optax.MultiSteps``, so the optimizer state keeps
  its structure.

  Args:
    config: the run; ``batch`` is the starting batch size (an int),
      ``num_epochs`` the length, ``noise.enabled`` must be set.
    adaptive: how the batch grows.
    workdir: the run's workdir (``adaptive.json`` lists the decisions at
      the end); calling again with the same workdir resumes.
    task: what to train (a :class:`lrjax.train.Task`).
    hooks: more hooks, run after the adaptive one.
    overwrite: remove the workdir's run files and start afresh.

  Returns:
    An :class:`AdaptiveResult`.

  Raises:
    ValueError: for a bad config (naming the field) before any compilation,
      or a checkpoint whose decisions were made over other batch sizes.
    ConfigMismatchError: (a ValueError) when the workdir holds another run
      (another config: the starting batch is the segment schedule).
    WorkdirLockedError: when another process holds the workdir.

  References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of
    Large-Batch Training", section 4 and appendix D.
  """
  config.validate()
  adaptive.validate(config)
  wall_start = time.perf_counter()
  n = task.num_train
  if adaptive.max_batch_size > n:
    raise ValueError(
      f'adaptive.max_batch_size={adaptive.max_batch_size} is above the {n} '
      'training examples; about N/10 is the usual cap'
    )
  hook = AdaptiveBatchHook(adaptive, config.batch, config.num_epochs, n)
  result = train_and_evaluate(
    config.replace(batch=hook.schedule()),
    workdir,
    task,
    hooks=(hook, *hooks),
    overwrite=overwrite,
  )
  _write_decisions(os.path.dirname(result.metrics_path), hook, adaptive)
  return AdaptiveResult(
    result=result,
    schedule=hook.schedule(),
    decisions=tuple(hook.decisions),
    wall_time=time.perf_counter() - wall_start,
    compile_seconds=dict(result.compile_seconds),
  )
