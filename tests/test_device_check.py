"""benchmarks.device_check at its tiny size on the CPU: every row, finite.

The script is for a GPU lent for minutes; here it runs in process at the
tiny size (well under a minute) so that it is known to work before then.
"""

import math

import pytest

from benchmarks import device_check

CHECKS = [
  'lm bf16 (shard_map)',
  'lm shard_map',
  'lm pmap',
  'lm pmap / shard_map',
  'wrn16_4',
  'lm noise tracker',
  'lm noise with / without',
]


def test_device_check_tiny_gives_every_row(tmp_path):
  out = tmp_path / 'table.md'
  # A peak of 1 TFLOP/s given: the CPU's is unknown, and MFU is then
  # checkable by hand.
  rows = device_check.main(['--size=tiny', f'--out={out}', '--peak_tflops=1'])
  assert [r.check for r in rows] == CHECKS
  for r in rows:
    assert math.isfinite(r.value) and r.value > 0, r
  by = {r.check: r for r in rows}
  # The tiny LM (1 layer, d 32, MLP ratio 4, 256 bytes, T 16): N_mm =
  # 1 (4 + 8) 32^2 + 256 x 32 = 20480; F = 6 N_mm + 12 L d T = 129024.
  lm = by['lm bf16 (shard_map)']
  assert '0.129 MFLOP/token' in lm.detail
  assert lm.mfu == pytest.approx(lm.value * 129024 / 1e12, rel=1e-12)
  # tokens/s = steps/s x batch 8 x T 16.
  assert lm.value == pytest.approx(by['lm shard_map'].value * 128, rel=1e-12)
  assert by['lm pmap / shard_map'].value == pytest.approx(
    by['lm pmap'].value / by['lm shard_map'].value, rel=1e-12
  )
  assert by['lm noise with / without'].value == pytest.approx(
    by['lm noise tracker'].value / by['lm shard_map'].value, rel=1e-12
  )
  assert by['wrn16_4'].mfu is not None and by['wrn16_4'].mfu > 0
  # The written table: a header line and one row per check, each with a
  # number in its value column.
  lines = out.read_text().splitlines()
  assert lines[0].startswith('Device check (tiny): backend cpu')
  body = [line for line in lines if line.startswith('| ') and '---' not in line]
  assert [line.split(' | ')[0][2:] for line in body[1:]] == CHECKS
  for line in body[1:]:
    value = float(line.split(' | ')[1].replace(',', ''))
    assert math.isfinite(value) and value > 0, line


def test_unknown_device_has_no_mfu():
  assert device_check.device_peak_flops('cpu') is None
  assert device_check.device_peak_flops('NVIDIA H100 80GB HBM3') == 989e12
  assert device_check.device_peak_flops('NVIDIA H200') == 989e12
  assert device_check.device_peak_flops('NVIDIA A100-SXM4-40GB') == 312e12
  assert device_check.device_peak_flops('cpu', 2.5) == 2.5e12
