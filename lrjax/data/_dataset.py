"""The `Dataset` type every loader returns: random access, normalised."""

from collections.abc import Callable
from typing import Any

import numpy as np

from lrjax.data import _augment

Reader = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

AUGMENTATIONS = (None, 'crop_flip')


def default_augmentation(image_shape: tuple[int, int, int]) -> str | None:
  """'crop_flip' for CIFAR-style colour images (32x32x3 and up), else None.

  Pad-4 crops of 8x8 digits or flips of handwriting change the class, so
  small and grey images get no augmentation by default.
  """
  height, width, channels = image_shape
  return 'crop_flip' if min(height, width) >= 32 and channels == 3 else None


class Dataset:
  """One split of an image-classification dataset with random access.

  Build one with `lrjax.data.load`, `lrjax.data.synthetic` or
  `Dataset.from_arrays`. Images are stored as integers (uint8 pixels) and
  normalised per channel on `take`:

  .. math::
    x' = (x - \\mu_c) / \\sigma_c

  with the mean and standard deviation of each channel over the training
  split, in pixel units.

  Attributes:
    name: the dataset name.
    split: the split name.
    num_examples: the number of examples.
    image_shape: ``(H, W, C)``.
    num_classes: the number of classes; labels are in ``[0, num_classes)``.
    mean: float32 ``[C]``, per-channel mean in pixel units.
    std: float32 ``[C]``, per-channel standard deviation in pixel units.
    augmentation: None or 'crop_flip' (pad-4 random crop and horizontal
      flip), applied by `take` when an ``augment_seed`` is given.
    content: what the examples are, for the run's fingerprint
      (`lrjax.data.fingerprint`): a JSON-ready description its builder
      records (computed on first use), or None when unknown.
  """

  def __init__(
    self,
    *,
    name: str,
    split: str,
    num_examples: int,
    image_shape: tuple[int, int, int],
    num_classes: int,
    mean,
    std,
    reader: Reader,
    augmentation: str | None = None,
    content: Any = None,
  ):
    if int(num_examples) < 1:
      raise ValueError(f'{num_examples=} must be >= 1 (empty split {split!r})')
    if len(image_shape) != 3:
      raise ValueError(f'{image_shape=} must be (height, width, channels)')
    if int(num_classes) < 2:
      raise ValueError(f'{num_classes=} must be >= 2')
    if augmentation not in AUGMENTATIONS:
      raise ValueError(f'{augmentation=} must be one of {AUGMENTATIONS}')
    self.name = name
    self.split = split
    self.num_examples = int(num_examples)
    self.image_shape = tuple(int(d) for d in image_shape)
    self.num_classes = int(num_classes)
    channels = self.image_shape[-1]
    self.mean = np.broadcast_to(np.asarray(mean, np.float32), (channels,))
    self.std = np.broadcast_to(np.asarray(std, np.float32), (channels,))
    if not np.all(self.std > 0):
      raise ValueError(f'std={self.std.tolist()} must be > 0 per channel')
    self.augmentation = augmentation
    self._reader = reader
    # A function is called on first use: hashing pixels costs a pass over
    # them, paid only by a run that checks its workdir.
    self._content = content
    # Full-shape constants: broadcasting a 3-wide last axis is 5x slower.
    self._mean_full = np.ascontiguousarray(
      np.broadcast_to(self.mean, self.image_shape)
    )
    self._scale_full = np.ascontiguousarray(
      np.broadcast_to(1.0 / self.std, self.image_shape).astype(np.float32)
    )

  @property
  def content(self) -> Any:
    """What the examples are (see the class docstring), or None."""
    if callable(self._content):
      self._content = self._content()
    return self._content

  @classmethod
  def from_arrays(
    cls,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    name: str = 'arrays',
    split: str = 'train',
    mean=None,
    std=None,
    augmentation: str | None = 'auto',
  ) -> 'Dataset':
    """A dataset over in-memory arrays.

    Args:
      images: ``[N, H, W, C]`` pixels (uint8 preferred; kept as given).
      labels: ``[N]`` integer labels.
      num_classes: the number of classes.
      name: the dataset name.
      split: the split name.
      mean: per-channel mean; default: computed from ``images``.
      std: per-channel standard deviation; default: computed from ``images``.
      augmentation: 'auto' (`default_augmentation` of the shape), None or
        'crop_flip'.

    Returns:
      A `Dataset`.

    Raises:
      ValueError: for mismatched shapes or out-of-range labels.

    Examples:
      >>> images = np.arange(2 * 2 * 2, dtype=np.uint8).reshape(2, 2, 2, 1)
      >>> ds = Dataset.from_arrays(images, np.array([0, 1]), num_classes=2)
      >>> batch = ds.take(np.array([1, 0]))
      >>> print(batch['image'].shape, batch['label'].tolist())
      (2, 2, 2, 1) [1, 0]
    """
    images = np.asarray(images)
    labels = np.asarray(labels).astype(np.int32)
    if images.ndim != 4:
      raise ValueError(f'images.shape={images.shape} must be [N, H, W, C]')
    if labels.shape != images.shape[:1]:
      raise ValueError(
        f'labels.shape={labels.shape} must be [{images.shape[0]}] '
        '(one label per image)'
      )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(
        f'labels must be in [0, {num_classes=}); found '
        f'[{labels.min()}, {labels.max()}]'
      )
    if mean is None or std is None:
      mean_, std_ = channel_stats(images)
      mean = mean_ if mean is None else mean
      std = std_ if std is None else std
    if augmentation == 'auto':
      augmentation = default_augmentation(images.shape[1:])

    def reader(indices):
      return images[indices], labels[indices]

    def content():
      from lrjax.data._fingerprint import digest_arrays

      return {'arrays': digest_arrays({'image': images, 'label': labels})}

    return cls(
      name=name,
      split=split,
      num_examples=images.shape[0],
      image_shape=images.shape[1:],
      num_classes=num_classes,
      mean=mean,
      std=std,
      reader=reader,
      augmentation=augmentation,
      content=content,
    )

  def take(
    self,
    indices,
    *,
    augment_seed: int | None = None,
    epochs=0,
  ) -> dict[str, np.ndarray]:
    """The examples at ``indices``, normalised and (optionally) augmented.

    Args:
      indices: int array ``[n]`` of example indices in
        ``[0, num_examples)``, in any order, repeats allowed.
      augment_seed: None: no augmentation. An int: apply the dataset's
        augmentation (if it has one) with per-example randomness keyed by
        ``(augment_seed, epoch, index)`` (see `lrjax.data.augment_key`).
      epochs: int or int array ``[n]``: the epoch in which each example is
        drawn (`Sampler.next_with_epochs` returns it), so each epoch sees a
        different crop of an example while a resumed run sees the same one.

    Returns:
      ``dict(image=float32 [n, H, W, C], label=int32 [n])``.

    Raises:
      IndexError: for indices out of range.
    """
    indices = np.asarray(indices, np.int64)
    if indices.ndim != 1:
      raise ValueError(f'indices.shape={indices.shape} must be 1-D')
    if indices.size and (
      indices.min() < 0 or indices.max() >= self.num_examples
    ):
      raise IndexError(
        f'indices must be in [0, {self.num_examples}) for {self.name} '
        f'{self.split}; found [{indices.min()}, {indices.max()}]'
      )
    images, labels = self._reader(indices)
    if augment_seed is not None and self.augmentation == 'crop_flip':
      keys = _augment.augment_key(augment_seed, epochs, indices)
      images = _augment.crop_flip(images, keys)
    image = images.astype(np.float32)
    image -= self._mean_full
    image *= self._scale_full
    return {'image': image, 'label': np.asarray(labels, np.int32)}

  def __len__(self) -> int:
    return self.num_examples

  def __repr__(self) -> str:
    return (
      f'Dataset(name={self.name!r}, split={self.split!r}, '
      f'num_examples={self.num_examples}, image_shape={self.image_shape}, '
      f'num_classes={self.num_classes}, augmentation={self.augmentation!r})'
    )


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of ``[N, H, W, C]`` pixels.

  Accumulated in float64 chunk by chunk, so large uint8 arrays are not
  copied to floats at once.

  Args:
    images: ``[N, H, W, C]``.

  Returns:
    ``(mean, std)``, float32 ``[C]`` each; a zero std is replaced by 1.
  """
  channels = images.shape[-1]
  total = np.zeros(channels)
  total_sq = np.zeros(channels)
  count = 0
  for start in range(0, images.shape[0], 4096):
    chunk = images[start : start + 4096].reshape(-1, channels)
    chunk = chunk.astype(np.float64)
    total += chunk.sum(0)
    total_sq += np.square(chunk).sum(0)
    count += chunk.shape[0]
  mean = total / max(count, 1)
  var = np.maximum(total_sq / max(count, 1) - np.square(mean), 0.0)
  std = np.sqrt(var)
  std[std == 0] = 1.0
  return mean.astype(np.float32), std.astype(np.float32)
