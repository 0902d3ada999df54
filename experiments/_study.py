"""One runner for every experiment: a study is its trials and its analysis.

A `Study` declares its `Trial`s and ``analyze(runs, workdir) -> Report``;
once it is checked, `run` holds the workdir, trains (or reuses, or resumes)
each seed and writes ``results.json``, ``results.md`` and ``report.md``. A study in phases overrides `Study.run` and trains with
`Context.train`. `entry_points` gives an experiment ``check``, ``run`` and
``main``.
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
from lrjax import evidence

FLAGS = flags.FLAGS

WORKDIR = flags.DEFINE_string(
  'workdir',
  None,
  'Directory of every output (default: runs/<name>). Running again reuses '
  'the finished runs of the same config, resumes the unfinished ones and '
  'refuses a run of another config (see --overwrite).',
)
OVERWRITE = flags.DEFINE_bool(
  'overwrite', False, 'Train every run afresh, deleting what it left.'
)
DRY_RUN = flags.DEFINE_bool(
  'dry_run',
  False,
  'Validate the config, write flags.cfg and config.json, print the config '
  'and stop before training.',
)


def run_main(
  argv: Sequence[str],
  name: str,
  get_config: Callable[[], Any],
  run: Callable[..., dict[str, Any]],
  check: Callable[[Any], Any],
) -> tuple[dict[str, Any], str] | None:
  """An experiment's `main`: checks the config before anything is written,
  then dry-runs (returns None) or runs what `check` returned, prints
  results.md and returns `(results, workdir)`. A usage error ends the
  process with one absl-style line on stderr, status 1, no traceback."""
  import jax

  from lrjax import train as lrtrain

  if len(argv) > 1:
    _fatal('Usage error', f'unexpected arguments: {" ".join(argv[1:])}')
  xla_flags = os.environ.get('XLA_FLAGS', '')
  if FLAGS.num_devices != 1 and 'host_platform_device_count' not in xla_flags:
    # The CPU backend gets one device per core (a one-device run keeps the
    # CPU's threads whole); RuntimeError: JAX has started, devices stay.
    with contextlib.suppress(RuntimeError):
      jax.config.update('jax_num_cpu_devices', os.cpu_count() or 1)
  try:
    config = get_config()
    checked = check(config)
  except (ValueError, FileNotFoundError) as e:
    _fatal('Flags error', str(e))
  workdir = WORKDIR.value or os.path.join('runs', name)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    _fatal('Flags error', _workdir_problem(workdir, e))
  try:
    if DRY_RUN.value:
      with experiment_workdir(workdir, config, with_flags=True):
        print(json.dumps(_common.jsonable(config), indent=2))
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


def write_flags(path: str) -> None:
  """Writes the experiments' own flags as a flagfile that repeats the run
  (a library's flag is defined only once its module is imported, so a
  flagfile naming one would fail to parse)."""
  lines = []
  for module, module_flags in sorted(FLAGS.flags_by_module_dict().items()):
    parts = module.replace(os.sep, '/').split('/')
    ours = module.startswith('experiments') or 'experiments' in parts[:-1]
    if not (ours or module == '__main__'):
      continue
    ordered = sorted(module_flags, key=lambda fl: fl.name)
    lines += [text for flag in ordered if (text := flag.serialize())]
  _common.write_text(path, '\n'.join(lines) + '\n')


@contextlib.contextmanager
def experiment_workdir(
  workdir: str, config: Any, *, with_flags: bool
) -> Iterator[None]:
  """Holds the workdir locked, config.json (and flags.cfg) written."""
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
    name: a row of the study's table; runs live in
      ``<workdir>/<under>/<name>/seed<seed>``.
    seeds: the seeds.
    config: ``config(seed) -> lrjax.train.TrainConfig``.
    task: ``task(seed) -> lrjax.train.Task``.
    train, after, extra: as `experiments._runs.train_run` takes them.
    describe: logged once before the trial's first seed.
    check: ``check(configs)``, more checks of its trainer configs before
      anything trains (e.g. the adaptive batch's).
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


def render(name: str, **fields: Any) -> str:
  """The report template ``experiments/reports/<name>.md`` with its
  ``{field}`` slots filled by `str.format` (``{c.lr:g}`` reads and formats
  an attribute; a literal brace is doubled). The prose of a report lives
  there, the numbers it shows are computed here."""
  path = os.path.join(os.path.dirname(__file__), 'reports', f'{name}.md')
  with open(path) as f:
    return f.read().format(**fields)


@dataclasses.dataclass(frozen=True)
class Report:
  """What a study writes: results.json, results.md (table) and report.md."""

  results: dict[str, Any]
  table: str
  text: str


def check_trials(trials: Sequence[Trial], num_examples: int) -> None:
  """Validates every trial's trainer config for each of its seeds."""
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
    """Trains (or reuses, or resumes) each trial's seeds: runs by trial name."""
    from absl import logging

    runs = {}
    for k, trial in enumerate(trials, 1):
      if trial.describe:
        logging.info('%s: %s', trial.name, trial.describe)
      runs[trial.name] = [
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
        for j, seed in enumerate(trial.seeds, 1)
      ]
    return runs


class Study:
  """An experiment: subclasses set `name` and implement `check`, `trials`
  and `analyze` (or override `run` for trials in phases)."""

  name = ''

  def __init__(self, config: Any) -> None:
    self.config = config

  def check(self) -> None:
    """Raises ValueError (naming the flag) for a bad setting."""

  def trials(self) -> Sequence[Trial]:
    """The study's trials."""
    raise NotImplementedError(f'{type(self).__name__}: implement trials()')

  def analyze(self, runs: dict[str, list[_runs.Run]], workdir: str) -> Report:
    """Tables, claims, figures and the report from the finished runs."""
    raise NotImplementedError(f'{type(self).__name__}: implement analyze()')

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
  """Runs a study that passed `Study.check` into ``workdir``, writes its
  results.json, results.md and report.md, and returns the results.

  Raises:
    lrjax.train.ConfigMismatchError: for a run of another config there.
    lrjax.train.WorkdirLockedError: when another process holds it.
  """
  with experiment_workdir(workdir, study.config, with_flags=with_flags):
    report = study.run(Context(workdir, overwrite))
    _common.write_json(os.path.join(workdir, 'results.json'), report.results)
    _common.write_text(os.path.join(workdir, 'results.md'), report.table)
    _common.write_text(os.path.join(workdir, 'report.md'), report.text)
  return report.results


def entry_points(
  study: type[Study], get_config: Callable[[], Any]
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., None]]:
  """An experiment's ``check(config)``, ``run(config, workdir, ...)`` and
  absl ``main(argv)`` (`run_main`, then the claims and the report's path)."""

  def check(config: Any) -> Study:
    made = study(config)
    made.check()
    return made

  def run_config(config: Any, workdir: str, **kwargs: Any) -> dict[str, Any]:
    return run(check(config), workdir, **kwargs)

  def main(argv: Sequence[str]) -> None:
    done = run_main(argv, study.name, get_config, run, check)
    if done is None:
      return
    results, workdir = done
    if results.get('claims'):
      evidence.print_claims(results['claims'])
    print(f'report: {os.path.join(workdir, "report.md")}')

  return check, run_config, main
