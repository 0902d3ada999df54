"""The projected wall time on P devices, against hand-computed cases."""

import math

import pytest

from lrjax import parallel_cost as pc

LINK = pc.Link(latency_s=1e-5, bandwidth=1e9)


@pytest.mark.parametrize(
  'p, n, expected',
  [
    (1, 4e6, 0.0),
    # 2 (P - 1) alpha + 2 (P - 1) / P n / beta
    (2, 4e6, 2 * 1e-5 + 1.0 * 4e-3),
    (8, 4e6, 14 * 1e-5 + 1.75 * 4e-3),
    (512, 4e6, 1022 * 1e-5 + 2 * 511 / 512 * 4e-3),
    (64, 0.0, 126 * 1e-5),
  ],
)
def test_ring_allreduce_hand_computed(p, n, expected):
  assert pc.ring_allreduce_seconds(p, n, LINK) == pytest.approx(expected)


def test_ramp_against_decay_on_1_8_64_512_devices():
  # Smith et al.'s CIFAR-10 shape, shrunk: decay trains 100 updates at
  # B = 128; increase 50 at 128 then 10 at 640. t(b) = 1 ms + 10 us x b,
  # 1 MB of gradients over LINK, cap of 64 examples per device.
  step = pc.StepTime(1e-3, 1e-5)
  decay = [(128, 100)]
  increase = [(128, 50), (640, 10)]

  def hand(stages, p):
    total = 0.0
    for b, u in stages:
      r = min(p, b)
      m = math.ceil(b / r)
      k = math.ceil(m / 64)
      micro = math.ceil(m / k)
      ring = 2 * (r - 1) * 1e-5 + 2 * (r - 1) / r * 1e6 / 1e9
      total += u * (k * (1e-3 + 1e-5 * micro) + ring)
    return total

  # P = 1: decay 100 x 2 x (1e-3 + 64e-5) = 0.328; increase 50 x 0.00328 +
  # 10 x 10 x 0.00164 = 0.164 + 0.164 = 0.328: equal on one device.
  seconds = {}
  for p in (1, 8, 64, 512):
    d, _ = pc.project(decay, p, step, LINK, 1e6, max_device_batch=64)
    i, plans = pc.project(increase, p, step, LINK, 1e6, max_device_batch=64)
    assert d == pytest.approx(hand(decay, p))
    assert i == pytest.approx(hand(increase, p))
    seconds[p] = (d, i)
  assert seconds[1][0] == pytest.approx(0.328)
  assert seconds[1][1] == pytest.approx(0.328)
  # P = 512: decay uses 128 devices, 1 example each: 100 x (1.01e-3 + 254e-5
  # + 2 x 127/128 x 1e-3); increase's 640 on 512 devices: 2 examples each.
  assert seconds[512][0] == pytest.approx(
    100 * (1.01e-3 + 254e-5 + 2 * 127 / 128 * 1e-3)
  )
  assert plans[1].devices == 512 and plans[1].micro_batch == 2
  assert plans[1].accum_steps == 1
  # With many devices fewer updates win.
  assert seconds[64][1] < seconds[64][0]


def test_micro_batch_over_the_cap_accumulates():
  s = pc.plan_stage(
    1000, 3, 2, pc.StepTime(0.0, 1.0), LINK, 0.0, max_device_batch=64
  )
  # 500 per device, 8 micro-steps of ceil(500 / 8) = 63.
  assert (s.devices, s.micro_batch, s.accum_steps) == (2, 63, 8)
  assert s.seconds == pytest.approx(3 * (8 * 63 + 2 * 1e-5))


def test_step_time_fit_recovers_a_line_and_falls_back_through_the_origin():
  t = pc.StepTime.fit([10, 20, 40], [0.2, 0.3, 0.5])
  assert t.intercept == pytest.approx(0.1) and t.per_example == pytest.approx(
    0.01
  )
  # One micro-batch: t = b x 0.5 / 10.
  t = pc.StepTime.fit([10], [0.5])
  assert (t.intercept, t.per_example) == (0.0, pytest.approx(0.05))


def test_step_times_come_from_records_minus_each_first():
  b, t = pc.step_time_from_records(
    {
      'micro_batch': [32, 32, 32, 92, 92, 244],
      'accum_steps': [1, 1, 1, 1, 1, 2],
      'steps_per_sec': [5.0, 200.0, 100.0, 1.0, 50.0, 10.0],
    }
  )
  # 32: 1/200 and 1/100 -> median 0.0075; 92: 1/50; 244 (one record,
  # kept): 1 / (10 x 2).
  assert b == [32, 92, 244]
  assert t == pytest.approx([0.0075, 0.02, 0.05])


def test_stages_from_records_merge_runs_of_one_batch():
  # Records every 5 updates: 32 until update 10, 64 until 25, then 128
  # from 30; the updates since the previous record count at its batch.
  stages = pc.stages_from_records(
    [5, 10, 15, 20, 25, 30, 35], [32, 32, 64, 64, 64, 128, 128]
  )
  assert stages == [(32, 10), (64, 15), (128, 10)]


def test_project_grid_every_link_and_device_count():
  # 100 updates of 128 and 20 of 640, t(b) = 1e-4 s x b, 4 MB of
  # gradients. P = 1: 12.8 ms + 64 ms per update, no all-reduce:
  # 1.28 + 1.28 = 2.56 s. P = 8: 100 x 1.6 ms + 20 x 8 ms = 0.32 s of
  # compute; the ring over LINK costs 14e-5 + 1.75 x 4e-3 = 7.14 ms per
  # update, 120 updates: 0.8568 s more.
  grid = pc.project_grid(
    [(128, 100), (640, 20)],
    [1, 8],
    {'free': pc.Link(0.0, 1e9), 'ring': LINK},
    pc.StepTime(0.0, 1e-4),
    gradient_bytes=4e6,
  )
  free_1 = 2.56 + 0.0  # one device: no all-reduce on either link
  seconds = {k: {p: s for p, (s, _) in v.items()} for k, v in grid.items()}
  assert seconds['free'][1] == pytest.approx(free_1)
  assert seconds['ring'][1] == pytest.approx(free_1)
  assert seconds['free'][8] == pytest.approx(0.32 + 120 * 1.75 * 4e-3)
  assert seconds['ring'][8] == pytest.approx(0.32 + 0.8568)
  assert [s.micro_batch for s in grid['ring'][8][1]] == [16, 80]


def test_project_wall_time_pools_every_run_and_projects_each_schedule():
  # Two runs' records, the first record of each micro-batch dropped: run
  # one gives t(32) = median(1/200, 1/100) = 7.5 ms and t(64) = 1/50 = 20 ms,
  # run two (2 accumulation steps) t(64) = 1 / (20 x 2) = 25 ms. Least
  # squares through (32, 7.5 ms), (64, 20 ms), (64, 25 ms): slope = 0.32 /
  # 682.67 = 4.6875e-4, intercept = 0.0175 - 4.6875e-4 x 53.33 = -0.0075 < 0,
  # so the line through the origin: t1 = (32 x 0.0075 + 64 x 0.02 + 64 x
  # 0.025) / (32^2 + 2 x 64^2) = 3.12 / 9216.
  records = [
    {
      'micro_batch': [32, 32, 32, 64, 64],
      'accum_steps': [1, 1, 1, 1, 1],
      'steps_per_sec': [1.0, 200.0, 100.0, 1.0, 50.0],
    },
    {
      'micro_batch': [64, 64],
      'accum_steps': [2, 2],
      'steps_per_sec': [1.0, 20.0],
    },
  ]
  t1 = 3.12 / 9216
  out = pc.project_wall_time(
    records,
    {'decay': [(128, 10)], 'increase': [(64, 4), (256, 2)]},
    [1, 4],
    {'ring': LINK},
    gradient_bytes=1e6,
    max_device_batch=128,
  )
  assert out['step_time'] == {
    'intercept': 0.0,
    'per_example': pytest.approx(t1),
  }
  assert out['step_time_points'] == [(32, 0.0075), (64, 0.02), (64, 0.025)]
  assert out['devices'] == [1, 4] and out['gradient_bytes'] == 1e6
  assert out['links'] == {
    'ring': {'latency_s': 1e-5, 'bandwidth': 1e9, 'name': ''}
  }
  decay, increase = out['rows']
  assert (decay['schedule'], decay['num_updates']) == ('decay', 10)
  assert (increase['schedule'], increase['num_updates']) == ('increase', 6)
  # P = 1: decay 10 x 128 t1; increase 4 x 64 t1 + 2 x (2 micro-steps of
  # 128) t1. P = 4: micro-batches 32, 16 and 64; ring 6e-5 + 1.5e-3.
  ring = 6e-5 + 1.5e-3
  assert decay['ring_1'] == pytest.approx(1280 * t1)
  assert increase['ring_1'] == pytest.approx((256 + 512) * t1)
  assert decay['ring_4'] == pytest.approx(10 * (32 * t1 + ring))
  assert increase['ring_4'] == pytest.approx(
    4 * (16 * t1 + ring) + 2 * (64 * t1 + ring)
  )
  assert [s['accum_steps'] for s in increase['ring_1_stages']] == [1, 2]
  assert [s['micro_batch'] for s in increase['ring_4_stages']] == [16, 64]


@pytest.mark.parametrize(
  'call, match',
  [
    (lambda: pc.Link(-1.0, 1e9), 'latency_s'),
    (lambda: pc.Link(0.0, 0.0), 'bandwidth'),
    (lambda: pc.ring_allreduce_seconds(0, 1.0, LINK), 'num_devices'),
    (lambda: pc.plan_stage(0, 1, 1, pc.StepTime(0, 1), LINK, 0), 'batch'),
    (
      lambda: pc.plan_stage(8, 1, 1, pc.StepTime(0, 1), LINK, 0, 0),
      'max_device_batch',
    ),
    (lambda: pc.StepTime.fit([], []), 'same'),
    (lambda: pc.step_time_from_records({}), 'micro_batch'),
    (lambda: pc.stages_from_records([1, 2], [8]), 'same length'),
    (
      lambda: pc.project_wall_time(
        [{'micro_batch': [], 'accum_steps': [], 'steps_per_sec': []}],
        {},
        [1],
        pc.LINKS,
        0,
      ),
      'no record',
    ),
  ],
)
def test_bad_input_names_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()
