r"""The optimal LR and batch as power laws of the budget (DeepSeek LLM).

Fits :math:`\eta_{opt} = a_\eta C^{b_\eta}` and :math:`B_{opt} = a_B C^{b_B}`
(C: budget in examples) to each budget's near-optimal runs of the grid
(`lrjax.recipe.near_optimal`, `lrjax.recipe.bootstrap_power_law`).

  python -m experiments.scaling --flagfile=experiments/flagfiles/scaling_digits.cfg
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence

import numpy as np
from absl import app

from experiments import _common
from lrjax import studies
from lrjax.studies import setting


def _budgets(values: Sequence[float]) -> str | None:
  if len(values) >= 2 and values[0] > 0 and list(values) == sorted(set(values)):
    return None
  return (
    'must be at least 2 distinct increasing positive budgets (a power law '
    'needs 2 points)'
  )


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
  """The grid, the near-optimal band, the bootstrap and the extrapolation."""

  common: _common.CommonConfig = _common.CommonConfig()
  scaling_budgets: tuple[float, ...] = setting((2.0, 4.0, 8.0), check=_budgets)
  """Budgets in epochs (increasing)."""
  scaling_lrs: tuple[float, ...] = setting(
    (0.01, 0.05, 0.25), check=studies.positive()
  )
  """Peak LRs of the grid."""
  scaling_batches: tuple[int, ...] = setting(
    (16, 32, 64, 128), check=studies.positive()
  )
  """Batch sizes of the grid."""
  scaling_tolerance: float = setting(0.0025, check=studies.at_least(0))
  """Near-optimal band: loss within this fraction of the budget's best."""
  scaling_extrapolate: tuple[float, ...] = setting(
    (32.0, 128.0), check=studies.positive()
  )
  """Budgets (epochs) to predict at."""
  scaling_resamples: int = setting(1000, check=studies.at_least(10))
  """Bootstrap resamples."""


studies.define_flags(ScalingConfig)


def get_config() -> ScalingConfig:
  """Builds the typed config from the parsed flags."""
  return studies.read_flags(ScalingConfig, common=_common.common_config())


def _name(budget: float, lr: float, batch: int) -> str:
  return f'e{budget:g}_lr{lr:g}_b{batch}'


class Scaling(studies.Study):
  """The grid of budgets x LRs x batches, and the power-law fits."""

  name = 'scaling'

  def check(self) -> None:
    """Checks the settings, data and every grid run (`--dry_run` too)."""
    config = self.config
    studies.check_settings(config)
    self.num_examples = n = _common.check_common(config.common)
    _common.check_batch('--scaling_batches', max(config.scaling_batches), n)
    studies.check_trials(self.trials(), n)

  def grid(self) -> list[tuple[float, float, int]]:
    """(budget, peak LR, batch) of every run."""
    c = self.config
    return list(
      itertools.product(c.scaling_budgets, c.scaling_lrs, c.scaling_batches)
    )

  def trials(self) -> list[studies.Trial]:
    c = self.config.common
    return [
      studies.Trial(
        _name(*key),
        c.seeds,
        lambda seed, budget=key[0], lr=key[1], b=key[2]: _common.train_config(
          c,
          batch=b,
          lr=f'cosine({lr:g},length={budget:g})',
          seed=seed,
          num_epochs=budget,
          eval_every=budget,
        ),
        lambda seed: _common.make_task(c, seed),
      )
      for key in self.grid()
    ]

  def analyze(
    self, runs: dict[str, list[studies.Run]], workdir: str
  ) -> studies.Report:
    from lrjax import plots, recipe

    config, n, c = self.config, self.num_examples, self.config.common
    grid = []
    for e, lr, b in self.grid():
      mean = np.mean([r.summary['test_loss'] for r in runs[_name(e, lr, b)]])
      grid.append({'epochs': e, 'lr': lr, 'batch': b, 'test_loss': float(mean)})
    examples = np.array([g['epochs'] * n for g in grid])
    loss = np.array([g['test_loss'] for g in grid])
    fits, at = {}, np.array(config.scaling_extrapolate) * n
    for key, label in (('lr', 'LR'), ('batch', 'batch')):
      values = np.array([g[key] for g in grid], float)
      cs, vs = recipe.near_optimal(
        examples, values, loss, config.scaling_tolerance
      )
      fit = None
      if np.unique(cs).size >= 2:
        fit = recipe.bootstrap_power_law(
          cs, vs, at=at, num_resamples=config.scaling_resamples, seed=c.seeds[0]
        )
      fits[key] = (label, fit, cs, vs)
    table = studies.markdown_table(
      ['budget (epochs)', 'peak LR', 'batch', 'test loss (mean)'],
      [
        [f'{e:g}', f'{lr:g}', b, f'{loss:.4f}']
        for e, lr, b, loss in map(dict.values, grid)
      ],
    )
    plots.plot_power_laws(
      {f'optimal {label}': (cs, vs, f) for label, f, cs, vs in fits.values()},
      xlabel='budget C (training examples)',
      path=os.path.join(workdir, 'scaling.png'),
    )
    figures = {
      'scaling.png': 'Optimal LR and batch against the budget, with fits'
    }
    results = {
      'experiment': 'scaling',
      'grid': grid,
      'examples_per_epoch': n,
      'fits': {k: _fit_json(*v[1:]) for k, v in fits.items()},
      'figures': figures,
    }
    report = _common.render(
      'scaling',
      trained=_common.trained_text(c),
      seeds=list(c.seeds),
      n=n,
      fits='\n'.join(_fit_text(k, *fit, config, n) for k, fit in fits.items()),
      table=table,
      figures='\n'.join(_common.figure_lines(figures)),
    )
    return studies.Report(studies.jsonable(results), table, report)


check, run, main = _common.entry_points(Scaling, get_config)


_FIT_FIELDS = ('coefficient_ci', 'exponent_ci', 'prediction', 'prediction_ci')


def _fit_json(f, cs, vs) -> dict | None:
  return f and {
    **f.fit._asdict(),
    **{k: getattr(f, k) for k in _FIT_FIELDS},
    'extrapolate_examples': f.at,
    'near_optimal_points': [list(cs), list(vs)],
  }


def _fit_text(key, label, f, cs, vs, config, n) -> str:
  """report.md's bullets of one fit: the law, its extrapolation, caveats."""
  if f is None:
    return (
      f'- {label}: the near-optimal runs cover a single budget; no fit '
      '(widen --scaling_tolerance or the grid)'
    )
  lo, hi = f.exponent_ci
  grid = config.scaling_lrs if key == 'lr' else config.scaling_batches
  notes = [
    f'extrapolated to {c_ / n:g} epochs: {p:.4g} (CI [{plo:.4g}, {phi:.4g}])'
    for c_, p, (plo, phi) in zip(
      f.at, f.prediction, f.prediction_ci, strict=True
    )
  ]
  if lo <= 0 <= hi:
    notes.append(
      f'the interval holds 0: this grid does not show the {label} changing '
      'with the budget'
    )
  if edge := sorted({x for x in vs if x in (min(grid), max(grid))}):
    notes.append(
      f'near-optimal {label} at the edge of the grid '
      f'({", ".join(f"{x:g}" for x in edge)}): the optimum may lie outside '
      'it; widen the grid'
    )
  return _common.render(
    'scaling_fit',
    label=label,
    f=f,
    level=100 * f.level,
    lo=lo,
    hi=hi,
    runs=len(vs),
    notes=''.join(f'  - {note}\n' for note in notes),
  )


if __name__ == '__main__':
  app.run(main)
