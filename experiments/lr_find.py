"""The LR range test (Smith 2017) on a chosen model and dataset.

Trains a copy of the freshly initialised model for `--finder_steps` updates
while the LR grows geometrically from `--finder_min_lr` to `--finder_max_lr`,
records the loss, and reports the suggested LRs (steepest descent, a tenth
of the minimum, the valley), one range test per seed.

  python -m experiments.lr_find --flagfile=experiments/flagfiles/lr_find_digits.cfg
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
from absl import app

from experiments import _common, _finder


@dataclasses.dataclass(frozen=True)
class LrFindConfig:
  """The range test: common settings (model, data, batch) and the sweep."""

  common: _common.CommonConfig = _common.CommonConfig()
  finder: _finder.FinderConfig = _finder.FinderConfig()

  def validate(self) -> None:
    """Raises ValueError naming the field and the fix."""
    self.finder.validate()


def check(config: LrFindConfig) -> None:
  """Checks the settings, the devices and the data before anything trains.

  Raises:
    ValueError: naming the field (or flag) and the fix.
    FileNotFoundError: for a dataset that is not prepared.
  """
  config.validate()
  n = _common.check_common(config.common)
  _common.check_batch('--batch_size', config.common.batch_size, n)


def get_config() -> LrFindConfig:
  """Builds the typed config from the parsed flags."""
  return LrFindConfig(_common.common_config(), _finder.finder_config())


def run(
  config: LrFindConfig,
  workdir: str,
  *,
  with_flags: bool = False,
  overwrite: bool = False,
):
  """Runs the range test per seed; writes the plot, table and report.

  A seed's range test is reused when it was made from the same inputs
  (unless ``overwrite``).

  Raises:
    ValueError: for a bad setting, before anything trains.
    lrjax.train.WorkdirLockedError: when another process holds ``workdir``.
  """
  check(config)
  with _common.experiment_workdir(workdir, config, with_flags=with_flags):
    return _run(config, workdir, overwrite)


def _run(config: LrFindConfig, workdir: str, overwrite: bool):
  tests = {}
  for seed in config.common.seeds:
    seed_dir = os.path.join(workdir, 'runs', f'seed{seed}')
    if overwrite and os.path.exists(os.path.join(seed_dir, 'range_test.json')):
      os.remove(os.path.join(seed_dir, 'range_test.json'))
    tests[seed] = _finder.range_test(
      config.common, config.finder, seed, seed_dir
    )
  names = list(_finder.SUGGESTIONS)
  rows = []
  lines = []
  for seed, test in tests.items():
    row = {'seed': seed, **test['suggestions']}
    row['stopped_early'] = test['stopped_early']
    row['updates'] = len(test['lrs'])
    rows.append(row)
    lines.append(
      [
        seed,
        *[f'{test["suggestions"][k]:.4g}' for k in names],
        row['updates'],
        'yes' if test['stopped_early'] else 'no',
      ]
    )
  means = {
    k: float(np.exp(np.mean([np.log(r[k]) for r in rows]))) for k in names
  }
  lines.append(['geometric mean', *[f'{means[k]:.4g}' for k in names], '', ''])
  table = _common.markdown_table(
    ['seed', *names, 'updates', 'stopped on divergence'], lines
  )
  figures = _figure(tests, config.finder.suggestion, workdir)
  chosen = means[config.finder.suggestion]
  results = {
    'experiment': 'lr_find',
    'rows': rows,
    'geometric_mean': means,
    'suggested_lr': chosen,
    'suggestion': config.finder.suggestion,
    'figures': figures,
  }
  c = config.common
  report = '\n'.join(
    [
      '# LR range test',
      '',
      f'{c.dataset}, model {c.model}, {c.optimizer} with momentum '
      f'{c.momentum:g}, weight decay {c.weight_decay:g}, batch '
      f'{c.batch_size}; LR from {config.finder.min_lr:g} to '
      f'{config.finder.max_lr:g} over {config.finder.steps} updates.',
      '',
      table,
      f'Suggested LR ({config.finder.suggestion}, geometric mean over '
      f'seeds): **{chosen:.4g}**. Use it in a policy, e.g. '
      f'`cosine({chosen:.3g},length=<epochs>)`, or let experiments.lrbench '
      'run the test itself with `--policy=cosine({lr},length=<epochs>)`.',
      '',
      *[f'![{caption}]({path})\n' for path, caption in figures.items()],
    ]
  )
  _common.write_outputs(workdir, results, table, report)
  return results


def _figure(tests, suggestion: str, workdir: str) -> dict[str, str]:
  import matplotlib.pyplot as plt

  from lrjax import finder as lrfinder
  from lrjax import plots

  seed, first = next(iter(tests.items()))
  plots.plot_lr_finder(
    lrfinder.RangeTestResult(
      lrs=np.asarray(first['lrs'], float),
      losses=np.asarray(first['losses'], float),
      smoothed=np.asarray(first['smoothed'], float),
      suggestions=dict(first['suggestions']),
      stopped_early=bool(first['stopped_early']),
    ),
    title=f'LR range test (seed {seed})',
    path=os.path.join(workdir, 'lr_find.png'),
  )
  xs = {f'seed {s}': t['lrs'] for s, t in tests.items()}
  ys = {f'seed {s}': t['smoothed'] for s, t in tests.items()}
  markers = {}
  for s, t in tests.items():
    lr = t['suggestions'][suggestion]
    loss = float(np.interp(np.log(lr), np.log(t['lrs']), t['smoothed']))
    markers[f'{suggestion} (seed {s}): {lr:.3g}'] = (lr, loss)
  plots.plot_lines(
    xs,
    ys,
    xlabel='learning rate',
    ylabel='smoothed training loss',
    logx=True,
    markers=markers,
    title='LR range test, every seed',
    path=os.path.join(workdir, 'lr_find_seeds.png'),
  )
  plt.close('all')
  return {
    'lr_find.png': 'Loss against learning rate, with the suggestions',
    'lr_find_seeds.png': 'Smoothed loss against learning rate, every seed',
  }


def main(argv: Sequence[str]) -> None:
  done = _common.run_main(argv, 'lr_find', get_config, run, check)
  if done is None:
    return
  results, workdir = done
  print(
    f'suggested LR ({results["suggestion"]}): {results["suggested_lr"]:.4g}'
  )
  _common.print_report_path(workdir)


if __name__ == '__main__':
  app.run(main)
