"""Runs an experiment's command line the way a user does, for the tests."""

import contextlib
import importlib
import io
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_experiment(module, cwd, *args, timeout=900, env=None):
  """Runs `python -m experiments.<module> *args` in `cwd`.

  Tests pass a temporary directory as `cwd`, never the checkout: the
  flagfiles' relative paths (`--compilation_cache_dir=runs/jax_cache`)
  resolve against it. absl reads a flagfile's nested
  `--flagfile=experiments/flagfiles/base/...` from the working directory
  too (users run from the checkout's root), so `cwd` gets a link
  `experiments/flagfiles` to the checkout's. The checkout is found through PYTHONPATH; the child
  runs on the CPU with two devices, as the experiments give a 2-core
  machine (one per core), whatever this machine's core count (XLA_FLAGS
  set here, none inherited, nor the session's JAX cache settings). `timeout` is a hang guard only.

  Returns:
    The `subprocess.CompletedProcess`, stdout and stderr as text.
  """
  # As a user's shell: no compilation cache but the one the flags ask for
  # (tests/conftest.py shares one across the test session).
  env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_')}
  env = {
    **env,
    'JAX_PLATFORMS': 'cpu',
    'PYTHONDONTWRITEBYTECODE': '1',
    'XLA_FLAGS': '--xla_force_host_platform_device_count=2',
    **(env or {}),
  }
  link = os.path.join(cwd, 'experiments', 'flagfiles')
  if not os.path.exists(link):
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(os.path.join(ROOT, 'experiments', 'flagfiles'), link)
  env['PYTHONPATH'] = os.pathsep.join(
    p for p in (ROOT, os.environ.get('PYTHONPATH')) if p
  )
  return subprocess.run(
    [sys.executable, '-m', f'experiments.{module}', *args],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def run_in_process(module, *args):
  """`python -m experiments.<module> *args` in this process: absl parses
  ``args`` from the checkout's root (nested flagfiles are paths from there),
  `main` runs, and the flags are reset. For what does not need a fresh
  interpreter (dry runs, flag checks); JAX has started already, so the
  devices stay this process's.

  Returns:
    `(returncode, stdout, stderr)`: 0, or the `SystemExit` code of a usage
    error (`lrjax.studies.entry_points` prints one line and exits 1).
  """
  import jax
  from absl import flags

  jax.devices()  # started: run_main leaves the device count alone
  study = importlib.import_module(f'experiments.{module}')
  out, err, code = io.StringIO(), io.StringIO(), 0
  cwd = os.getcwd()
  try:
    os.chdir(ROOT)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        study.main(flags.FLAGS(['prog', *args]))
      except SystemExit as e:
        code = e.code
  finally:
    os.chdir(cwd)
    flags.FLAGS.unparse_flags()
  return code, out.getvalue(), err.getvalue()


def flagfile(name):
  """`--flagfile=` for `experiments/flagfiles/<name>`."""
  return f'--flagfile={os.path.join(ROOT, "experiments", "flagfiles", name)}'


def flag_lines(name):
  """The flag lines of `experiments/flagfiles/<name>`, nested flagfiles
  (`--flagfile=experiments/flagfiles/...`) expanded in place, as absl reads
  them."""
  lines = []
  with open(os.path.join(ROOT, 'experiments', 'flagfiles', name)) as f:
    for line in f:
      line = line.strip()
      if line.startswith('--flagfile='):
        nested = line.partition('=')[2]
        lines += flag_lines(os.path.relpath(nested, 'experiments/flagfiles'))
      elif line.startswith('--'):
        lines.append(line)
  return lines


def flags_of(name):
  """A flagfile's flags as {name: value} ('' for a bare boolean flag), its
  own lines overriding the nested flagfiles'."""
  return dict(line[2:].partition('=')[::2] for line in flag_lines(name))
