"""LR range test flags and runner, shared by lr_find and lrbench."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from absl import flags, logging

from experiments import _common

FINDER_MIN_LR = flags.DEFINE_float(
  'finder_min_lr', 1e-4, 'LR range test: the first (smallest) LR.'
)
FINDER_MAX_LR = flags.DEFINE_float(
  'finder_max_lr', 10.0, 'LR range test: the last (largest) LR.'
)
FINDER_STEPS = flags.DEFINE_integer(
  'finder_steps', 100, 'LR range test: updates, LR growing geometrically.'
)

SUGGESTIONS = ('minimum_over_10', 'steepest', 'valley')
# fastai's EMA decay for the smoothed loss (lrjax.finder.smooth).
BETA = 0.98
FINDER_SUGGESTION = flags.DEFINE_enum(
  'finder_suggestion',
  'minimum_over_10',
  list(SUGGESTIONS),
  'LR range test: which suggested LR to use (fastai names).',
)

_common.register_bound('finder_min_lr', 0, strict=True)
_common.register_bound('finder_steps', 2)


@flags.multi_flags_validator(
  ['finder_min_lr', 'finder_max_lr'],
  message='--finder_max_lr must be > --finder_min_lr',
)
def _range_increases(values: Mapping[str, Any]) -> bool:
  return values['finder_max_lr'] > values['finder_min_lr']


@dataclasses.dataclass(frozen=True)
class FinderConfig:
  """The LR range test's sweep."""

  min_lr: float = 1e-4
  max_lr: float = 10.0
  steps: int = 100
  suggestion: str = 'minimum_over_10'

  def validate(self) -> None:
    """Raises ValueError naming the field and the fix."""
    if not 0 < self.min_lr < self.max_lr:
      raise ValueError(
        f'min_lr={self.min_lr} and max_lr={self.max_lr} need '
        '0 < min_lr < max_lr'
      )
    if self.steps < 2:
      raise ValueError(f'steps={self.steps} must be >= 2')
    if self.suggestion not in SUGGESTIONS:
      raise ValueError(f'suggestion={self.suggestion!r} not in {SUGGESTIONS}')


def finder_config() -> FinderConfig:
  """Reads the finder flags (after parsing)."""
  return FinderConfig(
    FINDER_MIN_LR.value,
    FINDER_MAX_LR.value,
    FINDER_STEPS.value,
    FINDER_SUGGESTION.value,
  )


def range_test(
  common: _common.CommonConfig,
  finder: FinderConfig,
  seed: int,
  workdir: str | None = None,
) -> dict[str, Any]:
  """Runs `lrjax.finder.lr_range_test` on the experiment's model and data.

  The model is initialised from `seed` and trained on batches of
  `common.batch_size` drawn by `lrjax.data.Sampler`, with the trainer's
  optimizer (`lrjax.train.make_optimizer`: same momentum and weight decay)
  while the LR sweeps geometrically from `finder.min_lr` to `finder.max_lr`.
  Batch norm layers normalise with the batch statistics (train mode).
  With `common.compilation_cache_dir` the step's compilation is cached
  there, so the range tests of later seeds (and reruns) skip it.

  A `<workdir>/range_test.json` made from the same inputs (the sweep, the
  model, data, batch size, optimizer and seed) is reused; one made from
  others is replaced.

  Returns:
    A JSON-ready dict: `lrs`, `losses`, `smoothed`, `suggestions` (steepest,
    minimum_over_10, valley), `suggested_lr` (the `finder.suggestion` one),
    `stopped_early`, `beta` (the smoothing EMA's decay) and `inputs`; also
    written to
    `<workdir>/range_test.json`.

  Raises:
    ValueError: for a batch size larger than the training split.
  """
  inputs = _common.jsonable(
    {
      'finder': finder,
      'seed': seed,
      **{
        k: getattr(common, k)
        for k in (
          'dataset',
          'model',
          'batch_size',
          'optimizer',
          'momentum',
          'weight_decay',
          'synthetic_examples',
          'synthetic_shape',
          'synthetic_classes',
        )
      },
    }
  )
  path = os.path.join(workdir, 'range_test.json') if workdir else None
  if path:
    saved = _common.read_json(path)
    if isinstance(saved, dict) and saved.get('inputs') == inputs:
      return saved
  import jax
  import jax.numpy as jnp
  import optax

  from lrjax import data as lrdata
  from lrjax import finder as lrfinder
  from lrjax import models
  from lrjax.train import make_optimizer

  train = _common.load_split(common, 'train', seed)
  model = models.get(common.model, num_classes=train.num_classes)
  shape = (1, *train.image_shape)
  variables = model.init(
    jax.random.key(seed), jnp.zeros(shape, jnp.float32), train=False
  )
  params = variables['params']
  batch_stats = variables.get('batch_stats', {})

  def loss_fn(p, batch):
    inputs = {'params': p}
    if batch_stats:
      inputs['batch_stats'] = batch_stats
      logits, _ = model.apply(
        inputs, batch['image'], train=True, mutable=['batch_stats']
      )
    else:
      logits = model.apply(inputs, batch['image'], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch['label']
    ).mean()

  def optimizer(lr):
    return make_optimizer(
      common.optimizer,
      learning_rate=lr,
      momentum=common.momentum,
      weight_decay=common.weight_decay,
    )

  _common.check_batch('--batch_size', common.batch_size, train.num_examples)
  _common.enable_compilation_cache(common.compilation_cache_dir)
  sampler = lrdata.Sampler(train.num_examples, seed=seed)
  batch_size = common.batch_size

  every = max(finder.steps // 10, 1)

  def batches():
    step = 0
    while True:
      if step % every == 0:
        logging.info(
          'range test (seed %d): step %d/%d', seed, step, finder.steps
        )
      step += 1
      yield train.take(sampler.next(batch_size))

  result = lrfinder.lr_range_test(
    loss_fn,
    params,
    optimizer,
    batches(),
    min_lr=finder.min_lr,
    max_lr=finder.max_lr,
    num_steps=finder.steps,
    beta=BETA,
  )
  logging.info(
    'range test: done after %d of %d steps, suggested LR %.4g (%s)',
    len(result.lrs),
    finder.steps,
    result.suggestions[finder.suggestion],
    finder.suggestion,
  )
  out = _common.jsonable(
    {
      'lrs': result.lrs,
      'losses': result.losses,
      'smoothed': result.smoothed,
      'suggestions': result.suggestions,
      'suggested_lr': result.suggestions[finder.suggestion],
      'suggestion': finder.suggestion,
      'stopped_early': result.stopped_early,
      'beta': result.beta,
      'inputs': inputs,
    }
  )
  if path:
    os.makedirs(workdir, exist_ok=True)
    _common.write_json(path, out)
  return out
