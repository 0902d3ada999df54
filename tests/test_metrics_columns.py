"""lrjax.metrics.read_columns: a metrics.jsonl as arrays per key and split."""

import math

import numpy as np

from lrjax import metrics


def test_read_columns_splits_train_and_evaluations(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text(
    '{"step": 1, "loss": 2.0, "lr": 0.1, "note": "warm"}\n'
    '{"step": 2, "loss": "inf", "flag": true}\n'
    '{"step": 2, "split": "test", "accuracy": 0.5}\n'
    '{"step": 3, "loss": "NaN", "lr": 0.2}\n'
    '{"step": 4, "split": "test", "accuracy": 0.75}\n'
    '{"step": 5, "lo'
  )
  train, evals = metrics.read_columns(str(path))
  # Text and booleans are not numbers; a key a record lacks is NaN there.
  assert list(train) == ['step', 'loss', 'lr']
  np.testing.assert_array_equal(train['step'], [1.0, 2.0, 3.0])
  assert train['loss'][:2].tolist() == [2.0, math.inf]
  assert math.isnan(train['loss'][2])
  assert train['lr'][0] == 0.1 and math.isnan(train['lr'][1])
  assert list(evals) == ['test']
  np.testing.assert_array_equal(evals['test']['accuracy'], [0.5, 0.75])
  np.testing.assert_array_equal(evals['test']['step'], [2.0, 4.0])
