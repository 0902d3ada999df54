"""Every optimizer of `lrjax.train.make_optimizer` against plain numpy.

Each expected update is written out in float64 numpy from the formula the
peer documents (optax's docstrings, PyTorch's SGD/Adam/AdamW pseudocode, the
papers), never from optax or lrjax code, and compared after one and after two
updates, with momentum (or b1), Nesterov and weight decay switched on: a
dropped weight decay, a Nesterov step that is not Nesterov, a b2 that does
not reach Adam, or a trust ratio taken over the wrong tensor all move the
parameters far beyond the float32 tolerance.

Conventions written out below (t = 1, 2, ... is the update number, p the
parameters before the update, g the gradient, leaves are the arrays of the
parameter tree):

- sgd / nesterov (PyTorch SGD, optax.sgd; weight decay is L2, coupled):
  d = g + wd p; v = m v + d (v = 0 before the first update);
  p -= lr v, or p -= lr (d + m v) with Nesterov.
- adam (Kingma & Ba 2015; weight decay L2-coupled as in PyTorch Adam):
  d = g + wd p; mu = b1 mu + (1 - b1) d; nu = b2 nu + (1 - b2) d^2;
  p -= lr mu_hat / (sqrt(nu_hat) + 1e-8), hats divided by 1 - b^t.
- adamw (Loshchilov & Hutter 2019, decoupled): the adam step on d = g, and
  p -= lr wd p besides.
- lamb (You et al. 2020, phi = identity, optax's eps 1e-6):
  r = mu_hat / (sqrt(nu_hat) + 1e-6) + wd p on d = g;
  p -= lr (|p| / |r|) r per leaf (ratio 1 where a norm is 0).
- lars (You et al. 2017 as optax.lars implements it: trust coefficient
  0.001, weight decay inside the trust ratio's norm):
  d = g + wd p; v = m v + lr (0.001 |p| / |d|) d per leaf; p -= v.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax.train import make_optimizer
from lrjax.train._step import hyperparams

LR, MOMENTUM, B2, WD = 0.1, 0.9, 0.99, 0.05

# Two leaves of different norms, so that per-leaf trust ratios differ.
PARAMS = {
  'b': np.array([0.1, -0.2, 0.3]),
  'w': np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]),
}
GRADS = [
  {
    'b': np.array([1.0, -0.5, 0.25]),
    'w': np.array([[0.2, 0.1, -0.4], [-0.3, 0.6, 0.05]]),
  },
  {
    'b': np.array([-0.5, 0.75, 0.5]),
    'w': np.array([[-0.1, 0.3, 0.2], [0.4, -0.2, 0.1]]),
  },
]


def _sgd(nesterov):
  def step(p, g, state, t, wd):
    del t
    d = g + wd * p
    v = MOMENTUM * state.get('v', 0.0) + d
    direction = d + MOMENTUM * v if nesterov else v
    return p - LR * direction, {'v': v}

  return step


def _adam_moments(d, state, t):
  mu = MOMENTUM * state.get('mu', 0.0) + (1 - MOMENTUM) * d
  nu = B2 * state.get('nu', 0.0) + (1 - B2) * d**2
  mu_hat = mu / (1 - MOMENTUM**t)
  nu_hat = nu / (1 - B2**t)
  return mu_hat, nu_hat, {'mu': mu, 'nu': nu}


def _adam(p, g, state, t, wd):
  mu_hat, nu_hat, state = _adam_moments(g + wd * p, state, t)
  return p - LR * mu_hat / (np.sqrt(nu_hat) + 1e-8), state


def _adamw(p, g, state, t, wd):
  mu_hat, nu_hat, state = _adam_moments(g, state, t)
  return p - LR * (mu_hat / (np.sqrt(nu_hat) + 1e-8) + wd * p), state


def _trust(p, u, coefficient=1.0):
  pn, un = np.linalg.norm(p), np.linalg.norm(u)
  return 1.0 if pn == 0 or un == 0 else coefficient * pn / un


def _lamb(p, g, state, t, wd):
  mu_hat, nu_hat, state = _adam_moments(g, state, t)
  r = mu_hat / (np.sqrt(nu_hat) + 1e-6) + wd * p
  return p - LR * _trust(p, r) * r, state


def _lars(p, g, state, t, wd):
  del t
  d = g + wd * p
  v = MOMENTUM * state.get('v', 0.0) + LR * _trust(p, d, 0.001) * d
  return p - v, {'v': v}


NUMPY = {
  'sgd': _sgd(nesterov=False),
  'nesterov': _sgd(nesterov=True),
  'adam': _adam,
  'adamw': _adamw,
  'lamb': _lamb,
  'lars': _lars,
}


def _numpy_run(name, wd, grads):
  """Parameters after each update, leaf by leaf, in float64."""
  params = {k: v.copy() for k, v in PARAMS.items()}
  states = {k: {} for k in PARAMS}
  out = []
  for t, g in enumerate(grads, start=1):
    for k in PARAMS:
      params[k], states[k] = NUMPY[name](params[k], g[k], states[k], t, wd)
    out.append({k: v.copy() for k, v in params.items()})
  return out


def _f32(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


def _lrjax_run(tx, grads):
  update = jax.jit(tx.update)
  params = _f32(PARAMS)
  state = tx.init(params)
  out = []
  for g in grads:
    # The trainer passes the loss (plateau policies) and the epoch.
    updates, state = update(
      _f32(g), state, params, value=jnp.float32(1.0), epoch=jnp.float32(0.0)
    )
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    out.append(params)
  return out, state


def _assert_close(got, want, what):
  for k in want:
    np.testing.assert_allclose(
      np.asarray(got[k]), want[k], rtol=2e-5, atol=1e-7, err_msg=what
    )


@pytest.mark.parametrize('wd', [WD, 0.0], ids=['weight_decay', 'no_decay'])
@pytest.mark.parametrize('name', list(NUMPY))
def test_two_updates_match_numpy(name, wd):
  tx = make_optimizer(
    name, learning_rate=LR, momentum=MOMENTUM, weight_decay=wd, b2=B2
  )
  got, _ = _lrjax_run(tx, GRADS)
  want = _numpy_run(name, wd, GRADS)
  for t in range(len(GRADS)):
    _assert_close(got[t], want[t], f'{name}, update {t + 1}')


def test_each_setting_moves_the_result():
  # The comparison above can fail: each knob changes the two-update result
  # by far more than its tolerance.
  base = _numpy_run('sgd', WD, GRADS)[-1]
  for other in (
    _numpy_run('nesterov', WD, GRADS)[-1],  # Nesterov off/on
    _numpy_run('sgd', 0.0, GRADS)[-1],  # SGD without weight decay
    _numpy_run('adam', WD, GRADS)[-1],
  ):
    assert np.abs(other['w'] - base['w']).max() > 1e-3
  adam = _numpy_run('adam', WD, GRADS)[-1]
  for other in (
    _numpy_run('adam', 0.0, GRADS)[-1],  # L2 changes Adam's second step
    _numpy_run('adamw', WD, GRADS)[-1],  # coupled vs decoupled
  ):
    assert np.abs(other['w'] - adam['w']).max() > 1e-4


def test_schedules_are_read_at_the_update_count():
  # LR 0.1 then 0.05, weight decay 0.05 then 0.2: update t uses the values
  # at count t - 1, and the state exposes the values in force.
  def lr(count):
    return jnp.where(count < 1, 0.1, 0.05)

  def wd(count):
    return jnp.where(count < 1, 0.05, 0.2)

  tx = make_optimizer(
    'sgd', learning_rate=lr, momentum=MOMENTUM, weight_decay=wd
  )
  got, state = _lrjax_run(tx, GRADS)
  p0, g1, g2 = PARAMS['w'], GRADS[0]['w'], GRADS[1]['w']
  v1 = g1 + 0.05 * p0
  p1 = p0 - 0.1 * v1
  v2 = MOMENTUM * v1 + g2 + 0.2 * p1
  np.testing.assert_allclose(got[0]['w'], p1, rtol=2e-6)
  np.testing.assert_allclose(got[1]['w'], p1 - 0.05 * v2, rtol=2e-6)
  # After two updates the schedules stand at count 2.
  hp = hyperparams(state)
  assert float(hp['learning_rate']) == pytest.approx(0.05)
  assert float(hp['weight_decay']) == pytest.approx(0.2)
  assert float(hp['momentum']) == pytest.approx(MOMENTUM)


def test_accumulation_applies_the_mean_gradient_once():
  # every_k_schedule=2: two micro-steps, then one Nesterov update with the
  # mean of their gradients; the first micro-step changes nothing.
  tx = make_optimizer(
    'nesterov',
    learning_rate=LR,
    momentum=MOMENTUM,
    weight_decay=WD,
    every_k_schedule=2,
  )
  got, _ = _lrjax_run(tx, GRADS)
  mean = {k: (GRADS[0][k] + GRADS[1][k]) / 2 for k in PARAMS}
  (want,) = _numpy_run('nesterov', WD, [mean])
  _assert_close(got[0], PARAMS, 'first micro-step')
  _assert_close(got[1], want, 'accumulated update')


@pytest.mark.parametrize('every_k', [None, 2])
def test_skipped_non_finite_update_leaves_everything(every_k):
  # An inf gradient is skipped: parameters and momentum stay as they were,
  # so the run equals one without that gradient.
  tx = make_optimizer(
    'sgd',
    learning_rate=LR,
    momentum=MOMENTUM,
    weight_decay=WD,
    every_k_schedule=every_k,
    skip_non_finite=True,
  )
  bad = {k: np.full_like(v, np.inf) for k, v in PARAMS.items()}
  if every_k is None:
    got, _ = _lrjax_run(tx, [GRADS[0], bad, GRADS[1]])
    want = _numpy_run('sgd', WD, GRADS)
    _assert_close(got[1], want[0], 'after the skipped update')
    _assert_close(got[2], want[1], 'after the next update')
  else:
    got, _ = _lrjax_run(tx, [GRADS[0], bad, GRADS[1]])
    mean = {k: (GRADS[0][k] + GRADS[1][k]) / 2 for k in PARAMS}
    (want,) = _numpy_run('sgd', WD, [mean])
    _assert_close(got[2], want, 'accumulated past the skipped micro-step')
