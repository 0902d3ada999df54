r"""Benchmark learning-rate policies side by side (LRBench, Wu et al. 2019).

Each `--policy` is a policy in its text form over epochs (see
`lrjax.schedules.parse`): formula-based (`multistep(...)`, `cosine(...)`),
state-based (`reduce_on_plateau(...)`), or exploration-based: a text with the
placeholder `{lr}` (e.g. `cosine({lr},length=30)`) first runs the LR range
test and puts its suggested LR in place of `{lr}`. Every policy gets the same
budget (epochs, batch size, model, data) and the same seeds.

Metrics per policy (mean and std over seeds), computed from the final
parameters on the test split: top-1 and top-5 accuracy, loss; updates and
training seconds to reach `--target_accuracy`; robustness as the test minus
train loss gap; mean and spread of the confidence on correct predictions; the
spread over classes of the per-class mean confidence (CDAC, Jin et al. 2023);
and any `--metric=module:function` of `(probs, labels) -> float`.

  python -m experiments.lrbench --flagfile=experiments/flagfiles/lrbench_digits.cfg
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import app, flags, logging

from experiments import _common, _finder, _flags, _runs

PLACEHOLDER = '{lr}'

POLICIES = flags.DEFINE_multi_string(
  'policy',
  [
    'constant(0.1)',
    'multistep(0.1,milestones=10/15,gamma=0.1)',
    'cosine(0.1,length=20)',
  ],
  'A learning-rate policy over epochs in its text form; repeat the flag for '
  f'several. A text with {PLACEHOLDER} runs the LR range test first.',
)
TARGET_ACCURACY = flags.DEFINE_float(
  'target_accuracy',
  0.95,
  'Test accuracy at which to count updates and seconds to target.',
)
METRICS = flags.DEFINE_multi_string(
  'metric',
  [],
  'Extra metric module:function, called as f(probs, labels) -> float on the '
  'test split; repeat the flag for several.',
)


def _parse_policy(text: str) -> Any:
  from lrjax import schedules

  return schedules.parse(text.replace(PLACEHOLDER, '1'))


def _parses(texts: Sequence[str]) -> bool:
  """Whether every text parses; raises ValidationError naming a bad one."""
  if not texts:
    return False
  for text in texts:
    try:
      _parse_policy(text)
    except (ValueError, TypeError, KeyError) as e:
      raise flags.ValidationError(
        f'--policy={text!r} does not parse: {e}'
      ) from None
  return True


flags.register_validator(
  'policy',
  _parses,
  message='--policy must be one or more policy texts that '
  'lrjax.schedules.parse reads, e.g. cosine(0.1,length=20)',
)
flags.register_validator(
  'target_accuracy',
  lambda v: 0 < v <= 1,
  message='--target_accuracy must be in (0, 1]',
)


def _imports(paths: Sequence[str]) -> bool:
  try:
    return all(callable(_common.import_function(p)) for p in paths)
  except (ImportError, AttributeError, ValueError):
    return False


flags.register_validator(
  'metric',
  _imports,
  message='--metric must name importable functions as package.module:function',
)


@dataclasses.dataclass(frozen=True)
class LrBenchConfig:
  """The benchmark: common settings, policies, target and extra metrics."""

  common: _common.CommonConfig = _common.CommonConfig()
  policies: tuple[str, ...] = (
    'constant(0.1)',
    'cosine(0.1,length=20)',
  )
  target_accuracy: float = 0.95
  # `package.module:function` paths (from --metric) or the functions.
  metrics: tuple[Any, ...] = ()
  finder: _finder.FinderConfig = _finder.FinderConfig()

  def validate(self) -> None:
    """Raises ValueError naming the field and the fix."""
    if not self.policies:
      raise ValueError('policies=() must name at least one policy')
    for text in self.policies:
      try:
        _parse_policy(text)
      except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f'policies: {text!r} does not parse: {e}') from e
    if not 0 < self.target_accuracy <= 1:
      raise ValueError(f'target_accuracy={self.target_accuracy} not in (0, 1]')
    self.finder.validate()


def get_config() -> LrBenchConfig:
  """Builds the typed config from the parsed flags."""
  return LrBenchConfig(
    common=_common.common_config(),
    policies=tuple(POLICIES.value),
    target_accuracy=TARGET_ACCURACY.value,
    metrics=tuple(METRICS.value),
    finder=_flags.read(_finder.FinderConfig),
  )


# ------------------------------------------------------------ metrics


def _softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def prediction_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
  """Accuracy, loss and confidence metrics of predicted probabilities.

  Args:
    probs: [n, classes] predicted probabilities.
    labels: [n] integer labels.

  Returns:
    `top1`, `top5` accuracy, `loss` (mean cross-entropy), `confidence_mean`
    and `confidence_std` (probability of the predicted class over correctly
    classified examples), and `cdac_std`: the standard deviation over classes
    of each class's mean confidence on its correct predictions.
  """
  labels = np.asarray(labels)
  n, classes = probs.shape
  pred = probs.argmax(axis=1)
  correct = pred == labels
  k = min(5, classes)
  topk = np.argsort(-probs, axis=1)[:, :k]
  top5 = (topk == labels[:, None]).any(axis=1)
  loss = -np.log(np.clip(probs[np.arange(n), labels], 1e-12, None))
  conf = probs.max(axis=1)[correct]
  per_class = [
    conf_c.mean()
    for c in range(classes)
    if (conf_c := probs.max(axis=1)[correct & (labels == c)]).size
  ]
  return {
    'top1': float(correct.mean()),
    'top5': float(top5.mean()),
    'loss': float(loss.mean()),
    'confidence_mean': float(conf.mean()) if conf.size else math.nan,
    'confidence_std': float(conf.std()) if conf.size else math.nan,
    'cdac_std': float(np.std(per_class)) if per_class else math.nan,
  }


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
    probs.append(_softmax(np.asarray(apply(variables, batch['image']))))
    labels.append(np.asarray(batch['label']))
  return np.concatenate(probs), np.concatenate(labels)


def _after(
  common: _common.CommonConfig,
  seed: int,
  metric_fns: Mapping[str, Callable[[np.ndarray, np.ndarray], float]],
) -> Callable[[Any, str], dict[str, Any]]:
  def after(result: Any, workdir: str) -> dict[str, Any]:
    variables = _common.final_variables(result, workdir)
    probs, labels = predict(common, variables, 'test', seed)
    test = prediction_metrics(probs, labels)
    train_probs, train_labels = predict(common, variables, 'train', seed)
    train = prediction_metrics(train_probs, train_labels)
    extra = {name: float(fn(probs, labels)) for name, fn in metric_fns.items()}
    return {
      'final': {
        **test,
        'train_loss': train['loss'],
        'train_top1': train['top1'],
        'generalization_gap': test['loss'] - train['loss'],
        **extra,
      }
    }

  return after


def _train_seconds(run: _runs.Run) -> np.ndarray:
  """Training seconds at each logged step, from the logged step rates."""
  steps = run.train.get('step', np.zeros(0))
  rates = run.train.get('steps_per_sec', np.zeros(0))
  previous = np.concatenate([[0.0], steps[:-1]])
  with np.errstate(divide='ignore', invalid='ignore'):
    dt = np.where(rates > 0, (steps - previous) / rates, 0.0)
  return np.cumsum(np.nan_to_num(dt))


def _to_target(run: _runs.Run, target: float) -> tuple[float, float]:
  """(updates, training seconds) until the test accuracy first >= target."""
  step = _runs.first_reaching(run, 'accuracy', target, 'step')
  if math.isnan(step):
    return math.nan, math.nan
  seconds = _train_seconds(run)
  steps = run.train.get('step', np.zeros(0))
  if not steps.size:
    return step, math.nan
  return step, float(np.interp(step, steps, seconds))


# ------------------------------------------------------------ run


def resolve_policies(
  config: LrBenchConfig, workdir: str
) -> dict[str, dict[str, Any]]:
  """Label -> {text, policy text used, range test} for every policy."""
  resolved = {}
  finder_result = None
  for text in config.policies:
    entry: dict[str, Any] = {'text': text, 'kind': _kind(text)}
    if PLACEHOLDER in text:
      if finder_result is None:
        finder_result = _finder.range_test(
          config.common,
          config.finder,
          config.common.seeds[0],
          os.path.join(workdir, 'range_test'),
        )
      lr = float(finder_result['suggested_lr'])
      entry['suggested_lr'] = lr
      entry['policy'] = text.replace(PLACEHOLDER, f'{lr:.4g}')
      label = f'range test: {entry["policy"]}'
    else:
      entry['policy'] = text
      label = text
    resolved[label] = entry
  return resolved


def _kind(text: str) -> str:
  if PLACEHOLDER in text:
    return 'exploration'
  if 'plateau' in text.split('(')[0]:
    return 'state'
  return 'formula'


def train_config(config: LrBenchConfig, policy_text: str, seed: int):
  """The trainer's config for one seed of one policy."""
  from lrjax import schedules

  c = config.common
  return _common.train_config(
    c, batch=c.batch_size, lr=schedules.parse(policy_text), seed=seed
  )


def check(config: LrBenchConfig) -> None:
  """Checks the settings, the devices, the data and every run's trainer
  config (a range-test policy with LR 1 in place of ``{lr}``) before
  anything trains.

  Raises:
    ValueError: naming the field (or flag) and the fix.
    FileNotFoundError: for a dataset that is not prepared.
  """
  config.validate()
  n = _common.check_common(config.common)
  _common.check_batch('--batch_size', config.common.batch_size, n)
  for text in config.policies:
    policy = text.replace(PLACEHOLDER, '1')
    configs = [train_config(config, policy, s) for s in config.common.seeds]
    try:
      _common.check_train_configs(configs, n)
    except ValueError as e:
      raise ValueError(f'--policy={text!r}: {e}') from None


def run(
  config: LrBenchConfig,
  workdir: str,
  *,
  with_flags: bool = False,
  overwrite: bool = False,
):
  """Trains every policy and seed; writes the ranked table, figures, report.

  Finished runs of the same config are reused, unfinished ones resume.

  Raises:
    ValueError: for a bad setting, before anything trains.
    lrjax.train.ConfigMismatchError: for a run of another config in
      ``workdir``.
    lrjax.train.WorkdirLockedError: when another process holds ``workdir``.
  """
  check(config)
  with _common.experiment_workdir(workdir, config, with_flags=with_flags):
    return _run(config, workdir, overwrite)


def _run(config: LrBenchConfig, workdir: str, overwrite: bool):
  metric_fns = {
    (m if isinstance(m, str) else m.__name__): (
      _common.import_function(m) if isinstance(m, str) else m
    )
    for m in config.metrics
  }
  if overwrite:
    path = os.path.join(workdir, 'range_test', 'range_test.json')
    if os.path.exists(path):
      os.remove(path)
  policies = resolve_policies(config, workdir)
  runs: dict[str, list[_runs.Run]] = {}
  seeds = config.common.seeds
  for index, (label, entry) in enumerate(policies.items()):
    for j, seed in enumerate(seeds, 1):
      run_dir = os.path.join(workdir, 'runs', f'policy{index}', f'seed{seed}')
      runs.setdefault(label, []).append(
        _runs.train_run(
          label,
          seed,
          train_config(config, entry['policy'], seed),
          run_dir,
          _common.make_task(config.common, seed),
          after=_after(config.common, seed, metric_fns),
          extra={'metrics': sorted(metric_fns)},
          overwrite=overwrite,
          progress=f'policy {index + 1}/{len(policies)}, seed {j}/{len(seeds)}',
        )
      )
  rows = rank_with_ties(
    _rows(runs, policies, config.target_accuracy, list(metric_fns))
  )
  table = _table(rows, config.target_accuracy, list(metric_fns))
  figures = _figures(runs, workdir)
  results = {
    'experiment': 'lrbench',
    'target_accuracy': config.target_accuracy,
    'rows': rows,
    'figures': figures,
  }
  _common.write_outputs(
    workdir, results, table, _report(config, rows, table, figures)
  )
  return results


_METRIC_KEYS = (
  'top1',
  'top5',
  'loss',
  'generalization_gap',
  'confidence_mean',
  'confidence_std',
  'cdac_std',
)


def _rows(runs, policies, target, extra) -> list[dict[str, Any]]:
  rows = []
  for label, group in runs.items():
    finals = [r.summary['final'] for r in group]
    row: dict[str, Any] = {
      'policy': label,
      'kind': policies[label]['kind'],
      'text': policies[label]['policy'],
    }
    for key in (*_METRIC_KEYS, *extra):
      row[key] = _common.mean_std([f[key] for f in finals])
    row['top1_per_seed'] = [f['top1'] for f in finals]
    reach = [_to_target(r, target) for r in group]
    reached = [u for u, _ in reach if not math.isnan(u)]
    row['reached_target'] = f'{len(reached)}/{len(group)}'
    row['updates_to_target'] = _common.mean_std(reached)
    row['seconds_to_target'] = _common.mean_std(
      [s for _, s in reach if not math.isnan(s)]
    )
    row['num_updates'] = _common.mean_std(
      [r.summary['num_updates'] for r in group]
    )
    row['wall_seconds'] = _common.mean_std(
      [r.summary['wall_seconds'] for r in group]
    )
    rows.append(row)
  return rows


def rank_with_ties(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Ranks policies by mean top-1 accuracy, tying those within seed noise.

  Rows are sorted by mean top-1 (highest first). Walking down the list,
  a row shares the rank of its group's leader (the group's first row) when
  the two agree within their seed-to-seed variation
  (:func:`experiments._common.within_variation` on ``top1_per_seed``);
  otherwise it starts a new group, ranked by its position (competition
  ranking: 1, 1, 3). With one seed in any row nothing can be told from the
  noise: every row is ranked by its position and ``tied`` is None.

  Args:
    rows: one dict per policy with ``top1_per_seed`` (a list of accuracies).

  Returns:
    The rows, sorted, each with ``rank`` (int) and ``tied``: True when
    another row shares its rank, False when none does, None when the
    ranking is not tested (one seed).

  Examples:
    >>> rows = rank_with_ties([
    ...   {'policy': 'a', 'top1_per_seed': [0.90, 0.92]},
    ...   {'policy': 'b', 'top1_per_seed': [0.91, 0.92]},
    ...   {'policy': 'c', 'top1_per_seed': [0.70, 0.71]},
    ... ])
    >>> [(r['policy'], r['rank'], r['tied']) for r in rows]
    [('b', 1, True), ('a', 1, True), ('c', 3, False)]
  """
  ordered = sorted(rows, key=lambda r: -float(np.mean(r['top1_per_seed'])))
  tested = all(len(r['top1_per_seed']) >= 2 for r in ordered)
  leader: dict[str, Any] | None = None
  for position, row in enumerate(ordered, 1):
    if (
      tested
      and leader is not None
      and _common.within_variation(
        leader['top1_per_seed'], row['top1_per_seed']
      )[0]
    ):
      row['rank'] = leader['rank']
    else:
      row['rank'] = position
      leader = row
  ranks = [r['rank'] for r in ordered]
  for row in ordered:
    row['tied'] = ranks.count(row['rank']) > 1 if tested else None
  return ordered


def _ms(pair: tuple[float, float], scale: float = 1.0, digits: int = 2) -> str:
  mean, std = pair
  if math.isnan(mean):
    return 'n/a'
  return f'{mean * scale:.{digits}f} ± {std * scale:.{digits}f}'


def _table(rows, target, extra) -> str:
  header = [
    'rank',
    'policy',
    'kind',
    'top-1 %',
    'top-5 %',
    'test loss',
    f'updates to {target:.0%}',
    f'train s to {target:.0%}',
    'loss gap (test - train)',
    'confidence on correct',
    'confidence spread',
    'CDAC spread',
    'wall s',
    *extra,
  ]
  lines = []
  for r in rows:
    lines.append(
      [
        f'={r["rank"]}' if r['tied'] else str(r['rank']),
        f'`{r["policy"]}`',
        r['kind'],
        _ms(r['top1'], 100),
        _ms(r['top5'], 100),
        _ms(r['loss'], 1, 3),
        _ms(r['updates_to_target'], 1, 0) + f' ({r["reached_target"]})',
        _ms(r['seconds_to_target'], 1, 1),
        _ms(r['generalization_gap'], 1, 3),
        _ms(r['confidence_mean'], 1, 3),
        _ms(r['confidence_std'], 1, 3),
        _ms(r['cdac_std'], 1, 3),
        _ms(r['wall_seconds'], 1, 1),
        *[_ms(r[k], 1, 4) for k in extra],
      ]
    )
  return _common.markdown_table(header, lines)


def _figures(runs, workdir) -> dict[str, str]:
  import matplotlib.pyplot as plt

  from lrjax import plots

  labels = {
    'epoch': 'epochs',
    'step': 'parameter updates',
    'lr': 'learning rate',
    'accuracy': 'test accuracy',
  }
  train = {k: [r.train for r in g] for k, g in runs.items()}
  test = {k: [r.test for r in g] for k, g in runs.items()}
  lrs = np.concatenate(
    [np.asarray(r['lr'], float) for g in train.values() for r in g]
  )
  lrs = lrs[np.isfinite(lrs) & (lrs > 0)]
  plots.plot_curves(
    train,
    x='epoch',
    y='lr',
    labels=labels,
    band='range',
    # A log axis once the policies span a decade or more.
    logy=bool(lrs.size and lrs.max() >= 10 * lrs.min()),
    path=os.path.join(workdir, 'lr_curves.png'),
  )
  plots.plot_curves(
    test,
    x='epoch',
    y='accuracy',
    labels=labels,
    path=os.path.join(workdir, 'accuracy_vs_epochs.png'),
  )
  costs = [('wall_seconds', 'wall seconds', 'accuracy_vs_cost.png')]
  # Against updates only where the policies' update counts differ: with one
  # batch size for all (the usual case) the plot would be one vertical line.
  updates = {r.summary['num_updates'] for g in runs.values() for r in g}
  if len(updates) > 1:
    costs.append(
      ('num_updates', 'parameter updates', 'accuracy_vs_updates.png')
    )
  for cost, xlabel, name in costs:
    plots.plot_accuracy_vs_cost(
      {
        k: [(r.summary[cost], r.summary['final']['top1']) for r in g]
        for k, g in runs.items()
      },
      xlabel=xlabel,
      logx=False,
      path=os.path.join(workdir, name),
    )
  plt.close('all')
  figures = {
    'lr_curves.png': 'Learning rate in force against epochs',
    'accuracy_vs_epochs.png': 'Test accuracy against epochs',
    'accuracy_vs_cost.png': 'Final test accuracy against wall time',
  }
  if len(updates) > 1:
    figures['accuracy_vs_updates.png'] = 'Final test accuracy against updates'
  return figures


def _report(config, rows, table, figures) -> str:
  c = config.common
  best = rows[0]
  lines = [
    '# Learning-rate policies compared (LRBench)',
    '',
    f'{c.dataset}, model {c.model}, {c.optimizer} with momentum '
    f'{c.momentum:g}, batch {c.batch_size}, {c.epochs:g} epochs, seeds '
    f'{", ".join(map(str, c.seeds))}. Ranked by mean top-1 test accuracy; '
    'policies whose top-1 agrees with the leader of their group within '
    'seed-to-seed variation (|difference| <= 2 x pooled seed std) share '
    'its rank (`=k`). Every metric is mean ± std over seeds.',
    '',
    table,
    '## Findings',
    '',
  ]
  top = [r for r in rows if r['rank'] == 1]
  if best['tied'] is None:
    lines.append(
      f'- Highest mean top-1: `{best["policy"]}` ({best["kind"]}-based, '
      f'{_ms(best["top1"], 100)} %); the ranking is **not tested (1 seed)**: '
      'with one seed the differences cannot be told from seed noise.'
    )
  elif len(top) > 1:
    lines.append(
      f'- No single best policy: {len(top)} tie within seed noise for rank '
      '1: '
      + ', '.join(f'`{r["policy"]}` ({_ms(r["top1"], 100)} %)' for r in top)
      + '.'
    )
  else:
    lines.append(
      f'- Best policy: `{best["policy"]}` ({best["kind"]}-based) with '
      f'{_ms(best["top1"], 100)} % top-1, ahead of the next beyond seed '
      'noise.'
    )
  for kind in ('formula', 'state', 'exploration'):
    of_kind = [r for r in rows if r['kind'] == kind]
    if of_kind:
      lines.append(
        f'- Best {kind}-based: `{of_kind[0]["policy"]}` '
        f'({_ms(of_kind[0]["top1"], 100)} %, rank {of_kind[0]["rank"]}).'
      )
  fastest = min(
    (r for r in rows if not math.isnan(r['updates_to_target'][0])),
    key=lambda r: r['updates_to_target'][0],
    default=None,
  )
  if fastest is not None:
    lines.append(
      f'- Fewest updates to {config.target_accuracy:.0%} test accuracy: '
      f'`{fastest["policy"]}` ({fastest["updates_to_target"][0]:.0f}).'
    )
  else:
    lines.append(
      f'- No policy reached {config.target_accuracy:.0%} test accuracy.'
    )
  lines += [
    '',
    'Robustness is the test minus train loss gap of the final parameters; '
    'confidence is the predicted-class probability on correctly classified '
    'test examples; CDAC spread is the standard deviation over classes of '
    "each class's mean confidence on its correct predictions. Training "
    'seconds to target come from the logged step rates (evaluation excluded).',
  ]
  lines += _common.figure_lines(figures)
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  done = _common.run_main(argv, 'lrbench', get_config, run, check)
  if done is not None:
    logging.info('report: %s', os.path.join(done[1], 'report.md'))
    _common.print_report_path(done[1])


if __name__ == '__main__':
  app.run(main)
