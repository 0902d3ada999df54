"""Training processes killed with SIGKILL at chosen points resume in new
processes and end with the parameters (bitwise) and the metrics.jsonl
records (timing fields aside) of an uninterrupted run.

The kill points are deterministic: the child process patches the library so
that it kills itself (SIGKILL: no cleanup, no flush) at the N-th call of a
function, e.g. inside a compilation, before a train step, right after a
checkpoint, inside a checkpoint write (orbax's rename into place), between
the metrics sync and the checkpoint, or half-way through a metrics line. No
test waits on a clock; the subprocess timeout only guards against a hang.
"""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from lrjax import metrics as lmetrics
from lrjax.train import load_checkpoint

# Two stages (16, then 32 accumulated as 2 x 16): 6 + 6 updates in 6 + 12
# step calls; checkpoints at updates 4, 8 and 12; a record every 3 updates
# (so checkpoints fall between records); evaluations every 0.25 epochs = 64
# examples (examples seen: 16 per update to 96 at update 6, then 32 per
# update: evaluations at updates 4, 7, 9, 11 and the final one at 12); the
# one-device noise estimate every 2 updates.
CONFIG = dict(
  batch='stages(16@6up,32@6up)',
  max_device_batch=16,
  lr=0.1,
  momentum=0.9,
  eval_every=0.25,
  checkpoint_every=4,
  keep_checkpoints=3,
  log_every=3,
  prefetch=0,
)

CHILD = textwrap.dedent(
  """
  import json, os, signal, sys
  os.environ['JAX_PLATFORMS'] = 'cpu'
  import jax
  jax.config.update('jax_num_cpu_devices', 1)
  from orbax.checkpoint._src.path import atomicity
  from lrjax import metrics
  from lrjax import tasks
  from lrjax.train import NoiseConfig, TrainConfig, train_and_evaluate
  from lrjax.train import _checkpoint, _parallel

  workdir, cache, kill = sys.argv[1], sys.argv[2], sys.argv[3]
  where, _, nth = kill.partition(':')
  nth = int(nth or 0)
  calls = {}

  def die():
    os.kill(os.getpid(), signal.SIGKILL)

  def count(name):
    calls[name] = calls.get(name, 0) + 1
    return calls[name] == nth and where == name

  def wrap(owner, attr, before=None, after=None):
    real = getattr(owner, attr)
    def hooked(*args, **kwargs):
      if before:
        before(*args, **kwargs)
      out = real(*args, **kwargs)
      if after:
        after(*args, **kwargs)
      return out
    setattr(owner, attr, hooked)

  def compiled_with_kill(real_compile):
    def compile_(self, *args, **kwargs):
      if count('compile'):
        die()
      step = real_compile(self, *args, **kwargs)
      def step_with_kill(*a):
        if count('step'):
          die()
        return step(*a)
      return step_with_kill
    return compile_

  _parallel.Runner.compile = compiled_with_kill(_parallel.Runner.compile)
  wrap(
    _checkpoint.Checkpointer, 'save',
    before=lambda *a, **k: count('after_sync') and die(),
    after=lambda *a, **k: count('after_save') and die(),
  )
  real_finalize = atomicity.AtomicRenameTemporaryPath.finalize
  async def finalize(self, *args, **kwargs):
    # The step directory is renamed into place last; die just before.
    if self._final_path.name.isdigit() and count('in_save'):
      die()
    return await real_finalize(self, *args, **kwargs)
  atomicity.AtomicRenameTemporaryPath.finalize = finalize
  real_write = metrics.JsonlWriter.write
  def write(self, record):
    if count('mid_line'):
      line = json.dumps({'step': record['step']}).encode()
      self._file.write(line[: len(line) // 2])
      self._file.flush()
      die()
    real_write(self, record)
  metrics.JsonlWriter.write = write

  config = TrainConfig(
    **eval(sys.argv[4]), num_devices=1, compilation_cache_dir=cache,
    noise=NoiseConfig(enabled=True, every=2, num_slices=2),
  )
  task = tasks.image_classification(
    'synthetic', 'mlp', model_kwargs={'hidden': (16,)},
    synthetic_examples=256, synthetic_shape=(4, 4, 1),
  )
  hooks = ()
  if len(sys.argv) > 5 and sys.argv[5] == 'user_hook':
    from lrjax.train import Hook, HookResult

    class SumOfNorms(Hook):
      # A running sum of inside-step squared norms: host state that a
      # resume must restore exactly.
      every = 3

      def __init__(self):
        self.total, self.count = 0.0, 0

      def inside_step(self, params, grads, batch, ctx):
        return sum((g * g).sum() for g in jax.tree.leaves(grads))

      def on_step(self, info, value):
        self.total += float(value)
        self.count += 1
        return HookResult(metrics={'norm_sum': self.total})

      def state(self):
        return {'total': self.total, 'count': self.count}

      def restore(self, state):
        self.total, self.count = state['total'], state['count']

    hooks = (SumOfNorms(),)
  result = train_and_evaluate(config, workdir, task, hooks=hooks)
  print('DONE', result.num_updates, result.resumed_from, flush=True)
  """
)

TIMEOUT = 600  # a hang guard only
TIMING = {'examples_per_sec', 'steps_per_sec', 'eta_sec', 'data_wait_sec'}


def _run(workdir, cache, kill='none', hooks='none', config=None):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  config = repr(config or CONFIG)
  return subprocess.run(
    [sys.executable, '-c', CHILD, workdir, cache, kill, config, hooks],
    env=env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )


def _untimed(workdir):
  path = os.path.join(workdir, 'metrics.jsonl')
  return [
    {k: v for k, v in r.items() if k not in TIMING}
    for r in lmetrics.read_jsonl(path)
  ]


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp('compilation_cache'))


@pytest.fixture(scope='module')
def reference(tmp_path_factory, cache):
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  proc = _run(workdir, cache)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'DONE 12 None' in proc.stdout
  state, meta = load_checkpoint(workdir)
  records = _untimed(workdir)
  # The schedule above, as logged (a step's record before its evaluation).
  steps = [(r['step'], r.get('split', 'train')) for r in records]
  assert steps == [
    (3, 'train'),
    (4, 'test'),
    (6, 'train'),
    (7, 'test'),
    (9, 'train'),
    (9, 'test'),
    (11, 'test'),
    (12, 'train'),
    (12, 'test'),
  ]
  return state, meta, records


def _tmp_checkpoints(workdir):
  directory = os.path.join(workdir, 'checkpoints')
  return [d for d in os.listdir(directory) if 'tmp' in d]


@pytest.mark.parametrize(
  'kills, resumed_from',
  [
    # Inside the first compilation: nothing saved yet.
    (['compile:1'], None),
    # Mid-stage before the first checkpoint, twice over.
    (['step:3', 'step:3'], None),
    # Right after checkpoint 4 committed.
    (['after_save:1'], 4),
    # At the stage switch: the first micro-step of batch 32.
    (['step:7'], 4),
    # Inside the write of checkpoint 8 (data written, not renamed), then
    # mid-accumulation in the process that resumed from 4.
    (['in_save:2', 'step:5'], 4),
    # Metrics synced for checkpoint 8, which never committed; then a kill
    # half-way through the first record the next process writes.
    (['after_sync:2', 'mid_line:1'], 4),
  ],
)
def test_killed_runs_resume_to_the_uninterrupted_result(
  tmp_path, cache, reference, kills, resumed_from
):
  want_state, want_meta, want_records = reference
  workdir = str(tmp_path / 'run')
  for kill in kills:
    proc = _run(workdir, cache, kill)
    assert proc.returncode == -signal.SIGKILL, (kill, proc.stderr[-3000:])
    if kill.startswith('in_save'):
      assert _tmp_checkpoints(workdir), 'the kill was not inside a write'
    if kill.startswith('mid_line'):
      with open(os.path.join(workdir, 'metrics.jsonl'), 'rb') as f:
        assert not f.read().endswith(b'\n'), 'no torn line was left'
  proc = _run(workdir, cache)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'DONE 12 {resumed_from}' in proc.stdout

  state, meta = load_checkpoint(workdir)
  assert meta['update'] == want_meta['update'] == 12
  assert meta['sampler'] == want_meta['sampler']
  assert meta['hooks'] == want_meta['hooks']  # the noise tracker's too
  leaves, want = jax.tree.leaves(state), jax.tree.leaves(want_state)
  assert len(leaves) == len(want)
  for a, b in zip(leaves, want, strict=True):
    np.testing.assert_array_equal(a, b)  # bitwise: params and opt state
  assert _untimed(workdir) == want_records


@pytest.fixture(scope='module')
def reference_with_hook(tmp_path_factory, cache):
  workdir = str(tmp_path_factory.mktemp('uninterrupted_hook'))
  proc = _run(workdir, cache, hooks='user_hook')
  assert proc.returncode == 0, proc.stderr[-3000:]
  state, meta = load_checkpoint(workdir)
  # The hook ran at updates 3, 6, 9, 12: four norms summed.
  assert meta['hooks']['SumOfNorms']['count'] == 4
  return state, meta, _untimed(workdir)


@pytest.mark.parametrize(
  'kills, resumed_from',
  [
    # Mid-accumulation after checkpoint 4 (the hook ran once, at 3).
    (['step:9'], 4),
    # Inside the write of checkpoint 8; the process resumed from 4 dies
    # right after its first checkpoint, 8, committed.
    (['in_save:2', 'after_save:1'], 8),
  ],
)
def test_killed_runs_with_hooks_resume_to_the_uninterrupted_result(
  tmp_path, cache, reference_with_hook, kills, resumed_from
):
  want_state, want_meta, want_records = reference_with_hook
  workdir = str(tmp_path / 'run')
  for kill in kills:
    proc = _run(workdir, cache, kill, hooks='user_hook')
    assert proc.returncode == -signal.SIGKILL, (kill, proc.stderr[-3000:])
  proc = _run(workdir, cache, hooks='user_hook')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'DONE 12 {resumed_from}' in proc.stdout
  state, meta = load_checkpoint(workdir)
  # The noise tracker's and the user hook's states, bitwise.
  assert meta['hooks'] == want_meta['hooks']
  for a, b in zip(
    jax.tree.leaves(state), jax.tree.leaves(want_state), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  records = _untimed(workdir)
  assert records == want_records
  assert [r['step'] for r in records if 'norm_sum' in r] == [3, 6, 9, 12]


# The plateau policy on the evaluation loss: each update adds the latest
# evaluation (the plateau monitor's value, fed to the step) to the
# optimizer state's epoch sum, so a resume that lost the value of the
# evaluation at update 7 would add NaN to it at updates 9 and 10.
PLATEAU = dict(
  CONFIG,
  lr='reduce_on_plateau(0.1,factor=0.5,patience=0,mode=max)',
  plateau_metric='test_loss',
)


@pytest.fixture(scope='module')
def reference_plateau(tmp_path_factory, cache):
  workdir = str(tmp_path_factory.mktemp('uninterrupted_plateau'))
  proc = _run(workdir, cache, config=PLATEAU)
  assert proc.returncode == 0, proc.stderr[-3000:]
  state, meta = load_checkpoint(workdir)
  records = _untimed(workdir)
  # The monitor holds the last evaluation's loss.
  assert meta['hooks']['plateau_monitor'] == records[-1]['loss']
  return state, meta, records


def test_a_killed_plateau_run_resumes_to_the_uninterrupted_result(
  tmp_path, cache, reference_plateau
):
  want_state, want_meta, want_records = reference_plateau
  workdir = str(tmp_path / 'run')
  # Right after checkpoint 8 committed: the evaluation of update 7 must
  # come back from it.
  proc = _run(workdir, cache, 'after_save:2', config=PLATEAU)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  proc = _run(workdir, cache, config=PLATEAU)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'DONE 12 8' in proc.stdout
  state, meta = load_checkpoint(workdir)
  assert meta['hooks'] == want_meta['hooks']
  for a, b in zip(
    jax.tree.leaves(state), jax.tree.leaves(want_state), strict=True
  ):
    np.testing.assert_array_equal(a, b)  # the policy's epoch sum too
  assert _untimed(workdir) == want_records
