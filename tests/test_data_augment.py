"""Augmentation keys, crops and flips of lrjax.data."""

import numpy as np
import pytest

from lrjax import data
from lrjax.data import _augment

_MASK = 2**64 - 1


def _splitmix(x: int) -> int:
  """Reference SplitMix64 output step in Python integers."""
  z = (x + 0x9E3779B97F4A7C15) & _MASK
  z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
  z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
  return z ^ (z >> 31)


def test_splitmix64_matches_the_published_sequence():
  # The first three outputs of SplitMix64 seeded with 0 (Steele et al.):
  # the k-th output is the mix of k * gamma.
  gamma = 0x9E3779B97F4A7C15
  states = np.array([0, gamma, 2 * gamma & _MASK], np.uint64)
  got = [int(v) for v in _augment.splitmix64(states)]
  assert got == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_augment_key_is_the_documented_formula():
  indices = np.array([0, 5, 49_999])
  keys = data.augment_key(7, np.array([0, 3, 12]), indices)
  for key, e, i in zip(keys, [0, 3, 12], indices, strict=True):
    want = _splitmix((_splitmix(_splitmix(7) + e) + int(i)) & _MASK)
    assert int(key) == want


def _images(n=64, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(1, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_crop_flip_is_a_shifted_mirrored_window_of_the_padded_image():
  images = _images()
  keys = data.augment_key(1, 0, np.arange(len(images)))
  out = _augment.crop_flip(images, keys)
  for img, key, got in zip(images, keys, out, strict=True):
    h = int(key)
    dy, dx, flip = h % 9, (h >> 16) % 9, (h >> 32) & 1
    padded = np.zeros((40, 40, 3), np.uint8)
    padded[4:36, 4:36] = img
    want = padded[dy : dy + 32, dx : dx + 32]
    if flip:
      want = want[:, ::-1]
    np.testing.assert_array_equal(got, want)


def test_offsets_and_flips_cover_their_ranges():
  keys = data.augment_key(3, 0, np.arange(2000))
  assert sorted(set((keys % np.uint64(9)).tolist())) == list(range(9))
  flips = ((keys >> np.uint64(32)) & np.uint64(1)).astype(int)
  assert 0.45 < flips.mean() < 0.55  # 2000 fair coins: 4.5 sigma band.


def _cifar_like(n=64):
  images = _images(n)
  return data.Dataset.from_arrays(images, np.arange(n) % 10, num_classes=10)


def test_take_augments_deterministically_per_seed_epoch_and_index():
  ds = _cifar_like()
  assert ds.augmentation == 'crop_flip'
  idx = np.array([3, 9, 27])
  a = ds.take(idx, augment_seed=5, epochs=2)['image']
  b = ds.take(idx, augment_seed=5, epochs=2)['image']
  np.testing.assert_array_equal(a, b)
  # The key ignores the batch: one example alone gets the same crop.
  alone = ds.take(idx[1:2], augment_seed=5, epochs=2)['image']
  np.testing.assert_array_equal(alone[0], a[1])
  other_epoch = ds.take(idx, augment_seed=5, epochs=3)['image']
  other_seed = ds.take(idx, augment_seed=6, epochs=2)['image']
  assert not np.array_equal(a, other_epoch)
  assert not np.array_equal(a, other_seed)
  plain = ds.take(idx)['image']
  assert not np.array_equal(a, plain)


def test_no_augmentation_for_small_grey_images():
  images = np.zeros((4, 8, 8, 1), np.uint8)
  ds = data.Dataset.from_arrays(images, np.arange(4) % 2, num_classes=2)
  assert ds.augmentation is None
  idx = np.arange(4)
  np.testing.assert_array_equal(
    ds.take(idx, augment_seed=1)['image'], ds.take(idx)['image']
  )


def test_normalisation_is_per_channel_mean_and_std():
  images = np.zeros((2, 1, 1, 3), np.uint8)
  images[1] = (2, 4, 6)
  ds = data.Dataset.from_arrays(images, np.array([0, 1]), num_classes=2)
  # Two values a, b per channel: mean (a+b)/2, std |a-b|/2.
  np.testing.assert_allclose(ds.mean, [1, 2, 3])
  np.testing.assert_allclose(ds.std, [1, 2, 3])
  got = ds.take(np.array([0, 1]))['image'].reshape(2, 3)
  np.testing.assert_allclose(got, [[-1, -1, -1], [1, 1, 1]], rtol=1e-6)


def test_take_rejects_bad_indices():
  ds = _cifar_like(8)
  with pytest.raises(IndexError, match=r'indices must be in \[0, 8\)'):
    ds.take(np.array([8]))
  with pytest.raises(ValueError, match=r'must be 1-D'):
    ds.take(np.zeros((2, 2), int))


def test_synthetic_is_deterministic_learnable_and_shaped():
  a = data.synthetic(500, (32, 32, 3), num_classes=5, seed=1)
  b = data.synthetic(500, (32, 32, 3), num_classes=5, seed=1)
  c = data.synthetic(500, (32, 32, 3), num_classes=5, seed=2)
  idx = np.arange(500)
  ba, bb, bc = a.take(idx), b.take(idx), c.take(idx)
  np.testing.assert_array_equal(ba['image'], bb['image'])
  assert not np.array_equal(ba['image'], bc['image'])
  assert ba['image'].shape == (500, 32, 32, 3)
  assert set(ba['label'].tolist()) == set(range(5))
  # Normalised: mean 0 and std 1 per channel, up to sampling noise.
  np.testing.assert_allclose(ba['image'].mean((0, 1, 2)), 0, atol=0.02)
  np.testing.assert_allclose(ba['image'].std((0, 1, 2)), 1, atol=0.02)
  # Learnable: nearest class mean (from the first half) classifies the
  # second half far above chance (0.2).
  x = ba['image'].reshape(500, -1)
  y = ba['label']
  means = np.stack([x[:250][y[:250] == k].mean(0) for k in range(5)])
  pred = np.argmin(((x[250:, None] - means) ** 2).sum(-1), axis=1)
  assert (pred == y[250:]).mean() > 0.9
  test = data.synthetic(100, (32, 32, 3), 5, seed=1, split='test')
  assert not np.array_equal(test.take(idx[:100])['image'], ba['image'][:100])


def test_synthetic_errors():
  with pytest.raises(ValueError, match=r'num_examples=0'):
    data.synthetic(0, (8, 8, 1), 10, 0)
  with pytest.raises(ValueError, match=r'image_shape'):
    data.synthetic(10, (8, 8), 10, 0)
  with pytest.raises(ValueError, match=r'num_classes=1'):
    data.synthetic(10, (8, 8, 1), 1, 0)
