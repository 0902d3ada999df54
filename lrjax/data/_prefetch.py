"""Background prefetching with measured consumer wait."""

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any


class _End:
  pass


class _Failure:
  def __init__(self, error: BaseException):
    self.error = error


def _put(out: queue.Queue, stop: threading.Event, item) -> bool:
  while not stop.is_set():
    try:
      out.put(item, timeout=0.05)
      return True
    except queue.Full:
      continue
  return False


def _produce(iterator, place, out: queue.Queue, stop: threading.Event):
  # A function, not a method: the thread must not keep the Prefetcher
  # alive, so an abandoned one is collected and `__del__` stops the thread.
  try:
    for item in iterator:
      if place is not None:
        item = place(item)
      if not _put(out, stop, item):
        return
  except BaseException as e:  # noqa: BLE001 - handed to the consumer.
    _put(out, stop, _Failure(e))
    return
  _put(out, stop, _End())


class Prefetcher:
  """Produces items of ``iterable`` ahead of use on a background thread.

  The producer thread pulls items from ``iterable``, applies ``place`` (for
  example a `jax.device_put` onto the devices, so host-to-device copies
  also overlap the step), and keeps up to ``buffer_size`` ready items in a
  queue. Iterating the prefetcher hands them over in order. The consumer's
  blocking time is measured: ``wait_seconds`` is the total time `__next__`
  spent waiting for an item, ``items`` the number handed over. An exception
  raised by the producer is re-raised to the consumer at the item where it
  happened. `close` (or leaving a ``with`` block) stops the producer.

  Items are produced ahead of use, so anything that describes progress must
  travel with the item: `lrjax.data.batches` yields each batch with the
  sampler state *after* it, and a checkpoint stores the state of the last
  item consumed, never the sampler's own (which is ahead).

  With ``buffer_size=0`` there is no thread: each item is produced on
  demand in the consumer and its production time counts as waiting, the
  baseline a prefetching pipeline is measured against.

  Args:
    iterable: the items (e.g. `lrjax.data.batches(...)`).
    buffer_size: the number of items kept ready, >= 0.
    place: optional callable applied to each item on the producer thread.
    clock: seconds, monotonic, read by the consumer around each wait
      (default `time.perf_counter`; tests inject their own).

  Raises:
    ValueError: for a negative ``buffer_size``.

  Examples:
    >>> with Prefetcher(range(3), buffer_size=2) as p:
    ...   print(list(p), p.items)
    [0, 1, 2] 3
  """

  def __init__(
    self,
    iterable: Iterable[Any],
    buffer_size: int = 2,
    *,
    place: Callable[[Any], Any] | None = None,
    clock: Callable[[], float] | None = None,
  ):
    self._stop = threading.Event()
    if int(buffer_size) < 0:
      raise ValueError(f'{buffer_size=} must be >= 0 (0: no prefetching)')
    self.buffer_size = int(buffer_size)
    self.wait_seconds = 0.0
    self.items = 0
    self._clock = clock or time.perf_counter
    self._iterator = iter(iterable)
    self._place = place
    self._done = False
    self._thread = None
    if self.buffer_size:
      self._queue = queue.Queue(maxsize=self.buffer_size)
      self._thread = threading.Thread(
        target=_produce,
        args=(self._iterator, place, self._queue, self._stop),
        name='lrjax-prefetch',
        daemon=True,
      )
      self._thread.start()

  def __iter__(self) -> 'Prefetcher':
    return self

  def __next__(self):
    if self._done:
      raise StopIteration
    start = self._clock()
    if self._thread is None:
      try:
        item = next(self._iterator)
        if self._place is not None:
          item = self._place(item)
      except StopIteration:
        self._done = True
        raise
      finally:
        self.wait_seconds += self._clock() - start
    else:
      item = self._queue.get()
      self.wait_seconds += self._clock() - start
      if isinstance(item, _End):
        self._done = True
        raise StopIteration
      if isinstance(item, _Failure):
        self._done = True
        raise item.error
    self.items += 1
    return item

  def close(self) -> None:
    """Stops the producer thread and drops the items it made ahead."""
    self._done = True
    self._stop.set()
    if self._thread is not None:
      while True:
        try:
          self._queue.get_nowait()
        except queue.Empty:
          break
      self._thread.join(timeout=10)

  def __enter__(self) -> 'Prefetcher':
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    self._stop.set()
