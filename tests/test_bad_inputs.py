"""Bad inputs are rejected by the library's own validation, before anything
compiles, with a message that names the field (or flag) and what is
allowed: one table of inputs and the message each must produce.

Rows call a function in-process: TrainConfig.validate (with and without the
training split's size), the policy and batch-schedule text parsers, the
scaling rules, the experiments' checks (devices, data, every run's config)
and the experiments' flag validators (absl parses the flags in-process; every
experiment module is imported, as the command line would for its own).
test_experiments.py runs the command line itself for a few of them.
"""

import math

import pytest
from absl import flags

from experiments import (
  _common,
  goyal,
  lr_find,
  lrbench,
  ramp,
  recipe,
  scaling,
  sharpness,
)
from lrjax import batch as lbatch
from lrjax import rules, schedules, studies
from lrjax.train import NoiseConfig, TrainConfig, parse_compiler_options

FLAGS = flags.FLAGS
NAN = math.nan

TINY = dict(num_devices=1)
COMMON = _common.CommonConfig(seeds=(0,), epochs=2.0, num_devices=1)


def config(n=None, **changes):
  """TrainConfig(TINY + changes).validate(num_train_examples=n)."""
  return lambda: TrainConfig(**{**TINY, **changes}).validate(
    num_train_examples=n
  )


def parse_flags(*argv, study=None):
  """Parses the experiments' flags (valid defaults + ``argv``) and builds
  the config: the common one, or ``study``'s checked one (an experiment
  module: its ``get_config`` and ``check``)."""

  def parse():
    FLAGS.unparse_flags()
    try:
      FLAGS(['prog', '--epochs=40', *argv])
      if study is None:
        _common.common_config()
      else:
        study.check(study.get_config())
    finally:
      FLAGS.unparse_flags()

  return parse


def common(**changes):
  import dataclasses

  return dataclasses.replace(COMMON, **changes)


ROWS = [
  # TrainConfig: XLA options are a dict of xla_* names to plain values.
  (
    config(compiler_options={'cpu_ynn': 'x'}),
    "compiler_options={'cpu_ynn': 'x'} must be None or a dict of XLA options",
  ),
  (
    config(compiler_options=['xla_cpu_ftz=true']),
    "compiler_options=['xla_cpu_ftz=true'] must be None or a dict",
  ),
  (
    lambda: parse_compiler_options(['cpu_ftz=1']),
    "'cpu_ftz=1' must be NAME=VALUE naming an XLA option (xla_...)",
  ),
  (
    parse_flags('--compiler_options=xla_cpu_ftz'),
    '--compiler_options=xla_cpu_ftz must be NAME=VALUE items naming XLA '
    'options (xla_...)',
  ),
  # TrainConfig: numbers in range, finite.
  (config(lr=-0.1), 'lr=-0.1 must be finite and >= 0'),
  (config(lr=NAN), 'lr=nan must be finite and >= 0'),
  (config(lr=math.inf), 'lr=inf must be finite and >= 0'),
  (config(lr='-3'), 'lr=-3.0 must be finite and >= 0'),
  (config(lr=None), 'lr=None must be a float, text or policy'),
  (config(lr=True), 'lr=True must be a float, text or policy'),
  (config(momentum=1.0), 'momentum=1.0 must be finite and in [0, 1)'),
  (config(momentum=-0.5), 'momentum=-0.5 must be finite and in [0, 1)'),
  (config(momentum=NAN), 'momentum=nan must be finite and in [0, 1)'),
  (config(weight_decay=-1e-4), 'weight_decay=-0.0001 must be finite and >='),
  (config(weight_decay=math.inf), 'weight_decay=inf must be finite and >= 0'),
  (config(eval_every=NAN), 'eval_every=nan must be a finite number of epochs'),
  (config(eval_every=-1), 'eval_every=-1 must be a finite number of epochs'),
  (config(eval_every=math.inf), 'eval_every=inf must be a finite number'),
  (config(num_epochs=0), 'num_epochs=0 must be a finite number > 0'),
  (config(num_epochs=NAN), 'num_epochs=nan must be a finite number > 0'),
  (config(b2=1.0), 'b2=1.0 must be in [0, 1)'),
  (config(b2=NAN), 'b2=nan must be in [0, 1)'),
  (config(optimizer='rmsprop'), "optimizer='rmsprop' is unknown; use one of"),
  (config(optimizer=lambda: None), 'must take the learning rate as its first'),
  (
    config(optimizer=lambda learning_rate: None, momentum=0.5),
    "has no 'momentum' parameter to receive it; add one to the factory",
  ),
  (config(clip_norm=0.0), 'clip_norm=0.0 must be a finite global norm > 0'),
  (config(clip_norm=NAN), 'clip_norm=nan must be a finite global norm > 0'),
  (config(parallel='pjit'), "parallel='pjit' is unknown; use one of"),
  (config(nan_policy='ignore'), "nan_policy='ignore' is unknown; use one of"),
  (config(max_device_batch=0), 'max_device_batch=0 must be an integer >= 1'),
  (config(num_devices=0), 'num_devices=0 must be an integer >= 1 or None'),
  (config(seed=-1), 'seed=-1 must be an integer >= 0'),
  (config(seed=1.5), 'seed=1.5 must be an integer >= 0'),
  (config(log_every=0), 'log_every=0 must be an integer >= 1'),
  (config(prefetch=-1), 'prefetch=-1 must be an integer >= 0'),
  (config(checkpoint_every=-5), 'checkpoint_every=-5 must be an integer'),
  (config(keep_checkpoints=-1), 'keep_checkpoints=-1 must be an integer >='),
  (config(checkpoint_seconds=-1), 'checkpoint_seconds=-1 must be a finite'),
  (config(checkpoint_seconds=NAN), 'checkpoint_seconds=nan must be a finite'),
  (config(max_updates=0), 'max_updates=0 must be an integer >= 1 or None'),
  (config(eval_batch_size=0), 'eval_batch_size=0 must be an integer >= 1'),
  (config(accumulate='yes'), "accumulate='yes' must be None (as needed)"),
  (config(augment='no'), "augment='no' must be True/False"),
  (config(progress_bar='auto'), "progress_bar='auto' must be None"),
  (config(num_processes=2), 'num_processes=2 needs coordinator_address'),
  (
    config(process_id=2, num_processes=2, coordinator_address='h:1'),
    'process_id=2 must be < num_processes=2',
  ),
  (config(noise=NoiseConfig(decay=1.0)), 'noise.decay=1.0 must be in [0, 1)'),
  (config(noise=NoiseConfig(decay=NAN)), 'noise.decay=nan must be in [0, 1)'),
  (config(noise=NoiseConfig(every=0)), 'noise.every=0 must be an integer >='),
  (config(noise=NoiseConfig(num_slices=0)), 'noise.num_slices=0 must be'),
  (config(noise={'enabled': True}), 'must be a NoiseConfig'),
  # The batch, without and with the training split's size.
  (config(batch=0), 'batch=0 must be >= 1'),
  (config(batch=2.5), 'batch=2.5 must be an int, batch schedule text'),
  (config(batch='stages(16@2,x)'), "stage 'x' is malformed"),
  (config(batch='stages(16@2up'), "batch='stages(16@2up': text="),
  (config(n=256, batch=512), 'batch=512 is larger than the training split'),
  (config(n=256, batch='stages(16@2,n=100)'), 'says n=100 but num_examples'),
  (
    config(n=256, batch='stages(16@1,512@1)'),
    'stages[1].batch_size=512 is above the dataset size num_examples=256',
  ),
  # Policies as text: parsed, and evaluated over the run.
  (config(lr='nosuch(1)'), "lr='nosuch(1)' does not parse: unknown policy"),
  (config(lr='cosine(0.1,lenght=5)'), "lr='cosine(0.1,lenght=5)' does not"),
  (
    config(lr='cosine(-0.1,length=10)'),
    "lr='cosine(-0.1,length=10)' is -0.1 at epoch 0; every value must be "
    'finite and >= 0',
  ),
  (
    config(lr='linear(0.1,end=-0.1,length=10)', num_epochs=10),
    # The first of the 129 epochs past 5: 5.078125, LR 0.1 - 0.02 x 5.078125.
    "lr='linear(0.1,end=-0.1,length=10)' is -0.0015625 at epoch 5.07812",
  ),
  (
    config(momentum='linear(0.5,end=1.2,length=10)'),
    "momentum='linear(0.5,end=1.2,length=10)' is 1.00312 at epoch 7.1875",
  ),
  (
    config(weight_decay=schedules.constant(-1e-4)),
    "weight_decay='constant(-0.0001)' is -0.0001 at epoch 0",
  ),
  (config(lr='reduce_on_plateau(-0.1)'), 'value=-0.1 must be >= 0'),
  # Durations with units: converted as the trainer converts them.
  (
    config(batch='stages(16@2,seq=64)', lr='cosine(0.1,length=100tok)'),
    "lr='cosine(0.1,length=100tok)' does not parse: cosine(): "
    'length=100tok: tokens=100 (100) is not a multiple of seq=64 tokens '
    'per sequence: use 64 (1 sequence) or 128 (2 sequences)',
  ),
  (
    config(n=256, lr='cosine(0.1,length=4Kitok)'),
    'length=4Kitok is in tokens but no sequence length is known',
  ),
  (
    config(n=256, lr='noam(512,warmup=1.5ep)', batch='stages(100@2)'),
    'warmup=1.5ep is 384 examples, which does not end on an update',
  ),
  # Batch schedule texts.
  (lambda: lbatch.parse('stages()', 100), "text='stages()' has no stage"),
  (lambda: lbatch.parse('stages(16@2)'), 'has no n=<dataset size>'),
  (lambda: lbatch.parse('stages(16@2,n=x)'), "n='x' must be a positive int"),
  (lambda: lbatch.parse('stages(16@2.5up,n=9)'), 'needs a whole number of'),
  (lambda: lbatch.parse('stages(16@2,n=9)', 10), 'says n=9 but num_examples'),
  (lambda: lbatch.parse(16), 'text=16 must be a str'),
  # Scaling rules.
  (lambda: rules.noise_scale(-0.1, 32, 100), 'lr=-0.1 must be finite and > 0'),
  (lambda: rules.noise_scale(0.1, 200, 100), 'batch_size=200 must be <= num'),
  (lambda: rules.noise_scale(0.1, 32, 100, 1.0), 'momentum=1.0 must be in'),
  (lambda: rules.linear_scaling(0), 'batch_size=0 must be finite and > 0'),
  (lambda: rules.sqrt_scaling(32, base_lr=NAN), 'base_lr=nan must be finite'),
  (lambda: rules.momentum_rule(32, 0.9, 1.5), 'new_momentum=1.5 must be in'),
  (
    lambda: rules.linear_scaling_warmup(32, warmup_epochs=-1),
    'warmup_epochs=-1 must be finite and >= 0',
  ),
  # Experiments: what the flags alone cannot check, before anything trains.
  (
    lambda: ramp.check(
      ramp.RampConfig(common(num_devices=64), milestones=(1,))
    ),
    '--num_devices=64 exceeds the 4 local device(s)',
  ),
  (
    lambda: sharpness.check(
      sharpness.SharpnessConfig(common(), small_batch=16, large_batch=5000)
    ),
    '--large_batch=5000 is larger than the 1437 training examples',
  ),
  (
    lambda: lr_find.check(lr_find.LrFindConfig(common(batch_size=2000))),
    '--batch_size=2000 is larger than the 1437 training examples',
  ),
  (
    lambda: lrbench.check(
      lrbench.LrBenchConfig(common(), policy=('cosine(-1,length=2)',))
    ),
    "--policy='cosine(-1,length=2)': lr='cosine(-1,length=2)' is -1 at",
  ),
  (
    lambda: ramp.check(
      ramp.RampConfig(common(dataset='no_such_set'), milestones=(1,))
    ),
    "unknown dataset name='no_such_set'",
  ),
  (
    lambda: goyal.check(goyal.GoyalConfig(common(), goyal_batches=(32, 2048))),
    '--goyal_batches=2048 is larger than the 1437 training examples',
  ),
  (
    lambda: scaling.check(
      scaling.ScalingConfig(common(), scaling_batches=(16, 4096))
    ),
    '--scaling_batches=4096 is larger than the 1437 training examples',
  ),
  (
    lambda: recipe.check(recipe.RecipeConfig(common(), baseline_batch=2000)),
    '--baseline_batch=2000 is larger than the 1437 training examples',
  ),
  (
    lambda: recipe.check(
      recipe.RecipeConfig(common(), baseline_lr='cosine(-1,length=2)')
    ),
    "--baseline_lr='cosine(-1,length=2)': lr='cosine(-1,length=2)' is -1",
  ),
  (
    parse_flags('--recipe_probe_batch=30', study=recipe),
    '--recipe_probe_batch=30 must be a positive multiple of 4',
  ),
  (
    parse_flags('--baseline_lr=nosuch(1)', study=recipe),
    '--baseline_lr=nosuch(1) must be an LR policy',
  ),
  (
    parse_flags('--recipe_max_lr=1e-6', study=recipe),
    '--recipe_max_lr=1e-06 must be > --recipe_min_lr=1e-05',
  ),
  (
    parse_flags('--random_batches=16,x', study=recipe),
    '--random_batches=16,x must be a comma-separated list of int',
  ),
  (
    parse_flags('--budget_seconds=30', study=recipe),
    '--budget_seconds=30.0 needs --recipe_only',
  ),
  # Flags.
  (parse_flags('--lr=-1'), '--lr=-1.0 must be > 0'),
  (parse_flags('--momentum=1'), '--momentum=1.0 must be in [0, 1)'),
  (parse_flags('--weight_decay=-1'), '--weight_decay=-1.0 must be >= 0'),
  (
    parse_flags('--checkpoint_seconds=-1'),
    '--checkpoint_seconds=-1.0 must be >=',
  ),
  (parse_flags('--eval_every=0'), '--eval_every=0.0 must be > 0 epochs'),
  (
    parse_flags('--seeds=1,1'),
    '--seeds=1,1 must be a non-empty list of distinct',
  ),
  (
    parse_flags('--model=resnet9000'),
    '--model=resnet9000 must be a name lrjax.models',
  ),
  (parse_flags('--synthetic_shape=4,4'), '--synthetic_shape=4,4 must be three'),
  (
    parse_flags('--milestones=10,5', study=ramp),
    '--milestones=10.0,5.0 must be increasing',
  ),
  (
    parse_flags('--milestones=10,50', study=ramp),
    '--milestones=10.0,50.0 must all be < --epochs=40.0',
  ),
  (
    parse_flags('--schedules=decay,bogus', study=ramp),
    '--schedules=decay,bogus must be a non-empty',
  ),
  (
    parse_flags('--decay_factor=1', study=ramp),
    '--decay_factor=1.0 must be > 1',
  ),
  (
    # A repeated flag: the message names all of it, then the bad text.
    parse_flags(
      '--policy=cosine(0.1,length=20)', '--policy=nosuch(1)', study=lrbench
    ),
    '--policy=cosine(0.1,length=20),nosuch(1) must be policy texts '
    "lrjax.schedules.parse reads: 'nosuch(1)': unknown policy 'nosuch'",
  ),
  (
    parse_flags('--policy=cosine(0.1,length=)', study=lrbench),
    '--policy=cosine(0.1,length=) must be policy texts',
  ),
  (
    parse_flags('--target_accuracy=1.5', study=lrbench),
    '--target_accuracy=1.5 must be in (0, 1]',
  ),
  (
    parse_flags('--finder_max_lr=1e-5', study=lr_find),
    '--finder_max_lr=1e-05 must be > --finder_min_lr=0.0001',
  ),
  (
    parse_flags('--finder_steps=1', study=lr_find),
    '--finder_steps=1 must be >= 2',
  ),
  (
    parse_flags('--metric=no.such:fn', study=lrbench),
    '--metric=no.such:fn must name importable functions',
  ),
  (
    parse_flags('--large_batch=16', study=sharpness),
    '--large_batch=16 must be 0 or > --small_batch=32',
  ),
  (
    parse_flags('--sharpness_eps=0', study=sharpness),
    '--sharpness_eps=0.0 must be positive',
  ),
  (
    parse_flags('--protocols=target_loss,bogus', study=sharpness),
    '--protocols=target_loss,bogus must be distinct names out of',
  ),
  (
    parse_flags('--loss_check_epochs=500', study=sharpness),
    '--max_epochs=400.0 must be >= --loss_check_epochs=500.0',
  ),
  (
    parse_flags('--target_loss=0', study=sharpness),
    '--target_loss=0.0 must be > 0',
  ),
  (
    parse_flags('--goyal_batches=64,32', study=goyal),
    '--goyal_batches=64,32 must be increasing numbers in (0, inf)',
  ),
  (
    parse_flags('--goyal_variants=none,cubic', study=goyal),
    '--goyal_variants=none,cubic must be a non-empty subset of none,linear',
  ),
  (
    parse_flags('--goyal_warmup_epochs=40', study=goyal),
    '--goyal_warmup_epochs=40.0 must be below --epochs=40.0',
  ),
  (
    parse_flags('--goyal_lr_factors=1,x', study=goyal),
    '--goyal_lr_factors=1,x must be a comma-separated list of float',
  ),
  (
    parse_flags('--goyal_warmup_tokens=8Ki', study=goyal),
    '--goyal_warmup_tokens is for --goyal_task=lm',
  ),
  (
    lambda: goyal.GoyalConfig(goyal_warmup_tokens='1.5').validate(),
    '--goyal_warmup_tokens=1.5 must be a whole token count',
  ),
  (
    parse_flags('--scaling_budgets=2', study=scaling),
    '--scaling_budgets=2.0 must be at least 2 distinct increasing',
  ),
  (
    parse_flags('--scaling_resamples=9', study=scaling),
    '--scaling_resamples=9 must be >= 10',
  ),
]


@pytest.mark.parametrize(
  'call, message', ROWS, ids=[f'{i:03d}' for i in range(len(ROWS))]
)
def test_bad_input_is_rejected_with_its_message(call, message):
  with pytest.raises((ValueError, TypeError, flags.Error)) as info:
    call()
  assert message in str(info.value), str(info.value)


def test_the_table_is_big_enough():
  assert len(ROWS) >= 60


# Flags that turn a setting off, and a workdir that cannot be created ------


def test_an_empty_compilation_cache_dir_turns_a_flagfiles_cache_off():
  from experiments import _lm_common

  FLAGS.unparse_flags()
  try:
    # A flagfile's cache, then the command line's empty value after it.
    FLAGS(['prog', '--compilation_cache_dir=runs/cache', '--epochs=40'])
    assert _common.common_config().compilation_cache_dir == 'runs/cache'
    FLAGS.unparse_flags()
    cache = '--compilation_cache_dir=runs/cache'
    FLAGS(['prog', cache, '--epochs=40', '--compilation_cache_dir='])
    common = _common.common_config()
    assert common.compilation_cache_dir is None
    assert _lm_common.lm_common().compilation_cache_dir is None
    config = _common.train_config(common, batch=16, lr=0.1, seed=0)
    config.validate()  # once refused: "must be a non-empty str or None"
    assert config.compilation_cache_dir is None
  finally:
    FLAGS.unparse_flags()


def test_compiler_options_flags_become_the_trainers_dict():
  FLAGS.unparse_flags()
  try:
    FLAGS(
      [
        'prog',
        '--epochs=40',
        '--compiler_options=xla_cpu_ftz=true',
        '--compiler_options=xla_a=B,C=D',  # a value may hold commas and =
      ]
    )
    common = _common.common_config()
  finally:
    FLAGS.unparse_flags()
  config = _common.train_config(common, batch=16, lr=0.1, seed=0)
  # 'true' as a bool: XLA refuses the text 'true' for a bool option.
  assert config.compiler_options == {'xla_cpu_ftz': True, 'xla_a': 'B,C=D'}
  default = _common.train_config(COMMON, batch=16, lr=0.1, seed=0)
  assert default.compiler_options is None  # XLA's defaults, record unchanged


@pytest.mark.parametrize('under', ['file', 'file/deeper'])
def test_a_workdir_under_a_regular_file_is_one_fatal_line(
  tmp_path, capsys, under
):
  (tmp_path / 'file').write_text('not a directory')
  workdir = str(tmp_path / under / 'run')
  ran = []

  class Study(studies.Study):
    name = 'x'

    def run(self, context):
      ran.append(context)

  _, _, main = studies.entry_points(Study, lambda: None)
  FLAGS.unparse_flags()
  try:
    FLAGS(['prog', f'--workdir={workdir}', '--epochs=40'])
    with pytest.raises(SystemExit) as info:
      main(['prog'])
  finally:
    FLAGS.unparse_flags()
  assert info.value.code == 1 and not ran
  err = capsys.readouterr().err
  assert err == (
    f'FATAL Flags error: --workdir={workdir} cannot be created: '
    f'{tmp_path / "file"} is a file, not a directory; give --workdir a '
    'directory (or a path in one) this process may write\n'
  )
