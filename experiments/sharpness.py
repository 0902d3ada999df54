r"""Small-batch vs large-batch minima (Keskar et al. 2017).

Trains the same model with a small batch and a large batch (about 10% of
the data), same LR policy and epochs, for each seed; then, at the final
parameters, measures on a fixed subset of the training data:

- eps-sharpness :math:`\phi(\epsilon, A)` in the full space (A = I) and in a
  random p-dimensional subspace, for each `--sharpness_eps`;
- the top Hessian eigenvalue (power iteration on Hessian-vector products);
- the 1-D parametric plot: train and test loss and accuracy along
  :math:`\alpha x_l + (1 - \alpha) x_s`, alpha in [-1, 2].

The report says whether the large-batch minimum is sharper (both measures)
and generalises worse (train - test accuracy gap), from the numbers.
Optionally (`--warm_start_epochs`) the large batch also starts from the
small-batch iterate after that many epochs (Keskar's warm-start).

  python -m experiments.sharpness --flagfile=experiments/flagfiles/sharpness_digits.cfg
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags

from experiments import _common, _runs

SMALL_BATCH = flags.DEFINE_integer(
  'small_batch', 32, 'Small-batch regime: batch size.'
)
LARGE_BATCH = flags.DEFINE_integer(
  'large_batch',
  0,
  'Large-batch regime: batch size (0: 10% of the training set, as Keskar).',
)
SHARPNESS_EPS = flags.DEFINE_list(
  'sharpness_eps', ['1e-3', '5e-4'], 'Box sizes eps of the eps-sharpness.'
)
SUBSPACE_DIM = flags.DEFINE_integer(
  'subspace_dim', 100, 'Dimension p of the random subspace (A is n x p).'
)
SHARPNESS_ITERS = flags.DEFINE_integer(
  'sharpness_iters', 10, 'L-BFGS-B iterations of the box maximisation.'
)
HESSIAN_ITERS = flags.DEFINE_integer(
  'hessian_iters', 20, 'Power iterations for the top Hessian eigenvalue.'
)
SHARPNESS_EXAMPLES = flags.DEFINE_integer(
  'sharpness_examples',
  1024,
  'Training examples the sharpness and Hessian are measured on.',
)
WARM_START_EPOCHS = flags.DEFINE_list(
  'warm_start_epochs',
  [],
  "Keskar's warm start: for each k, a run that trains k epochs with the "
  'small batch and the rest with the large batch (empty: none).',
)
INTERP_POINTS = flags.DEFINE_integer(
  'interp_points', 31, 'Points of the 1-D plot over alpha in [-1, 2].'
)

_common.register_bound('small_batch', 1)
_common.register_bound('large_batch', 0, note=' (0: 10% of the data)')
flags.register_validator(
  'sharpness_eps',
  lambda v: bool(v) and all(_positive_float(x) for x in v),
  message='--sharpness_eps must be positive numbers, e.g. 1e-3,5e-4',
)
_common.register_bound('subspace_dim', 1)
_common.register_bound('sharpness_iters', 1)
_common.register_bound('hessian_iters', 1)
_common.register_bound('sharpness_examples', 1)
_common.register_bound('interp_points', 3)


@flags.multi_flags_validator(
  ['warm_start_epochs', 'epochs'],
  message='--warm_start_epochs must be numbers in (0, --epochs)',
)
def _warm_start_within_training(values) -> bool:
  try:
    ks = [float(k) for k in values['warm_start_epochs']]
  except ValueError:
    return False
  return all(0 < k < values['epochs'] for k in ks)


@flags.multi_flags_validator(
  ['small_batch', 'large_batch'],
  message='--large_batch must be 0 (10% of the data) or > --small_batch',
)
def _large_above_small(values) -> bool:
  return values['large_batch'] == 0 or (
    values['large_batch'] > values['small_batch']
  )


def _positive_float(text: str) -> bool:
  try:
    return float(text) > 0
  except ValueError:
    return False


@dataclasses.dataclass(frozen=True)
class SharpnessConfig:
  """The sharpness experiment."""

  common: _common.CommonConfig = _common.CommonConfig()
  small_batch: int = 32
  large_batch: int = 0
  eps: tuple[float, ...] = (1e-3, 5e-4)
  subspace_dim: int = 100
  sharpness_iters: int = 10
  hessian_iters: int = 20
  sharpness_examples: int = 1024
  interp_points: int = 31
  warm_start_epochs: tuple[float, ...] = ()

  def validate(self) -> None:
    """Raises ValueError naming the field and the fix."""
    if self.small_batch < 1:
      raise ValueError(f'small_batch={self.small_batch} must be >= 1')
    if self.large_batch and self.large_batch <= self.small_batch:
      raise ValueError(
        f'large_batch={self.large_batch} must be 0 or > '
        f'small_batch={self.small_batch}'
      )
    if not self.eps or any(e <= 0 for e in self.eps):
      raise ValueError(f'eps={self.eps} must be positive numbers')
    for name in ('subspace_dim', 'sharpness_iters', 'hessian_iters'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name}={getattr(self, name)} must be >= 1')
    if self.interp_points < 3:
      raise ValueError(f'interp_points={self.interp_points} must be >= 3')
    for k in self.warm_start_epochs:
      if not 0 < k < self.common.epochs:
        raise ValueError(
          f'warm_start_epochs={self.warm_start_epochs} must be in '
          f'(0, epochs={self.common.epochs})'
        )


def get_config() -> SharpnessConfig:
  """Builds the typed config from the parsed flags."""
  return SharpnessConfig(
    common=_common.common_config(),
    small_batch=SMALL_BATCH.value,
    large_batch=LARGE_BATCH.value,
    eps=tuple(float(e) for e in SHARPNESS_EPS.value),
    subspace_dim=SUBSPACE_DIM.value,
    sharpness_iters=SHARPNESS_ITERS.value,
    hessian_iters=HESSIAN_ITERS.value,
    sharpness_examples=SHARPNESS_EXAMPLES.value,
    interp_points=INTERP_POINTS.value,
    warm_start_epochs=tuple(float(k) for k in WARM_START_EPOCHS.value),
  )


# ------------------------------------------------------------ measuring


def _loss_and_metrics(model: Any):
  """`(variables, (images, labels)) -> {loss, accuracy}`, eval mode, jitted."""
  import jax
  import jax.numpy as jnp
  import optax

  def metrics(variables, data):
    logits = model.apply(variables, data[0], train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, data[1])
    acc = jnp.mean(jnp.argmax(logits, -1) == data[1])
    return {'loss': jnp.mean(loss), 'accuracy': acc}

  return jax.jit(metrics)


def measure(
  config: SharpnessConfig, variables: Any, seed: int
) -> dict[str, Any]:
  """eps-sharpness (full, subspace), top Hessian eigenvalue at `variables`.

  The loss is a function of the parameters only; batch-norm statistics, if
  any, stay fixed at their final running values (eval mode).
  """
  import jax

  from lrjax import models
  from lrjax import sharpness as lrsharp

  c = config.common
  train = _common.load_split(c, 'train', seed)
  model = models.get(c.model, num_classes=train.num_classes)
  n = min(config.sharpness_examples, train.num_examples)
  batch = train.take(np.arange(n))
  data = (batch['image'], batch['label'])
  metrics = _loss_and_metrics(model)
  rest = {k: v for k, v in variables.items() if k != 'params'}
  f, x, _ = lrsharp.flatten(
    lambda p: metrics({'params': p, **rest}, data)['loss'],
    variables['params'],
  )
  f = jax.jit(f)
  out: dict[str, Any] = {}
  for eps in config.eps:
    full = lrsharp.eps_sharpness(
      f, x, eps=eps, max_iter=config.sharpness_iters, seed=seed
    )
    sub = lrsharp.eps_sharpness(
      f,
      x,
      eps=eps,
      subspace=min(config.subspace_dim, x.shape[0]),
      max_iter=config.sharpness_iters,
      seed=seed,
    )
    # The definition's own start, y = 0, beside the half-box start above
    # (which moves off an exact minimum): both are lower bounds.
    zero = lrsharp.eps_sharpness(
      f, x, eps=eps, max_iter=config.sharpness_iters, seed=seed, start='zero'
    )
    out[f'sharpness_full_{eps:g}'] = float(full.sharpness)
    out[f'sharpness_full_{eps:g}_from_zero'] = float(zero.sharpness)
    out[f'sharpness_subspace_{eps:g}'] = float(sub.sharpness)
  lam, _ = lrsharp.top_eigenvalue(
    f, x, num_iters=config.hessian_iters, key=seed
  )
  out['top_eigenvalue'] = float(lam)
  out['measured_loss'] = float(f(x))
  return out


def _final_params(result: Any, workdir: str) -> dict[str, Any]:
  import pickle

  variables = _common.final_variables(result, workdir)
  with open(os.path.join(workdir, 'variables.pkl'), 'wb') as fh:
    pickle.dump(variables, fh)
  return {}


def _load_params(workdir: str) -> Any:
  import pickle

  with open(os.path.join(workdir, 'variables.pkl'), 'rb') as fh:
    return pickle.load(fh)


def batch_regimes(config: SharpnessConfig, num_examples: int) -> dict[str, Any]:
  """Label -> batch (size, or schedule text for a warm start)."""
  n, c = num_examples, config.common
  large = config.large_batch or max(config.small_batch + 1, round(n / 10))
  out: dict[str, Any] = {
    'small batch': config.small_batch,
    'large batch': large,
  }
  for k in config.warm_start_epochs:
    out[f'warm start {k:g}'] = (
      f'stages({config.small_batch}@{k:g},{large}@{c.epochs - k:g},n={n})'
    )
  return out


def _train_config(config: SharpnessConfig, batch: Any, seed: int):
  from lrjax import batch as lrbatch

  if isinstance(batch, str):
    batch = lrbatch.parse(batch)
  c = config.common
  return _common.train_config(c, batch=batch, lr=c.lr, seed=seed)


def check(config: SharpnessConfig) -> dict[str, Any]:
  """Checks the settings, the devices, the data and every run's trainer
  config before anything trains.

  Returns:
    The regimes (label -> batch).

  Raises:
    ValueError: naming the field (or flag) and the fix.
    FileNotFoundError: for a dataset that is not prepared.
  """
  config.validate()
  n = _common.check_common(config.common)
  _common.check_batch('--small_batch', config.small_batch, n)
  _common.check_batch('--large_batch', config.large_batch, n)
  out = batch_regimes(config, n)
  for batch in out.values():
    _common.check_train_configs(
      [_train_config(config, batch, s) for s in config.common.seeds], n
    )
  return out


def _measure_settings(config: SharpnessConfig) -> dict[str, Any]:
  """What a sharpness.json depends on besides the run's parameters."""
  return _common.jsonable(
    {
      'eps': config.eps,
      'subspace_dim': config.subspace_dim,
      'sharpness_iters': config.sharpness_iters,
      'hessian_iters': config.hessian_iters,
      'sharpness_examples': config.sharpness_examples,
      'starts': ['half_box', 'zero'],
    }
  )


def run(
  config: SharpnessConfig,
  workdir: str,
  *,
  with_flags: bool = False,
  overwrite: bool = False,
):
  """Trains both regimes per seed, measures, writes table, figures, report.

  Finished runs of the same config are reused, unfinished ones resume; a
  run's measurements are reused when made with the same settings.

  Raises:
    ValueError: for a bad setting, before anything trains.
    lrjax.train.ConfigMismatchError: for a run of another config in
      ``workdir``.
    lrjax.train.WorkdirLockedError: when another process holds ``workdir``.
  """
  regimes = check(config)
  with _common.experiment_workdir(workdir, config, with_flags=with_flags):
    return _run(config, regimes, workdir, overwrite)


def _run(
  config: SharpnessConfig,
  regimes: dict[str, Any],
  workdir: str,
  overwrite: bool,
) -> dict[str, Any]:
  c = config.common
  settings = _measure_settings(config)
  runs: dict[str, list[_runs.Run]] = {}
  measures: dict[str, list[dict[str, Any]]] = {}
  for k, (label, batch_size) in enumerate(regimes.items(), 1):
    for j, seed in enumerate(c.seeds, 1):
      run_dir = os.path.join(
        workdir, 'runs', label.replace(' ', '_'), f'seed{seed}'
      )
      path = os.path.join(run_dir, 'sharpness.json')
      if overwrite and os.path.exists(path):
        os.remove(path)
      done = _runs.train_run(
        label,
        seed,
        _train_config(config, batch_size, seed),
        run_dir,
        after=_final_params,
        overwrite=overwrite,
        progress=f'regime {k}/{len(regimes)}, seed {j}/{len(c.seeds)}',
      )
      runs.setdefault(label, []).append(done)
      m = _common.read_json(path)
      if not isinstance(m, dict) or m.get('settings') != settings:
        m = measure(config, _load_params(run_dir), seed)
        m['settings'] = settings
        _common.write_json(path, m)
      measures.setdefault(label, []).append(m)
  interp = _interpolation(config, runs, c.seeds[0])
  rows, table = _table(config, runs, measures, regimes)
  claims = _claims(config, runs, measures)
  figures = _figures(runs, interp, workdir)
  results = {
    'experiment': 'sharpness',
    'batch_sizes': regimes,
    'rows': rows,
    'claims': claims,
    'interpolation': interp,
    'figures': figures,
  }
  _common.write_outputs(
    workdir, results, table, _report(config, regimes, table, claims, figures)
  )
  return results


def _interpolation(config, runs, seed) -> dict[str, Any]:
  from lrjax import models
  from lrjax import sharpness as lrsharp

  c = config.common
  small = _load_params(runs['small batch'][0].workdir)
  large = _load_params(runs['large batch'][0].workdir)
  data = {}
  for split in ('train', 'test'):
    ds = _common.load_split(c, split, seed)
    batch = ds.take(np.arange(ds.num_examples))
    data[split] = (batch['image'], batch['label'])
  model = models.get(c.model, num_classes=ds.num_classes)
  # The whole variables (batch-norm statistics too) move along the path.
  result = lrsharp.interpolate(
    _loss_and_metrics(model),
    small,
    large,
    data,
    alphas=np.linspace(-1, 2, config.interp_points),
  )
  return _common.jsonable({'alphas': result.alphas, 'metrics': result.metrics})


def _keys(config: SharpnessConfig) -> list[str]:
  keys = []
  for eps in config.eps:
    keys += [
      f'sharpness_full_{eps:g}',
      f'sharpness_full_{eps:g}_from_zero',
      f'sharpness_subspace_{eps:g}',
    ]
  return keys + ['top_eigenvalue']


def _table(config, runs, measures, regimes):
  keys = _keys(config)
  rows, lines = [], []
  for label, group in runs.items():
    train_acc = [r.summary['train_accuracy'] for r in group]
    test_acc = [r.summary['test_accuracy'] for r in group]
    row = {
      'regime': label,
      'batch_size': regimes[label],
      'train_accuracy': _common.mean_std(train_acc),
      'test_accuracy': _common.mean_std(test_acc),
      **{k: _common.mean_std([m[k] for m in measures[label]]) for k in keys},
    }
    rows.append(row)
    lines.append(
      [
        label,
        regimes[label],
        _common.fmt_mean_std(train_acc, 100),
        _common.fmt_mean_std(test_acc, 100),
        *[
          _common.fmt_mean_std([m[k] for m in measures[label]], 1, 3)
          for k in keys
        ],
      ]
    )
  header = [
    'regime',
    'batch',
    'train acc % (last logged)',
    'test acc %',
    *[
      f'φ {space} eps={eps:g} (%)'
      for eps in config.eps
      for space in ('full', 'full from y=0', 'subspace')
    ],
    'top Hessian eigenvalue',
  ]
  return rows, _common.markdown_table(header, lines)


def _claims(config, runs, measures) -> list[dict[str, Any]]:
  claims = []
  small, large = measures['small batch'], measures['large batch']
  for key in _keys(config):
    s = _common.mean_std([m[key] for m in small])[0]
    lg = _common.mean_std([m[key] for m in large])[0]
    claims.append(
      {
        'claim': f'the large-batch minimum is sharper ({key}, beyond '
        'seed-to-seed variation)',
        'held': _common.exceeds(
          [m[key] for m in large], [m[key] for m in small]
        ),
        'detail': f'large {lg:.4g} vs small {s:.4g}'
        + (f', {lg / s:.1f}x' if s > 0 else ''),
      }
    )

  def gap(label):
    return _common.mean_std(
      [
        r.summary['train_accuracy'] - r.summary['test_accuracy']
        for r in runs[label]
      ]
    )[0]

  def test(label):
    return _common.mean_std([r.summary['test_accuracy'] for r in runs[label]])[
      0
    ]

  for label in runs:
    if not label.startswith('warm start'):
      continue
    for key in ('top_eigenvalue', f'sharpness_full_{config.eps[0]:g}'):
      warm = _common.mean_std([m[key] for m in measures[label]])[0]
      cold = _common.mean_std([m[key] for m in large])[0]
      claims.append(
        {
          'claim': f'{label} epochs of small batch make the large-batch '
          f'minimum flatter ({key}, beyond seed-to-seed variation)',
          'held': _common.exceeds(
            [m[key] for m in large], [m[key] for m in measures[label]]
          ),
          'detail': f'warm start {warm:.4g} vs large batch from scratch '
          f'{cold:.4g}',
        }
      )
  large_acc = [r.summary['test_accuracy'] for r in runs['large batch']]
  small_acc = [r.summary['test_accuracy'] for r in runs['small batch']]
  _, diff, tol = _common.within_variation(large_acc, small_acc)
  claims.append(
    {
      'claim': 'the large batch generalises worse (lower test accuracy, '
      'beyond seed-to-seed variation)',
      'held': _common.exceeds(small_acc, large_acc),
      'detail': f'test accuracy large {test("large batch") * 100:.2f} % vs '
      f'small {test("small batch") * 100:.2f} % (difference '
      f'{diff * 100:+.2f} points, tolerance ±{tol * 100:.2f}); train - test '
      f'gap large {gap("large batch") * 100:+.2f} vs small '
      f'{gap("small batch") * 100:+.2f} points',
    }
  )
  return claims


def _figures(runs, interp, workdir) -> dict[str, str]:
  import matplotlib.pyplot as plt

  from lrjax import plots
  from lrjax import sharpness as lrsharp

  plots.plot_interpolation(
    lrsharp.Interpolation(
      np.asarray(interp['alphas'], float),
      {
        split: {k: np.asarray(v, float) for k, v in metrics.items()}
        for split, metrics in interp['metrics'].items()
      },
      'linear',
    ),
    title='1-D parametric plot (seed 0)',
    path=os.path.join(workdir, 'interpolation.png'),
  )
  plots.plot_curves(
    {k: [r.test for r in g] for k, g in runs.items()},
    x=('epoch', 'step'),
    y='accuracy',
    labels={
      'epoch': 'epochs',
      'step': 'parameter updates',
      'accuracy': 'test accuracy',
    },
    path=os.path.join(workdir, 'test_accuracy.png'),
  )
  plt.close('all')
  return {
    'interpolation.png': 'Loss and accuracy along the line through both minima',
    'test_accuracy.png': 'Test accuracy during training',
  }


def _report(config, regimes, table, claims, figures) -> str:
  c = config.common
  lines = [
    '# Small-batch vs large-batch minima (Keskar et al. 2017)',
    '',
    f'{c.dataset}, model {c.model}, {c.optimizer}, LR {c.lr:g}, '
    f'{c.epochs:g} epochs, batch {regimes["small batch"]} vs '
    f'{regimes["large batch"]}, seeds {", ".join(map(str, c.seeds))}. '
    f'Sharpness on {config.sharpness_examples} training examples, '
    f'{config.sharpness_iters} L-BFGS-B iterations (a lower bound of the box '
    f'maximum), subspace p = {config.subspace_dim}.',
    '',
    table,
    '## Claims',
    '',
  ]
  lines += _common.claim_lines(claims) + _common.figure_lines(figures)
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  done = _common.run_main(argv, 'sharpness', get_config, run, check)
  if done is not None:
    _common.print_report_path(done[1])


if __name__ == '__main__':
  app.run(main)
