"""Language-model data: byte streams read as fixed-length token sequences."""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from lrjax.data._tfds import _base_name, _file_lock, _prepare_quietly

#: Byte-level tokens: one token per byte, 256 of them.
VOCAB_SIZE = 256


class TextDataset:
  """One split of a text corpus as fixed-length sequences of byte tokens.

  The split is one stream of byte tokens :math:`x_0, \\dots, x_{n-1}` (the
  UTF-8 bytes of the text, vocabulary 256). Example :math:`i` is the window
  of :math:`T + 1` tokens starting at :math:`iT`,

  .. math::
    e_i = (x_{iT}, \\dots, x_{iT + T}), \\qquad
    0 \\le i < \\left\\lfloor \\frac{n - 1}{T} \\right\\rfloor,

  with :math:`T` = ``seq_len``: the model reads ``tokens[:-1]`` and predicts
  ``tokens[1:]``, so consecutive windows share one token and every token but
  the first is a target exactly once (the last ``(n - 1) % T`` tokens are
  not used). Random access and the interface of `lrjax.data.Dataset`
  (``num_examples``, ``take``), so the resumable `Sampler` and
  `lrjax.data.batches` draw batches of sequences the way they draw images.

  Attributes:
    name: the dataset name.
    split: the split name.
    seq_len: :math:`T`, the tokens the model reads per example.
    num_examples: the number of windows.
    tokens: the split's token stream, read-only uint8 ``[n]``.
    vocab_size: 256.
    bytes_per_token: 1.0 (byte-level tokens), for bits per byte.
    metadata: what the corpus was built from (the TFDS metadata of a
      prepared dataset; empty for text given directly).

  Examples:
    >>> ds = TextDataset.from_text('abcdefghij', seq_len=4)
    >>> ds.num_examples
    2
    >>> ds.take(np.array([1, 0]))['tokens'].tolist()
    [[101, 102, 103, 104, 105], [97, 98, 99, 100, 101]]
    >>> ds.decode(ds[1]['tokens'])
    'efghi'
  """

  vocab_size = VOCAB_SIZE
  bytes_per_token = 1.0

  def __init__(
    self,
    tokens,
    seq_len: int,
    *,
    name: str = 'text',
    split: str = 'train',
    metadata: Mapping[str, Any] | None = None,
  ):
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.dtype != np.uint8:
      raise ValueError(
        f'tokens must be a 1-D uint8 array of bytes, got shape '
        f'{tokens.shape} and dtype {tokens.dtype}: pass '
        'np.frombuffer(text_bytes, np.uint8) or use TextDataset.from_text'
      )
    if isinstance(seq_len, bool) or not isinstance(seq_len, int | np.integer):
      raise TypeError(f'{seq_len=} must be an int')
    if seq_len < 1:
      raise ValueError(f'{seq_len=} must be >= 1')
    num_examples = (tokens.size - 1) // seq_len
    if num_examples < 1:
      raise ValueError(
        f'split {split!r} of {name!r} has {tokens.size} tokens, too few for '
        f'one example of {seq_len=} (it needs seq_len + 1): use a shorter '
        'seq_len or a larger split'
      )
    tokens = tokens.view()
    tokens.flags.writeable = False
    self.tokens = tokens
    self.name = name
    self.split = split
    self.seq_len = int(seq_len)
    self.num_examples = int(num_examples)
    self.metadata = dict(metadata or {})
    self._offsets = np.arange(self.seq_len + 1, dtype=np.int64)

  @classmethod
  def from_text(
    cls,
    text: str | bytes,
    seq_len: int,
    *,
    name: str = 'text',
    split: str = 'train',
  ) -> TextDataset:
    """A dataset over a string (UTF-8 encoded) or bytes.

    Args:
      text: the split's text.
      seq_len: the tokens the model reads per example.
      name: the dataset name.
      split: the split name.

    Returns:
      A `TextDataset`.
    """
    if isinstance(text, str):
      text = text.encode('utf-8')
    return cls(
      np.frombuffer(bytes(text), np.uint8), seq_len, name=name, split=split
    )

  @property
  def num_tokens(self) -> int:
    """Tokens in the split's stream (not all of them are targets)."""
    return int(self.tokens.size)

  def take(
    self, indices, *, augment_seed: int | None = None, epochs=None
  ) -> dict[str, np.ndarray]:
    """The windows at ``indices``.

    Args:
      indices: int array ``[b]`` in ``[0, num_examples)``, any order,
        repeats allowed.
      augment_seed: accepted for the `Dataset` interface and ignored (text
        has no augmentation).
      epochs: accepted and ignored, likewise.

    Returns:
      ``{'tokens': int32 [b, seq_len + 1]}``.

    Raises:
      IndexError: for indices out of range.
    """
    del augment_seed, epochs
    indices = np.asarray(indices, np.int64)
    if indices.ndim != 1:
      raise ValueError(f'indices.shape={indices.shape} must be 1-D')
    if indices.size and (
      indices.min() < 0 or indices.max() >= self.num_examples
    ):
      raise IndexError(
        f'indices must be in [0, {self.num_examples}) for {self.name} '
        f'{self.split}; found [{indices.min()}, {indices.max()}]'
      )
    positions = indices[:, None] * self.seq_len + self._offsets
    return {'tokens': self.tokens[positions].astype(np.int32)}

  def evenly_spaced(self, count: int) -> dict[str, np.ndarray]:
    r"""``count`` windows evenly spaced over the split, as one batch.

    Window :math:`\lfloor i n / k \rfloor` for :math:`0 \le i < k`, with
    :math:`n` = ``num_examples`` and :math:`k` = ``count`` (all of them
    when ``count`` is 0 or at least :math:`n`): a deterministic sample that
    covers the whole split (every file of a corpus of many files), e.g. a
    fixed evaluation set, as arrays the trainer reads as a source.

    Args:
      count: how many windows (0: all of them).

    Returns:
      ``{'tokens': int32 [k, seq_len + 1]}``.

    Examples:
      >>> ds = TextDataset.from_text('abcdefghij', seq_len=2)  # 4 windows
      >>> ds.evenly_spaced(2)['tokens'].tolist()  # windows 0 and 2
      [[97, 98, 99], [101, 102, 103]]
    """
    n = self.num_examples
    k = n if count <= 0 or count >= n else count
    return self.take((np.arange(k, dtype=np.int64) * n) // k)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    """``{'tokens': int32 [seq_len + 1]}``, example ``index``."""
    if not 0 <= int(index) < self.num_examples:
      raise IndexError(
        f'{index=} is out of range for {self.num_examples} examples'
      )
    return {'tokens': self.take(np.array([index]))['tokens'][0]}

  def __len__(self) -> int:
    return self.num_examples

  def decode(self, tokens) -> str:
    """Byte tokens back to text (invalid UTF-8 shown as U+FFFD)."""
    data = np.asarray(tokens).astype(np.uint8).tobytes()
    return data.decode('utf-8', errors='replace')

  def __repr__(self) -> str:
    return (
      f'TextDataset(name={self.name!r}, split={self.split!r}, '
      f'seq_len={self.seq_len}, num_examples={self.num_examples}, '
      f'num_tokens={self.num_tokens})'
    )


def prepare_python_text(
  config: str = 'docs', data_dir: str | None = None
) -> str:
  """Prepares a config of the bundled `python_text` dataset once.

  Reads the running interpreter's documentation topics (``'docs'``) or
  standard-library sources (``'stdlib'``) and writes them as array_record
  under ``data_dir/python_text/<config>/1.0.0`` on the first call (about
  0.3 s for docs, 5 s for stdlib; no network), and does nothing afterwards.
  Concurrent callers sharing a data dir are serialised by a lock file.

  Args:
    config: 'docs' or 'stdlib'.
    data_dir: where TFDS keeps datasets; created if missing. None: TFDS's
      default (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

  Returns:
    The data dir used.

  Raises:
    ValueError: for an unknown config.
  """
  import tensorflow_datasets as tfds

  from lrjax.data.python_text import CONFIGS, PythonText

  if config not in CONFIGS:
    raise ValueError(f'{config=} must be one of {CONFIGS}')
  if data_dir is None:
    data_dir = os.path.expanduser(tfds.core.constants.DATA_DIR)
  os.makedirs(data_dir, exist_ok=True)
  with _file_lock(os.path.join(data_dir, '.lrjax_python_text.lock')):
    builder = PythonText(
      config=config, data_dir=data_dir, file_format='array_record'
    )
    if not builder.is_prepared():
      logging.info('Preparing python_text/%s in %s', config, data_dir)
      _prepare_quietly(builder)
  return data_dir


def _check_same_interpreter(config: str, metadata: Mapping, data_dir: str):
  """Raises if the prepared corpus is not this interpreter's text."""
  from lrjax.data.python_text import corpus, interpreter

  current = hashlib.sha256(corpus(config).text).hexdigest()
  if metadata.get('sha256') != current:
    raise ValueError(
      f'python_text/{config} in {data_dir} was prepared from '
      f'{metadata.get("interpreter", "an unknown interpreter")} (sha256 '
      f'{str(metadata.get("sha256"))[:12]}...), but {interpreter()} gives '
      f'other text (sha256 {current[:12]}...): pass a data_dir per '
      'interpreter, or delete '
      f'{os.path.join(data_dir, "python_text", config)} to prepare it again'
    )


def _open_text(name: str, split: str, data_dir, download: bool):
  import tensorflow_datasets as tfds

  try:
    return tfds.data_source(
      name, split=split, data_dir=data_dir, download=download
    )
  except (NotImplementedError, AssertionError, FileNotFoundError) as e:
    where = data_dir if data_dir is not None else '~/tensorflow_datasets'
    raise FileNotFoundError(
      f'dataset {name!r} is not prepared as array_record in {where} and '
      'cannot be downloaded here. Prepare it on a machine with network '
      'access (TFDS text builders need TensorFlow to build): `pip install '
      f'tensorflow && tfds build {name} --file_format=array_record '
      f'--data_dir={where}`, copy the directory here and pass data_dir=. '
      f'(TFDS said: {type(e).__name__}: {str(e)[:300]})'
    ) from e
  except ValueError as e:
    if 'split' in str(e).lower():
      raise ValueError(
        f'dataset {name!r} has no split {split!r}: {str(e).rstrip(".")}. '
        "Use one of its splits, e.g. split='train' or split='validation'"
      ) from e
    raise


def _record_bytes(value, name: str, feature: str) -> bytes:
  if isinstance(value, str):
    return value.encode('utf-8')
  if isinstance(value, bytes):
    return value
  array = np.asarray(value)
  if array.dtype == np.uint8 and array.ndim == 1:
    return array.tobytes()
  if array.dtype == object and array.ndim == 0:
    return _record_bytes(array.item(), name, feature)
  raise ValueError(
    f'feature {feature!r} of {name!r} holds {type(value).__name__} values: '
    'load_text reads text (tfds.features.Text) or uint8 byte arrays'
  )


def load_text(
  name: str = 'python_text/docs',
  *,
  split: str,
  seq_len: int,
  data_dir: str | os.PathLike | None = None,
  feature: str = 'text',
  separator: str | None = None,
  download: bool = False,
) -> TextDataset:
  """Loads one split of a text corpus as fixed-length byte-token sequences.

  ``'python_text/docs'`` and ``'python_text/stdlib'`` are bundled: the
  running interpreter's documentation topics and standard-library sources
  (see `lrjax.data.python_text`), prepared as array_record into
  ``data_dir`` on first use with no network. Loading one checks that the
  prepared text is the running interpreter's (the SHA-256 in its metadata).
  Any other name is a TFDS text dataset a user has prepared as array_record
  (``tiny_shakespeare``, ``lm1b``, ...): the records' ``feature`` are read
  in order and joined with ``separator``. The whole split is held in memory
  as bytes.

  Args:
    name: 'python_text/docs', 'python_text/stdlib' or a TFDS dataset name.
    split: e.g. 'train' or 'validation' (TFDS slicing works).
    seq_len: the tokens the model reads per example.
    data_dir: the TFDS data dir; None: TFDS's default.
    feature: the text feature of a TFDS dataset.
    separator: put between consecutive records. None: nothing for
      python_text (its records are pieces of one stream), a newline
      otherwise (one record per sentence or document).
    download: let TFDS download and prepare a missing dataset (needs network
      access, and TensorFlow for most text builders).

  Returns:
    A `TextDataset`.

  Raises:
    ValueError: for an unknown name or config, a missing split or feature,
      or python_text prepared by another interpreter.
    FileNotFoundError: for a dataset that is not prepared in ``data_dir``.

  Examples:
    >>> import tempfile
    >>> val = load_text('python_text/docs', split='validation', seq_len=64,
    ...                 data_dir=tempfile.mkdtemp())
    >>> val.seq_len, val.vocab_size, val.num_examples == (val.num_tokens - 1) // 64
    (64, 256, True)
  """
  import tensorflow_datasets as tfds

  if not isinstance(name, str) or not name:
    raise ValueError(f'{name=} must be a dataset name such as "python_text"')
  if not isinstance(split, str) or not split:
    raise ValueError(f"{split=} must be a split name such as 'train'")
  if data_dir is not None:
    data_dir = os.path.expanduser(os.fspath(data_dir))
  base = _base_name(name)
  if base == 'python_text':
    from lrjax.data.python_text import CONFIGS

    config = name.split('/')[1] if '/' in name else 'docs'
    config = config.split(':')[0]
    if config not in CONFIGS:
      raise ValueError(
        f'{name=}: python_text has the configs {CONFIGS}, e.g. '
        "'python_text/docs'"
      )
    data_dir = prepare_python_text(config, data_dir)
    name = f'python_text/{config}'
  else:
    if data_dir is not None and not os.path.isdir(data_dir):
      raise FileNotFoundError(
        f'{data_dir=} does not exist: pass the directory that holds the '
        f'prepared {name!r} (the --data_dir of `tfds build`), or None for '
        "TFDS's default"
      )
    known = tfds.list_builders(with_community_datasets=False)
    if base not in known:
      close = difflib.get_close_matches(base, known + ['python_text'])
      raise ValueError(
        f'unknown dataset {name=}: not a TFDS dataset nor the bundled '
        f"'python_text'. Close names: {close or 'none'}"
      )
  source = _open_text(name, split, data_dir, download)
  info = source.dataset_info
  if feature not in info.features:
    raise ValueError(
      f'dataset {name!r} has features {list(info.features)}, no {feature=}: '
      'pass the name of its text feature'
    )
  metadata = dict(info.metadata or {})
  if base == 'python_text':
    _check_same_interpreter(name.split('/')[1], metadata, data_dir)
  if separator is None:
    separator = '' if base == 'python_text' else '\n'
  parts = [
    _record_bytes(source[i][feature], name, feature) for i in range(len(source))
  ]
  text = separator.encode('utf-8').join(parts)
  return TextDataset(
    np.frombuffer(text, np.uint8),
    seq_len,
    name=name,
    split=split,
    metadata=metadata,
  )
