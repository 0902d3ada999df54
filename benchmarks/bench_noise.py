"""How close the gradient noise scale tracker gets, and what it costs.

Trains an MLP (`lrjax.models.MLP`, one hidden layer of 64) on the 1,797
scikit-learn digits with SGD (lr 0.1, momentum 0.9) at batch B = 256 for
``--steps`` updates. Every step splits the batch into k = 8 slices
(`lrjax.noise.sliced_sq_norms`: B_small = 32, B_big = 256) and updates two
trackers (EMA decay 0.95 and 0.99, finite-population correction N = 1,797).
At a few steps it computes the exact B_simple from per-example gradients over
the whole training set and prints, per checkpoint:

- ``exact``: tr(Sigma)/|G|^2 from 1,797 per-example gradients;
- ``fixed``: the estimator averaged over 200 fresh (B_small, B_big) pairs at
  the checkpoint's parameters (what the tracker converges to if the
  parameters stood still: the estimator's own accuracy);
- ``xema.95`` / ``xema.99``: the ratio of EMAs (decay 0.95 / 0.99) of the
  *exact* tr(Sigma) and |G|^2 at every step's parameters: what a
  ratio-of-EMAs tracker estimates while B_simple moves (it lags);
- ``ema.95`` / ``ema.99``: the trackers' B_simple during training, with
  ``err`` against the matching ``xema`` (the first ``err`` is ``fixed``
  against ``exact``).

Then the cost of one update, median over ``--repeats`` timed calls:

- ``plain``: jitted value_and_grad + SGD update;
- ``sliced k``: the same update from `sliced_sq_norms` (k slice gradients in
  one vmap, their norms, the batch gradient as their mean);
- ``exact``: the per-example pass over the training set (for scale).

In data-parallel training the small batch is the per-device gradient and the
estimate costs one extra squared norm and a scalar all-reduce per step (not
timed here: simulated CPU devices share the same cores).

Run: ``python -m benchmarks.bench_noise [--steps=300] [--repeats=50]``.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from lrjax import models, noise


def _timeit(fn, repeats):
  jax.block_until_ready(fn())  # compile
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return statistics.median(times) * 1e3


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--repeats', type=int, default=50)
  parser.add_argument('--batch', type=int, default=256)
  parser.add_argument('--slices', type=int, default=8)
  args = parser.parse_args()

  x, y = load_digits(return_X_y=True)
  x = jnp.asarray((x / 16.0).reshape(-1, 8, 8, 1), jnp.float32)
  y = jnp.asarray(y, jnp.int32)
  n = x.shape[0]
  model = models.MLP(hidden=(64,), num_classes=10)
  params = jax.jit(model.init)(jax.random.key(0), x[:1])['params']
  tx = optax.sgd(0.1, momentum=0.9)
  opt_state = tx.init(params)

  def loss_fn(p, batch):
    logits = model.apply({'params': p}, batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch[1]
    ).mean()

  grad_fn = jax.grad(loss_fn)
  k, b = args.slices, args.batch

  @jax.jit
  def plain_step(p, s, batch):
    loss, g = jax.value_and_grad(loss_fn)(p, batch)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  @jax.jit
  def sliced_step(p, s, batch):
    r = noise.sliced_sq_norms(grad_fn, p, batch, k)
    u, s = tx.update(r.grad, s, p)
    return optax.apply_updates(p, u), s, r.sq_norm_small, r.sq_norm_big

  @jax.jit
  def fixed_b(p, idx):
    def one(i):
      r = noise.sliced_sq_norms(grad_fn, p, (x[i], y[i]), k)
      return r.sq_norm_small, r.sq_norm_big

    small, big = jax.vmap(one)(idx)
    g2, tr = noise.estimate(small, big, b // k, b, num_examples=n)
    return jnp.mean(tr) / jnp.mean(g2)

  @jax.jit
  def exact_parts(p):
    per = jax.vmap(grad_fn, in_axes=(None, 0))(p, (x[:, None], y[:, None]))
    return noise.exact(per)

  rng = np.random.default_rng(0)
  decays = (0.95, 0.99)
  trackers = {d: noise.init() for d in decays}
  # The same EMAs of the exact |G|^2 and tr(Sigma) at the same parameters:
  # the quantity a ratio-of-EMAs tracker estimates while B_simple moves.
  exact_emas = {d: np.zeros(2) for d in decays}
  checkpoints = sorted(
    {0, 25, 50, 100, 200, args.steps} & set(range(args.steps + 1))
  )
  rows = []
  for step in range(args.steps + 1):
    g2, tr, ex = (float(v) for v in exact_parts(params))
    if step in checkpoints:
      est = {d: float(noise.b_simple(s)) for d, s in trackers.items()}
      target = {
        d: e[1] / e[0] if e[0] else np.nan for d, e in exact_emas.items()
      }
      pairs = np.stack([rng.permutation(n)[:b] for _ in range(200)])
      rows.append((step, ex, float(fixed_b(params, pairs)), est, target))
    if step == args.steps:
      break
    idx = rng.permutation(n)[:b]
    params, opt_state, small, big = sliced_step(
      params, opt_state, (x[idx], y[idx])
    )
    for d in decays:
      trackers[d] = noise.update(
        trackers[d], float(small), float(big), b // k, b, d, num_examples=n
      )
      exact_emas[d] = d * exact_emas[d] + (1 - d) * np.array([g2, tr])

  print(f'# noise scale tracker vs exact: MLP(64) on digits, B={b}, k={k}')
  print(
    f'{"step":>5} {"exact":>8} {"fixed":>8} {"err":>5} | '
    + ' | '.join(
      f'{"xema" + str(d)[1:]:>8} {"ema" + str(d)[1:]:>8} {"err":>5}'
      for d in decays
    )
  )

  def err(e, ref):
    return f'{(e / ref - 1) * 100:+.0f}%' if np.isfinite(e * ref) else '-'

  for step, ex, fixed, est, target in rows:
    cells = [f'{step:5d} {ex:8.1f} {fixed:8.1f} {err(fixed, ex):>5}']
    for d in decays:
      cells.append(
        f'{target[d]:8.1f} {est[d]:8.1f} {err(est[d], target[d]):>5}'
      )
    print(' | '.join(cells))

  batch = (x[:b], y[:b])
  t_plain = _timeit(lambda: plain_step(params, opt_state, batch), args.repeats)
  t_sliced = _timeit(
    lambda: sliced_step(params, opt_state, batch), args.repeats
  )
  t_exact = _timeit(lambda: exact_parts(params), max(5, args.repeats // 5))
  print(f'\n# cost per update (median of {args.repeats}, ms)')
  print(f'{"plain":>10} {"sliced " + str(k):>10} {"ratio":>6} {"exact":>8}')
  print(
    f'{t_plain:10.3f} {t_sliced:10.3f} {t_sliced / t_plain:6.2f} {t_exact:8.3f}'
  )


if __name__ == '__main__':
  main()
