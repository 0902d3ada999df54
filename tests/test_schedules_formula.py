"""Formula-based policies against hand-written NumPy closed forms, under jit.

Each reference is written from the published definition (PyTorch's
documented formulas for torch.optim.lr_scheduler, Smith 2017, the LRBench
paper and code's formulas), in float64 NumPy, independently of lrjax.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import schedules as S

BIG = 2**31 - 1


def run(policy, ts):
  """Evaluates `policy` on a vector of t with one jit (int32 or float32)."""
  ts = np.asarray(ts)
  dtype = jnp.int32 if np.issubdtype(ts.dtype, np.integer) else jnp.float32
  out = jax.jit(policy)(jnp.asarray(ts, dtype))
  assert out.dtype == jnp.float32
  return np.asarray(out, np.float64)


def check(policy, ts, expected, rtol=2e-6, atol=1e-7):
  np.testing.assert_allclose(run(policy, ts), expected, rtol=rtol, atol=atol)


def test_constant_and_fixed():
  ts = [0, 1, 7, 1000, BIG]
  check(S.constant(0.1), ts, [0.1] * 5)
  check(S.parse('fixed(0.3)'), ts, [0.3] * 5)
  out = S.constant(0.1)(3)
  assert out.shape == () and out.dtype == jnp.float32


def test_step_matches_steplr():
  ts = np.array([0, 1, 29, 30, 31, 59, 60, 89, 90, BIG])
  # StepLR: lr0 * gamma ** (epoch // step_size).
  check(S.step(0.1, length=30, gamma=0.5), ts, 0.1 * 0.5 ** (ts // 30))
  check(S.step(0.1, length=30), ts, 0.1 * 0.1 ** (ts // 30))


def test_step_float_epochs():
  ts = np.array([0.0, 1.5, 2.999, 3.0, 4.5, 6.0])
  check(
    S.step(1.0, length=1.5, gamma=0.5),
    ts,
    0.5 ** np.floor(ts / 1.5 + 1e-9),
    rtol=1e-5,
  )


def test_multistep_matches_multisteplr():
  ms = [60, 120, 160]
  ts = np.array([0, 59, 60, 61, 119, 120, 159, 160, 161, 10**6, BIG])
  count = np.array([sum(m <= t for m in ms) for t in ts])  # bisect_right
  check(S.multistep(0.1, milestones=ms, gamma=0.2), ts, 0.1 * 0.2**count)
  check(S.multistep(0.1, milestones=ms), ts, 0.1 * 0.1**count)


def test_multistep_factors_and_float_milestones():
  s = S.multistep(1.0, milestones=(2.5, 7), factors=(0.5, 0.1))
  check(s, [0, 2, 3, 6, 7, 100], [1, 1, 0.5, 0.5, 0.05, 0.05])
  check(s, [0.0, 2.49, 2.5, 6.99, 7.0], [1, 1, 0.5, 0.5, 0.05])


@pytest.mark.parametrize('staircase', [False, True])
def test_exponential(staircase):
  ts = np.array([0, 1, 2, 3, 4, 5, 100, BIG])
  e = ts // 2 if staircase else ts / 2
  check(
    S.exponential(0.1, gamma=0.9, length=2, staircase=staircase),
    ts,
    0.1 * 0.9**e,
    rtol=1e-5,
  )
  # ExponentialLR(gamma): lr0 * gamma ** epoch.
  check(S.exponential(0.1, gamma=0.95), ts[:6], 0.1 * 0.95 ** ts[:6])


def test_inverse_time():
  ts = np.array([0, 1, 10, 1000, BIG])
  check(
    S.inverse_time(0.01, gamma=1e-4, power=0.75),
    ts,
    0.01 * (1 + 1e-4 * ts) ** -0.75,
    rtol=1e-5,
  )


def test_polynomial_matches_polynomiallr():
  ts = np.array([0, 1, 5, 9, 10, 11, BIG])
  c = np.minimum(ts, 10)
  # PolynomialLR(total_iters=10, power=2): lr0 * (1 - min(t, T)/T) ** p.
  check(S.polynomial(0.1, length=10, power=2), ts, 0.1 * (1 - c / 10) ** 2)
  check(
    S.polynomial(0.1, length=10, end=0.01, power=0.5),
    ts,
    0.09 * (1 - c / 10) ** 0.5 + 0.01,
    rtol=1e-5,
  )


def test_linear_matches_linearlr():
  ts = np.array([0, 1, 2, 4, 5, 6, BIG])
  # LinearLR(start_factor=1/3, end_factor=1, total_iters=5) on base 0.3.
  f = 1 / 3 + (1 - 1 / 3) * np.minimum(ts, 5) / 5
  check(S.linear(0.1, end=0.3, length=5), ts, 0.3 * f, rtol=1e-5)


def test_sigmoid_matches_lrbench_sig():
  ts = np.array([0, 5, 10, 15, 20, BIG])
  # LRBench SIG: k0 / (1 + exp(-gamma (t - l))).
  check(
    S.sigmoid(0.1, gamma=0.5, center=10),
    ts,
    0.1 / (1 + np.exp(-0.5 * (ts - 10.0))),
    rtol=1e-5,
  )
  check(
    S.sigmoid(0.1, gamma=-0.5, center=10, low=0.01),
    ts[:-1],
    0.01 + 0.09 / (1 + np.exp(0.5 * (ts[:-1] - 10.0))),
    rtol=1e-5,
  )
  check(S.sigmoid(0.1, gamma=-0.5, center=10, low=0.01), [BIG], [0.01])


def test_cosine_matches_cosineannealinglr_until_length():
  ts = np.array([0, 1, 25, 45, 89, 90, 91, 1000, BIG])
  c = np.minimum(ts, 90)
  # CosineAnnealingLR(T_max=90, eta_min=0.001) closed form for t <= T_max.
  expected = 0.001 + (0.4 - 0.001) * (1 + np.cos(np.pi * c / 90)) / 2
  check(S.cosine(0.4, length=90, end=0.001), ts, expected, rtol=1e-5)


def _sgdr(ts, t0, mult, decay, peak, end):
  """CosineAnnealingWarmRestarts' documented T_cur / T_i, peak * decay**i."""
  out = []
  for t in ts:
    if mult == 1:
      i, tcur, ti = t // t0, t % t0, t0
    else:
      i = int(math.floor(math.log(t / t0 * (mult - 1) + 1, mult) + 1e-12))
      tcur = t - t0 * (mult**i - 1) / (mult - 1)
      ti = t0 * mult**i
    out.append(
      end + (peak * decay**i - end) * (1 + math.cos(math.pi * tcur / ti)) / 2
    )
  return np.array(out)


def test_cosine_restarts_matches_pytorch_and_timm():
  ts = np.array([0, 1, 9, 10, 11, 29, 30, 31, 69, 70, 150])
  check(
    S.cosine_restarts(0.1, period=10, end=0.001),
    ts,
    _sgdr(ts, 10, 1, 1.0, 0.1, 0.001),
    rtol=1e-5,
  )
  check(
    S.cosine_restarts(0.1, period=10, mult=2, decay=0.5),
    ts,
    _sgdr(ts, 10, 2, 0.5, 0.1, 0.0),
    rtol=1e-5,
    atol=1e-7,
  )
  s = S.cosine_restarts(0.1, period=10, mult=3)
  check(s, [0, 10, 40, 130, 39], _sgdr([0, 10, 40, 130, 39], 10, 3, 1, 0.1, 0))


def _phases_ref(ts, phases, anneal):
  """PyTorch OneCycleLR's documented phase walk: (end_step, start, end)."""
  out = []
  for t in ts:
    start = 0.0
    for i, (end, a, b) in enumerate(phases):
      if t <= end or i == len(phases) - 1:
        x = min((t - start) / (end - start), 1.0)
        if anneal == 'cos':
          out.append(b + (a - b) / 2 * (math.cos(math.pi * x) + 1))
        else:
          out.append((b - a) * x + a)
        break
      start = end
  return np.array(out)


@pytest.mark.parametrize('anneal', ['cos', 'linear'])
@pytest.mark.parametrize('three', [False, True])
def test_onecycle_matches_onecyclelr(anneal, three):
  ts = np.array([0, 1, 14, 29, 30, 57, 58, 60, 99, 150])
  # max_lr 0.1, total 100, pct 0.3: e1 = 29, initial 0.004, min 4e-7.
  if three:
    lr = [(29, 0.004, 0.1), (58, 0.1, 0.004), (99, 0.004, 4e-7)]
    mom = [(29, 0.95, 0.85), (58, 0.85, 0.95), (99, 0.95, 0.95)]
  else:
    lr = [(29, 0.004, 0.1), (99, 0.1, 4e-7)]
    mom = [(29, 0.95, 0.85), (99, 0.85, 0.95)]
  s = S.onecycle(0.1, length=100, anneal=anneal, three_phase=three, offset=1)
  check(s, ts, _phases_ref(ts, lr, anneal), rtol=2e-5, atol=1e-9)
  m = S.onecycle_momentum(100, anneal=anneal, three_phase=three, offset=1)
  check(m, ts, _phases_ref(ts, mom, anneal), rtol=2e-6)


def test_onecycle_literal_table():
  # Worked by hand: max 1, T=11, pct 0.2 -> e1 = 1.2; initial 0.04, min 4e-6;
  # linear: t=1: 0.04 + 0.96/1.2; t=6: 1 + (4e-6 - 1) * 4.8/8.8.
  s = S.onecycle(1.0, length=11, pct_start=0.2, anneal='linear', offset=1)
  check(
    s,
    [0.0, 1.0, 1.2, 6.0, 10.0, 11.0],
    [0.04, 0.84, 1.0, 1 + (4e-6 - 1) * 4.8 / 8.8, 4e-6, 4e-6],
    rtol=1e-5,
  )


@pytest.mark.parametrize('shape', ['linear', 'cosine', 'sqrt'])
def test_wsd(shape):
  ts = np.array([0, 5, 10, 50, 79, 80, 90, 99, 100, 200])
  x = np.clip((ts - 80) / 20, 0, 1)
  g = {
    'linear': 1 - x,
    'cosine': (1 + np.cos(np.pi * x)) / 2,
    'sqrt': 1 - np.sqrt(x),
  }[shape]
  expected = np.where(ts < 80, 1.0, 0.01 + 0.99 * g)
  expected = np.where(ts < 10, 0.1 + 0.9 * ts / 10, expected)
  check(
    S.wsd(1.0, length=100, cooldown=20, warmup=10, end=0.01, shape=shape),
    ts,
    expected,
    rtol=1e-5,
  )


def test_tanh_decay():
  ts = np.array([0, 10, 50, 100, 101, BIG])
  x = -6 + 9 * np.minimum(ts, 100) / 100
  check(
    S.tanh_decay(0.1, length=100),
    ts,
    0.1 * (1 - np.tanh(x)) / 2,
    rtol=1e-5,
    atol=1e-8,
  )


def _clr(ts, base, top, up, down, mode, gamma=1.0):
  """PyTorch CyclicLR's documented formula (Smith 2017)."""
  total = up + down
  ratio = up / total
  cycle = np.floor(1 + ts / total)
  x = 1.0 + ts / total - cycle
  sf = np.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
  scale = {
    'triangular': 1.0,
    'triangular2': 1 / 2.0 ** (cycle - 1),
    'exp_range': gamma**ts,
  }[mode]
  return base + (top - base) * sf * scale


def test_triangular_family_matches_cycliclr():
  ts = np.arange(0, 41)
  check(
    S.triangular(0.1, high=1.0, length=5),
    ts,
    _clr(ts, 0.1, 1.0, 5, 5, 'triangular'),
    rtol=1e-5,
  )
  check(
    S.triangular2(0.1, high=1.0, length=5),
    ts,
    _clr(ts, 0.1, 1.0, 5, 5, 'triangular2'),
    rtol=1e-5,
  )
  check(
    S.exp_range(0.1, high=1.0, length=5, gamma=0.99),
    ts,
    _clr(ts, 0.1, 1.0, 5, 5, 'exp_range', 0.99),
    rtol=1e-5,
  )
  check(
    S.triangular(0.1, high=1.0, length=3, length_down=7),
    ts,
    _clr(ts, 0.1, 1.0, 3, 7, 'triangular'),
    rtol=1e-5,
  )


def _lrbench(name, ts, k0, k1, l, gamma=1.0):  # noqa: E741
  """LRBench's cyclic formulas (Wu et al. 2019), vectorised in float64."""
  t = ts.astype(np.float64)
  p = 2.0 * l
  tri = lambda s: (2 / np.pi) * np.abs(np.arcsin(np.sin(np.pi * s / p)))  # noqa: E731
  sin = lambda s: np.abs(np.sin(np.pi * s / p))  # noqa: E731
  cos = lambda s: 0.5 * (1 + np.cos(np.pi * s / l))  # noqa: E731
  upcos = lambda s: 0.5 * (1 + np.cos(np.pi * (s / l + 1.0)))  # noqa: E731
  frac = -t / l - np.floor(-t / l)
  table = {
    'TRI': tri(t),
    'TRI2': tri(t) / 2 ** np.floor(t / p),
    'TRIEXP': tri(t) * gamma**t,
    'DTRI': tri(t + l),
    'DTRI2': tri(t + l) / 2 ** np.floor((t + l) / p),
    'DTRIEXP': tri(t + l) * gamma**t,
    'SIN': sin(t),
    'SIN2': sin(t) / 2 ** np.floor(t / p),
    'SINEXP': sin(t) * gamma**t,
    'DSIN': sin(t + l),
    'DSIN2': sin(t + l) / 2 ** np.floor((t + l) / p),
    'DSINEXP': sin(t + l) * gamma**t,
    'COS': cos(t),
    'COS2': cos(t) / 2 ** np.floor((t + l) / (2 * l)),
    'COSEXP': cos(t) * gamma**t,
    'UPCOS': upcos(t),
    'UPCOS2': upcos(t) / 2 ** np.floor(t / (2 * l)),
    'UPCOSEXP': upcos(t) * gamma**t,
    'RSW': frac,
    'RSW2': frac / 2 ** np.floor(t / l),
    'RSWEXP': frac * gamma**t,
    'SINRSW': np.sin(np.pi / 2 * frac),
    'SINRSW2': np.sin(np.pi / 2 * frac) / 2 ** np.floor(t / l),
    'SINRSWEXP': np.sin(np.pi / 2 * frac) * gamma**t,
    'COSRSW': 0.5 * (1 - np.cos(np.pi * frac)),
    'COSRSW2': 0.5 * (1 - np.cos(np.pi * frac)) / 2 ** np.floor(t / l),
    'COSRSWEXP': 0.5 * (1 - np.cos(np.pi * frac)) * gamma**t,
  }
  return (k1 - k0) * table[name] + k0


LRBENCH = [
  ('TRI', 'triangular', {}),
  ('TRI2', 'triangular', {'amplitude': 'half'}),
  ('TRIEXP', 'triangular', {'amplitude': 'exp', 'gamma': 0.97}),
  ('DTRI', 'triangular', {'phase': 'down'}),
  ('DTRI2', 'triangular', {'phase': 'down', 'amplitude': 'half'}),
  (
    'DTRIEXP',
    'triangular',
    {'phase': 'down', 'amplitude': 'exp', 'gamma': 0.97},
  ),
  ('SIN', 'sine', {}),
  ('SIN2', 'sine', {'amplitude': 'half'}),
  ('SINEXP', 'sine', {'amplitude': 'exp', 'gamma': 0.97}),
  ('DSIN', 'sine', {'phase': 'down'}),
  ('DSIN2', 'sine', {'phase': 'down', 'amplitude': 'half'}),
  ('DSINEXP', 'sine', {'phase': 'down', 'amplitude': 'exp', 'gamma': 0.97}),
  ('COS', 'cosine_cyclic', {}),
  ('COS2', 'cosine_cyclic', {'amplitude': 'half'}),
  ('COSEXP', 'cosine_cyclic', {'amplitude': 'exp', 'gamma': 0.97}),
  ('UPCOS', 'cosine_cyclic', {'phase': 'up'}),
  ('UPCOS2', 'cosine_cyclic', {'phase': 'up', 'amplitude': 'half'}),
  (
    'UPCOSEXP',
    'cosine_cyclic',
    {'phase': 'up', 'amplitude': 'exp', 'gamma': 0.97},
  ),
]


@pytest.mark.parametrize(
  'lrbench,builder,kw', LRBENCH, ids=[x[0] for x in LRBENCH]
)
def test_cyclic_families_match_lrbench(lrbench, builder, kw):
  ts = np.arange(0, 45)  # every boundary of three cycles of 2 * 6.
  s = getattr(S, builder)(0.01, high=0.1, length=6, **kw)
  check(s, ts, _lrbench(lrbench, ts, 0.01, 0.1, 6, 0.97), rtol=1e-5, atol=1e-8)


RESTARTS = [
  ('RSW', {}),
  ('RSW2', {'amplitude': 'half'}),
  ('RSWEXP', {'amplitude': 'exp', 'gamma': 0.97}),
  ('SINRSW', {'shape': 'sine'}),
  ('SINRSW2', {'shape': 'sine', 'amplitude': 'half'}),
  ('SINRSWEXP', {'shape': 'sine', 'amplitude': 'exp', 'gamma': 0.97}),
  ('COSRSW', {'shape': 'cosine'}),
  ('COSRSW2', {'shape': 'cosine', 'amplitude': 'half'}),
  ('COSRSWEXP', {'shape': 'cosine', 'amplitude': 'exp', 'gamma': 0.97}),
]


@pytest.mark.parametrize('lrbench,kw', RESTARTS, ids=[x[0] for x in RESTARTS])
def test_restart_families_match_lrbench_off_restarts(lrbench, kw):
  ts = np.arange(0, 31)
  s = S.sawtooth(0.01, high=0.1, length=5, **kw)
  got = run(s, ts)
  ref = _lrbench(lrbench, ts, 0.01, 0.1, 5, 0.97)
  off = ts % 5 != 0
  np.testing.assert_allclose(got[off], ref[off], rtol=1e-5, atol=1e-8)
  # At a restart lrjax gives the new cycle's start (documented divergence).
  k = ts[~off] // 5
  scale = {'const': 1.0, 'half': 0.5**k, 'exp': 0.97 ** ts[~off]}[
    kw.get('amplitude', 'const')
  ]
  np.testing.assert_allclose(got[~off], 0.01 + 0.09 * scale, rtol=1e-5)


def test_cyclic_float_epochs():
  ts = np.array([0.0, 2.5, 5.0, 7.5, 10.0, 12.5])
  check(
    S.triangular(0.0, high=1.0, length=5),
    ts,
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.5],
    rtol=1e-6,
  )


def test_validation_messages_name_the_argument():
  with pytest.raises(ValueError, match='length=0'):
    S.step(0.1, length=0)
  with pytest.raises(ValueError, match='gamma=1.5'):
    S.step(0.1, length=3, gamma=1.5)
  with pytest.raises(ValueError, match='strictly increasing'):
    S.multistep(0.1, milestones=(5, 3))
  with pytest.raises(ValueError, match='either gamma or factors'):
    S.multistep(0.1, milestones=(5,), gamma=0.5, factors=(0.1,))
  with pytest.raises(ValueError, match='low=1.0 must be <= high'):
    S.triangular(1.0, high=0.1, length=3)
  with pytest.raises(ValueError, match='mult=0.5 must be >= 1'):
    S.cosine_restarts(0.1, period=10, mult=0.5)
  with pytest.raises(ValueError, match='pct_start'):
    S.onecycle(0.1, length=3, pct_start=0.2, offset=1)
  with pytest.raises(ValueError, match='length includes both'):
    S.wsd(1.0, length=10, cooldown=8, warmup=5)
  with pytest.raises(ValueError, match='value=nan must be finite'):
    S.constant(float('nan'))
  with pytest.raises(ValueError, match="amplitude='x'"):
    S.sine(0.0, high=1.0, length=2, amplitude='x')


# Values printed by real PyTorch 2.13.0 (CPU wheel, throwaway venv; torch is
# not a dependency): the learning rate (or momentum) of an SGD optimizer at
# each of the first steps, `scheduler.step()` after every `optimizer.step()`.
TORCH_TABLES = [
  (
    'step',
    S.step(0.1, length=3, gamma=0.5),
    [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125],
  ),
  (
    'multistep',
    S.multistep(0.1, milestones=(2, 5, 7), gamma=0.2),
    [0.1, 0.1, 0.02, 0.02, 0.02, 0.004, 0.004, 0.0008, 0.0008, 0.0008],
  ),
  (
    'exponential',
    S.exponential(0.1, gamma=0.9),
    [0.1, 0.09, 0.081, 0.0729, 0.06561, 0.059049],
  ),
  (
    'polynomial',
    S.polynomial(0.1, length=6, power=2),
    [
      0.1,
      0.06944444444,
      0.04444444444,
      0.025,
      0.01111111111,
      0.002777777778,
      0,
      0,
      0,
    ],
  ),
  (
    'cosine',
    S.cosine(0.1, length=8, end=0.001),
    [
      0.1,
      0.09623203686,
      0.08550178567,
      0.0694428299,
      0.0505,
      0.0315571701,
      0.01549821433,
      0.004767963141,
      0.001,
    ],
  ),
  (
    'sgdr',
    S.cosine_restarts(0.1, period=3, mult=2, end=0.01),
    [
      0.1,
      0.0775,
      0.0325,
      0.1,
      0.09397114317,
      0.0775,
      0.055,
      0.0325,
      0.01602885683,
      0.1,
      0.09846666218,
      0.09397114317,
      0.08681980515,
      0.0775,
      0.06664685703,
      0.055,
      0.04335314297,
      0.0325,
      0.02318019485,
      0.01602885683,
      0.01153333782,
      0.1,
    ],
  ),
  (
    'linear',
    S.linear(0.025, end=0.1, length=4),
    [0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1, 0.1],
  ),
  (
    'cyclic2',
    S.triangular(0.01, high=0.1, length=2, length_down=3, amplitude='half'),
    [
      0.01,
      0.055,
      0.1,
      0.07,
      0.04,
      0.01,
      0.0325,
      0.055,
      0.04,
      0.025,
      0.01,
      0.02125,
      0.0325,
      0.025,
      0.0175,
      0.01,
    ],
  ),
  (
    'cyclic_exp',
    S.triangular(0.01, high=0.1, length=3, amplitude='exp', gamma=0.9),
    [
      0.01,
      0.037,
      0.0586,
      0.07561,
      0.049366,
      0.0277147,
      0.01,
      0.024348907,
      0.0358280326,
      0.04486784401,
    ],
  ),
  (
    'onecycle',
    S.onecycle(0.1, length=10, pct_start=0.25, offset=1),
    [
      0.004,
      0.076,
      0.09890738441,
      0.09045088792,
      0.0750001,
      0.05522660226,
      0.03454941208,
      0.01654380351,
      0.004323109827,
      4e-07,
    ],
  ),
  (
    'onecycle_momentum',
    S.onecycle_momentum(10, pct_start=0.25, offset=1),
    [
      0.95,
      0.875,
      0.85109262,
      0.8595491503,
      0.875,
      0.8947735768,
      0.9154508497,
      0.9334565303,
      0.9456772729,
      0.95,
    ],
  ),
  (
    'onecycle3',
    S.onecycle(
      0.1,
      length=12,
      pct_start=0.25,
      anneal='linear',
      three_phase=True,
      offset=1,
    ),
    [
      0.004,
      0.052,
      0.1,
      0.052,
      0.004,
      0.003428628571,
      0.002857257143,
      0.002285885714,
      0.001714514286,
      0.001143142857,
      0.0005717714286,
      4e-07,
    ],
  ),
  (
    'onecycle3_momentum',
    S.onecycle_momentum(
      12, pct_start=0.25, anneal='linear', three_phase=True, offset=1
    ),
    [0.95, 0.9, 0.85, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95],
  ),
]


@pytest.mark.parametrize(
  'name,policy,values', TORCH_TABLES, ids=[x[0] for x in TORCH_TABLES]
)
def test_matches_pytorch_printed_values(name, policy, values):
  del name
  check(policy, np.arange(len(values)), values, rtol=2e-6, atol=2e-8)


def test_cosine_holds_its_floor_where_pytorch_turns_up():
  # PyTorch CosineAnnealingLR(T_max=8, eta_min=0.001), steps 9..12 (printed
  # by PyTorch 2.13.0): the cosine comes back up; lrjax holds the floor.
  torch_after = [0.004767963141, 0.01549821433, 0.0315571701, 0.0505]
  # The printed values are PyTorch's documented closed form, eta_min +
  # (eta_max - eta_min) (1 + cos(pi t / T_max)) / 2, continued past T_max.
  t = np.arange(9, 13)
  np.testing.assert_allclose(
    torch_after, 0.001 + 0.099 * (1 + np.cos(np.pi * t / 8)) / 2, rtol=1e-9
  )
  got = run(S.cosine(0.1, length=8, end=0.001), t)
  np.testing.assert_allclose(got, 0.001, rtol=1e-6)


def test_cos_period_follows_lrbench_code_not_paper():
  # Decision (documented in cosine_cyclic): `length` is the half period, as
  # in LRBench's code cos(pi t / l), so COS, SIN and TRI with the same
  # length share period 2 * length: high at 0, 2l, 4l; low at l, 3l.
  ts = np.array([0, 6, 12, 18, 24])
  for p in (
    S.cosine_cyclic(0.01, high=0.1, length=6),
    S.sine(0.01, high=0.1, length=6, phase='down'),
    S.triangular(0.01, high=0.1, length=6, phase='down'),
  ):
    check(p, ts, [0.1, 0.01, 0.1, 0.01, 0.1], rtol=1e-6)


def test_onecycle_default_matches_optax_cosine_onecycle():
  # offset=0: phase ends at pct * length and length, in units of t.
  ref = optax.cosine_onecycle_schedule(
    transition_steps=100,
    peak_value=0.1,
    pct_start=0.3,
    div_factor=25.0,
    final_div_factor=1e4,
  )
  ts = np.array([0, 1, 15, 29, 30, 31, 65, 99, 100, 150])
  check(
    S.onecycle(0.1, length=100),
    ts,
    [float(ref(int(t))) for t in ts],
    rtol=2e-5,
    atol=1e-9,
  )
  m = S.onecycle_momentum(100)
  x = np.clip(ts / 30, 0, 1)
  y = np.clip((ts - 30) / 70, 0, 1)
  expected = np.where(
    ts <= 30,
    0.85 + 0.1 * (1 + np.cos(np.pi * x)) / 2,
    0.95 - 0.1 * (1 + np.cos(np.pi * y)) / 2,
  )
  check(m, ts, expected, rtol=2e-6)
