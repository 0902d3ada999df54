"""One runner for every experiment: a study is its trials and its analysis.

A study (`Study`) declares its trials (`Trial`: a name, seeds, a trainer
config and a task per seed, optional training function and hooks) and an
`analyze(runs, workdir) -> Report`. The runner (`run`) checks the study and
every trial's trainer config before anything trains, holds the workdir
(lock, ``config.json``, ``flags.cfg``), runs each trial's seeds (reusing a
finished run of the same config and task, resuming an unfinished one from
its last checkpoint: `experiments._runs.train_run`), logs
``trial k/n, seed j/m``, and writes ``results.json``, ``results.md`` and
``report.md``; `entry_points` gives an experiment its ``check``, ``run``
and absl ``main``.

A study whose trials depend on what earlier trials found (a probe, a
pre-trained model) overrides `Study.run` and trains in phases with
`Context.train`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from absl import flags

from experiments import _common, _runs

FLAGS = flags.FLAGS

WORKDIR = flags.DEFINE_string(
  'workdir',
  None,
  'Directory for every output of the experiment (default: runs/<name>). '
  'Re-running with the same workdir reuses the finished runs whose config '
  'matches and resumes the unfinished ones from their last checkpoint; a '
  'run whose config differs is an error (see --overwrite).',
)
OVERWRITE = flags.DEFINE_bool(
  'overwrite',
  False,
  'Train every run afresh, deleting what the workdir holds of it '
  '(checkpoints, metrics, summaries).',
)
DRY_RUN = flags.DEFINE_bool(
  'dry_run',
  False,
  'Parse the flags, build and validate the config, write flags.cfg and '
  'config.json, print the config, and stop before any training.',
)


def dry_run(config: Any, workdir: str) -> bool:
  """With --dry_run: writes flags.cfg and config.json, prints the config.

  The config was checked before (`run_main`).

  Returns:
    Whether the entry point should stop here.
  """
  if not DRY_RUN.value:
    return False
  with experiment_workdir(workdir, config, with_flags=True):
    print(json.dumps(_common.jsonable(config), indent=2))
  return True


def workdir_for(name: str) -> str:
  """The workdir from --workdir, or runs/<name> in the current directory."""
  return WORKDIR.value or os.path.join('runs', name)


def use_cpu_cores() -> None:
  """Gives the CPU backend one device per core, so that ``--num_devices``
  can run data parallel on a CPU (``benchmarks/bench_devices.py``).

  Only the CPU client is affected (an accelerator stays the default
  backend). It must happen before JAX starts; when JAX has started already
  (an experiment called in process, as the tests do) or ``XLA_FLAGS`` sets
  the count, the devices stay as they are.
  """
  import jax

  if 'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', ''):
    return
  # RuntimeError: JAX has started, and its devices stay.
  with contextlib.suppress(RuntimeError):
    jax.config.update('jax_num_cpu_devices', os.cpu_count() or 1)


def run_main(
  argv: Sequence[str],
  name: str,
  get_config: Callable[[], Any],
  run: Callable[..., dict[str, Any]],
  check: Callable[[Any], Any],
) -> tuple[dict[str, Any], str] | None:
  """The body of an experiment's `main`: config, checks, dry run or run.

  Builds the config from the flags and checks it (`check(config)`: every
  run's trainer config, the devices, the data) before anything trains or
  is written; stops after `dry_run` when asked, else runs
  `run(checked, workdir, with_flags=True, overwrite=--overwrite)` on what
  `check` returned (so nothing is checked twice) and prints `results.md`. A usage error (positional arguments, a bad value found by
  the checks, a dataset that is not prepared, a `--workdir` that cannot
  be created, a workdir held by another process or holding runs of
  another config, no intact checkpoint) ends
  the process with one absl-style line on stderr and exit status 1, no
  traceback.

  Returns:
    `(results, workdir)`, or None after a dry run.
  """
  from lrjax import train as lrtrain

  if len(argv) > 1:
    _fatal('Usage error', f'unexpected arguments: {" ".join(argv[1:])}')
  if FLAGS.num_devices != 1:
    use_cpu_cores()  # a one-device run keeps the CPU's threads whole
  try:
    config = get_config()
    checked = check(config)
  except (ValueError, FileNotFoundError) as e:
    _fatal('Flags error', str(e))
  workdir = workdir_for(name)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    _fatal('Flags error', _workdir_problem(workdir, e))
  try:
    if dry_run(config, workdir):
      return None
    results = run(checked, workdir, with_flags=True, overwrite=OVERWRITE.value)
  except (
    lrtrain.ConfigMismatchError,
    lrtrain.WorkdirLockedError,
    lrtrain.CheckpointError,
  ) as e:
    _fatal('Workdir error', str(e))
  with open(os.path.join(workdir, 'results.md')) as f:
    print(f.read())
  return results, workdir


def _workdir_problem(workdir: str, error: OSError) -> str:
  """Why `--workdir` cannot be created, and the fix, in one sentence."""
  path = os.path.abspath(workdir)
  while path != os.path.dirname(path) and not os.path.exists(path):
    path = os.path.dirname(path)
  if os.path.exists(path) and not os.path.isdir(path):
    why = f'{path} is a file, not a directory'
  else:
    why = error.strerror or str(error)
  return (
    f'--workdir={workdir} cannot be created: {why}; give --workdir a '
    'directory (or a path in one) this process may write'
  )


def _fatal(kind: str, message: str) -> None:
  """Ends the process as absl does for a bad flag: one line, status 1."""
  message = ' '.join(message.split())
  sys.stderr.write(f'FATAL {kind}: {message}\n')
  sys.stderr.flush()
  sys.exit(1)


def write_outputs(
  workdir: str, results: Mapping[str, Any], table: str, report: str
) -> None:
  """Writes an experiment's results.json, results.md (table) and report.md."""
  _common.write_json(os.path.join(workdir, 'results.json'), results)
  _common.write_text(os.path.join(workdir, 'results.md'), table)
  _common.write_text(os.path.join(workdir, 'report.md'), report)


def print_report_path(workdir: str) -> None:
  """The last line an experiment prints: where its report is."""
  print(f'report: {os.path.join(workdir, "report.md")}')


def write_flags(path: str) -> None:
  """Writes the experiment's flags as a flagfile.

  Re-running with `--flagfile=<workdir>/flags.cfg` repeats the experiment.
  Only the experiments' own flags are written: those of libraries (absl,
  TFDS, array_record, grain, ...) are defined only once their module is
  imported, and a flagfile naming one fails to parse before that.
  """
  lines = []
  for module, module_flags in sorted(FLAGS.flags_by_module_dict().items()):
    parts = module.replace(os.sep, '/').split('/')
    ours = module.startswith('experiments') or 'experiments' in parts[:-1]
    if not (ours or module == '__main__'):
      continue
    for flag in sorted(module_flags, key=lambda fl: fl.name):
      text = flag.serialize()
      if text:
        lines.append(text)
  _common.write_text(path, '\n'.join(lines) + '\n')


@contextlib.contextmanager
def experiment_workdir(
  workdir: str, config: Any, *, with_flags: bool
) -> Iterator[None]:
  """Holds the experiment's workdir: locked, config.json (and flags.cfg if
  parsed) written. Each run's own config is checked where it trains.

  Raises:
    WorkdirLockedError: when another process holds the workdir.
  """
  from lrjax import train as lrtrain

  os.makedirs(workdir, exist_ok=True)
  with lrtrain.lock_workdir(workdir):
    if with_flags:
      write_flags(os.path.join(workdir, 'flags.cfg'))
    _common.write_json(os.path.join(workdir, 'config.json'), config)
    yield


@dataclasses.dataclass(frozen=True)
class Trial:
  """One configuration, trained once per seed.

  Attributes:
    name: the configuration's name (a row of the study's table); its runs
      live in ``<workdir>/<under>/<name>/seed<seed>``.
    seeds: the seeds.
    config: ``config(seed) -> lrjax.train.TrainConfig``.
    task: ``task(seed) -> lrjax.train.Task``.
    train: ``train(config, workdir, task, overwrite=...)``; None: the
      trainer (`lrjax.train.train_and_evaluate`).
    after: ``after(result, run_workdir) -> dict`` stored in the run's
      summary (computed once, after training).
    extra: what the summary depends on besides the config and the task
      (JSON-ready); a finished run is reused only with the same.
    describe: logged once before the trial's first seed.
    check: ``check(configs)``, more checks of the trial's trainer configs
      before anything trains (e.g. the adaptive batch's).
  """

  name: str
  seeds: Sequence[int]
  config: Callable[[int], Any]
  task: Callable[[int], Any]
  train: Callable[..., Any] | None = None
  after: Callable[[Any, str], Mapping[str, Any]] | None = None
  extra: Mapping[str, Any] | None = None
  describe: str = ''
  check: Callable[[Sequence[Any]], None] | None = None


@dataclasses.dataclass(frozen=True)
class Report:
  """What a study's analysis writes: ``results.json`` (``results``), the
  table printed at the end (``results.md``) and ``report.md``."""

  results: dict[str, Any]
  table: str
  text: str


def check_trials(trials: Sequence[Trial], num_examples: int) -> None:
  """Validates every trial's trainer config for each of its seeds.

  Raises:
    ValueError: from the first bad config, naming its field.
  """
  for trial in trials:
    configs = [trial.config(seed) for seed in trial.seeds]
    _common.check_train_configs(configs, num_examples)
    if trial.check is not None:
      trial.check(configs)


@dataclasses.dataclass(frozen=True)
class Context:
  """A study's workdir while it runs."""

  workdir: str
  overwrite: bool = False

  def train(
    self, trials: Sequence[Trial], under: str = 'runs'
  ) -> dict[str, list[_runs.Run]]:
    """Trains (or reuses, or resumes) every trial's seeds, in order.

    Args:
      trials: the trials.
      under: the subdirectory of the workdir their runs live in.

    Returns:
      Each trial's runs, by name, in seed order.
    """
    from absl import logging

    runs: dict[str, list[_runs.Run]] = {}
    for k, trial in enumerate(trials, 1):
      if trial.describe:
        logging.info('%s: %s', trial.name, trial.describe)
      for j, seed in enumerate(trial.seeds, 1):
        runs.setdefault(trial.name, []).append(
          _runs.train_run(
            trial.name,
            seed,
            trial.config(seed),
            os.path.join(self.workdir, under, trial.name, f'seed{seed}'),
            trial.task(seed),
            after=trial.after,
            train=trial.train,
            extra=trial.extra,
            overwrite=self.overwrite,
            progress=f'trial {k}/{len(trials)}, seed {j}/{len(trial.seeds)}',
          )
        )
    return runs


class Study:
  """An experiment: its settings, trials and analysis.

  Subclasses set `name`, and implement `check` (everything that can be
  checked before training: raise ValueError naming the flag), `trials`
  and `analyze`, or override `run` for trials in phases.
  """

  name = ''

  def __init__(self, config: Any) -> None:
    self.config = config

  def check(self) -> None:
    """Raises ValueError (naming the flag) for a bad setting."""

  def trials(self) -> Sequence[Trial]:
    """The study's trials."""
    raise NotImplementedError(
      f'{type(self).__name__} must implement trials() and analyze(), or '
      'override run()'
    )

  def analyze(self, runs: dict[str, list[_runs.Run]], workdir: str) -> Report:
    """Tables, claims, figures and the report from the finished runs."""
    raise NotImplementedError(
      f'{type(self).__name__} must implement analyze(), or override run()'
    )

  def run(self, context: Context) -> Report:
    """Trains the trials and analyses them."""
    return self.analyze(context.train(self.trials()), context.workdir)


def run(
  study: Study,
  workdir: str,
  *,
  with_flags: bool = False,
  overwrite: bool = False,
) -> dict[str, Any]:
  """Checks and runs a study, and writes its results and report.

  Args:
    study: the study.
    workdir: its directory (locked while running).
    with_flags: also write the parsed flags as ``flags.cfg``.
    overwrite: train every run afresh.

  Returns:
    The results (also in ``results.json``).

  Raises:
    ValueError: for a bad setting, before anything trains.
    lrjax.train.ConfigMismatchError: for a run of another config in
      ``workdir``.
    lrjax.train.WorkdirLockedError: when another process holds it.
  """
  study.check()
  return _run_checked(
    study, workdir, with_flags=with_flags, overwrite=overwrite
  )


def _run_checked(
  study: Study, workdir: str, *, with_flags: bool, overwrite: bool
) -> dict[str, Any]:
  """`run` after ``study.check()`` passed."""
  with experiment_workdir(workdir, study.config, with_flags=with_flags):
    report = study.run(Context(workdir, overwrite))
    write_outputs(workdir, report.results, report.table, report.text)
  return report.results


def entry_points(
  study: type[Study], get_config: Callable[[], Any]
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., None]]:
  """An experiment's ``check(config)``, ``run(config, workdir, ...)`` and
  absl ``main(argv)`` for its study class.

  ``main`` builds the config from the flags, checks it once before
  anything trains or is written (one ``FATAL`` line naming the flag
  otherwise), runs the checked study into ``--workdir`` (default ``runs/<name>``), prints the
  table, the claims (where the results have them) and the report's path.
  """

  def check(config: Any) -> Study:
    made = study(config)
    made.check()
    return made

  def run_config(config: Any, workdir: str, **kwargs: Any) -> dict[str, Any]:
    return run(study(config), workdir, **kwargs)

  def main(argv: Sequence[str]) -> None:
    done = run_main(argv, study.name, get_config, _run_checked, check)
    if done is None:
      return
    results, workdir = done
    if results.get('claims'):
      _common.print_claims(results['claims'])
    print_report_path(workdir)

  return check, run_config, main
