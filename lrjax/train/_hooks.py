"""Hooks: what a run measures and decides, plugged into the training loop.

A hook is levanter's ``JitCallback`` in lrjax's terms: an optional part that
computes a pytree *inside* the compiled step (from the parameters, this
device's gradients and micro-batch), and a host part that receives that
pytree every few updates with the update's :class:`StepInfo`, and may log
metrics, stop the run, ask for a checkpoint, or put a new batch schedule in
force from the current update on. A hook may also feed the compiled step
a value of its own (:attr:`Hook.step_input`). Its host state goes into the
checkpoint, so a killed run resumes with its hooks exactly where they were.

The trainer's own behaviours are hooks of this protocol too (the NaN
policy's stop, the noise tracker, the plateau monitor, the checkpoint
timer, the progress bar and TensorBoard), built from the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from lrjax import metrics as lmetrics
from lrjax import noise as lnoise

# What an evaluation record holds beside the task's evaluation metrics.
EVAL_RECORD_KEYS = ('step', 'split', 'epoch', 'examples')


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or gradient norm."""


class RunInfo(NamedTuple):
  """What a hook is told when the loop starts (:meth:`Hook.start`).

  Attributes:
    schedule: the BatchSchedule in force.
    num_train: training examples N (an epoch).
    total_updates: updates of the run (``max_updates`` applied).
    start_update: updates already done (a resumed run).
    num_devices: data-parallel devices over all processes.
    seq_len: tokens per example for a language model (``Task.info``),
      else None.
  """

  schedule: Any
  num_train: int
  total_updates: int
  start_update: int
  num_devices: int
  seq_len: int | None


class StepInfo(NamedTuple):
  """One finished update, as a hook's :meth:`Hook.on_step` sees it.

  Attributes:
    update: updates done (the update just finished is ``update - 1``).
    epoch: epochs seen after it, ``examples / N``.
    examples: training examples seen after it.
    tokens: ``examples * seq_len`` for a language model, else None.
    stage: index of its stage in ``schedule``.
    batch_size: its global batch B.
    micro_batch: examples per device per micro-step.
    accum_steps: micro-steps of the update.
    num_devices: data-parallel devices.
    lr: the learning rate it was taken with.
    metrics: its last micro-step's metrics on the host (loss, the task's
      metrics, ``sq_norm_local``, ``sq_norm_global``, ``finite``,
      ``skipped`` and the injected hyperparameters).
    noise_scale: the trainer's B_simple estimate after this update (NaN
      without noise tracking); the noise tracker runs before every other
      hook.
    schedule: the BatchSchedule in force.
    num_train: training examples N.
    state: ``state()`` -> one replica of the TrainState as numpy arrays
      (a device-to-host copy; read only what the hook needs, and only in a
      ``sync`` hook does it hold exactly this update's state).
  """

  update: int
  epoch: float
  examples: int
  tokens: int | None
  stage: int
  batch_size: int
  micro_batch: int
  accum_steps: int
  num_devices: int
  lr: float
  metrics: Mapping[str, Any]
  noise_scale: float
  schedule: Any
  num_train: int
  state: Callable[[], Any]


class MicroStepInfo(NamedTuple):
  """One finished micro-step, as :meth:`Hook.on_micro_step` sees it.

  Attributes:
    update: index of its update (``update + 1`` updates are done after
      the update's last micro-step).
    micro_step: its index in the update, ``0 .. accum_steps - 1``.
    epoch: epochs seen before its update (rounded to float32, the value
      the step's epoch-domain policies get).
    batch_size: its update's global batch B.
    metrics: its metrics on the host (as :attr:`StepInfo.metrics`).
  """

  update: int
  micro_step: int
  epoch: float
  batch_size: int
  metrics: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class HookResult:
  """What a hook asks of the loop after an update (all optional).

  Attributes:
    metrics: scalars to log with the update: in its train record when one
      is written at it, else in a record of their own (``split='hook'``).
    stop: end the run after this update (evaluated and checkpointed as at
      its planned end; a resumed stopped run does not train on).
    checkpoint: checkpoint after this update.
    batch_schedule: the BatchSchedule in force from this update on. Its
      stages up to this update must be those of the schedule in force (the
      updates done keep their batch sizes, so every policy over examples
      seen stays what it was for them); its batch sizes must be among the
      hook's :attr:`Hook.batch_sizes`.
  """

  metrics: Mapping[str, float] | None = None
  stop: bool = False
  checkpoint: bool = False
  batch_schedule: Any = None


class InsideContext(NamedTuple):
  """What ``inside_step`` gets beside the parameters, gradients and batch.

  Attributes:
    grad_fn: ``grad_fn(params, batch) -> grads`` of the task's loss on
      ``batch`` (any leading size) with the step's model state and RNG key.
    mean: ``mean(tree)``: the mean of ``tree`` over the devices (the
      identity on one device).
    num_devices: data-parallel devices.
    step_input: the float32 scalar a hook feeds the step
      (:attr:`Hook.step_input`; NaN when no hook does).
  """

  grad_fn: Callable[[Any, Any], Any]
  mean: Callable[[Any], Any]
  num_devices: int
  step_input: Any = float('nan')


class Hook:
  """A measurement or decision the training loop runs every few updates.

  Subclass and override what you need. Per update the loop calls, for
  each hook whose :meth:`due` is true at it, :meth:`on_step` with the
  update's :class:`StepInfo` and the value of :meth:`inside_step` (None
  when the hook has none). The order is fixed: the trainer's NaN policy
  (``nan_policy='stop'``, per micro-step), noise tracker and plateau
  monitor first, then the hooks passed to ``train_and_evaluate`` in the
  order given, then the trainer's record writer (which takes the hooks'
  metrics), progress bar, TensorBoard writer and checkpoint timer. The
  requests of all hooks are applied after the last one ran: stop, then
  the schedule, then the checkpoint (with the periodic evaluation, which
  comes first).

  Values flow both ways between a hook and the compiled step:
  :attr:`inside_step` computes one in the step for the host, and
  :attr:`step_input` hands one from the host to every step dispatched.

  The host runs the hooks a few updates behind the device, so that it
  never waits on the step it just dispatched; a hook that sets
  :attr:`sync` makes the loop wait for the device at each of its updates,
  so that its stop or schedule takes effect at exactly that update (and
  ``info.state()`` is that update's state).

  Attributes:
    every: the hook is due every ``every`` updates (see :meth:`due`).
    sync: run before the next update is dispatched.
    batch_sizes: the batch sizes of the schedules it may ask for: the
      trainer plans them when it starts (MultiSteps wraps the optimizer
      when one of them accumulates, so the state keeps its structure) and
      compiles their micro-batch shapes in the background.
    name: key of its state in the checkpoint (unique among the hooks).
  """

  every: int = 1
  sync: bool = False
  batch_sizes: tuple[int, ...] = ()

  @property
  def name(self) -> str:
    return type(self).__name__

  def start(self, run: RunInfo) -> None:
    """Called once before the first update of a call (after restore)."""

  def due(self, update: int) -> bool:
    """Whether the hook runs after ``update`` updates are done."""
    return update % self.every == 0

  # Set to a method ``inside_step(params, grads, batch, ctx) -> pytree`` to
  # compute a value inside the compiled step: per device (``grads`` and
  # ``batch`` are this device's, before the all-reduce), only at the last
  # micro-step of an update where the hook is due, then averaged over the
  # devices (floating leaves) and handed to ``on_step`` on the host.
  inside_step: Callable[..., Any] | None = None

  # Set to a method ``step_input() -> float`` to feed the compiled step:
  # the loop calls it as it dispatches each micro-step and passes the
  # value, a float32 scalar, as the step's ``monitor`` argument. The
  # optimizer reads it as its ``value`` (what the plateau policies
  # decide on) when ``plateau_metric`` is an evaluation metric
  # ('test_<name>', fed by the trainer's PlateauMonitor), and every
  # ``inside_step`` as ``ctx.step_input``. One channel, so at most one
  # hook of a run feeds it; the value must be the same on every process.
  step_input: Callable[[], Any] | None = None

  def on_step(self, info: StepInfo, value: Any) -> HookResult | None:
    """Host work after a due update; returns what it asks of the loop."""
    del info, value
    return None

  def on_micro_step(self, info: MicroStepInfo) -> None:
    """Host work after every micro-step, before its update's ``on_step``
    (and before its metrics enter the record's averages); it may raise to
    end the run. The loop calls it only on hooks that override it."""
    del info

  def on_record(self, record: Mapping[str, Any]) -> None:
    """Sees each record as it is written to ``metrics.jsonl``, in order.

    The train record every ``log_every`` updates and at the last (with the
    hooks' metrics), a record of the hooks' metrics at their other updates
    (``split='hook'``) and each evaluation (``split='test'``); read only.
    Called on every hook whether due or not, on every process (each
    builds the same evaluation records; only the main one writes the
    file, and a train record's timing fields differ between processes).
    """
    del record

  def on_checkpoint(self, update: int) -> None:
    """Called after a checkpoint of ``update`` updates was written,
    whatever asked for it (the config's ``checkpoint_every``, a hook, the
    run's end)."""
    del update

  def close(self) -> None:
    """Called once when the call ends, also on an error."""

  def state(self) -> Any:
    """The hook's host state (JSON), saved with every checkpoint."""
    return None

  def restore(self, state: Any) -> None:
    """Restores :meth:`state` from the checkpoint resumed from."""
    del state


def as_hook_list(hooks: Any) -> list[Hook]:
  """Checks the hooks passed to the trainer (types and unique names)."""
  out = list(hooks)
  names = set()
  for h in out:
    if not isinstance(h, Hook):
      raise TypeError(
        f'hooks: {h!r} is not a lrjax.train.Hook; subclass it and override '
        'on_step (and inside_step, state, restore as needed)'
      )
    if not (isinstance(h.every, int) and h.every >= 1):
      raise ValueError(f'hooks: {h.name}.every={h.every!r} must be an int >= 1')
    if h.name in names:
      raise ValueError(
        f'hooks: two hooks are named {h.name!r}; give each a unique name '
        '(their states are checkpointed by name)'
      )
    names.add(h.name)
  feeders = [h.name for h in out if h.step_input is not None]
  if len(feeders) > 1:
    raise ValueError(
      f'hooks: {feeders} all feed the step (step_input); the step takes '
      'one input, so at most one hook may set step_input'
    )
  return out


# Checkpoint meta keys of states saved before they were hooks' states.
_LEGACY_STATES = {'noise': 'noise', 'plateau_monitor': 'monitor'}


def restore_hooks(hooks: list[Hook], meta: Mapping[str, Any]) -> None:
  """Gives each hook its state from a checkpoint's ``meta`` (a hook new to
  the run, or a run without a checkpoint, starts afresh)."""
  saved = dict(meta.get('hooks', {}))
  for name, key in _LEGACY_STATES.items():
    if key in meta and name not in saved:
      saved[name] = meta[key]
  for h in hooks:
    if saved.get(h.name) is not None:
      h.restore(saved[h.name])


# The trainer's own hooks ----------------------------------------------------


class NonFiniteStop(Hook):
  """``nan_policy='stop'``: raises :class:`NonFiniteError` at the first
  micro-step with a non-finite loss or gradient norm, naming its step,
  micro-step, epoch, LR and batch size. It runs in the host's flush, before
  anything is evaluated or checkpointed after that step, so the last
  checkpoint stays intact."""

  @property
  def name(self) -> str:
    return 'nan_policy'

  def due(self, update: int) -> bool:
    return False  # it sees the micro-steps

  def on_micro_step(self, info: MicroStepInfo) -> None:
    m = info.metrics
    if not m['finite']:
      raise NonFiniteError(
        f'non-finite loss {m["loss"]} or gradient norm^2 '
        f'{m["sq_norm_global"]} at step {info.update + 1} (update index '
        f'{info.update}, micro-step {info.micro_step}), epoch '
        f'{info.epoch:.4f}, lr {m["learning_rate"]:.6g}, batch size '
        f'{info.batch_size}; the last checkpoint is intact (lower the LR or '
        'set nan_policy=skip)'
      )


class NoiseTracker(Hook):
  """The gradient noise scale B_simple (McCandlish et al. 2018), tracked.

  Every ``every`` updates it updates an EMA of the unbiased estimates of
  :math:`|G|^2` and :math:`\\mathrm{tr}(\\Sigma)` from two batch sizes
  (:func:`lrjax.noise.update`). With several devices the small batch is a
  device's micro-batch and the big one the all-reduced micro-batch (the
  step's own ``sq_norm_local`` / ``sq_norm_global``, nearly free); with
  one device it slices the micro-batch into ``num_slices`` parts inside
  the compiled step (``inside_step``). Non-finite norms are skipped.

  Args:
    every: updates between estimates.
    decay: EMA decay.
    num_slices: slices of a micro-batch on one device (<= 1: none).
    num_devices: data-parallel devices.
    num_train: training examples (the estimator's bias terms).
  """

  def __init__(
    self,
    every: int,
    decay: float,
    num_slices: int,
    num_devices: int,
    num_train: int,
  ) -> None:
    self.every = every
    self.noise_state = lnoise.init()
    self._decay = decay
    self._slices = num_slices if num_devices == 1 and num_slices > 1 else 0
    self._num_train = num_train
    if self._slices:
      self.inside_step = self._sliced_norms

  @property
  def name(self) -> str:
    return 'noise'

  def _sliced_norms(self, params, grads, batch, ctx):
    del grads
    r = lnoise.sliced_sq_norms(ctx.grad_fn, params, batch, self._slices)
    return r.sq_norm_small, r.sq_norm_big

  def b_simple(self) -> float:
    """The current estimate (NaN before two finite measurements)."""
    return float(lnoise.b_simple(self.noise_state))

  def on_step(self, info: StepInfo, value: Any) -> None:
    micro, m = info.micro_batch, info.metrics
    if value is not None:
      small, big = (float(v) for v in value)
      self.noise_state = lnoise.update(
        self.noise_state,
        small,
        big,
        micro // self._slices,
        micro,
        self._decay,
        self._num_train,
      )
    elif info.num_devices > 1 and m['finite']:
      self.noise_state = lnoise.update(
        self.noise_state,
        m['sq_norm_local'],
        m['sq_norm_global'],
        micro,
        micro * info.num_devices,
        self._decay,
        self._num_train,
      )

  def state(self) -> list[float]:
    return [float(v) for v in self.noise_state]

  def restore(self, state: Any) -> None:
    g2, trace, weight, count = state
    self.noise_state = lnoise.NoiseScaleState(
      np.float32(g2), np.float32(trace), np.float32(weight), np.int32(count)
    )


class PlateauMonitor(Hook):
  """Feeds the step the latest evaluation of an evaluation metric, the
  value the plateau policies decide on under ``plateau_metric='test_<name>'``.

  It keeps the ``<name>`` of each evaluation record (``on_record``) and
  hands it to every step dispatched after it (:attr:`Hook.step_input`),
  NaN before the first evaluation; its value is checkpointed.

  Args:
    metric: ``'test_<name>'``, with ``<name>`` one of the task's
      evaluation metrics.

  Raises:
    ValueError: (at an evaluation) when the evaluation has no ``<name>``.

  Examples:
    >>> monitor = PlateauMonitor('test_loss')
    >>> float(monitor.step_input())
    nan
    >>> monitor.on_record({'step': 4, 'split': 'test', 'loss': 0.5})
    >>> float(monitor.step_input()), monitor.state()
    (0.5, 0.5)
  """

  def __init__(self, metric: str) -> None:
    if not metric.startswith('test_'):
      raise ValueError(f"{metric=} must be 'test_<name>'")
    self._metric = metric
    self._key = metric[len('test_') :]
    self._value = np.float32(np.nan)

  @property
  def name(self) -> str:
    return 'plateau_monitor'

  def due(self, update: int) -> bool:
    return False  # it sees the evaluation records

  def step_input(self) -> np.float32:
    return self._value

  def on_record(self, record: Mapping[str, Any]) -> None:
    if record.get('split') != 'test':
      return
    if self._key not in record:
      raise ValueError(
        f'plateau_metric={self._metric!r}: the evaluation has no '
        f'{self._key!r}; it has '
        f'{sorted(k for k in record if k not in EVAL_RECORD_KEYS)}'
      )
    self._value = np.float32(record[self._key])

  def state(self) -> float | None:
    return float(self._value) if np.isfinite(self._value) else None

  def restore(self, state: Any) -> None:
    self._value = np.float32(state)


class ProgressBarHook(Hook):
  """The console progress bar (``TrainConfig.progress_bar``), moved at
  each train record (every ``log_every`` updates and at the last)."""

  def __init__(self, total_updates: int, log_every: int, enabled: bool) -> None:
    self._bar: lmetrics.ProgressBar | None = lmetrics.ProgressBar(
      total_updates, enabled=enabled
    )
    self._total = total_updates
    self._log_every = log_every

  @property
  def name(self) -> str:
    return 'progress_bar'

  def due(self, update: int) -> bool:
    return update % self._log_every == 0 or update == self._total

  def on_step(self, info: StepInfo, value: Any) -> None:
    if self._bar is not None:
      self._bar.update(info.update, f'loss={info.metrics["loss"]:.4f}')

  def close(self) -> None:
    """Ends the bar's line (once: the loop closes it when the steps end,
    before the final evaluation logs)."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None


class TensorBoardHook(Hook):
  """TensorBoard event files (``TrainConfig.tensorboard``): each record's
  numbers as scalars under ``train/``, ``test/`` or ``hook/``, at its step,
  in ``logdir`` (:class:`lrjax.metrics.TensorBoardWriter`, which raises
  ImportError without tensorboardX).
  """

  def __init__(self, logdir: str) -> None:
    self._writer = lmetrics.TensorBoardWriter(logdir)

  @property
  def name(self) -> str:
    return 'tensorboard'

  def due(self, update: int) -> bool:
    return False  # it sees the records, not the steps

  def on_record(self, record: Mapping[str, Any]) -> None:
    self._writer.write(record)

  def close(self) -> None:
    self._writer.close()


def host_values(runner: Any, tree: Any) -> Any:
  """One replica of an inside-step value as numpy arrays."""
  return jax.tree.map(lambda a: np.asarray(runner.replica(a)), tree)
