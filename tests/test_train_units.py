"""Units of the trainer's policies: nothing is guessed.

A plain callable (an optax schedule, a lambda) is a schedule of the real
update count, as optax defines it; a Policy of updates (`in_updates`,
`noam`) is used as it is; policy text converts durations in tokens and
updates against the batch schedule; `validate` checks what the trainer
would refuse and warns, once, when a policy's durations do not fit the run.
"""

import json
from unittest import mock

import numpy as np
import optax
import pytest
from _tasks import synthetic, tiny_config

from lrjax import schedules as S
from lrjax.train import _config, _setup, train_and_evaluate

tiny = tiny_config


@pytest.fixture
def warnings(monkeypatch):
  """The absl warnings given, from a clean once-per-message record."""
  monkeypatch.setattr(_config, '_WARNED', set())
  with mock.patch.object(_config.logging, 'warning') as warning:
    yield lambda: [c.args[0] for c in warning.call_args_list]


def test_callables_and_update_policies_are_read_in_real_updates(tmp_path):
  # 256 examples, batch 16 for 10 epochs: 160 updates, each accumulated
  # over two micro-batches of 8 (optax.MultiSteps): the schedules must see
  # one count per real update, not per micro-batch.
  config = tiny(
    batch=16,
    num_epochs=10,
    max_device_batch=8,
    lr=optax.cosine_decay_schedule(0.003, 160),
    momentum=lambda count: 0.5 + 0.4 * (count < 80),
    weight_decay='in_updates(linear(1e-3,end=0,length=160))',
    log_every=1,
  )
  train_and_evaluate(config, str(tmp_path), synthetic())
  with open(tmp_path / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f]
  rows = [r for r in rows if 'lr' in r and 'accum_steps' in r]
  step = np.array([r['step'] for r in rows])
  assert list(step) == list(range(1, 161)) and set(
    r['accum_steps'] for r in rows
  ) == {2}
  # The record of update s holds the values applied at count c = s - 1.
  c = step - 1
  cosine = 0.003 * 0.5 * (1 + np.cos(np.pi * c / 160))
  np.testing.assert_allclose([r['lr'] for r in rows], cosine, atol=2e-9)
  assert rows[0]['lr'] == pytest.approx(0.003)
  assert rows[-1]['lr'] < 1e-6  # count 159 of 160: decayed, not epoch 10
  np.testing.assert_allclose(
    [r['momentum'] for r in rows], np.where(c < 80, 0.9, 0.5), rtol=1e-6
  )
  np.testing.assert_allclose(
    [r['weight_decay'] for r in rows], 1e-3 * (1 - c / 160), atol=1e-9
  )


def test_policies_become_schedules_in_their_own_unit():
  config = tiny(batch='stages(16@2,64@2)')
  run = _setup.batch_schedule(config, 256)
  # 32 updates of 16 (2 epochs), then 8 of 64.
  assert run.num_updates_per_stage == (32, 8)

  def schedule(value):
    return _setup.as_schedule(_setup.policy(value, 'lr', run), run)

  counts = np.array([0, 16, 32, 36, 40])
  optax_fn = optax.linear_schedule(1.0, 0.0, 40)
  for value in (optax_fn, 'in_updates(linear(1,end=0,length=40))'):
    got = [float(schedule(value)(int(u))) for u in counts]
    np.testing.assert_allclose(got, 1 - counts / 40, atol=1e-7)
  # In epochs: epoch(u) = u / 16 up to 2, then 2 + (u - 32) / 4.
  epochs = np.array([0, 1, 2, 3, 4])
  for value in ('linear(1,end=0,length=4)', S.linear(1.0, 0.0, length=4)):
    got = [float(schedule(value)(int(u))) for u in counts]
    np.testing.assert_allclose(got, 1 - epochs / 4, atol=1e-7)
  noam = schedule('noam(512,warmup=10)')
  assert float(noam(9)) == pytest.approx(512**-0.5 * 10**-0.5, rel=1e-6)


def test_validate_applies_the_trainers_checks():
  for lr in ('noam(512,warmup=10)', S.noam(512, warmup=10)):
    tiny(lr=lr).validate()
    tiny(lr=lr).validate(num_train_examples=256)
  with pytest.raises(
    ValueError, match=r"lr='scale\(noam.* is -0.* at update 0"
  ):
    tiny(lr='scale(noam(512,warmup=10),-1)').validate()
  # A plain callable is evaluated in updates when the run is known.
  tiny(lr=optax.cosine_decay_schedule(0.003, 160)).validate(
    num_train_examples=256
  )
  with pytest.raises(ValueError, match=r'is -0.1 at update 0; every value'):
    tiny(lr=lambda count: -0.1 + 0 * count).validate(num_train_examples=256)
  with pytest.raises(ValueError, match=r'fails when called on an int32'):
    tiny(lr=lambda count: 0.1 if count < 5 else 0.0).validate(
      num_train_examples=256
    )


def test_token_durations_convert_exactly_against_the_batch(warnings):
  # 256 sequences of 64 tokens; batch 1Kitok = 16 sequences for 2 epochs.
  # 24Kitok = 24576 tokens = 384 sequences = 1.5 epochs; 4Kitok = 64
  # sequences = 0.25 epochs.
  config = tiny(
    batch='stages(1Kitok@2,seq=64)',
    lr='warmup(cosine(1e-3,length=24Kitok),length=4Kitok)',
  )
  config.validate()
  config.validate(num_train_examples=256)
  run = _setup.batch_schedule(config, 256)
  got = _setup.policy(config.lr, 'lr', run, _setup.seq_len(config.batch))
  assert got == S.in_epochs(S.warmup(S.cosine(1e-3, length=1.5), length=0.25))
  assert warnings() == []
  bad = config.replace(lr='cosine(1e-3,length=100tok)')
  for n in (None, 256):
    with pytest.raises(
      ValueError, match=r'length=100tok: .* use 64 \(1 sequence\) or 128'
    ):
      bad.validate(num_train_examples=n)
  with pytest.raises(ValueError, match='no sequence length is known'):
    tiny(lr='cosine(1e-3,length=4Kitok)').validate(num_train_examples=256)


def test_misfits_are_warned_once(warnings):
  two_epochs = tiny(batch=16, num_epochs=2)  # 32 updates of 16
  two_epochs.replace(lr='cosine(0.003,length=300)').validate(
    num_train_examples=256
  )
  assert warnings() == [
    'lr=cosine(0.003,length=300): cosine length=300 ends at epoch 300, '
    'after the run ends (epoch 2): the run stops before it; shorten it or '
    'lengthen the run'
  ]
  # Once per message: again in validate, and where the trainer builds it.
  two_epochs.replace(lr='cosine(0.003,length=300)').validate(
    num_train_examples=256
  )
  run = _setup.batch_schedule(two_epochs, 256)
  _setup.policy('cosine(0.003,length=300)', 'lr', run)
  assert len(warnings()) == 1
  two_epochs.replace(lr=S.warmup(S.constant(0.1), length=3)).validate(
    num_train_examples=256
  )
  assert warnings()[1] == (
    'lr=warmup(constant(0.1),length=3): its warmup (warmup length=3) ends '
    'at epoch 3, not before the run ends (epoch 2): the value never reaches '
    'its target; shorten the warmup'
  )
  # In updates: noam's warmup, and a milestone after the last update.
  two_epochs.replace(
    momentum='in_updates(multistep(0.9,milestones=8/40,factors=0.5/0.1))'
  ).validate(num_train_examples=256)
  two_epochs.replace(lr='noam(512,warmup=32)').validate(num_train_examples=256)
  assert warnings()[2:] == [
    'momentum=in_updates(multistep(0.9,milestones=8/40,factors=0.5/0.1)): '
    'multistep milestones[1]=40 ends at update 40, after the run ends '
    '(update 32): the run stops before it; shorten it or lengthen the run',
    'lr=noam(512,warmup=32): its warmup (noam warmup=32) ends at update 32, '
    'not before the run ends (update 32): the value never reaches its '
    'target; shorten the warmup',
  ]


def test_policies_that_fit_are_not_warned_about(warnings):
  config = tiny(batch='stages(16@1,32@1)')  # 16 + 8 updates, 2 epochs
  for lr in (
    'warmup(cosine(0.1,length=1.5),length=0.5)',
    'multistep(0.1,milestones=1/2)',
    'join(constant(0.1)/cosine(0.1,length=1),boundaries=1)',
    'in_updates(warmup(cosine(0.1,length=20),length=4))',
    'warmup(cosine(0.1,length=8up),length=16up)',
    optax.cosine_decay_schedule(0.1, 1000),  # no known durations
  ):
    config.replace(lr=lr).validate(num_train_examples=256)
  assert warnings() == []
  # The warmup shifts the inner clock: 1.5 + 1 epochs end after the run.
  config.replace(lr='warmup(cosine(0.1,length=1.5),length=1)').validate(
    num_train_examples=256
  )
  assert len(warnings()) == 1 and 'ends at epoch 2.5,' in warnings()[0]


def test_compiler_options_reach_every_compiled_step(tmp_path):
  from lrjax.train import config_changes

  # An enum value XLA does not know fails the compilation, naming the option:
  # the options reach the compiler (a dict that is ignored would train).
  bad = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_NONE'}
  with pytest.raises(Exception, match='xla_cpu_experimental_ynn_fusion_type'):
    train_and_evaluate(
      tiny(compiler_options=bad, num_epochs=2.0),
      str(tmp_path / 'bad'),
      synthetic(),
    )
  # A valid option trains; the option is part of the run's fingerprint, and
  # None equals a record written before the field existed.
  base = tiny(num_epochs=2.0)  # 256 examples / 64 x 2 = 8 updates
  ftz = base.replace(compiler_options={'xla_cpu_enable_fast_min_max': False})
  result = train_and_evaluate(ftz, str(tmp_path / 'ok'), synthetic())
  assert result.num_updates == 8
  assert config_changes(base.to_dict(), ftz) == [
    ('compiler_options', None, {'xla_cpu_enable_fast_min_max': False})
  ]
  old = {k: v for k, v in base.to_dict().items() if k != 'compiler_options'}
  assert config_changes(old, base) == []
