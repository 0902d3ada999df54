"""TensorBoardWriter: scalars read back from the event file it writes.

tensorboardX has no reader, so the test parses the TFRecord framing itself:
per record a little-endian uint64 length, the masked CRC-32C of those 8
bytes, the payload (an ``Event`` protobuf) and the masked CRC-32C of the
payload, with mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32).
"""

import glob
import json
import os
import struct

import numpy as np
import pytest
from tensorboardX.crc32c import crc32c
from tensorboardX.proto import event_pb2

from lrjax import metrics as lmetrics
from lrjax.train import TrainConfig, train_and_evaluate


def _masked(crc):
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_events(logdir):
  (path,) = glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))
  raw = open(path, 'rb').read()
  events, pos = [], 0
  while pos < len(raw):
    header = raw[pos : pos + 8]
    (length,) = struct.unpack('<Q', header)
    (header_crc,) = struct.unpack('<I', raw[pos + 8 : pos + 12])
    assert header_crc == _masked(crc32c(header))
    payload = raw[pos + 12 : pos + 12 + length]
    (payload_crc,) = struct.unpack(
      '<I', raw[pos + 12 + length : pos + 16 + length]
    )
    assert payload_crc == _masked(crc32c(payload))
    events.append(event_pb2.Event.FromString(payload))
    pos += 16 + length
  assert pos == len(raw)
  return events


def _scalars(events):
  """(tag, step) -> value of every scalar summary."""
  out = {}
  for e in events:
    for v in e.summary.value:
      out[(v.tag, e.step)] = v.simple_value
  return out


def test_crc32c_check_value():
  # The standard CRC-32C (Castagnoli) check value of '123456789'.
  assert crc32c(b'123456789') == 0xE3069283


def test_scalars_round_trip_through_the_event_file(tmp_path):
  logdir = str(tmp_path / 'tb')
  w = lmetrics.TensorBoardWriter(logdir)
  w.write({'step': 3, 'loss': np.float32(0.5), 'lr': 0.1, 'stage': 1})
  w.write({'step': 7, 'loss': 0.25, 'lr': 0.05, 'note': 'text is skipped'})
  w.write({'step': 7, 'split': 'test', 'accuracy': 0.875})
  w.close()
  events = _read_events(logdir)
  assert events[0].file_version == 'brain.Event:2'
  scalars = _scalars(events)
  expected = {
    ('train/loss', 3): 0.5,
    ('train/lr', 3): 0.1,
    ('train/stage', 3): 1.0,
    ('train/loss', 7): 0.25,
    ('train/lr', 7): 0.05,
    ('test/accuracy', 7): 0.875,
  }
  assert scalars.keys() == expected.keys()
  for key, value in expected.items():
    # simple_value is float32.
    assert scalars[key] == np.float32(value), key


def test_trainer_writes_its_logged_steps_to_tensorboard(tmp_path):
  config = TrainConfig(
    dataset='synthetic',
    synthetic_examples=256,
    synthetic_shape=(4, 4, 1),
    synthetic_classes=10,
    model='mlp',
    model_kwargs={'hidden': (16,)},
    num_devices=1,
    batch=64,
    num_epochs=1,
    eval_every=1,
    log_every=2,
    keep_checkpoints=0,
    lr=0.1,
    momentum=0.9,
    tensorboard=True,
  )
  result = train_and_evaluate(config, str(tmp_path))
  scalars = _scalars(_read_events(str(tmp_path / 'tb')))
  records = [json.loads(line) for line in open(result.metrics_path)]
  train = [r for r in records if 'split' not in r]
  assert [r['step'] for r in train] == [2, 4]
  for r in train:
    for key in ('loss', 'accuracy', 'lr', 'batch_size', 'epoch'):
      assert scalars[(f'train/{key}', r['step'])] == pytest.approx(
        r[key], rel=1e-6
      )
  (test,) = [r for r in records if r.get('split') == 'test']
  assert scalars[('test/accuracy', 4)] == pytest.approx(
    test['accuracy'], rel=1e-6
  )
