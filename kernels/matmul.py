"""Matrix multiply C[m,n] = A[m,k] @ B[k,n] in fp32, bf16, fp16 and fp8 (e4m3).

fp32 uses Precision.HIGHEST so it is real fp32 (on NVIDIA the default would be TF32). The
low-precision cases accumulate in fp32 and write bf16/fp16 (fp8 writes bf16), as training
frameworks do.

fp8 names its dot algorithm: at default precision XLA turns on cuBLASLt's fast (lower
precision) fp8 accumulation (`IsFastAccumEnabled` in XLA's stream_executor/cuda/
cuda_blas_lt.cc: fast when the algorithm is unset and the precision is DEFAULT), so the case asks
for DotAlgorithmPreset.ANY_F8_ANY_F8_F32: fp32 accumulation, `allow_imprecise_accumulation =
false`. cuBLASLt's fp8 kernels take B with K contiguous ("TN"); a row-major K x N B would make
XLA transpose it inside the timed program, so B is generated as N x K (`b_layout` "nk") and
contracted on its last axis.

`layout` names which operand a case reads transposed, as a training step's three GEMMs of one
weight do (forward Y = X·W, input gradient dX = dY·Wᵀ, weight gradient dW = Xᵀ·dY): "nn" A is
M x K and B is K x N; "nt" B is stored N x K (dY·Wᵀ: the weight read across its rows); "tn" A is
stored K x M (Xᵀ·dY: both operands contracted over their rows, the tokens). The same 2·m·n·k
FLOPs; XLA:CPU runs the three differently (one library call or another, a copy of an operand
or none), and the closing-the-loop check prices a step's backward GEMMs from the layout they
run in (harness.studies.closing_loop).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kernels.base import DTYPES, ROUNDING_EXCESS_METRIC, TOLERANCE, Case, itemsize, random_array, rounding_excess

OUT_DTYPE = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp8": "bf16"}

# Rows and columns of C checked against float64: checking all of an 8192^3 product (or even
# whole rows, which need all of B in float64 on the host) would take longer than timing it,
# and a systematic error (layout, accumulation, dtype) shows in any row and column.
CHECK_ROWS = 64
CHECK_COLS = 64


def matmul_flops(m: int, n: int, k: int) -> float:
    """2·m·n·k: one multiply and one add per inner-product term (the BLAS convention)."""
    return 2.0 * m * n * k


def matmul_bytes(m: int, n: int, k: int, dtype: str) -> float:
    """Compulsory traffic: read A and B once, write C once (a lower bound; tiles re-read)."""
    return float((m * k + k * n) * itemsize(dtype) + m * n * itemsize(OUT_DTYPE[dtype]))


# What the fp8 case asks XLA for, recorded in its params.
FP8_ALGORITHM = "ANY_F8_ANY_F8_F32"
FP8_ACCUMULATION = "fp32 (DotAlgorithmPreset.ANY_F8_ANY_F8_F32: no fast accumulation)"


LAYOUTS = ("nn", "nt", "tn")


def _fn(dtype: str, layout: str = "nn"):
    out = DTYPES[OUT_DTYPE[dtype]]
    if dtype == "fp8":
        algorithm = getattr(jax.lax.DotAlgorithmPreset, FP8_ALGORITHM)

        def matmul_fp8(a, b_nk):
            return jax.lax.dot_general(a, b_nk, (((1,), (1,)), ((), ())), precision=algorithm,
                                       preferred_element_type=out)

        return matmul_fp8
    precision = jax.lax.Precision.HIGHEST if dtype == "fp32" else None

    def matmul(a, b):
        return jnp.matmul(a, b, precision=precision, preferred_element_type=out)

    def matmul_nt(a, b_nk):
        return jnp.matmul(a, b_nk.T, precision=precision, preferred_element_type=out)

    def matmul_tn(a_km, b):
        return jnp.matmul(a_km.T, b, precision=precision, preferred_element_type=out)

    return {"nn": matmul, "nt": matmul_nt, "tn": matmul_tn}[layout]


def _spread(n: int, k: int) -> np.ndarray:
    """k indices spread evenly over range(n), first and last included."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).astype(int))


def _check(args, out, dtype: str, layout: str = "nn"):
    a, b = args
    nk = dtype == "fp8" or layout == "nt"  # B stored N x K
    km = layout == "tn"  # A stored K x M
    rows, cols = _spread(a.shape[1 if km else 0], CHECK_ROWS), _spread(b.shape[0 if nk else 1], CHECK_COLS)
    a_rows = a[:, rows].T if km else a[rows]
    a64 = np.asarray(a_rows.astype(jnp.float32), dtype=np.float64)
    b_cols = b[cols].T if nk else b[:, cols]
    b64 = np.asarray(b_cols.astype(jnp.float32), dtype=np.float64)
    got = np.asarray(out[rows][:, cols].astype(jnp.float32))
    return rounding_excess(got, a64 @ b64, OUT_DTYPE[dtype])


def _skip(dtype: str):
    def skip(device) -> str | None:
        if dtype == "fp8":
            if device.platform != "gpu":
                return "fp8 matmul needs an NVIDIA GPU with compute capability >= 8.9"
            cc = device.compute_capability
            if cc is None or float(cc) < 8.9:
                return f"fp8 matmul needs compute capability >= 8.9 (device has {cc})"
        if dtype == "fp16" and device.platform == "cpu":
            # XLA:CPU rejects F16 dot with F32 accumulation, the form we time everywhere else
            return "XLA:CPU has no fp16 dot with fp32 accumulation"
        return None

    return skip


def matmul_case(m: int, n: int, k: int, dtype: str, label: str | None = None, group: str = "matmul",
                layout: str = "nn") -> Case:
    """C[m,n] = A·B over k; `layout` (LAYOUTS, module docstring) says which operand is stored
    transposed. fp8 has its own fixed layout (B stored N x K)."""
    if layout not in LAYOUTS or (dtype == "fp8" and layout != "nn"):
        raise ValueError(f"matmul_case: layout {layout!r} (choose from {', '.join(LAYOUTS)}; fp8 has its own)")
    shape = f"{m}x{n}x{k}"
    name = f"matmul/{dtype}/{label}" if label else f"matmul/{dtype}/{shape}" + (
        "" if layout == "nn" else f"/{layout}")
    tol = TOLERANCE[dtype]

    def make(key):
        ka, kb = jax.random.split(key)
        a_shape = (k, m) if layout == "tn" else (m, k)
        b_shape = (n, k) if dtype == "fp8" or layout == "nt" else (k, n)
        return _fn(dtype, layout), (random_array(ka, a_shape, dtype), random_array(kb, b_shape, dtype))

    def check(args, out):
        return _check(args, out, dtype, layout), tol, ROUNDING_EXCESS_METRIC + ", float64 reference on sampled rows and columns"

    params = {"m": m, "n": n, "k": k, "dtype": dtype}
    if layout != "nn":
        params["layout"] = layout
    if dtype == "fp8":
        params.update(b_layout="nk", accumulation=FP8_ACCUMULATION)
    if label:
        params["shape"] = label
    return Case(
        name=name,
        group=group,
        params=params,
        make=make,
        flops=matmul_flops(m, n, k),
        bytes=matmul_bytes(m, n, k, dtype),
        peak_dtype=dtype,
        check=check,
        skip=_skip(dtype),
    )


def grouped_matmul_case(groups: int, m: int, n: int, k: int, dtype: str,
                        label: str | None = None) -> Case:
    """A grouped GEMM, as an MoE layer runs its experts: `groups` products of m x k by k x n,
    the rows of all groups in one A (groups*m x k), one B per group (groups x k x n), through
    jax.lax.ragged_dot (every group m rows). FLOPs and bytes are the groups' sum; the params'
    m is rows per group, so a calibration sizes it as the projection sizes one expert's GEMM."""
    if dtype not in ("bf16", "fp32"):
        raise ValueError(f"grouped matmul in {dtype}: bf16 or fp32")
    shape = f"g{groups}-{m}x{n}x{k}"
    name = f"matmul_grouped/{dtype}/{label or shape}"
    out_dtype = DTYPES[OUT_DTYPE[dtype]]
    precision = jax.lax.Precision.HIGHEST if dtype == "fp32" else None

    def grouped(a, b, sizes):
        return jax.lax.ragged_dot(a, b, sizes, precision=precision).astype(out_dtype)

    def make(key):
        ka, kb = jax.random.split(key)
        return grouped, (random_array(ka, (groups * m, k), dtype),
                         random_array(kb, (groups, k, n), dtype),
                         jnp.full((groups,), m, jnp.int32))

    def check(args, out):
        a, b, _ = args
        # a few groups, each checked as one matmul against float64 on sampled rows and columns
        worst = max(_check((a[g * m:(g + 1) * m], b[g]), out[g * m:(g + 1) * m], dtype)
                    for g in _spread(groups, 4))
        return worst, TOLERANCE[dtype], (ROUNDING_EXCESS_METRIC + ", float64 reference on "
                                          "sampled groups, rows and columns")

    params = {"m": m, "n": n, "k": k, "groups": groups, "dtype": dtype, "impl": "ragged_dot"}
    if label:
        params["shape"] = label
    return Case(
        name=name, group="matmul_grouped", params=params, make=make,
        flops=groups * matmul_flops(m, n, k),
        bytes=groups * matmul_bytes(m, n, k, dtype),
        peak_dtype=dtype, check=check, skip=_skip(dtype),
    )
