r"""Metrics of a classifier's predicted probabilities.

Beyond accuracy, LRBench (Wu et al. 2019) compares LR policies by the
confidence of the predictions, and Jin et al. (2023) by how evenly that
confidence spreads over the classes (CDAC). All work on NumPy arrays.

References:
  Wu et al. Demystifying Learning Rate Policies for High Accuracy Training
  of Deep Neural Networks. IEEE Big Data 2019 (LRBench).

  Jin et al. Rethinking Learning Rate Tuning in the Era of Large Language
  Models. IEEE CogMI 2023 (LRBench++).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ['prediction_metrics']


def prediction_metrics(probs: ArrayLike, labels: ArrayLike) -> dict[str, float]:
  r"""Accuracy, loss and confidence of predicted class probabilities.

  With :math:`p_i` the probabilities of example :math:`i`, :math:`y_i` its
  label and :math:`C` the correctly classified examples:

  .. math::
    \text{loss} = -\frac{1}{n} \sum_i \log p_{i, y_i}, \qquad
    \text{confidence}_i = \max_k p_{i, k} \quad (i \in C),

  ``cdac_std`` is the standard deviation over classes of each class's mean
  confidence on its correct predictions (classes without one are left out).

  Args:
    probs: ``[n, classes]`` predicted probabilities (computed in their
      dtype: float32 probabilities give float32 sums).
    labels: ``[n]`` integer labels.

  Returns:
    ``top1`` and ``top5`` accuracy, ``loss`` (mean cross-entropy, the
    probabilities clipped at 1e-12), ``confidence_mean`` and
    ``confidence_std`` over the correct predictions, and ``cdac_std``; the
    last three are NaN when no prediction is correct. Standard deviations
    are population ones.

  Examples:
    >>> m = prediction_metrics([[0.5, 0.5], [0.2, 0.8]], [0, 1])
    >>> m['top1'], round(m['confidence_mean'], 6), round(m['cdac_std'], 6)
    (1.0, 0.65, 0.15)

  References:
    Wu et al. 2019 (LRBench); Jin et al. 2023 (LRBench++, CDAC).
  """
  probs, labels = np.asarray(probs), np.asarray(labels)
  n, classes = probs.shape
  confidence = probs.max(axis=1)
  correct = probs.argmax(axis=1) == labels
  top5 = np.argsort(-probs, axis=1)[:, : min(5, classes)]
  loss = -np.log(np.clip(probs[np.arange(n), labels], 1e-12, None))
  conf = confidence[correct]
  per_class = [
    c.mean()
    for k in range(classes)
    if (c := confidence[correct & (labels == k)]).size
  ]
  return {
    'top1': float(correct.mean()),
    'top5': float((top5 == labels[:, None]).any(axis=1).mean()),
    'loss': float(loss.mean()),
    'confidence_mean': float(conf.mean()) if conf.size else math.nan,
    'confidence_std': float(conf.std()) if conf.size else math.nan,
    'cdac_std': float(np.std(per_class)) if per_class else math.nan,
  }
