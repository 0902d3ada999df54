r"""Small-batch vs large-batch minima (Keskar et al. 2017).

Trains the same model with a small batch and a large batch (about 10% of
the data), same constant LR, for each seed and each training protocol:

- ``target_loss`` (default): until the training loss, measured on the
  whole training set every ``--loss_check_epochs``, is at most
  ``--target_loss``: both regimes end at the same training loss, as
  Keskar et al. train both to convergence before comparing them;
- ``converge``: until that loss stops improving (``--converge_patience``
  checks in a row without a relative improvement of
  ``--converge_min_improvement``);
- ``equal_epochs``: ``--epochs`` epochs each, so the large batch makes
  about large/small times fewer updates and ends at a higher loss.

The stopping protocols stop at ``--max_epochs`` at the latest. Then, at
the final parameters, it measures on the training set (all of it, or the
first ``--sharpness_examples`` on big data):

- eps-sharpness :math:`\phi(\epsilon, A)` in the full space (A = I) from
  the definition's start y = 0 (the headline), from the half-box start,
  and in a random p-dimensional subspace, for each `--sharpness_eps`;
- the top Hessian eigenvalue (power iteration on Hessian-vector products);
- the 1-D parametric plot: train and test loss and accuracy along
  :math:`\alpha x_l + (1 - \alpha) x_s`, alpha in [-1, 2].

The report says, per protocol, whether the large-batch minimum is sharper
and generalises worse, beyond seed-to-seed variation. Optionally
(`--warm_start_epochs`) the large batch also starts from the small-batch
iterate after that many epochs (Keskar's warm start).

  python -m experiments.sharpness --flagfile=experiments/flagfiles/sharpness_digits.cfg
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags, logging

from experiments import _common, _runs

PROTOCOLS = ('target_loss', 'converge', 'equal_epochs')

SMALL_BATCH = flags.DEFINE_integer(
  'small_batch', 32, 'Small-batch regime: batch size.'
)
LARGE_BATCH = flags.DEFINE_integer(
  'large_batch',
  0,
  'Large-batch regime: batch size (0: 10% of the training set, as Keskar).',
)
TRAIN_PROTOCOLS = flags.DEFINE_list(
  'protocols',
  ['target_loss', 'equal_epochs'],
  'How long each regime trains, one set of runs per protocol, the first '
  'the headline: target_loss (until the training loss is at most '
  '--target_loss), converge (until it stops improving) or equal_epochs '
  '(--epochs each).',
)
TARGET_LOSS = flags.DEFINE_float(
  'target_loss',
  1e-3,
  'target_loss protocol: train until the training loss (mean cross-entropy '
  'on the sharpness examples) is at most this.',
)
LOSS_CHECK_EPOCHS = flags.DEFINE_float(
  'loss_check_epochs',
  5.0,
  'target_loss and converge protocols: measure the training loss every '
  'this many epochs (each check ends a trainer call at a checkpoint).',
)
CONVERGE_PATIENCE = flags.DEFINE_integer(
  'converge_patience',
  3,
  'converge protocol: stop after this many checks in a row without an '
  'improvement.',
)
CONVERGE_MIN_IMPROVEMENT = flags.DEFINE_float(
  'converge_min_improvement',
  0.01,
  'converge protocol: a check improves when its loss is below (1 - this) '
  'times the best loss of the earlier checks.',
)
MAX_EPOCHS = flags.DEFINE_float(
  'max_epochs',
  400.0,
  'target_loss and converge protocols: stop at this many epochs at the '
  'latest (a hang guard; the report says which runs it stopped).',
)
SHARPNESS_EPS = flags.DEFINE_list(
  'sharpness_eps', ['1e-3', '5e-4'], 'Box sizes eps of the eps-sharpness.'
)
SUBSPACE_DIM = flags.DEFINE_integer(
  'subspace_dim', 100, 'Dimension p of the random subspace (A is n x p).'
)
SHARPNESS_ITERS = flags.DEFINE_integer(
  'sharpness_iters', 10, 'L-BFGS-B iterations of the box maximisation.'
)
HESSIAN_ITERS = flags.DEFINE_integer(
  'hessian_iters', 20, 'Power iterations for the top Hessian eigenvalue.'
)
SHARPNESS_EXAMPLES = flags.DEFINE_integer(
  'sharpness_examples',
  0,
  'Training examples the training loss, the sharpness and the Hessian are '
  'measured on: 0 for the whole training set (Keskar measures the training '
  'loss), or the first k to subsample big data.',
)
WARM_START_EPOCHS = flags.DEFINE_list(
  'warm_start_epochs',
  [],
  "Keskar's warm start: for each k, a run that trains k epochs with the "
  'small batch and the rest with the large batch (empty: none).',
)
INTERP_POINTS = flags.DEFINE_integer(
  'interp_points', 31, 'Points of the 1-D plot over alpha in [-1, 2].'
)

_common.register_bound('small_batch', 1)
_common.register_bound('large_batch', 0, note=' (0: 10% of the data)')
flags.register_validator(
  'protocols',
  lambda v: bool(v) and len(set(v)) == len(v) and set(v) <= set(PROTOCOLS),
  message='--protocols must be distinct names out of '
  f'{",".join(PROTOCOLS)}, e.g. target_loss,equal_epochs',
)
_common.register_bound('target_loss', 0, strict=True)
_common.register_bound('loss_check_epochs', 0, strict=True, note=' epochs')
_common.register_bound('converge_patience', 1, note=' checks')
flags.register_validator(
  'converge_min_improvement',
  lambda v: 0.0 <= v < 1.0,
  message='--converge_min_improvement must be in [0, 1), e.g. 0.01',
)
_common.register_bound('max_epochs', 0, strict=True)
flags.register_validator(
  'sharpness_eps',
  lambda v: bool(v) and all(_positive_float(x) for x in v),
  message='--sharpness_eps must be positive numbers, e.g. 1e-3,5e-4',
)
_common.register_bound('subspace_dim', 1)
_common.register_bound('sharpness_iters', 1)
_common.register_bound('hessian_iters', 1)
_common.register_bound(
  'sharpness_examples', 0, note=' (0: the whole training set)'
)
_common.register_bound('interp_points', 3)


@flags.multi_flags_validator(
  ['loss_check_epochs', 'max_epochs'],
  message='--loss_check_epochs must be <= --max_epochs',
)
def _check_within_cap(values) -> bool:
  return values['loss_check_epochs'] <= values['max_epochs']


@flags.multi_flags_validator(
  ['warm_start_epochs', 'protocols', 'epochs', 'max_epochs'],
  message='--warm_start_epochs must be numbers in (0, --epochs) for the '
  'equal_epochs protocol and in (0, --max_epochs) for the others',
)
def _warm_start_within_training(values) -> bool:
  try:
    ks = [float(k) for k in values['warm_start_epochs']]
  except ValueError:
    return False
  return all(
    0 < k < _length(values, p) for k in ks for p in values['protocols']
  )


def _length(values, protocol: str) -> float:
  """The epochs a protocol's runs are configured for (its cap)."""
  return (
    values['epochs'] if protocol == 'equal_epochs' else values['max_epochs']
  )


@flags.multi_flags_validator(
  ['small_batch', 'large_batch'],
  message='--large_batch must be 0 (10% of the data) or > --small_batch',
)
def _large_above_small(values) -> bool:
  return values['large_batch'] == 0 or (
    values['large_batch'] > values['small_batch']
  )


def _positive_float(text: str) -> bool:
  try:
    return float(text) > 0
  except ValueError:
    return False


@dataclasses.dataclass(frozen=True)
class StopRule:
  """When a run of a stopping protocol ends, from its training-loss checks.

  The loss is measured every `check_epochs` epochs (at the first update
  that completes the epoch), the last check at `max_epochs`. After check
  :math:`k` with loss :math:`L_k` the run stops

  - ``target_loss``: when :math:`L_k \\le` `target_loss`;
  - ``converge``: when `patience` checks in a row did not improve: check
    :math:`k > 1` improves when :math:`L_k < (1 - \\delta) L^*`, with
    :math:`\\delta` = `min_improvement` and :math:`L^*` the best loss so
    far, which only an improving check replaces (PyTorch's
    ``ReduceLROnPlateau`` rule with ``threshold_mode='rel'``); the first
    check is the reference, so the earliest stop is at check
    `patience` + 1;

  and at `max_epochs` whatever the losses.

  Attributes:
    protocol: 'target_loss' or 'converge'.
    check_epochs: epochs between checks, > 0.
    max_epochs: the last check, >= `check_epochs`.
    target_loss: the ``target_loss`` protocol's loss, > 0.
    patience: the ``converge`` protocol's checks without improvement, >= 1.
    min_improvement: the ``converge`` protocol's relative improvement that
      counts, in [0, 1).

  Examples:
    >>> rule = StopRule('target_loss', check_epochs=5, max_epochs=20,
    ...                 target_loss=0.1)
    >>> rule.check_epoch(1), rule.num_checks
    (5.0, 4)
    >>> rule.stop([0.5, 0.2, 0.09])
    'target_loss'
    >>> print(rule.stop([0.5, 0.2]))
    None
  """

  protocol: str
  check_epochs: float
  max_epochs: float
  target_loss: float = 1e-3
  patience: int = 3
  min_improvement: float = 0.01

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    if self.protocol not in ('target_loss', 'converge'):
      raise ValueError(
        f'--protocols: {self.protocol!r} has no stopping rule; use '
        'target_loss or converge'
      )
    if not self.check_epochs > 0:
      raise ValueError(f'--loss_check_epochs={self.check_epochs} must be > 0')
    if not self.max_epochs >= self.check_epochs:
      raise ValueError(
        f'--max_epochs={self.max_epochs} must be >= '
        f'--loss_check_epochs={self.check_epochs}'
      )
    if not (self.target_loss > 0 and math.isfinite(self.target_loss)):
      raise ValueError(f'--target_loss={self.target_loss} must be > 0')
    if self.patience < 1:
      raise ValueError(f'--converge_patience={self.patience} must be >= 1')
    if not 0 <= self.min_improvement < 1:
      raise ValueError(
        f'--converge_min_improvement={self.min_improvement} must be in '
        '[0, 1), e.g. 0.01'
      )

  @property
  def num_checks(self) -> int:
    """Checks up to `max_epochs`, the last one at `max_epochs`."""
    return math.ceil(self.max_epochs / self.check_epochs - 1e-9)

  def check_epoch(self, k: int) -> float:
    """The epoch of check k = 1, 2, ..., `num_checks`."""
    return float(min(k * self.check_epochs, self.max_epochs))

  def stop(self, losses: Sequence[float]) -> str | None:
    """Why the run stops after the last of `losses` (None: it goes on).

    Args:
      losses: the training loss at checks 1, 2, ..., k.

    Returns:
      'target_loss' or 'converge' (the rule is met), 'max_epochs' (check
      k is the last), or None.
    """
    k = len(losses)
    if self.protocol == 'target_loss':
      if losses and losses[-1] <= self.target_loss:
        return 'target_loss'
    elif k > self.patience:
      best, bad = losses[0], 0
      for value in losses[1:]:
        if value < (1 - self.min_improvement) * best:
          best, bad = value, 0
        else:
          bad += 1
      if bad >= self.patience:
        return 'converge'
    return 'max_epochs' if k >= self.num_checks else None

  def stop_check(self, losses: Sequence[float]) -> tuple[int, str] | None:
    """The first check at which the run stops and why (1-based), or None."""
    for k in range(1, len(losses) + 1):
      reason = self.stop(losses[:k])
      if reason is not None:
        return k, reason
    return None


@dataclasses.dataclass(frozen=True)
class SharpnessConfig:
  """The sharpness experiment (one field per flag of this module)."""

  common: _common.CommonConfig = _common.CommonConfig()
  small_batch: int = 32
  large_batch: int = 0
  protocols: tuple[str, ...] = ('target_loss', 'equal_epochs')
  target_loss: float = 1e-3
  loss_check_epochs: float = 5.0
  converge_patience: int = 3
  converge_min_improvement: float = 0.01
  max_epochs: float = 400.0
  eps: tuple[float, ...] = (1e-3, 5e-4)
  subspace_dim: int = 100
  sharpness_iters: int = 10
  hessian_iters: int = 20
  sharpness_examples: int = 0
  interp_points: int = 31
  warm_start_epochs: tuple[float, ...] = ()

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    if self.small_batch < 1:
      raise ValueError(f'--small_batch={self.small_batch} must be >= 1')
    if self.large_batch and self.large_batch <= self.small_batch:
      raise ValueError(
        f'--large_batch={self.large_batch} must be 0 or > '
        f'--small_batch={self.small_batch}'
      )
    if (
      not self.protocols
      or len(set(self.protocols)) != len(self.protocols)
      or not set(self.protocols) <= set(PROTOCOLS)
    ):
      raise ValueError(
        f'--protocols={",".join(self.protocols)} must be distinct names out '
        f'of {",".join(PROTOCOLS)}'
      )
    for protocol in self.protocols:
      if protocol != 'equal_epochs':
        self.stop_rule(protocol).validate()
    if not self.eps or any(e <= 0 for e in self.eps):
      raise ValueError(f'--sharpness_eps={self.eps} must be positive numbers')
    for name in ('subspace_dim', 'sharpness_iters', 'hessian_iters'):
      if getattr(self, name) < 1:
        raise ValueError(f'--{name}={getattr(self, name)} must be >= 1')
    if self.sharpness_examples < 0:
      raise ValueError(
        f'--sharpness_examples={self.sharpness_examples} must be >= 0 (0: '
        'the whole training set)'
      )
    if self.interp_points < 3:
      raise ValueError(f'--interp_points={self.interp_points} must be >= 3')
    for protocol in self.protocols:
      length = self.epochs_of(protocol)
      for k in self.warm_start_epochs:
        if not 0 < k < length:
          flag = 'epochs' if protocol == 'equal_epochs' else 'max_epochs'
          raise ValueError(
            f'--warm_start_epochs={k:g} must be in (0, --{flag}={length:g}) '
            f'for the {protocol} protocol'
          )

  def epochs_of(self, protocol: str) -> float:
    """The epochs a protocol's runs are configured for (a cap if stopping)."""
    return self.common.epochs if protocol == 'equal_epochs' else self.max_epochs

  def stop_rule(self, protocol: str) -> StopRule | None:
    """The protocol's stopping rule (None for equal_epochs)."""
    if protocol == 'equal_epochs':
      return None
    return StopRule(
      protocol=protocol,
      check_epochs=self.loss_check_epochs,
      max_epochs=self.max_epochs,
      target_loss=self.target_loss,
      patience=self.converge_patience,
      min_improvement=self.converge_min_improvement,
    )


def get_config() -> SharpnessConfig:
  """Builds the typed config from the parsed flags."""
  return SharpnessConfig(
    common=_common.common_config(),
    small_batch=SMALL_BATCH.value,
    large_batch=LARGE_BATCH.value,
    protocols=tuple(TRAIN_PROTOCOLS.value),
    target_loss=TARGET_LOSS.value,
    loss_check_epochs=LOSS_CHECK_EPOCHS.value,
    converge_patience=CONVERGE_PATIENCE.value,
    converge_min_improvement=CONVERGE_MIN_IMPROVEMENT.value,
    max_epochs=MAX_EPOCHS.value,
    eps=tuple(float(e) for e in SHARPNESS_EPS.value),
    subspace_dim=SUBSPACE_DIM.value,
    sharpness_iters=SHARPNESS_ITERS.value,
    hessian_iters=HESSIAN_ITERS.value,
    sharpness_examples=SHARPNESS_EXAMPLES.value,
    interp_points=INTERP_POINTS.value,
    warm_start_epochs=tuple(float(k) for k in WARM_START_EPOCHS.value),
  )


# ------------------------------------------------------------ measuring


def _loss_and_metrics(model: Any):
  """`(variables, (images, labels)) -> {loss, accuracy}`, eval mode, jitted."""
  import jax
  import jax.numpy as jnp
  import optax

  def metrics(variables, data):
    logits = model.apply(variables, data[0], train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, data[1])
    acc = jnp.mean(jnp.argmax(logits, -1) == data[1])
    return {'loss': jnp.mean(loss), 'accuracy': acc}

  return jax.jit(metrics)


def measured_data(config: SharpnessConfig, seed: int):
  """The training examples everything is measured on.

  Keskar et al. measure on the training loss, so by default the whole
  training split; ``sharpness_examples`` > 0 takes its first k (big data).

  Args:
    config: the experiment's config.
    seed: the run's seed (it draws `--dataset=synthetic` data).

  Returns:
    ``(images, labels)`` as arrays.
  """
  train = _common.load_split(config.common, 'train', seed)
  n = train.num_examples
  if config.sharpness_examples:
    n = min(config.sharpness_examples, n)
  batch = train.take(np.arange(n))
  return batch['image'], batch['label']


def _model(config: SharpnessConfig, seed: int) -> Any:
  from lrjax import models

  train = _common.load_split(config.common, 'train', seed)
  return models.get(config.common.model, num_classes=train.num_classes)


def training_loss(metrics: Any, variables: Any, data, chunk: int = 1024):
  """Mean loss and accuracy of `variables` over `data`, `chunk` at a time.

  Args:
    metrics: ``metrics(variables, (images, labels)) -> {loss, accuracy}``,
      means over the batch.
    variables: the model variables.
    data: ``(images, labels)``.
    chunk: examples per call (bounds the memory of big models).

  Returns:
    ``(loss, accuracy)``, means over all of `data`.
  """
  n = len(data[1])
  loss = accuracy = 0.0
  for start in range(0, n, chunk):
    part = (data[0][start : start + chunk], data[1][start : start + chunk])
    m = metrics(variables, part)
    loss += float(m['loss']) * len(part[1])
    accuracy += float(m['accuracy']) * len(part[1])
  return loss / n, accuracy / n


def measure(
  config: SharpnessConfig, variables: Any, seed: int
) -> dict[str, Any]:
  """eps-sharpness (full, subspace), top Hessian eigenvalue at `variables`.

  The loss is the mean cross-entropy over `measured_data`, a function of
  the parameters only; batch-norm statistics, if any, stay fixed at their
  final running values (eval mode).

  Args:
    config: the experiment's config (eps, iterations, subspace).
    variables: the run's final model variables.
    seed: the run's seed (random subspace, Hessian start, coin signs).

  Returns:
    ``sharpness_full_<eps>_from_zero`` (y0 = 0, the definition's start),
    ``sharpness_full_<eps>`` (half-box start) and
    ``sharpness_subspace_<eps>`` (half-box start) for each eps, in %;
    ``top_eigenvalue``; ``measured_loss``, ``measured_accuracy`` and
    ``measured_examples`` of the measured set.
  """
  import jax

  from lrjax import sharpness as lrsharp

  data = measured_data(config, seed)
  metrics = _loss_and_metrics(_model(config, seed))
  rest = {k: v for k, v in variables.items() if k != 'params'}
  f, x, _ = lrsharp.flatten(
    lambda p: metrics({'params': p, **rest}, data)['loss'],
    variables['params'],
  )
  f = jax.jit(f)
  out: dict[str, Any] = {}
  for eps in config.eps:
    # The definition's own start, y = 0 (the headline), beside the
    # half-box start, which moves off an exact minimum: both are lower
    # bounds of the box maximum.
    zero = lrsharp.eps_sharpness(
      f, x, eps=eps, max_iter=config.sharpness_iters, seed=seed, start='zero'
    )
    full = lrsharp.eps_sharpness(
      f, x, eps=eps, max_iter=config.sharpness_iters, seed=seed
    )
    sub = lrsharp.eps_sharpness(
      f,
      x,
      eps=eps,
      subspace=min(config.subspace_dim, x.shape[0]),
      max_iter=config.sharpness_iters,
      seed=seed,
    )
    out[f'sharpness_full_{eps:g}_from_zero'] = float(zero.sharpness)
    out[f'sharpness_full_{eps:g}'] = float(full.sharpness)
    out[f'sharpness_subspace_{eps:g}'] = float(sub.sharpness)
  lam, _ = lrsharp.top_eigenvalue(
    f, x, num_iters=config.hessian_iters, key=seed
  )
  out['top_eigenvalue'] = float(lam)
  out['measured_loss'] = float(f(x))
  out['measured_accuracy'] = float(metrics(variables, data)['accuracy'])
  out['measured_examples'] = len(data[1])
  return out


# ------------------------------------------------------------ training


def _schedule(train_config: Any, num_examples: int) -> Any:
  """The run's BatchSchedule (an int batch holds for ``num_epochs``)."""
  from lrjax import batch as lrbatch

  batch = train_config.batch
  if isinstance(batch, str):
    return lrbatch.parse(batch, num_examples=num_examples)
  if isinstance(batch, lrbatch.BatchSchedule):
    return batch
  return lrbatch.BatchSchedule(
    (lrbatch.Stage(int(batch), epochs=train_config.num_epochs),), num_examples
  )


def stop_hook(
  rule: StopRule, schedule: Any, loss_fn: Any, num_examples: int
) -> Any:
  """`rule` as a `lrjax.train.Hook` that stops the trainer from inside.

  The hook is due at each check's update (the first update that completes
  ``rule.check_epoch(k)`` epochs of `schedule`), ``sync`` so that the loop
  waits for that update's state, measures the training loss there with
  ``loss_fn(checked, workdir)`` (``checked`` has the run's ``params``,
  ``model_state``, ``num_updates`` and ``examples_seen``), asks for a
  checkpoint (a killed run resumes from its last check) and stops the run
  when the rule says so. Its checks are its checkpointed state.
  """
  import types

  from lrjax import train as lrtrain

  updates = [
    schedule.update_at_epoch(rule.check_epoch(k))
    for k in range(1, rule.num_checks + 1)
  ]
  settings = _common.jsonable(rule)

  class StopRuleHook(lrtrain.Hook):
    sync = True

    def __init__(self):
      self.checks: list[dict[str, Any]] = []
      self.stopped: str | None = None
      self.workdir = ''

    @property
    def name(self):
      return 'stop_rule'

    def due(self, update):
      k = len(self.checks)
      return self.stopped is None and k < len(updates) and update == updates[k]

    def on_step(self, info, value):
      host = info.state()
      checked = types.SimpleNamespace(
        params=host.params,
        model_state=host.model_state,
        num_updates=info.update,
        examples_seen=info.examples,
      )
      loss = float(loss_fn(checked, self.workdir))
      self.checks.append(
        {
          'epoch': info.examples / num_examples,
          'step': int(info.update),
          'train_loss': loss,
        }
      )
      self.stopped = rule.stop([c['train_loss'] for c in self.checks])
      logging.info(
        '%s check %d/%d: epoch %.2f, update %d, training loss %.4g%s',
        rule.protocol,
        len(self.checks),
        rule.num_checks,
        self.checks[-1]['epoch'],
        info.update,
        loss,
        f', stopped ({self.stopped})' if self.stopped else '',
      )
      return lrtrain.HookResult(
        metrics={'stop_rule_train_loss': loss},
        stop=self.stopped is not None,
        checkpoint=True,
      )

    def state(self):
      return {'rule': settings, 'checks': self.checks, 'stopped': self.stopped}

    def restore(self, state):
      _check_rule(state['rule'], settings, self.workdir)
      self.checks = list(state['checks'])
      self.stopped = state['stopped']

  return StopRuleHook()


def _check_rule(saved: Any, settings: Any, workdir: str) -> None:
  """Raises ConfigMismatchError unless the run's checks were made under
  the rule `settings`."""
  from lrjax import train as lrtrain

  if saved == settings:
    return
  changes = [
    f'{k}: {saved.get(k)!r} -> {v!r}'
    for k, v in settings.items()
    if saved.get(k) != v
  ]
  raise lrtrain.ConfigMismatchError(
    f'{workdir} holds a run stopped by another rule ({"; ".join(changes)}). '
    'Use another --workdir, or --overwrite to train the runs again'
  )


def train_until(
  train_config: Any,
  rule: StopRule,
  workdir: str,
  task: Any,
  loss_fn: Any,
  num_examples: int,
  *,
  overwrite: bool = False,
  train: Any = None,
) -> Any:
  """Trains one run until `rule` stops it, in one trainer call.

  The run's trainer config (its ``num_epochs`` or batch schedule reaching
  ``rule.max_epochs``) fixes the trajectory; `stop_hook` measures the
  training loss at each check's update inside the trainer (no
  recompilation per check), checkpoints there and stops the trainer when
  the rule is met. A killed run goes on from its last check's checkpoint
  and stops where an uninterrupted one stops. ``stopping.json`` in
  `workdir` lists the checks when the call ends.

  Args:
    train_config: the run's `lrjax.train.TrainConfig`.
    rule: the stopping rule.
    workdir: the run's trainer workdir.
    task: what is trained (a `lrjax.train.Task`).
    loss_fn: ``loss_fn(checked, workdir) -> float``, the training loss at
      the variables of ``checked`` (``params``, ``model_state``, like a
      `TrainResult`'s).
    num_examples: training examples (epochs -> updates).
    overwrite: train afresh.
    train: ``train(config, workdir, task, overwrite=..., hooks=...)``;
      None: `lrjax.train.train_and_evaluate`.

  Returns:
    The `TrainResult` of the trainer call.

  Raises:
    lrjax.train.ConfigMismatchError: when `workdir` holds checks made
      under another rule.
  """
  from lrjax import train as lrtrain

  train = train or lrtrain.train_and_evaluate
  path = os.path.join(workdir, 'stopping.json')
  if overwrite and os.path.exists(path):
    os.remove(path)
  settings = _common.jsonable(rule)
  saved = _common.read_json(path)
  if saved is not None:
    _check_rule(saved['rule'], settings, workdir)
  hook = stop_hook(
    rule, _schedule(train_config, num_examples), loss_fn, num_examples
  )
  hook.workdir = workdir
  os.makedirs(workdir, exist_ok=True)
  result = train(
    train_config, workdir, task, overwrite=overwrite, hooks=(hook,)
  )
  _common.write_json(
    path, {'rule': settings, 'checks': hook.checks, 'stopped': hook.stopped}
  )
  return result


def _after(result: Any, workdir: str) -> dict[str, Any]:
  """Saves the final variables; returns the stopping record, if any."""
  variables = _common.final_variables(result, workdir)
  _common.save_variables(os.path.join(workdir, 'variables.npz'), variables)
  stopping = _common.read_json(os.path.join(workdir, 'stopping.json'))
  if stopping is None:
    return {'stopped_by': 'epochs', 'checks': []}
  return {'stopped_by': stopping['stopped'], 'checks': stopping['checks']}


def _load_params(workdir: str) -> Any:
  return _common.load_variables(os.path.join(workdir, 'variables.npz'))


def batch_regimes(
  config: SharpnessConfig, num_examples: int, protocol: str
) -> dict[str, Any]:
  """Label -> batch (size, or schedule text for a warm start)."""
  n = num_examples
  large = config.large_batch or max(config.small_batch + 1, round(n / 10))
  out: dict[str, Any] = {
    'small batch': config.small_batch,
    'large batch': large,
  }
  length = config.epochs_of(protocol)
  for k in config.warm_start_epochs:
    out[f'warm start {k:g}'] = (
      f'stages({config.small_batch}@{k:g},{large}@{length - k:g},n={n})'
    )
  return out


def _train_config(
  config: SharpnessConfig, protocol: str, batch: Any, seed: int
) -> Any:
  from lrjax import batch as lrbatch

  if isinstance(batch, str):
    batch = lrbatch.parse(batch)
  c = dataclasses.replace(config.common, epochs=config.epochs_of(protocol))
  return _common.train_config(c, batch=batch, lr=c.lr, seed=seed)


def check(config: SharpnessConfig) -> dict[str, dict[str, Any]]:
  """Checks the settings, the devices, the data and every run's trainer
  config before anything trains.

  Returns:
    Per protocol, the regimes (label -> batch).

  Raises:
    ValueError: naming the flag and the fix.
    FileNotFoundError: for a dataset that is not prepared.
  """
  config.validate()
  n = _common.check_common(config.common)
  _common.check_batch('--small_batch', config.small_batch, n)
  _common.check_batch('--large_batch', config.large_batch, n)
  out = {}
  for protocol in config.protocols:
    out[protocol] = batch_regimes(config, n, protocol)
    for batch in out[protocol].values():
      _common.check_train_configs(
        [
          _train_config(config, protocol, batch, s) for s in config.common.seeds
        ],
        n,
      )
  return out


def _measure_settings(config: SharpnessConfig) -> dict[str, Any]:
  """What a sharpness.json depends on besides the run's parameters."""
  return _common.jsonable(
    {
      'eps': config.eps,
      'subspace_dim': config.subspace_dim,
      'sharpness_iters': config.sharpness_iters,
      'hessian_iters': config.hessian_iters,
      'sharpness_examples': config.sharpness_examples,
      'starts': ['zero', 'half_box'],
    }
  )


def run(
  config: SharpnessConfig,
  workdir: str,
  *,
  with_flags: bool = False,
  overwrite: bool = False,
):
  """Trains every regime per protocol and seed, measures, writes table,
  figures, report.

  Finished runs of the same config are reused, unfinished ones resume
  (a stopping protocol's from its last checkpoint and recorded checks);
  a run's measurements are reused when made with the same settings.

  Raises:
    ValueError: for a bad setting, before anything trains.
    lrjax.train.ConfigMismatchError: for a run of another config in
      ``workdir``.
    lrjax.train.WorkdirLockedError: when another process holds ``workdir``.
  """
  regimes = check(config)
  with _common.experiment_workdir(workdir, config, with_flags=with_flags):
    return _run(config, regimes, workdir, overwrite)


def _run(
  config: SharpnessConfig,
  regimes: dict[str, dict[str, Any]],
  workdir: str,
  overwrite: bool,
) -> dict[str, Any]:
  c = config.common
  settings = _measure_settings(config)
  n = _common.num_train_examples(c, c.seeds[0])
  runs: dict[str, dict[str, list[_runs.Run]]] = {}
  measures: dict[str, dict[str, list[dict[str, Any]]]] = {}
  for i, protocol in enumerate(config.protocols, 1):
    rule = config.stop_rule(protocol)
    runs[protocol], measures[protocol] = {}, {}
    for k, (label, batch) in enumerate(regimes[protocol].items(), 1):
      for j, seed in enumerate(c.seeds, 1):
        run_dir = os.path.join(
          workdir, 'runs', protocol, label.replace(' ', '_'), f'seed{seed}'
        )
        path = os.path.join(run_dir, 'sharpness.json')
        if overwrite and os.path.exists(path):
          os.remove(path)
        done = _runs.train_run(
          label,
          seed,
          _train_config(config, protocol, batch, seed),
          run_dir,
          _common.make_task(c, seed),
          after=_after,
          train=_trainer(config, rule, seed, n),
          extra={'protocol': protocol, 'stop_rule': rule},
          overwrite=overwrite,
          progress=f'protocol {i}/{len(config.protocols)} ({protocol}), '
          f'regime {k}/{len(regimes[protocol])}, seed {j}/{len(c.seeds)}',
        )
        runs[protocol].setdefault(label, []).append(done)
        m = _common.read_json(path)
        if not isinstance(m, dict) or m.get('settings') != settings:
          m = measure(config, _load_params(run_dir), seed)
          m['settings'] = settings
          _common.write_json(path, m)
        measures[protocol].setdefault(label, []).append(m)
  interp = {
    p: _interpolation(config, runs[p], c.seeds[0]) for p in config.protocols
  }
  rows, table = _table(config, runs, measures, regimes, n)
  claims = _claims(config, runs, measures)
  figures = _figures(config, runs, interp, workdir)
  results = {
    'experiment': 'sharpness',
    'protocols': list(config.protocols),
    'num_train_examples': n,
    'batch_sizes': regimes,
    'rows': rows,
    'claims': claims,
    'interpolation': interp,
    'figures': figures,
  }
  _common.write_outputs(
    workdir,
    results,
    table,
    _report(config, regimes, table, rows, claims, figures, n),
  )
  return results


def _trainer(config: SharpnessConfig, rule: StopRule | None, seed: int, n):
  """The run's ``train(config, workdir, task, overwrite=...)``: the
  trainer for equal epochs, `train_until` for a stopping protocol."""
  from lrjax import train as lrtrain

  if rule is None:
    return lrtrain.train_and_evaluate
  data = measured_data(config, seed)
  metrics = _loss_and_metrics(_model(config, seed))

  def loss_fn(result, workdir):
    variables = _common.final_variables(result, workdir)
    return training_loss(metrics, variables, data)[0]

  def train(train_config, workdir, task, *, overwrite=False):
    return train_until(
      train_config, rule, workdir, task, loss_fn, n, overwrite=overwrite
    )

  return train


def _interpolation(config, runs, seed) -> dict[str, Any]:
  from lrjax import sharpness as lrsharp

  c = config.common
  small = _load_params(runs['small batch'][0].workdir)
  large = _load_params(runs['large batch'][0].workdir)
  data = {}
  for split in ('train', 'test'):
    ds = _common.load_split(c, split, seed)
    batch = ds.take(np.arange(ds.num_examples))
    data[split] = (batch['image'], batch['label'])
  # The whole variables (batch-norm statistics too) move along the path.
  result = lrsharp.interpolate(
    _loss_and_metrics(_model(config, seed)),
    small,
    large,
    data,
    alphas=np.linspace(-1, 2, config.interp_points),
  )
  return _common.jsonable({'alphas': result.alphas, 'metrics': result.metrics})


def _keys(config: SharpnessConfig) -> list[str]:
  keys = []
  for eps in config.eps:
    keys += [
      f'sharpness_full_{eps:g}_from_zero',
      f'sharpness_full_{eps:g}',
      f'sharpness_subspace_{eps:g}',
    ]
  return keys + ['top_eigenvalue']


def _mean(values) -> float:
  return _common.mean_std(values)[0]


def _table(config, runs, measures, regimes, n):
  keys = _keys(config)
  rows, lines = [], []
  for protocol in config.protocols:
    small = measures[protocol]['small batch']
    for label, group in runs[protocol].items():
      ms = measures[protocol][label]
      epochs = [r.summary['examples_seen'] / n for r in group]
      updates = [r.summary['num_updates'] for r in group]
      loss = [m['measured_loss'] for m in ms]
      train_acc = [m['measured_accuracy'] for m in ms]
      test_acc = [r.summary['test_accuracy'] for r in group]
      stopped = sorted({r.summary.get('stopped_by', 'epochs') for r in group})
      ratios = {}
      for eps in config.eps:
        key = f'sharpness_full_{eps:g}_from_zero'
        base = _mean([m[key] for m in small])
        ratios[key] = _mean([m[key] for m in ms]) / base if base > 0 else None
      rows.append(
        {
          'protocol': protocol,
          'regime': label,
          'batch_size': regimes[protocol][label],
          'stopped_by': stopped,
          'epochs': _common.mean_std(epochs),
          'num_updates': _common.mean_std(updates),
          'train_loss': _common.mean_std(loss),
          'train_accuracy': _common.mean_std(train_acc),
          'test_accuracy': _common.mean_std(test_acc),
          **{k: _common.mean_std([m[k] for m in ms]) for k in keys},
          'ratio_to_small': ratios,
        }
      )
      cells = []
      for eps in config.eps:
        ratio = ratios[f'sharpness_full_{eps:g}_from_zero']
        cells += [
          _common.fmt_mean_std(
            [m[f'sharpness_full_{eps:g}_from_zero'] for m in ms], 1, 3
          ),
          'n/a' if ratio is None else f'{ratio:.2f}',
          _common.fmt_mean_std(
            [m[f'sharpness_full_{eps:g}'] for m in ms], 1, 3
          ),
          _common.fmt_mean_std(
            [m[f'sharpness_subspace_{eps:g}'] for m in ms], 1, 3
          ),
        ]
      lines.append(
        [
          protocol,
          label,
          regimes[protocol][label],
          ', '.join(stopped),
          _common.fmt_mean_std(epochs, 1, 1),
          _common.fmt_mean_std(updates, 1, 0),
          _common.fmt_mean_std(loss, 1, 5),
          _common.fmt_mean_std(train_acc, 100),
          _common.fmt_mean_std(test_acc, 100),
          *cells,
          _common.fmt_mean_std([m['top_eigenvalue'] for m in ms], 1, 3),
        ]
      )
  header = [
    'protocol',
    'regime',
    'batch',
    'stopped by',
    'epochs',
    'updates',
    'train loss',
    'train acc %',
    'test acc %',
  ]
  for eps in config.eps:
    header += [
      f'φ eps={eps:g} (%), y0 = 0',
      '÷ small batch',
      'from half box',
      'subspace',
    ]
  header.append('top Hessian eigenvalue')
  return rows, _common.markdown_table(header, lines)


def _claims(config, runs, measures) -> list[dict[str, Any]]:
  claims = []
  for protocol in config.protocols:
    claims += _protocol_claims(
      config, protocol, runs[protocol], measures[protocol]
    )
  return claims


def _protocol_claims(config, protocol, runs, measures) -> list[dict[str, Any]]:
  claims = []
  small, large = measures['small batch'], measures['large batch']
  for key in _keys(config):
    s = _mean([m[key] for m in small])
    lg = _mean([m[key] for m in large])
    claims.append(
      {
        'claim': f'{protocol}: the large-batch minimum is sharper ({key}, '
        'beyond seed-to-seed variation)',
        'held': _common.exceeds(
          [m[key] for m in large], [m[key] for m in small]
        ),
        'detail': f'large {lg:.4g} vs small {s:.4g}'
        + (f', {lg / s:.1f}x' if s > 0 else ''),
      }
    )

  def accuracy(label, split):
    return [r.summary[f'{split}_accuracy'] for r in runs[label]]

  for label in runs:
    if not label.startswith('warm start'):
      continue
    for key in (
      'top_eigenvalue',
      f'sharpness_full_{config.eps[0]:g}_from_zero',
    ):
      warm = _mean([m[key] for m in measures[label]])
      cold = _mean([m[key] for m in large])
      claims.append(
        {
          'claim': f'{protocol}: {label} epochs of small batch make the '
          f'large-batch minimum flatter ({key}, beyond seed-to-seed '
          'variation)',
          'held': _common.exceeds(
            [m[key] for m in large], [m[key] for m in measures[label]]
          ),
          'detail': f'warm start {warm:.4g} vs large batch from scratch '
          f'{cold:.4g}',
        }
      )
  large_acc, small_acc = (
    accuracy('large batch', 'test'),
    accuracy('small batch', 'test'),
  )
  _, diff, tol = _common.within_variation(large_acc, small_acc)
  claims.append(
    {
      'claim': f'{protocol}: the large batch generalises worse (lower test '
      'accuracy, beyond seed-to-seed variation)',
      'held': _common.exceeds(small_acc, large_acc),
      'detail': f'test accuracy large {_mean(large_acc) * 100:.2f} % vs '
      f'small {_mean(small_acc) * 100:.2f} % (difference '
      f'{diff * 100:+.2f} points'
      + (
        ', one seed: no variation to test against)'
        if math.isnan(tol)
        else f', tolerance ±{tol * 100:.2f})'
      ),
    }
  )
  return claims


def _figures(config, runs, interp, workdir) -> dict[str, str]:
  import matplotlib.pyplot as plt

  from lrjax import plots
  from lrjax import sharpness as lrsharp

  seed = config.common.seeds[0]
  figures = {}
  for protocol in config.protocols:
    name = f'interpolation_{protocol}.png'
    plots.plot_interpolation(
      lrsharp.Interpolation(
        np.asarray(interp[protocol]['alphas'], float),
        {
          split: {k: np.asarray(v, float) for k, v in metrics.items()}
          for split, metrics in interp[protocol]['metrics'].items()
        },
        'linear',
      ),
      title=f'1-D parametric plot, {protocol} (seed {seed})',
      path=os.path.join(workdir, name),
    )
    figures[name] = (
      f'{protocol}: loss and accuracy along the line through both minima '
      '(alpha = 0: small batch, 1: large batch)'
    )
  plots.plot_curves(
    {
      f'{label} ({protocol})': [r.test for r in group]
      for protocol in config.protocols
      for label, group in runs[protocol].items()
    },
    x=('epoch', 'step'),
    y='accuracy',
    labels={
      'epoch': 'epochs',
      'step': 'parameter updates',
      'accuracy': 'test accuracy',
    },
    path=os.path.join(workdir, 'test_accuracy.png'),
  )
  figures['test_accuracy.png'] = 'Test accuracy during training'
  checked = {
    f'{label} ({protocol})': [
      {
        key: np.asarray([c[key] for c in r.summary['checks']], float)
        for key in ('epoch', 'step', 'train_loss')
      }
      for r in group
    ]
    for protocol in config.protocols
    if protocol != 'equal_epochs'
    for label, group in runs[protocol].items()
  }
  if checked:
    plots.plot_curves(
      checked,
      x=('epoch', 'step'),
      y='train_loss',
      labels={
        'epoch': 'epochs',
        'step': 'parameter updates',
        'train_loss': 'training loss (checks)',
      },
      logy=True,
      path=os.path.join(workdir, 'training_loss.png'),
    )
    figures['training_loss.png'] = (
      'Training loss at each check of the stopping protocols (the last '
      'point of a curve is where its run stopped)'
    )
  plt.close('all')
  return figures


_STOPS = {
  'target_loss': 'reached --target_loss',
  'converge': 'stopped improving',
  'max_epochs': 'hit --max_epochs (did not meet its rule)',
  'epochs': 'trained --epochs',
}


def _report(config, regimes, table, rows, claims, figures, n) -> str:
  c = config.common
  measured = config.sharpness_examples or n
  first = regimes[config.protocols[0]]
  lines = [
    '# Small-batch vs large-batch minima (Keskar et al. 2017)',
    '',
    f'{c.dataset}, model {c.model}, {c.optimizer}, constant LR {c.lr:g}, '
    f'batch {first["small batch"]} vs {first["large batch"]}, seeds '
    f'{", ".join(map(str, c.seeds))}.',
    '',
    'Protocols (how long each regime trains):',
    '',
  ]
  for protocol in config.protocols:
    lines.append(f'- {_protocol_text(config, protocol)}')
  subset = (
    'the whole training set'
    if measured >= n
    else f'the first {measured} of the {n} training examples '
    '(--sharpness_examples subsamples big data)'
  )
  lines += [
    '',
    f'Training loss, training accuracy, sharpness and Hessian measured on '
    f"{subset}, in eval mode. φ is Keskar's eps-sharpness, "
    f'{config.sharpness_iters} L-BFGS-B iterations (a lower bound of the '
    "box maximum): the headline starts at the definition's y = 0; "
    '"from half box" starts at half the box in the gradient\'s direction '
    f'(it moves off an exact minimum); subspace: a random p = '
    f'{config.subspace_dim} subspace, from the half box. "÷ small batch": '
    "the regime's mean φ (y = 0) over the small batch's in the same "
    'protocol.',
    '',
    table,
  ]
  capped = [
    f'{r["protocol"]} / {r["regime"]}'
    for r in rows
    if 'max_epochs' in r['stopped_by']
  ]
  if capped:
    lines += [
      f'Stopped at --max_epochs={config.max_epochs:g} without meeting their '
      f'rule: {", ".join(capped)}; compare their training loss before '
      'their sharpness.',
      '',
    ]
  lines += ['## Claims', '']
  lines += _common.claim_lines(claims) + _common.figure_lines(figures)
  return '\n'.join(lines)


def _protocol_text(config, protocol: str) -> str:
  if protocol == 'equal_epochs':
    return (
      f'equal_epochs: {config.common.epochs:g} epochs each, so the large '
      'batch makes fewer updates and ends at a higher training loss.'
    )
  every = f'measured every {config.loss_check_epochs:g} epochs'
  cap = f'at most {config.max_epochs:g} epochs'
  if protocol == 'target_loss':
    return (
      f'target_loss: until the training loss ({every}) is at most '
      f'{config.target_loss:g}, {cap}: both regimes end at about the same '
      'training loss.'
    )
  return (
    f'converge: until the training loss ({every}) has not improved by '
    f'{config.converge_min_improvement:.0%} on its best for '
    f'{config.converge_patience} checks in a row, {cap}.'
  )


def main(argv: Sequence[str]) -> None:
  done = _common.run_main(argv, 'sharpness', get_config, run, check)
  if done is not None:
    _common.print_report_path(done[1])


if __name__ == '__main__':
  app.run(main)
