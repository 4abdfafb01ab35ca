"""What a benchmark case is: a pure JAX function, its inputs, its analytic cost and a check.

Nothing here times or stores anything; the harness does that.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

# Dtype names used throughout rackbench (and as keys of the catalog's peak table).
DTYPES = {
    "fp32": jnp.float32,
    "bf16": jnp.bfloat16,
    "fp16": jnp.float16,
    "fp8": jnp.float8_e4m3fn,
}

# Output-check tolerance per compute dtype: max |out - ref| / rms(ref), with the reference in
# float64 from the same (already rounded) inputs. So the error left is output rounding plus
# accumulation order: about 2^-8 for a bf16 output, 2^-11 for fp16, ~1e-6 for fp32.
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 5e-3, "fp8": 3e-2}


@dataclass(frozen=True)
class Case:
    """One measurable kernel.

    `make(key)` returns (fn, args): a pure function and its random inputs. `fn(*args)` is what
    is compiled and timed. `check(args, out)` returns (error, tolerance) or (error, tolerance,
    what the error measures), or raises; `None`
    means the case has no reference (it is then recorded as unchecked).
    `skip(device)` returns a reason to skip on this device, or None.
    `peak_dtype` names the catalog peak that bounds it (None: memory-bound only).
    `derived(median_s)` returns case-specific figures (e.g. a collective's algbw and busbw)
    that the runner stores in the result's `extra`.
    `multi_device` marks a case that runs on every device JAX sees, across all processes: in a
    multi-process run every process must run it in lock-step.
    """

    name: str
    group: str
    params: Mapping[str, Any]
    make: Callable[[jax.Array], tuple[Callable, tuple]]
    flops: float
    bytes: float
    peak_dtype: str | None
    check: Callable[[tuple, Any], tuple] | None = None
    skip: Callable[[Any], str | None] = field(default=lambda device: None)
    note: str = ""
    derived: Callable[[float], Mapping[str, Any]] | None = None
    multi_device: bool = False


def relative_error(out, ref) -> float:
    """max |out - ref| / rms(ref): scale-free, so one tolerance serves every size."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} != reference shape {ref.shape}")
    if not np.all(np.isfinite(out)):
        return float("inf")
    scale = float(np.sqrt(np.mean(ref * ref))) or 1.0
    return float(np.max(np.abs(out - ref)) / scale)


def random_array(key, shape, dtype_name: str) -> jax.Array:
    """Standard-normal data in the requested dtype; never zeros (zeros flatter some hardware)."""
    x = jax.random.normal(key, shape, dtype=jnp.float32)
    return x.astype(DTYPES[dtype_name])


def itemsize(dtype_name: str) -> int:
    return jnp.dtype(DTYPES[dtype_name]).itemsize
