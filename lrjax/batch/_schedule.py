"""BatchSchedule: piecewise-constant batch sizes and examples-seen bookkeeping."""

from __future__ import annotations

import bisect
import dataclasses
import fractions
import functools
import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Largest update count that the jit-safe methods index with int32.
_MAX_UPDATES = 2**31 - 1


def _as_fraction(value: numbers.Real, name: str) -> fractions.Fraction:
  """Exact rational for an int or a float as written (0.1 -> 1/10)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f'{name}={value!r} must be a real number')
  if isinstance(value, numbers.Integral):
    return fractions.Fraction(int(value))
  if isinstance(value, fractions.Fraction):
    return value
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f'{name}={value!r} must be finite')
  # The shortest decimal that round-trips, so 0.1 epochs is exactly N/10.
  return fractions.Fraction(repr(value))


def _check_int(value, name: str, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f'{name}={value!r} must be an int')
  if value < minimum:
    raise ValueError(f'{name}={value!r} must be >= {minimum}')
  return int(value)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a batch schedule: a batch size held for a duration.

  Exactly one of ``epochs``, ``examples`` or ``updates`` gives the duration.

  Attributes:
    batch_size: global batch size (examples per optimizer update), >= 1.
    epochs: duration in passes over the dataset (int or float > 0).
    examples: duration in examples (int >= 1).
    updates: duration in optimizer updates (int >= 1).
  """

  batch_size: int
  epochs: float | None = None
  examples: int | None = None
  updates: int | None = None

  def __post_init__(self):
    _check_int(self.batch_size, 'batch_size', 1)
    given = [
      name
      for name in ('epochs', 'examples', 'updates')
      if getattr(self, name) is not None
    ]
    if len(given) != 1:
      raise ValueError(
        'exactly one of epochs, examples, updates must be given, got '
        f'{given or "none"} (batch_size={self.batch_size})'
      )
    if self.epochs is not None:
      if _as_fraction(self.epochs, 'epochs') <= 0:
        raise ValueError(f'epochs={self.epochs!r} must be > 0')
    if self.examples is not None:
      _check_int(self.examples, 'examples', 1)
    if self.updates is not None:
      _check_int(self.updates, 'updates', 1)

  def duration_examples(self, num_examples: int) -> fractions.Fraction:
    """The stage's nominal length in examples (exact rational)."""
    if self.epochs is not None:
      return _as_fraction(self.epochs, 'epochs') * num_examples
    if self.examples is not None:
      return fractions.Fraction(self.examples)
    return fractions.Fraction(self.updates * self.batch_size)


@dataclasses.dataclass(frozen=True)
class BatchSchedule:
  """Piecewise-constant global batch size over training, with exact bookkeeping.

  A schedule is a sequence of :class:`Stage` s over a dataset of
  ``num_examples`` examples. It maps optimizer updates to examples seen and
  epochs (and back), so that every policy written in epochs stays correct
  whatever the batch ramp (see :func:`lrjax.batch.per_update`).

  **Boundary rule.** Stage durations add up to cumulative *targets* in
  examples, :math:`T_i = \\sum_{j \\le i} d_j` (an epoch is exactly
  ``num_examples`` examples, and a float number of epochs is taken as the
  decimal it is written as, so ``0.1`` epochs of 50000 is exactly 5000). A
  stage given in epochs or examples ends at the first update boundary at which
  the examples seen reach its cumulative target:

  .. math::
    U_i = \\left\\lceil \\frac{T_i - E_{i-1}}{B_i} \\right\\rceil, \\qquad
    E_i = E_{i-1} + U_i B_i \\ge T_i,

  where :math:`E_i` is the number of examples seen at the end of stage ``i``.
  A boundary that falls inside a batch therefore moves to the end of that batch,
  and because every stage aims at its cumulative target, the overshoot never
  accumulates: the examples seen after every stage are within one batch
  (:math:`0 \\le E_i - T_i < B_i`) of the nominal total. A stage given in
  updates performs exactly that many updates (its nominal length is
  ``updates * batch_size``). Every stage must perform at least one update.

  **Canonical form.** Per stage an integer ``batch_size`` and ``num_updates``
  (:attr:`num_updates_per_stage`); :meth:`canonical` rewrites a schedule in
  updates with identical bookkeeping.

  **After the last stage** the schedule continues at the last stage's batch
  size: ``batch_size_at``, ``stage_at``, ``examples_at`` and ``epoch_at``
  extrapolate with that batch size, so an optax schedule called one update too
  far stays finite and sensible.

  Host methods (``examples_at``, ``update_at_epoch``, ``update_at_examples``)
  use exact Python integers. The methods marked jit-safe take an int (or
  float) scalar or array, traced or not, and look the stage up in small
  constant tables.

  Attributes:
    stages: the stages, in order.
    num_examples: dataset size N (examples per epoch).

  Examples:
    Smith et al.'s increasing batch schedule on CIFAR-10, shortened:

    >>> from lrjax.batch import BatchSchedule, Stage
    >>> s = BatchSchedule(
    ...     (Stage(128, epochs=1), Stage(640, epochs=1)), num_examples=50000)
    >>> s.num_updates_per_stage
    (391, 79)
    >>> s.boundaries
    (0, 391)
    >>> s.examples_at(391), s.examples_at(470)
    (50048, 100608)
    >>> print(f'{float(s.epoch_at(391)):.5f}', int(s.batch_size_at(391)))
    1.00096 640
    >>> s.update_at_epoch(1.5)
    430
    >>> print(s)
    stages(128@1,640@1,n=50000)
  """

  stages: tuple[Stage, ...]
  num_examples: int

  def __post_init__(self):
    _check_int(self.num_examples, 'num_examples', 1)
    if isinstance(self.stages, Stage) or not isinstance(self.stages, Sequence):
      raise TypeError(
        f'stages={self.stages!r} must be a sequence of Stage objects'
      )
    object.__setattr__(self, 'stages', tuple(self.stages))
    if not self.stages:
      raise ValueError('stages=() is empty: give at least one Stage')
    for i, stage in enumerate(self.stages):
      if not isinstance(stage, Stage):
        raise TypeError(f'stages[{i}]={stage!r} must be a Stage')
      if stage.batch_size > self.num_examples:
        raise ValueError(
          f'stages[{i}].batch_size={stage.batch_size} is above the dataset '
          f'size num_examples={self.num_examples}'
        )
    counts, ends = [], []
    target = fractions.Fraction(0)
    seen = 0
    for i, stage in enumerate(self.stages):
      target += stage.duration_examples(self.num_examples)
      if stage.updates is not None:
        n = stage.updates
      else:
        n = math.ceil((target - seen) / stage.batch_size)
      if n < 1:
        raise ValueError(
          f'stages[{i}] ({stage}) performs no update: the previous stages '
          f'already saw {seen} examples, past its cumulative target '
          f'{float(target):g}; lengthen it or merge it into its neighbour'
        )
      seen += n * stage.batch_size
      counts.append(n)
      ends.append(seen)
    if sum(counts) > _MAX_UPDATES:
      raise ValueError(
        f'stages give {sum(counts)} updates, more than 2**31 - 1 '
        '(the int32 update counter of optax)'
      )
    object.__setattr__(self, '_counts', tuple(counts))
    object.__setattr__(self, '_ends', tuple(ends))

  # Canonical integer form ---------------------------------------------------

  @property
  def num_updates_per_stage(self) -> tuple[int, ...]:
    """Optimizer updates performed by each stage."""
    return self._counts

  @property
  def batch_size_per_stage(self) -> tuple[int, ...]:
    """The batch size of each stage (repeats allowed)."""
    return tuple(s.batch_size for s in self.stages)

  @property
  def num_stages(self) -> int:
    return len(self.stages)

  @functools.cached_property
  def boundaries(self) -> tuple[int, ...]:
    """The update index at which each stage starts (first is 0)."""
    starts = [0]
    for n in self._counts[:-1]:
      starts.append(starts[-1] + n)
    return tuple(starts)

  @functools.cached_property
  def examples_at_boundaries(self) -> tuple[int, ...]:
    """Examples seen when each stage starts (first is 0)."""
    return (0,) + self._ends[:-1]

  @property
  def num_updates(self) -> int:
    """Total optimizer updates over all stages."""
    return self.boundaries[-1] + self._counts[-1]

  @property
  def num_examples_total(self) -> int:
    """Examples seen at the end of the last stage."""
    return self._ends[-1]

  @property
  def num_epochs(self) -> float:
    """Epochs seen at the end of the last stage (``num_examples_total / N``)."""
    return self.num_examples_total / self.num_examples

  @property
  def batch_sizes(self) -> tuple[int, ...]:
    """The distinct batch sizes, sorted."""
    return tuple(sorted(set(self.batch_size_per_stage)))

  def canonical(self) -> BatchSchedule:
    """The same schedule with every stage given in updates."""
    return BatchSchedule(
      tuple(
        Stage(s.batch_size, updates=n)
        for s, n in zip(self.stages, self._counts, strict=True)
      ),
      self.num_examples,
    )

  # Host methods (exact integers) --------------------------------------------

  def _host_stage(self, update: int) -> tuple[int, int]:
    update = _check_int(update, 'update', 0)
    return update, bisect.bisect_right(self.boundaries, update) - 1

  def examples_at(self, update: int) -> int:
    """Examples seen after ``update`` optimizer updates (host, exact).

    .. math::
      E(u) = E_{s} + (u - u_s) B_s \\quad \\text{for } u_s \\le u < u_{s+1}.

    Args:
      update: number of updates performed, an int >= 0 (past the end the last
        batch size continues).

    Returns:
      The number of examples seen, a Python int.
    """
    update, s = self._host_stage(update)
    return (
      self.examples_at_boundaries[s]
      + (update - self.boundaries[s]) * self.stages[s].batch_size
    )

  def update_at_examples(self, examples: int) -> int:
    """The fewest updates after which at least ``examples`` have been seen.

    The inverse of :meth:`examples_at`: ``update_at_examples(examples_at(u))
    == u``, and ``examples_at(update_at_examples(n)) >= n``.

    Args:
      examples: an int (or exact rational) >= 0.

    Returns:
      A Python int (extrapolated at the last batch size past the end).
    """
    if isinstance(examples, bool) or not isinstance(examples, numbers.Real):
      raise TypeError(f'examples={examples!r} must be a number')
    if examples < 0:
      raise ValueError(f'examples={examples!r} must be >= 0')
    if isinstance(examples, numbers.Integral):
      examples = int(examples)
    elif not isinstance(examples, fractions.Fraction):
      examples = _as_fraction(examples, 'examples')
    # Stage whose span (E_{s-1}, E_s] holds the target.
    s = min(bisect.bisect_left(self._ends, examples), self.num_stages - 1)
    start = self.examples_at_boundaries[s]
    # Exact ceiling division (ints or Fractions, never a float).
    return self.boundaries[s] + max(
      0, -((start - examples) // self.stages[s].batch_size)
    )

  def update_at_epoch(self, epoch: float) -> int:
    """The fewest updates after which ``epoch`` epochs have been seen (host).

    The epoch is taken as the decimal it is written as (see the boundary rule),
    so ``update_at_epoch(e) == update_at_examples(e * num_examples)`` exactly.

    Args:
      epoch: an int or float >= 0.

    Returns:
      A Python int.
    """
    e = _as_fraction(epoch, 'epoch')
    if e < 0:
      raise ValueError(f'epoch={epoch!r} must be >= 0')
    return self.update_at_examples(e * self.num_examples)

  def epoch_at_host(self, update: int) -> float:
    """Epochs seen after ``update`` updates as a Python float (host)."""
    return self.examples_at(update) / self.num_examples

  # Jit-safe methods -----------------------------------------------------------

  @functools.cached_property
  def _tables(self) -> tuple[np.ndarray, ...]:
    """Stage starts, batch sizes, start epochs and epochs per update."""
    n = self.num_examples
    return (
      np.asarray(self.boundaries, np.int32),
      np.asarray(self.batch_size_per_stage, np.int32),
      np.asarray([e / n for e in self.examples_at_boundaries], np.float32),
      np.asarray([b / n for b in self.batch_size_per_stage], np.float32),
    )

  def stage_at(self, update: jax.typing.ArrayLike) -> jax.Array:
    """Index of the stage in force at ``update`` (jit-safe, int32).

    Negative updates give stage 0; past the end, the last stage.
    """
    return _lookup(update, *self._tables)[0]

  def batch_size_at(self, update: jax.typing.ArrayLike) -> jax.Array:
    """Batch size of update number ``update`` (0-based; jit-safe, int32)."""
    return _lookup(update, *self._tables)[1]

  def epoch_at(self, update: jax.typing.ArrayLike) -> jax.Array:
    """Epochs seen after ``update`` updates (jit-safe, float32).

    .. math::
      \\mathrm{epoch}(u) = \\frac{E_s}{N} + (u - u_s) \\frac{B_s}{N},

    with the stage start :math:`E_s/N` rounded once to float32 on the host and
    the local offset exact in int32, so the result keeps float32's relative
    precision for any count up to 2**31 (never ``u * B`` in int32, which
    overflows, nor a float32 sum of many small increments).

    Args:
      update: an int or float scalar or array (negative is taken as 0).

    Returns:
      float32 array of ``update``'s shape.
    """
    return _lookup(update, *self._tables)[2]

  def __str__(self) -> str:
    from lrjax.batch._text import format_schedule

    return format_schedule(self)


@jax.jit
def _lookup(update, starts, sizes, start_epoch, epochs_per_update):
  """(stage, batch size, epoch) at ``update`` from a schedule's tables.

  One compiled lookup per table length and input shape, shared by every
  schedule (the tables are arguments, not constants), so eager calls are
  cheap; inside a caller's jit it is inlined.
  """
  u = jnp.asarray(update)
  if not jnp.issubdtype(u.dtype, jnp.integer):
    u = u.astype(jnp.float32)
  starts = starts.astype(u.dtype)
  u = jnp.maximum(u, jnp.zeros((), u.dtype))
  idx = jnp.searchsorted(starts, u, side='right', method='compare_all') - 1
  idx = jnp.clip(idx, 0, starts.shape[0] - 1)
  offset = (u - starts[idx]).astype(jnp.float32)
  epoch = start_epoch[idx] + offset * epochs_per_update[idx]
  return idx.astype(jnp.int32), sizes[idx], epoch
