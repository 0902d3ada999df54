"""Data-parallel trainer: one per-device step under pmap or shard_map."""

from lrjax.train._config import NoiseConfig as NoiseConfig
from lrjax.train._config import TrainConfig as TrainConfig

__all__ = [
  'NoiseConfig',
  'TrainConfig',
]
