"""Text form of a BatchSchedule, short enough for one command-line flag.

Grammar (spaces are ignored)::

  schedule := 'stages(' stage (',' stage)* (',' option)* ')'
            | ramp '(' key '=' value (',' key '=' value)* ')'
  stage    := size '@' duration
  size     := INT (sequences, or examples) | COUNT 'tok' (tokens)
  duration := NUMBER [unit] | COUNT 'tok'
  unit     := 'ep' (epochs, the default) | 'up' (updates) | 'ex' (examples)
  option   := 'n=' INT (dataset size) | 'seq=' INT (tokens per sequence)
  ramp     := 'linear_ramp' | 'geometric_ramp' | 'seesaw'
  COUNT    := NUMBER ['k' | 'M' | 'G' | 'T' | 'Ki' | 'Mi' | 'Gi' | 'Ti']

``128@60`` is batch 128 for 60 epochs, ``128@60ep`` the same, ``256@500up``
batch 256 for 500 updates, ``512@64000ex`` batch 512 for 64000 examples.
``n=`` gives the dataset size; without it :func:`parse` needs
``num_examples``.

Tokens: with ``seq=T`` (or ``seq_len=T``), ``32Kitok@4Gtok`` is a batch of
32768 tokens (32768 / T sequences) for 4e9 tokens (4e9 / T examples); a
count that T does not divide is an error naming the nearest exact ones.
A GPT-3-style ramp, "from 32k to 512k tokens over the first 4B tokens"::

  linear_ramp(start=32Kitok, stop=512Kitok, ramp=4Gtok, total=300Gtok,
              seq=2048, n=...)

(keys: ``start``, ``stop``, ``ramp``, ``total``, optional ``increment``
(default: ``start``) or, for ``geometric_ramp``, ``factor`` (default 2);
:func:`lrjax.batch.linear_ramp`, :func:`lrjax.batch.geometric_ramp`).

Seesaw (:func:`lrjax.batch.seesaw`), the batch side of an Adam LR decay
traded for batch growth: ``lr`` is the standard schedule's policy text over
epochs, ``max`` the cap (a size, or a measured B_simple in sequences),
optional ``factor`` (default 2) and ``max_cuts``::

  seesaw(start=768tok, lr=warmup(cosine(0.001,length=0.24,end=0.0001),
         length=0.01), total=128Kitok, max=3Kitok, seq=64, n=8192)

The LR that goes with it is the policy text ``seesaw(<lr>,length=<total
epochs>,growth=<max/start>)`` (:func:`lrjax.schedules.seesaw`).
"""

from __future__ import annotations

import fractions
import re

from lrjax.batch import _builders
from lrjax.batch._schedule import BatchSchedule, Stage
from lrjax.batch._tokens import format_count, parse_count, to_sequences

_NUMBER = r'(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?'
_DURATION = re.compile(rf'^({_NUMBER})(ep|up|ex)?$')
_RAMPS = ('linear_ramp', 'geometric_ramp')
_SEESAW_KEYS = ('start', 'lr', 'total', 'max', 'factor', 'max_cuts')
_RAMP_KEYS = {
  'linear_ramp': ('start', 'stop', 'ramp', 'total', 'increment'),
  'geometric_ramp': ('start', 'stop', 'ramp', 'total', 'factor'),
}


def _format_epochs(epochs) -> str:
  text = repr(float(epochs)) if not isinstance(epochs, int) else str(epochs)
  if text.endswith('.0'):
    text = text[:-2]
  return text


def format_schedule(schedule: BatchSchedule, seq_len: int | None = None) -> str:
  """The text form of ``schedule``; :func:`parse` reads it back.

  Args:
    schedule: the BatchSchedule.
    seq_len: None: batch sizes in examples. An int: batch sizes and
      durations given in examples are written in tokens (``tok``), with
      ``seq=seq_len``; durations in epochs and updates stay as they are.

  Returns:
    The text.
  """
  if seq_len is not None:
    to_sequences(seq_len, 1, 'seq_len')  # validates: an int >= 1
  parts = []
  for stage in schedule.stages:
    if seq_len is None:
      size = str(stage.batch_size)
    else:
      size = f'{format_count(stage.batch_size * seq_len)}tok'
    if stage.epochs is not None:
      duration = _format_epochs(stage.epochs)
    elif stage.examples is not None:
      if seq_len is None:
        duration = f'{stage.examples}ex'
      else:
        duration = f'{format_count(stage.examples * seq_len)}tok'
    else:
      duration = f'{stage.updates}up'
    parts.append(f'{size}@{duration}')
  if seq_len is not None:
    parts.append(f'seq={seq_len}')
  parts.append(f'n={schedule.num_examples}')
  return f'stages({",".join(parts)})'


def to_text(schedule: BatchSchedule, *, seq_len: int | None = None) -> str:
  """The text form of a schedule, optionally in tokens.

  ``to_text(s)`` is ``str(s)``. With ``seq_len``, batch sizes and the
  durations given in examples are stated in tokens, with the shortest exact
  suffix (:func:`format_count`), and :func:`parse` reads the text back to
  an equal schedule.

  Args:
    schedule: the BatchSchedule.
    seq_len: tokens per sequence, or None.

  Returns:
    The text.

  Examples:
    >>> from lrjax.batch import parse, to_text
    >>> s = parse('stages(32Kitok@1Gitok,256@1,seq=2048,n=1000000)')
    >>> s.batch_size_per_stage, s.stages[0].examples
    ((16, 256), 524288)
    >>> print(s)
    stages(16@524288ex,256@1,n=1000000)
    >>> print(to_text(s, seq_len=2048))
    stages(32Kitok@1Gitok,512Kitok@1,seq=2048,n=1000000)
  """
  if not isinstance(schedule, BatchSchedule):
    raise TypeError(f'schedule={schedule!r} must be a BatchSchedule')
  return format_schedule(schedule, seq_len)


_GRAMMAR = (
  "expected 'stages(B@D,...[,seq=T][,n=N])' with D epochs, or D followed by "
  "'up' (updates) or 'ex' (examples), or B and D in tokens ('32Kitok', "
  "with seq=T), e.g. 'stages(128@60,640@500up,n=50000)', or "
  "'linear_ramp(start=..., stop=..., ramp=..., total=...)'"
)


def _tokens_to_sequences(text: str, item: str, seq_len, whole: str) -> int:
  """``COUNT 'tok'`` -> sequences; ``item`` quoted in errors."""
  if seq_len is None:
    raise ValueError(
      f'text={whole!r}: {item!r} is in tokens but no sequence length is '
      "known: append ',seq=T' inside the parentheses or pass seq_len=T"
    )
  try:
    return to_sequences(parse_count(text[:-3], 'tokens'), seq_len)
  except ValueError as e:
    raise ValueError(f'text={whole!r}: {item!r}: {e}') from None


def _size(text: str, item: str, seq_len, whole: str) -> int:
  if text.endswith('tok'):
    return _tokens_to_sequences(text, item, seq_len, whole)
  if not text.isdigit():
    raise ValueError(f'text={whole!r}: stage {item!r} is malformed; {_GRAMMAR}')
  return int(text)


def _duration(text: str, item: str, seq_len, whole: str) -> dict:
  """Stage keyword arguments: epochs=, updates= or examples=."""
  if text.endswith('tok'):
    return {'examples': _tokens_to_sequences(text, item, seq_len, whole)}
  m = _DURATION.match(text)
  if not m:
    raise ValueError(f'text={whole!r}: stage {item!r} is malformed; {_GRAMMAR}')
  amount, unit = m.groups()
  if unit in (None, 'ep'):
    value = float(amount)
    return {'epochs': int(value) if value.is_integer() else value}
  if not amount.isdigit():
    raise ValueError(
      f'text={whole!r}: stage {item!r} needs a whole number of '
      f'{"updates" if unit == "up" else "examples"}'
    )
  return {'updates' if unit == 'up' else 'examples': int(amount)}


def _option(items: list, key: str, given, whole: str, arg: str):
  """Pops ``key=INT`` items; checks agreement with the argument ``given``."""
  found = None
  for item in [i for i in items if i.startswith(f'{key}=')]:
    items.remove(item)
    value = item[len(key) + 1 :]
    if not value.isdigit() or int(value) < 1:
      raise ValueError(
        f'text={whole!r}: {key}={value!r} must be a positive integer'
      )
    found = int(value)
  if found is not None and given is not None and found != given:
    raise ValueError(
      f'text={whole!r} says {key}={found} but {arg}={given}: drop one or '
      'make them agree'
    )
  return found if found is not None else given


def _ramp(kind: str, items: list, n: int, seq_len, whole: str):
  values = {}
  for item in items:
    key, eq, value = item.partition('=')
    if not eq or key not in _RAMP_KEYS[kind]:
      raise ValueError(
        f"text={whole!r}: {item!r} is not one of {kind}'s keys "
        f'{", ".join(_RAMP_KEYS[kind])} (plus seq=, n=)'
      )
    values[key] = value
  missing = [k for k in ('start', 'stop', 'ramp', 'total') if k not in values]
  if missing:
    raise ValueError(f'text={whole!r}: {kind} needs {", ".join(missing)}=')
  sizes = {
    k: _size(values[k], f'{k}={values[k]}', seq_len, whole)
    for k in ('start', 'stop', 'increment')
    if k in values
  }
  lengths = {}
  for key in ('ramp', 'total'):
    length = _duration(values[key], f'{key}={values[key]}', seq_len, whole)
    if 'updates' in length:
      raise ValueError(
        f'text={whole!r}: {key}={values[key]!r}: a ramp is measured in '
        'epochs, examples or tokens, not updates (whose count depends on '
        'the batch)'
      )
    lengths[key] = length
  total = lengths['total']
  if 'epochs' in total:
    num_epochs = total['epochs']
  else:
    num_epochs = fractions.Fraction(total['examples'], n)
  ramp = lengths['ramp']
  kwargs = dict(
    num_epochs=num_epochs,
    num_examples=n,
    ramp_epochs=ramp.get('epochs'),
    ramp_examples=ramp.get('examples'),
  )
  if kind == 'linear_ramp':
    increment = sizes.get('increment', sizes['start'])
    in_tokens = any(
      values[k].endswith('tok')
      for k in ('start', 'stop', 'increment')
      if k in values
    )
    if in_tokens and increment and (sizes['stop'] - sizes['start']) % increment:
      _increment_error(sizes['start'], sizes['stop'], increment, seq_len)
    return _builders.linear_ramp(
      sizes['start'], sizes['stop'], increment, **kwargs
    )
  factor = float(values.get('factor', 2))
  return _builders.geometric_ramp(
    sizes['start'], sizes['stop'], factor, **kwargs
  )


def _increment_error(start: int, stop: int, increment: int, seq_len: int):
  """Raises the increment error of a ramp given in tokens, in tokens."""

  def tok(sequences: int) -> str:
    return f'{format_count(sequences * seq_len)}tok'

  diff = stop - start
  k = diff // increment
  near = [start + j * increment for j in (k, k + 1) if j > 0]
  options = ' or '.join(
    f'stop={tok(b)} ({b * seq_len} tokens, {b} sequences)' for b in near
  )
  raise ValueError(
    f'stop - start = {tok(stop)} - {tok(start)} = {diff * seq_len} tokens '
    f'is not a multiple of increment={tok(increment)} '
    f'({increment * seq_len} tokens): use {options}, or an increment that '
    f'divides {diff * seq_len} tokens'
  )


def _split(body: str) -> list[str]:
  """Items separated by the commas outside parentheses."""
  items, depth, start = [], 0, 0
  for i, char in enumerate(body):
    depth += {'(': 1, ')': -1}.get(char, 0)
    if char == ',' and depth == 0:
      items.append(body[start:i])
      start = i + 1
  items.append(body[start:])
  return items


def _seesaw(items: list, n: int, seq_len, whole: str) -> BatchSchedule:
  values = {}
  for item in items:
    key, eq, value = item.partition('=')
    if not eq or key not in _SEESAW_KEYS:
      raise ValueError(
        f"text={whole!r}: {item!r} is not one of seesaw's keys "
        f'{", ".join(_SEESAW_KEYS)} (plus seq=, n=)'
      )
    values[key] = value
  missing = [k for k in ('start', 'lr', 'total') if k not in values]
  if missing:
    raise ValueError(f'text={whole!r}: seesaw needs {", ".join(missing)}=')
  start = _size(values['start'], f'start={values["start"]}', seq_len, whole)
  total = _duration(values['total'], f'total={values["total"]}', seq_len, whole)
  if 'updates' in total:
    raise ValueError(
      f'text={whole!r}: total={values["total"]!r}: give epochs, examples or '
      'tokens, not updates (whose count depends on the batch)'
    )
  if 'epochs' in total:
    num_epochs = total['epochs']
  else:
    num_epochs = fractions.Fraction(total['examples'], n)
  cap = values.get('max')
  if cap is not None:
    item = f'max={cap}'
    cap = (
      _size(cap, item, seq_len, whole) if cap.endswith('tok') else float(cap)
    )
  kwargs = {}
  if 'factor' in values:
    kwargs['factor'] = float(values['factor'])
  if 'max_cuts' in values:
    kwargs['max_cuts'] = int(values['max_cuts'])
  return _builders.seesaw(
    values['lr'],
    start,
    n,
    num_epochs=num_epochs,
    max_batch_size=cap,
    **kwargs,
  ).batch_schedule


def parse(
  text: str, num_examples: int | None = None, seq_len: int | None = None
) -> BatchSchedule:
  """Parses the text form of a :class:`BatchSchedule`.

  Args:
    text: e.g. ``'stages(128@60,640@60,3200@80)'``: batch@duration, the
      duration in epochs unless suffixed ``up`` (updates) or ``ex``
      (examples); batch or duration in tokens with ``tok`` (and a sequence
      length); optional last items ``seq=T`` (tokens per sequence) and
      ``n=50000`` (the dataset size). Or a ramp, ``linear_ramp(...)`` or
      ``geometric_ramp(...)``, or Seesaw's ``seesaw(...)`` (see the module
      docstring).
    num_examples: dataset size, used when the text has no ``n=``; when both
      are given they must agree.
    seq_len: tokens per sequence, used when the text has no ``seq=``; when
      both are given they must agree. Needed only for token counts.

  Returns:
    The BatchSchedule (in sequences; tokens are converted exactly).

  Raises:
    ValueError: on malformed text (the message quotes the offending part and
      the grammar), a token count that the sequence length does not divide
      (naming the nearest exact ones), or an invalid schedule.

  Examples:
    >>> from lrjax.batch import parse
    >>> s = parse('stages(128@60, 640@60, 3200@80)', num_examples=50000)
    >>> s.batch_sizes
    (128, 640, 3200)
    >>> print(parse('stages(32@100up,64@0.5,128@6400ex,n=1797)'))
    stages(32@100up,64@0.5,128@6400ex,n=1797)
    >>> r = parse('linear_ramp(start=32Kitok, stop=128Kitok, ramp=3Mitok, '
    ...           'total=4Mitok, seq=1024, n=4096)')
    >>> print(r)
    stages(32@1024ex,64@1024ex,96@1024ex,128@1024ex,n=4096)
  """
  if not isinstance(text, str):
    raise TypeError(f'text={text!r} must be a str')
  compact = re.sub(r'\s+', '', text)
  match = re.fullmatch(
    r'(stages|linear_ramp|geometric_ramp|seesaw)\((.*)\)', compact
  )
  if not match:
    raise ValueError(f'text={text!r}: {_GRAMMAR}')
  kind, body = match.groups()
  items = _split(body)
  if not items or items == ['']:
    raise ValueError(f'text={text!r} has no stage: {_GRAMMAR}')
  if seq_len is not None:
    to_sequences(seq_len, 1, 'seq_len')  # validates: an int >= 1
  seq_len = _option(items, 'seq', seq_len, text, 'seq_len')
  n_items = [i for i in items if i.startswith('n=')]
  for item in n_items:
    if not item[2:].isdigit():
      raise ValueError(
        f'text={text!r}: n={item[2:]!r} must be a positive integer'
      )
  n = _option(items, 'n', num_examples, text, 'num_examples')
  if n is None:
    raise ValueError(
      f'text={text!r} has no n=<dataset size>: pass num_examples or append '
      "',n=N' inside the parentheses"
    )
  if not items:
    raise ValueError(f'text={text!r} has no stage: {_GRAMMAR}')
  if kind in _RAMPS + ('seesaw',):
    try:
      if kind == 'seesaw':
        return _seesaw(items, n, seq_len, text)
      return _ramp(kind, items, n, seq_len, text)
    except (TypeError, ValueError) as e:
      if str(e).startswith('text='):
        raise
      raise ValueError(f'text={text!r}: {e}') from None
  stages = []
  for item in items:
    size, at, duration = item.partition('@')
    if not at:
      raise ValueError(
        f'text={text!r}: stage {item!r} is malformed; {_GRAMMAR}'
      )
    batch = _size(size, item, seq_len, text)
    kwargs = _duration(duration, item, seq_len, text)
    try:
      stages.append(Stage(batch, **kwargs))
    except ValueError as e:
      raise ValueError(f'text={text!r}: stage {item!r}: {e}') from None
  return BatchSchedule(tuple(stages), n)
