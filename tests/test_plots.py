"""lrjax.plots.plot_points: positions, colours and scales of a 2-D search."""

import matplotlib
import numpy as np
import pytest

from lrjax import plots

# viridis at 0 and 1 (matplotlib's table: dark purple, yellow).
_DARK = (0.267004, 0.004874, 0.329415)
_BRIGHT = (0.993248, 0.906157, 0.143936)


@pytest.mark.parametrize('higher_is_better', [True, False])
def test_plot_points_colours_the_best_point_brightest(
  tmp_path, higher_is_better
):
  path = tmp_path / 'points.png'
  fig = plots.plot_points(
    [0.01, 0.1, 1.0],
    [16, 64, 256],
    [0.5, 0.9, 0.7],
    xlabel='learning rate',
    ylabel='batch size',
    value_label='accuracy',
    higher_is_better=higher_is_better,
    logx=True,
    logy=2,
    path=str(path),
  )
  ax, bar = fig.axes
  points = ax.collections[0]
  np.testing.assert_array_equal(
    points.get_offsets(), [[0.01, 16], [0.1, 64], [1.0, 256]]
  )
  colours = points.get_facecolors()[:, :3]
  best, worst = (1, 0) if higher_is_better else (0, 1)
  np.testing.assert_allclose(colours[best], _BRIGHT, atol=1e-6)
  np.testing.assert_allclose(colours[worst], _DARK, atol=1e-6)
  assert ax.get_xscale() == 'log' and ax.get_yscale() == 'log'
  assert ax.yaxis.get_transform().base == 2
  assert bar.get_ylabel() == 'accuracy'
  assert path.read_bytes().startswith(b'\x89PNG')
  assert isinstance(fig, matplotlib.figure.Figure)


def test_plot_power_laws_draws_exact_points_fit_band_and_extrapolation(
  tmp_path,
):
  from lrjax import recipe

  # Points on y = 2 sqrt(x): every resample fits a = 2, b = 0.5 exactly, so
  # the band closes on the line, and the extrapolation to 64 is 2 * 8 = 16.
  x, y = [1.0, 4.0, 16.0], [2.0, 4.0, 8.0]
  fit = recipe.bootstrap_power_law(x, y, at=[64.0], num_resamples=20)
  path = tmp_path / 'fits.png'
  fig = plots.plot_power_laws(
    {'optimal LR': (x, y, fit), 'optimal batch': (x, y, None)},
    xlabel='examples',
    path=str(path),
  )
  ax, empty = fig.axes
  assert (ax.get_xscale(), ax.get_yscale(), ax.get_xlabel()) == (
    'log',
    'log',
    'examples',
  )
  line = ax.lines[0]
  grid = line.get_xdata()
  assert (grid[0], grid[-1]) == pytest.approx((1.0, 64.0), rel=1e-12)
  np.testing.assert_allclose(line.get_ydata(), 2 * np.sqrt(grid), rtol=1e-9)
  band = ax.collections[1].get_paths()[0].vertices
  np.testing.assert_allclose(band[:, 1], 2 * np.sqrt(band[:, 0]), rtol=1e-9)
  marker = ax.lines[1]  # the extrapolation's marker
  assert (marker.get_xdata()[0], marker.get_ydata()[0]) == pytest.approx(
    (64.0, 16.0), rel=1e-9
  )
  assert [a.get_title() for a in fig.axes] == [
    'optimal LR',
    'optimal batch: no fit',
  ]
  np.testing.assert_array_equal(
    empty.collections[0].get_offsets(), [[1, 2], [4, 4], [16, 8]]
  )
  assert path.read_bytes().startswith(b'\x89PNG')


def test_plot_curves_draws_reference_lines_in_every_panel():
  run = {'epoch': [0, 1], 'step': [0, 10], 'loss': [5.0, 3.5]}
  fig = plots.plot_curves(
    {'cosine': [run]},
    x=('epoch', 'step'),
    y='loss',
    hlines={'bigram': 3.36, 'unigram': 4.68},
  )
  for ax in fig.axes[:2]:
    refs = {x.get_label(): x.get_ydata() for x in ax.lines[1:]}
    assert refs == {'bigram': [3.36, 3.36], 'unigram': [4.68, 4.68]}
