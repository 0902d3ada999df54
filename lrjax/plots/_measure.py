"""Figures for measurements: LR range test, noise scale, 1-D interpolation.

Each function draws on a new figure, saves it as PNG when given ``path`` and
returns the figure. Inputs are the result types of :mod:`lrjax.finder` and
:mod:`lrjax.sharpness` (or plain arrays read from ``metrics.jsonl``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib
import matplotlib.figure
import matplotlib.ticker
import numpy as np
from jax.typing import ArrayLike

from lrjax import finder
from lrjax.plots._curves import _finish_axes, _finish_figure

_SUGGESTION_STYLE = {
  'steepest': ('tab:green', '--'),
  'minimum_over_10': ('tab:orange', ':'),
  'valley': ('tab:red', '-.'),
}


def _lr_finder_curves(results) -> dict[str | None, Any]:
  if isinstance(results, Mapping):
    return dict(results)
  return {None: results}


def lr_finder_ylim(results) -> tuple[float, float] | None:
  """The loss-axis limits of :func:`plot_lr_finder`: the data, not the spike.

  With :math:`\\ell` the raw and :math:`\\bar\\ell` the smoothed losses of
  every curve, and :math:`i^*` each curve's smoothed minimum:

  .. math::
    a = \\min(\\ell \\cup \\bar\\ell), \\qquad
    b = \\max_{\\text{curves}} \\max_{i \\le i^*} \\bar\\ell_i, \\qquad
    \\text{limits} = (a - 0.05 (b - a),\\; b + 0.05 (b - a))

  so the axis spans from the lowest loss recorded to the highest smoothed
  loss before the minimum (the starting loss, on a curve that first
  falls), with a 5% margin; the divergence spike after the minimum, and
  raw batches far above the start, are cut off. Non-finite values are
  ignored.

  Args:
    results: a :class:`lrjax.finder.RangeTestResult`, or a mapping label ->
      result (e.g. one per seed).

  Returns:
    ``(bottom, top)``, or None when no loss is finite.

  Examples:
    >>> import numpy as np
    >>> from lrjax.finder import RangeTestResult
    >>> r = RangeTestResult(np.logspace(-3, 0, 5),
    ...     np.array([2.0, 1.9, 0.9, 1.5, 50.0]),
    ...     np.array([2.0, 1.95, 1.0, 1.2, 8.0]), {}, True)
    >>> print([round(v, 3) for v in lr_finder_ylim(r)])
    [0.845, 2.055]
  """
  lows, highs = [], []
  for result in _lr_finder_curves(results).values():
    raw = np.asarray(result.losses, float)
    smoothed = np.asarray(result.smoothed, float)
    values = np.concatenate([raw, smoothed])
    values = values[np.isfinite(values)]
    if not values.size:
      continue
    lows.append(values.min())
    ok = np.isfinite(smoothed)
    if ok.any():
      best = int(np.argmin(np.where(ok, smoothed, np.inf)))
      highs.append(smoothed[: best + 1][ok[: best + 1]].max())
    else:
      highs.append(values.max())
  if not lows:
    return None
  lo, hi = float(min(lows)), float(max(highs))
  pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
  return lo - pad, hi + pad


def _lag_note(results) -> str:
  """'smoothed: EMA beta=..., lags L updates (xF in LR) at its minimum'."""
  lags, factors, betas = [], [], set()
  for r in _lr_finder_curves(results).values():
    smoothed = np.asarray(r.smoothed, float)
    lrs = np.asarray(r.lrs, float)
    finite = np.where(np.isfinite(smoothed), smoothed, np.inf)
    if not np.isfinite(finite).any():
      continue
    best = int(np.argmin(finite))
    beta = float(getattr(r, 'beta', 0.98))
    lag = float(finder.ema_lag(beta, best))
    back = np.interp(best - lag, np.arange(lrs.size), np.log(lrs))
    lags.append(lag)
    factors.append(lrs[best] / np.exp(back))
    betas.add(beta)
  if not lags:
    return ''

  def span(v, fmt):
    lo, hi = fmt.format(min(v)), fmt.format(max(v))
    return lo if lo == hi else f'{lo}-{hi}'

  return (
    f'smoothed: EMA beta={span(betas, "{:g}")},\nlags '
    f'{span(lags, "{:.0f}")} updates (x{span(factors, "{:.2g}")} in LR)\n'
    'at its minimum'
  )


def plot_lr_finder(
  results,
  *,
  suggestions: Mapping[str, float] | None = None,
  title: str | None = None,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """Loss against learning rate (log axis) with the suggestions marked.

  Draws each range test's raw losses (faint) and smoothed curve, and one
  vertical line per suggestion. The loss axis is clipped to the data
  (:func:`lr_finder_ylim`), not to the divergence spike.

  The smoothed curve is the bias-corrected EMA of
  :func:`lrjax.finder.smooth` (fastai's), which trails the raw losses:
  the last legend entry states by how many updates, and by what factor in
  LR, at the curve's minimum (:func:`lrjax.finder.ema_lag`), so the
  reader can tell how far right of the raw losses' features the smoothed
  curve and the suggestions read off it sit.

  Args:
    results: a :class:`lrjax.finder.RangeTestResult`, or a mapping label ->
      result (e.g. one per seed), drawn in turn.
    suggestions: label -> LR of the vertical lines to draw, e.g. the one a
      report recommends (say, the geometric mean of several seeds'). None:
      a single result's own ``suggestions``; none for a mapping.
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
    >>> print(len(plot_lr_finder(r).axes[0].lines))  # 2 curves, 2 LRs, note
    5
    >>> fig = plot_lr_finder({'seed 0': r, 'seed 1': r},
    ...                      suggestions={'recommended': 0.02})
    >>> print(fig.axes[0].lines[-2].get_xdata()[0])
    0.02
  """
  curves = _lr_finder_curves(results)
  if suggestions is None:
    suggestions = {} if None not in curves else curves[None].suggestions
  fig = matplotlib.figure.Figure(figsize=(5.5, 4))
  ax = fig.subplots()
  for label, result in curves.items():
    lrs = np.asarray(result.lrs, float)
    (line,) = ax.plot(
      lrs,
      np.asarray(result.losses, float),
      alpha=0.3,
      label='loss' if label is None else None,
    )
    ax.plot(
      lrs,
      np.asarray(result.smoothed, float),
      color=line.get_color(),
      label='smoothed' if label is None else label,
    )
  for name, lr in suggestions.items():
    if np.isfinite(lr):
      color, style = _SUGGESTION_STYLE.get(name, ('black', '--'))
      ax.axvline(lr, color=color, linestyle=style, label=f'{name}: {lr:.3g}')
  note = _lag_note(results)
  if note:  # a legend entry without a line: laid out off the curves
    ax.plot([], [], linestyle='none', label=note)
  ax.set_xscale('log')
  ax.set_xlabel('learning rate')
  ax.set_ylabel('loss')
  limits = lr_finder_ylim(results)
  if limits is not None:
    ax.set_ylim(*limits)
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


def centred_median(values: ArrayLike, window: int) -> np.ndarray:
  """Median over a centred window (shrunk at the ends, NaN skipped): a
  smoother with no lag, robust to the single readings that scatter far.

  Examples:
    >>> centred_median([1.0, 9.0, 2.0, 3.0, 100.0, 4.0], 3).tolist()
    [5.0, 2.0, 3.0, 3.0, 4.0, 52.0]
  """
  values = np.asarray(values, np.float64)
  half = window // 2
  out = np.full(values.shape, np.nan)
  for i in range(values.size):
    part = values[max(i - half, 0) : i + half + 1]
    part = part[np.isfinite(part)]
    if part.size:
      out[i] = np.median(part)
  return out


def plot_noise_scales(
  runs: Mapping[str, Mapping[str, ArrayLike]],
  *,
  window: int = 9,
  title: str | None = None,
  path: str | None = None,
) -> matplotlib.figure.Figure:
  """Several runs' measured B_simple with the batch size each had in force.

  Each run gets one colour: its raw readings (faint), their
  `centred_median` over ``window`` readings (solid, no lag), and its batch
  size as a dashed step line, so that where a batch reached the noise
  scale (the adaptive rule's aim) can be read off. Runs without a finite
  reading are left out.

  Args:
    runs: name -> columns of its training records: ``'epoch'``,
      ``'noise_scale'`` and optionally ``'batch_size'``.
    window: readings in the smoothing window.
    title: axes title.
    path: where to save the PNG.

  Returns:
    The figure.

  Examples:
    >>> fig = plot_noise_scales({'a': {'epoch': [0, 1, 2],
    ...   'noise_scale': [50., 80., 120.], 'batch_size': [32, 64, 64]}})
    >>> print(len(fig.axes[0].lines))
    3
  """
  fig = matplotlib.figure.Figure(figsize=(8, 4.5))
  ax = fig.subplots()
  colors = matplotlib.rcParams['axes.prop_cycle'].by_key()['color']
  for index, (name, run) in enumerate(runs.items()):
    noise = np.asarray(run['noise_scale'], np.float64)
    if not np.isfinite(noise).any():
      continue
    color = colors[index % len(colors)]
    epoch = np.asarray(run['epoch'], np.float64)
    ax.plot(epoch, noise, color=color, alpha=0.25, linewidth=0.8)
    ax.plot(
      epoch,
      centred_median(noise, window),
      color=color,
      label=f'{name}: B_simple',
    )
    if 'batch_size' in run:
      ax.plot(
        epoch,
        np.asarray(run['batch_size'], np.float64),
        color=color,
        linestyle='--',
        drawstyle='steps-post',
        label=f'{name}: batch size',
      )
  ax.set_yscale('log')
  ax.yaxis.set_major_formatter(
    matplotlib.ticker.FuncFormatter(lambda v, _: f'{v:,.0f}')
  )
  ax.set_xlabel('epochs')
  ax.set_ylabel('examples')
  ax.grid(True, which='both', alpha=0.3)
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


def plot_power_laws(
  panels: Mapping[str, tuple[ArrayLike, ArrayLike, Any]],
  *,
  xlabel: str = 'budget',
  path: str | None = None,
) -> matplotlib.figure.Figure:
  r"""Power-law fits side by side, each with its bootstrap band.

  One log-log panel per fit of :func:`lrjax.recipe.bootstrap_power_law`:
  the points fitted, the fit

  .. math:: y = a x^b

  from the smallest point to the largest extrapolation budget, the band
  between the resamples' :math:`(1 \mp \text{level})/2` percentiles at each
  x, and the predictions at the extrapolation budgets with their
  intervals. A panel whose fit is None (e.g. points at a single budget)
  shows its points and says so in its title.

  Args:
    panels: title -> ``(x, y, fit)``: the points and their
      :class:`lrjax.recipe.PowerLawFit` (or None).
    xlabel: horizontal axis label (the budget's unit).
    path: where to save the PNG (not saved when None).

  Returns:
    The figure.

  Examples:
    >>> from lrjax import recipe
    >>> x, y = [1.0, 2.0, 4.0], [2.0, 2.8, 4.1]
    >>> fit = recipe.bootstrap_power_law(x, y, at=[16.0], num_resamples=10)
    >>> fig = plot_power_laws({'optimal LR': (x, y, fit),
    ...                        'optimal batch': (x, y, None)})
    >>> print([ax.get_title() for ax in fig.axes])
    ['optimal LR', 'optimal batch: no fit']
  """
  fig = matplotlib.figure.Figure(figsize=(5 * len(panels), 4))
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (title, (x, y, fit)) in zip(axes, panels.items(), strict=True):
    x = np.asarray(x, np.float64)
    ax.set(xscale='log', yscale='log', xlabel=xlabel, ylabel=title)
    ax.set_title(title if fit is not None else f'{title}: no fit')
    ax.scatter(x, np.asarray(y, np.float64), label='points')
    if fit is not None:
      grid = np.geomspace(min(x.min(), *fit.at), max(x.max(), *fit.at), 50)
      a, b = fit.fit
      ax.plot(grid, fit.fit(grid), label=f'{a:.3g} x^{b:.3f}')
      band = fit.resamples[:, :1] * grid[None, :] ** fit.resamples[:, 1:]
      q = [50 * (1 - fit.level), 50 * (1 + fit.level)]
      low, high = np.percentile(band, q, axis=0)
      ax.fill_between(grid, low, high, alpha=0.2, label=f'{fit.level:.0%} CI')
      if fit.at.size:
        ax.errorbar(
          fit.at,
          fit.prediction,
          yerr=np.abs(fit.prediction_ci.T - fit.prediction),
          fmt='x',
          label='extrapolation',
        )
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize='small')
  return _finish_figure(fig, path)
