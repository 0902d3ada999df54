"""Experiments resume at the run level and own their workdir: finished runs
of the same config are reused, unfinished ones resume from their last
checkpoint, runs of another config are refused (or retrained with
overwrite); usage errors end the command line with one absl-style line."""

import dataclasses
import json
import logging
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from _cli import run_experiment

from experiments import _common, _finder, lr_find, ramp
from lrjax import metrics as lmetrics
from lrjax.train import ConfigMismatchError, WorkdirLockedError, _checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = {'examples_per_sec', 'steps_per_sec', 'eta_sec', 'data_wait_sec'}

TINY = _common.CommonConfig(
  dataset='digits',
  model='mlp',
  seeds=(0,),
  epochs=1.0,
  lr=0.1,
  batch_size=32,
  num_devices=1,
  eval_every=0.5,
  log_every=5,
  noise=False,
  checkpoint_every=10,
  checkpoint_seconds=0.0,  # checkpoints where the test counts them
)
RAMP = ramp.RampConfig(
  common=TINY, schedules=('decay', 'increase'), milestones=(0.5,)
)


def _untimed(run_dir):
  path = os.path.join(run_dir, 'metrics.jsonl')
  return [
    {k: v for k, v in r.items() if k not in TIMING}
    for r in lmetrics.read_jsonl(path)
  ]


def _run_dirs(workdir):
  return {
    name: os.path.join(workdir, 'runs', name, 'seed0')
    for name in ('decay', 'increase')
  }


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ramp_full'))
  return workdir, ramp.run(RAMP, workdir)


def test_an_interrupted_experiment_resumes_its_runs(
  tmp_path, uninterrupted, monkeypatch, caplog
):
  full_dir, full = uninterrupted
  workdir = str(tmp_path / 'ramp')
  # decay: 45 updates, checkpoints at 10, 20, 30, 40 and 45; increase
  # (batch 32 for 23 updates, then 92): checkpoints at 10, 20, ... The
  # seventh save (increase's update 20) is interrupted: decay has finished,
  # increase resumes from update 10.
  real_save = _checkpoint.Checkpointer.save
  saves = []

  def interrupted(self, update, *args, **kwargs):
    saves.append(update)
    if len(saves) == 7:
      raise KeyboardInterrupt
    return real_save(self, update, *args, **kwargs)

  monkeypatch.setattr(_checkpoint.Checkpointer, 'save', interrupted)
  with pytest.raises(KeyboardInterrupt):
    ramp.run(RAMP, workdir)
  assert saves == [10, 20, 30, 40, 45, 10, 20]
  monkeypatch.setattr(_checkpoint.Checkpointer, 'save', real_save)
  dirs = _run_dirs(workdir)
  assert os.path.exists(os.path.join(dirs['decay'], 'summary.json'))
  assert not os.path.exists(os.path.join(dirs['increase'], 'summary.json'))
  decay_summary = os.path.getmtime(os.path.join(dirs['decay'], 'summary.json'))

  with caplog.at_level(logging.INFO, logger='absl'):
    resumed = ramp.run(RAMP, workdir)
  assert 'Resumed from the checkpoint of update 10' in caplog.text
  summary = os.path.join(dirs['decay'], 'summary.json')
  assert os.path.getmtime(summary) == decay_summary  # reused, not retrained
  for name, run_dir in _run_dirs(full_dir).items():
    assert _untimed(dirs[name]) == _untimed(run_dir), name
  for got, want in zip(resumed['rows'], full['rows'], strict=True):
    assert got['test_accuracy'] == want['test_accuracy']
    assert got['num_updates'] == want['num_updates']


def test_changed_flags_are_refused_and_overwrite_retrains(tmp_path):
  workdir = str(tmp_path / 'ramp')
  config = dataclasses.replace(RAMP, schedules=('decay',))
  ramp.run(config, workdir)
  report_md = pathlib.Path(workdir, 'report.md')
  report = report_md.read_text()
  changed = dataclasses.replace(
    config, common=dataclasses.replace(TINY, lr=0.05)
  )
  with pytest.raises(
    ConfigMismatchError,
    match=r'runs/decay/seed0 holds a finished run of another config or task: '
    r'lr: .*0\.1.*0\.05.*--overwrite',
  ):
    ramp.run(changed, workdir)
  assert report_md.read_text() == report
  results = ramp.run(changed, workdir, overwrite=True)
  summary_json = pathlib.Path(_run_dirs(workdir)['decay'], 'summary.json')
  summary = json.loads(summary_json.read_text())
  assert summary['config']['lr'].startswith('multistep(0.05,')
  assert results['rows'][0]['schedule'] == 'decay'
  assert report_md.read_text() != report


def test_lr_find_reuses_a_range_test_only_with_the_same_inputs(tmp_path):
  workdir = str(tmp_path / 'lr_find')
  config = lr_find.LrFindConfig(
    common=TINY,
    finder=_finder.FinderConfig(
      finder_min_lr=1e-3, finder_max_lr=1, finder_steps=12
    ),
  )
  lr_find.run(config, workdir)
  path = os.path.join(workdir, 'runs', 'seed0', 'range_test.json')
  before = os.path.getmtime(path)
  lr_find.run(config, workdir)
  assert os.path.getmtime(path) == before
  longer = dataclasses.replace(
    config, finder=dataclasses.replace(config.finder, finder_steps=20)
  )
  results = lr_find.run(longer, workdir)
  assert results['rows'][0]['updates'] == 20
  assert (
    json.loads(pathlib.Path(path).read_text())['inputs']['finder']['steps']
    == 20
  )


HOLDER = textwrap.dedent(
  """
  import sys
  from lrjax.train import lock_workdir
  with lock_workdir(sys.argv[1]):
    print('HELD', flush=True)
    sys.stdin.read()
  """
)


@pytest.fixture
def held_workdir(tmp_path):
  """A workdir another process holds (until the test ends)."""
  workdir = str(tmp_path / 'held')
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.Popen(
    [sys.executable, '-c', HOLDER, workdir],
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
    env=env,
  )
  assert proc.stdout.readline().strip() == 'HELD'
  yield workdir
  proc.stdin.close()
  proc.wait()


def test_an_experiment_workdir_held_by_another_process_is_refused(
  held_workdir,
):
  config = lr_find.LrFindConfig(common=TINY)
  with pytest.raises(WorkdirLockedError, match='is in use by another run'):
    lr_find.run(config, held_workdir)
  assert not os.path.exists(os.path.join(held_workdir, 'runs'))


def _cli(module, *args, env=None):
  return run_experiment(module, ROOT, *args, env=env)


@pytest.mark.parametrize(
  'module, args, message',
  [
    (
      'ramp',
      ['--flagfile=experiments/flagfiles/digits.cfg', '--num_devices=64'],
      'FATAL Flags error: --num_devices=64 exceeds the 2 local device(s)',
    ),
    (
      'sharpness',
      [
        '--flagfile=experiments/flagfiles/sharpness_digits.cfg',
        '--large_batch=5000',
      ],
      'FATAL Flags error: --large_batch=5000 is larger than the 1437 '
      'training examples',
    ),
    (
      'ramp',
      ['--flagfile=experiments/flagfiles/digits.cfg', '--dataset=mnist'],
      "FATAL Flags error: dataset 'mnist' is not prepared as array_record",
    ),
    (
      'lr_find',
      ['--flagfile=experiments/flagfiles/lr_find_digits.cfg', 'extra'],
      'FATAL Usage error: unexpected arguments: extra',
    ),
  ],
)
def test_usage_errors_print_one_line_and_no_traceback(
  tmp_path, module, args, message
):
  workdir = tmp_path / 'out'
  empty = tmp_path / 'tfds'
  empty.mkdir()
  proc = _cli(
    module, *args, f'--workdir={workdir}', env={'TFDS_DATA_DIR': str(empty)}
  )
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  fatal = [x for x in proc.stderr.splitlines() if x.startswith('FATAL')]
  assert len(fatal) == 1, proc.stderr
  start, _, rest = message.partition('[...]')
  assert fatal[0].startswith(start) and rest in fatal[0], fatal[0]
  assert not workdir.exists()


def test_a_held_workdir_on_the_command_line_is_one_line(held_workdir):
  proc = _cli(
    'lr_find',
    '--flagfile=experiments/flagfiles/lr_find_digits.cfg',
    f'--workdir={held_workdir}',
  )
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr
  fatal = [x for x in proc.stderr.splitlines() if x.startswith('FATAL')]
  assert len(fatal) == 1, proc.stderr
  assert fatal[0].startswith(f'FATAL Workdir error: workdir {held_workdir} is')
