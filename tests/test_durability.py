"""What survives faults, in-process: the metrics log (torn lines, rewinding
to a checkpoint), verified checkpoints with fallback, the workdir lock and
the config fingerprint. The kill -9 tests are in test_train_resume.py."""

import hashlib
import json
import logging
import os
import zlib

import numpy as np
import pytest

from lrjax import metrics as lmetrics
from lrjax.train import _checkpoint

# metrics.jsonl -------------------------------------------------------------


def _lines(n, start=1):
  return [
    json.dumps({'step': s, 'loss': 1.0 / s}) + '\n'
    for s in range(start, start + n)
  ]


def test_writer_position_is_the_count_size_and_crc_of_the_file(tmp_path):
  path = str(tmp_path / 'm.jsonl')
  w = lmetrics.JsonlWriter(path)
  for line in _lines(3):
    w.write(json.loads(line))
  w.sync()
  data = open(path, 'rb').read()
  assert data == ''.join(_lines(3)).encode()
  assert w.position == (3, len(data), zlib.crc32(data))
  w.close()
  # Reopened, it continues from the file's end.
  w = lmetrics.JsonlWriter(path)
  assert w.position == (3, len(data), zlib.crc32(data))
  w.close()


def test_a_torn_last_line_is_cut_when_the_writer_opens(tmp_path, caplog):
  path = str(tmp_path / 'm.jsonl')
  with open(path, 'w') as f:
    f.write(''.join(_lines(2)) + '{"step": 3, "lo')
  assert lmetrics.read_jsonl(path) == [json.loads(x) for x in _lines(2)]
  with caplog.at_level(logging.WARNING):
    w = lmetrics.JsonlWriter(path)
  assert 'torn line (15 bytes' in caplog.text
  w.write({'step': 3})
  w.close()
  assert [r['step'] for r in lmetrics.read_jsonl(path)] == [1, 2, 3]


def test_a_damaged_line_names_the_file_and_line(tmp_path):
  path = str(tmp_path / 'm.jsonl')
  with open(path, 'w') as f:
    f.write(_lines(1)[0] + '{"step": 2,, }\n' + _lines(1, 3)[0])
  with pytest.raises(lmetrics.JsonlError, match=r'm\.jsonl:2: not a JSON'):
    lmetrics.read_jsonl(path)
  with open(path, 'w') as f:
    f.write('[1, 2]\n')
  with pytest.raises(lmetrics.JsonlError, match=r'm\.jsonl:1: a JSON list'):
    lmetrics.read_jsonl(path)


def test_rewind_to_a_position_keeps_exactly_its_bytes(tmp_path):
  path = str(tmp_path / 'm.jsonl')
  head = ''.join(_lines(3)).encode()
  with open(path, 'wb') as f:
    f.write(head + ''.join(_lines(2, 4)).encode() + b'{"step": 6')
  position = lmetrics.JsonlPosition(3, len(head), zlib.crc32(head))
  assert lmetrics.rewind_jsonl(path, position, max_step=3) == position
  assert open(path, 'rb').read() == head
  # A position given as the list a checkpoint's JSON meta holds.
  assert lmetrics.rewind_jsonl(path, list(position), 3) == position


def test_rewind_falls_back_to_steps_when_the_file_is_not_the_saved_one(
  tmp_path, caplog
):
  path = str(tmp_path / 'm.jsonl')
  lines = _lines(5)
  head = ''.join(lines[:3]).encode()
  position = lmetrics.JsonlPosition(3, len(head), zlib.crc32(head))
  # Edited after the checkpoint: record 1 changed, so the CRC differs.
  edited = [json.dumps({'step': 1, 'loss': 9.0}) + '\n', *lines[1:]]
  with open(path, 'w') as f:
    f.write(''.join(edited))
  with caplog.at_level(logging.WARNING):
    got = lmetrics.rewind_jsonl(path, position, max_step=3)
  assert 'does not hold the 3 records' in caplog.text
  want = ''.join(edited[:3]).encode()
  assert open(path, 'rb').read() == want
  assert got == (3, len(want), zlib.crc32(want))
  # Shorter than the position (records lost): what is there, up to step 3.
  with open(path, 'w') as f:
    f.write(''.join(lines[:2]))
  lmetrics.rewind_jsonl(path, position, max_step=3)
  assert open(path).read() == ''.join(lines[:2])


def test_rewind_without_checkpoint_starts_an_empty_log(tmp_path):
  path = str(tmp_path / 'm.jsonl')
  with open(path, 'w') as f:
    f.write(''.join(_lines(4)))
  assert lmetrics.rewind_jsonl(path, None, max_step=0) == (0, 0, 0)
  assert open(path).read() == ''
  missing = str(tmp_path / 'new.jsonl')
  assert lmetrics.rewind_jsonl(missing, None, max_step=0) == (0, 0, 0)
  assert os.path.exists(missing)
  # Without a position, up to a step: the prefix of records at most there.
  with open(path, 'w') as f:
    f.write(''.join(_lines(4)) + _lines(1, 2)[0])
  lmetrics.rewind_jsonl(path, None, max_step=2)
  assert open(path).read() == ''.join(_lines(2))


# Checkpoints ----------------------------------------------------------------


def test_state_digest_is_sha256_of_sorted_leaf_digests():
  w = np.arange(6, dtype=np.float32).reshape(2, 3)
  b = np.array(7, np.int32)
  leaf = [
    hashlib.sha256(f'{a.dtype.str}{a.shape}'.encode() + a.tobytes()).hexdigest()
    for a in (w, b)
  ]
  want = hashlib.sha256(''.join(sorted(leaf)).encode())
  assert _checkpoint.state_digest({'w': w, 'b': b}) == want.hexdigest()
  assert _checkpoint.state_digest((b, [w])) == want.hexdigest()
  flipped = w.copy()
  flipped.view(np.uint32)[1, 2] ^= 1  # one bit of one float
  assert _checkpoint.state_digest({'w': flipped, 'b': b}) != want.hexdigest()
