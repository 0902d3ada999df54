"""What every experiment shares: the common settings, tables and reports.

`CommonConfig` holds the settings every image experiment understands, each
field also its flag (`lrjax.studies.setting`); `train_config` maps them to
the trainer's config and `make_task` to the task. The runner and the
command line are `lrjax.studies`, the verdicts `lrjax.evidence`; `render`
fills a report's template.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import flags

from lrjax import evidence, studies
from lrjax.studies import setting

FLAGS = flags.FLAGS


def _known_model(name: str) -> str | None:
  from lrjax import models

  if name in models.NAMES:
    return None
  return "must be a name lrjax.models.get knows, e.g. 'mlp', 'cnn', 'wrn16_4'"


def _xla_options(items: Sequence[str]) -> str | None:
  from lrjax import train as lrtrain

  try:
    lrtrain.parse_compiler_options(items)
  except ValueError:
    return 'must be NAME=VALUE items naming XLA options (xla_...)'
  return None


def _shape(shape: Sequence[int]) -> str | None:
  if len(shape) == 3 and all(x > 0 for x in shape):
    return None
  return 'must be three positive integers H,W,C'


@dataclasses.dataclass(frozen=True)
class CommonConfig:
  """The settings every experiment shares: each field is its flag."""

  dataset: str = setting('digits')
  """'digits' (bundled), 'synthetic' or a TFDS name ('cifar10')."""
  data_dir: str | None = setting(None)
  """Data directory (lrjax.data default)."""
  model: str = setting('mlp', check=_known_model)
  """lrjax.models.get's 'mlp', 'cnn' or 'wrn16_4'."""
  seeds: tuple[int, ...] = setting(
    (0, 1, 2), check=studies.distinct(', e.g. 0,1,2')
  )
  """Seeds, one run each."""
  epochs: float = setting(30.0, check=studies.above(0))
  """Training epochs."""
  lr: float = setting(0.1, check=studies.above(0))
  """Base (initial) LR."""
  batch_size: int = setting(32, check=studies.at_least(1))
  """Base (initial) global batch size."""
  momentum: float = setting(0.9, check=studies.fraction())
  """Momentum m."""
  optimizer: str = setting(
    'sgd', choices='sgd nesterov adam adamw lamb lars'.split()
  )
  """Optimizer."""
  weight_decay: float = setting(0.0, check=studies.at_least(0))
  """Weight decay."""
  clip_norm: float | None = setting(None, check=studies.above(0))
  """Clip gradients to this global norm (unset: no clipping); the LM
  flagfiles clip at 1.0, as nanoGPT and GPT-3 do."""
  num_devices: int | None = setting(
    1, check=studies.at_least(0, ' (0 = all local devices)'), none_if_empty=True
  )
  """Data-parallel devices (0: all; on a CPU, one per core). Two vs one on 2
  cores (benchmarks/bench_devices.py): 1.30-1.55x lm_cpu.cfg, 1.36x
  finetune_cpu.cfg, 1.84x digits CNN at batch 512, 0.91x at 32, 0.19x
  digits MLP (so the digits flagfiles use one)."""
  max_device_batch: int = setting(4096, check=studies.at_least(1))
  """Largest micro-batch per device; larger batches accumulate gradients."""
  parallel: str = setting('shard_map', choices=('pmap', 'shard_map'))
  """Data-parallel primitive."""
  eval_every: float = setting(1.0, check=studies.above(0, ' epochs'))
  """Test every this many epochs."""
  log_every: int = setting(10, check=studies.at_least(1, ' update'))
  """Log every this many updates."""
  noise: bool = setting(True)
  """Measure the gradient noise scale B_simple."""
  noise_decay: float = setting(0.95, check=studies.fraction(', e.g. 0.95'))
  """EMA decay d of the noise scale's two estimates: it averages (1 + d) / (1
  - d) readings (39 at 0.95) and trails by d / (1 - d) (19). On digits
  (BUILD.md) one reading at 0.95 scatters -27%/+43% (10th/90th percentile)
  at B_simple 2.4x the batch, +-20% at 1.3x; 0.98 halves that but trails
  49. 0.95 keeps the trail under the adaptive rule's 2-epoch decisions up
  to 4x the starting batch; use 0.98 to monitor a fixed one."""
  noise_every: int = setting(1, check=studies.at_least(1, ' update'))
  """Estimate the noise scale every this many updates (on one device about
  one more forward-backward each). Skipping updates scatters more at equal
  decay (consecutive readings' errors partly cancel) and multiplies the
  lag."""
  noise_slices: int = setting(0, check=studies.at_least(0, ' (0 = automatic)'))
  """Batch slices of the one-device estimate (0: 4 if it divides every batch
  size, else 2, else 1 = none). On digits 8 scatter slightly less than 4
  at 2.7x the cost; 2 cost the same as 4 and scatter more."""
  compiler_options: tuple[str, ...] = setting(
    (), check=_xla_options, repeated=True
  )
  """XLA options of every compiled step, NAME=VALUE, repeatable (empty:
  XLA's defaults). With XLA's YNNPACK kernels for dots, elementwise ops and
  reductions,
  xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE
  trained the digits CNN at batch 512 1.5x (two devices) to 2x (one) as
  fast on 2 CPU cores, 1.1x PyTorch, but the LM at half speed (BUILD.md);
  the numbers then differ from the defaults' in the last bits."""
  compilation_cache_dir: str | None = setting(None, none_if_empty=True)
  """Persistent JAX compilation cache directory (empty: none, also to turn
  off a flagfile's)."""
  augment: bool = setting(False)
  """Use the dataset's augmentation if any."""
  checkpoint_every: int = setting(0, check=studies.at_least(0, ' updates'))
  """Checkpoint every this many updates (0: by --checkpoint_seconds and at
  the end); the last two are kept, a damaged newest falls back."""
  checkpoint_seconds: float = setting(
    120.0, check=studies.at_least(0, ' seconds')
  )
  """Also checkpoint after this many seconds of training since the last, the
  most a killed run loses (0: never)."""
  synthetic_examples: int = setting(1024, check=studies.at_least(1))
  """--dataset=synthetic: training examples (test: a quarter)."""
  synthetic_shape: tuple[int, int, int] = setting((32, 32, 3), check=_shape)
  """--dataset=synthetic: H,W,C."""
  synthetic_classes: int = setting(10, check=studies.at_least(2))
  """--dataset=synthetic: number of classes."""


studies.define_flags(CommonConfig)


def use_cpu_cores() -> None:
  """Gives the CPU backend one device per core for a data-parallel run
  (``--num_devices`` other than 1) unless XLA_FLAGS sets a count; a
  one-device run keeps the CPU's threads whole. Called before JAX starts
  (after, the devices stay as they are)."""
  import jax

  xla_flags = os.environ.get('XLA_FLAGS', '')
  if FLAGS.num_devices != 1 and 'host_platform_device_count' not in xla_flags:
    with contextlib.suppress(RuntimeError):  # JAX has started
      jax.config.update('jax_num_cpu_devices', os.cpu_count() or 1)


def entry_points(study: type, get_config: Callable[[], Any]) -> tuple:
  """`lrjax.studies.entry_points` of an experiment, `use_cpu_cores` first."""
  return studies.entry_points(study, get_config, setup=use_cpu_cores)


def render(name: str, **fields: Any) -> str:
  """The report template ``experiments/reports/<name>.md`` with its
  ``{field}`` slots filled by `str.format` (``{c.lr:g}`` reads and formats
  an attribute; a literal brace is doubled). The prose of a report lives
  there, the numbers it shows are computed here."""
  path = os.path.join(os.path.dirname(__file__), 'reports', f'{name}.md')
  with open(path) as f:
    return f.read().format(**fields)


def common_config() -> CommonConfig:
  """The parsed common flags, checked (ValueError naming a bad flag)."""
  common = studies.read_flags(CommonConfig)
  studies.check_settings(common)
  return common


def load_split(common: CommonConfig, split: str, seed: int = 0):
  """The 'train' or 'test' `lrjax.data.Dataset` of `make_task` (for
  'synthetic', drawn from the run's ``seed`` as the trainer draws it)."""
  task = make_task(common, seed)
  return {'train': task.train_data, 'test': task.eval_data}[split]


#: The common settings that are `lrjax.train.TrainConfig` fields as they are.
_TRAIN_FIELDS = (
  'momentum optimizer weight_decay clip_norm max_device_batch num_devices '
  'parallel augment log_every eval_every checkpoint_every checkpoint_seconds '
  'compilation_cache_dir'
).split()


def train_config(
  common: CommonConfig, *, batch: Any, lr: Any, seed: int, **overrides: Any
):
  """The `lrjax.train.TrainConfig` of one run: ``batch`` (a size or a
  `BatchSchedule`), ``lr`` (a policy over epochs), keeping two checkpoints;
  ``overrides`` set any other field (noise, ...)."""
  from lrjax import train as lrtrain

  fields = dict(
    {name: getattr(common, name) for name in _TRAIN_FIELDS},
    compiler_options=lrtrain.parse_compiler_options(common.compiler_options),
    batch=batch,
    num_epochs=common.epochs,
    lr=lr,
    seed=seed,
    keep_checkpoints=2,
    noise=lrtrain.NoiseConfig(enabled=False),
    progress_bar=False,
  )
  return lrtrain.TrainConfig(**{**fields, **overrides})


def batch_sizes(batch: Any, adaptive: Any = None) -> tuple[int, ...]:
  """Every batch size a plan may train with: its schedule's, or an adaptive
  plan's candidates from its starting batch."""
  if adaptive is not None:
    return adaptive.sizes(batch)
  return tuple(batch.batch_sizes)


def make_task(common: CommonConfig, seed: int = 0):
  """`lrjax.tasks.image_classification` of ``--model`` on ``--dataset``, one
  per setting and seed (only 'synthetic' data is drawn from the seed)."""
  names = 'dataset model data_dir synthetic_examples synthetic_classes'
  key = {k: getattr(common, k) for k in names.split()}
  key['synthetic_shape'] = tuple(common.synthetic_shape)
  return _task(tuple(key.items()), seed if common.dataset == 'synthetic' else 0)


@functools.lru_cache(maxsize=4)
def _task(key: tuple[tuple[str, Any], ...], seed: int):
  from lrjax import tasks

  return tasks.image_classification(**dict(key), seed=seed)


def check_common(common: CommonConfig) -> int:
  """Checks the flags, the devices and the data; returns the number of
  training examples (ValueError naming the flag; FileNotFoundError or
  ValueError saying how to prepare a dataset that is not)."""
  import jax

  studies.check_settings(common)
  have = jax.local_device_count()
  if common.num_devices is not None and common.num_devices > have:
    raise ValueError(
      f'--num_devices={common.num_devices} exceeds the {have} local '
      f'device(s) of this machine; use at most {have}, or 0 for all'
    )
  return load_split(common, 'train', common.seeds[0]).num_examples


def check_batch(flag: str, batch: int, num_examples: int) -> None:
  """Raises ValueError naming ``flag`` for a batch above the training split."""
  if batch > num_examples:
    raise ValueError(
      f'{flag}={batch} is larger than the {num_examples} training examples; '
      f'use at most {num_examples}'
    )


def noise_config(common: CommonConfig, batch_sizes: Sequence[int]) -> Any:
  """The `lrjax.train.NoiseConfig` of runs with these batch sizes.

  The one-device estimate slices the batch: `lrjax.noise.slice_count` of
  `--noise_slices` (ValueError if it does not divide every batch size; 0:
  4 when it divides them, else 2, else 1 = no one-device estimate).
  """
  from lrjax import noise
  from lrjax import train as lrtrain

  return lrtrain.NoiseConfig(
    enabled=common.noise,
    decay=common.noise_decay,
    every=common.noise_every,
    num_slices=noise.slice_count(
      batch_sizes, common.noise_slices, name='noise_slices'
    ),
  )


def figure_lines(figures: Mapping[str, str]) -> list[str]:
  """report.md's `## Figures` section: path -> caption, one image each."""
  lines = ['', '## Figures', '']
  for path, caption in figures.items():
    lines += [f'### {caption}', '', f'![{caption}]({path})', '']
  return lines


def fmt_mean_std(values: Sequence[float], scale: float = 1.0, digits=2) -> str:
  """``mean ± std`` (`lrjax.evidence.mean_std`) of ``values`` x ``scale``."""
  mean, std = evidence.mean_std(values)
  if math.isnan(mean):
    return 'n/a'
  return f'{mean * scale:.{digits}f} ± {std * scale:.{digits}f}'


def fmt_number(value: float, digits: int = 0) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return 'n/a'
  if digits == 0:
    return f'{round(value):,}'
  return f'{value:,.{digits}f}'


def import_function(path: str) -> Callable[..., Any]:
  """Imports `package.module:function` (for user-supplied metrics)."""
  module, colon, name = path.partition(':')
  if not colon:
    raise ValueError(f'{path=} must look like package.module:function')
  return getattr(__import__(module, fromlist=[name]), name)


def trained_text(common: Any) -> str:
  """The data, model and optimizer of a `CommonConfig` or (with a
  ``corpus``) an `experiments._lm_common.LmCommon`, for a report's header."""
  c = common
  decay = f'weight decay {c.weight_decay:g}'
  if not hasattr(c, 'corpus'):
    return (
      f'{c.dataset}, model {c.model}, {c.optimizer} (momentum '
      f'{c.momentum:g}, {decay})'
    )
  return (
    f'{c.corpus}, sequences of {c.seq_len} bytes, transformer {c.layers} '
    f'layers x width {c.width}, {c.optimizer} (beta1 {c.momentum:g}, beta2 '
    f'{c.b2:g}, {decay})'
  )
