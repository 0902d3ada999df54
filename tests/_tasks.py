"""Tasks the trainer tests share: small image classifiers on synthetic data.

Built once per setting (a task holds its data), so tests that train the
same setting do not draw the images again.
"""

import functools

from lrjax import tasks
from lrjax.train import Hook


@functools.cache
def synthetic(
  examples: int = 256,
  shape: tuple[int, int, int] = (4, 4, 1),
  classes: int = 10,
  model: str = 'mlp',
  hidden: tuple[int, ...] | None = (16,),
  seed: int = 0,
):
  """``tasks.image_classification`` of ``model`` on synthetic images."""
  return tasks.image_classification(
    'synthetic',
    model,
    model_kwargs=None if hidden is None else {'hidden': hidden},
    synthetic_examples=examples,
    synthetic_shape=shape,
    synthetic_classes=classes,
    seed=seed,
  )


def tiny_config(**changes):
  """The trainer tests' config: one device, SGD with momentum at LR 0.1, no
  evaluation during training; ``changes`` override any field."""
  from lrjax.train import TrainConfig

  base = dict(num_devices=1, eval_every=0, lr=0.1, momentum=0.9)
  return TrainConfig(**{**base, **changes})


class AtUpdate(Hook):
  """A base for hooks that act once, at update ``at`` (waiting for it)."""

  sync = True

  def __init__(self, at):
    self.at = at

  def due(self, update):
    return update == self.at
