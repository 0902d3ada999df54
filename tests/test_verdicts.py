"""The verdict rules of the experiments: seeds decide, one seed tests nothing.

Expected values are computed by hand from the rule
|mean(a) - mean(b)| <= 2 sqrt((s_a^2 + s_b^2) / 2), s the sample std.
"""

import math

import pytest

from lrjax import evidence


def test_one_seed_is_not_tested_whatever_the_difference():
  for a, b in (([0.9], [0.9]), ([0.9], [0.1]), ([0.9, 0.8], [0.1])):
    held, diff, tol = evidence.within_variation(a, b)
    assert held is None and math.isnan(tol)
    assert diff == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert evidence.exceeds(a, b) is None
  assert evidence.verdict(None) == 'not tested (1 seed)'


def test_tolerance_is_two_pooled_seed_stds_with_no_floor():
  # a = (0.7, 0.9): mean 0.8, s^2 = 2 x 0.1^2 / 1 = 0.02; b = (0.7, 0.8):
  # mean 0.75, s^2 = 0.005. Pooled sqrt((0.02 + 0.005) / 2) = 0.1118,
  # tolerance 0.2236; difference 0.05 is within it.
  held, diff, tol = evidence.within_variation([0.7, 0.9], [0.7, 0.8])
  assert held is True
  assert diff == pytest.approx(0.05)
  assert tol == pytest.approx(2 * math.sqrt((0.02 + 0.005) / 2))
  # Identical seeds: zero variation, so any difference is beyond it.
  held, diff, tol = evidence.within_variation([0.5, 0.5], [0.49, 0.49])
  assert (held, tol) == (False, 0.0)
  assert evidence.exceeds([0.5, 0.5], [0.49, 0.49]) is True
  assert evidence.exceeds([0.49, 0.49], [0.5, 0.5]) is False


def test_claim_lines_say_not_tested_for_one_seed():
  lines = evidence.claim_lines(
    [
      {'claim': 'x ties y', 'held': None, 'detail': 'difference +0.10'},
      {'claim': 'x is faster', 'held': True, 'detail': '2x'},
      {'claim': 'x is better', 'held': False, 'detail': '-1'},
    ]
  )
  assert lines == [
    '- x ties y: **not tested (1 seed)** (difference +0.10).',
    '- x is faster: **held** (2x).',
    '- x is better: **did NOT hold** (-1).',
  ]
  tags = [evidence.verdict_tag(h) for h in (True, False, None)]
  assert tags == ['HELD    ', 'FAILED  ', 'UNTESTED']


def test_print_claims_one_line_each_tag_first(capsys):
  evidence.print_claims(
    [
      {'claim': 'x ties y', 'held': None, 'detail': ''},
      {'claim': 'x is faster', 'held': True, 'detail': ''},
      {'claim': 'x is better', 'held': False, 'detail': ''},
    ]
  )
  assert capsys.readouterr().out == (
    'UNTESTED x ties y\nHELD     x is faster\nFAILED   x is better\n'
  )


def _row(name, accs):
  return {'policy': name, 'top1_per_seed': list(accs)}


def test_half_an_image_apart_within_seed_noise_is_a_tie():
  # A best policy 0.2 points ahead over three seeds whose std is 0.3 to 0.4
  # points: the gap is inside the seed noise, so no single best policy.
  rows = evidence.rank_with_ties(
    [
      _row('cosine', [0.9610, 0.9650, 0.9590]),  # mean 0.9617, s 0.00306
      _row('multistep', [0.9630, 0.9680, 0.9600]),  # mean 0.9637, s 0.00404
      _row('constant', [0.9200, 0.9230, 0.9180]),  # mean 0.9203, s 0.00252
    ]
  )
  # multistep vs cosine: difference 0.0020; pooled sqrt((0.00404^2 +
  # 0.00306^2) / 2) = 0.00358, tolerance 0.00717: a tie. constant vs the
  # leader multistep: difference 0.0433, tolerance 2 x 0.00336 = 0.0067.
  assert [(r['policy'], r['rank'], r['tied']) for r in rows] == [
    ('multistep', 1, True),
    ('cosine', 1, True),
    ('constant', 3, False),
  ]


def test_ties_are_measured_against_the_group_leader_not_the_row_above():
  # b ties a (diff 0.01 <= tolerance 0.0141 with s = 0.00707 each); c ties
  # b (0.01) but not a (0.02): c starts a new group at position 3.
  rows = evidence.rank_with_ties(
    [
      _row('c', [0.795, 0.805]),
      _row('a', [0.815, 0.825]),
      _row('b', [0.805, 0.815]),
    ]
  )
  assert [(r['policy'], r['rank']) for r in rows] == [
    ('a', 1),
    ('b', 1),
    ('c', 3),
  ]
  assert [r['tied'] for r in rows] == [True, True, False]


def test_one_seed_ranks_by_position_and_marks_the_ranking_untested():
  rows = evidence.rank_with_ties(
    [_row('a', [0.90]), _row('b', [0.9014]), _row('c', [0.5])]
  )
  assert [(r['policy'], r['rank'], r['tied']) for r in rows] == [
    ('b', 1, None),
    ('a', 2, None),
    ('c', 3, None),
  ]
