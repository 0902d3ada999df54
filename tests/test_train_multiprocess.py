"""Two processes on 127.0.0.1 (gloo CPU collectives, 2 devices each) train
the same global batches as one process with 4 devices, to float32 round-off,
averaging across devices as one flat vector per dtype (``pack_collectives``).
Process 0 lets the trainer join the processes; process 1 joins them itself
first, as a program whose task starts JAX must.

After ``jax.distributed.initialize`` JAX ignores SIGTERM, so the harness
ends stragglers with SIGKILL and has a hard timeout.
"""

import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
from _tasks import synthetic

from lrjax.train import TrainConfig, train_and_evaluate

CONFIG = dict(
  batch='stages(16@3up,32@3up)',
  max_device_batch=4,
  lr=0.1,
  momentum=0.9,
  eval_every=0,
  keep_checkpoints=0,
  log_every=1,
)

CHILD = textwrap.dedent(
  """
  import os, sys
  os.environ['JAX_PLATFORMS'] = 'cpu'
  import jax
  jax.config.update('jax_num_cpu_devices', 2)
  import numpy as np
  from lrjax import tasks
  from lrjax.train import TrainConfig, _setup, train_and_evaluate
  packs, real = [], _setup.make_train_body
  def spy(*args, **kwargs):
    packs.append(kwargs['pack_collectives'])
    return real(*args, **kwargs)
  _setup.make_train_body = spy
  pid, address, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
  if pid == 1:
    # Joins itself, as a program whose task starts JAX must (README); the
    # trainer takes the processes as they are. Process 0 lets it join.
    jax.distributed.initialize(coordinator_address=address,
                               num_processes=2, process_id=1)
    assert jax.process_count() == 2
  config = TrainConfig(**eval(sys.argv[4]), coordinator_address=address,
                       num_processes=2, process_id=pid, num_devices=2)
  task = tasks.image_classification(
    'synthetic', 'mlp', model_kwargs={'hidden': (16,)},
    synthetic_examples=256, synthetic_shape=(4, 4, 1),
  )
  result = train_and_evaluate(config, workdir, task)
  assert jax.process_count() == 2 and jax.device_count() == 4
  if pid == 0:
    np.savez(os.path.join(workdir, 'params.npz'), *jax.tree.leaves(result.params))
  print('DONE', pid, result.num_updates, 'PACKED', packs, flush=True)
  """
)

# A hang guard, not a timing: generous for a machine whose cores are busy.
TIMEOUT = 600
# What process 0 prints when its coordinator cannot bind the port: another
# process took it between _free_port's probe and the bind.
PORT_TAKEN = 'Failed to start RPC server'


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _run_pair(address, workdir):
  """Runs both processes; (returncode, stdout, stderr) of those that ended."""
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)
  procs = [
    subprocess.Popen(
      [sys.executable, '-c', CHILD, str(pid), address, workdir, repr(CONFIG)],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for pid in (0, 1)
  ]
  outputs = []
  try:
    deadline = time.monotonic() + TIMEOUT
    for p in procs:
      out, err = p.communicate(timeout=max(deadline - time.monotonic(), 1))
      outputs.append((p.returncode, out, err))
      if p.returncode != 0:
        break  # the other process cannot finish without it
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()  # SIGKILL: SIGTERM is ignored after distributed init
        p.wait()
  return outputs


def _run_pair_on_a_free_port(tmp_path, attempts=3):
  """_run_pair on a probed port, probed again while the port was taken.

  Returns the outputs and the workdir of the last attempt.
  """
  for attempt in range(attempts):
    workdir = str(tmp_path / f'mp{attempt}')
    outputs = _run_pair(f'127.0.0.1:{_free_port()}', workdir)
    if outputs[0][0] == 0 or PORT_TAKEN not in outputs[0][2]:
      break
  return outputs, workdir


def test_two_processes_match_one_process(tmp_path):
  outputs, workdir = _run_pair_on_a_free_port(tmp_path)
  assert len(outputs) == 2, f'process 0:\n{outputs[0][2][-3000:]}'
  for pid, (code, out, err) in enumerate(outputs):
    assert code == 0, f'process {pid}:\n{err[-3000:]}'
    # gloo reduces a tuple one leaf at a time: the trainer packs them.
    assert f'DONE {pid} 6 PACKED [True]' in out

  single = train_and_evaluate(
    TrainConfig(**CONFIG, num_devices=4),
    str(tmp_path / 'single'),
    synthetic(),
  )
  got = np.load(os.path.join(workdir, 'params.npz'))
  leaves = jax.tree.leaves(single.params)
  assert len(got.files) == len(leaves)
  for i, want in enumerate(leaves):
    np.testing.assert_allclose(got[f'arr_{i}'], want, rtol=0, atol=1e-6)
