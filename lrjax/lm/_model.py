"""A decoder-only transformer in Flax NNX, sized by a config."""

from __future__ import annotations

import dataclasses
import math
import numbers

import jax
import jax.numpy as jnp
from flax import nnx

from lrjax.lm._ops import causal_attention, dense_dot_general

POSITIONS = ('learned', 'rotary')
DTYPES = ('float32', 'bfloat16')


def _positive_int(value, name: str) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f'{name}={value!r} must be an int')
  if value < 1:
    raise ValueError(f'{name}={value!r} must be >= 1')


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """The size and shape of a `Transformer`.

  The defaults are nanoGPT's CPU configuration (4 layers, 4 heads, width
  128, context 64) on byte tokens: about 0.83 M parameters with tied
  embeddings.

  Attributes:
    vocab_size: V, the number of token ids (256 for byte tokens).
    seq_len: T, the longest input the model reads (the learned position
      table's length; rotary positions are computed for any length, but
      inputs longer than ``seq_len`` are still refused).
    num_layers: L, the number of transformer blocks.
    num_heads: H, attention heads per block; must divide ``width``.
    width: d, the residual stream width.
    mlp_ratio: the MLP's hidden width is ``mlp_ratio * width``.
    dropout: dropout rate on the embeddings and on each residual branch
      (attention probabilities are not dropped); active only in train mode.
    positions: 'learned' (a table added to the token embeddings, GPT-2) or
      'rotary' (queries and keys rotated by position, Su et al. 2021).
    tie_embeddings: use the token embedding matrix as the output layer.
    use_bias: biases in the dense layers and layer norms (nanoGPT's
      ``bias``).
    rope_base: the rotary frequency base.
    init_std: standard deviation of the normal initialisation of weights
      and embeddings; the residual output projections use
      ``init_std / sqrt(2 L)`` (GPT-2).
    dtype: the compute dtype, 'float32' or 'bfloat16' (parameters are
      float32 either way; logits are returned in float32).

  Raises:
    ValueError: naming the field and the fix, for a width that the heads do
      not divide, an odd rotary head size, or values out of range.
  """

  vocab_size: int = 256
  seq_len: int = 64
  num_layers: int = 4
  num_heads: int = 4
  width: int = 128
  mlp_ratio: int = 4
  dropout: float = 0.0
  positions: str = 'learned'
  tie_embeddings: bool = True
  use_bias: bool = False
  rope_base: float = 10_000.0
  init_std: float = 0.02
  dtype: str = 'float32'

  def __post_init__(self):
    for name in (
      'vocab_size',
      'seq_len',
      'num_layers',
      'num_heads',
      'width',
      'mlp_ratio',
    ):
      _positive_int(getattr(self, name), name)
    if self.width % self.num_heads:
      raise ValueError(
        f'width={self.width} is not a multiple of num_heads='
        f'{self.num_heads}: each head gets width / num_heads features'
      )
    if self.positions not in POSITIONS:
      raise ValueError(f'positions={self.positions!r} must be in {POSITIONS}')
    if self.positions == 'rotary' and self.head_dim % 2:
      raise ValueError(
        f'positions=rotary needs an even head size, got width / num_heads = '
        f'{self.head_dim}: change width or num_heads'
      )
    if not 0.0 <= float(self.dropout) < 1.0:
      raise ValueError(f'dropout={self.dropout!r} must be in [0, 1)')
    if not (math.isfinite(self.rope_base) and self.rope_base > 1):
      raise ValueError(f'rope_base={self.rope_base!r} must be > 1')
    if not (math.isfinite(self.init_std) and self.init_std > 0):
      raise ValueError(f'init_std={self.init_std!r} must be > 0')
    if self.dtype not in DTYPES:
      raise ValueError(f'dtype={self.dtype!r} must be in {DTYPES}')

  @property
  def head_dim(self) -> int:
    """Features per attention head, ``width // num_heads``."""
    return self.width // self.num_heads

  @property
  def num_params(self) -> int:
    """The number of parameters, in closed form.

    .. math::
      N = V d + [\\text{learned}]\\, T d
        + L\\,(4 + 2r) d^2 + [\\text{untied}]\\, V d
        + (2L + 1)\\,(1 + [\\text{bias}])\\, d
        + [\\text{bias}]\\, L\\,(5 + r) d,

    with :math:`r` = ``mlp_ratio``: per block the query/key/value and
    output projections (:math:`4d^2`) and the MLP (:math:`2rd^2`), and the
    layer norms' scales (and, with ``use_bias``, their biases and the
    dense layers' :math:`(5 + r) d` biases per block).

    Examples:
      >>> TransformerConfig().num_params  # nanoGPT's CPU size, byte tokens
      828544
    """
    v, t, n, d, r = (
      self.vocab_size,
      self.seq_len,
      self.num_layers,
      self.width,
      self.mlp_ratio,
    )
    bias = int(self.use_bias)
    count = v * d + n * (4 + 2 * r) * d * d
    count += (2 * n + 1) * (1 + bias) * d + bias * n * (5 + r) * d
    if self.positions == 'learned':
      count += t * d
    if not self.tie_embeddings:
      count += v * d
    return count

  def flops_per_token(self, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward and backward), PaLM's estimate.

    .. math::
      F = 6 N_\\mathrm{mm} + 12\\, L\\, d\\, T, \\qquad
      N_\\mathrm{mm} = L\\,(4 + 2r)\\, d^2 + V d,

    where :math:`N_\\mathrm{mm}` counts the weights that multiply every
    token (the blocks' dense layers and the output layer; not embedding
    lookups, positions or norms), 2 FLOPs per weight forward and 4
    backward, and :math:`12 L d T` is the attention scores and their
    weighted sum (:math:`Q K^\\top` and :math:`A V`, forward and backward,
    causal masking not discounted). The forward pass alone is a third.

    Args:
      seq_len: the context length T; None: ``self.seq_len``.

    Returns:
      FLOPs per token, an int.

    Examples:
      >>> TransformerConfig().flops_per_token()
      5308416

    References:
      Chowdhery et al. 2022, "PaLM: Scaling Language Modeling with
      Pathways", Appendix B (model FLOPs utilisation).
    """
    t = self.seq_len if seq_len is None else seq_len
    n, d, r = self.num_layers, self.width, self.mlp_ratio
    matmul = n * (4 + 2 * r) * d * d + self.vocab_size * d
    return 6 * matmul + 12 * n * d * t


def rotary(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
  """Rotary position embedding of queries or keys.

  Each pair of features :math:`(x_i, x_{i + D/2})` of a head of size
  :math:`D` at position :math:`p` is rotated by the angle
  :math:`p\\,\\theta_i` (the "rotate half" pairing of GPT-NeoX and LLaMA):

  .. math::
    \\theta_i = b^{-2i/D}, \\quad
    \\begin{pmatrix} x'_i \\\\ x'_{i + D/2} \\end{pmatrix} =
    \\begin{pmatrix} \\cos p\\theta_i & -\\sin p\\theta_i \\\\
    \\sin p\\theta_i & \\cos p\\theta_i \\end{pmatrix}
    \\begin{pmatrix} x_i \\\\ x_{i + D/2} \\end{pmatrix},

  so a rotated query and key have the dot product of the originals
  rotated by the position difference alone.

  Args:
    x: ``[..., T, heads, D]``, D even.
    positions: ``[T]`` positions.
    base: :math:`b`.

  Returns:
    The rotated array, same shape and dtype.

  References:
    Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
    Embedding".
  """
  half = x.shape[-1] // 2
  theta = base ** (-jnp.arange(half, dtype=jnp.float32) * 2 / x.shape[-1])
  angle = positions.astype(jnp.float32)[:, None] * theta  # [T, D/2]
  cos = jnp.cos(angle)[:, None, :]
  sin = jnp.sin(angle)[:, None, :]
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def _normal(std: float):
  return nnx.initializers.normal(stddev=std)


class _Attention(nnx.Module):
  """Causal multi-head self-attention.

  ``attention_fn`` is the attention of ``[B, T, H, D]`` queries, keys and
  values (`causal_attention`); another function of the same signature can
  be set on a built model, e.g. ``functools.partial(
  jax.nn.dot_product_attention, is_causal=True, implementation='cudnn')``
  on a GPU, as the dense layers' ``dot_general`` can.
  """

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    d, dtype = config.width, jnp.dtype(config.dtype)
    out_std = config.init_std / math.sqrt(2 * config.num_layers)
    self.config = config
    self.attention_fn = causal_attention
    self.qkv = nnx.Linear(
      d,
      3 * d,
      use_bias=config.use_bias,
      dtype=dtype,
      kernel_init=_normal(config.init_std),
      dot_general=dense_dot_general,
      rngs=rngs,
    )
    self.out = nnx.Linear(
      d,
      d,
      use_bias=config.use_bias,
      dtype=dtype,
      kernel_init=_normal(out_std),
      dot_general=dense_dot_general,
      rngs=rngs,
    )

  def __call__(self, x: jax.Array, batch: int) -> jax.Array:
    """``x``: ``[batch * T, d]``, the sequences' positions in order."""
    c = self.config
    t = x.shape[0] // batch
    qkv = self.qkv(x).reshape(batch, t, 3, c.num_heads, c.head_dim)
    # Split, not indexed: the gradient is then one concatenation, where
    # three indexings would give three zero-padded copies summed.
    q, k, v = (part[:, :, 0] for part in jnp.split(qkv, 3, axis=2))
    if c.positions == 'rotary':
      positions = jnp.arange(t)
      q = rotary(q, positions, c.rope_base)
      k = rotary(k, positions, c.rope_base)
    y = self.attention_fn(q, k, v)
    return self.out(y.reshape(x.shape))


class _Block(nnx.Module):
  """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    d, dtype = config.width, jnp.dtype(config.dtype)
    hidden = config.mlp_ratio * d
    out_std = config.init_std / math.sqrt(2 * config.num_layers)
    self.norm_1 = nnx.LayerNorm(
      d, epsilon=1e-5, use_bias=config.use_bias, dtype=dtype, rngs=rngs
    )
    self.attention = _Attention(config, rngs=rngs)
    self.norm_2 = nnx.LayerNorm(
      d, epsilon=1e-5, use_bias=config.use_bias, dtype=dtype, rngs=rngs
    )
    self.mlp_in = nnx.Linear(
      d,
      hidden,
      use_bias=config.use_bias,
      dtype=dtype,
      kernel_init=_normal(config.init_std),
      dot_general=dense_dot_general,
      rngs=rngs,
    )
    self.mlp_out = nnx.Linear(
      hidden,
      d,
      use_bias=config.use_bias,
      dtype=dtype,
      kernel_init=_normal(out_std),
      dot_general=dense_dot_general,
      rngs=rngs,
    )
    dropout_rngs = rngs if config.dropout > 0 else None
    self.dropout = nnx.Dropout(config.dropout, rngs=dropout_rngs)

  def __call__(self, x: jax.Array, batch: int) -> jax.Array:
    x = x + self.dropout(self.attention(self.norm_1(x), batch))
    h = jax.nn.gelu(self.mlp_in(self.norm_2(x)))
    return x + self.dropout(self.mlp_out(h))


class Transformer(nnx.Module):
  """A decoder-only (GPT-style) transformer language model.

  Token embeddings (plus learned positions, or rotary positions inside the
  attention), dropout, ``num_layers`` pre-norm blocks of causal multi-head
  attention and a GELU MLP, a final layer norm, and the output layer (the
  transposed token embeddings when tied):

  .. math::
    h_0 = E[x] + P, \\quad
    h'_l = h_{l-1} + \\mathrm{Attn}(\\mathrm{LN}(h_{l-1})), \\quad
    h_l = h'_l + \\mathrm{MLP}(\\mathrm{LN}(h'_l)), \\quad
    z = \\mathrm{LN}(h_L)\\, E^\\top.

  Position :math:`t` attends to positions :math:`\\le t` only, so the
  logits at :math:`t` depend on ``tokens[:, :t + 1]`` alone. Dropout (with
  the rng stream ``'dropout'``) is active after ``model.train()`` and off
  after ``model.eval()``; a fresh model is in train mode, as NNX modules
  are.

  Args:
    config: the `TransformerConfig`.
    rngs: ``nnx.Rngs`` with a ``params`` (or default) stream, and a
      ``dropout`` stream when ``config.dropout > 0``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> config = TransformerConfig(num_layers=1, width=32, seq_len=16)
    >>> model = Transformer(config, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 16), jnp.int32)).shape
    (2, 16, 256)

  References:
    Radford et al. 2019, "Language Models are Unsupervised Multitask
    Learners" (GPT-2: pre-norm, initialisation); Vaswani et al. 2017,
    "Attention Is All You Need"; Karpathy, nanoGPT (the CPU size).
  """

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    if not isinstance(config, TransformerConfig):
      raise TypeError(f'config={config!r} must be a TransformerConfig')
    self.config = config
    d, dtype = config.width, jnp.dtype(config.dtype)
    self.embed = nnx.Embed(
      config.vocab_size,
      d,
      dtype=dtype,
      embedding_init=_normal(config.init_std),
      rngs=rngs,
    )
    if config.positions == 'learned':
      self.positions = nnx.Param(
        _normal(config.init_std)(rngs.params(), (config.seq_len, d))
      )
    dropout_rngs = rngs if config.dropout > 0 else None
    self.dropout = nnx.Dropout(config.dropout, rngs=dropout_rngs)
    self.blocks = nnx.List(
      [_Block(config, rngs=rngs) for _ in range(config.num_layers)]
    )
    self.norm = nnx.LayerNorm(
      d, epsilon=1e-5, use_bias=config.use_bias, dtype=dtype, rngs=rngs
    )
    if not config.tie_embeddings:
      self.head = nnx.Linear(
        d,
        config.vocab_size,
        use_bias=False,
        dtype=dtype,
        kernel_init=_normal(config.init_std),
        dot_general=dense_dot_general,
        rngs=rngs,
      )

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """Next-token logits.

    Args:
      tokens: int ``[B, T]`` token ids, ``T <= config.seq_len``.

    Returns:
      float32 ``[B, T, V]``: at position t, the logits of token t + 1.

    Raises:
      ValueError: for a wrong rank or a sequence longer than ``seq_len``.
    """
    c = self.config
    if tokens.ndim != 2:
      raise ValueError(f'tokens.shape={tokens.shape} must be [batch, time]')
    t = tokens.shape[1]
    if t > c.seq_len:
      raise ValueError(
        f'tokens has {t} positions, more than seq_len={c.seq_len}: build '
        'the model with a larger TransformerConfig.seq_len'
      )
    b = tokens.shape[0]
    x = self.embed(tokens)
    if c.positions == 'learned':
      x = x + self.positions[:t].astype(x.dtype)
    # The residual stream as [B * T, d]: every dense layer is then one 2-D
    # matrix product, which XLA's CPU backend runs much faster than the
    # same product over [B, T, d] (whose weight gradients it transposes).
    x = self.dropout(x.reshape(b * t, c.width))
    for block in self.blocks:
      x = block(x, b)
    x = self.norm(x)
    if c.tie_embeddings:
      logits = self.embed.attend(x)
    else:
      logits = self.head(x)
    return logits.astype(jnp.float32).reshape(b, t, c.vocab_size)
