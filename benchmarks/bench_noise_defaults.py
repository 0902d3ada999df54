"""How steady one logged noise-scale reading is, at what cost and lag.

Picks the defaults of the trainer's noise tracker (`lrjax.train.NoiseConfig`
and the experiments' `--noise_decay`, `--noise_every`, `--noise_slices`)
from a measurement instead of a guess. The setting is the ramp experiment's
first stage (`experiments/flagfiles/digits.cfg`): `lrjax.models.MLP` (one
hidden layer of 128) on N = 1,437 of the scikit-learn digits, batch 32,
SGD with LR 0.3, momentum 0.9 and weight decay 1e-3, ``--steps`` updates
(450 = 10 epochs, the stage's length), batches drawn by the trainer's
`lrjax.data.Sampler`.

One training trajectory serves every tracker setting: slicing the batch
does not change the update (the batch gradient is the mean of the slice
gradients), so at every update the script records, on the update's batch,
the squared norms of the slice and batch gradients for each slice count k
(`lrjax.noise.sliced_sq_norms`), and the exact |G|^2 and tr(Sigma) from
per-example gradients over all N training examples (`lrjax.noise.exact`).
It then replays the trainer's tracker (`lrjax.noise.update` with the
finite-population correction, fed every ``every``-th update) for each decay
d, interval e and slice count k, and reports, over the readings in the
last half of the run (where B_simple is well above the batch):

- ``scatter p10/p90``: the 10th and 90th percentiles of reading / target
  - 1, the target being the same EMA (same d, same updates) of the *exact*
  |G|^2 and tr(Sigma): the estimator's own noise, lag excluded;
- ``rms``: the root mean square of log(reading / target);
- ``trail``: the EMA's lag on a steadily moving value, e d / (1 - d)
  updates;
- ``cost``: the extra compute per update of the trainer's one-device
  estimate (a second jitted pass computing the k slice gradients, then two
  floats to the host), measured as the median time of that pass over the
  median time of a training step, divided by e.

Run: ``python -m benchmarks.bench_noise_defaults`` (about 3 minutes on a
2-core CPU). Flags: ``--steps``, ``--decays``, ``--everys``, ``--slices``,
``--repeats`` (timing), ``--seeds``.
"""

import argparse
import itertools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

from lrjax import data, models, noise
from lrjax.train import make_optimizer

_TRAIN = 1437  # the digits train split of lrjax.data (the rest is test)


def _floats(text):
  return [float(v) for v in text.split(',')]


def _ints(text):
  return [int(v) for v in text.split(',')]


def _median_ms(fn, repeats):
  jax.block_until_ready(fn())  # compile
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return statistics.median(times) * 1e3


def replay(small, big, exact_g2, exact_tr, b, k, decay, every, n):
  """The trainer's tracker fed every ``every``-th update, and its target.

  Args:
    small: (T,) squared norms of the slice gradients (batch b / k).
    big: (T,) squared norms of the batch gradients (batch b).
    exact_g2: (T,) exact |G|^2 at each update's parameters.
    exact_tr: (T,) exact tr(Sigma) at each update's parameters.
    b: the batch size.
    k: the slice count.
    decay: the EMA decay.
    every: feed every this many updates (updates 1-based, as the trainer).
    n: the training set size (finite-population correction).

  Returns:
    ``(steps, readings, targets)``: the 0-based update index of every
    reading, the tracker's B_simple after it, and the same EMA applied to
    the exact values.
  """
  state = noise.init()
  target = np.zeros(2)
  steps, readings, targets = [], [], []
  for t in range(len(small)):
    if (t + 1) % every:
      continue
    state = noise.update(
      state, small[t], big[t], b // k, b, decay, num_examples=n
    )
    target = decay * target + (1 - decay) * np.array([exact_g2[t], exact_tr[t]])
    steps.append(t)
    readings.append(float(noise.b_simple(state)))
    targets.append(target[1] / target[0])
  return np.array(steps), np.array(readings), np.array(targets)


def trajectory(seed, steps, b, slices):
  """Trains one run; records every update's sliced and exact norms.

  Returns:
    ``(small, big, exact_g2, exact_tr, timing)``: ``small[k]`` and
    ``big[k]`` are (steps,) arrays of the squared norms of the slice and
    batch gradients for slice count k, ``exact_*`` (steps,) arrays of the
    exact values, ``timing`` a function ``repeats -> (step ms, {k: ms})``.
  """
  x, y = load_digits(return_X_y=True)
  order = np.random.default_rng(0).permutation(len(x))[:_TRAIN]
  x = jnp.asarray((x[order] / 16.0).reshape(-1, 8, 8, 1), jnp.float32)
  y = jnp.asarray(y[order], jnp.int32)
  n = x.shape[0]
  model = models.MLP(num_classes=10)
  params = jax.jit(model.init)(jax.random.key(seed), x[:1])['params']
  tx = make_optimizer('sgd', learning_rate=0.3, momentum=0.9, weight_decay=1e-3)
  opt_state = tx.init(params)

  def loss_fn(p, batch):
    logits = model.apply({'params': p}, batch[0])
    return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch[1]
    ).mean()

  grad_fn = jax.grad(loss_fn)

  @jax.jit
  def train_step(p, s, batch):
    loss, g = jax.value_and_grad(loss_fn)(p, batch)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  def make_norms(k):
    @jax.jit
    def norms(p, batch):
      r = noise.sliced_sq_norms(grad_fn, p, batch, k)
      return r.sq_norm_small, r.sq_norm_big

    return norms

  norms = {k: make_norms(k) for k in slices}

  @jax.jit
  def exact_parts(p):
    per = jax.vmap(grad_fn, in_axes=(None, 0))(p, (x[:, None], y[:, None]))
    g2, tr, _ = noise.exact(per)
    return g2, tr

  sampler = data.Sampler(n, seed=seed)
  small = {k: [] for k in slices}
  big = {k: [] for k in slices}
  exact_g2, exact_tr = [], []
  for _ in range(steps):
    idx = np.asarray(sampler.next(b))
    batch = (x[idx], y[idx])
    for k in slices:
      s, g = jax.device_get(norms[k](params, batch))
      small[k].append(float(s))
      big[k].append(float(g))
    g2, tr = jax.device_get(exact_parts(params))
    exact_g2.append(float(g2))
    exact_tr.append(float(tr))
    params, opt_state, _ = train_step(params, opt_state, batch)

  def timing(repeats):
    batch = (x[:b], y[:b])
    t_step = _median_ms(
      lambda: train_step(params, opt_state, batch)[2], repeats
    )
    t_norms = {
      k: _median_ms(lambda k=k: norms[k](params, batch), repeats)
      for k in slices
    }
    return t_step, t_norms

  return (
    {k: np.array(v) for k, v in small.items()},
    {k: np.array(v) for k, v in big.items()},
    np.array(exact_g2),
    np.array(exact_tr),
    timing,
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=450)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--decays', type=_floats, default=[0.9, 0.95, 0.98, 0.99])
  parser.add_argument('--everys', type=_ints, default=[1, 2, 4, 8])
  parser.add_argument('--slices', type=_ints, default=[2, 4, 8])
  parser.add_argument('--repeats', type=int, default=100)
  parser.add_argument('--seeds', type=_ints, default=[0, 1, 2])
  args = parser.parse_args()
  b, half = args.batch, args.steps // 2
  for k in args.slices:
    if b % k:
      raise SystemExit(f'--slices={k} must divide --batch={b}')

  runs = [trajectory(s, args.steps, b, args.slices) for s in args.seeds]
  t_step, t_norms = runs[-1][4](args.repeats)
  exact_b = np.concatenate([(r[3] / r[2])[half:] for r in runs])

  print(
    f'# noise tracker replay: MLP(128) on digits (N={_TRAIN}), batch {b}, '
    f'SGD LR 0.3 momentum 0.9 wd 1e-3, {args.steps} updates, seeds '
    f'{",".join(map(str, args.seeds))}; readings of the last '
    f'{args.steps - half} updates pooled over seeds'
  )
  print(
    f'# exact B_simple there: median {np.median(exact_b):.0f} = '
    f'{np.median(exact_b) / b:.1f} x the batch (p10 '
    f'{np.percentile(exact_b, 10):.0f}, p90 {np.percentile(exact_b, 90):.0f})'
  )
  print(
    f'# one training step {t_step:.3f} ms; the k-slice pass '
    + ', '.join(f'k={k}: {t:.3f} ms' for k, t in t_norms.items())
    + f' (median of {args.repeats})'
  )

  def pct(v, q):
    return f'{(np.percentile(v, q) - 1) * 100:+.0f}%'

  print(
    f'{"decay":>5} {"every":>5} {"k":>2} | {"scatter p10":>11} {"p90":>5} '
    f'{"rms":>5} | {"trail":>5} {"cost":>6}'
  )
  for d, e, k in itertools.product(args.decays, args.everys, args.slices):
    ratios = []
    for small, big, g2, tr, _ in runs:
      steps, readings, targets = replay(
        small[k], big[k], g2, tr, b, k, d, e, _TRAIN
      )
      keep = (steps >= half) & np.isfinite(readings) & (readings > 0)
      ratios.append(readings[keep] / targets[keep])
    ratio = np.concatenate(ratios)
    rms = np.sqrt(np.mean(np.log(ratio) ** 2))
    cost = t_norms[k] / t_step / e
    print(
      f'{d:5.2f} {e:5d} {k:2d} | {pct(ratio, 10):>11} {pct(ratio, 90):>5} '
      f'{rms:5.2f} | {e * d / (1 - d):5.0f} {cost * 100:5.0f}%'
    )


if __name__ == '__main__':
  main()
