r"""Let lrjax choose: the recipe against hand-tuned defaults and random search.

For each seed, `lrjax.recipe.recommend` probes the task (the LR range test
at `--recipe_probe_batch`, then a short run measuring the noise scale
B_simple) and returns an LR policy and a batch schedule for a budget of
`--epochs`; the recipe is then trained. It is compared with:

- `hand-tuned`: `--baseline_lr` at `--baseline_batch` (by default the
  `decay` schedule of experiments.ramp's digits flagfile, tuned by hand);
- `random search`: `--random_trials` runs with LR log-uniform in
  [`--random_lr_min`, `--random_lr_max`] and a batch drawn from
  `--random_batches`, each a cosine to 0, sharing the recipe's total
  compute (its probes included) equally; the best trial by test accuracy
  is reported (selection on the test split: optimistic for random search,
  as the data has no separate validation split).

With `--recipe_only` it prints the recipe and stops (the README's "let
lrjax choose" command).

  python -m experiments.recipe --flagfile=experiments/flagfiles/recipe_digits.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from experiments import _common, _runs

PROBE_BATCH = flags.DEFINE_integer(
  'recipe_probe_batch', 32, 'Batch of the probes (divisible by 4).'
)
RANGE_STEPS = flags.DEFINE_integer(
  'recipe_range_steps', 100, 'Updates of the LR range test.'
)
NOISE_UPDATES = flags.DEFINE_integer(
  'recipe_noise_updates', 50, 'Updates of the noise-scale probe.'
)
SUGGESTION = flags.DEFINE_enum(
  'recipe_suggestion',
  'minimum_over_10',
  ['steepest', 'minimum_over_10', 'valley'],
  "The range test's suggestion the recipe uses.",
)
CONTINUABLE = flags.DEFINE_bool(
  'recipe_continuable', False, 'Prefer WSD over cosine when not ramping.'
)
RECIPE_ONLY = flags.DEFINE_bool(
  'recipe_only', False, 'Print the recipe of the first seed and stop.'
)
BASELINE_LR = flags.DEFINE_string(
  'baseline_lr',
  'multistep(0.3,milestones=10/20/30,gamma=0.3333)',
  'The hand-tuned LR policy over epochs.',
)
BASELINE_BATCH = flags.DEFINE_integer(
  'baseline_batch', 32, 'The hand-tuned batch size.'
)
RANDOM_TRIALS = flags.DEFINE_integer(
  'random_trials', 4, 'Trials of the random search (0: none).'
)
RANDOM_LR_MIN = flags.DEFINE_float('random_lr_min', 1e-3, 'Smallest LR.')
RANDOM_LR_MAX = flags.DEFINE_float('random_lr_max', 1.0, 'Largest LR.')
RANDOM_BATCHES = flags.DEFINE_list(
  'random_batches', ['16', '32', '64', '128', '256'], 'Batches to draw.'
)
_common.register_bound('recipe_probe_batch', 4)
_common.register_bound('recipe_range_steps', 2)
_common.register_bound('recipe_noise_updates', 1)
_common.register_bound('baseline_batch', 1)
_common.register_bound('random_trials', 0)
_common.register_bound('random_lr_min', 0.0, strict=True)


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
  """The comparison: common settings, probes, baseline, random search."""

  common: _common.CommonConfig = _common.CommonConfig()
  probe_batch: int = 32
  range_steps: int = 100
  noise_updates: int = 50
  suggestion: str = 'minimum_over_10'
  continuable: bool = False
  recipe_only: bool = False
  baseline_lr: str = 'multistep(0.3,milestones=10/20/30,gamma=0.3333)'
  baseline_batch: int = 32
  random_trials: int = 4
  random_lr_min: float = 1e-3
  random_lr_max: float = 1.0
  random_batches: tuple[int, ...] = (16, 32, 64, 128, 256)

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    from lrjax import schedules

    if self.probe_batch % 4:
      raise ValueError(
        f'--recipe_probe_batch={self.probe_batch} must be divisible by 4 '
        '(the noise probe slices it in 4)'
      )
    try:
      schedules.parse(self.baseline_lr)
    except ValueError as e:
      raise ValueError(f'--baseline_lr={self.baseline_lr!r}: {e}') from None
    if not self.random_lr_max > self.random_lr_min:
      raise ValueError(
        f'--random_lr_max={self.random_lr_max} must be > --random_lr_min='
        f'{self.random_lr_min}'
      )
    if not self.random_batches or min(self.random_batches) < 1:
      raise ValueError('--random_batches must be positive integers')


def get_config() -> RecipeConfig:
  """Builds the typed config from the parsed flags."""
  try:
    batches = tuple(int(b) for b in RANDOM_BATCHES.value)
  except ValueError as e:
    raise app.UsageError(f'--random_batches must be integers: {e}') from None
  return RecipeConfig(
    common=_common.common_config(),
    probe_batch=PROBE_BATCH.value,
    range_steps=RANGE_STEPS.value,
    noise_updates=NOISE_UPDATES.value,
    suggestion=SUGGESTION.value,
    continuable=CONTINUABLE.value,
    recipe_only=RECIPE_ONLY.value,
    baseline_lr=BASELINE_LR.value,
    baseline_batch=BASELINE_BATCH.value,
    random_trials=RANDOM_TRIALS.value,
    random_lr_min=RANDOM_LR_MIN.value,
    random_lr_max=RANDOM_LR_MAX.value,
    random_batches=batches,
  )


def choose(config: RecipeConfig, seed: int, workdir: str) -> dict:
  """The recipe of one seed (cached in recipe.json)."""
  from lrjax import recipe
  from lrjax import train as lrtrain

  path = os.path.join(workdir, 'recipe.json')
  if os.path.exists(path):
    with open(path) as fh:
      return json.load(fh)
  c = config.common
  task_config = _common.train_config(c, batch=c.batch_size, lr=c.lr, seed=seed)
  r = recipe.recommend(
    lrtrain.resolve_task(task_config),
    recipe.Budget(epochs=c.epochs),
    optimizer=c.optimizer,
    momentum=c.momentum,
    weight_decay=c.weight_decay,
    num_devices=c.num_devices or 1,
    max_device_batch=c.max_device_batch,
    probe_batch=config.probe_batch,
    range_test_steps=config.range_steps,
    noise_updates=config.noise_updates,
    suggestion=config.suggestion,
    continuable=config.continuable,
    seed=seed,
  )
  os.makedirs(workdir, exist_ok=True)
  out = {
    **_common.jsonable(dataclasses.asdict(r)),
    'probe_fraction': r.probe_fraction,
    'summary': r.summary(),
  }
  _common.write_json(path, out)
  return out


def random_trials(config: RecipeConfig, seed: int, epochs: float) -> list:
  """The random search's (lr, batch, policy) trials for one seed."""
  rng = np.random.default_rng(1000 + seed)
  lo, hi = np.log(config.random_lr_min), np.log(config.random_lr_max)
  trials = []
  for _ in range(config.random_trials):
    lr = float(f'{np.exp(rng.uniform(lo, hi)):.4g}')
    b = int(rng.choice(config.random_batches))
    trials.append((lr, b, f'cosine({lr:g},length={epochs:g})'))
  return trials


def check(config: RecipeConfig) -> None:
  """Checks the settings and the data before anything trains or is written.

  Raises:
    ValueError: naming the flag and the fix.
    FileNotFoundError: for a dataset that is not prepared.
  """
  config.validate()
  _common.check_common(config.common)


def run(
  config: RecipeConfig,
  workdir: str,
  *,
  with_flags: bool = False,
  overwrite: bool = False,
):
  """Chooses, trains and compares; writes the table, figure and report."""
  check(config)
  with _common.experiment_workdir(workdir, config, with_flags=with_flags):
    return _run(config, workdir, overwrite)


def _run(config: RecipeConfig, workdir: str, overwrite: bool):
  train_run = functools.partial(_runs.train_run, overwrite=overwrite)
  c = config.common
  if config.recipe_only:
    seed = c.seeds[0]
    chosen = choose(config, seed, os.path.join(workdir, f'seed{seed}'))
    _common.write_outputs(
      workdir, {'recipe': chosen}, chosen['summary'] + '\n', chosen['summary']
    )
    return {'recipe': chosen}
  n = None
  groups = {'recipe': [], 'hand-tuned': [], 'random search': []}
  chosen_all, trials_all = {}, {}
  for seed in c.seeds:
    seed_dir = os.path.join(workdir, f'seed{seed}')
    chosen = choose(config, seed, seed_dir)
    chosen_all[seed] = chosen
    recipe_run = train_run(
      'recipe',
      seed,
      _common.train_config(
        c, batch=chosen['batch'], lr=chosen['lr'], seed=seed
      ),
      os.path.join(seed_dir, 'recipe'),
    )
    groups['recipe'].append(
      (recipe_run, chosen['probe_examples'], chosen['lr'], chosen['batch'])
    )
    base = train_run(
      'hand-tuned',
      seed,
      _common.train_config(
        c, batch=config.baseline_batch, lr=config.baseline_lr, seed=seed
      ),
      os.path.join(seed_dir, 'hand_tuned'),
    )
    groups['hand-tuned'].append(
      (base, 0, config.baseline_lr, str(config.baseline_batch))
    )
    n = chosen['budget_examples'] / c.epochs
    if config.random_trials:
      total = chosen['budget_examples'] + chosen['probe_examples']
      epochs = float(f'{total / n / config.random_trials:.4g}')
      trials = random_trials(config, seed, epochs)
      runs = [
        train_run(
          f'random{i}',
          seed,
          _common.train_config(
            c, batch=b, lr=policy, seed=seed, num_epochs=epochs
          ),
          os.path.join(seed_dir, f'random{i}'),
        )
        for i, (_, b, policy) in enumerate(trials)
      ]
      trials_all[seed] = [
        {'lr': lr, 'batch': b, 'test_accuracy': r.summary['test_accuracy']}
        for (lr, b, _), r in zip(trials, runs, strict=True)
      ]
      best = int(np.argmax([r.summary['test_accuracy'] for r in runs]))
      examples = sum(r.summary['examples_seen'] for r in runs)
      groups['random search'].append(
        (
          runs[best],
          examples - runs[best].summary['examples_seen'],
          trials[best][2],
          str(trials[best][1]),
        )
      )
  if not config.random_trials:
    del groups['random search']
  rows, lines = [], []
  for name, entries in groups.items():
    acc = [e[0].summary['test_accuracy'] for e in entries]
    updates = [e[0].summary['num_updates'] for e in entries]
    examples = [e[0].summary['examples_seen'] + e[1] for e in entries]
    mean, std = _common.mean_std(acc)
    rows.append(
      {
        'method': name,
        'test_accuracy_mean': mean,
        'test_accuracy_std': std,
        'updates_mean': float(np.mean(updates)),
        'examples_with_probes_mean': float(np.mean(examples)),
        'lr': [e[2] for e in entries],
        'batch': [e[3] for e in entries],
      }
    )
    lines.append(
      [
        name,
        _common.fmt_mean_std(acc, 100),
        f'{np.mean(updates):.0f}',
        f'{np.mean(examples):.0f}',
        f'`{entries[0][2]}`',
        f'`{entries[0][3]}`',
      ]
    )
  table = _common.markdown_table(
    [
      'method',
      'test accuracy %',
      'updates',
      'examples (probes incl.)',
      'LR (first seed)',
      'batch (first seed)',
    ],
    lines,
  )
  verdict = _verdict(groups)
  figures = _figures(groups, trials_all, workdir)
  results = {
    'experiment': 'recipe',
    'rows': rows,
    'recipes': chosen_all,
    'random_trials': trials_all,
    'verdict': verdict,
    'figures': figures,
  }
  report = '\n'.join(
    [
      '# Let lrjax choose: recipe vs hand-tuned vs random search',
      '',
      f'{c.dataset}, model {c.model}, {c.optimizer} (momentum '
      f'{c.momentum:g}, weight decay {c.weight_decay:g}), budget '
      f'{c.epochs:g} epochs, seeds {list(c.seeds)}.',
      '',
      table,
      '## The recipe (first seed)',
      '',
      '```',
      chosen_all[c.seeds[0]]['summary'],
      '```',
      '',
      '## Verdict',
      '',
      *verdict,
      *_common.figure_lines(figures),
    ]
  )
  _common.write_outputs(workdir, results, table, report)
  return results


def _verdict(groups) -> list[str]:
  acc = {
    k: [e[0].summary['test_accuracy'] for e in v] for k, v in groups.items()
  }
  updates = {
    k: float(np.mean([e[0].summary['num_updates'] for e in v]))
    for k, v in groups.items()
  }
  lines = []
  for other in [k for k in acc if k != 'recipe']:
    held, diff, tol = _common.within_variation(acc['recipe'], acc[other])
    if held is None:
      word = 'is not tested (1 seed) against'
    elif held:
      word = 'ties with'
    elif diff > 0:
      word = 'beats'
    else:
      word = 'LOSES to'
    lines.append(
      f'- The recipe {word} {other}: {100 * diff:+.2f} points of test '
      f'accuracy (tolerance {100 * tol:.2f}, two pooled standard '
      f'deviations), with {updates["recipe"]:.0f} updates against '
      f'{updates[other]:.0f}.'
    )
  return lines


def _figures(groups, trials_all, workdir) -> dict[str, str]:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  names = list(groups)
  for i, name in enumerate(names):
    acc = [100 * e[0].summary['test_accuracy'] for e in groups[name]]
    ax.scatter([i] * len(acc), acc, zorder=3)
    ax.bar(i, np.mean(acc), alpha=0.4)
  ax.set_xticks(range(len(names)), names)
  lows = [
    100 * e[0].summary['test_accuracy'] for v in groups.values() for e in v
  ]
  ax.set_ylim(max(0, min(lows) - 5), 100)
  ax.set_ylabel('test accuracy (%)')
  ax.set_title('Recipe against hand-tuned and random search (each seed)')
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'recipe.png'), dpi=120)
  figures = {'recipe.png': 'Test accuracy of each method, every seed'}
  if trials_all:
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [t for ts in trials_all.values() for t in ts]
    sc = ax.scatter(
      [t['lr'] for t in pts],
      [t['batch'] for t in pts],
      c=[100 * t['test_accuracy'] for t in pts],
      cmap='viridis',
    )
    fig.colorbar(sc, label='test accuracy (%)')
    ax.set_xscale('log')
    ax.set_yscale('log', base=2)
    ax.set_xlabel('learning rate')
    ax.set_ylabel('batch size')
    ax.set_title('Random-search trials')
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, 'random_search.png'), dpi=120)
    figures['random_search.png'] = 'Random-search trials: LR, batch, accuracy'
  plt.close('all')
  return figures


def main(argv: Sequence[str]) -> None:
  done = _common.run_main(argv, 'recipe', get_config, run, check)
  if done is None:
    return
  _common.print_report_path(done[1])


if __name__ == '__main__':
  app.run(main)
