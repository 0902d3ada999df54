"""One persistent JAX compilation cache for the whole test session.

Many tests compile the same small programs (the digits MLP's train step,
the tiny transformer's); a cache shared by the xdist workers and their
subprocesses compiles each once. A cache hit loads the executable XLA
compiled for the same program, flags and JAX version, so what a test
checks does not change; only the time does (a quarter of the suite's CPU
time on the 2-core development machine, BUILD.md). A cache set by the
caller's environment is used as it is.
"""

import os
import shutil
import tempfile

_CACHE = 'JAX_COMPILATION_CACHE_DIR'
_MADE = 'LRJAX_TEST_JAX_CACHE_MADE'


def pytest_configure(config):
  # The controller (or a run without xdist) makes the directory before any
  # JAX import; xdist workers inherit the environment.
  if _CACHE in os.environ or hasattr(config, 'workerinput'):
    return
  os.environ[_CACHE] = tempfile.mkdtemp(prefix='lrjax-test-jax-cache-')
  os.environ[_MADE] = '1'
  # Cache every program: small CPU programs compile in well under the
  # default one-second threshold.
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'


def pytest_unconfigure(config):
  if os.environ.pop(_MADE, None) and not hasattr(config, 'workerinput'):
    shutil.rmtree(os.environ.pop(_CACHE), ignore_errors=True)
