"""Draws Smith et al. (2018)'s equivalent CIFAR-10 schedules.

LR 0.1, batch 128, momentum 0.9, N = 50000, LR divided by 5 at epochs 60,
120 and 160, 200 epochs. All keep the same noise scale g at every epoch;
the batch ramps need far fewer updates. The paper's hybrid grows the batch
once (128 -> 640) and then decays the LR, i.e. a cap of 640; growing it
twice (cap 3200) before decaying is another schedule, drawn beside it.
The paper's update counts (section 5) are printed beside lrjax's.

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
    'hybrid (paper, cap 640)': batch.from_lr_decay(
      **SETTING, max_batch_size=640
    ),
    'batch x5 twice, cap 3200': batch.from_lr_decay(
      **SETTING, max_batch_size=3200
    ),
    'increasing batch': batch.from_lr_decay(**SETTING, max_batch_size=N),
  }
  paper = {
    'decaying LR': '~80k',
    'increasing batch': '~29k',
  }
  for name, run in runs.items():
    print(
      f'{name:>24}: {run.batch_schedule}  lr={run.lr}  '
      f'updates={run.batch_schedule.num_updates} '
      f'(paper: {paper.get(name, "not quoted")})'
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
