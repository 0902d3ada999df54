"""Trainer on one device: validation, accumulation, compile counts, NaN guard,
in-process resume, metrics files, TensorBoard event files."""

import glob
import io
import json
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tasks import synthetic, tiny_config

from lrjax import metrics as lmetrics
from lrjax import models, tasks
from lrjax.train import (
  NoiseConfig,
  NonFiniteError,
  create_train_state,
  load_checkpoint,
  make_optimizer,
  make_train_body,
  train_and_evaluate,
)
from lrjax.train._parallel import Runner
from lrjax.train._step import hyperparams

TASK = synthetic()
tiny = tiny_config


def _leaves_equal(a, b):
  return all(
    np.array_equal(x, y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


# Validation ---------------------------------------------------------------


@pytest.mark.parametrize(
  'changes, field',
  [
    ({'optimizer': 'rmsprop'}, 'optimizer'),
    ({'parallel': 'pjit'}, 'parallel'),
    ({'max_device_batch': 0}, 'max_device_batch'),
    ({'nan_policy': 'ignore'}, 'nan_policy'),
    ({'log_every': 0}, 'log_every'),
    ({'accumulate': 'yes'}, 'accumulate'),
    ({'noise': NoiseConfig(decay=1.0)}, 'noise.decay'),
    ({'num_processes': 2}, 'coordinator_address'),
    (
      {'process_id': 3, 'num_processes': 2, 'coordinator_address': 'h:1'},
      'process_id',
    ),
  ],
)
def test_validate_names_the_field(changes, field):
  with pytest.raises(ValueError, match=field):
    tiny(**changes).validate()


@pytest.mark.parametrize(
  'changes, field',
  [
    ({'batch': 30, 'num_devices': 4}, 'batch'),  # 30 % 4 != 0
    ({'batch': 512}, 'batch'),  # more than the 256 examples
    ({'num_devices': 64}, 'num_devices'),
    ({'lr': 'no_such_policy(1)'}, 'lr'),
    ({'batch': 64, 'max_device_batch': 32, 'accumulate': False}, 'accumulate'),
  ],
)
def test_bad_values_fail_before_compiling(changes, field, tmp_path):
  with pytest.raises(ValueError, match=field):
    train_and_evaluate(tiny(**changes), str(tmp_path), TASK)
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_accumulate_true_wraps_multisteps_with_the_same_numbers(
  tmp_path,
):
  config = tiny(batch=32, num_epochs=1, keep_checkpoints=1)
  plain = train_and_evaluate(config, str(tmp_path / 'plain'), TASK)
  wrapped = train_and_evaluate(
    config.replace(accumulate=True), str(tmp_path / 'wrapped'), TASK
  )
  # One micro-step per update: the accumulator holds the gradient and the
  # update is the same; not bitwise, as XLA fuses the wrapped update
  # differently (a few float32 ulps after 8 updates).
  for a, b in zip(
    jax.tree.leaves(plain.params), jax.tree.leaves(wrapped.params), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  state, _ = load_checkpoint(str(tmp_path / 'wrapped'))
  assert 'acc_grads' in state['opt_state']
  state, _ = load_checkpoint(str(tmp_path / 'plain'))
  assert 'acc_grads' not in state['opt_state']


# The step ----------------------------------------------------------------


def _setup_step(every_k, skip=False, lr=None):
  model = models.get('mlp', num_classes=10, hidden=(16,))
  tx = make_optimizer(
    'sgd',
    learning_rate=lr or (lambda c: 0.1 / (1.0 + c)),
    momentum=0.9,
    weight_decay=1e-3,
    every_k_schedule=every_k,
    skip_non_finite=skip,
  )
  task = tasks.classification(model, _data(8))
  host = create_train_state(task, tx, seed=0)
  runner = Runner(
    make_train_body(task.train_loss, tx, skip_non_finite=skip),
    jax.devices()[:1],
    'shard_map',
    task.example(),
  )
  return host, runner


def _data(n, seed=0):
  rng = np.random.RandomState(seed)
  return {
    'image': rng.randn(n, 4, 4, 1).astype(np.float32),
    'label': rng.randint(0, 10, n).astype(np.int32),
  }


def test_accumulated_micro_batches_equal_one_big_batch():
  data = _data(64)
  host, big = _setup_step(None)
  state = big.put_state(host)
  step = big.compile(state, 32)
  for u in range(2):
    b = {k: v[32 * u : 32 * (u + 1)] for k, v in data.items()}
    state, m_big = step(state, *big.put_batch(b))
  p_big = big.get_state(state).params

  host, acc = _setup_step(4)
  state = acc.put_state(host)
  step = acc.compile(state, 8)
  for i in range(8):
    b = {k: v[8 * i : 8 * (i + 1)] for k, v in data.items()}
    state, m_acc = step(state, *acc.put_batch(b))
  host_acc = acc.get_state(state)
  for x, y in zip(
    jax.tree.leaves(p_big), jax.tree.leaves(host_acc.params), strict=True
  ):
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
  # The LR schedule's counter counts real updates: 2, not 8 micro-steps,
  # and the second update used lr(1) = 0.1 / 2.
  inner = host_acc.opt_state.inner_opt_state
  assert int(inner.count) == 2
  assert big.metrics(m_big)['learning_rate'] == pytest.approx(0.05, rel=1e-7)
  assert acc.metrics(m_acc)['learning_rate'] == pytest.approx(0.05, rel=1e-7)


@pytest.mark.parametrize('every_k', [None, 2])
def test_skip_policy_skips_non_finite_updates(every_k):
  host, runner = _setup_step(every_k, skip=True, lr=0.1)
  state = runner.put_state(host)
  step = runner.compile(state, 8)
  before = runner.get_state(state)
  bad = _data(8)
  bad['image'][0, 0, 0, 0] = np.nan
  state, m = step(state, *runner.put_batch(bad))
  after = runner.get_state(state)
  m = runner.metrics(m)
  assert not m['finite'] and m['skipped'] == 1
  assert _leaves_equal(before.params, after.params)
  for _ in range(2):
    state, m = step(state, *runner.put_batch(_data(8, 1)))
  after = runner.get_state(state)
  assert runner.metrics(m)['skipped'] == 1
  assert not _leaves_equal(before.params, after.params)
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(after.params))


def test_optimizers_build_and_step():
  for name in ('sgd', 'nesterov', 'adam', 'adamw', 'lamb', 'lars'):
    tx = make_optimizer(
      name, learning_rate=0.01, momentum=0.9, weight_decay=1e-4
    )
    params = {'w': jnp.ones((3,))}
    state = tx.init(params)
    upd, state = tx.update(
      {'w': jnp.ones((3,))}, state, params, value=1.0, epoch=0.0
    )
    assert np.all(np.isfinite(np.asarray(upd['w']))), name
    hp = hyperparams(state)
    assert float(hp['learning_rate']) == pytest.approx(0.01), name
  with pytest.raises(ValueError, match='optimizer'):
    make_optimizer('rmsprop', learning_rate=0.1, momentum=0.0, weight_decay=0)


# The loop ----------------------------------------------------------------

CONTRACT_KEYS = {
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
  'noise_g',
  'examples_per_sec',
  'steps_per_sec',
  'eta_sec',
}


def test_three_stage_ramp_compiles_each_shape_once(tmp_path):
  # Four stages, three distinct micro-batches: 128 > max_device_batch=64 is
  # accumulated as 2 x 64 and reuses the 64 program.
  config = tiny(
    batch='stages(16@2up,32@2up,64@2up,128@2up)',
    max_device_batch=64,
    log_every=1,
    keep_checkpoints=0,
  )
  result = train_and_evaluate(config, str(tmp_path), TASK)
  assert result.num_compiles == 3
  assert sorted(result.compile_seconds) == [16, 32, 64]
  records = [json.loads(x) for x in open(result.metrics_path)]
  train = [r for r in records if 'split' not in r]
  evals = [r for r in records if r.get('split') == 'test']
  assert [r['batch_size'] for r in train] == [16, 16, 32, 32, 64, 64, 128, 128]
  assert [r['accum_steps'] for r in train] == [1] * 6 + [2, 2]
  assert [r['micro_batch'] for r in train] == [16, 16, 32, 32, 64, 64, 64, 64]
  assert [r['examples'] for r in train] == [16, 32, 64, 96, 160, 224, 352, 480]
  assert train[-1]['epoch'] == pytest.approx(480 / 256)
  for r in train:
    assert CONTRACT_KEYS <= set(r), CONTRACT_KEYS - set(r)
    assert r['lr'] == pytest.approx(0.1)
    assert r['momentum'] == pytest.approx(0.9)
  assert len(evals) == 1
  assert {'loss', 'accuracy', 'top5_accuracy'} <= set(evals[0])
  assert json.load(open(tmp_path / 'config.json'))['max_device_batch'] == 64
  assert result.num_updates == 8 and result.examples_seen == 480


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
  # A plain callable is an optax schedule of the update count: LR 0.1 for
  # counts 0 and 1 (updates 1-2), then inf: the third update makes the
  # parameters inf and the fourth step's loss NaN.
  config = tiny(
    batch=16,
    num_epochs=1,
    lr=lambda count: jnp.where(count < 2, 0.1, jnp.inf),
    checkpoint_every=2,
  )
  with pytest.raises(
    NonFiniteError, match=r'step 4\b.*epoch 0\.1875.*lr inf.*batch size 16'
  ):
    train_and_evaluate(config, str(tmp_path), TASK)
  state, meta = load_checkpoint(str(tmp_path))
  assert meta['update'] == 2
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(state['params']))


def test_resume_compiles_only_the_shapes_still_ahead(tmp_path):
  config = tiny(batch='stages(16@2up,32@2up,64@2up)', log_every=1)
  train_and_evaluate(config.replace(max_updates=4), str(tmp_path), TASK)
  # Resumed at update 4, the start of the batch-64 stage.
  rest = train_and_evaluate(config, str(tmp_path), TASK)
  assert rest.resumed_from == 4
  assert rest.num_compiles == 1
  assert sorted(rest.compile_seconds) == [64]


def test_resume_equals_uninterrupted_bitwise(tmp_path):
  config = tiny(
    batch='stages(16@4up,32@6up)',
    max_device_batch=16,
    checkpoint_every=3,
    log_every=2,
    noise=NoiseConfig(enabled=True, every=2, num_slices=2),
  )
  full = train_and_evaluate(config, str(tmp_path / 'full'), TASK)
  part = train_and_evaluate(
    config.replace(max_updates=5), str(tmp_path / 'split'), TASK
  )
  assert part.num_updates == 5
  rest = train_and_evaluate(config, str(tmp_path / 'split'), TASK)
  assert rest.resumed_from == 5 and rest.num_updates == 10
  assert _leaves_equal(full.params, rest.params)
  assert full.train_metrics['noise_scale'] == rest.train_metrics['noise_scale']
  assert full.train_metrics['examples'] == rest.train_metrics['examples'] == 256


# Metric writers ------------------------------------------------------------


def test_progress_rates_and_eta_with_injected_clock():
  times = iter([10.0, 12.0, 13.0])
  p = lmetrics.Progress(total_steps=100, clock=lambda: next(times))
  p.start(step=0, examples=0)
  r = p.update(step=10, examples=320)
  assert r == {'steps_per_sec': 5.0, 'examples_per_sec': 160.0, 'eta_sec': 18.0}
  r = p.update(step=20, examples=960)
  # Since the last call: 10 steps and 640 examples in 1 s; the ETA uses the
  # whole-run rate, 3 s / 20 steps, for the 80 steps left.
  assert r['steps_per_sec'] == 10.0 and r['examples_per_sec'] == 640.0
  assert r['eta_sec'] == pytest.approx(12.0)


def test_progress_bar_only_on_terminals():
  stream = io.StringIO()
  bar = lmetrics.ProgressBar(4, stream=stream, width=4)
  bar.update(2, 'loss=1')
  assert stream.getvalue() == ''  # StringIO is not a terminal
  assert bar.render(2, 'loss=1') == '[##--] 2/4 loss=1'
  forced = lmetrics.ProgressBar(4, stream=stream, enabled=True, width=4)
  forced.update(4)
  assert stream.getvalue() == '\r[####] 4/4'


def test_jsonl_and_logging_writers(tmp_path):
  path = str(tmp_path / 'm' / 'metrics.jsonl')
  w = lmetrics.JsonlWriter(path)
  w.write({'step': 1, 'loss': np.float32(0.5), 'lr': float('nan')})
  w.close()
  assert json.loads(open(path).read()) == {'step': 1, 'loss': 0.5, 'lr': 'nan'}
  line = lmetrics.LoggingWriter(('step', 'loss'), prefix='train ').format(
    {'loss': 0.123456, 'step': 7, 'other': 1}
  )
  assert line == 'train step=7 loss=0.1235'


def test_plateau_policy_gets_loss_and_epoch_through_the_optimizer():
  from lrjax import schedules

  policy = schedules.reduce_on_plateau(0.1, factor=0.5, patience=0)
  tx = make_optimizer(
    'sgd', learning_rate=policy, momentum=0.0, weight_decay=0.0
  )
  params = {'w': jnp.ones((2,))}
  state = tx.init(params)
  update = jax.jit(lambda g, s, p, v, e: tx.update(g, s, p, value=v, epoch=e))
  seen = []
  for epoch, loss in [(0.0, 1.0), (1.0, 2.0), (2.0, 2.0)]:
    _, state = update(params, state, params, jnp.float32(loss), epoch)
    seen.append(float(hyperparams(state)['learning_rate']))
  # The loss stopped improving at epoch 1, so epoch 2's LR is halved.
  assert seen == pytest.approx([0.1, 0.1, 0.05], rel=1e-6)


# TensorBoard (tensorboardX) ------------------------------------------------


def _masked(crc):
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_events(logdir):
  """Events of the one event file in ``logdir``, framing and CRCs checked.

  tensorboardX has no reader, so this parses the TFRecord framing: per
  record a little-endian uint64 length, the masked CRC-32C of those 8
  bytes, the payload (an ``Event`` protobuf) and the masked CRC-32C of the
  payload, with mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32).
  """
  from tensorboardX.crc32c import crc32c
  from tensorboardX.proto import event_pb2

  (path,) = glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))
  raw = open(path, 'rb').read()
  events, pos = [], 0
  while pos < len(raw):
    header = raw[pos : pos + 8]
    (length,) = struct.unpack('<Q', header)
    (header_crc,) = struct.unpack('<I', raw[pos + 8 : pos + 12])
    assert header_crc == _masked(crc32c(header))
    payload = raw[pos + 12 : pos + 12 + length]
    (payload_crc,) = struct.unpack(
      '<I', raw[pos + 12 + length : pos + 16 + length]
    )
    assert payload_crc == _masked(crc32c(payload))
    events.append(event_pb2.Event.FromString(payload))
    pos += 16 + length
  assert pos == len(raw)
  return events


def _scalars(events):
  """(tag, step) -> value of every scalar summary."""
  out = {}
  for e in events:
    for v in e.summary.value:
      out[(v.tag, e.step)] = v.simple_value
  return out


def test_crc32c_check_value():
  from tensorboardX.crc32c import crc32c

  # The standard CRC-32C (Castagnoli) check value of '123456789'.
  assert crc32c(b'123456789') == 0xE3069283


def test_scalars_round_trip_through_the_event_file(tmp_path):
  logdir = str(tmp_path / 'tb')
  w = lmetrics.TensorBoardWriter(logdir)
  w.write({'step': 3, 'loss': np.float32(0.5), 'lr': 0.1, 'stage': 1})
  w.write({'step': 7, 'loss': 0.25, 'lr': 0.05, 'note': 'text is skipped'})
  w.write({'step': 7, 'split': 'test', 'accuracy': 0.875})
  w.close()
  events = _read_events(logdir)
  assert events[0].file_version == 'brain.Event:2'
  scalars = _scalars(events)
  expected = {
    ('train/loss', 3): 0.5,
    ('train/lr', 3): 0.1,
    ('train/stage', 3): 1.0,
    ('train/loss', 7): 0.25,
    ('train/lr', 7): 0.05,
    ('test/accuracy', 7): 0.875,
  }
  assert scalars.keys() == expected.keys()
  for key, value in expected.items():
    # simple_value is float32.
    assert scalars[key] == np.float32(value), key


def test_trainer_writes_its_logged_steps_to_tensorboard(tmp_path):
  config = tiny(
    batch=64,
    num_epochs=1,
    eval_every=1,
    log_every=2,
    keep_checkpoints=0,
    tensorboard=True,
  )
  result = train_and_evaluate(config, str(tmp_path), TASK)
  scalars = _scalars(_read_events(str(tmp_path / 'tb')))
  records = [json.loads(line) for line in open(result.metrics_path)]
  train = [r for r in records if 'split' not in r]
  assert [r['step'] for r in train] == [2, 4]
  for r in train:
    for key in ('loss', 'accuracy', 'lr', 'batch_size', 'epoch'):
      assert scalars[(f'train/{key}', r['step'])] == pytest.approx(
        r[key], rel=1e-6
      )
  (test,) = [r for r in records if r.get('split') == 'test']
  assert scalars[('test/accuracy', 4)] == pytest.approx(
    test['accuracy'], rel=1e-6
  )


def test_train_seconds_from_logged_rates_by_hand():
  # 4 updates at 2/s (2 s), 4 at 4/s (1 s), 4 with no rate (0 s), 8 at 1/s.
  seconds = lmetrics.train_seconds([4, 8, 12, 20], [2.0, 4.0, np.nan, 1.0])
  assert seconds.tolist() == [2.0, 3.0, 3.0, 11.0]
  # Half way through the second interval: 2 + 0.5 s.
  assert np.interp(6, [4, 8, 12, 20], seconds) == 2.5
  assert lmetrics.train_seconds([], []).tolist() == []


def test_joining_processes_after_jax_started_says_how(tmp_path):
  jax.devices()  # JAX has started, as building an NNX model starts it
  config = tiny_config(
    batch=8,
    coordinator_address='127.0.0.1:1',
    num_processes=2,
    process_id=0,
  )
  workdir = tmp_path / 'run'
  with pytest.raises(
    RuntimeError,
    match=r"coordinator_address='127.0.0.1:1': JAX started before "
    r'.*jax\.distributed\.initialize\(coordinator_address=\.\.\.',
  ):
    train_and_evaluate(config, str(workdir), synthetic())
  assert not workdir.exists()  # raised before anything was written
