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


class _Clock:
  """A fake clock that the producer advances, one second per item.

  The consumer reads the clock before and after each wait; the producer
  makes item k only after the consumer started waiting for it (its
  (2k+1)-th reading), so every wait is exactly the producer's second, with
  no race and no sleep.
  """

  def __init__(self, gated):
    self.now = 0.0
    self.readings = 0
    self.gated = gated
    self.started = [threading.Event() for _ in range(64)]

  def __call__(self):
    if self.readings % 2 == 0:
      self.started[self.readings // 2].set()
    self.readings += 1
    return self.now

  def produce(self, n):
    for k in range(n):
      if self.gated:
        assert self.started[k].wait(timeout=60), 'consumer never waited'
      self.now += 1.0  # the item takes a second to make
      yield k


def test_wait_is_measured_when_the_producer_is_slow():
  clock = _Clock(gated=True)
  with data.Prefetcher(clock.produce(5), buffer_size=2, clock=clock) as p:
    assert list(p) == [0, 1, 2, 3, 4]
  # The consumer does no work, so it waits the whole second of every item.
  assert p.wait_seconds == 5.0
  # Without a thread each item is made inside __next__: the same waits.
  clock = _Clock(gated=False)
  with data.Prefetcher(clock.produce(5), buffer_size=0, clock=clock) as p:
    assert list(p) == [0, 1, 2, 3, 4]
  assert p.wait_seconds == 5.0


def test_no_wait_when_the_producer_is_ahead():
  clock = _Clock(gated=False)
  ready = threading.Event()

  def ahead():
    yield from clock.produce(4)
    ready.set()  # asked for a fifth: the four are in the buffer

  with data.Prefetcher(ahead(), buffer_size=4, clock=clock) as p:
    assert ready.wait(timeout=60)
    assert list(p) == [0, 1, 2, 3]
  assert clock.now == 4.0 and p.wait_seconds == 0.0


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
  before = threading.active_count()
  p = data.Prefetcher(iter(range(10**9)), buffer_size=2)
  next(p)
  p.close()
  assert not p._thread.is_alive()
  assert threading.active_count() == before
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

  def counted(items):
    for i, item in enumerate(items):
      yield item
      if i == 6:  # item 6 is in the buffer: 3 items beyond the 4 consumed
        ahead.set()

  # Consume 4 items while the producer runs ahead, "checkpoint", stop.
  with data.Prefetcher(
    counted(data.batches(ds, data.Sampler(30, seed=1), sizes, augment_seed=2)),
    3,
  ) as p:
    consumed = [next(p) for _ in range(4)]
    assert ahead.wait(timeout=60)
    assert p.items == 4
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
  thread.join(timeout=60)  # returns as soon as the thread stops
  assert not thread.is_alive()
