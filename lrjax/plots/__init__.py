"""Matplotlib figures (PNG) for schedules, batch ramps, curves and measurements.

Every function draws on a new `matplotlib.figure.Figure`, saves it when given
a path, and returns it. The figures are made without pyplot, so importing or
using this package never selects a matplotlib backend (yours stays as it
is, interactive or not) and nothing is kept in pyplot's figure list; saving
a PNG works on machines without a display whatever the backend.
"""

from lrjax.plots._batch import plot_batch_schedule as plot_batch_schedule
from lrjax.plots._curves import band_over_seeds as band_over_seeds
from lrjax.plots._curves import plot_accuracy_vs_cost as plot_accuracy_vs_cost
from lrjax.plots._curves import plot_curves as plot_curves
from lrjax.plots._curves import plot_lines as plot_lines
from lrjax.plots._curves import plot_panels as plot_panels
from lrjax.plots._curves import plot_points as plot_points
from lrjax.plots._curves import plot_seeds as plot_seeds
from lrjax.plots._measure import centred_median as centred_median
from lrjax.plots._measure import lr_finder_ylim as lr_finder_ylim
from lrjax.plots._measure import plot_interpolation as plot_interpolation
from lrjax.plots._measure import plot_lr_finder as plot_lr_finder
from lrjax.plots._measure import plot_noise_scale as plot_noise_scale
from lrjax.plots._measure import plot_noise_scales as plot_noise_scales
from lrjax.plots._measure import plot_power_laws as plot_power_laws
from lrjax.plots._schedules import plot_schedules as plot_schedules

__all__ = [
  'band_over_seeds',
  'centred_median',
  'lr_finder_ylim',
  'plot_accuracy_vs_cost',
  'plot_batch_schedule',
  'plot_curves',
  'plot_interpolation',
  'plot_lines',
  'plot_lr_finder',
  'plot_noise_scale',
  'plot_noise_scales',
  'plot_panels',
  'plot_points',
  'plot_power_laws',
  'plot_schedules',
  'plot_seeds',
]
