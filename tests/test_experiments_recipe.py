"""experiments.goyal, experiments.recipe and experiments.scaling: smoke runs
with tiny configs on the bundled digits data, and flag checks."""

import dataclasses
import json
import math
import os

import numpy as np
import pytest
from _cli import flagfile as _flagfile
from _cli import run_in_process

from experiments import _common, goyal, scaling
from experiments import recipe as recipe_exp
from lrjax import batch as lbatch
from lrjax import rules, schedules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TRAIN = 1437  # digits training split

TINY = _common.CommonConfig(
  dataset='digits',
  model='mlp',
  seeds=(0,),
  epochs=2.0,
  lr=0.05,
  batch_size=32,
  momentum=0.9,
  num_devices=1,
  eval_every=1.0,
  log_every=5,
  noise=False,
)


def _assert_outputs(workdir, figures):
  for name in ('config.json', 'results.json', 'results.md', 'report.md'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, 'report.md')) as f:
    report = f.read()
  for figure in figures:
    with open(os.path.join(workdir, figure), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n', figure
    assert f'({figure})' in report, figure


def test_goyal_end_to_end(tmp_path):
  config = goyal.GoyalConfig(
    common=TINY,
    goyal_batches=(32, 64),
    goyal_variants=('none', 'warmup'),
    goyal_base_batch=32,
    goyal_warmup_epochs=0.5,
    goyal_lr_factors=(1.0, 2.0),
  )
  workdir = str(tmp_path / 'goyal')
  results = goyal.run(config, workdir)
  rows = {(r['variant'], r['batch']): r for r in results['rows']}
  # Hand-computed policies: warmup at batch 64 doubles 0.05 after 0.5 epochs.
  assert rows[('none', 64)]['lr'] == 'cosine(0.05,length=2)'
  assert rows[('warmup', 32)]['lr'] == 'cosine(0.05,length=2)'
  assert rows[('warmup', 64)]['lr'] == (
    'warmup(cosine(0.1,length=1.5),length=0.5,start=0.5)'
  )
  policy = schedules.parse(rows[('warmup', 64)]['lr'])
  np.testing.assert_allclose(
    [float(policy(t)) for t in (0.0, 0.5, 2.0)], [0.05, 0.1, 0.0], atol=1e-7
  )
  # Updates: ceil(2 epochs * 1437 / B) with whole batches per update.
  for (_, b), row in rows.items():
    assert row['updates'] == math.ceil(2 * N_TRAIN / b)
  # The breakdown follows from the table's means.
  for v in ('none', 'warmup'):
    means = [rows[(v, b)]['test_accuracy_mean'] for b in (32, 64)]
    assert results['breakdown_batch'][v] == rules.breakdown_batch(
      (32, 64), means, 0.02
    )
  assert results['b_simple'] > 0
  assert set(results['smith_le']) == {'1.0', '2.0'}
  _assert_outputs(workdir, ['goyal.png', 'smith_le.png'])
  # 2 variants x 2 batches + LR x2 x 2 batches; 'none' at x1 is shared.
  assert len(os.listdir(os.path.join(workdir, 'runs'))) == 6
  again = goyal.run(config, workdir)  # finished runs are reused
  assert again['rows'] == results['rows']


def test_recipe_experiment_end_to_end(tmp_path):
  config = recipe_exp.RecipeConfig(
    common=TINY,
    recipe_probe_batch=32,
    recipe_range_steps=30,
    recipe_noise_updates=10,
    baseline_lr='cosine(0.05,length=2)',
    baseline_batch=32,
    random_trials=2,
    random_batches=(32, 64),
  )
  workdir = str(tmp_path / 'recipe')
  results = recipe_exp.run(config, workdir)
  chosen = results['recipes'][0]
  schedules.parse(chosen['lr'])
  assert lbatch.parse(chosen['batch']).num_examples == N_TRAIN
  assert chosen['budget_examples'] == 2 * N_TRAIN
  assert chosen['probe_fraction'] == pytest.approx(
    chosen['probe_examples'] / (2 * N_TRAIN)
  )
  # Equal total compute: each of the 2 trials gets half of budget + probes.
  epochs = float(
    f'{(2 * N_TRAIN + chosen["probe_examples"]) / N_TRAIN / 2:.4g}'
  )
  trials = results['random_trials'][0]
  assert [(t['lr'], t['batch']) for t in trials] == recipe_exp.draws(config, 0)
  for i, trial in enumerate(trials):
    with open(os.path.join(workdir, 'seed0', f'random{i}', 'config.json')) as f:
      saved = json.load(f)
    assert saved['num_epochs'] == epochs
    assert saved['lr'] == f'cosine({trial["lr"]:g},length={epochs:g})'
    assert saved['batch'] == trial['batch'] and trial['batch'] in (32, 64)
    assert 1e-3 <= trial['lr'] <= 1.0
  methods = [r['method'] for r in results['rows']]
  assert methods == ['recipe', 'hand-tuned', 'random search']
  assert len(results['verdict']) == 2
  _assert_outputs(workdir, ['recipe.png', 'random_search.png'])


def test_recipe_only_prints_the_recipe(tmp_path):
  config = recipe_exp.RecipeConfig(
    common=TINY, recipe_range_steps=20, recipe_noise_updates=5, recipe_only=True
  )
  workdir = str(tmp_path / 'only')
  results = recipe_exp.run(config, workdir)
  with open(os.path.join(workdir, 'results.md')) as f:
    text = f.read()
  assert text.startswith(f'lr:    {results["recipe"]["lr"]}\n')
  assert not os.path.exists(os.path.join(workdir, 'seed0', 'recipe'))


def test_scaling_end_to_end(tmp_path):
  config = scaling.ScalingConfig(
    common=dataclasses.replace(TINY, eval_every=1.0),
    scaling_budgets=(1.0, 2.0),
    scaling_lrs=(0.05, 0.2),
    scaling_batches=(32, 64),
    scaling_tolerance=1e9,  # every run is near-optimal: closed-form fits
    scaling_extrapolate=(8.0,),
    scaling_resamples=50,
  )
  workdir = str(tmp_path / 'scaling')
  results = scaling.run(config, workdir)
  assert len(results['grid']) == 8
  # With every run kept, each budget holds the same LRs and batches: the
  # least-squares exponent is 0 and the coefficient their geometric mean.
  lr_fit, batch_fit = results['fits']['lr'], results['fits']['batch']
  assert lr_fit['exponent'] == pytest.approx(0.0, abs=1e-12)
  assert lr_fit['coefficient'] == pytest.approx(0.1, rel=1e-12)
  assert batch_fit['coefficient'] == pytest.approx(math.sqrt(32 * 64))
  assert results['examples_per_epoch'] == N_TRAIN
  _assert_outputs(workdir, ['scaling.png'])


@pytest.mark.parametrize(
  'module, flagfile, bad, name',
  [
    ('goyal', 'goyal_digits.cfg', '--goyal_batches=64,32', '--goyal_batches'),
    ('scaling', 'scaling_digits.cfg', '--scaling_budgets=2', 'budgets'),
  ],
)
def test_bad_flag_fails_before_training(tmp_path, module, flagfile, bad, name):
  workdir = tmp_path / 'out'
  code, _, err = run_in_process(
    module, _flagfile(flagfile), bad, f'--workdir={workdir}'
  )
  assert code == 1
  assert name in err, err[-2000:]
  assert not workdir.exists()


def test_recipe_only_for_a_wall_clock_budget(tmp_path):
  # The step times are measured, so only their bookkeeping is checked:
  # the examples are the seconds over the modelled seconds per example,
  # and the probes' cost is a share of the seconds.
  config = recipe_exp.RecipeConfig(
    common=TINY,
    recipe_range_steps=20,
    recipe_noise_updates=5,
    recipe_only=True,
    budget_seconds=30.0,
  )
  results = recipe_exp.run(config, str(tmp_path / 'seconds'))
  r = results['recipe']
  assert r['budget_seconds'] == 30.0
  assert r['budget_examples'] == pytest.approx(30.0 / r['seconds_per_example'])
  assert r['probe_fraction'] == pytest.approx(r['probe_seconds'] / 30.0)
  assert any(x.startswith('budget 30 s = ') for x in r['reasons'])
  assert lbatch.parse(r['batch']).num_examples == N_TRAIN


def test_probe_batch_must_split_across_the_devices():
  common = dataclasses.replace(TINY, num_devices=3)
  config = recipe_exp.RecipeConfig(common=common, recipe_probe_batch=32)
  with pytest.raises(ValueError, match='multiple of --num_devices=3'):
    config.validate()


def test_wall_clock_budget_needs_recipe_only():
  config = recipe_exp.RecipeConfig(common=TINY, budget_seconds=30.0)
  with pytest.raises(ValueError, match='--budget_seconds=30.0 .*--recipe_only'):
    config.validate()
