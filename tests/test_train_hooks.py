"""Hooks in the training loop: order, inside-step values, the stop request,
a batch schedule put in force mid-run (compile and update counts by hand),
their metrics in the records, a value a hook feeds the step, and the
trainer's plateau monitor and checkpoint timer."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tasks import AtUpdate, synthetic, tiny_config

from lrjax import batch as lbatch
from lrjax.train import (
  CheckpointTimer,
  Hook,
  HookResult,
  NoiseConfig,
  PlateauMonitor,
  Task,
  from_functions,
  load_checkpoint,
  train_and_evaluate,
)
from lrjax.train._hooks import restore_hooks

TASK = synthetic()  # 256 examples
TINY = dict(batch=16, num_epochs=1, log_every=4)


def tiny(**kw):
  return tiny_config(**{**TINY, **kw})


def _records(result):
  with open(result.metrics_path) as f:
    return [json.loads(line) for line in f]


def _same(a, b):
  return all(
    np.array_equal(x, y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


class Recorder(Hook):
  """Appends (name, update, noise_scale seen) to a shared list."""

  def __init__(self, name, log, every=1, **kw):
    self._name, self.log, self.every = name, log, every
    for k, v in kw.items():
      setattr(self, k, v)

  @property
  def name(self):
    return self._name

  def on_step(self, info, value):
    self.log.append((self._name, info.update, info.noise_scale))
    return HookResult(metrics={f'{self._name}_update': info.update})


def test_hooks_run_in_order_after_the_noise_tracker_and_log_metrics(tmp_path):
  log = []
  config = tiny(noise=NoiseConfig(enabled=True, every=2, num_slices=2))
  result = train_and_evaluate(
    config,
    str(tmp_path),
    TASK,
    hooks=(Recorder('b', log, every=2), Recorder('a', log, every=3)),
  )
  # 256 / 16 = 16 updates; 'b' (given first) every 2, 'a' every 3.
  want = sorted(
    [('b', u) for u in range(2, 17, 2)] + [('a', u) for u in range(3, 17, 3)],
    key=lambda x: (x[1], x[0] != 'b'),
  )
  assert [(n, u) for n, u, _ in log] == want
  records = _records(result)
  train = {r['step']: r for r in records if 'split' not in r}
  own = {r['step']: r for r in records if r.get('split') == 'hook'}
  # Records every 4 updates carry the metrics of the hooks due there; the
  # hooks' other updates get a record of their own.
  assert sorted(train) == [4, 8, 12, 16]
  assert train[12]['b_update'] == 12 and train[12]['a_update'] == 12
  assert 'a_update' not in train[4] and train[4]['b_update'] == 4
  assert sorted(own) == [2, 3, 6, 9, 10, 14, 15]
  assert own[6] == {
    'step': 6,
    'split': 'hook',
    'epoch': 6 * 16 / 256,
    'examples': 96,
    'b_update': 6,
    'a_update': 6,
  }
  # The tracker ran first: a hook sees the estimate of its own update.
  finite = [seen for _, u, seen in log if u in train and np.isfinite(seen)]
  assert finite  # estimates from update 4 on
  for _, u, seen in log:
    if u in train:
      assert seen == train[u]['noise_scale'] or (
        np.isnan(seen) and np.isnan(train[u]['noise_scale'])
      )


class GradNorm(Hook):
  """Sums the squared gradients per layer inside the step."""

  every = 5

  def __init__(self):
    self.seen = []

  def inside_step(self, params, grads, batch, ctx):
    return jax.tree.map(lambda g: (g * g).sum(), grads)

  def on_step(self, info, value):
    total = sum(float(v) for v in jax.tree.leaves(value))
    self.seen.append((info.update, total, info.metrics['sq_norm_global']))


def test_an_inside_step_value_arrives_at_its_updates(tmp_path):
  hook = GradNorm()
  train_and_evaluate(tiny(), str(tmp_path), TASK, hooks=(hook,))
  assert [u for u, _, _ in hook.seen] == [5, 10, 15]
  # One device: the per-layer squares add up to the step's own squared
  # gradient norm (float32 sums in another order).
  for _, total, norm in hook.seen:
    assert total == pytest.approx(norm, rel=1e-5)


class StopAt(AtUpdate):
  def on_step(self, info, value):
    return HookResult(stop=True)


def test_a_stop_request_ends_the_run_at_that_update(tmp_path):
  plain = train_and_evaluate(tiny(max_updates=5), str(tmp_path / 'plain'), TASK)
  stopped = train_and_evaluate(
    tiny(), str(tmp_path / 'stop'), TASK, hooks=(StopAt(5),)
  )
  assert stopped.stopped and not plain.stopped
  assert stopped.num_updates == 5 and stopped.examples_seen == 80
  assert _same(stopped.params, plain.params)
  # Called again, a stopped run stays stopped (its evaluation kept).
  again = train_and_evaluate(tiny(), str(tmp_path / 'stop'), TASK)
  assert again.resumed_from == 5 and again.loop_updates == 0
  assert again.stopped and _same(again.params, stopped.params)


class Switch(Hook):
  """Puts ``schedule`` in force after update ``at``."""

  sync = True

  def __init__(self, at, schedule, sizes):
    self.at, self.schedule, self.batch_sizes = at, schedule, sizes

  def due(self, update):
    return update == self.at

  def on_step(self, info, value):
    return HookResult(batch_schedule=self.schedule)


@pytest.mark.parametrize(
  'lr, compiles',
  [
    # A constant LR: the optimizer does not depend on the schedule, the
    # same steps run it: batch 16 and 64, once each.
    (0.1, 2),
    # A cosine over epochs is a function of the schedule: the change
    # compiles the new optimizer's steps (16 and 64) after the first 16.
    ('cosine(0.1,length=1.5)', 3),
  ],
)
def test_a_schedule_change_trains_the_new_schedule_exactly(
  tmp_path, lr, compiles
):
  n = 256
  final = lbatch.BatchSchedule(
    (
      lbatch.Stage(16, updates=8),
      lbatch.Stage(16, updates=4),
      lbatch.Stage(64, updates=3),
    ),
    n,
  )
  config = tiny(lr=lr, checkpoint_every=10)
  changed = train_and_evaluate(
    config, str(tmp_path / 'changed'), TASK, hooks=(Switch(8, final, (64,)),)
  )
  # By hand: 8 + 4 updates of 16, 3 of 64.
  assert changed.num_updates == 15
  assert changed.examples_seen == 12 * 16 + 3 * 64
  assert changed.num_compiles == compiles
  assert changed.batch_schedule == final
  plain = train_and_evaluate(
    tiny(lr=lr, batch=final), str(tmp_path / 'plain'), TASK
  )
  assert plain.num_updates == 15
  # The updates done keep their LR: the run equals one trained on the
  # final schedule from the start, bitwise.
  assert _same(changed.params, plain.params)
  records = [r for r in _records(changed) if 'split' not in r]
  assert [r['batch_size'] for r in records] == [16, 16, 16, 64]
  # The checkpoint (update 10) holds the schedule in force.
  from lrjax.train import load_meta

  meta = load_meta(str(tmp_path / 'changed'), update=10)
  assert meta['batch_schedule'] == [[16, 8], [16, 4], [64, 3]]


def test_a_schedule_that_rewrites_the_past_is_refused(tmp_path):
  other = lbatch.BatchSchedule(
    (lbatch.Stage(32, updates=4), lbatch.Stage(64, updates=3)), 256
  )
  with pytest.raises(ValueError, match='updates already done'):
    train_and_evaluate(
      tiny(), str(tmp_path), TASK, hooks=(Switch(4, other, (32, 64)),)
    )
  sizes = lbatch.BatchSchedule(
    (lbatch.Stage(16, updates=4), lbatch.Stage(48, updates=3)), 256
  )
  with pytest.raises(ValueError, match='48'):
    train_and_evaluate(
      tiny(), str(tmp_path / 'b'), TASK, hooks=(Switch(4, sizes, (64,)),)
    )


def test_bad_hooks_are_refused_before_training(tmp_path):
  with pytest.raises(TypeError, match='Hook'):
    train_and_evaluate(tiny(), str(tmp_path), TASK, hooks=(lambda i: None,))
  log = []
  with pytest.raises(ValueError, match='unique'):
    train_and_evaluate(
      tiny(),
      str(tmp_path),
      TASK,
      hooks=(Recorder('x', log), Recorder('x', log)),
    )


class Records(Hook):
  """Keeps the records it is shown and counts its closes."""

  def __init__(self):
    self.seen, self.closed = [], 0

  def due(self, update):
    return False

  def on_record(self, record):
    with pytest.raises(TypeError):
      record['step'] = -1  # read only
    self.seen.append(dict(record))

  def close(self):
    self.closed += 1


def test_on_record_sees_each_written_record_and_close_ends_the_call(tmp_path):
  log, records = [], Records()
  config = tiny(eval_every=0.5)
  result = train_and_evaluate(
    config,
    str(tmp_path),
    TASK,
    hooks=(Recorder('b', log, every=3), records),
  )
  written = _records(result)
  # Train records at 4, 8, 12, 16; evaluations at 8 and 16; 'b' at 3,
  # 6, 9, 15 in records of their own (12 is in the train record).
  assert [(r['step'], r.get('split')) for r in written] == [
    (3, 'hook'),
    (4, None),
    (6, 'hook'),
    (8, None),
    (8, 'test'),
    (9, 'hook'),
    (12, None),
    (15, 'hook'),
    (16, None),
    (16, 'test'),
  ]
  assert json.loads(json.dumps(records.seen)) == written
  assert records.closed == 1


class Micro(Hook):
  """Keeps (update, micro-step, epoch, batch, finite) of every micro-step."""

  def __init__(self):
    self.seen = []

  def due(self, update):
    return False

  def on_micro_step(self, info):
    self.seen.append(
      (
        info.update,
        info.micro_step,
        info.epoch,
        info.batch_size,
        info.metrics['finite'],
      )
    )


def test_on_micro_step_sees_every_micro_step_in_order(tmp_path):
  micro = Micro()
  # Batch 64 on micro-batches of 16: 4 micro-steps an update, 4 updates.
  config = tiny(batch=64, max_device_batch=16)
  train_and_evaluate(config, str(tmp_path), TASK, hooks=(micro,))
  assert micro.seen == [
    (u, j, u * 64 / 256, 64, True) for u in range(4) for j in range(4)
  ]


# A value a hook feeds the step ------------------------------------------------


class Feeder(Hook):
  """Feeds the step the count of its ``step_input`` calls (one per
  micro-step dispatched) and keeps what its inside step read back."""

  every = 2

  def __init__(self, name='feeder'):
    self._name, self.calls, self.seen = name, 0, []

  @property
  def name(self):
    return self._name

  def step_input(self):
    self.calls += 1
    return self.calls

  def inside_step(self, params, grads, batch, ctx):
    return ctx.step_input

  def on_step(self, info, value):
    self.seen.append((info.update, float(value)))


def test_a_hook_feeds_the_step_and_its_inside_step_reads_it(tmp_path):
  feeder = Feeder()
  # 16 updates of one micro-step: update u is dispatched with the u-th call.
  train_and_evaluate(tiny(), str(tmp_path), TASK, hooks=(feeder,))
  assert feeder.seen == [(u, float(u)) for u in range(2, 17, 2)]


def test_only_one_hook_may_feed_the_step(tmp_path):
  with pytest.raises(ValueError, match='step_input'):
    train_and_evaluate(
      tiny(), str(tmp_path), TASK, hooks=(Feeder('a'), Feeder('b'))
    )
  # An evaluation plateau metric: the trainer's PlateauMonitor feeds it.
  with pytest.raises(ValueError, match=r"\['plateau_monitor', 'a'\]"):
    train_and_evaluate(
      tiny(eval_every=1, plateau_metric='test_loss'),
      str(tmp_path),
      TASK,
      hooks=(Feeder('a'),),
    )


# The plateau monitor ----------------------------------------------------------


def _flat_task():
  """A linear regression whose evaluation metric 'flat' is always 1: every
  evaluation after the first is a plateau."""
  x = np.random.RandomState(0).randn(32, 2).astype(np.float32)
  data = {'x': x, 'y': x.sum(-1)}

  def init(key, x):
    return {'w': jnp.zeros((x.shape[-1],)), 'b': jnp.zeros(())}

  def apply(params, x):
    return x @ params['w'] + params['b']

  def loss(outputs, batch):
    err = outputs - batch['y']
    return jnp.mean(err**2), {'flat': jnp.ones_like(err).mean()}

  return Task(
    model=from_functions(init, apply),
    loss=loss,
    train_data=data,
    eval_data=data,
    inputs='x',
  )


FLAT = _flat_task()
# 4 updates an epoch; the LR halves after each epoch without improvement.
PLATEAU = dict(
  batch=8,
  num_epochs=4,
  eval_every=1,
  log_every=4,
  prefetch=0,
  lr='reduce_on_plateau(0.1,factor=0.5,patience=0,value_per=epoch)',
  plateau_metric='test_flat',
)


def _untimed(result):
  timing = {'examples_per_sec', 'steps_per_sec', 'eta_sec', 'data_wait_sec'}
  return [
    {k: v for k, v in r.items() if k not in timing} for r in _records(result)
  ]


def test_the_plateau_monitor_feeds_the_evaluation_to_the_policy(tmp_path):
  result = train_and_evaluate(tiny_config(**PLATEAU), str(tmp_path), FLAT)
  lrs = [r['lr'] for r in _records(result) if r.get('split') is None]
  # Epoch 0: no evaluation yet (NaN makes no decision); epoch 1: the first
  # 1.0 improves on +inf; epochs 2 and 3: 1.0 again, a bad epoch each with
  # patience 0, so the LR halves twice (exact in float32).
  lr0 = np.float32(0.1)
  assert lrs == [float(lr0), float(lr0), float(lr0 / 2), float(lr0 / 4)]
  assert result.test_metrics['flat'] == 1.0
  _, meta = load_checkpoint(str(tmp_path))
  assert meta['hooks']['plateau_monitor'] == 1.0
  assert 'monitor' not in meta


def test_a_plateau_run_resumed_at_an_epoch_end_is_bitwise(tmp_path):
  full = train_and_evaluate(
    tiny_config(**PLATEAU), str(tmp_path / 'full'), FLAT
  )
  # Stopped after epoch 2's evaluation: the resumed process decides epoch
  # 2 on the checkpointed 1.0 (NaN there would keep the LR at 0.1).
  workdir = str(tmp_path / 'split')
  train_and_evaluate(tiny_config(**PLATEAU, max_updates=8), workdir, FLAT)
  resumed = train_and_evaluate(tiny_config(**PLATEAU), workdir, FLAT)
  assert resumed.resumed_from == 8
  assert _same(resumed.params, full.params)
  assert _untimed(resumed) == _untimed(full)


def test_the_plateau_monitor_keeps_and_checkpoints_the_latest_evaluation():
  monitor = PlateauMonitor('test_accuracy')
  assert np.isnan(monitor.step_input()) and monitor.state() is None
  monitor.on_record({'step': 4, 'loss': 0.5})  # a train record
  assert np.isnan(monitor.step_input())
  monitor.on_record({'step': 4, 'split': 'test', 'accuracy': 0.25})
  assert monitor.step_input() == np.float32(0.25)
  assert monitor.state() == 0.25
  with pytest.raises(
    ValueError,
    match=r"plateau_metric='test_accuracy': the evaluation has no "
    r"'accuracy'; it has \['loss', 'top5'\]",
  ):
    monitor.on_record(
      {'step': 8, 'split': 'test', 'epoch': 1.0, 'loss': 1.0, 'top5': 1.0}
    )
  # From its own state, and from a checkpoint written before it was a hook
  # (meta['monitor']); a checkpoint without a value leaves NaN.
  for meta in (
    {'hooks': {'plateau_monitor': 0.75}},
    {'monitor': 0.75, 'hooks': {'noise': None}},
  ):
    again = PlateauMonitor('test_accuracy')
    restore_hooks([again], meta)
    assert again.step_input() == np.float32(0.75)
  again = PlateauMonitor('test_accuracy')
  restore_hooks([again], {'hooks': {'plateau_monitor': None}})
  assert np.isnan(again.step_input())
  with pytest.raises(ValueError, match='test_<name>'):
    PlateauMonitor('loss')


# The checkpoint timer ---------------------------------------------------------


def test_the_timer_asks_for_a_checkpoint_after_its_interval():
  times = iter([0.0, 4.0, 9.9, 10.0, 10.5, 15.0, 21.0])
  timer = CheckpointTimer(10.0, clock=lambda: next(times))  # at 0
  assert timer.sync and timer.name == 'checkpoint_timer'
  assert [timer.due(u) for u in (1, 2, 3)] == [False, False, True]
  assert timer.on_step(None, None) == HookResult(checkpoint=True)
  timer.on_checkpoint(3)  # at 10.5: due again from 20.5
  assert [timer.due(u) for u in (4, 5)] == [False, True]  # 15, 21
  never = CheckpointTimer(0.0, clock=lambda: 1 / 0)  # never reads it
  assert not never.due(1)
  never.on_checkpoint(1)


def test_every_checkpoint_restarts_the_timer(tmp_path, monkeypatch):
  # A clock one second later at each reading: once when the timer is made,
  # at each of the 16 updates and after each checkpoint. With 3 s it is due
  # at 3 (read 3), restarts at the checkpoints of 3 and 4 (checkpoint_every,
  # reads 4 and 6), is due at 7 (read 9), and so on: 3, 4, 7, 8, 11, 12, 15,
  # then 16 ends the run. A timer restarted only by its own checkpoints
  # would be due at 6 instead of 7.
  ticks = iter(range(100))
  monkeypatch.setattr(
    CheckpointTimer, 'clock', staticmethod(lambda: next(ticks))
  )
  config = tiny(checkpoint_every=4, checkpoint_seconds=3.0, keep_checkpoints=20)
  train_and_evaluate(config, str(tmp_path), TASK)
  saved = sorted(int(d) for d in os.listdir(tmp_path / 'checkpoints'))
  assert saved == [3, 4, 7, 8, 11, 12, 15, 16]
