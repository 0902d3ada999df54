"""The LR range test's settings and runner, shared by lr_find and lrbench."""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any

from absl import logging

from experiments import _common
from lrjax import studies
from lrjax.studies import setting

SUGGESTIONS = ('minimum_over_10', 'steepest', 'valley')
# fastai's EMA decay for the smoothed loss (lrjax.finder.smooth).
BETA = 0.98


@dataclasses.dataclass(frozen=True)
class FinderConfig:
  """The LR range test's sweep (each field is its flag)."""

  finder_min_lr: float = setting(1e-4, check=studies.above(0))
  """LR range test: the first (smallest) LR."""
  finder_max_lr: float = setting(10.0)
  """LR range test: the last (largest) LR."""
  finder_steps: int = setting(100, check=studies.at_least(2))
  """LR range test: updates, LR growing geometrically."""
  finder_suggestion: str = setting('minimum_over_10', choices=SUGGESTIONS)
  """LR range test: which suggested LR to use (fastai names)."""

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    studies.check_settings(self)
    if not self.finder_max_lr > self.finder_min_lr:
      raise ValueError(
        f'--finder_max_lr={self.finder_max_lr} must be > '
        f'--finder_min_lr={self.finder_min_lr}'
      )


studies.define_flags(FinderConfig)

# The settings a range test depends on besides the sweep.
_INPUTS = 'dataset model batch_size optimizer momentum weight_decay'.split()
_INPUTS += ['synthetic_examples', 'synthetic_shape', 'synthetic_classes']


def range_test(
  common: _common.CommonConfig,
  finder: FinderConfig,
  seed: int,
  workdir: str,
  overwrite: bool = False,
) -> dict[str, Any]:
  """`lrjax.recipe.probe_lr` of the experiment's task and optimizer.

  The model is initialised from `seed` and the batches drawn in the
  trainer's order (`lrjax.data.Sampler` with `seed`); batch norm normalises
  with the batch's statistics. `<workdir>/range_test.json` is reused when
  made from the same inputs (sweep, model, data, batch, optimizer, seed)
  unless `overwrite`.

  Returns:
    The JSON-ready `lrjax.finder.RangeTestResult` fields, with
    `suggested_lr` (the `finder.finder_suggestion` one), `suggestion` and
    `inputs`.
  """
  sweep = {
    k.removeprefix('finder_'): v for k, v in dataclasses.asdict(finder).items()
  }
  inputs = studies.jsonable(
    {'finder': sweep, 'seed': seed, **{k: getattr(common, k) for k in _INPUTS}}
  )
  path = os.path.join(workdir, 'range_test.json')
  saved = studies.read_json(path)
  if (
    not overwrite and isinstance(saved, dict) and saved.get('inputs') == inputs
  ):
    return saved
  from lrjax import data as lrdata
  from lrjax import recipe
  from lrjax import train as lrtrain

  task = _common.make_task(common, seed)
  _common.check_batch('--batch_size', common.batch_size, task.num_train)
  lrtrain.enable_compilation_cache(common.compilation_cache_dir)
  # The trainer's data order (lrjax.recipe.batches shuffles its own way).
  sampler = lrdata.Sampler(task.num_train, seed=seed)
  steps = finder.finder_steps

  def batches():
    for step in itertools.count():
      if step % max(steps // 10, 1) == 0:
        logging.info('range test (seed %d): step %d/%d', seed, step, steps)
      yield task.train_data.take(sampler.next(common.batch_size))

  suggested, result = recipe.probe_lr(
    task,
    batch_size=common.batch_size,
    optimizer=common.optimizer,
    momentum=common.momentum,
    weight_decay=common.weight_decay,
    num_steps=steps,
    min_lr=finder.finder_min_lr,
    max_lr=finder.finder_max_lr,
    beta=BETA,
    suggestion=finder.finder_suggestion,
    seed=seed,
    data=batches(),
    strict=False,
  )
  logging.info(
    'range test: done after %d of %d steps, suggested LR %.4g (%s)',
    len(result.lrs),
    steps,
    suggested,
    finder.finder_suggestion,
  )
  out = studies.jsonable(
    {
      **result._asdict(),
      'suggested_lr': suggested,
      'suggestion': finder.finder_suggestion,
      'inputs': inputs,
    }
  )
  os.makedirs(workdir, exist_ok=True)
  studies.write_json(path, out)
  return out


def as_result(test: dict[str, Any]) -> Any:
  """A saved range test (`range_test`'s dict) as `lrjax.finder.RangeTestResult`."""
  import numpy as np

  from lrjax import finder as lrfinder

  return lrfinder.RangeTestResult(
    **{k: np.asarray(test[k], float) for k in ('lrs', 'losses', 'smoothed')},
    suggestions=dict(test['suggestions']),
    stopped_early=bool(test['stopped_early']),
    beta=float(test['beta']),
  )
