"""Shared helpers for harness tests: tiny synthetic cases that run in milliseconds."""
import jax.numpy as jnp

from harness.timing import TimingConfig
from kernels.base import Case, relative_error
from kernels.matmul import matmul_case


def tiny_case(name="tiny/ok", out=None, raises=None, interrupt=False):
    """A 32x32 matmul-like case; `out` overrides the output (wrong answers), `raises` makes the
    kernel's construction raise, `interrupt` simulates Ctrl-C."""
    base = matmul_case(32, 32, 32, "fp32")

    def make(key):
        if interrupt:
            raise KeyboardInterrupt
        if raises is not None:
            raise raises
        fn, args = base.make(key)
        return (fn if out is None else (lambda a, b: fn(a, b) * 0 + out)), args

    def check(args, result):
        a, b = args
        return relative_error(result, jnp.matmul(a, b, precision="highest")), 1e-4

    return Case(name=name, group="matmul", params={"n": 32, "dtype": "fp32"}, make=make, flops=2 * 32**3, bytes=3 * 32 * 32 * 4,
                peak_dtype="fp32", check=check)


def fast_cfg():
    """Exactly 5 samples a case: no extra samples for a noisy one (a busy CI box would make the
    count vary); a 1 MiB memory-ceiling sweep of one call (the real one takes seconds)."""
    return TimingConfig(min_time_s=0.002, samples=5, min_samples=5, max_samples=5, max_case_time_s=0.2,
                        ceiling_calls=1, ceiling_buffer_bytes=2**20)
