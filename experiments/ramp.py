r"""Don't decay the learning rate, increase the batch size (Smith et al. 2018).

Trains every schedule of `--schedules`, several seeds each; all but
`adaptive` come from `lrjax.batch.from_lr_decay` applied to the baseline's
LR decay, so their SGD noise scales :math:`g = \epsilon (N/B - 1)/(1 - m)`
follow the same staircase over epochs. The report checks the paper's two
claims from the numbers (the same test accuracy at equal epochs, within
run-to-run variation, with several times fewer parameter updates) and
projects each schedule's wall time on P devices (`lrjax.parallel_cost`).

  python -m experiments.ramp --flagfile=experiments/flagfiles/digits.cfg
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import app

from experiments import _common
from lrjax import evidence, studies
from lrjax.studies import setting

SCHEDULES = {
  'decay': 'constant batch, the LR divided by --decay_factor at each '
  'milestone (the baseline)',
  'increase': 'constant LR, the batch multiplied instead',
  'hybrid': 'the batch grows up to --max_batch_size, then the LR decays',
  'increased_lr': 'initial LR and batch --increased_lr_factor times larger, '
  'then the batch grows',
  'increased_momentum': 'as increased_lr, with momentum '
  "--increased_momentum and the initial batch larger by (1 - m) / (1 - m')",
  'constant': 'neither decay nor growth, a control showing how much the '
  'schedule matters',
  'adaptive': 'constant LR; every --adaptive_every epochs the batch grows '
  'toward the measured gradient noise scale B_simple (McCandlish et al. '
  '2018, lrjax.train.train_adaptive)',
}


@dataclasses.dataclass(frozen=True)
class RampConfig:
  """The ramp experiment: common settings plus the schedule family."""

  common: _common.CommonConfig = _common.CommonConfig()
  schedules: tuple[str, ...] = setting(
    ('decay', 'increase', 'hybrid'),
    help_text='Schedules to compare (decay is always run): '
    + '; '.join(f'{k}: {v}' for k, v in SCHEDULES.items())
    + '.',
    check=lambda v: (
      None
      if v and set(v) <= set(SCHEDULES)
      else f'must be a non-empty subset of {",".join(SCHEDULES)}'
    ),
  )
  milestones: tuple[float, ...] = setting(
    (10.0, 20.0, 30.0), check=studies.increasing(0, math.inf, '10,20,30')
  )
  """Epochs at which the baseline divides the LR by --decay_factor (and the
  other schedules grow the batch instead)."""
  decay_factor: float = setting(2.0, check=studies.above(1))
  """LR decay (batch growth) factor per milestone."""
  max_batch_size: int = setting(0, check=studies.at_least(0))
  """Hybrid: the batch grows up to this size, then the LR decays (0: about
  N/10, the paper recommendation)."""
  variants_max_batch_size: int = setting(0, check=studies.at_least(0))
  """increased_lr and increased_momentum: the batch grows up to this size,
  then the LR decays (0: the dataset size N, no cap; Smith et al. cap both
  at 5120 on CIFAR-10)."""
  increased_lr_factor: float = setting(4.0, check=studies.at_least(1))
  """increased_lr: initial LR and batch multiplied by this factor."""
  increased_momentum: float = setting(0.95, check=studies.fraction())
  """increased_momentum: the momentum (initial batch scaled by (1 - m) / (1 -
  m'))."""
  adaptive_every: float = setting(2.0, check=studies.above(0))
  """adaptive: epochs between batch-size decisions."""
  adaptive_max_growth: float = setting(2.0, check=studies.at_least(1))
  """adaptive: largest batch growth per decision (the batch stays a power of
  two times --batch_size)."""
  adaptive_max_batch_size: int = setting(0, check=studies.at_least(0))
  """adaptive: the largest batch (0: the last batch of the increase schedule,
  so both end at about the same noise scale)."""
  project_devices: tuple[int, ...] = setting(
    (1, 8, 64, 512), check=studies.positive()
  )
  """Device counts P at which the report projects each schedule's wall time
  (measured per-device step time plus a ring all-reduce of the gradients)."""
  gpu_allreduce_latency_us: float = setting(10.0, check=studies.at_least(0))
  """Projection, GPU cluster: microseconds per ring step of the all-reduce
  (alpha; an assumption, see BUILD.md)."""
  gpu_allreduce_gbytes_per_s: float = setting(50.0, check=studies.above(0))
  """Projection, GPU cluster: GB/s each device sends to its ring neighbour
  (beta; one 400 Gb/s InfiniBand NDR port per GPU, see BUILD.md)."""
  tpu_allreduce_latency_us: float = setting(5.0, check=studies.at_least(0))
  """Projection, TPU slice: microseconds per ring step (an assumption)."""
  tpu_allreduce_gbytes_per_s: float = setting(100.0, check=studies.above(0))
  """Projection, TPU slice: GB/s per ring neighbour (one of a v5e chip's four
  ICI ports, 400 GB/s in all, see BUILD.md)."""

  def links(self) -> dict[str, Any]:
    """The projection's all-reduce link models, by name."""
    from lrjax import parallel_cost

    return {
      key: parallel_cost.Link(
        getattr(self, f'{key}_allreduce_latency_us') * 1e-6,
        getattr(self, f'{key}_allreduce_gbytes_per_s') * 1e9,
        name,
      )
      for key, name in (('gpu', 'GPU cluster'), ('tpu', 'TPU slice'))
    }

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    studies.check_settings(self)
    c, adaptive = self.common, 'adaptive' in self.schedules
    caps = ['max_batch_size', 'variants_max_batch_size']
    caps += ['adaptive_max_batch_size'] if adaptive else []
    problems = [
      max(self.milestones) >= c.epochs
      and f'--milestones={",".join(map(str, self.milestones))} must all be < '
      f'--epochs={c.epochs} (a stage needs a length)',
      *(
        f'--{k}={getattr(self, k)} must be 0 or >= --batch_size={c.batch_size}'
        for k in caps
        if 0 < getattr(self, k) < c.batch_size
      ),
      'increased_momentum' in self.schedules
      and not self.increased_momentum > c.momentum
      and f'--increased_momentum={self.increased_momentum} must be > '
      f'--momentum={c.momentum} when --schedules has increased_momentum',
      adaptive
      and not c.noise
      and 'noise=False: the adaptive schedule reads the measured noise scale; '
      'pass --noise or drop adaptive from --schedules',
      adaptive
      and not self.adaptive_every <= c.epochs
      and f'--adaptive_every={self.adaptive_every} must be <= '
      f'--epochs={c.epochs}',
    ]
    if problem := next(filter(None, problems), None):
      raise ValueError(problem)


studies.define_flags(RampConfig)


def get_config() -> RampConfig:
  """Builds the typed config from the parsed flags (decay always runs)."""
  config = studies.read_flags(RampConfig, common=_common.common_config())
  schedules = ['decay'] + [s for s in config.schedules if s != 'decay']
  return dataclasses.replace(config, schedules=tuple(schedules))


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one schedule trains with: batch schedule, LR and momentum.

  For the adaptive schedule ``adaptive`` is set and ``batch`` is the
  starting batch size (the rest is decided while training).
  """

  batch: Any
  lr: Any
  momentum: float
  adaptive: Any = None

  @property
  def batch_sizes(self) -> tuple[int, ...]:
    return _common.batch_sizes(self.batch, self.adaptive)

  def describe_batch(self) -> str:
    """The batch schedule as the report shows it."""
    if (a := self.adaptive) is None:
      return str(self.batch)
    return (
      f'{self.batch} growing toward B_simple every {a.every_epochs:g} '
      f'epochs (x{a.max_growth:g} at most, sizes '
      f'{"/".join(map(str, self.batch_sizes))})'
    )


def build_plans(
  config: RampConfig, num_examples: int, multiple_of: int = 4
) -> dict[str, Plan]:
  """The batch schedule, LR policy and momentum of every schedule.

  The exact g = lr (N/B - 1) / (1 - m) is kept (on a small dataset the
  B << N form would end the increasing-batch schedule at a visibly smaller
  g); batches are multiples of `multiple_of` (devices times the 4 slices
  of the one-device noise estimate).
  """
  from lrjax import batch as lrbatch
  from lrjax import schedules
  from lrjax import train as lrtrain

  c, n = config.common, num_examples
  variants = config.variants_max_batch_size or n
  caps = {
    'decay': c.batch_size,
    'constant': c.batch_size,
    'increase': n,
    'hybrid': config.max_batch_size or None,
    'increased_lr': variants,
    'increased_momentum': variants,
  }

  def plan(name: str) -> Plan:
    ramp = lrbatch.from_lr_decay(
      c.lr,
      c.batch_size,
      n,
      milestones=config.milestones,
      factors=1.0 if name == 'constant' else 1 / config.decay_factor,
      num_epochs=c.epochs,
      momentum=c.momentum,
      max_batch_size=caps[name],
      lr_scale=(
        config.increased_lr_factor if name.startswith('increased') else 1.0
      ),
      new_momentum=(
        config.increased_momentum if name == 'increased_momentum' else None
      ),
      multiple_of=multiple_of,
      exact=True,
    )
    return Plan(ramp.batch_schedule, ramp.lr, float(ramp.momentum))

  plans = {s: plan(s) for s in config.schedules if s != 'adaptive'}
  if 'adaptive' in config.schedules:
    # The increase schedule's last batch is adaptive's default cap.
    cap = config.adaptive_max_batch_size or max(plan('increase').batch_sizes)
    plans['adaptive'] = Plan(
      c.batch_size,
      schedules.constant(c.lr),
      c.momentum,
      adaptive=lrtrain.AdaptiveConfig(
        max_batch_size=cap,
        every_epochs=config.adaptive_every,
        max_growth=config.adaptive_max_growth,
      ),
    )
  return plans


# ------------------------------------------------------------ report


LABELS = {
  'epoch': 'epochs',
  'step': 'parameter updates',
  'accuracy': 'test accuracy',
  'loss': 'training loss',
  'batch_size': 'batch size',
}
_PM = '{0[0]:.1f} ± {0[1]:.1f}'.format
# (key, header, format) of each column of the results table.
_COLUMNS = (
  ('schedule', 'schedule', str),
  (
    'test_accuracy_per_seed',
    'test accuracy % (mean ± std)',
    lambda v: _common.fmt_mean_std(v, 100),
  ),
  ('num_updates', 'parameter updates', _common.fmt_number),
  ('fewer_updates_than_decay', 'fewer updates than decay', '{:.2f}x'.format),
  ('examples_seen', 'examples seen', _common.fmt_number),
  ('wall_seconds', 'wall s', _PM),
  ('compile_seconds', 'compile s', _PM),
)
# Summaries the rows hold as (mean, std) over seeds, and as the mean.
_MEAN_STD = ('test_accuracy', 'wall_seconds', 'compile_seconds')
_MEAN = ('num_updates', 'examples_seen')
_NOISE_WINDOW = 9


def _rows(runs: Mapping[str, list[studies.Run]]) -> list[dict[str, Any]]:
  """One row per schedule: its summaries over seeds."""
  rows = []
  for name, group in runs.items():
    col = {k: [r.summary[k] for r in group] for k in _MEAN_STD + _MEAN}
    rows.append(
      {
        'schedule': name,
        'seeds': len(group),
        'test_accuracy_per_seed': col['test_accuracy'],
        **{k: evidence.mean_std(col[k]) for k in _MEAN_STD},
        **{k: evidence.mean_std(col[k])[0] for k in _MEAN},
        **{k: str(group[0].summary.get(k, '')) for k in ('batch', 'lr')},
      }
    )
  base = next(r for r in rows if r['schedule'] == 'decay')
  for row in rows:
    row['fewer_updates_than_decay'] = base['num_updates'] / row['num_updates']
  return rows


def _claims(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Each schedule against the baseline, decay."""
  base = next(r for r in rows if r['schedule'] == 'decay')
  claims = []
  for row in (r for r in rows if r is not base):
    name, acc = row['schedule'], row['test_accuracy_per_seed']
    same, diff, tol = evidence.within_variation(
      acc, base['test_accuracy_per_seed']
    )
    detail = (
      f'difference {diff * 100:+.2f} points, tolerance ±{tol * 100:.2f} '
      f'(2 x pooled seed std, {min(row["seeds"], base["seeds"])} seeds)'
    )
    if name == 'constant':
      held = evidence.exceeds(base['test_accuracy_per_seed'], acc)
      claim = 'the schedule matters: constant LR and batch end below decay'
      claims.append({'claim': claim, 'held': held, 'detail': detail})
      continue
    ratio = row['fewer_updates_than_decay']
    claims += [
      {
        'claim': f'{name} reaches the same test accuracy as decay at equal '
        'epochs',
        'held': same,
        'detail': detail,
      },
      {
        # Update counts follow from the batch schedule, not the seed.
        'claim': f'{name} needs fewer parameter updates than decay',
        'held': ratio > 1,
        'detail': f'{ratio:.2f}x fewer ({row["num_updates"]:,.0f} vs '
        f'{base["num_updates"]:,.0f})',
      },
    ]
  return claims


def _figures(runs, plans, projection, workdir: str) -> dict[str, str]:
  """Draws the figures; returns their captions by file name."""
  from lrjax import plots

  curves = {  # the figures plot_curves draws: split, arguments
    'test_accuracy.png': ('test', dict(x=('epoch', 'step'), y='accuracy')),
    'train_loss.png': ('train', dict(x=('epoch', 'step'), y='loss', logy=True)),
    'batch_size.png': (
      'train',
      dict(x='epoch', y='batch_size', band='range', logy=True),
    ),
  }
  for name, (split, kwargs) in curves.items():
    plots.plot_curves(
      {k: [getattr(r, split) for r in g] for k, g in runs.items()},
      **kwargs,
      labels=LABELS,
      path=os.path.join(workdir, name),
    )
  plots.plot_batch_schedule(
    {
      name: (p.batch, p.lr, p.momentum)
      for name, p in plans.items()
      if p.adaptive is None  # decided while training: see batch_size.png
    },
    exact=True,
    path=os.path.join(workdir, 'schedules.png'),
  )
  figures = {
    'test_accuracy.png': 'Test accuracy against epochs and updates',
    'train_loss.png': 'Training loss against epochs and updates',
    'schedules.png': 'LR, batch size and noise scale g of each schedule',
    'batch_size.png': 'Batch size in force against epochs (as trained)',
  }
  if any(
    np.isfinite(r.train.get('noise_scale', [np.nan])).any()
    for g in runs.values()
    for r in g
  ):
    plots.plot_noise_scales(
      {name: group[0].train for name, group in runs.items()},
      window=_NOISE_WINDOW,
      path=os.path.join(workdir, 'noise_scale.png'),
    )
    figures['noise_scale.png'] = (
      f'Measured gradient noise scale B_simple (first seed; faint: each '
      f'record, solid: centred median of {_NOISE_WINDOW} records, no lag) '
      'and the batch size in force (dashed steps)'
    )
  if projection is not None:
    devices = projection['devices']
    plots.plot_panels(
      devices,
      {
        link['name']: {
          row['schedule']: [row[f'{key}_{p}'] for p in devices]
          for row in projection['rows']
        }
        for key, link in projection['links'].items()
      },
      xlabel='devices P',
      ylabel='projected training seconds',
      logx=2,
      logy=True,
      xticks=devices,
      path=os.path.join(workdir, 'projected_wall_time.png'),
    )
    figures['projected_wall_time.png'] = (
      'Projected wall time against devices (ring all-reduce model)'
    )
  return figures


def project_wall_time(
  config: RampConfig,
  runs: Mapping[str, list[studies.Run]],
  plans: Mapping[str, Plan],
) -> dict[str, Any] | None:
  """`lrjax.parallel_cost.project_wall_time` of each schedule's stages (as
  planned, or as trained for adaptive), each row with the schedule's
  measured wall time; None for runs made before the projection existed."""
  from lrjax import parallel_cost as pc

  every = [r for group in runs.values() for r in group]
  params = [r.summary['num_params'] for r in every if 'num_params' in r.summary]
  if not params or any('micro_batch' not in r.train for r in every):
    return None
  stages = {
    name: pc.stages_from_records(g[0].train['step'], g[0].train['batch_size'])
    if plans[name].adaptive
    else list(
      zip(
        plans[name].batch.batch_size_per_stage,
        plans[name].batch.num_updates_per_stage,
        strict=True,
      )
    )
    for name, g in runs.items()
  }
  try:
    projection = pc.project_wall_time(
      [r.train for r in every],
      stages,
      config.project_devices,
      config.links(),
      4 * int(params[-1]),
      config.common.max_device_batch or None,
    )
  except ValueError:  # no record measured a step
    return None
  for row in projection['rows']:
    walls = [r.summary['wall_seconds'] for r in runs[row['schedule']]]
    row['measured_wall_seconds'] = evidence.mean_std(walls)[0]
  return projection


def _projection_md(projection: dict[str, Any] | None) -> str:
  if projection is None:
    return _common.render('ramp_no_projection')
  step, links = projection['step_time'], projection['links']
  cells = [(k, p) for k in links for p in projection['devices']]
  table = studies.markdown_table(
    ['schedule', 'updates', 'measured wall s (1 device here)']
    + [f'{k} P={p} s' for k, p in cells],
    [
      [
        row['schedule'],
        _common.fmt_number(row['num_updates']),
        f'{row["measured_wall_seconds"]:.1f}',
        *[f'{row[f"{k}_{p}"]:.3g}' for k, p in cells],
      ]
      for row in projection['rows']
    ],
  )
  links = '; '.join(
    f'{k}: {v["name"]}, latency {v["latency_s"] * 1e6:g} us, bandwidth '
    f'{v["bandwidth"] / 1e9:g} GB/s'
    for k, v in links.items()
  )
  return _common.render(
    'ramp_projection',
    megabytes=projection['gradient_bytes'] / 1e6,
    intercept_ms=step['intercept'] * 1e3,
    per_example_us=step['per_example'] * 1e6,
    links=links,
    table=table,
  )


class Ramp(studies.Study):
  """The schedules of `build_plans`, trained and compared with decay."""

  name = 'ramp'

  def check(self) -> None:
    """Checks the settings, devices, data and every run's trainer config."""
    import jax

    self.config.validate()
    c = self.config.common
    self.num_examples = _common.check_common(c)
    replicas = c.num_devices or jax.local_device_count()
    self.plans = build_plans(self.config, self.num_examples, 4 * replicas)
    studies.check_trials(self.trials(), self.num_examples)

  def trials(self) -> list[studies.Trial]:
    from lrjax import models

    c = self.config.common
    return [
      studies.Trial(
        name,
        c.seeds,
        lambda seed, p=plan: _common.train_config(
          c,
          batch=p.batch,
          lr=p.lr,
          seed=seed,
          momentum=p.momentum,
          noise=_common.noise_config(c, p.batch_sizes),
        ),
        lambda seed: _common.make_task(c, seed),
        train=studies.adaptive_trainer(a := plan.adaptive),
        after=lambda result, __, p=plan: {
          'batch': p.describe_batch(),
          'lr': str(p.lr),
          'num_params': models.param_count(result.params),
        },
        extra={'adaptive': a and dataclasses.asdict(a)},
        describe=f'batch {plan.batch}, lr {plan.lr}',
        check=a and (lambda configs, a=a: a.validate(configs[0])),
      )
      for name, plan in self.plans.items()
    ]

  def analyze(
    self, runs: dict[str, list[studies.Run]], workdir: str
  ) -> studies.Report:
    c, n, plans = self.config.common, self.num_examples, self.plans
    test = _common.load_split(c, 'test', c.seeds[0])
    rows = _rows(runs)
    claims = _claims(rows)
    projection = project_wall_time(self.config, runs, plans)
    figures = _figures(runs, plans, projection, workdir)
    table = studies.markdown_table(
      [header for _, header, _ in _COLUMNS],
      [[fmt(row[k]) for k, _, fmt in _COLUMNS] for row in rows],
    )
    results = {
      'experiment': 'ramp',
      'num_train_examples': n,
      'num_test_examples': test.num_examples,
      'rows': rows,
      'claims': claims,
      'projection': projection,
      'figures': figures,
    }
    plans_table = studies.markdown_table(
      ['schedule', 'batch schedule', 'LR policy (epochs)', 'momentum'],
      [
        [name, f'`{p.describe_batch()}`', f'`{p.lr}`', f'{p.momentum:g}']
        for name, p in plans.items()
      ],
    )
    report = _common.render(
      'ramp',
      c=c,
      n=n,
      seeds=', '.join(map(str, c.seeds)),
      plans=plans_table,
      table=table,
      projection=_projection_md(projection),
      claims='\n'.join(
        evidence.claim_lines(claims) + _common.figure_lines(figures)
      ),
    )
    return studies.Report(results, table, report)


check, run, main = _common.entry_points(Ramp, get_config)


if __name__ == '__main__':
  app.run(main)
