"""Test-wide setup: simulated CPU devices before JAX initialises a backend,
and hypothesis files under pytest's temporary directory.

Multi-device tests need several devices, and XLA decides the count of host
devices once, when the first backend starts. Four keeps the suite's compile
work small on a 2-core machine while still exercising real collectives.
Single-device code is unaffected: it runs on the default device.
"""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update('jax_num_cpu_devices', 4)


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
  """Hypothesis keeps its files under pytest's base temporary directory.

  By default it writes ``.hypothesis/`` (example database, constants cache)
  into the working directory, the checkout. Its pytest plugin fills the
  constants cache during collection, before any fixture runs, so this uses
  the factory behind the ``tmp_path_factory`` fixture, which the tmpdir
  plugin creates in its own ``pytest_configure``.
  """
  try:
    from hypothesis import configuration
  except ImportError:  # a dev dependency; without it no test uses it
    return
  base = config._tmp_path_factory.getbasetemp()
  configuration.set_hypothesis_home_dir(base / 'hypothesis')


@pytest.fixture(scope='session')
def python_docs_dir(tmp_path_factory):
  """A TFDS data dir holding `python_text/docs`, prepared once a session.

  Read-only for the tests that use it; a test that prepares more datasets
  needs a directory of its own.
  """
  from lrjax import data

  path = str(tmp_path_factory.mktemp('python_docs'))
  data.prepare_python_text('docs', path)
  return path
