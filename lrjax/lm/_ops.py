"""The transformer's products, with backward passes written for speed.

Both compute what the plain JAX expression computes; what changes is the
program autodiff would otherwise build for the backward pass. Measured on
one core of the 2-core development machine, the AdamW step of
`lrjax.lm.Transformer` at nanoGPT's CPU size and 6 sequences
(``benchmarks/bench_lm_ops.py``) runs 1.09x as fast with this attention,
1.05x with these dense products and 1.12x with both.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

# What masked scores are set to: finite, so a row's maximum stays finite
# and exp(masked - max) is exactly 0.
_MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)


def _like(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
  """The cotangent summed over the mesh axes along which it varies and the
  primal does not: what autodiff's transpose of the implicit ``pvary`` of
  an invariant input (a replicated weight inside ``jax.shard_map``) gives.
  """
  extra = _varying(cotangent) - _varying(primal)
  return lax.psum(cotangent, tuple(sorted(extra))) if extra else cotangent


def _varying(x: jax.Array) -> frozenset:
  """The mesh axes along which ``x`` varies inside ``jax.shard_map``."""
  return jax.typeof(x).manual_axis_type.varying


def _score_dtype(q: jax.Array):
  return jnp.promote_types(q.dtype, jnp.float32)


def _scores(q: jax.Array, k: jax.Array) -> jax.Array:
  scale = 1.0 / math.sqrt(q.shape[-1])
  s = jnp.einsum(
    'bqhd,bkhd->bhqk', q, k, preferred_element_type=_score_dtype(q)
  )
  t = q.shape[1]
  causal = jnp.tril(jnp.ones((t, t), bool))
  return jnp.where(causal, s * scale, _MASKED)


def _attend(q, k, v):
  probs = jax.nn.softmax(_scores(q, k), axis=-1)
  out = jnp.einsum('bhqk,bkhd->bqhd', probs.astype(v.dtype), v)
  return out, probs


@jax.custom_vjp
def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """Causal softmax attention, its backward pass written out.

  With :math:`D` the head size, per batch element and head,

  .. math::
    S = \\frac{Q K^\\top}{\\sqrt{D}} \\text{ (entries above the diagonal
    masked)}, \\quad P = \\mathrm{softmax}(S), \\quad O = P V,

  the scores and probabilities in float32 or wider whatever the inputs'
  dtype (as `jax.nn.dot_product_attention`, which this matches). The backward
  pass, given :math:`dO`:

  .. math::
    dV = P^\\top dO, \\quad dP = dO\\, V^\\top, \\quad
    dS = P \\odot (dP - \\delta), \\quad
    \\delta_t = \\textstyle\\sum_j dO_{tj} O_{tj}, \\quad
    dQ = \\frac{dS\\, K}{\\sqrt{D}}, \\quad dK = \\frac{dS^\\top Q}{\\sqrt{D}},

  where :math:`\\delta_t = \\sum_s dP_{ts} P_{ts}` is read off the
  outputs (:math:`D` numbers per row instead of :math:`T`), as
  FlashAttention does. Autodiff of the forward pass instead
  differentiates the softmax's exponential, sum and division one by one;
  on XLA's CPU backend that program's reduction took 0.34 ms a layer at
  nanoGPT's CPU size (6 sequences), where the forward pass's row sum takes
  0.01 ms.

  Args:
    q: queries, ``[B, T, H, D]``.
    k: keys, ``[B, T, H, D]``.
    v: values, ``[B, T, H, D]``.

  Returns:
    ``[B, T, H, D]``, in the values' dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> q = k = jnp.zeros((1, 3, 1, 2))
    >>> v = jnp.arange(6.0).reshape(1, 3, 1, 2)
    >>> causal_attention(q, k, v)[0, :, 0]  # equal scores: running means
    Array([[0., 1.],
           [1., 2.],
           [2., 3.]], dtype=float32)

  References:
    Vaswani et al. 2017, "Attention Is All You Need"; Dao et al. 2022,
    "FlashAttention" (the backward pass through :math:`\\delta`).
  """
  return _attend(q, k, v)[0]


def _attention_forward(q, k, v):
  out, probs = _attend(q, k, v)
  return out, (q, k, v, probs, out)


def _attention_backward(residuals, d_out):
  q, k, v, probs, out = residuals
  scale = 1.0 / math.sqrt(q.shape[-1])
  wide = _score_dtype(q)
  d_v = jnp.einsum('bhqk,bqhd->bkhd', probs.astype(v.dtype), d_out)
  d_probs = jnp.einsum('bqhd,bkhd->bhqk', d_out, v, preferred_element_type=wide)
  delta = jnp.einsum('bqhd,bqhd->bhq', d_out.astype(wide), out.astype(wide))
  d_scores = (probs * (d_probs - delta[..., None]) * scale).astype(q.dtype)
  d_q = jnp.einsum('bhqk,bkhd->bqhd', d_scores, k)
  d_k = jnp.einsum('bhqk,bqhd->bkhd', d_scores, q)
  return tuple(
    _like(grad.astype(primal.dtype), primal)
    for grad, primal in ((d_q, q), (d_k, k), (d_v, v))
  )


causal_attention.defvjp(_attention_forward, _attention_backward)

_MATMUL = (((1,), (0,)), ((), ()))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(x: jax.Array, w: jax.Array, precision: Any) -> jax.Array:
  return lax.dot_general(x, w, _MATMUL, precision=precision)


def _matmul_forward(x, w, precision):
  return _matmul(x, w, precision), (x, w)


def _matmul_backward(precision, residuals, d_y):
  x, w = residuals
  d_x = lax.dot_general(d_y, w, (((1,), (1,)), ((), ())), precision=precision)

  # On XLA's CPU backend the product with the transposed input folded in
  # (contracting both operands' rows) runs on a slower kernel than the
  # plain product of the transpose made first: 0.57 against 0.42 ms for
  # the MLP's [384, 512] x [384, 128]. The barrier keeps the transpose
  # from being folded back. Elsewhere the folded product is the better one.
  def weight_grad(transposed):
    return lambda x, d_y: lax.dot_general(
      transposed(x.T), d_y, _MATMUL, precision=precision
    )

  d_w = lax.platform_dependent(
    x,
    d_y,
    cpu=weight_grad(lax.optimization_barrier),
    default=weight_grad(lambda t: t),
  )
  return _like(d_x.astype(x.dtype), x), _like(d_w.astype(w.dtype), w)


_matmul.defvjp(_matmul_forward, _matmul_backward)


def dense_dot_general(
  lhs: jax.Array,
  rhs: jax.Array,
  dimension_numbers: Any,
  precision: Any = None,
  **kwargs: Any,
) -> jax.Array:
  """`jax.lax.dot_general` for `flax.nnx.Linear` on ``[N, in]`` inputs.

  The product of a 2-D input and the kernel, and its gradients:

  .. math::
    Y = X W, \\qquad dX = dY\\, W^\\top, \\qquad dW = (X^\\top)\\, dY,

  where, on the CPU backend, :math:`X^\\top` is made first and then
  multiplied (XLA's CPU kernel for the product with the transpose folded
  in is slower). Values are those of `jax.lax.dot_general` up to float
  rounding; any other shape, dimension numbers or keyword goes to
  `jax.lax.dot_general` unchanged.

  Args:
    lhs: the input.
    rhs: the kernel.
    dimension_numbers: as `jax.lax.dot_general`.
    precision: as `jax.lax.dot_general`.
    **kwargs: further `jax.lax.dot_general` arguments (``None`` values
      are ignored).

  Returns:
    The product.

  Examples:
    >>> import jax.numpy as jnp
    >>> x, w = jnp.ones((2, 3)), jnp.ones((3, 4))
    >>> dense_dot_general(x, w, (((1,), (0,)), ((), ()))).tolist()[0]
    [3.0, 3.0, 3.0, 3.0]
  """
  extra = {name: value for name, value in kwargs.items() if value is not None}
  dims = tuple(
    tuple(tuple(axes) for axes in pair) for pair in dimension_numbers
  )
  if lhs.ndim == 2 and rhs.ndim == 2 and dims == _MATMUL and not extra:
    return _matmul(lhs, rhs, precision)
  return lax.dot_general(
    lhs, rhs, dimension_numbers, precision=precision, **extra
  )
