"""Input pipeline throughput and the share of step time spent waiting.

For the bundled digits and for synthetic CIFAR-shaped data (32x32x3, 50,000
examples, pad-4 crop and flip), at batch 128 and 1024, prints:

- ``pipe ex/s``: examples per second the host pipeline delivers (sampler +
  take + augmentation + prefetch thread) to a consumer that does nothing;
- ``step ms``: the time of a simulated consumer, a jitted SGD step of
  `lrjax.models.CNN` (features 16/32/64) on the batch, one step in flight
  (as the trainer does on CPU);
- ``wait``: the share of the consumer's wall time spent blocked on data,
  without prefetching (``buffer_size=0``: the batch is made between steps)
  and with a prefetch thread (``buffer_size=2``, batches `device_put` ahead).

Each measurement runs for about ``--seconds`` (default 8; ``--quick``: 1).
Run: ``python -m benchmarks.bench_data [--seconds=S] [--quick]``.
"""

import argparse
import itertools
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax import data, models


def _pipeline(ds, batch_size, augment):
  sampler = data.Sampler(ds.num_examples, seed=0)
  return data.batches(
    ds,
    sampler,
    itertools.repeat(batch_size),
    augment_seed=0 if augment else None,
  )


def pipeline_rate(ds, batch_size, augment, seconds):
  """Examples per second through a prefetching pipeline, no consumer."""
  with data.Prefetcher(_pipeline(ds, batch_size, augment), 2) as p:
    next(p)
    start = time.perf_counter()
    count = 0
    while count < 10 or time.perf_counter() - start < seconds:
      next(p)
      count += 1
    elapsed = time.perf_counter() - start
  return count * batch_size / elapsed


def make_step(ds):
  model = models.CNN(
    num_classes=ds.num_classes, features=(16, 32, 64), dense=64
  )
  tx = optax.sgd(0.01, momentum=0.9)
  params = model.init(jax.random.key(0), jnp.zeros((1, *ds.image_shape)))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch):
    def loss_fn(p):
      logits = model.apply(p, batch['image'])
      return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['label']
      ).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step, params, opt_state


def consume(ds, batch_size, augment, max_steps, seconds, buffer_size):
  """(seconds per step, share of wall time waiting for data, steps).

  Runs as many steps as fit in about ``seconds`` (at least 3, at most
  ``max_steps``), judged from one timed step after compilation.
  """
  step, params, opt_state = make_step(ds)
  warm = jax.device_put(ds.take(np.arange(batch_size)))
  jax.block_until_ready(step(params, opt_state, warm))  # compile
  start = time.perf_counter()
  jax.block_until_ready(step(params, opt_state, warm))
  guess = time.perf_counter() - start
  steps = int(np.clip(seconds / guess, 3, max_steps))
  with data.Prefetcher(
    _pipeline(ds, batch_size, augment),
    buffer_size,
    place=lambda item: jax.device_put(item.batch),
  ) as p:
    batch = next(p)
    params, opt_state, loss = step(params, opt_state, batch)
    loss.block_until_ready()
    waited = p.wait_seconds
    start = time.perf_counter()
    for _ in range(steps):
      batch = next(p)
      params, opt_state, loss = step(params, opt_state, batch)
      loss.block_until_ready()
    seconds = time.perf_counter() - start
    waited = p.wait_seconds - waited
  return seconds / steps, waited / seconds, steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=200, help='at most')
  parser.add_argument(
    '--seconds', type=float, default=8.0, help='per measurement, about'
  )
  parser.add_argument('--quick', action='store_true', help='1 s each')
  parser.add_argument('--data_dir', default=None)
  args = parser.parse_args()
  seconds = 1.0 if args.quick else args.seconds
  data_dir = args.data_dir or os.path.join(tempfile.gettempdir(), 'lrjax_tfds')
  datasets = {
    'digits': (data.load('digits', split='train', data_dir=data_dir), False),
    'synthetic 32x32x3': (
      data.synthetic(50_000, (32, 32, 3), num_classes=10, seed=0),
      True,
    ),
  }
  print(
    f'backend={jax.default_backend()} devices={jax.device_count()} '
    f'cpus={os.cpu_count()} seconds/measurement={seconds}'
  )
  header = (
    f'{"dataset":<18} {"batch":>5} {"pipe ex/s":>10} {"step ms":>8} '
    f'{"steps":>5} {"wait(no pf)":>11} {"wait(pf)":>9}'
  )
  print(header)
  print('-' * len(header))
  for (name, (ds, augment)), batch_size in itertools.product(
    datasets.items(), (128, 1024)
  ):
    rate = pipeline_rate(ds, batch_size, augment, seconds / 4)
    run = (ds, batch_size, augment, args.steps, seconds / 2)
    _, wait_off, _ = consume(*run, buffer_size=0)
    step_s, wait_on, steps = consume(*run, buffer_size=2)
    print(
      f'{name:<18} {batch_size:>5} {rate:>10,.0f} {step_s * 1e3:>8.1f} '
      f'{steps:>5} {wait_off:>11.1%} {wait_on:>9.1%}'
    )


if __name__ == '__main__':
  main()
