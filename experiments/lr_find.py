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
from absl import app, logging

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
  seeds = config.common.seeds
  for j, seed in enumerate(seeds, 1):
    logging.info('range test, seed %d/%d (seed %d)', j, len(seeds), seed)
    seed_dir = os.path.join(workdir, 'runs', f'seed{seed}')
    if overwrite and os.path.exists(os.path.join(seed_dir, 'range_test.json')):
      os.remove(os.path.join(seed_dir, 'range_test.json'))
    tests[seed] = _finder.range_test(
      config.common, config.finder, seed, seed_dir
    )
  from lrjax import finder as lrfinder

  names = list(_finder.SUGGESTIONS)
  rows = []
  lines = []
  for seed, test in tests.items():
    row = {'seed': seed, **test['suggestions']}
    row['stopped_early'] = test['stopped_early']
    row['updates'] = len(test['lrs'])
    best = int(np.argmin(np.asarray(test['smoothed'], float)))
    row['ema_lag_at_minimum'] = float(
      lrfinder.ema_lag(test.get('beta', _finder.BETA), best)
    )
    rows.append(row)
    lines.append(
      [
        seed,
        *[f'{test["suggestions"][k]:.4g}' for k in names],
        row['updates'],
        'yes' if test['stopped_early'] else 'no',
        f'{row["ema_lag_at_minimum"]:.0f}',
      ]
    )
  means = {
    k: float(np.exp(np.mean([np.log(r[k]) for r in rows]))) for k in names
  }
  lines.append(
    ['geometric mean', *[f'{means[k]:.4g}' for k in names], '', '', '']
  )
  table = _common.markdown_table(
    [
      'seed',
      *names,
      'updates',
      'stopped on divergence',
      'smoothed lag at its minimum (updates)',
    ],
    lines,
  )
  chosen = means[config.finder.suggestion]
  figures = _figure(tests, config.finder.suggestion, chosen, workdir)
  results = {
    'experiment': 'lr_find',
    'rows': rows,
    'geometric_mean': means,
    'suggested_lr': chosen,
    'suggestion': config.finder.suggestion,
    'figures': figures,
  }
  c = config.common
  lags = [r['ema_lag_at_minimum'] for r in rows]
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
      f'seeds): **{chosen:.4g}**, the vertical line in the figure. Use it '
      f'in a policy, e.g. `cosine({chosen:.3g},length=<epochs>)`, or let '
      'experiments.lrbench run the test itself with '
      '`--policy=cosine({lr},length=<epochs>)`.',
      '',
      "The suggestions are read off the smoothed loss, fastai's "
      f'bias-corrected EMA (decay {_finder.BETA:g}), as fastai reads them. '
      'That curve trails the raw losses: at its minimum by '
      f'{min(lags):.0f} to {max(lags):.0f} updates here '
      '(`lrjax.finder.ema_lag`; the figure states the factor in LR), so '
      'the smoothed minimum, and a tenth of it, sit to the right of where '
      'the raw losses bottom out.',
      '',
      *[f'![{caption}]({path})\n' for path, caption in figures.items()],
    ]
  )
  _common.write_outputs(workdir, results, table, report)
  return results


def _figure(
  tests, suggestion: str, chosen: float, workdir: str
) -> dict[str, str]:
  """Every seed's curve and the LR the report recommends (``chosen``)."""
  from lrjax import finder as lrfinder
  from lrjax import plots

  curves = {
    f'seed {s}': lrfinder.RangeTestResult(
      lrs=np.asarray(t['lrs'], float),
      losses=np.asarray(t['losses'], float),
      smoothed=np.asarray(t['smoothed'], float),
      suggestions=dict(t['suggestions']),
      stopped_early=bool(t['stopped_early']),
      beta=float(t.get('beta', _finder.BETA)),
    )
    for s, t in tests.items()
  }
  plots.plot_lr_finder(
    curves,
    suggestions={f'{suggestion}\n(geometric mean over seeds)': chosen},
    title='LR range test, every seed',
    path=os.path.join(workdir, 'lr_find.png'),
  )
  return {
    'lr_find.png': 'Loss against learning rate, every seed (raw faint, '
    'smoothed solid), with the suggested LR',
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
