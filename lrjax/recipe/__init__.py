"""Let lrjax choose: an LR policy and a batch schedule from short probes.

Given a task, a budget and the hardware, :func:`recommend` runs the LR
range test and a short noise-scale run, then :func:`decide` turns the
measurements into a :class:`Recipe`: the LR policy and the batch schedule
in their text forms (``lrjax.schedules.parse``, ``lrjax.batch.parse``,
the trainer's ``--lr`` and ``--batch``), with the reason for each choice
and the probes' cost as a fraction of the budget. :func:`fit_power_law`
and :func:`bootstrap_power_law` fit the optimal LR and batch as power laws
of the budget from grids of small runs, as DeepSeek LLM did.
"""

from lrjax.recipe._decide import MIN_STAGE_UPDATES as MIN_STAGE_UPDATES
from lrjax.recipe._decide import Budget as Budget
from lrjax.recipe._decide import Recipe as Recipe
from lrjax.recipe._decide import batch_range as batch_range
from lrjax.recipe._decide import decide as decide
from lrjax.recipe._decide import ramp_stages as ramp_stages
from lrjax.recipe._decide import scaling_rule as scaling_rule
from lrjax.recipe._decide import step_time_model as step_time_model
from lrjax.recipe._fit import PowerLaw as PowerLaw
from lrjax.recipe._fit import PowerLawFit as PowerLawFit
from lrjax.recipe._fit import bootstrap_power_law as bootstrap_power_law
from lrjax.recipe._fit import fit_power_law as fit_power_law
from lrjax.recipe._fit import near_optimal as near_optimal
from lrjax.recipe._probe import NoiseProbe as NoiseProbe
from lrjax.recipe._probe import batches as batches
from lrjax.recipe._probe import probe_lr as probe_lr
from lrjax.recipe._probe import probe_noise as probe_noise
from lrjax.recipe._probe import probe_step_seconds as probe_step_seconds
from lrjax.recipe._probe import recommend as recommend

__all__ = [
  'MIN_STAGE_UPDATES',
  'Budget',
  'NoiseProbe',
  'PowerLaw',
  'PowerLawFit',
  'Recipe',
  'batch_range',
  'batches',
  'bootstrap_power_law',
  'decide',
  'fit_power_law',
  'near_optimal',
  'probe_lr',
  'probe_noise',
  'probe_step_seconds',
  'ramp_stages',
  'recommend',
  'scaling_rule',
  'step_time_model',
]
