r"""LRBench++ at small scale: LR policies for fine-tuning versus from scratch.

Jin et al. (2023) argue that the LR is tuned differently for fine-tuning a
pretrained language model than for training from scratch (LLaMA-7B on
Alpaca, 3 epochs, batch 128, AdamW, LRs 1e-5 to 6e-5). Here at CPU size:
pretrain once on `--corpus` (cached in ``workdir/pretrain``), then fine-tune
on `--finetune_corpus` and train from scratch on it, every policy at every
LR, and compare LRBench's utility, cost to target, robustness and
confidence. `--lr` is refused; `--epochs` and `--eval_every` are the
fine-tuning's.

  python -m experiments.finetune --flagfile=experiments/flagfiles/finetune_cpu.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from typing import Any

import numpy as np
from absl import app

from experiments import _common, _lm_common
from experiments._lm_common import token_setting
from lrjax import evidence, schedules, studies
from lrjax.studies import setting

POLICIES = schedules.FINETUNE_POLICIES
MODES = ('finetune', 'scratch')
#: The common flags this experiment reads with its own defaults.
DEFAULTS = {'epochs': 3.0, 'eval_every': 1.0}


def _distinct(ok, message: str) -> studies.Check:
  return lambda v: (
    None if v and all(map(ok, v)) and len(set(v)) == len(v) else message
  )


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  """The LRBench++ experiment (each field but the common flags is a flag)."""

  common: _lm_common.LmCommon = _lm_common.LmCommon()
  finetune_corpus: str = setting('python_text/stdlib')
  """The second domain, fine-tuned on (and trained on from scratch): a
  --corpus-style name."""
  finetune_sequences: int = setting(
    2048, check=studies.at_least(0, ' (0 = all)')
  )
  """Fine-tuning examples: this many evenly spaced sequences of the second
  domain's training split (0: all of them)."""
  pretrain_tokens: str | int = token_setting('256Ki')
  """Tokens of the (cached) pretraining run."""
  pretrain_batch_size: int = setting(
    0, check=studies.at_least(0, ' (0 = --batch_size)')
  )
  """Batch of the pretraining, in sequences (0: --batch_size)."""
  pretrain_lr: float = setting(1e-3, check=studies.above(0))
  """Peak LR of the pretraining (warmup, cosine to 10%)."""
  pretrain_warmup_tokens: str | int = token_setting('8Ki')
  """LR warmup of the pretraining, in tokens."""
  epochs: float = DEFAULTS['epochs']
  eval_every: float = DEFAULTS['eval_every']
  lr_grid: tuple[float, ...] = setting(
    (1e-4, 3e-4, 1e-3, 3e-3),
    check=_distinct(
      lambda x: x > 0 and math.isfinite(x),
      'must be distinct positive LRs, e.g. 1e-4,1e-3',
    ),
  )
  """Peak LRs every policy is tried with, in both modes."""
  policies: tuple[str, ...] = setting(
    POLICIES,
    help_text=f'LR policies compared, from {", ".join(POLICIES)}.',
    check=_distinct(
      POLICIES.__contains__,
      f'must be distinct names from {",".join(POLICIES)}',
    ),
  )
  warmup_fraction: float = setting(
    0.1, check=lambda v: None if 0 < v < 1 else 'must be in (0, 1)'
  )
  """Warmup of the warmup_* policies, as a fraction of the fine-tuning length
  (Alpaca fine-tuning scripts use 0.03)."""
  target_bits_per_byte: float = setting(3.0, check=studies.above(0))
  """Validation bits per byte at which the cost to target is counted."""

  def __post_init__(self) -> None:
    _lm_common.parse_token_settings(self)

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    c = self.common
    c.validate()
    studies.check_settings(self)
    studies.check_settings(
      _common.CommonConfig(epochs=self.epochs, eval_every=self.eval_every)
    )
    _lm_common.check_sequences(self, c.seq_len)
    problems = {
      f'--finetune_corpus={self.finetune_corpus} is the pretraining corpus: '
      'fine-tune on a second domain (e.g. python_text/stdlib after '
      'python_text/docs)': self.finetune_corpus == c.corpus,
      f'--pretrain_warmup_tokens={self.pretrain_warmup_tokens} must be < '
      f'--pretrain_tokens={self.pretrain_tokens}': (
        self.pretrain_warmup_tokens >= self.pretrain_tokens
      ),
      f'--eval_every={self.eval_every} must be <= --epochs={self.epochs}': (
        not self.eval_every <= self.epochs
      ),
    }
    studies.refuse(problems)


studies.define_flags(FinetuneConfig)


def get_config() -> FinetuneConfig:
  """Builds the typed config from the parsed flags."""
  _lm_common.refuse_flags(
    'finetune', {'lr': '--lr_grid (and --pretrain_lr for the pretraining)'}
  )
  common = studies.read_flags(_common.CommonConfig, defaults=DEFAULTS)
  own = {k: getattr(common, k) for k in DEFAULTS}
  return studies.read_flags(
    FinetuneConfig, common=_lm_common.lm_common(), **own
  )


def _kind(name: str) -> str:
  return 'state' if name == 'plateau' else 'formula'


def pretrain(
  config: FinetuneConfig, workdir: str, overwrite: bool = False
) -> tuple[studies.Run, Any]:
  """Pretrains once (or reuses / resumes ``workdir/pretrain``): warmup,
  cosine to 10%, a constant batch, always keeping a checkpoint.

  Returns:
    The finished run and its final parameters (a pure dict).
  """
  from lrjax import batch as lbatch
  from lrjax import train as lrtrain

  c, lr, seed = config.common, config.pretrain_lr, config.common.seeds[0]
  train, evaluate = _lm_common.train_and_evaluation(c)
  t, n, tokens = c.seq_len, train.num_examples, config.pretrain_tokens
  total = lbatch.to_epochs(tokens, t, n)
  warm = lbatch.to_epochs(config.pretrain_warmup_tokens, t, n)
  size = (config.pretrain_batch_size or c.batch_size) * t
  cosine = schedules.cosine(
    lr, length=total - warm, end=float(f'{0.1 * lr:.12g}')
  )
  tc = _lm_common.train_config(
    c,
    batch=lbatch.parse(f'stages({size}tok@{tokens}tok,seq={t})', n),
    lr=schedules.warmup(cosine, length=warm),
    seed=seed,
    eval_every=total / 4,
    keep_checkpoints=1,
    noise=lrtrain.NoiseConfig(enabled=False),
  )
  directory = os.path.join(workdir, 'pretrain')
  task = _lm_common.make_task(c, train, evaluate, seed, name='pretrain')
  done = studies.train_run(
    'pretrain', seed, tc, directory, task, overwrite=overwrite
  )
  state, _ = lrtrain.load_checkpoint(directory)
  return done, state['params']


# ------------------------------------------------------------ runs


def train_config(
  config: FinetuneConfig, name: str, lr: float, seed: int, num_examples: int
):
  """The trainer's config for one (policy, LR, seed), either mode."""
  from lrjax import batch as lbatch

  c = config.common
  batch = lbatch.BatchSchedule(
    (lbatch.Stage(c.batch_size, epochs=config.epochs),), num_examples
  )
  plateau = {'plateau_metric': 'test_loss'} if name == 'plateau' else {}
  return _lm_common.train_config(
    c,
    batch=batch,
    lr=schedules.finetune_policy(
      name, lr, config.epochs, config.warmup_fraction
    ),
    seed=seed,
    eval_every=config.eval_every,
    # A high LR of the grid may diverge: skip its non-finite updates (and
    # score what it ends at) rather than stop the whole grid.
    nan_policy='skip',
    **plateau,
  )


class Finetune(studies.Study):
  """Pretrains once, then fine-tunes and trains from scratch every policy
  at every LR and seed."""

  name = 'finetune'

  def check(self) -> None:
    self.config.validate()

  def run(self, context: studies.Context) -> studies.Report:
    import jax

    from lrjax import lm
    from lrjax import train as lrtrain

    config, c = self.config, self.config.common
    pre_run, params = pretrain(config, context.workdir, context.overwrite)
    split, valid = (
      _lm_common.load_split(c, name, config.finetune_corpus)
      for name in ('train', c.validation_split)
    )
    train = split.evenly_spaced(config.finetune_sequences)
    evaluate = valid.evenly_spaced(c.eval_sequences)
    n = int(train['tokens'].shape[0])

    def task(mode: str, seed: int, name: str = 'lm'):
      start = params if mode == 'finetune' else None
      return _lm_common.make_task(
        c, train, evaluate, seed, params=start, name=name
      )

    # Epoch 0 of the curves: the pretrained and a random model.
    start = {
      m: lrtrain.evaluate(t, *t.init(jax.random.key(0)))
      for m, t in ((m, task(m, c.seeds[0])) for m in MODES)
    }
    keys = list(itertools.product(MODES, config.policies, config.lr_grid))
    trials = [
      studies.Trial(
        f'{mode}/{name}/lr{lr:g}',
        c.seeds,
        functools.partial(train_config, config, name, lr, num_examples=n),
        functools.partial(task, mode, name=f'{mode} {name} lr={lr:g}'),
      )
      for mode, name, lr in keys
    ]
    runs = dict(zip(keys, context.train(trials).values(), strict=True))
    target = config.target_bits_per_byte
    grid = [_grid_row(*k, g, target, c.seq_len) for k, g in runs.items()]
    summary = _summary_rows(grid, config)
    table, grid_table = _tables(grid, summary, config)
    base = lm.count_baselines(split, valid)
    results = {
      'experiment': 'finetune',
      'pretrain': {
        'corpus': c.corpus,
        'tokens': pre_run.summary['examples_seen'] * c.seq_len,
        'validation': pre_run.summary['test_metrics'],
        'wall_seconds': pre_run.summary['wall_seconds'],
      },
      'finetune_corpus': config.finetune_corpus,
      'interpreter': split.metadata.get('interpreter'),
      'finetune_sequences': n,
      'eval_sequences': int(evaluate['tokens'].shape[0]),
      'baselines_bits_per_byte': {k: v / math.log(2) for k, v in base.items()},
      'initial': start,
      'grid': grid,
      'summary': summary,
      'claims': _contrast(summary, grid, config),
      'figures': _figures(runs, summary, start, config, context.workdir),
    }
    text = _report(config, results, table, grid_table)
    return studies.Report(results, table, text)


# ------------------------------------------------------------ metrics


def _confidence_on_correct(run: studies.Run) -> float:
  """Mean top probability on correctly predicted bytes (final params)."""
  accuracy = _lm_common.final(run, 'accuracy')
  if not accuracy > 0:
    return math.nan
  return _lm_common.final(run, 'correct_confidence') / accuracy


def _to_target(run: studies.Run, target: float, seq_len: int) -> dict | None:
  """Updates, tokens and training seconds until the validation bits per
  byte first reach ``target`` (None if never)."""
  from lrjax import metrics

  hits = np.nonzero(run.test.get('bits_per_byte', np.zeros(0)) <= target)[0]
  if not hits.size:
    return None
  step, steps = float(run.test['step'][hits[0]]), run.train.get('step', [])
  rates = run.train.get('steps_per_sec', np.zeros(0))
  seconds = math.nan
  if len(steps):
    seconds = float(np.interp(step, steps, metrics.train_seconds(steps, rates)))
  tokens = float(run.test['examples'][hits[0]]) * seq_len
  return {'updates': step, 'tokens': tokens, 'seconds': seconds}


def _grid_row(mode, name, lr, group, target: float, seq_len: int) -> dict:
  """The metrics of one (mode, policy, LR) over its seeds."""
  each = lambda f: evidence.mean_std([f(r) for r in group])  # noqa: E731
  final = [_lm_common.final(r, 'bits_per_byte') for r in group]
  reached = [x for r in group if (x := _to_target(r, target, seq_len))]
  return {
    'mode': mode,
    'policy': name,
    'kind': _kind(name),
    'lr': lr,
    'seeds': len(group),
    'final_bits_per_byte': evidence.mean_std(final),
    'final_bits_per_byte_per_seed': final,
    'best_epoch_bits_per_byte': each(
      lambda r: float(np.nanmin(r.test['bits_per_byte']))
    ),
    'final_loss': each(lambda r: _lm_common.final(r, 'loss')),
    'accuracy': each(lambda r: _lm_common.final(r, 'accuracy')),
    'confidence_on_correct': each(_confidence_on_correct),
    'reached_target': f'{len(reached)}/{len(group)}',
    **{
      f'{k}_to_target': evidence.mean_std([x[k] for x in reached])
      for k in ('updates', 'tokens', 'seconds')
    },
    'num_updates': group[0].summary['num_updates'],
    'wall_seconds': each(lambda r: r.summary['wall_seconds']),
  }


#: What a policy's summary row copies from its row at the best LR.
_AT_BEST = (
  'final_bits_per_byte best_epoch_bits_per_byte confidence_on_correct '
  'reached_target updates_to_target tokens_to_target'
).split()


def _summary_rows(grid, config: FinetuneConfig) -> list[dict]:
  """One row per (mode, policy): its best LR and its robustness."""
  out = []
  for mode, name in itertools.product(MODES, config.policies):
    rows = [r for r in grid if (r['mode'], r['policy']) == (mode, name)]
    means = np.array([r['final_bits_per_byte'][0] for r in rows])
    finite = np.isfinite(means).any()
    best = rows[int(np.nanargmin(means))] if finite else rows[0]
    seed_std = [r['final_bits_per_byte'][1] for r in rows]
    spread = np.nanmax(means) - np.nanmin(means) if finite else math.nan
    out.append(
      {
        'mode': mode,
        'policy': name,
        'kind': _kind(name),
        'best_lr': best['lr'],
        **{k: best[k] for k in _AT_BEST},
        'lr_spread': float(spread),
        'seed_std': float(np.nanmean(seed_std)),
        'per_lr': {f'{r["lr"]:g}': r['final_bits_per_byte'][0] for r in rows},
      }
    )
  return out


def _rank(value: float) -> float:
  """``value``, or infinity for NaN (a diverged run ranks last)."""
  return value if value is not None and math.isfinite(value) else math.inf


def _contrast(summary, grid, config: FinetuneConfig) -> list[dict]:
  """The paper's contrast, from the numbers: best LRs, best policies, the
  policy's and the LR's influence, fine-tuning against scratch."""
  final = lambda r: r['final_bits_per_byte'][0]  # noqa: E731
  cells = {(r['mode'], r['policy'], r['lr']): r for r in grid}
  by_mode = {m: [r for r in summary if r['mode'] == m] for m in MODES}
  best_lr, spread, lr_spread, best, per_seed = {}, {}, {}, {}, {}
  for m, rows in by_mode.items():
    # The LR that is best on average over the policies.
    per_lr = {
      lr: np.nanmean([r['per_lr'][f'{lr:g}'] for r in rows])
      for lr in config.lr_grid
    }
    best_lr[m] = min(per_lr, key=lambda lr, p=per_lr: _rank(p[lr]))
    finals = [final(r) for r in rows]
    spread[m] = float(np.nanmax(finals) - np.nanmin(finals))
    lr_spread[m] = float(np.nanmean([r['lr_spread'] for r in rows]))
    best[m] = min(rows, key=lambda r: _rank(final(r)))
    cell = cells.get((m, best[m]['policy'], best[m]['best_lr']), {})
    per_seed[m] = cell.get('final_bits_per_byte_per_seed', [])
  smaller = sum(
    f['best_lr'] < s['best_lr'] for f, s in zip(*by_mode.values(), strict=True)
  )
  held, diff, tol = evidence.within_variation(
    per_seed['finetune'], per_seed['scratch']
  )

  def vs(values: dict, spec: str = '.3f') -> str:
    return (
      f'{values["finetune"]:{spec}} (fine-tune) vs '
      f'{values["scratch"]:{spec}} (scratch)'
    )

  at_best = {
    m: f'{final(r):.3f} ({r["policy"]}, LR {r["best_lr"]:g})'
    for m, r in best.items()
  }
  claims = [
    (
      'fine-tuning is best at a smaller LR than training from scratch',
      best_lr['finetune'] < best_lr['scratch'],
      f'best LR averaged over the policies: {vs(best_lr, "g")}; smaller '
      f'for {smaller} of {len(config.policies)} policies',
    ),
    (
      'the LR policy matters less in fine-tuning than from scratch',
      spread['finetune'] < spread['scratch'],
      'spread of the final bits/byte over the policies at their best LRs: '
      + vs(spread),
    ),
    (
      'fine-tuning is less sensitive to the LR than training from scratch',
      lr_spread['finetune'] < lr_spread['scratch'],
      f'mean spread of the final bits/byte over the LR grid: {vs(lr_spread)}',
    ),
    (
      'fine-tuning the pretrained model beats training from scratch at '
      'equal budget',
      diff < 0 and not held,
      f'best final bits/byte {at_best["finetune"]} vs {at_best["scratch"]}, '
      f'tolerance ±{tol:.3f}',
    ),
  ]
  seeds = len(config.common.seeds)
  return [evidence.claim(c, bool(h), d, seeds) for c, h, d in claims]


# ------------------------------------------------------------ report


def _pair(pair, digits: int = 3) -> str:
  """A (mean, std) pair: the mean alone when the std is 0."""
  mean, std = pair
  if mean is None or not math.isfinite(mean):
    return 'n/a'
  text = f'{mean:.{digits}f}'
  return f'{text} ± {std:.{digits}f}' if std else text


def _tables(grid, summary, config: FinetuneConfig) -> tuple[str, str]:
  """The per-policy table (best LR, LRBench metrics) and the whole grid's."""
  rows = {(r['mode'], r['policy']): r for r in summary}
  cells = {(r['mode'], r['policy'], r['lr']): r for r in grid}
  columns = {
    'best LR': lambda r: f'{r["best_lr"]:g}',
    'bits/byte': lambda r: _pair(r['final_bits_per_byte']),
    f'updates to {config.target_bits_per_byte:g}': lambda r: (
      f'{_pair(r["updates_to_target"], 0)} ({r["reached_target"]})'
    ),
    'LR spread': lambda r: f'{r["lr_spread"]:.3f}',
  }
  summary_table = studies.markdown_table(
    ['policy', 'kind', *(f'{m}: {h}' for m in MODES for h in columns)]
    + ['fine-tune: confidence on correct'],
    [
      [f'`{p}`', _kind(p)]
      + [cell(rows[m, p]) for m in MODES for cell in columns.values()]
      + [_pair(rows['finetune', p]['confidence_on_correct'])]
      for p in config.policies
    ],
  )
  pairs = list(itertools.product(MODES, config.lr_grid))
  grid_table = studies.markdown_table(
    ['policy', *(f'{m} LR {lr:g}' for m, lr in pairs)],
    [
      [
        f'`{p}`',
        *(_pair(cells[m, p, lr]['final_bits_per_byte']) for m, lr in pairs),
      ]
      for p in config.policies
    ],
  )
  return summary_table, grid_table


def _figures(runs, summary, start, config, workdir) -> dict[str, str]:
  """Final bits per byte against the LR, and the curves at the best LRs
  (from the initial model's, at epoch 0), per policy and seed."""
  from lrjax import plots

  lrs, seeds = sorted(config.lr_grid), range(len(config.common.seeds))
  best = {(r['mode'], r['policy']): r['best_lr'] for r in summary}
  bpb = lambda run: _lm_common.final(run, 'bits_per_byte')  # noqa: E731
  sensitivity = {
    p: [
      {'lr': np.array(lrs, dtype=float)}
      | {m: np.array([bpb(runs[m, p, lr][i]) for lr in lrs]) for m in MODES}
      for i in seeds
    ]
    for p in config.policies
  }
  curves = {p: [{} for _ in seeds] for p in config.policies}
  for p, i, m in itertools.product(config.policies, seeds, MODES):
    test = runs[m, p, best[m, p]][i].test
    curves[p][i]['epoch'] = np.concatenate([[0.0], test['epoch']])
    curves[p][i][m] = np.concatenate(
      [[start[m]['bits_per_byte']], test['bits_per_byte']]
    )
  labels = {'lr': 'peak learning rate', 'epoch': 'epochs'}
  for data, x, name, what in (
    (sensitivity, 'lr', 'lr_sensitivity.png', 'final val bits/byte'),
    (curves, 'epoch', 'curves.png', 'val bits/byte'),
  ):
    plots.plot_curves(
      data,
      x=x,
      y=MODES,
      labels=labels | {m: f'{m}: {what}' for m in MODES},
      logx=x == 'lr',
      path=os.path.join(workdir, name),
    )
  return {
    'lr_sensitivity.png': 'Final validation bits per byte against the peak '
    'LR, per policy: fine-tuning (top) and from scratch (bottom)',
    'curves.png': 'Validation bits per byte after each epoch, each policy '
    'at its best LR (epoch 0: the pretrained or the random initialisation)',
  }


def _report(config, results, table, grid_table) -> str:
  c, r = config.common, results
  return _common.render(
    'finetune',
    c=c,
    r=r,
    config=config,
    pre=r['pretrain'],
    pre_bpb=r['pretrain']['validation'].get('bits_per_byte', math.nan),
    source=r['interpreter'] or 'a TFDS dataset',
    updates=r['grid'][0]['num_updates'],
    lrs=', '.join(f'{x:g}' for x in config.lr_grid),
    seeds=', '.join(map(str, c.seeds)),
    init=r['initial'],
    base=r['baselines_bits_per_byte'],
    table=table,
    grid_table=grid_table,
    claims='\n'.join(evidence.claim_lines(r['claims'])),
    figures=''.join(f'\n{x}' for x in _common.figure_lines(r['figures'])),
  )


check, run, main = _common.entry_points(Finetune, get_config)

if __name__ == '__main__':
  app.run(main)
