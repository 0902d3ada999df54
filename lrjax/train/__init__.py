"""Data-parallel trainer: a task (model, loss, data) trained under pmap or
shard_map, with batch ramps, accumulation, noise scale and checkpoints;
:class:`Hook` s plug measurements and decisions into its loop.

What to train is a :class:`Task` (``lrjax.tasks`` builds the named ones);
how to train it a :class:`TrainConfig`, whose optimizer is a name or any
optax optimizer; ``train_and_evaluate(config, workdir, task)`` runs it.
The pieces the trainer is built from are public for hand-written loops:
:class:`StageCompiler` (one ahead-of-time compilation per micro-batch
shape; :func:`shard_map_args` for a ``jit(shard_map)`` step),
``lrjax.batch.updates`` (the stage iterator),
``lrjax.noise.data_parallel_grad`` (the data-parallel noise scale),
:func:`make_optimizer` and :func:`make_train_body`.
"""

from lrjax.train._adaptive import AdaptiveBatchHook as AdaptiveBatchHook
from lrjax.train._adaptive import AdaptiveConfig as AdaptiveConfig
from lrjax.train._adaptive import AdaptiveResult as AdaptiveResult
from lrjax.train._adaptive import train_adaptive as train_adaptive
from lrjax.train._checkpoint import CheckpointError as CheckpointError
from lrjax.train._checkpoint import CheckpointTimer as CheckpointTimer
from lrjax.train._checkpoint import load_checkpoint as load_checkpoint
from lrjax.train._checkpoint import load_meta as load_meta
from lrjax.train._compile import StageCompiler as StageCompiler
from lrjax.train._compile import shard_map_args as shard_map_args
from lrjax.train._config import NoiseConfig as NoiseConfig
from lrjax.train._config import TrainConfig as TrainConfig
from lrjax.train._config import (
  parse_compiler_options as parse_compiler_options,
)
from lrjax.train._hooks import Hook as Hook
from lrjax.train._hooks import HookResult as HookResult
from lrjax.train._hooks import InsideContext as InsideContext
from lrjax.train._hooks import MicroStepInfo as MicroStepInfo
from lrjax.train._hooks import NoiseTracker as NoiseTracker
from lrjax.train._hooks import NonFiniteError as NonFiniteError
from lrjax.train._hooks import PlateauMonitor as PlateauMonitor
from lrjax.train._hooks import RunInfo as RunInfo
from lrjax.train._hooks import StepInfo as StepInfo
from lrjax.train._loop import TrainResult as TrainResult
from lrjax.train._loop import (
  enable_compilation_cache as enable_compilation_cache,
)
from lrjax.train._loop import train_and_evaluate as train_and_evaluate
from lrjax.train._parallel import Runner as Runner
from lrjax.train._pipeline import evaluate as evaluate
from lrjax.train._step import TrainState as TrainState
from lrjax.train._step import create_train_state as create_train_state
from lrjax.train._step import make_optimizer as make_optimizer
from lrjax.train._step import make_train_body as make_train_body
from lrjax.train._stop import LossStop as LossStop
from lrjax.train._stop import StopRule as StopRule
from lrjax.train._task import Model as Model
from lrjax.train._task import Task as Task
from lrjax.train._task import as_model as as_model
from lrjax.train._task import from_functions as from_functions
from lrjax.train._task import from_linen as from_linen
from lrjax.train._task import from_nnx as from_nnx
from lrjax.train._workdir import ConfigMismatchError as ConfigMismatchError
from lrjax.train._workdir import WorkdirLockedError as WorkdirLockedError
from lrjax.train._workdir import config_changes as config_changes
from lrjax.train._workdir import describe_changes as describe_changes
from lrjax.train._workdir import lock_workdir as lock_workdir
from lrjax.train._workdir import run_record as run_record

__all__ = [
  'AdaptiveBatchHook',
  'AdaptiveConfig',
  'AdaptiveResult',
  'CheckpointError',
  'CheckpointTimer',
  'ConfigMismatchError',
  'Hook',
  'HookResult',
  'InsideContext',
  'LossStop',
  'MicroStepInfo',
  'Model',
  'NoiseConfig',
  'NoiseTracker',
  'NonFiniteError',
  'PlateauMonitor',
  'RunInfo',
  'Runner',
  'StageCompiler',
  'StepInfo',
  'StopRule',
  'Task',
  'TrainConfig',
  'TrainResult',
  'TrainState',
  'WorkdirLockedError',
  'as_model',
  'config_changes',
  'create_train_state',
  'describe_changes',
  'enable_compilation_cache',
  'evaluate',
  'from_functions',
  'from_linen',
  'from_nnx',
  'load_checkpoint',
  'load_meta',
  'lock_workdir',
  'make_optimizer',
  'make_train_body',
  'parse_compiler_options',
  'run_record',
  'shard_map_args',
  'train_adaptive',
  'train_and_evaluate',
]
