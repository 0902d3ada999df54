"""Epoch-domain policies as step-domain optax schedules."""

from __future__ import annotations

import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from lrjax.batch._schedule import BatchSchedule


def per_update(
  policy: Callable[[jax.Array], jax.typing.ArrayLike] | float,
  batch_schedule: BatchSchedule,
) -> optax.Schedule:
  """Turns a policy over epochs into an optax schedule over updates.

  .. math::
    \\mathrm{schedule}(c) = \\mathrm{policy}(\\mathrm{epoch}(c)),

  where :math:`c` is the number of optimizer updates already performed (the
  ``count`` optax passes) and :math:`\\mathrm{epoch}(c)` is
  :meth:`BatchSchedule.epoch_at`. An LR, momentum or weight-decay policy
  written in epochs thus stays correct under any batch ramp. Under
  ``optax.MultiSteps`` pass the *real* update count (the inner optimizer's
  count), never the micro-step count.

  The policy's unit is checked where it has one: a policy that counts
  updates (``lrjax.schedules.in_updates(...)``, ``noam``) is refused, since
  reading its durations as epochs would be wrong; so is a stateful plateau
  policy, which optax takes directly. A plain callable, or a policy without
  a unit, is taken as a function of epochs, as before.

  Args:
    policy: any jit-safe callable of progress ``t`` (float32 epochs) returning
      a scalar, e.g. a policy from :mod:`lrjax.schedules`; or a number, for a
      constant.
    batch_schedule: the BatchSchedule that maps updates to epochs.

  Returns:
    A jit-safe ``optax.Schedule`` returning float32.

  Raises:
    TypeError: if ``batch_schedule`` is not a BatchSchedule, ``policy`` is
      neither callable nor a number, or ``policy`` is a stateful (plateau)
      schedule.
    ValueError: if ``policy`` counts updates (``policy.unit == 'update'``).

  Examples:
    >>> from lrjax.batch import BatchSchedule, Stage, per_update
    >>> bs = BatchSchedule((Stage(100, epochs=2), Stage(500, epochs=2)), 1000)
    >>> lr = per_update(lambda epoch: 0.1 * (epoch < 3), bs)
    >>> [round(float(lr(c)), 4) for c in (0, 19, 20, 21, 22, 23)]
    [0.1, 0.1, 0.1, 0.1, 0.0, 0.0]
  """
  if not isinstance(batch_schedule, BatchSchedule):
    raise TypeError(
      f'batch_schedule={batch_schedule!r} must be a lrjax.batch.BatchSchedule'
    )
  if isinstance(policy, numbers.Real) and not isinstance(policy, bool):
    value = float(policy)

    def constant(count: jax.typing.ArrayLike) -> jax.Array:
      del count
      return jnp.asarray(value, jnp.float32)

    return constant
  if not callable(policy):
    raise TypeError(
      f'policy={policy!r} must be a callable of epochs or a number'
    )
  if all(hasattr(policy, a) for a in ('init', 'update')):
    raise TypeError(
      f'policy={policy} is a stateful (plateau) schedule: give it to optax '
      '(optax.inject_hyperparams) directly, with value= and epoch= at each '
      'update; per_update converts policies of epochs only'
    )
  if getattr(policy, 'unit', None) == 'update':
    raise ValueError(
      f'policy={policy} counts updates (unit=update), not epochs: give it '
      'to optax directly as a schedule of the update count, or build it in '
      'epochs (without in_updates) for per_update'
    )

  def schedule(count: jax.typing.ArrayLike) -> jax.Array:
    return jnp.asarray(policy(batch_schedule.epoch_at(count)), jnp.float32)

  return schedule
