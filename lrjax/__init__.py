"""lrjax: co-schedule the learning rate and the batch size of JAX training.

Every policy is a function of training progress in examples seen (epochs),
never of the raw update count; a `BatchSchedule` maps updates to examples
seen, and `per_update` turns any epoch-domain policy into an ordinary
`optax.Schedule` for it. See README.md for a tour.

The light modules (schedules, batch, rules, noise, evidence) load with the
package; the others (data, evaluation, models, tasks, train, metrics, sharpness,
finder, plots, recipe, studies) load on first attribute access, so `import lrjax`
does not pull in TensorFlow Datasets, orbax or matplotlib.
"""

import importlib

from lrjax import batch as batch
from lrjax import evidence as evidence
from lrjax import noise as noise
from lrjax import rules as rules
from lrjax import schedules as schedules
from lrjax.batch import BatchSchedule as BatchSchedule
from lrjax.batch import Stage as Stage
from lrjax.batch import from_lr_decay as from_lr_decay
from lrjax.batch import per_update as per_update
from lrjax.batch import plan as plan
from lrjax.rules import noise_scale as noise_scale
from lrjax.schedules import Policy as Policy
from lrjax.schedules import parse as parse_policy

__version__ = '0.1.0'

_LAZY = (
  'data',
  'evaluation',
  'finder',
  'metrics',
  'models',
  'plots',
  'recipe',
  'sharpness',
  'studies',
  'tasks',
  'train',
)


def __getattr__(name: str):
  if name in _LAZY:
    return importlib.import_module(f'lrjax.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(list(globals()) + list(_LAZY))


__all__ = [
  'BatchSchedule',
  'Policy',
  'Stage',
  'batch',
  'data',
  'evaluation',
  'evidence',
  'finder',
  'from_lr_decay',
  'metrics',
  'models',
  'noise',
  'noise_scale',
  'parse_policy',
  'per_update',
  'plan',
  'plots',
  'recipe',
  'rules',
  'schedules',
  'sharpness',
  'tasks',
  'train',
]
