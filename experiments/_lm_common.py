r"""What the language-model experiments share: flags, the LM task, tokens.

`experiments.lm` (pretraining) and `experiments.finetune` (LRBench++) train
`lrjax.lm.Transformer` on byte-level text as an ordinary trainer task
(`lrjax.train.Task` passed to `train_and_evaluate`): sequences of
`--seq_len` bytes are the examples, so batch sizes are in sequences and
tokens are a derived unit (a batch of B sequences is :math:`B T` tokens).

The common flags of `experiments._common` keep their meaning (seeds,
batch size in sequences, optimizer, weight decay, momentum as Adam's
:math:`\beta_1`, devices, logging, checkpoints), but a language model wants
other defaults than an image classifier: a common flag that is not given
takes the value of `LM_DEFAULTS` (AdamW at LR 1e-3, weight decay 0.1, batch
12, one seed), not the image experiments' default. The image-only flags
(`--dataset`, `--model`, `--augment`, `--synthetic_*`) are refused with a
message naming the LM flag to use instead.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import app, flags

from experiments import _common

FLAGS = flags.FLAGS

CORPUS = flags.DEFINE_string(
  'corpus',
  'python_text/docs',
  "Text to pretrain on: 'python_text/docs' (bundled: the interpreter's "
  "documentation topics), 'python_text/stdlib' (its standard-library "
  'sources) or a TFDS text dataset prepared as array_record in --data_dir '
  "(e.g. 'tiny_shakespeare').",
)
TEXT_FEATURE = flags.DEFINE_string(
  'text_feature', 'text', 'The text feature of a TFDS --corpus.'
)
VALIDATION_SPLIT = flags.DEFINE_string(
  'validation_split',
  'validation',
  "The held-out split to evaluate on ('validation'; 'test' for lm1b).",
)
SEQ_LEN = flags.DEFINE_integer(
  'seq_len', 64, 'Tokens (bytes) the model reads per sequence, T.'
)
LM_LAYERS = flags.DEFINE_integer('lm_layers', 4, 'Transformer blocks.')
LM_HEADS = flags.DEFINE_integer('lm_heads', 4, 'Attention heads per block.')
LM_WIDTH = flags.DEFINE_integer(
  'lm_width', 128, 'Residual stream width d (a multiple of --lm_heads).'
)
LM_MLP_RATIO = flags.DEFINE_integer(
  'lm_mlp_ratio', 4, 'MLP hidden width as a multiple of --lm_width.'
)
LM_DROPOUT = flags.DEFINE_float('lm_dropout', 0.0, 'Dropout rate in [0, 1).')
LM_POSITIONS = flags.DEFINE_enum(
  'lm_positions', 'learned', ['learned', 'rotary'], 'Position encoding.'
)
LM_TIE_EMBEDDINGS = flags.DEFINE_bool(
  'lm_tie_embeddings', True, 'Use the token embeddings as the output layer.'
)
LM_DTYPE = flags.DEFINE_enum(
  'lm_dtype',
  'float32',
  ['float32', 'bfloat16'],
  'Compute dtype (parameters stay float32).',
)
EVAL_SEQUENCES = flags.DEFINE_integer(
  'eval_sequences',
  0,
  'Evaluate on this many evenly spaced sequences of the validation split '
  '(0: all of them).',
)
B2 = flags.DEFINE_float('b2', 0.99, "Adam's second-moment decay beta_2.")

_common.register_bound('seq_len', 1)
_common.register_bound('lm_layers', 1)
_common.register_bound('lm_heads', 1)
_common.register_bound('lm_width', 1)
_common.register_bound('lm_mlp_ratio', 1)
_common.register_bound('eval_sequences', 0, note=' (0 = all)')
flags.register_validator(
  'lm_dropout',
  lambda v: 0.0 <= v < 1.0,
  message='--lm_dropout must be in [0, 1)',
)
flags.register_validator(
  'b2', lambda v: 0.0 <= v < 1.0, message='--b2 must be in [0, 1)'
)


@flags.multi_flags_validator(
  ['lm_width', 'lm_heads', 'lm_positions'],
  message='--lm_width must be a multiple of --lm_heads (each head gets '
  'width / heads features), an even multiple with --lm_positions=rotary',
)
def _heads_divide_width(values: Mapping[str, Any]) -> bool:
  width, heads = values['lm_width'], values['lm_heads']
  if heads < 1 or width % heads:
    return False
  return values['lm_positions'] != 'rotary' or (width // heads) % 2 == 0


#: The LM experiments' values of the common flags that are not given.
LM_DEFAULTS = {
  'seeds': (0,),
  'lr': 1e-3,
  'batch_size': 12,
  'momentum': 0.9,
  'optimizer': 'adamw',
  'weight_decay': 0.1,
  'clip_norm': None,
  'num_devices': 1,
  'max_device_batch': 4096,
  'parallel': 'shard_map',
  'log_every': 50,
  'noise': True,
  'checkpoint_every': 0,
  'compilation_cache_dir': None,
  'data_dir': None,
}

# Image-only common flags, and what a language model uses instead.
_IMAGE_ONLY = {
  'dataset': '--corpus',
  'model': '--lm_layers, --lm_heads, --lm_width, ...',
  'augment': 'nothing (text is not augmented)',
  'synthetic_examples': '--corpus',
  'synthetic_shape': '--corpus',
  'synthetic_classes': '--corpus',
}


def use_defaults(defaults: Mapping[str, Any]) -> None:
  """Gives each flag of ``defaults`` that was not given its default here.

  The flag itself is set, so that the workdir's flags.cfg (every flag's
  value) repeats the run: a common flag left out takes the LM default, not
  the image experiments' one.
  """
  for name, value in defaults.items():
    if not FLAGS[name].present:
      if name == 'seeds':
        value = [str(s) for s in value]
      setattr(FLAGS, name, value)


def flag_value(name: str) -> Any:
  """A common flag's value (after `use_defaults`), as the config holds it."""
  value = FLAGS[name].value
  if name == 'seeds':
    return tuple(int(s) for s in value)
  if name in ('num_devices', 'compilation_cache_dir'):
    return value or None  # 0 / empty: none
  return value


def refuse_flags(experiment: str, replaced: Mapping[str, str]) -> None:
  """Raises `app.UsageError` for a flag this experiment does not read.

  A flag is refused when given a value other than the one the workdir's
  flags.cfg holds for it when left out (its LM default, else its default):
  flags.cfg lists every flag, and re-running from it must work.

  Args:
    experiment: the experiment's name, for the message.
    replaced: flag name -> what to use instead, besides the image-only ones.
  """
  for name, instead in {**_IMAGE_ONLY, **replaced}.items():
    flag = FLAGS[name]
    if flag.present and flag.value != LM_DEFAULTS.get(name, flag.default):
      raise app.UsageError(
        f'--{name} is not used by experiments.{experiment}; use {instead}'
      )


def parse_tokens(text: str, flag: str) -> int:
  """A token count from a flag (`'2M'`, `'64Ki'`), errors naming the flag."""
  from lrjax import batch as lbatch

  return lbatch.parse_count(str(text), f'--{flag}')


def register_token_flag(name: str, default: str, help_text: str) -> Any:
  """Defines a string flag holding a token count (SI/IEC suffixes)."""
  holder = flags.DEFINE_string(name, default, help_text)

  def valid(value: str) -> bool:
    try:
      parse_tokens(value, name)
    except ValueError:
      return False
    return True

  flags.register_validator(
    name,
    valid,
    message=f'--{name} must be a whole token count >= 1 with an optional '
    'suffix k, M, G (powers of 1000) or Ki, Mi, Gi (powers of 1024), '
    'e.g. 2M or 64Ki',
  )
  return holder


# ---------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class LmCommon:
  r"""The model, the data and how every run trains (both LM experiments).

  Attributes:
    corpus: the text to train on (`lrjax.data.load_text` name).
    data_dir: the TFDS data dir (None: TFDS's default).
    text_feature: the text feature of a TFDS corpus.
    validation_split: the split evaluated on.
    seq_len: T, tokens per sequence.
    layers, heads, width, mlp_ratio, dropout, positions, tie_embeddings,
      dtype: the `lrjax.lm.TransformerConfig`.
    eval_sequences: evenly spaced validation sequences evaluated (0: all).
    seeds: one run per seed.
    lr: the peak learning rate.
    batch_size: the base batch, in sequences.
    optimizer: 'adamw' (or any `lrjax.train.TrainConfig` optimizer).
    momentum: Adam's :math:`\beta_1` (SGD's momentum).
    b2: Adam's :math:`\beta_2`.
    weight_decay: weight decay (decoupled for AdamW).
    clip_norm: clip gradients to this global norm (None: no clipping).
    num_devices: data-parallel devices (None: all local devices).
    max_device_batch: the largest micro-batch per device.
    parallel: 'pmap' or 'shard_map'.
    log_every: updates between logged training records.
    noise: estimate the gradient noise scale B_simple.
    noise_every: updates between estimates.
    checkpoint_every: updates between checkpoints (0: only the final one
      where a run needs it).
    compilation_cache_dir: JAX's persistent compilation cache.
  """

  corpus: str = 'python_text/docs'
  data_dir: str | None = None
  text_feature: str = 'text'
  validation_split: str = 'validation'
  seq_len: int = 64
  layers: int = 4
  heads: int = 4
  width: int = 128
  mlp_ratio: int = 4
  dropout: float = 0.0
  positions: str = 'learned'
  tie_embeddings: bool = True
  dtype: str = 'float32'
  eval_sequences: int = 0
  seeds: tuple[int, ...] = (0,)
  lr: float = 1e-3
  batch_size: int = 12
  optimizer: str = 'adamw'
  momentum: float = 0.9
  b2: float = 0.99
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

  def transformer(self):
    """The `lrjax.lm.TransformerConfig` (raises ValueError on a bad size)."""
    from lrjax import lm

    return lm.TransformerConfig(
      vocab_size=256,
      seq_len=self.seq_len,
      num_layers=self.layers,
      num_heads=self.heads,
      width=self.width,
      mlp_ratio=self.mlp_ratio,
      dropout=self.dropout,
      positions=self.positions,
      tie_embeddings=self.tie_embeddings,
      dtype=self.dtype,
    )

  def validate(self) -> None:
    """Raises ValueError naming the field and the fix."""
    self.transformer()
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f'seeds={self.seeds!r} must be distinct, at least one')
    for name in ('lr', 'batch_size', 'log_every', 'noise_every'):
      if not getattr(self, name) > 0:
        raise ValueError(f'{name}={getattr(self, name)!r} must be > 0')
    if self.eval_sequences < 0:
      raise ValueError(f'eval_sequences={self.eval_sequences} must be >= 0')
    if not 0 <= self.b2 < 1:
      raise ValueError(f'b2={self.b2} must be in [0, 1)')


def lm_common() -> LmCommon:
  """Reads the LM flags and the common flags (LM defaults) after parsing."""
  use_defaults(LM_DEFAULTS)
  return LmCommon(
    corpus=CORPUS.value,
    data_dir=flag_value('data_dir'),
    text_feature=TEXT_FEATURE.value,
    validation_split=VALIDATION_SPLIT.value,
    seq_len=SEQ_LEN.value,
    layers=LM_LAYERS.value,
    heads=LM_HEADS.value,
    width=LM_WIDTH.value,
    mlp_ratio=LM_MLP_RATIO.value,
    dropout=LM_DROPOUT.value,
    positions=LM_POSITIONS.value,
    tie_embeddings=LM_TIE_EMBEDDINGS.value,
    dtype=LM_DTYPE.value,
    eval_sequences=EVAL_SEQUENCES.value,
    seeds=flag_value('seeds'),
    lr=flag_value('lr'),
    batch_size=flag_value('batch_size'),
    optimizer=flag_value('optimizer'),
    momentum=flag_value('momentum'),
    b2=B2.value,
    weight_decay=flag_value('weight_decay'),
    clip_norm=flag_value('clip_norm'),
    num_devices=flag_value('num_devices'),
    max_device_batch=flag_value('max_device_batch'),
    parallel=flag_value('parallel'),
    log_every=flag_value('log_every'),
    noise=flag_value('noise'),
    noise_every=FLAGS.noise_every,  # the flag experiments share
    checkpoint_every=flag_value('checkpoint_every'),
    compilation_cache_dir=flag_value('compilation_cache_dir'),
  )


# ---------------------------------------------------------------- data


@functools.cache
def _load(
  corpus: str, split: str, seq_len: int, data_dir: str | None, feature: str
):
  from lrjax import data as ldata

  return ldata.load_text(
    corpus, split=split, seq_len=seq_len, data_dir=data_dir, feature=feature
  )


def load_split(common: LmCommon, split: str, corpus: str | None = None):
  """One split of a corpus as a `lrjax.data.TextDataset` (cached).

  Args:
    common: the settings (`seq_len`, `data_dir`, `text_feature`).
    split: 'train' or the validation split's name.
    corpus: the corpus (None: `common.corpus`).
  """
  return _load(
    corpus or common.corpus,
    split,
    common.seq_len,
    common.data_dir,
    common.text_feature,
  )


def evenly_spaced(dataset: Any, count: int) -> dict[str, np.ndarray]:
  r"""``count`` sequences of a TextDataset, evenly spaced over the split.

  Sequence :math:`\lfloor i n / k \rfloor` for :math:`i < k`, with
  :math:`n` sequences in the split and :math:`k` = ``count`` (all of them
  when ``count`` is 0 or at least :math:`n`): a deterministic sample that
  covers the whole split (every file of a corpus of many files), as a dict
  of arrays the trainer reads as a source.

  Examples:
    >>> from lrjax.data import TextDataset
    >>> ds = TextDataset.from_text('abcdefghij', seq_len=2)  # 4 sequences
    >>> evenly_spaced(ds, 2)['tokens'].tolist()  # sequences 0 and 2
    [[97, 98, 99], [101, 102, 103]]
  """
  n = dataset.num_examples
  k = n if count <= 0 or count >= n else count
  return dataset.take((np.arange(k, dtype=np.int64) * n) // k)


def train_and_evaluation(common: LmCommon) -> tuple[Any, dict]:
  """The training split and the `eval_sequences` evenly spaced sequences
  of the validation split that every run is evaluated on."""
  train = load_split(common, 'train')
  valid = load_split(common, common.validation_split)
  return train, evenly_spaced(valid, common.eval_sequences)


def baselines(train: Any, evaluate: Any) -> dict[str, float]:
  """Unigram and bigram cross-entropy of the evaluated split, nats/token.

  Counted on the training split's whole byte stream and scored on the
  validation stream up to the last target of its last sequence (the
  targets the model is scored on when every sequence is evaluated).
  """
  from lrjax import lm

  stream = evaluate.tokens[: evaluate.num_examples * evaluate.seq_len + 1]
  return {
    'unigram': lm.unigram_loss(train.tokens, stream),
    'bigram': lm.bigram_loss(train.tokens, stream),
  }


# ---------------------------------------------------------------- task


def lm_eval(logits: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
  r"""Per-sequence evaluation metrics: loss, bits per byte, confidence.

  `lrjax.lm.lm_eval_metrics` (loss, bits per byte, next-byte accuracy),
  and with :math:`p_t` the largest predicted probability at position t
  and :math:`c_t` whether its byte is the target,

  .. math::
    \mathrm{confidence} = \frac{1}{T}\sum_t p_t, \qquad
    \mathrm{correct\_confidence} = \frac{1}{T}\sum_t c_t\, p_t,

  so that over a split ``correct_confidence / accuracy`` is the mean
  confidence on the correctly predicted bytes (LRBench++'s confidence).
  """
  import jax
  import jax.numpy as jnp

  from lrjax import lm

  out = dict(lm.lm_eval_metrics(logits, batch))
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  top = jnp.max(probs, axis=-1)
  correct = jnp.argmax(logits, axis=-1) == batch['tokens'][:, 1:]
  out['confidence'] = jnp.mean(top, axis=1)
  out['correct_confidence'] = jnp.mean(jnp.where(correct, top, 0.0), axis=1)
  return out


def make_task(
  common: LmCommon,
  train: Any,
  evaluate: Any,
  seed: int,
  *,
  params: Any = None,
  name: str = 'lm',
):
  """The trainer task: the Transformer on ``train``, evaluated on ``evaluate``.

  Args:
    common: the model's size.
    train: training sequences (a TextDataset or a dict of arrays).
    evaluate: evaluation sequences (likewise).
    seed: seeds the initial parameters and the dropout stream.
    params: parameters to start from (a pure dict, as the trainer's
      checkpoints hold them), or None for a fresh initialisation.
    name: the task's name.

  Returns:
    `lrjax.tasks.language_model` of the Transformer (loss in nats with
    bits per byte and accuracy, `lm_eval` metrics).
  """
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


def noise_config(common: LmCommon, micro_batches: Sequence[int]):
  """The noise-scale settings: 4 slices of each micro-batch when 4 divides
  them all (one device), else 2, else 1 (no one-device estimate)."""
  from lrjax import train as lrtrain

  slices = next(
    (k for k in (4, 2) if all(b % k == 0 for b in micro_batches)), 1
  )
  return lrtrain.NoiseConfig(
    enabled=common.noise, every=common.noise_every, num_slices=slices
  )


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
  """The trainer's config for one run.

  What is trained is the task (`make_task`), whose fingerprint the
  trainer records beside the config. Checkpoints are kept when the run
  checkpoints periodically (to resume after a kill).

  Args:
    common: the settings.
    batch: the batch size (sequences) or a `lrjax.batch.BatchSchedule`.
    lr: the LR policy over epochs.
    seed: the run's seed.
    eval_every: epochs between evaluations.
    batch_sizes: every batch size the run may train with (None: those of
      ``batch``), for the noise-scale slices.
    **overrides: any other `TrainConfig` field.

  Returns:
    A `lrjax.train.TrainConfig`.
  """
  from lrjax import batch as lbatch
  from lrjax import train as lrtrain

  if batch_sizes is None:
    batch_sizes = [batch] if isinstance(batch, int) else batch.batch_sizes
  sizes = list(batch_sizes)
  every_size = lbatch.BatchSchedule(
    tuple(lbatch.Stage(b, updates=1) for b in sizes), max(sizes)
  )
  replicas = common.num_devices or 1
  micro = lbatch.plan(every_size, replicas, common.max_device_batch)
  fields = dict(
    batch=batch,
    lr=lr,
    momentum=common.momentum,
    optimizer=common.optimizer,
    weight_decay=common.weight_decay,
    clip_norm=common.clip_norm,
    b2=common.b2,
    max_device_batch=common.max_device_batch,
    num_devices=common.num_devices,
    parallel=common.parallel,
    seed=seed,
    log_every=common.log_every,
    eval_every=eval_every,
    eval_batch_size=256,
    # A batch is one fancy index into the token array: a prefetch thread
    # only competes with XLA's threads (measured by bench_lm_trainer).
    prefetch=0,
    checkpoint_every=common.checkpoint_every,
    keep_checkpoints=1 if common.checkpoint_every else 0,
    noise=noise_config(common, micro.micro_batches),
    compilation_cache_dir=common.compilation_cache_dir,
    progress_bar=False,
  )
  fields.update(overrides)
  return lrtrain.TrainConfig(**fields)


# ---------------------------------------------------------------- records


def token_columns(columns: Mapping[str, np.ndarray], seq_len: int) -> dict:
  """Metric columns with their example counts also in tokens.

  `lrjax.batch.with_tokens` applied to columns: ``examples`` ->
  ``tokens``, ``batch_size`` -> ``batch_tokens``, ``noise_scale`` ->
  ``noise_scale_tokens`` (each times ``seq_len``).
  """
  from lrjax import batch as lbatch

  return lbatch.with_tokens(dict(columns), seq_len)


def train_seconds(train: Mapping[str, np.ndarray]) -> np.ndarray:
  """Training seconds at each logged step, from the logged step rates."""
  steps = train.get('step', np.zeros(0))
  rates = train.get('steps_per_sec', np.zeros(0))
  previous = np.concatenate([[0.0], steps[:-1]])
  with np.errstate(divide='ignore', invalid='ignore'):
    dt = np.where(rates > 0, (steps - previous) / rates, 0.0)
  return np.cumsum(np.nan_to_num(dt))


def ms(values: Sequence[float], digits: int = 3) -> str:
  """``mean ± std`` of the finite values (``n/a`` when none)."""
  finite = [v for v in values if v is not None and math.isfinite(v)]
  if not finite:
    return 'n/a'
  if len(finite) == 1:
    return f'{finite[0]:.{digits}f}'
  return _common.fmt_mean_std(finite, 1.0, digits)


def run_dir(workdir: str, *parts: str) -> str:
  """A run's directory under ``workdir/runs``."""
  return os.path.join(workdir, 'runs', *parts)
