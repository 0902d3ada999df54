"""A training process killed with SIGKILL mid-run resumes in a new process
and ends with the parameters of an uninterrupted run, bitwise (CPU)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np

from lrjax.train import load_checkpoint

# The child trains on one CPU device. With LRJAX_TEST_HOLD set to a path, it
# creates that file after the checkpoint of update 10 and then blocks until
# killed, so the parent kills it between checkpoints, mid-run, whatever the
# machine's load (no race against the child's progress).
CHILD = textwrap.dedent(
  """
  import os, sys, threading
  os.environ['JAX_PLATFORMS'] = 'cpu'
  import jax
  jax.config.update('jax_num_cpu_devices', 1)
  from lrjax.train import TrainConfig, train_and_evaluate
  from lrjax.train import _checkpoint

  if os.environ.get('LRJAX_TEST_HOLD'):
    save = _checkpoint.Checkpointer.save
    def save_then_hold(self, update, *a, **k):
      save(self, update, *a, **k)
      if update >= 10:
        open(os.environ['LRJAX_TEST_HOLD'], 'w').close()
        threading.Event().wait()  # until the parent's SIGKILL
    _checkpoint.Checkpointer.save = save_then_hold

  config = TrainConfig(
    dataset='synthetic', synthetic_examples=256, synthetic_shape=(4, 4, 1),
    model='mlp', model_kwargs={'hidden': (16,)}, batch='stages(16@20up,32@20up)',
    max_device_batch=16, lr=0.1, momentum=0.9, eval_every=0,
    checkpoint_every=5, keep_checkpoints=3, log_every=5,
  )
  result = train_and_evaluate(config, sys.argv[1])
  print('DONE', result.num_updates, result.resumed_from, flush=True)
  """
)

# A hang guard, not a timing: generous for a machine whose cores are busy.
TIMEOUT = 300


def _start(workdir, hold=None):
  env = dict(os.environ)
  env.pop('XLA_FLAGS', None)
  env.pop('LRJAX_TEST_HOLD', None)
  if hold:
    env['LRJAX_TEST_HOLD'] = hold
  return subprocess.Popen(
    [sys.executable, '-c', CHILD, workdir],
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _finish(proc):
  try:
    out, err = proc.communicate(timeout=TIMEOUT)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f'child timed out:\n{err[-3000:]}') from None
  assert proc.returncode == 0, err[-3000:]
  return out


def _checkpoints(workdir):
  path = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
  killed_dir = str(tmp_path / 'killed')
  full_dir = str(tmp_path / 'full')
  held = str(tmp_path / 'held')
  full = _start(full_dir)
  victim = _start(killed_dir, hold=held)
  try:
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(held):
      assert victim.poll() is None, victim.communicate()[1][-3000:]
      assert time.monotonic() < deadline, 'no checkpoint in time'
      time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
  finally:
    if victim.poll() is None:
      victim.kill()
  assert victim.returncode == -signal.SIGKILL
  at_kill = max(_checkpoints(killed_dir))
  assert at_kill == 10  # killed mid-run, 40 updates in all

  out = _finish(_start(killed_dir))
  assert f'DONE 40 {at_kill}' in out
  assert 'DONE 40 None' in _finish(full)

  resumed, meta_r = load_checkpoint(killed_dir)
  uninterrupted, meta_u = load_checkpoint(full_dir)
  assert meta_r['update'] == meta_u['update'] == 40
  assert meta_r['sampler'] == meta_u['sampler']
  leaves_r = jax.tree.leaves(resumed)
  leaves_u = jax.tree.leaves(uninterrupted)
  assert len(leaves_r) == len(leaves_u)
  for a, b in zip(leaves_r, leaves_u, strict=True):
    np.testing.assert_array_equal(a, b)  # bitwise: params and opt state
