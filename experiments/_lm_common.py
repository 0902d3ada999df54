"""What the language-model experiments share: settings, the LM task, tokens.

Examples are sequences of `--seq_len` bytes (tokens a derived unit); common
flags left out take `LM_DEFAULTS`; image-only ones are refused.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from absl import app, flags

from experiments import _common
from lrjax import studies
from lrjax.studies import setting

FLAGS = flags.FLAGS

# Image-only common flags, and what a language model uses instead.
_IMAGE_ONLY = {
  'dataset': '--corpus',
  'model': '--lm_layers, --lm_heads, --lm_width, ...',
  'augment': 'nothing (text is not augmented)',
  **dict.fromkeys(
    ('synthetic_examples', 'synthetic_shape', 'synthetic_classes'), '--corpus'
  ),
}


def refuse_flags(experiment: str, replaced: Mapping[str, str]) -> None:
  """Raises `app.UsageError` for a flag ``experiment`` does not read
  (``replaced``, and the image-only ones: flag -> what to use instead),
  unless it has the value flags.cfg writes (its LM default)."""
  for name, instead in {**_IMAGE_ONLY, **replaced}.items():
    flag = FLAGS[name]
    if flag.present and flag.value != LM_DEFAULTS.get(name, flag.default):
      raise app.UsageError(
        f'--{name} is not used by experiments.{experiment}; use {instead}'
      )


#: The common flags of a budget in epochs, refused: an LM's is in tokens.
TOKEN_BUDGET = {
  'epochs': '--train_tokens (the budget in tokens)',
  'eval_every': '--eval_every_tokens',
}


def read_cosine_study(
  config_cls: type, experiment: str, replaced: Mapping[str, str]
) -> Any:
  """Reads ``config_cls`` whose ``lm`` is experiments.lm's config reduced to
  its cosine run at a constant batch, after `refuse_flags` (the
  `TOKEN_BUDGET`'s and ``replaced``)."""
  from experiments import lm

  refuse_flags(experiment, {**TOKEN_BUDGET, **replaced})
  return studies.read_flags(config_cls, lm=lm.baseline_config())


def cosine_run(lm: Any, lr: float, batch: int, where: str, fix: str, **more):
  """experiments.lm's config ``lm`` at peak ``lr`` and ``batch`` sequences
  (and the fields ``more``), validated.

  Raises:
    ValueError: ``'<where>: <the run's error>; <fix>'``.
  """
  run = dataclasses.replace(
    lm,
    common=dataclasses.replace(lm.common, lr=lr, batch_size=batch),
    **more,
  )
  try:
    run.validate()
  except ValueError as e:
    raise ValueError(f'{where}: {e}; {fix}') from None
  return run


def parse_tokens(text: str, flag: str) -> int:
  """A token count from a flag (`'2M'`, `'64Ki'`), errors naming the flag."""
  from lrjax import batch as lbatch

  return lbatch.parse_count(str(text), f'--{flag}')


def token_count(value: Any) -> str | None:
  """The check of a `token_setting`: None for a count that parses."""
  try:
    parse_tokens(value, 'tokens')
  except ValueError:
    return (
      'must be a whole token count >= 1 with an optional suffix k, M, G '
      '(powers of 1000) or Ki, Mi, Gi (powers of 1024), e.g. 2M or 64Ki'
    )
  return None


def check_task(flag: str, task: str, lm: Any) -> None:
  """Raises ValueError unless ``lm`` (experiments.lm's config) is given
  exactly when ``--<flag>`` is lm; validates it."""
  if (task == 'lm') != (lm is not None):
    raise ValueError(
      f"--{flag}={task} needs experiments.lm's config exactly when it is lm"
    )
  if lm is not None:
    lm.validate()


def token_setting(default: str | None, **kwargs: Any) -> Any:
  """A `setting` of a token count (``'64Ki'``); see `parse_token_settings`."""
  return setting(default, check=token_count, **kwargs)


def parse_token_settings(config: Any) -> None:
  """In ``__post_init__``: each `token_setting`'s text becomes its count."""
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if field.metadata.get('check') is token_count and value is not None:
      object.__setattr__(config, field.name, parse_tokens(value, field.name))


def check_sequences(config: Any, seq_len: int) -> None:
  """Raises ValueError naming a (non-optional) `token_setting` that is not
  a whole number of sequences."""
  from lrjax import batch as lbatch

  for field in dataclasses.fields(config):
    meta = field.metadata
    if meta.get('check') is token_count and not meta['none_if_empty']:
      lbatch.to_sequences(getattr(config, field.name), seq_len, field.name)


@dataclasses.dataclass(frozen=True)
class LmCommon:
  """The LM flags, then the common ones (from ``data_dir``; `LM_DEFAULTS`)."""

  corpus: str = setting('python_text/docs')
  """Text: bundled 'python_text/docs' (Python's documentation topics) or
  'python_text/stdlib' (its library sources), or a TFDS text dataset
  prepared as array_record in --data_dir (e.g. 'tiny_shakespeare')."""
  text_feature: str = setting('text')
  """The text feature of a TFDS --corpus."""
  validation_split: str = setting('validation')
  """The held-out split ('test' for lm1b)."""
  seq_len: int = setting(64, check=studies.at_least(1))
  """Tokens (bytes) per sequence, T."""
  lm_layers: int = setting(4, check=studies.at_least(1))
  """Transformer blocks."""
  lm_heads: int = setting(4, check=studies.at_least(1))
  """Attention heads."""
  lm_width: int = setting(128, check=studies.at_least(1))
  """Width d (a multiple of --lm_heads)."""
  lm_mlp_ratio: int = setting(4, check=studies.at_least(1))
  """MLP hidden width as a multiple of --lm_width."""
  lm_dropout: float = setting(0.0, check=studies.fraction())
  """Dropout rate."""
  lm_positions: str = setting('learned', choices=('learned', 'rotary'))
  """Position encoding."""
  lm_tie_embeddings: bool = setting(True)
  """Output layer = token embeddings."""
  lm_dtype: str = setting('float32', choices=('float32', 'bfloat16'))
  """Compute dtype (params: float32)."""
  eval_sequences: int = setting(0, check=studies.at_least(0, ' (0 = all)'))
  """Evaluate on this many evenly spaced validation sequences (0: all)."""
  b2: float = setting(0.99, check=studies.fraction())
  """Adam's second-moment decay beta_2."""
  data_dir: str | None = None
  seeds: tuple[int, ...] = (0,)
  lr: float = 1e-3
  batch_size: int = 12
  optimizer: str = 'adamw'
  momentum: float = 0.9
  weight_decay: float = 0.1
  clip_norm: float | None = None
  num_devices: int | None = 1
  max_device_batch: int = 4096
  parallel: str = 'shard_map'
  log_every: int = 50
  noise: bool = True
  noise_every: int = 8
  checkpoint_every: int = 0
  compilation_cache_dir: str | None = None
  compiler_options: tuple[str, ...] = ()

  # The names the reports (and experiments.goyal, experiments.recipe) read.
  layers = property(lambda self: self.lm_layers)
  heads = property(lambda self: self.lm_heads)
  width = property(lambda self: self.lm_width)

  def transformer(self):
    """The `lrjax.lm.TransformerConfig` (raises ValueError on a bad size)."""
    from lrjax import lm

    return lm.TransformerConfig(
      vocab_size=256,
      seq_len=self.seq_len,
      num_layers=self.lm_layers,
      num_heads=self.lm_heads,
      **{
        k: getattr(self, f'lm_{k}')
        for k in 'width mlp_ratio dropout positions tie_embeddings dtype'.split()
      },
    )

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    studies.check_settings(self)
    studies.check_settings(
      _common.CommonConfig(**{k: getattr(self, k) for k in _COMMON_FIELDS})
    )
    head = self.lm_width // self.lm_heads
    if self.lm_width % self.lm_heads or (
      self.lm_positions == 'rotary' and head % 2
    ):
      raise ValueError(
        f'--lm_width={self.lm_width} must be a multiple of --lm_heads='
        f'{self.lm_heads} (each head gets width / heads features), an even '
        'multiple with --lm_positions=rotary'
      )
    self.transformer()


#: The `LmCommon` fields that are common flags (`_common.CommonConfig`).
_COMMON_FIELDS = tuple(
  f.name for f in dataclasses.fields(LmCommon) if 'help' not in f.metadata
)
#: The LM experiments' values of the common flags that are not given
#: (``--noise_every`` keeps the common flag's default).
LM_DEFAULTS = {
  name: getattr(LmCommon, name)
  for name in _COMMON_FIELDS
  if name != 'noise_every'
}

studies.define_flags(LmCommon)


def lm_common() -> LmCommon:
  """Reads the LM flags and the common flags (left out: `LM_DEFAULTS`)."""
  common = studies.read_flags(_common.CommonConfig, defaults=LM_DEFAULTS)
  return studies.read_flags(
    LmCommon, **{k: getattr(common, k) for k in _COMMON_FIELDS}
  )


@functools.cache
def load_split(common: LmCommon, split: str, corpus: str | None = None):
  """A split of ``corpus`` (None: `common.corpus`), cached."""
  from lrjax import data as ldata

  return ldata.load_text(
    corpus or common.corpus,
    split=split,
    seq_len=common.seq_len,
    data_dir=common.data_dir,
    feature=common.text_feature,
  )


@functools.cache
def train_and_evaluation(common: LmCommon) -> tuple[Any, dict]:
  """The training split and the validation sequences every run is tested
  on, cached."""
  train = load_split(common, 'train')
  valid = load_split(common, common.validation_split)
  return train, valid.evenly_spaced(common.eval_sequences)


def lm_eval(logits: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
  """Per-sequence loss, bits per byte, accuracy and (LRBench++) confidence:
  `lrjax.lm.lm_eval_metrics` with ``confidence``. Named here because the
  trained runs' task fingerprints name it."""
  from lrjax import lm

  return lm.lm_eval_metrics(logits, batch, confidence=True)


def make_task(
  common: LmCommon,
  train: Any,
  evaluate: Any,
  seed: int,
  *,
  params: Any = None,
  name: str = 'lm',
):
  """`lrjax.tasks.language_model` of the Transformer, evaluated with
  `lm_eval`, from ``params`` (None: initialised from ``seed``)."""
  from lrjax import tasks

  return tasks.language_model(
    train,
    evaluate,
    config=common.transformer(),
    seed=seed,
    params=params,
    eval_metrics=lm_eval,
    name=name,
  )


def study_task(common: Any, seed: int, name: str) -> Any:
  """The task of a study of either kind: the image task of a
  `_common.CommonConfig`, or `make_task` of an `LmCommon` on its
  `train_and_evaluation`, named ``'lm <name>'``."""
  if not isinstance(common, LmCommon):
    return _common.make_task(common, seed)
  data = train_and_evaluation(common)
  return make_task(common, *data, seed, name=f'lm {name}')


#: The `LmCommon` fields every run's TrainConfig takes as they are.
_TRAIN_FIELDS = (
  'momentum optimizer weight_decay clip_norm b2 max_device_batch num_devices '
  'parallel log_every checkpoint_every compilation_cache_dir'
).split()


def train_config(
  common: LmCommon,
  *,
  batch: Any,
  lr: Any,
  seed: int,
  eval_every: float,
  batch_sizes: Sequence[int] | None = None,
  **overrides: Any,
):
  """The `lrjax.train.TrainConfig` of one run; ``overrides`` any field. The
  noise tracker slices the micro-batches of ``batch_sizes`` (None: those of
  ``batch``) in `lrjax.noise.slice_count`: 4 when 4 divides them all, else
  2, else 1."""
  from lrjax import noise
  from lrjax import train as lrtrain

  if batch_sizes is None:
    batch_sizes = [batch] if isinstance(batch, int) else batch.batch_sizes
  slices = noise.slice_count(
    batch_sizes,
    num_devices=common.num_devices or 1,
    max_device_batch=common.max_device_batch,
  )
  fields = dict(
    {k: getattr(common, k) for k in _TRAIN_FIELDS},
    compiler_options=lrtrain.parse_compiler_options(common.compiler_options),
    batch=batch,
    lr=lr,
    seed=seed,
    eval_every=eval_every,
    eval_batch_size=256,
    # A batch is one fancy index into the token array: a prefetch thread
    # only competes with XLA's threads (measured by bench_lm_trainer).
    prefetch=0,
    # Kept to resume after a kill.
    keep_checkpoints=1 if common.checkpoint_every else 0,
    noise=lrtrain.NoiseConfig(
      enabled=common.noise, every=common.noise_every, num_slices=slices
    ),
    progress_bar=False,
  )
  return lrtrain.TrainConfig(**{**fields, **overrides})


def final(run: Any, key: str) -> float:
  """A finished run's final evaluation metric ``key`` (NaN if none)."""
  from lrjax import studies

  return studies.Metric(key, key, key).of(run)


def ms(values: Sequence[float], digits: int = 3) -> str:
  """``mean ± std`` of the finite values (``n/a`` when none).

  Examples:
    >>> ms([1.0, 3.0]), ms([2.0, math.nan])
    ('2.000 ± 1.414', '2.000')
    >>> ms([None, math.inf], 1)
    'n/a'
  """
  finite = [v for v in values if v is not None and math.isfinite(v)]
  if not finite:
    return 'n/a'
  if len(finite) == 1:
    return f'{finite[0]:.{digits}f}'
  return _common.fmt_mean_std(finite, 1.0, digits)
