"""One training run per (configuration, seed), and reading it back.

A finished run leaves ``summary.json`` (with its trainer config and task
fingerprint) beside its ``metrics.jsonl``; training it again reuses it
when they match, resumes an unfinished run from its last checkpoint, and
refuses another config or task.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from lrjax.studies import _files


@dataclasses.dataclass(frozen=True)
class Run:
  """One finished run: its configuration's name (``group``), seed, workdir,
  `summarize`'s summary, and the train and test columns of metrics.jsonl."""

  group: str
  seed: int
  workdir: str
  summary: dict[str, Any]
  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]


def summarize(result: Any) -> dict[str, Any]:
  """The JSON summary of a `lrjax.train.TrainResult`."""
  train = dict(result.train_metrics or {})
  test = dict(result.test_metrics or {})
  compile_seconds = result.compile_seconds or {}
  return _files.jsonable(
    {
      'test_accuracy': test.get('accuracy'),
      'test_loss': test.get('loss'),
      'train_accuracy': train.get('accuracy'),
      'train_loss': train.get('loss'),
      'test_metrics': test,
      'test_step': result.test_step,
      'test_epoch': result.test_epoch,
      'train_metrics': train,
      'num_updates': result.num_updates,
      'examples_seen': result.examples_seen,
      'wall_seconds': result.wall_time,
      'compile_seconds': float(sum(compile_seconds.values())),
      'compile_seconds_per_shape': compile_seconds,
    }
  )


def train_run(
  group: str,
  seed: int,
  config: Any,
  workdir: str,
  task: Any,
  after: Callable[[Any, str], Mapping[str, Any]] | None = None,
  train: Callable[..., Any] | None = None,
  *,
  extra: Mapping[str, Any] | None = None,
  overwrite: bool = False,
  progress: str = '',
) -> Run:
  """Trains one run of `config` and `task` into `workdir` and reads it.

  A finished run is reused only when its `summary.json` was made from the
  same trainer config, task (fingerprint) and `extra` (else
  `lrjax.train.ConfigMismatchError` names the fields); an unfinished one
  resumes from its last checkpoint.

  Args:
    group: the configuration's name.
    seed: the run's seed (already in `config`).
    after: ``after(result, workdir) -> dict``, computed once after
      training and stored in the summary.
    train: ``train(config, workdir, task, overwrite=...) -> TrainResult``;
      None: `lrjax.train.train_and_evaluate`.
    extra: JSON-ready settings the summary depends on besides the config.
    overwrite: train afresh, deleting what `workdir` holds.
    progress: e.g. ``'trial 2/7, seed 1/3'``, logged at INFO with the
      group's name before the run trains or is reused.

  Returns:
    The finished `Run`.

  Raises:
    lrjax.train.ConfigMismatchError: ``workdir`` holds a finished run of
      another config, task or ``extra``.
  """
  from lrjax import metrics as lmetrics
  from lrjax import train as lrtrain

  summary_path = os.path.join(workdir, 'summary.json')
  extra = _files.jsonable(dict(extra or {}))
  if overwrite and os.path.exists(summary_path):
    os.remove(summary_path)
  summary = _files.read_json(summary_path)
  record = lrtrain.run_record(config, task)
  if progress:
    doing = 'training' if summary is None else 'reusing the finished run'
    logging.info('%s (%s): %s', progress, group, doing)
  if summary is None:
    train = train or lrtrain.train_and_evaluate
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    result = train(config, workdir, task, overwrite=overwrite)
    summary = summarize(result)
    summary['total_seconds'] = time.perf_counter() - start
    if after is not None:
      summary.update(_files.jsonable(dict(after(result, workdir))))
    summary.update(config=record, extra=extra)
    _files.write_json(summary_path, summary)
  elif 'config' not in summary:
    raise lrtrain.ConfigMismatchError(
      f'{workdir}/summary.json has no config (an older version wrote it), so '
      'it cannot be reused safely; pass --overwrite to train the runs again'
    )
  else:
    saved = summary.get('extra', {})
    changes = lrtrain.config_changes(summary['config'], record) + [
      (k, saved.get(k), extra.get(k))
      for k in sorted(set(saved) | set(extra))
      if saved.get(k) != extra.get(k)
    ]
    if changes:
      raise lrtrain.ConfigMismatchError(
        f'{workdir} holds a finished run of another config or task: '
        f'{lrtrain.describe_changes(changes)}. Use another --workdir, or '
        '--overwrite to train the runs again'
      )
  train, evals = lmetrics.read_columns(os.path.join(workdir, 'metrics.jsonl'))
  return Run(group, seed, workdir, summary, train, evals.get('test', {}))


def adaptive_trainer(adaptive: Any) -> Callable[..., Any] | None:
  """`train_run`'s ``train`` growing the batch by `lrjax.train.train_adaptive`
  (with the whole call's wall time); None (the plain trainer) for None."""
  if adaptive is None:
    return None

  def train(config, workdir, task, overwrite=False):
    from lrjax import train as lrtrain

    done = lrtrain.train_adaptive(
      config, adaptive, workdir, task, overwrite=overwrite
    )
    return dataclasses.replace(
      done.result,
      wall_time=done.wall_time,
      compile_seconds=done.compile_seconds,
    )

  return train


def first_reaching(
  run: Run, key: str, target: float, cost: str = 'step'
) -> float:
  """The first logged test `cost` at which `key` reaches `target` (or NaN)."""
  values = run.test.get(key)
  costs = run.test.get(cost)
  if values is None or costs is None:
    return float('nan')
  hits = np.nonzero(values >= target)[0]
  return float(costs[hits[0]]) if hits.size else float('nan')


@dataclasses.dataclass(frozen=True)
class Metric:
  """A final evaluation metric the methods are compared on: its results
  key ``name``, table header ``label``, summary ``key`` (in
  ``summary['test_metrics']`` when ``in_test_metrics``), and the ``scale``
  and ``digits`` the table prints it with."""

  name: str
  label: str
  key: str
  scale: float = 1.0
  digits: int = 3
  higher_is_better: bool = False
  in_test_metrics: bool = True

  def of(self, run: Run) -> float:
    """The metric of a finished run (NaN if it has none)."""
    where = run.summary['test_metrics'] if self.in_test_metrics else run.summary
    value = where.get(self.key)
    return math.nan if value is None else float(value)

  def best(self, values: Sequence[float]) -> int:
    """The index of the best value (NaN, a diverged run, never wins)."""
    array = np.asarray(values, np.float64) * (
      1 if self.higher_is_better else -1
    )
    return int(np.argmax(np.where(np.isfinite(array), array, -np.inf)))

  def worse(self, value: float, reference: float, tolerance: float) -> bool:
    """Whether ``value`` is more than ``tolerance`` below (accuracy) or above
    (loss) ``reference``; NaN, a diverged run, is always worse.

    Examples:
      >>> VAL_LOSS.worse(2.2, 2.0, 0.1), VAL_LOSS.worse(2.05, 2.0, 0.1)
      (True, False)
      >>> ACCURACY.worse(0.90, 0.95, 0.02), ACCURACY.worse(float('nan'), 0.9, 1)
      (True, True)
    """
    if not math.isfinite(value):
      return True
    if self.higher_is_better:
      return value < reference - tolerance
    return value > reference + tolerance


ACCURACY = Metric(
  'test_accuracy',
  'test accuracy %',
  'test_accuracy',
  scale=100.0,
  digits=2,
  higher_is_better=True,
  in_test_metrics=False,
)
VAL_LOSS = Metric('val_loss', 'val loss (nats)', 'loss')
VAL_BPB = Metric('val_bits_per_byte', 'val bits/byte', 'bits_per_byte')


def final_variables(result: Any, workdir: str) -> dict[str, Any]:
  """A run's final params and model state (e.g. batch-norm statistics), as
  ``{'params': ..., **state}``; a run reused from its summary reads the
  state from its last checkpoint in ``workdir``."""
  state = getattr(result, 'model_state', None)
  if state is None and os.path.isdir(os.path.join(workdir, 'checkpoints')):
    from lrjax import train as lrtrain

    state = lrtrain.load_checkpoint(workdir)[0].get('model_state')
  return {'params': result.params, **(state or {})}
