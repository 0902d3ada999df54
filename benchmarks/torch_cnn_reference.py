"""The PyTorch reference for the digits CNN's training rate (optional).

The same network as `lrjax.models.CNN` with its defaults (3x3 convolutions
of 32, 64 and 128 channels with biases and ReLU, a 2x2 average pool after
the second, global average pooling, a dense layer of 128 with ReLU and a
10-way head) on inputs of the digits' shape (8x8x1), trained with SGD
(momentum 0.9, LR 0.05) on the softmax cross-entropy, in a plain eager
PyTorch loop on the CPU. The rate does not depend on the pixel values, so
the inputs are random and the script needs only ``torch``, ``numpy`` and
`torch_lm_reference.py` beside it:

  python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
  /tmp/torchenv/bin/python benchmarks/torch_cnn_reference.py --batch 512

Prints examples/s over the timed steps (after ``--warmup`` untimed ones);
`benchmarks/bench_devices.py --torch /tmp/torchenv/bin/python` runs it
interleaved with the trainer.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch_lm_reference import parse_args  # run as a script beside it


class CNN(nn.Module):
  def __init__(self, classes: int = 10):
    super().__init__()
    self.conv = nn.ModuleList(
      [nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)]
      + [nn.Conv2d(64, 128, 3, padding=1)]
    )
    self.dense = nn.Linear(128, 128)
    self.head = nn.Linear(128, classes)

  def forward(self, x):
    for i, conv in enumerate(self.conv):
      x = F.relu(conv(x))
      if i == 1:
        x = F.avg_pool2d(x, 2)
    x = x.mean(dim=(2, 3))
    return self.head(F.relu(self.dense(x)))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--steps', type=int, default=60)
  p.add_argument('--warmup', type=int, default=5)
  p.add_argument('--batch', type=int, default=512)
  p.add_argument(
    '--channels_last', action='store_true', help='NHWC memory format'
  )
  args = parse_args(p)
  rng = np.random.default_rng(args.seed)
  x = torch.from_numpy(rng.random((args.batch, 1, 8, 8), np.float32))
  y = torch.from_numpy(rng.integers(0, 10, args.batch))
  model = CNN()
  if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
  start = None
  for step in range(args.warmup + args.steps):
    if step == args.warmup:
      start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
  timed = time.perf_counter() - start
  print(
    f'torch {torch.__version__} threads {torch.get_num_threads()}  '
    f'{args.steps} steps in {timed:.2f} s  '
    f'{args.steps * args.batch / timed:,.0f} examples/s  '
    f'loss {float(loss):.4f}'
  )


if __name__ == '__main__':
  main()
