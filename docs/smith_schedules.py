"""Draws Smith et al. (2018)'s three equivalent CIFAR-10 schedules.

Decaying LR, hybrid and increasing batch size: LR 0.1, batch 128, momentum
0.9, N = 50000, LR divided by 5 at epochs 60, 120 and 160, 200 epochs. All
three keep the same noise scale g at every epoch; the batch ramps need far
fewer updates. The paper's hybrid grows the batch twice and then decays the
LR, i.e. a cap of 3200 (lrjax's default cap, N/10 = 5000, would grow the
batch to 5000 and decay the LR by the remaining 3.2).

  python docs/smith_schedules.py  # writes docs/smith_schedules.png
"""

import pathlib

from lrjax import batch, plots

N = 50000
SETTING = dict(
  lr=0.1,
  batch_size=128,
  num_examples=N,
  milestones=(60, 120, 160),
  factors=0.2,
  num_epochs=200,
  momentum=0.9,
)


def main():
  runs = {
    'decaying LR': batch.from_lr_decay(**SETTING, max_batch_size=128),
    'hybrid': batch.from_lr_decay(**SETTING, max_batch_size=3200),
    'increasing batch': batch.from_lr_decay(**SETTING, max_batch_size=N),
  }
  for name, run in runs.items():
    print(
      f'{name:>16}: {run.batch_schedule}  lr={run.lr}  '
      f'updates={run.batch_schedule.num_updates}'
    )
  path = pathlib.Path(__file__).with_suffix('.png')
  plots.plot_batch_schedule(
    runs,
    title='Smith et al. 2018, CIFAR-10: equal noise scale, fewer updates',
    path=str(path),
  )
  print(f'wrote {path}')


if __name__ == '__main__':
  main()
