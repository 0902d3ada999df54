"""Running one training run per (configuration, seed), and reading it back.

A finished run leaves `summary.json` next to its `metrics.jsonl`; running the
experiment again with the same workdir reuses it instead of training again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

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
  after: Callable[[Any, str], Mapping[str, Any]] | None = None,
  train: Callable[[Any, str], Any] | None = None,
) -> Run:
  """Trains one run into `workdir` (or reuses a finished one) and reads it.

  Args:
    group: the configuration's name.
    seed: the run's seed (already in `config`).
    config: the trainer configuration.
    workdir: the run's own directory.
    after: optional `after(result, workdir) -> dict` computed once after
      training (e.g. confidence metrics from the final parameters); its
      values are stored in the summary.
    train: ``train(config, workdir) -> TrainResult``; None:
      `lrjax.train.train_and_evaluate`.

  Returns:
    The finished run.
  """
  summary_path = os.path.join(workdir, 'summary.json')
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
  else:
    from lrjax import train as lrtrain

    train = train or lrtrain.train_and_evaluate
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    result = train(config, workdir)
    summary = summarize(result)
    summary['total_seconds'] = time.perf_counter() - start
    if after is not None:
      summary.update(_common.jsonable(dict(after(result, workdir))))
    _common.write_json(summary_path, summary)
  train, evals = _common.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  return Run(group, seed, workdir, summary, train, evals.get('test', {}))


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
