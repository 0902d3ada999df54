"""Atomic checkpoints of the train state and the host bookkeeping (orbax)."""

from __future__ import annotations

import logging as std_logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


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
  state, ...). Orbax writes into a temporary directory and renames it when
  complete, so a killed process leaves the previous checkpoints intact.

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
    """Writes checkpoint ``update`` (blocking until it is complete)."""
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

    Args:
      template: a host state with the run's structure, shapes and dtypes.
      update: which checkpoint (None = the newest).

    Returns:
      The restored numpy state and the meta dict.

    Raises:
      FileNotFoundError: when there is no checkpoint.
    """
    update = self.latest_step() if update is None else update
    if update is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    abstract = jax.tree.map(
      lambda a: np.zeros(np.shape(a), np.asarray(a).dtype), template
    )
    restored = self._manager.restore(
      update,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        meta=ocp.args.JsonRestore(),
      ),
    )
    state = jax.tree.map(np.asarray, restored['state'])
    return state, dict(restored['meta'])

  def close(self) -> None:
    self._manager.close()


def load_checkpoint(
  workdir: str, update: int | None = None
) -> tuple[Any, dict[str, Any]]:
  """Reads a run's checkpoint without its config (nested dicts of numpy).

  Args:
    workdir: the run's workdir (checkpoints live in ``workdir/checkpoints``).
    update: which checkpoint (None = the newest).

  Returns:
    ``(state, meta)``: the state as nested dicts/lists of numpy arrays
    (``state['params']`` holds the parameters) and the meta dict.

  Raises:
    FileNotFoundError: when there is no checkpoint.
  """
  restored = _restore_items(
    workdir,
    update,
    state=ocp.args.StandardRestore(),
    meta=ocp.args.JsonRestore(),
  )
  state = jax.tree.map(np.asarray, restored['state'])
  return state, dict(restored['meta'])


def load_meta(workdir: str, update: int | None = None) -> dict[str, Any]:
  """Reads only the meta dict of a run's checkpoint (update, examples,
  sampler and noise-scale state, ...), not its arrays.

  Args:
    workdir: the run's workdir.
    update: which checkpoint (None = the newest).

  Returns:
    The meta dict.

  Raises:
    FileNotFoundError: when there is no checkpoint.
  """
  restored = _restore_items(workdir, update, meta=ocp.args.JsonRestore())
  return dict(restored['meta'])


def _restore_items(workdir: str, update: int | None, **items: Any) -> Any:
  """Restores the named items of checkpoint ``update`` (None = newest)."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  manager = ocp.CheckpointManager(directory, item_names=('state', 'meta'))
  try:
    update = manager.latest_step() if update is None else update
    if update is None:
      raise FileNotFoundError(f'no checkpoint in {directory}')
    return manager.restore(update, args=ocp.args.Composite(**items))
  finally:
    manager.close()
