"""Test-session set-up: 8 host CPU devices, so collective kernels have ranks to talk between.

The same rule `rackbench run` applies (harness.cmd_run.default_cpu_devices): a device count
the user already chose (XLA_FLAGS or JAX_NUM_CPU_DEVICES) is kept. XLA reads the flag when JAX
creates its CPU client, at the first device use, which comes after this file is imported.
Single-device cases still run on device 0 only.
"""
import os

from harness.cmd_run import default_cpu_devices

default_cpu_devices(os.environ)
