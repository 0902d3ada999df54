"""lrjax.data text: the python_text corpus, TextDataset windows, TFDS text."""

import glob
import hashlib
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lrjax import data
from lrjax.data import python_text


@pytest.fixture(scope='module')
def docs_dir(tmp_path_factory):
  return data.prepare_python_text('docs', str(tmp_path_factory.mktemp('tfds')))


def _files(root):
  found = {}
  for path in glob.glob(os.path.join(root, '**', '*'), recursive=True):
    if os.path.isfile(path) and '.lock' not in path:
      with open(path, 'rb') as f:
        found[os.path.relpath(path, root)] = f.read()
  return found


def test_docs_corpus_builds_offline_and_byte_for_byte_the_same(
  tmp_path, monkeypatch
):
  def no_network(*args, **kwargs):
    raise AssertionError(f'network access during preparation: {args}')

  monkeypatch.setattr(socket.socket, 'connect', no_network)
  monkeypatch.setattr(socket, 'create_connection', no_network)
  first = _files(data.prepare_python_text('docs', str(tmp_path / 'a')))
  second = _files(data.prepare_python_text('docs', str(tmp_path / 'b')))
  records = sorted(k for k in first if '.array_record' in k)
  assert [os.path.basename(k) for k in records] == [
    'python_text-train.array_record-00000-of-00001',
    'python_text-validation.array_record-00000-of-00001',
  ]
  for key in records + [k for k in first if k.endswith('metadata.json')]:
    assert first[key] == second[key], key


def test_docs_splits_are_the_topics_text_cut_at_ninety_percent(docs_dir):
  from pydoc_data.topics import topics

  # The documented text: every topic, sorted by key, blank line between.
  text = '\n'.join(topics[k] for k in sorted(topics)).encode('utf-8')
  cut = len(text) - len(text) // 10
  train = data.load_text(
    'python_text/docs', split='train', seq_len=64, data_dir=docs_dir
  )
  val = data.load_text(
    'python_text/docs', split='validation', seq_len=64, data_dir=docs_dir
  )
  assert train.tokens.tobytes() == text[:cut]
  assert val.tokens.tobytes() == text[cut:]
  assert 400_000 < len(text) < 600_000  # "about 0.46 M characters"
  meta = train.metadata
  assert meta['sha256'] == hashlib.sha256(text).hexdigest()
  assert meta['num_bytes'] == len(text)
  assert meta['documents'] == len(topics)
  assert meta['python_version'] == '.'.join(map(str, sys.version_info[:3]))
  assert meta['split_bytes'] == {'train': cut, 'validation': len(text) - cut}
  assert train.num_examples == (cut - 1) // 64


def test_stdlib_text_order_headers_exclusions_and_raw_bytes(tmp_path):
  def write(rel, content):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)

  write('os.py', b'import sys\n')
  write('abc.py', b'x = 1')  # no final newline: one is added
  write('json/__init__.py', b'# coding: latin-1\nname = "\xe9"\n')
  write('site-packages/pkg.py', b'installed = True\n')
  write('__pycache__/abc.cpython-311.py', b'cached\n')
  write('json/notes.txt', b'not python\n')
  assert python_text.stdlib_text(str(tmp_path)) == (
    b'# file: abc.py\nx = 1\n'
    b'# file: json/__init__.py\n# coding: latin-1\nname = "\xe9"\n'
    b'# file: os.py\nimport sys\n'
  )
  with pytest.raises(FileNotFoundError, match='no .py file'):
    python_text.stdlib_text(str(tmp_path / 'json' / 'missing'))


def test_stdlib_config_is_the_interpreters_source(tmp_path):
  ds = data.load_text(
    'python_text/stdlib', split='validation', seq_len=128, data_dir=tmp_path
  )
  meta = ds.metadata
  assert meta['interpreter'] == python_text.interpreter()
  assert meta['documents'] > 500
  assert meta['num_bytes'] > 5_000_000
  assert ds.num_tokens == meta['num_bytes'] // 10
  # The held-out tail ends with the last file of the sorted tree.
  assert ds.tokens.tobytes().endswith(
    python_text.stdlib_text()[-1000:]  # same interpreter, same bytes
  )


def test_load_text_refuses_a_corpus_of_another_interpreter(docs_dir, tmp_path):
  import shutil

  copy = str(tmp_path / 'copy')
  shutil.copytree(docs_dir, copy)
  (meta_path,) = glob.glob(
    os.path.join(copy, '**', 'metadata.json'), recursive=True
  )
  with open(meta_path) as f:
    meta = json.load(f)
  meta.update(sha256='0' * 64, interpreter='CPython 3.99.0')
  with open(meta_path, 'w') as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match='CPython 3.99.0.*data_dir per interp'):
    data.load_text('python_text/docs', split='train', seq_len=8, data_dir=copy)


def test_text_dataset_windows_share_one_token():
  text = b'0123456789abcdefghij'  # 20 tokens: (20 - 1) // 6 = 3 windows
  ds = data.TextDataset.from_text(text, seq_len=6, name='t', split='s')
  assert (ds.num_examples, len(ds), ds.num_tokens) == (3, 3, 20)
  got = ds.take(np.array([2, 0, 2]), augment_seed=3, epochs=np.array([1, 1, 2]))
  assert got['tokens'].dtype == np.int32
  assert [bytes(row.astype(np.uint8)) for row in got['tokens']] == [
    b'cdefghi',
    b'0123456',
    b'cdefghi',
  ]
  assert ds.decode(ds[1]['tokens']) == '6789abc'
  assert ds.take(np.array([], np.int64))['tokens'].shape == (0, 7)
  with pytest.raises(IndexError, match=r'\[0, 3\)'):
    ds.take(np.array([3]))
  with pytest.raises(IndexError):
    ds[-1]
  assert 'é' == data.TextDataset.from_text('é', seq_len=1).decode([195, 169])


@pytest.mark.parametrize(
  'kwargs, error, match',
  [
    (dict(tokens=np.zeros(10, np.int32), seq_len=4), ValueError, 'uint8'),
    (dict(tokens=np.zeros(10, np.uint8), seq_len=0), ValueError, 'seq_len'),
    (dict(tokens=np.zeros(10, np.uint8), seq_len=2.0), TypeError, 'seq_len'),
    (dict(tokens=np.zeros(4, np.uint8), seq_len=4), ValueError, 'shorter'),
  ],
)
def test_text_dataset_rejects_bad_arguments(kwargs, error, match):
  with pytest.raises(error, match=match):
    data.TextDataset(**kwargs)


def test_sequences_go_through_the_resumable_sampler(docs_dir):
  ds = data.load_text(
    'python_text/docs', split='validation', seq_len=32, data_dir=docs_dir
  )
  sizes = [3, 5, 2, 7]
  items = list(data.batches(ds, data.Sampler(ds.num_examples, seed=1), sizes))
  assert [it.batch['tokens'].shape for it in items] == [(b, 33) for b in sizes]
  # Resume after the second batch: the same last two batches.
  resumed = data.Sampler(ds.num_examples, seed=1).restore(items[1].state)
  again = list(data.batches(ds, resumed, sizes[2:]))
  for a, b in zip(items[2:], again, strict=True):
    np.testing.assert_array_equal(a.batch['tokens'], b.batch['tokens'])
  # Every window is the stream at its offset.
  index = data.Sampler(ds.num_examples, seed=1).next(3)
  stream = ds.tokens.astype(np.int32)
  for row, i in zip(items[0].batch['tokens'], index, strict=True):
    np.testing.assert_array_equal(row, stream[i * 32 : i * 32 + 33])


def test_tfds_text_datasets_join_records_in_order():
  with tfds.testing.mock_data(
    num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE
  ):
    for name in ('tiny_shakespeare', 'lm1b'):
      source = tfds.data_source(name, split='train')
      texts = [source[i]['text'] for i in range(3)]
      ds = data.load_text(name, split='train', seq_len=4)
      assert ds.tokens.tobytes() == '\n'.join(texts).encode('utf-8')
      assert ds.name == name
      ds = data.load_text(name, split='train', seq_len=4, separator='')
      assert ds.tokens.tobytes() == ''.join(texts).encode('utf-8')
    with pytest.raises(ValueError, match="no feature='words'"):
      data.load_text('lm1b', split='train', seq_len=4, feature='words')


def test_load_text_errors_name_the_fix(tmp_path):
  with pytest.raises(ValueError, match='tiny_shakespeare'):
    data.load_text('tiny_shakespear', split='train', seq_len=8)
  with pytest.raises(ValueError, match="configs \\('docs', 'stdlib'\\)"):
    data.load_text('python_text/code', split='train', seq_len=8)
  with pytest.raises(FileNotFoundError, match='tfds build tiny_shakespeare'):
    data.load_text(
      'tiny_shakespeare', split='train', seq_len=8, data_dir=tmp_path
    )
  with pytest.raises(FileNotFoundError, match='does not exist'):
    data.load_text(
      'tiny_shakespeare', split='train', seq_len=8, data_dir=tmp_path / 'x'
    )


def test_python_text_loads_without_tensorflow(tmp_path):
  code = (
    'import sys; from lrjax import data; '
    "ds = data.load_text('python_text/docs', split='train', seq_len=16, "
    f'data_dir={str(tmp_path)!r}); ds.take([0, 1]); '
    "assert 'tensorflow' not in sys.modules, 'tf'; print(ds.vocab_size)"
  )
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == '256'


def test_evenly_spaced_windows_by_hand():
  from lrjax.data import TextDataset

  # 21 bytes, windows of 2 + 1: floor(20 / 2) = 10 windows starting at 2i.
  ds = TextDataset.from_text('abcdefghijklmnopqrstu', seq_len=2)
  # k = 3: windows floor(10 i / 3) = 0, 3, 6, starting at bytes 0, 6, 12.
  picked = ds.evenly_spaced(3)['tokens']
  assert [ds.decode(t) for t in picked] == ['abc', 'ghi', 'mno']
  for everything in (0, 10, 11):
    assert ds.evenly_spaced(everything)['tokens'].shape == (10, 3)
