"""lrjax.recipe's probes data parallel on 4 simulated CPU devices (the root
conftest sets them).

On R devices the probes split the global batch evenly, as the trainer does;
the noise probe's small batches are the devices' shards. With R = 4 and the
one-device probe slicing the same batches in 4, the two estimators are the
same arithmetic, so the measurements and the recommendation must agree up
to float32 round-off; both must also be near the closed-form noise scale of
the known task (tests/test_recipe.py).
"""

import jax
import numpy as np
import pytest
from test_recipe import FakeClock, exact_b_simple, known_task

from lrjax import recipe


def test_there_are_four_devices():
  assert jax.local_device_count() >= 4


def test_noise_probe_on_four_devices_matches_four_slices_on_one():
  task = known_task()
  kwargs = dict(lr=0.1, batch_size=512, num_updates=20, momentum=0.0, seed=1)
  one = recipe.probe_noise(task, num_slices=4, **kwargs)
  four = recipe.probe_noise(task, num_devices=4, **kwargs)
  np.testing.assert_allclose(four.history, one.history, rtol=1e-5)
  assert four.b_simple == pytest.approx(one.b_simple, rel=1e-5)
  assert four.examples == one.examples == 20 * 512
  # The closed form: B_simple = var(s)/mean(s)^2 = 24.0 (tolerance as in
  # test_noise_probe_measures_the_exact_noise_scale).
  assert four.b_simple == pytest.approx(exact_b_simple(), rel=0.33)


def test_recommendation_on_four_devices_equals_one_device():
  task = known_task()
  budget = recipe.Budget(epochs=100)
  kwargs = dict(momentum=0.0, probe_batch=512, seed=0)
  one = recipe.recommend(task, budget, **kwargs)
  four = recipe.recommend(task, budget, num_devices=4, **kwargs)
  # The range test sees the same losses up to round-off: the same LR.
  assert four.probe_lr == one.probe_lr
  assert four.b_simple == pytest.approx(one.b_simple, rel=1e-5)
  assert four.probe_examples == one.probe_examples
  # Theory (B_simple near 24): start 8 = 4 x 2 devices x 2^j <= 12, cap
  # 1024 <= N/10 = 1638; the same sizes as on one device.
  assert (four.start_batch, four.max_batch, four.decay) == (8, 1024, 'ramp')
  assert (four.lr, four.batch, four.rule) == (one.lr, one.batch, one.rule)


def test_timing_probe_on_four_devices_keys_the_global_batch():
  task = known_task()
  clock = FakeClock([0, 0.5, 1, 1.5, 2, 2.25, 3, 3.25])
  seconds, examples = recipe.probe_step_seconds(
    task, (64, 256), num_steps=2, num_devices=4, clock=clock
  )
  assert seconds == {64: 0.5, 256: 0.25}
  assert examples == 3 * 64 + 3 * 256


def test_bad_device_counts_are_named():
  task = known_task()
  with pytest.raises(ValueError, match='multiple of num_devices=4'):
    recipe.probe_noise(task, lr=0.1, batch_size=510, num_devices=4)
  too_many = jax.local_device_count() + 4
  with pytest.raises(ValueError, match=f'num_devices={too_many} must be in'):
    recipe.probe_lr(task, batch_size=8 * too_many, num_devices=too_many)
