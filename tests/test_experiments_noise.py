"""The noise-scale flags of the experiments reach the trainer."""

import pytest

from experiments import _common


def test_noise_flags_reach_the_trainer_and_bad_slices_name_the_flag():
  common = _common.CommonConfig(
    noise=True, noise_decay=0.8, noise_every=3, noise_slices=2
  )
  n = _common.noise_config(common, [32, 96])
  assert (n.enabled, n.decay, n.every, n.num_slices) == (True, 0.8, 3, 2)
  # 0 = automatic: 4 divides 32 and 96, only 2 divides 32 and 90.
  auto = _common.CommonConfig(noise=True)
  assert _common.noise_config(auto, [32, 96]).num_slices == 4
  assert _common.noise_config(auto, [32, 90]).num_slices == 2
  with pytest.raises(ValueError, match='noise_slices=4 must divide'):
    _common.noise_config(_common.CommonConfig(noise_slices=4), [32, 90])
