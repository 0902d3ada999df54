"""Figure of one or several schedules over updates or epochs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from lrjax.schedules import Policy


def plot_schedules(
  policies: Mapping[str, Policy] | Sequence[Policy],
  *,
  t_max: float,
  num_points: int = 1001,
  xlabel: str = 'update',
  title: str | None = None,
  log_y: bool = False,
  path: str | None = None,
) -> Figure:
  """Draws policies over `t` in `[0, t_max]` and saves a PNG when given a path.

  Each policy is evaluated once under `jax.jit` on `num_points` evenly spaced
  values of t (integers when `t_max` is an integer and there are enough
  points, so piecewise policies show their steps exactly).

  Args:
    policies: a dict name -> `Policy`, or a list of policies (labelled by their
      text form).
    t_max: the last t drawn (updates or epochs, as `xlabel` says).
    num_points: how many t values (>= 2).
    xlabel: the x-axis label, e.g. 'update' or 'epoch'.
    title: the figure title, if any.
    log_y: a logarithmic y axis.
    path: where to save the PNG, if anywhere.

  Returns:
    The `matplotlib.figure.Figure`.

  Raises:
    ValueError: on no policy, `t_max <= 0` or `num_points < 2`.

  Examples:
    >>> from lrjax import plots, schedules
    >>> fig = plots.plot_schedules(
    ...   [schedules.cosine(0.1, length=100)], t_max=100, num_points=11)
    >>> print(len(fig.axes[0].lines))
    1
  """
  if isinstance(policies, Mapping):
    items = list(policies.items())
  else:
    items = [(str(p), p) for p in policies]
  if not items:
    raise ValueError('policies is empty: give at least one Policy')
  if not t_max > 0:
    raise ValueError(f'{t_max=} must be > 0')
  if num_points < 2:
    raise ValueError(f'{num_points=} must be >= 2')
  if float(t_max).is_integer() and num_points >= t_max + 1:
    ts = jnp.arange(int(t_max) + 1, dtype=jnp.int32)
  else:
    ts = jnp.linspace(0.0, float(t_max), num_points, dtype=jnp.float32)
  fig = Figure(figsize=(7, 4), dpi=100)
  ax = fig.add_subplot()
  for name, policy in items:
    ys = np.asarray(jax.jit(policy)(ts))
    ax.plot(np.asarray(ts), ys, label=name, linewidth=1.5)
  ax.set_xlabel(xlabel)
  ax.set_ylabel('value')
  if log_y:
    ax.set_yscale('log')
  if title:
    ax.set_title(title)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize='small')
  fig.tight_layout()
  if path is not None:
    fig.savefig(path)
  return fig
