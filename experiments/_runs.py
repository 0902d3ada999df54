"""Running one training run per (configuration, seed), and reading it back.

A finished run leaves `summary.json` (with the config it was trained with)
next to its `metrics.jsonl`; running the experiment again with the same
workdir reuses it when the config matches, resumes an unfinished run from
its last checkpoint, and refuses a run of another config.
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

from experiments import _common


@dataclasses.dataclass(frozen=True)
class Run:
  """One finished training run: its summary and its logged curves.

  Attributes:
    group: the configuration's name (schedule, policy, batch regime).
    seed: the seed.
    workdir: the trainer's workdir (config.json, metrics.jsonl).
    summary: final metrics and costs (see `summarize`).
    train: training-record columns of metrics.jsonl.
    test: test-evaluation columns of metrics.jsonl.
  """

  group: str
  seed: int
  workdir: str
  summary: dict[str, Any]
  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]


def _get(obj: Any, *names: str, default: Any = None) -> Any:
  for name in names:
    if isinstance(obj, Mapping) and name in obj:
      return obj[name]
    if hasattr(obj, name):
      return getattr(obj, name)
  return default


def summarize(result: Any) -> dict[str, Any]:
  """The JSON summary of a `lrjax.train.TrainResult`."""
  compile_seconds = _get(result, 'compile_seconds', default={}) or {}
  if isinstance(compile_seconds, Mapping):
    compile_total = float(sum(compile_seconds.values()))
    compile_seconds = {str(k): float(v) for k, v in compile_seconds.items()}
  else:
    compile_total = float(compile_seconds)
  train_metrics = dict(_get(result, 'train_metrics', default={}) or {})
  test_metrics = dict(_get(result, 'test_metrics', default={}) or {})
  return _common.jsonable(
    {
      'test_accuracy': test_metrics.get('accuracy'),
      'test_loss': test_metrics.get('loss'),
      'train_accuracy': train_metrics.get('accuracy'),
      'train_loss': train_metrics.get('loss'),
      'test_metrics': test_metrics,
      'test_step': _get(result, 'test_step'),
      'test_epoch': _get(result, 'test_epoch'),
      'train_metrics': train_metrics,
      'num_updates': _get(result, 'num_updates'),
      'examples_seen': _get(result, 'examples_seen'),
      'wall_seconds': _get(result, 'wall_seconds', 'wall_time'),
      'compile_seconds': compile_total,
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
  """Trains one run into `workdir` (or reuses a finished one) and reads it.

  A finished run (its `summary.json`) is reused only when the summary was
  made from the same trainer config, the same task (its fingerprint) and
  the same `extra`; an unfinished one resumes from its last checkpoint
  (the trainer checks its config and task).

  Args:
    group: the configuration's name.
    seed: the run's seed (already in `config`).
    config: the trainer configuration.
    workdir: the run's own directory.
    task: what is trained (a `lrjax.train.Task`).
    after: optional `after(result, workdir) -> dict` computed once after
      training (e.g. confidence metrics from the final parameters); its
      values are stored in the summary.
    train: ``train(config, workdir, task, overwrite=...) -> TrainResult``;
      None: `lrjax.train.train_and_evaluate`.
    extra: the experiment's settings the summary depends on besides the
      trainer config (e.g. what `after` computes), JSON-ready.
    overwrite: train afresh, deleting what `workdir` holds.
    progress: where this run stands among the experiment's runs, e.g.
      ``'policy 2/7, seed 1/3'``; logged at INFO with the group's name
      before the run trains or is reused (the trainer's own step lines
      are at absl verbosity 1).

  Returns:
    The finished run.

  Raises:
    lrjax.train.ConfigMismatchError: when `workdir` holds a run of another
      config or `extra`, naming the fields.
  """
  from lrjax import train as lrtrain

  summary_path = os.path.join(workdir, 'summary.json')
  extra = _common.jsonable(dict(extra or {}))
  if overwrite and os.path.exists(summary_path):
    os.remove(summary_path)
  summary = _common.read_json(summary_path)
  record = lrtrain.run_record(config, task)
  if progress:
    logging.info(
      '%s (%s): %s',
      progress,
      group,
      'reusing the finished run' if summary is not None else 'training',
    )
  if summary is not None:
    _check_summary(summary, record, extra, workdir)
  else:
    train = train or lrtrain.train_and_evaluate
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    result = train(config, workdir, task, overwrite=overwrite)
    summary = summarize(result)
    summary['total_seconds'] = time.perf_counter() - start
    if after is not None:
      summary.update(_common.jsonable(dict(after(result, workdir))))
    summary['config'] = record
    summary['extra'] = extra
    _common.write_json(summary_path, summary)
  train, evals = _common.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  return Run(group, seed, workdir, summary, train, evals.get('test', {}))


def adaptive_trainer(adaptive: Any) -> Callable[..., Any] | None:
  """``train(config, workdir, task)`` for `train_run` that grows the batch
  (`lrjax.train.train_adaptive`), or None (the plain trainer) when
  ``adaptive`` is None.

  The result is the run's TrainResult (one trainer call with
  `lrjax.train.AdaptiveBatchHook`), with the whole call's wall time.
  """
  if adaptive is None:
    return None

  def train(
    config: Any, workdir: str, task: Any, overwrite: bool = False
  ) -> Any:
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


def _check_summary(
  summary: Mapping[str, Any],
  record: Mapping[str, Any],
  extra: Mapping[str, Any],
  workdir: str,
) -> None:
  """Raises ConfigMismatchError unless `summary` is of this run record
  (config and task)."""
  from lrjax import train as lrtrain

  if 'config' not in summary:
    raise lrtrain.ConfigMismatchError(
      f'{workdir}/summary.json has no config (an older version wrote it), so '
      'it cannot be reused safely; pass --overwrite to train the runs again'
    )
  changes = lrtrain.config_changes(summary['config'], record)
  saved_extra = summary.get('extra', {})
  changes += [
    (k, saved_extra.get(k), extra.get(k))
    for k in sorted(set(saved_extra) | set(extra))
    if saved_extra.get(k) != extra.get(k)
  ]
  if changes:
    diff = lrtrain.describe_changes(changes)
    raise lrtrain.ConfigMismatchError(
      f'{workdir} holds a finished run of another config or task: {diff}. '
      'Use '
      'another --workdir, or --overwrite to train the runs again'
    )


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
  """A final evaluation metric the methods are compared on.

  Attributes:
    name: its key in results.json's rows and trials.
    label: its table header.
    key: its key in the run's summary (``in_test_metrics``: in the last
      evaluation's metrics).
    scale: the factor the table prints it with.
    digits: decimals in the table.
    higher_is_better: accuracy (True) or loss (False).
    in_test_metrics: read from ``summary['test_metrics']``.
  """

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
    array = np.asarray(values, np.float64)
    array = np.where(
      np.isfinite(array), array, -np.inf if self.higher_is_better else np.inf
    )
    return int(np.argmax(array) if self.higher_is_better else np.argmin(array))

  def worse(self, value: float, reference: float, tolerance: float) -> bool:
    """Whether ``value`` is more than ``tolerance`` worse than ``reference``
    (below it for accuracy, above it for a loss; NaN, a diverged run, is
    always worse).

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
