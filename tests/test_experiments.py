"""Experiments: end-to-end smoke runs with tiny configs, and flag checks.

The smoke runs call each experiment's `run(config, workdir)` in-process on
the bundled digits data (1437 training images) for a couple of epochs. The
command-line tests run `python -m experiments.<name>` in a subprocess, where
only that experiment's flags exist, as for a user.
"""

import dataclasses
import json
import math
import os

import numpy as np
import pytest
from _cli import flag_lines, flags_of, run_in_process
from _cli import flagfile as _flagfile
from _cli import run_experiment as _cli

from experiments import _common, _finder, lr_find, lrbench, ramp, sharpness
from lrjax import metrics as lmetrics
from lrjax import studies

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TRAIN = 1437  # digits training split

TINY = _common.CommonConfig(
  dataset='digits',
  model='mlp',
  seeds=(0,),
  epochs=2.0,
  lr=0.1,
  batch_size=32,
  momentum=0.9,
  num_devices=1,
  eval_every=1.0,
  log_every=1,
  noise=False,
)


def _read(path):
  with open(path) as f:
    return f.read()


def _assert_outputs(workdir, figures):
  for name in ('config.json', 'results.json', 'results.md', 'report.md'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  report = _read(os.path.join(workdir, 'report.md'))
  for figure in figures:
    with open(os.path.join(workdir, figure), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n', figure
    assert f'({figure})' in report, figure


# ------------------------------------------------------------ ramp


def test_ramp_end_to_end_and_resume(tmp_path):
  config = ramp.RampConfig(
    common=dataclasses.replace(TINY, seeds=(0, 1)),
    schedules=('decay', 'increase'),
    milestones=(0.5, 1.0, 1.5),
    decay_factor=3.0,
  )
  workdir = str(tmp_path / 'ramp')
  results = ramp.run(config, workdir)
  rows = {row['schedule']: row for row in results['rows']}
  # Hand-computed. Batches keep g = lr (N/B - 1) / (1 - m) at constant LR:
  # B_i = N / (1 + (N/32 - 1) / 3**i) = 32, 91.9, 244.5, 547.2, rounded to
  # multiples of 4: 32, 92, 244, 548. Updates by the boundary rule
  # U_i = ceil((T_i - E_{i-1}) / B_i):
  # decay: one stage, ceil(2 * 1437 / 32) = 90 updates, 2880 examples;
  # increase: targets 718.5, 1437, 2155.5, 2874 examples: 23 updates (736),
  # 8 (1472), 3 (2204), 2 (3300).
  assert rows['decay']['num_updates'] == 90
  assert rows['decay']['examples_seen'] == 2880
  assert rows['increase']['num_updates'] == 36
  assert rows['increase']['examples_seen'] == 3300
  assert rows['increase']['fewer_updates_than_decay'] == pytest.approx(2.5)
  assert rows['decay']['seeds'] == 2
  for row in rows.values():
    mean, std = row['test_accuracy']
    assert 0.5 < mean <= 1.0 and std >= 0.0
  claims = results['claims']
  assert [c['claim'].split()[0] for c in claims] == ['increase', 'increase']
  assert claims[1]['held'] is True  # 36 < 90 updates
  # The projection's stages on 8 devices, by hand: decay 90 updates of 32
  # (4 per device); increase 23 x 32, 8 x 92 (12), 3 x 244 (31), 2 x 548
  # (ceil(548 / 8) = 69 per device), no accumulation under the 4096 cap.
  projection = {r['schedule']: r for r in results['projection']['rows']}
  stages = {
    name: [
      (s['batch_size'], s['updates'], s['devices'], s['micro_batch'])
      for s in row['gpu_8_stages']
    ]
    for name, row in projection.items()
  }
  assert stages == {
    'decay': [(32, 90, 8, 4)],
    'increase': [
      (32, 23, 8, 4),
      (92, 8, 8, 12),
      (244, 3, 8, 31),
      (548, 2, 8, 69),
    ],
  }
  assert results['projection']['devices'] == [1, 8, 64, 512]
  assert '## Projected wall time on P devices' in _read(
    os.path.join(workdir, 'report.md')
  )
  _assert_outputs(
    workdir,
    [
      'test_accuracy.png',
      'train_loss.png',
      'schedules.png',
      'projected_wall_time.png',
    ],
  )
  table = _read(os.path.join(workdir, 'results.md'))
  assert '| decay |' in table and '2.50x' in table
  metrics = os.path.join(workdir, 'runs', 'increase', 'seed1', 'metrics.jsonl')
  train, evals = lmetrics.read_columns(metrics)
  assert set(np.unique(train['batch_size'])) == {32, 92, 244, 548}
  assert evals['test']['step'][-1] == 36
  # A second run with the same workdir reuses the finished runs.
  before = os.path.getmtime(metrics)
  again = ramp.run(config, workdir)
  assert os.path.getmtime(metrics) == before
  assert (
    again['rows'][1]['test_accuracy'] == results['rows'][1]['test_accuracy']
  )


def test_ramp_plans_share_the_noise_scale():
  config = ramp.RampConfig(
    common=_common.CommonConfig(epochs=40, lr=0.3, batch_size=32),
    schedules=ramp.SCHEDULES,
    milestones=(10.0, 20.0, 30.0),
    decay_factor=3.0,
    max_batch_size=144,
    increased_lr_factor=3.0,
    increased_momentum=0.95,
  )
  plans = ramp.build_plans(config, N_TRAIN)
  assert plans['decay'].batch.batch_sizes == (32,)
  # B_i = N / (1 + (N/32 - 1) / 3**i) rounded to multiples of 4.
  assert plans['increase'].batch.batch_sizes == (32, 92, 244, 548)
  assert plans['hybrid'].batch.batch_sizes == (32, 92, 144)
  assert plans['constant'].batch.batch_sizes == (32,)
  assert plans['increased_momentum'].momentum == pytest.approx(0.95)
  # g = lr (N/B - 1) / (1 - m) per stage, at the middle epoch of each
  # stage, is the baseline's g0 / 3**stage; rounding the batch to a
  # multiple of 4 moves it by less than 1% (the cap stage of hybrid solves
  # the LR for the rounded batch, so it is exact to float32).
  g0 = 0.3 * (N_TRAIN / 32 - 1) / 0.1
  for name in ('decay', 'increase', 'hybrid', 'increased_lr'):
    plan = plans[name]
    for stage, epoch in enumerate((5, 15, 25, 35)):
      update = plan.batch.update_at_epoch(epoch)
      batch = int(plan.batch.batch_size_at(update))
      lr = float(plan.lr(epoch))
      g = lr * (N_TRAIN / batch - 1) / (1 - plan.momentum)
      assert g == pytest.approx(g0 / 3**stage, rel=1e-2), (name, stage)


def test_ramp_adaptive_grows_toward_the_measured_noise_scale(tmp_path):
  config = ramp.RampConfig(
    common=dataclasses.replace(TINY, noise=True),
    schedules=('decay', 'adaptive'),
    milestones=(0.5, 1.0, 1.5),
    decay_factor=3.0,
    adaptive_every=0.5,
  )
  plans = ramp.build_plans(config, N_TRAIN)
  # The default cap is the increase schedule's last batch, 548 (see above):
  # powers of two times 32 up to it.
  assert plans['adaptive'].batch_sizes == (32, 64, 128, 256, 512)
  assert 'increase' not in plans
  workdir = str(tmp_path / 'ramp')
  results = ramp.run(config, workdir)
  assert [r['schedule'] for r in results['rows']] == ['decay', 'adaptive']
  run_dir = os.path.join(workdir, 'runs', 'adaptive', 'seed0')
  with open(os.path.join(run_dir, 'adaptive.json')) as f:
    decisions = json.load(f)['decisions']
  assert [d['epoch'] for d in decisions] == [0.0, 0.5, 1.0, 1.5]
  train, _ = lmetrics.read_columns(os.path.join(run_dir, 'metrics.jsonl'))
  assert set(np.unique(train['batch_size'])) == {d['batch'] for d in decisions}
  summary = json.loads(_read(os.path.join(run_dir, 'summary.json')))
  assert summary['num_updates'] == train['step'][-1]
  assert 'growing toward B_simple' in summary['batch']
  _assert_outputs(workdir, ['batch_size.png', 'noise_scale.png'])


def test_ramp_config_errors_name_the_field():
  with pytest.raises(ValueError, match='milestones'):
    ramp.RampConfig(common=TINY, milestones=(1.0, 3.0)).validate()
  with pytest.raises(ValueError, match='schedules'):
    ramp.RampConfig(common=TINY, schedules=('bogus',)).validate()
  with pytest.raises(ValueError, match='max_batch_size'):
    ramp.RampConfig(common=TINY, milestones=(1.0,), max_batch_size=8).validate()
  with pytest.raises(ValueError, match='noise'):
    ramp.RampConfig(
      common=TINY, milestones=(1.0,), schedules=('decay', 'adaptive')
    ).validate()
  with pytest.raises(ValueError, match='adaptive_every'):
    ramp.RampConfig(
      common=dataclasses.replace(TINY, noise=True),
      milestones=(1.0,),
      schedules=('decay', 'adaptive'),
      adaptive_every=3.0,
    ).validate()
  for field, value in (
    ('variants_max_batch_size', 8),
    ('project_devices', (0, 8)),
    ('gpu_allreduce_gbytes_per_s', 0.0),
    ('tpu_allreduce_latency_us', -1.0),
  ):
    with pytest.raises(ValueError, match=field):
      ramp.RampConfig(
        common=TINY, milestones=(1.0,), **{field: value}
      ).validate()


def test_ramp_variant_cap_stops_the_increased_lr_batch():
  # Exact form, LR x4: the increased-LR ramp starts at N / (1 + (N/32 - 1)
  # / 4) = 1437 / 11.98 = 120.0 and would grow to 1437 / (1 + 43.9 / 12) =
  # 308.4 at epoch 1 (decay_factor 3); the cap holds it at 160.
  config = ramp.RampConfig(
    common=TINY,
    schedules=('decay', 'increased_lr'),
    milestones=(1.0,),
    decay_factor=3.0,
    variants_max_batch_size=160,
  )
  plans = ramp.build_plans(config, 1437)
  assert plans['increased_lr'].batch.batch_sizes == (120, 160)


# ------------------------------------------------------------ lrbench


def _worst_class_accuracy(probs, labels):
  pred = probs.argmax(axis=1)
  return min(np.mean(pred[labels == c] == c) for c in np.unique(labels))


def test_lrbench_end_to_end(tmp_path):
  config = lrbench.LrBenchConfig(
    common=TINY,
    policy=(
      'constant(0.1)',
      'reduce_on_plateau(0.1,factor=0.5,patience=0)',
      'cosine({lr},length=2)',
    ),
    target_accuracy=0.9,
    metric=(_worst_class_accuracy,),
    finder=_finder.FinderConfig(
      finder_min_lr=1e-3, finder_max_lr=10.0, finder_steps=30
    ),
  )
  workdir = str(tmp_path / 'lrbench')
  results = lrbench.run(config, workdir)
  rows = results['rows']
  # One seed: ranked by position, the ranking itself not tested.
  assert [r['rank'] for r in rows] == [1, 2, 3]
  assert [r['tied'] for r in rows] == [None, None, None]
  assert 'the ranking is **not tested (1 seed)**' in _read(
    os.path.join(workdir, 'report.md')
  )
  top1 = [r['top1'][0] for r in rows]
  assert top1 == sorted(top1, reverse=True)
  kinds = {r['kind'] for r in rows}
  assert kinds == {'formula', 'state', 'exploration'}
  explored = next(r for r in rows if r['kind'] == 'exploration')
  test = json.loads(
    _read(os.path.join(workdir, 'range_test', 'range_test.json'))
  )
  assert explored['text'] == f'cosine({test["suggested_lr"]:.4g},length=2)'
  for r in rows:
    assert 0 <= r['top1'][0] <= r['top5'][0] <= 1
    assert 0 <= r['_worst_class_accuracy'][0] <= r['top1'][0]
    assert r['num_updates'][0] == 90
  _assert_outputs(
    workdir,
    [
      'lr_curves.png',
      'accuracy_vs_epochs.png',
      'accuracy_vs_cost.png',
    ],
  )
  # Every policy made 90 updates: a plot against updates would say nothing.
  assert not os.path.exists(os.path.join(workdir, 'accuracy_vs_updates.png'))
  assert 'accuracy_vs_updates.png' not in results['figures']


# ------------------------------------------------------------ sharpness


def _start_point_sharpness(run_dir, eps, subspace_dim, seed=0):
  """eps-sharpness at the documented start of the box maximisation.

  The maximiser starts at y0 = b/2 sign(A^T grad f(x)) (a Rademacher sign
  from `seed` where the gradient is 0), b = eps (|A^+ x| + 1), A = I in full
  space, and only climbs from there (L-BFGS-B descends on -f), so a run's
  sharpness is at least 100 (f(x + A y0) - f(x)) / (1 + f(x)). Computed here
  from the run's saved parameters with the model applied directly (the MLP
  on digits, eval mode, mean cross-entropy of the whole training set).

  Returns:
    f(x), the training accuracy, the full-space and the subspace
    start-point sharpness.
  """
  import jax
  import jax.numpy as jnp
  import optax
  from jax.flatten_util import ravel_pytree

  from lrjax import models
  from lrjax.sharpness import random_subspace

  params = studies.load_variables(os.path.join(run_dir, 'variables.npz'))
  params = params['params']
  batch = _common.load_split(TINY, 'train', seed).take(np.arange(N_TRAIN))
  model = models.get('mlp', num_classes=10)
  x, unravel = ravel_pytree(params)

  def logits(v):
    return model.apply({'params': unravel(v)}, batch['image'], train=False)

  def f(v):
    return optax.softmax_cross_entropy_with_integer_labels(
      logits(v), batch['label']
    ).mean()

  f0, grad = jax.value_and_grad(f)(x)
  accuracy = float(np.mean(np.argmax(logits(x), -1) == batch['label']))
  out = [float(f0), accuracy]
  for a in (None, random_subspace(x.shape[0], subspace_dim, seed)):
    if a is None:
      coords, g = np.asarray(x, np.float64), np.asarray(grad)
    else:
      a64 = np.asarray(a, np.float64)
      coords = np.linalg.lstsq(a64, np.asarray(x, np.float64), rcond=None)[0]
      g = np.asarray(a).T @ np.asarray(grad)
    b = eps * (np.abs(coords) + 1)
    coin = jax.random.rademacher(jax.random.key(seed), b.shape, jnp.float32)
    y0 = jnp.asarray(0.5 * b * np.where(g == 0, coin, np.sign(g)), jnp.float32)
    shift = y0 if a is None else a @ y0
    out.append(float((f(x + shift) - f0) / (1 + f0) * 100))
  return tuple(out)


SHARP = sharpness.SharpnessConfig(
  common=TINY,
  small_batch=16,
  large_batch=144,
  protocols=('target_loss', 'equal_epochs'),
  target_loss=0.2,
  loss_check_epochs=1.0,
  max_epochs=3.0,
  sharpness_eps=(1e-3,),
  subspace_dim=10,
  sharpness_iters=2,
  hessian_iters=3,
  interp_points=5,
)


def _assert_no_pickle(workdir):
  """Nothing in `workdir` runs code when read: no pickle file, and every
  `.npz` loads without pickle."""
  npz = 0
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as fh:
        head = fh.read(2)
      # Pickle protocols 2-5 start with PROTO (0x80) and the protocol byte.
      assert not (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5), (
        path
      )
      assert not name.endswith(('.pkl', '.pickle')), path
      if name.endswith('.npz'):
        with np.load(path, allow_pickle=False) as data:
          for key in data.files:
            assert data[key].dtype != object, (path, key)
        npz += 1
  assert npz > 0


def test_variables_npz_round_trip(tmp_path):
  path = str(tmp_path / 'variables.npz')
  variables = {
    'params': {'Dense_0': {'kernel': np.arange(6.0).reshape(2, 3)}},
    'batch_stats': {'BatchNorm_0': {'mean': np.float32([1, 2])}},
  }
  studies.save_variables(path, variables)
  back = studies.load_variables(path)
  assert set(back) == {'params', 'batch_stats'}
  np.testing.assert_array_equal(
    back['params']['Dense_0']['kernel'], np.arange(6.0).reshape(2, 3)
  )
  assert back['batch_stats']['BatchNorm_0']['mean'].dtype == np.float32
  with np.load(path, allow_pickle=False) as data:
    assert sorted(data.files) == [
      'batch_stats/BatchNorm_0/mean',
      'params/Dense_0/kernel',
    ]


def _sharp_run_dir(workdir, protocol, label):
  return os.path.join(
    workdir, 'runs', protocol, label.replace(' ', '_'), 'seed0'
  )


def test_sharpness_end_to_end(tmp_path):
  workdir = str(tmp_path / 'sharpness')
  results = sharpness.run(SHARP, workdir)
  rows = {(r['protocol'], r['regime']): r for r in results['rows']}
  assert len(rows) == 4
  assert rows['equal_epochs', 'small batch']['batch_size'] == 16
  assert rows['equal_epochs', 'large batch']['batch_size'] == 144
  # Equal epochs, updates by hand: ceil(2 * 1437 / 16) = 180,
  # ceil(2874 / 144) = 20.
  for label, updates in (('small batch', 180), ('large batch', 20)):
    assert rows['equal_epochs', label]['num_updates'][0] == updates, label
    assert rows['equal_epochs', label]['stopped_by'] == ['epochs']
  # Checks at the first update that completes k epochs: batch 16 every
  # ceil(1437 / 16) = 90 updates, batch 144 every ceil(1437 / 144) = 10.
  for label, per_epoch in (('small batch', 90), ('large batch', 10)):
    with open(
      os.path.join(
        _sharp_run_dir(workdir, 'target_loss', label), 'stopping.json'
      )
    ) as f:
      stopping = json.load(f)
    losses = [c['train_loss'] for c in stopping['checks']]
    steps = [c['step'] for c in stopping['checks']]
    assert steps == [per_epoch * (k + 1) for k in range(len(steps))]
    # The run stopped at the first check at or below 0.2, or at epoch 3.
    below = [k for k, v in enumerate(losses) if v <= 0.2]
    assert len(losses) == (below[0] + 1 if below else 3), losses
    expected = 'target_loss' if below else 'max_epochs'
    assert stopping['stopped'] == expected
    assert rows['target_loss', label]['stopped_by'] == [expected]
    assert rows['target_loss', label]['num_updates'][0] == steps[-1]
  for (protocol, label), row in rows.items():
    run_dir = _sharp_run_dir(workdir, protocol, label)
    with open(os.path.join(run_dir, 'sharpness.json')) as f:
      measured = json.load(f)
    loss, accuracy, full, sub = _start_point_sharpness(run_dir, 1e-3, 10)
    # Measured at the saved parameters, on the whole training set.
    assert measured['measured_examples'] == N_TRAIN
    assert measured['measured_loss'] == pytest.approx(loss, rel=1e-5)
    assert row['train_loss'][0] == pytest.approx(loss, rel=1e-5)
    assert row['train_accuracy'][0] == pytest.approx(accuracy, abs=1e-6)
    # The maximiser only climbs from its start, a point of positive value.
    assert 0 < full <= row['sharpness_full_0.001'][0] + 1e-4, label
    assert 0 < sub <= row['sharpness_subspace_0.001'][0] + 1e-4, label
    # From y = 0 the ascent starts at phi = 0 and only climbs.
    assert row['sharpness_full_0.001_from_zero'][0] >= 0.0
    assert math.isfinite(row['top_eigenvalue'][0])
    if protocol == 'target_loss':
      with open(os.path.join(run_dir, 'stopping.json')) as f:
        last = json.load(f)['checks'][-1]['train_loss']
      assert last == pytest.approx(loss, rel=1e-5)
  # The ratio column: the regime's mean phi (y = 0) over the small batch's.
  for protocol in SHARP.protocols:
    small = rows[protocol, 'small batch']['sharpness_full_0.001_from_zero'][0]
    large = rows[protocol, 'large batch']['sharpness_full_0.001_from_zero'][0]
    ratio = rows[protocol, 'large batch']['ratio_to_small']
    assert ratio['sharpness_full_0.001_from_zero'] == pytest.approx(
      large / small
    )
  interp = results['interpolation']
  assert interp['target_loss']['alphas'] == [-1.0, -0.25, 0.5, 1.25, 2.0]
  # Per protocol: 3 sharpness values (full from y = 0 and from the half
  # box, subspace) + eigenvalue; test accuracy. One seed: none is tested.
  claims = results['claims']
  assert len(claims) == 2 * 5
  assert all(c['held'] is None for c in claims)
  report = _read(os.path.join(workdir, 'report.md'))
  assert 'the whole training set' in report
  assert '**not tested (1 seed)**' in report
  _assert_no_pickle(workdir)
  _assert_outputs(
    workdir,
    [
      'interpolation_target_loss.png',
      'interpolation_equal_epochs.png',
      'test_accuracy.png',
      'training_loss.png',
    ],
  )


def test_sharpness_warm_start_runs_to_each_protocols_length():
  config = dataclasses.replace(SHARP, warm_start_epochs=(0.5, 1.25))
  # --epochs=2 for equal_epochs, --max_epochs=3 for the stopping rule; the
  # large batch 0 means round(1437 / 10) = 144.
  assert sharpness.batch_regimes(config, N_TRAIN, 'equal_epochs') == {
    'small batch': 16,
    'large batch': 144,
    'warm start 0.5': 'stages(16@0.5,144@1.5,n=1437)',
    'warm start 1.25': 'stages(16@1.25,144@0.75,n=1437)',
  }
  config = dataclasses.replace(config, large_batch=0)
  assert sharpness.batch_regimes(config, N_TRAIN, 'target_loss') == {
    'small batch': 16,
    'large batch': 144,
    'warm start 0.5': 'stages(16@0.5,144@2.5,n=1437)',
    'warm start 1.25': 'stages(16@1.25,144@1.75,n=1437)',
  }


def test_sharpness_claims_per_protocol_two_seeds_hand_values():

  config = dataclasses.replace(SHARP, warm_start_epochs=(10.0,))
  keys = sharpness._keys(config)

  def group(label, value, accuracies):
    runs = [
      studies.Run(label, seed, '', {'test_accuracy': a}, {}, {})
      for seed, a in enumerate(accuracies)
    ]
    measures = [{k: v for k in keys} for v in value]
    return runs, measures

  groups = {
    'small batch': group('small batch', [0.5, 0.7], [0.97, 0.98]),
    'large batch': group('large batch', [1.0, 1.2], [0.97, 0.98]),
    'warm start 10': group('warm start 10', [0.9, 1.3], [0.96, 0.99]),
  }
  claims = sharpness._protocol_claims(
    config,
    'target_loss',
    {k: g[0] for k, g in groups.items()},
    {k: g[1] for k, g in groups.items()},
  )
  sharper = [c for c in claims if 'minimum is sharper' in c['claim']]
  assert [c['claim'].split('(')[1].split(',')[0] for c in sharper] == keys
  # Large 1.1 +- 0.141 vs small 0.6 +- 0.141 (sample std): 0.5 beyond the
  # tolerance 2 * 0.141 = 0.283, for every measure (all hold the same).
  assert all(c['held'] is True for c in sharper)
  assert sharper[0]['detail'] == 'large 1.1 vs small 0.6, 1.8x'
  # Warm start 1.1 +- 0.283 vs large 1.1: no difference, not flatter.
  warm = [c for c in claims if 'warm start 10' in c['claim']]
  assert len(warm) == 2 and all(c['held'] is False for c in warm)
  # Equal test accuracies: the large batch does not generalise worse.
  assert claims[-1]['held'] is False
  assert 'tolerance ±1.41)' in claims[-1]['detail']
  assert len(claims) == len(keys) + 2 + 1
  assert all(c['claim'].startswith('target_loss: ') for c in claims)


@pytest.mark.parametrize(
  'changes, flag',
  [
    ({'protocols': ('target_loss', 'bogus')}, '--protocols'),
    ({'protocols': ('equal_epochs', 'equal_epochs')}, '--protocols'),
    ({'protocols': ()}, '--protocols'),
    ({'target_loss': 0.0}, '--target_loss=0.0 must be > 0'),
    ({'loss_check_epochs': 0.0}, '--loss_check_epochs=0.0 must be > 0'),
    ({'loss_check_epochs': 4.0}, '--max_epochs=3.0 must be >= --loss_check'),
    ({'converge_patience': 0}, '--converge_patience=0 must be >= 1'),
    ({'converge_min_improvement': 1.0}, '--converge_min_improvement=1.0'),
    ({'sharpness_examples': -1}, '--sharpness_examples=-1 must be >= 0'),
    ({'warm_start_epochs': (2.5,)}, '--warm_start_epochs=2.5 must be in (0, '),
  ],
)
def test_sharpness_config_errors_name_the_flag(tmp_path, changes, flag):
  config = dataclasses.replace(SHARP, **changes)
  workdir = tmp_path / 'never'
  with pytest.raises(ValueError) as info:
    sharpness.run(config, str(workdir))
  assert flag in str(info.value)
  assert '\n' not in str(info.value)
  assert not workdir.exists()  # checked before anything is written


# ------------------------------------------------------------ lr_find


def test_lr_find_end_to_end(tmp_path):
  config = lr_find.LrFindConfig(
    common=TINY,
    finder=_finder.FinderConfig(
      finder_min_lr=1e-3, finder_max_lr=10, finder_steps=40
    ),
  )
  workdir = str(tmp_path / 'lr_find')
  results = lr_find.run(config, workdir)
  (row,) = results['rows']
  with open(os.path.join(workdir, 'runs', 'seed0', 'range_test.json')) as f:
    curve = json.load(f)
  lrs, smoothed = np.asarray(curve['lrs']), np.asarray(curve['smoothed'])
  assert 2 <= row['updates'] == len(lrs) <= 40
  # The sweep's closed form: 1e-3 * (10 / 1e-3)^(i / 39).
  np.testing.assert_allclose(
    lrs, 1e-3 * 1e4 ** (np.arange(len(lrs)) / 39), rtol=1e-12
  )
  # Read off the recorded curve: a tenth of its minimum, and the steepest
  # and valley points on the sweep at or before that minimum.
  best = int(np.argmin(smoothed))
  assert row['minimum_over_10'] == pytest.approx(lrs[best] / 10, rel=1e-12)
  for key in ('steepest', 'valley'):
    assert np.isclose(lrs, row[key], rtol=1e-12).sum() == 1, key
    assert row[key] <= lrs[best], key
  assert results['suggested_lr'] == pytest.approx(row['minimum_over_10'])
  # The smoothed curve's lag at its minimum, the weights' mean j of
  # 0.98^j, j = 0..best.
  weights = 0.98 ** np.arange(best + 1)
  assert row['ema_lag_at_minimum'] == pytest.approx(
    np.sum(np.arange(best + 1) * weights) / np.sum(weights), rel=1e-9
  )
  _assert_outputs(workdir, ['lr_find.png'])


def test_lr_find_figure_draws_the_reported_suggestion(tmp_path, monkeypatch):
  from lrjax import plots

  drawn = {}

  def spy(results, **kwargs):
    drawn['curves'] = results
    drawn['suggestions'] = kwargs['suggestions']
    return real(results, **kwargs)

  real = plots.plot_lr_finder
  monkeypatch.setattr(plots, 'plot_lr_finder', spy)
  config = lr_find.LrFindConfig(
    common=dataclasses.replace(TINY, seeds=(0, 1)),
    finder=_finder.FinderConfig(
      finder_min_lr=1e-3, finder_max_lr=10, finder_steps=40
    ),
  )
  results = lr_find.run(config, str(tmp_path / 'lr_find'))
  per_seed = [row['minimum_over_10'] for row in results['rows']]
  # The report recommends the geometric mean over seeds; the figure draws
  # that one LR, not seed 0's, over both seeds' curves.
  mean = math.exp((math.log(per_seed[0]) + math.log(per_seed[1])) / 2)
  assert results['suggested_lr'] == pytest.approx(mean, rel=1e-12)
  (lr,) = drawn['suggestions'].values()
  assert lr == pytest.approx(mean, rel=1e-12)
  assert sorted(drawn['curves']) == ['seed 0', 'seed 1']
  report = _read(os.path.join(str(tmp_path / 'lr_find'), 'report.md'))
  assert f'**{mean:.4g}**' in report


# ------------------------------------------------------------ command line


@pytest.mark.parametrize(
  'module, flagfile, bad, name',
  [
    ('ramp', 'digits.cfg', '--lr=-1', '--lr'),
    ('ramp', 'digits.cfg', '--milestones=10,50', '--milestones'),
    ('ramp', 'digits.cfg', '--model=resnet9000', '--model'),
    ('ramp', 'digits.cfg', '--schedules=decay,bogus', '--schedules'),
    ('ramp', 'cifar10.cfg', '--decay_factor=1', '--decay_factor'),
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


def test_lr_find_command_line_caches_the_range_tests_compilation(tmp_path):
  proc = _cli(
    'lr_find',
    tmp_path,
    _flagfile('lr_find_digits.cfg'),
    '--finder_steps=10',
    '--seeds=0,1',
    f'--workdir={tmp_path / "out"}',
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'suggested LR (minimum_over_10)' in proc.stdout
  # The flagfile's relative cache directory, under the working directory.
  cache = tmp_path / 'runs' / 'jax_cache'
  assert cache.is_dir() and any(cache.iterdir())


FLAGFILES = sorted(
  f
  for f in os.listdir(os.path.join(ROOT, 'experiments', 'flagfiles'))
  if f.endswith('.cfg')
)

# Flagfiles whose experiment trains a single run (one seed, one range test):
# nothing to share compiled steps with.
_SINGLE_RUN = {'lr_find_cifar10.cfg'}


@pytest.mark.parametrize('name', FLAGFILES)
def test_flagfiles_of_several_runs_use_the_compilation_cache(name):
  lines = flag_lines(name)
  cached = any(line.startswith('--compilation_cache_dir=') for line in lines)
  if name in _SINGLE_RUN:
    assert '--seeds=0' in lines, name
  else:
    assert cached, f'{name} trains several runs: add --compilation_cache_dir'


def test_ramp_command_line_writes_flags_and_reruns(tmp_path):
  workdir = tmp_path / 'cli'
  args = [
    _flagfile('digits.cfg'),
    '--epochs=1',
    '--milestones=0.5',
    '--seeds=0',
    '--schedules=decay,hybrid',
    '--max_batch_size=64',
    f'--workdir={workdir}',
  ]
  proc = _cli('ramp', tmp_path, *args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  flags_cfg = _read(workdir / 'flags.cfg')
  assert '--epochs=1.0' in flags_cfg and '--milestones=0.5' in flags_cfg
  assert '--max_batch_size=64' in flags_cfg
  # Updates by hand: decay ceil(1437 / 32) = 45; hybrid 23 at batch 32 to
  # epoch 0.5 (736 examples), then 1437 / (1 + (1437/32 - 1) / 3) = 91.9
  # capped at 64: ceil(701 / 64) = 11, 34 in all. So the update claim holds,
  # and every verdict printed is the one in results.json.
  results = json.loads(_read(workdir / 'results.json'))
  updates = {r['schedule']: r['num_updates'] for r in results['rows']}
  assert updates == {'decay': 45, 'hybrid': 34}
  assert 'HELD     hybrid needs fewer parameter updates than decay' in (
    proc.stdout
  )
  # One seed: the accuracy comparison has no seed variation to test against.
  same = 'hybrid reaches the same test accuracy as decay at equal epochs'
  assert f'UNTESTED {same}\n' in proc.stdout
  assert f'{same}: **not tested (1 seed)**' in _read(workdir / 'report.md')
  tags = {True: 'HELD    ', False: 'FAILED  ', None: 'UNTESTED'}
  for claim in results['claims']:
    assert f'{tags[claim["held"]]} {claim["claim"]}\n' in proc.stdout
  config = json.loads(_read(workdir / 'config.json'))
  assert config['schedules'] == ['decay', 'hybrid']
  assert config['common']['epochs'] == 1.0
  # The written flagfile reproduces the run (finished runs are reused).
  again = _cli('ramp', tmp_path, f'--flagfile={workdir}/flags.cfg')
  assert again.returncode == 0, again.stderr[-3000:]
  assert _read(workdir / 'results.md') in again.stdout


def test_cifar10_flagfile_on_synthetic_cifar_shaped_data(tmp_path):
  # The real flagfile, with synthetic 32x32x3 data instead of the TFDS
  # download, and a small CNN and one short schedule pair so that it runs
  # on a CPU in seconds (WideResNet-16-4 compiles for minutes here).
  workdir = tmp_path / 'cifar'
  proc = _cli(
    'ramp',
    tmp_path,
    _flagfile('cifar10.cfg'),
    '--dataset=synthetic',
    '--synthetic_examples=128',
    '--model=cnn',
    '--epochs=1',
    '--milestones=0.5',
    '--seeds=0',
    '--schedules=decay,increase',
    '--batch_size=16',
    '--max_batch_size=64',
    '--eval_every=1',
    '--log_every=1',
    '--nonoise',
    f'--workdir={workdir}',
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(_read(workdir / 'results.json'))
  assert results['num_train_examples'] == 128
  train, _ = lmetrics.read_columns(
    str(workdir / 'runs' / 'increase' / 'seed0' / 'metrics.jsonl')
  )
  # B_1 = 128 / (1 + (128/16 - 1) / 5) = 53.3, rounded to a multiple of 8
  # (cifar10.cfg trains on every device: 2 here, times 4).
  assert set(np.unique(train['batch_size'])) == {16, 56}


@pytest.mark.parametrize(
  'module, flagfile',
  [
    ('ramp', 'cifar10.cfg'),
    ('lrbench', 'lrbench_cifar10.cfg'),
    ('sharpness', 'sharpness_cifar10.cfg'),
    ('lr_find', 'lr_find_cifar10.cfg'),
    ('goyal', 'goyal_cifar10.cfg'),
    ('recipe', 'recipe_cifar10.cfg'),
    ('scaling', 'scaling_cifar10.cfg'),
  ],
)
def test_cifar10_flagfiles_build_valid_configs(tmp_path, module, flagfile):
  # The dry run checks every run's config against the data (the batches
  # grow to 16000), so the synthetic stand-in has CIFAR-10's 50000 training
  # examples, small ones to keep it cheap.
  workdir = tmp_path / 'dry'
  code, _, err = run_in_process(
    module,
    _flagfile(flagfile),
    '--dataset=synthetic',
    '--synthetic_examples=50000',
    '--synthetic_shape=4,4,3',
    '--dry_run',
    f'--workdir={workdir}',
  )
  assert code == 0, err[-3000:]
  config = json.loads(_read(workdir / 'config.json'))
  assert config['common']['model'] == 'wrn16_4'
  assert '--model=wrn16_4' in _read(workdir / 'flags.cfg')
  # Nothing trained or probed: no runs, no recipe.json, no b_simple.json
  # (.lock: the workdir's lock, held while the dry run wrote).
  assert sorted(os.listdir(workdir)) == ['.lock', 'config.json', 'flags.cfg']


@pytest.mark.parametrize(
  'module, flagfile, name',
  [
    ('goyal', 'goyal_cifar10.cfg', '--goyal_batches=4096 is larger'),
    ('recipe', 'recipe_cifar10.cfg', '--random_batches=1024 is larger'),
    ('scaling', 'scaling_cifar10.cfg', '--scaling_batches=1024 is larger'),
  ],
)
def test_cifar10_dry_runs_check_the_batches_against_the_data(
  tmp_path, module, flagfile, name
):
  # 1000 examples: every flagfile's largest batch no longer fits.
  workdir = tmp_path / 'dry'
  code, _, err = run_in_process(
    module,
    _flagfile(flagfile),
    '--dataset=synthetic',
    '--synthetic_examples=1000',
    '--synthetic_shape=4,4,3',
    '--dry_run',
    f'--workdir={workdir}',
  )
  assert code == 1
  assert name in err, err[-2000:]
  assert not workdir.exists()


@pytest.mark.parametrize('name', FLAGFILES)
def test_nested_flagfiles_are_paths_from_the_repository_root(name):
  with open(os.path.join(ROOT, 'experiments', 'flagfiles', name)) as f:
    nested = [
      line.strip().partition('=')[2]
      for line in f
      if line.startswith('--flagfile=')
    ]
  for path in nested:
    assert path.startswith('experiments/flagfiles/base/'), path
    assert os.path.isfile(os.path.join(ROOT, path)), path
  # A flag set twice is the flagfile overriding its base on purpose
  # (--policy is a list: lrbench's flagfiles repeat it).
  names = [line.partition('=')[0] for line in flag_lines(name)]
  twice = {n for n in names if names.count(n) > 1} - {'--policy'}
  overridden = {'sharpness_digits.cfg': {'--weight_decay'}}
  assert twice == overridden.get(name, set()), twice


def test_recipe_cifar10_baseline_is_the_ramp_decay_schedule():
  ramp_flags = flags_of('cifar10.cfg')
  recipe_flags = flags_of('recipe_cifar10.cfg')
  # cifar10.cfg's decay run: --lr divided by --decay_factor at --milestones,
  # at --batch_size, over --epochs.
  gamma = 1 / float(ramp_flags['decay_factor'])
  milestones = ramp_flags['milestones'].replace(',', '/')
  assert recipe_flags['baseline_lr'] == (
    f'multistep({ramp_flags["lr"]},milestones={milestones},gamma={gamma:g})'
  )
  assert recipe_flags['baseline_batch'] == ramp_flags['batch_size']
  shared = (
    'dataset',
    'model',
    'epochs',
    'momentum',
    'optimizer',
    'weight_decay',
    'augment',
    'max_device_batch',
  )
  assert {k: recipe_flags[k] for k in shared} == {
    k: ramp_flags[k] for k in shared
  }
  # The probes cost (range test + noise probe) x probe batch examples
  # (lrjax.recipe.recommend): under 1% of --epochs x 50000.
  probes = (
    int(recipe_flags['recipe_range_steps'])
    + int(recipe_flags['recipe_noise_updates'])
  ) * int(recipe_flags['recipe_probe_batch'])
  assert probes / (float(recipe_flags['epochs']) * 50000) < 0.01


def test_lr_find_on_cifar_shaped_synthetic_data_with_a_cnn(tmp_path):
  # lr_find_cifar10.cfg's CNN path (batch-norm statistics in train mode)
  # on a small stand-in for the data.
  common = dataclasses.replace(
    TINY,
    dataset='synthetic',
    synthetic_examples=64,
    synthetic_shape=(8, 8, 3),
    model='cnn',
    batch_size=8,
  )
  config = lr_find.LrFindConfig(common, _finder.FinderConfig(finder_steps=10))
  results = lr_find.run(config, str(tmp_path / 'lr_find'))
  assert results['suggestion'] == 'minimum_over_10'
  assert 2 <= results['rows'][0]['updates'] <= 10
