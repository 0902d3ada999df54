"""The transformer's products against JAX's own: a step's time, one process.

`lrjax.lm.Transformer` computes its attention with
`lrjax.lm.causal_attention` and its dense layers with
`lrjax.lm.dense_dot_general`, whose backward passes are written for
speed. This times, in one process and interleaved (the machine may be
shared), the AdamW train step (``jax.jit``, donated state, one step in
flight) of

- ``lrjax``: the model as built;
- ``jax``: the same model with JAX's products set on it
  (``jax.nn.dot_product_attention(..., is_causal=True)`` as each block's
  ``attention_fn``, ``jax.lax.dot_general`` as each dense layer's
  ``dot_general``): what autodiff of the plain forward pass gives;
- ``dense only`` / ``attention only``: lrjax's dense products with JAX's
  attention, or lrjax's attention with JAX's dense products, to tell the
  two apart;

and prints the median step time over ``--rounds`` rounds of ``--steps``
steps each, tokens/s and each variant's speed over ``jax``. The losses of
the first steps are printed too: the variants compute the same values up
to float rounding.

The default batch, 6 sequences of 64 bytes, is what each of the two
devices gets in `lm_cpu.cfg` (12 sequences, data parallel on both cores);
``taskset -c 0`` pins the process to one core, as each device has.

Run: ``python -m benchmarks.bench_lm_ops [--batch 6] [--steps 25]
[--rounds 8] [--layers 4] [--width 128] [--heads 4] [--seq_len 64]``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import numpy as np
import optax
from flax import nnx

from lrjax import lm

VARIANTS = ('lrjax', 'jax', 'dense only', 'attention only')


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--batch', type=int, default=6)
  p.add_argument('--steps', type=int, default=25)
  p.add_argument('--rounds', type=int, default=8)
  p.add_argument('--layers', type=int, default=4)
  p.add_argument('--heads', type=int, default=4)
  p.add_argument('--width', type=int, default=128)
  p.add_argument('--seq_len', type=int, default=64)
  return p.parse_args()


def model(config: lm.TransformerConfig, variant: str) -> lm.Transformer:
  """The Transformer with ``variant``'s products (see the module doc)."""
  built = lm.Transformer(config, rngs=nnx.Rngs(0))
  jax_attention = variant in ('jax', 'dense only')
  jax_dense = variant in ('jax', 'attention only')
  for _, module in nnx.iter_modules(built):
    if jax_dense and isinstance(module, nnx.Linear):
      module.dot_general = jax.lax.dot_general
    if jax_attention and hasattr(module, 'attention_fn'):
      module.attention_fn = functools.partial(
        jax.nn.dot_product_attention, is_causal=True
      )
  return built


def stepper(config: lm.TransformerConfig, variant: str, tokens: list):
  """A function running n train steps, and the first steps' losses."""
  graphdef, params = nnx.split(model(config, variant))
  tx = optax.adamw(1e-3, b2=0.99, weight_decay=0.1)
  state = [params, tx.init(params)]

  def step(params, opt_state, batch):
    def loss_fn(p):
      logits = nnx.merge(graphdef, p)(batch[:, :-1])
      return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch[:, 1:]
      ).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(step, donate_argnums=(0, 1))

  def run(n: int) -> list[float]:
    losses = []
    for i in range(n):
      state[0], state[1], loss = step(
        state[0], state[1], tokens[i % len(tokens)]
      )
      losses.append(float(loss))  # waits: one step in flight
    return losses

  return run, run(5)


def main() -> None:
  args = _parse()
  config = lm.TransformerConfig(
    num_layers=args.layers,
    num_heads=args.heads,
    width=args.width,
    seq_len=args.seq_len,
  )
  rng = np.random.default_rng(0)
  tokens = [
    jax.numpy.asarray(rng.integers(0, 256, (args.batch, args.seq_len + 1)))
    for _ in range(8)
  ]
  runs = {}
  for variant in VARIANTS:
    runs[variant], losses = stepper(config, variant, tokens)
    print(f'{variant:<14} first losses ' + ' '.join(f'{x:.6f}' for x in losses))
  times = {v: [] for v in VARIANTS}
  for _ in range(args.rounds):
    for variant in VARIANTS:
      start = time.perf_counter()
      runs[variant](args.steps)
      times[variant].append((time.perf_counter() - start) / args.steps)
  base = statistics.median(times['jax'])
  tokens_per_step = args.batch * args.seq_len
  print(
    f'\nbatch {args.batch} x {args.seq_len}, {args.rounds} rounds of '
    f'{args.steps} steps (interleaved), devices: {jax.devices()[0].device_kind}'
  )
  print(f'{"variant":<14} {"ms/step":>8} {"tokens/s":>10} {"vs jax":>7}')
  for variant in VARIANTS:
    median = statistics.median(times[variant])
    print(
      f'{variant:<14} {median * 1e3:8.2f} {tokens_per_step / median:10,.0f} '
      f'{base / median:7.3f}'
    )


if __name__ == '__main__':
  main()
