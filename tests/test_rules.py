"""Scaling rules against closed forms and the papers' numbers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import rules
from lrjax.batch import BatchSchedule, Stage, per_update


def test_goyal_linear_scaling_numbers():
  # 0.1 per 256 examples: B = 8192 -> 3.2, 256 -> 0.1, 1024 -> 0.4.
  assert rules.linear_scaling(8192) == pytest.approx(3.2, rel=1e-15)
  assert rules.linear_scaling(256) == pytest.approx(0.1, rel=1e-15)
  assert rules.linear_scaling(1024, base_lr=0.1) == pytest.approx(0.4)
  assert rules.linear_scaling(1024, 0.1, base_batch_size=128) == (
    pytest.approx(0.8)
  )
  got = jax.jit(rules.linear_scaling)(jnp.float32(8192))
  assert float(got) == pytest.approx(3.2, rel=1e-6)


def test_sqrt_scaling():
  assert rules.sqrt_scaling(1024) == pytest.approx(0.2, rel=1e-15)
  assert rules.sqrt_scaling(64, 0.1, 256) == pytest.approx(0.05, rel=1e-15)
  got = jax.jit(rules.sqrt_scaling)(jnp.float32(4096))
  assert float(got) == pytest.approx(0.4, rel=1e-6)


def test_noise_scale_forms():
  # 0.1 * (50000/128 - 1) / (1 - 0.9) = 389.625; approximate 390.625.
  assert rules.noise_scale(0.1, 128, 50000, 0.9) == pytest.approx(389.625)
  assert rules.noise_scale(0.1, 128, 50000, 0.9, exact=False) == (
    pytest.approx(390.625)
  )
  assert rules.noise_scale(0.5, 1000, 1000) == 0.0
  assert rules.noise_scale(0.2, 500, 1000, exact=False) == pytest.approx(0.4)
  f = jax.jit(lambda lr, b: rules.noise_scale(lr, b, 50000, 0.9))
  np.testing.assert_allclose(
    f(jnp.asarray([0.1, 0.02]), jnp.asarray([128.0, 128.0])),
    [389.625, 77.925],
    rtol=1e-6,
  )


def test_effective_lr_and_momentum_rule():
  assert rules.effective_lr(0.1, 0.9) == pytest.approx(1.0)
  assert rules.effective_lr(0.1, 0.0) == 0.1
  assert rules.momentum_rule(640, 0.9, 0.98) == pytest.approx(3200)
  assert rules.momentum_rule(3200, 0.98, 0.9) == pytest.approx(640)


@pytest.mark.parametrize(
  'num_examples, b, lr, m',
  [
    # B << N: g = lr N / (B (1 - m)) = 0.1 * 50000 / (128 * 0.1) = 390.625.
    # B = lr N / (g (1 - m)); lr = g (1 - m) B / N; m = 1 - lr N / (g B).
    (None, 640.0, 0.25, 0.98),
    # Exact: g = lr (N/B - 1) / (1 - m) = 0.1 (50000/128 - 1) / 0.1 =
    # 389.625. B = N / (1 + g (1 - m) / lr); lr = g (1 - m) / (N/B - 1);
    # m = 1 - lr (N/B - 1) / g.
    (
      50000,
      50000 / (1 + 389.625 * 0.1 / 0.5),
      389.625 * 0.05 / (50000 / 640 - 1),
      1 - 0.1 * (50000 / 640 - 1) / 389.625,
    ),
  ],
  ids=['approximate', 'exact'],
)
def test_preserve_noise_scale_solves_each_unknown(num_examples, b, lr, m):
  ref = (0.1, 128, 0.9)
  kw = dict(num_examples=num_examples)
  got_b = rules.preserve_noise_scale(
    *ref, target_lr=0.5, target_momentum=0.9, **kw
  )
  got_lr = rules.preserve_noise_scale(
    *ref, target_batch_size=640, target_momentum=0.95, **kw
  )
  got_m = rules.preserve_noise_scale(
    *ref, target_lr=0.1, target_batch_size=640, **kw
  )
  assert got_b == pytest.approx(b, rel=1e-12)
  assert got_lr == pytest.approx(lr, rel=1e-12)
  assert got_m == pytest.approx(m, rel=1e-12)


def test_preserve_noise_scale_errors():
  with pytest.raises(ValueError, match='exactly two'):
    rules.preserve_noise_scale(0.1, 128, 0.9, target_lr=0.1)
  with pytest.raises(ValueError, match='exactly two'):
    rules.preserve_noise_scale(
      0.1, 128, 0.9, target_lr=0.1, target_batch_size=3, target_momentum=0.5
    )
  with pytest.raises(ValueError, match='no momentum'):
    rules.preserve_noise_scale(0.1, 128, 0.9, target_lr=10, target_batch_size=8)
  with pytest.raises(ValueError, match='target_batch_size'):
    rules.preserve_noise_scale(
      0.1, 128, 0.9, target_lr=0.1, target_batch_size=50000, num_examples=50000
    )


@pytest.mark.parametrize(
  'call, match',
  [
    (lambda: rules.noise_scale(0.0, 128, 50000), 'lr'),
    (lambda: rules.noise_scale(0.1, 0, 50000), 'batch_size'),
    (lambda: rules.noise_scale(0.1, 60000, 50000), 'batch_size=60000'),
    (lambda: rules.noise_scale(0.1, 128, 50000, 1.0), 'momentum'),
    (lambda: rules.noise_scale(0.1, 128, 50000, float('nan')), 'momentum'),
    (lambda: rules.noise_scale(float('inf'), 128, 50000), 'lr'),
    (lambda: rules.linear_scaling(-1), 'batch_size'),
    (lambda: rules.linear_scaling(8, base_batch_size=0), 'base_batch_size'),
    (lambda: rules.sqrt_scaling(8, base_lr=0), 'base_lr'),
    (lambda: rules.effective_lr(0.1, -0.5), 'momentum'),
    (lambda: rules.momentum_rule(8, 0.9, 1.5), 'new_momentum'),
    (lambda: rules.linear_scaling_warmup(8, warmup_epochs=-1), 'warmup'),
  ],
)
def test_bad_input_names_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_linear_scaling_warmup_through_a_batch_schedule():
  # Goyal: 0.1 -> 3.2 over 5 epochs, linear in epochs (not in updates).
  w = rules.linear_scaling_warmup(8192, warmup_epochs=5)
  assert str(w) == 'linear(0.1,end=3.2,length=5)'
  epochs = np.asarray([0, 1, 2.5, 5, 6, 90], np.float32)
  want = [0.1 + 3.1 * min(e / 5, 1) for e in epochs]
  np.testing.assert_allclose(jax.jit(jax.vmap(w))(epochs), want, rtol=1e-6)
  # Under a ramp: N = 1000, batch 100 for 2 epochs then 500: update 21 is at
  # epoch 2.5, update 25 at epoch 4.5.
  s = BatchSchedule((Stage(100, epochs=2), Stage(500, epochs=8)), 1000)
  lr = jax.jit(per_update(w, s))
  for count, epoch in ((0, 0), (10, 1), (21, 2.5), (25, 4.5), (26, 5)):
    assert float(lr(count)) == pytest.approx(0.1 + 3.1 * epoch / 5, rel=1e-6)
  assert str(rules.linear_scaling_warmup(512, warmup_epochs=0)) == (
    'constant(0.2)'
  )
  assert math.isfinite(float(lr(2**31 - 1)))


def test_scaled_lr_by_name():
  # B / B0 = 128 / 32 = 4: linear 0.05 * 4 = 0.2, sqrt 0.05 * 2 = 0.1.
  assert rules.scaled_lr('none', 128, 0.05, 32) == 0.05
  assert rules.scaled_lr('linear', 128, 0.05, 32) == pytest.approx(0.2)
  assert rules.scaled_lr('sqrt', 128, 0.05, 32) == pytest.approx(0.1)
  # Below the base batch: 8 / 32 = 1/4, sqrt 1/2.
  assert rules.scaled_lr('sqrt', 8, 0.05, 32) == pytest.approx(0.025)
  with pytest.raises(ValueError, match='rule'):
    rules.scaled_lr('cubic', 128, 0.05, 32)
  with pytest.raises(ValueError, match='batch_size'):
    rules.scaled_lr('none', 0, 0.05, 32)


@pytest.mark.parametrize(
  'values, expected',
  [
    # Accuracy, tolerance 0.02 below the first batch's 0.95.
    ([0.95, 0.94, 0.90, 0.96], 128),
    ([0.95, 0.93, 0.94, 0.99], None),  # 0.93 is within 0.02: holds
    ([0.95, 0.99, 0.80, 0.70], 128),  # a rise never breaks down
    ([0.95, math.nan, 0.94, 0.94], 64),  # a diverged run breaks down
  ],
)
def test_breakdown_batch_of_accuracy(values, expected):
  got = rules.breakdown_batch([32, 64, 128, 256], values, 0.02)
  assert got == expected


@pytest.mark.parametrize(
  'values, expected',
  [
    # Loss (nats), tolerance 0.05 above the first batch's 2.00.
    ([2.00, 2.04, 2.06, 1.90], 32),
    ([2.00, 2.05, 1.99, 2.00], None),  # exactly at the tolerance: holds
    ([2.00, 1.80, 2.30, 2.40], 32),  # a lower loss never breaks down
    ([2.00, 2.01, math.inf, 2.00], 32),  # a diverged run breaks down
  ],
)
def test_breakdown_batch_of_a_loss(values, expected):
  got = rules.breakdown_batch(
    [8, 16, 32, 64], values, 0.05, higher_is_better=False
  )
  assert got == expected


def test_breakdown_batch_bad_arguments():
  with pytest.raises(ValueError, match='len'):
    rules.breakdown_batch([8, 16], [2.0], 0.05)
  with pytest.raises(ValueError, match='len'):
    rules.breakdown_batch([], [], 0.05)
  with pytest.raises(ValueError, match='tolerance'):
    rules.breakdown_batch([8], [2.0], -0.1)
