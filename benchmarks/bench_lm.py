"""Language-model step speed: a hand-written JAX + optax loop, tokens/s, MFU.

Trains `lrjax.lm.Transformer` (default: nanoGPT's CPU size, 4 layers, 4
heads, width 128, context 64, batch 12; AdamW with linear warmup and cosine
decay to 10%, gradient clipping at 1) on ``python_text/docs`` byte tokens
with a minimal loop: one ``jax.jit`` step with donated state, batches drawn
by `lrjax.data.Sampler` and read with `TextDataset.take`. Prints

- tokens/s over the timed steps (compile excluded);
- the model FLOPs per token, :math:`6 N_{mm} + 12 L d T`
  (`TransformerConfig.flops_per_token`, PaLM's estimate), the achieved
  FLOP/s, and the model FLOPs utilisation against (a) the FLOP/s this
  machine reaches on a square float32 matmul measured here and (b) the
  nominal peak of a known accelerator, or ``--peak_flops``;
- the validation loss and bits per byte at the end, beside the unigram
  and bigram baselines of the same split.

Run: ``python -m benchmarks.bench_lm [--steps 300] [--batch 12]``. A long
run for the loss: ``--steps 8000 --eval_every 1000``. On a shared machine
the tokens/s vary from run to run; read several.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lrjax import data, lm

# Dense peak FLOP/s of accelerators by device kind (vendor data sheets,
# SXM parts, without sparsity): bfloat16 and float32 (CUDA cores).
_NOMINAL_PEAK = {
  'H200': {'bfloat16': 989.4e12, 'float32': 66.9e12},
  'H100': {'bfloat16': 989.4e12, 'float32': 66.9e12},
  'A100': {'bfloat16': 312e12, 'float32': 19.5e12},
}


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--steps', type=int, default=300, help='timed steps')
  p.add_argument('--batch', type=int, default=12, help='sequences per step')
  p.add_argument('--seq_len', type=int, default=64)
  p.add_argument('--layers', type=int, default=4)
  p.add_argument('--heads', type=int, default=4)
  p.add_argument('--width', type=int, default=128)
  p.add_argument('--positions', default='learned')
  p.add_argument('--dtype', default='float32')
  p.add_argument('--lr', type=float, default=1e-3)
  p.add_argument('--warmup', type=int, default=100)
  p.add_argument('--weight_decay', type=float, default=0.1)
  p.add_argument('--dataset', default='python_text/docs')
  p.add_argument('--data_dir', default=None)
  p.add_argument('--eval_every', type=int, default=0, help='0: at the end')
  p.add_argument('--eval_batch', type=int, default=64)
  p.add_argument('--peak_flops', type=float, default=None)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--json', default=None, help='also write the numbers here')
  return p.parse_args()


def matmul_flops(size: int = 1024, repeats: int = 20) -> float:
  """FLOP/s of a float32 ``size x size`` matmul on the default device."""
  a = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = math.inf
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(repeats):
      out = f(a)
    out.block_until_ready()
    best = min(best, (time.perf_counter() - start) / repeats)
  return 2 * size**3 / best


def make_step(graphdef, tx):
  """The jitted train step over (params, rest, opt_state, tokens)."""

  def loss_fn(params, rest, tokens):
    model = nnx.merge(graphdef, params, rest)
    batch = {'tokens': tokens}
    loss, metrics = lm.lm_loss(model(lm.lm_inputs(batch)), batch)
    return loss, (metrics, nnx.state(model, nnx.Not(nnx.Param)))

  def step(params, rest, opt_state, tokens):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (metrics, rest)), grads = grad_fn(params, rest, tokens)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), rest, opt_state, metrics

  return jax.jit(step, donate_argnums=(0, 1, 2))


def make_eval(graphdef):
  def evaluate(params, rest, tokens):
    model = nnx.merge(graphdef, params, rest)
    model.eval()
    batch = {'tokens': tokens}
    return lm.lm_eval_metrics(model(lm.lm_inputs(batch)), batch)['loss']

  return jax.jit(evaluate)


def evaluate_split(evaluate, params, rest, ds, batch: int) -> float:
  """Mean loss over every window of ``ds`` (nats per token)."""
  losses = []
  for start in range(0, ds.num_examples, batch):
    idx = np.arange(start, min(start + batch, ds.num_examples))
    # Pad the last batch to the full size: one compiled shape.
    padded = np.resize(idx, batch)
    out = np.asarray(evaluate(params, rest, ds.take(padded)['tokens']))
    losses.append(out[: idx.size])
  return float(np.concatenate(losses).mean())


def main():
  args = _parse()
  data_dir = args.data_dir or tempfile.mkdtemp()
  kw = dict(seq_len=args.seq_len, data_dir=data_dir)
  train = data.load_text(args.dataset, split='train', **kw)
  val = data.load_text(args.dataset, split='validation', **kw)
  config = lm.TransformerConfig(
    seq_len=args.seq_len,
    num_layers=args.layers,
    num_heads=args.heads,
    width=args.width,
    positions=args.positions,
    dtype=args.dtype,
  )
  model = lm.Transformer(config, rngs=nnx.Rngs(args.seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  total = args.steps + 1  # the first step compiles and is not timed
  lr = optax.warmup_cosine_decay_schedule(
    0.0, args.lr, args.warmup, max(total, args.warmup + 1), args.lr * 0.1
  )
  tx = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.adamw(lr, b1=0.9, b2=0.99, weight_decay=args.weight_decay),
  )
  opt_state = tx.init(params)
  step = make_step(graphdef, tx)
  evaluate = make_eval(graphdef)
  sampler = data.Sampler(train.num_examples, seed=args.seed)

  def batch():
    return train.take(sampler.next(args.batch))['tokens']

  start = time.perf_counter()
  params, rest, opt_state, metrics = step(params, rest, opt_state, batch())
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  tokens_per_step = args.batch * args.seq_len
  timed, evals = 0.0, []
  done = 0
  while done < args.steps:
    chunk = args.steps - done
    if args.eval_every:
      chunk = min(chunk, args.eval_every - done % args.eval_every)
    start = time.perf_counter()
    for _ in range(chunk):
      params, rest, opt_state, metrics = step(params, rest, opt_state, batch())
    jax.block_until_ready(metrics)
    timed += time.perf_counter() - start
    done += chunk
    if args.eval_every and (done % args.eval_every == 0 or done == args.steps):
      loss = evaluate_split(evaluate, params, rest, val, args.eval_batch)
      evals.append((done + 1, timed, loss))
      print(
        f'step {done + 1:6d}  train_s {timed:7.1f}  val_loss {loss:.4f}  '
        f'val_bpb {loss / math.log(2):.4f}',
        flush=True,
      )
  if not evals:
    loss = evaluate_split(evaluate, params, rest, val, args.eval_batch)
    evals.append((done + 1, timed, loss))
  tokens_per_sec = args.steps * tokens_per_step / timed
  flops_token = config.flops_per_token()
  achieved = tokens_per_sec * flops_token
  device = jax.devices()[0]
  kind = getattr(device, 'device_kind', device.platform)
  peak = args.peak_flops
  if peak is None:
    for name, peaks in _NOMINAL_PEAK.items():
      if name in kind:
        peak = peaks[args.dtype]
  measured_peak = matmul_flops(2048 if device.platform == 'gpu' else 1024)
  unigram = lm.unigram_loss(train.tokens, val.tokens)
  bigram = lm.bigram_loss(train.tokens, val.tokens)
  out = {
    'device': f'{device.platform} {kind} x{jax.device_count()}',
    'params': config.num_params,
    'batch': args.batch,
    'seq_len': args.seq_len,
    'steps': args.steps,
    'compile_sec': compile_s,
    'train_sec': timed,
    'tokens_per_sec': tokens_per_sec,
    'flops_per_token': flops_token,
    'achieved_flops': achieved,
    'matmul_flops': measured_peak,
    'mfu_vs_matmul': achieved / measured_peak,
    'nominal_peak_flops': peak,
    'mfu': achieved / peak if peak else None,
    'val_loss': evals[-1][2],
    'val_bits_per_byte': evals[-1][2] / math.log(2),
    'unigram_bits_per_byte': unigram / math.log(2),
    'bigram_bits_per_byte': bigram / math.log(2),
    'evals': evals,
  }
  print(
    f'device {out["device"]}  params {config.num_params}  batch '
    f'{args.batch}x{args.seq_len}  dtype {args.dtype}\n'
    f'compile {compile_s:.1f} s  {args.steps} steps in {timed:.1f} s  '
    f'{tokens_per_sec:,.0f} tokens/s  '
    f'{args.steps / timed:.1f} steps/s\n'
    f'FLOPs/token 6*N_mm + 12*L*d*T = {flops_token:,}  achieved '
    f'{achieved / 1e9:.2f} GFLOP/s  matmul peak here '
    f'{measured_peak / 1e9:.1f} GFLOP/s  MFU vs matmul '
    f'{out["mfu_vs_matmul"]:.1%}'
    + (f'  MFU vs nominal {out["mfu"]:.2%}' if peak else '')
    + '\n'
    f'val loss {out["val_loss"]:.4f} nats  {out["val_bits_per_byte"]:.3f} '
    f'bits/byte  (bigram {out["bigram_bits_per_byte"]:.3f}, unigram '
    f'{out["unigram_bits_per_byte"]:.3f})'
  )
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(out, f, indent=1)


if __name__ == '__main__':
  main()
