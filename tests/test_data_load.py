"""lrjax.data.load: the bundled digits and TFDS datasets (mocked, offline)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from lrjax import data
from lrjax.data import digits


@pytest.fixture(scope='module')
def digits_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def test_digits_split_sizes_classes_and_shapes(digits_dir):
  train = data.load('digits', split='train', data_dir=digits_dir)
  test = data.load('digits', split='test', data_dir=digits_dir)
  assert (train.num_examples, test.num_examples) == (1437, 360)
  assert train.image_shape == test.image_shape == (8, 8, 1)
  assert train.num_classes == test.num_classes == 10
  assert train.augmentation is None
  batch = test.take(np.arange(360))
  assert batch['image'].dtype == np.float32
  assert batch['label'].dtype == np.int32
  assert np.bincount(batch['label']).tolist() == [
    36,
    36,
    35,
    37,
    36,
    37,
    36,
    36,
    35,
    36,
  ]


def test_digits_records_are_the_documented_sklearn_split(digits_dir):
  data.prepare_digits(digits_dir)
  sk = load_digits()
  split = digits.split_indices()
  assert len(set(split['train']) | set(split['test'])) == 1797
  assert not set(split['train']) & set(split['test'])
  train = data.load('digits', split='train', data_dir=digits_dir)
  source = tfds.data_source('digits', split='train', data_dir=digits_dir)
  ids = np.array([int(source[i]['id']) for i in range(len(source))])
  np.testing.assert_array_equal(np.sort(ids), split['train'])
  # Normalisation: the train split's pixel mean and std (NumPy on sklearn).
  pixels = sk.images[split['train']]
  np.testing.assert_allclose(train.mean, [pixels.mean()], rtol=1e-5)
  np.testing.assert_allclose(train.std, [pixels.std()], rtol=1e-5)
  got = train.take(np.arange(len(ids)))
  raw = got['image'][..., 0] * pixels.std() + pixels.mean()
  np.testing.assert_allclose(raw, sk.images[ids], atol=1e-4)
  np.testing.assert_array_equal(got['label'], sk.target[ids])


def test_digits_second_load_does_not_prepare_again(digits_dir, monkeypatch):
  data.prepare_digits(digits_dir)

  def fail(*args, **kwargs):
    raise AssertionError('prepared a second time')

  monkeypatch.setattr(digits.Digits, 'download_and_prepare', fail)
  assert data.load('digits', split='test', data_dir=digits_dir).num_examples
  assert sorted(os.listdir(os.path.join(digits_dir, 'digits'))) == ['1.0.0']


def test_digits_loads_without_tensorflow(tmp_path):
  code = (
    'import sys; from lrjax import data; '
    f"ds = data.load('digits', split='train', data_dir={str(tmp_path)!r}); "
    "ds.take([0, 1]); assert 'tensorflow' not in sys.modules, 'tf'; "
    'print(ds.num_examples)'
  )
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == '1437'


@pytest.mark.parametrize(
  'name, shape, augmentation, mean',
  [
    ('cifar10', (32, 32, 3), 'crop_flip', [125.307, 122.961, 113.858]),
    ('mnist', (28, 28, 1), None, [33.329]),
  ],
)
def test_tfds_datasets_through_data_source(name, shape, augmentation, mean):
  with tfds.testing.mock_data(
    num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE
  ):
    for in_memory in (True, False):
      ds = data.load(name, split='train', in_memory=in_memory)
      assert ds.num_examples == 24
      assert ds.image_shape == shape
      assert ds.num_classes == 10
      assert ds.augmentation == augmentation
      # Published training statistics, 0..1 units times 255.
      np.testing.assert_allclose(ds.mean, mean, rtol=1e-4)
      source = tfds.data_source(name, split='train')
      idx = np.array([5, 0, 23])
      batch = ds.take(idx, augment_seed=None)
      raw = np.stack([source[int(i)]['image'] for i in idx])
      np.testing.assert_allclose(
        batch['image'] * ds.std + ds.mean, raw, atol=1e-3
      )
      labels = [int(source[int(i)]['label']) for i in idx]
      assert batch['label'].tolist() == labels
      sampler = data.Sampler(ds.num_examples, seed=0)
      items = list(data.batches(ds, sampler, [8, 16], augment_seed=1))
      assert items[1].batch['image'].shape == (16, *shape)


def test_unknown_name_lists_close_names():
  with pytest.raises(ValueError, match=r"unknown dataset.*'cifar10'"):
    data.load('cifar_10', split='train')


def test_missing_data_dir_is_an_error(tmp_path):
  missing = str(tmp_path / 'nope')
  with pytest.raises(FileNotFoundError, match=r'does not exist'):
    data.load('mnist', split='train', data_dir=missing)


def test_unprepared_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'tfds build mnist'):
    data.load('mnist', split='train', data_dir=str(tmp_path))


def test_missing_split_names_the_fix(digits_dir):
  with pytest.raises(ValueError, match=r"no split 'validation'"):
    data.load('digits', split='validation', data_dir=digits_dir)


def test_bad_arguments():
  with pytest.raises(ValueError, match=r'split'):
    data.load('digits', split='')
  with pytest.raises(ValueError, match=r'name'):
    data.load('', split='train')


def test_concurrent_first_loads_prepare_once(tmp_path):
  code = (
    'from lrjax import data; '
    f"print(data.load('digits', split='test', data_dir={str(tmp_path)!r})"
    '.num_examples)'
  )
  procs = [
    subprocess.Popen(
      [sys.executable, '-c', code], stdout=subprocess.PIPE, text=True
    )
    for _ in range(2)
  ]
  outs = [p.communicate(timeout=600)[0].strip() for p in procs]
  assert outs == ['360', '360']
  assert [p.returncode for p in procs] == [0, 0]
  assert sorted(os.listdir(tmp_path / 'digits')) == ['1.0.0']
