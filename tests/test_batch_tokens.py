"""Tokens as a unit of batch schedules: counts, exact conversion, text."""

import fractions

import pytest

from lrjax.batch import (
  BatchSchedule,
  Stage,
  format_count,
  geometric_ramp,
  linear_ramp,
  parse,
  parse_count,
  to_epochs,
  to_sequences,
  to_text,
  with_tokens,
)

# GPT-3 (Brown et al. 2020): context 2048, batch ramped from 32k tokens
# over the first 4B tokens; a 300B-token budget.
SEQ = 2048
N = 10**9  # sequences in the (notional) dataset


@pytest.mark.parametrize(
  'text, value',
  [
    ('512', 512),
    ('32Ki', 32 * 1024),
    ('0.5Mi', 512 * 1024),
    ('1.5k', 1500),
    ('1.5Ki', 1536),
    ('4G', 4 * 10**9),
    ('1e3', 1000),
    ('2Ti', 2 * 2**40),
    ('300G', 300 * 10**9),
  ],
)
def test_parse_count(text, value):
  assert parse_count(text) == value


@pytest.mark.parametrize(
  'text, match',
  [
    ('0.3Ki', '307.2: give a whole'),
    ('0', 'give a whole >= 1'),
    ('x', 'malformed'),
    ('3KB', 'malformed'),
    ('-1', 'malformed'),
    ('32KI', 'malformed'),
  ],
)
def test_parse_count_errors(text, match):
  with pytest.raises(ValueError, match=match):
    parse_count(text)


def test_format_count_is_the_shortest_exact_text_and_reads_back():
  table = {
    1: '1',
    64: '64',
    1000: '1k',
    1024: '1Ki',
    65536: '64Ki',
    524288: '512Ki',
    2048000: '2048k',  # '2000Ki' is longer
    3_200_000: '3200k',
    4 * 10**9: '4G',
    999_999: '999999',
  }
  assert {n: format_count(n) for n in table} == table
  for n in list(range(1, 5000, 7)) + [2**k for k in range(41)] + [10**12]:
    assert parse_count(format_count(n)) == n
  with pytest.raises(ValueError, match='>= 1'):
    format_count(0)


def test_to_sequences_is_exact_or_names_the_nearest_counts():
  assert to_sequences(32768, SEQ) == 16
  assert to_sequences(4 * 10**9, SEQ) == 1953125  # 4e9 = 2^11 * 1953125
  with pytest.raises(
    ValueError, match=r'30Ki \(15 sequences\) or 32Ki \(16 sequences\)'
  ):
    to_sequences(32000, SEQ)
  with pytest.raises(ValueError, match=r'64 \(1 sequence\)'):
    to_sequences(10, 64)


def test_to_epochs_is_the_ratio_rounded_once():
  # 128Ki tokens of 128-token sequences over 1,000 sequences: 1.024 epochs.
  assert to_epochs(131072, 128, 1000) == 1.024
  assert to_epochs(0, 128, 1000) == 0.0
  # A part of a sequence counts: 100 tokens of 64 over 10 sequences.
  assert to_epochs(100, 64, 10) == 0.15625
  # 1/3 rounded once (two roundings could differ in the last bit).
  assert to_epochs(1, 1, 3) == 1 / 3
  for args, match in (
    ((-1, 128, 10), 'tokens=-1'),
    ((128, 0, 10), 'seq_len=0'),
    ((128, 128, 0), 'num_examples=0'),
  ):
    with pytest.raises(ValueError, match=match):
      to_epochs(*args)


def test_token_stages_parse_convert_exactly_and_print_back():
  text = 'stages(32Kitok@4Gtok,512Kitok@296Gtok,seq=2048,n=1000000000)'
  s = parse(text)
  assert s.stages == (
    Stage(16, examples=1_953_125),  # 32768 / 2048; 4e9 / 2048
    Stage(256, examples=144_531_250),  # 524288 / 2048; 296e9 / 2048
  )
  assert to_text(s, seq_len=SEQ) == text
  assert parse(to_text(s, seq_len=SEQ)) == s
  assert (
    str(s)
    == to_text(s)
    == ('stages(16@1953125ex,256@144531250ex,n=1000000000)')
  )
  # seq_len as an argument instead of seq= in the text; epochs, updates
  # and plain sizes mix with tokens.
  mixed = parse('stages(64Kitok@100up, 48@0.5, 1Mitok@1Gitok)', N, seq_len=SEQ)
  assert mixed.stages == (
    Stage(32, updates=100),
    Stage(48, epochs=0.5),
    Stage(512, examples=2**30 // SEQ),
  )
  assert to_text(mixed, seq_len=SEQ) == (
    'stages(64Kitok@100up,96Kitok@0.5,1Mitok@1Gitok,seq=2048,n=1000000000)'
  )
  assert parse(to_text(mixed, seq_len=SEQ)) == mixed


def test_gpt3_linear_ramp_in_tokens():
  text = (
    'linear_ramp(start=32Kitok, stop=512Kitok, ramp=4Gtok, total=300Gtok, '
    f'seq=2048, n={N})'
  )
  s = parse(text)
  # Increment defaults to the start: 16, 32, ..., 256 sequences.
  assert s.batch_size_per_stage == tuple(range(16, 257, 16))
  # Boundary rule: each ramp step ends at the first update at or past its
  # share of the 4e9 / 2048 = 1953125 ramp examples, within one batch.
  ramp_end = s.examples_at_boundaries[-1]
  assert 0 <= ramp_end - 1_953_125 < 240
  for k, start in enumerate(s.examples_at_boundaries[1:], start=1):
    target = fractions.Fraction(1_953_125 * k, 15)
    assert 0 <= start - target < s.stages[k - 1].batch_size
  assert 0 <= s.num_examples_total - 300 * 10**9 // SEQ < 256
  # The same as the builder called in sequences.
  assert s == linear_ramp(
    16,
    256,
    16,
    ramp_examples=1_953_125,
    num_epochs=fractions.Fraction(146_484_375, N),
    num_examples=N,
  )
  # Printed in tokens, it reads back to the same schedule.
  assert parse(to_text(s, seq_len=SEQ)) == s


def test_ramps_in_epochs_and_a_geometric_ramp():
  s = parse('linear_ramp(start=32,stop=128,increment=32,ramp=3,total=4,n=1000)')
  assert str(s) == 'stages(32@1000ex,64@1000ex,96@1000ex,128@1000ex,n=1000)'
  g = parse(
    'geometric_ramp(start=16Kitok, stop=128Kitok, factor=2, ramp=3Mitok, '
    'total=4Mitok, seq=1024, n=1000)'
  )
  assert g == geometric_ramp(
    16, 128, 2.0, ramp_examples=3072, num_epochs=4096 / 1000, num_examples=1000
  )
  assert g.batch_size_per_stage == (16, 32, 64, 128)


@pytest.mark.parametrize(
  'text, kwargs, match',
  [
    ('stages(32Kitok@1,n=100)', {}, 'append .,seq=T. inside'),
    ('stages(32ktok@1,seq=2048,n=100)', {}, r'not a multiple of seq=2048'),
    ('stages(32@3ktok,seq=2048,n=100)', {}, r'2Ki \(1 sequence\) or 4Ki'),
    ('stages(32@1,seq=64,n=100)', dict(seq_len=128), 'seq=64 but seq_len=128'),
    ('stages(32@1,seq=0,n=100)', {}, 'seq=.0. must be a positive'),
    ('stages(32xtok@1,seq=4,n=100)', {}, 'malformed'),
    ('stages(32@1tok,seq=4,n=100)', {}, r'use 4 \(1 sequence\)'),
    ('linear_ramp(start=32,stop=64,ramp=10up,total=2,n=100)', {}, 'not upd'),
    ('linear_ramp(start=32,stop=64,total=2,n=100)', {}, 'needs ramp='),
    ('linear_ramp(start=32,stop=64,ramp=1,total=2,step=2,n=100)', {}, 'keys'),
    ('linear_ramp(start=32,stop=64,ramp=3,total=2,n=100)', {}, 'shorter'),
  ],
)
def test_token_text_errors_name_the_fix(text, kwargs, match):
  with pytest.raises(ValueError, match=match):
    parse(text, **kwargs)


def test_with_tokens_states_example_counts_in_tokens():
  record = {
    'step': 10,
    'examples': 160,
    'batch_size': 16,
    'micro_batch': 4,
    'noise_scale': 37.5,
    'b_simple': None,
    'loss': 1.2,
  }
  got = with_tokens(record, 64)
  assert got == {
    **record,
    'tokens': 10240,
    'batch_tokens': 1024,
    'micro_batch_tokens': 256,
    'noise_scale_tokens': 2400.0,
    'b_simple_tokens': None,
  }
  assert 'tokens' not in record  # a new dict
  with pytest.raises(ValueError, match='seq_len'):
    with_tokens(record, 0)


def test_to_text_without_tokens_is_str():
  s = BatchSchedule((Stage(8, epochs=1), Stage(16, updates=3)), 100)
  assert to_text(s) == str(s) == 'stages(8@1,16@3up,n=100)'


def test_a_token_ramp_states_its_increment_error_in_tokens():
  # seq=1024: start 32Kitok = 32 sequences, stop 100Kitok = 100, increment
  # (the start) 32: 100 - 32 = 68 sequences = 69632 tokens, not a multiple
  # of 32768; the nearest stops are 32 + 2 x 32 = 96 and 32 + 3 x 32 = 128
  # sequences, 98304 and 131072 tokens.
  text = (
    'linear_ramp(start=32Kitok,stop=100Kitok,ramp=3Mitok,total=4Mitok,'
    'seq=1024,n=4096)'
  )
  with pytest.raises(ValueError) as e:
    parse(text)
  assert str(e.value) == (
    f'text={text!r}: stop - start = 100Kitok - 32Kitok = 69632 tokens is '
    'not a multiple of increment=32Kitok (32768 tokens): use stop=96Kitok '
    '(98304 tokens, 96 sequences) or stop=128Kitok (131072 tokens, 128 '
    'sequences), or an increment that divides 69632 tokens'
  )
  # With an increment of 20Kitok: 96 / 20 -> stops 32 + 80 = 112 and 132.
  with pytest.raises(ValueError, match=r'use stop=112Kitok .* or stop=132Ki'):
    parse(text.replace('100Kitok', '128Kitok,increment=20Kitok'))
  # In sequences the builder's message is unchanged.
  with pytest.raises(ValueError, match='stop - start = 68 must be a multiple'):
    parse('linear_ramp(start=32,stop=100,ramp=3000ex,total=4000ex,n=4096)')
