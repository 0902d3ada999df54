"""One runner for every experiment: a study is its trials and its analysis.

A `Study` declares its `Trial`s and ``analyze(runs, workdir) -> Report``;
once it is checked, `run` holds the workdir, trains (or reuses, or resumes)
each seed and writes ``results.json``, ``results.md`` and ``report.md``. A study in phases overrides `Study.run` and trains with
`Context.train`. `entry_points` gives an experiment ``check``, ``run`` and
``main``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

from lrjax import evidence, studies

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
      with studies.hold_workdir(workdir, config, {'flags.cfg': flags_text()}):
        print(json.dumps(studies.jsonable(config), indent=2))
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


def flags_text() -> str:
  """The experiments' own flags as a flagfile that repeats the run (a
  library's flag is defined only once its module is imported, so a
  flagfile naming one would fail to parse)."""
  lines = []
  for module, module_flags in sorted(FLAGS.flags_by_module_dict().items()):
    parts = module.replace(os.sep, '/').split('/')
    ours = module.startswith('experiments') or 'experiments' in parts[:-1]
    if not (ours or module == '__main__'):
      continue
    ordered = sorted(module_flags, key=lambda fl: fl.name)
    lines += [text for flag in ordered if (text := flag.serialize())]
  return '\n'.join(lines) + '\n'


def render(name: str, **fields: Any) -> str:
  """The report template ``experiments/reports/<name>.md`` with its
  ``{field}`` slots filled by `str.format` (``{c.lr:g}`` reads and formats
  an attribute; a literal brace is doubled). The prose of a report lives
  there, the numbers it shows are computed here."""
  path = os.path.join(os.path.dirname(__file__), 'reports', f'{name}.md')
  with open(path) as f:
    return f.read().format(**fields)


def entry_points(
  study: type[studies.Study], get_config: Callable[[], Any]
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., None]]:
  """An experiment's ``check(config)``, ``run(config, workdir, ...)`` and
  absl ``main(argv)`` (`run_main`, then the claims and the report's path)."""

  def check(config: Any) -> studies.Study:
    made = study(config)
    made.check()
    return made

  def run_checked(
    made: studies.Study, workdir: str, *, with_flags=False, overwrite=False
  ) -> dict[str, Any]:
    files = {'flags.cfg': flags_text()} if with_flags else None
    return studies.run(made, workdir, overwrite=overwrite, files=files)

  def run_config(config: Any, workdir: str, **kwargs: Any) -> dict[str, Any]:
    return run_checked(check(config), workdir, **kwargs)

  def main(argv: Sequence[str]) -> None:
    done = run_main(argv, study.name, get_config, run_checked, check)
    if done is None:
      return
    results, workdir = done
    if results.get('claims'):
      evidence.print_claims(results['claims'])
    print(f'report: {os.path.join(workdir, "report.md")}')

  return check, run_config, main
