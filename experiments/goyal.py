r"""Goyal et al.'s batch sweep and Smith & Le's optimal noise scale.

Trains one model on one budget at each of `--goyal_batches` under the LR
rules of `--goyal_variants`, each a cosine (after its warmup): where does
each rule break down, beside the noise scale B_simple measured at the base
batch? And, with the unscaled rule at several LRs (Smith & Le 2017), does
the best batch grow with the LR? `--goyal_task=lm` sweeps experiments.lm's
transformer (its `cosine` run; the metric is the validation loss).

  python -m experiments.goyal --flagfile=experiments/flagfiles/goyal_digits.cfg
  python -m experiments.goyal --flagfile=experiments/flagfiles/goyal_lm.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

from absl import app, flags

from experiments import _common, _lm_common
from experiments import lm as lm_exp
from lrjax import evidence, studies
from lrjax.studies import setting

VARIANTS = ('none', 'linear', 'warmup', 'sqrt')


@dataclasses.dataclass(frozen=True)
class GoyalConfig:
  """The sweep (each field but ``common`` and ``lm`` is its flag); ``lm``
  is experiments.lm's config for ``--goyal_task=lm`` (its ``common`` then
  replaces ``common``), else None."""

  common: _common.CommonConfig = _common.CommonConfig()
  lm: Any = None
  goyal_task: str = setting('image', choices=('image', 'lm'))
  """What is swept: 'image' (--dataset, --model, the budget --epochs, test
  accuracy) or 'lm' (experiments.lm's transformer on --corpus, the budget
  --train_tokens, batches in sequences, validation loss)."""
  goyal_batches: tuple[int, ...] = setting(
    (32, 64, 128, 256, 512), check=studies.increasing(0, math.inf, '32,64,128')
  )
  """Batch sizes of the sweep (increasing)."""
  goyal_variants: tuple[str, ...] = setting(
    VARIANTS,
    check=lambda v: (
      None
      if v and set(v) <= set(VARIANTS)
      else f'must be a non-empty subset of {",".join(VARIANTS)}'
    ),
  )
  """LR rules anchored at --lr for --goyal_base_batch: none (the base LR at
  every batch), linear (LR x B / B_0, Goyal et al. 2017), warmup (linear
  after a gradual warmup from the base LR over --goyal_warmup_epochs,
  Goyal's remedy; for the LM the longer warmup --goyal_warmup_tokens) or
  sqrt (LR x sqrt(B / B_0), Krizhevsky 2014)."""
  goyal_base_batch: int = setting(32, check=studies.at_least(1))
  """The batch at which --lr is the LR (B_0)."""
  goyal_warmup_epochs: float = setting(1.0, check=studies.at_least(0))
  """Gradual warmup of the warmup variant."""
  goyal_warmup_tokens: str = setting('32Ki', check=_lm_common.token_count)
  """With --goyal_task=lm: the warmup rule's warmup (the others warm up over
  --warmup_tokens)."""
  goyal_tolerance: float = setting(0.02, check=studies.at_least(0))
  """A variant breaks down at the first batch whose mean metric is more than
  this worse than the first batch: a fraction of test accuracy for images
  (0.02 = 2 points below), nats of validation loss with --goyal_task=lm
  (0.05 = 0.05 nats above)."""
  goyal_lr_factors: tuple[float, ...] = setting(
    (0.25, 1.0, 4.0), check=studies.positive()
  )
  """Smith & Le's sweep: the unscaled sweep at these multiples of --lr."""

  @property
  def task_common(self) -> Any:
    """The common settings of the task swept (the LM's, or ``common``)."""
    return self.common if self.lm is None else self.lm.common

  @property
  def metric(self) -> studies.Metric:
    """What decides: test accuracy, or the LM's validation loss."""
    return studies.ACCURACY if self.lm is None else studies.VAL_LOSS

  @property
  def warmup_tokens(self) -> int:
    """The LM's warmup rule's warmup, in tokens."""
    return _lm_common.parse_tokens(
      self.goyal_warmup_tokens, 'goyal_warmup_tokens'
    )

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    studies.check_settings(self)
    _lm_common.check_task('goyal_task', self.goyal_task, self.lm)
    for key in _keys(self) if self.lm is not None else ():
      _lm_run_config(self, *key)
    if self.lm is None and self.goyal_warmup_epochs >= self.common.epochs:
      raise ValueError(
        f'--goyal_warmup_epochs={self.goyal_warmup_epochs} must be below '
        f'--epochs={self.common.epochs}'
      )


studies.define_flags(GoyalConfig)


def get_config() -> GoyalConfig:
  """Builds the typed config from the parsed flags (Smith & Le's LR
  factors sorted); raises ValueError for an LM flag given another value
  in an image sweep, app.UsageError for an image flag with the LM."""
  if flags.FLAGS.goyal_task == 'lm':
    # Every run is experiments.lm's cosine run at a constant batch.
    config = _lm_common.read_cosine_study(
      GoyalConfig,
      'goyal --goyal_task=lm',
      {
        'batch_size': '--goyal_base_batch and --goyal_batches (sequences)',
        'goyal_warmup_epochs': '--goyal_warmup_tokens',
      },
    )
  else:
    # A workdir's flags.cfg lists every flag: only another value is refused.
    warmup_tokens = flags.FLAGS['goyal_warmup_tokens']
    if warmup_tokens.present and warmup_tokens.value != warmup_tokens.default:
      raise ValueError(
        '--goyal_warmup_tokens is for --goyal_task=lm; an image sweep warms '
        'up over --goyal_warmup_epochs'
      )
    config = studies.read_flags(GoyalConfig, common=_common.common_config())
  return dataclasses.replace(
    config, goyal_lr_factors=tuple(sorted(config.goyal_lr_factors))
  )


def peak_lr(variant: str, batch: int, base_lr: float, base_batch: int) -> float:
  """A rule's peak LR at a batch (`lrjax.rules.scaled_lr`; the warmup rule
  scales linearly), to 6 significant digits."""
  from lrjax import rules

  rule = 'linear' if variant == 'warmup' else variant
  return float(f'{rules.scaled_lr(rule, batch, base_lr, base_batch):.6g}')


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


def _keys(config: GoyalConfig) -> list[tuple[str, float, int]]:
  """(rule, LR factor, batch) of every run: the rules at the base LR, then
  Smith & Le's sweeps, the `none` rule at ``goyal_lr_factors`` times it."""
  sweeps = [(v, 1.0) for v in config.goyal_variants]
  sweeps += [('none', f) for f in config.goyal_lr_factors]
  return list(
    dict.fromkeys((v, f, b) for v, f in sweeps for b in config.goyal_batches)
  )


def _lm_run_config(
  config: GoyalConfig, variant: str, factor: float, batch: int
):
  """experiments.lm's config of one run at its batch and peak LR, validated;
  the warmup rule warms up longer where its peak is above the base LR."""
  lc = config.lm
  peak = peak_lr(variant, batch, lc.common.lr * factor, config.goyal_base_batch)
  longer = variant == 'warmup' and peak > lc.common.lr
  return _lm_common.cosine_run(
    lc,
    peak,
    batch,
    f'the run at batch {batch} sequences, LR {peak:g}',
    'change --goyal_batches, --goyal_warmup_tokens, --warmup_tokens or '
    '--train_tokens',
    warmup_tokens=config.warmup_tokens if longer else lc.warmup_tokens,
  )


class Goyal(studies.Study):
  """Every rule at every batch, and Smith & Le's unscaled sweeps (the LM's
  runs of the same LR policy and batch are one trial, trained once)."""

  name = 'goyal'

  def check(self) -> None:
    """The settings; for an image task also the data and every trainer
    config (the LM's run configs are checked without reading the corpus)."""
    config = self.config
    config.validate()
    if config.lm is not None:
      return
    n = _common.check_common(config.common)
    _common.check_batch('--goyal_batches', config.goyal_batches[-1], n)
    _common.check_batch('--goyal_base_batch', config.goyal_base_batch, n)
    studies.check_trials(self.trials(), n)

  def trials(self) -> list[studies.Trial]:
    """The distinct runs; `policies` and `trial_of` then hold each key's
    LR policy text and the name of the trial it reads."""
    self.policies, self.trial_of, trials = {}, {}, {}
    for key in _keys(self.config):
      name = '{}_lr{:g}_b{}'.format(*key)
      self.policies[key], same, config = self._run(*key)
      c = self.config.task_common
      task = functools.partial(_lm_common.study_task, c, name=name)
      trial = studies.Trial(name, c.seeds, config, task)
      self.trial_of[key] = trials.setdefault(same or name, trial).name
    return list(trials.values())

  def _run(self, variant: str, factor: float, batch: int):
    """One run's LR policy text, what makes it the same run as another
    (None: its name), and its trainer config by seed."""
    config, c = self.config, self.config.task_common
    if config.lm is None:
      b0, warm = config.goyal_base_batch, config.goyal_warmup_epochs
      lr = lr_policy(variant, batch, c.lr * factor, b0, c.epochs, warm)

      def train_config(seed: int) -> Any:
        return _common.train_config(c, batch=batch, lr=lr, seed=seed)

      return lr, None, train_config
    run = _lm_run_config(config, variant, factor, batch)
    n = _lm_common.train_and_evaluation(c)[0].num_examples
    plan = lm_exp.build_plans(run, n)[lm_exp.BASELINE]
    by_seed = functools.partial(lm_exp.train_config, run, plan, num_examples=n)
    return lm_exp.lr_text(run, lm_exp.BASELINE), (str(plan.lr), batch), by_seed

  def _b_simple(self, workdir: str) -> float:
    """B_simple at the base batch and LR: 50 updates of
    `lrjax.recipe.probe_noise`, cached in b_simple.json."""
    from lrjax import recipe

    path = os.path.join(workdir, 'b_simple.json')
    saved = studies.read_json(path)
    if saved is not None:
      return float(saved['b_simple'])
    c, b0 = self.config.task_common, self.config.goyal_base_batch
    probe = recipe.probe_noise(
      _lm_common.study_task(c, c.seeds[0], 'noise probe'),
      lr=c.lr,
      batch_size=b0,
      num_slices=4 if b0 % 4 == 0 else 2,
      num_updates=50,
      seed=c.seeds[0],
      **{k: getattr(c, k) for k in ('optimizer', 'momentum', 'weight_decay')},
      **({} if self.config.lm is None else {'b2': c.b2}),
    )
    studies.write_json(path, {'b_simple': probe.b_simple})
    return probe.b_simple

  def analyze(
    self, runs: dict[str, list[studies.Run]], workdir: str
  ) -> studies.Report:
    from lrjax import rules

    config, metric = self.config, self.config.metric
    batches = config.goyal_batches
    t = None if config.lm is None else config.lm.common.seq_len
    shown = (metric,) if t is None else (studies.VAL_LOSS, studies.VAL_BPB)

    def values(m: studies.Metric, key) -> list[float]:
      return [m.of(run) for run in runs[self.trial_of[key]]]

    rows, lines = [], []
    for variant in config.goyal_variants:
      for b in batches:
        key = (variant, 1.0, b)
        row = {'variant': variant, 'batch': b, 'lr': self.policies[key]}
        cells = [variant, b, *([b * t] if t else []), f'`{row["lr"]}`']
        for m in shown:
          v = values(m, key)
          row[f'{m.name}_mean'], row[f'{m.name}_std'] = evidence.mean_std(v)
          cells.append(_common.fmt_mean_std(v, m.scale, m.digits))
        row['updates'] = runs[self.trial_of[key]][0].summary['num_updates']
        rows.append(row)
        lines.append([*cells, row['updates']])
    header = ['batch'] if t is None else ['batch (sequences)', 'batch tokens']
    header = ['rule', *header, 'LR policy', *(m.label for m in shown)]
    table = studies.markdown_table([*header, 'updates'], lines)
    curves = {
      v: [r[f'{metric.name}_mean'] for r in rows if r['variant'] == v]
      for v in config.goyal_variants
    }
    breaks = {
      v: rules.breakdown_batch(
        batches,
        curve,
        config.goyal_tolerance,
        higher_is_better=metric.higher_is_better,
      )
      for v, curve in curves.items()
    }
    smith_le = {}
    for f in config.goyal_lr_factors:
      m = [
        evidence.mean_std(values(metric, ('none', f, b)))[0] for b in batches
      ]
      smith_le[f] = {'means': m, 'best_batch': int(batches[metric.best(m)])}
    claim = _smith_le_claim(config, smith_le)
    b_simple = self._b_simple(workdir)
    figures = _figures(config, curves, smith_le, b_simple, workdir)
    results = {
      'experiment': 'goyal',
      'task': config.goyal_task,
      'metric': metric.name,
      'rows': rows,
      'breakdown_batch': breaks,
      'b_simple': b_simple,
      'smith_le': {str(f): v for f, v in smith_le.items()},
      'smith_le_claim': claim,
      'figures': figures,
    }
    report = _report(config, table, breaks, b_simple, smith_le, claim, figures)
    return studies.Report(results, table, report)


check, run, main = _common.entry_points(Goyal, get_config)


def _smith_le_claim(config: GoyalConfig, smith_le) -> dict:
  """Whether the best batch grows with the LR, by about the LR's ratio."""
  factors = sorted(smith_le)
  best = [smith_le[f]['best_batch'] for f in factors]
  lr_ratio, batch_ratio = factors[-1] / factors[0], best[-1] / best[0]
  # The sweep's batches are a factor 2 apart: agreement within one step.
  near = abs(math.log2(batch_ratio) - math.log2(lr_ratio)) <= 1.0
  detail = (
    f'best batch {best} at LR x{[f"{f:g}" for f in factors]}; batch ratio '
    f'{batch_ratio:g} vs LR ratio {lr_ratio:g}'
  )
  if {config.goyal_batches[0], config.goyal_batches[-1]} & set(best):
    detail += (
      '; a best batch sits at the edge of the sweep, so the peak may lie '
      'outside it'
    )
  return {
    'claim': 'the best batch grows in proportion to the LR (Smith & Le)',
    'held': bool(best == sorted(best) and len(factors) > 1 and near),
    'detail': detail,
  }


def _figures(config, curves, smith_le, b_simple, workdir) -> dict[str, str]:
  """The metric against the batch, by rule and by LR; B_simple dotted."""
  from lrjax import plots

  lm = config.lm is not None
  what = 'Validation loss' if lm else 'Test accuracy'
  by_rule = f'{what} against batch size, by LR rule'
  by_lr = {
    f'LR x{f:g} (best {v["best_batch"]})': v['means']
    for f, v in sorted(smith_le.items())
  }
  figures = {  # path: (title, curves, caption)
    'goyal.png': (by_rule, curves, by_rule),
    'smith_le.png': (
      'Constant LR: the best batch against the LR (Smith & Le)',
      by_lr,
      'Unscaled LR sweeps at several LRs: where each peaks',
    ),
  }
  for path, (title, ys, _) in figures.items():
    plots.plot_lines(
      config.goyal_batches,
      {k: [config.metric.scale * m for m in v] for k, v in ys.items()},
      xlabel='batch size' + (' (sequences)' if lm else ''),
      ylabel='validation loss (nats)' if lm else 'test accuracy (%)',
      title=title,
      logx=2,
      xticks=config.goyal_batches,
      vlines={f'B_simple = {b_simple:.3g}{" seq" if lm else ""}': b_simple},
      path=os.path.join(workdir, path),
    )
  return {path: caption for path, (_, _, caption) in figures.items()}


def _report(config, table, breaks, b_simple, smith_le, claim, figures) -> str:
  c, lc = config.task_common, config.lm
  if lc is None:
    unit, noise = '', ''
    budget = f'{c.epochs:g} epochs, cosine to 0'
    tol = 100 * config.goyal_tolerance
    rule = f'test accuracy more than {tol:g} points below'
  else:
    unit = ' sequences'
    noise = f' sequences ({b_simple * c.seq_len:.4g} tokens)'
    budget = (
      f'every run {lc.train_tokens:,} tokens, warmup over '
      f'{lc.warmup_tokens:,} tokens (the warmup rule: '
      f'{config.warmup_tokens:,}), cosine to {lc.final_lr_fraction:g} of the '
      'peak'
    )
    rule = f'validation loss more than {config.goyal_tolerance:g} nats above'
  breaks_md = (
    f'- {v}: breaks down at batch {b}{unit} ({b / b_simple:.2g} x B_simple)'
    if b
    else f'- {v}: holds over the whole sweep'
    for v, b in breaks.items()
  )
  best = (
    f'- LR {c.lr * f:g}: best batch {v["best_batch"]}{unit}'
    for f, v in sorted(smith_le.items())
  )
  return _common.render(
    'goyal',
    trained=_common.trained_text(c),
    budget=budget,
    c=c,
    config=config,
    unit=unit,
    seeds=list(c.seeds),
    table=table,
    b_simple=b_simple,
    noise=noise,
    rule=rule,
    breaks='\n'.join(breaks_md),
    best='\n'.join(best),
    claims='\n'.join(evidence.claim_lines([claim])),
    figures='\n'.join(_common.figure_lines(figures)).strip(),
  )


if __name__ == '__main__':
  app.run(main)
