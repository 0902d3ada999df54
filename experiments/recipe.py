r"""Let lrjax choose: the recipe against hand-tuned defaults and random search.

Per seed, `lrjax.recipe.recommend` probes the task and returns an LR policy
and a batch schedule for the budget; that recipe is trained beside the
hand-tuned run and a random search sharing the recipe's compute (probes
included; its best trial picked on the test split: optimistic for it).
`--recipe_task=lm` compares on experiments.lm's transformer (validation
loss); `--recipe_only` prints the recipe and stops.

  python -m experiments.recipe --flagfile=experiments/flagfiles/recipe_digits.cfg
  python -m experiments.recipe --flagfile=experiments/flagfiles/recipe_lm.cfg
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, NamedTuple

import numpy as np
from absl import app, flags

from experiments import _common, _lm_common
from experiments import lm as lm_exp
from lrjax import evidence, studies
from lrjax.studies import setting


def _lr_policy(text: str) -> str | None:
  from lrjax import schedules

  try:
    schedules.parse(text)
  except ValueError as e:
    return f'must be an LR policy: {e}'
  return None


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
  """The comparison (each field but ``common`` and ``lm`` is its flag);
  ``lm`` is experiments.lm's config for ``--recipe_task=lm`` (its ``common``
  replaces ``common``; the hand-tuned run is its cosine run), else None."""

  common: _common.CommonConfig = _common.CommonConfig()
  lm: Any = None
  recipe_task: str = setting('image', choices=('image', 'lm'))
  """What the recipe is for: 'image' (--dataset, --model, the budget
  --epochs) or 'lm' (experiments.lm's transformer on --corpus, the budget
  --train_tokens)."""
  recipe_probe_batch: int = setting(
    32,
    check=lambda v: (
      None
      if v >= 4 and v % 4 == 0
      else 'must be a positive multiple of 4 (the noise probe slices it in 4)'
    ),
  )
  """Batch of the probes (divisible by 4)."""
  recipe_range_steps: int = setting(100, check=studies.at_least(2))
  """Updates of the LR range test."""
  recipe_min_lr: float = setting(1e-5, check=studies.above(0))
  """The range test's first LR."""
  recipe_max_lr: float = setting(10.0)
  """The range test's last LR."""
  recipe_max_accumulation: int = setting(1, check=studies.at_least(1))
  """Accumulation steps the recipe may use beyond --max_device_batch (its
  largest batch is devices x max_device_batch x this)."""
  recipe_noise_updates: int = setting(50, check=studies.at_least(1))
  """Updates of the noise-scale probe."""
  recipe_suggestion: str = setting(
    'minimum_over_10', choices=('steepest', 'minimum_over_10', 'valley')
  )
  """The range test's suggestion the recipe uses."""
  recipe_continuable: bool = setting(False)
  """Prefer WSD over cosine when not ramping."""
  budget_seconds: float = setting(0.0, check=studies.at_least(0))
  """Plan the recipe for this many seconds of training instead of --epochs
  (--train_tokens for the LM), converted into examples with the step times
  the probes measure (0: off; needs --recipe_only, since the comparison
  trains every method on equal examples)."""
  recipe_only: bool = setting(False)
  """Print the recipe of the first seed and stop."""
  baseline_lr: str = setting(
    'multistep(0.3,milestones=10/20/30,gamma=0.3333)', check=_lr_policy
  )
  """The hand-tuned LR policy over epochs (the default: the decay schedule of
  experiments.ramp's digits flagfile, tuned by hand)."""
  baseline_batch: int = setting(32, check=studies.at_least(1))
  """The hand-tuned batch size."""
  random_trials: int = setting(4, check=studies.at_least(0))
  """Trials of the random search (0: none), each a cosine to 0 at an LR
  log-uniform in [--random_lr_min, --random_lr_max] and a batch from
  --random_batches, sharing the recipe's examples (probes included)."""
  random_lr_min: float = setting(1e-3, check=studies.above(0))
  """Smallest LR."""
  random_lr_max: float = setting(1.0)
  """Largest LR."""
  random_batches: tuple[int, ...] = setting(
    (16, 32, 64, 128, 256),
    check=lambda v: None if v and min(v) >= 1 else 'must be positive integers',
  )
  """Batches to draw."""

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    studies.check_settings(self)
    _lm_common.check_task('recipe_task', self.recipe_task, self.lm)
    for low, high in [
      ('recipe_min_lr', 'recipe_max_lr'),
      ('random_lr_min', 'random_lr_max'),
    ]:
      if not getattr(self, high) > getattr(self, low):
        raise ValueError(
          f'--{high}={getattr(self, high)} must be > --{low}='
          f'{getattr(self, low)}'
        )
    if self.budget_seconds > 0 and not self.recipe_only:
      raise ValueError(
        f'--budget_seconds={self.budget_seconds} needs --recipe_only (the '
        'comparison trains every method on equal examples, not equal '
        'seconds)'
      )
    devices = (self.common if self.lm is None else self.lm.common).num_devices
    if devices and self.recipe_probe_batch % devices:
      raise ValueError(
        f'--recipe_probe_batch={self.recipe_probe_batch} must be a multiple '
        f'of --num_devices={devices} (the probes run data parallel)'
      )


studies.define_flags(RecipeConfig)


def get_config() -> RecipeConfig:
  """Builds the typed config from the parsed flags."""
  if flags.FLAGS.recipe_task == 'image':
    return studies.read_flags(RecipeConfig, common=_common.common_config())
  # Only experiments.lm's cosine run at a constant batch is compared.
  return _lm_common.read_cosine_study(
    RecipeConfig,
    'recipe --recipe_task=lm',
    {
      'baseline_lr': '--lr, --warmup_tokens and --final_lr_fraction (the '
      "hand-tuned run is experiments.lm's cosine run)",
      'baseline_batch': '--batch_size',
    },
  )


def choose(
  config: RecipeConfig, seed: int, workdir: str, task: Any, budget: Any
) -> dict:
  """The recipe of one seed for `budget` (an `lrjax.recipe.Budget`, or
  ``--budget_seconds``), cached in ``<workdir>/recipe.json``."""
  from lrjax import recipe

  path = os.path.join(workdir, 'recipe.json')
  saved = studies.read_json(path)
  if saved is not None:
    return saved
  c = config.common if config.lm is None else config.lm.common
  if config.budget_seconds:
    budget = recipe.Budget(seconds=config.budget_seconds)
  probes = ('probe_batch', 'min_lr', 'max_lr', 'noise_updates', 'suggestion')
  r = recipe.recommend(
    task,
    budget=budget,
    **{k: getattr(c, k) for k in ('optimizer', 'momentum', 'weight_decay')},
    b2=getattr(c, 'b2', None),
    num_devices=c.num_devices or 1,
    max_device_batch=c.max_device_batch,
    max_accumulation=config.recipe_max_accumulation,
    range_test_steps=config.recipe_range_steps,
    **{k: getattr(config, f'recipe_{k}') for k in probes},
    continuable=config.recipe_continuable,
    seed=seed,
  )
  out = {
    **studies.jsonable(dataclasses.asdict(r)),
    'probe_fraction': r.probe_fraction,
    'summary': r.summary(),
  }
  os.makedirs(workdir, exist_ok=True)
  studies.write_json(path, out)
  return out


def draws(config: RecipeConfig, seed: int) -> list[tuple[float, int]]:
  """The random search's (lr, batch) draws for one seed."""
  rng = np.random.default_rng(1000 + seed)
  lo, hi = np.log(config.random_lr_min), np.log(config.random_lr_max)
  return [
    (
      float(f'{np.exp(rng.uniform(lo, hi)):.4g}'),
      int(rng.choice(config.random_batches)),
    )
    for _ in range(config.random_trials)
  ]


def lm_trial_config(config: RecipeConfig, lr: float, batch: int, tokens: int):
  """experiments.lm's config of one random LM trial: its cosine run at
  ``lr`` and ``batch`` sequences over ``tokens`` tokens.

  Raises:
    ValueError: when the trial's share of the tokens is too short for the
      warmup or one batch (naming the flags to change).
  """
  return _lm_common.cosine_run(
    config.lm,
    lr,
    batch,
    f'a random trial of {tokens} tokens (budget plus probes over '
    f'--random_trials={config.random_trials})',
    'lower --random_trials or --warmup_tokens, or raise --train_tokens',
    train_tokens=tokens,
  )


class Method(NamedTuple):
  """What one method trained, as the trainer ran it."""

  config: Any
  lr: str
  batch: str


class _Task:
  """What the methods train: the image task (`--dataset`, `--model`, a
  budget of `--epochs`) or experiments.lm's transformer (`--train_tokens`)."""

  def __init__(self, config: RecipeConfig) -> None:
    from lrjax import recipe

    self.config, self.lc = config, config.lm
    self.c = c = config.common if config.lm is None else config.lm.common
    if self.lc is None:
      self.metrics, self.unit = (studies.ACCURACY,), ('examples', 1)
      self.budget = recipe.Budget(epochs=c.epochs)
    else:
      self.metrics = (studies.VAL_LOSS, studies.VAL_BPB)
      self.unit = ('tokens', c.seq_len)
      self.budget = recipe.Budget(
        tokens=self.lc.train_tokens, seq_len=c.seq_len
      )
      self.data = _lm_common.train_and_evaluation(c)
      self.n = self.data[0].num_examples

  def _image(self, batch: Any, lr: str, seed: int, **overrides) -> Method:
    config = _common.train_config(
      self.c, batch=batch, lr=lr, seed=seed, **overrides
    )
    return Method(config, lr, str(batch))

  def _lm(self, lm_config: Any, seed: int, plan: Any = None) -> Method:
    """A run of experiments.lm's ``plan`` (None: its cosine run)."""
    plan = plan or lm_exp.build_plans(lm_config, self.n)[lm_exp.BASELINE]
    config = lm_exp.train_config(lm_config, plan, seed, self.n)
    return Method(config, str(plan.lr), plan.batch_text)

  def recipe(self, chosen: dict, seed: int) -> Method:
    if self.lc is None:
      return self._image(chosen['batch'], chosen['lr'], seed)
    from lrjax import batch as lbatch

    schedule = lbatch.parse(chosen['batch'])
    text = lm_exp.batch_text(schedule, self.c.seq_len)
    return self._lm(self.lc, seed, lm_exp.Plan(schedule, chosen['lr'], text))

  def hand_tuned(self, seed: int) -> Method:
    if self.lc is None:
      return self._image(
        self.config.baseline_batch, self.config.baseline_lr, seed
      )
    return self._lm(self.lc, seed)

  def random(self, chosen: dict, seed: int) -> list[Method]:
    """Each draw a cosine (to 0; the LM's: its cosine run) at its LR and
    batch over its share of the total compute."""
    total = chosen['budget_examples'] + chosen['probe_examples']
    draw, trials = draws(self.config, seed), self.config.random_trials
    if self.lc is not None:
      tokens = int(total // trials) * self.c.seq_len
      trial = functools.partial(lm_trial_config, self.config, tokens=tokens)
      return [self._lm(trial(lr, b), seed) for lr, b in draw]
    n = chosen['budget_examples'] / self.c.epochs
    e = float(f'{total / n / trials:.4g}')
    return [
      self._image(b, f'cosine({lr:g},length={e:g})', seed, num_epochs=e)
      for lr, b in draw
    ]

  def header(self) -> str:
    c, lc = self.c, self.lc
    if lc is None:
      budget = f'budget {c.epochs:g} epochs, seeds {list(c.seeds)}'
      return f'{_common.trained_text(c)}, {budget}.'
    from lrjax import lm

    nats = lm.count_baselines(
      self.data[0], _lm_common.load_split(c, c.validation_split)
    )
    return (
      f'{_common.trained_text(c)}; {self.n:,} training sequences, '
      f'{c.transformer().num_params:,} parameters; budget '
      f'{lc.train_tokens:,} tokens ({lc.train_tokens // c.seq_len:,} '
      f'sequences), seeds {list(c.seeds)}. The hand-tuned run is the cosine '
      f'run of experiments.lm (LR {c.lr:g}, batch {c.batch_size} sequences). '
      f'Bigram model of the validation split: {nats["bigram"]:.3f} nats; '
      f'unigram {nats["unigram"]:.3f}.'
    )


# ------------------------------------------------------------ study


class Entry(NamedTuple):
  """One method's run of one seed, with the examples its choice cost
  besides (the probes; the random search's other trials)."""

  run: studies.Run
  other_examples: int
  method: Method


class Recipe(studies.Study):
  """Per seed: the recipe (probed, then trained), the hand-tuned run and
  the random search; then the comparison."""

  name = 'recipe'

  def check(self) -> None:
    """The settings; for an image task also the data, the batches and the
    hand-tuned runs (the others' configs depend on the probes)."""
    config = self.config
    config.validate()
    if config.lm is not None:
      return
    n = _common.check_common(config.common)
    _common.check_batch('--recipe_probe_batch', config.recipe_probe_batch, n)
    _common.check_batch('--baseline_batch', config.baseline_batch, n)
    _common.check_batch('--random_batches', max(config.random_batches), n)
    image = _Task(config)
    try:
      studies.check_train_configs(
        [image.hand_tuned(seed).config for seed in image.c.seeds], n
      )
    except ValueError as e:
      raise ValueError(f'--baseline_lr={config.baseline_lr!r}: {e}') from None

  def run(self, context: studies.Context) -> studies.Report:
    config, kind = self.config, _Task(self.config)

    def choose_for(seed: int) -> dict:
      seed_dir = os.path.join(context.workdir, f'seed{seed}')
      task = _lm_common.study_task(kind.c, seed, 'probes')
      return choose(config, seed, seed_dir, task, kind.budget)

    if config.recipe_only:
      chosen = choose_for(kind.c.seeds[0])
      text = chosen['summary']
      return studies.Report({'recipe': chosen}, text + '\n', text)
    groups = {'recipe': [], 'hand-tuned': []}
    chosen_all, trials_all = {}, {}
    for j, seed in enumerate(kind.c.seeds, 1):
      # Runs live in seed<k>/<method>, not in the runner's <trial>/seed<k>
      # (Context.train): the layout whose finished runs earlier workdirs hold.
      def train(name: str, method: Method, seed=seed, j=j) -> studies.Run:
        return studies.train_run(
          name,
          seed,
          method.config,
          os.path.join(context.workdir, f'seed{seed}', name.replace('-', '_')),
          _lm_common.study_task(kind.c, seed, name),
          overwrite=context.overwrite,
          progress=f'seed {j}/{len(kind.c.seeds)}',
        )

      chosen = chosen_all[seed] = choose_for(seed)
      recipe, base = kind.recipe(chosen, seed), kind.hand_tuned(seed)
      groups['recipe'].append(
        Entry(train('recipe', recipe), chosen['probe_examples'], recipe)
      )
      groups['hand-tuned'].append(Entry(train('hand-tuned', base), 0, base))
      if not config.random_trials:
        continue
      trials = kind.random(chosen, seed)
      runs = [train(f'random{i}', t) for i, t in enumerate(trials)]
      metric = kind.metrics[0]
      trials_all[seed] = [
        {'lr': lr, 'batch': b, **{m.name: m.of(r) for m in kind.metrics}}
        for (lr, b), r in zip(draws(config, seed), runs, strict=True)
      ]
      # The best trial, charged with the other trials' examples.
      best = metric.best([metric.of(r) for r in runs])
      others = sum(r.summary['examples_seen'] for r in runs)
      others -= runs[best].summary['examples_seen']
      groups.setdefault('random search', []).append(
        Entry(runs[best], others, trials[best])
      )
    return _compare(
      config, kind, groups, chosen_all, trials_all, context.workdir
    )


check, run, main = _common.entry_points(Recipe, get_config)


def _compare(config, kind, groups, chosen_all, trials_all, workdir):
  """The table, verdict, figures and report of the methods."""
  (unit, per), metric = kind.unit, kind.metrics[0]
  rows, lines = {}, []
  for name, entries in groups.items():
    row, cells = {'method': name}, [name]
    for m in kind.metrics:
      values = [m.of(e.run) for e in entries]
      row[f'{m.name}_mean'], row[f'{m.name}_std'] = evidence.mean_std(values)
      row[f'{m.name}_per_seed'] = values
      cells.append(_common.fmt_mean_std(values, m.scale, m.digits))
    summaries = [e.run.summary for e in entries]
    examples = [
      s['examples_seen'] + e.other_examples
      for s, e in zip(summaries, entries, strict=True)
    ]
    rows[name] = {
      **row,
      'updates_mean': float(np.mean([s['num_updates'] for s in summaries])),
      'examples_with_probes_mean': float(np.mean(examples)),
      'lr': [e.method.lr for e in entries],
      'batch': [e.method.batch for e in entries],
    }
    lines.append(
      [
        *cells,
        f'{rows[name]["updates_mean"]:.0f}',
        f'{np.mean(examples) * per:.0f}',
        f'`{entries[0].method.lr}`',
        f'`{entries[0].method.batch}`',
      ]
    )
  header = ['method', *(m.label for m in kind.metrics), 'updates']
  header += [f'{unit} (probes incl.)', 'LR (first seed)', 'batch (first seed)']
  table = studies.markdown_table(header, lines)
  verdict = _verdict(rows, metric)
  figures = _figures(rows, trials_all, workdir, metric)
  results = {
    'experiment': 'recipe',
    'task': config.recipe_task,
    'rows': list(rows.values()),
    'recipes': chosen_all,
    'random_trials': trials_all,
    'verdict': verdict,
    'figures': figures,
  }
  d, values = metric.digits, f'{metric.name}_per_seed'
  per_seed = '; '.join(
    f'{name} ' + ' / '.join(f'{metric.scale * v:.{d}f}' for v in row[values])
    for name, row in rows.items()
  )
  report = _common.render(
    'recipe',
    header=kind.header(),
    table=table,
    metric=metric,
    per_seed=per_seed,
    summary=chosen_all[kind.c.seeds[0]]['summary'],
    verdict='\n'.join(verdict),
    figures='\n'.join(_common.figure_lines(figures)).strip(),
  )
  return studies.Report(results, table, report)


def _verdict(rows, metric: studies.Metric) -> list[str]:
  """The recipe against each other method, within run-to-run variation."""
  values, recipe = f'{metric.name}_per_seed', rows['recipe']
  unit = (
    'points of test accuracy' if metric is studies.ACCURACY else metric.label
  )
  d, lines = metric.digits, []
  for other, row in list(rows.items())[1:]:
    held, diff, tol = evidence.within_variation(recipe[values], row[values])
    if held is None:
      word = 'is not tested (1 seed) against'
    elif held:
      word = 'ties with'
    else:
      word = 'beats' if (diff > 0) == metric.higher_is_better else 'LOSES to'
    lines.append(
      f'- The recipe {word} {other}: {metric.scale * diff:+.{d}f} {unit} '
      f'(tolerance {metric.scale * tol:.{d}f}, two pooled standard '
      f'deviations), with {recipe["updates_mean"]:.0f} updates against '
      f'{row["updates_mean"]:.0f}.'
    )
  return lines


def _figures(rows, trials_all, workdir, metric: studies.Metric) -> dict:
  """Each method's metric per seed, and the random trials' LR and batch."""
  from lrjax import plots

  label = (
    metric.label if metric is not studies.ACCURACY else 'test accuracy (%)'
  )
  values = f'{metric.name}_per_seed'
  plots.plot_seeds(
    {k: [metric.scale * v for v in r[values]] for k, r in rows.items()},
    ylabel=label,
    title='Recipe against hand-tuned and random search (each seed)',
    path=os.path.join(workdir, 'recipe.png'),
  )
  figures = {'recipe.png': f'{label.capitalize()} of each method, every seed'}
  if trials_all:
    pts = [t for ts in trials_all.values() for t in ts]
    plots.plot_points(
      [t['lr'] for t in pts],
      [t['batch'] for t in pts],
      [metric.scale * t[metric.name] for t in pts],
      xlabel='learning rate',
      ylabel='batch size',
      value_label=label,
      higher_is_better=metric.higher_is_better,
      title='Random-search trials',
      logx=True,
      logy=2,
      path=os.path.join(workdir, 'random_search.png'),
    )
    figures['random_search.png'] = f'Random-search trials: LR, batch, {label}'
  return figures


if __name__ == '__main__':
  app.run(main)
