"""The PyTorch reference loop that `bench_lm` is compared with (optional).

The same model as `lrjax.lm.Transformer` with its defaults (pre-norm GPT,
4 layers, 4 heads, width 128, context 64, learned positions, tied
embeddings, no biases, tanh GELU, N(0, 0.02) initialisation with the
residual projections at 0.02 / sqrt(2 L)), the same data (the bytes of
``pydoc_data/topics.py``'s topics, last 10% held out) and the same
optimiser (AdamW, betas 0.9 / 0.99, weight decay 0.1 on matrices, linear
warmup and cosine decay to 10%, clipping at 1), in a plain eager PyTorch
loop on the CPU. It needs only ``torch`` and ``numpy`` (not lrjax), so it
runs in an environment of its own:

  python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
  /tmp/torchenv/bin/python benchmarks/torch_lm_reference.py --steps 300

Prints tokens/s over the timed steps and the validation loss at the end,
in the format of `bench_lm`.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def corpus() -> tuple[np.ndarray, np.ndarray]:
  """The train and validation bytes of the docs corpus (as lrjax builds it)."""
  from pydoc_data.topics import topics

  text = '\n'.join(topics[k] for k in sorted(topics)).encode('utf-8')
  cut = len(text) - len(text) // 10
  data = np.frombuffer(text, np.uint8).astype(np.int64)
  return data[:cut], data[cut:]


class Block(nn.Module):
  def __init__(self, d: int, heads: int, layers: int):
    super().__init__()
    self.heads = heads
    self.norm_1 = nn.LayerNorm(d, bias=False)
    self.qkv = nn.Linear(d, 3 * d, bias=False)
    self.out = nn.Linear(d, d, bias=False)
    self.norm_2 = nn.LayerNorm(d, bias=False)
    self.mlp_in = nn.Linear(d, 4 * d, bias=False)
    self.mlp_out = nn.Linear(4 * d, d, bias=False)
    for w in (self.qkv.weight, self.mlp_in.weight):
      nn.init.normal_(w, std=0.02)
    for w in (self.out.weight, self.mlp_out.weight):
      nn.init.normal_(w, std=0.02 / math.sqrt(2 * layers))

  def forward(self, x):
    b, t, d = x.shape
    q, k, v = self.qkv(self.norm_1(x)).split(d, dim=2)
    q, k, v = (a.view(b, t, self.heads, -1).transpose(1, 2) for a in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
    h = F.gelu(self.mlp_in(self.norm_2(x)), approximate='tanh')
    return x + self.mlp_out(h)


class GPT(nn.Module):
  def __init__(self, vocab=256, seq_len=64, layers=4, heads=4, d=128):
    super().__init__()
    self.embed = nn.Embedding(vocab, d)
    self.positions = nn.Parameter(torch.randn(seq_len, d) * 0.02)
    nn.init.normal_(self.embed.weight, std=0.02)
    self.blocks = nn.ModuleList(Block(d, heads, layers) for _ in range(layers))
    self.norm = nn.LayerNorm(d, bias=False)

  def forward(self, tokens):
    x = self.embed(tokens) + self.positions[: tokens.shape[1]]
    for block in self.blocks:
      x = block(x)
    return self.norm(x) @ self.embed.weight.T


def parse_args(p: argparse.ArgumentParser) -> argparse.Namespace:
  """Adds ``--threads`` and ``--seed`` to a reference's own arguments,
  parses them, and sets torch's threads and seed."""
  p.add_argument('--threads', type=int, default=0, help='0: torch default')
  p.add_argument('--seed', type=int, default=0)
  args = p.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  return args


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--steps', type=int, default=300)
  p.add_argument('--batch', type=int, default=12)
  p.add_argument('--seq_len', type=int, default=64)
  p.add_argument('--lr', type=float, default=1e-3)
  p.add_argument('--warmup', type=int, default=100)
  args = parse_args(p)
  train, val = corpus()
  t = args.seq_len
  model = GPT(seq_len=t)
  decay = [q for q in model.parameters() if q.dim() >= 2]
  no_decay = [q for q in model.parameters() if q.dim() < 2]
  opt = torch.optim.AdamW(
    [{'params': decay, 'weight_decay': 0.1}, {'params': no_decay}],
    lr=args.lr,
    betas=(0.9, 0.99),
    weight_decay=0.0,
  )
  total = args.steps + 1

  def lr_at(step):
    if step < args.warmup:
      return args.lr * step / args.warmup
    frac = (step - args.warmup) / max(1, total - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1))))

  n = (train.size - 1) // t
  rng = np.random.default_rng(args.seed)

  def batch():
    idx = rng.integers(0, n, args.batch)[:, None] * t + np.arange(t + 1)
    return torch.from_numpy(train[idx])

  def step(i):
    for group in opt.param_groups:
      group['lr'] = lr_at(i)
    tokens = batch()
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, 256), tokens[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss

  step(0)
  start = time.perf_counter()
  for i in range(1, total):
    step(i)
  timed = time.perf_counter() - start
  model.eval()
  m = (val.size - 1) // t
  with torch.no_grad():
    idx = np.arange(m)[:, None] * t + np.arange(t + 1)
    tokens = torch.from_numpy(val[idx])
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, 256), tokens[:, 1:].reshape(-1))
  tokens_per_sec = args.steps * args.batch * t / timed
  print(
    f'torch {torch.__version__} threads {torch.get_num_threads()}  '
    f'{args.steps} steps in {timed:.1f} s  {tokens_per_sec:,.0f} tokens/s  '
    f'val loss {float(loss):.4f} nats  '
    f'{float(loss) / math.log(2):.3f} bits/byte'
  )


if __name__ == '__main__':
  main()
