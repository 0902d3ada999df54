"""TFDS builder over scikit-learn's bundled copy of the UCI digits."""

import numpy as np
import tensorflow_datasets as tfds

NUM_TRAIN = 1437
NUM_TEST = 360
_SPLIT_SEED = 0


def split_indices() -> dict[str, np.ndarray]:
  """The fixed train/test split of the 1797 digits, as sklearn indices.

  A stratified split (`sklearn.model_selection.train_test_split` with
  ``test_size=360, stratify=target, random_state=0``): 1437 train and 360
  test images, every class in the test split 35 to 37 times.

  Returns:
    ``{'train': int64 [1437], 'test': int64 [360]}``, each sorted, indices
    into `sklearn.datasets.load_digits`.
  """
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  target = load_digits().target
  train, test = train_test_split(
    np.arange(target.size),
    test_size=NUM_TEST,
    stratify=target,
    random_state=_SPLIT_SEED,
  )
  return {'train': np.sort(train), 'test': np.sort(test)}


class Digits(tfds.core.GeneratorBasedBuilder):
  """UCI handwritten digits: 1797 grey 8x8 images of 10 classes.

  The copy bundled with scikit-learn (`sklearn.datasets.load_digits`), so
  preparing it needs no network. Pixels are the original 17 grey levels,
  0 to 16, stored as uint8 ``[8, 8, 1]``; ``id`` is the index in
  ``load_digits()``. Splits: 'train' (1437) and 'test' (360), see
  `split_indices`. Prepare with ``file_format='array_record'`` so that
  `tfds.data_source` reads it without TensorFlow (`lrjax.data.load` does).

  References:
    Alpaydin, Kaynak 1998, "Optical Recognition of Handwritten Digits",
    UCI Machine Learning Repository.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Stratified 1437/360 split, random_state=0.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description='UCI handwritten digits (scikit-learn copy), 8x8 grey.',
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
          'label': tfds.features.ClassLabel(num_classes=10),
          'id': tfds.features.Scalar(dtype=np.int64),
        }
      ),
      supervised_keys=('image', 'label'),
      homepage='https://archive.ics.uci.edu/dataset/80',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Bundled with scikit-learn: nothing to download.
    return {
      name: self._generate_examples(indices)
      for name, indices in split_indices().items()
    }

  def _generate_examples(self, indices):
    from sklearn.datasets import load_digits

    data = load_digits()
    images = data.images.astype(np.uint8)[..., None]
    for i in indices:
      yield (
        int(i),
        {'image': images[i], 'label': int(data.target[i]), 'id': int(i)},
      )
