"""The trainer's input pipeline and evaluation (host side)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from lrjax.batch import updates
from lrjax.data import Sampler, process_slice
from lrjax.train import _setup


def batches(
  setup: _setup.Setup,
  sampler: Sampler,
  first_update: int,
  stop_update: int,
  augment_seed: int | None,
) -> Iterator[tuple[Any, ...]]:
  """This process' micro-batches from ``first_update`` on, on the devices.

  Args:
    setup: the run's setup.
    sampler: draws the examples (advanced as batches are produced).
    first_update: the update to start at.
    stop_update: the update to end before.
    augment_seed: seed of the augmentation (None: none).

  Yields:
    ``(update index, micro-step, stage, device batch, sampler state after
    the micro-batch, epoch as float32)``.
  """
  replicas, put_batch = setup.replicas, setup.runner.put_batch
  take = setup.task.train_data.take
  pi, pc = jax.process_index(), jax.process_count()
  for info in updates(setup.plan, first_update, stop_update):
    global_micro = replicas * info.micro_batch
    epoch32 = float(np.float32(info.epoch))
    for j in range(info.accum_steps):
      idx, ep = sampler.next_with_epochs(global_micro)
      if pc > 1:
        idx, ep = process_slice(idx, pi, pc), process_slice(ep, pi, pc)
      if augment_seed is None:
        local = take(idx)
      else:
        local = take(idx, augment_seed=augment_seed, epochs=ep)
      yield (
        info.index,
        j,
        info.stage,
        put_batch(local, info.epoch),
        sampler.state,  # an immutable tuple of ints
        epoch32,
      )


def evaluate(
  task: Any,
  params: Any,
  model_state: Any = None,
  batch_size: int = 256,
  eval_fns: tuple[Any, Any] | None = None,
) -> dict[str, float]:
  """A task's evaluation metrics of ``params`` on its evaluation split.

  What the trainer records at each evaluation, for parameters from
  anywhere (an initialisation, a checkpoint, another library). With
  per-example ``eval_metrics`` the split runs in batches of
  ``batch_size``, the last one padded (with copies of its first example)
  and masked, so that one compiled program serves them all; without,
  ``loss`` and its metrics are averaged over the batches weighted by their
  sizes (the last, smaller batch is one more program).

  Args:
    task: a `lrjax.train.Task` with ``eval_data``.
    params: the model's parameters (one replica, host or device arrays).
    model_state: the model's state (e.g. batch statistics); None: the
      task's initial one.
    batch_size: examples per evaluation batch.
    eval_fns: ``(jit(task.eval_sums), jit(task.eval_means))`` to reuse
      their compilations (the trainer's); None: jitted here.

  Returns:
    Metric name -> mean over the split.

  Examples:
    Zero weights give uniform predictions over the 10 classes, so the
    loss is ln 10 on every example (the last batch of 10 of the 36-example
    test split is padded and masked):

    >>> import jax, jax.numpy as jnp
    >>> from lrjax import tasks
    >>> task = tasks.image_classification(
    ...   'synthetic', 'mlp', synthetic_examples=144, synthetic_shape=(2, 2, 1))
    >>> params, state = task.init(jax.random.key(0))
    >>> zeros = jax.tree.map(jnp.zeros_like, params)
    >>> task.eval_data.num_examples
    36
    >>> print(f"{evaluate(task, zeros, state, batch_size=16)['loss']:.6f}")
    2.302585
  """
  if model_state is None:
    model_state = task.init(jax.random.key(0))[1]
  sums_fn, means_fn = eval_fns or (
    jax.jit(task.eval_sums),
    jax.jit(task.eval_means),
  )
  data = task.eval_data
  n = data.num_examples
  bs = min(batch_size, n)
  sums: dict[str, float] = {}
  for start in range(0, n, bs):
    idx = np.arange(start, min(start + bs, n))
    b = data.take(idx)
    if task.eval_metrics is not None:
      pad = bs - len(idx)
      if pad:
        b = {
          k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)])
          for k, v in b.items()
        }
      out = jax.device_get(
        sums_fn(params, model_state, b, np.arange(bs) < len(idx))
      )
    else:
      means = jax.device_get(means_fn(params, model_state, b))
      out = {k: float(v) * len(idx) for k, v in means.items()}
      out['count'] = len(idx)
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + float(v)
  count = sums.pop('count')
  return {k: v / count for k, v in sums.items()}


class Inline:
  """Batches produced on the main thread (``prefetch=0``)."""

  wait_seconds = 0.0

  def __init__(self, iterable: Any) -> None:
    self._it = iter(iterable)

  def __iter__(self) -> Any:
    return self._it

  def close(self) -> None:
    pass
