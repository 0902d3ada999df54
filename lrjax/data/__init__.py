"""Input pipelines: datasets, resumable sampling, process slices, prefetch.

The pieces and how the trainer strings them together::

  train = load('digits', split='train', data_dir=...)  # or synthetic(...)
  sampler = Sampler(train.num_examples, seed).restore(saved_state)
  items = batches(train, sampler, batch_sizes, augment_seed=seed,
                  process_index=jax.process_index(),
                  process_count=jax.process_count())
  with Prefetcher(items, buffer_size=2, place=...) as prefetch:
    for item in prefetch:   # item.batch, item.state (after it), batch_size
      ...                   # checkpoint item.state with the model
  prefetch.wait_seconds     # time the loop blocked on data

Augmentation key: the crop and flip of an example depend only on
``(augment_seed, epoch, index)`` (`augment_key`), where ``epoch`` is the
epoch in which the sampler drew it (`Sampler.next_with_epochs`). Each epoch
sees new crops; a resumed run, another batch schedule or another process
count sees exactly the same ones.

Data dir: ``data_dir=None`` means TFDS's default (``$TFDS_DATA_DIR`` or
``~/tensorflow_datasets``); the bundled 'digits' is prepared there on first
use.

Text for language models: `load_text` returns a `TextDataset` of
fixed-length byte-token windows ``{'tokens': int32 [seq_len + 1]}`` with the
same ``num_examples`` / ``take`` interface, so the same `Sampler` and
`batches` draw batches of sequences. The bundled ``python_text/docs`` and
``python_text/stdlib`` are read from the running interpreter's own files
(`prepare_python_text`); a user's prepared TFDS text dataset
(``tiny_shakespeare``, ``lm1b``) goes through the same path.
"""

from lrjax.data._augment import augment_key as augment_key
from lrjax.data._dataset import Dataset as Dataset
from lrjax.data._dataset import default_augmentation as default_augmentation
from lrjax.data._distributed import process_slice as process_slice
from lrjax.data._distributed import to_global_array as to_global_array
from lrjax.data._distributed import to_pmap_layout as to_pmap_layout
from lrjax.data._fingerprint import fingerprint as fingerprint
from lrjax.data._pipeline import Item as Item
from lrjax.data._pipeline import batches as batches
from lrjax.data._prefetch import Prefetcher as Prefetcher
from lrjax.data._sampler import Sampler as Sampler
from lrjax.data._sampler import SamplerState as SamplerState
from lrjax.data._sampler import check_batch_size as check_batch_size
from lrjax.data._source import ArraySource as ArraySource
from lrjax.data._source import ItemSource as ItemSource
from lrjax.data._source import Source as Source
from lrjax.data._source import as_source as as_source
from lrjax.data._synthetic import synthetic as synthetic
from lrjax.data._text import TextDataset as TextDataset
from lrjax.data._text import load_text as load_text
from lrjax.data._text import prepare_python_text as prepare_python_text
from lrjax.data._tfds import load as load
from lrjax.data._tfds import prepare_digits as prepare_digits

__all__ = [
  'ArraySource',
  'Dataset',
  'Item',
  'ItemSource',
  'Prefetcher',
  'Sampler',
  'SamplerState',
  'Source',
  'TextDataset',
  'as_source',
  'augment_key',
  'batches',
  'check_batch_size',
  'default_augmentation',
  'fingerprint',
  'load',
  'load_text',
  'prepare_digits',
  'prepare_python_text',
  'process_slice',
  'synthetic',
  'to_global_array',
  'to_pmap_layout',
]
