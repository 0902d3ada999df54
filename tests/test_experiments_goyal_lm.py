"""experiments.goyal on the language model (`--goyal_task=lm`).

A one-layer transformer of width 32 on 16-byte sequences of the bundled
python_text corpus (prepared once per module in a temporary data dir),
4096 tokens a run: the bookkeeping (equal tokens, the rules' peak LRs,
the longer warmup, runs shared between rules, the lower-is-better
breakdown and best batch), not the sweep's conclusions.
"""

import json
import math
import os

import pytest
from _cli import flagfile
from _lm_tiny import tiny_common, tiny_lm
from absl import app, flags

from experiments import _lm_common, goyal
from lrjax import batch as lbatch
from lrjax import schedules

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def data_dir(python_docs_dir):
  return python_docs_dir


def _tiny(data_dir, cache):
  common = tiny_common(data_dir, cache, max_device_batch=8, noise=False)
  return tiny_lm(common, eval_every_tokens=4096)


def test_lm_sweep_end_to_end(data_dir, tmp_path):
  config = goyal.GoyalConfig(
    lm=_tiny(data_dir, str(tmp_path / 'cache')),
    goyal_task='lm',
    goyal_batches=(4, 8),
    goyal_base_batch=4,
    goyal_warmup_tokens='1Ki',
    goyal_tolerance=0.05,
    goyal_lr_factors=(1.0, 2.0),
  )
  workdir = str(tmp_path / 'goyal')
  results = goyal.run(config, workdir)
  assert results['task'] == 'lm' and results['metric'] == 'val_loss'
  rows = {(r['variant'], r['batch']): r for r in results['rows']}
  n = _lm_common.load_split(config.lm.common, 'train').num_examples

  def policy_of(name):
    with open(os.path.join(workdir, 'runs', name, 'seed0', 'config.json')) as f:
      saved = json.load(f)
    return saved, schedules.parse(saved['lr'])

  # Peak LRs anchored at 1e-3 for batch 4: at batch 8 none 1e-3, linear
  # 2e-3, sqrt 1e-3 sqrt(2); reached where the warmup of 256 tokens (16
  # sequences) ends. Every run trains on 256 sequences.
  warm = 16 / n
  for name, peak, batch in [
    ('none_lr1_b8', 1e-3, 8),
    ('linear_lr1_b8', 2e-3, 8),
    ('sqrt_lr1_b8', 1.41421e-3, 8),
    ('none_lr1_b4', 1e-3, 4),
    ('none_lr2_b4', 2e-3, 4),
  ]:
    saved, policy = policy_of(name)
    assert float(policy(warm)) == pytest.approx(peak, rel=1e-6), name
    assert float(policy(0.0)) == pytest.approx(0.1 * peak, rel=1e-6), name
    assert saved['optimizer'] == 'adamw' and saved['b2'] == 0.99
    schedule = lbatch.parse(saved['batch'])
    assert schedule.batch_sizes == (batch,), name
    assert schedule.num_examples_total == 256, name
  # The warmup rule at batch 8: the linear peak after 1024 tokens (64
  # sequences); a quarter of the way, 0.1 + 0.9 / 4 = 0.325 of it.
  _, policy = policy_of('warmup_lr1_b8')
  assert float(policy(64 / n)) == pytest.approx(2e-3, rel=1e-6)
  assert float(policy(16 / n)) == pytest.approx(0.325 * 2e-3, rel=1e-6)
  # 256 sequences: 64 updates at batch 4, 32 at batch 8.
  for (_, b), row in rows.items():
    assert row['updates'] == 256 // b
  # Trained once: every rule at batch 4 (the same policy), LR x2 at batch
  # 8 (the linear run): 1 + 4 + 1 runs.
  assert sorted(os.listdir(os.path.join(workdir, 'runs'))) == [
    'linear_lr1_b8',
    'none_lr1_b4',
    'none_lr1_b8',
    'none_lr2_b4',
    'sqrt_lr1_b8',
    'warmup_lr1_b8',
  ]
  losses = {k: r['val_loss_mean'] for k, r in rows.items()}
  assert len({losses[(v, 4)] for v in goyal.VARIANTS}) == 1
  for row in rows.values():
    assert row['val_bits_per_byte_mean'] == pytest.approx(
      row['val_loss_mean'] / math.log(2), rel=1e-5
    )
  # Breakdown: the loss at batch 8 more than 0.05 nats above batch 4's.
  for v in goyal.VARIANTS:
    broke = losses[(v, 8)] > losses[(v, 4)] + 0.05
    assert results['breakdown_batch'][v] == (8 if broke else None), v
  # Smith & Le: the best batch has the lowest loss; LR x2 at batch 8 is
  # the linear run.
  le = results['smith_le']
  assert le['1.0']['means'] == [losses[('none', 4)], losses[('none', 8)]]
  assert le['2.0']['means'][1] == losses[('linear', 8)]
  for v in le.values():
    assert v['best_batch'] == (4 if v['means'][0] <= v['means'][1] else 8)
  assert results['b_simple'] > 0
  with open(os.path.join(workdir, 'report.md')) as f:
    report = f.read()
  assert 'more than 0.05 nats above batch 4' in report
  assert 'val loss (nats)' in report and 'batch tokens' in report
  for figure in ('goyal.png', 'smith_le.png'):
    assert f'({figure})' in report
    assert os.path.getsize(os.path.join(workdir, figure)) > 0


def _checked_config(monkeypatch, name, *args):
  """goyal's checked config from the flagfile ``name`` and ``args``,
  parsed in process."""
  monkeypatch.chdir(ROOT)  # nested flagfiles are paths from the root
  FLAGS.unparse_flags()
  try:
    FLAGS(['prog', flagfile(name), *args])
    return goyal.check(goyal.get_config()).config
  finally:
    FLAGS.unparse_flags()


@pytest.mark.parametrize(
  'bad, message',
  [
    ('--batch_size=32', 'use --goyal_base_batch and --goyal_batches'),
    ('--goyal_batches=8,2048', 'change --goyal_batches'),
  ],
)
def test_bad_lm_flags_fail_naming_the_flag(monkeypatch, bad, message):
  with pytest.raises((ValueError, app.UsageError), match=message):
    _checked_config(monkeypatch, 'goyal_lm.cfg', bad)


def test_lm_only_flag_is_refused_for_an_image_sweep(monkeypatch):
  # Its default (as a workdir's flags.cfg lists it) passes; another fails.
  digits = 'goyal_digits.cfg'
  ok = _checked_config(monkeypatch, digits, '--goyal_warmup_tokens=32Ki')
  assert ok.lm is None and ok.goyal_batches == (32, 64, 128, 256, 512)
  with pytest.raises(ValueError, match='--goyal_warmup_tokens is for --goyal'):
    _checked_config(monkeypatch, digits, '--goyal_warmup_tokens=8Ki')
