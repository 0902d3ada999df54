"""A run is a task plus any optax optimizer: optimizer factories and
clipping, what config.json records, and the task's fingerprint that makes a
workdir refuse another task."""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import data as ldata
from lrjax import tasks
from lrjax.train import (
  ConfigMismatchError,
  NoiseConfig,
  Task,
  TrainConfig,
  make_optimizer,
  train_and_evaluate,
)
from lrjax.train._config import function_id
from lrjax.train._step import hyperparams


def _regression(hidden=32, n=64, seed=0, shift=0.0):
  """A two-layer regression task on a dict of arrays (plain functions)."""
  rng = np.random.RandomState(seed)
  x = rng.randn(n, 2).astype(np.float32)
  y = (x @ np.array([1.0, -2.0], np.float32) + shift).astype(np.float32)

  def init(key, x):
    del key
    r = np.random.RandomState(1)
    return {
      'hidden': {'kernel': (0.3 * r.randn(2, hidden)).astype(np.float32)},
      'out': {'kernel': (0.3 * r.randn(hidden, 1)).astype(np.float32)},
    }

  def apply(params, x):
    h = jnp.tanh(x @ params['hidden']['kernel'])
    return (h @ params['out']['kernel'])[:, 0]

  return Task(
    model=(init, apply),
    loss=_mse,
    train_data={'x': x, 'y': y},
    eval_data={'x': x[:16], 'y': y[:16]},
    inputs='x',
    name='regression',
  )


def _mse(outputs, batch):
  return jnp.mean((outputs - batch['y']) ** 2), {}


def _mae(outputs, batch):
  return jnp.mean(jnp.abs(outputs - batch['y'])), {}


def _config(**kw):
  base = dict(
    batch=16,
    num_epochs=2,
    lr=0.05,
    momentum=0.9,
    num_devices=1,
    eval_every=0,
    log_every=1,
    prefetch=0,
    keep_checkpoints=1,
    progress_bar=False,
  )
  return TrainConfig(**{**base, **kw})


def _train_records(result):
  records = [json.loads(line) for line in open(result.metrics_path)]
  return [r for r in records if 'split' not in r]


# Any optax optimizer ---------------------------------------------------------


def test_clip_norm_scales_the_gradient_to_the_norm_first():
  # g = (3, 4): |g| = 5 > 1, so SGD (no momentum) moves by lr * g / 5.
  tx = make_optimizer(
    'sgd', learning_rate=0.1, momentum=0.0, weight_decay=0.0, clip_norm=1.0
  )
  params = {'w': jnp.zeros(2)}

  def update(grad):
    g = {'w': jnp.array(grad)}
    return tx.update(g, tx.init(params), params, value=0.0, epoch=0.0)[0]

  np.testing.assert_allclose(update([3.0, 4.0])['w'], [-0.06, -0.08], rtol=1e-6)
  # Below the norm nothing changes: g = (0.3, 0.4), |g| = 0.5.
  np.testing.assert_allclose(update([0.3, 0.4])['w'], [-0.03, -0.04], rtol=1e-6)


def test_a_factory_gets_the_lr_in_force_and_momentum_by_name():
  seen = {}

  def factory(learning_rate, momentum):
    seen['args'] = (learning_rate, momentum)
    return optax.sgd(learning_rate, momentum=momentum)

  tx = make_optimizer(
    factory,
    learning_rate=optax.linear_schedule(1.0, 0.0, 4),
    momentum=0.5,
    weight_decay=0.0,
  )
  state = tx.init({'w': jnp.zeros(1)})
  h = hyperparams(state)
  assert float(h['learning_rate']) == 1.0 and float(h['momentum']) == 0.5
  assert 'weight_decay' not in h


def test_a_factory_must_return_a_gradient_transformation():
  tx_factory = make_optimizer(
    lambda learning_rate: 'adamw',
    learning_rate=0.1,
    momentum=0.9,
    weight_decay=0.0,
  )
  with pytest.raises(TypeError, match='not an optax.GradientTransformation'):
    tx_factory.init({'w': jnp.zeros(1)})


def test_a_factory_lr_follows_examples_seen_under_a_batch_ramp(tmp_path):
  # Cosine over 4 epochs of 128 examples, batch 16 for 2 epochs (16
  # updates) then 32 for 2 (8 updates). The record of update u holds the
  # LR of update u, whose policy epoch is the examples seen before it:
  # (u - 1) * 16 / 128 up to u = 16, then 2 + (u - 17) * 32 / 128.
  images = ldata.synthetic(128, (4, 4, 1), num_classes=10, seed=0)
  task = tasks.classification(
    (
      lambda key, x: {'w': jnp.zeros((16, 10))},
      lambda p, x: x.reshape(x.shape[0], -1) @ p['w'],
    ),
    images,
  )
  config = _config(
    batch='stages(16@2,32@2,n=128)',
    lr='cosine(0.002,length=4)',
    max_device_batch=16,
    optimizer=lambda learning_rate: optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(learning_rate, b1=0.9, b2=0.95, weight_decay=0.1),
    ),
    momentum=0.9,
  )
  result = train_and_evaluate(config, str(tmp_path), task)
  train = _train_records(result)
  assert [r['step'] for r in train] == list(range(1, 25))
  assert [r['accum_steps'] for r in train] == [1] * 16 + [2] * 8
  for r in train:
    u = r['step']
    epoch = (u - 1) * 16 / 128 if u <= 16 else 2 + (u - 17) * 32 / 128
    want = 0.002 * (1 + math.cos(math.pi * epoch / 4)) / 2
    assert r['lr'] == pytest.approx(want, rel=1e-5), u
    # Smith's g is defined for SGD with momentum only; a factory without a
    # momentum parameter logs none.
    assert 'noise_g' not in r and 'momentum' not in r


def test_noise_g_is_logged_for_sgd_with_momentum_only(tmp_path):
  task = _regression()
  sgd = train_and_evaluate(_config(), str(tmp_path / 'sgd'), task)
  (first, *_) = _train_records(sgd)
  # Smith et al.'s g = eps (N / B - 1) / (1 - m) = 0.05 * 3 / 0.1 = 1.5.
  assert first['noise_g'] == pytest.approx(1.5, rel=1e-6)
  adam = train_and_evaluate(
    _config(optimizer='adam', lr=1e-3), str(tmp_path / 'adam'), task
  )
  assert all('noise_g' not in r for r in _train_records(adam))


def test_clip_norm_and_the_noise_tracker_work_with_a_factory(tmp_path):
  task = _regression()
  config = _config(
    optimizer=lambda learning_rate: optax.adam(learning_rate),
    lr=0.01,
    clip_norm=0.5,
    noise=NoiseConfig(enabled=True, num_slices=2),
  )
  result = train_and_evaluate(config, str(tmp_path), task)
  records = _train_records(result)
  assert all(math.isfinite(r['loss']) for r in records)
  assert 'noise_scale' in records[-1]
  saved = json.load(open(os.path.join(str(tmp_path), 'config.json')))
  assert saved['clip_norm'] == 0.5
  assert saved['optimizer'].startswith('<function ')


# What config.json records ----------------------------------------------------


def test_config_json_records_the_task_and_only_what_applies(tmp_path):
  task = _regression()
  train_and_evaluate(_config(), str(tmp_path), task)
  saved = json.load(open(os.path.join(str(tmp_path), 'config.json')))
  for gone in ('dataset', 'model', 'data_dir', 'model_kwargs', 'task_name'):
    assert gone not in saved
  assert 'b2' not in saved  # SGD has no second moment
  assert saved['noise'] == {'enabled': False}
  fp = saved['task']
  assert fp['name'] == 'regression'
  assert fp['loss'] == f'{__name__}._mse'
  assert fp['params'] == {
    "['hidden']['kernel']": 'float32 (2, 32)',
    "['out']['kernel']": 'float32 (32, 1)',
  }
  assert fp['train_data']['examples'] == 64
  assert fp['train_data']['method'] == 'arrays'
  assert fp['eval_data']['examples'] == 16


def test_config_json_of_a_factory_without_momentum_leaves_it_out():
  config = _config(optimizer=lambda learning_rate: optax.adam(learning_rate))
  d = config.to_dict()
  assert 'momentum' not in d and 'weight_decay' not in d and 'b2' not in d
  adamw = _config(optimizer='adamw').to_dict()
  assert adamw['b2'] == 0.999 and adamw['momentum'] == 0.9


def test_function_id_tells_apart_lambdas_that_differ_in_a_constant():
  def adamw(b2):
    return lambda learning_rate: optax.adamw(learning_rate, b2=b2)

  a, b = function_id(adamw(0.95)), function_id(adamw(0.99))
  assert a != b
  assert a == function_id(adamw(0.95))
  assert '0x' not in a


# A workdir knows what it trained ---------------------------------------------


def _refusal(tmp_path, first, second):
  workdir = str(tmp_path)
  train_and_evaluate(_config(), workdir, first)
  with pytest.raises(ConfigMismatchError) as info:
    train_and_evaluate(_config(), workdir, second)
  # Refused before anything trained: the log holds the first run only.
  return str(info.value)


def test_a_changed_model_is_refused_naming_the_parameter(tmp_path):
  message = _refusal(tmp_path, _regression(32), _regression(64))
  assert 'another task' in message
  assert (
    "task.params['hidden']['kernel']: float32 (2, 32) -> float32 (2, 64)"
    in message
  )


def test_a_changed_loss_is_refused_naming_it(tmp_path):
  other = _regression()
  other = Task(
    model=other.model,
    loss=_mae,
    train_data=other.train_data,
    eval_data=other.eval_data,
    inputs='x',
    name='regression',
  )
  message = _refusal(tmp_path, _regression(), other)
  assert f'task.loss: {__name__}._mse -> {__name__}._mae' in message


def test_changed_training_data_of_the_same_size_is_refused(tmp_path):
  message = _refusal(tmp_path, _regression(), _regression(shift=1.0))
  assert 'task.train_data.digest' in message
  assert 'task.params' not in message  # only what changed is named


def test_allow_changes_and_overwrite_work_for_the_task(tmp_path):
  workdir = str(tmp_path)
  train_and_evaluate(_config(max_updates=4), workdir, _regression())
  more = train_and_evaluate(
    _config(),
    workdir,
    _regression(shift=1.0),
    allow_changes=('task.train_data', 'task.eval_data'),
  )
  assert more.resumed_from == 4 and more.num_updates == 8
  fresh = train_and_evaluate(
    _config(), workdir, _regression(64), overwrite=True
  )
  assert fresh.resumed_from is None


def test_train_and_evaluate_needs_a_task(tmp_path):
  with pytest.raises(TypeError, match='is not a lrjax.train.Task'):
    train_and_evaluate(_config(), str(tmp_path), None)


# Data fingerprints -------------------------------------------------------------


def test_data_fingerprints_change_with_the_content():
  x = np.arange(12, dtype=np.float32).reshape(6, 2)
  a = ldata.fingerprint({'x': x})
  assert a == ldata.fingerprint({'x': x.copy()})
  y = x.copy()
  y[5, 1] += 1
  assert a['digest'] != ldata.fingerprint({'x': y})['digest']
  text = ldata.TextDataset.from_text('abcdefghij' * 3, seq_len=4)
  other = ldata.TextDataset.from_text('abcdefghik' * 3, seq_len=4)
  ft = ldata.fingerprint(text)
  assert ft['method'] == 'tokens' and ft['examples'] == 7
  assert ft['digest'] != ldata.fingerprint(other)['digest']
  images = np.zeros((4, 2, 2, 1), np.uint8)
  labels = np.array([0, 1, 0, 1])
  d1 = ldata.Dataset.from_arrays(images, labels, num_classes=2)
  d2 = ldata.Dataset.from_arrays(images, labels[::-1], num_classes=2)
  assert ldata.fingerprint(d1)['method'] == 'dataset'
  assert ldata.fingerprint(d1)['digest'] != ldata.fingerprint(d2)['digest']


def test_a_source_may_say_what_it_is():
  class Source:
    num_examples = 3

    def take(self, indices):
      return {'x': np.asarray(indices, np.float32)}

    def fingerprint(self):
      return {'corpus': 'v2'}

  fp = ldata.fingerprint(Source())
  assert fp['method'] == 'custom' and fp['examples'] == 3


def test_a_tfds_split_is_named_by_its_prepared_files(tmp_path):
  import hashlib

  train = ldata.load('digits', split='train', data_dir=str(tmp_path))
  content = train.content
  assert content['name'] == 'digits/1.0.0' and content['split'] == 'train'
  (name, digest), *rest = content['files'].items()
  assert not rest
  path = os.path.join(str(tmp_path), 'digits', '1.0.0', name)
  assert digest == hashlib.sha256(open(path, 'rb').read()).hexdigest()
  test = ldata.load('digits', split='test', data_dir=str(tmp_path))
  assert ldata.fingerprint(train)['digest'] != ldata.fingerprint(test)['digest']
