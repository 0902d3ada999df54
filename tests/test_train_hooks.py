"""Hooks in the training loop: order, inside-step values, the stop request,
a batch schedule put in force mid-run (compile and update counts by hand),
their metrics in the records."""

import json

import jax
import numpy as np
import pytest
from _tasks import AtUpdate, synthetic, tiny_config

from lrjax import batch as lbatch
from lrjax.train import (
  Hook,
  HookResult,
  NoiseConfig,
  train_and_evaluate,
)

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
