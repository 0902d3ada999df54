"""Property tests (hypothesis): finite, within bounds, exact at boundaries.

Progress covers the whole int32 range of update counts and float epochs far
beyond it. The bounded policies are compiled once, all together, and
hypothesis varies t; the boundary tests vary the parameters and evaluate
scalars eagerly (fixed shapes, so kernels are reused).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrjax import schedules as S

BIG = 2**31 - 1
PROPS = settings(max_examples=15, deadline=None, derandomize=True)
N = 12


def _cases():
  """(policy, low, high): each policy's documented bounds."""
  out = []
  for length in (1, 2.5, 10**6):
    out += [
      (S.step(0.5, length=length, gamma=0.3), 0.0, 0.5),
      (S.exponential(0.5, gamma=0.9, length=length), 0.0, 0.5),
      (S.exponential(0.5, gamma=0.9, length=length, staircase=True), 0, 0.5),
      (S.polynomial(0.5, length=length, end=0.01, power=0.5), 0.01, 0.5),
      (S.cosine(0.5, length=length, end=0.01), 0.01, 0.5),
      (S.tanh_decay(0.5, length=length), 0.0, 0.5),
      (S.linear(0.1, end=0.5, length=length), 0.1, 0.5),
      (S.sigmoid(0.5, gamma=-0.1, center=length), 0.0, 0.5),
      (S.cosine_restarts(0.5, period=length, decay=0.5, end=0.01), 0.01, 0.5),
      (S.cosine_restarts(0.5, period=length, mult=2, decay=0.9), 0.0, 0.5),
      (
        S.sawtooth(
          0.01, high=0.5, length=length, shape='sine', amplitude='half'
        ),
        0.01,
        0.5,
      ),
      (
        S.warmup(
          S.cosine(0.5, length=length),
          length=length,
          shape='exponential',
          start=0.01,
        ),
        0.0,
        0.5,
      ),
    ]
    for builder in (S.triangular, S.sine, S.cosine_cyclic):
      for amplitude in ('const', 'half', 'exp'):
        out.append(
          (
            builder(
              0.01, high=0.5, length=length, amplitude=amplitude, gamma=0.999
            ),
            0.01,
            0.5,
          )
        )
  out += [
    (S.inverse_time(0.5, gamma=0.1, power=2), 0.0, 0.5),
    (S.multistep(0.5, milestones=(3, 2**30, BIG), gamma=0.5), 0.0625, 0.5),
    (S.onecycle(0.5, length=10**6, three_phase=True), 0.5 / 25 / 1e4, 0.5),
    (
      S.onecycle(0.5, length=100, anneal='linear', offset=1),
      0.5 / 25 / 1e4,
      0.5,
    ),
    (S.onecycle_momentum(100, pct_start=0.25), 0.85, 0.95),
    (S.wsd(0.5, length=10**6, cooldown=10**5, warmup=10, shape='sqrt'), 0, 0.5),
    (
      S.join([S.constant(0.5), S.cosine(0.5, length=9)], boundaries=2**30),
      0.0,
      0.5,
    ),
    (S.clip(S.linear(0.0, end=1.0, length=100), low=0.1, high=0.5), 0.1, 0.5),
    (S.cosine(0.5, length=10**5, end=0.01, exponent=0.5, k_decay=2), 0.01, 0.5),
    (S.polynomial(0.5, length=100, power=2, k_decay=0.5), 0.0, 0.5),
    (S.cosine_restarts(0.5, period=10, mult=1.5, decay=0.9), 0.0, 0.5),
    (S.cosine_restarts(0.5, period=3.5, mult=1.001, end=0.01), 0.01, 0.5),
    (S.cosine_restarts(0.5, period=10, mult=3, limit=4, k_decay=3), 0.0, 0.5),
    (S.tanh_restarts(0.5, period=10, mult=2.5, decay=0.5), 0.0, 0.5),
    (S.exponential(0.001, gamma=1.5, length=3, end=0.5), 0.001, 0.5),
    (S.exponential(0.5, gamma=0.99, end=0.01), 0.01, 0.5),
    (S.inverse_sqrt(0.5, warmup=100), 0.0, 0.5),
    (S.noam(512, warmup=4000), 0.0, (512 * 4000) ** -0.5),
    (S.noise(S.constant(0.5), pct=0.2, begin=3), 0.4, 0.6),
    (S.triangular_momentum(100, amplitude='exp', gamma=0.999), 0.8, 0.9),
    (
      S.wsd(0.5, length=10**6, cooldown=10, warmup=10**5, warmup_shape='sqrt'),
      0.0,
      0.5,
    ),
  ]
  return out


CASES = _cases()


@functools.cache
def _evaluate_all():
  def f(ti, tf):
    return jnp.stack([jnp.concatenate([p(ti), p(tf)]) for p, _, _ in CASES])

  return jax.jit(f)


@PROPS
@given(
  st.lists(st.integers(0, BIG), min_size=N, max_size=N),
  st.lists(st.floats(0.0, 1e12), min_size=N, max_size=N),
)
def test_every_policy_finite_and_within_bounds(ints, floats):
  ints = np.asarray(ints[:-3] + [0, BIG - 1, BIG], np.int32)
  floats = np.asarray(floats[:-2] + [2.0**31 + 5, 1e30], np.float32)
  out = np.asarray(_evaluate_all()(ints, floats))
  assert out.dtype == np.float32
  for (policy, low, high), row in zip(CASES, out, strict=True):
    assert np.all(np.isfinite(row)), str(policy)
    slack = 1e-6 * max(abs(low), abs(high))
    assert np.all(row >= low - slack), (str(policy), row.min())
    assert np.all(row <= high + slack), (str(policy), row.max())


def test_python_ints_beyond_int32_are_accepted():
  p = S.cosine(0.5, length=10)
  assert float(p(2**40)) == 0.0
  assert float(p(2**31)) == 0.0


@PROPS
@given(
  st.lists(st.integers(2, BIG), min_size=3, max_size=3, unique=True),
  st.sampled_from([0.5, 0.25, 0.125]),
)
def test_multistep_exact_at_every_milestone(milestones, gamma):
  milestones = sorted(milestones)
  p = S.multistep(1.0, milestones=milestones, gamma=gamma)
  at = np.asarray(p(jnp.asarray(milestones, jnp.int32)))
  before = np.asarray(p(jnp.asarray(milestones, jnp.int32) - 1))
  np.testing.assert_array_equal(at, [gamma, gamma**2, gamma**3])
  prev = [1.0, gamma, gamma**2]
  for i, m in enumerate(milestones):
    if i == 0 or milestones[i - 1] != m - 1:
      assert before[i] == prev[i]


@PROPS
@given(st.integers(1, 2**20), st.integers(0, 100))
def test_step_and_join_exact_at_boundaries(length, k):
  t = k * length
  s = S.step(1.0, length=length, gamma=0.5)
  np.testing.assert_allclose(float(s(t)), math.ldexp(1.0, -k), rtol=1e-6)
  if t > 0:
    np.testing.assert_allclose(
      float(s(t - 1)), math.ldexp(1.0, 1 - k), rtol=1e-6
    )
  if 0 < t <= BIG - 10:
    j = S.join(
      [S.constant(1.0), S.linear(0.5, end=0.0, length=10)], boundaries=t
    )
    assert float(j(t - 1)) == 1.0 and float(j(t)) == 0.5
    assert float(j(t + 10)) == 0.0


@PROPS
@given(st.integers(1, 2**16), st.integers(0, 2**13), st.integers(1, 2**16))
def test_cycles_exact_at_boundaries(length, k, down):
  start = k * (length + down)
  p = S.triangular(0.25, high=1.0, length=length, length_down=down)
  if start + length <= BIG:
    assert float(p(start)) == 0.25
    assert float(p(start + length)) == 1.0
  saw = S.sawtooth(0.25, high=1.0, length=length)
  if k * length <= BIG:
    assert float(saw(k * length)) == 1.0


@pytest.mark.parametrize('period,mult', [(1, 2), (41, 3), (7, 2)])
def test_sgdr_exact_at_every_restart(period, mult):
  p = S.cosine_restarts(1.0, period=period, mult=mult, decay=0.5)
  starts, i = [0], 0
  while starts[-1] + period * mult**i <= BIG:
    starts.append(starts[-1] + period * mult**i)
    i += 1
  starts = np.asarray(starts, np.int32)
  got = np.asarray(jax.jit(p)(np.concatenate([starts, starts[1:] - 1])))
  n = len(starts)
  np.testing.assert_allclose(got[:n], 0.5 ** np.arange(n), rtol=1e-6)
  lengths = period * mult ** np.arange(n - 1, dtype=np.float64)
  expected = (
    0.5 ** np.arange(n - 1) * (1 + np.cos(np.pi * (lengths - 1) / lengths)) / 2
  )
  # Relative accuracy holds while the cycle fits in float32 (2**24).
  np.testing.assert_allclose(got[n:], expected, rtol=1e-3, atol=1e-12)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
  st.floats(-1e6, 1e6, allow_subnormal=False),
  st.one_of(st.integers(1, BIG), st.floats(1e-6, 1e9)),
  st.floats(1e-6, 1.0),
  st.sampled_from(['linear', 'cosine', 'exponential']),
  st.booleans(),
)
def test_text_round_trip_for_any_parameters(value, length, gamma, shape, flag):
  policies = [
    S.step(value, length=length, gamma=gamma),
    S.exponential(value, gamma=gamma, length=length, staircase=flag),
    S.cosine(value, length=length, end=value * gamma),
    S.multistep(value, milestones=(length, 2 * length), factors=(gamma, 3.0)),
    S.triangular(
      value,
      high=abs(value) + 1,
      length=length,
      amplitude='exp',
      gamma=gamma,
      phase='down' if flag else 'up',
    ),
  ]
  policies.append(
    S.warmup(
      S.join(policies[:2], boundaries=length),
      length=length,
      shape=shape,
      start=gamma,
      shift=flag,
    )
  )
  for p in policies:
    text = str(p)
    again = S.parse(text)
    assert again == p and str(again) == text
