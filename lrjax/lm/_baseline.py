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


def count_baselines(
  train, evaluate, vocab_size: int = 256, *, alpha: float = 0.5
) -> dict[str, float]:
  """A language model's count baselines: unigram and bigram cross-entropy.

  Counted on the whole token stream of ``train``, scored on the tokens of
  ``evaluate``'s :math:`N` windows of :math:`T + 1` tokens, i.e. its first
  :math:`NT + 1` tokens :math:`x_0, \\dots, x_{NT}` (the last
  :math:`(n - 1) \\bmod T` tokens, in no window, are left out), as
  :func:`unigram_loss` and :func:`bigram_loss` define them:

  .. math::
    \\mathcal{L}_1 = -\\frac{1}{NT + 1} \\sum_{i=0}^{NT} \\ln p(x_i),
    \\qquad
    \\mathcal{L}_2 = -\\frac{1}{NT} \\sum_{i=1}^{NT} \\ln p(x_i \\mid
    x_{i-1}).

  A model's evaluation loss below the bigram's has learned more than
  which byte follows which.

  Args:
    train: a :class:`lrjax.data.TextDataset` (its ``tokens``).
    evaluate: a :class:`lrjax.data.TextDataset` (its ``tokens``,
      ``num_examples`` N and ``seq_len`` T), e.g. the validation split.
    vocab_size: V.
    alpha: the smoothing pseudo-count, > 0.

  Returns:
    ``{'unigram', 'bigram'}``, nats per token.

  Raises:
    ValueError: as :func:`unigram_loss` and :func:`bigram_loss` do.

  Examples:
    >>> from lrjax.data import TextDataset
    >>> train = TextDataset.from_text('abab', seq_len=1)
    >>> evaluate = TextDataset.from_text('abba', seq_len=2)  # scores 'abb'
    >>> # p(a) = p(b) = 2.5 / 132; p(b|a) = 2.5 / 130, p(b|b) = 0.5 / 129.
    >>> {k: round(v, 6) for k, v in count_baselines(train, evaluate).items()}
    {'unigram': 3.966511, 'bigram': 4.752102}
  """
  stream = evaluate.tokens[: evaluate.num_examples * evaluate.seq_len + 1]
  return {
    'unigram': unigram_loss(train.tokens, stream, vocab_size, alpha=alpha),
    'bigram': bigram_loss(train.tokens, stream, vocab_size, alpha=alpha),
  }
