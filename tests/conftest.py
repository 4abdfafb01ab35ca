"""Test-session set-up: 8 host CPU devices, so collective kernels have ranks to talk between.

XLA reads the flag when JAX creates its CPU client, i.e. at the first device use, which comes
after this file is imported; a device count the user already chose (XLA_FLAGS or
JAX_NUM_CPU_DEVICES) is kept. Single-device cases still run on device 0 only.
"""
import os

_FLAG = "--xla_force_host_platform_device_count"

if _FLAG not in os.environ.get("XLA_FLAGS", "") and not os.environ.get("JAX_NUM_CPU_DEVICES"):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=8".strip()
