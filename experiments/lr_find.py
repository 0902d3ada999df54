"""The LR range test (Smith 2017), one per seed, on a model and dataset.

python -m experiments.lr_find --flagfile=experiments/flagfiles/lr_find_digits.cfg
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import app, logging

from experiments import _common, _finder
from lrjax import studies


@dataclasses.dataclass(frozen=True)
class LrFindConfig:
  """The range test: common settings (model, data, batch) and the sweep."""

  common: _common.CommonConfig = _common.CommonConfig()
  finder: _finder.FinderConfig = _finder.FinderConfig()


def get_config() -> LrFindConfig:
  """Builds the typed config from the parsed flags."""
  return LrFindConfig(
    _common.common_config(), studies.read_flags(_finder.FinderConfig)
  )


class LrFind(studies.Study):
  """One range test per seed, and the suggestions' geometric mean."""

  name = 'lr_find'

  def check(self) -> None:
    """Checks the sweep, the devices and the data (the batch fits)."""
    self.config.finder.validate()
    n = _common.check_common(self.config.common)
    _common.check_batch('--batch_size', self.config.common.batch_size, n)

  def run(self, context: studies.Context) -> studies.Report:
    """Runs (or reuses) each seed's range test, then tabulates them."""
    c, tests = self.config.common, {}
    for j, seed in enumerate(c.seeds, 1):
      logging.info('range test, seed %d/%d (seed %d)', j, len(c.seeds), seed)
      tests[seed] = _finder.range_test(
        c,
        self.config.finder,
        seed,
        os.path.join(context.workdir, 'runs', f'seed{seed}'),
        overwrite=context.overwrite,
      )
    return self.analyze(tests, context.workdir)

  def analyze(self, tests, workdir: str) -> studies.Report:
    """Table, recommended LR, figure and report (``tests``: seed ->
    `_finder.range_test`)."""
    from lrjax import finder as lrfinder
    from lrjax import plots

    names = _finder.SUGGESTIONS
    suggestion = self.config.finder.finder_suggestion
    curves = {seed: _finder.as_result(t) for seed, t in tests.items()}
    rows = [
      {
        'seed': seed,
        **r.suggestions,
        'stopped_early': r.stopped_early,
        'updates': len(r.lrs),
        'ema_lag_at_minimum': float(
          lrfinder.ema_lag(r.beta, int(np.argmin(r.smoothed)))
        ),
      }
      for seed, r in curves.items()
    ]
    means = {
      k: float(np.exp(np.mean([np.log(r[k]) for r in rows]))) for k in names
    }
    table = studies.markdown_table(
      ['seed', *names, 'updates', 'stopped on divergence']
      + ['smoothed lag at its minimum (updates)'],
      [
        [r['seed'], *[f'{r[k]:.4g}' for k in names], r['updates']]
        + ['yes' if r['stopped_early'] else 'no']
        + [f'{r["ema_lag_at_minimum"]:.0f}']
        for r in rows
      ]
      + [['geometric mean', *[f'{means[k]:.4g}' for k in names], '', '', '']],
    )
    chosen = means[suggestion]
    plots.plot_lr_finder(
      {f'seed {s}': r for s, r in curves.items()},
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
    c, f = self.config.common, self.config.finder
    lags = [r['ema_lag_at_minimum'] for r in rows]
    report = _common.render(
      'lr_find',
      c=c,
      f=f,
      table=table,
      suggestion=suggestion,
      chosen=chosen,
      beta=_finder.BETA,
      lag_min=min(lags),
      lag_max=max(lags),
    )
    report += ''.join(f'\n![{c_}]({p})\n' for p, c_ in figures.items())
    # The console's last table line: the LR to use.
    printed = f'{table}\nsuggested LR ({suggestion}): {chosen:.4g}\n'
    return studies.Report(results, printed, report)


check, run, main = _common.entry_points(LrFind, get_config)

if __name__ == '__main__':
  app.run(main)
