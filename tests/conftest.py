"""Test-session set-up: 8 host CPU devices, so collective kernels have ranks to talk between.

The same rule `rackbench run` applies (harness.device.default_cpu_devices): a device count
the user already chose (XLA_FLAGS or JAX_NUM_CPU_DEVICES) is kept. XLA reads the flag when JAX
creates its CPU client, at the first device use, which comes after this file is imported.
Single-device cases still run on device 0 only.
"""
import os
from pathlib import Path

from harness.device import default_cpu_devices

default_cpu_devices(os.environ)


def pytest_collection_modifyitems(config, items):
    """Everything under tests/bench is the `bench` suite: wall-clock and speed checks that need
    a quiet machine. `make test` deselects it (pyproject addopts); `make bench` runs it."""
    bench = Path(__file__).parent / "bench"
    for item in items:
        if bench in Path(str(item.fspath)).parents:
            item.add_marker("bench")
