"""Runs an experiment's command line the way a user does, for the tests."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_experiment(module, cwd, *args, timeout=900, env=None):
  """Runs `python -m experiments.<module> *args` in `cwd`.

  Tests pass a temporary directory as `cwd`, never the checkout: the
  flagfiles' relative paths (`--compilation_cache_dir=runs/jax_cache`)
  resolve against it. The checkout is found through PYTHONPATH; the child
  runs on the CPU with two devices, as the experiments give a 2-core
  machine (one per core), whatever this machine's core count (XLA_FLAGS
  set here, none inherited). `timeout` is a hang guard only.

  Returns:
    The `subprocess.CompletedProcess`, stdout and stderr as text.
  """
  env = {
    **os.environ,
    'JAX_PLATFORMS': 'cpu',
    'PYTHONDONTWRITEBYTECODE': '1',
    'XLA_FLAGS': '--xla_force_host_platform_device_count=2',
    **(env or {}),
  }
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


def flagfile(name):
  """`--flagfile=` for `experiments/flagfiles/<name>`."""
  return f'--flagfile={os.path.join(ROOT, "experiments", "flagfiles", name)}'
