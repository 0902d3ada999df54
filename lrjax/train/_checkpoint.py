"""Atomic, verified checkpoints of the train state and the host bookkeeping
(orbax)."""

from __future__ import annotations

import hashlib
import logging as std_logging
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from lrjax.train._hooks import Hook, HookResult

CHECKSUM_KEY = 'checksum'


class CheckpointError(RuntimeError):
  """No checkpoint of a run could be restored intact."""


def state_digest(tree: Any) -> str:
  """SHA-256 of a state's arrays, whatever containers hold them.

  Each leaf is hashed with its dtype and shape; the leaf digests are sorted
  and hashed together, so a state restored into plain dicts (without a
  template) has the digest of the TrainState it was saved from.

  .. math::
    d = \\mathrm{SHA256}\\big(\\mathrm{sort}_i\\,
      \\mathrm{SHA256}(\\mathrm{dtype}_i \\| \\mathrm{shape}_i \\|
      \\mathrm{bytes}_i)\\big)

  Args:
    tree: a pytree of arrays.

  Returns:
    The hex digest.

  Examples:
    >>> a = {'w': np.arange(3, dtype=np.float32), 'b': np.zeros(2)}
    >>> state_digest(a) == state_digest([np.zeros(2), a['w']])
    True
    >>> state_digest(a) == state_digest({**a, 'b': np.ones(2)})
    False
  """
  digests = []
  for leaf in jax.tree.leaves(tree):
    a = np.asarray(leaf)
    h = hashlib.sha256(f'{a.dtype.str}{a.shape}'.encode())
    h.update(a.tobytes())  # C order, whatever the memory layout
    digests.append(h.hexdigest())
  return hashlib.sha256(''.join(sorted(digests)).encode()).hexdigest()


def _check(step: int, state: Any, meta: Any) -> None:
  """Raises ValueError when a restored checkpoint is not what was saved."""
  if not isinstance(meta, dict) or 'update' not in meta:
    raise ValueError(f'its meta has no update: {str(meta)[:100]}')
  if int(meta['update']) != step:
    raise ValueError(f'its meta is of update {meta["update"]}')
  if state is None:
    return
  digest = meta.get(CHECKSUM_KEY)
  if digest is None:
    logging.warning(
      'checkpoint %d has no checksum (written by an older lrjax): '
      'restored unverified',
      step,
    )
  elif state_digest(state) != digest:
    raise ValueError(
      'the checksum of its arrays differs from the one saved with it '
      '(damaged data)'
    )


def _restore_newest_good(
  manager: Any,
  directory: str,
  update: int | None,
  restore_step: Any,
  verify_state: bool,
) -> tuple[int, Any, dict[str, Any], list[int]]:
  """Restores and verifies the newest intact checkpoint (or ``update``).

  Args:
    manager: the orbax CheckpointManager.
    directory: its directory (for messages).
    update: a step to restore (None: the newest intact one).
    restore_step: ``step -> (state or None, meta)``.
    verify_state: check the arrays against the saved checksum.

  Returns:
    ``(step, state, meta, damaged newer steps)``.

  Raises:
    FileNotFoundError: when there is no checkpoint.
    CheckpointError: when none (or not ``update``) is intact.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if update is not None:
    if update not in steps:
      raise FileNotFoundError(
        f'no checkpoint of update {update} in {directory} (it has {steps})'
      )
    steps = [update]
  if not steps:
    raise FileNotFoundError(f'no checkpoint in {directory}')
  failures: list[tuple[int, str]] = []
  for step in steps:
    try:
      state, meta = restore_step(step)
      _check(step, state if verify_state else None, meta)
    except Exception as e:  # noqa: BLE001 - any damage: report, fall back
      reason = f'{type(e).__name__}: {str(e)[:300]}'
      failures.append((step, reason))
      logging.warning(
        'checkpoint %d in %s is damaged and is not used (%s)',
        step,
        directory,
        reason,
      )
      continue
    if failures:
      logging.warning(
        'using checkpoint %d, the newest intact one in %s', step, directory
      )
    return step, state, dict(meta), [s for s, _ in failures]
  raise CheckpointError(
    f'no intact checkpoint in {directory}: '
    + '; '.join(f'update {s}: {r}' for s, r in failures)
    + '. Pass overwrite=True (--overwrite) to train afresh, or restore the '
    'checkpoints from a copy'
  )


class CheckpointTimer(Hook):
  """Asks for a checkpoint when ``seconds`` passed since the last one.

  A run checkpoints every ``checkpoint_every`` updates and, with a timer
  (``checkpoint_seconds``), also whenever ``seconds`` of training passed
  since its last checkpoint: a kill then loses at most that long, and a
  fast run does not pay for a checkpoint every few updates. Where the
  checkpoints fall does not change what is computed (a resume is exact
  from any of them).

  The hook reads the clock in :meth:`due`, which the loop calls as it
  dispatches an update, and is ``sync``: when it is due the loop waits for
  that update and checkpoints right after it (a checkpoint waits for the
  device anyway). Every checkpoint restarts the interval, whatever asked
  for it.

  Args:
    seconds: the interval (0: never due).
    clock: seconds from any origin (default: ``time.monotonic``); read
      once here, at each update and after each checkpoint.

  Examples:
    >>> t = iter([0.0, 5.0, 11.0, 12.0, 13.0])
    >>> timer = CheckpointTimer(10.0, clock=lambda: next(t))  # at 0
    >>> timer.due(1), timer.due(2)  # at 5 and 11 seconds
    (False, True)
    >>> timer.on_step(None, None).checkpoint
    True
    >>> timer.on_checkpoint(2)  # a checkpoint at 12: the next is due at 22
    >>> timer.due(3)
    False
  """

  clock = staticmethod(time.monotonic)
  sync = True

  def __init__(
    self, seconds: float, clock: Callable[[], float] | None = None
  ) -> None:
    if clock is not None:
      self.clock = clock
    self.seconds = float(seconds)
    self._last = self.clock() if self.seconds > 0 else 0.0

  @property
  def name(self) -> str:
    return 'checkpoint_timer'

  def due(self, update: int) -> bool:
    """Whether ``seconds`` passed since the last checkpoint."""
    return self.seconds > 0 and self.clock() - self._last >= self.seconds

  def on_step(self, info: Any, value: Any) -> HookResult:
    return HookResult(checkpoint=True)

  def on_checkpoint(self, update: int) -> None:
    if self.seconds > 0:
      self._last = self.clock()


class _QuietOrbax(std_logging.Filter):
  """Drops orbax's per-save INFO chatter (dozens of lines per checkpoint)."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno > std_logging.INFO or (
      f'{os.sep}orbax{os.sep}' not in record.pathname
    )


def _quiet_orbax() -> None:
  logger = std_logging.getLogger('absl')
  if not any(isinstance(f, _QuietOrbax) for f in logger.filters):
    logger.addFilter(_QuietOrbax())


class Checkpointer:
  """Saves and restores (device-independent) host states with orbax.

  A checkpoint holds two items: ``state`` (the TrainState as numpy arrays:
  parameters, batch statistics, optimizer state, skip count, RNG) and
  ``meta`` (JSON: update, stage, examples seen, sampler state, noise-scale
  state, ..., and the :func:`state_digest` of the arrays). Orbax writes into
  a temporary directory and renames it when complete, so a killed process
  leaves the previous checkpoints intact. ``restore`` checks what it reads
  against the saved digest; a damaged newest checkpoint (flipped bits, a
  truncated file, an empty or garbled step directory) is logged, moved to
  ``<directory>.corrupt/`` and the previous intact one is used.

  Args:
    directory: checkpoint root (``workdir/checkpoints``).
    keep: how many of the newest checkpoints to keep.
  """

  def __init__(self, directory: str, keep: int) -> None:
    if keep < 1:
      raise ValueError(f'keep_checkpoints={keep} must be >= 1 to checkpoint')
    self.directory = os.path.abspath(directory)
    _quiet_orbax()
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      create=True,
      enable_async_checkpointing=False,
    )
    self._manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=('state', 'meta')
    )

  def latest_step(self) -> int | None:
    """The update index of the newest complete checkpoint (None if none)."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Update indices of the kept checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, update: int, host_state: Any, meta: dict[str, Any]) -> None:
    """Writes checkpoint ``update`` with the digest of its arrays (blocking
    until it is complete)."""
    meta = {**meta, CHECKSUM_KEY: state_digest(host_state)}
    self._manager.save(
      update,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(host_state),
        meta=ocp.args.JsonSave(meta),
      ),
      force=True,
    )
    self._manager.wait_until_finished()

  def restore(
    self, template: Any, update: int | None = None
  ) -> tuple[Any, dict[str, Any]]:
    """Restores ``(host_state, meta)`` into the structure of ``template``.

    The arrays are checked against the digest saved with them. With
    ``update=None`` a damaged checkpoint is skipped for the previous one,
    and once an intact one is found the damaged newer ones are moved to
    ``<directory>.corrupt/`` (the run will write new checkpoints in their
    place).

    Args:
      template: a host state with the run's structure, shapes and dtypes.
      update: which checkpoint (None = the newest intact one).

    Returns:
      The restored numpy state and the meta dict.

    Raises:
      FileNotFoundError: when there is no checkpoint (of ``update``).
      CheckpointError: when no checkpoint (or not ``update``) is intact;
        nothing is moved then.
    """
    abstract = jax.tree.map(
      lambda a: np.zeros(np.shape(a), np.asarray(a).dtype), template
    )

    def restore_step(step: int) -> tuple[Any, Any]:
      restored = self._manager.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          meta=ocp.args.JsonRestore(),
        ),
      )
      return jax.tree.map(np.asarray, restored['state']), restored['meta']

    _, state, meta, damaged = _restore_newest_good(
      self._manager, self.directory, update, restore_step, verify_state=True
    )
    if damaged:
      self._set_aside(damaged)
    return state, meta

  def _set_aside(self, steps: list[int]) -> None:
    """Moves damaged step directories to ``<directory>.corrupt/``."""
    if jax.process_index() != 0:
      return
    aside = self.directory + '.corrupt'
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      source = os.path.join(self.directory, str(step))
      target = os.path.join(aside, str(step))
      k = 1
      while os.path.exists(target):
        target = os.path.join(aside, f'{step}.{k}')
        k += 1
      if os.path.exists(source):
        os.replace(source, target)
        logging.warning('moved damaged checkpoint %s to %s', source, target)
    self._manager.reload()

  def close(self) -> None:
    self._manager.close()


def load_checkpoint(
  workdir: str, update: int | None = None
) -> tuple[Any, dict[str, Any]]:
  """Reads a run's checkpoint without its config (nested dicts of numpy).

  The arrays are checked against the digest saved with them; with
  ``update=None`` a damaged checkpoint is skipped (with a warning) for the
  previous intact one. Nothing is moved or written.

  Args:
    workdir: the run's workdir (checkpoints live in ``workdir/checkpoints``).
    update: which checkpoint (None = the newest intact one).

  Returns:
    ``(state, meta)``: the state as nested dicts/lists of numpy arrays
    (``state['params']`` holds the parameters) and the meta dict.

  Raises:
    FileNotFoundError: when there is no checkpoint (of ``update``).
    CheckpointError: when none (or not ``update``) is intact.
  """

  def restore_step(manager: Any, step: int) -> tuple[Any, Any]:
    restored = manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()
      ),
    )
    return jax.tree.map(np.asarray, restored['state']), restored['meta']

  return _read(workdir, update, restore_step, verify_state=True)


def load_meta(workdir: str, update: int | None = None) -> dict[str, Any]:
  """Reads only the meta dict of a run's checkpoint (update, examples,
  sampler and noise-scale state, ...), not its arrays.

  The arrays are not read, so not verified; a checkpoint whose meta is
  missing or garbled is skipped for the previous one.

  Args:
    workdir: the run's workdir.
    update: which checkpoint (None = the newest readable one).

  Returns:
    The meta dict.

  Raises:
    FileNotFoundError: when there is no checkpoint (of ``update``).
    CheckpointError: when no meta (or not that of ``update``) is readable.
  """

  def restore_step(manager: Any, step: int) -> tuple[Any, Any]:
    restored = manager.restore(
      step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
    )
    return None, restored['meta']

  return _read(workdir, update, restore_step, verify_state=False)[1]


def _read(
  workdir: str, update: int | None, restore_step: Any, verify_state: bool
) -> tuple[Any, dict[str, Any]]:
  """``(state, meta)`` of the newest intact checkpoint (or ``update``),
  through a read-only manager."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'no checkpoint in {directory}')
  _quiet_orbax()
  manager = ocp.CheckpointManager(
    directory,
    options=ocp.CheckpointManagerOptions(create=False),
    item_names=('state', 'meta'),
  )
  try:
    _, state, meta, _ = _restore_newest_good(
      manager,
      directory,
      update,
      lambda step: restore_step(manager, step),
      verify_state,
    )
    return state, meta
  finally:
    manager.close()
