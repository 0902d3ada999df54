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

import collections
import json
import math
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any, NamedTuple

import numpy as np
from absl import logging

from lrjax import _atomic

Clock = Callable[[], float]


def _plain(value: Any) -> Any:
  if hasattr(value, 'item') and getattr(value, 'ndim', 1) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep them readable.
  return value


class JsonlPosition(NamedTuple):
  """Where the complete records of a JSONL file end.

  A checkpoint stores the position of its metrics log, so that a resumed
  run can cut the log back to exactly the records that were written before
  the checkpoint, and tell when the file is not the one it was written with.

  Attributes:
    records: complete records (lines ending in a newline).
    size: bytes of those records.
    crc32: CRC-32 (``zlib.crc32``) of those bytes.
  """

  records: int
  size: int
  crc32: int


class JsonlError(ValueError):
  """A JSONL metrics file holds a line that is not a JSON record."""


# Records a JsonlWriter keeps in memory as its ``tail``: the last train
# record, and the test record of the same update, with room to spare.
TAIL_RECORDS = 16


def jsonl_line(record: Mapping[str, Any]) -> bytes:
  """The line (with its newline) a :class:`JsonlWriter` writes for
  ``record``: JSON, keys in order, NaN and infinities as text."""
  return (json.dumps({k: _plain(v) for k, v in record.items()}) + '\n').encode()


def _record_key(record: Mapping[str, Any]) -> tuple[Any, int]:
  """What identifies a record in a log: its split (None: train) and step."""
  return record.get('split'), int(record.get('step', 0))


def _complete_part(data: bytes) -> bytes:
  """The bytes up to and including the last newline."""
  return data[: data.rfind(b'\n') + 1]


def _position(data: bytes) -> JsonlPosition:
  return JsonlPosition(data.count(b'\n'), len(data), zlib.crc32(data))


def _read_bytes(path: str) -> bytes:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except FileNotFoundError:
    return b''


def _parse_line(path: str, number: int, line: bytes) -> dict[str, Any] | None:
  """The record on line ``number`` of ``path`` (None for a blank line)."""
  if not line.strip():
    return None
  try:
    record = json.loads(line)
  except ValueError as e:
    raise JsonlError(
      f'{path}:{number}: not a JSON record ({e}); the file is damaged: '
      'delete that line, or train the run again with overwrite'
    ) from None
  if not isinstance(record, dict):
    raise JsonlError(
      f'{path}:{number}: a JSON {type(record).__name__}, not a record '
      '(an object with a "step")'
    )
  return record


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """Reads the records of a JSONL metrics file, in order.

  A last line without its newline is what a process killed while writing
  leaves behind; it is ignored (the run that resumes rewrites it).

  Args:
    path: the file (e.g. ``metrics.jsonl``).

  Returns:
    One dict per complete line.

  Raises:
    FileNotFoundError: when ``path`` does not exist.
    JsonlError: for a complete line that is not a JSON object, naming the
      file and the line number.

  Examples:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), 'metrics.jsonl')
    >>> with open(path, 'w') as f:
    ...   _ = f.write('{"step": 1}\\n{"step": 2}\\n{"ste')
    >>> read_jsonl(path)
    [{'step': 1}, {'step': 2}]
  """
  with open(path, 'rb') as f:
    data = f.read()
  lines = _complete_part(data).splitlines()
  records = (_parse_line(path, i, line) for i, line in enumerate(lines, 1))
  return [r for r in records if r is not None]


def _number(value: Any) -> float | None:
  """A record value as a float ('nan'/'inf' texts too), else None."""
  if isinstance(value, bool):
    return None
  if isinstance(value, int | float):
    return float(value)
  if isinstance(value, str) and value.lower() in ('nan', 'inf', '-inf'):
    return float(value)
  return None


def _columns(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
  keys = dict.fromkeys(
    k for r in records for k, v in r.items() if _number(v) is not None
  )
  return {
    key: np.asarray(
      [math.nan if (v := _number(r.get(key))) is None else v for r in records],
      dtype=np.float64,
    )
    for key in keys
  }


def read_columns(
  path: str,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
  """Reads a JSONL metrics file into columns, one array per numeric key.

  Args:
    path: the file (e.g. ``metrics.jsonl``).

  Returns:
    ``(train, evals)``: ``train`` maps each numeric key of the training
    records (those without a ``split``) to a float64 array over them, NaN
    where a record lacks the key (NaN and infinities written as text are
    read back as numbers); ``evals`` maps each split name to the same kind
    of columns over its evaluation records.

  Raises:
    FileNotFoundError: when ``path`` does not exist.
    JsonlError: for a damaged record, naming the file and line (a torn last
      line is ignored, as `read_jsonl` does).

  Examples:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), 'metrics.jsonl')
    >>> with open(path, 'w') as f:
    ...   _ = f.write('{"step": 1, "loss": 2.5}\\n{"step": 2, "loss": "nan"}\\n'
    ...               '{"step": 2, "split": "test", "accuracy": 0.5}\\n')
    >>> train, evals = read_columns(path)
    >>> train['loss'], evals['test']['accuracy']
    (array([2.5, nan]), array([0.5]))
  """
  train, evals = [], {}
  for record in read_jsonl(path):
    split = record.get('split')
    (train if split is None else evals.setdefault(split, [])).append(record)
  return _columns(train), {k: _columns(v) for k, v in evals.items()}


def rewind_jsonl(
  path: str,
  position: JsonlPosition | None,
  max_step: int,
  tail: Sequence[str] = (),
  records: Iterable[Mapping[str, Any]] = (),
) -> JsonlPosition:
  """Cuts a metrics log back to the records of a restored checkpoint.

  With the ``position`` the checkpoint stored, the file is truncated to
  exactly those bytes after checking that they are the ones it was written
  with (same size at least, same CRC-32). When the file was damaged inside
  those bytes (its end cut by a disk or copy fault, a torn last line) but
  is intact before the checkpoint's ``tail`` (its last records, as
  written), the tail is written back: the file is again exactly the
  checkpoint's bytes. Otherwise (no position, or the file was edited,
  replaced or shortened further) the records are kept in order while
  their ``step`` is at most ``max_step``, the records of ``tail`` and
  ``records`` missing from them (by split and step) are appended in step
  order, and the file is rewritten atomically; a failed check is logged
  as a warning. A torn last line is always dropped. ``max_step=0``
  without a position starts an empty log (a run that restarts from
  scratch).

  Args:
    path: the log (a missing file is created empty).
    position: the position saved with the checkpoint, or None.
    max_step: the update of the restored checkpoint (0: none).
    tail: the last lines of the log up to ``position``, as
      :attr:`JsonlWriter.tail` gave them when the checkpoint was saved.
    records: records the checkpoint holds that the log must keep (the
      last train and test records), as dicts.

  Returns:
    The position of the rewound file's end.

  Raises:
    JsonlError: when the records must be read and a line is damaged.

  Examples:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), 'metrics.jsonl')
    >>> w = JsonlWriter(path)
    >>> for step in (1, 2, 3):
    ...   w.write({'step': step})
    >>> position, tail = w.position, w.tail
    >>> w.close()
    >>> with open(path, 'r+') as f:  # the last line cut by a disk fault
    ...   _ = f.truncate(position.size - 4)
    >>> rewind_jsonl(path, position, 3, tail) == position
    True
    >>> [r['step'] for r in read_jsonl(path)]
    [1, 2, 3]
  """
  data = _read_bytes(path)
  if position is not None:
    position = JsonlPosition(*position)
    head = data[: position.size]
    if len(head) == position.size and _position(head) == position:
      if len(data) != position.size or not os.path.exists(path):
        with open(path, 'ab') as f:
          f.truncate(position.size)
          f.flush()
          os.fsync(f.fileno())
      return position
    saved = ''.join(tail).encode()
    if tail and len(saved) <= position.size:
      restored = data[: position.size - len(saved)] + saved
      if _position(restored) == position:
        logging.warning(
          '%s was damaged inside the %d records (%d bytes) its checkpoint '
          'covers; its last %d records are restored from the checkpoint',
          path,
          position.records,
          position.size,
          len(tail),
        )
        _atomic.write_bytes(path, restored)
        return position
    logging.warning(
      '%s does not hold the %d records (%d bytes) its checkpoint was '
      'written with; keeping its records up to step %d and those the '
      'checkpoint holds',
      path,
      position.records,
      position.size,
      max_step,
    )
  complete = _complete_part(data)
  kept, keys = [], set()
  if max_step > 0:
    for number, line in enumerate(complete.splitlines(keepends=True), 1):
      record = _parse_line(path, number, line)
      if record is not None and int(record.get('step', 0)) > max_step:
        break
      kept.append(line)
      if record is not None:
        keys.add(_record_key(record))
  lost: dict[tuple[Any, int], bytes] = {}
  saved_lines = [(json.loads(line), line.encode()) for line in tail]
  saved_lines += [(r, jsonl_line(r)) for r in records if r]
  for record, line in saved_lines:
    key = _record_key(record)
    if key not in keys and key[1] <= max_step:
      lost.setdefault(key, line)
  # In step order, a train record before the test record of its step.
  kept += [
    lost[k] for k in sorted(lost, key=lambda k: (k[1], k[0] is not None))
  ]
  out = b''.join(kept)
  if out != data or not os.path.exists(path):
    _atomic.write_bytes(path, out)
  return _position(out)


class JsonlWriter:
  """Appends one JSON object per record to a file (e.g. metrics.jsonl).

  A torn last line (left by a process killed while writing) is cut off
  when the file is opened, so it never corrupts the next record.
  ``position`` is the end of the records written so far and ``tail`` the
  last of them (a checkpoint stores both, so that a resume can rewind the
  log exactly and restore records a damaged file lost); ``sync`` makes
  them durable (a checkpoint calls it before it commits).

  Args:
    path: file to append to (created with its directory).
  """

  def __init__(self, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.path = path
    data = _read_bytes(path)
    complete = _complete_part(data)
    if len(complete) != len(data):
      logging.warning(
        '%s ends with a torn line (%d bytes, from a killed process); cut off',
        path,
        len(data) - len(complete),
      )
      with open(path, 'ab') as f:
        f.truncate(len(complete))
    self.position = _position(complete)
    self._tail: collections.deque[bytes] = collections.deque(
      complete.splitlines(keepends=True)[-TAIL_RECORDS:], TAIL_RECORDS
    )
    self._file: IO[bytes] = open(path, 'ab')  # noqa: SIM115

  @property
  def tail(self) -> list[str]:
    """The last (at most :data:`TAIL_RECORDS`) lines up to ``position``."""
    return [line.decode() for line in self._tail]

  def write(self, record: Mapping[str, Any]) -> None:
    line = jsonl_line(record)
    self._file.write(line)
    self._tail.append(line)
    p = self.position
    self.position = JsonlPosition(
      p.records + 1, p.size + len(line), zlib.crc32(line, p.crc32)
    )

  def flush(self) -> None:
    self._file.flush()

  def sync(self) -> None:
    """Flushes and fsyncs: the records written so far survive a crash."""
    self._file.flush()
    os.fsync(self._file.fileno())

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

  def sync(self) -> None:
    """``sync`` on the writers that have it (files), ``flush`` on the rest."""
    for w in self.writers:
      getattr(w, 'sync', w.flush)()

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


def train_seconds(steps: Sequence[float], steps_per_sec: Sequence[float]):
  r"""Training seconds up to each logged step, from the logged step rates.

  A log line at step :math:`s_i` with rate :math:`r_i` covers the
  :math:`s_i - s_{i-1}` updates since the previous line (:math:`s_0 = 0`)
  at that rate, so

  .. math::
    t_i = \sum_{j \le i} \frac{s_j - s_{j-1}}{r_j},

  with an interval whose rate is not positive (or not finite) counted as
  0: the time the rates measure, without evaluations or checkpoints.
  ``np.interp(step, steps, t)`` then reads the time at any update, e.g.
  when a run first reached a target.

  Args:
    steps: the logged steps, increasing.
    steps_per_sec: the rate logged with each (``Progress``'s
      ``steps_per_sec``).

  Returns:
    float64 array of the cumulative seconds, one per logged step.

  Examples:
    >>> train_seconds([4, 8, 12], [2.0, 4.0, 0.0]).tolist()
    [2.0, 3.0, 3.0]
  """
  steps = np.asarray(steps, np.float64)
  rates = np.asarray(steps_per_sec, np.float64)
  with np.errstate(divide='ignore', invalid='ignore'):
    dt = np.where(rates > 0, np.diff(steps, prepend=0.0) / rates, 0.0)
  return np.cumsum(np.nan_to_num(dt))
