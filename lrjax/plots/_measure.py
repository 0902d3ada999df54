"""Figures for measurements: LR range test, noise scale, 1-D interpolation.

Each function draws on a new figure, saves it as PNG when given ``path`` and
returns the figure. Inputs are the result types of :mod:`lrjax.finder` and
:mod:`lrjax.sharpness` (or plain arrays read from ``metrics.jsonl``).
"""

from __future__ import annotations

import matplotlib
import matplotlib.figure
import numpy as np
from jax.typing import ArrayLike

from lrjax.plots._curves import _finish_axes, _finish_figure

_SUGGESTION_STYLE = {
  'steepest': ('tab:green', '--'),
  'minimum_over_10': ('tab:orange', ':'),
  'valley': ('tab:red', '-.'),
}


def plot_lr_finder(
  result, *, title: str | None = None, path: str | None = None
) -> matplotlib.figure.Figure:
  """Loss against learning rate (log axis) with the suggestions marked.

  Draws the raw losses (faint), the smoothed curve, and one vertical line per
  suggestion of :func:`lrjax.finder.suggest`. The vertical range is clipped
  to the interesting part (up to 4x the smoothed minimum above it).

  Args:
    result: a :class:`lrjax.finder.RangeTestResult`.
    title: axes title.
    path: where to save the PNG (not saved when None).

  Returns:
    The figure.

  Examples:
    >>> import numpy as np
    >>> from lrjax.finder import RangeTestResult
    >>> r = RangeTestResult(np.logspace(-3, 0, 4), np.array([2., 1., .5, 3.]),
    ...     np.array([2., 1.5, 1., 2.]), {'steepest': 0.01, 'valley': 0.1},
    ...     True)
    >>> print(len(plot_lr_finder(r).axes[0].lines))
    4
  """
  fig = matplotlib.figure.Figure(figsize=(5.5, 4))
  ax = fig.subplots()
  lrs = np.asarray(result.lrs, float)
  ax.plot(lrs, np.asarray(result.losses, float), alpha=0.3, label='loss')
  smoothed = np.asarray(result.smoothed, float)
  ax.plot(lrs, smoothed, label='smoothed')
  for name, lr in result.suggestions.items():
    if np.isfinite(lr):
      color, style = _SUGGESTION_STYLE.get(name, ('tab:gray', '--'))
      ax.axvline(lr, color=color, linestyle=style, label=f'{name}: {lr:.2g}')
  ax.set_xscale('log')
  ax.set_xlabel('learning rate')
  ax.set_ylabel('loss')
  finite = smoothed[np.isfinite(smoothed)]
  if finite.size:
    lo, first = finite.min(), finite[0]
    top = max(first, lo + 4 * (first - lo)) if first > lo else lo * 4
    ax.set_ylim(bottom=None, top=float(top) * 1.05)
  return _finish_axes(fig, ax, title, path)


def plot_noise_scale(
  epochs: ArrayLike,
  b_simple: ArrayLike,
  *,
  batch_size: ArrayLike | None = None,
  exact: tuple[ArrayLike, ArrayLike] | None = None,
  title: str | None = None,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """The measured noise scale B_simple against epochs (log y).

  Args:
    epochs: epoch of each logged value.
    b_simple: the tracker's estimates (NaN entries are skipped).
    batch_size: the batch size in force at each epoch, drawn as a step line
      (growing it toward B_simple is the adaptive policy's aim).
    exact: optional ``(epochs, values)`` of the exact B_simple from
      per-example gradients, drawn as markers.
    title: axes title.
    path: where to save the PNG.

  Returns:
    The figure.

  Examples:
    >>> fig = plot_noise_scale([0, 1, 2], [50., 80., 120.],
    ...                        batch_size=[32, 64, 64], exact=([1], [85.]))
    >>> print(len(fig.axes[0].lines))
    3
  """
  fig = matplotlib.figure.Figure(figsize=(5.5, 4))
  ax = fig.subplots()
  x = np.asarray(epochs, float)
  y = np.asarray(b_simple, float)
  keep = np.isfinite(y) & (y > 0)
  ax.plot(x[keep], y[keep], label='B_simple (estimate)')
  if batch_size is not None:
    ax.step(x, np.asarray(batch_size, float), where='post', label='batch size')
  if exact is not None:
    ax.plot(
      np.asarray(exact[0], float),
      np.asarray(exact[1], float),
      marker='o',
      linestyle='none',
      label='B_simple (exact)',
    )
  ax.set_yscale('log')
  ax.set_xlabel('epoch')
  ax.set_ylabel('examples')
  return _finish_axes(fig, ax, title, path)


def plot_interpolation(
  result,
  *,
  metrics: tuple[str, ...] = ('loss', 'accuracy'),
  title: str | None = None,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """Metrics along the path between a small- and a large-batch solution.

  One panel per metric, one line per dataset (e.g. train and test), as in
  Keskar et al.'s 1-D parametric plots; alpha = 0 is the small-batch
  solution and alpha = 1 the large-batch one (dotted verticals).

  Args:
    result: a :class:`lrjax.sharpness.Interpolation`.
    metrics: which metrics to draw (those present are drawn).
    title: figure title.
    path: where to save the PNG.

  Returns:
    The figure.

  Examples:
    >>> import numpy as np
    >>> from lrjax.sharpness import Interpolation
    >>> r = Interpolation(np.array([0., .5, 1.]),
    ...     {'train': {'loss': np.array([1., 2., 1.])}}, 'linear')
    >>> print(len(plot_interpolation(r).axes))
    1
  """
  names = [
    m for m in metrics if any(m in v for v in result.metrics.values())
  ] or sorted({k for v in result.metrics.values() for k in v})
  fig = matplotlib.figure.Figure(figsize=(4.5 * len(names), 3.8))
  axes = fig.subplots(1, len(names), squeeze=False)
  alphas = np.asarray(result.alphas, float)
  for ax, metric in zip(axes[0], names, strict=True):
    for dataset, values in result.metrics.items():
      if metric in values:
        ax.plot(alphas, np.asarray(values[metric], float), label=dataset)
    for a in (0.0, 1.0):
      ax.axvline(a, color='gray', linestyle=':', linewidth=0.8)
    ax.set_xlabel(f'alpha ({result.path} path; 0 small batch, 1 large)')
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize='small')
  return _finish_figure(fig, path, suptitle=title)
