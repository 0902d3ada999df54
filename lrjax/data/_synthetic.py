"""Synthetic image classification data of any size and shape."""

import numpy as np

from lrjax.data._dataset import Dataset

_CHUNK = 4096


def synthetic(
  num_examples: int,
  image_shape: tuple[int, int, int] = (32, 32, 3),
  num_classes: int = 10,
  seed: int = 0,
  *,
  split: str = 'train',
  augmentation: str | None = 'auto',
) -> Dataset:
  """A learnable synthetic dataset, deterministic from its seed.

  Each class ``k`` has a fixed random prototype image :math:`P_k` with
  pixels uniform in ``[0, 64)``; example ``i`` has a uniform random label
  :math:`y_i` and the uint8 image

  .. math::
    x_i = P_{y_i} + U_i, \\qquad U_i \\sim \\mathcal{U}\\{0, \\dots, 191\\}
    \\text{ per pixel,}

  so the labels are learnable (the class means differ by the prototypes)
  but single pixels are dominated by noise. Everything is drawn from NumPy's
  PCG64 seeded with ``[seed, tag]``, where ``tag`` 0 is the train and 1 the
  test split (both share the prototypes), in chunks of 4096 examples. The
  images are generated once and kept in memory as uint8:
  ``num_examples * H * W * C`` bytes (150 MiB for 50,000 CIFAR-sized
  images, about a second to generate). The normalisation uses the mean and
  standard deviation of the generating distribution.

  Args:
    num_examples: the number of examples, >= 1.
    image_shape: ``(H, W, C)``.
    num_classes: the number of classes, >= 2.
    seed: the seed.
    split: 'train' or 'test' (a disjoint draw from the same distribution).
    augmentation: 'auto' (crop and flip for 32x32x3 and larger colour
      images, see `lrjax.data.default_augmentation`), None or 'crop_flip'.

  Returns:
    A `Dataset` named ``'synthetic'``.

  Raises:
    ValueError: for a bad size, shape, class count or split.

  Examples:
    >>> ds = synthetic(100, (8, 8, 1), num_classes=4, seed=0)
    >>> batch = ds.take(np.arange(3))
    >>> print(ds.num_examples, batch['image'].shape, batch['image'].dtype)
    100 (3, 8, 8, 1) float32
  """
  if int(num_examples) < 1:
    raise ValueError(f'{num_examples=} must be >= 1')
  image_shape = tuple(int(d) for d in image_shape)
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(
      f'{image_shape=} must be (height, width, channels), all >= 1'
    )
  if int(num_classes) < 2:
    raise ValueError(f'{num_classes=} must be >= 2')
  if split not in ('train', 'test'):
    raise ValueError(f"{split=} must be 'train' or 'test'")
  num_examples, num_classes = int(num_examples), int(num_classes)
  prototypes = np.random.default_rng([seed, 2]).integers(
    0, 64, (num_classes, *image_shape), dtype=np.uint8
  )
  rng = np.random.default_rng([seed, 0 if split == 'train' else 1])
  images = np.empty((num_examples, *image_shape), np.uint8)
  labels = np.empty(num_examples, np.int32)
  for start in range(0, num_examples, _CHUNK):
    stop = min(start + _CHUNK, num_examples)
    y = rng.integers(0, num_classes, stop - start)
    noise = rng.integers(0, 192, (stop - start, *image_shape), dtype=np.uint8)
    images[start:stop] = noise + prototypes[y]
    labels[start:stop] = y
  # Normalisation from the generating distribution: noise mean 95.5 and
  # variance (192**2 - 1) / 12 plus the prototypes' moments under the drawn
  # label frequencies (exact in expectation, no pass over the images).
  freq = np.bincount(labels, minlength=num_classes) / num_examples
  proto = prototypes.reshape(num_classes, -1, image_shape[-1]).astype(float)
  proto_mean = np.einsum('k,kpc->c', freq, proto) / proto.shape[1]
  proto_sq = np.einsum('k,kpc->c', freq, proto**2) / proto.shape[1]
  mean = proto_mean + 95.5
  std = np.sqrt(proto_sq - proto_mean**2 + (192**2 - 1) / 12)
  return Dataset.from_arrays(
    images,
    labels,
    num_classes=num_classes,
    name='synthetic',
    split=split,
    mean=mean,
    std=std,
    augmentation=augmentation,
  )
