"""A workdir belongs to one run: an exclusive lock and a config fingerprint.

``lock_workdir`` takes an exclusive ``flock`` on ``workdir/.lock`` for as
long as a run uses the directory; a second process gets a
:class:`WorkdirLockedError` naming the holder. The kernel drops the lock
when its process ends, however it ends (a SIGKILL included), so a killed
run never leaves a stale lock behind.

``config.json`` is the run's identity: the config and, under ``task``,
the task's fingerprint (``Task.fingerprint``: model, loss, parameter
shapes, data sizes and digests). A call on a workdir whose saved record
differs in a field that changes what is computed is refused with a
:class:`ConfigMismatchError` naming the fields (a task's as
``task.params['hidden']['kernel']: float32 (2, 32) -> float32 (2, 64)``),
unless the caller starts afresh (``overwrite=True``) or marks the changes
as allowed (``allow_changes``, a field or a group such as ``'task'`` or
``'task.train_data'``), e.g. more epochs for a run that should go on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from absl import logging

from lrjax import _atomic

LOCK_FILE = '.lock'
CONFIG_FILE = 'config.json'

# Fields that say how a run executes or where its files go, never what it
# computes: they may differ between the calls of one run.
EXECUTION_FIELDS = frozenset(
  {
    'checkpoint_every',
    'checkpoint_seconds',
    'compilation_cache_dir',
    'coordinator_address',
    'keep_checkpoints',
    'max_updates',
    'prefetch',
    'process_id',
    'progress_bar',
    'tensorboard',
  }
)

# What train_and_evaluate writes in a workdir (removed by overwrite).
RUN_FILES = (
  'checkpoints',
  'checkpoints.corrupt',
  'metrics.jsonl',
  'tb',
  CONFIG_FILE,
)


class WorkdirLockedError(RuntimeError):
  """Another process holds the workdir."""


class ConfigMismatchError(ValueError):
  """A workdir holds a run of another config."""


_held: dict[str, list[Any]] = {}  # real path -> [open lock file, depth]
_held_lock = threading.Lock()


@contextlib.contextmanager
def lock_workdir(workdir: str) -> Iterator[None]:
  """Holds ``workdir`` for this process (re-entrant within the process).

  Args:
    workdir: the directory (created if missing).

  Yields:
    None, while the lock is held.

  Raises:
    WorkdirLockedError: when another process holds it, naming that
      process (pid, host, since when, its command).

  Examples:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with lock_workdir(d), lock_workdir(d):  # the same process: fine
    ...   pass
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.realpath(os.path.join(workdir, LOCK_FILE))
  with _held_lock:
    entry = _held.get(path)
    if entry is None:
      entry = _held[path] = [_acquire(path, workdir), 0]
    entry[1] += 1
  try:
    yield
  finally:
    with _held_lock:
      entry[1] -= 1
      if entry[1] == 0:
        del _held[path]
        fcntl.flock(entry[0], fcntl.LOCK_UN)
        entry[0].close()


def _acquire(path: str, workdir: str) -> Any:
  f = open(path, 'a+')  # noqa: SIM115 - held until released
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or 'unknown'
    f.close()
    raise WorkdirLockedError(
      f'workdir {workdir} is in use by another run ({holder}); wait for it '
      'to finish, stop it, or use another workdir'
    ) from None
  f.seek(0)
  f.truncate()
  f.write(
    f'pid {os.getpid()} on {socket.gethostname()} since '
    f'{time.strftime("%Y-%m-%d %H:%M:%S")}: {" ".join(_command())}\n'
  )
  f.flush()
  return f


def _command() -> list[str]:
  import sys

  return [os.path.basename(sys.executable), *sys.argv][:8]


TASK_KEY = 'task'


def run_record(config: Any, task: Any = None) -> dict[str, Any]:
  """What ``config.json`` holds: the config's fields and, under ``'task'``,
  the task's fingerprint.

  Args:
    config: a ``TrainConfig`` (anything with ``to_dict``) or its dict.
    task: a ``Task`` (its ``fingerprint``), a fingerprint dict, or None.

  Returns:
    A JSON-ready dict.
  """
  d = dict(config if isinstance(config, Mapping) else config.to_dict())
  if task is not None:
    d[TASK_KEY] = task if isinstance(task, Mapping) else task.fingerprint
  return json.loads(json.dumps(d, sort_keys=True, default=str))


def fingerprint(config: Any) -> dict[str, Any]:
  """The fields of a run record that decide what a run computes.

  Args:
    config: a ``TrainConfig`` or a record (:func:`run_record`).

  Returns:
    Its JSON form without :data:`EXECUTION_FIELDS`, the task's fingerprint
    flattened into ``task.<field>`` entries (``task.params[...]`` per
    parameter, ``task.train_data.digest``...).
  """
  d = run_record(config)
  out = {k: v for k, v in d.items() if k not in EXECUTION_FIELDS}
  task = out.pop(TASK_KEY, None)
  if isinstance(task, Mapping):
    out.update(_flatten(task, TASK_KEY))
  return out


def _flatten(d: Mapping[str, Any], prefix: str) -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if k in ('params', 'model_state') and isinstance(v, Mapping):
      out.update({f'{prefix}.{k}{path}': x for path, x in v.items()})
    elif isinstance(v, Mapping):
      out.update(_flatten(v, f'{prefix}.{k}'))
    else:
      out[f'{prefix}.{k}'] = v
  return out


def _allowed(field: str, allow: Collection[str]) -> bool:
  """A field, or one of a group: 'task' allows every task.* change."""
  return any(
    field == a or field.startswith(f'{a}.') or field.startswith(f'{a}[')
    for a in allow
  )


def config_changes(
  saved: Mapping[str, Any], config: Any
) -> list[tuple[str, Any, Any]]:
  """The fields whose values differ between a saved config and ``config``.

  Args:
    saved: a saved config dict (``config.json``).
    config: the new config (or its dict).

  Returns:
    ``(field, saved value, new value)`` for each differing field of the
    fingerprints, sorted by field; a field missing on one side has None
    there.

  Examples:
    >>> config_changes({'lr': 0.1, 'seed': 0}, {'lr': 0.2, 'seed': 0})
    [('lr', 0.1, 0.2)]
  """
  old, new = fingerprint(saved), fingerprint(config)
  return [
    (k, old.get(k), new.get(k))
    for k in sorted(set(old) | set(new))
    if old.get(k) != new.get(k)
  ]


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
  """``'lr: 0.1 -> 0.2; seed: 0 -> 1'``; a task's values without quotes
  (``task.params['w']: float32 (2, 32) -> float32 (2, 64)``), a missing
  one as ``absent``."""

  def show(key: str, value: Any) -> str:
    if value is None and key.startswith(f'{TASK_KEY}.'):
      return 'absent'
    if isinstance(value, str) and key.startswith(f'{TASK_KEY}.'):
      return value
    return repr(value)

  return '; '.join(f'{k}: {show(k, a)} -> {show(k, b)}' for k, a, b in changes)


def read_config(workdir: str) -> dict[str, Any] | None:
  """The saved ``config.json`` of ``workdir`` (None if there is none).

  Raises:
    ConfigMismatchError: for a file that is not a JSON object.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  try:
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
  except FileNotFoundError:
    return None
  except ValueError as e:
    raise ConfigMismatchError(
      f'{path} is not readable JSON ({e}); the run it belongs to cannot be '
      'checked: pass overwrite=True (--overwrite) to start afresh or use '
      'another workdir'
    ) from None
  if not isinstance(saved, dict):
    raise ConfigMismatchError(f'{path} holds no config object')
  return saved


def check_config(
  workdir: str,
  config: Any,
  allow_changes: Collection[str] = (),
) -> list[tuple[str, Any, Any]]:
  """Checks that ``config`` may continue the run saved in ``workdir``.

  Args:
    workdir: the run's directory.
    config: the new config, or its run record (:func:`run_record`, with
      the task).
    allow_changes: fields or groups that may differ (the caller vouches
      that the run may go on with the new values, e.g. ``num_epochs`` to
      train longer, ``'task.train_data'`` for more data).

  Returns:
    The allowed changes found (empty for a new or matching run).

  Raises:
    ConfigMismatchError: naming every field that differs and is not
      allowed, and the fixes; also when the workdir holds a run's files
      but no config.json.
  """
  saved = read_config(workdir)
  if saved is None:
    leftovers = [
      f for f in RUN_FILES if os.path.exists(os.path.join(workdir, f))
    ]
    if leftovers:
      raise ConfigMismatchError(
        f'workdir {workdir} holds {", ".join(leftovers)} but no '
        f'{CONFIG_FILE}, so the run cannot be checked against the config; '
        'pass overwrite=True (--overwrite) to start afresh or use another '
        'workdir'
      )
    return []
  changes = config_changes(saved, config)
  refused = [c for c in changes if not _allowed(c[0], allow_changes)]
  if refused:
    names = tuple(c[0] for c in refused)
    what = (
      'task'
      if all(c[0].startswith(f'{TASK_KEY}.') for c in refused)
      else 'config'
    )
    raise ConfigMismatchError(
      f'workdir {workdir} holds a run with another {what}: '
      f'{describe_changes(refused)}. Use another workdir, pass '
      'overwrite=True (--overwrite) to start afresh, or, if the run may go '
      f'on with the new values (e.g. more epochs), allow_changes={names}'
    )
  return changes


def remove_run_files(workdir: str, names: Collection[str] = RUN_FILES) -> None:
  """Removes what a run wrote in ``workdir`` (``overwrite``)."""
  for name in names:
    path = os.path.join(workdir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)


def write_config(workdir: str, config: Any) -> None:
  """Writes ``config.json`` atomically (a kill leaves the old or the new).

  Args:
    workdir: the run's directory.
    config: a ``TrainConfig`` or a run record (:func:`run_record`).
  """
  text = json.dumps(run_record(config), indent=2, sort_keys=True)
  _atomic.write_text(os.path.join(workdir, CONFIG_FILE), text)


@contextlib.contextmanager
def claim(
  workdir: str,
  config: Any,
  *,
  overwrite: bool = False,
  allow_changes: Collection[str] = (),
  main: bool = True,
  run_files: Collection[str] = RUN_FILES,
) -> Iterator[None]:
  """Holds ``workdir`` for a run of ``config`` (lock, check, config.json).

  The main process locks the workdir; every process checks ``config``
  against the saved one (unless ``overwrite``); the main process removes
  the old run's files on ``overwrite`` and writes ``config.json``.

  Args:
    workdir: the run's directory (exists).
    config: the run's config, or its run record (:func:`run_record`, with
      the task's fingerprint).
    overwrite: remove ``run_files`` and start afresh.
    allow_changes: fields that may differ from the saved config.
    main: whether this is the process that writes (process 0).
    run_files: what ``overwrite`` removes.

  Yields:
    None, while the workdir is held.

  Raises:
    WorkdirLockedError: when another process holds the workdir.
    ConfigMismatchError: for a saved config that differs (fields named).
  """
  with lock_workdir(workdir) if main else contextlib.nullcontext():
    if overwrite:
      if main:
        remove_run_files(workdir, run_files)
    else:
      changes = check_config(workdir, config, allow_changes)
      if changes:
        # The caller allowed these fields to change (e.g. the adaptive
        # batch's growing segments): worth a line, not a warning.
        logging.info(
          'continuing the run in %s with changed config (allowed): %s',
          workdir,
          describe_changes(changes),
        )
    if main:
      write_config(workdir, config)
    yield
