"""``train_and_evaluate``: the training loop around the compiled steps."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from absl import logging

from lrjax import metrics as lmetrics
from lrjax import noise as lnoise
from lrjax.data import Prefetcher, Sampler, process_slice
from lrjax.train import _setup
from lrjax.train._checkpoint import Checkpointer
from lrjax.train._config import TrainConfig
from lrjax.train._parallel import Runner
from lrjax.train._step import (
  create_train_state,
  cross_entropy,
  make_eval_fn,
  make_optimizer,
  make_train_body,
)

_LOG_KEYS = (
  'step',
  'epoch',
  'examples',
  'loss',
  'accuracy',
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


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a run returns.

  Attributes:
    train_metrics: the last logged train metrics (step record).
    test_metrics: the last evaluation (loss, accuracy, top5_accuracy).
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
    skipped_updates: non-finite micro-steps skipped (nan_policy='skip').
    resumed_from: update of the checkpoint this call resumed from (or None).
  """

  train_metrics: dict[str, Any]
  test_metrics: dict[str, Any]
  num_updates: int
  examples_seen: int
  wall_time: float
  compile_seconds: dict[int, float]
  num_compiles: int
  loop_seconds: float
  loop_updates: int
  metrics_path: str
  params: Any
  skipped_updates: int
  resumed_from: int | None


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or gradient norm."""


class _Inline:
  """Batches produced on the main thread (``prefetch=0``)."""

  wait_seconds = 0.0

  def __init__(self, iterable: Any) -> None:
    self._it = iter(iterable)

  def __iter__(self) -> Any:
    return self._it

  def close(self) -> None:
    pass


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


def _smith_g(lr: float, batch: int, n: int, momentum: float) -> float:
  from lrjax import rules

  try:
    return float(rules.noise_scale(lr, batch, n, momentum))
  except ValueError:
    return float('nan')


def train_and_evaluate(config: TrainConfig, workdir: str) -> TrainResult:
  """Trains and evaluates ``config`` in ``workdir``; resumes if possible.

  Validates the config (before anything compiles), builds the data, the
  model, the optimizer and the accumulation plan, compiles one step per
  distinct micro-batch shape ahead of its first use, and runs the steps,
  logging the previous step's metrics so the host never waits on the device
  just to log. On the CPU backend with several devices each step is awaited
  before the next is dispatched (XLA's CPU collectives can deadlock
  otherwise). Writes ``config.json``, ``metrics.jsonl`` and checkpoints
  under ``workdir``; a second call with the same workdir resumes from the
  newest checkpoint.

  Args:
    config: the run's configuration.
    workdir: output directory (created).

  Returns:
    A TrainResult.

  Raises:
    ValueError: for a bad config value (naming the field and the fix).
    NonFiniteError: for a non-finite loss or gradient norm under
      ``nan_policy='stop'`` (naming step, epoch, LR and batch size); the
      last checkpoint stays intact.
  """
  wall_start = time.perf_counter()
  config.validate()
  _initialize_distributed(config)
  config.validate(num_local_devices=jax.local_device_count())
  if config.compilation_cache_dir:
    _enable_cache(config.compilation_cache_dir)
  is_main = jax.process_index() == 0
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)

  train_ds, test_ds = _setup.load_datasets(config)
  n_train = train_ds.num_examples
  schedule = _setup.batch_schedule(config, n_train)
  devices = _setup.select_devices(config)
  replicas = len(devices)
  plan = _setup.make_plan(schedule, replicas, config.max_device_batch)
  lr_p = _setup.policy(config.lr, 'lr')
  mom_p = _setup.policy(config.momentum, 'momentum')
  wd_p = _setup.policy(config.weight_decay, 'weight_decay')
  if config.noise.enabled and replicas == 1 and config.noise.num_slices > 1:
    for s in plan.stages:
      if s.micro_batch % config.noise.num_slices:
        raise ValueError(
          f'noise.num_slices={config.noise.num_slices} must divide the '
          f'micro-batch {s.micro_batch}; choose a divisor'
        )
  if config.noise.enabled and replicas == 1 and config.noise.num_slices == 1:
    logging.warning(
      'noise.enabled with one device and noise.num_slices=1 cannot estimate '
      'the noise scale (noise_scale stays NaN); set noise.num_slices > 1'
    )
  total_updates = schedule.num_updates
  if config.max_updates is not None:
    total_updates = min(total_updates, config.max_updates)

  from lrjax import models

  model = models.get(
    config.model, num_classes=train_ds.num_classes, **config.model_kwargs
  )
  skip = config.nan_policy == 'skip'
  tx = make_optimizer(
    config.optimizer,
    learning_rate=_setup.as_schedule(lr_p, schedule),
    momentum=_setup.as_schedule(mom_p, schedule),
    weight_decay=_setup.as_schedule(wd_p, schedule),
    b2=config.b2,
    every_k_schedule=plan.every_k_schedule if plan.needs_accumulation else None,
    skip_non_finite=skip,
  )
  image_shape = tuple(train_ds.image_shape)
  host_state = create_train_state(model, tx, image_shape, config.seed)
  runner = Runner(
    make_train_body(model, tx, skip_non_finite=skip), devices, config.parallel
  )

  if is_main:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json())

  ckpt = None
  meta: dict[str, Any] = {}
  resumed_from = None
  if config.keep_checkpoints > 0:
    ckpt = Checkpointer(
      os.path.join(workdir, 'checkpoints'), config.keep_checkpoints
    )
    if ckpt.latest_step() is not None:
      host_state, meta = ckpt.restore(host_state)
      resumed_from = int(meta['update'])
      logging.info('Resumed from the checkpoint of update %d', resumed_from)

  update = int(meta.get('update', 0))
  examples = int(meta.get('examples', 0))
  decay = config.noise.decay

  sampler = Sampler(n_train, seed=config.seed)
  if 'sampler' in meta:
    sampler.restore(tuple(meta['sampler']))
  noise_state = lnoise.init()
  if 'noise' in meta:
    g2, trace, weight, count = meta['noise']
    noise_state = lnoise.NoiseScaleState(
      np.float32(g2), np.float32(trace), np.float32(weight), np.int32(count)
    )
  next_eval = float(meta.get('next_eval', config.eval_every or math.inf))
  state = runner.put_state(host_state)
  del host_state
  logging.info(
    'Training %s on %s: %d updates, %d device(s) (%s, %d process(es)), '
    'stages: %s',
    config.model,
    config.dataset,
    total_updates,
    replicas,
    runner.mode,
    jax.process_count(),
    ', '.join(
      f'{s.batch_size} = {replicas} x {s.micro_batch} x {s.accum_steps} '
      f'for {s.num_updates} updates'
      for s in plan.stages
    ),
  )

  # Compile the first stage's shape now, the others in the background.
  first_stage = _setup.stage_of(schedule, update)
  order = [plan.stages[first_stage].micro_batch] + [
    m for m in plan.micro_batches if m != plan.stages[first_stage].micro_batch
  ]
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
  compiled: dict[int, Any] = {
    order[0]: runner.compile(state, order[0], image_shape)
  }
  futures = {
    m: pool.submit(runner.compile, state, m, image_shape) for m in order[1:]
  }

  sync_each_step = jax.default_backend() == 'cpu' and replicas > 1
  eval_fn = jax.jit(make_eval_fn(model, train_ds.num_classes))
  slice_fn = (
    _make_slice_fn(model, config, runner)
    if _use_slices(config, replicas)
    else None
  )

  writers: list[Any] = []
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  if is_main:
    writers.append(lmetrics.JsonlWriter(metrics_path))
    if config.tensorboard:
      writers.append(lmetrics.TensorBoardWriter(os.path.join(workdir, 'tb')))
  writer = lmetrics.MultiWriter(writers)
  log_line = lmetrics.LoggingWriter(_LOG_KEYS)
  bar = lmetrics.ProgressBar(total_updates, enabled=config.progress_bar)
  progress = lmetrics.Progress(total_updates)

  pi, pc = jax.process_index(), jax.process_count()
  augment_seed = config.seed if config.augment else None

  def batches(update0: int, sampler_) -> Iterator[Any]:
    """Micro-batches from update0 on, with the sampler state after each."""
    for u in range(update0, total_updates):
      stage = _setup.stage_of(schedule, u)
      sp = plan.stages[stage]
      global_micro = replicas * sp.micro_batch
      epoch_in = schedule.epoch_at_host(u)
      epoch32 = float(np.float32(epoch_in))
      for j in range(sp.accum_steps):
        idx, ep = sampler_.next_with_epochs(global_micro)
        if pc > 1:
          idx, ep = process_slice(idx, pi, pc), process_slice(ep, pi, pc)
        local = train_ds.take(idx, augment_seed=augment_seed, epochs=ep)
        yield (
          u,
          j,
          stage,
          runner.put_batch(local, epoch_in),
          local if slice_fn is not None else None,
          sampler_.state,  # an immutable tuple of ints
          epoch32,
        )

  def evaluate(update_: int) -> dict[str, Any]:
    variables = {'params': jax.tree.map(runner.replica, state.params)}
    if jax.tree.leaves(state.batch_stats):
      variables['batch_stats'] = jax.tree.map(runner.replica, state.batch_stats)
    bs = min(config.eval_batch_size, test_ds.num_examples)
    sums: dict[str, float] = {}
    for start in range(0, test_ds.num_examples, bs):
      idx = np.arange(start, min(start + bs, test_ds.num_examples))
      b = test_ds.take(idx)
      pad = bs - len(idx)
      mask = np.concatenate([np.ones(len(idx), bool), np.zeros(pad, bool)])
      img = np.concatenate(
        [b['image'], np.zeros((pad, *image_shape), np.float32)]
      )
      lab = np.concatenate([b['label'], np.zeros(pad, np.int32)])
      out = jax.device_get(eval_fn(variables, img, lab, mask))
      for k, v in out.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    count = sums.pop('count')
    res = {
      'step': update_,
      'split': 'test',
      'epoch': examples / n_train,
      'examples': examples,
      'loss': sums['loss'] / count,
      'accuracy': sums['correct'] / count,
    }
    if 'correct5' in sums:
      res['top5_accuracy'] = sums['correct5'] / count
    writer.write(res)
    logging.info(
      'eval step=%d epoch=%.3f test_loss=%.4f test_accuracy=%.4f',
      update_,
      res['epoch'],
      res['loss'],
      res['accuracy'],
    )
    return res

  def save(update_: int, sampler_state: tuple[int, ...]) -> None:
    if ckpt is None:
      return
    m = {
      'update': update_,
      'examples': examples,
      'stage': _setup.stage_of(schedule, max(update_ - 1, 0)),
      'epoch': examples / n_train,
      'sampler': list(sampler_state),
      'noise': [float(v) for v in noise_state],
      'next_eval': next_eval if math.isfinite(next_eval) else 1e300,
      'seed': config.seed,
    }
    host = runner.get_state(state)
    if not all(np.all(np.isfinite(a)) for a in jax.tree.leaves(host.params)):
      raise NonFiniteError(
        f'non-finite parameters at update {update_}, epoch '
        f'{examples / n_train:.4f}; not checkpointed, the last checkpoint is '
        'intact (lower the LR or set nan_policy=skip)'
      )
    ckpt.save(update_, host, m)

  last_train: dict[str, Any] = {}
  last_test: dict[str, Any] = {}
  acc = [0.0, 0.0, 0]  # loss and accuracy sums, finite micro-steps
  if config.prefetch > 0:
    prefetch = Prefetcher(batches(update, sampler), config.prefetch)
  else:
    prefetch = _Inline(batches(update, sampler))
  progress.start(update, examples)
  loop_start = time.perf_counter()
  updates_at_start = update
  skipped = 0
  # (info, device metrics) of dispatched steps whose metrics the host has
  # not read yet. They are read in one fetch every few steps, the newest
  # step excepted, so the host never waits on the step it just dispatched.
  pending: list[Any] = []
  log_every = config.log_every
  checkpoint_every = config.checkpoint_every
  flush_every = min(log_every, 64)
  last_sampler_state = sampler.state
  noise_every = config.noise.every if config.noise.enabled else 0

  def flush(keep_last: bool) -> None:
    """Host work for the pending steps (all, or all but the newest)."""
    nonlocal pending
    todo, pending = (pending[:-1], pending[-1:]) if keep_last else (pending, [])
    if todo:
      got = runner.metrics_many([v for _, v in todo])
      for (info, _), m in zip(todo, got, strict=True):
        handle(info, m)

  def handle(info: tuple[Any, ...], m: dict[str, Any]) -> None:
    """Host work for one finished micro-step.

    ``info`` is (update index, micro-step, stage, epoch, examples seen
    after the step, slice norms or None).
    """
    nonlocal last_train, skipped, noise_state
    update_, micro, stage, epoch_, examples_, slices = info
    skipped = m['skipped']
    sp = plan.stages[stage]
    if m['finite']:
      acc[0] += m['loss']
      acc[1] += m['accuracy']
      acc[2] += 1
    elif not skip:
      raise NonFiniteError(
        f'non-finite loss {m["loss"]} or gradient norm^2 '
        f'{m["sq_norm_global"]} at step {update_ + 1} (update index '
        f'{update_}, micro-step {micro}), epoch '
        f'{epoch_:.4f}, lr {m["learning_rate"]:.6g}, batch size '
        f'{sp.batch_size}; the last checkpoint is intact (lower the LR or '
        'set nan_policy=skip)'
      )
    if micro != sp.accum_steps - 1:
      return
    u = update_ + 1  # updates done after this step
    if noise_every and u % noise_every == 0:
      if slices is not None:
        small, big = slices
        b_small = sp.micro_batch // config.noise.num_slices
        noise_state = lnoise.update(
          noise_state, small, big, b_small, sp.micro_batch, decay, n_train
        )
      elif replicas > 1 and m['finite']:
        noise_state = lnoise.update(
          noise_state,
          m['sq_norm_local'],
          m['sq_norm_global'],
          sp.micro_batch,
          sp.micro_batch * replicas,
          decay,
          n_train,
        )
    if u % log_every == 0 or u == total_updates:
      rates = progress.update(u, examples_)
      n = max(acc[2], 1)
      lr = m['learning_rate']
      mom = m.get('momentum', float('nan'))
      rec = {
        'step': u,
        'epoch': examples_ / n_train,
        'examples': examples_,
        'loss': acc[0] / n,
        'accuracy': acc[1] / n,
        'lr': lr,
        'momentum': mom,
        'batch_size': sp.batch_size,
        'accum_steps': sp.accum_steps,
        'micro_batch': sp.micro_batch,
        'stage': stage,
        'grad_sq_norm': m['sq_norm_global'],
        'noise_g': _smith_g(lr, sp.batch_size, n_train, mom),
        'skipped': skipped,
        'data_wait_sec': prefetch.wait_seconds,
        **rates,
      }
      if 'weight_decay' in m:
        rec['weight_decay'] = m['weight_decay']
      if config.noise.enabled:
        rec['noise_scale'] = float(lnoise.b_simple(noise_state))
      writer.write(rec)
      logging.info(
        '%s eta=%s',
        log_line.format(rec),
        lmetrics.format_eta(rates['eta_sec']),
      )
      bar.update(u, f'loss={rec["loss"]:.4f}')
      last_train = rec
      acc[:] = [0.0, 0.0, 0]

  try:
    for u, j, stage, batch, local, sampler_state, epoch_in in prefetch:
      last_sampler_state = sampler_state
      sp = plan.stages[stage]
      micro = sp.micro_batch
      step_fn = compiled.get(micro)
      if step_fn is None:
        step_fn = compiled[micro] = futures.pop(micro).result()
      last_micro = j == sp.accum_steps - 1
      slices = None
      if slice_fn is not None and last_micro and (u + 1) % noise_every == 0:
        slices = slice_fn(state, local)
      state, dev_metrics = step_fn(state, *batch)
      examples += replicas * micro
      if sync_each_step:
        jax.block_until_ready(dev_metrics)
      pending.append(((u, j, stage, epoch_in, examples, slices), dev_metrics))
      if len(pending) > flush_every:
        flush(keep_last=True)
      if last_micro:
        update = u + 1
        epoch_now = examples / n_train
        at_ckpt = checkpoint_every and update % checkpoint_every == 0
        at_eval = epoch_now >= next_eval - 1e-9
        if (at_ckpt or at_eval) and update < total_updates:
          flush(keep_last=False)  # the state to save or evaluate is finite
          if at_eval:
            last_test = evaluate(update)
            while next_eval <= epoch_now + 1e-9:
              next_eval += config.eval_every
          if at_ckpt:
            save(update, sampler_state)
    flush(keep_last=False)
    loop_seconds = time.perf_counter() - loop_start
    bar.close()
    if update >= total_updates:
      last_test = evaluate(update)
      if resumed_from != update:
        save(update, last_sampler_state)
  finally:
    prefetch.close()
    pool.shutdown(wait=False, cancel_futures=True)
    writer.flush()
    writer.close()
    if ckpt is not None:
      ckpt.close()

  params = jax.tree.map(lambda a: np.array(runner.replica(a)), state.params)
  return TrainResult(
    train_metrics=last_train,
    test_metrics=last_test,
    num_updates=update,
    examples_seen=examples,
    wall_time=time.perf_counter() - wall_start,
    compile_seconds=dict(runner.compile_seconds),
    num_compiles=runner.num_compiles,
    loop_seconds=loop_seconds,
    loop_updates=update - updates_at_start,
    metrics_path=metrics_path,
    params=params,
    skipped_updates=skipped,
    resumed_from=resumed_from,
  )


def _use_slices(config: TrainConfig, replicas: int) -> bool:
  return config.noise.enabled and replicas == 1 and config.noise.num_slices > 1


def _make_slice_fn(model: Any, config: TrainConfig, runner: Runner) -> Any:
  """One-device noise estimate: squared norms of slice and full gradients."""
  num_slices = config.noise.num_slices

  @jax.jit
  def norms(params, batch_stats, images, labels):
    def loss_fn(p, batch):
      return cross_entropy(
        model, p, batch_stats, batch['image'], batch['label']
      )[0]

    r = lnoise.sliced_sq_norms(
      jax.grad(loss_fn), params, {'image': images, 'label': labels}, num_slices
    )
    return r.sq_norm_small, r.sq_norm_big

  def fn(state, local):
    params = jax.tree.map(runner.replica, state.params)
    stats = jax.tree.map(runner.replica, state.batch_stats)
    small, big = jax.device_get(
      norms(params, stats, local['image'], local['label'])
    )
    return float(small), float(big)

  return fn
