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

With `--goyal_task=lm` the model is experiments.lm's byte-level
transformer (its flags: `--corpus`, `--seq_len`, `--lm_*`, AdamW's
`--b2`, the budget `--train_tokens`): every run is experiments.lm's
`cosine` run (warmup over `--warmup_tokens`, cosine to
`--final_lr_fraction` of the peak) at its batch in sequences and its
rule's peak LR, on the same tokens. Since every LM run already warms up,
the `warmup` rule is the linear rule with the longer warmup
`--goyal_warmup_tokens` (Goyal et al.'s remedy at large batches). The
metric is the validation loss in nats (bits per byte beside it), lower
is better: a rule breaks down where its mean loss rises more than
`--goyal_tolerance` nats above the base batch's, and Smith & Le's best
batch is the one of lowest loss. For Adam-type optimizers the question is
whether the square-root rule (Malladi et al. 2022) or the linear one
holds.

  python -m experiments.goyal --flagfile=experiments/flagfiles/goyal_digits.cfg
  python -m experiments.goyal --flagfile=experiments/flagfiles/goyal_lm.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags

from experiments import _common, _lm_common, _runs
from experiments import lm as lm_exp

VARIANTS = ('none', 'linear', 'warmup', 'sqrt')

TASK = flags.DEFINE_enum(
  'goyal_task',
  'image',
  ['image', 'lm'],
  "What is swept: 'image' (--dataset, --model, the budget --epochs, test "
  "accuracy) or 'lm' (experiments.lm's transformer on --corpus, the budget "
  '--train_tokens, batches in sequences, validation loss).',
)
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
WARMUP_TOKENS = _lm_common.register_token_flag(
  'goyal_warmup_tokens',
  '32Ki',
  "With --goyal_task=lm: the warmup rule's warmup (the others warm up over "
  '--warmup_tokens).',
)
TOLERANCE = flags.DEFINE_float(
  'goyal_tolerance',
  0.02,
  'A variant breaks down at the first batch whose mean metric is more than '
  'this worse than the first batch: a fraction of test accuracy for images '
  '(0.02 = 2 points below), nats of validation loss with --goyal_task=lm '
  '(0.05 = 0.05 nats above).',
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
  """The sweep: common settings, batches, LR rules, Smith & Le's LRs.

  ``lm`` is None for an image task (``common`` holds it); for the language
  model it is experiments.lm's config (its ``common`` holds the model, the
  data, AdamW, ``lr`` and the seeds; ``common`` here is then unused), the
  batches are in sequences and ``warmup_tokens`` is the warmup rule's
  warmup (``warmup_epochs`` is the image tasks').
  """

  common: _common.CommonConfig = _common.CommonConfig()
  lm: Any = None
  batches: tuple[int, ...] = (32, 64, 128, 256, 512)
  variants: tuple[str, ...] = VARIANTS
  base_batch: int = 32
  warmup_epochs: float = 1.0
  warmup_tokens: int = 32 * 1024
  tolerance: float = 0.02
  lr_factors: tuple[float, ...] = (0.25, 1.0, 4.0)

  @property
  def lr(self) -> float:
    """The base LR, at ``base_batch``."""
    return (self.common if self.lm is None else self.lm.common).lr

  @property
  def seeds(self) -> tuple[int, ...]:
    return (self.common if self.lm is None else self.lm.common).seeds

  @property
  def metric(self) -> _runs.Metric:
    """What decides: test accuracy, or the LM's validation loss."""
    return _runs.ACCURACY if self.lm is None else _runs.VAL_LOSS

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
    if self.lm is not None:
      for trial in _lm_trials(self).values():
        _validate_lm_trial(trial)
    elif self.warmup_epochs >= self.common.epochs:
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
  lm_config, common = None, _common.CommonConfig()
  if TASK.value == 'lm':
    _lm_common.refuse_flags(
      'goyal --goyal_task=lm',
      {
        'epochs': '--train_tokens (the budget in tokens)',
        'eval_every': '--eval_every_tokens',
        'batch_size': '--goyal_base_batch and --goyal_batches (sequences)',
        'goyal_warmup_epochs': '--goyal_warmup_tokens',
      },
    )
    # Every run is experiments.lm's cosine run at a constant batch.
    lm_config = lm_exp.baseline_config()
  else:
    # A workdir's flags.cfg lists every flag: only another value is refused.
    warmup_tokens = flags.FLAGS['goyal_warmup_tokens']
    if warmup_tokens.present and warmup_tokens.value != warmup_tokens.default:
      raise app.UsageError(
        '--goyal_warmup_tokens is for --goyal_task=lm; an image sweep warms '
        'up over --goyal_warmup_epochs'
      )
    common = _common.common_config()
  return GoyalConfig(
    common=common,
    lm=lm_config,
    batches=batches,
    variants=tuple(GOYAL_VARIANTS.value),
    base_batch=BASE_BATCH.value,
    warmup_epochs=WARMUP_EPOCHS.value,
    warmup_tokens=_lm_common.parse_tokens(
      WARMUP_TOKENS.value, 'goyal_warmup_tokens'
    ),
    tolerance=TOLERANCE.value,
    lr_factors=factors,
  )


def peak_lr(variant: str, batch: int, base_lr: float, base_batch: int) -> float:
  r"""The peak LR of a rule at a batch (6 significant digits).

  .. math:: \eta = \eta_0 \text{ (none)}, \quad \eta_0 B / B_0
    \text{ (linear, warmup)}, \quad \eta_0 \sqrt{B / B_0} \text{ (sqrt)}

  Examples:
    >>> peak_lr('linear', 64, 1e-3, 8), peak_lr('sqrt', 32, 1e-3, 8)
    (0.008, 0.002)
  """
  from lrjax import rules

  if variant == 'none':
    peak = base_lr
  elif variant == 'sqrt':
    peak = rules.sqrt_scaling(batch, base_lr, base_batch)
  else:
    peak = rules.linear_scaling(batch, base_lr, base_batch)
  return float(f'{peak:.6g}')


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
  from lrjax import schedules

  peak = peak_lr(variant, batch, base_lr, base_batch)
  if variant != 'warmup' or warmup_epochs == 0 or peak <= base_lr:
    return str(schedules.cosine(peak, length=epochs))
  inner = schedules.cosine(peak, length=epochs - warmup_epochs)
  start = float(f'{base_lr / peak:.6g}')
  return str(schedules.warmup(inner, length=warmup_epochs, start=start))


def breakdown(
  batches: Sequence[int],
  values: Sequence[float],
  tolerance: float,
  metric: _runs.Metric = _runs.ACCURACY,
) -> int | None:
  """The first batch whose metric is more than `tolerance` worse than the
  first batch's (None: no breakdown).

  Args:
    batches: the sweep's batches, increasing.
    values: the metric at each batch (its mean over seeds).
    tolerance: in the metric's unit (a fraction of accuracy, nats of loss).
    metric: whether higher (accuracy) or lower (a loss) is better; a NaN
      value (a diverged run) is a breakdown.

  Returns:
    The batch, or None.

  Examples:
    >>> breakdown([32, 64, 128], [0.95, 0.94, 0.90], 0.02)
    128
    >>> print(breakdown([32, 64], [0.95, 0.94], 0.02))
    None
    >>> breakdown([8, 16, 32], [2.0, 2.04, 2.2], 0.05, _runs.VAL_LOSS)
    32
  """
  for b, v in zip(batches, values, strict=True):
    if metric.worse(v, values[0], tolerance):
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
      runs[(variant, f, b, seed)] = train_run(
        name, seed, cfg, run_dir, _common.make_task(c, seed)
      )
  return groups, runs


def _cosine(lr: float, epochs: float):
  from lrjax import schedules

  return schedules.cosine(lr, length=epochs)


def _lm_trials(config: GoyalConfig) -> dict[tuple[str, float, int], Any]:
  """experiments.lm's config of every LM run, by (rule, LR factor, batch).

  Each is the base config at its batch (sequences) and peak LR; the
  `warmup` rule also warms up over `warmup_tokens` where its peak is above
  the base LR (at the base batch it is the linear run). Smith & Le's
  sweeps are the `none` rule at ``lr_factors`` times the base LR.
  """
  lc = config.lm
  c = lc.common

  def trial(lr: float, batch: int, warmup_tokens: int):
    return dataclasses.replace(
      lc,
      common=dataclasses.replace(c, lr=lr, batch_size=batch),
      warmup_tokens=warmup_tokens,
    )

  trials = {}
  for variant in config.variants:
    for b in config.batches:
      peak = peak_lr(variant, b, c.lr, config.base_batch)
      longer = variant == 'warmup' and peak > c.lr
      warm = config.warmup_tokens if longer else lc.warmup_tokens
      trials[(variant, 1.0, b)] = trial(peak, b, warm)
  for f in config.lr_factors:
    for b in config.batches:
      trials.setdefault(
        ('none', f, b), trial(float(f'{c.lr * f:.6g}'), b, lc.warmup_tokens)
      )
  return trials


def _validate_lm_trial(trial: Any) -> None:
  """Raises ValueError naming the run and the flags to change."""
  try:
    trial.validate()
  except ValueError as e:
    raise ValueError(
      f'the run at batch {trial.common.batch_size} sequences, LR '
      f'{trial.common.lr:g}: {e}; change --goyal_batches, '
      '--goyal_warmup_tokens, --warmup_tokens or --train_tokens'
    ) from None


def _lm_runs(config: GoyalConfig, workdir: str, overwrite: bool):
  """Trains the LM sweep. Runs of the same LR policy and batch (e.g. every
  rule at the base batch) are trained once and shared."""
  lc = config.lm
  c = lc.common
  train, evaluate = _lm_common.train_and_evaluation(c)
  n = train.num_examples
  groups, runs, trained = {}, {}, {}
  for (variant, f, b), trial in _lm_trials(config).items():
    plan = lm_exp.build_plans(trial, n)[lm_exp.BASELINE]
    groups[(variant, f, b)] = lm_exp.lr_text(trial, lm_exp.BASELINE)
    name = f'{variant}_lr{f:g}_b{b}'
    for seed in c.seeds:
      same = (str(plan.lr), b, seed)
      if same not in trained:
        task = _lm_common.make_task(c, train, evaluate, seed, name=f'lm {name}')
        trained[same] = _runs.train_run(
          name,
          seed,
          lm_exp.train_config(trial, plan, seed, n),
          os.path.join(workdir, 'runs', name, f'seed{seed}'),
          task,
          overwrite=overwrite,
        )
      runs[(variant, f, b, seed)] = trained[same]
  probe_task = _lm_common.make_task(
    c, train, evaluate, c.seeds[0], name='lm noise probe'
  )
  return groups, runs, _measure_b_simple(config, workdir, probe_task)


def _measure_b_simple(config: GoyalConfig, workdir: str, task=None) -> float:
  """B_simple at the base batch and LR (sequences for the LM), cached in
  b_simple.json: 50 updates of `lrjax.recipe.probe_noise`."""
  import json

  from lrjax import recipe

  path = os.path.join(workdir, 'b_simple.json')
  if os.path.exists(path):
    with open(path) as fh:
      return float(json.load(fh)['b_simple'])
  if config.lm is None:
    c = config.common
    task = _common.make_task(c, c.seeds[0])
    adam = {}
  else:
    c = config.lm.common
    adam = {'b2': c.b2}
  slices = 4 if config.base_batch % 4 == 0 else 2
  probe = recipe.probe_noise(
    task,
    lr=c.lr,
    batch_size=config.base_batch,
    num_slices=slices,
    num_updates=50,
    optimizer=c.optimizer,
    momentum=c.momentum,
    weight_decay=c.weight_decay,
    seed=c.seeds[0],
    **adam,
  )
  _common.write_json(path, {'b_simple': probe.b_simple})
  return probe.b_simple


def check(config: GoyalConfig) -> None:
  """Checks the settings, the devices, the data and every run's trainer
  config before anything trains or is written (so `--dry_run` checks the
  whole sweep; for the LM every run's experiments.lm config, without
  reading the corpus).

  Raises:
    ValueError: naming the flag and the fix.
    FileNotFoundError: for a dataset that is not prepared.
  """
  config.validate()
  if config.lm is not None:
    return
  n = _common.check_common(config.common)
  _common.check_batch('--goyal_batches', config.batches[-1], n)
  _common.check_batch('--goyal_base_batch', config.base_batch, n)
  configs = []
  _runs_of(
    config, '', lambda name, seed, cfg, run_dir, task: configs.append(cfg)
  )
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


def _image_runs(config: GoyalConfig, workdir: str, overwrite: bool):
  train_run = functools.partial(_runs.train_run, overwrite=overwrite)
  groups, runs = _runs_of(config, workdir, train_run)
  return groups, runs, _measure_b_simple(config, workdir)


def _run(config: GoyalConfig, workdir: str, overwrite: bool):
  if config.lm is None:
    groups, runs, b_simple = _image_runs(config, workdir, overwrite)
    shown, seq_len = (config.metric,), None
  else:
    groups, runs, b_simple = _lm_runs(config, workdir, overwrite)
    shown, seq_len = (_runs.VAL_LOSS, _runs.VAL_BPB), config.lm.common.seq_len
  metric = config.metric
  seeds = config.seeds

  def values(m, variant, f, b):
    return [m.of(runs[(variant, f, b, s)]) for s in seeds]

  rows, lines = [], []
  curves = {}
  for variant in config.variants:
    means = []
    for b in config.batches:
      row = {'variant': variant, 'batch': b, 'lr': groups[(variant, 1.0, b)]}
      cells = [variant, b] + ([b * seq_len] if seq_len else [])
      cells.append(f'`{groups[(variant, 1.0, b)]}`')
      for m in shown:
        v = values(m, variant, 1.0, b)
        row[f'{m.name}_mean'], row[f'{m.name}_std'] = _common.mean_std(v)
        cells.append(_common.fmt_mean_std(v, m.scale, m.digits))
      means.append(row[f'{metric.name}_mean'])
      row['updates'] = runs[(variant, 1.0, b, seeds[0])].summary['num_updates']
      cells.append(row['updates'])
      rows.append(row)
      lines.append(cells)
    curves[variant] = means
  header = ['rule', 'batch' if seq_len is None else 'batch (sequences)']
  header += [] if seq_len is None else ['batch tokens']
  table = _common.markdown_table(
    [*header, 'LR policy', *(m.label for m in shown), 'updates'], lines
  )
  breaks = {
    v: breakdown(config.batches, curves[v], config.tolerance, metric)
    for v in config.variants
  }
  smith_le = {}
  for f in config.lr_factors:
    means = [
      _common.mean_std(values(metric, 'none', f, b))[0] for b in config.batches
    ]
    smith_le[f] = {
      'means': means,
      'best_batch': int(config.batches[metric.best(means)]),
    }
  claim = _smith_le_claim(config, smith_le)
  figures = _figures(config, curves, smith_le, b_simple, workdir)
  results = {
    'experiment': 'goyal',
    'task': 'image' if config.lm is None else 'lm',
    'metric': metric.name,
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

  metric = config.metric
  if config.lm is None:
    ylabel, what, unit = 'test accuracy (%)', 'Test accuracy', ''
  else:
    ylabel, what, unit = 'validation loss (nats)', 'Validation loss', ' seq'
  batches = np.asarray(config.batches)
  fig, ax = plt.subplots(figsize=(6, 4))
  for variant, means in curves.items():
    ax.plot(
      batches, metric.scale * np.asarray(means), marker='o', label=variant
    )
  ax.axvline(
    b_simple, color='grey', ls='--', label=f'B_simple = {b_simple:.3g}{unit}'
  )
  ax.set_xscale('log', base=2)
  ax.set_xlabel('batch size' + (' (sequences)' if unit else ''))
  ax.set_ylabel(ylabel)
  ax.set_title(f'{what} against batch size, by LR rule')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'goyal.png'), dpi=120)
  fig, ax = plt.subplots(figsize=(6, 4))
  for f, v in sorted(smith_le.items()):
    ax.plot(
      batches,
      metric.scale * np.asarray(v['means']),
      marker='o',
      label=f'LR x{f:g} (best {v["best_batch"]})',
    )
  ax.axvline(
    b_simple, color='grey', ls='--', label=f'B_simple = {b_simple:.3g}{unit}'
  )
  ax.set_xscale('log', base=2)
  ax.set_xlabel('batch size' + (' (sequences)' if unit else ''))
  ax.set_ylabel(ylabel)
  ax.set_title('Constant LR: the best batch against the LR (Smith & Le)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'smith_le.png'), dpi=120)
  plt.close('all')
  return {
    'goyal.png': f'{what} against batch size, by LR rule',
    'smith_le.png': 'Unscaled LR sweeps at several LRs: where each peaks',
  }


def _report(config, table, breaks, b_simple, smith_le, claim, figures) -> str:
  base = config.batches[0]
  if config.lm is None:
    c = config.common
    setting = (
      f'{c.dataset}, model {c.model}, {c.optimizer} (momentum '
      f'{c.momentum:g}, weight decay {c.weight_decay:g}), {c.epochs:g} '
      f'epochs, cosine to 0; base LR {c.lr:g} at batch {config.base_batch}; '
      f'seeds {list(c.seeds)}.'
    )
    noise = f'B_simple = {b_simple:.4g}'
    rule = (
      f'(mean test accuracy more than {100 * config.tolerance:g} points '
      f'below batch {base})'
    )
    unit = ''
  else:
    lc = config.lm
    c = lc.common
    t = c.seq_len
    setting = (
      f'{c.corpus}, sequences of {t} bytes, transformer {c.layers} layers x '
      f'width {c.width}, {c.optimizer} (beta1 {c.momentum:g}, beta2 '
      f'{c.b2:g}, weight decay {c.weight_decay:g}), every run '
      f'{lc.train_tokens:,} tokens, warmup over {lc.warmup_tokens:,} tokens '
      f'(the warmup rule: {config.warmup_tokens:,}), cosine to '
      f'{lc.final_lr_fraction:g} of the peak; base LR {c.lr:g} at batch '
      f'{config.base_batch} sequences; seeds {list(c.seeds)}.'
    )
    noise = f'B_simple = {b_simple:.4g} sequences ({b_simple * t:.4g} tokens)'
    rule = (
      f'(mean validation loss more than {config.tolerance:g} nats above '
      f'batch {base})'
    )
    unit = ' sequences'
  lines = [
    "# Goyal et al.'s batch sweep",
    '',
    setting,
    '',
    table,
    f'Measured noise scale at batch {config.base_batch}, LR '
    f'{config.lr:g}: {noise}.',
    '',
    '## Where each rule breaks down',
    '',
    rule,
    '',
  ]
  for v, b in breaks.items():
    lines.append(
      f'- {v}: '
      + (
        f'breaks down at batch {b}{unit}' if b else 'holds over the whole sweep'
      )
      + (f' ({b / b_simple:.2g} x B_simple)' if b else '')
    )
  lines += ['', "## Smith & Le's optimal batch", '']
  for f, v in sorted(smith_le.items()):
    lines.append(f'- LR {config.lr * f:g}: best batch {v["best_batch"]}{unit}')
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
