"""Host work for finished steps: metric averages and records, and the
hooks (run in order, their requests collected)."""

from __future__ import annotations

import math
import types
from typing import Any

from absl import logging

from lrjax import metrics as lmetrics
from lrjax.train import _setup
from lrjax.train._config import SGD_MOMENTUM, TrainConfig
from lrjax.train._hooks import (
  Hook,
  MicroStepInfo,
  NoiseTracker,
  StepInfo,
  host_values,
)
from lrjax.train._task import RESERVED_METRICS

# Logged after 'loss' and the task's own metrics.
_LOG_KEYS = (
  'lr',
  'momentum',
  'batch_size',
  'accum_steps',
  'micro_batch',
  'noise_scale',
  'noise_g',
  'skipped',
  'examples_per_sec',
  'steps_per_sec',
  'data_wait_sec',
)


def check_new_schedule(
  old: Any, new: Any, update: int, candidates: tuple[int, ...]
) -> None:
  """Raises ValueError unless ``new`` keeps the batch sizes of the
  ``update`` updates done and uses only candidate sizes after them."""
  if new.num_examples != old.num_examples:
    raise ValueError(
      f'a hook asked for a batch schedule over {new.num_examples} examples; '
      f'the training split has {old.num_examples}'
    )
  if new.num_updates < update:
    raise ValueError(
      f'a hook asked for a batch schedule of {new.num_updates} updates at '
      f'update {update}: it must reach at least the updates done'
    )

  def sizes(s: Any) -> list[int]:
    out: list[int] = []
    for b, n in zip(
      s.batch_size_per_stage, s.num_updates_per_stage, strict=True
    ):
      out += [b] * min(n, update - len(out))
      if len(out) >= update:
        break
    return out

  if sizes(old) != sizes(new):
    raise ValueError(
      f'a hook asked for the batch schedule {new} at update {update}, which '
      f'changes batch sizes of updates already done under {old}; keep the '
      'stages up to the current update'
    )
  allowed = set(candidates) | set(old.batch_size_per_stage)
  outside = sorted(set(new.batch_size_per_stage) - allowed)
  if outside:
    raise ValueError(
      f"a hook asked for batch sizes {outside}, not among the hooks' "
      f'batch_sizes {sorted(set(candidates))}: declare them, so that the '
      'trainer plans and compiles them'
    )


class Requests:
  """What the hooks asked of the loop since it last looked."""

  def __init__(self) -> None:
    self.stop = False
    self.checkpoint = False
    self.batch_schedule: Any = None


class StepLog:
  """Host work for finished micro-steps, a few steps behind the device.

  The step loop appends each dispatched micro-step to ``pending`` and calls
  ``flush``, which reads the metrics of the pending steps in one fetch and
  for each step runs the hooks' ``on_micro_step`` (the NaN policy's stop),
  sums the loss and the task's metrics of finite steps, runs the
  hooks due at the update (in order; their requests are collected for the
  loop) and, every ``log_every`` updates, writes and logs a record (which
  every hook's ``on_record`` sees). The
  newest step can be left pending, so the host never waits on the step it
  just dispatched.

  Attributes:
    pending: ``(info, device metrics)`` of dispatched micro-steps whose
      metrics the host has not read; ``info`` is (update index, micro-step,
      stage, epoch, examples seen after the step, indices of the hooks due
      at the update, inside-step values or None).
    hooks: the hooks in the order they run.
    skipped: non-finite micro-steps skipped (nan_policy='skip').
    last_train: the last record written.
    data: the input pipeline (its ``wait_seconds`` is logged).
  """

  def __init__(
    self,
    config: TrainConfig,
    setup: _setup.Setup,
    writer: lmetrics.MultiWriter,
    hooks: list[Hook],
    noise: NoiseTracker | None,
    host_state: Any,
  ) -> None:
    self.pending: list[Any] = []
    self.hooks = hooks
    self.skipped = 0
    self.last_train: dict[str, Any] = {}
    self.data: Any = None
    self._config = config
    self._noise = noise
    self._host_state = host_state
    self._inside = {
      id(h): i
      for i, h in enumerate(h for h in hooks if h.inside_step is not None)
    }
    self._requests = Requests()
    self._micro_hooks = [
      h for h in hooks if type(h).on_micro_step is not Hook.on_micro_step
    ]
    self._log_every = config.log_every
    self.set_setup(setup)
    # The task's own metrics: what the compiled step returns beside the
    # trainer's (known once the first step is compiled).
    self._keys = ('loss',) + tuple(
      k for k in setup.runner.metric_keys if k not in RESERVED_METRICS
    )
    self._sums = dict.fromkeys(self._keys, 0.0)  # over finite micro-steps
    self._count = 0
    self._writer = writer
    self._line = lmetrics.LoggingWriter(
      ('step', 'epoch', 'examples', *self._keys, *_LOG_KEYS)
    )
    self._progress = lmetrics.Progress(setup.total_updates)
    self._seq_len = setup.task.info.get('seq_len')

  def set_setup(self, setup: _setup.Setup) -> None:
    """The setup of the schedule in force (no step pending)."""
    self._setup = setup
    self._runner = setup.runner
    self._stages = setup.plan.stages
    self._total_updates = setup.total_updates

  def saved_sums(self) -> dict[str, Any]:
    """The metric sums since the last record (JSON, for a checkpoint)."""
    return {'sums': dict(self._sums), 'count': self._count}

  def restore_sums(self, saved: dict[str, Any] | None) -> None:
    """Restores :meth:`saved_sums` (None: nothing saved)."""
    if saved:
      self._sums.update(saved['sums'])
      self._count = int(saved['count'])

  def start(self, update: int, examples: int) -> None:
    """Starts the clock of the rates."""
    self._progress.start(update, examples)

  def record(self, rec: dict[str, Any]) -> None:
    """Writes ``rec`` to the metrics files and shows it to the hooks (on
    every process: a hook that feeds the step from the records must feed
    the same value everywhere)."""
    self._writer.write(rec)
    view = types.MappingProxyType(rec)
    for h in self.hooks:
      h.on_record(view)

  def take_requests(self) -> Requests:
    """The hooks' requests since the last call."""
    out, self._requests = self._requests, Requests()
    return out

  def flush(self, keep_last: bool) -> None:
    """Host work for the pending steps (all, or all but the newest)."""
    pending = self.pending
    todo = pending[:-1] if keep_last else pending[:]
    if todo:
      del pending[: len(todo)]
      got = self._runner.metrics_many([v for _, v in todo])
      for (info, _), m in zip(todo, got, strict=True):
        self._handle(info, m)

  def _handle(self, info: tuple[Any, ...], m: dict[str, Any]) -> None:
    """Host work for one finished micro-step."""
    update, micro, stage, epoch, examples, due, values = info
    self.skipped = m['skipped']
    sp = self._stages[stage]
    if self._micro_hooks:
      step = MicroStepInfo(update, micro, epoch, sp.batch_size, m)
      for h in self._micro_hooks:
        h.on_micro_step(step)
    if m['finite']:
      sums = self._sums
      for k in self._keys:
        sums[k] += m[k]
      self._count += 1
    if micro != sp.accum_steps - 1:
      return
    u = update + 1  # updates done after this step
    extra = self._run_hooks(u, stage, examples, m, due, values)
    if u % self._log_every == 0 or u == self._total_updates:
      self._write(u, stage, examples, m, extra)
    elif extra:
      self.record(
        {
          'step': u,
          'split': 'hook',
          'epoch': examples / self._setup.num_train,
          'examples': examples,
          **extra,
        }
      )

  def _run_hooks(
    self,
    u: int,
    stage: int,
    examples: int,
    m: dict[str, Any],
    due: tuple[int, ...],
    values: Any,
  ) -> dict[str, float]:
    """Runs the hooks due after update ``u``; returns their metrics."""
    if not due:
      return {}
    sp = self._stages[stage]
    info = StepInfo(
      update=u,
      epoch=examples / self._setup.num_train,
      examples=examples,
      tokens=examples * self._seq_len if self._seq_len else None,
      stage=stage,
      batch_size=sp.batch_size,
      micro_batch=sp.micro_batch,
      accum_steps=sp.accum_steps,
      num_devices=self._setup.replicas,
      lr=m['learning_rate'],
      metrics=m,
      noise_scale=self._noise.b_simple() if self._noise else math.nan,
      schedule=self._setup.schedule,
      num_train=self._setup.num_train,
      state=self._host_state,
    )
    extra: dict[str, float] = {}
    asked = self._requests
    for i in due:
      h = self.hooks[i]
      value = None
      if values is not None and id(h) in self._inside:
        value = host_values(self._runner, values[self._inside[id(h)]])
      res = h.on_step(info, value)
      if h is self._noise:
        info = info._replace(noise_scale=h.b_simple())
      if res is None:
        continue
      if res.metrics:
        extra.update({k: float(v) for k, v in res.metrics.items()})
      asked.stop = asked.stop or res.stop
      asked.checkpoint = asked.checkpoint or res.checkpoint
      if res.batch_schedule is not None:
        if not h.sync:
          raise ValueError(
            f'hook {h.name!r} asked for a batch schedule but is not sync: '
            'set sync = True, so that the schedule takes effect at the '
            'update it was asked at'
          )
        asked.batch_schedule = res.batch_schedule
    return extra

  def _write(
    self,
    update: int,
    stage: int,
    examples: int,
    m: dict[str, Any],
    extra: dict[str, float],
  ) -> None:
    """Writes and logs the record of ``update``; restarts the averages."""
    sp = self._stages[stage]
    num_train = self._setup.num_train
    rates = self._progress.update(update, examples)
    n = max(self._count, 1)
    lr = m['learning_rate']
    mom = m.get('momentum', float('nan'))
    rec = {
      'step': update,
      'epoch': examples / num_train,
      'examples': examples,
      **{k: v / n for k, v in self._sums.items()},
      'lr': lr,
      'batch_size': sp.batch_size,
      'accum_steps': sp.accum_steps,
      'micro_batch': sp.micro_batch,
      'stage': stage,
      'grad_sq_norm': m['sq_norm_global'],
      'skipped': self.skipped,
      'data_wait_sec': self.data.wait_seconds,
      **rates,
    }
    if 'momentum' in m:
      rec['momentum'] = mom
    if 'weight_decay' in m:
      rec['weight_decay'] = m['weight_decay']
    if self._config.optimizer in SGD_MOMENTUM:
      rec['noise_g'] = _smith_g(lr, sp.batch_size, num_train, mom)
    if self._noise is not None:
      rec['noise_scale'] = self._noise.b_simple()
    rec.update(extra)
    self.record(rec)
    # One line per record only at --v=1: experiments train many runs, and
    # thousands of step lines at INFO bury their progress; every record is
    # in metrics.jsonl anyway.
    logging.vlog(
      1,
      '%s eta=%s',
      self._line.format(rec),
      lmetrics.format_eta(rates['eta_sec']),
    )
    self.last_train = rec
    self._sums = dict.fromkeys(self._keys, 0.0)
    self._count = 0


def _smith_g(lr: float, batch: int, n: int, momentum: float) -> float:
  """``rules.noise_scale`` of the hyperparameters (NaN where undefined)."""
  from lrjax import rules

  try:
    return float(rules.noise_scale(lr, batch, n, momentum))
  except ValueError:
    return float('nan')
