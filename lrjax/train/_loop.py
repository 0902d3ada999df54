"""``train_and_evaluate``: the training loop around the compiled steps."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Collection, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from lrjax import metrics as lmetrics
from lrjax.data import Prefetcher, Sampler
from lrjax.train import _host, _pipeline, _setup, _workdir
from lrjax.train._checkpoint import Checkpointer, CheckpointTimer
from lrjax.train._compile import StageCompiler
from lrjax.train._config import TrainConfig
from lrjax.train._hooks import (
  EVAL_RECORD_KEYS,
  Hook,
  NoiseTracker,
  NonFiniteStop,
  PlateauMonitor,
  ProgressBarHook,
  RunInfo,
  TensorBoardHook,
  as_hook_list,
  restore_hooks,
)
from lrjax.train._hooks import NonFiniteError as NonFiniteError
from lrjax.train._step import create_train_state
from lrjax.train._task import Task


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a run returns.

  Attributes:
    train_metrics: the last logged train metrics (step record).
    test_metrics: the last evaluation: the task's evaluation metrics only,
      all numbers (for classification loss, accuracy, top5_accuracy);
      ``{}`` without evaluation.
    test_step: the update of the last evaluation (None: none).
    test_epoch: the epoch of the last evaluation (None: none).
    num_updates: real optimizer updates done (over all sessions of the run).
    examples_seen: training examples consumed.
    wall_time: seconds of this call.
    compile_seconds: per-device micro-batch size -> seconds to compile.
    num_compiles: train-step compilations in this call (one per distinct
      micro-batch shape).
    loop_seconds: seconds of the step loop of this call (after the first
      compilation, with periodic evaluations and checkpoints).
    loop_updates: updates done by the step loop of this call.
    metrics_path: path of metrics.jsonl.
    params: the final parameters (numpy, one replica).
    model_state: the final model state (batch-norm statistics; numpy).
    skipped_updates: non-finite micro-steps skipped (nan_policy='skip').
    resumed_from: update of the checkpoint this call resumed from (or None).
    stopped: whether a hook stopped the run (before its schedule's end).
    batch_schedule: the BatchSchedule in force at the end (a hook may
      have changed the config's).
  """

  train_metrics: dict[str, Any]
  test_metrics: dict[str, float]
  test_step: int | None
  test_epoch: float | None
  num_updates: int
  examples_seen: int
  wall_time: float
  compile_seconds: dict[int, float]
  num_compiles: int
  loop_seconds: float
  loop_updates: int
  metrics_path: str
  params: Any
  model_state: Any
  skipped_updates: int
  resumed_from: int | None
  stopped: bool = False
  batch_schedule: Any = None


def train_and_evaluate(
  config: TrainConfig,
  workdir: str,
  task: Any,
  *,
  hooks: Sequence[Hook] = (),
  overwrite: bool = False,
  allow_changes: Collection[str] = (),
) -> TrainResult:
  """Trains and evaluates a task in ``workdir``; resumes if possible.

  Validates the config (before anything compiles), builds the optimizer
  and the accumulation plan, compiles one step per
  distinct micro-batch shape ahead of its first use, and runs the steps,
  logging the previous step's metrics so the host never waits on the device
  just to log. On the CPU backend with several devices each step is awaited
  before the next is dispatched (XLA's CPU collectives can deadlock
  otherwise). Writes ``config.json``, ``metrics.jsonl`` and checkpoints
  under ``workdir``; a second call with the same workdir resumes from the
  newest intact checkpoint.

  What survives a kill at any point: the newest committed checkpoint (an
  orbax checkpoint is renamed into place only when complete, and verified
  against the digest of its arrays on restore; a damaged one is skipped
  for the previous one), and ``metrics.jsonl`` up to that checkpoint (it
  is synced before each checkpoint commits and cut back to the
  checkpoint's position on resume), so a resumed run ends with the
  parameters and the records of an uninterrupted one.

  The workdir belongs to one run: the call holds an exclusive lock on it
  and compares ``config`` and the task's fingerprint
  (:attr:`Task.fingerprint`: model, loss, parameter shapes, data sizes and
  digests) with the saved ``config.json``, before anything compiles.
  Fields that only say how the run executes (``max_updates``,
  ``checkpoint_every``, ``keep_checkpoints``, ``prefetch``,
  ``progress_bar``, ``tensorboard``, ``compilation_cache_dir``,
  ``coordinator_address``, ``process_id``) may change between calls; any
  other difference is refused unless allowed.

  Args:
    config: how to train (batch schedule, policies, devices, checkpoints).
    workdir: output directory (created).
    task: what to train, a :class:`lrjax.train.Task` (``lrjax.tasks``
      builds the named ones).
    hooks: :class:`lrjax.train.Hook` s run in this order after the
      trainer's noise tracker and plateau monitor: in-run measurements and
      decisions (log, stop, a new batch schedule, a value fed to the
      step); their states are checkpointed by name.
    overwrite: delete the workdir's run files (checkpoints, metrics,
      config) and start afresh.
    allow_changes: config fields (or task groups such as ``'task'``,
      ``'task.train_data'``) that may differ from the saved run's, e.g.
      ``('num_epochs',)`` to train a finished run longer; the caller
      vouches that the run may go on under the new values.

  Returns:
    A TrainResult.

  Raises:
    ValueError: for a bad config value (naming the field and the fix).
    ConfigMismatchError: (a ValueError) when ``workdir`` holds a run of
      another config or task, naming the differing fields.
    TypeError: when ``task`` is not a Task.
    WorkdirLockedError: when another process holds ``workdir``.
    CheckpointError: when no checkpoint of the run is intact.
    NonFiniteError: for a non-finite loss or gradient norm under
      ``nan_policy='stop'`` (naming step, epoch, LR and batch size); the
      last checkpoint stays intact.
  """
  if not isinstance(task, Task):
    raise TypeError(
      f'task={task!r} is not a lrjax.train.Task: build one with '
      'lrjax.train.Task(model=..., loss=..., train_data=...) or '
      'lrjax.tasks (image_classification, language_model)'
    )
  hook_list = as_hook_list(hooks)
  workdir = _prepare(config, workdir)
  with _workdir.claim(
    workdir,
    _workdir.run_record(config, task),
    overwrite=overwrite,
    allow_changes=allow_changes,
    main=jax.process_index() == 0,
  ):
    return _train(config, workdir, task, hook_list)


def _train(
  config: TrainConfig, workdir: str, task: Any, user_hooks: list[Hook]
) -> TrainResult:
  """``train_and_evaluate`` in a prepared workdir this process holds."""
  wall_start = time.perf_counter()
  replicas = len(_setup.select_devices(config))
  noise = None
  if config.noise.enabled:
    n = config.noise
    noise = NoiseTracker(
      n.every, n.decay, n.num_slices, replicas, task.num_train
    )
  own: list[Hook] = [noise] if noise else []
  if config.plateau_metric.startswith('test_'):
    own.append(PlateauMonitor(config.plateau_metric))
  hooks = as_hook_list(own + user_hooks)  # checkpointed
  build = functools.partial(
    _setup.build,
    config,
    task,
    inside=tuple(h.inside_step for h in hooks if h.inside_step is not None),
    candidates=tuple(b for h in user_hooks for b in h.batch_sizes),
  )
  setup = build()
  setup.task.check()  # a clear error before anything is traced for real
  host_state = create_train_state(setup.task, setup.tx, config.seed)
  ckpt, host_state, meta = _restore(config, workdir, host_state)
  if 'batch_schedule' in meta:  # put in force by a hook
    setup = build(schedule=_schedule_of(meta['batch_schedule'], setup))
  restore_hooks(hooks, meta)
  state = setup.runner.put_state(host_state)
  del host_state
  _log_start(config, setup)
  writer, metrics_path = _open_writer(workdir, meta)
  tail: list[Hook] = []  # after the record writer and the progress bar
  if config.tensorboard and jax.process_index() == 0:
    tail.append(TensorBoardHook(os.path.join(workdir, 'tb')))
  if ckpt is not None and config.checkpoint_seconds > 0:
    tail.append(CheckpointTimer(config.checkpoint_seconds))
  run = _Run(
    config, setup, build, state, meta, ckpt, writer, hooks, noise, tail
  )
  first_update = run.update
  try:
    loop_seconds = run.train()
  finally:
    run.close()
    writer.flush()
    writer.close()
    if ckpt is not None:
      ckpt.close()

  runner = run.setup.runner
  params = jax.tree.map(lambda a: np.array(runner.replica(a)), run.state.params)
  model_state = jax.tree.map(
    lambda a: np.array(runner.replica(a)), run.state.model_state
  )
  return TrainResult(
    train_metrics=run.log.last_train,
    test_metrics={
      k: v for k, v in run.last_test.items() if k not in EVAL_RECORD_KEYS
    },
    test_step=run.last_test.get('step'),
    test_epoch=run.last_test.get('epoch'),
    num_updates=run.update,
    examples_seen=run.examples,
    wall_time=time.perf_counter() - wall_start,
    compile_seconds=run.compile_seconds(),
    num_compiles=sum(c.num_compiles for c in run.compilers),
    loop_seconds=loop_seconds,
    loop_updates=run.update - first_update,
    metrics_path=metrics_path,
    params=params,
    model_state=model_state,
    skipped_updates=run.log.skipped,
    resumed_from=run.resumed_from,
    stopped=run.stopped,
    batch_schedule=run.setup.schedule,
  )


def _schedule_of(stages: list[list[int]], setup: _setup.Setup) -> Any:
  """The BatchSchedule of a checkpoint's ``[[batch, updates], ...]``."""
  from lrjax import batch as lbatch

  return lbatch.BatchSchedule(
    tuple(lbatch.Stage(int(b), updates=int(n)) for b, n in stages),
    setup.num_train,
  )


# The run --------------------------------------------------------------------


class _Run:
  """One call's device state and counters, and the work between the steps.

  ``train`` dispatches the steps. Its loop runs every step, so it keeps
  ``update``, ``examples``, ``next_eval`` and ``sampler_state`` in locals
  and stores them back here before it evaluates or checkpoints and when it
  ends; ``evaluate`` and ``save`` read them here. A hook's new batch
  schedule ends the loop over the old one: the input pipeline restarts
  from the sampler's position at that update under the new plan.

  Attributes:
    setup: the run's setup under the batch schedule in force.
    state: the device TrainState (the newest dispatched step's).
    update: updates done (over all sessions of the run).
    examples: training examples consumed.
    total_updates: where the run ends (a hook's stop ends it earlier).
    stopped: whether a hook stopped the run.
    next_eval: epoch of the next periodic evaluation (inf: none).
    sampler_state: the sampler's state after the last consumed batch.
    resumed_from: update of the checkpoint resumed from (or None).
    last_test: the last evaluation record.
    log: the host work for finished steps (and the hooks).
    compilers: the StageCompilers of this call (one per optimizer: a
      schedule a policy depends on compiles its steps anew).
  """

  def __init__(
    self,
    config: TrainConfig,
    setup: _setup.Setup,
    build: Any,
    state: Any,
    meta: dict[str, Any],
    ckpt: Checkpointer | None,
    writer: lmetrics.MultiWriter,
    hooks: list[Hook],
    noise: NoiseTracker | None,
    tail: list[Hook],
  ) -> None:
    self.setup = setup
    self.state = state
    self.update = int(meta.get('update', 0))
    self.examples = int(meta.get('examples', 0))
    self.stopped = bool(meta.get('stopped', False))
    self.total_updates = self.update if self.stopped else setup.total_updates
    self.next_eval = float(meta.get('next_eval', config.eval_every or math.inf))
    self.resumed_from = int(meta['update']) if meta else None
    self._sampler = Sampler(setup.num_train, seed=config.seed)
    if 'sampler' in meta:
      self._sampler.restore(tuple(meta['sampler']))
    self.sampler_state = self._sampler.state
    self.last_test: dict[str, Any] = dict(meta.get('last_test', {}))
    self._changed = 'batch_schedule' in meta
    self._build = build
    self._hooks = hooks
    self._inside = [h for h in hooks if h.inside_step is not None]
    self._candidates = tuple(b for h in hooks for b in h.batch_sizes)
    self._config = config
    # Compiling the first step also tells the runner the metrics' keys.
    self.compilers: list[StageCompiler] = []
    self._compiler = self._new_compiler()
    # The trainer's stateless hooks (not checkpointed) around the others.
    stop = [NonFiniteStop()] if config.nan_policy == 'stop' else []
    self._bar = ProgressBarHook(
      self.total_updates, config.log_every, config.progress_bar
    )
    self.log = _host.StepLog(
      config,
      setup,
      writer,
      [*stop, *hooks, self._bar, *tail],
      noise,
      self._host_state,
    )
    self.log.restore_sums(meta.get('log_sums'))
    self.log.last_train = dict(meta.get('last_train', {}))
    self._ckpt = ckpt
    self._writer = writer
    task = setup.task
    options = setup.runner.compiler_options
    self._eval_fns = tuple(
      jax.jit(fn, compiler_options=options)
      for fn in (task.eval_sums, task.eval_means)
    )
    run_info = RunInfo(
      schedule=setup.schedule,
      num_train=setup.num_train,
      total_updates=self.total_updates,
      start_update=self.update,
      num_devices=setup.replicas,
      seq_len=task.info.get('seq_len'),
    )
    for h in hooks:
      h.start(run_info)

  def _host_state(self) -> Any:
    return self.setup.runner.get_state(self.state)

  def _new_compiler(self) -> StageCompiler:
    """A StageCompiler for the setup's runner; the hooks' candidate shapes
    compile in the background."""
    setup = self.setup
    abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
      self.state,
    )
    compiler = StageCompiler(
      lambda micro: setup.runner.compile(abstract, micro),
      setup.plan,
      start_update=self.update,
    )
    if self._candidates and setup.schedule_free:
      # Another schedule runs on these steps: compile the shapes a hook
      # may put in force while this one trains.
      from lrjax import batch as lbatch

      every = lbatch.BatchSchedule(
        tuple(lbatch.Stage(b, updates=1) for b in self._candidates),
        setup.num_train,
      )
      plan = _setup.make_plan(
        every, setup.replicas, self._config.max_device_batch
      )
      compiler.prefetch(s.micro_batch for s in plan.stages)
    self.compilers.append(compiler)
    return compiler

  def compile_seconds(self) -> dict[int, float]:
    """Per micro-batch, seconds of compilation over this call."""
    out: dict[int, float] = {}
    for c in self.compilers:
      for micro, seconds in c.compile_seconds.items():
        out[micro] = out.get(micro, 0.0) + seconds
    return out

  def close(self) -> None:
    for c in self.compilers:
      c.close()
    for h in self.log.hooks:
      h.close()

  def train(self) -> float:
    """Runs the remaining updates, then evaluates and checkpoints the end.

    Returns:
      Seconds of the step loop (with periodic evaluations and checkpoints,
      without the final ones).
    """
    config = self._config
    self.log.start(self.update, self.examples)
    loop_start = time.perf_counter()
    while self._segment():
      pass
    loop_seconds = time.perf_counter() - loop_start
    self._bar.close()
    if self.update >= self.total_updates:
      finished = self.resumed_from == self.update
      if not finished or self.last_test.get('step') != self.update:
        self.evaluate()  # a finished run resumed keeps its evaluation
        # As after a periodic evaluation, so a run continued from here
        # (more updates) does not evaluate this epoch again.
        epoch = self.examples / self.setup.num_train
        while self.next_eval <= epoch + 1e-9:
          self.next_eval += config.eval_every
      if not finished:
        self.save()
    return loop_seconds

  def _segment(self) -> bool:
    """Trains under the schedule in force until it ends, a hook stops the
    run, or a hook puts another schedule in force (then returns True)."""
    self._sampler.restore(self.sampler_state)
    batches = _pipeline.batches(
      self.setup,
      self._sampler,
      self.update,
      self.total_updates,
      augment_seed=self._config.seed if self._config.augment else None,
    )
    if self._config.prefetch > 0:
      prefetch = Prefetcher(batches, self._config.prefetch)
    else:
      prefetch = _pipeline.Inline(batches)
    try:
      self.log.data = prefetch
      changed = self._steps(prefetch)
      self.log.flush(keep_last=False)
    finally:
      prefetch.close()
    return changed

  def _steps(self, prefetch: Any) -> bool:
    """Dispatches a step per micro-batch; host work trails a few behind."""
    setup, config = self.setup, self._config
    stages, replicas = setup.plan.stages, setup.replicas
    num_train, total_updates = setup.num_train, self.total_updates
    checkpoint_every, eval_every = config.checkpoint_every, config.eval_every
    pending, flush = self.log.pending, self.log.flush
    flush_every = min(config.log_every, 64)
    # XLA's CPU collectives can deadlock with several steps in flight.
    sync_each_step = jax.default_backend() == 'cpu' and replicas > 1
    hooks, inside = self.log.hooks, self._inside
    none_due = (0,) * len(inside)
    due_flags = setup.runner.due_flags
    update, examples = self.update, self.examples
    next_eval, sampler_state = self.next_eval, self.sampler_state
    micro = step_fn = None
    # The one hook that feeds the step, if any (as_hook_list checked).
    feed = next((h.step_input for h in hooks if h.step_input is not None), None)
    for u, j, stage, batch, sampler_state, epoch_in in prefetch:
      sp = stages[stage]
      if sp.micro_batch != micro:
        micro = sp.micro_batch
        step_fn = self._compiler.get(micro)
      last_micro = j == sp.accum_steps - 1
      due = ()
      if last_micro:
        due = tuple(i for i, h in enumerate(hooks) if h.due(u + 1))
      if feed is not None:
        batch = (*batch[:2], np.float32(feed()))
      if inside:
        flags = none_due
        if due:
          flags = tuple(int(hooks.index(h) in due) for h in inside)
        self.state, dev_metrics, values = step_fn(
          self.state, *batch, due_flags(flags)
        )
      else:
        self.state, dev_metrics = step_fn(self.state, *batch)
        values = None
      examples += replicas * micro
      if sync_each_step:
        jax.block_until_ready(dev_metrics)
      pending.append(
        ((u, j, stage, epoch_in, examples, due, values), dev_metrics)
      )
      if len(pending) > flush_every:
        flush(keep_last=True)
      if not last_micro:
        continue
      update = u + 1
      if any(hooks[i].sync for i in due):
        flush(keep_last=False)
      asked = self.log.take_requests()
      epoch_now = examples / num_train
      at_ckpt = (
        checkpoint_every and update % checkpoint_every == 0
      ) or asked.checkpoint
      at_eval = epoch_now >= next_eval - 1e-9
      end = asked.stop or asked.batch_schedule is not None
      if (at_ckpt or at_eval or end) and update < total_updates:
        flush(keep_last=False)  # the state to save or evaluate is finite
        self.update, self.examples = update, examples
        self.sampler_state = sampler_state
        if asked.stop:
          self.stopped, self.total_updates = True, update
          logging.info('A hook stopped the run after update %d', update)
          return False
        if asked.batch_schedule is not None:
          self._change_schedule(asked.batch_schedule)
        if at_eval:
          self.evaluate()
          while next_eval <= epoch_now + 1e-9:
            next_eval += eval_every
          self.next_eval = next_eval
        if at_ckpt:
          self.save()
        if asked.batch_schedule is not None:
          return True
    self.update, self.examples = update, examples
    self.sampler_state = sampler_state
    return False

  def _change_schedule(self, schedule: Any) -> None:
    """Puts a hook's batch schedule in force from ``self.update`` on."""
    old = self.setup
    _host.check_new_schedule(
      old.schedule, schedule, self.update, self._candidates
    )
    setup = self._build(schedule=schedule)
    if old.schedule_free and setup.schedule_free:
      # The optimizer does not depend on the schedule: same steps.
      setup = dataclasses.replace(setup, runner=old.runner, tx=old.tx)
    else:
      self._compiler.close()
      self.setup = setup
      self._compiler = self._new_compiler()
    self.setup = setup
    self.total_updates = setup.total_updates
    self._changed = True
    self.log.set_setup(setup)
    logging.info(
      'Batch schedule from update %d on: %s', self.update, setup.schedule
    )

  def evaluate(self) -> None:
    """Evaluates the state on the evaluation split (if the task has one);
    records and logs the result."""
    if self.setup.task.eval_data is None:
      return
    runner = self.setup.runner
    values = _pipeline.evaluate(
      self.setup.task,
      jax.tree.map(runner.replica, self.state.params),
      jax.tree.map(runner.replica, self.state.model_state),
      self._config.eval_batch_size,
      self._eval_fns,
    )
    res = {
      'step': self.update,
      'split': 'test',
      'epoch': self.examples / self.setup.num_train,
      'examples': self.examples,
      **values,
    }
    self.log.record(res)
    logging.info(
      'eval step=%d epoch=%.3f %s',
      self.update,
      res['epoch'],
      ' '.join(f'test_{k}={v:.4f}' for k, v in values.items()),
    )
    self.last_test = res

  def save(self) -> None:
    """Checkpoints the state and the bookkeeping (if checkpointing).

    Raises:
      NonFiniteError: for non-finite parameters (nothing is saved).
    """
    if self._ckpt is None:
      return
    update, examples = self.update, self.examples
    schedule = self.setup.schedule
    epoch = examples / self.setup.num_train
    meta = {
      'update': update,
      'examples': examples,
      'stage': _setup.stage_of(schedule, max(update - 1, 0)),
      'epoch': epoch,
      'sampler': list(self.sampler_state),
      'next_eval': self.next_eval if math.isfinite(self.next_eval) else 1e300,
      'seed': self._config.seed,
      'log_sums': self.log.saved_sums(),
      'last_train': self.log.last_train,
      'last_test': self.last_test,
      'hooks': {h.name: h.state() for h in self._hooks},
    }
    if self._changed:
      meta['batch_schedule'] = [
        [b, n]
        for b, n in zip(
          schedule.batch_size_per_stage,
          schedule.num_updates_per_stage,
          strict=True,
        )
      ]
    if self.stopped:
      meta['stopped'] = True
    host = self.setup.runner.get_state(self.state)
    if not all(np.all(np.isfinite(a)) for a in jax.tree.leaves(host.params)):
      raise NonFiniteError(
        f'non-finite parameters at update {update}, epoch '
        f'{epoch:.4f}; not checkpointed, the last checkpoint is '
        'intact (lower the LR or set nan_policy=skip)'
      )
    # The records up to this update are durable before the checkpoint
    # commits; a resume cuts the log back to this position, and writes
    # back the tail if a fault cut the file inside it.
    self._writer.sync()
    jsonl = self._writer.writers  # metrics.jsonl on the main process only
    meta['metrics'] = list(jsonl[0].position) if jsonl else None
    meta['metrics_tail'] = jsonl[0].tail if jsonl else []
    self._ckpt.save(update, host, meta)
    for h in self.log.hooks:
      h.on_checkpoint(update)


# Setup ----------------------------------------------------------------------


def _prepare(config: TrainConfig, workdir: str) -> str:
  """Validates ``config``, joins the processes and creates ``workdir``.

  Returns:
    The absolute path of ``workdir``.
  """
  config.validate()
  _initialize_distributed(config)
  config.validate(num_local_devices=jax.local_device_count())
  enable_compilation_cache(config.compilation_cache_dir)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  return workdir


def _initialize_distributed(config: TrainConfig) -> None:
  if config.coordinator_address is None or config.num_processes == 1:
    return
  if jax.distributed.is_initialized():
    return  # initialised by the caller
  try:
    jax.distributed.initialize(
      coordinator_address=config.coordinator_address,
      num_processes=config.num_processes,
      process_id=config.process_id,
    )
  except RuntimeError as e:
    if 'before any JAX calls' not in str(e):
      raise
    # JAX has started (an NNX model's parameters, any array, jax.devices):
    # too late to join the processes from here.
    raise RuntimeError(
      f'coordinator_address={config.coordinator_address!r}: JAX started '
      'before train_and_evaluate could join the processes (building an NNX '
      'model, making any array or calling jax.devices starts it). Call '
      'jax.distributed.initialize(coordinator_address=..., num_processes='
      '..., process_id=...) first thing in the program, before the task is '
      'built; the trainer then uses it as it is.'
    ) from e


def enable_compilation_cache(directory: str | None) -> None:
  """JAX's persistent compilation cache in ``directory``, every program
  cached (small CPU ones compile fast, but a sweep compiles many).

  What the trainer does for `TrainConfig.compilation_cache_dir`; a loop of
  one's own (a range test, a probe) calls it before it compiles. JAX keeps
  the cache it opened first, so call it before the process compiles
  anything.

  Args:
    directory: the cache's directory; None or empty leaves JAX's settings
      as they are.

  Examples:
    >>> import jax
    >>> before = jax.config.jax_compilation_cache_dir
    >>> enable_compilation_cache(None)
    >>> jax.config.jax_compilation_cache_dir == before
    True
  """
  if not directory:
    return
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def _restore(
  config: TrainConfig, workdir: str, host_state: Any
) -> tuple[Checkpointer | None, Any, dict[str, Any]]:
  """Opens the run's checkpoints and restores the newest one, if any.

  Args:
    config: the run's configuration (``keep_checkpoints=0``: none).
    workdir: the run's directory.
    host_state: a freshly initialised host TrainState (the template).

  Returns:
    ``(checkpointer or None, host_state, meta)``: the restored state and
    bookkeeping, or ``host_state`` and ``{}`` when there is no checkpoint.
  """
  if config.keep_checkpoints <= 0:
    return None, host_state, {}
  ckpt = Checkpointer(
    os.path.join(workdir, 'checkpoints'), config.keep_checkpoints
  )
  if ckpt.latest_step() is None:
    return ckpt, host_state, {}
  host_state, meta = ckpt.restore(host_state)
  logging.info('Resumed from the checkpoint of update %d', int(meta['update']))
  return ckpt, host_state, meta


def _log_start(config: TrainConfig, setup: _setup.Setup) -> None:
  """Logs what is trained on what, and the stages of the plan."""
  replicas = setup.replicas
  logging.info(
    'Training %s: %d updates, %d device(s) (%s, %d process(es)), stages: %s',
    setup.task.name,
    setup.total_updates,
    replicas,
    setup.runner.mode,
    jax.process_count(),
    ', '.join(
      f'{s.batch_size} = {replicas} x {s.micro_batch} x {s.accum_steps} '
      f'for {s.num_updates} updates'
      for s in setup.plan.stages
    ),
  )


def _open_writer(
  workdir: str, meta: dict[str, Any]
) -> tuple[lmetrics.MultiWriter, str]:
  """The metrics writer (metrics.jsonl, on the main process only; hooks
  such as TensorBoard see its records) and the JSONL path.

  ``metrics.jsonl`` is first cut back to the records of the restored
  checkpoint (``meta``; none without one), so a resumed run neither loses
  nor repeats a record; records the checkpoint covers that a damaged file
  lost are written back from the checkpoint (its log tail, its last train
  and test records).
  """
  writers: list[Any] = []
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  if jax.process_index() == 0:
    lmetrics.rewind_jsonl(
      metrics_path,
      meta.get('metrics'),
      int(meta.get('update', 0)),
      meta.get('metrics_tail', ()),
      (meta.get('last_train'), meta.get('last_test')),
    )
    writers.append(lmetrics.JsonlWriter(metrics_path))
  return lmetrics.MultiWriter(writers), metrics_path
