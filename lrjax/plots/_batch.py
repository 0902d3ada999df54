"""Figure of LR, batch size and noise scale g against epochs and updates."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping

import jax
import numpy as np
from matplotlib.figure import Figure

from lrjax import rules
from lrjax.batch import BatchSchedule
from lrjax.plots._curves import (
  _integer_log_ticks,
  _outside_legend,
  _widen_for_legends,
)


def _as_run(name, run):
  if hasattr(run, 'batch_schedule') and hasattr(run, 'lr'):
    return run.batch_schedule, run.lr, getattr(run, 'momentum', 0.0)
  try:
    schedule, lr, momentum = run
  except (TypeError, ValueError):
    raise ValueError(
      f'runs[{name!r}]={run!r} must be (batch_schedule, lr, momentum) or a '
      'lrjax.batch.LrDecayRamp'
    ) from None
  if not isinstance(schedule, BatchSchedule):
    raise TypeError(f'runs[{name!r}][0]={schedule!r} must be a BatchSchedule')
  return schedule, lr, momentum


def _over_epochs(value: Callable | float, epochs: jax.Array) -> np.ndarray:
  if isinstance(value, numbers.Real):
    return np.full(epochs.shape, float(value))
  return np.asarray(jax.jit(jax.vmap(value))(epochs), np.float64)


def plot_batch_schedule(
  runs: Mapping[str, object],
  *,
  exact: bool = False,
  num_points: int = 1000,
  log_lr: bool = True,
  title: str | None = None,
  path: str | None = None,
) -> Figure:
  """LR, batch size and noise scale g of each run, over epochs and updates.

  Six panels: rows LR, batch size, :math:`g`; columns against epochs and
  against optimizer updates. The same run has the same colour everywhere, so
  equal-g schedules (Smith et al. 2018) overlap in the g row over epochs while
  the update axis shows how many fewer updates the batch ramp needs.

  .. math::
    g = \\frac{\\epsilon}{1 - m}\\left(\\frac{N}{B} - 1\\right)
    \\ (\\texttt{exact=True}) \\quad\\text{or}\\quad
    \\frac{\\epsilon N}{B (1 - m)}.

  Args:
    runs: name -> ``(batch_schedule, lr, momentum)``, where ``lr`` and
      ``momentum`` are policies over epochs (callables of float32 epochs) or
      numbers; a :class:`lrjax.batch.LrDecayRamp` is accepted as a run.
    exact: the exact g instead of the :math:`B \\ll N` form.
    num_points: samples per run, evenly spaced in updates and again in epochs
      (both sides of every stage boundary are added); a policy's own steps
      show at the first sample past them.
    log_lr: a logarithmic LR axis (batch size and g are always logarithmic).
    title: a figure title.
    path: where to save the PNG, if anywhere.

  Returns:
    The ``matplotlib.figure.Figure``.

  Raises:
    ValueError: on no run or a malformed run.

  Examples:
    >>> from lrjax import plots
    >>> from lrjax.batch import parse
    >>> bs = parse('stages(10@2,50@2,n=100)')
    >>> fig = plots.plot_batch_schedule({'ramp': (bs, 0.1, 0.9)},
    ...                                 num_points=20)
    >>> print(len(fig.axes), len(fig.axes[0].lines))
    6 1

  References:
    Smith, Kindermans, Ying, Le. Don't Decay the Learning Rate, Increase the
    Batch Size. ICLR 2018 (figures 1-2).
  """
  if not isinstance(runs, Mapping) or not runs:
    raise ValueError(f'runs={runs!r} must be a non-empty dict name -> run')
  if num_points < 2:
    raise ValueError(f'{num_points=} must be >= 2')
  fig = Figure(figsize=(10, 8), dpi=100)
  axes = fig.subplots(3, 2, sharex='col')
  # Equal-g runs coincide: thinner, dashed lines on top keep each visible.
  styles = [
    (f'C{i % 10}', ('-', '--', ':', '-.')[i % 4], max(3.0 - 0.7 * i, 1.0))
    for i in range(len(runs))
  ]
  for (name, run), (color, style, width) in zip(
    runs.items(), styles, strict=True
  ):
    schedule, lr, momentum = _as_run(name, run)
    total = schedule.num_updates
    # Even in updates and in epochs (so a policy's steps show on both axes),
    # plus both sides of every stage boundary.
    probe = set(np.linspace(0, total, num_points).astype(np.int64).tolist())
    probe.update(
      schedule.update_at_epoch(float(e))
      for e in np.linspace(0, schedule.num_epochs, num_points)
    )
    for b in schedule.boundaries:
      probe.update({max(b - 1, 0), b})
    updates = np.asarray(sorted(probe), np.int32)
    epochs = schedule.epoch_at(updates)
    batch = np.asarray(schedule.batch_size_at(updates), np.float64)
    lrs = _over_epochs(lr, epochs)
    moms = _over_epochs(momentum, epochs)
    g = rules.noise_scale(lrs, batch, schedule.num_examples, moms, exact=exact)
    xs = (np.asarray(epochs, np.float64), updates)
    for col, x in enumerate(xs):
      for row, y in enumerate((lrs, batch, g)):
        axes[row][col].plot(
          x,
          y,
          drawstyle='steps-post',
          color=color,
          linestyle=style,
          label=name if (row, col) == (0, 1) else None,
          linewidth=width,
        )
  for row, label in enumerate(('learning rate', 'batch size', 'noise scale g')):
    axes[row][0].set_ylabel(label)
    for col in range(2):
      ax = axes[row][col]
      if row or log_lr:
        ax.set_yscale('log')
      if row == 1:
        _integer_log_ticks(ax.yaxis)
      ax.grid(True, alpha=0.3)
  axes[2][0].set_xlabel('epoch')
  axes[2][1].set_xlabel('update')
  _outside_legend(axes[0][1])
  if title:
    fig.suptitle(title)
  _widen_for_legends(fig)
  fig.tight_layout()
  if path is not None:
    fig.savefig(path)
  return fig
