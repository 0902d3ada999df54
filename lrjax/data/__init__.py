"""Input pipelines: datasets, resumable sampling, process slices, prefetch."""

from lrjax.data._augment import augment_key as augment_key
from lrjax.data._dataset import Dataset as Dataset
from lrjax.data._dataset import default_augmentation as default_augmentation
from lrjax.data._distributed import process_slice as process_slice
from lrjax.data._distributed import to_global_array as to_global_array
from lrjax.data._distributed import to_pmap_layout as to_pmap_layout
from lrjax.data._pipeline import Item as Item
from lrjax.data._pipeline import batches as batches
from lrjax.data._prefetch import Prefetcher as Prefetcher
from lrjax.data._sampler import Sampler as Sampler
from lrjax.data._sampler import SamplerState as SamplerState
from lrjax.data._sampler import check_batch_size as check_batch_size
from lrjax.data._synthetic import synthetic as synthetic
from lrjax.data._tfds import load as load
from lrjax.data._tfds import prepare_digits as prepare_digits

__all__ = [
  'Dataset',
  'Item',
  'Prefetcher',
  'Sampler',
  'SamplerState',
  'augment_key',
  'batches',
  'check_batch_size',
  'default_augmentation',
  'load',
  'prepare_digits',
  'process_slice',
  'synthetic',
  'to_global_array',
  'to_pmap_layout',
]
