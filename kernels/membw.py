"""Memory-bound kernels: a STREAM-style add (the copy ceiling) and an RMSNorm, the
memory-bound op class that transformer layers spend their non-GEMM time in."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kernels.base import TOLERANCE, Case, itemsize, random_array, relative_error


def stream_bytes(n: int, dtype: str) -> float:
    """y = x + 1 reads n elements and writes n: 2·n·itemsize bytes (STREAM's counting)."""
    return 2.0 * n * itemsize(dtype)


def rmsnorm_bytes(rows: int, cols: int, dtype: str) -> float:
    """Read x and the weight, write y: (2·rows·cols + cols)·itemsize."""
    return float((2 * rows * cols + cols) * itemsize(dtype))


def rmsnorm_flops(rows: int, cols: int) -> float:
    """Per element: square, accumulate, scale, weight: 4 FLOPs (plus one rsqrt per row)."""
    return 4.0 * rows * cols + rows


def stream_case(n: int, dtype: str = "fp32") -> Case:
    def make(key):
        # The +1 keeps XLA from turning the kernel into a no-op alias of its input.
        return (lambda x: x + jnp.asarray(1, x.dtype)), (random_array(key, (n,), dtype),)

    def check(args, out):
        x = np.asarray(args[0].astype(jnp.float32), dtype=np.float64)
        return relative_error(np.asarray(out.astype(jnp.float32)), x + 1.0), TOLERANCE[dtype]

    return Case(
        name=f"membw/stream_add/{dtype}/{n * itemsize(dtype)}B",
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
        x = np.asarray(args[0].astype(jnp.float32), dtype=np.float64)
        w = np.asarray(args[1].astype(jnp.float32), dtype=np.float64)
        ref = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w
        return relative_error(np.asarray(out.astype(jnp.float32)), ref), TOLERANCE[dtype]

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
