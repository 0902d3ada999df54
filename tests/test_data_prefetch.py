"""Prefetcher and the batches pipeline of lrjax.data."""

import gc
import threading

import jax
import numpy as np
import pytest

from lrjax import data


def test_items_arrive_in_order_and_are_counted():
  with data.Prefetcher(iter(range(50)), buffer_size=3) as p:
    assert list(p) == list(range(50))
    assert p.items == 50
  with data.Prefetcher(range(5), buffer_size=0) as p:
    assert list(p) == list(range(5))


# Long enough never to expire on a loaded machine; only a broken
# hand-off between the threads ever waits this long.
_HANG = 60.0


class _Clock:
  """A clock that moves only when the producer says so.

  Every read is counted, so the producer can wait until the consumer has
  started waiting (read the clock before blocking) for an item and then let
  "time pass" while it makes the item: the measured waits are exact and
  no test depends on the real clock or on sleeps.
  """

  def __init__(self):
    self.now = 0.0
    self.reads = 0
    self._changed = threading.Condition()

  def __call__(self):
    with self._changed:
      self.reads += 1
      self._changed.notify_all()
      return self.now

  def advance_once_read(self, reads, seconds):
    with self._changed:
      assert self._changed.wait_for(lambda: self.reads >= reads, _HANG)
      self.now += seconds


def test_wait_is_measured_when_the_producer_is_slow():
  clock = _Clock()

  def slow():
    for i in range(5):
      # The consumer reads the clock twice per item: item i is made only
      # after its read 2i + 1, when it is already waiting.
      clock.advance_once_read(2 * i + 1, 0.25)
      yield i

  with data.Prefetcher(slow(), buffer_size=2, clock=clock) as p:
    assert list(p) == list(range(5))
  # The consumer does no work, so it waits for every item: 5 x 0.25 s.
  assert p.wait_seconds == 1.25


def test_no_wait_when_the_producer_is_ahead():
  clock = _Clock()
  made = threading.Event()

  def fast():
    for i in range(4):
      clock.advance_once_read(0, 0.25)  # each item takes 0.25 s to make
      yield i
    made.set()  # reached once every item is in the buffer

  with data.Prefetcher(fast(), buffer_size=4, clock=clock) as p:
    assert made.wait(_HANG)  # the consumer is busy meanwhile
    assert list(p) == list(range(4))
  # Made ahead, all 4 items were ready: no wait, although making them took
  # 1 s of the clock (without prefetching the consumer would wait 1 s).
  assert p.wait_seconds == 0.0
  with data.Prefetcher(fast(), buffer_size=0, clock=clock) as p:
    list(p)
  assert p.wait_seconds == 1.0


def test_producer_errors_reach_the_consumer():
  def broken():
    yield 1
    raise RuntimeError('bad record 7')

  with data.Prefetcher(broken(), buffer_size=2) as p:
    assert next(p) == 1
    with pytest.raises(RuntimeError, match='bad record 7'):
      next(p)
    with pytest.raises(StopIteration):
      next(p)


def test_close_stops_the_producer():
  p = data.Prefetcher(iter(range(10**9)), buffer_size=2)
  next(p)
  p.close()
  assert not p._thread.is_alive()
  assert p._thread not in threading.enumerate()
  with pytest.raises(StopIteration):
    next(p)


def test_place_runs_ahead_on_the_producer():
  with data.Prefetcher(
    [np.arange(3)], buffer_size=1, place=jax.device_put
  ) as p:
    (item,) = list(p)
  assert isinstance(item, jax.Array)
  assert item.tolist() == [0, 1, 2]
  with pytest.raises(ValueError, match=r'buffer_size=-1'):
    data.Prefetcher([], buffer_size=-1)


def test_checkpointing_the_consumed_state_resumes_exactly():
  ds = data.synthetic(30, (32, 32, 3), num_classes=3, seed=0)
  sizes = [4, 7, 7, 12, 12, 30, 5, 9, 9]
  whole = list(
    data.batches(ds, data.Sampler(30, seed=1), sizes, augment_seed=2)
  )
  ahead = threading.Event()

  def watched(items):
    for k, item in enumerate(items):
      if k == 6:
        ahead.set()  # 3 items past the 4 consumed: the sampler is ahead
      yield item

  # Consume 4 items while the producer runs ahead, "checkpoint", stop.
  with data.Prefetcher(
    watched(data.batches(ds, data.Sampler(30, seed=1), sizes, augment_seed=2)),
    3,
  ) as p:
    consumed = [next(p) for _ in range(4)]
    assert ahead.wait(_HANG)
  state = consumed[-1].state
  resumed = data.batches(
    ds, data.Sampler(30, seed=1).restore(state), sizes[4:], augment_seed=2
  )
  for got, want in zip(consumed + list(resumed), whole, strict=True):
    np.testing.assert_array_equal(got.batch['image'], want.batch['image'])
    np.testing.assert_array_equal(got.batch['label'], want.batch['label'])
    assert got.state == want.state


def test_process_batches_assemble_the_global_batch():
  ds = data.synthetic(20, (4, 4, 1), num_classes=2, seed=0)
  sizes = [4, 8, 12]
  whole = list(data.batches(ds, data.Sampler(20, seed=0), sizes))
  parts = [
    list(
      data.batches(
        ds,
        data.Sampler(20, seed=0),
        sizes,
        process_index=p,
        process_count=2,
      )
    )
    for p in range(2)
  ]
  for k, item in enumerate(whole):
    joined = np.concatenate([parts[p][k].batch['label'] for p in range(2)])
    np.testing.assert_array_equal(joined, item.batch['label'])
  with pytest.raises(ValueError, match=r'process count 2'):
    list(data.batches(ds, data.Sampler(20, 0), [5], process_count=2))
  with pytest.raises(ValueError, match=r'Sampler\(dataset.num_examples'):
    list(data.batches(ds, data.Sampler(21, 0), [5]))


def test_an_abandoned_prefetcher_stops_its_thread():
  p = data.Prefetcher(iter(range(10**9)), buffer_size=2)
  next(p)
  thread = p._thread
  del p
  gc.collect()
  thread.join(timeout=_HANG)
  assert not thread.is_alive()
