"""Two CPU processes (gloo collectives): a tuple all-reduce against a packed one.

JAX's CPU collectives between processes (gloo over TCP) reduce a tuple
all-reduce one operand at a time, a round trip per leaf. The trainer
therefore averages across devices as one flat vector per dtype when its
devices are CPUs of several processes (``make_train_body(...,
pack_collectives=True)``). This measures what that buys, with two processes
on 127.0.0.1, one CPU device each:

- ``all-reduce``: the mean over the two processes of experiments.lm's
  gradient (28 leaves, 0.83 M float32) as XLA's combined tuple all-reduce,
  and as one packed vector (concatenation and split included): ms a call;
- ``trainer``: the trainer's step loop on experiments.lm's model (AdamW,
  batch 12 sequences of 64 bytes, 6 a process) with the leaves as a tuple
  and packed: tokens/s (``TrainResult.loop_seconds``, compilation
  excluded).

Each round runs both variants as fresh process pairs, alternating which goes
first (the machine may be shared); ratios are medians over the rounds.

Run: ``python -m benchmarks.bench_collectives [--rounds 3] [--updates 200]``.
"""

from __future__ import annotations

import argparse
import os
import statistics

from benchmarks.bench_devices import child_result, free_port

_CHILD = r"""
import os, sys, tempfile, time
pid, address, what, pack, updates, data_dir = (
  int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == '1',
  int(sys.argv[5]), sys.argv[6])
import jax
jax.distributed.initialize(coordinator_address=address, num_processes=2,
                           process_id=pid)
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from lrjax import data, lm, tasks
from lrjax.train import TrainConfig, _setup, train_and_evaluate
from lrjax.train._step import AXIS, _pmean_inexact
logging.set_verbosity(logging.WARNING)
if what == 'all-reduce':
  mesh = Mesh(np.array(jax.devices()), (AXIS,))
  grads = nnx.state(lm.Transformer(lm.TransformerConfig(), rngs=nnx.Rngs(0)),
                    nnx.Param)
  leaves = [np.asarray(x) for x in jax.tree.leaves(grads)]
  sharded = [
    jax.make_array_from_process_local_data(
      NamedSharding(mesh, P(AXIS)), x[None], (2, *x.shape))
    for x in leaves
  ]
  mean = jax.jit(jax.shard_map(
    lambda *xs: _pmean_inexact(xs, pack), mesh=mesh, in_specs=P(AXIS),
    out_specs=P(AXIS)))
  jax.block_until_ready(mean(*sharded))
  start = time.perf_counter()
  for _ in range(updates):
    jax.block_until_ready(mean(*sharded))
  print('RESULT', (time.perf_counter() - start) / updates * 1e3, flush=True)
else:
  real = _setup.make_train_body
  _setup.make_train_body = lambda *a, **k: real(
    *a, **{**k, 'pack_collectives': pack})
  train = data.load_text('python_text/docs', split='train', seq_len=64,
                         data_dir=data_dir)
  task = tasks.language_model(train, config=lm.TransformerConfig())
  batch = 12
  config = TrainConfig(
    batch=batch, num_epochs=(updates + 1) * batch / task.num_train,
    max_updates=updates + 1, num_devices=1, parallel='shard_map',
    prefetch=0, log_every=50, eval_every=0, keep_checkpoints=0,
    progress_bar=False, optimizer='adamw', lr=1e-3, b2=0.99,
    weight_decay=0.1, coordinator_address=address, num_processes=2,
    process_id=pid)
  with tempfile.TemporaryDirectory() as workdir:
    r = train_and_evaluate(config, workdir, task)
  print('RESULT', r.loop_updates * batch * 64 / r.loop_seconds, flush=True)
"""

# A hang guard, not a timing (a hung distributed JAX process ignores
# SIGTERM: see DESIGN.md's pitfalls).
TIMEOUT = 600


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--updates', type=int, default=200)
  p.add_argument(
    '--data_dir', default=os.path.expanduser('~/tensorflow_datasets')
  )
  return p.parse_args()


def pair(what: str, pack: bool, updates: int, data_dir: str) -> float:
  """Process 0's result of one fresh pair of processes."""
  address = f'127.0.0.1:{free_port()}'
  return child_result(
    _CHILD,
    [
      [str(pid), address, what, str(int(pack)), str(updates), data_dir]
      for pid in (0, 1)
    ],
    'RESULT',
    TIMEOUT,
  )


def _median_range(values: list[float]) -> str:
  values = sorted(values)
  return f'{statistics.median(values):.2f} ({values[0]:.2f}-{values[-1]:.2f})'


def main() -> None:
  args = _parse()
  rows = (
    ('all-reduce', 'ms a call', args.updates),
    ('trainer', 'tokens/s', args.updates),
  )
  results = {(w, p): [] for w, _, _ in rows for p in (False, True)}
  for round_ in range(args.rounds):
    for what, _, n in rows:
      order = (False, True) if round_ % 2 == 0 else (True, False)
      for pack in order:
        results[what, pack].append(pair(what, pack, n, args.data_dir))
  print(
    f'\ncores={os.cpu_count()} rounds={args.rounds} (interleaved), 2 processes'
  )
  print(
    f'{"":<11} {"unit":<10} {"tuple":>10} {"packed":>10} {"gain (range)":>20}'
  )
  for what, unit, _ in rows:
    tup, packed = results[what, False], results[what, True]
    # The gain: time saved for the all-reduce, rate gained for the trainer.
    gains = [
      (a / b if what == 'all-reduce' else b / a)
      for a, b in zip(tup, packed, strict=True)
    ]
    print(
      f'{what:<11} {unit:<10} {statistics.median(tup):10.2f} '
      f'{statistics.median(packed):10.2f} {_median_range(gains):>20}'
    )


if __name__ == '__main__':
  main()
