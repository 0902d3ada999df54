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
