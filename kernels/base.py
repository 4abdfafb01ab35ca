"""What a benchmark case is: a pure JAX function, its inputs, its analytic cost and a check.

Nothing here times or stores anything; the harness does that.
"""
from __future__ import annotations

import functools
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

# Output-check tolerance per compute dtype, on `rounding_excess`: the error beyond the rounding
# of a float64 reference (from the same, already rounded, inputs) to the output dtype, relative
# to the reference's row. What is left is accumulation order and intermediate rounding: ~1e-6
# for fp32; a few 2^-8 at most for bf16 (fp8 writes bf16), 2^-11 for fp16.
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "fp16": 5e-3, "fp8": 3e-2}

ROUNDING_EXCESS_METRIC = (
    "max over elements of (|out-ref| - half an ulp of ref in the output dtype) / the larger of the "
    "rms of ref's row (last axis) and of the whole ref")


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


def _rounding_excess(xp, out, ref, nmant: int, minexp: int):
    """rounding_excess on numpy (float64, host) or jax.numpy (float32, device) arrays."""
    if ref.ndim == 0:
        out, ref = out.reshape(1), ref.reshape(1)
    _, exponent = xp.frexp(ref)  # ref = m * 2**exponent, 0.5 <= |m| < 1
    half_ulp = xp.ldexp(xp.ones_like(ref), xp.maximum(exponent - 1, minexp) - nmant - 1)
    excess = xp.maximum(xp.abs(out - ref) - half_ulp, 0)
    row = xp.sqrt(xp.mean(ref * ref, axis=-1, keepdims=True))
    whole = xp.sqrt(xp.mean(ref * ref))
    # A row smaller than the tensor's typical row is measured against the typical row: in the
    # gradients of attention a row is small by cancellation (dS = P(dP - D) with the dP of a few
    # keys nearly equal; causal attention's first dQ row is zero), while the rounding inside a
    # correct kernel is not. Against their own size such rows failed every bf16 fwd_bwd case on
    # an H200 (errors 0.2-3, noise over noise). Rows above it keep their own size.
    scale = xp.maximum(row, whole)
    scale = xp.where(scale > 0, scale, 1)
    return xp.where(xp.all(xp.isfinite(out)), xp.max(excess / scale), xp.inf)


_rounding_excess_device = jax.jit(functools.partial(_rounding_excess, jnp), static_argnums=(2, 3))


def rounding_excess(out, ref, dtype_name: str) -> float:
    """The output check's error: how far `out` is from `ref` beyond what rounding `ref` to the
    output dtype allows, relative to the size of the reference where it is measured.

    Per element: max(|out - ref| - half an ulp of ref in `dtype_name`, 0), divided by the rms
    of the reference's row (the last axis) or the whole array's rms, whichever is larger; the
    largest is returned, inf if `out` is not finite. A correctly rounded output scores exactly
    0 at any size. Why not max|out-ref|/rms(ref): the rows of causal attention (and its
    gradients) shrink as 1/sqrt(position) while the rounding of the large early rows does not,
    so the whole tensor's rms makes correct bf16 outputs fail at long sequences; and bf16
    rounding of RMSNorm's largest outputs alone exceeds 2^-8 of its rms.

    Device arrays (jax) are compared on the device in float32, so that large outputs never
    travel to the host; host arrays in float64.
    """
    info = jnp.finfo(DTYPES[dtype_name])
    nmant, minexp = int(info.nmant), int(info.minexp)
    if isinstance(out, jax.Array) or isinstance(ref, jax.Array):
        out = jnp.asarray(out).astype(jnp.float32)
        ref = jnp.asarray(ref).astype(jnp.float32)
        if out.shape != ref.shape:
            raise ValueError(f"output shape {out.shape} != reference shape {ref.shape}")
        return float(_rounding_excess_device(out, ref, nmant, minexp))
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} != reference shape {ref.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        return float(_rounding_excess(np, out, ref, nmant, minexp))


def random_array(key, shape, dtype_name: str) -> jax.Array:
    """Standard-normal data in the requested dtype; never zeros (zeros flatter some hardware)."""
    x = jax.random.normal(key, shape, dtype=jnp.float32)
    return x.astype(DTYPES[dtype_name])


def itemsize(dtype_name: str) -> int:
    return jnp.dtype(DTYPES[dtype_name]).itemsize
