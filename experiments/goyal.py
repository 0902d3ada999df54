r"""Goyal et al.'s batch sweep and Smith & Le's optimal noise scale.

Trains the same model for the same number of epochs at batch sizes from
`--goyal_batches`, under four LR rules anchored at `--lr` for
`--goyal_base_batch`:

- `none`: the base LR at every batch (no scaling);
- `linear`: :math:`\eta = \eta_0 B / B_0` (Goyal et al. 2017, section 2.1);
- `warmup`: the linear rule with Goyal's gradual warmup from
  :math:`\eta_0` over `--goyal_warmup_epochs` (section 2.2);
- `sqrt`: :math:`\eta = \eta_0 \sqrt{B / B_0}` (Krizhevsky 2014).

Every run follows a cosine to 0 over the epochs (after the warmup). The
report gives test accuracy against batch size (the shape of Goyal et al.'s
figure 1), the batch where each variant breaks down (its mean accuracy
falls more than `--goyal_tolerance` below the base batch's), and the
gradient noise scale B_simple measured at the base batch and LR
(`lrjax.recipe.probe_noise`) on the axis.

Smith & Le (2017): at a constant LR, test accuracy peaks at a batch that
grows in proportion to the LR (:math:`B_{opt} \propto \epsilon N`). The
`none` sweep is repeated at the LRs `--goyal_lr_factors` times `--lr`; the
report gives each LR's best batch and whether the best batch grows with
the LR by about the LR's ratio.

  python -m experiments.goyal --flagfile=experiments/flagfiles/goyal_digits.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from experiments import _common, _runs

VARIANTS = ('none', 'linear', 'warmup', 'sqrt')

BATCHES = flags.DEFINE_list(
  'goyal_batches',
  ['32', '64', '128', '256', '512'],
  'Batch sizes of the sweep (increasing).',
)
GOYAL_VARIANTS = flags.DEFINE_list(
  'goyal_variants', list(VARIANTS), f'LR rules, from {", ".join(VARIANTS)}.'
)
BASE_BATCH = flags.DEFINE_integer(
  'goyal_base_batch', 32, 'The batch at which --lr is the LR (B_0).'
)
WARMUP_EPOCHS = flags.DEFINE_float(
  'goyal_warmup_epochs', 1.0, 'Gradual warmup of the warmup variant.'
)
TOLERANCE = flags.DEFINE_float(
  'goyal_tolerance',
  0.02,
  'A variant breaks down at the first batch whose mean test accuracy is '
  'this far below the base batch.',
)
LR_FACTORS = flags.DEFINE_list(
  'goyal_lr_factors',
  ['0.25', '1', '4'],
  "Smith & Le's sweep: the unscaled sweep at these multiples of --lr.",
)
_common.register_bound('goyal_base_batch', 1)
_common.register_bound('goyal_warmup_epochs', 0.0)
_common.register_bound('goyal_tolerance', 0.0)


@dataclasses.dataclass(frozen=True)
class GoyalConfig:
  """The sweep: common settings, batches, LR rules, Smith & Le's LRs."""

  common: _common.CommonConfig = _common.CommonConfig()
  batches: tuple[int, ...] = (32, 64, 128, 256, 512)
  variants: tuple[str, ...] = VARIANTS
  base_batch: int = 32
  warmup_epochs: float = 1.0
  tolerance: float = 0.02
  lr_factors: tuple[float, ...] = (0.25, 1.0, 4.0)

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    if not self.batches or list(self.batches) != sorted(set(self.batches)):
      raise ValueError(
        f'--goyal_batches={",".join(map(str, self.batches))} must be '
        'distinct and increasing, e.g. 32,64,128'
      )
    if self.batches[0] < 1:
      raise ValueError('--goyal_batches must be >= 1')
    unknown = set(self.variants) - set(VARIANTS)
    if unknown or not self.variants:
      raise ValueError(
        f'--goyal_variants has {sorted(unknown) or "none"}; use some of '
        f'{",".join(VARIANTS)}'
      )
    if self.warmup_epochs >= self.common.epochs:
      raise ValueError(
        f'--goyal_warmup_epochs={self.warmup_epochs} must be below '
        f'--epochs={self.common.epochs}'
      )
    if not self.lr_factors or any(f <= 0 for f in self.lr_factors):
      raise ValueError(
        f'--goyal_lr_factors={self.lr_factors} must be positive numbers'
      )


def get_config() -> GoyalConfig:
  """Builds the typed config from the parsed flags."""
  try:
    batches = tuple(int(b) for b in BATCHES.value)
    factors = tuple(sorted(float(f) for f in LR_FACTORS.value))
  except ValueError as e:
    raise app.UsageError(
      f'--goyal_batches are integers and --goyal_lr_factors numbers: {e}'
    ) from None
  return GoyalConfig(
    common=_common.common_config(),
    batches=batches,
    variants=tuple(GOYAL_VARIANTS.value),
    base_batch=BASE_BATCH.value,
    warmup_epochs=WARMUP_EPOCHS.value,
    tolerance=TOLERANCE.value,
    lr_factors=factors,
  )


def lr_policy(
  variant: str,
  batch: int,
  base_lr: float,
  base_batch: int,
  epochs: float,
  warmup_epochs: float,
) -> str:
  """The LR policy text of one run (a cosine to 0 over the epochs).

  Examples:
    >>> lr_policy('linear', 128, 0.1, 32, 10, 1)
    'cosine(0.4,length=10)'
    >>> lr_policy('warmup', 128, 0.1, 32, 10, 1)
    'warmup(cosine(0.4,length=9),length=1,start=0.25)'
    >>> lr_policy('sqrt', 128, 0.1, 32, 10, 1)
    'cosine(0.2,length=10)'
  """
  from lrjax import rules, schedules

  if variant == 'none':
    peak = base_lr
  elif variant == 'sqrt':
    peak = rules.sqrt_scaling(batch, base_lr, base_batch)
  else:
    peak = rules.linear_scaling(batch, base_lr, base_batch)
  peak = float(f'{peak:.6g}')
  if variant != 'warmup' or warmup_epochs == 0 or peak <= base_lr:
    return str(schedules.cosine(peak, length=epochs))
  inner = schedules.cosine(peak, length=epochs - warmup_epochs)
  start = float(f'{base_lr / peak:.6g}')
  return str(schedules.warmup(inner, length=warmup_epochs, start=start))


def breakdown(
  batches: Sequence[int], accuracy: Sequence[float], tolerance: float
) -> int | None:
  """The first batch whose accuracy is more than `tolerance` below the
  first batch's (None: no breakdown).

  Examples:
    >>> breakdown([32, 64, 128], [0.95, 0.94, 0.90], 0.02)
    128
    >>> print(breakdown([32, 64], [0.95, 0.94], 0.02))
    None
  """
  for b, a in zip(batches, accuracy, strict=True):
    if a < accuracy[0] - tolerance:
      return int(b)
  return None


def _runs_of(config: GoyalConfig, workdir: str, train_run):
  c = config.common
  groups = {}
  for variant in config.variants:
    for b in config.batches:
      groups[(variant, 1.0, b)] = lr_policy(
        variant, b, c.lr, config.base_batch, c.epochs, config.warmup_epochs
      )
  for f in config.lr_factors:
    for b in config.batches:
      groups.setdefault(
        ('none', f, b), str(_cosine(float(f'{c.lr * f:.6g}'), c.epochs))
      )
  runs = {}
  for (variant, f, b), policy in groups.items():
    for seed in c.seeds:
      name = f'{variant}_lr{f:g}_b{b}'
      cfg = _common.train_config(c, batch=b, lr=policy, seed=seed)
      run_dir = os.path.join(workdir, 'runs', name, f'seed{seed}')
      runs[(variant, f, b, seed)] = train_run(name, seed, cfg, run_dir)
  return groups, runs


def _cosine(lr: float, epochs: float):
  from lrjax import schedules

  return schedules.cosine(lr, length=epochs)


def _measure_b_simple(config: GoyalConfig, workdir: str) -> float:
  import json

  from lrjax import recipe
  from lrjax import train as lrtrain

  path = os.path.join(workdir, 'b_simple.json')
  if os.path.exists(path):
    with open(path) as fh:
      return float(json.load(fh)['b_simple'])
  c = config.common
  cfg = _common.train_config(
    c, batch=config.base_batch, lr=c.lr, seed=c.seeds[0]
  )
  slices = 4 if config.base_batch % 4 == 0 else 2
  probe = recipe.probe_noise(
    lrtrain.resolve_task(cfg),
    lr=c.lr,
    batch_size=config.base_batch,
    num_slices=slices,
    num_updates=50,
    optimizer=c.optimizer,
    momentum=c.momentum,
    weight_decay=c.weight_decay,
    seed=c.seeds[0],
  )
  _common.write_json(path, {'b_simple': probe.b_simple})
  return probe.b_simple


def check(config: GoyalConfig) -> None:
  """Checks the settings, the devices, the data and every run's trainer
  config before anything trains or is written (so `--dry_run` checks the
  whole sweep).

  Raises:
    ValueError: naming the flag and the fix.
    FileNotFoundError: for a dataset that is not prepared.
  """
  config.validate()
  n = _common.check_common(config.common)
  _common.check_batch('--goyal_batches', config.batches[-1], n)
  _common.check_batch('--goyal_base_batch', config.base_batch, n)
  configs = []
  _runs_of(config, '', lambda name, seed, cfg, run_dir: configs.append(cfg))
  _common.check_train_configs(configs, n)


def run(
  config: GoyalConfig,
  workdir: str,
  *,
  with_flags: bool = False,
  overwrite: bool = False,
):
  """Runs the sweep (finished runs are reused); writes table and report."""
  check(config)
  with _common.experiment_workdir(workdir, config, with_flags=with_flags):
    return _run(config, workdir, overwrite)


def _run(config: GoyalConfig, workdir: str, overwrite: bool):
  train_run = functools.partial(_runs.train_run, overwrite=overwrite)
  c = config.common
  groups, runs = _runs_of(config, workdir, train_run)
  b_simple = _measure_b_simple(config, workdir)

  def accuracies(variant, f, b):
    return [runs[(variant, f, b, s)].summary['test_accuracy'] for s in c.seeds]

  rows, lines = [], []
  curves = {}
  for variant in config.variants:
    means = []
    for b in config.batches:
      acc = accuracies(variant, 1.0, b)
      mean, std = _common.mean_std(acc)
      means.append(mean)
      updates = runs[(variant, 1.0, b, c.seeds[0])].summary['num_updates']
      rows.append(
        {
          'variant': variant,
          'batch': b,
          'lr': groups[(variant, 1.0, b)],
          'test_accuracy_mean': mean,
          'test_accuracy_std': std,
          'updates': updates,
        }
      )
      lines.append(
        [
          variant,
          b,
          f'`{groups[(variant, 1.0, b)]}`',
          _common.fmt_mean_std(acc, 100),
          updates,
        ]
      )
    curves[variant] = means
  table = _common.markdown_table(
    ['rule', 'batch', 'LR policy', 'test accuracy %', 'updates'], lines
  )
  breaks = {
    v: breakdown(config.batches, curves[v], config.tolerance)
    for v in config.variants
  }
  smith_le = {}
  for f in config.lr_factors:
    means = [
      _common.mean_std(accuracies('none', f, b))[0] for b in config.batches
    ]
    smith_le[f] = {
      'means': means,
      'best_batch': int(config.batches[int(np.argmax(means))]),
    }
  claim = _smith_le_claim(config, smith_le)
  figures = _figures(config, curves, smith_le, b_simple, workdir)
  results = {
    'experiment': 'goyal',
    'rows': rows,
    'breakdown_batch': breaks,
    'b_simple': b_simple,
    'smith_le': {str(f): v for f, v in smith_le.items()},
    'smith_le_claim': claim,
    'figures': figures,
  }
  report = _report(config, table, breaks, b_simple, smith_le, claim, figures)
  _common.write_outputs(workdir, results, table, report)
  return results


def _smith_le_claim(config: GoyalConfig, smith_le) -> dict:
  """Whether the best batch grows with the LR, by about the LR's ratio."""
  factors = sorted(smith_le)
  best = [smith_le[f]['best_batch'] for f in factors]
  monotone = all(a <= b for a, b in zip(best, best[1:], strict=False))
  lr_ratio = factors[-1] / factors[0]
  batch_ratio = best[-1] / best[0]
  # The sweep's batches are a factor 2 apart: agreement within one step.
  proportional = (
    len(factors) > 1
    and abs(math.log2(batch_ratio) - math.log2(lr_ratio)) <= 1.0
  )
  edge = any(b in (config.batches[0], config.batches[-1]) for b in best)
  return {
    'claim': 'the best batch grows in proportion to the LR (Smith & Le)',
    'held': bool(monotone and proportional),
    'detail': (
      f'best batch {best} at LR x{[f"{f:g}" for f in factors]}; batch ratio '
      f'{batch_ratio:g} vs LR ratio {lr_ratio:g}'
      + (
        '; a best batch sits at the edge of the sweep, so the peak may lie '
        'outside it'
        if edge
        else ''
      )
    ),
  }


def _figures(config, curves, smith_le, b_simple, workdir) -> dict[str, str]:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  batches = np.asarray(config.batches)
  fig, ax = plt.subplots(figsize=(6, 4))
  for variant, means in curves.items():
    ax.plot(batches, 100 * np.asarray(means), marker='o', label=variant)
  ax.axvline(
    b_simple, color='grey', ls='--', label=f'B_simple = {b_simple:.3g}'
  )
  ax.set_xscale('log', base=2)
  ax.set_xlabel('batch size')
  ax.set_ylabel('test accuracy (%)')
  ax.set_title('Test accuracy against batch size, by LR rule')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'goyal.png'), dpi=120)
  fig, ax = plt.subplots(figsize=(6, 4))
  for f, v in sorted(smith_le.items()):
    ax.plot(
      batches,
      100 * np.asarray(v['means']),
      marker='o',
      label=f'LR x{f:g} (best {v["best_batch"]})',
    )
  ax.axvline(
    b_simple, color='grey', ls='--', label=f'B_simple = {b_simple:.3g}'
  )
  ax.set_xscale('log', base=2)
  ax.set_xlabel('batch size')
  ax.set_ylabel('test accuracy (%)')
  ax.set_title('Constant LR: the best batch against the LR (Smith & Le)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'smith_le.png'), dpi=120)
  plt.close('all')
  return {
    'goyal.png': 'Test accuracy against batch size, by LR rule',
    'smith_le.png': 'Unscaled LR sweeps at several LRs: where each peaks',
  }


def _report(config, table, breaks, b_simple, smith_le, claim, figures) -> str:
  c = config.common
  lines = [
    "# Goyal et al.'s batch sweep",
    '',
    f'{c.dataset}, model {c.model}, {c.optimizer} (momentum {c.momentum:g}, '
    f'weight decay {c.weight_decay:g}), {c.epochs:g} epochs, cosine to 0; '
    f'base LR {c.lr:g} at batch {config.base_batch}; seeds '
    f'{list(c.seeds)}.',
    '',
    table,
    f'Measured noise scale at batch {config.base_batch}, LR {c.lr:g}: '
    f'B_simple = {b_simple:.4g}.',
    '',
    '## Where each rule breaks down',
    '',
    f'(mean test accuracy more than {100 * config.tolerance:g} points below '
    f'batch {config.batches[0]})',
    '',
  ]
  for v, b in breaks.items():
    lines.append(
      f'- {v}: '
      + (f'breaks down at batch {b}' if b else 'holds over the whole sweep')
      + (f' ({b / b_simple:.2g} x B_simple)' if b else '')
    )
  lines += ['', "## Smith & Le's optimal batch", '']
  for f, v in sorted(smith_le.items()):
    lines.append(f'- LR {c.lr * f:g}: best batch {v["best_batch"]}')
  lines += ['', *_common.claim_lines([claim])]
  lines += _common.figure_lines(figures)
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  done = _common.run_main(argv, 'goyal', get_config, run, check)
  if done is None:
    return
  _common.print_report_path(done[1])


if __name__ == '__main__':
  app.run(main)
