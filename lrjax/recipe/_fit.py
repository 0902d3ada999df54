"""Power laws of the budget, fitted from grids of small runs.

DeepSeek LLM (2024) ran grids of learning rate x batch size at several
compute budgets, kept the near-optimal runs of each budget (loss within
0.25% of the budget's best) and fitted the optimal LR and batch as power
laws of the compute: :math:`\\eta_{opt} = 0.3118\\, C^{-0.1250}`,
:math:`B_{opt} = 0.2920\\, C^{0.3271}`. The same fit, for any budget unit
(examples, tokens, FLOPs), with bootstrap confidence intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np


class PowerLaw(NamedTuple):
  """:math:`y = a x^b`.

  Attributes:
    coefficient: a > 0.
    exponent: b.
  """

  coefficient: float
  exponent: float

  def __call__(self, x: Any) -> np.ndarray:
    """:math:`a x^b` at ``x``."""
    return self.coefficient * np.asarray(x, np.float64) ** self.exponent


class PowerLawFit(NamedTuple):
  """Result of :func:`bootstrap_power_law`.

  Attributes:
    fit: the least-squares fit of all points.
    coefficient_ci: ``(low, high)`` of the coefficient.
    exponent_ci: ``(low, high)`` of the exponent.
    at: the x values of the predictions (possibly empty).
    prediction: the fit's y at ``at``.
    prediction_ci: ``[len(at), 2]`` lows and highs of the predictions.
    resamples: the fits of the resamples ``[R, 2]`` (coefficient, exponent).
    level: the confidence level.
  """

  fit: PowerLaw
  coefficient_ci: tuple[float, float]
  exponent_ci: tuple[float, float]
  at: np.ndarray
  prediction: np.ndarray
  prediction_ci: np.ndarray
  resamples: np.ndarray
  level: float


def _check(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if x.ndim != 1 or x.shape != y.shape:
    raise ValueError(
      f'x and y must be 1-D of the same length; got {x.shape} and {y.shape}'
    )
  if not (np.all(np.isfinite(x)) and np.all(x > 0)):
    raise ValueError(f'x={x.tolist()} must be finite and > 0 (a power law)')
  if not (np.all(np.isfinite(y)) and np.all(y > 0)):
    raise ValueError(f'y={y.tolist()} must be finite and > 0 (a power law)')
  if np.unique(x).size < 2:
    raise ValueError(f'x={x.tolist()} needs at least 2 distinct values')
  return x, y


def fit_power_law(x: Any, y: Any) -> PowerLaw:
  """Least squares in log space: :math:`\\log y = \\log a + b \\log x`.

  .. math::
    b = \\frac{\\sum_i (u_i - \\bar u)(v_i - \\bar v)}
      {\\sum_i (u_i - \\bar u)^2}, \\qquad
    \\log a = \\bar v - b \\bar u, \\qquad u = \\log x,\\; v = \\log y

  Args:
    x: budgets, > 0, at least two distinct.
    y: the optimal values at them, > 0.

  Returns:
    The :class:`PowerLaw`.

  Raises:
    ValueError: for mismatched shapes, non-positive values or fewer than
      two distinct x.

  Examples:
    >>> law = fit_power_law([1e2, 1e4, 1e6], [2.0, 0.2, 0.02])
    >>> print(f'{law.coefficient:.3f} {law.exponent:.3f}')
    20.000 -0.500
  """
  x, y = _check(x, y)
  u, v = np.log(x), np.log(y)
  du = u - u.mean()
  b = float(np.sum(du * (v - v.mean())) / np.sum(du * du))
  return PowerLaw(float(np.exp(v.mean() - b * u.mean())), b)


def bootstrap_power_law(
  x: Any,
  y: Any,
  *,
  at: Sequence[float] = (),
  num_resamples: int = 1000,
  level: float = 0.95,
  seed: int = 0,
) -> PowerLawFit:
  """The power-law fit with percentile bootstrap confidence intervals.

  Each resample draws the n points (pairs) with replacement and refits;
  a resample with a single distinct x has no slope and is drawn again.
  The intervals are the :math:`(1 \\mp \\text{level})/2` percentiles of the
  resamples' coefficients, exponents and predictions at ``at``.

  Args:
    x: budgets, > 0.
    y: optimal values, > 0.
    at: budgets to predict at (the extrapolation).
    num_resamples: R >= 10.
    level: in (0, 1).
    seed: the resampling's seed.

  Returns:
    The :class:`PowerLawFit`.

  Raises:
    ValueError: for bad points (see :func:`fit_power_law`), ``level`` or
      ``num_resamples``.

  Examples:
    >>> x = [1e2, 1e2, 1e4, 1e4, 1e6, 1e6]
    >>> y = [2.2, 1.8, 0.22, 0.18, 0.022, 0.018]
    >>> r = bootstrap_power_law(x, y, at=[1e8])
    >>> lo, hi = r.exponent_ci
    >>> print(f'{r.fit.exponent:.3f} {lo < -0.5 < hi}')
    -0.500 True

  References:
    DeepSeek-AI 2024, "DeepSeek LLM: Scaling Open-Source Language Models
    with Longtermism", section 3.1. Efron, Tibshirani 1993, "An
    Introduction to the Bootstrap" (percentile intervals).
  """
  x, y = _check(x, y)
  if not 0 < level < 1:
    raise ValueError(f'{level=} must be in (0, 1), e.g. 0.95')
  if int(num_resamples) != num_resamples or num_resamples < 10:
    raise ValueError(f'{num_resamples=} must be an integer >= 10')
  at = np.asarray(at, np.float64).reshape(-1)
  fit = fit_power_law(x, y)
  rng = np.random.default_rng(seed)
  fits = []
  while len(fits) < num_resamples:
    idx = rng.integers(0, x.size, x.size)
    if np.unique(x[idx]).size < 2:
      continue
    law = fit_power_law(x[idx], y[idx])
    fits.append((law.coefficient, law.exponent))
  fits = np.asarray(fits)
  q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
  a_lo, a_hi = np.percentile(fits[:, 0], q)
  b_lo, b_hi = np.percentile(fits[:, 1], q)
  preds = fits[:, :1] * at[None, :] ** fits[:, 1:]
  pred_ci = np.percentile(preds, q, axis=0).T if at.size else np.zeros((0, 2))
  return PowerLawFit(
    fit=fit,
    coefficient_ci=(float(a_lo), float(a_hi)),
    exponent_ci=(float(b_lo), float(b_hi)),
    at=at,
    prediction=fit(at),
    prediction_ci=pred_ci,
    resamples=fits,
    level=float(level),
  )


def near_optimal(
  budgets: Any, values: Any, losses: Any, tolerance: float = 0.0025
) -> tuple[np.ndarray, np.ndarray]:
  """The runs of each budget whose loss is within a tolerance of its best.

  For each distinct budget :math:`C` with best loss :math:`L^*_C`, keeps
  the runs with :math:`L \\le (1 + \\text{tolerance}) L^*_C` (DeepSeek
  LLM: 0.25%). Non-finite losses (diverged runs) are never kept.

  Args:
    budgets: each run's budget.
    values: each run's hyperparameter (LR or batch).
    losses: each run's final loss.
    tolerance: >= 0.

  Returns:
    ``(budgets, values)`` of the kept runs, to fit with
    :func:`fit_power_law` or :func:`bootstrap_power_law`.

  Raises:
    ValueError: for mismatched lengths, a negative tolerance or a budget
      with no finite loss.

  Examples:
    >>> c, v = near_optimal([1, 1, 1, 2, 2], [0.1, 0.2, 0.4, 0.1, 0.2],
    ...                     [1.0, 0.9, 0.901, 0.8, 0.85], tolerance=0.01)
    >>> print(c.tolist(), v.tolist())
    [1.0, 1.0, 2.0] [0.2, 0.4, 0.1]
  """
  budgets = np.asarray(budgets, np.float64)
  values = np.asarray(values, np.float64)
  losses = np.asarray(losses, np.float64)
  if not budgets.shape == values.shape == losses.shape or budgets.ndim != 1:
    raise ValueError(
      f'budgets, values and losses must be 1-D of one length; got '
      f'{budgets.shape}, {values.shape}, {losses.shape}'
    )
  if not tolerance >= 0:
    raise ValueError(f'{tolerance=} must be >= 0')
  keep = np.zeros(budgets.shape, bool)
  for c in np.unique(budgets):
    mine = (budgets == c) & np.isfinite(losses)
    if not mine.any():
      raise ValueError(f'budget {c:g} has no run with a finite loss')
    best = losses[mine].min()
    keep |= mine & (losses <= best + tolerance * abs(best))
  return budgets[keep], values[keep]


__all__ = [
  'PowerLaw',
  'PowerLawFit',
  'bootstrap_power_law',
  'fit_power_law',
  'near_optimal',
]
