"""The language model in the trainer vs a hand-written loop: tokens/s, MFU.

In one process, on the same `lrjax.lm.Transformer`, byte-level text, batch
and optimizer (AdamW at a constant LR), times

- a hand-written loop: the NNX model split once, ``jax.jit`` of a step that
  merges, computes the loss and its gradient and applies optax's AdamW,
  with donation; batches drawn with the same `lrjax.data.Sampler` from the
  same `lrjax.data.TextDataset`, no logging;
- the trainer's step loop on the same model as a `lrjax.train.Task`
  (``train_and_evaluate``; ``TrainResult.loop_seconds`` excludes the first
  compilation), with batches made on the main thread (``prefetch=0``) and
  in a background thread (``prefetch=2``).

Both are run ``--repeats`` times, interleaved (the machine may be shared);
the ratio is the median over back-to-back pairs. The model FLOPs
utilisation estimate is the achieved training FLOP/s,
tokens/s x `TransformerConfig.flops_per_token` (6 N + 12 L d T, PaLM's
estimate), over the accelerator's peak: ``--peak_tflops``, or a table of
dense bfloat16 peaks for known GPUs (``n/a`` on a CPU).

Run: ``python -m benchmarks.bench_lm_trainer [--steps 200] [--batch 12]
[--seq_len 64] [--layers 4] [--heads 4] [--width 128] [--dtype float32]
[--repeats 3] [--peak_tflops 0]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

# Dense bfloat16 peaks, TFLOP/s, by device kind (vendor data sheets).
PEAK_TFLOPS = {
  'NVIDIA H200': 989.0,
  'NVIDIA H100 80GB HBM3': 989.0,
  'NVIDIA H100': 989.0,
  'NVIDIA A100-SXM4-80GB': 312.0,
  'NVIDIA A100-SXM4-40GB': 312.0,
  'NVIDIA A100': 312.0,
  'NVIDIA L4': 121.0,
}


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--steps', type=int, default=200)
  p.add_argument('--batch', type=int, default=12)
  p.add_argument('--seq_len', type=int, default=64)
  p.add_argument('--layers', type=int, default=4)
  p.add_argument('--heads', type=int, default=4)
  p.add_argument('--width', type=int, default=128)
  p.add_argument('--dtype', default='float32')
  p.add_argument('--corpus', default='python_text/docs')
  p.add_argument('--data_dir', default=None)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--peak_tflops', type=float, default=0.0)
  return p.parse_args()


# Parsed when run, not when imported (benchmarks.device_check reuses the
# peak table).
ARGS = _parse() if __name__ == '__main__' else None

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import logging  # noqa: E402
from flax import nnx  # noqa: E402

from lrjax import data, lm  # noqa: E402
from lrjax import train as lrtrain  # noqa: E402

LR, B1, B2, WD = 1e-3, 0.9, 0.99, 0.1


def model_config() -> lm.TransformerConfig:
  return lm.TransformerConfig(
    seq_len=ARGS.seq_len,
    num_layers=ARGS.layers,
    num_heads=ARGS.heads,
    width=ARGS.width,
    dtype=ARGS.dtype,
  )


def hand_written(ds: data.TextDataset) -> float:
  """Training tokens/s of the hand-written NNX loop (compile excluded)."""
  tx = optax.adamw(LR, b1=B1, b2=B2, weight_decay=WD)
  graphdef, params = nnx.split(lm.Transformer(model_config(), rngs=nnx.Rngs(0)))
  opt_state = tx.init(params)

  def step(params, opt_state, tokens):
    def loss_fn(p):
      logits = nnx.merge(graphdef, p)(tokens[:, :-1])
      return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(np.float32), tokens[:, 1:]
      ).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(step, donate_argnums=(0, 1))
  sampler = data.Sampler(ds.num_examples, seed=0)
  batch = ds.take(sampler.next(ARGS.batch))['tokens']
  params, opt_state, loss = step(params, opt_state, batch)
  jax.block_until_ready(loss)
  start = time.perf_counter()
  for _ in range(ARGS.steps):
    batch = ds.take(sampler.next(ARGS.batch))['tokens']
    params, opt_state, loss = step(params, opt_state, batch)
  jax.block_until_ready(loss)
  seconds = time.perf_counter() - start
  return ARGS.steps * ARGS.batch * ARGS.seq_len / seconds


def _loss(logits, batch):
  loss, metrics = lm.lm_loss(logits, batch)
  return loss, {'bits_per_byte': metrics['bits_per_byte']}


def trainer(ds: data.TextDataset, prefetch: int) -> float:
  """Training tokens/s of ``train_and_evaluate``'s step loop."""
  task = lrtrain.Task(
    model=lm.Transformer(model_config(), rngs=nnx.Rngs(0)),
    loss=_loss,
    train_data=ds,
    inputs=lm.lm_inputs,
    name='lm',
  )
  config = lrtrain.TrainConfig(
    batch=ARGS.batch,
    num_epochs=(ARGS.steps + 1) * ARGS.batch / ds.num_examples,
    max_updates=ARGS.steps + 1,
    lr=LR,
    momentum=B1,
    b2=B2,
    optimizer='adamw',
    weight_decay=WD,
    num_devices=1,
    parallel='shard_map',
    prefetch=prefetch,
    log_every=50,
    eval_every=0,
    keep_checkpoints=0,
    progress_bar=False,
  )
  with tempfile.TemporaryDirectory() as workdir:
    r = lrtrain.train_and_evaluate(config, workdir, task)
  return r.loop_updates * ARGS.batch * ARGS.seq_len / r.loop_seconds


def device_peak_flops(kind: str, peak_tflops: float = 0.0) -> float | None:
  """Peak FLOP/s of a device kind: ``peak_tflops`` if > 0, else the
  table's dense bfloat16 peak, else None (unknown: MFU n/a)."""
  if peak_tflops > 0:
    return peak_tflops * 1e12
  for name, tflops in PEAK_TFLOPS.items():
    if kind.startswith(name):
      return tflops * 1e12
  return None


def peak_flops() -> float | None:
  """The device's peak FLOP/s: --peak_tflops, else the table, else None."""
  return device_peak_flops(jax.devices()[0].device_kind, ARGS.peak_tflops)


def main() -> None:
  logging.set_verbosity(logging.WARNING)
  ds = data.load_text(
    ARGS.corpus, split='train', seq_len=ARGS.seq_len, data_dir=ARGS.data_dir
  )
  cfg = model_config()
  hand, ours, threaded = [], [], []
  for _ in range(ARGS.repeats):
    hand.append(hand_written(ds))
    ours.append(trainer(ds, prefetch=0))
    threaded.append(trainer(ds, prefetch=2))
  pairs = sorted(o / h for o, h in zip(ours, hand, strict=True))
  peak = peak_flops()
  flops = cfg.flops_per_token()
  device = jax.devices()[0]
  print(
    f'\nbackend={jax.default_backend()} device={device.device_kind} '
    f'corpus={ARGS.corpus} model={cfg.num_layers}x{cfg.width} '
    f'heads={cfg.num_heads} seq={cfg.seq_len} params={cfg.num_params:,} '
    f'dtype={cfg.dtype} batch={ARGS.batch} steps={ARGS.steps} '
    f'repeats={ARGS.repeats}'
  )
  print(f'{"loop":<34} {"tokens/s":>10} {"GFLOP/s":>9} {"MFU":>7}')
  for name, rates in (
    ('hand-written NNX jit + optax', hand),
    ('lrjax trainer, prefetch=0', ours),
    ('lrjax trainer, prefetch=2', threaded),
  ):
    rate = statistics.median(rates)
    mfu = f'{rate * flops / peak:7.2%}' if peak else f'{"n/a":>7}'
    print(f'{name:<34} {rate:10.0f} {rate * flops / 1e9:9.2f} {mfu}')
  print(
    f'trainer / hand-written tokens/s, back-to-back pairs: median '
    f'{pairs[len(pairs) // 2]:.3f} (range {pairs[0]:.3f}-{pairs[-1]:.3f})'
  )
  print(
    f'FLOPs per training token (6 N + 12 L d T): {flops:,}; peak: '
    + (f'{peak / 1e12:g} TFLOP/s' if peak else 'unknown (give --peak_tflops)')
  )


if __name__ == '__main__':
  main()
