"""lrjax.evidence: seed-to-seed verdicts, against hand-computed values.

The rule: |mean(a) - mean(b)| <= 2 sqrt((s_a^2 + s_b^2) / 2), s the sample
standard deviation (ddof=1); one seed tests nothing.
"""

import math

import pytest

from lrjax import evidence


def test_mean_std_is_the_sample_std():
  # (1, 2, 6): mean 3, squared deviations 4 + 1 + 9 = 14, / 2 = 7.
  mean, std = evidence.mean_std([1.0, 2.0, 6.0])
  assert mean == 3.0
  assert std == pytest.approx(math.sqrt(7.0), rel=1e-15)
  assert evidence.mean_std([4.0]) == (4.0, 0.0)
  assert all(math.isnan(x) for x in evidence.mean_std([]))


def test_within_variation_pools_the_two_groups():
  # a = (1, 3): mean 2, s^2 = 2; b = (0, 0): mean 0, s^2 = 0.
  # Tolerance 2 sqrt((2 + 0) / 2) = 2: the difference 2 is just within.
  assert evidence.within_variation([1.0, 3.0], [0.0, 0.0]) == (True, 2.0, 2.0)
  # b = (-1, -1): difference 3 > 2, beyond the variation.
  held, diff, tol = evidence.within_variation([1.0, 3.0], [-1.0, -1.0])
  assert (held, diff, tol) == (False, 3.0, 2.0)
  assert evidence.exceeds([1.0, 3.0], [-1.0, -1.0]) is True
  assert evidence.exceeds([-1.0, -1.0], [1.0, 3.0]) is False
  assert evidence.exceeds([1.0, 3.0], [0.0, 0.0]) is False


def test_one_seed_is_not_tested():
  held, diff, tol = evidence.within_variation([0.9], [0.1, 0.2])
  assert held is None and math.isnan(tol)
  assert diff == pytest.approx(0.9 - 0.15)
  assert evidence.exceeds([0.9], [0.1, 0.2]) is None
  made = evidence.claim('x', True, 'd', seeds=1)
  assert made == {'claim': 'x', 'held': None, 'detail': 'd; 1 seed'}
  assert evidence.claim('x', False, 'd', seeds=3)['held'] is False


def test_rank_with_ties_competition_ranking_by_any_key():
  # Means: a 2 (s^2 = 2), b 0 (s^2 = 0), c -1 (s = 0), d -1 (s^2 = 0.5).
  # b vs the leader a: |2 - 0| = 2 <= 2 sqrt((2 + 0) / 2) = 2, a tie at the
  # boundary. c vs a: 3 > 2, a new group at position 3; d (first of the
  # equal means, the sort being stable) leads it and c ties it: 0 <= 1.
  rows = [
    {'name': 'd', 'score': [-1.5, -0.5]},
    {'name': 'c', 'score': [-1.0, -1.0]},
    {'name': 'b', 'score': [0.0, 0.0]},
    {'name': 'a', 'score': [1.0, 3.0]},
  ]
  ranked = evidence.rank_with_ties(rows, key='score')
  assert [(r['name'], r['rank'], r['tied']) for r in ranked] == [
    ('a', 1, True),
    ('b', 1, True),
    ('d', 3, True),
    ('c', 3, True),
  ]
  assert {id(r) for r in ranked} == {id(r) for r in rows}  # updated in place
  # b just beyond the tolerance: every row its own rank, none tied.
  rows = [{'score': [1.0, 3.0]}, {'score': [-0.001, -0.001]}]
  ranked = evidence.rank_with_ties(rows, key='score')
  assert [(r['rank'], r['tied']) for r in ranked] == [(1, False), (2, False)]


def test_claims_in_words(capsys):
  claims = [
    {'claim': 'a', 'held': True, 'detail': '1'},
    {'claim': 'b', 'held': False, 'detail': '2'},
    {'claim': 'c', 'held': None, 'detail': '3'},
  ]
  assert evidence.claim_lines(claims) == [
    '- a: **held** (1).',
    '- b: **did NOT hold** (2).',
    '- c: **not tested (1 seed)** (3).',
  ]
  evidence.print_claims(claims)
  assert capsys.readouterr().out == 'HELD     a\nFAILED   b\nUNTESTED c\n'
