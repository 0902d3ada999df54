"""Text form of a BatchSchedule, short enough for one command-line flag.

Grammar (spaces are ignored)::

  schedule := 'stages(' stage (',' stage)* [',' 'n=' INT] ')'
  stage    := INT '@' NUMBER [unit]      (NUMBER: decimal, e.g. 60, 0.5, 1e-05)
  unit     := 'ep' (epochs, the default) | 'up' (updates) | 'ex' (examples)

``128@60`` is batch 128 for 60 epochs, ``128@60ep`` the same, ``256@500up``
batch 256 for 500 updates, ``512@64000ex`` batch 512 for 64000 examples.
``n=`` gives the dataset size; without it :func:`parse` needs
``num_examples``.
"""

from __future__ import annotations

import re

from lrjax.batch._schedule import BatchSchedule, Stage

_STAGE = re.compile(
  r'^(\d+)@((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(ep|up|ex)?$'
)


def _format_epochs(epochs) -> str:
  text = repr(float(epochs)) if not isinstance(epochs, int) else str(epochs)
  if text.endswith('.0'):
    text = text[:-2]
  return text


def format_schedule(schedule: BatchSchedule) -> str:
  """The text form of ``schedule``; :func:`parse` reads it back."""
  parts = []
  for stage in schedule.stages:
    if stage.epochs is not None:
      parts.append(f'{stage.batch_size}@{_format_epochs(stage.epochs)}')
    elif stage.examples is not None:
      parts.append(f'{stage.batch_size}@{stage.examples}ex')
    else:
      parts.append(f'{stage.batch_size}@{stage.updates}up')
  parts.append(f'n={schedule.num_examples}')
  return f'stages({",".join(parts)})'


def parse(text: str, num_examples: int | None = None) -> BatchSchedule:
  """Parses the text form of a :class:`BatchSchedule`.

  Args:
    text: e.g. ``'stages(128@60,640@60,3200@80)'``: batch@duration, the
      duration in epochs unless suffixed ``up`` (updates) or ``ex``
      (examples); an optional last item ``n=50000`` gives the dataset size.
    num_examples: dataset size, used when the text has no ``n=``; when both
      are given they must agree.

  Returns:
    The BatchSchedule.

  Raises:
    ValueError: on malformed text (the message quotes the offending part and
      the grammar), or on an invalid schedule.

  Examples:
    >>> from lrjax.batch import parse
    >>> s = parse('stages(128@60, 640@60, 3200@80)', num_examples=50000)
    >>> s.batch_sizes
    (128, 640, 3200)
    >>> print(parse('stages(32@100up,64@0.5,128@6400ex,n=1797)'))
    stages(32@100up,64@0.5,128@6400ex,n=1797)
  """
  if not isinstance(text, str):
    raise TypeError(f'text={text!r} must be a str')
  grammar = (
    "expected 'stages(B@D,...[,n=N])' with D epochs, or D followed by 'up' "
    "(updates) or 'ex' (examples), e.g. 'stages(128@60,640@500up,n=50000)'"
  )
  compact = re.sub(r'\s+', '', text)
  match = re.fullmatch(r'stages\((.*)\)', compact)
  if not match:
    raise ValueError(f'text={text!r}: {grammar}')
  items = [item for item in match.group(1).split(',')]
  if not items or items == ['']:
    raise ValueError(f'text={text!r} has no stage: {grammar}')
  n_text = None
  if items[-1].startswith('n='):
    n_text = items.pop()[2:]
    if not n_text.isdigit():
      raise ValueError(
        f'text={text!r}: n={n_text!r} must be a positive integer'
      )
  if n_text is not None:
    n = int(n_text)
    if num_examples is not None and num_examples != n:
      raise ValueError(
        f'text={text!r} says n={n} but num_examples={num_examples}: drop one '
        'or make them agree'
      )
  elif num_examples is None:
    raise ValueError(
      f'text={text!r} has no n=<dataset size>: pass num_examples or append '
      "',n=N' inside the parentheses"
    )
  else:
    n = num_examples
  if not items:
    raise ValueError(f'text={text!r} has no stage: {grammar}')
  stages = []
  for item in items:
    m = _STAGE.match(item)
    if not m:
      raise ValueError(f'text={text!r}: stage {item!r} is malformed; {grammar}')
    batch, amount, unit = m.groups()
    batch = int(batch)
    if unit in (None, 'ep'):
      value = float(amount)
      kwargs = dict(epochs=int(value) if value.is_integer() else value)
    else:
      if not amount.isdigit():
        raise ValueError(
          f'text={text!r}: stage {item!r} needs a whole number of '
          f'{"updates" if unit == "up" else "examples"}'
        )
      key = 'updates' if unit == 'up' else 'examples'
      kwargs = {key: int(amount)}
    try:
      stages.append(Stage(batch, **kwargs))
    except ValueError as e:
      raise ValueError(f'text={text!r}: stage {item!r}: {e}') from None
  return BatchSchedule(tuple(stages), n)
