"""Adaptive batch size: grow the batch toward the measured noise scale.

McCandlish et al. (2018) show that the batch size worth using is about the
gradient noise scale B_simple, and that B_simple grows as training
progresses. ``train_adaptive`` trains in segments of ``every_epochs``
epochs; at the end of each segment it reads the tracked B_simple from the
segment's last checkpoint and picks the next segment's batch with
:class:`lrjax.noise.AdaptiveBatch` from a small set of realisable sizes, so
only a few step shapes are ever compiled.

Each segment is an ordinary ``train_and_evaluate`` call on the batch schedule
realised so far (one stage per segment), resumed from the previous segment's
checkpoint, so everything the trainer guarantees holds here too: LR,
momentum and weight-decay policies stay in epochs, resume is exact, and the
decisions themselves are a function of the checkpointed noise-scale state.
The decisions are kept in ``workdir/adaptive.json``; a killed run resumes
with the same command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Any

import jax
from absl import logging

from lrjax import noise as lnoise
from lrjax.train import _setup, _workdir
from lrjax.train._checkpoint import load_meta
from lrjax.train._config import TrainConfig
from lrjax.train._loop import (
  TrainResult,
  _noise_state,
  _prepare,
  train_and_evaluate,
)

DECISIONS_FILE = 'adaptive.json'
# What differs from one segment's config to the next.
_SEGMENT_FIELDS = ('batch', 'num_epochs', 'accumulate')


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
    if config.keep_checkpoints < 1:
      raise ValueError(
        f'keep_checkpoints={config.keep_checkpoints} must be >= 1 with an '
        'adaptive batch: each segment resumes from the previous one'
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
    result: the last segment's TrainResult (its update and example counts
      are totals over the run; ``wall_time`` is that segment's).
    schedule: the realised BatchSchedule (one stage per segment).
    decisions: per segment, ``dict(epoch=..., batch=..., b_simple=...)``:
      the epoch it starts at, its batch and the B_simple it was chosen from
      (None for the first, or when the estimate was not yet finite: the
      batch then stays).
    wall_time: seconds of this call, all segments.
    compile_seconds: per-device micro-batch -> seconds spent compiling its
      step, summed over the segments of this call (each segment compiles
      its shapes again unless ``compilation_cache_dir`` is set).
  """

  result: TrainResult
  schedule: Any
  decisions: tuple[dict[str, Any], ...]
  wall_time: float
  compile_seconds: dict[int, float]


def _segment_schedule(
  decisions: list[dict[str, Any]], every: float, total: float, n: int
) -> Any:
  """One stage per decision, ``every`` epochs each, the last one cut at
  ``total``."""
  from lrjax import batch as lbatch

  stages = []
  for i, d in enumerate(decisions):
    start = i * every
    length = min(every, total - start)
    stages.append(lbatch.Stage(int(d['batch']), epochs=_clean(length)))
  return lbatch.BatchSchedule(tuple(stages), n)


def _clean(x: float) -> float:
  """Rounds float residue (``0.30000000000000004``) to 12 significant
  digits, so that a segment is the decimal a user would write."""
  return float(f'{x:.12g}')


def _read_decisions(
  workdir: str, config: TrainConfig, adaptive: AdaptiveConfig
) -> list[dict[str, Any]]:
  """The decisions made so far in ``workdir`` for this run.

  Raises:
    ConfigMismatchError: when ``workdir`` holds another run: an adaptive
      run of another config or adaptive setting (the fields named), or a
      run that is not adaptive.
  """
  path = os.path.join(workdir, DECISIONS_FILE)
  if not os.path.exists(path):
    others = [
      f for f in _workdir.RUN_FILES if os.path.exists(os.path.join(workdir, f))
    ]
    if others:
      raise _workdir.ConfigMismatchError(
        f'workdir {workdir} holds a run that is not adaptive '
        f'({", ".join(others)}, no {DECISIONS_FILE}); use another workdir or '
        'pass overwrite=True (--overwrite) to start afresh'
      )
    return []
  try:
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
    decisions = list(saved['decisions'])
  except (ValueError, KeyError, TypeError) as e:
    raise _workdir.ConfigMismatchError(
      f'{path} is not readable ({type(e).__name__}: {e}); pass '
      'overwrite=True (--overwrite) to start afresh'
    ) from None
  changes = []
  if 'config' in saved:
    changes += _workdir.config_changes(saved['config'], config)
  if 'adaptive' in saved:
    now = dataclasses.asdict(adaptive)
    changes += [
      (f'adaptive.{k}', saved['adaptive'].get(k), v)
      for k, v in now.items()
      if saved['adaptive'].get(k) != v
    ]
  if changes:
    raise _workdir.ConfigMismatchError(
      f'workdir {workdir} holds an adaptive run with another config: '
      f'{_workdir.describe_changes(changes)}. Use another workdir or pass '
      'overwrite=True (--overwrite) to start afresh'
    )
  return decisions


def _write_decisions(
  workdir: str,
  decisions: list[dict[str, Any]],
  sizes: tuple[int, ...],
  config: TrainConfig,
  adaptive: AdaptiveConfig,
) -> None:
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, DECISIONS_FILE)
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(
      {
        'sizes': list(sizes),
        'decisions': decisions,
        'config': config.to_dict(),
        'adaptive': dataclasses.asdict(adaptive),
      },
      f,
      indent=1,
    )
  os.replace(tmp, path)  # atomic: a kill never leaves half a file


def _b_simple_at_checkpoint(workdir: str) -> float:
  """B_simple of the noise-scale state saved with the newest checkpoint."""
  return float(lnoise.b_simple(_noise_state(load_meta(workdir))))


def train_adaptive(
  config: TrainConfig,
  adaptive: AdaptiveConfig,
  workdir: str,
  task: Any,
  *,
  overwrite: bool = False,
) -> AdaptiveResult:
  """Trains with a batch that grows toward the measured noise scale.

  Starting at ``config.batch``, every ``adaptive.every_epochs`` epochs the
  next batch is

  .. math::
    B_{k+1} = \\operatorname{round}_{\\mathcal{R}}\\big(
      \\min(\\hat B_{\\mathrm{simple}}, \\gamma B_k, B_{\\max})\\big)

  (:class:`lrjax.noise.AdaptiveBatch`), with :math:`\\hat B_{\\mathrm{simple}}`
  the trainer's tracked estimate at the end of segment k. The LR, momentum
  and weight decay stay policies over epochs. When some candidate batch
  needs gradient accumulation (above devices x ``max_device_batch``) every
  segment runs under ``optax.MultiSteps``, so the optimizer state keeps its
  structure from segment to segment.

  Args:
    config: the run; ``batch`` is the starting batch size (an int),
      ``num_epochs`` the length, ``noise.enabled`` must be set.
    adaptive: how the batch grows.
    workdir: output directory; ``adaptive.json`` holds the decisions, the
      trainer's files (metrics.jsonl, checkpoints) are shared by all
      segments. Calling again with the same workdir resumes; the workdir
      is locked for the whole call.
    task: what to train (a :class:`lrjax.train.Task`).
    overwrite: remove the workdir's run files (decisions included) and
      start afresh.

  Returns:
    An :class:`AdaptiveResult`.

  Raises:
    ValueError: for a bad config (naming the field) before any compilation,
      or a workdir whose decisions were made over other batch sizes.
    ConfigMismatchError: (a ValueError) when the workdir holds another run
      (another config or adaptive setting, or a run that is not adaptive).
    WorkdirLockedError: when another process holds the workdir.

  References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of
    Large-Batch Training", section 4 and appendix D.
  """
  config.validate()
  adaptive.validate(config)
  workdir = _prepare(config, workdir)
  main = jax.process_index() == 0
  with _workdir.lock_workdir(workdir) if main else contextlib.nullcontext():
    if overwrite and main:
      _workdir.remove_run_files(workdir, (*_workdir.RUN_FILES, DECISIONS_FILE))
    return _train_adaptive(config, adaptive, workdir, task)


def _train_adaptive(
  config: TrainConfig, adaptive: AdaptiveConfig, workdir: str, task: Any
) -> AdaptiveResult:
  """``train_adaptive`` in a prepared workdir this process holds."""
  wall_start = time.perf_counter()
  start = config.batch
  sizes = adaptive.sizes(start)
  policy = adaptive.policy(start)
  n = task.num_train
  if adaptive.max_batch_size > n:
    raise ValueError(
      f'adaptive.max_batch_size={adaptive.max_batch_size} is above the {n} '
      'training examples; about N/10 is the usual cap'
    )
  # Every candidate size must be trainable before the first segment runs:
  # one stage per size, planned over the devices.
  every_size = _segment_schedule(
    [{'batch': b} for b in sizes], 1.0, float(len(sizes)), n
  )
  replicas = len(_setup.select_devices(config))
  plan = _setup.make_plan(every_size, replicas, config.max_device_batch)
  _setup.check_noise(config, plan, replicas)
  accumulate = plan.needs_accumulation

  decisions = _read_decisions(workdir, config, adaptive)
  if decisions and any(int(d['batch']) not in sizes for d in decisions):
    raise ValueError(
      f'{workdir}/{DECISIONS_FILE} holds batch sizes outside {sizes}: it is '
      'from another adaptive setting; use a new workdir'
    )
  if not decisions:
    decisions = [{'epoch': 0.0, 'batch': start, 'b_simple': None}]
    _write_decisions(workdir, decisions, sizes, config, adaptive)
  every, total = float(adaptive.every_epochs), float(config.num_epochs)
  compile_seconds: dict[int, float] = {}
  while True:
    k = len(decisions)
    end = min(k * every, total)
    schedule = _segment_schedule(decisions, every, total, n)
    segment = config.replace(
      batch=schedule, num_epochs=end, accumulate=accumulate or None
    )
    logging.info(
      'Adaptive batch: segment %d, epochs %.4g-%.4g at batch %d',
      k - 1,
      decisions[-1]['epoch'],
      end,
      decisions[-1]['batch'],
    )
    result = train_and_evaluate(
      segment, workdir, task, allow_changes=_SEGMENT_FIELDS
    )
    for micro, seconds in result.compile_seconds.items():
      compile_seconds[micro] = compile_seconds.get(micro, 0.0) + seconds
    if end >= total - 1e-12:
      break
    b_hat = _b_simple_at_checkpoint(workdir)
    nxt = policy(b_hat, int(decisions[-1]['batch']))
    logging.info(
      'Adaptive batch at epoch %.4g: B_simple %.1f, batch %d -> %d',
      end,
      b_hat,
      decisions[-1]['batch'],
      nxt,
    )
    decisions.append(
      {
        'epoch': _clean(end),
        'batch': nxt,
        'b_simple': b_hat if math.isfinite(b_hat) else None,
      }
    )
    _write_decisions(workdir, decisions, sizes, config, adaptive)
  return AdaptiveResult(
    result=result,
    schedule=schedule,
    decisions=tuple(decisions),
    wall_time=time.perf_counter() - wall_start,
    compile_seconds=compile_seconds,
  )
