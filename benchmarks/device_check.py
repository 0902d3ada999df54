"""Device check: what the trainer achieves on one accelerator, in one table.

For a machine lent with a GPU (or TPU) for a few minutes; one process, one
device, every number from the public trainer
(`lrjax.train.train_and_evaluate` on an explicit task):

Every rate is the median over the trainer's logged intervals
(``steps_per_sec`` in metrics.jsonl), so that an interval holding a
compilation does not count.

- ``lm bf16``: the language model of `experiments._lm_common.make_task`
  (`lrjax.lm.Transformer`, bfloat16 compute, float32 parameters) with
  AdamW on random byte sequences: training tokens/s and the model
  FLOPs utilisation, tokens/s x F over the device's peak, with PaLM's
  :math:`F = 6 N_\\mathrm{mm} + 12 L d T` FLOPs per token
  (`lrjax.lm.TransformerConfig.flops_per_token`);
- ``lm pmap`` / ``lm shard_map``: the same run under ``parallel='pmap'``
  and ``'shard_map'`` (one per-device body, two wrappers), steps/s and
  their ratio;
- ``wrn16_4``: WideResNet-16-4 (`lrjax.models`) with SGD on CIFAR-shaped
  synthetic images (`lrjax.data.synthetic`, 32x32x3, 10 classes):
  examples/s and MFU, the FLOPs of one training example counted by XLA
  (``jax.jit(value_and_grad).lower(...).compile().cost_analysis()``; n/a
  where the backend does not count);
- ``lm noise``: the LM with the noise-scale tracker on every step (4
  slices of each batch), steps/s and its ratio to the run without.

Peaks: the dense bfloat16 table of `benchmarks.bench_lm_trainer` (H100 and
H200 989 TFLOP/s, A100 312), or ``--peak_tflops``; unknown devices (a CPU)
get ``n/a``. ``--size=full`` (default on a GPU/TPU: GPT-2-small's shape,
12 x 768, T = 1024, batch 16; WRN at batch 128) takes about 5 minutes on
one H100, most of it compiling; ``--size=tiny`` (default on a CPU) runs in
well under a minute and is what the tests run.

Run: ``python -m benchmarks.device_check [--size=full] [--out=table.md]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from benchmarks.bench_lm_trainer import device_peak_flops


@dataclasses.dataclass(frozen=True)
class Size:
  """One size of every check."""

  layers: int
  width: int
  heads: int
  seq_len: int
  lm_batch: int
  lm_steps: int
  image: int
  wrn_batch: int
  wrn_steps: int
  log_every: int


SIZES = {
  'full': Size(12, 768, 12, 1024, 16, 80, 32, 128, 60, 5),
  'tiny': Size(1, 32, 2, 16, 8, 8, 8, 4, 4, 1),
}


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of the table: a rate (or ratio), its unit, the MFU (None:
  n/a) and what was run."""

  check: str
  value: float
  unit: str
  mfu: float | None
  detail: str


def _run(config: Any, task: Any) -> float:
  """Steps/s of the step loop: the median of the logged intervals' rates,
  so that an interval holding a compilation (the first step's, or one
  compiled lazily such as the noise tracker's) does not count."""
  import os

  from lrjax import metrics as lmetrics
  from lrjax import train as lrtrain

  with tempfile.TemporaryDirectory() as workdir:
    lrtrain.train_and_evaluate(config, workdir, task)
    train, _ = lmetrics.read_columns(os.path.join(workdir, 'metrics.jsonl'))
  rates = np.asarray(train.get('steps_per_sec', ()), np.float64)
  rates = rates[np.isfinite(rates) & (rates > 0)]
  return float(np.median(rates)) if rates.size else math.nan


def _lm(size: Size, parallel: str, noise: bool) -> tuple[float, Any]:
  """One LM run: (steps/s, TransformerConfig)."""
  from experiments import _lm_common
  from lrjax import train as lrtrain

  common = _lm_common.LmCommon(
    seq_len=size.seq_len,
    lm_layers=size.layers,
    lm_heads=size.heads,
    lm_width=size.width,
    lm_dtype='bfloat16',
  )
  n = size.lm_batch * (size.lm_steps + 2)
  tokens = np.random.default_rng(0).integers(
    0, 256, (n, size.seq_len + 1), np.int32
  )
  task = _lm_common.make_task(common, {'tokens': tokens}, None, seed=0)
  config = lrtrain.TrainConfig(
    batch=size.lm_batch,
    num_epochs=(size.lm_steps + 1) * size.lm_batch / n,
    max_updates=size.lm_steps + 1,
    lr=1e-3,
    momentum=0.9,
    b2=0.99,
    optimizer='adamw',
    weight_decay=0.1,
    num_devices=1,
    parallel=parallel,
    prefetch=0,
    log_every=size.log_every,
    eval_every=0,
    keep_checkpoints=0,
    noise=lrtrain.NoiseConfig(enabled=noise, every=1, num_slices=4),
    progress_bar=False,
  )
  return _run(config, task), common.transformer()


def wrn_flops_per_example(model: Any, image: int, batch: int) -> float | None:
  """Training FLOPs per example (forward and backward) as XLA counts them,
  or None where the backend's cost analysis has no count.

  XLA's cost analysis of the lowered program (no second compilation); of
  the compiled one where the lowered one has no count. The two agree to
  0.3% for WRN-16-4 on the CPU backend.
  """
  import jax.numpy as jnp
  import optax

  x = jnp.zeros((batch, image, image, 3), jnp.float32)
  y = jnp.zeros((batch,), jnp.int32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)

  def loss(params, stats, x, y):
    logits, _ = model.apply(
      {'params': params, 'batch_stats': stats},
      x,
      train=True,
      mutable=['batch_stats'],
    )
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  lowered = jax.jit(jax.value_and_grad(loss)).lower(
    variables['params'], variables['batch_stats'], x, y
  )
  for analysis in (
    lowered.cost_analysis,
    lambda: lowered.compile().cost_analysis(),
  ):
    cost = analysis()
    if isinstance(cost, Sequence):  # a list of one dict in older JAX
      cost = cost[0] if cost else None
    flops = (cost or {}).get('flops')
    if flops and flops > 0:
      return float(flops) / batch
  return None


def _wrn(size: Size) -> tuple[float, float | None]:
  from lrjax import data, models, tasks
  from lrjax import train as lrtrain

  shape = (size.image, size.image, 3)
  n = size.wrn_batch * (size.wrn_steps + 2)
  train = data.synthetic(n, shape, 10, split='train', augmentation=None)
  model = models.get('wrn16_4', num_classes=10)
  task = tasks.classification(model, train, None, name='wrn16_4')
  config = lrtrain.TrainConfig(
    batch=size.wrn_batch,
    num_epochs=(size.wrn_steps + 1) * size.wrn_batch / n,
    max_updates=size.wrn_steps + 1,
    lr=0.1,
    momentum=0.9,
    num_devices=1,
    prefetch=0,
    log_every=size.log_every,
    eval_every=0,
    keep_checkpoints=0,
    progress_bar=False,
  )
  flops = wrn_flops_per_example(model, size.image, size.wrn_batch)
  return _run(config, task), flops


def check(size_name: str, peak_tflops: float = 0.0) -> list[Row]:
  """Runs every check at ``size_name`` ('tiny' or 'full'); the rows."""
  size = SIZES[size_name]
  kind = jax.devices()[0].device_kind
  peak = device_peak_flops(kind, peak_tflops)

  def mfu(flops_per_second: float | None) -> float | None:
    if not (peak and flops_per_second):
      return None
    return flops_per_second / peak

  shard, model = _lm(size, 'shard_map', noise=False)
  pmap, _ = _lm(size, 'pmap', noise=False)
  tracked, _ = _lm(size, 'shard_map', noise=True)
  wrn, wrn_flops = _wrn(size)
  per_step = size.lm_batch * size.seq_len
  tokens = shard * per_step
  flops = model.flops_per_token()
  shape = (
    f'{size.layers}x{size.width}, {size.heads} heads, T={size.seq_len}, '
    f'batch {size.lm_batch}, {model.num_params:,} params'
  )
  examples = wrn * size.wrn_batch
  wrn_detail = f'{size.image}x{size.image}x3, batch {size.wrn_batch}, SGD; ' + (
    f'{wrn_flops / 1e9:.3g} GFLOP/example (XLA cost analysis)'
    if wrn_flops
    else 'no FLOP count from this backend'
  )
  return [
    Row(
      'lm bf16 (shard_map)',
      tokens,
      'tokens/s',
      mfu(tokens * flops),
      f'{shape}; {flops / 1e6:.4g} MFLOP/token = 6 N_mm + 12 L d T',
    ),
    Row('lm shard_map', shard, 'steps/s', None, shape),
    Row('lm pmap', pmap, 'steps/s', None, shape),
    Row(
      'lm pmap / shard_map',
      pmap / shard,
      'ratio',
      None,
      'steps/s, same per-device body',
    ),
    Row(
      'wrn16_4',
      examples,
      'examples/s',
      mfu(examples * wrn_flops if wrn_flops else None),
      wrn_detail,
    ),
    Row('lm noise tracker', tracked, 'steps/s', None, shape),
    Row(
      'lm noise with / without',
      tracked / shard,
      'ratio',
      None,
      'steps/s; B_simple every step from 4 slices',
    ),
  ]


def table(rows: Sequence[Row], header: str) -> str:
  """The rows as one markdown table under a line naming the device."""
  lines = [
    header,
    '',
    '| check | value | unit | MFU | detail |',
    '|---|---:|---|---:|---|',
  ]
  for r in rows:
    value = f'{r.value:.3f}' if r.unit == 'ratio' else f'{r.value:,.1f}'
    mfu = 'n/a' if r.mfu is None else f'{r.mfu:.1%}'
    lines.append(f'| {r.check} | {value} | {r.unit} | {mfu} | {r.detail} |')
  return '\n'.join(lines) + '\n'


def main(argv: Sequence[str] | None = None) -> list[Row]:
  """Parses ``argv``, runs the checks, prints (and writes) the table."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    '--size',
    choices=sorted(SIZES),
    default=None,
    help='tiny or full (default: full on a GPU/TPU, tiny on a CPU)',
  )
  parser.add_argument('--out', default='', help='also write the table here')
  parser.add_argument(
    '--peak_tflops',
    type=float,
    default=0.0,
    help="the device's peak TFLOP/s (default: the table's, by device kind)",
  )
  args = parser.parse_args(argv)
  backend = jax.default_backend()
  size = args.size or ('tiny' if backend == 'cpu' else 'full')
  logging.set_verbosity(logging.WARNING)
  rows = check(size, args.peak_tflops)
  peak = device_peak_flops(jax.devices()[0].device_kind, args.peak_tflops)
  header = (
    f'Device check ({size}): backend {backend}, device '
    f'{jax.devices()[0].device_kind}, jax {jax.__version__}, peak '
    + (f'{peak / 1e12:g} TFLOP/s (dense bf16)' if peak else 'unknown')
  )
  text = table(rows, header)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)
  bad = [r.check for r in rows if not (math.isfinite(r.value) and r.value > 0)]
  if bad:
    raise SystemExit(f'no finite positive value for: {", ".join(bad)}')
  return rows


if __name__ == '__main__':
  main()
