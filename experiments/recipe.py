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

With `--recipe_task=lm` the task is experiments.lm's byte-level
transformer (its flags: `--corpus`, `--seq_len`, `--lm_*`, the budget
`--train_tokens`): the hand-tuned run is experiments.lm's `cosine` run
(`--lr` at `--batch_size` sequences, warmed up over `--warmup_tokens`,
cosine to `--final_lr_fraction` of the peak), each random trial is the
same policy at its LR and batch over its share of the tokens, and the
metric is the validation loss (nats; lower is better; the best random
trial is selected on it).

With `--recipe_only` it prints the recipe and stops (the README's "let
lrjax choose" command); with it, `--budget_seconds` plans for a wall-clock
budget instead (the probes time the training step, see
`lrjax.recipe.recommend`).

  python -m experiments.recipe --flagfile=experiments/flagfiles/recipe_digits.cfg
  python -m experiments.recipe --flagfile=experiments/flagfiles/recipe_lm.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags

from experiments import _common, _lm_common, _runs
from experiments import lm as lm_exp

TASK = flags.DEFINE_enum(
  'recipe_task',
  'image',
  ['image', 'lm'],
  "What the recipe is for: 'image' (--dataset, --model, the budget "
  "--epochs) or 'lm' (experiments.lm's transformer on --corpus, the budget "
  '--train_tokens).',
)

PROBE_BATCH = flags.DEFINE_integer(
  'recipe_probe_batch', 32, 'Batch of the probes (divisible by 4).'
)
RANGE_STEPS = flags.DEFINE_integer(
  'recipe_range_steps', 100, 'Updates of the LR range test.'
)
MIN_LR = flags.DEFINE_float('recipe_min_lr', 1e-5, "The range test's first LR.")
MAX_LR = flags.DEFINE_float('recipe_max_lr', 10.0, "The range test's last LR.")
MAX_ACCUMULATION = flags.DEFINE_integer(
  'recipe_max_accumulation',
  1,
  'Accumulation steps the recipe may use beyond --max_device_batch (its '
  'largest batch is devices x max_device_batch x this).',
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
BUDGET_SECONDS = flags.DEFINE_float(
  'budget_seconds',
  0.0,
  'Plan the recipe for this many seconds of training instead of --epochs '
  '(--train_tokens for the LM), converted into examples with the step '
  'times the probes measure (0: off; needs --recipe_only, since the '
  'comparison trains every method on equal examples).',
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
_common.register_bound('recipe_min_lr', 0.0, strict=True)
_common.register_bound('recipe_max_accumulation', 1)
_common.register_bound('budget_seconds', 0.0)
_common.register_bound('baseline_batch', 1)
_common.register_bound('random_trials', 0)
_common.register_bound('random_lr_min', 0.0, strict=True)


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
  """The comparison: common settings, probes, baseline, random search.

  ``lm`` is None for an image task (``common`` holds it); for the language
  model it is experiments.lm's config (its ``common`` holds the model, the
  data, the optimizer and the seeds; ``common`` here is then unused), and
  ``baseline_lr``/``baseline_batch`` are its cosine run's.
  """

  common: _common.CommonConfig = _common.CommonConfig()
  lm: Any = None
  probe_batch: int = 32
  range_steps: int = 100
  min_lr: float = 1e-5
  max_lr: float = 10.0
  max_accumulation: int = 1
  noise_updates: int = 50
  suggestion: str = 'minimum_over_10'
  continuable: bool = False
  budget_seconds: float = 0.0
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

    if self.lm is not None:
      self.lm.validate()
    if not self.max_lr > self.min_lr > 0:
      raise ValueError(
        f'--recipe_max_lr={self.max_lr} must be > --recipe_min_lr='
        f'{self.min_lr} > 0'
      )
    if self.budget_seconds < 0 or (
      self.budget_seconds > 0 and not self.recipe_only
    ):
      raise ValueError(
        f'--budget_seconds={self.budget_seconds} must be >= 0, and a '
        'wall-clock budget needs --recipe_only (the comparison trains every '
        'method on equal examples, not equal seconds)'
      )
    devices = (self.common if self.lm is None else self.lm.common).num_devices
    if devices and self.probe_batch % devices:
      raise ValueError(
        f'--recipe_probe_batch={self.probe_batch} must be a multiple of '
        f'--num_devices={devices} (the probes run data parallel)'
      )
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
  lm_config, common = None, _common.CommonConfig()
  if TASK.value == 'lm':
    _lm_common.refuse_flags(
      'recipe --recipe_task=lm',
      {
        'epochs': '--train_tokens (the budget in tokens)',
        'eval_every': '--eval_every_tokens',
        'baseline_lr': '--lr, --warmup_tokens and --final_lr_fraction (the '
        "hand-tuned run is experiments.lm's cosine run)",
        'baseline_batch': '--batch_size',
      },
    )
    # Only experiments.lm's cosine run at a constant batch is compared.
    lm_config = lm_exp.baseline_config()
  else:
    common = _common.common_config()
  return RecipeConfig(
    common=common,
    lm=lm_config,
    probe_batch=PROBE_BATCH.value,
    range_steps=RANGE_STEPS.value,
    min_lr=MIN_LR.value,
    max_lr=MAX_LR.value,
    max_accumulation=MAX_ACCUMULATION.value,
    noise_updates=NOISE_UPDATES.value,
    suggestion=SUGGESTION.value,
    continuable=CONTINUABLE.value,
    budget_seconds=BUDGET_SECONDS.value,
    recipe_only=RECIPE_ONLY.value,
    baseline_lr=BASELINE_LR.value,
    baseline_batch=BASELINE_BATCH.value,
    random_trials=RANDOM_TRIALS.value,
    random_lr_min=RANDOM_LR_MIN.value,
    random_lr_max=RANDOM_LR_MAX.value,
    random_batches=batches,
  )


# The compared metrics live in _runs, shared with experiments.goyal.
Metric = _runs.Metric
ACCURACY = _runs.ACCURACY
VAL_LOSS = _runs.VAL_LOSS
VAL_BPB = _runs.VAL_BPB


def metrics(config: RecipeConfig) -> tuple[Metric, ...]:
  """The compared metrics; the first decides (best trial, verdict)."""
  return (ACCURACY,) if config.lm is None else (VAL_LOSS, VAL_BPB)


def _lm_data(config: RecipeConfig):
  """The LM's training split and evaluation sequences."""
  return _lm_common.train_and_evaluation(config.lm.common)


def _recommend_args(config: RecipeConfig) -> dict[str, Any]:
  """The budget, the optimizer and the hardware `recommend` reads."""
  from lrjax import recipe

  if config.lm is None:
    c = config.common
    budget = recipe.Budget(epochs=c.epochs)
    b2 = None
  else:
    c = config.lm.common
    budget = recipe.Budget(tokens=config.lm.train_tokens, seq_len=c.seq_len)
    b2 = c.b2
  if config.budget_seconds:
    budget = recipe.Budget(seconds=config.budget_seconds)
  return dict(
    budget=budget,
    optimizer=c.optimizer,
    momentum=c.momentum,
    weight_decay=c.weight_decay,
    b2=b2,
    num_devices=c.num_devices or 1,
    max_device_batch=c.max_device_batch,
    max_accumulation=config.max_accumulation,
  )


def choose(
  config: RecipeConfig, seed: int, workdir: str, task: Any = None
) -> dict:
  """The recipe of one seed (cached in recipe.json).

  Args:
    config: the comparison.
    seed: the probes' seed.
    workdir: the seed's directory.
    task: the task to probe (None: the image task the config names).
  """
  from lrjax import recipe

  path = os.path.join(workdir, 'recipe.json')
  if os.path.exists(path):
    with open(path) as fh:
      return json.load(fh)
  if task is None:
    task = _common.make_task(config.common, seed)
  r = recipe.recommend(
    task,
    **_recommend_args(config),
    probe_batch=config.probe_batch,
    range_test_steps=config.range_steps,
    min_lr=config.min_lr,
    max_lr=config.max_lr,
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


def _draw(config: RecipeConfig, seed: int) -> list[tuple[float, int]]:
  """The random search's (lr, batch) draws for one seed."""
  rng = np.random.default_rng(1000 + seed)
  lo, hi = np.log(config.random_lr_min), np.log(config.random_lr_max)
  draws = []
  for _ in range(config.random_trials):
    lr = float(f'{np.exp(rng.uniform(lo, hi)):.4g}')
    draws.append((lr, int(rng.choice(config.random_batches))))
  return draws


def random_trials(config: RecipeConfig, seed: int, epochs: float) -> list:
  """The random search's (lr, batch, policy) trials for one seed."""
  return [
    (lr, b, f'cosine({lr:g},length={epochs:g})')
    for lr, b in _draw(config, seed)
  ]


def lm_trial_config(config: RecipeConfig, lr: float, batch: int, tokens: int):
  """experiments.lm's config of one random LM trial: its cosine run at
  ``lr`` and ``batch`` sequences over ``tokens`` tokens.

  Raises:
    ValueError: when the trial's share of the tokens is too short for the
      warmup or one batch (naming the flags to change).
  """
  lc = config.lm
  trial = dataclasses.replace(
    lc,
    common=dataclasses.replace(lc.common, lr=lr, batch_size=batch),
    train_tokens=tokens,
  )
  try:
    trial.validate()
  except ValueError as e:
    raise ValueError(
      f'a random trial of {tokens} tokens (budget plus probes over '
      f'--random_trials={config.random_trials}): {e}; lower --random_trials '
      'or --warmup_tokens, or raise --train_tokens'
    ) from None
  return trial


def check(config: RecipeConfig) -> None:
  """Checks the settings and the data before anything trains or is written:
  for an image task also the batches against the data and the hand-tuned
  runs' trainer configs (the recipe's and the random trials' depend on
  the probes).

  Raises:
    ValueError: naming the flag and the fix.
    FileNotFoundError: for a dataset that is not prepared.
  """
  config.validate()
  if config.lm is None:
    c = config.common
    n = _common.check_common(c)
    _common.check_batch('--recipe_probe_batch', config.probe_batch, n)
    _common.check_batch('--baseline_batch', config.baseline_batch, n)
    _common.check_batch('--random_batches', max(config.random_batches), n)
    baselines = [
      _common.train_config(
        c, batch=config.baseline_batch, lr=config.baseline_lr, seed=seed
      )
      for seed in c.seeds
    ]
    try:
      _common.check_train_configs(baselines, n)
    except ValueError as e:
      raise ValueError(f'--baseline_lr={config.baseline_lr!r}: {e}') from None


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
    if config.lm is not None:
      return _run_lm(config, workdir, overwrite)
    return _run(config, workdir, overwrite)


def _recipe_only(config: RecipeConfig, workdir: str, seed: int, task=None):
  chosen = choose(config, seed, os.path.join(workdir, f'seed{seed}'), task)
  _common.write_outputs(
    workdir, {'recipe': chosen}, chosen['summary'] + '\n', chosen['summary']
  )
  return {'recipe': chosen}


def _run(config: RecipeConfig, workdir: str, overwrite: bool):
  train_run = functools.partial(_runs.train_run, overwrite=overwrite)
  c = config.common
  if config.recipe_only:
    return _recipe_only(config, workdir, c.seeds[0])
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
      _common.make_task(c, seed),
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
      _common.make_task(c, seed),
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
          _common.make_task(c, seed),
        )
        for i, (_, b, policy) in enumerate(trials)
      ]
      trials_all[seed] = _trial_rows(config, trials, runs)
      groups['random search'].append(
        _best_trial(config, runs, [(p, str(b)) for _, b, p in trials])
      )
  header = (
    f'{c.dataset}, model {c.model}, {c.optimizer} (momentum '
    f'{c.momentum:g}, weight decay {c.weight_decay:g}), budget '
    f'{c.epochs:g} epochs, seeds {list(c.seeds)}.'
  )
  return _compare(
    config, groups, chosen_all, trials_all, workdir, header, unit=None
  )


def _trial_rows(config: RecipeConfig, trials, runs) -> list[dict]:
  return [
    {'lr': t[0], 'batch': t[1], **{m.name: m.of(r) for m in metrics(config)}}
    for t, r in zip(trials, runs, strict=True)
  ]


def _best_trial(config: RecipeConfig, runs, texts) -> tuple:
  """The best trial's entry: (run, the other trials' examples, lr, batch)."""
  best = metrics(config)[0].best([metrics(config)[0].of(r) for r in runs])
  examples = sum(r.summary['examples_seen'] for r in runs)
  return (
    runs[best],
    examples - runs[best].summary['examples_seen'],
    *texts[best],
  )


def _run_lm(config: RecipeConfig, workdir: str, overwrite: bool):
  from lrjax import batch as lbatch

  lc = config.lm
  c = lc.common
  t = c.seq_len
  train, evaluate = _lm_data(config)
  n = train.num_examples

  def task(seed: int, name: str) -> Any:
    return _lm_common.make_task(c, train, evaluate, seed, name=f'lm {name}')

  if config.recipe_only:
    seed = c.seeds[0]
    return _recipe_only(config, workdir, seed, task(seed, 'probes'))
  eval_every = lm_exp.token_epochs(lc.eval_every_tokens, t, n)
  groups = {'recipe': [], 'hand-tuned': [], 'random search': []}
  chosen_all, trials_all = {}, {}
  for seed in c.seeds:
    seed_dir = os.path.join(workdir, f'seed{seed}')

    def train_run(name, config_, task_, seed=seed, seed_dir=seed_dir):
      return _runs.train_run(
        name,
        seed,
        config_,
        os.path.join(seed_dir, name.replace('-', '_')),
        task_,
        overwrite=overwrite,
      )

    chosen = choose(config, seed, seed_dir, task(seed, 'probes'))
    chosen_all[seed] = chosen
    schedule = lbatch.parse(chosen['batch'])
    recipe_run = train_run(
      'recipe',
      _lm_common.train_config(
        c,
        batch=schedule,
        lr=chosen['lr'],
        seed=seed,
        eval_every=eval_every,
      ),
      task(seed, 'recipe'),
    )
    groups['recipe'].append(
      (
        recipe_run,
        chosen['probe_examples'],
        chosen['lr'],
        lm_exp.batch_text(schedule, t),
      )
    )
    plan = lm_exp.build_plans(lc, n)[lm_exp.BASELINE]
    base = train_run(
      'hand-tuned',
      lm_exp.train_config(lc, plan, seed, n),
      task(seed, 'hand-tuned'),
    )
    groups['hand-tuned'].append((base, 0, str(plan.lr), plan.batch_text))
    if config.random_trials:
      total = chosen['budget_examples'] + chosen['probe_examples']
      tokens = int(total // config.random_trials) * t
      trials, runs = [], []
      for i, (lr, b) in enumerate(_draw(config, seed)):
        trial = lm_trial_config(config, lr, b, tokens)
        plan = lm_exp.build_plans(trial, n)[lm_exp.BASELINE]
        trials.append((lr, b, str(plan.lr), plan.batch_text))
        runs.append(
          train_run(
            f'random{i}',
            lm_exp.train_config(trial, plan, seed, n),
            task(seed, f'random{i}'),
          )
        )
      trials_all[seed] = _trial_rows(config, trials, runs)
      groups['random search'].append(
        _best_trial(config, runs, [(p, bt) for _, _, p, bt in trials])
      )
  model = c.transformer()
  base_nats = _lm_common.baselines(
    train, _lm_common.load_split(c, c.validation_split)
  )
  header = (
    f'{c.corpus} ({n:,} training sequences of {t} bytes), transformer '
    f'{c.layers} layers x width {c.width} ({model.num_params:,} '
    f'parameters), {c.optimizer} (beta1 {c.momentum:g}, beta2 {c.b2:g}, '
    f'weight decay {c.weight_decay:g}), budget {lc.train_tokens:,} tokens '
    f'({lc.train_tokens // t:,} sequences), seeds {list(c.seeds)}. The '
    f'hand-tuned run is the cosine run of experiments.lm (LR {c.lr:g}, batch '
    f'{c.batch_size} sequences). Bigram model of the validation split: '
    f'{base_nats["bigram"]:.3f} nats; unigram {base_nats["unigram"]:.3f}.'
  )
  return _compare(
    config, groups, chosen_all, trials_all, workdir, header, unit=('tokens', t)
  )


def _compare(config, groups, chosen_all, trials_all, workdir, header, unit):
  """The table, verdict, figures and report of the three methods.

  ``unit``: None (compute in examples) or ``(name, per_example)``, e.g.
  ``('tokens', seq_len)``.
  """
  if not config.random_trials:
    del groups['random search']
  unit_name, per = ('examples', 1) if unit is None else unit
  ms = metrics(config)
  rows, lines = [], []
  for name, entries in groups.items():
    updates = [e[0].summary['num_updates'] for e in entries]
    examples = [e[0].summary['examples_seen'] + e[1] for e in entries]
    row: dict[str, Any] = {'method': name}
    cells = [name]
    for m in ms:
      values = [m.of(e[0]) for e in entries]
      row[f'{m.name}_mean'], row[f'{m.name}_std'] = _common.mean_std(values)
      row[f'{m.name}_per_seed'] = values
      cells.append(_common.fmt_mean_std(values, m.scale, m.digits))
    row.update(
      {
        'updates_mean': float(np.mean(updates)),
        'examples_with_probes_mean': float(np.mean(examples)),
        'lr': [e[2] for e in entries],
        'batch': [e[3] for e in entries],
      }
    )
    rows.append(row)
    cells += [
      f'{np.mean(updates):.0f}',
      f'{np.mean(examples) * per:.0f}',
      f'`{entries[0][2]}`',
      f'`{entries[0][3]}`',
    ]
    lines.append(cells)
  table = _common.markdown_table(
    [
      'method',
      *(m.label for m in ms),
      'updates',
      f'{unit_name} (probes incl.)',
      'LR (first seed)',
      'batch (first seed)',
    ],
    lines,
  )
  verdict = _verdict(groups, ms[0])
  figures = _figures(groups, trials_all, workdir, ms[0])
  seeds = list(chosen_all)
  results = {
    'experiment': 'recipe',
    'task': 'image' if config.lm is None else 'lm',
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
      header,
      '',
      table,
      *_per_seed(groups, ms[0]),
      '## The recipe (first seed)',
      '',
      '```',
      chosen_all[seeds[0]]['summary'],
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


def _per_seed(groups, metric: Metric) -> list[str]:
  """The report's line of each method's metric for every seed."""
  d = metric.digits
  parts = [
    f'{name} '
    + ' / '.join(f'{metric.scale * metric.of(e[0]):.{d}f}' for e in entries)
    for name, entries in groups.items()
  ]
  return [f'Per seed ({metric.label}): {"; ".join(parts)}.', '']


def _verdict(groups, metric: Metric) -> list[str]:
  values = {k: [metric.of(e[0]) for e in v] for k, v in groups.items()}
  updates = {
    k: float(np.mean([e[0].summary['num_updates'] for e in v]))
    for k, v in groups.items()
  }
  unit = 'points of test accuracy' if metric is ACCURACY else metric.label
  lines = []
  for other in [k for k in values if k != 'recipe']:
    held, diff, tol = _common.within_variation(values['recipe'], values[other])
    if held is None:
      word = 'is not tested (1 seed) against'
    elif held:
      word = 'ties with'
    elif (diff > 0) == metric.higher_is_better:
      word = 'beats'
    else:
      word = 'LOSES to'
    d = metric.digits
    lines.append(
      f'- The recipe {word} {other}: {metric.scale * diff:+.{d}f} {unit} '
      f'(tolerance {metric.scale * tol:.{d}f}, two pooled standard '
      f'deviations), with {updates["recipe"]:.0f} updates against '
      f'{updates[other]:.0f}.'
    )
  return lines


def _figures(groups, trials_all, workdir, metric: Metric) -> dict[str, str]:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  label = metric.label if metric is not ACCURACY else 'test accuracy (%)'
  fig, ax = plt.subplots(figsize=(6, 4))
  names = list(groups)
  for i, name in enumerate(names):
    values = [metric.scale * metric.of(e[0]) for e in groups[name]]
    ax.scatter([i] * len(values), values, zorder=3)
    ax.bar(i, np.mean(values), alpha=0.4)
  ax.set_xticks(range(len(names)), names)
  every = [metric.scale * metric.of(e[0]) for v in groups.values() for e in v]
  every = [v for v in every if math.isfinite(v)]
  if metric is ACCURACY:
    ax.set_ylim(max(0, min(every) - 5), 100)
  elif every:
    pad = 0.1 * (max(every) - min(every)) + 1e-3
    ax.set_ylim(min(every) - pad, max(every) + pad)
  ax.set_ylabel(label)
  ax.set_title('Recipe against hand-tuned and random search (each seed)')
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'recipe.png'), dpi=120)
  figures = {'recipe.png': f'{label.capitalize()} of each method, every seed'}
  if trials_all:
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [t for ts in trials_all.values() for t in ts]
    sc = ax.scatter(
      [t['lr'] for t in pts],
      [t['batch'] for t in pts],
      c=[metric.scale * t[metric.name] for t in pts],
      cmap='viridis' if metric.higher_is_better else 'viridis_r',
    )
    fig.colorbar(sc, label=label)
    ax.set_xscale('log')
    # Minor-tick labels of a log axis over a decade overlap.
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yscale('log', base=2)
    ax.set_xlabel('learning rate')
    ax.set_ylabel('batch size')
    ax.set_title('Random-search trials')
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, 'random_search.png'), dpi=120)
    figures['random_search.png'] = f'Random-search trials: LR, batch, {label}'
  plt.close('all')
  return figures


def main(argv: Sequence[str]) -> None:
  done = _common.run_main(argv, 'recipe', get_config, run, check)
  if done is None:
    return
  _common.print_report_path(done[1])


if __name__ == '__main__':
  app.run(main)
