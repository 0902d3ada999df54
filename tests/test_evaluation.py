"""lrjax.evaluation against hand-computed values."""

import math

import numpy as np
import pytest

from lrjax import evaluation


def test_prediction_metrics_hand_computed():
  probs = np.array(
    [
      [0.7, 0.2, 0.1],  # label 0, correct, confidence 0.7
      [0.1, 0.8, 0.1],  # label 1, correct, confidence 0.8
      [0.6, 0.3, 0.1],  # label 1, wrong
      [0.1, 0.3, 0.6],  # label 2, correct, confidence 0.6
    ]
  )
  m = evaluation.prediction_metrics(probs, np.array([0, 1, 1, 2]))
  assert m['top1'] == pytest.approx(0.75)
  assert m['top5'] == pytest.approx(1.0)
  loss = -(math.log(0.7) + math.log(0.8) + math.log(0.3) + math.log(0.6)) / 4
  assert m['loss'] == pytest.approx(loss, rel=1e-12)
  assert m['confidence_mean'] == pytest.approx(0.7)
  # population std of (0.7, 0.8, 0.6)
  assert m['confidence_std'] == pytest.approx(math.sqrt(0.02 / 3))
  # per-class mean confidence on correct predictions: 0.7, 0.8, 0.6
  assert m['cdac_std'] == pytest.approx(math.sqrt(0.02 / 3))


def test_prediction_metrics_top5_and_no_correct_prediction():
  # Six classes: label 5 ranked last by example 0, label 4 in the top 5
  # (not first) by example 1.
  probs = np.array(
    [
      [0.3, 0.25, 0.2, 0.15, 0.1, 0.0],
      [0.4, 0.2, 0.15, 0.1, 0.1, 0.05],
    ]
  )
  m = evaluation.prediction_metrics(probs, np.array([5, 4]))
  assert m['top1'] == 0.0
  assert m['top5'] == pytest.approx(0.5)
  # p = 0 is clipped at 1e-12; example 1 contributes -log 0.1.
  assert m['loss'] == pytest.approx((-math.log(1e-12) - math.log(0.1)) / 2)
  assert math.isnan(m['confidence_mean']) and math.isnan(m['cdac_std'])
