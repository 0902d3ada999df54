"""The host input pipeline: sampler -> process slice -> take."""

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from lrjax.data._dataset import Dataset
from lrjax.data._distributed import process_slice
from lrjax.data._sampler import Sampler, SamplerState


class Item(NamedTuple):
  """One batch of the pipeline.

  Attributes:
    batch: this process's slice of the global batch,
      ``dict(image=float32 [n, H, W, C], label=int32 [n])``.
    state: the sampler state *after* this batch: checkpoint it once this
      batch has been used, and a resumed run starts with the next batch.
    batch_size: the global batch size (all processes).
  """

  batch: dict[str, np.ndarray]
  state: SamplerState
  batch_size: int


def batches(
  dataset: Dataset,
  sampler: Sampler,
  batch_sizes: Iterable[int],
  *,
  augment_seed: int | None = None,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[Item]:
  """Yields the batches of a run, one per entry of ``batch_sizes``.

  Each global batch is drawn by ``sampler`` (so the batch size may change
  at any update), cut to this process's `process_slice` and read with
  `Dataset.take`, augmented per example with the key
  ``(augment_seed, epoch, index)``. Every process runs the same sampler, so
  all agree on the global batch and each reads only its own slice.

  Args:
    dataset: the training split.
    sampler: a `Sampler` over ``dataset.num_examples`` (restored when
      resuming).
    batch_sizes: the global batch size of each update, e.g.
      ``(schedule.batch_size_at(u) for u in range(start, total))``.
    augment_seed: None: no augmentation; an int: the augmentation seed.
    process_index: this process, ``jax.process_index()``.
    process_count: the number of processes, ``jax.process_count()``.

  Yields:
    `Item` (batch, sampler state after it, global batch size).

  Raises:
    ValueError: if the sampler does not match the dataset size, or a batch
      size is larger than the split or does not divide among processes.

  Examples:
    >>> from lrjax.data import synthetic
    >>> ds = synthetic(10, (4, 4, 1), num_classes=2, seed=0)
    >>> items = list(batches(ds, Sampler(10, seed=0), [4, 8]))
    >>> print([it.batch['label'].shape[0] for it in items], items[-1].state)
    [4, 8] SamplerState(seed=0, epoch=1, position=2)
  """
  if sampler.num_examples != dataset.num_examples:
    raise ValueError(
      f'the sampler draws from {sampler.num_examples} examples but '
      f'{dataset.name} {dataset.split} has {dataset.num_examples}: build '
      'Sampler(dataset.num_examples, seed)'
    )
  for batch_size in batch_sizes:
    indices, epochs = sampler.next_with_epochs(int(batch_size))
    local = process_slice(indices, process_index, process_count)
    local_epochs = process_slice(epochs, process_index, process_count)
    batch = dataset.take(local, augment_seed=augment_seed, epochs=local_epochs)
    yield Item(batch, sampler.state, int(batch_size))
