"""Typed, validated configuration of a training run."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import numbers
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

OPTIMIZERS = ('sgd', 'nesterov', 'adam', 'adamw', 'lamb', 'lars')
ADAM_FAMILY = ('adam', 'adamw', 'lamb')
# Where Smith et al.'s SGD noise scale g = eps N / (B (1 - m)) is defined.
SGD_MOMENTUM = ('sgd', 'nesterov')
PARALLEL = ('pmap', 'shard_map')
NAN_POLICIES = ('stop', 'skip')


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
  """Gradient noise scale estimation (McCandlish et al. 2018).

  In data-parallel training the per-device gradient is the small batch and the
  all-reduced gradient the big batch, so the estimate costs one extra squared
  norm per step. On one device, ``num_slices > 1`` splits every
  ``every``-th batch into slices instead.

  **Which gradient.** The tracked gradient is the gradient of the task's
  loss on the batch, before the optimizer's transformations: with
  ``weight_decay`` the L2 term :math:`\\lambda w` that the optimizer adds
  (``optax.add_decayed_weights``, or AdamW's decoupled decay) is not in it.
  The term is the same for every example, so it leaves
  :math:`\\mathrm{tr}(\\Sigma)` unchanged but would add to :math:`|G|^2`:
  the logged value is the data loss's noise scale

  .. math::
     B_\\text{simple} = \\frac{\\mathrm{tr}(\\Sigma)}{|G|^2}, \\quad
     G = \\nabla L_\\text{data},

  not that of the regularised objective,
  :math:`\\mathrm{tr}(\\Sigma) / |G + \\lambda w|^2`; the two differ by
  the factor :math:`|G + \\lambda w|^2 / |G|^2` (either way: near a
  minimum of the regularised objective :math:`G \\approx -\\lambda w`).

  **The EMA's trade-off.** One estimate of B_simple is a ratio of two noisy
  estimates and scatters widely once B_simple is well above the batch. An
  EMA of decay :math:`d` averages about :math:`(1 + d) / (1 - d)` estimates
  (39 at 0.95) but trails a changing B_simple by :math:`e\\,d / (1 - d)`
  updates, :math:`e` = ``every`` (19 at 0.95 and :math:`e = 1`): raise
  ``decay`` for a steadier value, lower it to follow changes faster.
  Measured on digits (``benchmarks/bench_noise_defaults.py``,
  BUILD.md), one logged reading at 0.95 scatters by -27%/+43% (10th/90th
  percentile) when B_simple is 2.4x the batch, +-20% at 1.3x; 0.98 halves
  that but trails 49 updates. The defaults (0.95, every update, 4 slices
  in the experiments) keep the trail under the adaptive batch rule's
  2-epoch decisions up to 4x the starting batch there. Tracking every
  update costs about one more forward-backward pass on one device, but at
  equal decay skipping updates scatters more: the batches of an epoch are
  disjoint, so consecutive readings' errors partly cancel.

  Attributes:
    enabled: estimate the noise scale and log ``noise_scale`` (B_simple).
    decay: EMA decay of the two unbiased estimates, in [0, 1).
    every: estimate every this many updates (>= 1).
    num_slices: slices of the batch on one device (>= 1; 1 = no slicing).

  References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of
    Large-Batch Training".
  """

  enabled: bool = False
  decay: float = 0.95
  every: int = 1
  num_slices: int = 1

  def validate(self) -> None:
    """Raises ValueError naming the field and the fix."""
    if not 0.0 <= self.decay < 1.0:
      raise ValueError(f'noise.decay={self.decay!r} must be in [0, 1)')
    if int(self.every) != self.every or self.every < 1:
      raise ValueError(f'noise.every={self.every!r} must be an integer >= 1')
    if int(self.num_slices) != self.num_slices or self.num_slices < 1:
      raise ValueError(
        f'noise.num_slices={self.num_slices!r} must be an integer >= 1'
      )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a training run; validated before compilation.

  Progress-valued hyperparameters (``lr``, ``momentum``, ``weight_decay``)
  are policies over **epochs** (text form, a ``lrjax.schedules.Policy``, or a
  float for a constant) unless they say they count updates (see ``lr``:
  ``in_updates``, ``noam``, or a plain optax schedule); the trainer turns
  epoch policies into per-update optax
  schedules for the batch schedule with ``lrjax.batch.per_update``, so they
  do not drift under batch ramps or gradient accumulation.

  What is trained is a task (``lrjax.train.Task``, built for the named
  models and datasets by ``lrjax.tasks``), passed to ``train_and_evaluate``
  beside the config: the config says only how to train it.

  The optimizer is a name (``'sgd'``, ``'nesterov'``, ``'adam'``,
  ``'adamw'``, ``'lamb'``, ``'lars'``) or any optax optimizer as a factory
  of its learning rate::

    TrainConfig(optimizer=lambda learning_rate: optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(learning_rate, b1=0.9, b2=0.95, weight_decay=0.1)))

  The trainer calls the factory inside ``optax.inject_hyperparams`` with the
  LR in force (a scalar, from ``lr`` read against the batch schedule), so
  the LR is logged, driven by examples seen under batch ramps, accumulated
  through ``optax.MultiSteps`` and checkpointed like a named optimizer's.
  A factory that also has a parameter named ``momentum`` or
  ``weight_decay`` receives those policies' values in force too; one that
  has not must leave them at their defaults (0.9 and 0.0), which then do
  not apply (and are not recorded in ``config.json``).

  Attributes:
    batch: batch schedule: text form (``lrjax.batch.parse``), a
      ``BatchSchedule``, or an int (constant batch for ``num_epochs``).
    num_epochs: epochs for an int ``batch`` (ignored otherwise).
    lr: the learning rate: a float, policy text, a ``lrjax.schedules``
      Policy, a plateau policy, or a plain callable. Units, never guessed:
      a Policy with unit 'epoch' or none (text without ``in_updates``) is a
      function of epochs, converted with ``lrjax.batch.per_update``; a
      Policy with unit 'update' (``in_updates(...)``, ``noam``) and a plain
      callable that is not a lrjax policy (an optax schedule such as
      ``optax.cosine_decay_schedule(0.1, 1000)``, a lambda of the count)
      are functions of the real optimizer update count, as optax defines
      it (0 at the first update; under accumulation, one count per real
      update, not per micro-batch), used as they are. Durations in the
      text may carry a unit (``2ep``, ``500up``, ``64000ex``, and
      ``110Kitok`` with a ``seq=`` in ``batch``): they are converted
      exactly against the batch schedule (``lrjax.schedules.parse``).
      ``validate`` warns once when a length, milestone or boundary ends
      after the run, or a warmup does not end before it.
    momentum: momentum, read like ``lr``; Adam-family ``b1``.
    optimizer: one of 'sgd', 'nesterov', 'adam', 'adamw', 'lamb', 'lars', or
      a factory ``learning_rate -> optax.GradientTransformation`` (see
      above).
    clip_norm: clip the gradient to this global norm before the optimizer
      (``optax.clip_by_global_norm``; None = no clipping). With a factory it
      is applied before the factory's own transformations.
    weight_decay: weight decay, read like ``lr``; L2 added to
      the gradient for sgd/nesterov/adam, decoupled for adamw/lamb, added
      to the gradient before the trust ratio for lars (``optax.lars``).
    b2: second-moment decay of the Adam family (named optimizers only).
    max_device_batch: largest per-device micro-batch; larger batches are
      accumulated with ``optax.MultiSteps`` (None = no cap).
    accumulate: None: wrap the optimizer in ``optax.MultiSteps`` only when
      some stage accumulates; True: always (the optimizer state then has the
      same structure whatever the schedule, as a run continued with other
      batch sizes needs; costs one parameter-sized accumulator); False:
      never (an error if a stage would accumulate).
    num_devices: local devices to use (None = all local devices).
    parallel: 'pmap' or 'shard_map' (``jax.jit(jax.shard_map(...))``).
    seed: seed of parameters, data order and augmentation.
    augment: use the dataset's deterministic augmentation.
    log_every: write metrics.jsonl (and log a line at absl verbosity 1,
      `--v=1`) every this many updates.
    prefetch: batches prepared ahead in a background thread (0 = on the
      main thread; best for small in-memory datasets and tiny models, where
      the thread hand-off costs more than the batch).
    eval_every: evaluate every this many epochs (0 = only at the end).
    eval_batch_size: batch size of evaluation.
    checkpoint_every: checkpoint every this many updates (0 = only at the end).
    checkpoint_seconds: also checkpoint when this many seconds of training
      passed since the last checkpoint (0 = never), bounding what a kill
      loses without a checkpoint every few updates of a fast run.
    keep_checkpoints: checkpoints to keep (0 = no checkpointing).
    nan_policy: 'stop' (raise, naming step, epoch, LR and batch) or 'skip'
      (skip non-finite updates and count them).
    plateau_metric: the ``value`` plateau policies (``reduce_on_plateau``,
      ``switch_on_plateau``) see: 'loss' (each update's training loss), a
      metric of the task's loss (e.g. 'accuracy'), or 'test_<name>', the
      latest evaluation of ``<name>`` (e.g. 'test_accuracy'; needs
      ``eval_every > 0`` and a policy with ``value_per='epoch'``, and
      ``mode='max'`` for a metric to maximise).
    noise: gradient noise scale estimation.
    compilation_cache_dir: JAX persistent compilation cache (None = off).
    compiler_options: XLA options for every step the run compiles (the
      train step of each micro-batch and the evaluation), as
      ``jax.jit(..., compiler_options=...)`` takes them, e.g.
      ``{'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT'}``
      (XLA's YNNPACK dot kernels on CPU: the digits CNN trains 2.5x
      faster on a 2-core AVX-512 machine, BUILD.md; the rounding differs
      from XLA's default kernels, so the numbers differ in the last bits).
      Part of the run's fingerprint. None: XLA's defaults.
    max_updates: stop after this many updates (None = the whole schedule);
      the schedules still refer to the whole run.
    progress_bar: None = on interactive terminals only.
    tensorboard: also write TensorBoard events (needs tensorboardX).
    coordinator_address: 'host:port' of process 0 for multi-process runs
      (None = single process).
    num_processes: processes of a multi-process run.
    process_id: this process' index.

  Examples:
    >>> config = TrainConfig(
    ...     batch='stages(32@2,128@2)', lr='cosine(0.1,length=4)',
    ...     max_device_batch=64)
    >>> config.validate()
    >>> config.replace(optimizer='rmsprop').validate()
    Traceback (most recent call last):
    ...
    ValueError: optimizer='rmsprop' is unknown; use one of ('sgd', ...) or a factory ...
  """

  batch: Any = 64
  num_epochs: float = 10.0
  lr: Any = 0.1
  momentum: Any = 0.9
  optimizer: Any = 'sgd'
  clip_norm: float | None = None
  weight_decay: Any = 0.0
  b2: float = 0.999
  max_device_batch: int | None = None
  accumulate: bool | None = None
  num_devices: int | None = None
  parallel: str = 'pmap'
  seed: int = 0
  augment: bool = False
  log_every: int = 10
  prefetch: int = 2
  eval_every: float = 1.0
  eval_batch_size: int = 500
  checkpoint_every: int = 0
  checkpoint_seconds: float = 0.0
  keep_checkpoints: int = 2
  nan_policy: str = 'stop'
  plateau_metric: str = 'loss'
  noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
  compilation_cache_dir: str | None = None
  compiler_options: Mapping[str, Any] | None = None
  max_updates: int | None = None
  progress_bar: bool | None = None
  tensorboard: bool = False
  coordinator_address: str | None = None
  num_processes: int = 1
  process_id: int = 0

  def replace(self, **changes) -> TrainConfig:
    """Returns a copy with ``changes`` applied."""
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready dict of the fields that apply; policies and schedules in
    their text form.

    Left out where they do not apply: ``num_epochs`` unless ``batch`` is an
    int; ``b2`` unless the optimizer is of the Adam family; ``momentum``
    and ``weight_decay`` for a factory without such parameters; the noise
    settings other than ``enabled`` while it is off. A function (an
    optimizer factory, an optax schedule) is recorded by its qualified name
    and a digest of its code, constants and captured values
    (:func:`function_id`), so that another function, or the same lambda
    with another constant, is another run.
    """

    def conv(v):
      if isinstance(v, NoiseConfig):
        if not v.enabled:
          return {'enabled': False}
        return dataclasses.asdict(v)
      if _is_plain_function(v):
        # Not str(v): it holds a memory address, which would make every
        # process's config.json (the run's fingerprint) differ.
        return function_id(v)
      if isinstance(v, (bool, int, float, str)) or v is None:
        return v
      if isinstance(v, (tuple, list)):
        return [conv(x) for x in v]
      if isinstance(v, dict):
        return {str(k): conv(x) for k, x in v.items()}
      return str(v)

    skip = set()
    if not isinstance(self.batch, int) or isinstance(self.batch, bool):
      skip.add('num_epochs')
    if self.optimizer not in ADAM_FAMILY:
      skip.add('b2')
    if callable(self.optimizer):
      takes = factory_parameters(self.optimizer)
      skip.update(n for n in ('momentum', 'weight_decay') if n not in takes)
    return {
      f.name: conv(getattr(self, f.name))
      for f in dataclasses.fields(self)
      if f.name not in skip
    }

  def to_json(self) -> str:
    """The config as indented JSON text."""
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  def validate(
    self,
    *,
    num_local_devices: int | None = None,
    num_train_examples: int | None = None,
  ) -> None:
    """Checks every field; raises ValueError naming the field and the fix.

    Numbers must be finite and in range. Policies are checked as the
    trainer reads them: text is parsed (against the batch schedule when
    ``num_train_examples`` is given, so durations in tokens, updates or
    examples convert or fail here), then a policy of epochs is evaluated
    at 129 epochs over the run, a policy of updates (``in_updates``,
    ``noam``) and, when the run is known, a plain callable (an optax
    schedule) at 129 update counts (called under ``jax.jit`` as the
    optimizer calls it), and a plateau policy at its initial value; every
    value must be finite and in the field's range: ``lr`` and
    ``weight_decay`` >= 0, ``momentum`` in [0, 1). When the run is known,
    a policy whose durations do not fit it (a length, milestone or
    boundary after the run's end, a warmup not ending before it) is
    warned about with absl logging, once per message and process.

    Args:
      num_local_devices: devices available to this process (checks
        ``num_devices``); None skips that check.
      num_train_examples: size of the training split (checks the batch
        schedule against it: ``n=``, and no batch larger than the split);
        None checks only the batch text's syntax.

    Raises:
      ValueError: on the first bad value.
    """
    for name in ('compilation_cache_dir', 'coordinator_address'):
      value = getattr(self, name)
      if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f'{name}={value!r} must be a non-empty str or None')
    options = self.compiler_options
    if options is not None and not (
      isinstance(options, Mapping)
      and all(isinstance(k, str) and k.startswith('xla_') for k in options)
      and all(isinstance(v, str | bool | int | float) for v in options.values())
    ):
      raise ValueError(
        f'compiler_options={options!r} must be None or a dict of XLA '
        "options ('xla_...') to str, bool, int or float values"
      )
    for name in ('augment', 'tensorboard'):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f'{name}={getattr(self, name)!r} must be True/False')
    if self.progress_bar not in (None, True, False):
      raise ValueError(
        f'progress_bar={self.progress_bar!r} must be None (terminals only), '
        'True or False'
      )
    self._check_optimizer()
    if self.parallel not in PARALLEL:
      raise ValueError(
        f'parallel={self.parallel!r} is unknown; use one of {PARALLEL}'
      )
    if self.nan_policy not in NAN_POLICIES:
      raise ValueError(
        f'nan_policy={self.nan_policy!r} is unknown; use one of {NAN_POLICIES}'
      )
    if not isinstance(self.plateau_metric, str) or not self.plateau_metric:
      raise ValueError(
        f'plateau_metric={self.plateau_metric!r} must be a metric name'
      )
    if self.plateau_metric.startswith('test_') and not self.eval_every:
      raise ValueError(
        f'plateau_metric={self.plateau_metric!r} monitors an evaluation '
        'metric, but eval_every=0 evaluates only at the end; set '
        'eval_every (e.g. 1: every epoch)'
      )
    _check_int(self.max_device_batch, 'max_device_batch', 1, optional=True)
    if self.accumulate not in (None, True, False):
      raise ValueError(
        f'accumulate={self.accumulate!r} must be None (as needed), True or '
        'False'
      )
    _check_int(self.num_devices, 'num_devices', 1, optional=True)
    if (
      num_local_devices is not None
      and self.num_devices is not None
      and self.num_devices > num_local_devices
    ):
      raise ValueError(
        f'num_devices={self.num_devices} exceeds the {num_local_devices} '
        'local devices; lower it or set it to None (all devices)'
      )
    _check_int(self.seed, 'seed', 0)
    _check_int(self.log_every, 'log_every', 1)
    _check_int(self.eval_batch_size, 'eval_batch_size', 1)
    _check_int(self.prefetch, 'prefetch', 0)
    _check_int(self.checkpoint_every, 'checkpoint_every', 0)
    _check_real(
      self.checkpoint_seconds,
      'checkpoint_seconds',
      lambda v: v >= 0,
      'a finite number of seconds >= 0 (0 = never)',
    )
    _check_int(self.keep_checkpoints, 'keep_checkpoints', 0)
    _check_int(self.max_updates, 'max_updates', 1, optional=True)
    _check_int(self.num_processes, 'num_processes', 1)
    _check_int(self.process_id, 'process_id', 0)
    if self.process_id >= self.num_processes:
      raise ValueError(
        f'process_id={self.process_id} must be < '
        f'num_processes={self.num_processes}'
      )
    if self.num_processes > 1 and not self.coordinator_address:
      raise ValueError(
        f'num_processes={self.num_processes} needs coordinator_address '
        "('host:port' of process 0)"
      )
    _check_real(
      self.eval_every,
      'eval_every',
      lambda v: v >= 0,
      'a finite number of epochs >= 0 (0 = only at the end)',
    )
    _check_real(
      self.num_epochs, 'num_epochs', lambda v: v > 0, 'a finite number > 0'
    )
    _check_real(self.b2, 'b2', lambda v: 0 <= v < 1, 'in [0, 1)')
    if not isinstance(self.noise, NoiseConfig):
      raise ValueError(f'noise={self.noise!r} must be a NoiseConfig')
    self.noise.validate()
    epochs = self._check_batch(num_train_examples)
    from lrjax.train import _setup

    run = None
    if num_train_examples is not None:
      run = _setup.batch_schedule(self, num_train_examples)
    for name, (ok, allowed) in _POLICY_RANGES.items():
      _check_policy(
        getattr(self, name),
        name,
        ok,
        allowed,
        epochs,
        run,
        _setup.seq_len(self.batch),
      )

  def _check_optimizer(self) -> None:
    """A known name, or a factory of the learning rate (see the class)."""
    value = self.optimizer
    if callable(value):
      takes = factory_parameters(value)
      if takes is None:
        raise ValueError(
          f'optimizer={value!r} must take the learning rate as its first '
          'parameter (learning_rate -> optax.GradientTransformation)'
        )
      for name, default in (('momentum', 0.9), ('weight_decay', 0.0)):
        given = getattr(self, name)
        if name not in takes and not (
          isinstance(given, numbers.Real)
          and not isinstance(given, bool)
          and float(given) == default
        ):
          raise ValueError(
            f'{name}={given!r} is set, but the optimizer factory '
            f'{function_id(value)} has no {name!r} parameter to receive '
            f'it; add one to the factory or leave {name}={default}'
          )
    elif value not in OPTIMIZERS:
      raise ValueError(
        f'optimizer={value!r} is unknown; use one of {OPTIMIZERS} or a '
        'factory learning_rate -> optax.GradientTransformation'
      )
    if self.clip_norm is not None:
      _check_real(
        self.clip_norm,
        'clip_norm',
        lambda v: v > 0,
        'a finite global norm > 0 or None (no clipping)',
      )

  def _check_batch(self, num_train_examples: int | None) -> float:
    """Checks ``batch``; returns the run's length in epochs."""
    from lrjax import batch as lbatch

    value = self.batch
    if isinstance(value, bool) or not isinstance(
      value, (int, str, lbatch.BatchSchedule)
    ):
      raise ValueError(
        f'batch={value!r} must be an int, batch schedule text or a '
        'BatchSchedule'
      )
    if isinstance(value, int):
      if value < 1:
        raise ValueError(f'batch={value!r} must be >= 1')
      if num_train_examples is not None and value > num_train_examples:
        raise ValueError(
          f'batch={value} is larger than the training split '
          f'({num_train_examples} examples); use a batch <= '
          f'{num_train_examples}'
        )
      return float(self.num_epochs)
    if num_train_examples is not None:
      from lrjax.train import _setup

      return float(_setup.batch_schedule(self, num_train_examples).num_epochs)
    if isinstance(value, lbatch.BatchSchedule):
      return float(value.num_epochs)
    # Without the dataset size only the syntax can be checked: any size
    # will do when the text has no n=.
    n = None if re.search(r'\bn\s*=', value) else 2**31 - 1
    try:
      schedule = lbatch.parse(value, num_examples=n)
    except ValueError as e:
      raise ValueError(f'batch={value!r}: {e}') from None
    return float(schedule.num_epochs) if n is None else float(self.num_epochs)


# Field -> (check of each value, the allowed range in words).
_POLICY_RANGES = {
  'lr': (lambda v: v >= 0, '>= 0'),
  'momentum': (lambda v: 0 <= v < 1, 'in [0, 1)'),
  'weight_decay': (lambda v: v >= 0, '>= 0'),
}


def parse_compiler_options(items: Sequence[str]) -> dict[str, Any] | None:
  """``NAME=VALUE`` texts (a command line's) as `TrainConfig.compiler_options`.

  A value reads as a bool (``true``/``false``), an int or a float where it
  is one (XLA refuses ``'false'`` for a bool option), else as the text.

  Args:
    items: ``'xla_<option>=<value>'`` texts; a value may hold ``,`` and
      ``=``.

  Returns:
    The options by name, or None for no items (XLA's defaults).

  Raises:
    ValueError: for an item that is not ``xla_<name>=<value>``.

  Examples:
    >>> parse_compiler_options(['xla_cpu_ftz=true', 'xla_a=B,C', 'xla_n=8'])
    {'xla_cpu_ftz': True, 'xla_a': 'B,C', 'xla_n': 8}
    >>> parse_compiler_options([]) is None
    True
  """
  options: dict[str, Any] = {}
  for item in items:
    name, equals, text = item.partition('=')
    if not (equals and text and re.fullmatch(r'xla_\w+', name)):
      raise ValueError(
        f'{item!r} must be NAME=VALUE naming an XLA option (xla_...)'
      )
    value: Any = text
    if text.lower() in ('true', 'false'):
      value = text.lower() == 'true'
    else:
      for kind in (int, float):
        with contextlib.suppress(ValueError):
          value = kind(text)
          break
    options[name] = value
  return options or None


def _check_real(value: Any, name: str, ok: Any, allowed: str) -> None:
  if (
    isinstance(value, bool)
    or not isinstance(value, numbers.Real)
    or not math.isfinite(value)
    or not ok(value)
  ):
    raise ValueError(f'{name}={value!r} must be {allowed}')


def _check_policy(
  value: Any,
  name: str,
  ok: Any,
  allowed: str,
  epochs: float,
  run: Any = None,
  seq_len: int | None = None,
) -> None:
  """Checks a policy field as the trainer reads it, and warns on a misfit.

  A number must be in range. Text is parsed as the trainer parses it:
  against the run's batch schedule ``run`` (durations with units
  converted), or, without it, with its units checked but not converted.
  Then the values are checked: a policy over epochs (unit 'epoch' or
  None) at 129 epochs over ``[0, epochs]``; a policy of updates (unit
  'update') and a plain callable (an optax schedule, read in updates) at
  129 update counts over the run (a plain callable only when ``run`` is
  known, a policy of updates otherwise over twice its longest duration);
  a plateau policy at its initial (and smallest) value. With ``run``, a
  policy whose durations do not fit it is warned about (`warn_fit`).
  """
  from lrjax import schedules
  from lrjax.schedules import _text

  if isinstance(value, bool) or value is None:
    raise ValueError(f'{name}={value!r} must be a float, text or policy')
  if isinstance(value, numbers.Real):
    _check_real(value, name, ok, f'finite and {allowed}')
    return
  if isinstance(value, str):
    try:
      number = float(value)
    except ValueError:
      try:
        if run is not None:
          value = schedules.parse(value, run, seq_len=seq_len)
        else:
          units = _text._Units(seq_len=seq_len, nominal=True)
          value = _text.parse_with(value, units)
      except (ValueError, TypeError) as e:
        raise ValueError(f'{name}={value!r} does not parse: {e}') from None
    else:
      _check_real(number, name, ok, f'finite and {allowed}')
      return
  if not callable(value):
    raise ValueError(f'{name}={value!r} must be a float, policy text or Policy')
  for policy, where, grid, values in _policy_values(value, epochs, run, name):
    bad = [
      (float(t), float(v))
      for t, v in zip(grid, values, strict=False)
      if not math.isfinite(v) or not ok(v)
    ]
    if bad:
      t, v = bad[0]
      raise ValueError(
        f'{name}={str(policy)!r} is {v:g} at {where} {t:g}; every value '
        f'must be finite and {allowed}'
      )
  if run is not None:
    warn_fit(value, name, run)


def _policy_values(
  value: Any, epochs: float, run: Any, name: str
) -> list[tuple[Any, str, Any, Any]]:
  """``(policy, 'epoch' or 'update', grid, its values)`` to check."""
  import jax
  import jax.numpy as jnp

  from lrjax.schedules._policy import Policy
  from lrjax.schedules._state import ReduceOnPlateau, SwitchOnPlateau

  def updates(policy=None):
    if run is not None:
      top = run.num_updates
    else:
      ends = [d.end for d in policy.durations()] if policy else []
      top = 2 * max([float(e) for e in ends] + [500.0])
    return np.unique(np.linspace(0, top, 129).round()).astype(np.int32)

  def on_grid(policy, clock):
    if clock == 'update':
      grid = updates(policy)
    else:
      grid = np.linspace(0.0, max(epochs, 1e-9), 129)
    values = np.broadcast_to(np.asarray(policy(grid)), grid.shape)
    return (policy, clock, grid, values)

  if isinstance(value, Policy):
    return [on_grid(value, value.unit or 'epoch')]
  if isinstance(value, ReduceOnPlateau):
    return [(value, 'epoch', [0, 0], [value.init_value, value.min_value])]
  if isinstance(value, SwitchOnPlateau):
    return [on_grid(p, value.clock) for p in value.policies]
  if _is_stateful(value) or run is None:
    return []
  # A plain callable is an optax schedule of the real update count: called
  # as the trainer calls it, one int32 count at a time under jit.
  grid = updates()
  try:
    values = jax.jit(lambda c: jax.lax.map(value, c))(jnp.asarray(grid))
  except Exception as e:  # noqa: BLE001 (the trainer would fail the same)
    raise ValueError(
      f'{name}={value!r} (a callable, read as an optax schedule of the '
      f'update count) fails when called on an int32 count under jax.jit: '
      f'{type(e).__name__}: {e}'
    ) from None
  return [(value, 'update', grid, np.asarray(values, np.float64))]


def _is_stateful(value: Any) -> bool:
  return hasattr(value, 'init') and hasattr(value, 'update')


# The misfit warnings already given in this process (each is given once).
_WARNED: set[str] = set()


def warn_fit(value: Any, name: str, run: Any) -> None:
  """Warns (absl, once per message) when durations do not fit the run.

  A duration that marks a point the run should reach (a decay's length, a
  milestone, a join boundary, a restart period) beyond the run's end, and
  a warmup that ends at or after it, are warned about: the policy would be
  cut off where the run ends. Durations are placed on the policy's clock
  (`Policy.durations`), in epochs (unit 'epoch' or None) or updates (unit
  'update', or a plateau switch with ``clock='update'``); plain callables
  have no known durations.

  Args:
    value: the policy (a Policy or a plateau policy; others are skipped).
    name: the config field, for the message.
    run: the run's BatchSchedule.
  """
  from lrjax.schedules._policy import Policy
  from lrjax.schedules._state import SwitchOnPlateau

  if isinstance(value, Policy):
    parts = [(value, value.unit or 'epoch')]
  elif isinstance(value, SwitchOnPlateau):
    parts = [(p, value.clock) for p in value.policies]
  else:
    return
  for policy, clock in parts:
    end = run.num_updates if clock == 'update' else run.num_epochs
    for d in policy.durations():
      where = float(d.end)
      if d.kind == 'warmup' and where >= end:
        problem = (
          f'its warmup ({d.policy} {d.arg}={d.value:g}) ends at {clock} '
          f'{where:g}, not before the run ends ({clock} {end:g}): the '
          'value never reaches its target; shorten the warmup'
        )
      elif d.kind == 'end' and where > end * (1 + 1e-9):
        problem = (
          f'{d.policy} {d.arg}={d.value:g} ends at {clock} {where:g}, after '
          f'the run ends ({clock} {end:g}): the run stops before it; '
          'shorten it or lengthen the run'
        )
      else:
        continue
      message = f'{name}={value}: {problem}'
      if message not in _WARNED:
        _WARNED.add(message)
        logging.warning(message)


def _check_int(value, name: str, minimum: int, optional: bool = False) -> None:
  if value is None and optional:
    return
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    extra = ' or None' if optional else ''
    raise ValueError(f'{name}={value!r} must be an integer >= {minimum}{extra}')


def factory_parameters(factory: Any) -> frozenset[str] | None:
  """The keyword parameters an optimizer factory takes besides the learning
  rate (its first parameter), or None when it cannot take one."""
  try:
    params = list(inspect.signature(factory).parameters.values())
  except (TypeError, ValueError):
    return None
  positional = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
  )
  if not params or params[0].kind not in positional:
    if not any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
      return None
  keyword = (
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
  )
  return frozenset(p.name for p in params[1:] if p.kind in keyword)


def _is_plain_function(v: Any) -> bool:
  return isinstance(
    v, (types.FunctionType, types.BuiltinFunctionType, functools.partial)
  )


def function_id(fn: Any) -> str:
  """A function's qualified name and a digest of what decides its result.

  The digest covers the bytecode, the constants (recursively through
  nested code), the default arguments and the values the function
  captures (closure cells, ``functools.partial`` arguments) by their
  ``repr`` with memory addresses removed; two lambdas that differ only in a
  constant (``b2=0.95`` vs ``0.99``) differ. What it cannot see: globals the
  function reads at call time.

  Examples:
    >>> a = function_id(lambda lr: lr * 0.95)
    >>> b = function_id(lambda lr: lr * 0.99)
    >>> a.startswith('<function lrjax.train._config.<lambda> '), a == b
    (True, False)
  """
  h = hashlib.sha256()
  _hash_callable(fn, h, depth=0)
  target = fn.func if isinstance(fn, functools.partial) else fn
  module = getattr(target, '__module__', None) or '?'
  name = getattr(target, '__qualname__', type(target).__qualname__)
  prefix = 'partial ' if isinstance(fn, functools.partial) else ''
  return f'<{prefix}function {module}.{name} {h.hexdigest()[:16]}>'


def _hash_callable(fn: Any, h: Any, depth: int) -> None:
  if depth > 8:
    return
  if isinstance(fn, functools.partial):
    _hash_callable(fn.func, h, depth + 1)
    for v in (*fn.args, *sorted(fn.keywords.items())):
      _hash_value(v, h, depth + 1)
    return
  code = getattr(fn, '__code__', None)
  if code is None:
    h.update(_stable_repr(fn).encode())
    return
  _hash_code(code, h)
  for v in fn.__defaults__ or ():
    _hash_value(v, h, depth + 1)
  for k, v in sorted((fn.__kwdefaults__ or {}).items()):
    h.update(k.encode())
    _hash_value(v, h, depth + 1)
  for cell in fn.__closure__ or ():
    try:
      _hash_value(cell.cell_contents, h, depth + 1)
    except ValueError:  # an empty cell
      h.update(b'<empty>')


def _hash_code(code: types.CodeType, h: Any) -> None:
  h.update(code.co_code)
  h.update(repr(code.co_names).encode())
  for c in code.co_consts:
    if isinstance(c, types.CodeType):
      _hash_code(c, h)
    else:
      h.update(repr(c).encode())


def _hash_value(v: Any, h: Any, depth: int) -> None:
  if isinstance(v, (types.FunctionType, functools.partial)):
    _hash_callable(v, h, depth)
  else:
    h.update(_stable_repr(v).encode())


def _stable_repr(v: Any) -> str:
  return re.sub(r' at 0x[0-9a-fA-F]+', '', repr(v))
