"""What a split of data is, as a short digest: part of a run's identity.

A workdir knows what it trained (``lrjax.train``): the task's fingerprint
holds, for the training and the evaluation data, the example count and a
digest of the content, computed here. What is hashed depends on what the
data is, so that the digest is cheap and changes whenever the examples do:

=====================  ====================================================
data                   digest of
=====================  ====================================================
has ``fingerprint()``  its return value (JSON): a user's own source says
                       what it is
lrjax ``Dataset``      what its builder recorded (``Dataset.content``: the
                       pixels and labels of in-memory arrays, the TFDS
                       name, version, split and the SHA-256 of the prepared
                       files), and the normalisation and augmentation
``TextDataset``        the token bytes and ``seq_len``
dict of arrays         every array's name, dtype, shape and bytes
TFDS ``data_source``   name, version, split and the SHA-256 of the
                       prepared array_record files of the split
anything else          up to 64 evenly spaced examples (``method:
                       'sampled'``): a change elsewhere goes unnoticed;
                       give the source a ``fingerprint()`` to do better
=====================  ====================================================

Hashing is SHA-256 over the bytes; for CIFAR-10's 50,000 training images
(150 MiB) it takes about half a second, once per call of the trainer.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

_SAMPLED = 64
_CHUNK = 1 << 22


def fingerprint(data: Any) -> dict[str, Any]:
  """The example count and a content digest of a split.

  Args:
    data: a source (anything :func:`lrjax.data.as_source` takes, or what it
      returns).

  Returns:
    ``{'examples': n, 'method': how, 'digest': hex SHA-256}``; ``how`` is
    one of 'custom', 'dataset', 'tokens', 'arrays', 'tfds', 'sampled'.

  Examples:
    >>> import numpy as np
    >>> a = fingerprint({'x': np.zeros((3, 2), np.float32)})
    >>> b = fingerprint({'x': np.ones((3, 2), np.float32)})
    >>> a['examples'], a['method'], a['digest'] != b['digest']
    (3, 'arrays', True)
  """
  from lrjax.data._dataset import Dataset
  from lrjax.data._source import ArraySource, ItemSource, as_source
  from lrjax.data._text import TextDataset

  custom = getattr(data, 'fingerprint', None)
  if callable(custom):
    described = custom()
    return _result(_examples(data), 'custom', _digest_json(described))
  if isinstance(data, Mapping):
    data = as_source(data)
  if isinstance(data, Dataset) and data.content is not None:
    described = {
      'content': data.content,
      'mean': np.asarray(data.mean).tolist(),
      'std': np.asarray(data.std).tolist(),
      'augmentation': data.augmentation,
      'image_shape': list(data.image_shape),
      'num_classes': data.num_classes,
    }
    return _result(data.num_examples, 'dataset', _digest_json(described))
  if isinstance(data, TextDataset):
    h = hashlib.sha256(f'seq_len={data.seq_len};'.encode())
    h.update(np.ascontiguousarray(data.tokens).data)
    return _result(data.num_examples, 'tokens', h.hexdigest())
  if isinstance(data, ArraySource):
    return _result(data.num_examples, 'arrays', digest_arrays(data.arrays))
  items = data.items if isinstance(data, ItemSource) else data
  if hasattr(items, 'dataset_info') and hasattr(items, 'split'):
    return _result(
      _examples(data), 'tfds', _digest_json(tfds_content(items, items.split))
    )
  source = as_source(data)
  n = int(source.num_examples)
  picks = np.unique(np.linspace(0, n - 1, min(n, _SAMPLED)).astype(np.int64))
  batch = source.take(picks)
  return _result(n, 'sampled', digest_arrays(dict(batch)))


def digest_arrays(arrays: Mapping[str, Any]) -> str:
  """SHA-256 over each array's name, dtype, shape and bytes (sorted by name).

  Examples:
    >>> import numpy as np
    >>> x = np.arange(4, dtype=np.int32)
    >>> digest_arrays({'x': x}) == digest_arrays({'x': x.copy()})
    True
    >>> digest_arrays({'x': x}) == digest_arrays({'x': x.astype(np.int64)})
    False
  """
  h = hashlib.sha256()
  for name in sorted(arrays):
    a = np.ascontiguousarray(np.asarray(arrays[name]))
    h.update(f'{name}:{a.dtype.str}:{a.shape};'.encode())
    h.update(a.data if a.size else b'')
  return h.hexdigest()


def tfds_content(source: Any, split: str) -> dict[str, Any]:
  """Name, version, split and file digests of a TFDS ``data_source``.

  Args:
    source: the ``tfds.data_source`` (its ``dataset_info``).
    split: the split as asked for (slicing such as ``'train[:90%]'`` kept).

  Returns:
    A JSON-ready description; ``files`` maps each prepared file of the
    split (base name) to the SHA-256 of its bytes.
  """
  info = source.dataset_info
  base = split.split('[')[0]
  files = {}
  for path in info.splits[base].filepaths:
    files[os.path.basename(os.fspath(path))] = _file_sha256(os.fspath(path))
  return {
    'name': info.full_name,
    'version': str(info.version),
    'split': split,
    'files': files,
  }


def _file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(_CHUNK), b''):
      h.update(block)
  return h.hexdigest()


def _digest_json(obj: Any) -> str:
  text = json.dumps(obj, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def _examples(data: Any) -> int:
  n = getattr(data, 'num_examples', None)
  return int(n if n is not None else len(data))


def _result(examples: int, method: str, digest: str) -> dict[str, Any]:
  return {'examples': int(examples), 'method': method, 'digest': digest}
