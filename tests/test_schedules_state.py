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
  s = S.reduce_on_plateau(1.0, patience=0, threshold=0.05, threshold_mode='abs')
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
  with pytest.raises(TypeError, match='value=<metric>, epoch=<epoch>'):
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


class TorchReduceLROnPlateau:
  """PyTorch's ReduceLROnPlateau.step, restated from its documented code."""

  def __init__(
    self,
    lr,
    mode='min',
    factor=0.1,
    patience=10,
    threshold=1e-4,
    threshold_mode='rel',
    cooldown=0,
    min_lr=0.0,
    eps=1e-8,
  ):
    self.lr, self.mode, self.factor, self.patience = lr, mode, factor, patience
    self.threshold, self.threshold_mode = threshold, threshold_mode
    self.cooldown, self.min_lr, self.eps = cooldown, min_lr, eps
    self.best = float('inf') if mode == 'min' else float('-inf')
    self.num_bad_epochs = 0
    self.cooldown_counter = 0

  def is_better(self, a, best):
    if self.mode == 'min' and self.threshold_mode == 'rel':
      return a < best * (1.0 - self.threshold)
    if self.mode == 'min' and self.threshold_mode == 'abs':
      return a < best - self.threshold
    if self.mode == 'max' and self.threshold_mode == 'rel':
      return a > best * (self.threshold + 1.0)
    return a > best + self.threshold

  def step(self, metric):
    current = float(metric)
    if self.is_better(current, self.best):
      self.best = current
      self.num_bad_epochs = 0
    else:
      self.num_bad_epochs += 1
    if self.cooldown_counter > 0:
      self.cooldown_counter -= 1
      self.num_bad_epochs = 0
    if self.num_bad_epochs > self.patience:
      new_lr = max(self.lr * self.factor, self.min_lr)
      if self.lr - new_lr > self.eps:
        self.lr = new_lr
      self.cooldown_counter = self.cooldown
      self.num_bad_epochs = 0
    return self.lr


def lrs_on_epoch_metric(schedule, epoch_metrics, per_epoch=3):
  """Like a trainer feeding a validation metric measured after each epoch.

  Every update of epoch e passes the metric of epoch e - 1 with its first
  update (NaN in epoch 0, before any measurement) and other values, which
  the policy must ignore, with the rest.
  """
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    tx = optax.inject_stateful_hyperparams(optax.sgd)(learning_rate=schedule)
  params = {'w': jnp.zeros(2)}
  state = tx.init(params)
  update = jax.jit(tx.update)
  out = []
  for e in range(len(epoch_metrics) + 1):
    latest = epoch_metrics[e - 1] if e else np.nan
    for j in range(per_epoch):
      value = latest if j == 0 else 1e3 * (-1) ** j
      _, state = update(
        params,
        state,
        params,
        value=jnp.float32(value),
        epoch=jnp.float32(e + j / per_epoch),
      )
      out.append(float(state.hyperparams['learning_rate']))
  return np.asarray(out).reshape(len(epoch_metrics) + 1, per_epoch)


# No metric ties its threshold (the decisions hold in float32 and float64).
VAL_ACCURACY = [
  0.5,
  0.6,
  0.65,
  0.657,
  0.662,
  0.7,
  0.693,
  0.704,
  0.716,
  0.705,
  0.708,
  0.711,
  0.713,
  0.709,
]


@pytest.mark.parametrize(
  'kwargs',
  [
    dict(mode='max', factor=0.5, patience=1, threshold=0.02),
    dict(
      mode='max',
      factor=0.5,
      patience=0,
      threshold=0.01,
      threshold_mode='abs',
      cooldown=1,
      min_value=0.02,
    ),
    dict(mode='max', factor=0.3, patience=2, threshold=0.0),
  ],
)
def test_reduce_on_plateau_on_a_validation_metric_matches_pytorch(kwargs):
  s = S.reduce_on_plateau(0.1, value_per='epoch', **kwargs)
  torch_kwargs = {k: v for k, v in kwargs.items() if k != 'min_value'}
  ref = TorchReduceLROnPlateau(
    0.1, min_lr=kwargs.get('min_value', 0.0), **torch_kwargs
  )
  # PyTorch: for each epoch, train, then step(val_metric); epoch e + 1
  # trains with the LR after step(metric of epoch e).
  expected = [0.1] + [ref.step(m) for m in VAL_ACCURACY]
  got = lrs_on_epoch_metric(s, VAL_ACCURACY)
  assert np.all(got == got[:, :1])
  np.testing.assert_allclose(got[:, 0], expected, rtol=1e-6)
  assert len(set(expected)) > 1  # the table does reduce


def test_reduce_on_plateau_max_on_the_epoch_mean_matches_pytorch():
  # mode='max' on a per-update metric: the decision uses the epoch mean.
  s = S.reduce_on_plateau(0.1, factor=0.5, patience=1, mode='max')
  ref = TorchReduceLROnPlateau(0.1, mode='max', factor=0.5, patience=1)
  expected = [0.1] + [ref.step(m) for m in VAL_ACCURACY][:-1]
  got = lrs_in_force(s, VAL_ACCURACY)
  np.testing.assert_allclose(got[:, 0], expected, rtol=1e-6)
  assert len(set(expected)) > 1


def test_reduce_on_plateau_min_on_a_validation_loss_matches_pytorch():
  losses = [1.0, 0.9, 0.95, 0.97, 0.8, 0.81, 0.82, 0.83]
  s = S.reduce_on_plateau(
    1.0,
    factor=0.1,
    patience=1,
    threshold=0.05,
    threshold_mode='abs',
    value_per='epoch',
  )
  ref = TorchReduceLROnPlateau(
    1.0, factor=0.1, patience=1, threshold=0.05, threshold_mode='abs'
  )
  expected = [1.0] + [ref.step(m) for m in losses]
  got = lrs_on_epoch_metric(s, losses)
  np.testing.assert_allclose(got[:, 0], expected, rtol=1e-6)


def test_switch_on_plateau_max_mode_hand_worked():
  # window 3, threshold 0.05 on an accuracy: after epoch e (e >= 3) switch
  # when no epoch of the last three gained 0.05 over the one before.
  # Accuracies 0.5, 0.6, 0.7, 0.72, 0.73: after epoch 3 the gains are
  # (.1, .02): no; after epoch 4 (.02, .01): switch, so epoch 5 uses the
  # second policy.
  accuracies = [0.5, 0.6, 0.7, 0.72, 0.73]
  s = S.switch_on_plateau(
    [S.constant(0.1), S.constant(0.01)],
    window=3,
    threshold=0.05,
    cooldown=0,
    mode='max',
    value_per='epoch',
  )
  got = lrs_on_epoch_metric(s, accuracies)
  np.testing.assert_allclose(got[:, 0], [0.1] * 5 + [0.01], rtol=1e-6)
  # In mode='min' a rising metric is no improvement at all: the "gains"
  # (-.1, -.02) are below the threshold at the first check, after epoch 3.
  s_min = S.switch_on_plateau(
    [S.constant(0.1), S.constant(0.01)],
    window=3,
    threshold=0.05,
    cooldown=0,
    value_per='epoch',
  )
  got = lrs_on_epoch_metric(s_min, accuracies)
  np.testing.assert_allclose(got[:, 0], [0.1] * 4 + [0.01] * 2, rtol=1e-6)


def test_mode_names_the_threshold_mode_when_given_one():
  with pytest.raises(ValueError, match=r"write threshold_mode='abs'"):
    S.reduce_on_plateau(0.1, mode='abs')
  with pytest.raises(ValueError, match=r"value_per='batch' must be one of"):
    S.reduce_on_plateau(0.1, value_per='batch')
  with pytest.raises(ValueError, match=r"mode='up' must be one of min, max"):
    S.switch_on_plateau([S.constant(0.1)], mode='up')
