"""Metric writers (JSONL, absl logging, TensorBoard) and progress with ETA.

Writers share one small interface, ``write(record)`` / ``flush()`` /
``close()``, where a record is a flat dict of Python scalars and strings
with at least a ``step``. Time is read through an injectable clock so tests
can drive rates and ETAs exactly.

Examples:
  >>> import io
  >>> clock = iter([0.0, 2.0]).__next__
  >>> progress = Progress(total_steps=10, clock=clock)
  >>> progress.start(step=0, examples=0)
  >>> rates = progress.update(step=4, examples=400)
  >>> print(rates['steps_per_sec'], rates['examples_per_sec'], rates['eta_sec'])
  2.0 200.0 3.0
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from absl import logging

Clock = Callable[[], float]


def _plain(value: Any) -> Any:
  if hasattr(value, 'item') and getattr(value, 'ndim', 1) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep them readable.
  return value


class JsonlWriter:
  """Appends one JSON object per record to a file (e.g. metrics.jsonl).

  Args:
    path: file to append to (created with its directory).
  """

  def __init__(self, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.path = path
    self._file: IO[str] = open(path, 'a', encoding='utf-8')  # noqa: SIM115

  def write(self, record: Mapping[str, Any]) -> None:
    self._file.write(
      json.dumps({k: _plain(v) for k, v in record.items()}) + '\n'
    )

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def _fmt(value: Any) -> str:
  value = _plain(value)
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value)


class LoggingWriter:
  """Writes each record as one absl ``logging.info`` line.

  Args:
    keys: the keys to print, in order (None = all keys of the record).
    prefix: text before the key=value pairs.
  """

  def __init__(
    self, keys: Sequence[str] | None = None, prefix: str = ''
  ) -> None:
    self.keys = tuple(keys) if keys is not None else None
    self.prefix = prefix

  def format(self, record: Mapping[str, Any]) -> str:
    """The log line for ``record``."""
    keys = self.keys if self.keys is not None else tuple(record)
    parts = [f'{k}={_fmt(record[k])}' for k in keys if k in record]
    return self.prefix + ' '.join(parts)

  def write(self, record: Mapping[str, Any]) -> None:
    logging.info('%s', self.format(record))

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


class TensorBoardWriter:
  """Scalars to TensorBoard event files through tensorboardX.

  Args:
    logdir: event file directory.

  Raises:
    ImportError: when tensorboardX is not installed
      (``pip install lrjax[tensorboard]``).
  """

  def __init__(self, logdir: str) -> None:
    from tensorboardX import SummaryWriter  # optional dependency

    self._writer = SummaryWriter(logdir)

  def write(self, record: Mapping[str, Any]) -> None:
    step = int(record['step'])
    prefix = f'{record["split"]}/' if 'split' in record else 'train/'
    for k, v in record.items():
      v = _plain(v)
      if k not in ('step', 'split') and isinstance(v, (int, float)):
        self._writer.add_scalar(prefix + k, v, step)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class MultiWriter:
  """Forwards every call to several writers."""

  def __init__(self, writers: Sequence[Any]) -> None:
    self.writers = list(writers)

  def write(self, record: Mapping[str, Any]) -> None:
    for w in self.writers:
      w.write(record)

  def flush(self) -> None:
    for w in self.writers:
      w.flush()

  def close(self) -> None:
    for w in self.writers:
      w.close()


class Progress:
  """Rates since the last update and the ETA from the whole-run rate.

  .. math::
     \\mathrm{ETA} = (S - s) \\cdot \\frac{t - t_0}{s - s_0}

  with S the total steps, s the current step and (s0, t0) where timing
  started (after compilation, so compile time does not skew the ETA).

  Args:
    total_steps: steps of the whole run.
    clock: seconds, monotonic (default ``time.perf_counter``).
  """

  def __init__(self, total_steps: int, clock: Clock | None = None) -> None:
    if total_steps < 0:
      raise ValueError(f'{total_steps=} must be >= 0')
    self.total_steps = total_steps
    self.clock = clock or time.perf_counter
    self._start: tuple[int, int, float] | None = None
    self._last: tuple[int, int, float] | None = None

  def start(self, step: int, examples: int) -> None:
    """Starts timing at ``step`` with ``examples`` seen."""
    now = self.clock()
    self._start = self._last = (step, examples, now)

  def update(self, step: int, examples: int) -> dict[str, float]:
    """Returns steps_per_sec, examples_per_sec (since the last call), eta_sec.

    Raises:
      RuntimeError: if :meth:`start` was not called.
    """
    if self._start is None or self._last is None:
      raise RuntimeError('call Progress.start before Progress.update')
    now = self.clock()
    s0, e0, t0 = self._last
    dt = max(now - t0, 1e-12)
    rates = {
      'steps_per_sec': (step - s0) / dt,
      'examples_per_sec': (examples - e0) / dt,
    }
    first_step, _, first_t = self._start
    done = step - first_step
    if done > 0:
      per_step = (now - first_t) / done
      rates['eta_sec'] = max(self.total_steps - step, 0) * per_step
    else:
      rates['eta_sec'] = float('nan')
    self._last = (step, examples, now)
    return rates


class ProgressBar:
  """A one-line text progress bar, drawn only on interactive terminals.

  Args:
    total: steps of the whole run.
    stream: where to draw (default ``sys.stderr``).
    enabled: None = only when ``stream`` is a terminal.
    width: bar width in characters.
  """

  def __init__(
    self,
    total: int,
    stream: IO[str] | None = None,
    enabled: bool | None = None,
    width: int = 30,
  ) -> None:
    self.total = max(int(total), 1)
    self.stream = stream if stream is not None else sys.stderr
    if enabled is None:
      enabled = bool(getattr(self.stream, 'isatty', lambda: False)())
    self.enabled = enabled
    self.width = width

  def render(self, step: int, text: str = '') -> str:
    """The bar for ``step`` with a trailing ``text``."""
    frac = min(max(step / self.total, 0.0), 1.0)
    filled = int(round(frac * self.width))
    bar = '#' * filled + '-' * (self.width - filled)
    return f'[{bar}] {step}/{self.total} {text}'.rstrip()

  def update(self, step: int, text: str = '') -> None:
    if self.enabled:
      self.stream.write('\r' + self.render(step, text))
      self.stream.flush()

  def close(self) -> None:
    if self.enabled:
      self.stream.write('\n')
      self.stream.flush()


def format_eta(seconds: float) -> str:
  """``'1h02m03s'`` style text of a duration (``'?'`` when not finite).

  Examples:
    >>> format_eta(3723.4)
    '1h02m03s'
    >>> format_eta(59)
    '59s'
  """
  if not math.isfinite(seconds):
    return '?'
  s = int(round(seconds))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  if h:
    return f'{h}h{m:02d}m{sec:02d}s'
  if m:
    return f'{m}m{sec:02d}s'
  return f'{sec}s'
