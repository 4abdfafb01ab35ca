"""The device loop returns the kernel's own output (the nudge never changes a value). Its
timing properties (dispatch excluded, flat per repetition, agreement with a hand-written loop)
are wall-clock checks: tests/bench/test_timing_properties.py."""
import jax
import numpy as np

from harness.timing import repeat_on_device
from kernels.matmul import matmul_case


def _inputs(n):
    fn, args = matmul_case(n, n, n, "fp32").make(jax.random.key(0))
    return fn, args


def test_device_loop_returns_the_kernels_output():
    fn, args = _inputs(64)
    out = jax.jit(repeat_on_device(fn, 3))(*args)
    # the nudge is 1e-30 times an output element: it never changes a value
    np.testing.assert_allclose(np.asarray(out), np.asarray(fn(*args)), rtol=1e-6)
