"""LossStop and StopRule: the stopping rules by hand tables, the check
updates and the stopping update by hand, a killed run resuming to the same
stop, and checks of another rule refused."""

import re

import jax
import numpy as np
import pytest
from _tasks import synthetic, tiny_config

from lrjax.train import (
  ConfigMismatchError,
  LossStop,
  StopRule,
  train_and_evaluate,
)

TASK = synthetic()  # 256 examples
# Batch 48 over 256 examples: check k (every epoch) at the first update
# that completes k epochs, ceil(256 k / 48): 6, 11, 16, 22, 27.
CONFIG = tiny_config(batch=48, num_epochs=5)
CHECKS = [6, 11, 16, 22, 27]


@pytest.mark.parametrize(
  'losses, patience, min_improvement, expected',
  [
    # Hand table, patience 2, improvement 10% on the best so far:
    # 0.5 < 0.9 (best 0.5); 0.46 >= 0.45 (1 bad); 0.44 < 0.45 (best 0.44);
    # 0.30 < 0.396 (best 0.30); 0.298 >= 0.27 (1); 0.297 (2): stop at 7.
    ([1.0, 0.5, 0.46, 0.44, 0.30, 0.298, 0.297, 0.296], 2, 0.1, 7),
    # A flat loss stops at check patience + 1.
    ([1.0, 1.0, 1.0, 1.0], 3, 0.01, 4),
    ([1.0, 1.0, 1.0], 3, 0.01, None),
    # Zero threshold: any decrease improves; an equal loss does not.
    ([1.0, 0.99, 0.98, 0.98], 1, 0.0, 4),
    # Steady 5% falls improve under a 1% threshold, not under 10%.
    ([1.0, 0.95, 0.9025, 0.857], 2, 0.01, None),
    ([1.0, 0.95, 0.9025, 0.857], 2, 0.1, 3),
  ],
)
def test_converge_rule_hand_table(losses, patience, min_improvement, expected):
  rule = StopRule(
    'converge',
    check_epochs=1.0,
    max_epochs=100.0,
    patience=patience,
    min_improvement=min_improvement,
  )
  stop = rule.stop_check(losses)
  assert stop == (None if expected is None else (expected, 'converge'))


def test_target_loss_rule_and_the_epoch_cap():
  rule = StopRule(
    'target_loss', check_epochs=5.0, max_epochs=12.0, target_loss=0.1
  )
  # Checks at 5, 10 and the cap 12.
  assert rule.num_checks == 3
  assert [rule.check_epoch(k) for k in (1, 2, 3)] == [5.0, 10.0, 12.0]
  assert rule.stop_check([0.5, 0.1, 0.05]) == (2, 'target_loss')  # <=
  assert rule.stop_check([0.5, 0.2]) is None
  assert rule.stop_check([0.5, 0.2, 0.11]) == (3, 'max_epochs')
  # The target wins at the last check too.
  assert rule.stop_check([0.5, 0.2, 0.09]) == (3, 'target_loss')
  # 15 / 5 is 3 checks, not 4, despite rounding.
  assert StopRule('target_loss', 0.1, 0.3).num_checks == 3


@pytest.mark.parametrize(
  'changes, message',
  [
    ({'protocol': 'equal_epochs'}, "protocol='equal_epochs' must be"),
    ({'check_epochs': 0.0}, 'check_epochs=0.0 must be > 0'),
    ({'max_epochs': 0.5}, 'max_epochs=0.5 must be >= check_epochs=1.0'),
    ({'target_loss': 0.0}, 'target_loss=0.0 must be > 0'),
    ({'patience': 0}, 'patience=0 must be >= 1'),
    ({'min_improvement': 1.0}, 'min_improvement=1.0 must be in [0, 1)'),
  ],
)
def test_bad_rules_are_refused(changes, message):
  kwargs = dict(protocol='converge', check_epochs=1.0, max_epochs=3.0)
  with pytest.raises(ValueError, match=re.escape(message)):
    StopRule(**{**kwargs, **changes})


class _Killed(Exception):
  pass


def _scripted(table, calls, kill_at=None):
  """A loss_fn returning ``table[update]``, recording each call's update,
  raising at call ``kill_at`` (after the trainer's check, before it is
  recorded)."""

  def loss_fn(state):
    calls.append(int(state.step))
    if len(calls) == kill_at:
      raise _Killed
    return table[int(state.step)]

  return loss_fn


def test_the_run_stops_at_the_first_check_at_the_target(tmp_path):
  calls = []
  hook = LossStop(
    StopRule('target_loss', check_epochs=1.0, max_epochs=5.0, target_loss=0.1),
    _scripted({6: 0.5, 11: 0.3, 16: 0.1}, calls),
  )
  result = train_and_evaluate(CONFIG, str(tmp_path), TASK, hooks=(hook,))
  assert calls == [6, 11, 16]
  assert result.stopped and result.num_updates == 16
  assert hook.stopped == 'target_loss'
  assert hook.checks == [
    {'epoch': u * 48 / 256, 'step': u, 'train_loss': v}
    for u, v in ((6, 0.5), (11, 0.3), (16, 0.1))
  ]
  # Called again, the stopped run stays stopped.
  again = train_and_evaluate(CONFIG, str(tmp_path), TASK, hooks=(hook,))
  assert again.loop_updates == 0 and again.num_updates == 16


def test_a_killed_run_resumes_to_the_same_stop_and_refuses_another_rule(
  tmp_path,
):
  rule = StopRule(
    'target_loss', check_epochs=1.0, max_epochs=5.0, target_loss=1e-9
  )
  table = dict.fromkeys(CHECKS, 0.5)
  calls = []
  whole = LossStop(rule, _scripted(table, calls))
  checked = train_and_evaluate(
    CONFIG, str(tmp_path / 'whole'), TASK, hooks=(whole,)
  )
  assert calls == CHECKS
  assert whole.stopped == 'max_epochs' and checked.num_updates == 27
  # Checked inside one trainer call, the run has the parameters of a run
  # without checks.
  once = train_and_evaluate(CONFIG, str(tmp_path / 'once'), TASK)
  for a, b in zip(
    jax.tree.leaves(checked.params), jax.tree.leaves(once.params), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  killed = str(tmp_path / 'killed')
  calls.clear()
  with pytest.raises(_Killed):
    train_and_evaluate(
      CONFIG, killed, TASK, hooks=(LossStop(rule, _scripted(table, calls, 2)),)
    )
  calls.clear()
  resumed = LossStop(rule, _scripted(table, calls))
  train_and_evaluate(CONFIG, killed, TASK, hooks=(resumed,))
  assert calls == CHECKS[1:]  # check 2 again (from check 1's checkpoint)
  assert resumed.state() == whole.state()
  other = StopRule(
    'target_loss', check_epochs=1.0, max_epochs=5.0, target_loss=0.5
  )
  with pytest.raises(ConfigMismatchError, match='target_loss: 1e-09 -> 0.5'):
    train_and_evaluate(
      CONFIG, killed, TASK, hooks=(LossStop(other, _scripted(table, calls)),)
    )
