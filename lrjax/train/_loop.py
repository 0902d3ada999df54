"""``train_and_evaluate``: the training loop around the compiled steps."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Collection, Iterator
from typing import Any

import jax
import numpy as np
from absl import logging

from lrjax import metrics as lmetrics
from lrjax import noise as lnoise
from lrjax.batch import updates
from lrjax.data import Prefetcher, Sampler, process_slice
from lrjax.train import _setup, _workdir
from lrjax.train._checkpoint import Checkpointer, CheckpointTimer
from lrjax.train._compile import StageCompiler
from lrjax.train._config import SGD_MOMENTUM, TrainConfig
from lrjax.train._parallel import Runner
from lrjax.train._step import create_train_state
from lrjax.train._task import RESERVED_METRICS, Task

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

# What an evaluation record holds beside the task's evaluation metrics.
_TEST_RECORD_KEYS = ('step', 'split', 'epoch', 'examples')


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


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or gradient norm."""


def train_and_evaluate(
  config: TrainConfig,
  workdir: str,
  task: Any,
  *,
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
  workdir = _prepare(config, workdir)
  with _workdir.claim(
    workdir,
    _workdir.run_record(config, task),
    overwrite=overwrite,
    allow_changes=allow_changes,
    main=jax.process_index() == 0,
  ):
    return _train(config, workdir, task)


def _train(config: TrainConfig, workdir: str, task: Any) -> TrainResult:
  """``train_and_evaluate`` in a prepared workdir this process holds."""
  wall_start = time.perf_counter()
  setup = _setup.build(config, task)
  setup.task.check()  # a clear error before anything is traced for real
  host_state = create_train_state(setup.task, setup.tx, config.seed)
  ckpt, host_state, meta = _restore(config, workdir, host_state)
  state = setup.runner.put_state(host_state)
  del host_state
  _log_start(config, setup)
  abstract = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
    state,
  )
  compiler = StageCompiler(
    lambda micro: setup.runner.compile(abstract, micro),
    setup.plan,
    start_update=int(meta.get('update', 0)),
  )
  writer, metrics_path = _open_writer(config, workdir, meta)
  run = _Run(config, setup, state, meta, ckpt, writer)
  first_update = run.update
  try:
    loop_seconds = run.train(compiler)
  finally:
    compiler.close()
    writer.flush()
    writer.close()
    if ckpt is not None:
      ckpt.close()

  runner = setup.runner
  params = jax.tree.map(lambda a: np.array(runner.replica(a)), run.state.params)
  model_state = jax.tree.map(
    lambda a: np.array(runner.replica(a)), run.state.model_state
  )
  return TrainResult(
    train_metrics=run.log.last_train,
    test_metrics={
      k: v for k, v in run.last_test.items() if k not in _TEST_RECORD_KEYS
    },
    test_step=run.last_test.get('step'),
    test_epoch=run.last_test.get('epoch'),
    num_updates=run.update,
    examples_seen=run.examples,
    wall_time=time.perf_counter() - wall_start,
    compile_seconds=dict(compiler.compile_seconds),
    num_compiles=compiler.num_compiles,
    loop_seconds=loop_seconds,
    loop_updates=run.update - first_update,
    metrics_path=metrics_path,
    params=params,
    model_state=model_state,
    skipped_updates=run.log.skipped,
    resumed_from=run.resumed_from,
  )


# Setup ----------------------------------------------------------------------


def _prepare(config: TrainConfig, workdir: str) -> str:
  """Validates ``config``, joins the processes and creates ``workdir``.

  Returns:
    The absolute path of ``workdir``.
  """
  config.validate()
  _initialize_distributed(config)
  config.validate(num_local_devices=jax.local_device_count())
  if config.compilation_cache_dir:
    _enable_cache(config.compilation_cache_dir)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  return workdir


def _initialize_distributed(config: TrainConfig) -> None:
  if config.coordinator_address is None or config.num_processes == 1:
    return
  if jax.distributed.is_initialized():
    return  # initialised by the caller
  jax.distributed.initialize(
    coordinator_address=config.coordinator_address,
    num_processes=config.num_processes,
    process_id=config.process_id,
  )


def _enable_cache(directory: str) -> None:
  jax.config.update('jax_compilation_cache_dir', directory)
  # Small CPU programs compile fast; cache them anyway.
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


def _noise_state(meta: dict[str, Any]) -> lnoise.NoiseScaleState:
  """The checkpointed noise-scale estimate, or an empty one."""
  if 'noise' not in meta:
    return lnoise.init()
  g2, trace, weight, count = meta['noise']
  return lnoise.NoiseScaleState(
    np.float32(g2), np.float32(trace), np.float32(weight), np.int32(count)
  )


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
  config: TrainConfig, workdir: str, meta: dict[str, Any]
) -> tuple[lmetrics.MultiWriter, str]:
  """The metrics writer (files on the main process only) and the JSONL path.

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
    if config.tensorboard:
      writers.append(lmetrics.TensorBoardWriter(os.path.join(workdir, 'tb')))
  return lmetrics.MultiWriter(writers), metrics_path


# Input pipeline and evaluation ----------------------------------------------


def _batches(
  setup: _setup.Setup,
  sampler: Sampler,
  first_update: int,
  augment_seed: int | None,
  keep_local: bool,
) -> Iterator[tuple[Any, ...]]:
  """This process' micro-batches from ``first_update`` on, on the devices.

  Args:
    setup: the run's setup.
    sampler: draws the examples (advanced as batches are produced).
    first_update: the update to start at.
    augment_seed: seed of the augmentation (None: none).
    keep_local: also yield the host batch (the one-device noise estimate
      reads it).

  Yields:
    ``(update index, micro-step, stage, device batch, host batch or None,
    sampler state after the micro-batch, epoch as float32)``.
  """
  replicas, put_batch = setup.replicas, setup.runner.put_batch
  take = setup.task.train_data.take
  pi, pc = jax.process_index(), jax.process_count()
  for info in updates(setup.plan, first_update, setup.total_updates):
    global_micro = replicas * info.micro_batch
    epoch32 = float(np.float32(info.epoch))
    for j in range(info.accum_steps):
      idx, ep = sampler.next_with_epochs(global_micro)
      if pc > 1:
        idx, ep = process_slice(idx, pi, pc), process_slice(ep, pi, pc)
      if augment_seed is None:
        local = take(idx)
      else:
        local = take(idx, augment_seed=augment_seed, epochs=ep)
      yield (
        info.index,
        j,
        info.stage,
        put_batch(local, info.epoch),
        local if keep_local else None,
        sampler.state,  # an immutable tuple of ints
        epoch32,
      )


def _evaluate(
  setup: _setup.Setup, eval_fns: Any, state: Any, batch_size: int
) -> dict[str, float]:
  """The task's evaluation metrics of one replica of ``state``.

  With per-example ``eval_metrics`` the evaluation split runs in batches
  of ``batch_size``, the last one padded (with copies of its first
  example) and masked, so that one compiled program serves them all;
  without, ``loss`` and its metrics are averaged over the batches weighted
  by their sizes (the last, smaller batch is one more program).
  """
  task, runner = setup.task, setup.runner
  sums_fn, means_fn = eval_fns
  params = jax.tree.map(runner.replica, state.params)
  model_state = jax.tree.map(runner.replica, state.model_state)
  data = task.eval_data
  n = data.num_examples
  bs = min(batch_size, n)
  sums: dict[str, float] = {}
  for start in range(0, n, bs):
    idx = np.arange(start, min(start + bs, n))
    b = data.take(idx)
    if task.eval_metrics is not None:
      pad = bs - len(idx)
      if pad:
        b = {
          k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)])
          for k, v in b.items()
        }
      out = jax.device_get(
        sums_fn(params, model_state, b, np.arange(bs) < len(idx))
      )
    else:
      means = jax.device_get(means_fn(params, model_state, b))
      out = {k: float(v) * len(idx) for k, v in means.items()}
      out['count'] = len(idx)
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + float(v)
  count = sums.pop('count')
  return {k: v / count for k, v in sums.items()}


class _Inline:
  """Batches produced on the main thread (``prefetch=0``)."""

  wait_seconds = 0.0

  def __init__(self, iterable: Any) -> None:
    self._it = iter(iterable)

  def __iter__(self) -> Any:
    return self._it

  def close(self) -> None:
    pass


def _use_slices(config: TrainConfig, replicas: int) -> bool:
  """Whether the noise scale is estimated from slices of one device's batch."""
  return config.noise.enabled and replicas == 1 and config.noise.num_slices > 1


def _make_slice_fn(task: Any, config: TrainConfig, runner: Runner) -> Any:
  """One-device noise estimate: squared norms of slice and full gradients."""
  num_slices = config.noise.num_slices

  @jax.jit
  def norms(params, model_state, batch, rng, step):
    key = jax.random.fold_in(jax.random.wrap_key_data(rng), step)

    def loss_fn(p, b):
      return task.train_loss(p, model_state, b, key)[0]

    r = lnoise.sliced_sq_norms(jax.grad(loss_fn), params, batch, num_slices)
    return r.sq_norm_small, r.sq_norm_big

  def fn(state, local):
    one = jax.tree.map(
      runner.replica,
      (state.params, state.model_state, state.rng, state.step),
    )
    small, big = jax.device_get(norms(*one[:2], local, *one[2:]))
    return float(small), float(big)

  return fn


# The run --------------------------------------------------------------------


class _Run:
  """One call's device state and counters, and the work between the steps.

  ``train`` dispatches the steps. Its loop runs every step, so it keeps
  ``state``, ``update``, ``examples``, ``next_eval`` and ``sampler_state``
  in locals and stores them back here before it evaluates or checkpoints
  and when it ends; ``evaluate`` and ``save`` read them here.

  Attributes:
    state: the device TrainState.
    update: updates done (over all sessions of the run).
    examples: training examples consumed.
    next_eval: epoch of the next periodic evaluation (inf: none).
    sampler_state: the sampler's state after the last consumed batch.
    resumed_from: update of the checkpoint resumed from (or None).
    last_test: the last evaluation record.
    log: the host work for finished steps.
  """

  def __init__(
    self,
    config: TrainConfig,
    setup: _setup.Setup,
    state: Any,
    meta: dict[str, Any],
    ckpt: Checkpointer | None,
    writer: lmetrics.MultiWriter,
  ) -> None:
    self.state = state
    self.update = int(meta.get('update', 0))
    self.examples = int(meta.get('examples', 0))
    self.next_eval = float(meta.get('next_eval', config.eval_every or math.inf))
    self.resumed_from = int(meta['update']) if meta else None
    self._sampler = Sampler(setup.num_train, seed=config.seed)
    if 'sampler' in meta:
      self._sampler.restore(tuple(meta['sampler']))
    self.sampler_state = self._sampler.state
    self.last_test: dict[str, Any] = dict(meta.get('last_test', {}))
    # The evaluation metric a plateau policy monitors (plateau_metric
    # 'test_<name>'), passed to every step; NaN until measured.
    self._monitor_key = (
      config.plateau_metric[len('test_') :]
      if config.plateau_metric.startswith('test_')
      else None
    )
    self.monitor = np.float32(meta.get('monitor', np.nan))
    self.log = _StepLog(config, setup, _noise_state(meta), writer)
    # The metric sums since the last record, and that record.
    self.log.restore_sums(meta.get('log_sums'))
    self.log.last_train = dict(meta.get('last_train', {}))
    self._config = config
    self._setup = setup
    self._ckpt = ckpt
    self._timer = CheckpointTimer(config.checkpoint_seconds if ckpt else 0)
    self._writer = writer
    task = setup.task
    self._eval_fns = (jax.jit(task.eval_sums), jax.jit(task.eval_means))
    self._slice_fn = (
      _make_slice_fn(task, config, setup.runner)
      if _use_slices(config, setup.replicas)
      else None
    )

  def train(self, compiler: StageCompiler) -> float:
    """Runs the remaining updates, then evaluates and checkpoints the end.

    Args:
      compiler: the compiled steps by per-device micro-batch.

    Returns:
      Seconds of the step loop (with periodic evaluations and checkpoints,
      without the final ones).
    """
    config = self._config
    batches = _batches(
      self._setup,
      self._sampler,
      self.update,
      augment_seed=config.seed if config.augment else None,
      keep_local=self._slice_fn is not None,
    )
    if config.prefetch > 0:
      prefetch = Prefetcher(batches, config.prefetch)
    else:
      prefetch = _Inline(batches)
    try:
      self.log.start(self.update, self.examples, prefetch)
      loop_start = time.perf_counter()
      self._steps(prefetch, compiler)
      self.log.flush(keep_last=False)
      loop_seconds = time.perf_counter() - loop_start
      self.log.close()
      if self.update >= self._setup.total_updates:
        finished = self.resumed_from == self.update
        if not finished or self.last_test.get('step') != self.update:
          self.evaluate()  # a finished run resumed keeps its evaluation
          # As after a periodic evaluation, so a run continued from here
          # (more updates) does not evaluate this epoch again.
          epoch = self.examples / self._setup.num_train
          while self.next_eval <= epoch + 1e-9:
            self.next_eval += config.eval_every
        if not finished:
          self.save()
    finally:
      prefetch.close()
    return loop_seconds

  def _steps(self, prefetch: Any, compiler: StageCompiler) -> None:
    """Dispatches a step per micro-batch; host work trails a few behind."""
    setup, config = self._setup, self._config
    stages, replicas = setup.plan.stages, setup.replicas
    num_train, total_updates = setup.num_train, setup.total_updates
    checkpoint_every, eval_every = config.checkpoint_every, config.eval_every
    checkpoint_due = self._timer.due
    slice_fn, noise_every = self._slice_fn, self.log.noise_every
    pending, flush = self.log.pending, self.log.flush
    flush_every = min(config.log_every, 64)
    # XLA's CPU collectives can deadlock with several steps in flight.
    sync_each_step = jax.default_backend() == 'cpu' and replicas > 1
    state, update, examples = self.state, self.update, self.examples
    next_eval, sampler_state = self.next_eval, self.sampler_state
    micro = step_fn = None
    monitored = self._monitor_key is not None
    for u, j, stage, batch, local, sampler_state, epoch_in in prefetch:
      sp = stages[stage]
      if sp.micro_batch != micro:
        micro = sp.micro_batch
        step_fn = compiler.get(micro)
      last_micro = j == sp.accum_steps - 1
      slices = None
      if slice_fn is not None and last_micro and (u + 1) % noise_every == 0:
        slices = slice_fn(state, local)
      if monitored:
        batch = (*batch[:2], self.monitor)
      state, dev_metrics = step_fn(state, *batch)
      examples += replicas * micro
      if sync_each_step:
        jax.block_until_ready(dev_metrics)
      pending.append(((u, j, stage, epoch_in, examples, slices), dev_metrics))
      if len(pending) > flush_every:
        flush(keep_last=True)
      if last_micro:
        update = u + 1
        epoch_now = examples / num_train
        at_ckpt = (
          checkpoint_every and update % checkpoint_every == 0
        ) or checkpoint_due()
        at_eval = epoch_now >= next_eval - 1e-9
        if (at_ckpt or at_eval) and update < total_updates:
          flush(keep_last=False)  # the state to save or evaluate is finite
          self.state, self.update, self.examples = state, update, examples
          self.sampler_state = sampler_state
          if at_eval:
            self.evaluate()
            while next_eval <= epoch_now + 1e-9:
              next_eval += eval_every
            self.next_eval = next_eval
          if at_ckpt:
            self.save()
    self.state, self.update, self.examples = state, update, examples
    self.sampler_state = sampler_state

  def evaluate(self) -> None:
    """Evaluates the state on the evaluation split (if the task has one);
    records and logs the result."""
    if self._setup.task.eval_data is None:
      return
    values = _evaluate(
      self._setup, self._eval_fns, self.state, self._config.eval_batch_size
    )
    res = {
      'step': self.update,
      'split': 'test',
      'epoch': self.examples / self._setup.num_train,
      'examples': self.examples,
      **values,
    }
    self._writer.write(res)
    if self._monitor_key is not None:
      if self._monitor_key not in values:
        raise ValueError(
          f'plateau_metric={self._config.plateau_metric!r}: the evaluation '
          f'has no {self._monitor_key!r}; it has {sorted(values)}'
        )
      self.monitor = np.float32(values[self._monitor_key])
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
    epoch = examples / self._setup.num_train
    meta = {
      'update': update,
      'examples': examples,
      'stage': _setup.stage_of(self._setup.schedule, max(update - 1, 0)),
      'epoch': epoch,
      'sampler': list(self.sampler_state),
      'noise': [float(v) for v in self.log.noise_state],
      'next_eval': self.next_eval if math.isfinite(self.next_eval) else 1e300,
      'seed': self._config.seed,
      'log_sums': self.log.saved_sums(),
      'last_train': self.log.last_train,
      'last_test': self.last_test,
    }
    if self._monitor_key is not None and np.isfinite(self.monitor):
      meta['monitor'] = float(self.monitor)
    host = self._setup.runner.get_state(self.state)
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
    meta['metrics'] = _log_position(self._writer)
    meta['metrics_tail'] = _log_tail(self._writer)
    self._ckpt.save(update, host, meta)
    self._timer.reset()


class _StepLog:
  """Host work for finished micro-steps, a few steps behind the device.

  The step loop appends each dispatched micro-step to ``pending`` and calls
  ``flush``, which reads the metrics of the pending steps in one fetch and
  for each step raises on a non-finite loss or gradient norm (unless
  ``nan_policy='skip'``), sums the loss and accuracy, updates the
  noise-scale estimate and, every ``log_every`` updates, writes and logs a
  record. The newest step can be left pending, so the host never waits on
  the step it just dispatched.

  Attributes:
    pending: ``(info, device metrics)`` of dispatched micro-steps whose
      metrics the host has not read; ``info`` is (update index, micro-step,
      stage, epoch, examples seen after the step, slice norms or None).
    noise_every: updates between noise-scale estimates (0: none).
    noise_state: the noise-scale estimate.
    skipped: non-finite micro-steps skipped (nan_policy='skip').
    last_train: the last record written.
  """

  def __init__(
    self,
    config: TrainConfig,
    setup: _setup.Setup,
    noise_state: lnoise.NoiseScaleState,
    writer: lmetrics.MultiWriter,
  ) -> None:
    self.pending: list[Any] = []
    self.noise_every = config.noise.every if config.noise.enabled else 0
    self.noise_state = noise_state
    self.skipped = 0
    self.last_train: dict[str, Any] = {}
    self._config = config
    self._setup = setup
    self._runner = setup.runner
    self._stages = setup.plan.stages
    self._stop_non_finite = config.nan_policy != 'skip'
    self._log_every = config.log_every
    self._total_updates = setup.total_updates
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
    self._bar = lmetrics.ProgressBar(
      setup.total_updates, enabled=config.progress_bar
    )
    self._progress = lmetrics.Progress(setup.total_updates)
    self._data: Any = None  # the input pipeline, set by start

  def saved_sums(self) -> dict[str, Any]:
    """The metric sums since the last record (JSON, for a checkpoint)."""
    return {'sums': dict(self._sums), 'count': self._count}

  def restore_sums(self, saved: dict[str, Any] | None) -> None:
    """Restores :meth:`saved_sums` (None: nothing saved)."""
    if saved:
      self._sums.update(saved['sums'])
      self._count = int(saved['count'])

  def start(self, update: int, examples: int, data: Any) -> None:
    """Starts the clock of the rates; ``data.wait_seconds`` is logged."""
    self._data = data
    self._progress.start(update, examples)

  def close(self) -> None:
    """Ends the progress bar's line."""
    self._bar.close()

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
    update, micro, stage, epoch, examples, slices = info
    self.skipped = m['skipped']
    sp = self._stages[stage]
    if m['finite']:
      sums = self._sums
      for k in self._keys:
        sums[k] += m[k]
      self._count += 1
    elif self._stop_non_finite:
      raise NonFiniteError(
        f'non-finite loss {m["loss"]} or gradient norm^2 '
        f'{m["sq_norm_global"]} at step {update + 1} (update index '
        f'{update}, micro-step {micro}), epoch '
        f'{epoch:.4f}, lr {m["learning_rate"]:.6g}, batch size '
        f'{sp.batch_size}; the last checkpoint is intact (lower the LR or '
        'set nan_policy=skip)'
      )
    if micro != sp.accum_steps - 1:
      return
    u = update + 1  # updates done after this step
    if self.noise_every and u % self.noise_every == 0:
      self._track_noise(sp, slices, m)
    if u % self._log_every == 0 or u == self._total_updates:
      self._write(u, stage, examples, m)

  def _track_noise(
    self, sp: Any, slices: tuple[float, float] | None, m: dict[str, Any]
  ) -> None:
    """Updates the noise-scale estimate with an update's gradient norms.

    One device compares slice and micro-batch gradients (``slices``),
    several compare per-device and global ones (skipped if non-finite).
    """
    noise, setup = self._config.noise, self._setup
    if slices is not None:
      small, big = slices
      self.noise_state = lnoise.update(
        self.noise_state,
        small,
        big,
        sp.micro_batch // noise.num_slices,
        sp.micro_batch,
        noise.decay,
        setup.num_train,
      )
    elif setup.replicas > 1 and m['finite']:
      self.noise_state = lnoise.update(
        self.noise_state,
        m['sq_norm_local'],
        m['sq_norm_global'],
        sp.micro_batch,
        sp.micro_batch * setup.replicas,
        noise.decay,
        setup.num_train,
      )

  def _write(
    self, update: int, stage: int, examples: int, m: dict[str, Any]
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
      'data_wait_sec': self._data.wait_seconds,
      **rates,
    }
    if 'momentum' in m:
      rec['momentum'] = mom
    if 'weight_decay' in m:
      rec['weight_decay'] = m['weight_decay']
    if self._config.optimizer in SGD_MOMENTUM:
      rec['noise_g'] = _smith_g(lr, sp.batch_size, num_train, mom)
    if self._config.noise.enabled:
      rec['noise_scale'] = float(lnoise.b_simple(self.noise_state))
    self._writer.write(rec)
    # One line per record only at --v=1: experiments train many runs, and
    # thousands of step lines at INFO bury their progress; every record is
    # in metrics.jsonl anyway.
    logging.vlog(
      1,
      '%s eta=%s',
      self._line.format(rec),
      lmetrics.format_eta(rates['eta_sec']),
    )
    self._bar.update(update, f'loss={rec["loss"]:.4f}')
    self.last_train = rec
    self._sums = dict.fromkeys(self._keys, 0.0)
    self._count = 0


def _log_position(writer: lmetrics.MultiWriter) -> list[int] | None:
  """The end of metrics.jsonl (None on processes that do not write it)."""
  for w in writer.writers:
    if isinstance(w, lmetrics.JsonlWriter):
      return list(w.position)
  return None


def _log_tail(writer: lmetrics.MultiWriter) -> list[str]:
  """The last lines of metrics.jsonl (none on processes that do not write
  it)."""
  for w in writer.writers:
    if isinstance(w, lmetrics.JsonlWriter):
      return w.tail
  return []


def _smith_g(lr: float, batch: int, n: int, momentum: float) -> float:
  """``rules.noise_scale`` of the hyperparameters (NaN where undefined)."""
  from lrjax import rules

  try:
    return float(rules.noise_scale(lr, batch, n, momentum))
  except ValueError:
    return float('nan')
