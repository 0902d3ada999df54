"""The language-model experiments: plans in tokens, smoke runs, resume, CLI.

The smoke runs train a one-layer transformer of width 32 on 16-byte
sequences of the bundled python_text corpus (prepared once per module in a
temporary data dir), for a few thousand tokens: enough to check the
bookkeeping (updates, tokens, schedules, verdicts, caches), not the
experiments' conclusions. Expected counts come from the boundary rule of
`lrjax.batch.BatchSchedule` worked by hand in the comments.
"""

import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from _cli import flag_lines, flags_of, run_in_process
from _lm_tiny import tiny_common

from experiments import _lm_common, finetune, lm
from lrjax import evidence, studies
from lrjax import metrics as lmetrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LN256 = math.log(256)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  from lrjax import data

  path = str(tmp_path_factory.mktemp('tfds'))
  data.prepare_python_text('docs', path)
  return path


def _tiny(data_dir, cache, **kw):
  base = dict(batch_size=4, max_device_batch=4, noise_every=2)
  return tiny_common(data_dir, cache, **{**base, **kw})


def _read(path):
  with open(path) as f:
    return f.read()


def _png(path):
  with open(path, 'rb') as f:
    return f.read(8) == b'\x89PNG\r\n\x1a\n'


# ------------------------------------------------------------ plans


def test_lm_plans_state_the_budget_in_tokens_by_hand():
  config = lm.LmConfig(
    common=_lm_common.LmCommon(),  # seq 64, batch 12, lr 1e-3
    lr_policies=('cosine', 'wsd', 'constant_cooldown', 'step'),
  )
  config.validate()
  n = 8192  # sequences: the budget of 128 Ki tokens is 2048 = 0.25 epoch
  plans = lm.build_plans(config, n)
  # Constant: 2048 / 12 -> 171 updates, 2052 sequences.
  constant = plans['cosine'].batch
  assert constant.num_updates_per_stage == (171,)
  assert constant.num_examples_total == 2052
  assert plans['cosine'].batch_text == 'stages(768tok@128Kitok,seq=64,n=8192)'
  # GPT-3 ramp 768 -> 3072 tokens (12 -> 48 sequences) in steps of 12
  # over 32 Ki tokens (512 sequences): targets 512/3, 1024/3, 512, 2048
  # rounded up to 171, 342, 512, 2048; updates ceil(171/12) = 15 (180
  # seen), ceil(162/24) = 7 (348), ceil(164/36) = 5 (528), ceil(1520/48)
  # = 32 (2064).
  ramp = plans['ramp'].batch
  assert ramp.batch_size_per_stage == (12, 24, 36, 48)
  assert ramp.num_updates_per_stage == (15, 7, 5, 32)
  assert ramp.num_examples_total == 2064
  text = plans['ramp'].batch_text
  assert text.startswith(
    'linear_ramp(start=768tok,stop=3Kitok,ramp=32Kitok,total=128Kitok,seq=64)'
  )
  from lrjax import batch as lbatch

  back = lbatch.parse(text.split(' = ')[1])
  assert back.batch_size_per_stage == ramp.batch_size_per_stage
  assert back.num_updates_per_stage == ramp.num_updates_per_stage
  # Smith: LR /2 at 50% and 75% becomes batch x2: targets 1024, 1536, 2048;
  # updates ceil(1024/12) = 86 (1032), ceil(504/24) = 21 (1536),
  # ceil(512/48) = 11 (2064).
  smith = plans['increase'].batch
  assert smith.batch_size_per_stage == (12, 24, 48)
  assert smith.num_updates_per_stage == (86, 21, 11)
  assert plans['adaptive'].batch_sizes == (12, 24, 48)
  # Seesaw: the cosine (peak at 1/64 epoch, then 15/64 epoch to 0.1 lr)
  # falls to 2^-k of the peak at 1/64 + 15/64 / pi arccos(2 (2^-k - 0.1)
  # / 0.9 - 1) = 0.141119, 0.187253, 0.225015 epoch: targets 1157, 1534,
  # 1844 sequences. The batch doubles twice to the cap of 3 Ki tokens (48)
  # and the LR falls by sqrt2 each time, then halves at the third cut:
  # updates ceil(1157/12) = 97 (1164 seen), ceil(370/24) = 16 (1548),
  # ceil(500/48) = 11 (2076): 124 against cosine's 171.
  seesaw = plans['seesaw'].batch
  assert seesaw.batch_size_per_stage == (12, 24, 48)
  assert seesaw.num_updates_per_stage == (97, 16, 11)
  assert seesaw.num_examples_total == 2076
  for epoch, factor in (
    (0.1, 1.0),
    (0.15, 1 / math.sqrt(2)),
    (0.2, 0.5),
    (0.24, 0.25),
  ):
    assert float(plans['seesaw'].lr(epoch)) == pytest.approx(
      factor * 1e-3, rel=1e-6
    )
  assert plans['adaptive'].adaptive.every_epochs == pytest.approx(0.0625)
  # The policies over epochs: warmup 8 Ki tokens = 1/64 epoch, total 1/4.
  lr, warm, total = 1e-3, 1 / 64, 0.25

  def at(name, t):
    return float(plans[name].lr(t))

  assert at('cosine', 0.0) == pytest.approx(0.1 * lr, rel=1e-6)
  assert at('cosine', warm) == pytest.approx(lr, rel=1e-6)
  mid = warm + (total - warm) / 2
  assert at('cosine', mid) == pytest.approx(0.55 * lr, rel=1e-5)
  assert at('cosine', total) == pytest.approx(0.1 * lr, rel=1e-5)
  # Cooldown over the last 20% (from epoch 0.2): halfway, 1 - sqrt(1/2)
  # for the 1-sqrt shape and 1/2 for the linear one.
  assert at('wsd', 0.15) == pytest.approx(lr, rel=1e-6)
  assert at('wsd', 0.225) == pytest.approx(lr * (1 - math.sqrt(0.5)), rel=1e-4)
  assert at('constant_cooldown', 0.225) == pytest.approx(0.5 * lr, rel=1e-4)
  assert at('wsd', total) == pytest.approx(0.0, abs=1e-9)
  assert at('step', 0.1) == pytest.approx(lr, rel=1e-6)
  assert at('step', 0.13) == pytest.approx(lr / 2, rel=1e-6)
  assert at('step', 0.2) == pytest.approx(lr / 4, rel=1e-6)
  assert at('increase', 0.2) == pytest.approx(lr, rel=1e-6)


@pytest.mark.parametrize(
  'changes, match',
  [
    (dict(train_tokens=1000), 'train_tokens=1000 .* not a multiple of seq=64'),
    (dict(warmup_tokens=128 * 1024), 'warmup_tokens=131072 must end before'),
    (dict(ramp_stop_tokens=64 * 40), 'must be a multiple of the start'),
    (dict(lr_policies=('cosine', 'noam')), 'lr_policies='),
  ],
)
def test_lm_config_errors_name_the_field(changes, match):
  config = dataclasses.replace(lm.LmConfig(), **changes)
  with pytest.raises(ValueError, match=match):
    config.validate()


def _run(group, seed, losses, updates=100, noise=None, train_loss=None):
  """A finished run with given final losses and logged curves."""
  steps = np.arange(1.0, len(noise) + 1) if noise is not None else np.zeros(0)
  train = {'step': steps}
  if noise is not None:
    train['noise_scale'] = np.asarray(noise, float)
    train['loss'] = np.asarray(train_loss, float)
  summary = {
    'test_metrics': {'loss': losses},
    'num_updates': updates,
  }
  return studies.Run(group, seed, '', summary, train, {})


def test_lm_verdicts_only_where_the_seeds_support_them():
  growing = dict(
    noise=np.linspace(10, 50, 16), train_loss=np.linspace(3, 2, 16)
  )
  two = dataclasses.replace(lm.LmConfig(), batch_schedules=('ramp',))
  two = dataclasses.replace(
    two, common=dataclasses.replace(two.common, seeds=(0, 1))
  )
  runs = {
    'cosine': [_run('cosine', 0, 2.00, 171, **growing)]
    + [_run('cosine', 1, 2.02, 171, **growing)],
    'wsd': [_run('wsd', 0, 1.99, 171), _run('wsd', 1, 2.01, 171)],
    'ramp': [_run('ramp', 0, 2.30, 59), _run('ramp', 1, 2.32, 59)],
  }
  claims = {c['claim'].split()[0]: c for c in lm._claims(runs, two)}
  # WSD: difference -0.01, seeds' std 0.0141 each: tolerance 0.0283.
  assert claims['WSD']['held'] is True
  # Ramp: 2.9x fewer updates but 0.30 nats worse, far beyond 0.0283.
  assert claims['ramp']['held'] is False
  assert '2.90x fewer updates (59 vs 171)' in claims['ramp']['detail']
  # B_simple x5 over a run whose loss falls: rank correlation -1.
  assert claims['B_simple']['held'] is True
  assert 'rank correlation with the loss -1.00' in claims['B_simple']['detail']
  one = dataclasses.replace(
    two, common=dataclasses.replace(two.common, seeds=(0,))
  )
  single = {k: v[:1] for k, v in runs.items()}
  for claim in lm._claims(single, one):
    assert claim['held'] is None and claim['detail'].endswith('1 seed')
  lines = evidence.claim_lines(lm._claims(single, one))
  assert all('**not tested (1 seed)**' in line for line in lines)


# ------------------------------------------------------------ lm smoke


def test_lm_end_to_end_in_tokens_and_reuse(data_dir, tmp_path):
  from lrjax import data as ldata

  common = _tiny(data_dir, str(tmp_path / 'cache'))
  config = lm.LmConfig(
    common=common,
    train_tokens=4096,  # 256 sequences of 16
    eval_every_tokens=2048,
    warmup_tokens=256,
    lr_policies=('cosine',),
    batch_schedules=('constant', 'ramp', 'adaptive'),
    ramp_stop_tokens=256,  # 16 sequences
    ramp_tokens=1024,
    adaptive_every_tokens=2048,
  )
  workdir = str(tmp_path / 'lm')
  results = lm.run(config, workdir)
  rows = {r['run']: r for r in results['rows']}
  assert set(rows) == {'cosine', 'ramp', 'adaptive'}
  # Constant: 256 / 4 = 64 updates. Ramp 4 -> 16 sequences by 4 over 64:
  # targets 22, 43, 64, 256; updates 6 (24), 3 (48), 2 (72), 12 (264).
  assert rows['cosine']['num_updates'] == 64
  assert rows['cosine']['tokens'] == 4096
  assert rows['ramp']['num_updates'] == 23
  assert rows['ramp']['tokens'] == 264 * 16
  train, evals = lmetrics.read_columns(
    os.path.join(workdir, 'runs', 'ramp', 'seed0', 'metrics.jsonl')
  )
  assert set(np.unique(train['batch_size'])) == {4, 8, 12, 16}
  assert set(np.unique(train['micro_batch'])) == {4}  # one compiled shape
  # The loss at initialisation is about ln 256 (small initial logits).
  assert train['loss'][0] == pytest.approx(LN256, abs=0.05)
  assert evals['test']['loss'][-1] < LN256 - 0.5
  # Adaptive: two segments of 128 sequences; the second batch is one of
  # the realisable sizes, at most double the first.
  adaptive_dir = os.path.join(workdir, 'runs', 'adaptive', 'seed0')
  decisions = json.loads(_read(os.path.join(adaptive_dir, 'adaptive.json')))
  assert decisions['sizes'] == [4, 8, 16]
  batches = [d['batch'] for d in decisions['decisions']]
  assert len(batches) == 2 and batches[0] == 4 and batches[1] in (4, 8)
  assert decisions['decisions'][1]['b_simple'] is not None  # measured
  train, _ = lmetrics.read_columns(os.path.join(adaptive_dir, 'metrics.jsonl'))
  assert set(np.unique(train['batch_size'])) == set(batches)
  assert 256 <= rows['adaptive']['tokens'] / 16 < 256 + 2 * batches[1]
  # B_simple in tokens is the logged estimate in sequences times 16.
  train, _ = lmetrics.read_columns(
    os.path.join(workdir, 'runs', 'cosine', 'seed0', 'metrics.jsonl')
  )
  noise = train['noise_scale'][np.isfinite(train['noise_scale'])]
  assert rows['cosine']['b_simple_end_tokens'][0] == pytest.approx(
    noise[-1] * 16
  )
  # The baselines, counted here: add-1/2 unigram and bigram of the split.
  split = ldata.load_text(
    'python_text/docs', split='train', seq_len=16, data_dir=data_dir
  )
  valid = ldata.load_text(
    'python_text/docs', split='validation', seq_len=16, data_dir=data_dir
  )
  tr = split.tokens.astype(np.int64)
  ev = valid.tokens[: valid.num_examples * 16 + 1].astype(np.int64)
  p1 = (np.bincount(tr, minlength=256) + 0.5) / (tr.size + 128)
  assert results['baselines_nats']['unigram'] == pytest.approx(
    -np.log(p1[ev]).mean(), rel=1e-12
  )
  pairs = np.zeros((256, 256))
  np.add.at(pairs, (tr[:-1], tr[1:]), 1)
  p2 = (pairs + 0.5) / (pairs.sum(axis=1, keepdims=True) + 128)
  assert results['baselines_nats']['bigram'] == pytest.approx(
    -np.log(p2[ev[:-1], ev[1:]]).mean(), rel=1e-12
  )
  assert results['eval_sequences'] == 32
  # One seed: every verdict is "not tested (1 seed)".
  report = _read(os.path.join(workdir, 'report.md'))
  assert all(c['held'] is None for c in results['claims'])
  assert report.count('**not tested (1 seed)**') == len(results['claims']) >= 2
  for figure in ('val_loss.png', 'schedules.png', 'noise_scale.png'):
    assert _png(os.path.join(workdir, figure)) and f'({figure})' in report
  assert 'linear_ramp(start=64tok,stop=256tok,ramp=1Kitok' in report
  # A second call reuses every finished run.
  metrics = os.path.join(workdir, 'runs', 'ramp', 'seed0', 'metrics.jsonl')
  before = os.path.getmtime(metrics)
  again = lm.run(config, workdir)
  assert os.path.getmtime(metrics) == before
  assert again['rows'][1]['val_loss'] == results['rows'][1]['val_loss']


def test_lm_seesaw_without_the_noise_tracker_reports_without_it(
  python_docs_dir, tmp_path
):
  # Issue 23: a --nonoise run trained and then crashed in _noise_growth.
  from _lm_tiny import tiny_lm

  common = _tiny(python_docs_dir, str(tmp_path / 'cache'), noise=False)
  # 256 sequences of 16; batch 4 sequences (64 tokens), cap 16 (256).
  config = tiny_lm(
    common, batch_schedules=('constant', 'seesaw'), seesaw_max_tokens=256
  )
  workdir = str(tmp_path / 'lm')
  results = lm.run(config, workdir)
  rows = {r['run']: r for r in results['rows']}
  assert rows['cosine']['num_updates'] == 64
  assert rows['seesaw']['num_updates'] < 64
  assert all('b_simple_end_tokens' not in r for r in rows.values())
  table = _read(os.path.join(workdir, 'report.md'))
  assert 'B_simple at end' not in table and 'noise_scale.png' not in table
  assert not os.path.exists(os.path.join(workdir, 'noise_scale.png'))
  assert 'noise tracker was off' in table
  claims = {c['claim']: c for c in results['claims']}
  assert not any('B_simple' in c for c in claims)
  claim = claims['seesaw saves updates at equal loss against cosine']
  updates = rows['seesaw']['num_updates']
  assert (
    f'{64 / updates:.2f}x fewer updates ({updates:,.0f} vs 64)'
    in (claim['detail'])
  )
  assert claim['held'] is None  # one seed
  train, _ = lmetrics.read_columns(
    os.path.join(workdir, 'runs', 'seesaw', 'seed0', 'metrics.jsonl')
  )
  assert set(np.unique(train['batch_size'])) == {4, 8, 16}
  # LR x 1/sqrt2 per doubling: at batch 8 the peak 1e-3 / sqrt2.
  at8 = train['lr'][train['batch_size'] == 8]
  assert at8.min() == pytest.approx(1e-3 / math.sqrt(2), rel=1e-6)


# ------------------------------------------------------------ finetune


def _grid_row(mode, name, lr, per_seed):
  return {
    'mode': mode,
    'policy': name,
    'lr': lr,
    'final_bits_per_byte': evidence.mean_std(per_seed),
    'final_bits_per_byte_per_seed': per_seed,
    'best_epoch_bits_per_byte': evidence.mean_std(per_seed),
    'confidence_on_correct': (0.5, 0.0),
    'reached_target': '2/2',
    'updates_to_target': (10.0, 0.0),
    'tokens_to_target': (100.0, 0.0),
  }


def test_finetune_contrast_from_a_hand_made_grid():
  config = finetune.FinetuneConfig(
    common=dataclasses.replace(_lm_common.LmCommon(), seeds=(0, 1)),
    lr_grid=(1e-4, 1e-3, 1e-2),
    policies=('constant', 'cosine'),
  )
  # bits/byte (two seeds) per LR 1e-4, 1e-3, 1e-2.
  table = {
    ('finetune', 'constant'): ([3.0, 3.0], [3.2, 3.2], [4.0, 4.0]),
    ('finetune', 'cosine'): ([3.1, 3.1], [3.1, 3.3], [3.9, 3.9]),
    ('scratch', 'constant'): ([6.0, 6.0], [5.0, 5.0], [4.5, 4.5]),
    ('scratch', 'cosine'): ([6.5, 6.5], [5.2, 5.2], [4.1, 4.1]),
  }
  grid = [
    _grid_row(mode, name, lr, values[i])
    for (mode, name), values in table.items()
    for i, lr in enumerate(config.lr_grid)
  ]
  summary = finetune._summary_rows(grid, config)
  best = {(r['mode'], r['policy']): r['best_lr'] for r in summary}
  assert best == {
    ('finetune', 'constant'): 1e-4,
    ('finetune', 'cosine'): 1e-4,  # 3.1 < mean(3.1, 3.3) = 3.2
    ('scratch', 'constant'): 1e-2,
    ('scratch', 'cosine'): 1e-2,
  }
  spread = {(r['mode'], r['policy']): r['lr_spread'] for r in summary}
  assert spread[('finetune', 'constant')] == pytest.approx(1.0)
  assert spread[('scratch', 'cosine')] == pytest.approx(2.4)
  claims = {c['claim']: c for c in finetune._contrast(summary, grid, config)}
  smaller = claims[
    'fine-tuning is best at a smaller LR than training from scratch'
  ]
  assert smaller['held'] is True and 'smaller for 2 of 2' in smaller['detail']
  # Policies at their best LRs: 3.0 / 3.1 (spread 0.1) vs 4.5 / 4.1 (0.4).
  matters = claims[
    'the LR policy matters less in fine-tuning than from scratch'
  ]
  assert (
    matters['held'] is True
    and '0.100 (fine-tune) vs 0.400' in (matters['detail'])
  )
  # Mean LR spread (1.0 + 0.8) / 2 = 0.9 vs (1.5 + 2.4) / 2 = 1.95.
  lr_claim = claims[
    'fine-tuning is less sensitive to the LR than training from scratch'
  ]
  assert (
    lr_claim['held'] is True
    and '0.900 (fine-tune) vs 1.950' in (lr_claim['detail'])
  )
  beats = claims[
    'fine-tuning the pretrained model beats training from scratch at equal '
    'budget'
  ]
  assert beats['held'] is True  # 3.0 vs 4.1, identical seeds: no spread
  # A run that diverged (NaN) ranks last instead of breaking the ranking.
  grid[-1] = _grid_row('scratch', 'cosine', 1e-2, [math.nan, math.nan])
  summary = finetune._summary_rows(grid, config)
  best = {(r['mode'], r['policy']): r['best_lr'] for r in summary}
  assert best[('scratch', 'cosine')] == 1e-3
  claims = finetune._contrast(summary, grid, config)
  assert (
    'best LR averaged over the policies: 0.0001 (fine-tune) vs 0.01'
    in (claims[0]['detail'])
  )


def test_finetune_end_to_end_pretrains_once_and_resumes(
  data_dir, tmp_path, monkeypatch
):
  from lrjax import data as ldata
  from lrjax import train as lrtrain
  from lrjax.train import _loop

  ldata.prepare_python_text('stdlib', data_dir)
  common = _tiny(
    data_dir,
    str(tmp_path / 'cache'),
    batch_size=8,
    max_device_batch=8,
    noise=False,
    checkpoint_every=4,
  )
  config = finetune.FinetuneConfig(
    common=common,
    finetune_corpus='python_text/stdlib',
    finetune_sequences=64,
    pretrain_tokens=2048,  # 128 sequences: 16 updates at batch 8
    pretrain_warmup_tokens=256,
    epochs=3.0,
    lr_grid=(3e-3,),
    policies=('hf_warmup_linear', 'plateau'),
    target_bits_per_byte=7.0,
  )
  # The uninterrupted pretraining, for reference.
  _, reference = finetune.pretrain(config, str(tmp_path / 'reference'))

  # A pretraining interrupted right after its first checkpoint (update 4):
  # what a kill leaves (orbax writes checkpoints atomically).
  save = _loop._Run.save

  def save_then_die(self):
    save(self)
    raise KeyboardInterrupt('killed after the checkpoint')

  monkeypatch.setattr(_loop._Run, 'save', save_then_die)
  workdir = str(tmp_path / 'ft')
  with pytest.raises(KeyboardInterrupt):
    finetune.run(config, workdir)
  monkeypatch.setattr(_loop._Run, 'save', save)
  pretrain_dir = os.path.join(workdir, 'pretrain')
  assert lrtrain.load_meta(pretrain_dir)['update'] == 4
  assert not os.path.exists(os.path.join(pretrain_dir, 'summary.json'))

  results = finetune.run(config, workdir)
  resumed, _ = lrtrain.load_checkpoint(pretrain_dir)
  for a, b in zip(_leaves(reference), _leaves(resumed['params']), strict=True):
    np.testing.assert_array_equal(a, b)
  assert results['pretrain']['tokens'] == 2048

  # Both modes start from their own initialisation: a random model scores
  # about 8 bits per byte on the second domain, the pretrained one less.
  assert results['initial']['scratch']['bits_per_byte'] == pytest.approx(
    8.0, abs=0.1
  )
  assert (
    results['initial']['finetune']['bits_per_byte']
    < results['initial']['scratch']['bits_per_byte'] - 0.2
  )
  grid = {(r['mode'], r['policy']): r for r in results['grid']}
  # 64 sequences, batch 8, 3 epochs: 24 updates.
  assert all(r['num_updates'] == 24 for r in grid.values())
  first = {}
  for mode in finetune.MODES:
    run_dir = os.path.join(
      workdir, 'runs', mode, 'hf_warmup_linear', 'lr0.003', 'seed0'
    )
    train, evals = lmetrics.read_columns(os.path.join(run_dir, 'metrics.jsonl'))
    first[mode] = train['loss'][0]
    # Evaluated after each epoch.
    np.testing.assert_allclose(evals['test']['epoch'], [1.0, 2.0, 3.0])
    # Hugging Face's warmup + linear decay over updates u (epoch u / 8):
    # the logged LR of update u + 1 is the one applied at update u.
    epoch = (train['step'] - 1) / 8
    w = 0.3
    hf = np.where(epoch < w, 3e-3 * epoch / w, 3e-3 * (3 - epoch) / (3 - w))
    np.testing.assert_allclose(train['lr'], hf, rtol=1e-5, atol=1e-9)
  assert first['finetune'] < first['scratch'] - 0.2
  # The plateau policy halves the LR of the third epoch exactly when the
  # loss after the second did not improve on the first's.
  for mode in finetune.MODES:
    run_dir = os.path.join(workdir, 'runs', mode, 'plateau', 'lr0.003', 'seed0')
    train, evals = lmetrics.read_columns(os.path.join(run_dir, 'metrics.jsonl'))
    l1, l2 = evals['test']['loss'][:2]
    third = 3e-3 * (0.5 if l2 >= l1 * (1 - 1e-4) else 1.0)
    epoch = (train['step'] - 1) / 8
    np.testing.assert_allclose(
      train['lr'], np.where(epoch < 2, 3e-3, third), rtol=1e-6
    )
  report = _read(os.path.join(workdir, 'report.md'))
  for figure in ('lr_sensitivity.png', 'curves.png'):
    assert _png(os.path.join(workdir, figure)) and f'({figure})' in report
  assert all(c['held'] is None for c in results['claims'])
  # A second call retrains nothing; another pretraining budget is refused.
  summary = os.path.join(pretrain_dir, 'summary.json')
  before = os.path.getmtime(summary)
  finetune.run(config, workdir)
  assert os.path.getmtime(summary) == before
  other = dataclasses.replace(config, pretrain_tokens=4096)
  with pytest.raises(ValueError, match='another config or task: batch'):
    finetune.run(other, workdir)


def _leaves(tree):
  import jax

  return jax.tree.leaves(tree)


# ------------------------------------------------------------ command line


def _config(module, *argv):
  """``experiments.<module>``'s checked config from ``argv``, parsed in
  process as its entry point parses them (a flagfile's nested flagfiles
  expanded by `flag_lines`)."""
  import importlib

  from absl import flags

  experiment = importlib.import_module(f'experiments.{module}')
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(['prog', *argv])
    config = experiment.get_config()
    experiment.check(config)
  finally:
    flags.FLAGS.unparse_flags()
  return config


@pytest.mark.parametrize(
  'module, flagfile, expected',
  [
    ('lm', 'lm_cpu.cfg', {'lm_layers': 4, 'lm_width': 128, 'seq_len': 64}),
    ('lm', 'lm_gpu.cfg', {'lm_layers': 6, 'lm_width': 384, 'seq_len': 256}),
    ('finetune', 'finetune_cpu.cfg', {'lm_layers': 2, 'lm_width': 64}),
    ('finetune', 'finetune_gpu.cfg', {'lm_layers': 6, 'lm_width': 384}),
    (
      'recipe',
      'recipe_lm_gpu.cfg',
      {'lm_layers': 6, 'lm_width': 384, 'seq_len': 256},
    ),
    ('goyal', 'goyal_lm.cfg', {'lm_layers': 4, 'lm_width': 128, 'seq_len': 64}),
    (
      'goyal',
      'goyal_lm_gpu.cfg',
      {'lm_layers': 6, 'lm_width': 384, 'seq_len': 256},
    ),
  ],
)
def test_flagfiles_build_valid_configs(module, flagfile, expected):
  config = _config(module, *flag_lines(flagfile))
  # The recipe and the Goyal sweep hold experiments.lm's config under 'lm'.
  common = (config.lm if module in ('recipe', 'goyal') else config).common
  for key, value in expected.items():
    assert getattr(common, key) == value, key
  assert common.optimizer == 'adamw'


def test_recipe_lm_gpu_flagfile_is_lm_gpus_task_with_cheap_probes():
  lm_flags = flags_of('lm_gpu.cfg')
  recipe_flags = flags_of('recipe_lm_gpu.cfg')
  assert recipe_flags['recipe_task'] == 'lm'
  # The model, data, optimizer and budget of lm_gpu.cfg; the hand-tuned
  # run is its cosine run (LR, batch, warmup, final fraction).
  shared = [
    'corpus',
    'seq_len',
    'lm_layers',
    'lm_heads',
    'lm_width',
    'lm_dropout',
    'lm_dtype',
    'optimizer',
    'lr',
    'b2',
    'weight_decay',
    'batch_size',
    'max_device_batch',
    'train_tokens',
    'warmup_tokens',
    'final_lr_fraction',
    'eval_every_tokens',
    'eval_sequences',
    'seeds',
  ]
  assert {k: recipe_flags[k] for k in shared} == {
    k: lm_flags[k] for k in shared
  }
  # The probes cost (range test + noise probe) x probe batch sequences
  # (lrjax.recipe.recommend): 300 x 64 x 256 tokens of 128 Mi, 3.7%.
  assert lm_flags['train_tokens'] == '128Mi'
  probe_tokens = (
    (
      int(recipe_flags['recipe_range_steps'])
      + int(recipe_flags['recipe_noise_updates'])
    )
    * int(recipe_flags['recipe_probe_batch'])
    * int(recipe_flags['seq_len'])
  )
  assert probe_tokens / (128 * 2**20) < 0.05
  # The largest batch, devices x max_device_batch x accumulation on one
  # device, is lm_gpu.cfg's largest: 1024 sequences = 256 Ki tokens.
  largest = int(recipe_flags['max_device_batch']) * int(
    recipe_flags['recipe_max_accumulation']
  )
  assert largest * int(recipe_flags['seq_len']) == 256 * 1024
  assert lm_flags['ramp_stop_tokens'] == '256Ki'


@pytest.mark.parametrize(
  'module, bad, name',
  [
    (
      'lm',
      '--train_tokens=100k',
      'train_tokens=100000 (100k) is not a multiple',
    ),
    ('lm', '--lm_width=130', '--lm_width=130 must be a multiple of --lm_heads'),
    (
      'lm',
      '--dataset=cifar10',
      '--dataset is not used by experiments.lm; use --corpus',
    ),
    ('lm', '--epochs=3', 'use --train_tokens'),
    ('finetune', '--lr=0.05', 'use --lr_grid'),
    (
      'finetune',
      '--policies=constant,noam',
      '--policies=constant,noam must be distinct',
    ),
  ],
)
def test_bad_flags_fail_before_training_naming_the_flag(module, bad, name):
  # The entry point builds and checks the config before anything trains
  # or is written (ValueError: one FATAL line; UsageError: absl's usage).
  from absl import app

  with pytest.raises((ValueError, app.UsageError)) as info:
    _config(module, *flag_lines(f'{module}_cpu.cfg'), bad)
  assert name in str(info.value)


def test_lm_common_examples_run():
  import doctest

  result = doctest.testmod(_lm_common, optionflags=doctest.ELLIPSIS)
  assert result.attempted >= 2 and result.failed == 0


def test_every_experiment_imports_into_one_process(tmp_path):
  # Each defines its flags at import; a name defined twice (say
  # --adaptive_max_batch_size by ramp and by lm) is an absl error.
  names = sorted(
    name[:-3]
    for name in os.listdir(os.path.join(ROOT, 'experiments'))
    if name.endswith('.py') and not name.startswith('_')
  )
  assert {'lm', 'finetune', 'ramp'} <= set(names)
  code = '; '.join(f'import experiments.{name}' for name in names)
  env = {**os.environ, 'PYTHONPATH': ROOT, 'PYTHONDONTWRITEBYTECODE': '1'}
  proc = subprocess.run(
    [sys.executable, '-c', code],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize('module', ['lm', 'finetune'])
def test_written_flags_repeat_the_run_with_the_lm_defaults(tmp_path, module):
  # No flagfile: the common flags left out take the LM defaults (AdamW,
  # LR 1e-3, batch 12, one seed), and flags.cfg states them, so that
  # re-running from it builds the same config.
  first = tmp_path / 'first'
  code, _, err = run_in_process(module, '--dry_run', f'--workdir={first}')
  assert code == 0, err[-3000:]
  config = json.loads(_read(first / 'config.json'))
  common = config['common']
  assert (common['optimizer'], common['batch_size']) == ('adamw', 12)
  assert (common['weight_decay'], common['seeds']) == (0.1, [0])
  written = _read(first / 'flags.cfg')
  assert '--optimizer=adamw' in written and '--dataset=digits' in written
  if module == 'finetune':
    assert config['epochs'] == 3.0 and '--epochs=3.0' in written
  again = tmp_path / 'again'
  code, _, err = run_in_process(
    module,
    f'--flagfile={first / "flags.cfg"}',
    f'--workdir={again}',
    '--dry_run',
  )
  assert code == 0, err[-3000:]
  assert json.loads(_read(again / 'config.json')) == config
