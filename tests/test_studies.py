"""lrjax.studies: a study's runs are trained once per seed, reused, refused
for another config, and reported; its files are JSON without NaN and .npz
without pickle."""

import json
import math
import os

import numpy as np
import pytest
from _tasks import synthetic, tiny_config

from lrjax import studies
from lrjax import train as lrtrain


def test_jsonable_table():
  class Point:
    def __str__(self):
      return 'point'

  cases = [
    (np.float32(0.5), 0.5),
    (np.int64(3), 3),
    (float('inf'), None),
    ((1, (2, 3)), [1, [2, 3]]),
    (np.array([[1, 2]]), [[1, 2]]),
    ({1: True}, {'1': True}),
    (Point(), 'point'),
    (None, None),
  ]
  for value, expected in cases:
    assert studies.jsonable(value) == expected, value
  assert type(studies.jsonable(np.int64(3))) is int


def test_write_json_replaces_the_file_and_writes_no_nan(tmp_path):
  path = str(tmp_path / 'r.json')
  studies.write_json(path, {'old': 1})
  studies.write_json(path, {'loss': float('nan'), 'lr': 0.1})
  assert open(path).read() == '{\n  "loss": null,\n  "lr": 0.1\n}\n'
  assert os.listdir(tmp_path) == ['r.json']  # no temporary file left
  assert studies.read_json(path) == {'loss': None, 'lr': 0.1}
  assert studies.read_json(str(tmp_path / 'missing.json')) is None
  (tmp_path / 'bad.json').write_text('{"half": ')
  assert studies.read_json(str(tmp_path / 'bad.json')) is None


def test_markdown_table():
  text = studies.markdown_table(['a', 'b'], [[1, 'x'], [2.5, 'y']])
  assert text == '| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | y |\n'


def test_variables_round_trip_without_pickle(tmp_path):
  variables = {
    'params': {'Dense_0': {'kernel': np.arange(6.0).reshape(2, 3)}},
    'batch_stats': {'mean': np.array([1.0, 2.0], np.float32)},
  }
  path = str(tmp_path / 'v.npz')
  studies.save_variables(path, variables)
  with np.load(path, allow_pickle=False) as data:
    assert sorted(data.files) == ['batch_stats/mean', 'params/Dense_0/kernel']
  back = studies.load_variables(path)
  np.testing.assert_array_equal(
    back['params']['Dense_0']['kernel'],
    variables['params']['Dense_0']['kernel'],
  )
  assert back['batch_stats']['mean'].dtype == np.float32


def _run(summary, test=None):
  return studies.Run('g', 0, '', summary, {}, test or {})


def test_metric_best_worse_and_of():
  # Loss: lower is better, NaN (diverged) never wins and is always worse.
  assert studies.VAL_LOSS.best([2.0, math.nan, 1.5, 1.7]) == 2
  assert studies.VAL_LOSS.worse(2.11, 2.0, 0.1)
  assert not studies.VAL_LOSS.worse(2.09, 2.0, 0.1)
  assert studies.VAL_LOSS.worse(math.nan, 2.0, 10.0)
  # Accuracy: higher is better, read from the summary itself.
  assert studies.ACCURACY.best([0.9, 0.95, math.nan]) == 1
  assert studies.ACCURACY.worse(0.92, 0.95, 0.02)
  assert not studies.ACCURACY.worse(0.94, 0.95, 0.02)
  assert studies.ACCURACY.of(_run({'test_accuracy': 0.875})) == 0.875
  run = _run({'test_metrics': {'bits_per_byte': 2.5}})
  assert studies.VAL_BPB.of(run) == 2.5
  assert math.isnan(studies.VAL_LOSS.of(run))


def test_first_reaching_reads_the_first_logged_hit():
  test = {
    'accuracy': np.array([0.5, 0.8, 0.79, 0.9]),
    'step': np.array([10, 20, 30, 40]),
    'epoch': np.array([0.5, 1.0, 1.5, 2.0]),
  }
  run = _run({}, test)
  assert studies.first_reaching(run, 'accuracy', 0.8) == 20
  assert studies.first_reaching(run, 'accuracy', 0.85, 'epoch') == 2.0
  assert math.isnan(studies.first_reaching(run, 'accuracy', 0.95))
  assert math.isnan(studies.first_reaching(run, 'loss', 0.1))


class _TwoLrs(studies.Study):
  """Two LRs, two seeds each; the report is the mean final train loss."""

  name = 'two_lrs'

  def __init__(self, config, calls):
    super().__init__(config)
    self.calls = calls

  def _train(self, config, workdir, task, overwrite=False):
    self.calls.append(os.path.relpath(workdir))
    return lrtrain.train_and_evaluate(
      config, workdir, task, overwrite=overwrite
    )

  def trials(self):
    return [
      studies.Trial(
        f'lr{lr:g}',
        seeds=(0, 1),
        config=lambda seed, lr=lr: tiny_config(
          lr=lr, batch=32, num_epochs=self.config['epochs'], seed=seed
        ),
        task=lambda seed: synthetic(examples=64),
        train=self._train,
        after=lambda result, workdir: {'updates_seen': result.num_updates},
      )
      for lr in (0.05, 0.1)
    ]

  def analyze(self, runs, workdir):
    updates = {
      k: [r.summary['updates_seen'] for r in v] for k, v in runs.items()
    }
    table = studies.markdown_table(
      ['trial', 'updates'], [[k, v] for k, v in updates.items()]
    )
    return studies.Report({'updates': updates}, table, f'{len(runs)} trials\n')


def test_a_study_trains_each_seed_once_reuses_and_refuses(
  tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)  # calls are relative paths
  workdir = 'study'
  calls = []
  config = {'epochs': 1.0}
  results = studies.run(
    _TwoLrs(config, calls), workdir, files={'flags.cfg': '--epochs=1\n'}
  )
  # 64 examples / batch 32 x 1 epoch = 2 updates, for each of 2 x 2 runs.
  assert results == {'updates': {'lr0.05': [2, 2], 'lr0.1': [2, 2]}}
  assert sorted(calls) == [
    f'study/runs/lr{lr}/seed{s}' for lr in ('0.05', '0.1') for s in (0, 1)
  ]
  written = set(os.listdir(workdir)) - {'.lock'}  # the lock may stay
  assert written == {
    'config.json',
    'flags.cfg',
    'report.md',
    'results.json',
    'results.md',
    'runs',
  }
  assert open(f'{workdir}/flags.cfg').read() == '--epochs=1\n'
  assert json.load(open(f'{workdir}/config.json')) == config
  assert open(f'{workdir}/report.md').read() == '2 trials\n'
  assert open(f'{workdir}/results.md').read().startswith('| trial | updates |')

  calls.clear()  # the same config again: every run is reused, none trains
  assert studies.run(_TwoLrs(config, calls), workdir) == results
  assert calls == []

  # Another config in the same workdir is refused, naming the field.
  with pytest.raises(lrtrain.ConfigMismatchError, match='num_epochs'):
    studies.run(_TwoLrs({'epochs': 2.0}, calls), workdir)
  assert calls == []

  # overwrite trains every run afresh.
  studies.run(_TwoLrs({'epochs': 2.0}, calls), workdir, overwrite=True)
  assert len(calls) == 4
  assert json.load(open(f'{workdir}/results.json'))['updates']['lr0.1'] == [
    4,
    4,
  ]


def test_check_trials_names_the_bad_field_before_training():
  trial = studies.Trial(
    'big',
    seeds=(0,),
    config=lambda seed: tiny_config(batch=128, num_epochs=1.0, seed=seed),
    task=lambda seed: synthetic(examples=64),
  )
  with pytest.raises(ValueError, match='batch'):
    studies.check_trials([trial], num_examples=64)
  seen = []
  ok = studies.Trial(
    'ok',
    seeds=(0, 1),
    config=lambda seed: tiny_config(batch=32, num_epochs=1.0, seed=seed),
    task=lambda seed: synthetic(examples=64),
    check=seen.append,
  )
  studies.check_trials([ok], num_examples=64)
  assert [c.seed for c in seen[0]] == [0, 1]


_USER_STUDY = '''
import dataclasses
from absl import app, flags
from lrjax import studies

flags.DEFINE_string('probe_note', '', 'A flag of the script itself.')


@dataclasses.dataclass(frozen=True)
class Settings:
  probe_steps: int = studies.setting(100, check=studies.at_least(1))
  """Updates of the probe."""
  probe_lrs: tuple[float, ...] = studies.setting(
    (0.1, 1.0), check=studies.positive()
  )
  """LRs tried."""


studies.define_flags(Settings)


class Probe(studies.Study):
  name = 'probe'

  def check(self):
    studies.check_settings(self.config)

  def run(self, context):
    steps = self.config.probe_steps
    return studies.Report(
      {'steps': steps}, f'| steps |\\n|---|\\n| {steps} |\\n', 'done\\n'
    )


check, run, main = studies.entry_points(
  Probe, lambda: studies.read_flags(Settings)
)

if __name__ == '__main__':
  app.run(main)
'''


def _user_study(tmp_path, *args):
  import subprocess
  import sys

  (tmp_path / 'user_study.py').write_text(_USER_STUDY)
  env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_')}
  env['PYTHONPATH'] = os.pathsep.join([str(tmp_path), os.getcwd()])
  return subprocess.run(
    [sys.executable, str(tmp_path / 'user_study.py'), *args],
    capture_output=True,
    text=True,
    cwd=tmp_path,
    env=env,
    check=False,
  )


def test_importing_lrjax_studies_defines_no_flag():
  import subprocess
  import sys

  code = (
    'from absl import flags, logging  # absl.logging defines its own\n'
    'before = set(flags.FLAGS)\n'
    'import lrjax.studies\n'
    'print(sorted(set(flags.FLAGS) - before))\n'
  )
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == '[]'


def test_a_users_study_gets_the_command_line(tmp_path):
  # Help from the attribute docstrings, under the script's --help.
  help_text = _user_study(tmp_path, '--help').stdout  # the script's flags
  assert 'Updates of the probe.' in help_text and 'LRs tried.' in help_text
  # A bad setting: one line naming the flag, before any workdir is made.
  bad = _user_study(tmp_path, '--probe_steps=0')
  assert bad.returncode == 1
  assert bad.stderr.strip().endswith(
    'FATAL Flags error: --probe_steps=0 must be >= 1'
  )
  assert not (tmp_path / 'runs').exists()
  # A run: its flags.cfg repeats it, the table is printed.
  done = _user_study(
    tmp_path, '--probe_steps=7', '--workdir=w', '--probe_note=a'
  )
  assert done.returncode == 0, done.stderr
  assert '| 7 |' in done.stdout and 'report: w/report.md' in done.stdout
  lines = (tmp_path / 'w' / 'flags.cfg').read_text().splitlines()
  assert '--probe_steps=7' in lines and '--probe_lrs=0.1,1.0' in lines
  assert '--workdir=w' in lines
  assert '--probe_note=a' in lines  # the script's own absl flag too
  assert studies.read_json(str(tmp_path / 'w' / 'results.json')) == {'steps': 7}
  again = _user_study(tmp_path, '--flagfile=w/flags.cfg')
  assert again.returncode == 0 and '| 7 |' in again.stdout
