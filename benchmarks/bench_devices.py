"""One device or one simulated device per core on a CPU: the trainer's rate.

On the CPU backend XLA can split the host into several devices
(``jax_num_cpu_devices``); the trainer then runs data parallel over them
(``shard_map``, one step in flight, as DESIGN.md's pitfall requires). This
measures whether that is faster than one device for the experiments'
workloads:

- ``lm``: experiments.lm's model (nanoGPT's CPU size, 0.83 M parameters) on
  python_text/docs, AdamW, batch 12 sequences of 64 bytes: tokens/s;
- ``lm_small``: finetune_cpu.cfg's model (2 layers, width 64), batch 16;
- ``cnn512`` / ``cnn32``: the digits CNN at batch 512 and 32: examples/s;
- ``mlp32`` / ``mlp128``: the digits MLP (the ramp experiment's model) at
  batch 32 and 128: examples/s;
- ``<workload>+ynn``: the same with XLA's YNNPACK kernels for dots,
  elementwise ops and reductions (`YNN`, ``TrainConfig.compiler_options``;
  the experiments' ``--compiler_options``).

The device count is fixed when a process starts JAX, so every measurement
is a fresh process; rounds alternate one and two devices (interleaved, the
machine may be shared), and the ratio is the median over the rounds'
pairs. The rate is the trainer's step loop (``TrainResult.loop_seconds``:
compilation excluded). The last column trains on one device of a process
that has two (what ``--num_devices=1`` costs when the experiments give the
process one device per core).

With ``--torch PYTHON`` (an interpreter that has torch, e.g.
``/tmp/torchenv/bin/python``), each round also runs the PyTorch reference
of the workloads that have one (``lm``: `torch_lm_reference.py`;
``cnn512``/``cnn32``: `torch_cnn_reference.py`) right after or right
before the two-device trainer (alternating by round), and the last column
is the two-device trainer's rate over PyTorch's (median of the rounds'
pairs, range).

With ``--processes``, each round also trains with one process per core
instead of one device per core: two processes on 127.0.0.1, one CPU device
each, joined by ``jax.distributed`` (gloo collectives; the trainer averages
as one flat vector there), again back to back with the two-device run; the
last column is their rate over the two devices'.

Run: ``python -m benchmarks.bench_devices [--rounds 3] [--workloads
lm,lm_small,cnn512,cnn32,mlp32,mlp128,cnn512+ynn,lm+ynn] [--torch PYTHON]
[--processes]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys

# name -> (task builder source, batch, updates, unit multiplier)
WORKLOADS = {
  'lm': ('lm', 12, 300, 64),
  'lm_small': ('lm_small', 16, 300, 64),
  'cnn512': ('cnn', 512, 60, 1),
  'cnn32': ('cnn', 32, 400, 1),
  'mlp32': ('mlp', 32, 800, 1),
  'mlp128': ('mlp', 128, 400, 1),
}

# workload -> the PyTorch reference's arguments (same model, batch, steps)
REFERENCES = {
  'lm': ['torch_lm_reference.py', '--steps', '300', '--batch', '12'],
  'cnn512': ['torch_cnn_reference.py', '--batch', '512', '--steps', '60'],
  'cnn32': ['torch_cnn_reference.py', '--batch', '32', '--steps', '400'],
}

# A hang guard for one measurement, not a timing.
TIMEOUT = 900

#: ``TrainConfig.compiler_options`` of the ``+ynn`` workloads.
YNN = {
  'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT,'
  'LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE'
}

_CHILD = r"""
import json, sys, tempfile
import jax
jax.config.update('jax_num_cpu_devices', int(sys.argv[6]))
address, pid = sys.argv[8], int(sys.argv[9])
processes = {}
if address:  # one of two processes, joined before the task starts JAX
  jax.distributed.initialize(coordinator_address=address, num_processes=2,
                             process_id=pid)
  processes = dict(coordinator_address=address, num_processes=2,
                   process_id=pid)
from absl import logging
from lrjax import data, lm, tasks
from lrjax.train import TrainConfig, train_and_evaluate
logging.set_verbosity(logging.WARNING)
devices, kind, batch, updates, data_dir = (
  int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
  sys.argv[5])
if kind.startswith('lm'):
  train = data.load_text('python_text/docs', split='train', seq_len=64,
                         data_dir=data_dir)
  size = dict(num_layers=2, num_heads=4, width=64) if kind == 'lm_small' else {}
  task = tasks.language_model(train, config=lm.TransformerConfig(**size))
  opt = dict(optimizer='adamw', lr=1e-3, b2=0.99, weight_decay=0.1)
else:
  task = tasks.image_classification('digits', kind, data_dir=data_dir)
  opt = dict(optimizer='sgd', lr=0.05, momentum=0.9)
config = TrainConfig(
  batch=batch, num_epochs=(updates + 1) * batch / task.num_train,
  max_updates=updates + 1, num_devices=devices, parallel='shard_map',
  prefetch=0, log_every=50, eval_every=0, keep_checkpoints=0,
  progress_bar=False, compiler_options=json.loads(sys.argv[7]), **opt,
  **processes)
with tempfile.TemporaryDirectory() as workdir:
  r = train_and_evaluate(config, workdir, task)
print('RATE', r.loop_updates * batch / r.loop_seconds)
"""


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--workloads', default=','.join(WORKLOADS))
  p.add_argument(
    '--data_dir', default=os.path.expanduser('~/tensorflow_datasets')
  )
  p.add_argument(
    '--torch', default='', help='Python with torch: compare with PyTorch'
  )
  p.add_argument(
    '--processes',
    action='store_true',
    help='also one process per core (two on 127.0.0.1, gloo)',
  )
  return p.parse_args()


def rate(
  devices: int,
  workload: str,
  data_dir: str,
  process_devices: int = 0,
  processes: int = 1,
) -> float:
  """Examples/s (sequences/s for the LM) of fresh processes that have
  ``process_devices`` CPU devices each (0: ``devices``) and train on
  ``devices`` of them: one process, or with ``processes=2`` two on
  127.0.0.1 (gloo collectives, the trainer's multi-process path)."""
  base, _, variant = workload.partition('+')
  kind, batch, updates, _ = WORKLOADS[base]
  options = YNN if variant == 'ynn' else None
  address = f'127.0.0.1:{free_port()}' if processes > 1 else ''
  args = [
    str(devices),
    kind,
    str(batch),
    str(updates),
    data_dir,
    str(process_devices or devices),
    json.dumps(options),
    address,
  ]
  return child_result(
    _CHILD, [[*args, str(pid)] for pid in range(processes)], 'RATE'
  )


def child_result(
  source: str, argvs: list[list[str]], tag: str, timeout: float = TIMEOUT
) -> float:
  """The number process 0 prints last after ``tag``, of fresh CPU-only
  interpreters running ``source`` (``python -c``), one per argument list,
  side by side; a child that fails raises with process 0's stderr, and
  one still running after ``timeout`` seconds is killed."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_PLATFORMS'] = 'cpu'
  procs = [
    subprocess.Popen(
      [sys.executable, '-c', source, *argv],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=env,
    )
    for argv in argvs
  ]
  try:
    outputs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:  # a hung distributed process ignores SIGTERM
      if p.poll() is None:
        p.kill()
        p.wait()
  out, err = outputs[0]
  lines = [x for x in out.splitlines() if x.startswith(f'{tag} ')]
  if procs[0].returncode or not lines:
    raise RuntimeError(err[-3000:])
  return float(lines[-1].split()[1])


def free_port() -> int:
  """A TCP port on 127.0.0.1 that was free when probed."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def torch_rate(python: str, workload: str) -> float:
  """Tokens/s or examples/s of the workload's PyTorch reference."""
  script, *args = REFERENCES[workload.partition('+')[0]]
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), script)
  out = subprocess.run(
    [python, path, *args], capture_output=True, text=True, check=False
  )
  if out.returncode:
    raise RuntimeError(out.stderr[-3000:])
  words = out.stdout.split()
  unit = words.index('tokens/s' if workload.startswith('lm') else 'examples/s')
  return float(words[unit - 1].replace(',', ''))


def _range(ratios: list[float]) -> str:
  ratios = sorted(ratios)
  return f'{statistics.median(ratios):8.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})'


def main() -> None:
  args = _parse()
  names = [w for w in args.workloads.split(',') if w]
  one = {w: [] for w in names}
  two = {w: [] for w in names}
  one_of_two = {w: [] for w in names}
  procs = {w: [] for w in names if args.processes}
  torch = {
    w: [] for w in names if args.torch and w.partition('+')[0] in REFERENCES
  }
  for round_ in range(args.rounds):
    for w in names:
      one[w].append(rate(1, w, args.data_dir))
      one_of_two[w].append(rate(1, w, args.data_dir, process_devices=2))
      # The runs compared with two devices (PyTorch, two processes) run
      # back to back with it, in alternating order, so a drift in the
      # machine's speed cancels.
      pair = [lambda w=w: two[w].append(rate(2, w, args.data_dir))]
      if w in torch:
        pair.append(lambda w=w: torch[w].append(torch_rate(args.torch, w)))
      if w in procs:
        pair.append(
          lambda w=w: procs[w].append(rate(1, w, args.data_dir, processes=2))
        )
      for run in pair[:: -1 if round_ % 2 else 1]:
        run()
  print(f'\ncores={os.cpu_count()} rounds={args.rounds} (interleaved)')
  print(
    f'{"workload":<11} {"unit":<12} {"1 device":>10} {"2 devices":>10} '
    f'{"2/1 (range)":>20} {"1 of 2":>10}'
    + (f' {"PyTorch":>10} {"2 dev/PyTorch":>20}' if torch else '')
    + (f' {"2 procs":>10} {"2 procs/2 dev":>20}' if procs else '')
  )
  for w in names:
    scale = WORKLOADS[w.partition('+')[0]][3]
    unit = 'tokens/s' if w.startswith('lm') else 'examples/s'
    ratios = [b / a for a, b in zip(one[w], two[w], strict=True)]
    line = (
      f'{w:<11} {unit:<12} {statistics.median(one[w]) * scale:10.0f} '
      f'{statistics.median(two[w]) * scale:10.0f} {_range(ratios)} '
      f'{statistics.median(one_of_two[w]) * scale:10.0f}'
    )
    if w in torch:
      vs = [b * scale / t for b, t in zip(two[w], torch[w], strict=True)]
      line += f' {statistics.median(torch[w]):10.0f} {_range(vs)}'
    if w in procs:
      vs = [p / b for b, p in zip(two[w], procs[w], strict=True)]
      line += f' {statistics.median(procs[w]) * scale:10.0f} {_range(vs)}'
    print(line)


if __name__ == '__main__':
  main()
