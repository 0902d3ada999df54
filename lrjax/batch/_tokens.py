"""Tokens as a unit: counts with SI/IEC suffixes, exact token <-> sequences.

For language models the examples are sequences of ``seq_len`` tokens, and
batch sizes and durations are usually stated in tokens (GPT-3 ramps its
batch "from 32k tokens" over "the first 4-12 billion tokens"). A token
count converts to sequences only when ``seq_len`` divides it; anything else
is an error that names the nearest exact counts.
"""

from __future__ import annotations

import fractions
import numbers
import re
from collections.abc import Mapping
from typing import Any

#: Suffixes of counts: decimal SI (k = 1000) and binary IEC (Ki = 1024).
SUFFIXES = {
  'k': 10**3,
  'M': 10**6,
  'G': 10**9,
  'T': 10**12,
  'Ki': 2**10,
  'Mi': 2**20,
  'Gi': 2**30,
  'Ti': 2**40,
}
_COUNT = re.compile(
  r'^((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$'
)
# Record keys that count examples, and their token-denominated names.
_TOKEN_KEYS = {
  'batch_size': 'batch_tokens',
  'micro_batch': 'micro_batch_tokens',
  'examples': 'tokens',
  'noise_scale': 'noise_scale_tokens',
  'b_simple': 'b_simple_tokens',
}


def parse_count(text: str, name: str = 'count') -> int:
  """Reads a positive whole count such as ``'512'``, ``'32Ki'``, ``'0.5M'``.

  Args:
    text: a decimal number with an optional suffix: ``k M G T`` (powers of
      1000) or ``Ki Mi Gi Ti`` (powers of 1024). The value must be a whole
      number: ``1.5k`` is 1500, ``1.5Ki`` is 1536, ``0.3Ki`` is an error.
    name: how to name the value in errors.

  Returns:
    The count, an int >= 1.

  Raises:
    ValueError: for malformed text or a value that is not a whole number
      >= 1.

  Examples:
    >>> parse_count('32Ki'), parse_count('4G'), parse_count('0.5Mi')
    (32768, 4000000000, 524288)
  """
  m = _COUNT.match(text)
  if not m:
    raise ValueError(
      f'{name}={text!r} is malformed: expected a number with an optional '
      f'suffix among {", ".join(SUFFIXES)}, e.g. 32Ki or 4G'
    )
  value = fractions.Fraction(m.group(1)) * SUFFIXES.get(m.group(2), 1)
  if value.denominator != 1 or value < 1:
    raise ValueError(f'{name}={text!r} is {float(value):g}: give a whole >= 1')
  return int(value)


def format_count(count: int) -> str:
  """The shortest exact text of a count, with a suffix where one fits.

  Among the plain integer and every suffix whose multiple is exact, the
  shortest text wins (decimal before binary on a tie);
  :func:`parse_count` reads it back to the same integer.

  Args:
    count: an int >= 1.

  Returns:
    e.g. ``'32Ki'`` for 32768, ``'4G'`` for 4000000000, ``'1000'``.

  Examples:
    >>> [format_count(n) for n in (64, 1000, 65536, 524288, 3_200_000)]
    ['64', '1k', '64Ki', '512Ki', '3200k']
  """
  if isinstance(count, bool) or not isinstance(count, numbers.Integral):
    raise TypeError(f'{count=} must be an int')
  if count < 1:
    raise ValueError(f'{count=} must be >= 1')
  best = str(count)
  for suffix, unit in SUFFIXES.items():
    if count % unit == 0:
      text = f'{count // unit}{suffix}'
      if len(text) < len(best):
        best = text
  return best


def to_sequences(tokens: int, seq_len: int, name: str = 'tokens') -> int:
  """The number of sequences of ``seq_len`` tokens in ``tokens`` tokens.

  .. math::
    n = \\frac{\\text{tokens}}{T}, \\quad T \\mid \\text{tokens}.

  Args:
    tokens: a token count, >= 1.
    seq_len: T, tokens per sequence, >= 1.
    name: how to name the value in errors.

  Returns:
    The exact number of sequences.

  Raises:
    ValueError: if ``seq_len`` does not divide ``tokens``, naming the two
      nearest counts that it divides.

  Examples:
    >>> to_sequences(32768, 2048)
    16
    >>> to_sequences(32000, 2048)
    Traceback (most recent call last):
    ...
    ValueError: tokens=32000 (32k) is not a multiple of seq=2048 tokens ...
  """
  for value, what in ((tokens, name), (seq_len, 'seq_len')):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
      raise TypeError(f'{what}={value!r} must be an int')
    if value < 1:
      raise ValueError(f'{what}={value!r} must be >= 1')
  sequences, rest = divmod(int(tokens), int(seq_len))
  if rest:
    near = [k * seq_len for k in (sequences, sequences + 1) if k > 0]
    options = ' or '.join(
      f'{format_count(t)} ({t // seq_len} sequence'
      f'{"" if t == seq_len else "s"})'
      for t in near
    )
    raise ValueError(
      f'{name}={tokens} ({format_count(tokens)}) is not a multiple of '
      f'seq={seq_len} tokens per sequence: use {options}'
    )
  return sequences


def to_epochs(tokens: int, seq_len: int, num_examples: int) -> float:
  """A token budget as epochs of ``num_examples`` sequences of ``seq_len``.

  Policies over epochs (`lrjax.schedules`) then take a budget stated in
  tokens, exactly: the ratio is rounded once, to the nearest float.

  .. math::
    e = \\frac{\\text{tokens}}{T N}.

  Args:
    tokens: a token count, >= 0; need not be a whole number of sequences.
    seq_len: T, tokens per sequence, >= 1.
    num_examples: N, sequences in the dataset, >= 1.

  Returns:
    The epochs, the exact ratio rounded to the nearest float.

  Raises:
    ValueError: if ``tokens`` is negative or ``seq_len`` or ``num_examples``
      is not positive.

  Examples:
    >>> to_epochs(96, 16, 4)
    1.5
    >>> to_epochs(3 * 2**30, 2048, 3 * 2**19)
    1.0
  """
  for value, what, low in (
    (tokens, 'tokens', 0),
    (seq_len, 'seq_len', 1),
    (num_examples, 'num_examples', 1),
  ):
    if value < low:
      raise ValueError(f'{what}={value!r} must be >= {low}')
  return float(fractions.Fraction(tokens, seq_len * num_examples))


def with_tokens(record: Mapping[str, Any], seq_len: int) -> dict[str, Any]:
  """A metrics record with its example counts also stated in tokens.

  Adds, for each key present, its value times ``seq_len``: ``batch_size``
  -> ``batch_tokens``, ``micro_batch`` -> ``micro_batch_tokens``,
  ``examples`` -> ``tokens``, ``noise_scale`` -> ``noise_scale_tokens``,
  ``b_simple`` -> ``b_simple_tokens``. The noise scale is estimated with
  sequences as the examples; in tokens it is the same critical batch
  measured in tokens (the unit McCandlish et al. report for language
  models), not an estimate with single tokens as the examples.

  Args:
    record: e.g. one line of the trainer's ``metrics.jsonl``.
    seq_len: tokens per sequence.

  Returns:
    A new dict: the record and the token fields (None stays None).

  Examples:
    >>> with_tokens({'step': 3, 'batch_size': 16, 'examples': 48}, 2048)
    {'step': 3, 'batch_size': 16, 'examples': 48, 'batch_tokens': 32768, 'tokens': 98304}
  """
  if isinstance(seq_len, bool) or not isinstance(seq_len, numbers.Integral):
    raise TypeError(f'{seq_len=} must be an int')
  if seq_len < 1:
    raise ValueError(f'{seq_len=} must be >= 1')
  out = dict(record)
  for key, token_key in _TOKEN_KEYS.items():
    if key in record:
      value = record[key]
      out[token_key] = None if value is None else value * seq_len
  return out
