r"""Pretraining a small language model: LR policies and batch schedules.

Trains `lrjax.lm.Transformer` (nanoGPT's CPU size by default) on byte-level
text (`--corpus`) through the ordinary trainer, every run on the same
`--train_tokens`, and compares

- LR policies at a constant batch: warmup and cosine to
  `--final_lr_fraction` (`cosine`, GPT-3, the baseline), warmup-stable-decay
  with a 1-sqrt cooldown over the last `--cooldown_fraction` (`wsd`,
  Hägele et al. 2024), the same with a linear cooldown
  (`constant_cooldown`) and the step decay Smith's schedule replaces
  (`step`);
- batch schedules with the cosine LR: constant, a GPT-3-style ramp in
  tokens (`ramp`), Smith et al.'s increase-instead-of-decay
  (`lrjax.batch.from_lr_decay`: `increase`), the batch that follows the
  measured B_simple (`adaptive`, McCandlish et al. 2018) and Seesaw
  (`lrjax.batch.seesaw`, Meterez et al. 2025).

Batch sizes are in sequences of `--seq_len` tokens; budgets, ramps and
B_simple are also stated in tokens. The report gives the final validation
loss and bits per byte next to unigram and bigram models, updates, tokens,
wall time, figures, and verdicts where the seeds support them. Common flags
left out take `experiments._lm_common.LM_DEFAULTS`.

  python -m experiments.lm --flagfile=experiments/flagfiles/lm_cpu.cfg
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app

from experiments import _common, _flags, _lm_common, _runs, _study
from experiments._flags import setting
from experiments._lm_common import token_setting

LR_POLICIES = ('cosine', 'wsd', 'constant_cooldown', 'step')
BATCH_SCHEDULES = ('constant', 'ramp', 'increase', 'adaptive', 'seesaw')
BASELINE = 'cosine'


def _subset(names: Sequence[str]) -> _flags.Check:
  return lambda v: (
    None
    if v and all(x in names for x in v)
    else f'must be a non-empty subset of {",".join(names)}'
  )


@dataclasses.dataclass(frozen=True)
class LmConfig:
  """The pretraining experiment: model and data, budget, what is compared
  (each field is its flag).

  Token fields hold counts: a flag's text (``'64Ki'``) is parsed when the
  config is made; ``ramp_start_tokens`` None means the base batch, the
  adaptive and seesaw caps None mean ``ramp_stop_tokens``.
  """

  common: _lm_common.LmCommon = _lm_common.LmCommon()
  train_tokens: str | int = token_setting(
    '128Ki', 'Tokens every run trains on (the equal budget).'
  )
  eval_every_tokens: str | int = token_setting(
    '16Ki', 'Evaluate every this many training tokens.'
  )
  warmup_tokens: str | int = token_setting(
    '8Ki', 'Linear LR warmup of every policy, in tokens.'
  )
  lr_policies: tuple[str, ...] = setting(
    ('cosine', 'wsd', 'constant_cooldown'),
    f'LR policies compared at a constant batch, from {", ".join(LR_POLICIES)}'
    '; cosine is the baseline and always runs.',
    check=_subset(LR_POLICIES),
  )
  batch_schedules: tuple[str, ...] = setting(
    BATCH_SCHEDULES,
    f'Batch schedules compared, from {", ".join(BATCH_SCHEDULES)}; constant '
    'is the cosine run.',
    check=_subset(BATCH_SCHEDULES),
  )
  final_lr_fraction: float = setting(
    0.1,
    'cosine decays to this fraction of the peak LR.',
    check=lambda v: None if 0 <= v <= 1 else 'must be in [0, 1]',
  )
  cooldown_fraction: float = setting(
    0.2,
    'wsd and constant_cooldown cool down to 0 over this last fraction of '
    'the budget.',
    check=lambda v: None if 0 < v <= 1 else 'must be in (0, 1]',
  )
  ramp_start_tokens: str | int | None = token_setting(
    None,
    'ramp: the first batch in tokens (empty: --batch_size sequences); also '
    'the increment of the linear ramp.',
    none_if_empty=True,
  )
  ramp_stop_tokens: str | int = token_setting(
    '3Ki', 'ramp: the final batch, in tokens.'
  )
  ramp_tokens: str | int = token_setting(
    '32Ki', 'ramp: tokens over which the batch grows.'
  )
  increase_milestones: tuple[float, ...] = setting(
    (0.5, 0.75),
    'step and increase: fractions of the budget at which the step decay '
    'divides the LR by --increase_factor (and increase multiplies the batch '
    'instead).',
    check=_flags.increasing(0, 1, '0.5,0.75'),
  )
  increase_factor: float = setting(
    2.0,
    'step and increase: the factor per milestone.',
    check=_flags.above(1),
  )
  adaptive_every_tokens: str | int = token_setting(
    '32Ki', 'adaptive: tokens between decisions on the batch.'
  )
  adaptive_max_tokens: str | int | None = token_setting(
    None,
    'adaptive: the largest batch, in tokens (empty: --ramp_stop_tokens).',
    none_if_empty=True,
  )
  adaptive_growth: float = setting(
    2.0,
    'adaptive: the largest factor by which one decision grows the batch.',
    check=_flags.at_least(1),
  )
  seesaw_factor: float = setting(
    2.0,
    'seesaw: the cosine is cut where it has fallen by this factor; there '
    'the batch grows by it and the LR falls by its square root.',
    check=_flags.above(1),
  )
  seesaw_max_tokens: str | int | None = token_setting(
    None,
    'seesaw: the largest batch, in tokens (empty: --ramp_stop_tokens); past '
    'it the LR falls by the whole factor per cut.',
    none_if_empty=True,
  )

  def __post_init__(self) -> None:
    _lm_common.parse_token_settings(self)

  @property
  def ramp_start(self) -> int:
    """The ramp's first batch, in tokens."""
    if self.ramp_start_tokens is None:
      return self.common.batch_size * self.common.seq_len
    return self.ramp_start_tokens

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    from lrjax import batch as lbatch

    c = self.common
    c.validate()
    _flags.check(self)
    t, base, runs = c.seq_len, c.batch_size * c.seq_len, self.batch_schedules
    counts = {
      name: getattr(self, name)
      for name in (
        'train_tokens',
        'eval_every_tokens',
        'warmup_tokens',
        'ramp_stop_tokens',
        'ramp_tokens',
        'adaptive_every_tokens',
      )
    }
    counts['ramp_start_tokens'] = self.ramp_start
    caps = {
      f'{name}_max_tokens': getattr(self, f'{name}_max_tokens')
      or self.ramp_stop_tokens
      for name in ('adaptive', 'seesaw')
      if name in runs
    }
    for name, tokens in {**counts, **caps}.items():
      lbatch.to_sequences(tokens, t, name)
    stable = self.train_tokens * (1 - self.cooldown_fraction)
    start, stop, ramp = self.ramp_start, self.ramp_stop_tokens, 'ramp' in runs
    adaptive, total = 'adaptive' in runs, self.train_tokens
    problems = [
      (
        total < base,
        f'--train_tokens={total} is less than one batch of '
        f'{c.batch_size} x {t} tokens',
      ),
      (
        self.warmup_tokens >= stable,
        f'--warmup_tokens={self.warmup_tokens} must end before the cooldown '
        f'starts ({stable:.0f} tokens): shorten it or --cooldown_fraction',
      ),
      (
        ramp and start > stop,
        f'--ramp_stop_tokens={stop} must be >= the ramp start {start}',
      ),
      (
        ramp and (stop - start) % start,
        f'--ramp_stop_tokens={stop} minus the start {start} must be a '
        'multiple of the start (the increment of the linear ramp)',
      ),
      (
        ramp and self.ramp_tokens > total,
        f'--ramp_tokens={self.ramp_tokens} must be <= --train_tokens={total}',
      ),
      (
        adaptive and not c.noise,
        'noise=False: the adaptive batch reads the measured noise scale; '
        'pass --noise or drop adaptive from --batch_schedules',
      ),
      (
        adaptive and self.adaptive_every_tokens > total,
        f'--adaptive_every_tokens={self.adaptive_every_tokens} must be <= '
        f'--train_tokens={total}',
      ),
    ] + [
      (cap < base, f'--{name}={cap} must be >= the base batch of {base} tokens')
      for name, cap in caps.items()
    ]
    for failed, message in problems:
      if failed:
        raise ValueError(message)


_flags.define(LmConfig)


def get_config() -> LmConfig:
  """Builds the typed config from the parsed flags (cosine always runs)."""
  _lm_common.refuse_flags(
    'lm',
    {
      'epochs': '--train_tokens (the budget in tokens)',
      'eval_every': '--eval_every_tokens',
    },
  )
  config = _flags.read(LmConfig, common=_lm_common.lm_common())
  policies = [BASELINE] + [p for p in config.lr_policies if p != BASELINE]
  return dataclasses.replace(config, lr_policies=tuple(policies))


def baseline_config() -> LmConfig:
  """The flags' config reduced to its cosine run at a constant batch.

  The hand-tuned run other experiments compare against or sweep (goyal,
  recipe): experiments.lm's `BASELINE` policy, no batch schedule.
  """
  return dataclasses.replace(
    get_config(), lr_policies=(BASELINE,), batch_schedules=('constant',)
  )


# ------------------------------------------------------------ plans


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one run trains with: its BatchSchedule (``adaptive``: the
  starting batch and its `lrjax.train.AdaptiveConfig`), its LR policy over
  epochs, and both as the report states them (tokens)."""

  batch: Any
  lr: Any
  batch_text: str
  lr_text: str = ''
  adaptive: Any = None

  @property
  def batch_sizes(self) -> tuple[int, ...]:
    if self.adaptive is not None:
      return self.adaptive.sizes(self.batch)
    return tuple(self.batch.batch_sizes)


def token_epochs(tokens: int, seq_len: int, num_examples: int) -> float:
  """A token count as epochs of ``num_examples`` sequences of ``seq_len``."""
  return float(fractions.Fraction(tokens, seq_len * num_examples))


def lr_policy(config: LmConfig, name: str, num_examples: int) -> Any:
  """The LR policy ``name`` over epochs, warmed up over `warmup_tokens`:
  ``cosine`` to `final_lr_fraction` of the peak over the budget after the
  warmup, ``wsd`` (1-sqrt) and ``constant_cooldown`` (linear) cooling down
  to 0 over the last `cooldown_fraction`, ``step`` divided by
  `increase_factor` at each milestone."""
  from lrjax import schedules as s

  c = config.common
  total = token_epochs(config.train_tokens, c.seq_len, num_examples)
  warm = token_epochs(config.warmup_tokens, c.seq_len, num_examples)
  end = _round12(config.final_lr_fraction * c.lr)
  wsd = functools.partial(
    s.wsd,
    c.lr,
    length=total,
    warmup=warm,
    end=0.0,
    cooldown=total * config.cooldown_fraction,
  )
  milestones = [m * total for m in config.increase_milestones]
  policies = {
    'cosine': lambda: s.warmup(
      s.cosine(c.lr, length=total - warm, end=end), length=warm
    ),
    'wsd': lambda: wsd(shape='sqrt'),
    'constant_cooldown': lambda: wsd(shape='linear'),
    'step': lambda: s.warmup(
      s.multistep(c.lr, milestones, gamma=1 / config.increase_factor),
      length=warm,
      shift=False,
    ),
  }
  if name not in policies:
    raise ValueError(f'{name=} is not one of {LR_POLICIES}')
  return policies[name]()


def _round12(x: float) -> float:
  return float(f'{x:.12g}')


def lr_text(config: LmConfig, name: str) -> str:
  """The LR policy ``name`` in words and tokens, for the report."""
  from lrjax import batch as lbatch

  lr, total = config.common.lr, config.train_tokens
  warm = (
    f'warmup over {lbatch.format_count(config.warmup_tokens)}tok from '
    f'{0.1 * lr:g} to {lr:g}'
  )
  cool = round(config.cooldown_fraction * total)
  cool = f'the last {config.cooldown_fraction:.0%} ({cool:,} tokens)'
  at = ' and '.join(f'{round(m * total):,}' for m in config.increase_milestones)
  return {
    'cosine': f'{warm}, cosine to '
    f'{_round12(config.final_lr_fraction * lr):g} at '
    f'{lbatch.format_count(total)}tok',
    'wsd': f'{warm}, constant, 1-sqrt cooldown to 0 over {cool}',
    'constant_cooldown': f'{warm}, constant, linear cooldown to 0 over {cool}',
    'step': f'{warm}, divided by {config.increase_factor:g} at {at} tokens',
    'increase': f'{warm}, then constant (the batch grows instead of the '
    'step decay)',
    'seesaw': f'{warm}, the cosine cut where it has fallen by '
    f'{config.seesaw_factor:g}: x 1/sqrt({config.seesaw_factor:g}) per cut '
    f'while the batch grows (x {config.seesaw_factor:g}), / '
    f'{config.seesaw_factor:g} per cut past the cap',
  }[name]


def batch_text(schedule: Any, seq_len: int) -> str:
  """A schedule's exact text in tokens; stages given in epochs (floats that
  do not read well) are stated in updates instead."""
  from lrjax import batch as lbatch

  if any(stage.epochs is not None for stage in schedule.stages):
    schedule = schedule.canonical()
  return lbatch.to_text(schedule, seq_len=seq_len)


def build_plans(config: LmConfig, num_examples: int) -> dict[str, Plan]:
  """The batch schedule and LR policy of every run, by name.

  Every plan trains on `train_tokens` tokens (the batch schedules end at
  the first update at or past the budget). Batch sizes are multiples of the
  devices, or on one device of the noise tracker's 4 slices (several
  devices compare per-device and all-reduced gradients and slice nothing),
  so that the noise scale can be measured.
  """
  from lrjax import batch as lbatch
  from lrjax import schedules
  from lrjax import train as lrtrain

  c, wanted = config.common, config.batch_schedules
  t, total, count = c.seq_len, config.train_tokens, lbatch.format_count
  epochs = functools.partial(token_epochs, seq_len=t, num_examples=num_examples)
  multiple = c.num_devices if (c.num_devices or 1) > 1 else 4

  def cap(name: str) -> int:
    tokens = getattr(config, name) or config.ramp_stop_tokens
    return lbatch.to_sequences(tokens, t, name)

  def plan(batch: Any, lr: Any, policy: str, prefix: str = '') -> Plan:
    return Plan(
      batch, lr, prefix + batch_text(batch, t), lr_text(config, policy)
    )

  constant = lbatch.parse(
    f'stages({c.batch_size * t}tok@{total}tok,seq={t})', num_examples
  )
  cosine = lr_policy(config, BASELINE, num_examples)
  plans = {
    name: plan(
      constant,
      cosine if name == BASELINE else lr_policy(config, name, num_examples),
      name,
    )
    for name in config.lr_policies
  }
  if 'ramp' in wanted:
    text = (
      f'linear_ramp(start={count(config.ramp_start)}tok,'
      f'stop={count(config.ramp_stop_tokens)}tok,'
      f'ramp={count(config.ramp_tokens)}tok,total={count(total)}tok,seq={t})'
    )
    ramp = lbatch.parse(text, num_examples)
    plans['ramp'] = plan(ramp, cosine, BASELINE, f'{text} = ')
  if 'increase' in wanted:
    smith = lbatch.from_lr_decay(
      c.lr,
      c.batch_size,
      num_examples,
      milestones=[m * epochs(total) for m in config.increase_milestones],
      factors=1 / config.increase_factor,
      num_epochs=epochs(total),
      momentum=0.0,
      max_batch_size=num_examples,
      multiple_of=multiple,
    )
    lr = schedules.warmup(
      smith.lr, length=epochs(config.warmup_tokens), shift=False
    )
    plans['increase'] = plan(smith.batch_schedule, lr, 'increase')
  if 'seesaw' in wanted:
    seesaw = lbatch.seesaw(
      cosine,
      c.batch_size,
      num_examples,
      num_epochs=epochs(total),
      factor=config.seesaw_factor,
      max_batch_size=cap('seesaw_max_tokens'),
      multiple_of=multiple,
    )
    plans['seesaw'] = plan(seesaw.batch_schedule, seesaw.lr, 'seesaw')
  if 'adaptive' in wanted:
    adaptive = lrtrain.AdaptiveConfig(
      max_batch_size=cap('adaptive_max_tokens'),
      every_epochs=epochs(config.adaptive_every_tokens),
      max_growth=config.adaptive_growth,
    )
    sizes = '/'.join(count(b * t) for b in adaptive.sizes(c.batch_size))
    plans['adaptive'] = Plan(
      c.batch_size,
      cosine,
      f'{c.batch_size * t}tok growing toward B_simple every '
      f'{count(config.adaptive_every_tokens)}tok (x'
      f'{config.adaptive_growth:g} at most; {sizes}tok)',
      lr_text(config, BASELINE),
      adaptive=adaptive,
    )
  return plans


# ------------------------------------------------------------ runs


def train_config(config: LmConfig, plan: Plan, seed: int, num_examples: int):
  """The trainer's config for one seed of one plan."""
  c = config.common
  overrides: dict[str, Any] = {}
  if plan.adaptive is not None:
    # Each segment of the adaptive run resumes from the previous one.
    overrides.update(
      keep_checkpoints=1,
      num_epochs=token_epochs(config.train_tokens, c.seq_len, num_examples),
    )
  return _lm_common.train_config(
    c,
    batch=plan.batch,
    batch_sizes=plan.batch_sizes,
    lr=plan.lr,
    seed=seed,
    eval_every=token_epochs(config.eval_every_tokens, c.seq_len, num_examples),
    **overrides,
  )


class Lm(_study.Study):
  """Every plan (LR policy or batch schedule), each seed, on the corpus."""

  name = 'lm'

  def check(self) -> None:
    self.config.validate()

  @functools.cached_property
  def data(self) -> tuple[Any, Any, dict]:
    """The training split, the validation split, the evaluated sequences."""
    c = self.config.common
    valid = _lm_common.load_split(c, c.validation_split)
    return (
      _lm_common.load_split(c, 'train'),
      valid,
      _lm_common.evenly_spaced(valid, c.eval_sequences),
    )

  @functools.cached_property
  def plans(self) -> dict[str, Plan]:
    return build_plans(self.config, self.data[0].num_examples)

  def trials(self) -> list[_study.Trial]:
    c = self.config.common
    train, _, evaluate = self.data
    return [
      _study.Trial(
        name,
        c.seeds,
        functools.partial(
          train_config, self.config, plan, num_examples=train.num_examples
        ),
        lambda seed, n=name: _lm_common.make_task(
          c, train, evaluate, seed, name=f'lm {n}'
        ),
        train=_runs.adaptive_trainer(plan.adaptive),
        after=lambda _, __, p=plan: {'batch': p.batch_text, 'lr': str(p.lr)},
        describe=f'batch {plan.batch_text}, lr {plan.lr}',
      )
      for name, plan in self.plans.items()
    ]

  def analyze(self, runs, workdir: str) -> _study.Report:
    c = self.config.common
    train, valid, evaluate = self.data
    model = c.transformer()
    base = _lm_common.baselines(train, valid)
    rows, table = _table(
      runs, self.plans, c.seq_len, model.flops_per_token(), noise=c.noise
    )
    claims = _claims(runs, self.config)
    figures = _figures(runs, c.seq_len, base, workdir)
    results = {
      'experiment': 'lm',
      'corpus': c.corpus,
      'interpreter': train.metadata.get('interpreter'),
      'train_sequences': train.num_examples,
      'train_tokens_in_split': train.num_tokens,
      'eval_sequences': int(evaluate['tokens'].shape[0]),
      'seq_len': c.seq_len,
      'num_params': model.num_params,
      'flops_per_token': model.flops_per_token(),
      'baselines_nats': base,
      'baselines_bits_per_byte': {k: v / math.log(2) for k, v in base.items()},
      'rows': rows,
      'claims': claims,
      'figures': figures,
    }
    text = _report(self.config, self.plans, results, table, claims, figures)
    return _study.Report(results, table, text)


# ------------------------------------------------------------ report


def _mean(values: Sequence[float]) -> float:
  return _common.mean_std(values)[0]


def _final(run: _runs.Run, key: str) -> float:
  value = run.summary['test_metrics'].get(key)
  return math.nan if value is None else float(value)


def _finite(run: _runs.Run, key: str) -> np.ndarray:
  values = run.train.get(key, np.zeros(0))
  return values[np.isfinite(values) & (values > 0)]


def _table(runs, plans, seq_len, flops_per_token, *, noise=True):
  """Rows and the markdown table; without the noise tracker (``noise``
  False) neither has a B_simple column.

  Tokens/s is the median over the logged intervals (one with an
  evaluation or a first compilation in it does not count); B_simple at
  the end is the last finite logged estimate.
  """
  header = ['run', 'val loss (nats)', 'val bits/byte', 'updates', 'tokens']
  header += ['wall s', 'tokens/s'] + ['B_simple at end (tokens)'] * noise
  rows, lines = [], []
  for name, group in runs.items():
    loss = [_final(r, 'loss') for r in group]
    bpb = [_final(r, 'bits_per_byte') for r in group]
    updates = _mean([r.summary['num_updates'] for r in group])
    tokens = _mean([r.summary['examples_seen'] * seq_len for r in group])
    wall = [r.summary['wall_seconds'] for r in group]
    rates = [_finite(r, 'examples_per_sec') for r in group]
    rates = [
      float(np.median(v) * seq_len) if v.size else math.nan for v in rates
    ]
    rows.append(
      {
        'run': name,
        'seeds': len(group),
        'lr': str(plans[name].lr),
        'lr_text': plans[name].lr_text,
        'batch': plans[name].batch_text,
        'val_loss': _common.mean_std(loss),
        'val_loss_per_seed': loss,
        'val_bits_per_byte': _common.mean_std(bpb),
        'num_updates': updates,
        'tokens': tokens,
        'wall_seconds': _common.mean_std(wall),
        'train_tokens_per_second': _common.mean_std(rates),
        'model_flops_per_second': _mean(rates) * flops_per_token,
      }
    )
    lines.append([name, _lm_common.ms(loss), _lm_common.ms(bpb)])
    lines[-1] += [_common.fmt_number(updates), _common.fmt_number(tokens)]
    lines[-1] += [_lm_common.ms(wall, 1), _lm_common.ms(rates, 0)]
    if noise:
      ends = [r.train.get('noise_scale', np.zeros(0)) for r in group]
      ends = [
        float(e[np.isfinite(e)][-1]) if np.isfinite(e).any() else math.nan
        for e in ends
      ]
      rows[-1]['b_simple_end_sequences'] = _common.mean_std(ends)
      tokens_end = [e * seq_len for e in ends]
      rows[-1]['b_simple_end_tokens'] = _common.mean_std(tokens_end)
      lines[-1].append(_lm_common.ms(tokens_end, 0))
  return rows, _common.markdown_table(header, lines)


_MATCHES = {
  'wsd': 'WSD with a 1-sqrt cooldown matches cosine at the end of the budget',
  'constant_cooldown': 'a constant LR with a linear cooldown matches cosine '
  'at the end of the budget',
}


def _claims(runs, config: LmConfig) -> list[dict[str, Any]]:
  """Each policy's and schedule's verdict against cosine (increase: against
  step when it ran), and whether B_simple grows as the loss falls."""
  seeds = len(config.common.seeds)
  claims = []
  for name in (*_MATCHES, 'ramp', 'increase', 'adaptive', 'seesaw'):
    if name not in runs:
      continue
    against = 'step' if name == 'increase' and 'step' in runs else BASELINE
    held, diff, tol = _common.within_variation(
      [_final(r, 'loss') for r in runs[name]],
      [_final(r, 'loss') for r in runs[against]],
    )
    tolerance = f', tolerance ±{tol:.4f}' if seeds > 1 else ''
    if name in _MATCHES:
      tolerance += ' (2 x pooled seed std)' if seeds > 1 else ''
      detail = f'final validation loss {diff:+.4f} nats vs {against}'
      claims.append(
        _lm_common.claim(_MATCHES[name], held, detail + tolerance, seeds)
      )
      continue
    updates = _mean([r.summary['num_updates'] for r in runs[name]])
    ref = _mean([r.summary['num_updates'] for r in runs[against]])
    claims.append(
      _lm_common.claim(
        f'{name} saves updates at equal loss against {against}',
        bool(updates < ref and (held or diff < 0)),
        f'{ref / updates:.2f}x fewer updates ({updates:,.0f} vs {ref:,.0f}), '
        f'final validation loss {diff:+.4f} nats{tolerance}',
        seeds,
      )
    )
  growth = [_noise_growth(r) for r in runs[BASELINE]]
  if any(math.isfinite(g[0]) for g in growth):
    claims.append(
      _lm_common.claim(
        f'B_simple grows as the loss falls ({BASELINE}, constant batch; '
        'McCandlish et al.)',
        all(g[0] > 1 and g[1] < 0 for g in growth if math.isfinite(g[0])),
        '; '.join(
          f'seed {r.seed}: B_simple x{ratio:.2f} from the first to the last '
          f'quarter, rank correlation with the loss {rho:+.2f}'
          for r, (ratio, rho) in zip(runs[BASELINE], growth, strict=True)
        ),
        seeds,
      )
    )
  return claims


def _noise_growth(run: _runs.Run) -> tuple[float, float]:
  r"""How the measured B_simple moves over a run: the median of the last
  quarter of the finite logged estimates over the median of the first
  quarter, and Spearman's rank correlation between the estimates and the
  training loss logged with them (negative: B_simple grows as the loss
  falls); NaNs without the noise tracker or with fewer than 8 estimates.
  """
  noise, loss = run.train.get('noise_scale'), run.train.get('loss')
  if noise is None or loss is None or noise.shape != loss.shape:
    return math.nan, math.nan
  keep = np.isfinite(noise) & np.isfinite(loss)
  noise, loss = noise[keep], loss[keep]
  if noise.size < 8:
    return math.nan, math.nan
  q = noise.size // 4
  rank = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731
  return (
    float(np.median(noise[-q:]) / np.median(noise[:q])),
    float(np.corrcoef(rank(noise), rank(loss))[0, 1]),
  )


LABELS = {
  'tokens': 'training tokens',
  'step': 'parameter updates',
  'loss': 'validation loss (nats/byte)',
  'noise_scale_tokens': 'measured B_simple (tokens)',
  'batch_tokens': 'batch (tokens)',
  'lr': 'learning rate',
}


def _figures(runs, seq_len, base, workdir) -> dict[str, str]:
  """The validation loss (with the bigram and unigram models'), the LR and batch in force, and B_simple when measured."""
  from lrjax import batch as lbatch
  from lrjax import plots

  def columns(kind: str) -> dict[str, list[dict]]:
    return {
      k: [lbatch.with_tokens(dict(getattr(r, kind)), seq_len) for r in g]
      for k, g in runs.items()
    }

  test, train = columns('test'), columns('train')
  plot = functools.partial(plots.plot_curves, labels=LABELS, x='tokens')
  fig = plot(test, x=('tokens', 'step'), y='loss', title=None)
  for ax in fig.axes:
    ax.axhline(base['bigram'], color='gray', linestyle=':', label='bigram')
    ax.axhline(base['unigram'], color='gray', linestyle='--', label='unigram')
    ax.legend(fontsize='small')
  fig.savefig(os.path.join(workdir, 'val_loss.png'), dpi=110)
  path = os.path.join(workdir, 'schedules.png')
  plot(train, y=('lr', 'batch_tokens'), band='range', path=path)
  figures = {
    'val_loss.png': 'Validation loss against training tokens and against '
    'updates (gray: the bigram and unigram models of the same split)',
    'schedules.png': 'LR and batch (tokens) in force, as trained',
  }
  if any(
    np.isfinite(r.get('noise_scale_tokens', np.zeros(0))).any()
    for g in train.values()
    for r in g
  ):
    plot(
      train,
      y='noise_scale_tokens',
      band='range',
      logy=True,
      path=os.path.join(workdir, 'noise_scale.png'),
    )
    figures['noise_scale.png'] = (
      'Measured gradient noise scale B_simple, in tokens, against training '
      'tokens'
    )
  return figures


def _report(config, plans, results, table, claims, figures) -> str:
  c = config.common
  base = results['baselines_bits_per_byte']
  noise = (
    'The noise scale is estimated with sequences as the examples and '
    'stated in tokens (times the sequence length). '
    if c.noise
    else 'The noise tracker was off (--nonoise): no B_simple. '
  )
  lines = [
    '# Pretraining a byte-level transformer: LR policies and batch schedules',
    '',
    f'{c.corpus} ({results["train_sequences"]:,} training sequences of '
    f'{c.seq_len} bytes, {results["train_tokens_in_split"]:,} bytes; read '
    f'from {results["interpreter"] or "a TFDS dataset"}), evaluated on '
    f'{results["eval_sequences"]} {c.validation_split} sequences. Model: '
    f'{c.layers} layers, {c.heads} heads, width {c.width}, '
    f'{results["num_params"]:,} parameters, '
    f'{results["flops_per_token"] / 1e6:.2f} MFLOPs per training token. '
    f'{c.optimizer} (beta1 {c.momentum:g}, beta2 {c.b2:g}, weight decay '
    f'{c.weight_decay:g}), peak LR {c.lr:g}, every run '
    f'{config.train_tokens:,} tokens; seeds '
    f'{", ".join(map(str, c.seeds))}.',
    '',
    f'Baselines on the {c.validation_split} split: unigram '
    f'{base["unigram"]:.3f} bits/byte, bigram {base["bigram"]:.3f} '
    'bits/byte.',
    '',
    '| run | LR policy | batch schedule (tokens) |',
    '|---|---|---|',
    *(f'| {k} | {p.lr_text} | `{p.batch_text}` |' for k, p in plans.items()),
    '',
    '## Results',
    '',
    table,
    '## Claims',
    '',
    *_common.claim_lines(claims),
    '',
    'Tokens/s is the median training rate over the logged intervals (one '
    'with an evaluation or a compilation in it does not count); wall s is '
    f'the whole run, compilation and evaluations included. {noise}'
    "The policies' exact text forms (over epochs) are in results.json.",
    *_common.figure_lines(figures),
  ]
  return '\n'.join(lines)


check, run, main = _study.entry_points(Lm, get_config)

if __name__ == '__main__':
  app.run(main)
