r"""Stop a run when its loss, checked every few epochs, meets a rule.

Keskar et al. (2017) compare small- and large-batch minima after training
both "to convergence": either until the training loss reaches a target, or
until it stops improving. :class:`StopRule` says when that is from the
losses of regular checks; :class:`LossStop` is the hook that measures the
loss inside the trainer at each check's update, checkpoints there and
stops the run. Its checks are its checkpointed state, so a killed run
resumes from its last check and stops where an uninterrupted one stops.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging

from lrjax.train._hooks import Hook, HookResult, RunInfo, StepInfo
from lrjax.train._workdir import ConfigMismatchError


@dataclasses.dataclass(frozen=True)
class StopRule:
  r"""When a run ends, from its training-loss checks.

  The loss is measured every `check_epochs` epochs, the last check at
  `max_epochs`. After check :math:`k` with loss :math:`L_k` the run stops

  - ``'target_loss'``: when :math:`L_k \le` `target_loss`;
  - ``'converge'``: when `patience` checks in a row did not improve: check
    :math:`k > 1` improves when

    .. math:: L_k < (1 - \delta) L^*,

    with :math:`\delta` = `min_improvement` and :math:`L^*` the best loss
    so far, which only an improving check replaces (PyTorch's
    ``ReduceLROnPlateau`` with ``threshold_mode='rel'``); the first check
    is the reference, so the earliest stop is at check `patience` + 1;

  and at `max_epochs` whatever the losses.

  Attributes:
    protocol: ``'target_loss'`` or ``'converge'``.
    check_epochs: epochs between checks, > 0.
    max_epochs: epochs of the last check, >= `check_epochs`.
    target_loss: the ``'target_loss'`` rule's loss, > 0.
    patience: the ``'converge'`` rule's checks without improvement, >= 1.
    min_improvement: the ``'converge'`` rule's relative improvement that
      counts, in [0, 1).

  Raises:
    ValueError: for a setting out of its range.

  Examples:
    >>> rule = StopRule('target_loss', check_epochs=5, max_epochs=12,
    ...                 target_loss=0.1)
    >>> rule.num_checks, [rule.check_epoch(k) for k in (1, 2, 3)]
    (3, [5.0, 10.0, 12.0])
    >>> rule.stop([0.5, 0.09])
    'target_loss'
    >>> print(rule.stop([0.5, 0.2]))
    None
    >>> rule.stop([0.5, 0.2, 0.11])
    'max_epochs'

  References:
    Keskar et al., "On Large-Batch Training for Deep Learning:
    Generalization Gap and Sharp Minima", ICLR 2017.
  """

  protocol: str
  check_epochs: float
  max_epochs: float
  target_loss: float = 1e-3
  patience: int = 3
  min_improvement: float = 0.01

  def __post_init__(self) -> None:
    if self.protocol not in ('target_loss', 'converge'):
      raise ValueError(
        f"protocol={self.protocol!r} must be 'target_loss' or 'converge'"
      )
    if not self.check_epochs > 0:
      raise ValueError(f'check_epochs={self.check_epochs} must be > 0')
    if not self.max_epochs >= self.check_epochs:
      raise ValueError(
        f'max_epochs={self.max_epochs} must be >= '
        f'check_epochs={self.check_epochs}'
      )
    if not self.target_loss > 0:
      raise ValueError(f'target_loss={self.target_loss} must be > 0')
    if self.patience < 1:
      raise ValueError(f'patience={self.patience} must be >= 1')
    if not 0 <= self.min_improvement < 1:
      raise ValueError(
        f'min_improvement={self.min_improvement} must be in [0, 1)'
      )

  @property
  def num_checks(self) -> int:
    """Checks up to `max_epochs`, the last one at `max_epochs`."""
    # The tolerance keeps 15 / 5 at 3 checks despite rounding.
    return math.ceil(self.max_epochs / self.check_epochs - 1e-9)

  def check_epoch(self, k: int) -> float:
    """The epoch of check k = 1, 2, ..., `num_checks`."""
    return float(min(k * self.check_epochs, self.max_epochs))

  def stop(self, losses: Sequence[float]) -> str | None:
    """Why the run stops after the last of `losses` (None: it goes on).

    Args:
      losses: the training loss at checks 1, 2, ..., k.

    Returns:
      ``'target_loss'`` or ``'converge'`` (the rule is met),
      ``'max_epochs'`` (check k is the last), or None.
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
    """The first check at which the run stops and why (1-based), or None.

    Examples:
      >>> StopRule('converge', 1, 100, patience=1).stop_check([1, 1, 0.5])
      (2, 'converge')
    """
    for k in range(1, len(losses) + 1):
      reason = self.stop(losses[:k])
      if reason is not None:
        return k, reason
    return None


class LossStop(Hook):
  """Stops the trainer when a :class:`StopRule` is met.

  Due at each check's update (the first update that completes
  ``rule.check_epoch(k)`` epochs of the schedule in force), ``sync`` so that
  the loop waits for that update's state, it measures
  ``loss_fn(state)`` there, logs it as ``stop_rule_train_loss``, asks for a
  checkpoint (a killed run resumes from its last check) and stops the run
  when the rule says so. Its checks are its checkpointed state; resuming
  from checks made under another rule raises.

  Args:
    rule: the stopping rule.
    loss_fn: ``loss_fn(state) -> float``, the loss at ``state``, one replica
      of the :class:`lrjax.train.TrainState` as numpy arrays (its
      ``params`` and ``model_state``); e.g. the mean loss over the whole
      training set.

  Attributes:
    checks: ``{'epoch', 'step', 'train_loss'}`` of each check so far.
    stopped: why the run stopped (see :meth:`StopRule.stop`), or None.

  Examples:
    >>> hook = LossStop(StopRule('target_loss', 1, 3), lambda state: 0.0)
    >>> hook.name, hook.sync, hook.checks, hook.stopped
    ('stop_rule', True, [], None)
  """

  sync = True

  def __init__(self, rule: StopRule, loss_fn: Callable[[Any], float]) -> None:
    self.rule = rule
    self._loss_fn = loss_fn
    self._updates: list[int] = []
    self.checks: list[dict[str, Any]] = []
    self.stopped: str | None = None

  @property
  def name(self) -> str:
    return 'stop_rule'

  def start(self, run: RunInfo) -> None:
    self._updates = [
      run.schedule.update_at_epoch(self.rule.check_epoch(k))
      for k in range(1, self.rule.num_checks + 1)
    ]

  def due(self, update: int) -> bool:
    k = len(self.checks)
    return (
      self.stopped is None
      and k < len(self._updates)
      and update == self._updates[k]
    )

  def on_step(self, info: StepInfo, value: Any) -> HookResult:
    loss = float(self._loss_fn(info.state()))
    epoch = info.examples / info.num_train
    self.checks.append(
      {'epoch': epoch, 'step': int(info.update), 'train_loss': loss}
    )
    self.stopped = self.rule.stop([c['train_loss'] for c in self.checks])
    logging.info(
      '%s check %d/%d: epoch %.2f, update %d, training loss %.4g%s',
      self.rule.protocol,
      len(self.checks),
      self.rule.num_checks,
      epoch,
      info.update,
      loss,
      f', stopped ({self.stopped})' if self.stopped else '',
    )
    return HookResult(
      metrics={'stop_rule_train_loss': loss},
      stop=self.stopped is not None,
      checkpoint=True,
    )

  def state(self) -> dict[str, Any]:
    """``{'rule', 'checks', 'stopped'}``, JSON-ready."""
    return {
      'rule': dataclasses.asdict(self.rule),
      'checks': self.checks,
      'stopped': self.stopped,
    }

  def restore(self, state: Any) -> None:
    """Resumes the checks.

    Raises:
      ConfigMismatchError: when they were made under another rule.
    """
    rule = dataclasses.asdict(self.rule)
    if state['rule'] != rule:
      changes = '; '.join(
        f'{k}: {state["rule"].get(k)!r} -> {v!r}'
        for k, v in rule.items()
        if state['rule'].get(k) != v
      )
      raise ConfigMismatchError(
        f'the run was checked under another stopping rule ({changes}); use '
        'another workdir, or overwrite=True (--overwrite) to train afresh'
      )
    self.checks = list(state['checks'])
    self.stopped = state['stopped']
