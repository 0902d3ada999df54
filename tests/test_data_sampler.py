"""Sampler, process slices and device layouts of lrjax.data."""

import hypothesis
import hypothesis.strategies as st
import jax
import numpy as np
import pytest

from lrjax import data


def _draw(sampler, sizes):
  return [sampler.next(b).tolist() for b in sizes]


def test_unshuffled_batches_match_hand_table():
  s = data.Sampler(7, seed=3, shuffle=False)
  assert _draw(s, [3, 2, 4, 5]) == [
    [0, 1, 2],
    [3, 4],
    [5, 6, 0, 1],
    [2, 3, 4, 5, 6],
  ]
  assert tuple(s.state) == (3, 2, 0)


def test_shuffled_epochs_are_the_documented_permutations():
  s = data.Sampler(10, seed=5)
  drawn = np.concatenate([s.next(4) for _ in range(5)])
  want = np.concatenate(
    [np.random.default_rng([5, e]).permutation(10) for e in range(2)]
  )
  np.testing.assert_array_equal(drawn, want)
  assert sorted(drawn[:10].tolist()) == list(range(10))
  assert drawn[:10].tolist() != drawn[10:].tolist()


def test_epochs_reported_per_example_across_a_boundary():
  s = data.Sampler(5, seed=0)
  s.next(3)
  _, epochs = s.next_with_epochs(4)
  assert epochs.tolist() == [0, 0, 1, 1]


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
  n=st.integers(1, 40),
  seed=st.integers(0, 2**31 - 1),
  fractions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30),
)
def test_every_example_once_per_epoch_for_any_batch_sizes(n, seed, fractions):
  sizes = [max(1, round(f * n)) for f in fractions]
  s = data.Sampler(n, seed=seed)
  drawn = np.concatenate([s.next(b) for b in sizes])
  full_epochs = drawn.size // n
  for e in range(full_epochs):
    assert sorted(drawn[e * n : (e + 1) * n].tolist()) == list(range(n))
  rest = drawn[full_epochs * n :]
  assert len(set(rest.tolist())) == rest.size
  assert tuple(s.state) == (seed, full_epochs, drawn.size % n)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
  sizes=st.lists(st.integers(1, 13), min_size=2, max_size=20),
  cut=st.integers(0, 19),
)
def test_restore_gives_the_uninterrupted_batches(sizes, cut):
  cut = cut % len(sizes)
  whole = _draw(data.Sampler(13, seed=11), sizes)
  first = data.Sampler(13, seed=11)
  _draw(first, sizes[:cut])
  state = data.SamplerState(*(int(v) for v in first.state))
  resumed = data.Sampler(13, seed=11).restore(state)
  assert _draw(resumed, sizes[cut:]) == whole[cut:]


def test_same_seed_same_batches_other_seed_other_batches():
  a = _draw(data.Sampler(100, seed=1), [10] * 10)
  b = _draw(data.Sampler(100, seed=1), [10] * 10)
  c = _draw(data.Sampler(100, seed=2), [10] * 10)
  assert a == b
  assert a != c


def test_sampler_errors_name_the_problem():
  with pytest.raises(ValueError, match=r'batch_size=11 is larger than'):
    data.Sampler(10, seed=0).next(11)
  with pytest.raises(ValueError, match=r'batch_size=0 must be >= 1'):
    data.Sampler(10, seed=0).next(0)
  with pytest.raises(ValueError, match=r'num_examples=0'):
    data.Sampler(0, seed=0)
  with pytest.raises(ValueError, match=r'seed=1 differs'):
    data.Sampler(10, seed=2).restore(data.SamplerState(1, 0, 0))
  with pytest.raises(ValueError, match=r'out of range'):
    data.Sampler(10, seed=1).restore(data.SamplerState(1, 0, 10))
  with pytest.raises(ValueError, match=r'1437 examples'):
    data.check_batch_size(2000, 1437)


@pytest.mark.parametrize('count', [1, 2, 3, 4, 6])
def test_process_slices_are_disjoint_contiguous_and_cover(count):
  batch = np.arange(100, 112)
  slices = [data.process_slice(batch, p, count) for p in range(count)]
  np.testing.assert_array_equal(np.concatenate(slices), batch)
  assert {len(s) for s in slices} == {12 // count}


def test_process_slice_errors_name_the_fix():
  with pytest.raises(ValueError, match=r'multiples of the process count 5'):
    data.process_slice(np.arange(12), 0, 5)
  with pytest.raises(ValueError, match=r'process_index=2 must be in'):
    data.process_slice(np.arange(12), 2, 2)
  with pytest.raises(ValueError, match=r'process_count=0'):
    data.process_slice(np.arange(12), 0, 0)


def test_pmap_layout_splits_the_leading_axis_in_order():
  batch = {'image': np.arange(24.0).reshape(8, 3), 'label': np.arange(8)}
  out = data.to_pmap_layout(batch, 4)
  assert out['image'].shape == (4, 2, 3)
  assert out['label'].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
  with pytest.raises(ValueError, match=r'multiples of the total device'):
    data.to_pmap_layout(batch, 3)


def test_global_array_is_sharded_over_the_mesh():
  mesh = jax.make_mesh((jax.device_count(),), ('batch',))
  labels = np.arange(2 * jax.device_count(), dtype=np.int32)
  out = data.to_global_array({'label': labels}, mesh)['label']
  np.testing.assert_array_equal(np.asarray(out), labels)
  assert len(out.addressable_shards) == jax.device_count()
  assert out.addressable_shards[1].data.tolist() == [2, 3]
  total = jax.jit(lambda x: x.sum())(out)
  assert int(total) == labels.sum()
