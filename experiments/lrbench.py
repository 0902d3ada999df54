r"""LR policies benchmarked side by side (LRBench, Wu et al. 2019).

Every `--policy` (formula-, state- or, with ``{lr}``, exploration-based: the
LR range test fills it in) trains on the same budget and seeds; the final
parameters are scored by `lrjax.evaluation.prediction_metrics` (plus
`--metric`s) and the policies ranked by top-1, ties within seed noise.

  python -m experiments.lrbench --flagfile=experiments/flagfiles/lrbench_digits.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import app

from experiments import _common, _finder
from lrjax import evidence, studies
from lrjax.studies import setting

PLACEHOLDER = '{lr}'


def _parses(texts: Sequence[str]) -> str | None:
  from lrjax import schedules

  if not texts:
    return 'must be one or more policy texts, e.g. cosine(0.1,length=20)'
  for text in texts:
    try:
      schedules.parse(text.replace(PLACEHOLDER, '1'))
    except (ValueError, TypeError, KeyError) as e:
      return f'must be policy texts lrjax.schedules.parse reads: {text!r}: {e}'
  return None


def _imports(paths: Sequence[Any]) -> str | None:
  try:
    if all(callable(_function(p)) for p in paths):
      return None
  except (ImportError, AttributeError, ValueError):
    pass
  return 'must name importable functions as package.module:function'


def _function(metric: Any) -> Callable[..., Any]:
  return _common.import_function(metric) if isinstance(metric, str) else metric


@dataclasses.dataclass(frozen=True)
class LrBenchConfig:
  """The benchmark's settings (each of its own fields is its flag)."""

  common: _common.CommonConfig = _common.CommonConfig()
  policy: tuple[str, ...] = setting(
    (
      'constant(0.1)',
      'multistep(0.1,milestones=10/15,gamma=0.1)',
      'cosine(0.1,length=20)',
    ),
    help_text='A learning-rate policy over epochs in its lrjax.schedules.parse text '
    'form: formula-based (cosine(...), multistep(...)) or state-based '
    '(reduce_on_plateau(...)); repeat the flag for several. A text with '
    f'{PLACEHOLDER} is exploration-based: the LR range test runs first and '
    'its suggested LR takes the placeholder.',
    check=_parses,
    repeated=True,
  )
  target_accuracy: float = setting(
    0.95, check=lambda v: None if 0 < v <= 1 else 'must be in (0, 1]'
  )
  """Test accuracy at which to count updates and seconds to target."""
  # `package.module:function` paths; in process, the functions themselves.
  metric: tuple[str, ...] = setting((), check=_imports, repeated=True)
  """Extra metric module:function, called as f(probs, labels) -> float on the
  test split; repeat the flag for several."""
  finder: _finder.FinderConfig = _finder.FinderConfig()

  def metric_fns(self) -> dict[str, Callable[..., float]]:
    """The extra metrics by name (their path, or the function's name)."""
    return {
      m if isinstance(m, str) else m.__name__: _function(m) for m in self.metric
    }


studies.define_flags(LrBenchConfig)


def get_config() -> LrBenchConfig:
  """Builds the typed config from the parsed flags."""
  return studies.read_flags(
    LrBenchConfig,
    common=_common.common_config(),
    finder=studies.read_flags(_finder.FinderConfig),
  )


# ------------------------------------------------------------ metrics


def predict(
  common: _common.CommonConfig, variables: Any, split: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Predicted probabilities and labels of a whole split (eval mode)."""
  import jax

  from lrjax import models

  ds = _common.load_split(common, split, seed)
  model = models.get(common.model, num_classes=ds.num_classes)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  probs, labels = [], []
  for start in range(0, ds.num_examples, 512):
    batch = ds.take(np.arange(start, min(start + 512, ds.num_examples)))
    logits = np.asarray(apply(variables, batch['image']))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs.append(e / e.sum(axis=1, keepdims=True))
    labels.append(np.asarray(batch['label']))
  return np.concatenate(probs), np.concatenate(labels)


def _after(
  common: _common.CommonConfig,
  metric_fns: Mapping[str, Callable[..., float]],
  result: Any,
  workdir: str,
) -> dict[str, Any]:
  """The run's final metrics, from its final parameters (test and train)."""
  from lrjax.evaluation import prediction_metrics

  # The seed picks the data only for --dataset=synthetic.
  seed = studies.read_json(os.path.join(workdir, 'config.json'))['seed']
  variables = studies.final_variables(result, workdir)
  probs, labels = predict(common, variables, 'test', seed)
  test = prediction_metrics(probs, labels)
  train = prediction_metrics(*predict(common, variables, 'train', seed))
  extra = {name: float(fn(probs, labels)) for name, fn in metric_fns.items()}
  gap = test['loss'] - train['loss']
  train = {'train_loss': train['loss'], 'train_top1': train['top1']}
  return {'final': {**test, **train, 'generalization_gap': gap, **extra}}


def _to_target(run: studies.Run, target: float) -> tuple[float, float]:
  """(updates, training seconds) until the test accuracy first >= target;
  the seconds come from the logged step rates (evaluation excluded)."""
  step = studies.first_reaching(run, 'accuracy', target, 'step')
  steps = run.train.get('step', np.zeros(0))
  if math.isnan(step) or not steps.size:
    return step, math.nan
  from lrjax import metrics

  rates = run.train.get('steps_per_sec', np.zeros(0))
  seconds = metrics.train_seconds(steps, rates)
  return step, float(np.interp(step, steps, seconds))


def _kind(text: str) -> str:
  if PLACEHOLDER in text:
    return 'exploration'
  return 'state' if 'plateau' in text.split('(')[0] else 'formula'


# ------------------------------------------------------------ study


class LrBench(studies.Study):
  """Every policy trained on the same budget and seeds, then ranked."""

  name = 'lrbench'

  def check(self) -> None:
    """Every run's trainer config, a ``{lr}`` read as LR 1."""
    config = self.config
    studies.check_settings(config)
    config.finder.validate()
    n = _common.check_common(config.common)
    _common.check_batch('--batch_size', config.common.batch_size, n)
    for text in config.policy:
      try:
        studies.check_trials(self._trials([text.replace(PLACEHOLDER, '1')]), n)
      except ValueError as e:
        raise ValueError(f'--policy={text!r}: {e}') from None

  def _trials(self, texts: Sequence[str]) -> list[studies.Trial]:
    """A trial per policy text, its runs in ``runs/policy<index>``."""
    from lrjax import schedules

    c = self.config.common
    extra = {'metrics': sorted(self.config.metric_fns())}
    after = functools.partial(_after, c, self.config.metric_fns())
    return [
      studies.Trial(
        f'policy{index}',
        c.seeds,
        lambda seed, text=text: _common.train_config(
          c, batch=c.batch_size, lr=schedules.parse(text), seed=seed
        ),
        lambda seed: _common.make_task(c, seed),
        after=after,
        extra=extra,
        describe=text,
      )
      for index, text in enumerate(texts)
    ]

  def _resolve(self, workdir: str, overwrite: bool) -> dict[str, dict]:
    """Label -> {text, kind, policy text used, suggested LR} per policy;
    a ``{lr}`` takes the range test's suggestion (one test, the first
    seed's, in ``range_test/``)."""
    resolved, test, c = {}, None, self.config.common
    for text in self.config.policy:
      entry = {'text': text, 'kind': _kind(text), 'policy': text}
      if PLACEHOLDER in text:
        test = test or _finder.range_test(
          c,
          self.config.finder,
          c.seeds[0],
          os.path.join(workdir, 'range_test'),
          overwrite=overwrite,
        )
        entry['suggested_lr'] = lr = float(test['suggested_lr'])
        entry['policy'] = text.replace(PLACEHOLDER, f'{lr:.4g}')
        text = 'range test: ' + entry['policy']
      resolved[text] = entry
    return resolved

  def run(self, context: studies.Context) -> studies.Report:
    """Resolves the policies (the range test first), trains, ranks."""
    policies = self._resolve(context.workdir, context.overwrite)
    texts = [p['policy'] for p in policies.values()]
    trained = context.train(self._trials(texts))
    runs = dict(zip(policies, trained.values(), strict=True))
    target = self.config.target_accuracy
    extra = list(self.config.metric_fns())
    rows = evidence.rank_with_ties(_rows(runs, policies, target, extra))
    table = _table(rows, target, extra)
    figures = _figures(runs, context.workdir)
    results = {
      'experiment': 'lrbench',
      'target_accuracy': target,
      'rows': rows,
      'figures': figures,
    }
    report = _report(self.config, rows, table, figures)
    return studies.Report(results, table, report)


# ------------------------------------------------------------ report


# The table's metric columns: (row key, header, scale, digits).
_COLUMNS = (
  ('top1', 'top-1 %', 100, 2),
  ('top5', 'top-5 %', 100, 2),
  ('loss', 'test loss', 1, 3),
  ('updates_to_target', 'updates to {:.0%}', 1, 0),
  ('seconds_to_target', 'train s to {:.0%}', 1, 1),
  ('generalization_gap', 'loss gap (test - train)', 1, 3),
  ('confidence_mean', 'confidence on correct', 1, 3),
  ('confidence_std', 'confidence spread', 1, 3),
  ('cdac_std', 'CDAC spread', 1, 3),
  ('wall_seconds', 'wall s', 1, 1),
)
# The final metrics (summary['final']) averaged over seeds, in column order.
_NOT_FINAL = ('updates_to_target', 'seconds_to_target', 'wall_seconds')
_FINAL_KEYS = [k for k, *_ in _COLUMNS if k not in _NOT_FINAL]


def _rows(runs, policies, target, extra) -> list[dict[str, Any]]:
  rows = []
  for label, group in runs.items():
    values = {
      k: [r.summary['final'][k] for r in group] for k in (*_FINAL_KEYS, *extra)
    }
    for k in ('num_updates', 'wall_seconds'):
      values[k] = [r.summary[k] for r in group]
    to_target = zip(*[_to_target(r, target) for r in group], strict=True)
    updates, seconds = (
      [v for v in vs if not math.isnan(v)] for vs in to_target
    )
    values |= {'updates_to_target': updates, 'seconds_to_target': seconds}
    rows.append(
      {
        'policy': label,
        'kind': policies[label]['kind'],
        'text': policies[label]['policy'],
        **{k: evidence.mean_std(v) for k, v in values.items()},
        'top1_per_seed': values['top1'],
        'reached_target': f'{len(updates)}/{len(group)}',
      }
    )
  return rows


def _ms(pair: tuple[float, float], scale: float = 1.0, digits: int = 2) -> str:
  mean, std = pair
  if math.isnan(mean):
    return 'n/a'
  return f'{mean * scale:.{digits}f} ± {std * scale:.{digits}f}'


def _table(rows, target, extra) -> str:
  header = [h.format(target) for _, h, _, _ in _COLUMNS]
  lines = []
  for r in rows:
    cells = {k: _ms(r[k], scale, digits) for k, _, scale, digits in _COLUMNS}
    cells['updates_to_target'] += f' ({r["reached_target"]})'
    rank = f'={r["rank"]}' if r['tied'] else str(r['rank'])
    extras = [_ms(r[k], 1, 4) for k in extra]
    lines.append(
      [rank, f'`{r["policy"]}`', r['kind'], *cells.values(), *extras]
    )
  return studies.markdown_table(
    ['rank', 'policy', 'kind', *header, *extra], lines
  )


def _figures(runs, workdir) -> dict[str, str]:
  from lrjax import plots

  labels = dict(epoch='epochs', lr='learning rate', accuracy='test accuracy')
  train = {k: [r.train for r in g] for k, g in runs.items()}
  lrs = np.concatenate([r['lr'] for g in train.values() for r in g]) * 1.0
  lrs = lrs[np.isfinite(lrs) & (lrs > 0)]
  # A log axis once the policies span a decade or more.
  logy = bool(lrs.size and lrs.max() >= 10 * lrs.min())
  plots.plot_curves(
    train,
    y='lr',
    labels=labels,
    band='range',
    logy=logy,
    path=os.path.join(workdir, 'lr_curves.png'),
  )
  plots.plot_curves(
    {k: [r.test for r in g] for k, g in runs.items()},
    labels=labels,
    path=os.path.join(workdir, 'accuracy_vs_epochs.png'),
  )
  figures = {
    'lr_curves.png': 'Learning rate in force against epochs',
    'accuracy_vs_epochs.png': 'Test accuracy against epochs',
  }
  costs = {'cost': ('wall_seconds', 'wall seconds', 'wall time')}
  # Against updates only where the policies' update counts differ: with one
  # batch size for all (the usual case) the plot would be one vertical line.
  if len({r.summary['num_updates'] for g in runs.values() for r in g}) > 1:
    costs['updates'] = ('num_updates', 'parameter updates', 'updates')
  for what, (cost, xlabel, caption) in costs.items():
    name = f'accuracy_vs_{what}.png'
    figures[name] = f'Final test accuracy against {caption}'
    plots.plot_accuracy_vs_cost(
      {
        k: [(r.summary[cost], r.summary['final']['top1']) for r in g]
        for k, g in runs.items()
      },
      xlabel=xlabel,
      logx=False,
      path=os.path.join(workdir, name),
    )
  return figures


def _report(config, rows, table, figures) -> str:
  c, best, target = config.common, rows[0], config.target_accuracy
  top = ', '.join(
    f'`{r["policy"]}` ({_ms(r["top1"], 100)} %)' for r in rows if r['rank'] == 1
  )
  leader = {
    None: f'- Highest mean top-1: {top}; the ranking is **not tested (1 '
    'seed)**: with one seed the differences cannot be told from seed noise.',
    True: f'- No single best policy: these tie within seed noise for rank 1: '
    f'{top}.',
    False: f'- Best policy: {top}, ahead of the next beyond seed noise.',
  }[best['tied']]
  # Rows are ranked: the first of a kind is its best.
  kinds = {r['kind']: r for r in reversed(rows)}
  reached = [r for r in rows if not math.isnan(r['updates_to_target'][0])]
  fastest = min(reached, key=lambda r: r['updates_to_target'][0], default=None)
  findings = [
    leader,
    *(
      f'- Best {kind}-based: `{r["policy"]}` ({_ms(r["top1"], 100)} %, '
      f'rank {r["rank"]}).'
      for kind in ('formula', 'state', 'exploration')
      if (r := kinds.get(kind))
    ),
    f'- Fewest updates to {target:.0%} test accuracy: `{fastest["policy"]}` '
    f'({fastest["updates_to_target"][0]:.0f}).'
    if fastest
    else f'- No policy reached {target:.0%} test accuracy.',
  ]
  return _common.render(
    'lrbench',
    c=c,
    seeds=', '.join(map(str, c.seeds)),
    table=table,
    findings='\n'.join(findings),
    figures='\n'.join(_common.figure_lines(figures)),
  )


check, run, main = _common.entry_points(LrBench, get_config)

if __name__ == '__main__':
  app.run(main)
