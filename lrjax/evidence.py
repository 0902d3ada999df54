r"""Seed-to-seed evidence: whether one setting beats or matches another.

A claim ("the ramp matches the LR decay", "the large batch generalises
worse") is tested on one value per seed for each of two settings. Two
settings agree when their means differ by at most twice the pooled sample
standard deviation over seeds; one exceeds the other when its mean is
above by more than that. With a single seed there is no variation to
measure, so the claim is not tested: its verdict is None, never True.

A claim is a dict ``{'claim': text, 'held': True | False | None,
'detail': text}``; `claim` builds one, `claim_lines` and `print_claims`
show a list of them. `rank_with_ties` ranks several settings, those that
agree with their group's leader sharing its rank.

Examples:
  >>> held, diff, tol = within_variation([0.9, 0.92], [0.91, 0.93])
  >>> held, round(diff, 3), round(tol, 4)
  (True, -0.01, 0.0283)
  >>> claim_lines([claim('the ramp matches', held, 'diff -0.010', seeds=2)])
  ['- the ramp matches: **held** (diff -0.010).']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (``ddof=1``) of one value per seed.

  Args:
    values: the values.

  Returns:
    ``(mean, std)``: std is 0 for a single value; both are NaN for none.

  Examples:
    >>> mean_std([1.0, 3.0])
    (2.0, 1.4142135623730951)
    >>> mean_std([5.0]), mean_std([])
    ((5.0, 0.0), (nan, nan))
  """
  array = np.asarray(values, dtype=np.float64)
  if array.size == 0:
    return math.nan, math.nan
  std = float(array.std(ddof=1)) if array.size > 1 else 0.0
  return float(array.mean()), std


def within_variation(
  a: Sequence[float], b: Sequence[float]
) -> tuple[bool | None, float, float]:
  r"""Whether two groups' means agree within their seed-to-seed variation.

  The rule, with :math:`s` the sample standard deviation over seeds
  (``ddof=1``):

  .. math::
     |\bar a - \bar b| \le 2 \sqrt{(s_a^2 + s_b^2) / 2}

  The tolerance comes from the variation between seeds only (no floor:
  two groups that agree to the last example over several seeds must agree
  exactly). A group of one seed has no variation to measure, so the
  comparison is not tested: ``held`` is None and the tolerance NaN.

  Args:
    a: one group's values, one per seed.
    b: the other group's values, one per seed.

  Returns:
    ``(held, difference, tolerance)`` with difference ``mean(a) - mean(b)``;
    ``held`` is None when either group has fewer than two seeds.

  Examples:
    >>> within_variation([0.9, 0.92], [0.91, 0.93])
    (True, -0.010000000000000009, 0.028284271247461926)
    >>> within_variation([0.9], [0.5])
    (None, 0.4, nan)
  """
  mean_a, std_a = mean_std(a)
  mean_b, std_b = mean_std(b)
  difference = mean_a - mean_b
  if min(len(a), len(b)) < 2:
    return None, difference, math.nan
  tolerance = 2 * math.sqrt((std_a**2 + std_b**2) / 2)
  return abs(difference) <= tolerance, difference, tolerance


def exceeds(a: Sequence[float], b: Sequence[float]) -> bool | None:
  """Whether mean(a) is above mean(b) beyond their seed-to-seed variation.

  Args:
    a: one group's values, one per seed.
    b: the other group's values, one per seed.

  Returns:
    True when ``mean(a) - mean(b)`` exceeds :func:`within_variation`'s
    tolerance, False otherwise, None when either group has one seed.

  Examples:
    >>> exceeds([1.0, 1.2], [0.5, 0.7]), exceeds([1.0], [0.5])
    (True, None)
  """
  same, difference, _ = within_variation(a, b)
  if same is None:
    return None
  return difference > 0 and not same


def rank_with_ties(
  rows: Sequence[dict[str, Any]], key: str = 'top1_per_seed'
) -> list[dict[str, Any]]:
  r"""Ranks rows by their mean value, tying those within seed variation.

  Sorted by the mean of ``row[key]`` (highest first), a row shares the rank
  of its group's leader :math:`l` when the two agree by
  :func:`within_variation`,

  .. math::
     |\bar x_l - \bar x_r| \le 2 \sqrt{(s_l^2 + s_r^2) / 2},

  else it starts a group ranked by its position (competition ranking:
  1, 1, 3). A tie is measured against the group's leader, not the row
  above, so a chain of small gaps cannot tie rows far apart. With one seed
  in any row every row is ranked by its position and ``tied`` is None.

  Args:
    rows: one dict per setting (e.g. an LR policy), ``row[key]`` a list of
      one value per seed, higher better. The dicts are updated in place.
    key: the key of the per-seed values.

  Returns:
    The rows, sorted, each with ``rank`` (int) and ``tied``: True when
    another row shares its rank, False when none does, None when the
    ranking is not tested (one seed).

  Examples:
    >>> rows = rank_with_ties([
    ...   {'policy': 'a', 'top1_per_seed': [0.90, 0.92]},
    ...   {'policy': 'b', 'top1_per_seed': [0.91, 0.92]},
    ...   {'policy': 'c', 'top1_per_seed': [0.70, 0.71]},
    ... ])
    >>> [(r['policy'], r['rank'], r['tied']) for r in rows]
    [('b', 1, True), ('a', 1, True), ('c', 3, False)]
  """
  ordered = sorted(rows, key=lambda r: -float(np.mean(r[key])))
  tested = all(len(r[key]) >= 2 for r in ordered)
  leader: dict[str, Any] | None = None
  for position, row in enumerate(ordered, 1):
    tie = tested and leader is not None
    tie = tie and within_variation(leader[key], row[key])[0]
    row['rank'] = leader['rank'] if tie else position
    leader = leader if tie else row
  ranks = [r['rank'] for r in ordered]
  for row in ordered:
    row['tied'] = ranks.count(row['rank']) > 1 if tested else None
  return ordered


def verdict(held: bool | None) -> str:
  """A claim's verdict in words: None (too few seeds to test) is not held.

  Examples:
    >>> [verdict(True), verdict(False), verdict(None)]
    ['held', 'did NOT hold', 'not tested (1 seed)']
  """
  if held is None:
    return 'not tested (1 seed)'
  return 'held' if held else 'did NOT hold'


def verdict_tag(held: bool | None) -> str:
  """The verdict's tag for a console line: HELD, FAILED or UNTESTED.

  Examples:
    >>> [verdict_tag(True), verdict_tag(False), verdict_tag(None)]
    ['HELD    ', 'FAILED  ', 'UNTESTED']
  """
  if held is None:
    return 'UNTESTED'
  return 'HELD    ' if held else 'FAILED  '


def claim(text: str, held: Any, detail: str, seeds: int) -> dict[str, Any]:
  """A claim; with fewer than two seeds it is not tested (``held`` None).

  Args:
    text: what is claimed.
    held: whether it held (ignored with one seed).
    detail: the numbers behind the verdict.
    seeds: the seeds per setting.

  Returns:
    ``{'claim': text, 'held': held, 'detail': detail}``; with one seed
    ``held`` is None and the detail ends in ``'; 1 seed'``.

  Examples:
    >>> claim('A beats B', True, 'diff 0.3', seeds=1)
    {'claim': 'A beats B', 'held': None, 'detail': 'diff 0.3; 1 seed'}
  """
  if seeds < 2:
    return {'claim': text, 'held': None, 'detail': f'{detail}; 1 seed'}
  return {'claim': text, 'held': held, 'detail': detail}


def claim_lines(claims: Sequence[Mapping[str, Any]]) -> list[str]:
  """Markdown bullets: each claim, its `verdict` in bold and its detail.

  Examples:
    >>> claim_lines([{'claim': 'A beats B', 'held': False, 'detail': 'x'}])
    ['- A beats B: **did NOT hold** (x).']
  """
  return [
    f'- {c["claim"]}: **{verdict(c["held"])}** ({c["detail"]}).' for c in claims
  ]


def print_claims(claims: Sequence[Mapping[str, Any]]) -> None:
  """Prints one line per claim, its `verdict_tag` first.

  Examples:
    >>> print_claims([{'claim': 'A beats B', 'held': None, 'detail': 'x'}])
    UNTESTED A beats B
  """
  for c in claims:
    print(f'{verdict_tag(c["held"])} {c["claim"]}')
