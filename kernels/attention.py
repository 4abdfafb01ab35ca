"""Attention: jax.nn.dot_product_attention (XLA everywhere, cuDNN flash on NVIDIA) and a plain
jnp implementation, causal and not, grouped-query heads, forward and forward+backward.

FLOP counting (one function, `attention_flops`): the two matmuls QK^T and PV cost
2·B·N·T·S·H each, 4·B·N·T·S·H in all. Causal counts half of that (the useful,
unmasked work, as FlashAttention's benchmarks do), whether or not the implementation skips the
masked half: XLA computes it all, cuDNN skips it, so XLA's causal rate looks half as good,
which is the truth about the work it wastes. Backward costs twice the forward (dQ, dK, dV, dP:
four matmuls) and fwd+bwd three times the forward; recomputation inside a flash backward is
not counted (model FLOPs, not hardware FLOPs).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from kernels.base import ROUNDING_EXCESS_METRIC, Case, itemsize, random_array, rounding_excess

IMPLEMENTATIONS = ("xla", "cudnn", "jnp")
PASSES = ("fwd", "fwd_bwd")


def attention_flops(b: int, t: int, s: int, n_heads: int, head_dim: int, causal: bool, passes: str) -> float:
    """Model FLOPs of attention (see module docstring): 4·B·N·T·S·H forward, halved if causal,
    ×3 for forward+backward."""
    fwd = 4.0 * b * n_heads * t * s * head_dim
    if causal:
        fwd /= 2.0
    return fwd * (3.0 if passes == "fwd_bwd" else 1.0)


def attention_bytes(b, t, s, n_heads, n_kv_heads, head_dim, dtype, passes) -> float:
    """Compulsory traffic of a fused (flash) kernel: read Q, K, V, write O; backward also reads
    O and dO and writes dQ, dK, dV: 4 query-sized and 2 K+V-sized tensors."""
    q = b * t * n_heads * head_dim
    kv = 2 * b * s * n_kv_heads * head_dim
    fwd = (2 * q + kv) * itemsize(dtype)
    if passes == "fwd":
        return float(fwd)
    return float(fwd + (4 * q + 2 * kv) * itemsize(dtype))


def reference_attention(q, k, v, causal):
    """Plain jnp attention in the BTNH layout with grouped-query heads, softmax in fp32.

    `causal` is a Python bool (the timed jnp implementation: no mask at all when False) or a
    traced boolean (the output check's reference: one compiled program serves both masks)."""
    n, kh = q.shape[2], k.shape[2]
    rep = n // kh
    k = jnp.repeat(k, rep, axis=2)
    v = jnp.repeat(v, rep, axis=2)
    scale = 1.0 / np.sqrt(q.shape[-1])
    logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=jnp.float32) * scale
    if causal is not False:
        t, s = q.shape[1], k.shape[1]
        mask = jnp.tril(jnp.ones((t, s), dtype=bool), k=s - t)
        if causal is not True:
            mask = mask | ~causal
        logits = jnp.where(mask, logits, -jnp.inf)
    p = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bnts,bsnh->btnh", p.astype(v.dtype), v, preferred_element_type=jnp.float32).astype(q.dtype)


def _forward(impl: str, causal: bool):
    if impl == "jnp":
        return lambda q, k, v: reference_attention(q, k, v, causal)
    return lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=impl)


def _with_pass(fwd, passes: str):
    if passes == "fwd":
        return fwd

    def fwd_bwd(q, k, v, do):
        out, vjp = jax.vjp(fwd, q, k, v)
        return (out, *vjp(do))

    return fwd_bwd


@functools.lru_cache(maxsize=None)
def _reference_fn(passes: str):
    """fp32 HIGHEST-precision reference on the same (rounded) inputs, on the device. One jitted
    function per pass, the mask an argument, so the implementations and both masks of one shape
    share one compilation (each is seconds on a GPU)."""

    def f(causal, q, k, v, *rest):
        q32, k32, v32 = (x.astype(jnp.float32) for x in (q, k, v))
        with jax.default_matmul_precision("highest"):
            g = _with_pass(lambda a, b, c: reference_attention(a, b, c, causal), passes)
            return g(q32, k32, v32, *(r.astype(jnp.float32) for r in rest))

    return jax.jit(f)


def attention_reference(args, causal: bool, passes: str):
    """The check's reference for a case's inputs: the output, and for fwd_bwd dQ, dK, dV."""
    return _reference_fn(passes)(jnp.asarray(causal), *args)


def _skip(impl: str, dtype: str):
    def skip(device) -> str | None:
        if impl == "cudnn":
            if device.platform != "gpu":
                return "cuDNN attention needs an NVIDIA GPU"
            if dtype not in ("bf16", "fp16"):
                return "cuDNN attention takes fp16/bf16 only"
        if dtype == "fp16" and device.platform == "cpu":
            return "XLA:CPU has no fp16 dot with fp32 accumulation"
        return None

    return skip


def attention_case(b, t, n_heads, n_kv_heads, head_dim, causal, passes, impl, dtype="bf16", s=None) -> Case:
    s = t if s is None else s
    mask = "causal" if causal else "full"
    name = f"attention/{impl}/{passes}/{dtype}/{mask}/b{b}-t{t}-h{n_heads}-kv{n_kv_heads}-d{head_dim}"
    # On rounding_excess against an fp32 reference, what is left is the rounding of P (and, in
    # the backward pass, of dS) to the input dtype inside the kernel: 0.008-0.013 of a row for
    # XLA's bf16 forward+backward on a CPU at every T from 1K to 8K (tests/kernels/
    # test_output_check.py); a real bug (mask, scale, operands) gives errors of order 1.
    # The backward pass rounds more (P and dS at the input precision) on values that cancel: in
    # causal dQ's first rows dS = P(dP - D) is a difference of nearly equal terms. Measured on an
    # H200 (2026-11-30, bf16, 32 query and 8 KV heads, T 1K-8K): cuDNN's gradients 0.09-0.16,
    # XLA's and plain jnp's 0.05-0.06; the forward pass 0.02 or less. A real bug (mask, scale,
    # operands) reads 3 or more (test_output_check.py: test_wrong_attention_fails).
    tol = {"fp32": 1e-3, "bf16": 0.1, "fp16": 2e-2}[dtype] * (2.5 if passes == "fwd_bwd" else 1)
    fwd = _forward(impl, causal)
    fn = _with_pass(fwd, passes)

    def make(key):
        kq, kk, kv, kd = jax.random.split(key, 4)
        args = [
            random_array(kq, (b, t, n_heads, head_dim), dtype),
            random_array(kk, (b, s, n_kv_heads, head_dim), dtype),
            random_array(kv, (b, s, n_kv_heads, head_dim), dtype),
        ]
        if passes == "fwd_bwd":
            args.append(random_array(kd, (b, t, n_heads, head_dim), dtype))
        return fn, tuple(args)

    def check(args, out):
        ref = attention_reference(args, causal, passes)
        outs = out if isinstance(out, tuple) else (out,)
        refs = ref if isinstance(ref, tuple) else (ref,)
        err = max(rounding_excess(o, r, dtype) for o, r in zip(outs, refs))
        return err, tol, ROUNDING_EXCESS_METRIC + ", fp32-highest reference on the device"

    return Case(
        name=name,
        group="attention",
        params={
            "b": b, "t": t, "s": s, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "head_dim": head_dim,
            "causal": causal, "pass": passes, "impl": impl, "dtype": dtype,
        },
        make=make,
        flops=attention_flops(b, t, s, n_heads, head_dim, causal, passes),
        bytes=attention_bytes(b, t, s, n_heads, n_kv_heads, head_dim, dtype, passes),
        peak_dtype=dtype,
        check=check,
        skip=_skip(impl, dtype),
    )
