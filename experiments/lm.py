"""Pretraining a byte-level transformer: LR policies and batch schedules.

Every run trains `lrjax.lm.Transformer` on the same `--train_tokens` of
`--corpus`: LR policies at a constant batch (cosine, the baseline; wsd;
constant_cooldown; step) and batch schedules with the cosine LR (constant,
ramp, increase, adaptive, seesaw). Batches are in sequences of `--seq_len`
tokens; budgets, ramps and B_simple are stated in tokens.

  python -m experiments.lm --flagfile=experiments/flagfiles/lm_cpu.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app

from experiments import _common, _lm_common
from experiments._lm_common import final, token_setting
from lrjax import evidence, studies
from lrjax.studies import setting

LR_POLICIES = ('cosine', 'wsd', 'constant_cooldown', 'step')
BATCH_SCHEDULES = ('constant', 'ramp', 'increase', 'adaptive', 'seesaw')
BASELINE = 'cosine'
#: The batch schedules with a cap (``--<name>_max_tokens``).
_CAPPED = ('adaptive', 'seesaw')


def _subset(names: Sequence[str]) -> studies.Check:
  return lambda v: (
    None
    if v and all(x in names for x in v)
    else f'must be a non-empty subset of {",".join(names)}'
  )


@dataclasses.dataclass(frozen=True)
class LmConfig:
  """The pretraining experiment (each field is its flag; token fields hold
  counts once made)."""

  common: _lm_common.LmCommon = _lm_common.LmCommon()
  train_tokens: str | int = token_setting('128Ki')
  """Tokens every run trains on (the equal budget)."""
  eval_every_tokens: str | int = token_setting('16Ki')
  """Evaluate every this many training tokens."""
  warmup_tokens: str | int = token_setting('8Ki')
  """Linear LR warmup of every policy, in tokens."""
  lr_policies: tuple[str, ...] = setting(
    ('cosine', 'wsd', 'constant_cooldown'),
    help_text=f'LR policies at a constant batch, from {", ".join(LR_POLICIES)}; '
    'cosine (the baseline) always runs.',
    check=_subset(LR_POLICIES),
  )
  batch_schedules: tuple[str, ...] = setting(
    BATCH_SCHEDULES,
    help_text=f'Batch schedules, from {", ".join(BATCH_SCHEDULES)}; constant is the '
    'cosine run.',
    check=_subset(BATCH_SCHEDULES),
  )
  final_lr_fraction: float = setting(
    0.1, check=lambda v: None if 0 <= v <= 1 else 'must be in [0, 1]'
  )
  """cosine decays to this fraction of the peak LR."""
  cooldown_fraction: float = setting(
    0.2, check=lambda v: None if 0 < v <= 1 else 'must be in (0, 1]'
  )
  """wsd and constant_cooldown cool down to 0 over this last fraction."""
  ramp_start_tokens: str | int | None = token_setting(None, none_if_empty=True)
  """ramp: the first batch and the increment, in tokens (empty: --batch_size
  sequences)."""
  ramp_stop_tokens: str | int = token_setting('3Ki')
  """ramp: the final batch, in tokens."""
  ramp_tokens: str | int = token_setting('32Ki')
  """ramp: tokens over which the batch grows."""
  increase_milestones: tuple[float, ...] = setting(
    (0.5, 0.75), check=studies.increasing(0, 1, '0.5,0.75')
  )
  """step and increase: fractions of the budget where step divides the LR by
  --increase_factor (increase multiplies the batch instead)."""
  increase_factor: float = setting(2.0, check=studies.above(1))
  """step and increase: the factor per milestone."""
  adaptive_every_tokens: str | int = token_setting('32Ki')
  """adaptive: tokens between decisions on the batch."""
  adaptive_max_tokens: str | int | None = token_setting(
    None, none_if_empty=True
  )
  """adaptive: the largest batch, in tokens (empty: --ramp_stop_tokens)."""
  adaptive_growth: float = setting(2.0, check=studies.at_least(1))
  """adaptive: the largest factor by which one decision grows the batch."""
  seesaw_factor: float = setting(2.0, check=studies.above(1))
  """seesaw: the cosine is cut where it has fallen by this factor; there the
  batch grows by it and the LR falls by its square root."""
  seesaw_max_tokens: str | int | None = token_setting(None, none_if_empty=True)
  """seesaw: the largest batch, in tokens (empty: --ramp_stop_tokens); past
  it the LR falls by the whole factor per cut."""

  def __post_init__(self) -> None:
    _lm_common.parse_token_settings(self)

  @property
  def ramp_start(self) -> int:
    """The ramp's first batch, in tokens."""
    if self.ramp_start_tokens is None:
      return self.common.batch_size * self.common.seq_len
    return self.ramp_start_tokens

  def epochs(self, tokens: int, num_examples: int) -> float:
    """A token count as epochs of ``num_examples`` sequences."""
    from lrjax import batch as lbatch

    return lbatch.to_epochs(tokens, self.common.seq_len, num_examples)

  def cap(self, name: str) -> int:
    """The adaptive or seesaw batch cap in sequences (``name``: either)."""
    from lrjax import batch as lbatch

    tokens = getattr(self, f'{name}_max_tokens') or self.ramp_stop_tokens
    return lbatch.to_sequences(
      tokens, self.common.seq_len, f'{name}_max_tokens'
    )

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    from lrjax import batch as lbatch

    c, runs = self.common, self.batch_schedules
    c.validate()
    studies.check_settings(self)
    _lm_common.check_sequences(self, c.seq_len)
    total, stop = self.train_tokens, self.ramp_stop_tokens
    warmup, every = self.warmup_tokens, self.adaptive_every_tokens
    start = self.ramp_start
    lbatch.to_sequences(start, c.seq_len, 'ramp_start_tokens')
    caps = {n: self.cap(n) for n in _CAPPED if n in runs}
    stable = total * (1 - self.cooldown_fraction)
    ramp, adaptive = 'ramp' in runs, 'adaptive' in runs
    problems = {
      f'--train_tokens={total} is less than one batch of {c.batch_size} x '
      f'{c.seq_len} tokens': total < c.batch_size * c.seq_len,
      f'--warmup_tokens={warmup} must end before the cooldown starts '
      f'({stable:.0f} tokens): shorten it or '
      '--cooldown_fraction': warmup >= stable,
      f'--ramp_stop_tokens={stop} must be >= the ramp start {start}': (
        ramp and start > stop
      ),
      f'--ramp_stop_tokens={stop} minus the start {start} must be a multiple '
      'of the start (the increment of the linear '
      'ramp)': ramp and (stop - start) % start,
      f'--ramp_tokens={self.ramp_tokens} must be <= '
      f'--train_tokens={total}': ramp and self.ramp_tokens > total,
      'noise=False: the adaptive batch reads the measured noise scale; pass '
      '--noise or drop adaptive from '
      '--batch_schedules': adaptive and not c.noise,
      f'--adaptive_every_tokens={every} must be <= '
      f'--train_tokens={total}': adaptive and every > total,
    } | {
      f'--{n}_max_tokens={cap * c.seq_len} must be >= the base batch of '
      f'{c.batch_size * c.seq_len} tokens': cap < c.batch_size
      for n, cap in caps.items()
    }
    studies.refuse(problems)


studies.define_flags(LmConfig)


def get_config() -> LmConfig:
  """Builds the typed config from the parsed flags (cosine always runs)."""
  _lm_common.refuse_flags('lm', _lm_common.TOKEN_BUDGET)
  config = studies.read_flags(LmConfig, common=_lm_common.lm_common())
  policies = (BASELINE, *(p for p in config.lr_policies if p != BASELINE))
  return dataclasses.replace(config, lr_policies=policies)


def baseline_config() -> LmConfig:
  """The flags' config reduced to its `BASELINE` run (goyal, recipe)."""
  return dataclasses.replace(
    get_config(), lr_policies=(BASELINE,), batch_schedules=('constant',)
  )


# ------------------------------------------------------------ plans


@dataclasses.dataclass(frozen=True)
class Plan:
  """One run's BatchSchedule (``adaptive``: the starting batch and its
  `lrjax.train.AdaptiveConfig`), LR policy over epochs, and report texts."""

  batch: Any
  lr: Any
  batch_text: str
  lr_text: str = ''
  adaptive: Any = None

  @property
  def batch_sizes(self) -> tuple[int, ...]:
    return _common.batch_sizes(self.batch, self.adaptive)


def _round12(x: float) -> float:
  return float(f'{x:.12g}')


def lr_policy(config: LmConfig, name: str, num_examples: int) -> Any:
  """The LR policy ``name`` (one of `LR_POLICIES`) over epochs."""
  from lrjax import schedules as s

  lr = config.common.lr
  total = config.epochs(config.train_tokens, num_examples)
  warm = config.epochs(config.warmup_tokens, num_examples)
  if name == 'cosine':
    end = _round12(config.final_lr_fraction * lr)
    return s.warmup(s.cosine(lr, length=total - warm, end=end), length=warm)
  if name == 'step':
    at = [m * total for m in config.increase_milestones]
    step = s.multistep(lr, at, gamma=1 / config.increase_factor)
    return s.warmup(step, length=warm, shift=False)
  if name not in LR_POLICIES:
    raise ValueError(f'{name=} is not one of {LR_POLICIES}')
  return s.wsd(
    lr,
    length=total,
    warmup=warm,
    end=0.0,
    cooldown=total * config.cooldown_fraction,
    shape='sqrt' if name == 'wsd' else 'linear',
  )


def lr_text(config: LmConfig, name: str) -> str:
  """The LR policy ``name`` in words and tokens, for the report."""
  from lrjax.batch import format_count

  lr, total, f = config.common.lr, config.train_tokens, config.seesaw_factor
  warm = (
    f'warmup over {format_count(config.warmup_tokens)}tok from '
    f'{0.1 * lr:g} to {lr:g}'
  )
  cool = f'the last {config.cooldown_fraction:.0%} '
  cool += f'({round(config.cooldown_fraction * total):,} tokens)'
  at = ' and '.join(f'{round(m * total):,}' for m in config.increase_milestones)
  tails = {
    'cosine': f', cosine to {_round12(config.final_lr_fraction * lr):g} at '
    f'{format_count(total)}tok',
    'wsd': f', constant, 1-sqrt cooldown to 0 over {cool}',
    'constant_cooldown': f', constant, linear cooldown to 0 over {cool}',
    'step': f', divided by {config.increase_factor:g} at {at} tokens',
    'increase': ', then constant (the batch grows instead of the step decay)',
    'seesaw': f', the cosine cut where it has fallen by {f:g}: x '
    f'1/sqrt({f:g}) per cut while the batch grows (x {f:g}), / {f:g} per cut '
    'past the cap',
  }
  return warm + tails[name]


def batch_text(schedule: Any, seq_len: int) -> str:
  """A schedule's exact text in tokens (stages in epochs as updates)."""
  from lrjax import batch as lbatch

  if any(stage.epochs is not None for stage in schedule.stages):
    schedule = schedule.canonical()
  return lbatch.to_text(schedule, seq_len=seq_len)


def build_plans(config: LmConfig, num_examples: int) -> dict[str, Plan]:
  """The batch schedule and LR policy of every run, by name.

  Every plan trains on `train_tokens`; batch sizes are multiples of the
  devices (one device: of the noise tracker's 4 slices), so that the noise
  scale can be measured.
  """
  from lrjax import batch as lbatch
  from lrjax import schedules
  from lrjax import train as lrtrain

  c, wanted, n = config.common, config.batch_schedules, num_examples
  t, b, total = c.seq_len, c.batch_size, config.train_tokens
  count = lbatch.format_count
  cosine = lr_policy(config, BASELINE, n)
  multiple = c.num_devices if (c.num_devices or 1) > 1 else 4
  grow = dict(num_epochs=config.epochs(total, n), multiple_of=multiple)

  def plan(batch: Any, lr: Any, policy: str = BASELINE, prefix: str = ''):
    return Plan(
      batch, lr, prefix + batch_text(batch, t), lr_text(config, policy)
    )

  constant = lbatch.parse(f'stages({b * t}tok@{total}tok,seq={t})', n)
  plans = {
    name: plan(constant, lr_policy(config, name, n), name)
    for name in config.lr_policies
  }
  if 'ramp' in wanted:
    text = (
      f'linear_ramp(start={count(config.ramp_start)}tok,'
      f'stop={count(config.ramp_stop_tokens)}tok,'
      f'ramp={count(config.ramp_tokens)}tok,total={count(total)}tok,seq={t})'
    )
    plans['ramp'] = plan(lbatch.parse(text, n), cosine, prefix=f'{text} = ')
  if 'increase' in wanted:
    at = [m * grow['num_epochs'] for m in config.increase_milestones]
    factor = 1 / config.increase_factor
    smith = lbatch.from_lr_decay(
      c.lr, b, n, milestones=at, factors=factor, max_batch_size=n, **grow
    )
    warm = config.epochs(config.warmup_tokens, n)
    lr = schedules.warmup(smith.lr, length=warm, shift=False)
    plans['increase'] = plan(smith.batch_schedule, lr, 'increase')
  if 'seesaw' in wanted:
    cap, f = config.cap('seesaw'), config.seesaw_factor
    seesaw = lbatch.seesaw(cosine, b, n, factor=f, max_batch_size=cap, **grow)
    plans['seesaw'] = plan(seesaw.batch_schedule, seesaw.lr, 'seesaw')
  if 'adaptive' in wanted:
    every = config.adaptive_every_tokens
    adaptive = lrtrain.AdaptiveConfig(
      max_batch_size=config.cap('adaptive'),
      every_epochs=config.epochs(every, n),
      max_growth=config.adaptive_growth,
    )
    sizes = '/'.join(count(size * t) for size in adaptive.sizes(b))
    text = (
      f'{b * t}tok growing toward B_simple every {count(every)}tok (x'
      f'{config.adaptive_growth:g} at most; {sizes}tok)'
    )
    plans['adaptive'] = Plan(
      b, cosine, text, lr_text(config, BASELINE), adaptive
    )
  return plans


# ------------------------------------------------------------ runs


def train_config(config: LmConfig, plan: Plan, seed: int, num_examples: int):
  """The trainer's config for one seed of one plan."""
  epochs = functools.partial(config.epochs, num_examples=num_examples)
  # Each segment of the adaptive run resumes from the previous one.
  adaptive = dict(keep_checkpoints=1, num_epochs=epochs(config.train_tokens))
  return _lm_common.train_config(
    config.common,
    batch=plan.batch,
    batch_sizes=plan.batch_sizes,
    lr=plan.lr,
    seed=seed,
    eval_every=epochs(config.eval_every_tokens),
    **(adaptive if plan.adaptive is not None else {}),
  )


class Lm(studies.Study):
  """Every plan (LR policy or batch schedule), each seed, on the corpus."""

  name = 'lm'

  def check(self) -> None:
    self.config.validate()

  @functools.cached_property
  def data(self) -> tuple[Any, Any, dict]:
    """The training split, the validation split, the evaluated sequences."""
    c = self.config.common
    train, evaluate = _lm_common.train_and_evaluation(c)
    return train, _lm_common.load_split(c, c.validation_split), evaluate

  @functools.cached_property
  def plans(self) -> dict[str, Plan]:
    return build_plans(self.config, self.data[0].num_examples)

  def trials(self) -> list[studies.Trial]:
    c, (train, _, evaluate) = self.config.common, self.data
    n = train.num_examples
    return [
      studies.Trial(
        name,
        c.seeds,
        functools.partial(train_config, self.config, plan, num_examples=n),
        functools.partial(
          _lm_common.make_task, c, train, evaluate, name=f'lm {name}'
        ),
        train=studies.adaptive_trainer(plan.adaptive),
        after=lambda _, __, p=plan: {'batch': p.batch_text, 'lr': str(p.lr)},
        describe=f'batch {plan.batch_text}, lr {plan.lr}',
      )
      for name, plan in self.plans.items()
    ]

  def analyze(self, runs, workdir: str) -> studies.Report:
    from lrjax import lm

    c = self.config.common
    train, valid, evaluate = self.data
    model = c.transformer()
    base = lm.count_baselines(train, valid)
    rows, table = _table(
      runs, self.plans, c.seq_len, model.flops_per_token(), noise=c.noise
    )
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
      'claims': _claims(runs, self.config),
      'figures': _figures(runs, c.seq_len, base, workdir),
    }
    text = _report(self.config, self.plans, results, table)
    return studies.Report(results, table, text)


# ------------------------------------------------------------ report


def _mean(values: Sequence[float]) -> float:
  return evidence.mean_std(values)[0]


def _table(runs, plans, seq_len, flops_per_token, *, noise=True):
  """Rows and the markdown table (B_simple columns only with ``noise``).

  Tokens/s is the median over the logged intervals (one with an evaluation
  or a first compilation in it does not count); B_simple at the end is the
  last finite logged estimate.
  """
  header = ['run', 'val loss (nats)', 'val bits/byte', 'updates', 'tokens']
  header += ['wall s', 'tokens/s'] + ['B_simple at end (tokens)'] * noise
  ms, num = _lm_common.ms, _common.fmt_number
  rows, lines = [], []
  for name, group in runs.items():
    loss = [final(r, 'loss') for r in group]
    bpb = [final(r, 'bits_per_byte') for r in group]
    updates = _mean([r.summary['num_updates'] for r in group])
    tokens = _mean([r.summary['examples_seen'] * seq_len for r in group])
    wall = [r.summary['wall_seconds'] for r in group]
    rates = [_median_rate(r, seq_len) for r in group]
    rows.append(
      {
        'run': name,
        'seeds': len(group),
        'lr': str(plans[name].lr),
        'lr_text': plans[name].lr_text,
        'batch': plans[name].batch_text,
        'val_loss': evidence.mean_std(loss),
        'val_loss_per_seed': loss,
        'val_bits_per_byte': evidence.mean_std(bpb),
        'num_updates': updates,
        'tokens': tokens,
        'wall_seconds': evidence.mean_std(wall),
        'train_tokens_per_second': evidence.mean_std(rates),
        'model_flops_per_second': _mean(rates) * flops_per_token,
      }
    )
    lines.append([name, ms(loss), ms(bpb), num(updates), num(tokens)])
    lines[-1] += [ms(wall, 1), ms(rates, 0)]
    if noise:
      ends = [_last_finite(r.train.get('noise_scale', [])) for r in group]
      in_tokens = [e * seq_len for e in ends]
      rows[-1]['b_simple_end_sequences'] = evidence.mean_std(ends)
      rows[-1]['b_simple_end_tokens'] = evidence.mean_std(in_tokens)
      lines[-1].append(ms(in_tokens, 0))
  return rows, studies.markdown_table(header, lines)


def _median_rate(run: studies.Run, seq_len: int) -> float:
  rates = run.train.get('examples_per_sec', np.zeros(0))
  rates = rates[np.isfinite(rates) & (rates > 0)]
  return float(np.median(rates) * seq_len) if rates.size else math.nan


def _last_finite(values: Any) -> float:
  finite = np.asarray(values, float)
  finite = finite[np.isfinite(finite)]
  return float(finite[-1]) if finite.size else math.nan


_MATCHES = {
  'wsd': 'WSD with a 1-sqrt cooldown matches cosine at the end of the budget',
  'constant_cooldown': 'a constant LR with a linear cooldown matches cosine '
  'at the end of the budget',
}


def _claims(runs, config: LmConfig) -> list[dict[str, Any]]:
  """Each policy's and schedule's verdict against cosine (increase: against
  step when it ran), and whether B_simple grows as the loss falls."""
  from lrjax import noise

  seeds = len(config.common.seeds)
  loss = lambda k: [final(r, 'loss') for r in runs[k]]  # noqa: E731
  updates = lambda k: _mean([r.summary['num_updates'] for r in runs[k]])  # noqa: E731
  claims = []
  for name in (*_MATCHES, 'ramp', 'increase', 'adaptive', 'seesaw'):
    if name not in runs:
      continue
    against = 'step' if name == 'increase' and 'step' in runs else BASELINE
    held, diff, tol = evidence.within_variation(loss(name), loss(against))
    tolerance = f', tolerance ±{tol:.4f}' if seeds > 1 else ''
    if name in _MATCHES:
      text = _MATCHES[name]
      detail = f'final validation loss {diff:+.4f} nats vs {against}'
      detail += tolerance + (' (2 x pooled seed std)' if seeds > 1 else '')
    else:
      new, ref = updates(name), updates(against)
      text = f'{name} saves updates at equal loss against {against}'
      held = bool(new < ref and (held or diff < 0))
      detail = (
        f'{ref / new:.2f}x fewer updates ({new:,.0f} vs {ref:,.0f}), '
        f'final validation loss {diff:+.4f} nats{tolerance}'
      )
    claims.append(evidence.claim(text, held, detail, seeds))
  growth = [
    noise.growth(r.train.get('noise_scale', []), r.train.get('loss', []))
    for r in runs[BASELINE]
  ]
  if any(math.isfinite(ratio) for ratio, _ in growth):
    claims.append(
      evidence.claim(
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


LABELS = {
  'tokens': 'training tokens',
  'step': 'parameter updates',
  'loss': 'validation loss (nats/byte)',
  'noise_scale_tokens': 'measured B_simple (tokens)',
  'batch_tokens': 'batch (tokens)',
  'lr': 'learning rate',
}
_FIGURES = {
  'val_loss.png': 'Validation loss against training tokens and against '
  'updates (gray: the bigram and unigram models of the same split)',
  'schedules.png': 'LR and batch (tokens) in force, as trained',
  'noise_scale.png': 'Measured gradient noise scale B_simple, in tokens, '
  'against training tokens',
}


def _figures(runs, seq_len, base, workdir) -> dict[str, str]:
  """Validation loss (and the bigram and unigram models'), LR and batch in
  force, and B_simple when measured."""
  from lrjax import batch as lbatch
  from lrjax import plots

  test, train = (
    {
      k: [lbatch.with_tokens(dict(getattr(r, kind)), seq_len) for r in g]
      for k, g in runs.items()
    }
    for kind in ('test', 'train')
  )
  refs = {k: base[k] for k in ('bigram', 'unigram')}
  specs = {
    'val_loss.png': (test, {'x': ('tokens', 'step'), 'hlines': refs}),
    'schedules.png': (train, {'y': ('lr', 'batch_tokens'), 'band': 'range'}),
  }
  noise = [r.get('noise_scale_tokens', []) for g in train.values() for r in g]
  if any(np.isfinite(values).any() for values in noise):
    specs['noise_scale.png'] = (
      train,
      {'y': 'noise_scale_tokens', 'band': 'range', 'logy': True},
    )
  for name, (data, kwargs) in specs.items():
    path = os.path.join(workdir, name)
    kwargs = {'x': 'tokens', 'y': 'loss', **kwargs}
    plots.plot_curves(data, labels=LABELS, path=path, **kwargs)
  return {name: _FIGURES[name] for name in specs}


def _report(config, plans, results, table) -> str:
  c, r = config.common, results
  noise = (
    'The noise scale is estimated with sequences as the examples and '
    'stated in tokens (times the sequence length). '
    if c.noise
    else 'The noise tracker was off (--nonoise): no B_simple. '
  )
  return _common.render(
    'lm',
    c=c,
    r=r,
    source=r['interpreter'] or 'a TFDS dataset',
    mflops=r['flops_per_token'] / 1e6,
    train_tokens=config.train_tokens,
    seeds=', '.join(map(str, c.seeds)),
    base=r['baselines_bits_per_byte'],
    plans=studies.markdown_table(
      ['run', 'LR policy', 'batch schedule (tokens)'],
      [[k, p.lr_text, f'`{p.batch_text}`'] for k, p in plans.items()],
    ),
    table=table,
    claims=''.join(f'{x}\n' for x in evidence.claim_lines(r['claims'])),
    noise=noise,
    figures=''.join(f'\n{x}' for x in _common.figure_lines(r['figures'])),
  )


check, run, main = _common.entry_points(Lm, get_config)

if __name__ == '__main__':
  app.run(main)
