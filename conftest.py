"""Test-wide setup: simulated CPU devices before JAX initialises a backend.

Multi-device tests need several devices, and XLA decides the count of host
devices once, when the first backend starts. Four keeps the suite's compile
work small on a 2-core machine while still exercising real collectives.
Single-device code is unaffected: it runs on the default device.
"""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402

jax.config.update('jax_num_cpu_devices', 4)
