"""The trainer on user tasks: NNX, linen and plain-function models, custom
losses, data as dicts of arrays or item sources; sources; the stage
iterator and the stage compiler."""

import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lrjax import batch as lbatch
from lrjax import data as ldata
from lrjax.tasks import classification
from lrjax.train import (
  Model,
  StageCompiler,
  Task,
  TrainConfig,
  as_model,
  from_functions,
  from_nnx,
  load_checkpoint,
  train_and_evaluate,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NnxNet(nnx.Module):
  """An MLP with BatchNorm and Dropout (mutable state and an RNG stream)."""

  def __init__(self, rngs: nnx.Rngs, rate: float = 0.25):
    self.dense1 = nnx.Linear(16, 32, rngs=rngs)
    self.bn = nnx.BatchNorm(32, rngs=rngs)
    self.drop = nnx.Dropout(rate, rngs=rngs)
    self.dense2 = nnx.Linear(32, 10, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    return self.dense2(self.drop(nnx.relu(self.bn(self.dense1(x)))))


def _images(n, seed=0):
  return ldata.synthetic(
    n, image_shape=(4, 4, 1), num_classes=10, seed=seed, split='train'
  )


def _config(**kw):
  base = dict(
    num_devices=1,
    lr=0.05,
    momentum=0.9,
    eval_every=0,
    log_every=2,
    prefetch=0,
    progress_bar=False,
  )
  return TrainConfig(**{**base, **kw})


# Sources ----------------------------------------------------------------


def test_item_source_stacks_example_dicts_and_uses_getitems():
  calls = []

  class Items:
    def __len__(self):
      return 5

    def __getitem__(self, i):
      return {'x': np.full((2,), i, np.float32), 'y': i}

    def __getitems__(self, keys):
      calls.append(list(keys))
      return [self[i] for i in keys]

  src = ldata.as_source(Items())
  out = src.take(np.array([3, 1]))
  assert src.num_examples == 5
  assert out['x'].tolist() == [[3.0, 3.0], [1.0, 1.0]]
  assert out['y'].tolist() == [3, 1]
  assert calls == [[3, 1]]


def test_list_of_dicts_is_a_source():
  src = ldata.as_source([{'a': np.array([i])} for i in range(4)])
  assert src.take(np.array([2]))['a'].tolist() == [[2]]


@pytest.mark.parametrize(
  'data, message',
  [
    ({}, 'empty'),
    ({'a': np.zeros(3), 'b': np.zeros(4)}, 'first'),
    ({'a': np.float32(1.0)}, 'first'),
    (42, 'not a source'),
    ([], 'empty'),
  ],
)
def test_bad_sources_are_rejected_with_what_is_accepted(data, message):
  with pytest.raises((ValueError, TypeError), match=message):
    ldata.as_source(data)


def test_task_checks_inputs_and_model():
  arrays = {'x': np.zeros((4, 2), np.float32), 'y': np.zeros(4)}
  fns = (lambda k, x: jnp.zeros(2), lambda p, x: x @ p)
  with pytest.raises(ValueError, match="inputs='image' is not a key"):
    Task(model=fns, loss=lambda o, b: (0.0, {}), train_data=arrays)
  with pytest.raises(TypeError, match='not a model'):
    Task(model=object(), loss=lambda o, b: (0.0, {}), train_data=arrays)
  assert isinstance(as_model(fns), Model)


# Models -----------------------------------------------------------------


def test_from_nnx_dropout_follows_the_key_and_eval_is_deterministic():
  net = NnxNet(nnx.Rngs(0), rate=0.5)
  model = from_nnx(net)
  params, state = model.init(None, None)
  x = np.random.RandomState(0).randn(8, 4, 4, 1).astype(np.float32)
  apply = jax.jit(model.apply, static_argnames='train')
  a, s1 = apply(params, state, x, train=True, rng=jax.random.key(1))
  b, _ = apply(params, state, x, train=True, rng=jax.random.key(1))
  c, _ = apply(params, state, x, train=True, rng=jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  # Training mode moved the running statistics (momentum 0.99 toward the
  # batch mean, from 0); evaluation leaves them and matches the module's own
  # eval mode.
  batch_mean = np.asarray(net.dense1(x.reshape(8, -1))).mean(axis=0)
  np.testing.assert_allclose(
    s1['bn']['mean'], 0.01 * batch_mean, rtol=1e-5, atol=1e-7
  )
  e1, s2 = apply(params, state, x, train=False, rng=None)
  net.eval()
  np.testing.assert_allclose(e1, net(x), rtol=1e-6)
  for got, want in zip(
    jax.tree.leaves(s2), jax.tree.leaves(state), strict=True
  ):
    np.testing.assert_array_equal(got, want)


# Training user tasks ----------------------------------------------------

_KILLED_CHILD = """
import os, signal, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
import jax
jax.config.update('jax_num_cpu_devices', 1)
from flax import nnx
from lrjax.tasks import classification
from lrjax.train import _checkpoint, train_and_evaluate
from test_task import NnxNet, _config, _images, clipped_adamw

real = _checkpoint.Checkpointer.save
saves = []

def save_then_die(self, update, host, meta):
  real(self, update, host, meta)
  saves.append(update)
  if len(saves) == 2:
    os.kill(os.getpid(), signal.SIGKILL)

_checkpoint.Checkpointer.save = save_then_die
task = classification(NnxNet(nnx.Rngs(0)), _images(128), _images(32, 1))
train_and_evaluate(_config(**{kw}, **{optimizer}), {workdir!r}, task)
"""


def clipped_adamw(learning_rate):
  """An ordinary LM recipe's optimizer: clip to norm 1, then AdamW."""
  return optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.adamw(learning_rate, b1=0.9, b2=0.95, weight_decay=0.1),
  )


@pytest.mark.parametrize('optimizer', ['sgd', 'clipped_adamw'])
def test_nnx_with_batchnorm_and_dropout_is_killed_and_resumes_bitwise(
  tmp_path, optimizer
):
  kw = dict(batch='stages(16@2,32@2,n=128)', checkpoint_every=4)
  # Any optax optimizer under a batch ramp (16, then 32 = 2 x 16
  # accumulated through optax.MultiSteps).
  extra = {} if optimizer == 'sgd' else {'max_device_batch': 16, 'lr': 3e-3}
  kw.update(extra)
  opt = {} if optimizer == 'sgd' else {'optimizer': clipped_adamw}
  opt_text = '{}' if optimizer == 'sgd' else "{'optimizer': clipped_adamw}"

  def task():
    return classification(NnxNet(nnx.Rngs(0)), _images(128), _images(32, 1))

  full = train_and_evaluate(
    _config(**kw, **opt), str(tmp_path / 'full'), task()
  )
  assert full.num_updates == 16 + 8
  assert np.isfinite(full.test_metrics['loss'])
  assert set(full.model_state['bn']) == {'mean', 'var'}

  workdir = str(tmp_path / 'killed')
  script = _KILLED_CHILD.format(
    root=ROOT,
    tests=os.path.join(ROOT, 'tests'),
    kw=kw,
    optimizer=opt_text,
    workdir=workdir,
  )
  child = subprocess.run(
    [sys.executable, '-c', textwrap.dedent(script)],
    capture_output=True,
    timeout=600,
    env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
  )
  assert child.returncode == -9, child.stderr.decode()[-2000:]
  _, meta = load_checkpoint(workdir)
  assert meta['update'] == 8  # killed right after the second checkpoint

  resumed = train_and_evaluate(_config(**kw, **opt), workdir, task())
  assert resumed.resumed_from == 8
  for a, b in zip(
    jax.tree.leaves((full.params, full.model_state)),
    jax.tree.leaves((resumed.params, resumed.model_state)),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
  assert resumed.test_metrics['accuracy'] == full.test_metrics['accuracy']


class LinenLinear(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(x)[:, 0]


def _mse(outputs, batch):
  err = outputs - batch['y']
  return jnp.mean(err**2), {'mae': jnp.mean(jnp.abs(err))}


def test_linen_regression_on_a_dict_of_arrays_with_a_custom_loss(tmp_path):
  rng = np.random.RandomState(0)
  w = np.array([1.5, -2.0, 0.5], np.float32)
  x = rng.randn(96, 3).astype(np.float32)
  xe = rng.randn(50, 3).astype(np.float32)
  task = Task(
    model=LinenLinear(),
    loss=_mse,
    train_data={'x': x, 'y': x @ w + 0.25},
    eval_data={'x': xe, 'y': xe @ w + 0.25},
    inputs='x',
    name='regression',
  )
  result = train_and_evaluate(
    _config(batch=16, num_epochs=30, eval_batch_size=16, lr=0.05),
    str(tmp_path),
    task,
  )
  # Evaluation without per-example metrics: batch means weighted by the
  # batch sizes (16, 16, 16, 2) are the mean over the 50 examples.
  p = result.params['Dense_0']
  pred = xe @ np.asarray(p['kernel'])[:, 0] + np.asarray(p['bias'])[0]
  err = pred - (xe @ w + 0.25)
  assert result.test_metrics['loss'] == pytest.approx(
    float(np.mean(err**2)), rel=1e-4
  )
  assert result.test_metrics['mae'] == pytest.approx(
    float(np.mean(np.abs(err))), rel=1e-4
  )
  assert result.test_metrics['loss'] < 1e-4  # noise-free data: solved
  # Numbers only; where the evaluation was taken is beside them: after
  # 30 epochs of 96 / 16 = 6 updates.
  assert sorted(result.test_metrics) == ['loss', 'mae']
  assert all(type(v) is float for v in result.test_metrics.values())
  assert (result.test_step, result.test_epoch) == (180, 30.0)
  assert 'mae' in result.train_metrics and 'accuracy' not in (
    result.train_metrics
  )


def _linear_fns():
  def init(key, x):
    return {'w': jnp.zeros((x.shape[-1],)), 'b': jnp.zeros(())}

  def apply(params, x):
    return x @ params['w'] + params['b']

  return init, apply


@pytest.mark.parametrize('cap, shapes', [(None, [8, 16, 32]), (8, [8])])
def test_compiles_one_program_per_distinct_micro_batch(tmp_path, cap, shapes):
  x = np.random.RandomState(1).randn(64, 2).astype(np.float32)
  task = Task(
    model=from_functions(*_linear_fns()),
    loss=_mse,
    train_data={'x': x, 'y': x.sum(-1)},
    inputs='x',
  )
  result = train_and_evaluate(
    _config(batch='stages(8@1,16@1,32@1,n=64)', max_device_batch=cap),
    str(tmp_path),
    task,
  )
  assert result.num_updates == 8 + 4 + 2
  assert result.num_compiles == len(shapes)
  assert sorted(result.compile_seconds) == shapes
  assert result.test_metrics == {}  # no evaluation data


def test_a_loss_metric_named_like_a_trainer_metric_is_refused(tmp_path):
  x = np.zeros((16, 2), np.float32)
  task = Task(
    model=_linear_fns(),
    loss=lambda o, b: (jnp.mean(o**2), {'lr': jnp.mean(o)}),
    train_data={'x': x},
    inputs='x',
  )
  with pytest.raises(ValueError, match=r"metrics \['lr'\]"):
    train_and_evaluate(_config(batch=8, num_epochs=1), str(tmp_path), task)


_CONTRACT = (
  r'the contract is loss\(outputs, batch\) -> \(mean loss, metrics dict\)'
)


@pytest.mark.parametrize(
  'loss, error, message',
  [
    (
      lambda o, b: jnp.mean((o - b['y']) ** 2),  # no metrics dict
      TypeError,
      r"task 'regression' returned an array of shape \(\) \(float32\); ",
    ),
    (
      lambda o, b: ((o - b['y']) ** 2, {}),  # per-example, not the mean
      ValueError,
      r"task 'regression' returned a loss of shape \(2,\); ",
    ),
    (
      lambda o, b: (jnp.mean(o), jnp.mean(o)),  # metrics not a dict
      TypeError,
      r"task 'regression' returned metrics as an array of shape \(\) ",
    ),
    (
      lambda o, b: (jnp.mean(o), {'err': jnp.abs(o - b['y'])}),
      ValueError,
      r"returned metrics that are not scalars \(shapes \{'err': \(2,\)\}\)",
    ),
  ],
  ids=[
    'bare_scalar',
    'per_example_loss',
    'metrics_not_a_dict',
    'vector_metric',
  ],
)
def test_a_loss_breaking_its_contract_is_one_clear_error(
  tmp_path, loss, error, message
):
  x = np.zeros((16, 2), np.float32)
  task = Task(
    model=_linear_fns(),
    loss=loss,
    train_data={'x': x, 'y': x[:, 0]},
    inputs='x',
    name='regression',
  )
  with pytest.raises(error, match=message + '.*' + _CONTRACT) as info:
    train_and_evaluate(_config(batch=8, num_epochs=1), str(tmp_path), task)
  # Raised by the check before compiling, not from inside a traced step
  # (JAX chains its filtered-traceback note as the cause there).
  assert info.value.__cause__ is None
  assert info.traceback[-2].name == 'check'
  assert not os.path.exists(tmp_path / 'checkpoints')
  # The step checks the same contract while tracing (hand-written loops).
  params, state = task.init(jax.random.key(0))
  batch = {'x': x[:2], 'y': x[:2, 0]}
  with pytest.raises(error, match=message):
    jax.jit(task.train_loss)(params, state, batch, None)


def test_eval_metrics_must_be_one_value_per_example(tmp_path):
  x = np.zeros((16, 2), np.float32)
  data = {'x': x, 'y': x[:, 0]}
  task = Task(
    model=_linear_fns(),
    loss=_mse,
    train_data=data,
    eval_data=data,
    inputs='x',
    eval_metrics=lambda o, b: {'mae': jnp.mean(jnp.abs(o - b['y']))},
    name='regression',
  )
  with pytest.raises(
    ValueError,
    match=r"eval_metrics of task 'regression' returned values of shapes "
    r"\{'mae': \(\)\} for a batch of 2; the contract is eval_metrics\(outputs, "
    r'batch\) -> \{name: \[B\] per-example values\}',
  ):
    train_and_evaluate(_config(batch=8, num_epochs=1), str(tmp_path), task)


def test_augment_needs_a_lrjax_dataset(tmp_path):
  x = np.zeros((16, 2), np.float32)
  task = Task(
    model=_linear_fns(),
    loss=_mse,
    train_data={'x': x, 'y': x[:, 0]},
    inputs='x',
  )
  with pytest.raises(ValueError, match='augment=True'):
    train_and_evaluate(
      _config(batch=8, num_epochs=1, augment=True), str(tmp_path), task
    )


# Building blocks ----------------------------------------------------------


def test_stage_iterator_against_a_hand_table():
  # N = 12: stage 0 batch 4 for 1 epoch (3 updates), stage 1 batch 8 for
  # 2 epochs (24 examples: 3 updates); 2 replicas, at most 2 per device.
  plan = lbatch.plan(lbatch.parse('stages(4@1,8@2,n=12)'), 2, 2)
  got = [
    (u.index, u.examples, u.stage, u.batch_size, u.micro_batch, u.accum_steps)
    + (u.stage_changed,)
    for u in lbatch.updates(plan)
  ]
  assert got == [
    (0, 0, 0, 4, 2, 1, False),
    (1, 4, 0, 4, 2, 1, False),
    (2, 8, 0, 4, 2, 1, False),
    (3, 12, 1, 8, 2, 2, True),
    (4, 20, 1, 8, 2, 2, False),
    (5, 28, 1, 8, 2, 2, False),
  ]
  resumed = list(lbatch.updates(plan, start=3))
  assert [u.index for u in resumed] == [3, 4, 5]
  assert resumed[0].epoch == 1.0 and not resumed[0].stage_changed
  with pytest.raises(ValueError, match='start'):
    list(lbatch.updates(plan, start=7))


def test_stage_compiler_skips_passed_stages_and_compiles_the_rest_once():
  plan = lbatch.plan(lbatch.parse('stages(2@1,4@1,8@1,n=8)'), 1, 8)
  compiled = []

  def compile_fn(m):
    compiled.append(m)
    return lambda: m

  with StageCompiler(
    compile_fn, plan, start_update=plan.stages[1].start_update
  ) as compiler:
    assert compiler.get(4)() == 4 and compiler.get(8)() == 8
    assert compiler.get(8)() == 8
  assert sorted(compiled) == [4, 8]
  assert compiler.num_compiles == 2


def test_plateau_on_an_evaluation_metric_gets_the_latest_evaluation(
  tmp_path, monkeypatch
):
  # A policy that records what it is given: value = the monitored metric.
  seen = []

  x = np.random.RandomState(0).randn(32, 2).astype(np.float32)
  data = {'x': x, 'y': x.sum(-1)}
  task = Task(
    model=_linear_fns(),
    loss=_mse,
    train_data=data,
    eval_data=data,
    inputs='x',
  )
  config = _config(
    batch=8, num_epochs=3, eval_every=1, plateau_metric='test_mae'
  )
  from lrjax.train import _setup

  real = _setup.make_train_body

  def spy(loss_fn, tx, **kw):
    body = real(loss_fn, tx, **kw)

    def wrapped(state, batch, epoch, monitor):
      jax.debug.callback(lambda m: seen.append(float(m)), monitor)
      return body(state, batch, epoch, monitor)

    return wrapped

  monkeypatch.setattr(_setup, 'make_train_body', spy)
  result = train_and_evaluate(config, str(tmp_path), task)
  with open(result.metrics_path) as f:
    records = [json.loads(line) for line in f]
  evals = [r['mae'] for r in records if r.get('split') == 'test']
  # 4 updates per epoch: NaN during epoch 0, then the evaluation after
  # epochs 1 and 2 (float32 of the logged value).
  assert np.isnan(seen[:4]).all()
  np.testing.assert_allclose(seen[4:8], np.float32(evals[0]), rtol=1e-6)
  np.testing.assert_allclose(seen[8:], np.float32(evals[1]), rtol=1e-6)
  with pytest.raises(ValueError, match='eval_every'):
    _config(plateau_metric='test_mae').validate()
