"""A study's command line: absl flags, a flagfile that repeats the run.

`entry_points` turns a `Study` class and its settings (a dataclass of
`setting` fields, read by ``get_config``) into ``check``, ``run`` and the
absl ``main``: ``--workdir``, ``--overwrite`` and ``--dry_run``; flags.cfg
written into the workdir so that ``--flagfile=<workdir>/flags.cfg``
repeats the run; a bad setting, an unusable workdir or a workdir of another
config ends the process with one line naming the flag and the fix (status
1, no traceback) before anything trains; the results table, the claims and
the report's path printed at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

from lrjax import evidence
from lrjax.studies import _files, _settings, _study
from lrjax.studies._settings import setting

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class RunnerSettings:
  """Where a study writes and whether it trains (each field is its flag)."""

  workdir: str | None = setting(None)
  """Directory of every output (default: runs/<name>). Running again reuses
  the finished runs of the same config, resumes the unfinished ones and
  refuses a run of another config (see --overwrite)."""
  overwrite: bool = setting(False)
  """Train every run afresh, deleting what it left."""
  dry_run: bool = setting(False)
  """Validate the config, write flags.cfg and config.json, print the config
  and stop before training."""


def flags_text() -> str:
  """The flags of the settings `define_flags` defined, and of the main
  module, as a flagfile that repeats the run (absl's own flags and a
  library's are left out: a flagfile naming a flag whose module is not
  imported would fail to parse)."""
  lines = []
  for module, module_flags in sorted(FLAGS.flags_by_module_dict().items()):
    # absl files the main module's flags under the script's path.
    if module in _settings.OWN_MODULES or module == sys.argv[0]:
      ordered = sorted(module_flags, key=lambda fl: fl.name)
      lines += [text for flag in ordered if (text := flag.serialize())]
  return '\n'.join(lines) + '\n'


def _fatal(kind: str, message: str) -> None:
  """Ends the process as absl does for a bad flag: one line, status 1."""
  message = ' '.join(message.split())
  sys.stderr.write(f'FATAL {kind}: {message}\n')
  sys.stderr.flush()
  sys.exit(1)


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


def _main(
  argv: Sequence[str],
  name: str,
  get_config: Callable[[], Any],
  check: Callable[[Any], _study.Study],
  setup: Callable[[], None] | None,
) -> tuple[dict[str, Any], str] | None:
  """Checks the config before anything is written, then dry-runs (returns
  None) or runs the study, prints results.md and returns ``(results,
  workdir)``; a usage error ends the process (`_fatal`)."""
  from lrjax import train as lrtrain

  if len(argv) > 1:
    _fatal('Usage error', f'unexpected arguments: {" ".join(argv[1:])}')
  if setup is not None:
    setup()
  runner = _settings.read_flags(RunnerSettings)
  try:
    config = get_config()
    made = check(config)
  except (ValueError, FileNotFoundError) as e:
    _fatal('Flags error', str(e))
  workdir = runner.workdir or os.path.join('runs', name)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    _fatal('Flags error', _workdir_problem(workdir, e))
  files = {'flags.cfg': flags_text()}
  try:
    if runner.dry_run:
      with _study.hold_workdir(workdir, config, files):
        print(json.dumps(_files.jsonable(config), indent=2))
      return None
    results = _study.run(made, workdir, overwrite=runner.overwrite, files=files)
  except (
    lrtrain.ConfigMismatchError,
    lrtrain.WorkdirLockedError,
    lrtrain.CheckpointError,
  ) as e:
    _fatal('Workdir error', str(e))
  with open(os.path.join(workdir, 'results.md')) as f:
    print(f.read())
  return results, workdir


def entry_points(
  study: type[_study.Study],
  get_config: Callable[[], Any],
  setup: Callable[[], None] | None = None,
) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., None]]:
  """A study's ``check(config)``, ``run(config, workdir, ...)`` and absl
  ``main(argv)``.

  Defines the runner's flags (`RunnerSettings`) once; the study's own are
  defined by `define_flags` of its settings class, and ``get_config`` reads
  them (`read_flags`).

  Args:
    study: the `Study` subclass; its ``name`` is the default workdir's
      (``runs/<name>``).
    get_config: builds the study's config from the parsed flags.
    setup: called first by ``main``, before any flag is read (e.g. to
      choose the CPU devices before JAX starts).

  Returns:
    ``check(config) -> Study`` (raises ValueError naming the flag),
    ``run(config, workdir, *, overwrite=False) -> results`` (`run` of the
    checked study) and ``main(argv)`` for ``absl.app.run``: it runs the
    study (or ``--dry_run``s it) into ``--workdir`` and prints the table,
    the claims and the report's path.
  """
  _settings.define_flags(RunnerSettings, module=__name__)

  def check(config: Any) -> _study.Study:
    made = study(config)
    made.check()
    return made

  def run(config: Any, workdir: str, **kwargs: Any) -> dict[str, Any]:
    return _study.run(check(config), workdir, **kwargs)

  def main(argv: Sequence[str]) -> None:
    done = _main(argv, study.name, get_config, check, setup)
    if done is None:
      return
    results, workdir = done
    if results.get('claims'):
      evidence.print_claims(results['claims'])
    print(f'report: {os.path.join(workdir, "report.md")}')

  return check, run, main
