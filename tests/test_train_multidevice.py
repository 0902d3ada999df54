"""Trainer on several simulated CPU devices (the root conftest sets 4).

pmap and jit(shard_map) run the same per-device body and must agree to
float32 round-off; per-device (ghost) batch norm statistics and gradient
norms are checked against a hand-written per-shard computation.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _tasks import synthetic

from lrjax import data, models
from lrjax.tasks import classification
from lrjax.train import (
  NoiseConfig,
  TrainConfig,
  create_train_state,
  make_optimizer,
  make_train_body,
  train_and_evaluate,
)
from lrjax.train._parallel import Runner

SHAPE = (4, 4, 1)


def _data(n, seed=0):
  rng = np.random.RandomState(seed)
  return {
    'image': rng.randn(n, *SHAPE).astype(np.float32),
    'label': rng.randint(0, 10, n).astype(np.int32),
  }


def _run(model, n_devices, mode, steps, batch, lr=0.1, pack=False):
  tx = make_optimizer('sgd', learning_rate=lr, momentum=0.9, weight_decay=1e-4)
  task = classification(model, _data(8))
  host = create_train_state(task, tx, seed=0)
  runner = Runner(
    make_train_body(task.train_loss, tx, pack_collectives=pack),
    jax.devices()[:n_devices],
    mode,
    task.example(),
  )
  state = runner.put_state(host)
  step = runner.compile(state, batch // n_devices)
  metrics = []
  for i in range(steps):
    state, m = step(state, *runner.put_batch(_data(batch, i)))
    jax.block_until_ready(m)  # one step in flight on CPU (DESIGN pitfalls)
    metrics.append(runner.metrics(m))
  return host, runner.get_state(state), metrics


def test_pmap_and_shard_map_agree_on_one_and_four_devices():
  assert jax.device_count() >= 4
  model = models.get('mlp', num_classes=10, hidden=(16,))
  ref = None
  for n in (1, 4):
    for mode in ('pmap', 'shard_map'):
      _, state, metrics = _run(model, n, mode, steps=3, batch=32)
      if ref is None:
        ref = (state, metrics)
        continue
      for a, b in zip(
        jax.tree.leaves(ref[0].params),
        jax.tree.leaves(state.params),
        strict=True,
      ):
        np.testing.assert_allclose(
          a, b, rtol=0, atol=2e-6, err_msg=f'{n} {mode}'
        )
      for ma, mb in zip(ref[1], metrics, strict=True):
        assert ma['loss'] == pytest.approx(mb['loss'], rel=1e-6)
        assert ma['sq_norm_global'] == pytest.approx(
          mb['sq_norm_global'], rel=1e-5
        )


@pytest.mark.parametrize('pack', [False, True])
def test_ghost_batch_norm_and_gradient_norms_per_device(pack):
  model = models.get(
    'cnn', num_classes=10, features=(4, 4, 4), dense=8, batch_norm=True
  )
  batch = 32
  host, state, metrics = _run(
    model, 4, 'pmap', steps=1, batch=batch, lr=0.0, pack=pack
  )
  data = _data(batch, 0)
  variables = {
    'params': host.params,
    'batch_stats': host.model_state['batch_stats'],
  }

  def loss_and_stats(params, x, y):
    logits, upd = model.apply(
      {**variables, 'params': params}, x, train=True, mutable=['batch_stats']
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, upd['batch_stats']

  grad_fn = jax.jit(jax.value_and_grad(loss_and_stats, has_aux=True))
  grads, stats, losses = [], [], []
  for d in range(4):  # device d holds rows [8d, 8d + 8)
    x, y = data['image'][8 * d : 8 * d + 8], data['label'][8 * d : 8 * d + 8]
    (loss, st), g = grad_fn(host.params, x, y)
    grads.append(g)
    stats.append(st)
    losses.append(float(loss))

  def sq(t):
    return float(sum(jnp.sum(jnp.square(v)) for v in jax.tree.leaves(t)))

  mean_grad = jax.tree.map(lambda *g: sum(g) / 4, *grads)
  m = metrics[0]
  assert m['loss'] == pytest.approx(np.mean(losses), rel=1e-5)
  assert m['sq_norm_local'] == pytest.approx(
    np.mean([sq(g) for g in grads]), rel=1e-4
  )
  assert m['sq_norm_global'] == pytest.approx(sq(mean_grad), rel=1e-4)
  # Running statistics: each device's own (ghost, 8-example) update,
  # averaged over the devices.
  expected = jax.tree.map(lambda *s: sum(s) / 4, *stats)
  for a, b in zip(
    jax.tree.leaves(expected),
    jax.tree.leaves(state.model_state['batch_stats']),
    strict=True,
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # And they differ from whole-batch statistics (the statistics are ghost).
  _, whole = jax.jit(loss_and_stats)(host.params, data['image'], data['label'])
  assert not all(
    np.allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(
      jax.tree.leaves(whole),
      jax.tree.leaves(state.model_state['batch_stats']),
      strict=True,
    )
  )


@pytest.mark.parametrize('mode', ['pmap', 'shard_map'])
def test_packed_collectives_change_no_value(mode):
  # Each element is averaged alone whether the leaves travel as a tuple or
  # as one flat vector: parameters, batch norm statistics and metrics agree
  # to float32 round-off after 3 updates (the runtime may sum the four
  # devices in another order for one long vector).
  model = models.get(
    'cnn', num_classes=10, features=(4, 4, 4), dense=8, batch_norm=True
  )
  runs = [
    _run(model, 4, mode, steps=3, batch=32, pack=pack) for pack in (False, True)
  ]
  (_, tuple_state, tuple_metrics), (_, packed_state, packed_metrics) = runs
  for a, b in zip(
    jax.tree.leaves(tuple_state), jax.tree.leaves(packed_state), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)
  for a, b in zip(tuple_metrics, packed_metrics, strict=True):
    assert a.keys() == b.keys()
    for k in a:
      assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), k


def test_packed_mean_is_one_all_reduce_per_dtype():
  from jax.sharding import Mesh
  from jax.sharding import PartitionSpec as P

  from lrjax.train._step import AXIS, _pmean_inexact

  mesh = Mesh(np.array(jax.devices()[:4]), (AXIS,))
  rng = np.random.RandomState(0)
  tree = {
    'w': rng.randn(4, 3, 2).astype(np.float32),
    'b': rng.randn(4, 5).astype(np.float32),
    'h': rng.randn(4, 7).astype(jnp.bfloat16),
    'c': (rng.randn(4, 2) + 1j * rng.randn(4, 2)).astype(np.complex64),
    'count': np.full((4, 1), 6, np.int32),  # equal everywhere, left alone
  }
  specs = jax.tree.map(lambda _: P(AXIS), tree)

  def mean(pack):
    return jax.jit(
      jax.shard_map(
        lambda t: _pmean_inexact(t, pack),
        mesh=mesh,
        in_specs=(specs,),
        out_specs=specs,
      )
    )

  # One all_reduce per inexact leaf (XLA later combines them into one
  # tuple all-reduce), or one per dtype.
  for pack, reduces in ((False, 4), (True, 3)):
    text = mean(pack).lower(tree).as_text()
    assert text.count('stablehlo.all_reduce') == reduces, pack
    out = mean(pack)(tree)
    for k in ('w', 'b', 'c'):
      expected = np.broadcast_to(tree[k].mean(0), tree[k].shape)
      np.testing.assert_allclose(out[k], expected, rtol=1e-6, err_msg=k)
    # bfloat16 keeps 8 significant bits: its sums round at 2**-8 of their
    # size (the inputs are about 1).
    np.testing.assert_allclose(
      np.asarray(out['h'], np.float32),
      np.broadcast_to(tree['h'].astype(np.float32).mean(0), (4, 7)),
      rtol=1e-2,
      atol=2e-2,
    )
    np.testing.assert_array_equal(out['count'], tree['count'])
  packed = mean(True).lower(tree).as_text()
  # The float32 leaves travel as one vector of 3 x 2 + 5 elements.
  assert 'tensor<11xf32>' in packed and 'tensor<7xbf16>' in packed
  assert 'tensor<2xcomplex<f32>>' in packed


def test_trainer_on_four_devices_with_accumulation_and_noise(
  tmp_path, monkeypatch
):
  from lrjax.train import _setup

  packs, real = [], _setup.make_train_body

  def spy(*args, **kwargs):
    packs.append(kwargs['pack_collectives'])
    return real(*args, **kwargs)

  monkeypatch.setattr(_setup, 'make_train_body', spy)
  config = TrainConfig(
    batch='stages(32@4up,64@4up)',
    max_device_batch=8,
    num_devices=4,
    parallel='shard_map',
    log_every=2,
    eval_every=0.5,
    keep_checkpoints=0,
    noise=NoiseConfig(enabled=True, decay=0.5),
  )
  result = train_and_evaluate(config, str(tmp_path), synthetic())
  records = [json.loads(x) for x in open(result.metrics_path)]
  train = [r for r in records if 'split' not in r]
  evals = [r for r in records if r.get('split') == 'test']
  assert [r['accum_steps'] for r in train] == [1, 1, 2, 2]
  assert result.num_compiles == 1  # 32 / 4 = 8 = 64 / (4 * 2)
  assert all(np.isfinite(r['noise_scale']) for r in train)
  # Every 0.5 epochs: updates 4 (128 examples), 6 (256) and 8 (384, end).
  assert [e['step'] for e in evals] == [4, 6, 8]
  # One process: its in-process all-reduce takes the tuple as it is.
  assert packs == [False]


def _exact_b_simple(params, n, seed):
  """tr(Sigma) / |G|^2 of the per-example gradients over the whole split."""
  ds = data.synthetic(n, SHAPE, num_classes=10, seed=seed)
  batch = ds.take(np.arange(n))
  model = models.get('mlp', num_classes=10, hidden=(16,))

  def loss(p, x, y):
    logits = model.apply({'params': p}, x[None], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y[None])[0]

  grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(
    params, batch['image'], batch['label']
  )
  g = np.concatenate(
    [np.asarray(x, np.float64).reshape(n, -1) for x in jax.tree.leaves(grads)],
    axis=1,
  )
  mean = g.mean(0)
  return np.sum((g - mean) ** 2) / (n - 1) / (mean @ mean)


def test_four_device_noise_scale_matches_the_exact_value(tmp_path):
  # LR 0: the parameters stay at their initial values, so every update's
  # per-device (B_small = 8) and all-reduced (B_big = 32) gradient norms
  # estimate the same B_simple, which the EMA over 200 updates must match.
  config = TrainConfig(
    batch=32,
    num_epochs=25,
    lr=0.0,
    momentum=0.0,
    num_devices=4,
    parallel='shard_map',
    log_every=200,
    eval_every=0,
    keep_checkpoints=0,
    noise=NoiseConfig(enabled=True, decay=0.98),
  )
  result = train_and_evaluate(config, str(tmp_path), synthetic())
  records = [json.loads(x) for x in open(result.metrics_path)]
  (record,) = [r for r in records if 'split' not in r]
  assert record['step'] == 200
  exact = _exact_b_simple(result.params, 256, seed=0)
  # Observed within 11% over seeds 0-9 (6.6% here): 200 noisy pairs. With
  # the trainer's finite-population correction dropped it read 145, 46%
  # high (B / (1 - B/N) in expectation).
  assert record['noise_scale'] == pytest.approx(exact, rel=0.2)


def test_adaptive_batch_on_four_devices_pmap_equals_shard_map(tmp_path):
  from lrjax.train import AdaptiveConfig, train_adaptive

  config = TrainConfig(
    batch=16,
    num_epochs=3,
    max_device_batch=8,
    num_devices=4,
    eval_every=0,
    log_every=1,
    noise=NoiseConfig(enabled=True, decay=0.5),
  )
  # Candidates 16, 32, 64, 128: from 64 on, 4 devices x 8 accumulate.
  adaptive = AdaptiveConfig(max_batch_size=128, every_epochs=1)
  runs = {
    mode: train_adaptive(
      config.replace(parallel=mode),
      adaptive,
      str(tmp_path / mode),
      synthetic(examples=512),
    )
    for mode in ('pmap', 'shard_map')
  }
  a, b = runs['pmap'], runs['shard_map']
  assert [d['batch'] for d in a.decisions] == [d['batch'] for d in b.decisions]
  # The per-device gradient is the small batch, the all-reduced one the big.
  assert all(d['b_simple'] is not None for d in a.decisions[1:])
  assert a.result.num_updates == b.result.num_updates
  for x, y in zip(
    jax.tree.leaves(a.result.params),
    jax.tree.leaves(b.result.params),
    strict=True,
  ):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


# User tasks and the data-parallel noise helper ------------------------------


def test_pmap_and_shard_map_agree_on_an_nnx_task_on_four_devices(tmp_path):
  from flax import nnx

  from lrjax import data as ldata

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.dense1 = nnx.Linear(16, 16, rngs=rngs)
      self.bn = nnx.BatchNorm(16, rngs=rngs)
      self.drop = nnx.Dropout(0.2, rngs=rngs)
      self.dense2 = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
      x = x.reshape(x.shape[0], -1)
      return self.dense2(self.drop(nnx.relu(self.bn(self.dense1(x)))))

  train = ldata.synthetic(128, image_shape=SHAPE, num_classes=10, seed=0)
  results = {}
  for mode in ('pmap', 'shard_map'):
    config = TrainConfig(
      batch='stages(16@1,32@1,n=128)',
      max_device_batch=4,
      num_devices=4,
      parallel=mode,
      eval_every=0,
      keep_checkpoints=0,
      noise=NoiseConfig(enabled=True, decay=0.5),
    )
    task = classification(Net(nnx.Rngs(0)), train)
    results[mode] = train_and_evaluate(config, str(tmp_path / mode), task)
  a, b = results['pmap'], results['shard_map']
  assert a.num_updates == b.num_updates == 8 + 4
  assert a.num_compiles == 1  # 16 = 4 x 4 x 1, 32 = 4 x 4 x 2
  for x, y in zip(
    jax.tree.leaves((a.params, a.model_state)),
    jax.tree.leaves((b.params, b.model_state)),
    strict=True,
  ):
    np.testing.assert_allclose(x, y, rtol=0, atol=2e-6)
  assert a.train_metrics['noise_scale'] == pytest.approx(
    b.train_metrics['noise_scale'], rel=1e-4
  )


def _regression(n=64, d=3, seed=0):
  rng = np.random.RandomState(seed)
  x = rng.randn(n, d).astype(np.float32)
  y = (x @ np.array([1.0, -1.0, 0.5], np.float32) + rng.randn(n)).astype(
    np.float32
  )
  return x, y


def _half_mse(w, x, y):
  return 0.5 * jnp.mean((x @ w - y) ** 2)


def _per_example_grads(w, x, y):
  return (x @ w - y)[:, None] * x  # grad of 0.5 (x.w - y)^2


@pytest.mark.parametrize('mode', ['pmap', 'shard_map', 'shard_map_unchecked'])
def test_data_parallel_grad_gives_the_per_device_and_global_norms(mode):
  from jax.sharding import Mesh
  from jax.sharding import PartitionSpec as P

  from lrjax import noise

  x, y = _regression()
  w = np.array([0.3, 0.2, -0.1], np.float32)

  def body(w, x, y):
    r = noise.data_parallel_grad(_half_mse, w, x, y)
    return r.sq_norm_small, r.sq_norm_big, r.grad

  if mode == 'pmap':
    fn = jax.pmap(body, axis_name='batch', in_axes=(None, 0, 0))
    small, big, grad = fn(w, x.reshape(4, 16, 3), y.reshape(4, 16))
    small, big, grad = small[0], big[0], grad[0]
  else:
    mesh = Mesh(np.array(jax.devices()[:4]), ('batch',))
    fn = jax.jit(
      jax.shard_map(
        body,
        mesh=mesh,
        in_specs=(P(), P('batch'), P('batch')),
        out_specs=(P(), P(), P()),
        check_vma=mode == 'shard_map',
      )
    )
    small, big, grad = fn(w, x, y)
  g = _per_example_grads(w, x, y)
  per_device = g.reshape(4, 16, 3).mean(axis=1)
  np.testing.assert_allclose(grad, g.mean(0), rtol=1e-5)
  np.testing.assert_allclose(
    small, np.mean(np.sum(per_device**2, -1)), rtol=1e-5
  )
  np.testing.assert_allclose(big, np.sum(g.mean(0) ** 2), rtol=1e-5)


def test_data_parallel_noise_scale_averages_to_the_exact_b_simple():
  from jax.sharding import Mesh
  from jax.sharding import PartitionSpec as P

  from lrjax import noise

  # N = 64 examples over 4 devices: the global batch is the whole set, so
  # the all-reduced norm is |G|^2 and the per-device ones scatter around
  # |G|^2 + (1/16 - 1/64) tr(Sigma) over random partitions.
  x, y = _regression()
  w = np.zeros(3, np.float32)
  mesh = Mesh(np.array(jax.devices()[:4]), ('batch',))

  @jax.jit
  @lambda f: jax.shard_map(
    f, mesh=mesh, in_specs=(P(), P('batch'), P('batch')), out_specs=(P(), P())
  )
  def norms(w, x, y):
    r = noise.data_parallel_grad(_half_mse, w, x, y)
    return r.sq_norm_small, r.sq_norm_big

  rng = np.random.RandomState(0)
  traces, g2s = [], []
  for _ in range(400):
    perm = rng.permutation(64)
    small, big = norms(w, x[perm], y[perm])
    g2, trace = noise.estimate(float(small), float(big), 16, 64, 64)
    traces.append(float(trace))
    g2s.append(float(g2))
  g = _per_example_grads(w, x, y)
  mean = g.mean(0)
  exact_trace = np.sum((g - mean) ** 2) / 63  # divisor N - 1
  exact_g2 = np.sum(mean**2)
  # The mean of 400 estimates lies within 4 standard errors of the exact
  # value (the standard error measured from the estimates themselves).
  se = np.std(traces) / np.sqrt(len(traces))
  assert abs(np.mean(traces) - exact_trace) < 4 * se
  np.testing.assert_allclose(np.mean(g2s), exact_g2, rtol=1e-2)
  b_simple = np.mean(traces) / np.mean(g2s)
  assert b_simple == pytest.approx(
    exact_trace / exact_g2, rel=4 * se / exact_trace + 1e-2
  )


def test_data_parallel_noise_helper_raises_on_misuse():
  from jax.sharding import Mesh
  from jax.sharding import PartitionSpec as P

  from lrjax import noise

  x, y = _regression()
  w = np.zeros(3, np.float32)
  mesh = Mesh(np.array(jax.devices()[:4]), ('batch',))

  def reduced(w, x, y):
    # jax.grad w.r.t. replicated parameters under check_vma: already summed.
    grads = jax.grad(_half_mse)(w, x, y)
    return noise.data_parallel_sq_norms(grads).sq_norm_small

  fn = jax.shard_map(
    reduced, mesh=mesh, in_specs=(P(), P('batch'), P('batch')), out_specs=P()
  )
  with pytest.raises(ValueError, match='not varying'):
    jax.jit(fn)(w, x, y)
  with pytest.raises(ValueError, match='not bound'):
    noise.data_parallel_grad(_half_mse, w, x, y)
  one = jax.pmap(
    lambda w, x, y: noise.data_parallel_grad(_half_mse, w, x, y).sq_norm_big,
    axis_name='batch',
    in_axes=(None, 0, 0),
    devices=jax.devices()[:1],
  )
  with pytest.raises(ValueError, match='sliced_sq_norms'):
    one(w, x[None], y[None])


def test_shard_map_args_compile_a_hand_written_loop_per_stage():
  from jax.sharding import Mesh, NamedSharding
  from jax.sharding import PartitionSpec as P

  from lrjax import batch as lbatch
  from lrjax.train import StageCompiler, shard_map_args

  # Full-batch-equivalent SGD on 0.5 * mean (x.w - y)^2 over 4 devices:
  # per-device mean gradients, pmean over 'batch', so each update equals
  # the update of the whole global batch, w <- w - lr * X^T (X w - y) / B.
  x, y = _regression(n=48)
  mesh = Mesh(np.array(jax.devices()[:4]), ('batch',))

  def body(w, b, lr):
    g = jax.grad(_half_mse)(w, b['x'], b['y'])
    return w - lr * jax.lax.pmean(g, 'batch')

  step = jax.jit(
    jax.shard_map(
      body,
      mesh=mesh,
      in_specs=(P(), P('batch'), P()),
      out_specs=P(),
      check_vma=False,
    ),
    donate_argnums=(0,),
  )
  w = np.zeros(3, np.float32)
  lr = np.float32(0.1)
  example = {'x': x[:1], 'y': y[:1]}
  args = shard_map_args(mesh, w, example, lr)
  rep, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P('batch'))
  assert args(2) == (
    jax.ShapeDtypeStruct((3,), np.float32, sharding=rep),
    {
      'x': jax.ShapeDtypeStruct((8, 3), np.float32, sharding=shard),
      'y': jax.ShapeDtypeStruct((8,), np.float32, sharding=shard),
    },
    jax.ShapeDtypeStruct((), np.float32, sharding=rep),
  )
  # Devices given instead of a mesh: the same arguments.
  assert shard_map_args(jax.devices()[:4], w, example, lr)(2) == args(2)
  # Batch 8 for 2 updates (micro-batch 2 per device), then 16 for 2 (4).
  plan = lbatch.plan(lbatch.parse('stages(8@2up,16@2up,n=48)'), 4, 16)
  assert [s.micro_batch for s in plan.stages] == [2, 4]
  state = jax.device_put(w, rep)
  want = w.astype(np.float64)
  with StageCompiler.for_jit(step, args, plan, background=False) as compiler:
    for u in lbatch.updates(plan, 0, 4):
      lo = u.examples % 48
      xb, yb = x[lo : lo + u.batch_size], y[lo : lo + u.batch_size]
      batch = jax.device_put({'x': xb, 'y': yb}, shard)
      step_fn = compiler.get(u.micro_batch)
      state = step_fn(state, batch, jax.device_put(lr, rep))
      jax.block_until_ready(state)  # one step in flight on CPU
      want = want - 0.1 * xb.T @ (xb @ want - yb) / u.batch_size
  assert compiler.num_compiles == 2
  np.testing.assert_allclose(np.asarray(state), want, rtol=1e-5, atol=1e-6)
