"""`load`: TFDS image classification datasets through `tfds.data_source`."""

import contextlib
import difflib
import fcntl
import io
import os

import numpy as np
from absl import logging

from lrjax.data import _fingerprint
from lrjax.data._dataset import Dataset, channel_stats, default_augmentation

# Per-channel mean and std of the training split, in pixel units (0..255),
# for the common datasets, so loading a test split needs no pass over train.
_KNOWN_STATS = {
  'cifar10': ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
  'cifar100': ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
  'mnist': ((0.1307,), (0.3081,)),
  'fashion_mnist': ((0.2860,), (0.3530,)),
}
# Splits up to this many bytes of pixels are read into memory once.
_IN_MEMORY_BYTES = 1 << 30
# Training examples used to estimate normalisation statistics.
_STATS_EXAMPLES = 10_000


def _base_name(name: str) -> str:
  return name.split(':')[0].split('/')[0]


@contextlib.contextmanager
def _file_lock(path: str):
  with open(path, 'a') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def prepare_digits(data_dir: str | None = None) -> str:
  """Prepares the bundled `digits` dataset into ``data_dir`` once.

  Writes array_record files under ``data_dir/digits/1.0.0`` on the first
  call (about a second, no network) and does nothing afterwards. Concurrent
  callers (parallel runs sharing a data dir) are serialised by a lock file
  ``data_dir/.lrjax_digits.lock``.

  Args:
    data_dir: where TFDS keeps datasets; created if missing. None: TFDS's
      default (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

  Returns:
    The data dir used.
  """
  import tensorflow_datasets as tfds

  from lrjax.data.digits import Digits

  if data_dir is None:
    data_dir = os.path.expanduser(tfds.core.constants.DATA_DIR)
  os.makedirs(data_dir, exist_ok=True)
  with _file_lock(os.path.join(data_dir, '.lrjax_digits.lock')):
    builder = Digits(data_dir=data_dir, file_format='array_record')
    if not builder.is_prepared():
      logging.info('Preparing the digits dataset in %s', data_dir)
      _prepare_quietly(builder)
  return data_dir


def _prepare_quietly(builder) -> None:
  """`download_and_prepare` without TFDS's progress bars and prints."""
  from tensorflow_datasets.core.utils import tqdm_utils

  active = tqdm_utils._active  # TFDS has a setter but no getter.
  tqdm_utils.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare()
  finally:
    tqdm_utils.display_progress_bar(active)


def _not_prepared(name: str, data_dir: str | None, error: Exception):
  if data_dir is None:
    import tensorflow_datasets as tfds

    where = tfds.core.constants.DATA_DIR  # $TFDS_DATA_DIR or the default
  else:
    where = data_dir
  return FileNotFoundError(
    f'dataset {name!r} is not prepared as array_record in {where} and '
    'cannot be downloaded here. Prepare it on a machine with network '
    'access (building the image features needs TensorFlow): '
    f'`pip install tensorflow && tfds build {name} '
    f'--file_format=array_record --data_dir={where}` (or, for data already '
    'built as tfrecord, `tfds convert_format --file_format=array_record`), '
    'then copy the directory here and pass data_dir= (or, with network '
    'access and TensorFlow installed, load(..., download=True)). '
    f'(TFDS said: {type(error).__name__}: {str(error)[:300]})'
  )


def _check_name(name: str):
  import tensorflow_datasets as tfds

  known = tfds.list_builders(with_community_datasets=False)
  if _base_name(name) not in known:
    close = difflib.get_close_matches(_base_name(name), known + ['digits'])
    raise ValueError(
      f'unknown dataset {name=}: not a TFDS dataset nor the bundled '
      f"'digits'. Close names: {close or 'none'}; see tfds.list_builders()"
    )


def _features(info, name: str):
  keys = info.supervised_keys
  if isinstance(keys, tuple) and len(keys) == 2:
    image_key, label_key = keys
  else:
    image_key, label_key = 'image', 'label'
  features = info.features
  if image_key not in features or label_key not in features:
    raise ValueError(
      f'dataset {name!r} has features {list(features)}: lrjax.data.load '
      "reads image classification datasets with 'image' and 'label'"
    )
  shape = tuple(features[image_key].shape)
  if len(shape) != 3 or any(d is None for d in shape):
    raise ValueError(
      f'dataset {name!r} has images of shape {shape}: lrjax.data.load needs '
      'a fixed (height, width, channels) shape; resize the data first'
    )
  num_classes = getattr(features[label_key], 'num_classes', None)
  if num_classes is None:
    raise ValueError(f'dataset {name!r}: label {label_key!r} is not a class')
  return image_key, label_key, shape, int(num_classes)


def _reader(source, image_key: str, label_key: str):
  def read(indices):
    # One record at a time: `__getitems__` is not available on every TFDS
    # source (the mock one lacks it).
    examples = [source[int(i)] for i in indices]
    images = np.stack([np.asarray(e[image_key]) for e in examples])
    labels = np.array([int(e[label_key]) for e in examples], np.int32)
    return images, labels

  return read


def _open(name: str, split: str, data_dir: str | None, download=False):
  import tensorflow_datasets as tfds

  try:
    return tfds.data_source(
      name, split=split, data_dir=data_dir, download=download
    )
  except (NotImplementedError, AssertionError, FileNotFoundError) as e:
    raise _not_prepared(name, data_dir, e) from e
  except KeyError as e:
    # A builder whose info exists but whose splits were never generated
    # (TFDS: "`splits` is empty ... has not been generated yet").
    if 'generated' in str(e) or 'splits' in str(e):
      raise _not_prepared(name, data_dir, e) from e
    raise
  except ValueError as e:
    if 'split' in str(e).lower():
      raise ValueError(
        f'dataset {name!r} has no split {split!r}: {str(e).rstrip(".")}. '
        'Use one of the '
        "dataset's splits, e.g. split='train' or split='test'"
      ) from e
    raise


def load(
  name: str = 'digits',
  *,
  split: str,
  data_dir: str | os.PathLike | None = None,
  in_memory: bool | None = None,
  augmentation: str | None = 'auto',
  download: bool = False,
) -> Dataset:
  """Loads one split of an image classification dataset.

  ``'digits'`` is the bundled default: scikit-learn's copy of the UCI
  handwritten digits (8x8x1, 10 classes, 1437 train / 360 test, see
  `lrjax.data.digits.split_indices`), prepared as array_record into
  ``data_dir`` on first use with no network and reused afterwards. Any other
  name is a TFDS dataset (``mnist``, ``fashion_mnist``, ``cifar10``,
  ``cifar100``, ``name:version``, ``name/config``) read through
  `tfds.data_source`: array_record files with random access, TensorFlow not
  needed. Such data must already be prepared as array_record under
  ``data_dir`` (TFDS cannot download here; the error says how to prepare
  it).

  Normalisation (per channel, pixel units): the published training-split
  statistics of cifar10, cifar100, mnist and fashion_mnist; otherwise the
  statistics of (up to 10,000 evenly spaced examples of) the train split.

  Args:
    name: 'digits' or a TFDS dataset name.
    split: the split, e.g. 'train' or 'test' (TFDS slicing like
      'train[:90%]' works).
    data_dir: the TFDS data dir. None: TFDS's default (``$TFDS_DATA_DIR``
      or ``~/tensorflow_datasets``). For TFDS datasets it must exist; for
      'digits' it is created.
    in_memory: read the whole split into memory once (fast batches) or read
      records per batch. None: in memory when its pixels take <= 1 GiB.
    augmentation: 'auto' (crop and flip for 32x32x3 and larger colour
      images, none otherwise), None or 'crop_flip'.
    download: let TFDS download and prepare a missing dataset as
      array_record (needs network access and, for image features,
      TensorFlow). False (default): never touch the network.

  Returns:
    A `Dataset`.

  Raises:
    ValueError: for an unknown name (listing close names), a missing split,
      or a dataset that is not image classification with fixed-size images.
    FileNotFoundError: for a missing ``data_dir`` or a dataset that is not
      prepared there.

  Examples:
    >>> import tempfile
    >>> ds = load('digits', split='test', data_dir=tempfile.mkdtemp())
    >>> print(ds.num_examples, ds.image_shape, ds.num_classes)
    360 (8, 8, 1) 10
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f'{name=} must be a dataset name such as "digits"')
  if not isinstance(split, str) or not split:
    raise ValueError(f"{split=} must be a split name such as 'train'")
  if data_dir is not None:
    data_dir = os.path.expanduser(os.fspath(data_dir))
  if _base_name(name) == 'digits':
    data_dir = prepare_digits(data_dir)
  else:
    if data_dir is not None and not os.path.isdir(data_dir):
      raise FileNotFoundError(
        f'{data_dir=} does not exist: pass the directory that holds the '
        f'prepared {name!r} (the --data_dir of `tfds build`), or None for '
        "TFDS's default"
      )
    _check_name(name)
  source = _open(name, split, data_dir, download=download)
  image_key, label_key, shape, num_classes = _features(
    source.dataset_info, name
  )
  num_examples = len(source)
  if num_examples == 0:
    raise ValueError(f'split {split!r} of {name!r} is empty')
  if in_memory is None:
    in_memory = num_examples * int(np.prod(shape)) <= _IN_MEMORY_BYTES
  read = _reader(source, image_key, label_key)
  if in_memory:
    images, labels = read(np.arange(num_examples))

    def reader(indices):
      return images[indices], labels[indices]
  else:
    images, reader = None, read
  base = _base_name(name)
  if base in _KNOWN_STATS:
    mean, std = (np.array(v, np.float32) * 255 for v in _KNOWN_STATS[base])
  else:
    if split == 'train' and images is not None:
      sample = images
    else:
      train = source if split == 'train' else _open(name, 'train', data_dir)
      count = min(len(train), _STATS_EXAMPLES)
      picks = np.linspace(0, len(train) - 1, count).astype(np.int64)
      sample = _reader(train, image_key, label_key)(picks)[0]
    mean, std = channel_stats(sample)
  if augmentation == 'auto':
    augmentation = default_augmentation(shape)
  return Dataset(
    name=name,
    split=split,
    num_examples=num_examples,
    image_shape=shape,
    num_classes=num_classes,
    mean=mean,
    std=std,
    reader=reader,
    augmentation=augmentation,
    content=lambda: _fingerprint.tfds_content(source, split),
  )
