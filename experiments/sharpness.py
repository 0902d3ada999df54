r"""Small-batch vs large-batch minima (Keskar et al. 2017).

Per seed and `--protocols` entry, a small and a large batch train at the
same constant LR; at their final parameters the eps-sharpness, the top
Hessian eigenvalue and the 1-D parametric plot through both minima are
measured on the training set. The report says, per protocol, whether the
large-batch minimum is sharper and generalises worse, beyond seed noise.

  python -m experiments.sharpness --flagfile=experiments/flagfiles/sharpness_digits.cfg
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app

from experiments import _common
from lrjax import evidence, studies
from lrjax.studies import setting

PROTOCOLS = ('target_loss', 'converge', 'equal_epochs')


def _protocols(values: Sequence[str]) -> str | None:
  if studies.distinct()(values) is None and set(values) <= set(PROTOCOLS):
    return None
  names = ','.join(PROTOCOLS)
  return f'must be distinct names out of {names}, e.g. target_loss,equal_epochs'


@dataclasses.dataclass(frozen=True)
class SharpnessConfig:
  """The sharpness experiment's settings (each field is its flag)."""

  common: _common.CommonConfig = _common.CommonConfig()
  small_batch: int = setting(32, check=studies.at_least(1))
  """Small-batch regime: batch size."""
  large_batch: int = setting(
    0, check=studies.at_least(0, ' (0: 10% of the data)')
  )
  """Large-batch regime: batch size (0: 10% of the training set, as Keskar)."""
  protocols: tuple[str, ...] = setting(
    ('target_loss', 'equal_epochs'), check=_protocols
  )
  """How long each regime trains, one set of runs per protocol, the first the
  headline: target_loss (until the training loss is at most
  --target_loss), converge (until it stops improving) or equal_epochs
  (--epochs each)."""
  target_loss: float = setting(1e-3, check=studies.above(0))
  """target_loss protocol: train until the training loss (mean cross-entropy
  on the sharpness examples) is at most this."""
  loss_check_epochs: float = setting(5.0, check=studies.above(0))
  """target_loss and converge protocols: measure the training loss every this
  many epochs (lrjax.train.LossStop; each check is also a checkpoint)."""
  converge_patience: int = setting(3, check=studies.at_least(1))
  """converge protocol: stop after this many checks in a row without an
  improvement."""
  converge_min_improvement: float = setting(
    0.01, check=studies.fraction(', e.g. 0.01')
  )
  """converge protocol: a check improves when its loss is below (1 - this)
  times the best loss of the earlier checks."""
  max_epochs: float = setting(400.0, check=studies.above(0))
  """target_loss and converge protocols: stop at this many epochs at the
  latest (a hang guard; the report says which runs it stopped)."""
  sharpness_eps: tuple[float, ...] = setting(
    (1e-3, 5e-4), check=studies.positive()
  )
  """Box sizes eps of the eps-sharpness."""
  subspace_dim: int = setting(100, check=studies.at_least(1))
  """Random subspace dimension p (A is n x p)."""
  sharpness_iters: int = setting(10, check=studies.at_least(1))
  """L-BFGS-B iterations of the box maximisation."""
  hessian_iters: int = setting(20, check=studies.at_least(1))
  """Power iterations, top Hessian eigenvalue."""
  sharpness_examples: int = setting(
    0, check=studies.at_least(0, ' (0: the whole training set)')
  )
  """Training examples the training loss, the sharpness and the Hessian are
  measured on: 0 for the whole training set (Keskar measures the training
  loss), or the first k to subsample big data."""
  interp_points: int = setting(31, check=studies.at_least(3))
  """Points of the 1-D plot, alpha in [-1, 2]."""
  warm_start_epochs: tuple[float, ...] = setting(())
  """Keskar's warm start: for each k, a run that trains k epochs with the
  small batch and the rest with the large batch (empty: none)."""

  def validate(self) -> None:
    """Raises ValueError naming the flag and the fix."""
    studies.check_settings(self)
    if self.large_batch and self.large_batch <= self.small_batch:
      raise ValueError(
        f'--large_batch={self.large_batch} must be 0 or > '
        f'--small_batch={self.small_batch}'
      )
    stopping = set(self.protocols) - {'equal_epochs'}
    if stopping and self.max_epochs < self.loss_check_epochs:
      raise ValueError(
        f'--max_epochs={self.max_epochs} must be >= '
        f'--loss_check_epochs={self.loss_check_epochs}'
      )
    for p in self.protocols:
      flag = 'epochs' if p == 'equal_epochs' else 'max_epochs'
      for k in self.warm_start_epochs:
        if not 0 < k < (length := self.epochs_of(p)):
          raise ValueError(
            f'--warm_start_epochs={k:g} must be in (0, --{flag}={length:g}) '
            f'for the {p} protocol'
          )

  def epochs_of(self, protocol: str) -> float:
    """The epochs a protocol's runs are configured for (a cap if stopping)."""
    return self.common.epochs if protocol == 'equal_epochs' else self.max_epochs

  def stop_rule(self, protocol: str) -> Any:
    """The protocol's `lrjax.train.StopRule` (None for equal_epochs)."""
    from lrjax import train as lrtrain

    if protocol == 'equal_epochs':
      return None
    return lrtrain.StopRule(
      protocol=protocol,
      check_epochs=self.loss_check_epochs,
      max_epochs=self.max_epochs,
      target_loss=self.target_loss,
      patience=self.converge_patience,
      min_improvement=self.converge_min_improvement,
    )


studies.define_flags(SharpnessConfig)


def get_config() -> SharpnessConfig:
  """Builds the typed config from the parsed flags."""
  return studies.read_flags(SharpnessConfig, common=_common.common_config())


# ------------------------------------------------------------ measuring


def _first(source: Any, limit: int = 0) -> dict[str, Any]:
  """A split's examples as one batch, its first `limit` if > 0."""
  n = source.num_examples
  return source.take(np.arange(min(limit or n, n)))


def measured_data(config: SharpnessConfig, task: Any) -> dict[str, Any]:
  """The batch everything is measured on (Keskar et al.: the training set;
  ``sharpness_examples`` > 0: its first k)."""
  return _first(task.train_data, config.sharpness_examples)


def measure(
  config: SharpnessConfig, variables: Any, seed: int
) -> dict[str, Any]:
  """The `_eps_keys` of each eps (in %), ``top_eigenvalue`` and the
  ``measured_loss``, ``_accuracy`` and ``_examples`` at `variables`:
  `lrjax.sharpness.measure` of the run's task on `measured_data` (the loss
  as a function of the parameters, batch-norm statistics fixed, eval
  mode); `seed` draws the subspace, the Hessian start and the coin signs."""
  from lrjax import sharpness as lrsharp

  task = _common.make_task(config.common, seed)
  m = lrsharp.measure(
    task,
    variables,
    measured_data(config, task),
    eps=config.sharpness_eps,
    subspace=config.subspace_dim,
    max_iter=config.sharpness_iters,
    hessian_iters=config.hessian_iters,
    seed=seed,
  )
  # The definition's own start, y = 0 (the headline), beside the half-box
  # start, which moves off an exact minimum, and the subspace.
  out = {
    key: m.sharpness[start, eps]
    for eps in config.sharpness_eps
    for key, start in zip(_eps_keys(eps), lrsharp.STARTS, strict=True)
  }
  return out | {
    'top_eigenvalue': m.top_eigenvalue,
    'measured_loss': m.loss,
    'measured_accuracy': m.metrics['accuracy'],
    'measured_examples': m.num_examples,
  }


# ------------------------------------------------------------ training


def _after(result: Any, workdir: str) -> dict[str, Any]:
  """Saves the final variables (dropping stale measures); the stop record."""
  variables = studies.final_variables(result, workdir)
  studies.save_variables(os.path.join(workdir, 'variables.npz'), variables)
  if os.path.exists(path := os.path.join(workdir, 'sharpness.json')):
    os.remove(path)
  stopping = studies.read_json(os.path.join(workdir, 'stopping.json'))
  stopping = stopping or {'stopped': 'epochs', 'checks': []}
  return {'stopped_by': stopping['stopped'], 'checks': stopping['checks']}


def _load_params(workdir: str) -> Any:
  return studies.load_variables(os.path.join(workdir, 'variables.npz'))


def batch_regimes(
  config: SharpnessConfig, num_examples: int, protocol: str
) -> dict[str, Any]:
  """Label -> batch (size, or schedule text for a warm start)."""
  n, small = num_examples, config.small_batch
  large = config.large_batch or max(small + 1, round(n / 10))
  out: dict[str, Any] = {'small batch': small, 'large batch': large}
  length = config.epochs_of(protocol)
  for k in config.warm_start_epochs:
    out[f'warm start {k:g}'] = (
      f'stages({small}@{k:g},{large}@{length - k:g},n={n})'
    )
  return out


def _train_config(
  config: SharpnessConfig, protocol: str, batch: Any, seed: int
) -> Any:
  from lrjax import batch as lrbatch

  if isinstance(batch, str):
    batch = lrbatch.parse(batch)
  c = dataclasses.replace(config.common, epochs=config.epochs_of(protocol))
  return _common.train_config(c, batch=batch, lr=c.lr, seed=seed)


def _measure_settings(config: SharpnessConfig) -> dict[str, Any]:
  """What a sharpness.json depends on besides the run's parameters."""
  keys = ('subspace_dim', 'sharpness_iters', 'hessian_iters')
  settings = {k: getattr(config, k) for k in (*keys, 'sharpness_examples')}
  settings |= {'eps': config.sharpness_eps, 'starts': ['zero', 'half_box']}
  return studies.jsonable(settings)


def _trial_name(protocol: str, label: str) -> str:
  """A regime's runs live in ``runs/<protocol>/<label, _ for spaces>``."""
  return f'{protocol}/{label.replace(" ", "_")}'


class Sharpness(studies.Study):
  """Every regime of every protocol trained, measured and compared."""

  name = 'sharpness'

  def check(self) -> None:
    """The settings, the data, both batches and every trainer config."""
    config = self.config
    config.validate()
    self.n = _common.check_common(config.common)
    _common.check_batch('--small_batch', config.small_batch, self.n)
    _common.check_batch('--large_batch', config.large_batch, self.n)
    self.regimes = {
      p: batch_regimes(config, self.n, p) for p in config.protocols
    }
    studies.check_trials(self.trials(), self.n)

  def trials(self) -> list[studies.Trial]:
    config, c = self.config, self.config.common
    return [
      studies.Trial(
        _trial_name(protocol, label),
        c.seeds,
        lambda seed, p=protocol, b=batch: _train_config(config, p, b, seed),
        lambda seed: _common.make_task(c, seed),
        train=None if rule is None else self._train_until(rule),
        after=_after,
        extra={'protocol': protocol, 'stop_rule': rule},
        describe=f'batch {batch}',
      )
      for protocol, regimes in self.regimes.items()
      for rule in [config.stop_rule(protocol)]
      for label, batch in regimes.items()
    ]

  def _train_until(self, rule: Any) -> Any:
    """The trainer stopped by `rule` on the training loss (`stopping.json`)."""
    from lrjax import sharpness as lrsharp
    from lrjax import train as lrtrain

    def train(train_config, workdir, task, *, overwrite=False):
      loss = lrsharp.mean_loss(task, measured_data(self.config, task))

      def loss_fn(state):
        return loss({'params': state.params, **(state.model_state or {})})

      hook = lrtrain.LossStop(rule, loss_fn)
      result = lrtrain.train_and_evaluate(
        train_config, workdir, task, overwrite=overwrite, hooks=(hook,)
      )
      studies.write_json(os.path.join(workdir, 'stopping.json'), hook.state())
      return result

    return train

  def _measures(self, run: studies.Run) -> dict[str, Any]:
    """The run's measurements, reused when made with the same settings."""
    path = os.path.join(run.workdir, 'sharpness.json')
    settings = _measure_settings(self.config)
    m = studies.read_json(path)
    if not isinstance(m, dict) or m.get('settings') != settings:
      m = measure(self.config, _load_params(run.workdir), run.seed)
      m['settings'] = settings
      studies.write_json(path, m)
    return m

  def analyze(
    self, runs: dict[str, list[studies.Run]], workdir: str
  ) -> studies.Report:
    config, regimes, n = self.config, self.regimes, self.n
    runs = {
      p: {label: runs[_trial_name(p, label)] for label in regimes[p]}
      for p in config.protocols
    }
    measures = {
      p: {
        label: [self._measures(r) for r in g] for label, g in by_label.items()
      }
      for p, by_label in runs.items()
    }
    interp = {p: _interpolation(config, runs[p]) for p in runs}
    rows, table = _table(config, runs, measures, regimes, n)
    claims = [
      claim
      for p in config.protocols
      for claim in _protocol_claims(config, p, runs[p], measures[p])
    ]
    figures = _figures(config, runs, interp, workdir)
    results = {
      'experiment': 'sharpness',
      'protocols': list(config.protocols),
      'num_train_examples': n,
      'batch_sizes': regimes,
      'rows': rows,
      'claims': claims,
      'interpolation': {
        p: studies.jsonable({'alphas': r.alphas, 'metrics': r.metrics})
        for p, r in interp.items()
      },
      'figures': figures,
    }
    report = _report(config, regimes, table, rows, claims, figures, n)
    return studies.Report(results, table, report)


check, run, main = _common.entry_points(Sharpness, get_config)


def _interpolation(config: SharpnessConfig, runs) -> Any:
  """The first seed's 1-D plot from the small- to the large-batch minimum;
  the whole variables (batch-norm statistics too) move along the path."""
  from lrjax import sharpness as lrsharp

  task = _common.make_task(config.common, config.common.seeds[0])
  return lrsharp.interpolate(
    lrsharp.task_metrics(task),
    *(_load_params(runs[k][0].workdir) for k in ('small batch', 'large batch')),
    {'train': _first(task.train_data), 'test': _first(task.eval_data)},
    alphas=np.linspace(-1, 2, config.interp_points),
  )


def _eps_keys(eps: float) -> list[str]:
  """A box size's measures: from y = 0 (headline), half box, subspace."""
  full = f'sharpness_full_{eps:g}'
  return [f'{full}_from_zero', full, f'sharpness_subspace_{eps:g}']


def _keys(config: SharpnessConfig) -> list[str]:
  keys = [k for eps in config.sharpness_eps for k in _eps_keys(eps)]
  return keys + ['top_eigenvalue']


def _mean(values) -> float:
  return evidence.mean_std(values)[0]


# The table's columns of each run: header, column, scale, digits.
_RUN_COLUMNS = (
  ('epochs', 'epochs', 1, 1),
  ('updates', 'num_updates', 1, 0),
  ('train loss', 'train_loss', 1, 5),
  ('train acc %', 'train_accuracy', 100, 2),
  ('test acc %', 'test_accuracy', 100, 2),
)


def _table(config, runs, measures, regimes, n):
  """The results' rows (each column's mean and std) and the table."""
  fmt, rows, lines = _common.fmt_mean_std, [], []
  header = ['protocol', 'regime', 'batch', 'stopped by']
  header += [h for h, *_ in _RUN_COLUMNS]
  for eps in config.sharpness_eps:
    header += [f'φ eps={eps:g} (%), y0 = 0', '÷ small batch']
    header += ['from half box', 'subspace']
  header.append('top Hessian eigenvalue')
  for protocol in config.protocols:
    small = measures[protocol]['small batch']
    for label, group in runs[protocol].items():
      ms = measures[protocol][label]
      columns = {
        'epochs': [r.summary['examples_seen'] / n for r in group],
        'num_updates': [r.summary['num_updates'] for r in group],
        'train_loss': [m['measured_loss'] for m in ms],
        'train_accuracy': [m['measured_accuracy'] for m in ms],
        'test_accuracy': [r.summary['test_accuracy'] for r in group],
        **{k: [m[k] for m in ms] for k in _keys(config)},
      }
      stopped = sorted({r.summary.get('stopped_by', 'epochs') for r in group})
      batch, ratios = regimes[protocol][label], {}
      cells = [protocol, label, batch, ', '.join(stopped)]
      cells += [fmt(columns[k], scale, d) for _, k, scale, d in _RUN_COLUMNS]
      for eps in config.sharpness_eps:
        zero, full, sub = _eps_keys(eps)
        base = _mean([m[zero] for m in small])
        ratio = ratios[zero] = _mean(columns[zero]) / base if base > 0 else None
        cells += [fmt(columns[zero], 1, 3)]
        cells += ['n/a' if ratio is None else f'{ratio:.2f}']
        cells += [fmt(columns[full], 1, 3), fmt(columns[sub], 1, 3)]
      lines.append([*cells, fmt(columns['top_eigenvalue'], 1, 3)])
      rows.append(
        {
          'protocol': protocol,
          'regime': label,
          'batch_size': batch,
          'stopped_by': stopped,
          **{k: evidence.mean_std(v) for k, v in columns.items()},
          'ratio_to_small': ratios,
        }
      )
  return rows, studies.markdown_table(header, lines)


def _protocol_claims(config, protocol, runs, measures) -> list[dict[str, Any]]:
  """One protocol's claims: the large batch sharper by each measure, each
  warm start flatter, the large batch generalising worse."""

  def compare(what, a, b, claim, detail):
    return {
      'claim': f'{protocol}: {claim} ({what}, beyond seed-to-seed variation)',
      'held': evidence.exceeds(a, b),
      'detail': detail(_mean(a), _mean(b)),
    }

  def of(label, key):
    return [m[key] for m in measures[label]]

  def sharper(large, small):
    ratio = f', {large / small:.1f}x' if small > 0 else ''
    return f'large {large:.4g} vs small {small:.4g}{ratio}'

  def flatter(cold, warm):
    return f'warm start {warm:.4g} vs large batch from scratch {cold:.4g}'

  def worse(small, large):
    tol = evidence.within_variation(small_acc, large_acc)[2]
    spread = (
      'one seed: no variation to test against'
      if math.isnan(tol)
      else f'tolerance ±{tol * 100:.2f}'
    )
    return (
      f'test accuracy large {large * 100:.2f} % vs small {small * 100:.2f} % '
      f'(difference {(large - small) * 100:+.2f} points, {spread})'
    )

  small, large = 'small batch', 'large batch'
  claim = 'the large-batch minimum is sharper'
  claims = [
    compare(k, of(large, k), of(small, k), claim, sharper)
    for k in _keys(config)
  ]
  headline = _eps_keys(config.sharpness_eps[0])[0]
  for label in [k for k in runs if k.startswith('warm start')]:
    claim = (
      f'{label} epochs of small batch make the large-batch minimum flatter'
    )
    for k in ('top_eigenvalue', headline):
      claims.append(compare(k, of(large, k), of(label, k), claim, flatter))
  small_acc, large_acc = (
    [r.summary['test_accuracy'] for r in runs[k]] for k in (small, large)
  )
  claim = 'the large batch generalises worse'
  what = 'lower test accuracy'
  return [*claims, compare(what, small_acc, large_acc, claim, worse)]


_LABELS = {
  'epoch': 'epochs',
  'step': 'parameter updates',
  'accuracy': 'test accuracy',
  'train_loss': 'training loss (checks)',
}


def _figures(config, runs, interp, workdir) -> dict[str, str]:
  from lrjax import plots

  figures = {}
  for protocol, result in interp.items():
    name = f'interpolation_{protocol}.png'
    plots.plot_interpolation(
      result,
      title=f'1-D parametric plot, {protocol} (seed {config.common.seeds[0]})',
      path=os.path.join(workdir, name),
    )
    figures[name] = (
      f'{protocol}: loss and accuracy along the line through both minima '
      '(alpha = 0: small batch, 1: large batch)'
    )
  curves = {
    f'{label} ({protocol})': group
    for protocol in config.protocols
    for label, group in runs[protocol].items()
  }
  kw = {'x': ('epoch', 'step'), 'labels': _LABELS}
  plots.plot_curves(
    {label: [r.test for r in group] for label, group in curves.items()},
    path=os.path.join(workdir, 'test_accuracy.png'),
    **kw,
  )
  figures['test_accuracy.png'] = 'Test accuracy during training'
  keys = ('epoch', 'step', 'train_loss')
  checked = {
    label: [
      {k: np.asarray([c[k] for c in r.summary['checks']], float) for k in keys}
      for r in group
    ]
    for label, group in curves.items()
    if group[0].summary['checks']
  }
  if checked:
    path = os.path.join(workdir, 'training_loss.png')
    plots.plot_curves(checked, y='train_loss', logy=True, path=path, **kw)
    figures['training_loss.png'] = (
      'Training loss at each check of the stopping protocols (the last '
      'point of a curve is where its run stopped)'
    )
  return figures


def _report(config, regimes, table, rows, claims, figures, n) -> str:
  measured = config.sharpness_examples or n
  subset = (
    'the whole training set'
    if measured >= n
    else f'the first {measured} of the {n} training examples '
    '(--sharpness_examples subsamples big data)'
  )
  # A line per protocol in the template, shown in the order of --protocols.
  described = _common.render('sharpness_protocols', config=config).splitlines()
  capped = [
    f'{r["protocol"]} / {r["regime"]}'
    for r in rows
    if 'max_epochs' in r['stopped_by']
  ]
  return _common.render(
    'sharpness',
    c=config.common,
    config=config,
    batches=regimes[config.protocols[0]],
    seeds=', '.join(map(str, config.common.seeds)),
    protocols='\n'.join(
      line
      for p in config.protocols
      for line in described
      if line.startswith(f'- {p}:')
    ),
    subset=subset,
    table=table,
    capped=f'Stopped at --max_epochs={config.max_epochs:g} without meeting '
    f'their rule: {", ".join(capped)}; compare their training loss before '
    'their sharpness.\n\n'
    if capped
    else '',
    claims='\n'.join(evidence.claim_lines(claims)),
    figures='\n'.join(_common.figure_lines(figures)),
  )


if __name__ == '__main__':
  app.run(main)
