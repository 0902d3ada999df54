"""The language-model task on four simulated CPU devices (root conftest).

One data-parallel step of the transformer, with dropout, under ``jax.pmap``
and under ``jax.jit(jax.shard_map(...))``: the same per-device body (and
the same per-device dropout keys), so the parameters, the loss and the
gradient norms, per device and all-reduced, must agree to float32
round-off.
"""

import jax
import numpy as np
import pytest

from experiments import _lm_common
from lrjax import data as ldata
from lrjax.train import NoiseConfig, train_and_evaluate


def _text(n_bytes=4096, seed=0):
  rng = np.random.RandomState(seed)
  words = [b'def ', b'return ', b'self', b'(x)', b': ', b'\n    ', b'import ']
  out = b''.join(words[i] for i in rng.randint(0, len(words), n_bytes // 4))
  return ldata.TextDataset.from_text(out[:n_bytes], seq_len=16)


def _step(mode, num_devices, tmp_path):
  common = _lm_common.LmCommon(
    seq_len=16,
    lm_layers=1,
    lm_heads=2,
    lm_width=32,
    lm_dropout=0.1,
    batch_size=8,
    num_devices=num_devices,
    parallel=mode,
    log_every=1,
  )
  task = _lm_common.make_task(common, _text(), None, seed=0)
  config = _lm_common.train_config(
    common,
    batch=8,
    lr=1e-2,
    seed=0,
    eval_every=0,
    num_epochs=1.0,
    max_updates=1,
    prefetch=0,
    noise=NoiseConfig(enabled=num_devices > 1, decay=0.0),
  )
  return train_and_evaluate(
    config, str(tmp_path / f'{mode}{num_devices}'), task
  )


def test_one_lm_step_under_pmap_equals_shard_map_on_four_devices(tmp_path):
  assert jax.device_count() >= 4
  pmap = _step('pmap', 4, tmp_path)
  shard = _step('shard_map', 4, tmp_path)
  assert pmap.num_updates == shard.num_updates == 1
  for a, b in zip(
    jax.tree.leaves(pmap.params), jax.tree.leaves(shard.params), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
  for key in ('loss', 'bits_per_byte', 'grad_sq_norm', 'noise_scale'):
    assert pmap.train_metrics[key] == pytest.approx(
      shard.train_metrics[key], rel=1e-5
    ), key
  # The initial loss of the 256-way softmax, and a finite noise estimate
  # from the per-device (2 sequences) and all-reduced (8) gradients.
  assert pmap.train_metrics['loss'] == pytest.approx(np.log(256), abs=0.05)
  assert np.isfinite(pmap.train_metrics['noise_scale'])
