"""TFDS builder over the running interpreter's documentation and sources."""

from __future__ import annotations

import hashlib
import importlib
import os
import platform
import sysconfig
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

#: The configs: the documentation prose and the standard library's code.
CONFIGS = ('docs', 'stdlib')
# Each split is stored as consecutive pieces of its byte stream.
_CHUNK_BYTES = 1 << 16
# Directories of the stdlib tree that hold installed packages, not stdlib.
_SKIP_DIRS = frozenset({'site-packages', 'dist-packages', '__pycache__'})
_LICENSE = (
  'Python Software Foundation License Version 2 (PSF-2.0), the license of '
  'the interpreter the text was read from; the documentation topics are '
  'PSF-licensed text of the Python documentation'
)


def interpreter() -> str:
  """The interpreter the corpus is read from, e.g. ``'CPython 3.11.7'``."""
  return f'{platform.python_implementation()} {platform.python_version()}'


def docs_text() -> bytes:
  """The documentation topics of the running interpreter, as UTF-8 bytes.

  ``pydoc_data/topics.py`` holds the reference pages that ``help()`` shows
  (statements, operators, special methods, ...), one string per topic. The
  text is every topic in sorted key order, separated by a blank line.

  Returns:
    UTF-8 bytes, about 0.46 M for CPython 3.11 to 3.13.

  Raises:
    FileNotFoundError: if the interpreter ships without ``pydoc_data``
      (some minimal distribution packages strip it).
  """
  try:
    topics = importlib.import_module('pydoc_data.topics').topics
  except ImportError as e:
    raise FileNotFoundError(
      f'{interpreter()} has no pydoc_data.topics module: install the full '
      'standard library (e.g. the libpython3.X-stdlib package on Debian) or '
      'use another dataset, e.g. load_text("tiny_shakespeare", ...)'
    ) from e
  return '\n'.join(topics[key] for key in sorted(topics)).encode('utf-8')


def _stdlib_files(root: str) -> list[tuple[str, str]]:
  """``(relative posix path, absolute path)`` of every stdlib ``.py``."""
  files = []
  for directory, dirs, names in os.walk(root):
    dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
    for name in names:
      if name.endswith('.py'):
        path = os.path.join(directory, name)
        rel = os.path.relpath(path, root).replace(os.sep, '/')
        files.append((rel, path))
  return sorted(files)


def stdlib_text(root: str | None = None) -> bytes:
  """The standard library's Python source files, concatenated.

  Every ``.py`` file under the stdlib directory (``sysconfig``'s ``stdlib``
  path, tests included, installed packages in ``site-packages`` /
  ``dist-packages`` excluded), in sorted order of its relative path, each
  preceded by a comment line ``# file: <relative path>`` and ending with a
  newline. The files' bytes are kept as they are (a few test files are
  deliberately not UTF-8).

  Args:
    root: the directory to read; None: the running interpreter's stdlib.

  Returns:
    The bytes, about 30 MB for CPython 3.11.

  Raises:
    FileNotFoundError: if ``root`` holds no ``.py`` file.
  """
  root = sysconfig.get_paths()['stdlib'] if root is None else root
  files = _stdlib_files(root)
  if not files:
    raise FileNotFoundError(
      f'{root=} holds no .py file: pass the directory of a Python standard '
      "library, or None for the running interpreter's"
    )
  parts = []
  for rel, path in files:
    with open(path, 'rb') as f:
      source = f.read()
    if source and not source.endswith(b'\n'):
      source += b'\n'
    parts.append(b'# file: ' + rel.encode('utf-8') + b'\n' + source)
  return b''.join(parts)


class Corpus(NamedTuple):
  """One config's text and where it came from.

  Attributes:
    text: the whole corpus, bytes.
    documents: the number of topics or source files in it.
    source: what was read, e.g. ``'pydoc_data/topics.py'``.
  """

  text: bytes
  documents: int
  source: str


def corpus(config: str) -> Corpus:
  """The text of one config, read from the running interpreter.

  Args:
    config: 'docs' or 'stdlib'.

  Returns:
    A `Corpus`.

  Raises:
    ValueError: for another config name.
  """
  if config == 'docs':
    topics = importlib.import_module('pydoc_data.topics').topics
    return Corpus(docs_text(), len(topics), 'pydoc_data/topics.py')
  if config == 'stdlib':
    root = sysconfig.get_paths()['stdlib']
    return Corpus(stdlib_text(root), len(_stdlib_files(root)), 'stdlib **/*.py')
  raise ValueError(f'{config=} must be one of {CONFIGS}')


def split_bytes(text: bytes) -> dict[str, bytes]:
  """Cuts a corpus into its train and validation splits.

  The validation split is the last tenth of the bytes,
  :math:`\\lfloor n / 10 \\rfloor` of them; the train split is the rest.
  The cut may fall inside a document (or a UTF-8 character): the splits are
  byte streams.

  Args:
    text: the corpus.

  Returns:
    ``{'train': bytes, 'validation': bytes}``.

  Examples:
    >>> split_bytes(b'abcdefghijklmnopqrstu')  # 21 bytes: the last 2 held out
    {'train': b'abcdefghijklmnopqrs', 'validation': b'tu'}
  """
  cut = len(text) - len(text) // 10
  return {'train': text[:cut], 'validation': text[cut:]}


class PythonText(tfds.core.GeneratorBasedBuilder):
  """Text shipped with the running Python: documentation prose and code.

  Configs: ``docs`` (``pydoc_data/topics.py``, English reference prose) and
  ``stdlib`` (the standard library's ``.py`` files), see `docs_text` and
  `stdlib_text`. Splits: 'train' (the first 90% of the bytes) and
  'validation' (the last 10%, `split_bytes`). Each split is stored as
  consecutive pieces of 64 KiB of its byte stream, ``{'text': uint8
  [n]}``, in order (shuffling disabled), so joining the records in order
  gives the split back.

  Nothing is downloaded: the text is read from the interpreter's own files
  when the dataset is prepared. It is deterministic for a given interpreter;
  the dataset's metadata records which one (``interpreter``,
  ``python_version``) and the SHA-256 of the whole corpus (``sha256``), so
  that a dataset prepared by another interpreter is recognised
  (`lrjax.data.load_text` checks it).

  References:
    The Python Software Foundation, the Python documentation and standard
    library (PSF License Version 2).
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {
    '1.0.0': 'docs and stdlib configs, last 10% of the bytes held out.'
  }
  BUILDER_CONFIGS = [
    tfds.core.BuilderConfig(
      name='docs', description='pydoc_data/topics.py: reference prose.'
    ),
    tfds.core.BuilderConfig(
      name='stdlib', description='The standard library .py source files.'
    ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description=(
        'Byte streams of text shipped with the Python interpreter: the '
        'documentation topics (docs) or the standard library source '
        '(stdlib).'
      ),
      features=tfds.features.FeaturesDict(
        {'text': tfds.features.Tensor(shape=(None,), dtype=np.uint8)}
      ),
      disable_shuffling=True,
      homepage='https://docs.python.org/3/',
      metadata=tfds.core.MetadataDict(),
      license=_LICENSE,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Read from the interpreter: nothing to download.
    text = corpus(self.builder_config.name)
    splits = split_bytes(text.text)
    self.info.metadata.update(
      interpreter=interpreter(),
      python_version=platform.python_version(),
      source=text.source,
      documents=text.documents,
      num_bytes=len(text.text),
      split_bytes={k: len(v) for k, v in splits.items()},
      sha256=hashlib.sha256(text.text).hexdigest(),
    )
    return {
      name: self._generate_examples(data) for name, data in splits.items()
    }

  def _generate_examples(self, data: bytes):
    for i, start in enumerate(range(0, len(data), _CHUNK_BYTES)):
      chunk = data[start : start + _CHUNK_BYTES]
      yield i, {'text': np.frombuffer(chunk, np.uint8)}
