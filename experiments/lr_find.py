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

import numpy as np
from absl import app, logging

from experiments import _common, _finder, _flags, _study


@dataclasses.dataclass(frozen=True)
class LrFindConfig:
  """The range test: common settings (model, data, batch) and the sweep."""

  common: _common.CommonConfig = _common.CommonConfig()
  finder: _finder.FinderConfig = _finder.FinderConfig()


def get_config() -> LrFindConfig:
  """Builds the typed config from the parsed flags."""
  return LrFindConfig(
    _common.common_config(), _flags.read(_finder.FinderConfig)
  )


class LrFind(_study.Study):
  """One range test per seed, and the suggestions' geometric mean."""

  name = 'lr_find'

  def check(self) -> None:
    """Checks the sweep, the devices and the data (the batch fits)."""
    self.config.finder.validate()
    n = _common.check_common(self.config.common)
    _common.check_batch('--batch_size', self.config.common.batch_size, n)

  def run(self, context: _study.Context) -> _study.Report:
    """Runs (or reuses) each seed's range test, then tabulates them."""
    c, finder = self.config.common, self.config.finder
    tests = {}
    for j, seed in enumerate(c.seeds, 1):
      logging.info('range test, seed %d/%d (seed %d)', j, len(c.seeds), seed)
      tests[seed] = _finder.range_test(
        c,
        finder,
        seed,
        os.path.join(context.workdir, 'runs', f'seed{seed}'),
        overwrite=context.overwrite,
      )
    return self.analyze(tests, context.workdir)

  def analyze(self, tests, workdir: str) -> _study.Report:
    """The per-seed table, the recommended LR, the figure and the report
    from each seed's range test (``tests``: seed -> `_finder.range_test`)."""
    from lrjax import finder as lrfinder
    from lrjax import plots

    names = list(_finder.SUGGESTIONS)
    suggestion = self.config.finder.finder_suggestion
    rows, lines = [], []
    for seed, test in tests.items():
      best = int(np.argmin(np.asarray(test['smoothed'], float)))
      row = {
        'seed': seed,
        **test['suggestions'],
        'stopped_early': test['stopped_early'],
        'updates': len(test['lrs']),
        'ema_lag_at_minimum': float(lrfinder.ema_lag(test['beta'], best)),
      }
      rows.append(row)
      lines.append(
        [
          seed,
          *[f'{row[k]:.4g}' for k in names],
          row['updates'],
          'yes' if row['stopped_early'] else 'no',
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
    chosen = means[suggestion]
    plots.plot_lr_finder(
      {f'seed {s}': _finder.as_result(t) for s, t in tests.items()},
      suggestions={f'{suggestion}\n(geometric mean over seeds)': chosen},
      title='LR range test, every seed',
      path=os.path.join(workdir, 'lr_find.png'),
    )
    figures = {
      'lr_find.png': 'Loss against learning rate, every seed (raw faint, '
      'smoothed solid), with the suggested LR',
    }
    results = {
      'experiment': 'lr_find',
      'rows': rows,
      'geometric_mean': means,
      'suggested_lr': chosen,
      'suggestion': suggestion,
      'figures': figures,
    }
    # The console's last table line: the LR to use.
    printed = f'{table}\nsuggested LR ({suggestion}): {chosen:.4g}\n'
    report = self._report(rows, table, chosen, figures)
    return _study.Report(results, printed, report)

  def _report(self, rows, table: str, chosen: float, figures) -> str:
    c, finder = self.config.common, self.config.finder
    lags = [r['ema_lag_at_minimum'] for r in rows]
    return '\n'.join(
      [
        '# LR range test',
        '',
        f'{c.dataset}, model {c.model}, {c.optimizer} with momentum '
        f'{c.momentum:g}, weight decay {c.weight_decay:g}, batch '
        f'{c.batch_size}; LR from {finder.finder_min_lr:g} to '
        f'{finder.finder_max_lr:g} over {finder.finder_steps} updates.',
        '',
        table,
        f'Suggested LR ({finder.finder_suggestion}, geometric mean over '
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


check, run, main = _study.entry_points(LrFind, get_config)

if __name__ == '__main__':
  app.run(main)
