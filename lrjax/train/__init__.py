"""Data-parallel trainer: one per-device step under pmap or shard_map."""

from lrjax.train._adaptive import AdaptiveConfig as AdaptiveConfig
from lrjax.train._adaptive import AdaptiveResult as AdaptiveResult
from lrjax.train._adaptive import train_adaptive as train_adaptive
from lrjax.train._checkpoint import CheckpointError as CheckpointError
from lrjax.train._checkpoint import load_checkpoint as load_checkpoint
from lrjax.train._checkpoint import load_meta as load_meta
from lrjax.train._config import NoiseConfig as NoiseConfig
from lrjax.train._config import TrainConfig as TrainConfig
from lrjax.train._loop import NonFiniteError as NonFiniteError
from lrjax.train._loop import TrainResult as TrainResult
from lrjax.train._loop import train_and_evaluate as train_and_evaluate
from lrjax.train._step import TrainState as TrainState
from lrjax.train._step import create_train_state as create_train_state
from lrjax.train._step import make_optimizer as make_optimizer
from lrjax.train._step import make_train_body as make_train_body
from lrjax.train._workdir import ConfigMismatchError as ConfigMismatchError
from lrjax.train._workdir import WorkdirLockedError as WorkdirLockedError
from lrjax.train._workdir import config_changes as config_changes
from lrjax.train._workdir import lock_workdir as lock_workdir

__all__ = [
  'AdaptiveConfig',
  'AdaptiveResult',
  'CheckpointError',
  'ConfigMismatchError',
  'NoiseConfig',
  'NonFiniteError',
  'TrainConfig',
  'TrainResult',
  'TrainState',
  'WorkdirLockedError',
  'config_changes',
  'create_train_state',
  'load_checkpoint',
  'load_meta',
  'lock_workdir',
  'make_optimizer',
  'make_train_body',
  'train_adaptive',
  'train_and_evaluate',
]
