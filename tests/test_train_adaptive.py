"""Adaptive batch training (train_adaptive): validation before training, the
growth rule applied at every segment, the schedule in the metrics, resume."""

import json
import math
import os

import jax
import numpy as np
import pytest
from _tasks import AtUpdate, synthetic, tiny_config

from lrjax.train import (
  AdaptiveConfig,
  NoiseConfig,
  _adaptive,
  train_adaptive,
)

TASK = synthetic()
TINY = dict(
  batch=16,
  num_epochs=4,
  log_every=1,
  noise=NoiseConfig(enabled=True, decay=0.5, num_slices=2),
)
ADAPTIVE = AdaptiveConfig(max_batch_size=128, every_epochs=1, max_growth=2.0)


def tiny(**kw):
  return tiny_config(**{**TINY, **kw})


@pytest.mark.parametrize(
  'config, adaptive, match',
  [
    (tiny(batch='stages(16@2,32@2)'), ADAPTIVE, 'batch'),
    (tiny(), AdaptiveConfig(max_batch_size=8), 'adaptive.max_batch_size'),
    (tiny(), AdaptiveConfig(128, every_epochs=0), 'adaptive.every_epochs'),
    (tiny(), AdaptiveConfig(128, every_epochs=5), 'adaptive.every_epochs'),
    (tiny(), AdaptiveConfig(128, kind='odd'), 'adaptive.kind'),
    (tiny(), AdaptiveConfig(128, max_growth=0.5), 'adaptive.*max_growth'),
    (tiny(noise=NoiseConfig()), ADAPTIVE, 'noise.enabled'),
    (tiny(max_updates=3), ADAPTIVE, 'max_updates'),
    # 3 slices do not divide the micro-batch 16.
    (tiny(noise=NoiseConfig(True, num_slices=3)), ADAPTIVE, 'num_slices'),
    # A cap above the 256 training examples.
    (tiny(), AdaptiveConfig(max_batch_size=512), 'adaptive.max_batch_size'),
  ],
)
def test_bad_settings_fail_before_training(tmp_path, config, adaptive, match):
  with pytest.raises(ValueError, match=match):
    train_adaptive(config, adaptive, str(tmp_path), TASK)
  assert not os.path.exists(tmp_path / 'checkpoints')


def _hand_rule(b_simple, current):
  """AdaptiveBatch's decision worked out for sizes 16, 32, 64, 128, growth 2.

  The sizes double, so the largest size not above min(B_simple, 2c, 128) is
  2c once B_simple >= 2c (below 128), and c otherwise (never shrinking).
  """
  if current < 128 and b_simple >= 2 * current:
    return 2 * current
  return current


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('adaptive_full'))
  return workdir, train_adaptive(tiny(), ADAPTIVE, workdir, TASK)


def test_every_decision_follows_the_rule(uninterrupted):
  _, run = uninterrupted
  d = run.decisions
  assert [x['epoch'] for x in d] == [0.0, 1.0, 2.0, 3.0]
  assert d[0]['batch'] == 16 and d[0]['b_simple'] is None
  for prev, nxt in zip(d, d[1:], strict=False):
    assert math.isfinite(nxt['b_simple'])
    assert nxt['batch'] == _hand_rule(nxt['b_simple'], prev['batch'])
  assert run.schedule.batch_size_per_stage == tuple(x['batch'] for x in d)
  # Whole run: 4 epochs of 256 examples, each segment ending within a batch.
  assert 4 * 256 <= run.result.examples_seen < 4 * 256 + 4 * 128


def test_logged_batch_size_is_the_decision_in_force(uninterrupted):
  workdir, run = uninterrupted
  train = [r for r in _records(workdir) if 'split' not in r]
  assert [r['step'] for r in train] == list(
    range(1, run.result.num_updates + 1)
  )
  starts = [x['epoch'] for x in run.decisions]
  for r in train:
    # A record's epoch is at the end of its update: an update ending exactly
    # at a decision's epoch belongs to the segment before it.
    segment = max(i for i, s in enumerate(starts) if s < r['epoch'] - 1e-9)
    assert r['batch_size'] == run.decisions[segment]['batch']
  # Each decision read the B_simple logged at the last update before it.
  by_epoch = {r['epoch']: r for r in train}
  for d in run.decisions[1:]:
    assert by_epoch[d['epoch']]['noise_scale'] == d['b_simple']
  with open(os.path.join(workdir, _adaptive.DECISIONS_FILE)) as f:
    saved = json.load(f)
  assert saved['sizes'] == [16, 32, 64, 128]
  assert saved['decisions'] == [dict(x) for x in run.decisions]


class _Kill(AtUpdate):
  """Interrupts the run after update ``at`` (as a kill would)."""

  def on_step(self, info, value):
    raise KeyboardInterrupt


def test_one_trainer_call_compiles_each_shape_once(uninterrupted):
  _, run = uninterrupted
  # Each shape compiles at most once in the one trainer call: those the
  # decisions used, and perhaps more candidates (16, 32, 64, 128) compiled
  # ahead in the background before the run ended.
  used = {d['batch'] for d in run.decisions}
  compiled = set(run.result.compile_seconds)
  assert used <= compiled <= {16, 32, 64, 128}
  assert run.result.num_compiles == len(compiled)
  assert run.result.batch_schedule == run.schedule


def test_resume_after_a_kill_is_exact(uninterrupted, tmp_path):
  full_dir, full = uninterrupted
  # Batch 16 for the first epoch: the decision at update 16 is in the
  # checkpoint of update 16; the kill at update 20 loses updates 17-20.
  config = tiny(checkpoint_every=8)
  with pytest.raises(KeyboardInterrupt):
    train_adaptive(config, ADAPTIVE, str(tmp_path), TASK, hooks=(_Kill(20),))
  assert not os.path.exists(tmp_path / _adaptive.DECISIONS_FILE)
  resumed = train_adaptive(config, ADAPTIVE, str(tmp_path), TASK)
  assert resumed.result.resumed_from == 16
  assert resumed.decisions == full.decisions
  assert resumed.result.num_updates == full.result.num_updates
  for a, b in zip(
    jax.tree.leaves(full.result.params),
    jax.tree.leaves(resumed.result.params),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
  timing = {'examples_per_sec', 'steps_per_sec', 'eta_sec', 'data_wait_sec'}

  def untimed(workdir):
    return [
      {k: v for k, v in r.items() if k not in timing} for r in _records(workdir)
    ]

  assert untimed(str(tmp_path)) == untimed(full_dir)


def test_accumulated_sizes_keep_one_optimizer_structure(tmp_path):
  # Candidates 16..64 over max_device_batch 16: 32 and 64 accumulate, so
  # MultiSteps wraps every segment, the first (batch 16) too.
  config = tiny(num_epochs=2, max_device_batch=16)
  run = train_adaptive(
    config,
    AdaptiveConfig(max_batch_size=64, every_epochs=1),
    str(tmp_path),
    TASK,
  )
  assert run.result.num_updates == sum(run.schedule.num_updates_per_stage)
  # One micro-batch shape, 16; the optimizer depends on the schedule
  # (MultiSteps' accumulation steps per update), so each change of the
  # batch compiles the step anew: 1 + the changes.
  d = run.decisions
  changes = sum(
    a['batch'] != b['batch'] for a, b in zip(d, d[1:], strict=False)
  )
  assert set(run.result.compile_seconds) == {16}
  assert run.result.num_compiles == 1 + changes
