"""lrjax.lm's attention and dense products: values and gradients."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmarks import bench_lm_ops
from lrjax import lm


def _numpy_attention(q, k, v):
  """Causal softmax attention, one (batch, head) at a time, in float64."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  b, t, h, d = q.shape
  out = np.zeros_like(q)
  for i in range(b):
    for j in range(h):
      scores = q[i, :, j] @ k[i, :, j].T / math.sqrt(d)
      scores[np.triu_indices(t, 1)] = -np.inf
      weights = np.exp(scores - scores.max(axis=1, keepdims=True))
      weights /= weights.sum(axis=1, keepdims=True)
      out[i, :, j] = weights @ v[i, :, j]
  return out


def _qkv(seed, shape=(2, 7, 3, 4), dtype=jnp.float32):
  parts = np.random.default_rng(seed).standard_normal((3, *shape))
  return tuple(jnp.asarray(p, dtype) for p in parts)


def test_attention_is_causal_softmax_attention():
  q, k, v = _qkv(0)
  got = jax.jit(lm.causal_attention)(q, k, v)
  np.testing.assert_allclose(got, _numpy_attention(q, k, v), atol=2e-6)


def test_first_position_attends_to_itself_only():
  q, k, v = _qkv(1)
  got = lm.causal_attention(q, k, v)
  np.testing.assert_allclose(got[:, 0], v[:, 0], atol=1e-6)


def test_attention_gradient_matches_differentiating_the_forward_pass():
  # The hand-written backward pass against JAX's autodiff of its own
  # attention (a separate implementation of the same forward pass).
  q, k, v = _qkv(2)
  cotangent = _qkv(3)[0]

  def loss(attend):
    return lambda *qkv: jnp.sum(attend(*qkv) * cotangent)

  def reference(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, is_causal=True)

  got = jax.jit(jax.grad(loss(lm.causal_attention), argnums=(0, 1, 2)))
  want = jax.grad(loss(reference), argnums=(0, 1, 2))(q, k, v)
  for g, w in zip(got(q, k, v), want, strict=True):
    np.testing.assert_allclose(g, w, atol=2e-6)


def test_attention_gradient_by_finite_differences():
  q, k, v = _qkv(4, (1, 4, 1, 2))
  with jax.enable_x64(True):
    q, k, v = (jnp.asarray(np.asarray(a), jnp.float64) for a in (q, k, v))

    def f(q, k, v):
      return jnp.sum(jnp.sin(lm.causal_attention(q, k, v)))

    grads = jax.grad(f, argnums=(0, 1, 2))(q, k, v)
    step = 1e-6
    for arg, grad in enumerate(grads):
      for index in np.ndindex(*q.shape):
        bumped = [q, k, v]
        bumped[arg] = bumped[arg].at[index].add(step)
        lower = [q, k, v]
        lower[arg] = lower[arg].at[index].add(-step)
        numeric = (f(*bumped) - f(*lower)) / (2 * step)
        assert abs(float(grad[index]) - float(numeric)) < 1e-7


def test_attention_keeps_bfloat16_and_scores_in_float32():
  q, k, v = _qkv(5, dtype=jnp.bfloat16)
  out = lm.causal_attention(q, k, v)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    np.asarray(out, np.float32), _numpy_attention(q, k, v), atol=3e-2
  )
  grads = jax.grad(
    lambda *a: jnp.sum(lm.causal_attention(*a).astype(jnp.float32)),
    argnums=(0, 1, 2),
  )(q, k, v)
  assert all(g.dtype == jnp.bfloat16 for g in grads)


MATMUL = (((1,), (0,)), ((), ()))


def test_dense_product_and_its_gradients_by_hand():
  rng = np.random.default_rng(6)
  x, w, dy = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), None
  dy = rng.standard_normal((5, 4))
  x32, w32 = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)

  @jax.jit
  def f(x, w):
    return jnp.sum(lm.dense_dot_general(x, w, MATMUL) * dy)

  np.testing.assert_allclose(f(x32, w32), np.sum(x @ w * dy), rtol=1e-5)
  dx, dw = jax.jit(jax.grad(f, argnums=(0, 1)))(x32, w32)
  np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dw, x.T @ dy, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  'shapes, dims',
  [
    (((2, 5, 3), (3, 4)), (((2,), (0,)), ((), ()))),  # a 3-D input
    (((5, 3), (4, 3)), (((1,), (1,)), ((), ()))),  # other dimensions
  ],
)
def test_other_products_are_lax_dot_general(shapes, dims):
  rng = np.random.default_rng(7)
  a, b = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes)

  def f(dot):
    return lambda a, b: jnp.sum(jnp.tanh(dot(a, b, dims)))

  got = jax.grad(f(lm.dense_dot_general), argnums=(0, 1))(a, b)
  want = jax.grad(f(jax.lax.dot_general), argnums=(0, 1))(a, b)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_array_equal(g, w)


def test_dense_product_passes_preferred_element_type_through():
  x = jnp.ones((2, 3), jnp.bfloat16)
  out = lm.dense_dot_general(x, x.T, MATMUL, preferred_element_type=jnp.float32)
  assert out.dtype == jnp.float32
  np.testing.assert_array_equal(out, np.full((2, 2), 3.0))


def test_a_built_model_takes_jax_products_with_the_same_values():
  # The swap benchmarks/bench_lm_ops.py makes: JAX's attention and dot
  # products set on a built model give the same logits and gradients up to
  # float rounding.
  config = lm.TransformerConfig(num_layers=2, num_heads=2, width=32, seq_len=8)
  ours = bench_lm_ops.model(config, 'lrjax')
  theirs = bench_lm_ops.model(config, 'jax')
  swapped = {'attention': 0, 'dense': 0}
  for _, module in nnx.iter_modules(theirs):
    if isinstance(module, nnx.Linear):
      swapped['dense'] += module.dot_general is jax.lax.dot_general
    if hasattr(module, 'attention_fn'):
      attention = module.attention_fn
      swapped['attention'] += (
        isinstance(attention, functools.partial)
        and attention.func is jax.nn.dot_product_attention
        and attention.keywords == {'is_causal': True}
      )
  assert swapped == {'attention': 2, 'dense': 8}
  batch = {'tokens': jnp.asarray(np.arange(27).reshape(3, 9) * 7 % 256)}

  def loss(model):
    return lm.lm_loss(model(lm.lm_inputs(batch)), batch)[0]

  got, want = (nnx.jit(nnx.value_and_grad(loss))(m) for m in (ours, theirs))
  np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
  for g, w in zip(
    jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True
  ):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
  'platforms, barrier',
  [(('cpu',), True), (('cuda',), False), (('tpu',), False)],
)
def test_transpose_is_made_first_on_the_cpu_only(platforms, barrier):
  # Lowered for each platform (jax.export needs no such device): the
  # optimisation barrier that keeps the transpose is in the CPU program
  # only; elsewhere the weight gradient is XLA's folded product.
  def weight_grad(x, w):
    return jax.grad(
      lambda w: jnp.sum(jnp.tanh(lm.dense_dot_general(x, w, MATMUL)))
    )(w)

  args = (jnp.ones((4, 3)), jnp.ones((3, 2)))
  exported = jax.export.export(jax.jit(weight_grad), platforms=platforms)
  module = exported(*args).mlir_module()
  assert ('optimization_barrier' in module) == barrier


def test_the_model_gradient_lowers_for_gpu_and_tpu():
  config = lm.TransformerConfig(num_layers=1, num_heads=2, width=16, seq_len=8)
  graphdef, params = nnx.split(lm.Transformer(config, rngs=nnx.Rngs(0)))
  batch = {'tokens': jnp.zeros((2, 9), jnp.int32)}

  def grads(params):
    def loss(params):
      logits = nnx.merge(graphdef, params)(lm.lm_inputs(batch))
      return lm.lm_loss(logits, batch)[0]

    return jax.grad(loss)(params)

  exported = jax.export.export(jax.jit(grads), platforms=('cuda', 'tpu'))
  assert exported(params).platforms == ('cuda', 'tpu')
