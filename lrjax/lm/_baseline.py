"""Count-based unigram and bigram baselines for a language model's loss."""

from __future__ import annotations

import math
import numbers

import numpy as np


def _tokens(x, name: str, vocab_size: int) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 1 or not np.issubdtype(x.dtype, np.integer):
    raise ValueError(f'{name} must be a 1-D integer token array')
  if x.size and (x.min() < 0 or x.max() >= vocab_size):
    raise ValueError(
      f'{name} has ids in [{x.min()}, {x.max()}], outside [0, {vocab_size=})'
    )
  return x.astype(np.int64)


def _check(vocab_size, alpha) -> None:
  if isinstance(vocab_size, bool) or not isinstance(
    vocab_size, numbers.Integral
  ):
    raise TypeError(f'{vocab_size=} must be an int')
  if vocab_size < 1:
    raise ValueError(f'{vocab_size=} must be >= 1')
  if not (math.isfinite(alpha) and alpha > 0):
    raise ValueError(
      f'{alpha=} must be > 0: add-alpha smoothing keeps unseen tokens finite'
    )


def unigram_loss(
  train, evaluate, vocab_size: int = 256, *, alpha: float = 0.5
) -> float:
  """Cross-entropy of a smoothed unigram model, nats per token.

  Token frequencies :math:`c_v` counted on ``train`` (:math:`n` tokens),
  with add-:math:`\\alpha` smoothing, scored on every token of
  ``evaluate``:

  .. math::
    p(v) = \\frac{c_v + \\alpha}{n + \\alpha V}, \\qquad
    \\mathcal{L} = -\\frac{1}{m} \\sum_{i=1}^{m} \\ln p(y_i).

  Args:
    train: 1-D integer tokens in ``[0, vocab_size)``.
    evaluate: 1-D integer tokens, at least one.
    vocab_size: V.
    alpha: the smoothing pseudo-count, > 0 (0.5: Jeffreys' prior).

  Returns:
    The loss in nats per token (divide by ln 2 for bits).

  Examples:
    >>> # p(0) = (2+1)/(3+2), p(1) = (1+1)/(3+2).
    >>> f'{unigram_loss([0, 0, 1], [0, 1], vocab_size=2, alpha=1.0):.6f}'
    '0.713558'
  """
  _check(vocab_size, alpha)
  train = _tokens(train, 'train', vocab_size)
  evaluate = _tokens(evaluate, 'evaluate', vocab_size)
  if not evaluate.size:
    raise ValueError('evaluate is empty: give at least one token')
  counts = np.bincount(train, minlength=vocab_size).astype(np.float64)
  log_p = np.log(counts + alpha) - np.log(train.size + alpha * vocab_size)
  return float(-log_p[evaluate].mean())


def bigram_loss(
  train, evaluate, vocab_size: int = 256, *, alpha: float = 0.5
) -> float:
  """Cross-entropy of a smoothed bigram model, nats per token.

  Pair counts :math:`c_{ab}` of consecutive tokens of ``train``, with
  add-:math:`\\alpha` smoothing per context, scored on every token of
  ``evaluate`` that has a predecessor:

  .. math::
    p(b \\mid a) = \\frac{c_{ab} + \\alpha}{\\sum_{b'} c_{ab'} + \\alpha V},
    \\qquad
    \\mathcal{L} = -\\frac{1}{m - 1} \\sum_{i=2}^{m} \\ln p(y_i \\mid y_{i-1}).

  Args:
    train: 1-D integer tokens in ``[0, vocab_size)``.
    evaluate: 1-D integer tokens, at least two.
    vocab_size: V.
    alpha: the smoothing pseudo-count, > 0.

  Returns:
    The loss in nats per token.

  Examples:
    >>> # Pairs 01, 10, 01: p(1|0) = (2+1)/(2+2), p(0|1) = (1+1)/(1+2).
    >>> f'{bigram_loss([0, 1, 0, 1], [0, 1, 0], vocab_size=2, alpha=1.0):.6f}'
    '0.346574'
  """
  _check(vocab_size, alpha)
  train = _tokens(train, 'train', vocab_size)
  evaluate = _tokens(evaluate, 'evaluate', vocab_size)
  if evaluate.size < 2:
    raise ValueError('evaluate needs at least two tokens (one pair)')
  pairs = train[:-1] * vocab_size + train[1:]
  counts = np.bincount(pairs, minlength=vocab_size * vocab_size)
  counts = counts.reshape(vocab_size, vocab_size).astype(np.float64)
  totals = counts.sum(axis=1, keepdims=True)
  log_p = np.log(counts + alpha) - np.log(totals + alpha * vocab_size)
  return float(-log_p[evaluate[:-1], evaluate[1:]].mean())
