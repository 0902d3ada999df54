"""experiments.recipe on the language model (`--recipe_task=lm`).

A one-layer transformer of width 32 on 16-byte sequences of the bundled
python_text corpus (prepared once per module in a temporary data dir),
for a few thousand tokens: the bookkeeping (the budget in tokens, the
square-root rule for AdamW, equal compute for the random search, the
hand-tuned run being experiments.lm's cosine run, selection on the
validation loss), not the comparison's conclusions.
"""

import json
import math
import os
import re

import pytest
from _cli import flag_lines, flagfile, run_in_process
from _lm_tiny import tiny_common, tiny_lm
from absl import app, flags

from experiments import _lm_common, lm
from experiments import recipe as recipe_exp
from lrjax import batch as lbatch
from lrjax import schedules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS


@pytest.fixture(scope='module')
def data_dir(python_docs_dir):
  return python_docs_dir


def _tiny(data_dir, cache):
  common = tiny_common(
    data_dir, cache, batch_size=4, max_device_batch=4, noise=False
  )
  return tiny_lm(common)


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def test_lm_recipe_end_to_end(data_dir, tmp_path):
  config = recipe_exp.RecipeConfig(
    lm=_tiny(data_dir, str(tmp_path / 'cache')),
    recipe_task='lm',
    recipe_probe_batch=4,
    recipe_range_steps=12,
    recipe_min_lr=1e-4,
    recipe_max_lr=1.0,
    recipe_noise_updates=4,
    recipe_max_accumulation=4,  # batches up to 4 x 4 = 16 sequences
    random_trials=2,
    random_lr_min=1e-4,
    random_lr_max=1e-2,
    random_batches=(4, 8),
  )
  workdir = str(tmp_path / 'recipe')
  results = recipe_exp.run(config, workdir)
  assert results['task'] == 'lm'
  chosen = results['recipes'][0]
  n = lbatch.parse(chosen['batch']).num_examples
  train = _lm_common.load_split(config.lm.common, 'train')
  assert n == train.num_examples
  # The budget: 4096 tokens / 16 = 256 sequences; the probes: 12 + 4
  # updates of 4 sequences (the range test did not stop early at LR 1).
  assert chosen['budget_examples'] == 256
  assert chosen['probe_examples'] == (12 + 4) * 4
  assert chosen['probe_fraction'] == pytest.approx(64 / 256)
  # AdamW takes the square-root rule: eta_0 = eta_p sqrt(B_0 / B_p).
  assert chosen['rule'] == 'sqrt'
  ratio = chosen['start_batch'] / 4
  assert chosen['peak_lr'] == pytest.approx(
    chosen['probe_lr'] * math.sqrt(ratio), rel=1e-3
  )
  assert chosen['max_batch'] <= 16
  schedules.parse(chosen['lr'])

  # The recipe trained what it chose, on the budget of 256 sequences.
  recipe_cfg = _read_json(
    os.path.join(workdir, 'seed0', 'recipe', 'config.json')
  )
  assert recipe_cfg['lr'] == chosen['lr']
  assert recipe_cfg['optimizer'] == 'adamw' and recipe_cfg['b2'] == 0.99
  rows = {r['method']: r for r in results['rows']}
  assert list(rows) == ['recipe', 'hand-tuned', 'random search']
  # Hand-tuned: experiments.lm's cosine run, 256 / 4 = 64 updates.
  plan = lm.build_plans(config.lm, n)['cosine']
  base_cfg = _read_json(
    os.path.join(workdir, 'seed0', 'hand_tuned', 'config.json')
  )
  assert base_cfg['lr'] == str(plan.lr)
  assert rows['hand-tuned']['updates_mean'] == 64
  assert rows['hand-tuned']['lr'] == [str(plan.lr)]
  # Random search: each trial trains on half of (budget + probes) =
  # (256 + 64) / 2 = 160 sequences = 2560 tokens, a cosine at its LR.
  trials = results['random_trials'][0]
  assert len(trials) == 2
  for i, trial in enumerate(trials):
    assert 1e-4 <= trial['lr'] <= 1e-2 and trial['batch'] in (4, 8)
    saved = _read_json(
      os.path.join(workdir, 'seed0', f'random{i}', 'config.json')
    )
    expected = lm.build_plans(
      recipe_exp.lm_trial_config(config, trial['lr'], trial['batch'], 2560),
      n,
    )['cosine']
    assert saved['lr'] == str(expected.lr)
    assert lbatch.parse(saved['batch']).num_examples_total == 160
  # The best trial has the lowest validation loss.
  best = min(trials, key=lambda t: t['val_loss'])
  assert rows['random search']['val_loss_mean'] == best['val_loss']
  bpb = rows['random search']['val_bits_per_byte_mean']
  assert bpb == pytest.approx(best['val_loss'] / math.log(2), rel=1e-5)
  assert rows['random search']['examples_with_probes_mean'] == 320
  # One seed: no verdict is claimed.
  assert len(results['verdict']) == 2
  assert all('not tested (1 seed)' in v for v in results['verdict'])
  with open(os.path.join(workdir, 'report.md')) as f:
    report = f.read()
  assert 'val loss (nats)' in report and 'tokens (probes incl.)' in report
  for figure in ('recipe.png', 'random_search.png'):
    assert f'({figure})' in report
    assert os.path.getsize(os.path.join(workdir, figure)) > 0


def test_lm_trial_too_short_for_the_warmup_names_the_flags(data_dir):
  config = recipe_exp.RecipeConfig(
    lm=_tiny(data_dir, None), recipe_task='lm', random_trials=20
  )
  with pytest.raises(ValueError, match='--random_trials=20.*warmup_tokens'):
    recipe_exp.lm_trial_config(config, 1e-3, 4, 256)


def test_recipe_lm_flagfile_builds_the_lm_config(tmp_path):
  workdir = tmp_path / 'dry'
  code, _, err = run_in_process(
    'recipe', flagfile('recipe_lm.cfg'), '--dry_run', f'--workdir={workdir}'
  )
  assert code == 0, err[-3000:]
  with open(workdir / 'config.json') as f:
    config = json.load(f)
  common = config['lm']['common']
  assert (common['lm_layers'], common['lm_width'], common['seq_len']) == (
    4,
    128,
    64,
  )
  assert (common['optimizer'], common['lr'], common['batch_size']) == (
    'adamw',
    1e-3,
    12,
  )
  assert config['lm']['train_tokens'] == 256 * 1024
  assert (common['num_devices'], common['clip_norm']) == (2, 1.0)
  assert config['lm']['lr_policies'] == ['cosine']
  assert config['recipe_max_accumulation'] == 8


@pytest.mark.parametrize(
  'bad, name',
  [
    ('--baseline_batch=64', '--baseline_batch is not used'),
    ('--epochs=3', 'use --train_tokens'),
    ('--recipe_max_lr=1e-6', '--recipe_max_lr=1e-06 must be > --recipe_min_lr'),
  ],
)
def test_lm_bad_flags_fail_before_training(bad, name):
  FLAGS.unparse_flags()
  try:
    FLAGS(['prog', *flag_lines('recipe_lm.cfg'), bad])
    with pytest.raises((ValueError, app.UsageError), match=re.escape(name)):
      recipe_exp.check(recipe_exp.get_config())
  finally:
    FLAGS.unparse_flags()
