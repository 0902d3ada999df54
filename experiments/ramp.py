r"""Don't decay the learning rate, increase the batch size (Smith et al. 2018).

Trains the same model on the same data, several seeds each, under schedules
whose SGD noise scale :math:`g = \epsilon (N/B - 1)/(1 - m)` follows the same
staircase over epochs:

- `decay`: constant batch, the LR divided by `--decay_factor` at each
  milestone (the baseline);
- `increase`: constant LR, the batch multiplied by `--decay_factor` instead;
- `hybrid`: the batch grows until `--max_batch_size` (about N/10), then the
  LR decays;
- `increased_lr`: initial LR and batch both `--increased_lr_factor` times
  larger, then the batch grows;
- `increased_momentum`: as `increased_lr`, with momentum
  `--increased_momentum` and the initial batch larger again by
  (1 - m) / (1 - m'), then the batch grows;
- `constant`: a control with neither decay nor growth (the noise scale stays
  at its initial value), showing how much the schedule matters;
- `adaptive`: McCandlish et al.'s alternative, with no schedule fixed in
  advance: constant LR, and every `--adaptive_every` epochs the batch grows
  toward the measured gradient noise scale B_simple (at most x
  `--adaptive_max_growth`, powers of two times the starting batch, up to
  `--adaptive_max_batch_size`); `lrjax.train.train_adaptive`.

All other batch schedules come from `lrjax.batch.from_lr_decay` applied to
the baseline's LR decay. The report checks the paper's two claims from the
numbers: the same test accuracy at equal epochs (within run-to-run
variation), with several times fewer parameter updates.

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

from experiments import _common, _flags, _runs, _study
from experiments._flags import setting

SCHEDULES = (
  'decay',
  'increase',
  'hybrid',
  'increased_lr',
  'increased_momentum',
  'constant',
  'adaptive',
)


def _subset(values: Sequence[str]) -> str | None:
  if values and all(s in SCHEDULES for s in values):
    return None
  return f'must be a non-empty subset of {",".join(SCHEDULES)}'


@dataclasses.dataclass(frozen=True)
class RampConfig:
  """The ramp experiment: common settings plus the schedule family (each
  field is its flag)."""

  common: _common.CommonConfig = _common.CommonConfig()
  schedules: tuple[str, ...] = setting(
    ('decay', 'increase', 'hybrid'),
    f'Schedules to compare, from {", ".join(SCHEDULES)}; decay is the '
    'baseline and is always run.',
    check=_subset,
  )
  milestones: tuple[float, ...] = setting(
    (10.0, 20.0, 30.0),
    'Epochs at which the baseline divides the LR by --decay_factor (and the '
    'other schedules grow the batch instead).',
    check=_flags.increasing(0, math.inf, '10,20,30'),
  )
  decay_factor: float = setting(
    2.0,
    'LR decay (or batch growth) factor per milestone.',
    check=_flags.above(1),
  )
  max_batch_size: int = setting(
    0,
    'Hybrid: the batch grows up to this size, then the LR decays (0: about '
    'N/10, the paper recommendation).',
  )
  variants_max_batch_size: int = setting(
    0,
    'increased_lr and increased_momentum: the batch grows up to this size, '
    'then the LR decays (0: the dataset size N, no cap; Smith et al. cap '
    'both at 5120 on CIFAR-10).',
  )
  increased_lr_factor: float = setting(
    4.0,
    'increased_lr: initial LR and batch multiplied by this factor.',
    check=_flags.at_least(1),
  )
  increased_momentum: float = setting(
    0.95,
    'increased_momentum: the momentum (initial batch scaled by '
    "(1 - m) / (1 - m')).",
    check=_flags.fraction(),
  )
  adaptive_every: float = setting(
    2.0,
    'adaptive: epochs between batch-size decisions.',
    check=_flags.above(0),
  )
  adaptive_max_growth: float = setting(
    2.0,
    'adaptive: largest batch growth per decision.',
    check=_flags.at_least(1),
  )
  adaptive_max_batch_size: int = setting(
    0,
    'adaptive: the largest batch (0: the last batch of the increase '
    'schedule, so both end at about the same noise scale).',
    check=_flags.at_least(0),
  )
  project_devices: tuple[int, ...] = setting(
    (1, 8, 64, 512),
    "Device counts P at which the report projects each schedule's wall "
    'time (measured per-device step time plus a ring all-reduce of the '
    'gradients).',
    check=lambda v: (
      None
      if v and all(p >= 1 for p in v)
      else 'must be device counts >= 1, e.g. 1,8,64,512'
    ),
  )
  gpu_allreduce_latency_us: float = setting(
    10.0,
    'Projection, GPU cluster: microseconds per ring step of the all-reduce '
    '(alpha; an assumption, see BUILD.md).',
    check=_flags.at_least(0),
  )
  gpu_allreduce_gbytes_per_s: float = setting(
    50.0,
    'Projection, GPU cluster: GB/s each device sends to its ring neighbour '
    '(beta; one 400 Gb/s InfiniBand NDR port per GPU, see BUILD.md).',
    check=_flags.above(0),
  )
  tpu_allreduce_latency_us: float = setting(
    5.0,
    'Projection, TPU slice: microseconds per ring step (an assumption).',
    check=_flags.at_least(0),
  )
  tpu_allreduce_gbytes_per_s: float = setting(
    100.0,
    "Projection, TPU slice: GB/s per ring neighbour (one of a v5e chip's "
    'four ICI ports, 400 GB/s in all, see BUILD.md).',
    check=_flags.above(0),
  )

  def links(self) -> dict[str, Any]:
    """The projection's all-reduce link models, by name."""
    from lrjax import parallel_cost

    return {
      'gpu': parallel_cost.Link(
        self.gpu_allreduce_latency_us * 1e-6,
        self.gpu_allreduce_gbytes_per_s * 1e9,
        'GPU cluster',
      ),
      'tpu': parallel_cost.Link(
        self.tpu_allreduce_latency_us * 1e-6,
        self.tpu_allreduce_gbytes_per_s * 1e9,
        'TPU slice',
      ),
    }

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    _flags.check(self)
    c = self.common
    if any(x >= c.epochs for x in self.milestones):
      raise ValueError(
        f'--milestones={",".join(map(str, self.milestones))} must all be < '
        f'--epochs={c.epochs} (a stage needs a length)'
      )
    for name in ('max_batch_size', 'variants_max_batch_size'):
      cap = getattr(self, name)
      if cap and cap < c.batch_size:
        raise ValueError(
          f'--{name}={cap} must be 0 or >= --batch_size={c.batch_size}'
        )
    if (
      'increased_momentum' in self.schedules
      and not self.increased_momentum > c.momentum
    ):
      raise ValueError(
        f'--increased_momentum={self.increased_momentum} must be > '
        f'--momentum={c.momentum} when --schedules has increased_momentum'
      )
    if 'adaptive' not in self.schedules:
      return
    if not c.noise:
      raise ValueError(
        'noise=False: the adaptive schedule reads the measured noise scale; '
        'pass --noise or drop adaptive from --schedules'
      )
    if not self.adaptive_every <= c.epochs:
      raise ValueError(
        f'--adaptive_every={self.adaptive_every} must be <= --epochs={c.epochs}'
      )
    cap = self.adaptive_max_batch_size
    if cap and cap < c.batch_size:
      raise ValueError(
        f'--adaptive_max_batch_size={cap} must be 0 or >= '
        f'--batch_size={c.batch_size}'
      )


_flags.define(RampConfig)


def get_config() -> RampConfig:
  """Builds the typed config from the parsed flags (decay always runs)."""
  config = _flags.read(RampConfig, common=_common.common_config())
  schedules = ['decay'] + [s for s in config.schedules if s != 'decay']
  return dataclasses.replace(config, schedules=tuple(schedules))


# ------------------------------------------------------------ schedules


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one schedule trains with: batch schedule, LR and momentum.

  ``adaptive`` is set for the adaptive schedule, whose ``batch`` is then the
  starting batch size (the rest is decided while training).
  """

  batch: Any
  lr: Any
  momentum: float
  noise_scale_ratio: tuple[float, ...] = ()
  adaptive: Any = None

  @property
  def batch_sizes(self) -> tuple[int, ...]:
    """Every batch size the schedule may train with."""
    if self.adaptive is not None:
      return self.adaptive.sizes(self.batch)
    return tuple(self.batch.batch_sizes)

  def describe_batch(self) -> str:
    """The batch schedule as the report shows it."""
    if self.adaptive is None:
      return str(self.batch)
    a = self.adaptive
    return (
      f'{self.batch} growing toward B_simple every {a.every_epochs:g} '
      f'epochs (x{a.max_growth:g} at most, sizes '
      f'{"/".join(map(str, self.batch_sizes))})'
    )


def build_plans(
  config: RampConfig, num_examples: int, multiple_of: int = 4
) -> dict[str, Plan]:
  """The batch schedule, LR policy and momentum of every schedule.

  Every schedule, the constant-batch baseline included, comes from
  `lrjax.batch.from_lr_decay` applied to the same LR step decay, so their
  noise scales g agree stage by stage. The exact form
  g = lr (N/B - 1) / (1 - m) is kept (on a small dataset the B << N form
  would end the increasing-batch schedule at a visibly smaller g); batch
  sizes are rounded to multiples of `multiple_of` (devices times the 4
  slices of the one-device noise estimate), and the g each rounding costs
  is reported as `noise_scale_ratio`.
  """
  from lrjax import batch as lrbatch
  from lrjax import schedules
  from lrjax import train as lrtrain

  c = config.common
  caps = {
    'decay': c.batch_size,
    'constant': c.batch_size,
    'increase': num_examples,
    'hybrid': config.max_batch_size or None,
    'increased_lr': config.variants_max_batch_size or num_examples,
    'increased_momentum': config.variants_max_batch_size or num_examples,
  }
  plans = {}
  names = list(config.schedules)
  if 'adaptive' in names:
    names.remove('adaptive')
    if not config.adaptive_max_batch_size and 'increase' not in names:
      names.append('increase')  # its last batch is adaptive's default cap
  for name in names:
    ramp = lrbatch.from_lr_decay(
      c.lr,
      c.batch_size,
      num_examples,
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
    plans[name] = Plan(
      ramp.batch_schedule,
      ramp.lr,
      float(ramp.momentum),
      tuple(float(r) for r in ramp.noise_scale_ratio),
    )
  if 'adaptive' in config.schedules:
    cap = config.adaptive_max_batch_size or max(
      plans['increase'].batch.batch_sizes
    )
    if 'increase' not in config.schedules:
      del plans['increase']
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


def _num_replicas(num_devices: int | None) -> int:
  import jax

  return num_devices or jax.local_device_count()


def train_config(config: RampConfig, plan: Plan, seed: int):
  """The trainer's config for one seed of one schedule."""
  c = config.common
  return _common.train_config(
    c,
    batch=plan.batch,
    lr=plan.lr,
    seed=seed,
    momentum=plan.momentum,
    noise=_common.noise_config(c, plan.batch_sizes),
  )


# ------------------------------------------------------------ report


LABELS = {
  'epoch': 'epochs',
  'step': 'parameter updates',
  'accuracy': 'test accuracy',
  'loss': 'training loss',
  'lr': 'learning rate',
  'batch_size': 'batch size',
  'noise_g': 'noise scale g',
  'noise_scale': 'measured B_simple',
}


def _column(group: Sequence[_runs.Run], key: str) -> list[float]:
  return [r.summary[key] for r in group]


def _mean(values: Sequence[float]) -> float:
  return _common.mean_std(values)[0]


def _table(
  runs: Mapping[str, list[_runs.Run]], baseline: str
) -> tuple[list[dict[str, Any]], str]:
  rows, lines = [], []
  base_updates = _mean(_column(runs[baseline], 'num_updates'))
  for name, group in runs.items():
    acc, updates = (
      _column(group, 'test_accuracy'),
      _column(group, 'num_updates'),
    )
    wall, compile_s = (
      _column(group, 'wall_seconds'),
      _column(group, 'compile_seconds'),
    )
    rows.append(
      {
        'schedule': name,
        'seeds': len(group),
        'test_accuracy': _common.mean_std(acc),
        'test_accuracy_per_seed': acc,
        'num_updates': _mean(updates),
        'fewer_updates_than_decay': base_updates / _mean(updates),
        'examples_seen': _mean(_column(group, 'examples_seen')),
        'wall_seconds': _common.mean_std(wall),
        'compile_seconds': _common.mean_std(compile_s),
        'batch': str(group[0].summary.get('batch', '')),
        'lr': str(group[0].summary.get('lr', '')),
      }
    )
    lines.append(
      [
        name,
        _common.fmt_mean_std(acc, 100),
        _common.fmt_number(_mean(updates)),
        f'{rows[-1]["fewer_updates_than_decay"]:.2f}x',
        _common.fmt_number(rows[-1]['examples_seen']),
        _common.fmt_mean_std(wall, 1, 1),
        _common.fmt_mean_std(compile_s, 1, 1),
      ]
    )
  header = [
    'schedule',
    'test accuracy % (mean ± std)',
    'parameter updates',
    'fewer updates than decay',
    'examples seen',
    'wall s',
    'compile s',
  ]
  return rows, _common.markdown_table(header, lines)


def _claims(
  runs: Mapping[str, list[_runs.Run]], baseline: str
) -> list[dict[str, Any]]:
  claims = []
  base_acc = _column(runs[baseline], 'test_accuracy')
  base_updates = _mean(_column(runs[baseline], 'num_updates'))
  for name, group in runs.items():
    if name == baseline:
      continue
    acc = _column(group, 'test_accuracy')
    same, diff, tol = _common.within_variation(acc, base_acc)
    detail = (
      f'difference {diff * 100:+.2f} points, tolerance ±{tol * 100:.2f} '
      f'(2 x pooled seed std, {min(len(acc), len(base_acc))} seeds)'
    )
    if name == 'constant':
      claim = (
        f'the schedule matters: constant LR and batch end below {baseline}'
      )
      claims.append(
        {
          'claim': claim,
          'held': _common.exceeds(base_acc, acc),
          'detail': detail,
        }
      )
      continue
    updates = _mean(_column(group, 'num_updates'))
    ratio = base_updates / updates
    claims += [
      {
        'claim': f'{name} reaches the same test accuracy as {baseline} '
        'at equal epochs',
        'held': same,
        'detail': detail,
      },
      {
        # Update counts follow from the batch schedule, not the seed.
        'claim': f'{name} needs fewer parameter updates than {baseline}',
        'held': ratio > 1,
        'detail': f'{ratio:.2f}x fewer ({updates:,.0f} vs {base_updates:,.0f})',
      },
    ]
  return claims


_NOISE_WINDOW = 9


def _figures(
  runs: Mapping[str, list[_runs.Run]],
  plans: Mapping[str, Plan],
  workdir: str,
) -> dict[str, str]:
  from lrjax import plots

  test = {name: [r.test for r in group] for name, group in runs.items()}
  train = {name: [r.train for r in group] for name, group in runs.items()}
  figures = {
    'test_accuracy.png': 'Test accuracy against epochs and updates',
    'train_loss.png': 'Training loss against epochs and updates',
    'schedules.png': 'LR, batch size and noise scale g of each schedule',
    'batch_size.png': 'Batch size in force against epochs (as trained)',
  }
  plots.plot_curves(
    test,
    x=('epoch', 'step'),
    y='accuracy',
    labels=LABELS,
    path=os.path.join(workdir, 'test_accuracy.png'),
  )
  plots.plot_curves(
    train,
    x=('epoch', 'step'),
    y='loss',
    labels=LABELS,
    logy=True,
    path=os.path.join(workdir, 'train_loss.png'),
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
  plots.plot_curves(
    train,
    x='epoch',
    y='batch_size',
    labels=LABELS,
    band='range',
    logy=True,
    path=os.path.join(workdir, 'batch_size.png'),
  )
  if any(
    np.isfinite(r.get('noise_scale', [np.nan])).any()
    for g in train.values()
    for r in g
  ):
    plots.plot_noise_scales(
      {name: group[0] for name, group in train.items()},
      window=_NOISE_WINDOW,
      path=os.path.join(workdir, 'noise_scale.png'),
    )
    figures['noise_scale.png'] = (
      f'Measured gradient noise scale B_simple (first seed; faint: each '
      f'record, solid: centred median of {_NOISE_WINDOW} records, no lag) '
      'and the batch size in force (dashed steps)'
    )
  return figures


class Ramp(_study.Study):
  """The schedules of `build_plans`, trained and compared with decay."""

  name = 'ramp'

  def check(self) -> None:
    """Checks the settings, the devices, the data and every run's trainer
    config before anything trains.

    Raises:
      ValueError: naming the flag and the fix.
      FileNotFoundError: for a dataset that is not prepared.
    """
    config = self.config
    config.validate()
    c = config.common
    self.num_examples = _common.check_common(c)
    self.plans = build_plans(
      config, self.num_examples, 4 * _num_replicas(c.num_devices)
    )
    _study.check_trials(self.trials(), self.num_examples)

  def trials(self) -> list[_study.Trial]:
    c = self.config.common
    return [
      _study.Trial(
        name,
        c.seeds,
        lambda seed, p=plan: train_config(self.config, p, seed),
        lambda seed: _common.make_task(c, seed),
        train=_runs.adaptive_trainer(plan.adaptive),
        after=lambda result, __, p=plan: {
          'batch': p.describe_batch(),
          'lr': str(p.lr),
          'num_params': _num_params(result),
        },
        extra={
          'adaptive': None
          if plan.adaptive is None
          else dataclasses.asdict(plan.adaptive)
        },
        describe=f'batch {plan.batch}, lr {plan.lr}',
        check=None
        if plan.adaptive is None
        else lambda configs, a=plan.adaptive: a.validate(configs[0]),
      )
      for name, plan in self.plans.items()
    ]

  def analyze(
    self, runs: dict[str, list[_runs.Run]], workdir: str
  ) -> _study.Report:
    config, plans = self.config, self.plans
    rows, table = _table(runs, 'decay')
    claims = _claims(runs, 'decay')
    figures = _figures(runs, plans, workdir)
    projection = project_wall_time(config, runs, plans)
    if projection is not None:
      figures['projected_wall_time.png'] = (
        'Projected wall time against devices (ring all-reduce model)'
      )
      _plot_projection(projection, workdir)
    c = config.common
    results = {
      'experiment': 'ramp',
      'num_train_examples': self.num_examples,
      'num_test_examples': _common.load_split(
        c, 'test', c.seeds[0]
      ).num_examples,
      'rows': rows,
      'claims': claims,
      'projection': projection,
      'figures': figures,
    }
    report = _report(config, plans, table, claims, figures, self.num_examples)
    return _study.Report(
      results,
      table,
      report.replace(_PROJECTION_MARK, _projection_md(projection)),
    )


check, run, main = _study.entry_points(Ramp, get_config)


_PROJECTION_MARK = '<!-- projection -->'


def _num_params(result: Any) -> int:
  from lrjax import models

  return models.param_count(result.params)


def _stages(run: _runs.Run, plan: Plan) -> list[tuple[int, int]]:
  """(batch size, updates) of each stage, as planned or as trained."""
  if plan.adaptive is None:
    return list(
      zip(
        plan.batch.batch_size_per_stage,
        plan.batch.num_updates_per_stage,
        strict=True,
      )
    )
  # Decided while training: from the records (every --log_every updates,
  # so a boundary is placed to within that many updates).
  steps = np.asarray(run.train['step'], np.int64)
  sizes = np.asarray(run.train['batch_size'], np.int64)
  stages: list[tuple[int, int]] = []
  last = 0
  for step, size in zip(steps, sizes, strict=True):
    if stages and stages[-1][0] == size:
      stages[-1] = (int(size), stages[-1][1] + int(step) - last)
    else:
      stages.append((int(size), int(step) - last))
    last = int(step)
  return stages


def project_wall_time(
  config: RampConfig,
  runs: Mapping[str, list[_runs.Run]],
  plans: Mapping[str, Plan],
) -> dict[str, Any] | None:
  """Projected wall time of each schedule on `config.project_devices`.

  The per-device step time is fitted, :math:`t(b) = t_0 + t_1 b`, to the
  median seconds per micro-step at each micro-batch of every run's
  records (this machine, `--num_devices` as trained); the gradient is
  all-reduced once per update in float32 by a ring under each link model
  of :meth:`RampConfig.links`. See `lrjax.parallel_cost` for the model's
  assumptions.

  Returns:
    ``{'step_time': ..., 'gradient_bytes': ..., 'links': ..., 'rows': ...}``
    or None when the runs lack the records or parameter count it needs
    (runs made before the projection existed).
  """
  from lrjax import parallel_cost

  points_b, points_t = [], []
  num_params = None
  for group in runs.values():
    for run in group:
      num_params = run.summary.get('num_params', num_params)
      if 'micro_batch' not in run.train:
        return None
      b, t = parallel_cost.step_time_from_records(run.train)
      points_b += b
      points_t += t
  if num_params is None or not points_b:
    return None
  step = parallel_cost.StepTime.fit(points_b, points_t)
  gradient_bytes = 4 * int(num_params)
  cap = config.common.max_device_batch or None
  links = config.links()
  rows = []
  for name, group in runs.items():
    stages = _stages(group[0], plans[name])
    row: dict[str, Any] = {
      'schedule': name,
      'num_updates': sum(u for _, u in stages),
      'measured_wall_seconds': _mean(
        [r.summary['wall_seconds'] for r in group]
      ),
    }
    for key, link in links.items():
      for p in config.project_devices:
        seconds, stage_plans = parallel_cost.project(
          stages, p, step, link, gradient_bytes, cap
        )
        row[f'{key}_{p}'] = seconds
        row[f'{key}_{p}_stages'] = [
          dataclasses.asdict(sp) for sp in stage_plans
        ]
    rows.append(row)
  return {
    'step_time': dataclasses.asdict(step),
    'step_time_points': list(zip(points_b, points_t, strict=True)),
    'gradient_bytes': gradient_bytes,
    'devices': list(config.project_devices),
    'links': {k: dataclasses.asdict(v) for k, v in links.items()},
    'rows': rows,
  }


def _projection_md(projection: dict[str, Any] | None) -> str:
  if projection is None:
    return (
      'Not available: the runs were made before the projection existed '
      '(no parameter count in their summaries); rerun with --overwrite.'
    )
  step = projection['step_time']
  devices = projection['devices']
  header = ['schedule', 'updates', 'measured wall s (1 device here)']
  for key in projection['links']:
    header += [f'{key} P={p} s' for p in devices]
  lines = []
  for row in projection['rows']:
    cells = [
      row['schedule'],
      _common.fmt_number(row['num_updates']),
      f'{row["measured_wall_seconds"]:.1f}',
    ]
    for key in projection['links']:
      cells += [f'{row[f"{key}_{p}"]:.3g}' for p in devices]
    lines.append(cells)
  links = '; '.join(
    f'{k}: {v["name"]}, latency {v["latency_s"] * 1e6:g} us, bandwidth '
    f'{v["bandwidth"] / 1e9:g} GB/s'
    for k, v in projection['links'].items()
  )
  return '\n'.join(
    [
      "What fewer updates buy on parallel hardware: each schedule's "
      'projected training time on P devices (a stage of batch B uses '
      'min(P, B) devices, each a micro-batch of ceil(B / devices), '
      'accumulating beyond --max_device_batch; per update one micro-step '
      'per accumulation step plus a ring all-reduce of the float32 '
      'gradients, '
      f'{projection["gradient_bytes"] / 1e6:.3g} MB). Per-device step time '
      f'fitted on this machine: t(b) = {step["intercept"] * 1e3:.3g} ms + '
      f'{step["per_example"] * 1e6:.3g} us x b. Links: {links}. '
      'Assumed: no overlap of communication and computation, target '
      'devices as fast as this one, input pipeline, evaluation and '
      'checkpoints free (see lrjax/parallel_cost.py and BUILD.md).',
      '',
      _common.markdown_table(header, lines),
    ]
  )


def _plot_projection(projection: dict[str, Any], workdir: str) -> None:
  from lrjax import plots

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


def _report(config, plans, table, claims, figures, num_examples) -> str:
  c = config.common
  lines = [
    "# Don't decay the learning rate, increase the batch size",
    '',
    f'{c.dataset} ({num_examples} training examples), model {c.model}, '
    f'{c.optimizer} with momentum {c.momentum:g}, {c.epochs:g} epochs, '
    f'seeds {", ".join(map(str, c.seeds))}.',
    '',
    '| schedule | batch schedule | LR policy (epochs) | momentum |',
    '|---|---|---|---|',
  ]
  for name, plan in plans.items():
    lines.append(
      f'| {name} | `{plan.describe_batch()}` | `{plan.lr}` | '
      f'{plan.momentum:g} |'
    )
  lines += ['', '## Results', '', table]
  lines += ['## Projected wall time on P devices', '', _PROJECTION_MARK, '']
  lines += ['## Claims', '']
  lines += _common.claim_lines(claims) + _common.figure_lines(figures)
  return '\n'.join(lines)


if __name__ == '__main__':
  app.run(main)
