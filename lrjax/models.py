"""Small Flax (linen) image classifiers: logistic regression to WideResNet.

Every model maps a float32 batch of images ``[n, H, W, C]`` to float32 logits
``[n, num_classes]`` and is called the same way::

  logits = model.apply(variables, images, train=False)
  logits, updates = model.apply(
      variables, images, train=True, mutable=['batch_stats'])

Models with batch normalisation keep running statistics in the
``'batch_stats'`` collection; models without it have no such collection (so
``mutable=['batch_stats']`` returns an empty dict of updates). Batch norm uses
``axis_name=None``: statistics are those of the per-device batch, i.e. ghost
batch normalisation with the per-device batch as the ghost batch (Hoffer et
al. 2017); the trainer averages the running statistics across devices.

Known names for :func:`get`: see :data:`NAMES`.

References:
  He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition"
  (CIFAR ResNets, 6n+2 layers). He et al. 2016, "Identity Mappings in Deep
  Residual Networks" (pre-activation blocks). Zagoruyko, Komodakis 2016,
  "Wide Residual Networks" (WRN-d-k). Hoffer, Hubara, Soudry 2017, "Train
  longer, generalize better" (ghost batch normalisation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# He initialisation with fan_out, as in the ResNet / WRN reference code.
_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

#: Default batch norm hyperparameters (PyTorch-equivalent momentum 0.1).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=BN_MOMENTUM,
    epsilon=BN_EPSILON,
    axis_name=None,
    name=name,
  )


class LogReg(nn.Module):
  """Multinomial logistic regression: one dense layer on flattened pixels.

  .. math::
    \\mathrm{logits} = W \\operatorname{vec}(x) + b, \\quad
    \\#\\theta = (HWC + 1) K

  Attributes:
    num_classes: number of output classes K.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> m = LogReg(num_classes=10)
    >>> x = jnp.zeros((2, 8, 8, 1))
    >>> v = jax.eval_shape(m.init, jax.random.key(0), x)  # shapes only
    >>> print(jax.eval_shape(m.apply, v, x).shape, param_count(v))
    (2, 10) 650
  """

  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no train/eval difference
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, name='head')(x)


class MLP(nn.Module):
  """Fully connected ReLU network on flattened pixels.

  .. math::
    \\#\\theta = \\sum_{l=1}^{L+1} (d_{l-1} + 1) d_l, \\quad
    d_0 = HWC, \\; d_{L+1} = K

  Attributes:
    hidden: widths of the hidden layers ``(d_1, ..., d_L)``.
    num_classes: number of output classes K.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> m = MLP(hidden=(32,), num_classes=10)
    >>> v = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    >>> print(param_count(v))  # (64 + 1) * 32 + (32 + 1) * 10
    2410
  """

  hidden: Sequence[int] = (128,)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f'dense_{i}')(x))
    return nn.Dense(self.num_classes, name='head')(x)


class CNN(nn.Module):
  """Small convolutional network for 8x8 digits up to 32x32 CIFAR images.

  Two 3x3 convolutions, a 2x2 average pool, a third 3x3 convolution, global
  average pooling and two dense layers. With ``batch_norm=True`` every
  convolution is followed by batch normalisation (and has no bias).

  Attributes:
    num_classes: number of output classes.
    features: channels of the three convolutions.
    dense: width of the hidden dense layer.
    batch_norm: whether to use batch normalisation.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> m = CNN(num_classes=10)
    >>> x = jnp.zeros((3, 8, 8, 1))
    >>> v = jax.eval_shape(m.init, jax.random.key(0), x)  # shapes only
    >>> print(jax.eval_shape(m.apply, v, x).shape, sorted(v))
    (3, 10) ['params']
  """

  num_classes: int = 10
  features: Sequence[int] = (32, 64, 128)
  dense: int = 128
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if len(self.features) != 3:
      raise ValueError(f'{self.features=} must have 3 entries')
    for i, feat in enumerate(self.features):
      x = nn.Conv(
        feat,
        (3, 3),
        use_bias=not self.batch_norm,
        kernel_init=_conv_init,
        name=f'conv_{i}',
      )(x)
      if self.batch_norm:
        x = _batch_norm(train, name=f'bn_{i}')(x)
      x = nn.relu(x)
      if i == 1:
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.relu(nn.Dense(self.dense, name='dense')(x))
    return nn.Dense(self.num_classes, name='head')(x)


class BasicBlock(nn.Module):
  """Post-activation residual block (He et al. 2016): conv-BN-ReLU-conv-BN.

  .. math::
    y = \\mathrm{relu}(\\mathrm{BN}(W_2 * \\mathrm{relu}(\\mathrm{BN}(W_1 * x)))
        + P x)

  with P a 1x1 strided convolution + BN when the shape changes, else I.

  Attributes:
    features: output channels.
    strides: stride of the first convolution (and of the projection).
  """

  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    s = (self.strides, self.strides)
    y = nn.Conv(
      self.features, (3, 3), s, use_bias=False, kernel_init=_conv_init
    )(x)
    y = nn.relu(_batch_norm(train)(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False, kernel_init=_conv_init)(
      y
    )
    y = _batch_norm(train)(y)
    if x.shape[-1] != self.features or self.strides != 1:
      x = nn.Conv(
        self.features,
        (1, 1),
        s,
        use_bias=False,
        kernel_init=_conv_init,
        name='proj',
      )(x)
      x = _batch_norm(train, name='proj_bn')(x)
    return nn.relu(x + y)


class PreActBlock(nn.Module):
  """Pre-activation residual block (He et al. 2016b), as used in WRNs.

  .. math::
    h = \\mathrm{relu}(\\mathrm{BN}(x)), \\quad
    y = W_2 * \\mathrm{relu}(\\mathrm{BN}(W_1 * h)) + P(h \\text{ or } x)

  The shortcut is a 1x1 strided convolution of h when the shape changes,
  else the identity on x.

  Attributes:
    features: output channels.
    strides: stride of the first convolution (and of the projection).
  """

  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    s = (self.strides, self.strides)
    h = nn.relu(_batch_norm(train)(x))
    y = nn.Conv(
      self.features, (3, 3), s, use_bias=False, kernel_init=_conv_init
    )(h)
    y = nn.relu(_batch_norm(train)(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False, kernel_init=_conv_init)(
      y
    )
    if x.shape[-1] != self.features or self.strides != 1:
      x = nn.Conv(
        self.features,
        (1, 1),
        s,
        use_bias=False,
        kernel_init=_conv_init,
        name='proj',
      )(h)
    return x + y


class ResNet(nn.Module):
  """CIFAR-style ResNet with 6n+2 layers (ResNet-20: n=3) and batch norm.

  A 3x3 stem with ``width`` channels, three stages of n basic blocks with
  ``width``, ``2 width``, ``4 width`` channels (strides 1, 2, 2), global
  average pooling and a dense head.

  Attributes:
    depth: total depth, ``6n + 2``.
    num_classes: number of output classes.
    width: channels of the first stage.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> m = ResNet(depth=20, num_classes=10)
    >>> x = jnp.zeros((1, 32, 32, 3))
    >>> v = jax.eval_shape(m.init, jax.random.key(0), x)  # shapes only
    >>> print(sorted(v), param_count(v))
    ['batch_stats', 'params'] 272474
  """

  depth: int = 20
  num_classes: int = 10
  width: int = 16

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth < 8 or (self.depth - 2) % 6:
      raise ValueError(f'{self.depth=} must be 6n + 2 with n >= 1')
    n = (self.depth - 2) // 6
    x = nn.Conv(
      self.width, (3, 3), use_bias=False, kernel_init=_conv_init, name='stem'
    )(x)
    x = nn.relu(_batch_norm(train, name='stem_bn')(x))
    for stage in range(3):
      for block in range(n):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name='head')(x)


class WideResNet(nn.Module):
  """Wide residual network WRN-d-k (Zagoruyko & Komodakis 2016).

  A 3x3 stem with 16 channels, three groups of ``n = (d - 4) / 6``
  pre-activation blocks with ``16k``, ``32k``, ``64k`` channels (strides 1,
  2, 2), a final BN-ReLU, global average pooling and a dense head. WRN-16-4
  on CIFAR-10 has 2,748,890 parameters (incl. batch norm scales and biases).

  Attributes:
    depth: total depth d, ``6n + 4``.
    width: widening factor k.
    num_classes: number of output classes.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> m = WideResNet(depth=16, width=4, num_classes=10)
    >>> x = jnp.zeros((2, 32, 32, 3))
    >>> v = jax.eval_shape(m.init, jax.random.key(0), x)  # shapes only
    >>> y, upd = jax.eval_shape(
    ...     lambda v, x: m.apply(v, x, train=True, mutable=['batch_stats']),
    ...     v, x)
    >>> print(y.shape, sorted(upd), param_count(v))
    (2, 10) ['batch_stats'] 2748890
  """

  depth: int = 16
  width: int = 4
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f'{self.depth=} must be 6n + 4 with n >= 1')
    if self.width < 1:
      raise ValueError(f'{self.width=} must be >= 1')
    n = (self.depth - 4) // 6
    x = nn.Conv(
      16, (3, 3), use_bias=False, kernel_init=_conv_init, name='stem'
    )(x)
    for group in range(3):
      for block in range(n):
        strides = 2 if group > 0 and block == 0 else 1
        x = PreActBlock(16 * self.width * 2**group, strides)(x, train)
    x = nn.relu(_batch_norm(train, name='final_bn')(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, name='head')(x)


def param_count(variables: Any) -> int:
  """Number of scalars in ``variables['params']`` (or in a params tree).

  Args:
    variables: the dict returned by ``model.init`` or a params pytree.

  Returns:
    The total number of parameters (running statistics not counted).
  """
  if isinstance(variables, dict) and 'params' in variables:
    variables = variables['params']
  return int(sum(x.size for x in jax.tree_util.tree_leaves(variables)))


_FACTORIES: dict[str, Callable[..., nn.Module]] = {
  'logreg': LogReg,
  'mlp': MLP,
  'mlp2': functools.partial(MLP, hidden=(256, 256)),
  'cnn': CNN,
  'cnn_bn': functools.partial(CNN, batch_norm=True),
  'resnet8': functools.partial(ResNet, depth=8),
  'resnet20': functools.partial(ResNet, depth=20),
  'resnet32': functools.partial(ResNet, depth=32),
  'wrn16_4': functools.partial(WideResNet, depth=16, width=4),
  'wrn16_8': functools.partial(WideResNet, depth=16, width=8),
  'wrn28_10': functools.partial(WideResNet, depth=28, width=10),
}

#: Names accepted by :func:`get`.
NAMES: tuple[str, ...] = tuple(_FACTORIES)


def get(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a model by name.

  Args:
    name: one of :data:`NAMES` ('logreg', 'mlp', 'mlp2', 'cnn', 'cnn_bn',
      'resnet8', 'resnet20', 'resnet32', 'wrn16_4', 'wrn16_8', 'wrn28_10').
    num_classes: number of output classes.
    **kwargs: further module attributes, e.g. ``hidden=(64, 64)`` for 'mlp'.

  Returns:
    The (uninitialised) Flax module.

  Raises:
    ValueError: for an unknown name or ``num_classes < 1``.

  Examples:
    >>> print(type(get('wrn16_4', 10)).__name__, get('mlp', 3).num_classes)
    WideResNet 3
  """
  if name not in _FACTORIES:
    raise ValueError(f'unknown model {name=}; known names: {", ".join(NAMES)}')
  if num_classes < 1:
    raise ValueError(f'{num_classes=} must be >= 1')
  return _FACTORIES[name](num_classes=num_classes, **kwargs)


def has_batch_norm(variables: Any) -> bool:
  """Whether initialised ``variables`` hold batch norm running statistics."""
  return bool(jax.tree_util.tree_leaves(variables.get('batch_stats', {})))


__all__ = [
  'BN_EPSILON',
  'BN_MOMENTUM',
  'NAMES',
  'BasicBlock',
  'CNN',
  'LogReg',
  'MLP',
  'PreActBlock',
  'ResNet',
  'WideResNet',
  'get',
  'has_batch_norm',
  'param_count',
]
