"""Plateau policies with scripted losses, read from the optimizer state."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import schedules as S

PER_EPOCH = 3
SPREAD = (-0.25, 0.0, 0.25)  # per-update offsets: the epoch mean is the metric


def lrs_in_force(schedule, epoch_metrics, per_epoch=PER_EPOCH):
  """Trains a dummy parameter; returns the LR used at each update."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    tx = optax.inject_stateful_hyperparams(optax.sgd)(learning_rate=schedule)
  params = {'w': jnp.zeros(2)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  out = []
  for e, metric in enumerate(epoch_metrics):
    for j in range(per_epoch):
      value = metric + (SPREAD[j] if per_epoch == 3 else 0.0)
      _, state = update(
        params,
        state,
        params,
        value=jnp.float32(value),
        epoch=jnp.float32(e + j / per_epoch),
      )
      out.append(float(state.hyperparams['learning_rate']))
  return np.asarray(out).reshape(len(epoch_metrics), per_epoch)


def test_reduce_on_plateau_rel_matches_pytorch():
  metrics = [
    1.0,
    0.95,
    0.92,
    0.8,
    0.79,
    0.78,
    0.77,
    0.5,
    0.49,
    0.49,
    0.49,
    0.49,
  ]
  # PyTorch 2.13.0 ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1,
  # threshold=0.1, threshold_mode='rel', min_lr=0.02), the LR after
  # step(metric) of each epoch (printed by PyTorch, throwaway venv):
  torch_after = [
    0.1,
    0.1,
    0.05,
    0.05,
    0.05,
    0.025,
    0.025,
    0.025,
    0.025,
    0.02,
    0.02,
    0.02,
  ]
  s = S.reduce_on_plateau(
    0.1, factor=0.5, patience=1, cooldown=1, threshold=0.1, min_value=0.02
  )
  got = lrs_in_force(s, metrics)
  # Constant within each epoch; epoch e + 1 uses the decision on epoch e.
  assert np.all(got == got[:, :1])
  np.testing.assert_allclose(got[:, 0], [0.1] + torch_after[:-1], rtol=1e-6)


def test_reduce_on_plateau_abs_matches_pytorch():
  metrics = [1.0, 0.96, 0.90, 0.89, 0.5, 0.46, 0.45]
  # PyTorch 2.13.0 ReduceLROnPlateau(factor=0.1, patience=0, threshold=0.05,
  # threshold_mode='abs') on lr 1.0, printed after each step(metric):
  torch_after = [1.0, 0.1, 0.1, 0.01, 0.01, 0.001, 0.0001]
  s = S.reduce_on_plateau(1.0, patience=0, threshold=0.05, mode='abs')
  got = lrs_in_force(s, metrics, per_epoch=1)
  np.testing.assert_allclose(got[:, 0], [1.0] + torch_after[:-1], rtol=1e-6)


def test_reduce_on_plateau_hand_worked_patience_and_floor():
  # patience 2: bad epochs 1, 2, 3 -> reduce after epoch 3 (bad > 2);
  # 0.1 -> 0.03 (factor 0.3), then floor 0.02 after 3 more bad epochs.
  s = S.reduce_on_plateau(0.1, factor=0.3, patience=2, min_value=0.02)
  got = lrs_in_force(s, [1.0] * 9, per_epoch=2)[:, 0]
  np.testing.assert_allclose(
    got, [0.1, 0.1, 0.1, 0.1, 0.03, 0.03, 0.03, 0.02, 0.02], rtol=1e-6
  )


def test_switch_on_plateau_hand_worked():
  # window 3, threshold 0.05, cooldown 1. Epoch means and what happens after
  # each (gains over the last 3 means, num epochs must exceed 3):
  # e0 1.0, e1 0.8, e2 0.6, e3 0.59 (gains .2,.01 -> no), e4 0.58 (gains .01,
  # .01 -> switch to 1), e5 0.57 (plateau but cooldown 1 -> 0), e6 0.56
  # (switch to 2), e7 0.3 (cooldown), e8 0.29 (gains .26 -> no).
  policies = [
    S.constant(0.1),
    S.constant(0.05),
    S.linear(0.01, end=0.0, length=100),
  ]
  s = S.switch_on_plateau(policies, window=3, threshold=0.05, cooldown=1)
  metrics = [1.0, 0.8, 0.6, 0.59, 0.58, 0.57, 0.56, 0.3, 0.29, 0.28]
  got = lrs_in_force(s, metrics)
  expected_first = [0.1] * 5 + [0.05] * 2
  np.testing.assert_allclose(got[:7, 0], expected_first, rtol=1e-6)
  # The third policy is evaluated at the global epoch t = e + j / 3.
  t = np.arange(7, 10)[:, None] + np.arange(3)[None, :] / 3
  np.testing.assert_allclose(got[7:], 0.01 * (1 - t / 100), rtol=1e-5)


def test_switch_on_plateau_update_clock():
  s = S.switch_on_plateau(
    [S.constant(1.0), S.step(1.0, length=4)],
    window=2,
    threshold=0.1,
    cooldown=0,
    clock='update',
  )
  got = lrs_in_force(s, [1.0] * 4, per_epoch=2).ravel()
  # Plateau after epoch 2 (3 epochs > window 2): updates 6, 7 use step(t).
  np.testing.assert_allclose(got, [1, 1, 1, 1, 1, 1, 0.1, 0.1], rtol=1e-6)


def test_state_is_arrays_and_errors():
  s = S.reduce_on_plateau(0.1)
  leaves = jax.tree.leaves(s.init())
  assert all(isinstance(x, jax.Array) for x in leaves)
  with pytest.raises(TypeError, match='value=<loss>, epoch=<epoch>'):
    s.update(s.init(), value=1.0)
  with pytest.raises(ValueError, match='factor=1.0 must be < 1'):
    S.reduce_on_plateau(0.1, factor=1.0)
  with pytest.raises(ValueError, match='window=1 must be an integer >= 2'):
    S.switch_on_plateau([S.constant(0.1)], window=1)
  assert hash(s) == hash(S.parse(str(s)))


def test_switch_on_plateau_lrbench_back_then_forward():
  # total 10 epochs: plateaus decided at epochs < 8 move back (higher LR),
  # from 8 on forward. window 2, cooldown 0, constant loss: plateau at every
  # epoch end from epoch 2 on (3 means > window 2).
  policies = [S.constant(0.3), S.constant(0.1), S.constant(0.03)]
  s = S.switch_on_plateau(
    policies, window=2, threshold=0.01, cooldown=0, total=10, start=1
  )
  got = lrs_in_force(s, [1.0] * 11, per_epoch=1)[:, 0]
  # The decision on epoch e is taken at the first update of e + 1, with
  # t = e + 1: back for t < 8 (epochs 3..7), forward at t = 8, 9, 10.
  expected = [0.1, 0.1, 0.1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.1, 0.03, 0.03]
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert str(s) == (
    'switch_on_plateau(constant(0.3)/constant(0.1)/'
    'constant(0.03),window=2,threshold=0.01,cooldown=0,'
    'total=10,start=1)'
  )
  assert S.parse(str(s)) == s


def test_policies_pickle_through_text():
  import copy
  import pickle

  p = S.warmup(S.cosine(0.4, length=90), length=5)
  q = pickle.loads(pickle.dumps(p))
  assert q == p and float(q(50)) == float(p(50))
  assert copy.deepcopy(p) == p
  r = S.switch_on_plateau([p, S.constant(0.01)])
  assert pickle.loads(pickle.dumps(r)) == r


def test_non_finite_losses_are_left_out_of_the_epoch_mean():
  s = S.reduce_on_plateau(0.1, factor=0.5, patience=0)
  state = s.init()
  # Epoch 0: 1.0 and nan -> mean 1.0; epoch 1: 0.5 and inf -> mean 0.5
  # (better: no reduction); epoch 2: only nan -> no decision.
  for epoch, v in [
    (0.0, 1.0),
    (0.5, np.nan),
    (1.0, 0.5),
    (1.5, np.inf),
    (2.0, np.nan),
  ]:
    state = s.update(state, value=jnp.float32(v), epoch=jnp.float32(epoch))
  assert float(state.best) == 0.5
  assert float(s(state, epoch=jnp.float32(3.0))) == pytest.approx(0.1)
