"""What survives faults, in-process: the metrics log (torn lines, rewinding
to a checkpoint), verified checkpoints with fallback, the workdir lock and
the config fingerprint. The kill -9 tests are in test_train_resume.py."""

import hashlib
import itertools
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import zlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from _tasks import synthetic

from lrjax import metrics as lmetrics
from lrjax.train import (
  CheckpointError,
  ConfigMismatchError,
  TrainConfig,
  WorkdirLockedError,
  _checkpoint,
  _workdir,
  load_checkpoint,
  load_meta,
  train_and_evaluate,
)

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
  data = pathlib.Path(path).read_bytes()
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
  with caplog.at_level(logging.WARNING, logger='absl'):
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
  assert pathlib.Path(path).read_bytes() == head
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
  with caplog.at_level(logging.WARNING, logger='absl'):
    got = lmetrics.rewind_jsonl(path, position, max_step=3)
  assert 'does not hold the 3 records' in caplog.text
  want = ''.join(edited[:3]).encode()
  assert pathlib.Path(path).read_bytes() == want
  assert got == (3, len(want), zlib.crc32(want))
  # Shorter than the position (records lost): what is there, up to step 3.
  with open(path, 'w') as f:
    f.write(''.join(lines[:2]))
  lmetrics.rewind_jsonl(path, position, max_step=3)
  assert pathlib.Path(path).read_text() == ''.join(lines[:2])


def test_rewind_without_checkpoint_starts_an_empty_log(tmp_path):
  path = str(tmp_path / 'm.jsonl')
  with open(path, 'w') as f:
    f.write(''.join(_lines(4)))
  assert lmetrics.rewind_jsonl(path, None, max_step=0) == (0, 0, 0)
  assert pathlib.Path(path).read_text() == ''
  missing = str(tmp_path / 'new.jsonl')
  assert lmetrics.rewind_jsonl(missing, None, max_step=0) == (0, 0, 0)
  assert os.path.exists(missing)
  # Without a position, up to a step: the prefix of records at most there.
  with open(path, 'w') as f:
    f.write(''.join(_lines(4)) + _lines(1, 2)[0])
  lmetrics.rewind_jsonl(path, None, max_step=2)
  assert pathlib.Path(path).read_text() == ''.join(_lines(2))


def test_exact_rewind_and_step_rewind_keep_different_records(tmp_path, caplog):
  # The log's records as they happen to be: the position (after 3 records)
  # holds a record of a step above max_step (5) before one below it, and
  # after the position comes a record of a step at most max_step. Cutting
  # at the position keeps [1, 5, 2]; keeping records while their step is
  # <= 2 would keep [1] only, and going on past 5 would keep [1, 2, 2].
  path = str(tmp_path / 'm.jsonl')
  lines = [_lines(1, s)[0] for s in (1, 5, 2)]
  after = [json.dumps({'step': 2, 'split': 'test'}) + '\n', _lines(1, 3)[0]]
  head = ''.join(lines).encode()
  position = lmetrics.JsonlPosition(3, len(head), zlib.crc32(head))
  with open(path, 'wb') as f:
    f.write(head + ''.join(after).encode())
  with caplog.at_level(logging.WARNING, logger='absl'):
    assert lmetrics.rewind_jsonl(path, position, max_step=2) == position
  assert pathlib.Path(path).read_bytes() == head
  assert caplog.text == ''  # no fallback was taken
  # The same file without a position: the step rewind keeps [1].
  with open(path, 'wb') as f:
    f.write(head + ''.join(after).encode())
  lmetrics.rewind_jsonl(path, None, max_step=2)
  assert pathlib.Path(path).read_text() == lines[0]


def _written(path, records):
  w = lmetrics.JsonlWriter(path)
  for r in records:
    w.write(r)
  w.sync()
  position, tail = w.position, w.tail
  w.close()
  return position, tail


def test_writer_tail_is_its_last_lines_also_after_reopening(tmp_path):
  path = str(tmp_path / 'm.jsonl')
  n = lmetrics.TAIL_RECORDS + 4
  _, tail = _written(path, [json.loads(x) for x in _lines(n)])
  assert tail == _lines(lmetrics.TAIL_RECORDS, start=5)
  assert lmetrics.JsonlWriter(path).tail == tail
  # NaN is written as text, as the writer writes every record.
  rec = {'step': 1, 'x': float('nan'), 'y': np.float32(0.5)}
  assert lmetrics.jsonl_line(rec) == b'{"step": 1, "x": "nan", "y": 0.5}\n'


def test_a_log_cut_inside_the_tail_is_restored_byte_for_byte(tmp_path, caplog):
  path = str(tmp_path / 'm.jsonl')
  records = [json.loads(x) for x in _lines(5)]
  records.insert(4, {'step': 4, 'split': 'test', 'loss': 0.5})
  position, tail = _written(path, records)
  whole = pathlib.Path(path).read_bytes()
  for cut in (position.size - 1, position.size - len(tail[-1]) - 3, 0):
    with open(path, 'wb') as f:
      f.write(whole[:cut])
    with caplog.at_level(logging.WARNING, logger='absl'):
      assert lmetrics.rewind_jsonl(path, position, 5, tail) == position
    assert 'restored from the checkpoint' in caplog.text
    assert pathlib.Path(path).read_bytes() == whole
    caplog.clear()
  # Damaged before the tail too (one byte of the first line changed): the
  # file is not restored exactly; its records up to the step are kept and
  # the tail's missing records are added back, by split and step.
  n = lmetrics.TAIL_RECORDS + 4
  records = [json.loads(x) for x in _lines(n)]
  records.insert(3, {'step': 3, 'split': 'test', 'loss': 0.25})
  path = str(tmp_path / 'longer.jsonl')
  position, tail = _written(path, records)
  whole = pathlib.Path(path).read_bytes()
  first = _lines(1)[0].encode()
  damaged = first.replace(b'1.0', b'2.0') + whole[len(first) : len(whole) // 2]
  with open(path, 'wb') as f:
    f.write(damaged)
  last_test = records[3]
  lmetrics.rewind_jsonl(path, position, n, tail, [records[-1], last_test])
  # The first half holds the records before the tail (which starts at
  # record 5 of 21): every record is back, the damaged first one as it is.
  assert len(damaged) > len(whole) - len(''.join(tail))
  got = lmetrics.read_jsonl(path)
  assert got == [{'step': 1, 'loss': 2.0}, *records[1:]]
  # Cut before the last test record, which is older than the tail: the
  # checkpoint's own copy of it is added back.
  with open(path, 'wb') as f:
    f.write(damaged[: len(first) + 5])
  lmetrics.rewind_jsonl(path, position, n, tail, [records[-1], last_test])
  got = lmetrics.read_jsonl(path)
  assert len(tail) == 16 and records[-16]['step'] == 5
  assert got == [{'step': 1, 'loss': 2.0}, last_test, *records[-16:]]


# Checkpoints ----------------------------------------------------------------

TASK = synthetic()
TINY = dict(
  num_devices=1,
  eval_every=0.25,
  lr=0.1,
  momentum=0.9,
  batch='stages(16@4up,32@4up)',
  log_every=1,
  checkpoint_every=2,
  keep_checkpoints=3,
  prefetch=0,
)
TIMING = {'examples_per_sec', 'steps_per_sec', 'eta_sec', 'data_wait_sec'}


def tiny(**kw):
  return TrainConfig(**{**TINY, **kw})


def _untimed(path):
  return [
    {k: v for k, v in r.items() if k not in TIMING}
    for r in lmetrics.read_jsonl(path)
  ]


def _same_leaves(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
    np.array_equal(x, y) for x, y in zip(la, lb, strict=True)
  )


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run: its result and its untimed records."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  result = train_and_evaluate(tiny(), workdir, TASK)
  return result, _untimed(result.metrics_path)


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


def _data_files(step_dir):
  """The array data files of a checkpoint's state (OCDBT ``d/`` files; the
  per-process copies are merged into ``state/d/``)."""
  return [
    os.path.join(root, name)
    for root, _, names in os.walk(os.path.join(step_dir, 'state'))
    if os.path.basename(root) == 'd'
    for name in names
  ]


def _flip_a_bit(step_dir):
  """Flips a bit in the middle of each array data file (OCDBT's own
  checksums see this one)."""
  for path in _data_files(step_dir):
    data = bytearray(pathlib.Path(path).read_bytes())
    data[len(data) // 2] ^= 0x10
    pathlib.Path(path).write_bytes(bytes(data))


def _change_a_parameter_silently(step_dir):
  """Rewrites the checkpoint, through orbax, with one bit of one parameter
  flipped and the meta (and digest) it had: storage-level checks see a
  consistent checkpoint, as after a bit flipped before it reached disk."""
  workdir = os.path.dirname(os.path.dirname(step_dir))
  step = int(os.path.basename(step_dir))
  state, meta = load_checkpoint(workdir, update=step)
  state['params']['head']['kernel'].view(np.uint32)[0, 0] ^= 1
  shutil.rmtree(step_dir)
  manager = ocp.CheckpointManager(
    os.path.dirname(step_dir), item_names=('state', 'meta')
  )
  manager.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
    ),
  )
  manager.wait_until_finished()
  manager.close()


def _truncate(step_dir):
  for path in _data_files(step_dir):
    data = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(data[: len(data) // 2])


def _garble_meta(step_dir):
  with open(os.path.join(step_dir, 'meta', 'metadata'), 'w') as f:
    f.write('{"update": 6, "exa')


def _empty_dir_above(step_dir):
  os.makedirs(os.path.join(os.path.dirname(step_dir), '8'))


# Orbax leaves an asyncio callback behind when a restore fails; harmless.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
@pytest.mark.parametrize(
  'damage, resumed_from, set_aside',
  [
    (_flip_a_bit, 4, ['6']),
    (_change_a_parameter_silently, 4, ['6']),
    (_truncate, 4, ['6']),
    (_garble_meta, 4, ['6']),
    (_empty_dir_above, 6, ['8']),
  ],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(
  tmp_path, reference, caplog, damage, resumed_from, set_aside
):
  full, records = reference
  workdir = str(tmp_path)
  train_and_evaluate(tiny(max_updates=6), workdir, TASK)
  damage(os.path.join(workdir, 'checkpoints', '6'))
  with caplog.at_level(logging.WARNING, logger='absl'):
    rest = train_and_evaluate(tiny(), workdir, TASK)
  assert rest.resumed_from == resumed_from
  assert f'checkpoint {set_aside[0]} in' in caplog.text
  assert 'is damaged and is not used' in caplog.text
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints.corrupt'))) == (
    set_aside
  )
  assert _same_leaves(rest.params, full.params)
  # Records rewound to the checkpoint used, then continued: those of the
  # uninterrupted run (the partial run's final evaluation at update 6 is the
  # periodic one of the whole run).
  assert _untimed(rest.metrics_path) == records


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_no_intact_checkpoint_is_an_error_that_moves_nothing(tmp_path):
  workdir = str(tmp_path)
  train_and_evaluate(tiny(max_updates=4), workdir, TASK)
  for step in ('2', '4'):
    _garble_meta(os.path.join(workdir, 'checkpoints', step))
  with pytest.raises(
    CheckpointError, match=r'update 4: .*update 2: .*overwrite'
  ):
    train_and_evaluate(tiny(), workdir, TASK)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  with pytest.raises(CheckpointError, match='no intact checkpoint'):
    load_meta(workdir)
  # overwrite starts afresh.
  fresh = train_and_evaluate(tiny(max_updates=2), workdir, TASK, overwrite=True)
  assert fresh.resumed_from is None and fresh.num_updates == 2


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_load_checkpoint_skips_a_damaged_newest_without_moving_it(tmp_path):
  workdir = str(tmp_path)
  run = train_and_evaluate(tiny(max_updates=4), workdir, TASK)
  _change_a_parameter_silently(os.path.join(workdir, 'checkpoints', '4'))
  state, meta = load_checkpoint(workdir)
  assert meta['update'] == 2
  with pytest.raises(CheckpointError, match='checksum'):
    load_checkpoint(workdir, update=4)
  with pytest.raises(FileNotFoundError, match='update 3'):
    load_checkpoint(workdir, update=3)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  assert not _same_leaves(state['params'], run.params)  # update 2, not 4


def test_a_timer_checkpoints_by_elapsed_time(tmp_path, reference, monkeypatch):
  full, records = reference
  # A clock that advances one second per reading: the timer reads it once
  # when created, at the end of every update and after every checkpoint, so
  # with 3 s it is due at updates 3 (clock 0 -> 3, reset at 4) and 6
  # (5, 6, 7: due; reset at 8); update 8 ends the run.
  ticks = itertools.count()
  monkeypatch.setattr(
    _checkpoint.CheckpointTimer, 'clock', staticmethod(lambda: next(ticks))
  )
  run = train_and_evaluate(
    tiny(checkpoint_every=0, checkpoint_seconds=3.0), str(tmp_path), TASK
  )
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3', '6', '8']
  # Where checkpoints fall changes nothing that is computed.
  assert _same_leaves(run.params, full.params)
  assert _untimed(run.metrics_path) == records


# The workdir: one run, one config --------------------------------------------


def test_a_finished_run_called_again_changes_nothing(tmp_path, reference):
  full, records = reference
  workdir = str(tmp_path)
  first = train_and_evaluate(tiny(), workdir, TASK)
  before = pathlib.Path(first.metrics_path).read_bytes()
  again = train_and_evaluate(tiny(), workdir, TASK)
  assert again.resumed_from == 8 and again.loop_updates == 0
  assert (
    pathlib.Path(first.metrics_path).read_bytes() == before
  )  # no second eval
  assert again.test_metrics == first.test_metrics
  assert again.train_metrics == first.train_metrics
  assert _untimed(first.metrics_path) == records


def test_a_changed_config_is_refused_naming_the_fields(tmp_path):
  workdir = str(tmp_path)
  train_and_evaluate(tiny(max_updates=2), workdir, TASK)
  config_json = pathlib.Path(tmp_path / 'config.json').read_text()
  log = pathlib.Path(tmp_path / 'metrics.jsonl').read_text()
  with pytest.raises(
    ConfigMismatchError,
    match=r'lr: 0\.1 -> 0\.2; seed: 0 -> 1\. .*overwrite=True.*'
    r"allow_changes=\('lr', 'seed'\)",
  ):
    train_and_evaluate(tiny(lr=0.2, seed=1), workdir, TASK)
  assert pathlib.Path(tmp_path / 'config.json').read_text() == config_json
  assert pathlib.Path(tmp_path / 'metrics.jsonl').read_text() == log
  # Execution fields may change; so may an allowed field.
  more = train_and_evaluate(
    tiny(max_updates=4, progress_bar=False, prefetch=2), workdir, TASK
  )
  assert more.resumed_from == 2 and more.num_updates == 4
  longer = train_and_evaluate(
    tiny(batch='stages(16@4up,32@6up)'),
    workdir,
    TASK,
    allow_changes=('batch',),
  )
  assert longer.resumed_from == 4 and longer.num_updates == 10
  saved = json.loads(pathlib.Path(tmp_path / 'config.json').read_text())
  assert saved['batch'] == 'stages(16@4up,32@6up)'


def test_overwrite_starts_afresh(tmp_path, reference):
  _, records = reference
  workdir = str(tmp_path)
  train_and_evaluate(tiny(lr=0.2, max_updates=4), workdir, TASK)
  os.makedirs(tmp_path / 'checkpoints.corrupt' / '9')
  run = train_and_evaluate(tiny(), workdir, TASK, overwrite=True)
  assert run.resumed_from is None
  assert not os.path.exists(tmp_path / 'checkpoints.corrupt')
  assert _untimed(run.metrics_path) == records


def test_leftovers_without_config_or_a_garbled_config_are_refused(tmp_path):
  os.makedirs(tmp_path / 'checkpoints' / '4')
  with pytest.raises(ConfigMismatchError, match=r'checkpoints but no config'):
    train_and_evaluate(tiny(), str(tmp_path), TASK)
  (tmp_path / 'config.json').write_text('{"lr": 0.')
  with pytest.raises(ConfigMismatchError, match=r'config\.json is not read'):
    train_and_evaluate(tiny(), str(tmp_path), TASK)


def test_callables_are_named_in_the_config_not_addressed():
  def lr(epoch):
    return 0.1

  d = tiny(lr=lr).to_dict()
  qualname = 'test_callables_are_named_in_the_config_not_addressed.<locals>.lr'
  assert d['lr'].startswith(f'<function {__name__}.{qualname} ')
  assert '0x' not in d['lr']


HOLDER = textwrap.dedent(
  """
  import os, sys
  from lrjax.train import lock_workdir
  with lock_workdir(sys.argv[1]):
    print('HELD', os.getpid(), flush=True)
    sys.stdin.read()  # until the parent closes stdin
  print('RELEASED', flush=True)
  """
)


def _holder(workdir):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.Popen(
    [sys.executable, '-c', HOLDER, workdir],
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
    env=env,
  )
  line = proc.stdout.readline().split()
  assert line[0] == 'HELD', line
  return proc, int(line[1])


def test_a_second_process_on_a_locked_workdir_fails_naming_the_holder(
  tmp_path,
):
  workdir = str(tmp_path)
  proc, pid = _holder(workdir)
  try:
    with pytest.raises(WorkdirLockedError, match=rf'in use by .*pid {pid} on'):
      train_and_evaluate(tiny(max_updates=2), workdir, TASK)
    assert not os.path.exists(tmp_path / 'config.json')
  finally:
    proc.stdin.close()
    assert proc.stdout.readline().strip() == 'RELEASED'
    proc.wait()
  # Released: the workdir is free again.
  assert train_and_evaluate(tiny(max_updates=2), workdir, TASK).num_updates == 2


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  proc, _ = _holder(str(tmp_path))
  proc.kill()  # SIGKILL: no cleanup runs; the kernel drops the lock
  proc.wait()
  with _workdir.lock_workdir(str(tmp_path)):
    pass


# A damaged log on resume -----------------------------------------------------


def _cut_in_the_train_record_of_the_last_update(path, position):
  # The log ends with the train and test records of the checkpoint's
  # update; the file loses its last line and half of the one before.
  data = pathlib.Path(path).read_bytes()[: position[1]]
  lines = data.splitlines(keepends=True)
  assert json.loads(lines[-2])['step'] == json.loads(lines[-1])['step']
  cut = len(data) - len(lines[-1]) - len(lines[-2]) // 2
  pathlib.Path(path).write_bytes(data[:cut])


def _add_a_record_after_the_checkpoint(path, position):
  # A record of the checkpoint's update written after the checkpoint (a
  # step-based rewind keeps it; the exact one drops it).
  with open(path, 'a') as f:
    f.write(json.dumps({'step': 6, 'split': 'test', 'loss': -1.0}) + '\n')


@pytest.mark.parametrize(
  'damage',
  [
    _cut_in_the_train_record_of_the_last_update,
    _add_a_record_after_the_checkpoint,
  ],
)
@pytest.mark.parametrize('finished', [False, True])
def test_a_resume_keeps_every_record_the_checkpoint_covers(
  tmp_path, reference, caplog, damage, finished
):
  full, records = reference
  workdir = str(tmp_path)
  config = tiny()
  first = train_and_evaluate(
    config if finished else tiny(max_updates=6),
    workdir,
    TASK,
  )
  update = 8 if finished else 6
  meta = load_meta(workdir)
  assert meta['update'] == update
  written = pathlib.Path(first.metrics_path).read_bytes()
  assert len(written) == meta['metrics'][1]
  damage(first.metrics_path, meta['metrics'])
  with caplog.at_level(logging.WARNING, logger='absl'):
    rest = train_and_evaluate(config, workdir, TASK)
  assert rest.resumed_from == update
  # The cut is repaired from the checkpoint's tail; the added record is
  # cut off at the exact position, no fallback taken.
  warned = 'restored from the checkpoint' in caplog.text
  assert warned == (damage is _cut_in_the_train_record_of_the_last_update)
  assert 'does not hold' not in caplog.text
  # The records up to the checkpoint are the bytes first written (timings
  # included), then those of the uninterrupted run.
  assert pathlib.Path(rest.metrics_path).read_bytes()[: len(written)] == written
  assert _untimed(rest.metrics_path) == records
  assert _same_leaves(rest.params, full.params)
  if finished:
    assert rest.loop_updates == 0
    assert rest.train_metrics == first.train_metrics
    assert rest.test_metrics == first.test_metrics
