"""Tests for lrjax.models: shapes, parameter counts, batch norm modes.

Parameter counts are checked against closed forms written out here; shapes
and counts use `jax.eval_shape` (tracing only) so the deep models cost no
compilation. Batch norm behaviour runs a tiny CNN for real.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import models


def _shapes(model, image_shape, batch=2):
  x = jnp.zeros((batch, *image_shape), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  out = jax.eval_shape(
    lambda v, x: model.apply(v, x, train=False), variables, x
  )
  return variables, out


def _dense(d_in, d_out):
  return d_in * d_out + d_out


def _conv(c_in, c_out, k=3):
  return k * k * c_in * c_out  # bias-free convolutions


def _bn(c):
  return 2 * c  # scale and bias


@pytest.mark.parametrize(
  'image_shape,num_classes', [((8, 8, 1), 10), ((32, 32, 3), 100)]
)
def test_logreg_param_count(image_shape, num_classes):
  d = int(np.prod(image_shape))
  variables, out = _shapes(models.LogReg(num_classes), image_shape)
  assert models.param_count(variables) == (d + 1) * num_classes
  assert out.shape == (2, num_classes)
  assert out.dtype == jnp.float32


@pytest.mark.parametrize('hidden', [(), (32,), (64, 16, 8)])
def test_mlp_param_count(hidden):
  widths = [64, *hidden, 10]
  expected = sum(
    _dense(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
  )
  variables, out = _shapes(models.MLP(hidden, 10), (8, 8, 1))
  assert models.param_count(variables) == expected
  assert out.shape == (2, 10)


def _wrn_count(depth, k, num_classes, c_in=3):
  n = (depth - 4) // 6
  total = _conv(c_in, 16)
  c = 16
  for group in range(3):
    out = 16 * k * 2**group
    for _ in range(n):
      total += _bn(c) + _conv(c, out) + _bn(out) + _conv(out, out)
      if c != out:
        total += _conv(c, out, k=1)
      c = out
  return total + _bn(c) + _dense(c, num_classes)


def test_wrn16_4_param_count():
  variables, out = _shapes(models.get('wrn16_4', 10), (32, 32, 3))
  # Zagoruyko & Komodakis report 2.7M parameters for WRN-16-4.
  assert _wrn_count(16, 4, 10) == 2_748_890
  assert models.param_count(variables) == 2_748_890
  assert out.shape == (2, 10)
  assert 'batch_stats' in variables


def test_resnet20_param_count():
  n, total, c = 3, _conv(3, 16) + _bn(16), 16
  for stage in range(3):
    out = 16 * 2**stage
    for _ in range(n):
      total += _conv(c, out) + _bn(out) + _conv(out, out) + _bn(out)
      if c != out:
        total += _conv(c, out, k=1) + _bn(out)
      c = out
  total += _dense(64, 10)
  variables, out = _shapes(models.get('resnet20', 10), (32, 32, 3))
  assert models.param_count(variables) == total
  assert out.shape == (2, 10)


@pytest.mark.parametrize('name', models.NAMES)
@pytest.mark.parametrize('image_shape', [(8, 8, 1), (32, 32, 3)])
def test_every_named_model_has_output_shape(name, image_shape):
  if name == 'wrn28_10' and image_shape[0] == 32:
    image_shape = (8, 8, 3)  # same graph, fewer traced FLOPs
  variables, out = _shapes(models.get(name, 7), image_shape, batch=3)
  assert out.shape == (3, 7)
  assert out.dtype == jnp.float32
  has_bn = name.startswith(('resnet', 'wrn')) or name == 'cnn_bn'
  assert ('batch_stats' in variables) == has_bn


def test_get_unknown_name_lists_known_names():
  with pytest.raises(ValueError, match='wrn16_4') as e:
    models.get('vgg', 10)
  assert 'logreg' in str(e.value)
  with pytest.raises(ValueError, match='num_classes'):
    models.get('mlp', 0)


def test_bad_depth_raises():
  with pytest.raises(ValueError, match='depth'):
    _shapes(models.WideResNet(depth=15, width=1), (8, 8, 3))
  with pytest.raises(ValueError, match='depth'):
    _shapes(models.ResNet(depth=21), (8, 8, 3))


def _numpy_variables(model, x, seed=0):
  """Variables with numpy-drawn params (no compiled RNG: faster here).

  Batch norm statistics start as Flax initialises them: mean 0, var 1.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)

  def fill(path, s):
    name = jax.tree_util.keystr(path)
    if 'batch_stats' in name:
      return jnp.full(s.shape, 1.0 if "'var'" in name else 0.0, s.dtype)
    return jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def test_models_without_batch_norm_have_no_collection():
  model = models.MLP((4,), 3)
  x = jnp.ones((2, 2, 2, 1))
  variables = _numpy_variables(model, x)
  assert set(variables) == {'params'}
  out, updates = jax.jit(
    lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])
  )(variables, x)
  assert out.shape == (2, 3)
  assert not jax.tree_util.tree_leaves(updates)
  assert not models.has_batch_norm(variables)


def _conv_same(x, kernel):
  """Numpy 3x3 'SAME' cross-correlation, x [n,H,W,Ci], kernel [3,3,Ci,Co]."""
  n, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((n, h, w, kernel.shape[-1]))
  for i in range(3):
    for j in range(3):
      out += np.einsum(
        'nhwc,cd->nhwd', xp[:, i : i + h, j : j + w], kernel[i, j]
      )
  return out


@pytest.fixture(scope='module')
def bn_cnn():
  model = models.CNN(
    num_classes=3, features=(4, 4, 4), dense=8, batch_norm=True
  )
  x = jax.random.normal(jax.random.key(1), (6, 8, 8, 1))
  variables = _numpy_variables(model, x)
  train = jax.jit(
    lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])
  )
  evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
  return variables, x, train, evaluate


def test_batch_norm_running_stats_update(bn_cnn):
  variables, x, train, _ = bn_cnn
  assert models.has_batch_norm(variables)
  _, updates = train(variables, x)
  stats = updates['batch_stats']['bn_0']
  kernel = np.asarray(variables['params']['conv_0']['kernel'], np.float64)
  y = _conv_same(np.asarray(x, np.float64), kernel)
  batch_mean = y.mean(axis=(0, 1, 2))
  batch_var = y.var(axis=(0, 1, 2))
  m = models.BN_MOMENTUM
  # Initial running mean 0 and variance 1; one step of the EMA.
  np.testing.assert_allclose(
    stats['mean'], (1 - m) * batch_mean, rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(
    stats['var'], m + (1 - m) * batch_var, rtol=1e-4, atol=1e-6
  )


def test_batch_norm_train_uses_batch_eval_uses_running(bn_cnn):
  variables, x, train, evaluate = bn_cnn
  other = x.at[1:].set(2.0 * x[1:] + 1.0)
  # Train mode: example 0's logits depend on the rest of the batch.
  y_a, _ = train(variables, x)
  y_b, _ = train(variables, other)
  assert not np.allclose(y_a[0], y_b[0], atol=1e-4)
  # Eval mode: each example is normalised by the running statistics only.
  e_a = evaluate(variables, x)
  e_b = evaluate(variables, other)
  np.testing.assert_allclose(e_a[0], e_b[0], rtol=1e-6, atol=1e-6)
  # Eval must not mutate: no batch_stats updates are returned.
  assert e_a.shape == (6, 3)
