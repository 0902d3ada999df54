r"""The optimal LR and batch as power laws of the budget (DeepSeek LLM).

Trains a grid of small runs, every LR of `--scaling_lrs` x every batch of
`--scaling_batches` at every budget of `--scaling_budgets` (epochs, each a
cosine to 0), then for each budget keeps the near-optimal runs (mean final
test loss over seeds within `--scaling_tolerance` of the budget's best,
DeepSeek's 0.25% band by default) and fits

.. math::
  \eta_{opt} = a_\eta C^{b_\eta}, \qquad B_{opt} = a_B C^{b_B}

with C the budget in training examples (proportional to compute for one
model), by least squares in log space with percentile bootstrap intervals
(`lrjax.recipe.bootstrap_power_law`), and extrapolates to
`--scaling_extrapolate` (epochs). Finished runs are reused, so the same
command resumes an interrupted grid.

  python -m experiments.scaling --flagfile=experiments/flagfiles/scaling_digits.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from experiments import _common, _runs

BUDGETS = flags.DEFINE_list(
  'scaling_budgets', ['2', '4', '8'], 'Budgets in epochs (increasing).'
)
LRS = flags.DEFINE_list(
  'scaling_lrs', ['0.01', '0.05', '0.25'], 'Peak LRs of the grid.'
)
SCALING_BATCHES = flags.DEFINE_list(
  'scaling_batches', ['16', '32', '64', '128'], 'Batch sizes of the grid.'
)
TOLERANCE = flags.DEFINE_float(
  'scaling_tolerance',
  0.0025,
  "Near-optimal band: loss within this fraction of the budget's best.",
)
EXTRAPOLATE = flags.DEFINE_list(
  'scaling_extrapolate', ['32', '128'], 'Budgets (epochs) to predict at.'
)
RESAMPLES = flags.DEFINE_integer(
  'scaling_resamples', 1000, 'Bootstrap resamples.'
)
_common.register_bound('scaling_tolerance', 0.0)
_common.register_bound('scaling_resamples', 10)


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
  """The grid, the near-optimal band, the bootstrap and the extrapolation."""

  common: _common.CommonConfig = _common.CommonConfig()
  budgets: tuple[float, ...] = (2.0, 4.0, 8.0)
  lrs: tuple[float, ...] = (0.01, 0.05, 0.25)
  batches: tuple[int, ...] = (16, 32, 64, 128)
  tolerance: float = 0.0025
  extrapolate: tuple[float, ...] = (32.0, 128.0)
  resamples: int = 1000

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    if len(self.budgets) < 2 or list(self.budgets) != sorted(set(self.budgets)):
      raise ValueError(
        f'--scaling_budgets={self.budgets} needs at least 2 distinct '
        'increasing budgets (a power law needs 2 points)'
      )
    for name, values in (
      ('scaling_budgets', self.budgets),
      ('scaling_lrs', self.lrs),
      ('scaling_batches', self.batches),
      ('scaling_extrapolate', self.extrapolate),
    ):
      if not values or min(values) <= 0:
        raise ValueError(f'--{name} must be positive numbers')


def get_config() -> ScalingConfig:
  """Builds the typed config from the parsed flags."""
  try:
    return ScalingConfig(
      common=_common.common_config(),
      budgets=tuple(float(b) for b in BUDGETS.value),
      lrs=tuple(float(x) for x in LRS.value),
      batches=tuple(int(b) for b in SCALING_BATCHES.value),
      tolerance=TOLERANCE.value,
      extrapolate=tuple(float(b) for b in EXTRAPOLATE.value),
      resamples=RESAMPLES.value,
    )
  except ValueError as e:
    raise app.UsageError(f'a --scaling_* list has a bad number: {e}') from None


def check(config: ScalingConfig) -> None:
  """Checks the settings, the devices, the data and every grid run's
  trainer config before anything trains or is written (so `--dry_run`
  checks the whole grid).

  Raises:
    ValueError: naming the flag and the fix.
    FileNotFoundError: for a dataset that is not prepared.
  """
  config.validate()
  n = _common.check_common(config.common)
  _common.check_batch('--scaling_batches', max(config.batches), n)
  _common.check_train_configs([cfg for _, _, cfg in _grid_configs(config)], n)


def _grid_configs(config: ScalingConfig):
  """Every run of the grid: (its name, its seed, its trainer config)."""
  c = config.common
  for budget in config.budgets:
    for lr in config.lrs:
      for b in config.batches:
        for seed in c.seeds:
          yield (
            f'e{budget:g}_lr{lr:g}_b{b}',
            seed,
            _common.train_config(
              c,
              batch=b,
              lr=f'cosine({lr:g},length={budget:g})',
              seed=seed,
              num_epochs=budget,
              eval_every=budget,
            ),
          )


def run(
  config: ScalingConfig,
  workdir: str,
  *,
  with_flags: bool = False,
  overwrite: bool = False,
):
  """Trains (or reuses) the grid, fits, writes the table, figure, report."""
  check(config)
  with _common.experiment_workdir(workdir, config, with_flags=with_flags):
    return _run(config, workdir, overwrite)


def _run(config: ScalingConfig, workdir: str, overwrite: bool):
  from lrjax import recipe

  train_run = functools.partial(_runs.train_run, overwrite=overwrite)
  c = config.common
  n = _common.make_task(c, c.seeds[0]).num_train
  losses = {}
  for name, seed, cfg in _grid_configs(config):
    r = train_run(
      name,
      seed,
      cfg,
      os.path.join(workdir, 'runs', name, f'seed{seed}'),
      _common.make_task(c, seed),
    )
    losses.setdefault(name, []).append(r.summary['test_loss'])
  grid = [
    {
      'epochs': budget,
      'lr': lr,
      'batch': b,
      'test_loss': float(np.mean(losses[f'e{budget:g}_lr{lr:g}_b{b}'])),
    }
    for budget in config.budgets
    for lr in config.lrs
    for b in config.batches
  ]
  examples = np.array([g['epochs'] * n for g in grid])
  loss = np.array([g['test_loss'] for g in grid])
  at = np.array(config.extrapolate) * n
  fits = {}
  for key in ('lr', 'batch'):
    values = np.array([g[key] for g in grid], float)
    cs, vs = recipe.near_optimal(examples, values, loss, config.tolerance)
    if np.unique(cs).size < 2:
      fits[key] = None
      continue
    fit = recipe.bootstrap_power_law(
      cs, vs, at=at, num_resamples=config.resamples, seed=c.seeds[0]
    )
    fits[key] = {'points': (cs, vs), 'fit': fit}
  lines = []
  for g in grid:
    lines.append(
      [f'{g["epochs"]:g}', f'{g["lr"]:g}', g['batch'], f'{g["test_loss"]:.4f}']
    )
  table = _common.markdown_table(
    ['budget (epochs)', 'peak LR', 'batch', 'test loss (mean)'], lines
  )
  summary = _fit_lines(fits, config, n)
  figures = _figures(fits, workdir)
  results = {
    'experiment': 'scaling',
    'grid': grid,
    'examples_per_epoch': n,
    'fits': {
      k: None
      if v is None
      else {
        'coefficient': v['fit'].fit.coefficient,
        'exponent': v['fit'].fit.exponent,
        'coefficient_ci': v['fit'].coefficient_ci,
        'exponent_ci': v['fit'].exponent_ci,
        'extrapolate_examples': v['fit'].at,
        'prediction': v['fit'].prediction,
        'prediction_ci': v['fit'].prediction_ci,
        'near_optimal_points': [list(v['points'][0]), list(v['points'][1])],
      }
      for k, v in fits.items()
    },
    'figures': figures,
  }
  report = '\n'.join(
    [
      '# Scaling laws of the optimal LR and batch',
      '',
      f'{c.dataset}, model {c.model}, {c.optimizer} (momentum '
      f'{c.momentum:g}, weight decay {c.weight_decay:g}), cosine to 0; '
      f'seeds {list(c.seeds)}; budget C in training examples '
      f'({n:.0f} per epoch).',
      '',
      *summary,
      '',
      table,
      *_common.figure_lines(figures),
    ]
  )
  _common.write_outputs(workdir, _common.jsonable(results), table, report)
  return results


def _fit_lines(fits, config, n) -> list[str]:
  lines = []
  for key, label in (('lr', 'LR'), ('batch', 'batch')):
    v = fits[key]
    if v is None:
      lines.append(
        f'- {label}: the near-optimal runs cover a single budget; no fit '
        '(widen --scaling_tolerance or the grid)'
      )
      continue
    f = v['fit']
    lo, hi = f.exponent_ci
    lines.append(
      f'- optimal {label} = {f.fit.coefficient:.4g} C^{f.fit.exponent:.3f} '
      f'(exponent {100 * f.level:g}% CI [{lo:.3f}, {hi:.3f}]; '
      f'{len(v["points"][0])} near-optimal runs)'
    )
    for c_, p, (plo, phi) in zip(
      f.at, f.prediction, f.prediction_ci, strict=True
    ):
      lines.append(
        f'  - extrapolated to {c_ / n:g} epochs: {p:.4g} '
        f'(CI [{plo:.4g}, {phi:.4g}])'
      )
    if lo <= 0 <= hi:
      lines.append(
        f'  - the interval holds 0: this grid does not show the {label} '
        'changing with the budget'
      )
    grid = config.lrs if key == 'lr' else config.batches
    edge = sorted({x for x in v['points'][1] if x in (min(grid), max(grid))})
    if edge:
      lines.append(
        f'  - near-optimal {label} at the edge of the grid '
        f'({", ".join(f"{x:g}" for x in edge)}): the optimum may lie outside '
        'it; widen the grid'
      )
    lines.append(
      '  - the interval resamples the near-optimal runs only: it does not '
      "include the grid's spacing"
    )
  return lines


def _figures(fits, workdir) -> dict[str, str]:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, (key, label) in zip(
    axes, (('lr', 'optimal LR'), ('batch', 'optimal batch')), strict=True
  ):
    v = fits[key]
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('budget C (training examples)')
    ax.set_ylabel(label)
    if v is None:
      ax.set_title(f'{label}: no fit')
      continue
    cs, vs = v['points']
    f = v['fit']
    ax.scatter(cs, vs, label='near-optimal runs')
    grid = np.geomspace(min(cs.min(), *f.at), max(cs.max(), *f.at), 50)
    ax.plot(
      grid, f.fit(grid), label=f'{f.fit.coefficient:.3g} C^{f.fit.exponent:.3f}'
    )
    band = f.resamples[:, :1] * grid[None, :] ** f.resamples[:, 1:]
    q = [100 * (1 - f.level) / 2, 100 * (1 + f.level) / 2]
    lo, hi = np.percentile(band, q, axis=0)
    ax.fill_between(grid, lo, hi, alpha=0.2, label=f'{100 * f.level:g}% CI')
    if f.at.size:
      ax.errorbar(
        f.at,
        f.prediction,
        yerr=[
          f.prediction - f.prediction_ci[:, 0],
          f.prediction_ci[:, 1] - f.prediction,
        ],
        fmt='x',
        label='extrapolation',
      )
    ax.set_title(label)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'scaling.png'), dpi=120)
  plt.close('all')
  return {'scaling.png': 'Optimal LR and batch against the budget, with fits'}


def main(argv: Sequence[str]) -> None:
  done = _common.run_main(argv, 'scaling', get_config, run, check)
  if done is None:
    return
  _common.print_report_path(done[1])


if __name__ == '__main__':
  app.run(main)
