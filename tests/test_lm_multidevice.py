"""The transformer's data-parallel step on 4 simulated CPU devices.

One SGD-with-momentum step of `lrjax.lm.Transformer` written as a
per-device body (local gradient, ``lax.pmean`` over the 'batch' axis,
update) runs under ``jax.pmap`` and under ``jax.jit(jax.shard_map(...))``;
both must give the gradient and parameters of the same step taken on the
whole batch on one device (equal shards: the mean of the shard means is the
batch mean). SGD rather than Adam: Adam's first update is about
``lr * sign(g)``, which turns float32 round-off in near-zero gradients into
differences of a whole ``lr``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from lrjax import lm

AXIS = 'batch'


def _grads_of(graphdef):
  """``(params, tokens) -> gradient`` of the LM loss of ``graphdef``."""

  def grads_of(params, tokens):
    def loss_fn(params):
      batch = {'tokens': tokens}
      logits = nnx.merge(graphdef, params)(lm.lm_inputs(batch))
      return lm.lm_loss(logits, batch)[0]

    return jax.grad(loss_fn)(params)

  return grads_of


def test_pmap_and_shard_map_step_equal_the_full_batch_step():
  devices = jax.devices()[:4]
  assert len(devices) == 4, 'the root conftest gives 4 CPU devices'
  config = lm.TransformerConfig(num_layers=2, num_heads=2, width=32, seq_len=16)
  model = lm.Transformer(config, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optax.sgd(0.5, momentum=0.9)
  opt_state = tx.init(params)
  tokens = np.random.default_rng(0).integers(0, 256, (8, 17)).astype(np.int32)

  grads_of = _grads_of(graphdef)

  def update(params, opt_state, grads):
    updates, _ = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), grads

  def body(params, opt_state, tokens):
    grads = jax.lax.pmean(grads_of(params, tokens), AXIS)
    return update(params, opt_state, grads)

  expected = jax.jit(
    lambda p, s, t: update(p, s, grads_of(p, t)),
  )(params, opt_state, tokens)

  shards = tokens.reshape(4, 2, 17)
  by_pmap = jax.pmap(
    body, axis_name=AXIS, in_axes=(None, None, 0), devices=devices
  )(params, opt_state, shards)
  by_pmap = jax.tree.map(lambda x: x[0], by_pmap)

  mesh = Mesh(np.array(devices), (AXIS,))
  by_shard_map = jax.jit(
    jax.shard_map(
      body,
      mesh=mesh,
      in_specs=(P(), P(), P(AXIS)),
      out_specs=P(),
      check_vma=False,
    )
  )(params, opt_state, tokens)

  def close(rtol, atol):
    return lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)

  # Same body, same reduction: pmap and shard_map agree to round-off.
  jax.tree.map(close(1e-6, 1e-8), by_pmap, by_shard_map)
  # Against one device: float32 sums in another order (gradients of about
  # 1e-4 to 1e-1, so 1e-7 absolute is a few ulps of the largest).
  for got in (by_pmap, by_shard_map):
    jax.tree.map(close(1e-4, 1e-7), got, expected)
  # The step moved every parameter (so equality is not trivial).
  moved = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))), by_shard_map[0], params
  )
  assert min(jax.tree.leaves(moved)) > 1e-5  # 100 times the tolerance


def test_gradients_of_replicated_inputs_under_shard_maps_type_checks():
  # With check_vma (shard_map's default), the gradient with respect to a
  # replicated input is summed over the devices, as autodiff transposes
  # the implicit pvary. The model's hand-written backward passes must do
  # the same: four equal shards give four times the full batch's gradient.
  devices = jax.devices()[:4]
  config = lm.TransformerConfig(num_layers=1, num_heads=2, width=16, seq_len=8)
  graphdef, params = nnx.split(lm.Transformer(config, rngs=nnx.Rngs(0)))
  tokens = np.random.default_rng(1).integers(0, 256, (8, 9)).astype(np.int32)

  grads_of = _grads_of(graphdef)

  mesh = Mesh(np.array(devices), (AXIS,))
  summed = jax.jit(
    jax.shard_map(grads_of, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P())
  )(params, tokens)
  whole = jax.jit(grads_of)(params, tokens)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, 4 * b, rtol=1e-4, atol=1e-7),
    summed,
    whole,
  )


def test_attention_with_replicated_keys_and_values_under_shard_map():
  devices = jax.devices()[:4]
  rng = np.random.default_rng(2)
  q = jnp.asarray(rng.standard_normal((8, 5, 2, 4)), jnp.float32)
  k, v = (
    jnp.asarray(rng.standard_normal((1, 5, 2, 4)), jnp.float32) for _ in 'kv'
  )

  def grads_of(attend):
    def body(q, k, v):
      def loss(q, k, v):
        kk, vv = (jnp.broadcast_to(a, q.shape) for a in (k, v))
        return jnp.sum(jnp.sin(attend(q, kk, vv)))

      return jax.grad(loss, argnums=(0, 1, 2))(q, k, v)

    mesh = Mesh(np.array(devices), (AXIS,))
    return jax.jit(
      jax.shard_map(
        body,
        mesh=mesh,
        in_specs=(P(AXIS), P(), P()),
        out_specs=(P(AXIS), P(), P()),
      )
    )(q, k, v)

  def reference(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, is_causal=True)

  for got, want in zip(
    grads_of(lm.causal_attention), grads_of(reference), strict=True
  ):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
