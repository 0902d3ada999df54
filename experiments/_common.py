"""What every experiment shares: the common settings and the analysis.

`CommonConfig` holds the settings every image experiment understands
(data, model, optimizer, devices, seeds, logging), each a field that is
also its flag (`experiments._flags`); `train_config` maps them to the
trainer's config in one place and `make_task` to the task. The rest reads
runs back and turns them into tables and verdicts (`mean_std`,
`within_variation`, `verdict`, `markdown_table`). The runner itself (the
workdir, its lock, reuse and resume, the entry points) is
`experiments._study`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from experiments import _flags
from experiments._flags import setting


def _known_model(name: str) -> str | None:
  from lrjax import models

  if name in models.NAMES:
    return None
  return "must be a name lrjax.models.get knows, e.g. 'mlp', 'cnn', 'wrn16_4'"


def _shape(shape: Sequence[int]) -> str | None:
  if len(shape) == 3 and all(x > 0 for x in shape):
    return None
  return 'must be three positive integers H,W,C'


@dataclasses.dataclass(frozen=True)
class CommonConfig:
  """The settings every experiment shares: one field per common flag (the
  field is the flag, `_flags.define`)."""

  dataset: str = setting(
    'digits',
    "Dataset name for lrjax.data.load: 'digits' (bundled) or a TFDS image "
    "classification name such as 'cifar10'.",
  )
  data_dir: str | None = setting(
    None, 'Data directory (default: lrjax.data default).'
  )
  model: str = setting(
    'mlp',
    "Model name for lrjax.models.get: 'mlp', 'cnn', 'wrn16_4'.",
    check=_known_model,
  )
  seeds: tuple[int, ...] = setting(
    (0, 1, 2),
    'Comma-separated integer seeds; one run each.',
    check=_flags.distinct(', e.g. 0,1,2'),
  )
  epochs: float = setting(
    30.0, 'Training length in epochs.', check=_flags.above(0)
  )
  lr: float = setting(
    0.1, 'Base (initial) learning rate.', check=_flags.above(0)
  )
  batch_size: int = setting(
    32, 'Base (initial) global batch size.', check=_flags.at_least(1)
  )
  momentum: float = setting(
    0.9, 'Momentum coefficient m.', check=_flags.fraction()
  )
  optimizer: str = setting(
    'sgd',
    'Optimizer.',
    choices=('sgd', 'nesterov', 'adam', 'adamw', 'lamb', 'lars'),
  )
  weight_decay: float = setting(0.0, 'Weight decay.', check=_flags.at_least(0))
  clip_norm: float | None = setting(
    None,
    'Clip each gradient to this global norm before the optimizer '
    '(optax.clip_by_global_norm; unset = no clipping). The LM flagfiles '
    'clip at 1.0, as nanoGPT and GPT-3 do.',
    check=_flags.above(0),
  )
  num_devices: int | None = setting(
    1,
    'Data-parallel devices; 0 means all local devices. On a CPU the '
    'experiments give the backend one device per core; measured on 2 cores '
    '(benchmarks/bench_devices.py): two are 1.55x one for the LM of '
    "lm_cpu.cfg, 1.36x for finetune_cpu.cfg's, 1.84x for the digits CNN at "
    'batch 512, but 0.91x for the CNN at batch 32 and 0.19x for the digits '
    'MLP (so the digits flagfiles use one).',
    check=_flags.at_least(0, ' (0 = all local devices)'),
    none_if_empty=True,
  )
  max_device_batch: int = setting(
    4096,
    'Largest micro-batch per device; larger batches accumulate gradients.',
    check=_flags.at_least(1),
  )
  parallel: str = setting(
    'shard_map', 'Data-parallel primitive.', choices=('pmap', 'shard_map')
  )
  eval_every: float = setting(
    1.0,
    'Evaluate on the test split every this many epochs.',
    check=_flags.above(0, ' epochs'),
  )
  log_every: int = setting(
    10,
    'Log training metrics every this many updates.',
    check=_flags.at_least(1, ' update'),
  )
  noise: bool = setting(
    True, 'Measure the gradient noise scale B_simple during training.'
  )
  noise_decay: float = setting(
    0.95,
    "EMA decay of the noise scale's two estimates, in [0, 1). Higher: a "
    'steadier B_simple that lags more (the EMA averages about (1 + d) / '
    '(1 - d) readings, 39 at 0.95, and trails by d / (1 - d) = 19 '
    'readings); lower: a quicker but noisier one. Measured on digits '
    '(BUILD.md, benchmarks/bench_noise_defaults.py): at 0.95 one reading '
    'scatters by -27%/+43% (10th/90th percentile) when B_simple is 2.4x the '
    'batch, +-20% at 1.3x; 0.98 halves that but trails 49 readings. 0.95 '
    "keeps the trail under the adaptive rule's 2-epoch decisions up to 4x "
    'the starting batch; use 0.98 to monitor at a fixed batch.',
    check=_flags.fraction(', e.g. 0.95'),
  )
  noise_every: int = setting(
    1,
    'Estimate the noise scale every this many updates. On one device each '
    'estimate costs a sliced pass over the batch, about one more '
    'forward-backward; every update is the default because skipping '
    "updates scatters more at equal decay (an epoch's batches are disjoint, "
    "so consecutive readings' errors partly cancel) and multiplies the lag.",
    check=_flags.at_least(1, ' update'),
  )
  noise_slices: int = setting(
    0,
    'Slices of the batch for the one-device estimate (0: 4 when it divides '
    'every batch size, else 2, else 1 = no one-device estimate). Measured '
    'on digits: 8 slices scatter slightly less than 4 at 2.7x the cost of '
    'the pass, 2 slices cost the same as 4 and scatter more.',
    check=_flags.at_least(0, ' (0 = automatic)'),
  )
  compilation_cache_dir: str | None = setting(
    None,
    'Persistent JAX compilation cache directory (default, or empty: none; '
    '--compilation_cache_dir= turns off the cache a flagfile sets).',
    none_if_empty=True,
  )
  augment: bool = setting(
    False, 'Use the dataset augmentation when it has one.'
  )
  checkpoint_every: int = setting(
    0,
    'Checkpoint every this many updates (0: only by --checkpoint_seconds '
    'and at the end). The last two checkpoints are kept, so a damaged '
    'newest one falls back to the previous one.',
    check=_flags.at_least(0, ' updates'),
  )
  checkpoint_seconds: float = setting(
    120.0,
    'Also checkpoint when this many seconds of training passed since the '
    'last checkpoint, so that a killed run loses at most that much (0: '
    'never).',
    check=_flags.at_least(0, ' seconds'),
  )
  synthetic_examples: int = setting(
    1024,
    '--dataset=synthetic: training examples (the test split has a quarter).',
    check=_flags.at_least(1),
  )
  synthetic_shape: tuple[int, int, int] = setting(
    (32, 32, 3), '--dataset=synthetic: H,W,C.', check=_shape
  )
  synthetic_classes: int = setting(
    10, '--dataset=synthetic: number of classes.', check=_flags.at_least(2)
  )


_flags.define(CommonConfig)


def common_config() -> CommonConfig:
  """Reads the common flags (after parsing) into a checked `CommonConfig`.

  Raises:
    ValueError: naming the flag and the fix.
  """
  common = _flags.read(CommonConfig)
  _flags.check(common)
  return common


def load_split(common: CommonConfig, split: str, seed: int = 0):
  """The `lrjax.data.Dataset` a run of this config trains or tests on.

  `seed` matters only for `--dataset=synthetic`, whose data is drawn from
  the run's seed exactly as the trainer draws it.
  """
  from lrjax import data as lrdata

  if common.dataset == 'synthetic':
    n = common.synthetic_examples
    return lrdata.synthetic(
      n if split == 'train' else max(n // 4, 1),
      image_shape=common.synthetic_shape,
      num_classes=common.synthetic_classes,
      seed=seed,
      split=split,
    )
  return lrdata.load(common.dataset, split=split, data_dir=common.data_dir)


def final_variables(result: Any, workdir: str) -> dict[str, Any]:
  """The final model variables of a run: params, and batch-norm statistics.

  `TrainResult` carries the final params and model state (the linen
  collections besides 'params'); a run reused from its summary reads them
  from its final checkpoint (kept for batch-norm models).
  """
  variables = {'params': result.params}
  state = getattr(result, 'model_state', None)
  if state is None and os.path.isdir(os.path.join(workdir, 'checkpoints')):
    from lrjax import train as lrtrain

    saved, _ = lrtrain.load_checkpoint(workdir)
    state = saved.get('model_state')
  variables.update(state or {})
  return variables


def save_variables(path: str, variables: Any) -> None:
  """Writes nested dicts of arrays to `path` as `.npz`, one array per leaf
  named by its key path (``params/Dense_0/kernel``): no pickle, so reading
  a shared workdir never runs code."""
  import jax

  flat = {
    '/'.join(str(k.key) for k in keys): np.asarray(leaf)
    for keys, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]
  }
  with open(path, 'wb') as fh:
    np.savez(fh, **flat)


def load_variables(path: str) -> dict[str, Any]:
  """Reads what `save_variables` wrote (with ``allow_pickle=False``)."""
  out: dict[str, Any] = {}
  with np.load(path, allow_pickle=False) as data:
    for name in data.files:
      *parents, leaf = name.split('/')
      node = out
      for key in parents:
        node = node.setdefault(key, {})
      node[leaf] = data[name]
  return out


#: The common settings that are `lrjax.train.TrainConfig` fields of the
#: same name and meaning.
_TRAIN_FIELDS = (
  'momentum',
  'optimizer',
  'weight_decay',
  'clip_norm',
  'max_device_batch',
  'num_devices',
  'parallel',
  'augment',
  'log_every',
  'eval_every',
  'checkpoint_every',
  'checkpoint_seconds',
  'compilation_cache_dir',
)


def train_config(
  common: CommonConfig, *, batch: Any, lr: Any, seed: int, **overrides: Any
):
  """The trainer's config for one run of an experiment.

  Args:
    common: the experiment's common settings.
    batch: batch size or `lrjax.batch.BatchSchedule`.
    lr: LR policy over epochs (text, Policy or float).
    seed: the run's seed.
    **overrides: any other `TrainConfig` field (momentum, noise, ...).

  Returns:
    A `lrjax.train.TrainConfig` that checkpoints every
    `common.checkpoint_every` updates and `common.checkpoint_seconds`
    seconds, and keeps the last two checkpoints.
  """
  from lrjax import train as lrtrain

  fields = {name: getattr(common, name) for name in _TRAIN_FIELDS}
  fields.update(
    batch=batch,
    num_epochs=common.epochs,
    lr=lr,
    seed=seed,
    keep_checkpoints=2,
    noise=lrtrain.NoiseConfig(enabled=False),
    progress_bar=False,
  )
  fields.update(overrides)
  return lrtrain.TrainConfig(**fields)


def make_task(common: CommonConfig, seed: int = 0):
  """The task the experiment trains: `lrjax.tasks.image_classification` of
  ``--model`` on ``--dataset`` (for 'synthetic', drawn from ``seed``, the
  run's seed; every other dataset is the same for every seed).

  Built once per setting and seed (the datasets stay loaded).
  """
  return _task(
    common.dataset,
    common.data_dir,
    common.model,
    common.synthetic_examples,
    tuple(common.synthetic_shape),
    common.synthetic_classes,
    seed if common.dataset == 'synthetic' else 0,
  )


@functools.lru_cache(maxsize=4)
def _task(dataset, data_dir, model, examples, shape, classes, seed):
  from lrjax import tasks

  return tasks.image_classification(
    dataset,
    model,
    data_dir=data_dir,
    synthetic_examples=examples,
    synthetic_shape=shape,
    synthetic_classes=classes,
    seed=seed,
  )


def enable_compilation_cache(directory: str | None) -> None:
  """Turns on JAX's persistent compilation cache in ``directory`` (None: off).

  For programs compiled outside the trainer (which does the same for
  `TrainConfig.compilation_cache_dir`), e.g. the LR range test's step: a
  new closure per seed is traced again, but its XLA compilation comes from
  the cache. Small CPU programs are cached too (no minimum compile time or
  entry size).
  """
  if not directory:
    return
  import jax

  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def num_train_examples(common: CommonConfig, seed: int = 0) -> int:
  """Examples in the training split of the experiment's dataset."""
  return _num_train(
    common.dataset,
    common.data_dir,
    common.synthetic_examples,
    tuple(common.synthetic_shape),
    common.synthetic_classes,
    seed,
  )


@functools.cache
def _num_train(dataset, data_dir, examples, shape, classes, seed) -> int:
  common = CommonConfig(
    dataset=dataset,
    data_dir=data_dir,
    synthetic_examples=examples,
    synthetic_shape=shape,
    synthetic_classes=classes,
  )
  return load_split(common, 'train', seed).num_examples


def check_common(common: CommonConfig) -> int:
  """Checks what the flags alone cannot: the devices and the data.

  Returns:
    The number of training examples.

  Raises:
    ValueError: naming the flag, for more devices than this process has.
    FileNotFoundError, ValueError: for a dataset that is not prepared or
      not known (the message says how to prepare it).
  """
  import jax

  _flags.check(common)
  have = jax.local_device_count()
  if common.num_devices is not None and common.num_devices > have:
    raise ValueError(
      f'--num_devices={common.num_devices} exceeds the {have} local '
      f'device(s) of this machine; use at most {have}, or 0 for all'
    )
  return num_train_examples(common, common.seeds[0])


def check_batch(flag: str, batch: int, num_examples: int) -> None:
  """Raises ValueError naming ``flag`` for a batch above the training split."""
  if batch > num_examples:
    raise ValueError(
      f'{flag}={batch} is larger than the {num_examples} training examples; '
      f'use at most {num_examples}'
    )


def check_train_configs(configs: Sequence[Any], num_examples: int) -> None:
  """Validates the trainer configs of every run before the first trains.

  Raises:
    ValueError: from the first bad config, naming its field.
  """
  import jax

  for config in configs:
    config.validate(
      num_local_devices=jax.local_device_count(),
      num_train_examples=num_examples,
    )


def noise_config(common: CommonConfig, batch_sizes: Sequence[int]) -> Any:
  """The trainer's noise-scale settings for runs with these batch sizes.

  On one device the estimate compares a slice of the batch with the whole
  batch, so the slice count must divide every batch size: `--noise_slices`
  when set, else 4 when it divides them, else 2, else 1 (no one-device
  estimate). The EMA decay and interval come from `--noise_decay` and
  `--noise_every`.

  Args:
    common: the common settings (`--noise`, `--noise_decay`,
      `--noise_every`, `--noise_slices`).
    batch_sizes: every batch size the runs train with.

  Returns:
    A `lrjax.train.NoiseConfig`.

  Raises:
    ValueError: when `--noise_slices` does not divide a batch size.
  """
  from lrjax import train as lrtrain

  slices = common.noise_slices
  if slices and any(b % slices for b in batch_sizes):
    raise ValueError(
      f'noise_slices={slices} must divide every batch size '
      f'{sorted(set(batch_sizes))}; pick a divisor or 0 (automatic)'
    )
  if not slices:
    slices = next(
      (k for k in (4, 2) if all(b % k == 0 for b in batch_sizes)), 1
    )
  return lrtrain.NoiseConfig(
    enabled=common.noise,
    decay=common.noise_decay,
    every=common.noise_every,
    num_slices=slices,
  )


def verdict(held: bool | None) -> str:
  """A claim's verdict in words: None (too few seeds to test) is not held.

  Examples:
    >>> [verdict(True), verdict(False), verdict(None)]
    ['held', 'did NOT hold', 'not tested (1 seed)']
  """
  if held is None:
    return 'not tested (1 seed)'
  return 'held' if held else 'did NOT hold'


def verdict_tag(held: bool | None) -> str:
  """The verdict's tag for a console line: HELD, FAILED or UNTESTED."""
  if held is None:
    return 'UNTESTED'
  return 'HELD    ' if held else 'FAILED  '


def print_claims(claims: Sequence[Mapping[str, Any]]) -> None:
  """The console summary: one line per claim, its `verdict_tag` first."""
  for claim in claims:
    print(f'{verdict_tag(claim["held"])} {claim["claim"]}')


def claim_lines(claims: Sequence[Mapping[str, Any]]) -> list[str]:
  """report.md bullets: each claim, its verdict and its detail.

  A claim's ``held`` is True, False or None; None (a comparison of seeds
  with a single seed in a group) reads ``not tested (1 seed)``.
  """
  return [
    f'- {c["claim"]}: **{verdict(c["held"])}** ({c["detail"]}).' for c in claims
  ]


def figure_lines(figures: Mapping[str, str]) -> list[str]:
  """report.md's `## Figures` section: path -> caption, one image each."""
  lines = ['', '## Figures', '']
  for path, caption in figures.items():
    lines += [f'### {caption}', '', f'![{caption}]({path})', '']
  return lines


# ---------------------------------------------------------------- files


def jsonable(obj: Any) -> Any:
  """Turns configs (dataclasses, tuples, policies) into JSON-ready values.

  Objects with a text form (lrjax policies, batch schedules) become their
  text; numpy scalars become Python numbers; non-finite floats become None.
  """
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return {
      f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
    }
  if isinstance(obj, Mapping):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, list | tuple):
    return [jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return jsonable(obj.tolist())
  if isinstance(obj, bool | str) or obj is None:
    return obj
  if isinstance(obj, int | np.integer):
    return int(obj)
  if isinstance(obj, float | np.floating):
    value = float(obj)
    return value if math.isfinite(value) else None
  if hasattr(obj, 'shape') and getattr(obj, 'shape', None) == ():
    return jsonable(float(obj))
  return str(obj)


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as JSON atomically (a kill leaves the old or the new)."""
  write_text(path, json.dumps(jsonable(obj), indent=2, sort_keys=False) + '\n')


def write_text(path: str, text: str) -> None:
  """Writes ``text`` atomically (a kill leaves the old or the new file)."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  """The JSON in ``path`` (None when missing or unreadable)."""
  try:
    with open(path) as f:
      return json.load(f)
  except (FileNotFoundError, ValueError):
    return None


# ---------------------------------------------------------------- metrics


def _number(value: Any) -> float | None:
  """A record value as a float; 'nan'/'inf' texts too; None otherwise."""
  if isinstance(value, bool):
    return None
  if isinstance(value, int | float):
    return float(value)
  if isinstance(value, str) and value.lower() in ('nan', 'inf', '-inf'):
    return float(value)
  return None


def _columns(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
  keys: list[str] = []
  for record in records:
    for key, value in record.items():
      if key not in keys and _number(value) is not None:
        keys.append(key)
  columns = {}
  for key in keys:
    values = []
    for record in records:
      value = _number(record.get(key))
      values.append(math.nan if value is None else value)
    columns[key] = np.asarray(values, dtype=np.float64)
  return columns


def read_metrics(
  path: str,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
  """Reads a trainer's metrics.jsonl into columns.

  Args:
    path: the metrics.jsonl file.

  Returns:
    `(train, evals)`: `train` maps each numeric key of the training records
    (those without a `split`) to an array over logged steps (NaN where a
    record lacks the key); `evals` maps each split name to the same kind of
    columns over its evaluation records.

  Raises:
    lrjax.metrics.JsonlError: for a damaged record, naming the file and
      line (a torn last line is ignored).
  """
  from lrjax import metrics as lmetrics

  train_records, eval_records = [], {}
  for record in lmetrics.read_jsonl(path):
    split = record.get('split')
    if split is None:
      train_records.append(record)
    else:
      eval_records.setdefault(split, []).append(record)
  return _columns(train_records), {
    split: _columns(records) for split, records in eval_records.items()
  }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for a single value)."""
  array = np.asarray(values, dtype=np.float64)
  if array.size == 0:
    return math.nan, math.nan
  std = float(array.std(ddof=1)) if array.size > 1 else 0.0
  return float(array.mean()), std


def fmt_mean_std(values: Sequence[float], scale: float = 1.0, digits=2) -> str:
  mean, std = mean_std(values)
  if math.isnan(mean):
    return 'n/a'
  return f'{mean * scale:.{digits}f} ± {std * scale:.{digits}f}'


def fmt_number(value: float, digits: int = 0) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return 'n/a'
  if digits == 0:
    return f'{round(value):,}'
  return f'{value:,.{digits}f}'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A GitHub markdown table."""
  lines = [
    '| ' + ' | '.join(header) + ' |',
    '|' + '|'.join('---' for _ in header) + '|',
  ]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def within_variation(
  a: Sequence[float], b: Sequence[float]
) -> tuple[bool | None, float, float]:
  """Whether two groups' means agree within their seed-to-seed variation.

  The rule, with :math:`s` the sample standard deviation over seeds
  (``ddof=1``):

  .. math::
     |\\bar a - \\bar b| \\le 2 \\sqrt{(s_a^2 + s_b^2) / 2}

  The tolerance comes from the variation between seeds only (no floor:
  two groups that agree to the last example over several seeds must agree
  exactly). A group of one seed has no variation to measure, so the
  comparison is not tested: ``held`` is None and the tolerance NaN.

  Args:
    a: one group's values, one per seed.
    b: the other group's values, one per seed.

  Returns:
    ``(held, difference, tolerance)`` with difference ``mean(a) - mean(b)``;
    ``held`` is None when either group has fewer than two seeds.

  Examples:
    >>> within_variation([0.9, 0.92], [0.91, 0.93])
    (True, -0.010000000000000009, 0.028284271247461926)
    >>> within_variation([0.9], [0.5])
    (None, 0.4, nan)
  """
  mean_a, std_a = mean_std(a)
  mean_b, std_b = mean_std(b)
  difference = mean_a - mean_b
  if min(len(a), len(b)) < 2:
    return None, difference, math.nan
  tolerance = 2 * math.sqrt((std_a**2 + std_b**2) / 2)
  return abs(difference) <= tolerance, difference, tolerance


def exceeds(a: Sequence[float], b: Sequence[float]) -> bool | None:
  """Whether mean(a) is above mean(b) beyond their seed-to-seed variation.

  Args:
    a: one group's values, one per seed.
    b: the other group's values, one per seed.

  Returns:
    True when ``mean(a) - mean(b)`` exceeds :func:`within_variation`'s
    tolerance, False otherwise, None when either group has one seed.

  Examples:
    >>> exceeds([1.0, 1.2], [0.5, 0.7]), exceeds([1.0], [0.5])
    (True, None)
  """
  same, difference, _ = within_variation(a, b)
  if same is None:
    return None
  return difference > 0 and not same


def import_function(path: str) -> Callable[..., Any]:
  """Imports `package.module:function` (for user-supplied metrics)."""
  if ':' not in path:
    raise ValueError(f'{path=} must look like package.module:function')
  module_name, name = path.split(':', 1)
  module = __import__(module_name, fromlist=[name])
  return getattr(module, name)


def trained_text(common: Any) -> str:
  """What was trained with what, for a report's header: the data, the model
  and the optimizer of an image task's `CommonConfig` or of the LM's
  (``experiments._lm_common``, told apart by its ``corpus``)."""
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
