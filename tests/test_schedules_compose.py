"""Composition (warmup, join, scale, clip, product) and use through optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import schedules as S

BIG = 2**31 - 1


def run(policy, ts):
  ts = np.asarray(ts)
  dtype = jnp.int32 if np.issubdtype(ts.dtype, np.integer) else jnp.float32
  return np.asarray(jax.jit(policy)(jnp.asarray(ts, dtype)), np.float64)


def check(policy, ts, expected, rtol=2e-6, atol=1e-8):
  np.testing.assert_allclose(run(policy, ts), expected, rtol=rtol, atol=atol)


def test_linear_warmup_shifted_clock():
  inner = S.cosine(0.4, length=90)
  s = S.warmup(inner, length=5)
  ts = np.array([0, 1, 4, 5, 6, 50, 95, 96, BIG])
  ramp = 0.4 * (0.1 + 0.9 * ts / 5)
  after = 0.4 * (1 + np.cos(np.pi * np.clip((ts - 5) / 90, 0, 1))) / 2
  check(s, ts, np.where(ts < 5, ramp, after), rtol=1e-5)
  assert run(s, [0])[0] > 0  # the first update does not use 0


def test_warmup_start_zero_only_when_asked():
  s = S.warmup(S.constant(1.0), length=4, start=0)
  check(s, [0, 1, 2, 4, 10], [0.0, 0.25, 0.5, 1.0, 1.0])


def test_warmup_matches_linearlr_then_constant():
  # LinearLR(start_factor=1/3, total_iters=5) on base 0.3, then constant 0.3.
  s = S.warmup(S.constant(0.3), length=5, start=1 / 3)
  ts = np.arange(8)
  check(s, ts, 0.3 * (1 / 3 + (2 / 3) * np.minimum(ts, 5) / 5), rtol=1e-6)


def test_cosine_and_exponential_warmup():
  ts = np.array([0, 1, 2, 3, 4, 7])
  x = np.minimum(ts, 4) / 4
  s = S.warmup(S.constant(2.0), length=4, shape='cosine', start=0.2)
  check(s, ts, 2.0 * (0.2 + 0.8 * (1 - np.cos(np.pi * x)) / 2), rtol=1e-6)
  s = S.warmup(S.constant(2.0), length=4, shape='exponential', start=0.01)
  check(s, ts, 2.0 * 0.01 ** (1 - x), rtol=1e-5)


def test_warmup_global_clock_goyal():
  # Goyal et al.: warmup over 5 epochs, milestones counted from the start.
  inner = S.multistep(3.2, milestones=(30, 60, 80))
  s = S.warmup(inner, length=5, start=1 / 32, shift=False)
  ts = np.array([0.0, 2.5, 5.0, 29.99, 30.0, 60.0, 80.0])
  expected = [0.1, 0.1 + (3.2 - 0.1) / 2, 3.2, 3.2, 0.32, 0.032, 0.0032]
  check(s, ts, expected, rtol=1e-5)


def test_join_local_clocks_like_optax():
  a, b, c = S.constant(0.1), S.linear(0.1, end=0.0, length=10), S.constant(1.0)
  s = S.join([a, b, c], boundaries=[5, 15])
  ts = np.array([0, 4, 5, 6, 10, 14, 15, 16, BIG])
  expected = np.where(ts < 5, 0.1, np.where(ts < 15, 0.1 - 0.01 * (ts - 5), 1))
  check(s, ts, expected, rtol=1e-6)
  ref = optax.join_schedules(
    [
      lambda t: 0.1 * jnp.ones([]),
      optax.linear_schedule(0.1, 0.0, 10),
      lambda t: jnp.ones([]),
    ],
    [5, 15],
  )
  np.testing.assert_allclose(
    run(s, ts[:-1]), [float(ref(int(t))) for t in ts[:-1]], rtol=1e-6
  )


def test_join_float_epochs():
  s = S.join([S.constant(1.0), S.constant(0.5)], boundaries=2.5)
  check(s, [0.0, 2.49, 2.5, 3.0], [1.0, 1.0, 0.5, 0.5])


def test_scale_clip_product():
  base = S.linear(0.0, end=1.0, length=10)
  ts = np.array([0, 1, 5, 10, 20])
  check(S.scale(base, 0.5), ts, 0.5 * np.minimum(ts, 10) / 10)
  check(
    S.clip(base, low=0.2, high=0.8),
    ts,
    np.clip(np.minimum(ts, 10) / 10, 0.2, 0.8),
  )
  check(
    S.product([base, S.step(1.0, length=5, gamma=0.5)]),
    ts,
    np.minimum(ts, 10) / 10 * 0.5 ** (ts // 5),
  )


def test_policies_are_frozen_hashable_and_static_jit_args():
  a = S.cosine(0.4, length=90)
  b = S.parse('cosine(0.4,length=90)')
  assert a == b and hash(a) == hash(b)
  assert len({a, b, S.cosine(0.4, length=91)}) == 2
  with pytest.raises(AttributeError):
    a.name = 'x'
  f = jax.jit(lambda p, t: p(t), static_argnums=0)
  assert float(f(a, 45)) == pytest.approx(0.2, rel=1e-6)


def test_policy_as_optax_learning_rate_and_momentum():
  params = {'w': jnp.ones(2)}
  grads = {'w': jnp.ones(2)}
  lr = S.step(1.0, length=2, gamma=0.5)
  tx = optax.sgd(learning_rate=lr)
  state = tx.init(params)
  steps = []
  for _ in range(5):
    updates, state = tx.update(grads, state, params)
    steps.append(-float(updates['w'][0]))
  np.testing.assert_allclose(steps, [1, 1, 0.5, 0.5, 0.25])
  # Any scalar hyperparameter; the value in force is in the state.
  tx = optax.inject_hyperparams(optax.sgd)(
    learning_rate=lr, momentum=S.onecycle_momentum(10, pct_start=0.25, offset=1)
  )
  state = tx.init(params)
  update = jax.jit(tx.update)
  seen = []
  for _ in range(4):
    _, state = update(grads, state, params)
    seen.append(
      (
        float(state.hyperparams['learning_rate']),
        float(state.hyperparams['momentum']),
      )
    )
  # PyTorch OneCycleLR momentum at steps 0..3 (see the formula tests).
  expected = [
    (1, 0.95),
    (1, 0.875),
    (0.5, 0.8510926199633096),
    (0.5, 0.8595491502812526),
  ]
  np.testing.assert_allclose(seen, expected, rtol=1e-6)


def test_adam_b1_and_weight_decay_schedules():
  params = {'w': jnp.ones(2)}
  tx = optax.inject_hyperparams(optax.adamw)(
    learning_rate=S.constant(0.1),
    b1=S.linear(0.9, end=0.5, length=4),
    weight_decay=S.step(1e-4, length=1, gamma=0.5),
  )
  state = tx.init(params)
  for _ in range(2):
    _, state = tx.update(params, state, params)
  assert float(state.hyperparams['b1']) == pytest.approx(0.8, rel=1e-6)
  assert float(state.hyperparams['weight_decay']) == pytest.approx(5e-5)


def test_compose_validation():
  with pytest.raises(TypeError, match='policy=0.1 must be a Policy'):
    S.warmup(0.1, length=5)
  with pytest.raises(ValueError, match='start=0'):
    S.warmup(S.constant(1.0), length=5, shape='exponential', start=0)
  with pytest.raises(ValueError, match='needs 1 boundaries'):
    S.join([S.constant(1.0), S.constant(0.5)], boundaries=[1, 2])
  with pytest.raises(ValueError, match='low= or high='):
    S.clip(S.constant(1.0))


def test_hugging_face_schedules_with_warmup():
  # transformers' get_cosine_schedule_with_warmup(W=10, T=100) and
  # get_linear_schedule_with_warmup: lr * t / W during warmup (0 at t = 0,
  # which lrjax gives only with start=0), then cosine / linear over T - W.
  lr, w, total = 0.3, 10, 100
  ts = np.array([0, 1, 9, 10, 11, 55, 99, 100])
  prog = np.clip((ts - w) / (total - w), 0, 1)
  ramp = lr * ts / w
  cos = lr * np.maximum(0.0, 0.5 * (1 + np.cos(np.pi * prog)))
  check(
    S.warmup(S.cosine(lr, length=total - w), length=w, start=0),
    ts,
    np.where(ts < w, ramp, cos),
    rtol=1e-5,
    atol=1e-8,
  )
  lin = lr * np.maximum(0.0, (total - ts) / (total - w))
  check(
    S.warmup(S.linear(lr, end=0.0, length=total - w), length=w, start=0),
    ts,
    np.where(ts < w, ramp, lin),
    rtol=1e-5,
    atol=1e-8,
  )


def test_timm_cosine_with_warmup_global_clock():
  # timm CosineLRScheduler(t_initial=50, lr_min=0.001, warmup_t=5,
  # warmup_lr_init=0.01, warmup_prefix=False) on lr 0.1: the warmup is
  # warmup_lr_init + t * (lr - init) / warmup_t, the cosine runs on the
  # global t (durations include the warmup): lrjax's shift=False. timm's
  # ramp ends on lr (then jumps to cos(5)); lrjax's ends on cos(5), so during
  # the warmup lrjax is timm's ramp times cos(5) / lr (documented).
  ts = np.array([0, 1, 4, 5, 6, 25, 49, 50])
  warm = 0.01 + ts * (0.1 - 0.01) / 5
  cos = 0.001 + 0.5 * (0.1 - 0.001) * (
    1 + np.cos(np.pi * np.minimum(ts, 50) / 50)
  )
  s = S.warmup(
    S.cosine(0.1, length=50, end=0.001), length=5, start=0.1, shift=False
  )
  expected = np.where(ts < 5, warm * cos[3] / 0.1, cos)
  check(s, ts, expected, rtol=1e-5)
  np.testing.assert_allclose(run(s, ts[:3]), warm[:3] * cos[3] / 0.1, rtol=1e-5)


def test_plot_schedules_writes_a_png(tmp_path):
  from lrjax.plots import plot_schedules

  path = tmp_path / 'lr.png'
  fig = plot_schedules(
    {'cos': S.cosine(0.1, length=50), 'step': S.step(0.1, length=20)},
    t_max=50,
    xlabel='epoch',
    title='lr',
    log_y=True,
    path=str(path),
  )
  assert path.stat().st_size > 1000
  ax = fig.axes[0]
  assert [line.get_label() for line in ax.lines] == ['cos', 'step']
  np.testing.assert_allclose(
    ax.lines[1].get_ydata()[[0, 19, 20]], [0.1, 0.1, 0.01], rtol=1e-6
  )
  fig = plot_schedules([S.constant(0.1)], t_max=2.5, num_points=6)
  assert fig.axes[0].lines[0].get_label() == 'constant(0.1)'
  with pytest.raises(ValueError, match='t_max=0 must be > 0'):
    plot_schedules([S.constant(0.1)], t_max=0)


def test_vmap_and_vector_t_agree():
  ts = jnp.arange(0, 40, dtype=jnp.int32)
  for p in (
    S.join([S.constant(1.0), S.cosine(1.0, length=9)], boundaries=7),
    S.multistep(1.0, milestones=(3, 20)),
    S.warmup(S.sawtooth(0.1, high=1.0, length=6), length=4),
  ):
    vec = np.asarray(jax.jit(p)(ts))
    mapped = np.asarray(jax.jit(jax.vmap(p))(ts))
    np.testing.assert_array_equal(vec, mapped)
    assert float(p(int(ts[13]))) == vec[13]


def test_finetune_policies_by_hand():
  e, w, lr = 3.0, 0.3, 1e-2

  def at(name, t):
    return float(jax.jit(S.finetune_policy(name, lr, e, 0.1))(t))

  # Hugging Face's get_linear_schedule_with_warmup: lr t / w, then
  # lr (e - t) / (e - w).
  for t in (0.0, 0.15, 0.3, 1.0, 2.4, 3.0):
    hf = lr * t / w if t < w else lr * (e - t) / (e - w)
    assert at('hf_warmup_linear', t) == pytest.approx(hf, rel=1e-5, abs=1e-9)
  assert at('warmup_constant', 0.0) == pytest.approx(0.1 * lr)
  assert at('warmup_constant', 2.0) == pytest.approx(lr)
  assert at('linear', 1.5) == pytest.approx(lr / 2, rel=1e-6)
  assert at('cosine', 1.5) == pytest.approx(lr / 2, rel=1e-5)
  # warmup_cosine: cosine over the 2.7 epochs after the warmup.
  assert at('warmup_cosine', 0.3 + 1.35) == pytest.approx(lr / 2, rel=1e-5)
  # One-cycle: lr / 25 at 0, the peak at 30% of 3 epochs.
  assert at('onecycle', 0.0) == pytest.approx(lr / 25, rel=1e-5)
  assert at('onecycle', 0.9) == pytest.approx(lr, rel=1e-5)
  assert S.FINETUNE_POLICIES[-1] == 'plateau'
  with pytest.raises(ValueError, match='not one of'):
    S.finetune_policy('noam', lr, e, 0.1)
  with pytest.raises(ValueError, match='warmup_fraction=1'):
    S.finetune_policy('cosine', lr, e, 1)
