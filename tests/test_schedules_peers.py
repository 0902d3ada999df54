"""What optax, timm, Hugging Face and PyTorch users expect, against their values.

Each reference is computed here, independently of lrjax: optax's own
functions (a dependency, so its values are the peer's own), or the peer's
documented formula written out in float64 NumPy / Python (timm's
`_get_lr` of CosineLRScheduler, TanhLRScheduler and PolyLRScheduler, Hugging
Face's `_get_wsd_scheduler_lambda` and `_get_inverse_sqrt_schedule_lr_lambda`,
PyTorch's `CyclicLR.get_lr` with `cycle_momentum=True`, the Transformer
paper's formula). torch, timm and transformers are not installed here, so
their code is restated from its published source, not imported.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import schedules as S


def run(policy, ts):
  """`policy` on a vector of t, under one jit (int32 or float32 t)."""
  ts = np.asarray(ts)
  dtype = jnp.int32 if np.issubdtype(ts.dtype, np.integer) else jnp.float32
  out = jax.jit(policy)(jnp.asarray(ts, dtype))
  assert out.dtype == jnp.float32
  return np.asarray(out, np.float64)


def optax_values(schedule, ts):
  return np.asarray([float(schedule(int(t))) for t in ts], np.float64)


# optax: cosine exponent, growth, and the name table of lrjax.schedules.

STEPS = np.array([0, 1, 2, 7, 49, 50, 51, 99, 100, 101, 150, 199, 200, 400])


@pytest.mark.parametrize('exponent', [0.5, 1.0, 2.0, 3.0])
def test_cosine_exponent_matches_optax(exponent):
  ref = optax.cosine_decay_schedule(
    init_value=0.4, decay_steps=100, alpha=0.1, exponent=exponent
  )
  # optax's documented formula, float64: alpha I + (1 - alpha) I h^p.
  x = np.minimum(STEPS, 100) / 100
  closed = 0.4 * (0.1 + 0.9 * (0.5 * (1 + np.cos(np.pi * x))) ** exponent)
  got = run(S.cosine(0.4, length=100, end=0.04, exponent=exponent), STEPS)
  np.testing.assert_allclose(got, closed, rtol=1e-6, atol=1e-9)
  # optax evaluates h in float32: near the floor its own error is ~1e-7.
  np.testing.assert_allclose(
    got, optax_values(ref, STEPS), rtol=2e-6, atol=2e-7
  )


@pytest.mark.parametrize('staircase', [False, True])
def test_exponential_growth_matches_optax(staircase):
  # decay_rate > 1: warm-up by growth, end_value the cap (optax's rule).
  ref = optax.exponential_decay(
    init_value=0.001,
    transition_steps=5,
    decay_rate=2.0,
    staircase=staircase,
    end_value=0.1,
  )
  ts = np.arange(0, 60)
  p = np.floor(ts / 5) if staircase else ts / 5
  closed = np.minimum(0.001 * 2.0**p, 0.1)
  got = run(
    S.exponential(0.001, gamma=2, length=5, staircase=staircase, end=0.1), ts
  )
  np.testing.assert_allclose(got, closed, rtol=5e-7)
  np.testing.assert_allclose(got, optax_values(ref, ts), rtol=2e-6)
  assert got[-1] == pytest.approx(0.1) and np.all(np.diff(got) >= 0)


def test_exponential_decay_floor_matches_optax():
  ref = optax.exponential_decay(
    init_value=0.1, transition_steps=3, decay_rate=0.5, end_value=0.01
  )
  ts = np.arange(0, 40)
  got = run(S.exponential(0.1, gamma=0.5, length=3, end=0.01), ts)
  np.testing.assert_allclose(got, np.maximum(0.1 * 0.5 ** (ts / 3), 0.01))
  np.testing.assert_allclose(got, optax_values(ref, ts), rtol=2e-6)


def test_exponential_growth_needs_its_cap():
  with pytest.raises(ValueError, match=r'gamma=2.0 > 1 .* give end='):
    S.exponential(0.1, gamma=2)
  with pytest.raises(ValueError, match=r'end=0.05 must be >= value=0.1'):
    S.exponential(0.1, gamma=2, end=0.05)
  with pytest.raises(ValueError, match=r'end=0.5 must be <= value=0.1'):
    S.exponential(0.1, gamma=0.5, end=0.5)


# Every row of the optax table in lrjax.schedules' docstring, against optax.
OPTAX_TABLE = [
  (
    'constant_schedule',
    optax.constant_schedule(0.3),
    S.constant(0.3),
  ),
  (
    'linear_schedule',
    optax.linear_schedule(init_value=0.5, end_value=0.05, transition_steps=80),
    S.linear(0.5, end=0.05, length=80),
  ),
  (
    'polynomial_schedule',
    optax.polynomial_schedule(
      init_value=0.5, end_value=0.01, power=2, transition_steps=120
    ),
    S.polynomial(0.5, length=120, end=0.01, power=2),
  ),
  (
    'exponential_decay',
    optax.exponential_decay(
      init_value=0.5,
      transition_steps=7,
      decay_rate=0.8,
      staircase=True,
      end_value=0.02,
    ),
    S.exponential(0.5, gamma=0.8, length=7, staircase=True, end=0.02),
  ),
  (
    'cosine_decay_schedule',
    optax.cosine_decay_schedule(
      init_value=0.5, decay_steps=150, alpha=0.02, exponent=1.5
    ),
    S.cosine(0.5, length=150, end=0.02 * 0.5, exponent=1.5),
  ),
  (
    'piecewise_constant_schedule',
    optax.piecewise_constant_schedule(0.5, {50: 0.1, 100: 0.5}),
    S.multistep(0.5, milestones=(50, 100), factors=(0.1, 0.5)),
  ),
  (
    'warmup_constant_schedule',
    optax.warmup_constant_schedule(
      init_value=0.01, peak_value=0.5, warmup_steps=20
    ),
    S.warmup(S.constant(0.5), length=20, start=0.01 / 0.5),
  ),
  (
    'warmup_cosine_decay_schedule',
    optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=0.5,
      warmup_steps=20,
      decay_steps=200,
      end_value=0.005,
      exponent=2.0,
    ),
    S.warmup(
      S.cosine(0.5, length=200 - 20, end=0.005, exponent=2),
      length=20,
      start=0,
    ),
  ),
  (
    'warmup_exponential_decay_schedule',
    optax.warmup_exponential_decay_schedule(
      init_value=0.05,
      peak_value=0.5,
      warmup_steps=20,
      transition_steps=10,
      decay_rate=0.7,
      end_value=0.01,
    ),
    S.warmup(
      S.exponential(0.5, gamma=0.7, length=10, end=0.01),
      length=20,
      start=0.05 / 0.5,
    ),
  ),
  (
    'cosine_onecycle_schedule',
    optax.cosine_onecycle_schedule(
      transition_steps=200,
      peak_value=0.5,
      pct_start=0.25,
      div_factor=20.0,
      final_div_factor=100.0,
    ),
    S.onecycle(
      0.5, length=200, pct_start=0.25, div_factor=20, final_div_factor=100
    ),
  ),
  (
    'join_schedules',
    optax.join_schedules(
      [optax.constant_schedule(0.5), optax.linear_schedule(0.5, 0.0, 100)],
      boundaries=[30],
    ),
    S.join([S.constant(0.5), S.linear(0.5, end=0.0, length=100)], [30]),
  ),
  (
    'transition_begin',
    optax.linear_schedule(
      init_value=0.5, end_value=0.1, transition_steps=50, transition_begin=40
    ),
    S.join([S.constant(0.5), S.linear(0.5, end=0.1, length=50)], [40]),
  ),
]


@pytest.mark.parametrize(
  'name,ref,policy', OPTAX_TABLE, ids=[row[0] for row in OPTAX_TABLE]
)
def test_optax_name_table_rows(name, ref, policy):
  del name
  ts = np.arange(0, 260)
  # optax evaluates (1 + cos) / 2 in float32: its own error near a floor is
  # up to ~1e-7 of the peak (lrjax is closer to float64 there).
  np.testing.assert_allclose(
    run(policy, ts), optax_values(ref, ts), rtol=2e-6, atol=1e-7 * 0.5
  )


def test_name_table_is_the_one_in_the_docstring():
  doc = S.__doc__
  for name, _, _ in OPTAX_TABLE[:-1]:
    assert name in doc, name
  assert 'transition_begin' in doc


# timm: k_decay, cycle_mul (any number), cycle_decay, cycle_limit, tanh.


def timm_cycle(t, t_initial, cycle_mul):
  """timm's cycle index, cycle length and time in cycle (its _get_lr)."""
  if cycle_mul != 1:
    i = math.floor(math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))
    t_i = cycle_mul**i * t_initial
    t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
  else:
    i = t // t_initial
    t_i = t_initial
    t_curr = t - (t_initial * i)
  return i, t_i, t_curr


def timm_cosine(t, base, t_initial, lr_min, mul, decay, limit, k):
  i, t_i, t_curr = timm_cycle(t, t_initial, mul)
  lr_max = base * decay**i
  if i < limit:
    return lr_min + 0.5 * (lr_max - lr_min) * (
      1 + math.cos(math.pi * t_curr**k / t_i**k)
    )
  return lr_min


def timm_tanh(t, base, t_initial, lb, ub, lr_min, mul, decay, limit):
  i, t_i, t_curr = timm_cycle(t, t_initial, mul)
  if i < limit:
    lr_max = base * decay**i
    tr = t_curr / t_i
    return lr_min + 0.5 * (lr_max - lr_min) * (
      1 - math.tanh(lb * (1.0 - tr) + ub * tr)
    )
  return lr_min


def timm_poly(t, base, t_initial, power, lr_min, k):
  # One cycle (cycle_limit=1, cycle_mul=1).
  if t < t_initial:
    return lr_min + (base - lr_min) * (1 - t**k / t_initial**k) ** power
  return lr_min


TIMM_COSINE = [
  # (t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, k_decay)
  (40, 0.0, 1, 1.0, 1, 1.0),  # timm's defaults: one cycle
  (40, 0.001, 1, 1.0, 1, 2.0),
  (40, 0.001, 1, 1.0, 1, 0.5),
  (10, 0.001, 2, 0.5, 3, 1.0),
  (10, 0.0, 1.5, 0.8, 4, 1.0),
  (10, 0.002, 1.5, 0.8, 100, 1.5),
  (7, 0.0, 1, 0.9, 5, 3.0),
]


@pytest.mark.parametrize('t0,lr_min,mul,decay,limit,k', TIMM_COSINE)
def test_cosine_restarts_matches_timm(t0, lr_min, mul, decay, limit, k):
  ts = np.arange(0, 160)
  ref = [timm_cosine(int(t), 0.1, t0, lr_min, mul, decay, limit, k) for t in ts]
  policy = S.cosine_restarts(
    0.1, period=t0, mult=mul, decay=decay, end=lr_min, limit=limit, k_decay=k
  )
  np.testing.assert_allclose(run(policy, ts), ref, rtol=2e-6, atol=1e-9)
  if limit == 1:  # one cycle: also lrjax's cosine with k_decay
    one = S.cosine(0.1, length=t0, end=lr_min, k_decay=k)
    np.testing.assert_allclose(run(one, ts), ref, rtol=2e-6, atol=1e-9)


def test_cosine_restarts_non_integer_mult_restarts_on_time():
  # mult 1.5, period 10: cycles start at 0, 10, 25, 47.5, 81.25, 131.875
  # (T0 (1.5^i - 1) / 0.5); the value is the peak there, in float epochs too.
  p = S.cosine_restarts(1.0, period=10, mult=1.5, decay=0.5)
  starts = np.array([0.0, 10.0, 25.0, 47.5, 81.25, 131.875])
  np.testing.assert_allclose(run(p, starts), 0.5 ** np.arange(6), rtol=1e-6)
  before = run(p, starts[1:] - 1e-3)
  assert np.all(before < 1e-6)
  # Halfway through cycle 3 (length 33.75): half its peak 0.125.
  np.testing.assert_allclose(run(p, [47.5 + 33.75 / 2]), [0.0625], rtol=1e-5)


@pytest.mark.parametrize(
  't0,lb,ub,lr_min,mul,decay,limit',
  [
    (30, -7.0, 3.0, 0.0, 1, 1.0, 1),  # timm's defaults
    (10, -6.0, 3.0, 0.001, 2, 0.5, 3),
    (10, -7.0, 3.0, 0.0, 1.5, 0.9, 100),
  ],
)
def test_tanh_restarts_matches_timm(t0, lb, ub, lr_min, mul, decay, limit):
  ts = np.arange(0, 120)
  ref = [
    timm_tanh(int(t), 0.1, t0, lb, ub, lr_min, mul, decay, limit) for t in ts
  ]
  policy = S.tanh_restarts(
    0.1,
    period=t0,
    mult=mul,
    decay=decay,
    end=lr_min,
    limit=limit,
    lower=lb,
    upper=ub,
  )
  np.testing.assert_allclose(run(policy, ts), ref, rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize('power,k', [(0.5, 1.0), (1.0, 2.0), (2.0, 0.5)])
def test_polynomial_k_decay_matches_timm(power, k):
  ts = np.arange(0, 60)
  ref = [timm_poly(int(t), 0.1, 50, power, 0.001, k) for t in ts]
  policy = S.polynomial(0.1, length=50, end=0.001, power=power, k_decay=k)
  np.testing.assert_allclose(run(policy, ts), ref, rtol=2e-6, atol=1e-9)


def _truncated_normal_moments(a):
  """Mean 0 and variance of N(0, 1) truncated to (-a, a), closed form."""
  phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
  mass = math.erf(a / math.sqrt(2))  # P(|n| < a)
  return 1.0 - 2.0 * a * phi / mass


@pytest.mark.parametrize(
  'kind,pct,std',
  [('normal', 0.67, 1.0), ('normal', 0.1, 1.0), ('uniform', 0.3, 1.0)],
)
def test_noise_has_timms_distribution(kind, pct, std):
  # timm draws n once per integer t: truncated N(0, std) on |n| < pct, or
  # U(-pct, pct); the value is base * (1 + n). The draws themselves come
  # from torch's generator there, so the distribution is what is compared.
  n_draws = 4000
  p = S.noise(S.constant(2.0), pct=pct, kind=kind, std=std, seed=3)
  n = run(p, np.arange(n_draws)) / 2.0 - 1.0
  assert np.all(np.abs(n) < pct + 1e-6)
  if kind == 'normal':
    var = std**2 * _truncated_normal_moments(pct / std)
  else:
    var = pct**2 / 3
  # 5 standard errors of the sample mean and variance (4th moment <= pct^4).
  assert abs(n.mean()) < 5 * math.sqrt(var / n_draws)
  assert abs(n.var() - var) < 5 * pct**2 / math.sqrt(n_draws)
  # Deterministic: one draw per integer t (per epoch for float t).
  again = run(p, np.arange(n_draws)) / 2.0 - 1.0
  np.testing.assert_array_equal(n, again)
  within = run(p, np.array([5.0, 5.25, 5.999]))
  assert within[0] == within[1] == within[2]


def test_noise_only_in_its_range():
  base = S.cosine(0.1, length=100)
  p = S.noise(base, pct=0.5, begin=10, until=20)
  ts = np.arange(0, 40)
  got, clean = run(p, ts), run(base, ts)
  outside = (ts < 10) | (ts >= 20)
  np.testing.assert_array_equal(got[outside], clean[outside])
  assert np.all(got[~outside] != clean[~outside])
  assert np.all(np.abs(got / clean - 1)[~outside] < 0.5)


# Hugging Face: WSD (with the 1-sqrt warmup) and inverse square root.


def hf_wsd(step, w, s, d, warmup_type, decay_type, min_lr_ratio):
  """transformers' _get_wsd_scheduler_lambda, num_cycles=0.5."""
  if step < w:
    progress = float(step) / float(max(1, w))
    if warmup_type == 'linear':
      factor = progress
    elif warmup_type == 'cosine':
      factor = 0.5 * (1.0 - math.cos(math.pi * progress))
    else:  # '1-sqrt'
      factor = 1.0 - math.sqrt(1.0 - progress)
    factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
    return max(0.0, factor)
  if step < w + s:
    return 1.0
  if step < w + s + d:
    progress = float(step - w - s) / float(max(1, d))
    if decay_type == 'linear':
      factor = 1.0 - progress
    elif decay_type == 'cosine':
      factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
      factor = 1.0 - math.sqrt(progress)
    factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
    return max(0.0, factor)
  return min_lr_ratio


_HF_SHAPES = {'linear': 'linear', 'cosine': 'cosine', '1-sqrt': 'sqrt'}


@pytest.mark.parametrize('warmup_type', ['linear', 'cosine', '1-sqrt'])
@pytest.mark.parametrize('decay_type', ['linear', 'cosine', '1-sqrt'])
@pytest.mark.parametrize('ratio', [0.0, 0.1])
def test_wsd_matches_hugging_face(warmup_type, decay_type, ratio):
  base, w, s, d = 3e-4, 20, 50, 30
  ts = np.arange(0, 110)
  ref = [
    base * hf_wsd(int(t), w, s, d, warmup_type, decay_type, ratio) for t in ts
  ]
  # HF's min_lr_ratio r is both ends: start=r (a factor), end=r * base.
  policy = S.wsd(
    base,
    length=w + s + d,
    cooldown=d,
    warmup=w,
    start=ratio,
    end=ratio * base,
    shape=_HF_SHAPES[decay_type],
    warmup_shape=_HF_SHAPES[warmup_type],
  )
  np.testing.assert_allclose(run(policy, ts), ref, rtol=2e-6, atol=1e-12)


def test_warmup_sqrt_shape_matches_hugging_face_1_sqrt():
  ts = np.arange(0, 30)
  ref = [0.2 * hf_wsd(int(t), 20, 100, 0, '1-sqrt', 'linear', 0.0) for t in ts]
  policy = S.warmup(S.constant(0.2), length=20, shape='sqrt', start=0)
  np.testing.assert_allclose(run(policy, ts), ref, rtol=2e-6, atol=1e-12)


def hf_inverse_sqrt(step, num_warmup_steps, timescale):
  """transformers' _get_inverse_sqrt_schedule_lr_lambda."""
  if step < num_warmup_steps:
    return float(step) / float(max(1, num_warmup_steps))
  shift = timescale - num_warmup_steps
  return 1.0 / math.sqrt((step + shift) / timescale)


@pytest.mark.parametrize('warmup,timescale', [(100, None), (100, 300), (0, 50)])
def test_inverse_sqrt_matches_hugging_face(warmup, timescale):
  ts = np.concatenate([np.arange(0, 400), [10**4, 10**6, 2**31 - 1]])
  tau = timescale if timescale is not None else (warmup or 10_000)
  ref = [1e-3 * hf_inverse_sqrt(int(t), warmup, tau) for t in ts]
  policy = S.inverse_sqrt(1e-3, warmup=warmup, timescale=timescale, start=0)
  np.testing.assert_allclose(run(policy, ts), ref, rtol=2e-6)


def test_noam_is_the_papers_formula_from_step_one():
  # lrate = d^-0.5 min(step^-0.5, step warmup^-1.5), step = t + 1.
  ts = np.array([0, 1, 10, 3998, 3999, 4000, 10**5, 2**31 - 2])
  step = ts.astype(np.float64) + 1
  ref = 512**-0.5 * np.minimum(step**-0.5, step * 4000**-1.5)
  p = S.noam(512, warmup=4000)
  np.testing.assert_allclose(run(p, ts), ref, rtol=2e-6)
  assert p.unit == 'update'
  # The same shape as inverse_sqrt from its peak, one step later.
  peak = 512**-0.5 * 4000**-0.5
  q = S.inverse_sqrt(peak, warmup=4000, start=0)
  np.testing.assert_allclose(run(q, ts[3:] + 1), run(p, ts[3:]), rtol=2e-6)


# PyTorch CyclicLR with cycle_momentum=True.


def torch_cyclic(it, base_lr, max_lr, base_m, max_m, up, down, mode, gamma):
  """CyclicLR.get_lr at last_epoch=it: (lr, momentum)."""
  total = up + down
  step_ratio = up / total
  cycle = math.floor(1 + it / total)
  x = 1.0 + it / total - cycle
  if x <= step_ratio:
    scale_factor = x / step_ratio
  else:
    scale_factor = (x - 1) / (step_ratio - 1)
  if mode == 'triangular':
    s = 1.0
  elif mode == 'triangular2':
    s = 1 / (2.0 ** (cycle - 1))
  else:  # exp_range scales by iterations
    s = gamma**it
  lr = base_lr + (max_lr - base_lr) * scale_factor * s
  momentum = max_m - (max_m - base_m) * scale_factor * s
  return lr, momentum


@pytest.mark.parametrize(
  'mode,amplitude,gamma,down',
  [
    ('triangular', 'const', 1.0, None),
    ('triangular2', 'half', 1.0, None),
    ('exp_range', 'exp', 0.99, None),
    ('triangular2', 'half', 1.0, 3),
    ('exp_range', 'exp', 0.97, 6),
  ],
)
def test_cyclic_momentum_matches_pytorch(mode, amplitude, gamma, down):
  up = 4
  ts = np.arange(0, 50)
  ref = [
    torch_cyclic(int(t), 0.001, 0.1, 0.8, 0.9, up, down or up, mode, gamma)
    for t in ts
  ]
  lr = S.triangular(
    0.001,
    high=0.1,
    length=up,
    amplitude=amplitude,
    gamma=gamma,
    length_down=down,
  )
  m = S.triangular_momentum(
    up, amplitude=amplitude, gamma=gamma, length_down=down
  )
  np.testing.assert_allclose(run(lr, ts), [r[0] for r in ref], rtol=2e-6)
  np.testing.assert_allclose(run(m, ts), [r[1] for r in ref], rtol=2e-6)


# Precision: the accurate forms, against float64 near floors and peaks.


def test_onecycle_and_wsd_cosine_keep_their_precision_near_the_floor():
  ts = np.arange(900, 1001)
  init = 0.1 / 25
  final = init / 1e4
  x = (ts - 300) / 700
  ref = final + (0.1 - final) * (1 + np.cos(np.pi * x)) / 2
  # Before: (1 + cos) / 2 in float32 was 2e-4 off (relative) at t = 999.
  np.testing.assert_allclose(
    run(S.onecycle(0.1, length=1000), ts), ref, rtol=1e-6
  )
  x = (ts - 800) / 200
  for shape, g in (
    ('cosine', (1 + np.cos(np.pi * x)) / 2),
    ('sqrt', 1 - np.sqrt(x)),
    ('linear', 1 - x),
  ):
    ref = 1e-5 + (1 - 1e-5) * g
    p = S.wsd(1.0, length=1000, cooldown=200, end=1e-5, shape=shape)
    np.testing.assert_allclose(run(p, ts), ref, rtol=1e-6, err_msg=shape)


def test_powers_do_not_drift():
  # gamma ** t with gamma rounded to float32 first drifted by 4e-6 at t=400.
  ts = np.arange(0, 401)
  for gamma in (0.99, 0.9, 0.999):
    got = run(S.exponential(1.0, gamma=gamma), ts)
    np.testing.assert_allclose(got, gamma ** ts.astype(np.float64), rtol=3e-7)
  ks = np.arange(0, 12)
  got = run(S.step(1.0, length=1, gamma=0.1), ks)
  np.testing.assert_allclose(got, 0.1 ** ks.astype(np.float64), rtol=3e-7)
  halves = run(S.step(1.0, length=1, gamma=0.5), ks)
  np.testing.assert_array_equal(halves, 0.5 ** ks.astype(np.float64))


def test_tanh_and_cyclic_cosine_keep_their_precision():
  ts = np.arange(0, 1001)
  x = -6 + 9 * ts / 1000
  np.testing.assert_allclose(
    run(S.tanh_decay(1.0, length=1000), ts), (1 - np.tanh(x)) / 2, rtol=1e-6
  )
  # Near its low point the raised cosine is 1e-6 of its range above `low`.
  p = S.cosine_cyclic(0.0, high=1.0, length=1000)
  ts = np.arange(990, 1011)
  np.testing.assert_allclose(
    run(p, ts), (1 + np.cos(np.pi * ts / 1000)) / 2, rtol=1e-6
  )


def test_cosine_restarts_keep_cycling_far_beyond_int32():
  # Period 1: cycle i starts at (m^i - 1) / (m - 1) and lasts m^i. Half way
  # through a cycle the value is half the peak, for t far past 2**41 (where
  # an earlier docstring said the value froze) and past the 2**31 table of
  # a non-integer mult (closed form there).
  for mult, i in ((2, 50), (2, 100), (1.5, 60), (1.5, 150)):
    start = (mult**i - 1) / (mult - 1)
    t = np.array([start + 0.5 * mult**i, start + 0.9 * mult**i])
    got = run(S.cosine_restarts(1.0, period=1, mult=mult), t.astype(np.float32))
    x = (t - start) / mult**i
    np.testing.assert_allclose(got, (1 + np.cos(np.pi * x)) / 2, rtol=1e-3)
