"""Training curves over seeds: accuracy or loss against epochs, updates, cost.

Each experiment run is a mapping from a column name (``'epoch'``, ``'step'``,
``'accuracy'``, ...) to a 1-D array, as read from a trainer's
``metrics.jsonl``. Several runs of one configuration (seeds) become one curve:
their mean, with a band of one standard deviation (or their range).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.axis
import matplotlib.figure
import numpy as np
from jax.typing import ArrayLike

Run = Mapping[str, ArrayLike]

# Columns that hold piecewise-constant integers (stages): drawn as steps,
# with plain integer ticks on a log axis.
_STAGE_COLUMNS = ('batch_size', 'micro_batch', 'accum_steps')


def _integer_log_ticks(axis: matplotlib.axis.Axis) -> None:
  """Powers of two as plain integers (32, 64, ...) on a log axis."""
  import matplotlib.ticker as mticker

  axis.set_major_locator(mticker.LogLocator(base=2))
  axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f'{v:,.0f}'))
  axis.set_minor_formatter(mticker.NullFormatter())


_OUTSIDE = 'lrjax-outside-legend'


def _outside_legend(ax: matplotlib.axes.Axes) -> None:
  """The legend right of the axes, off the curves.

  :func:`_widen_for_legends` later widens the figure by the legend's width,
  so long labels do not squeeze the axes.
  """
  legend = ax.legend(
    fontsize='small',
    loc='upper left',
    bbox_to_anchor=(1.02, 1.0),
    borderaxespad=0.0,
  )
  legend.set_gid(_OUTSIDE)


def _widen_for_legends(fig: matplotlib.figure.Figure) -> None:
  """Adds the width of the widest legend right of its axes to the figure."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg

  legends = [
    ax.get_legend()
    for ax in fig.axes
    if ax.get_legend() is not None and ax.get_legend().get_gid() == _OUTSIDE
  ]
  if not legends:
    return
  renderer = FigureCanvasAgg(fig).get_renderer()
  extra = max(leg.get_window_extent(renderer).width for leg in legends)
  width, height = fig.get_size_inches()
  fig.set_size_inches(width + extra / fig.dpi + 0.1, height)


def _finish_figure(
  fig: matplotlib.figure.Figure,
  path: str | None,
  *,
  suptitle: str | None = None,
) -> matplotlib.figure.Figure:
  """Figure title, tight layout, and the PNG (110 dpi) when given a path."""
  if suptitle:
    fig.suptitle(suptitle)
  _widen_for_legends(fig)
  fig.tight_layout()
  if path:
    fig.savefig(path, dpi=110)
  return fig


def _finish_axes(
  fig: matplotlib.figure.Figure,
  ax: matplotlib.axes.Axes,
  title: str | None,
  path: str | None,
  *,
  logx: bool = False,
  logy: bool = False,
) -> matplotlib.figure.Figure:
  """A single-axes figure's scales, grid, legend and title, then saved."""
  if logx:
    ax.set_xscale('log')
  if logy:
    ax.set_yscale('log')
  ax.grid(True, alpha=0.3)
  _outside_legend(ax)
  if title:
    ax.set_title(title)
  return _finish_figure(fig, path)


def band_over_seeds(
  runs: Sequence[tuple[ArrayLike, ArrayLike]], num_points: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean and standard deviation of several ``(x, y)`` curves on one grid.

  When every run has the same ``x`` values those are the grid; otherwise the
  grid is ``num_points`` (default: the longest run's length) evenly spaced
  points over the range all runs cover, and each run is linearly
  interpolated onto it. Points where ``y`` is not finite are dropped first.

  .. math::

     \\bar y(x) = \\frac{1}{S} \\sum_s y_s(x), \\qquad
     \\sigma(x) = \\sqrt{\\frac{1}{S-1} \\sum_s (y_s(x) - \\bar y(x))^2}

  with :math:`\\sigma = 0` for a single run.

  Args:
    runs: one ``(x, y)`` pair of 1-D arrays per seed; ``x`` increasing.
    num_points: grid size when the runs' ``x`` differ.

  Returns:
    ``(grid, mean, std)``, float64 arrays of equal length.

  Raises:
    ValueError: with no runs, an empty run, or runs that share no x range.

  Examples:
    >>> grid, mean, std = band_over_seeds([([0, 1, 2], [0., 2., 4.]),
    ...                                    ([0, 1, 2], [2., 2., 2.])])
    >>> print(grid.tolist(), mean.tolist(), [round(float(s), 4) for s in std])
    [0.0, 1.0, 2.0] [1.0, 2.0, 3.0] [1.4142, 0.0, 1.4142]
  """
  if not runs:
    raise ValueError(f'{len(runs)=} must be >= 1')
  clean = []
  for x, y in runs:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
      raise ValueError(f'{x.shape=} and {y.shape=} must be equal and 1-D')
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
      raise ValueError('every run needs at least one finite (x, y) point')
    clean.append((x[keep], y[keep]))
  first = clean[0][0]
  if all(x.shape == first.shape and np.array_equal(x, first) for x, _ in clean):
    grid = first
    ys = np.stack([y for _, y in clean])
  else:
    lo = max(x.min() for x, _ in clean)
    hi = min(x.max() for x, _ in clean)
    if lo > hi:
      raise ValueError(f'the runs share no x range ({lo=} > {hi=})')
    size = num_points or max(len(x) for x, _ in clean)
    grid = np.linspace(lo, hi, size)
    ys = np.stack([np.interp(grid, x, y) for x, y in clean])
  mean = ys.mean(axis=0)
  std = ys.std(axis=0, ddof=1) if len(ys) > 1 else np.zeros_like(mean)
  return grid, mean, std


def plot_curves(
  runs: Mapping[str, Sequence[Run]],
  *,
  x: str | Sequence[str] = 'epoch',
  y: str | Sequence[str] = 'accuracy',
  labels: Mapping[str, str] | None = None,
  title: str | None = None,
  band: str = 'std',
  logx: bool = False,
  logy: bool | Sequence[str] = False,
  hlines: Mapping[str, float] | None = None,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """Draws one curve per label (mean over its runs) with a band over seeds.

  Args:
    runs: label -> list of runs (one per seed); each run maps column names
      to 1-D arrays and must hold every ``x`` and ``y`` column.
    x: the column on the horizontal axis, or several: one panel column each
      (e.g. ``('epoch', 'step')``: against epochs and against updates).
    y: the column on the vertical axis, or several: one panel row each (e.g.
      ``('lr', 'batch_size', 'noise_g')``).
    labels: axis label per column name (default: the column name).
    title: figure title.
    band: ``'std'`` (mean +- one standard deviation), ``'range'`` (min to
      max over seeds) or ``'none'``.
    logx: logarithmic horizontal axes.
    logy: logarithmic vertical axes: True for all, or the ``y`` columns to
      draw on a log scale.
    hlines: label -> height of a gray reference line drawn across every
      panel (e.g. a baseline model's loss; for a single ``y``).
    path: where to save the PNG (not saved when None).

  Returns:
    The figure.

  Raises:
    ValueError: for an unknown ``band`` or a run lacking a column.

  Examples:
    >>> run = lambda a: {'epoch': [0, 1, 2], 'accuracy': [0.1, a, 0.9]}
    >>> fig = plot_curves({'decay': [run(0.5), run(0.7)], 'ramp': [run(0.6)]})
    >>> print(len(fig.axes), len(fig.axes[0].lines))
    1 2
    >>> fig = plot_curves({'decay': [run(0.5)]}, hlines={'chance': 0.1})
    >>> line = fig.axes[0].lines[-1]
    >>> print(line.get_label(), line.get_ydata())
    chance [0.1, 0.1]
  """
  if band not in ('std', 'range', 'none'):
    raise ValueError(f"{band=} must be 'std', 'range' or 'none'")
  xs = (x,) if isinstance(x, str) else tuple(x)
  ys = (y,) if isinstance(y, str) else tuple(y)
  labels = dict(labels or {})
  log_ys = set(ys) if logy is True else set(logy or ())
  fig = matplotlib.figure.Figure(figsize=(5.5 * len(xs), 3.6 * len(ys)))
  axes = fig.subplots(len(ys), len(xs), squeeze=False)
  colors = matplotlib.rcParams['axes.prop_cycle'].by_key()['color']
  for row, y_key in enumerate(ys):
    for col, x_key in enumerate(xs):
      ax = axes[row, col]
      for index, (label, label_runs) in enumerate(runs.items()):
        pairs = []
        for run in label_runs:
          for key in (x_key, y_key):
            if key not in run:
              raise ValueError(f'run of {label!r} lacks column {key!r}')
          pairs.append(
            (np.asarray(run[x_key], float), np.asarray(run[y_key], float))
          )
        pairs = [(px, py) for px, py in pairs if np.isfinite(py).any()]
        if not pairs:
          continue
        grid, mean, std = band_over_seeds(pairs)
        color = colors[index % len(colors)]
        name = label if len(pairs) == 1 else f'{label} ({len(pairs)} seeds)'
        ax.plot(
          grid,
          mean,
          color=color,
          label=name,
          drawstyle='steps-post' if y_key in _STAGE_COLUMNS else 'default',
        )
        if band != 'none' and len(pairs) > 1:
          if band == 'std':
            lo, hi = mean - std, mean + std
          else:
            stacked = np.stack(
              [
                np.interp(grid, px[np.isfinite(py)], py[np.isfinite(py)])
                for px, py in pairs
              ]
            )
            lo, hi = stacked.min(axis=0), stacked.max(axis=0)
          ax.fill_between(grid, lo, hi, color=color, alpha=0.2, linewidth=0)
      for i, (label, level) in enumerate((hlines or {}).items()):
        style = (':', '--', '-.')[i % 3]
        ax.axhline(level, color='gray', linestyle=style, label=label)
      ax.set_xlabel(labels.get(x_key, x_key))
      ax.set_ylabel(labels.get(y_key, y_key))
      if logx:
        ax.set_xscale('log')
      if y_key in log_ys:
        ax.set_yscale('log')
        if y_key in _STAGE_COLUMNS:
          _integer_log_ticks(ax.yaxis)
      ax.grid(True, alpha=0.3)
      if ax.lines and row == 0 and col == len(xs) - 1:
        _outside_legend(ax)
  return _finish_figure(fig, path, suptitle=title)


def _sample_std(values: np.ndarray) -> float:
  return float(values.std(ddof=1)) if values.size > 1 else 0.0


def plot_accuracy_vs_cost(
  points: Mapping[str, Sequence[tuple[float, float]]],
  *,
  xlabel: str = 'parameter updates',
  ylabel: str = 'test accuracy',
  title: str | None = None,
  logx: bool = True,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """One marker per label at its mean (cost, accuracy), error bars over seeds.

  Args:
    points: label -> list of ``(cost, accuracy)``, one per seed.
    xlabel: cost axis label (updates, seconds, examples).
    ylabel: accuracy axis label.
    title: figure title.
    logx: logarithmic cost axis.
    path: where to save the PNG (not saved when None).

  Returns:
    The figure.

  Examples:
    >>> fig = plot_accuracy_vs_cost({'a': [(100, 0.9), (100, 0.92)],
    ...                              'b': [(20, 0.91)]})
    >>> print(len(fig.axes[0].containers))
    2
  """
  fig = matplotlib.figure.Figure(figsize=(5.5, 4))
  ax = fig.subplots()
  for label, pairs in points.items():
    if not pairs:
      continue
    cost = np.asarray([p[0] for p in pairs], dtype=np.float64)
    acc = np.asarray([p[1] for p in pairs], dtype=np.float64)
    ax.errorbar(
      cost.mean(),
      acc.mean(),
      xerr=_sample_std(cost),
      yerr=_sample_std(acc),
      fmt='o',
      capsize=3,
      label=label,
    )
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  return _finish_axes(fig, ax, title, path, logx=logx)


def _draw_lines(ax, x, ys, markers, vlines) -> None:
  for label, values in ys.items():
    xv = x[label] if isinstance(x, Mapping) else x
    ax.plot(np.asarray(xv, float), np.asarray(values, float), label=label)
  for label, (mx, my) in (markers or {}).items():
    ax.plot([mx], [my], marker='o', linestyle='none', label=label)
  for label, at in (vlines or {}).items():
    ax.axvline(at, color='0.4', linestyle=':', label=label)


def _scale_x(ax, logx: bool | int, xticks) -> None:
  if logx:
    ax.set_xscale('log', base=10 if logx is True else logx)
  if xticks is not None:
    ax.set_xticks(list(xticks), [f'{t:g}' for t in xticks])


def plot_lines(
  x: ArrayLike | Mapping[str, ArrayLike],
  ys: Mapping[str, ArrayLike],
  *,
  xlabel: str = '',
  ylabel: str = '',
  title: str | None = None,
  logx: bool | int = False,
  logy: bool = False,
  markers: Mapping[str, tuple[float, float]] | None = None,
  vlines: Mapping[str, float] | None = None,
  xticks: Sequence[float] | None = None,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """Plain labelled lines (one run each), with optional labelled markers.

  Used for single curves: an LR range test (loss against LR), a 1-D
  interpolation between two minima, a measured noise scale.

  Args:
    x: shared horizontal values, or one array per label.
    ys: label -> vertical values.
    xlabel: horizontal axis label.
    ylabel: vertical axis label.
    title: axes title.
    logx: logarithmic horizontal axis (True: base 10; an int: that base,
      e.g. 2 for batch sizes).
    logy: logarithmic vertical axis.
    markers: label -> ``(x, y)`` point to mark (e.g. a suggested LR).
    vlines: label -> horizontal position of a dotted vertical line (e.g.
      a measured critical batch).
    xticks: ticks of the horizontal axis, labelled with their values.
    path: where to save the PNG (not saved when None).

  Returns:
    The figure.

  Examples:
    >>> fig = plot_lines([1, 2, 3], {'loss': [3., 2., 2.5]},
    ...                  markers={'min': (2., 2.)}, vlines={'B': 2.5})
    >>> print(len(fig.axes[0].lines))
    3
  """
  fig = matplotlib.figure.Figure(figsize=(5.5, 4))
  ax = fig.subplots()
  _draw_lines(ax, x, ys, markers, vlines)
  _scale_x(ax, logx, xticks)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  return _finish_axes(fig, ax, title, path, logy=logy)


def plot_panels(
  x: ArrayLike,
  panels: Mapping[str, Mapping[str, ArrayLike]],
  *,
  xlabel: str = '',
  ylabel: str = '',
  logx: bool | int = False,
  logy: bool = False,
  xticks: Sequence[float] | None = None,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """Side-by-side panels of labelled lines over the same ``x``, one legend.

  Args:
    x: the horizontal values shared by every line.
    panels: panel title -> (label -> vertical values); the labels are
      expected to be the same in every panel.
    xlabel: horizontal axis label.
    ylabel: vertical axis label.
    logx: logarithmic horizontal axis (True: base 10; an int: that base).
    logy: logarithmic vertical axis.
    xticks: ticks of the horizontal axis, labelled with their values.
    path: where to save the PNG (not saved when None).

  Returns:
    The figure.

  Examples:
    >>> fig = plot_panels([1, 8], {'GPU': {'a': [2., 1.]},
    ...                            'TPU': {'a': [2., .5]}}, logx=2)
    >>> print(len(fig.axes))
    2
  """
  fig = matplotlib.figure.Figure(figsize=(5 * len(panels), 4))
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (title, ys) in zip(axes, panels.items(), strict=True):
    _draw_lines(ax, x, {k: v for k, v in ys.items()}, None, None)
    _scale_x(ax, logx, xticks)
    if logy:
      ax.set_yscale('log')
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
  _outside_legend(axes[-1])
  return _finish_figure(fig, path)


def plot_seeds(
  groups: Mapping[str, Sequence[float]],
  *,
  ylabel: str = '',
  title: str | None = None,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """Methods compared over seeds: a bar at each method's mean and a point
  per seed on it, so the spread is seen beside the difference.

  Args:
    groups: method -> its value for each seed (NaN values are drawn as
      nothing and left out of the mean).
    ylabel: vertical axis label.
    title: axes title.
    path: where to save the PNG (not saved when None).

  Returns:
    The figure.

  Examples:
    >>> fig = plot_seeds({'recipe': [2.07, 2.08], 'tuned': [2.15, 2.17]})
    >>> [round(float(p.get_height()), 3) for p in fig.axes[0].patches]
    [2.075, 2.16]
  """
  fig = matplotlib.figure.Figure(figsize=(6, 4))
  ax = fig.subplots()
  colors = matplotlib.rcParams['axes.prop_cycle'].by_key()['color']
  finite = []
  for i, values in enumerate(groups.values()):
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    finite.extend(v)
    color = colors[i % len(colors)]
    ax.bar(i, v.mean() if v.size else np.nan, 0.8, color=color, alpha=0.35)
    ax.plot(np.full(v.size, i), v, 'o', color=color)
  ax.set_xticks(range(len(groups)), list(groups))
  if finite:  # bars from a floor just under the lowest value, not from 0
    low, high = min(finite), max(finite)
    pad = 0.1 * (high - low or abs(high) or 1.0)
    ax.set_ylim(low - pad, high + pad)
  ax.set_ylabel(ylabel)
  ax.grid(True, axis='y', alpha=0.3)
  if title:
    ax.set_title(title)
  return _finish_figure(fig, path)  # the ticks name the methods: no legend


def plot_points(
  x: ArrayLike,
  y: ArrayLike,
  values: ArrayLike,
  *,
  xlabel: str = '',
  ylabel: str = '',
  value_label: str = '',
  higher_is_better: bool = True,
  title: str | None = None,
  logx: bool | int = False,
  logy: bool | int = False,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """Points at ``(x, y)`` coloured by a value, with a colour bar.

  Used for a search over two hyperparameters (e.g. LR and batch of random
  trials, coloured by their accuracy): the best points are the brightest
  (yellow in viridis) whichever way the value improves.

  Args:
    x: horizontal positions.
    y: vertical positions.
    values: one value per point, mapped to its colour.
    xlabel: horizontal axis label.
    ylabel: vertical axis label.
    value_label: the colour bar's label.
    higher_is_better: the largest value is brightest (False: the smallest,
      e.g. a loss).
    title: axes title.
    logx: logarithmic horizontal axis (True: base 10; an int: that base).
    logy: logarithmic vertical axis (True: base 10; an int: that base, e.g.
      2 for batch sizes, labelled as plain integers).
    path: where to save the PNG (not saved when None).

  Returns:
    The figure.

  Examples:
    >>> fig = plot_points([1e-2, 1e-1], [32, 128], [0.9, 0.8], logx=True,
    ...                   logy=2, value_label='accuracy')
    >>> print(len(fig.axes), fig.axes[1].get_ylabel())
    2 accuracy
  """
  import matplotlib.ticker as mticker

  fig = matplotlib.figure.Figure(figsize=(6, 4))
  ax = fig.subplots()
  points = ax.scatter(
    np.asarray(x, float),
    np.asarray(y, float),
    c=np.asarray(values, float),
    cmap='viridis' if higher_is_better else 'viridis_r',
  )
  fig.colorbar(points, ax=ax, label=value_label)
  _scale_x(ax, logx, None)
  # Minor-tick labels of a log axis over a decade overlap.
  ax.xaxis.set_minor_formatter(mticker.NullFormatter())
  if logy is True:
    ax.set_yscale('log')
  elif logy:
    ax.set_yscale('log', base=logy)
    _integer_log_ticks(ax.yaxis)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(True, alpha=0.3)
  if title:
    ax.set_title(title)
  return _finish_figure(fig, path)
