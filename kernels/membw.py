"""Memory-bound kernels: a STREAM-style add (the copy ceiling) and an RMSNorm, the
memory-bound op class that transformer layers spend their non-GEMM time in. The harness's
memory-ceiling sweep (harness/ceilings.py) times the same add over buffers several times the
last-level cache, filled by `ramp` (random data at that size would cost seconds to draw)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from kernels.base import (DTYPES, ROUNDING_EXCESS_METRIC, TOLERANCE, Case, itemsize, random_array,
                          rounding_excess)
from kernels.naming import size_label

# On the device: these outputs are up to 2^28 elements, which in float64 on the host would
# cost seconds and gigabytes per check. float32 x + 1 is what a correct kernel writes; the
# float32 RMSNorm is within 1e-6 of float64.
_REF = ", float32 reference on the device"


@functools.partial(jax.jit, static_argnums=2)
def _rmsnorm_reference(x, w, eps):
    """RMSNorm in float32, written differently from the kernel (a division by the square root,
    not a multiplication by rsqrt)."""
    x, w = x.astype(jnp.float32), w.astype(jnp.float32)
    return x / jnp.sqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps) * w


def stream_bytes(n: int, dtype: str) -> float:
    """y = x + 1 reads n elements and writes n: 2·n·itemsize bytes (STREAM's counting)."""
    return 2.0 * n * itemsize(dtype)


def rmsnorm_bytes(rows: int, cols: int, dtype: str) -> float:
    """Read x and the weight, write y: (2·rows·cols + cols)·itemsize."""
    return float((2 * rows * cols + cols) * itemsize(dtype))


def rmsnorm_flops(rows: int, cols: int) -> float:
    """Per element: square, accumulate, scale, weight: 4 FLOPs (plus one rsqrt per row)."""
    return 4.0 * rows * cols + rows


def stream_add(x):
    """y = x + 1: the +1 keeps XLA from turning the kernel into a no-op alias of its input."""
    return x + jnp.asarray(1, x.dtype)


# ramp's values cycle through 1.._RAMP_PERIOD: small integers, exact in every dtype (so x + 1
# is exact too), never zero.
_RAMP_PERIOD = 61


@functools.partial(jax.jit, static_argnums=(0, 1))
def ramp(n: int, dtype: str) -> jax.Array:
    """n elements 1, 2, ..., 61, 1, 2, ... built on the device: no host copy, no PRNG."""
    return (jax.lax.iota(jnp.int32, n) % _RAMP_PERIOD + 1).astype(DTYPES[dtype])


def stream_case(n: int, dtype: str = "fp32") -> Case:
    def make(key):
        return stream_add, (random_array(key, (n,), dtype),)

    def check(args, out):
        ref = args[0].astype(jnp.float32) + 1.0
        return rounding_excess(out, ref, dtype), TOLERANCE[dtype], ROUNDING_EXCESS_METRIC + _REF

    return Case(
        name=f"membw/stream_add/{dtype}/{size_label(n * itemsize(dtype))}",
        group="membw",
        params={"op": "stream_add", "elements": n, "dtype": dtype},
        make=make,
        flops=float(n),
        bytes=stream_bytes(n, dtype),
        peak_dtype=None,
        check=check,
    )


def rmsnorm_case(rows: int, cols: int, dtype: str = "bf16", eps: float = 1e-6) -> Case:
    def rmsnorm(x, w):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
        return (y * w.astype(jnp.float32)).astype(x.dtype)

    def make(key):
        kx, kw = jax.random.split(key)
        return rmsnorm, (random_array(kx, (rows, cols), dtype), random_array(kw, (cols,), dtype))

    def check(args, out):
        return rounding_excess(out, _rmsnorm_reference(*args, eps), dtype), TOLERANCE[dtype], ROUNDING_EXCESS_METRIC + _REF

    return Case(
        name=f"membw/rmsnorm/{dtype}/{rows}x{cols}",
        group="membw",
        params={"op": "rmsnorm", "rows": rows, "cols": cols, "dtype": dtype},
        make=make,
        flops=rmsnorm_flops(rows, cols),
        bytes=rmsnorm_bytes(rows, cols, dtype),
        peak_dtype=None,
        check=check,
    )
