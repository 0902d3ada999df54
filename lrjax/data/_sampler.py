"""Seeded, resumable per-epoch sampler whose batch size may change any time."""

from typing import NamedTuple

import numpy as np


class SamplerState(NamedTuple):
  """Everything needed to resume a `Sampler` exactly.

  Attributes:
    seed: the seed of the per-epoch permutations.
    epoch: the epoch the next example is drawn from (0-based).
    position: the position of the next example in that epoch's permutation,
      in ``[0, num_examples)``.
  """

  seed: int
  epoch: int
  position: int


def check_batch_size(
  batch_size: int, num_examples: int, *, what: str = 'the split'
) -> None:
  """Raises if ``batch_size`` is not in ``[1, num_examples]``.

  A batch larger than the data would hold some examples twice, so neither
  the sampler nor the trainer accepts one.

  Args:
    batch_size: the global batch size asked for.
    num_examples: the number of examples in the data.
    what: how to name the data in the message.

  Raises:
    ValueError: naming the batch size, the data size and the fix.

  Examples:
    >>> check_batch_size(128, 1437)
    >>> check_batch_size(2048, 1437)
    Traceback (most recent call last):
    ...
    ValueError: batch_size=2048 is larger than the split (1437 examples): ...
  """
  if int(batch_size) < 1:
    raise ValueError(f'{batch_size=} must be >= 1')
  if int(batch_size) > int(num_examples):
    raise ValueError(
      f'{batch_size=} is larger than {what} ({num_examples} examples): '
      f'use batch sizes <= {num_examples}, or a larger dataset'
    )


def permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order of the examples in one epoch: a pure function of its inputs.

  Args:
    seed: the sampler seed.
    epoch: the epoch (0-based).
    num_examples: the dataset size.

  Returns:
    int64 array, a permutation of ``range(num_examples)`` drawn by NumPy's
    PCG64 seeded with the entropy ``[seed, epoch]``.
  """
  rng = np.random.default_rng([int(seed), int(epoch)])
  return rng.permutation(int(num_examples))


class Sampler:
  """Draws global example indices in seeded per-epoch shuffled order.

  Every epoch is a permutation of ``range(num_examples)`` that depends only
  on ``(seed, epoch)``, so every example is seen exactly once per epoch. The
  batch size is an argument of each `next` call and may change at any call,
  including in the middle of an epoch; a batch that reaches the end of an
  epoch is completed from the start of the next epoch's permutation. The
  state ``(seed, epoch, position)`` is three integers; `restore` puts a
  sampler back into a saved state, after which it yields exactly the batches
  an uninterrupted sampler would.

  Args:
    num_examples: the number of examples, >= 1.
    seed: the seed of the permutations.
    shuffle: False keeps the dataset order in every epoch (evaluation).

  Raises:
    ValueError: for a non-positive ``num_examples``.

  Examples:
    >>> s = Sampler(5, seed=0, shuffle=False)
    >>> print(s.next(3).tolist(), s.next(4).tolist())
    [0, 1, 2] [3, 4, 0, 1]
    >>> print(s.state)
    SamplerState(seed=0, epoch=1, position=2)
    >>> s2 = Sampler(5, seed=0, shuffle=False).restore(s.state)
    >>> print(s.next(2).tolist() == s2.next(2).tolist())
    True
  """

  def __init__(self, num_examples: int, seed: int = 0, shuffle: bool = True):
    if int(num_examples) < 1:
      raise ValueError(f'{num_examples=} must be >= 1')
    self.num_examples = int(num_examples)
    self.seed = int(seed)
    self.shuffle = bool(shuffle)
    self._epoch = 0
    self._position = 0
    self._order_epoch = -1
    self._order = np.empty(0, np.int64)

  def _epoch_order(self, epoch: int) -> np.ndarray:
    if epoch != self._order_epoch:
      if self.shuffle:
        self._order = permutation(self.seed, epoch, self.num_examples)
      else:
        self._order = np.arange(self.num_examples, dtype=np.int64)
      self._order_epoch = epoch
    return self._order

  @property
  def state(self) -> SamplerState:
    """The state before the next batch."""
    return SamplerState(self.seed, self._epoch, self._position)

  def restore(self, state: SamplerState) -> 'Sampler':
    """Sets the state; returns the sampler itself.

    Args:
      state: a state read from `Sampler.state` (or a checkpoint of it).

    Returns:
      This sampler.

    Raises:
      ValueError: if the state belongs to another seed or is out of range.
    """
    seed, epoch, position = (int(v) for v in state)
    if seed != self.seed:
      raise ValueError(
        f'state seed={seed} differs from the sampler seed={self.seed}: '
        'build the Sampler with the seed of the run being resumed'
      )
    if epoch < 0 or not 0 <= position < self.num_examples:
      raise ValueError(
        f'state epoch={epoch}, position={position} is out of range for '
        f'{self.num_examples} examples: it belongs to another dataset'
      )
    self._epoch, self._position = epoch, position
    return self

  def next_with_epochs(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Like `next`, and also the epoch each example was drawn in.

    Args:
      batch_size: the number of examples, in ``[1, num_examples]``.

    Returns:
      ``(indices, epochs)``: int64 arrays of shape ``[batch_size]``. The
      epochs feed `Dataset.take` so augmentation differs between epochs.

    Raises:
      ValueError: for a batch size outside ``[1, num_examples]``.
    """
    check_batch_size(batch_size, self.num_examples)
    batch_size = int(batch_size)
    indices = np.empty(batch_size, np.int64)
    epochs = np.empty(batch_size, np.int64)
    filled = 0
    while filled < batch_size:
      order = self._epoch_order(self._epoch)
      n = min(batch_size - filled, self.num_examples - self._position)
      indices[filled : filled + n] = order[self._position : self._position + n]
      epochs[filled : filled + n] = self._epoch
      filled += n
      self._position += n
      if self._position == self.num_examples:
        self._epoch, self._position = self._epoch + 1, 0
    return indices, epochs

  def next(self, batch_size: int) -> np.ndarray:
    """The global indices of the next ``batch_size`` examples.

    Args:
      batch_size: the number of examples, in ``[1, num_examples]``; it may
        differ from call to call.

    Returns:
      int64 array of shape ``[batch_size]``.

    Raises:
      ValueError: for a batch size outside ``[1, num_examples]``.
    """
    return self.next_with_epochs(batch_size)[0]

  def __repr__(self) -> str:
    return (
      f'Sampler(num_examples={self.num_examples}, seed={self.seed}, '
      f'shuffle={self.shuffle}, state={tuple(self.state)})'
    )
