"""Decode attention: the queries of one new token per sequence (R query rows with multi-token
prediction drafts) against a KV cache of S tokens, the kernel a serving step runs once per
layer. Two shapes, as the projection prices them (clusters.inference):
- "gqa": N query heads share N_kv cached heads of head dim D (Llama 3 70B at TP 8: 8 query
  heads over one KV head of 128);
- "mla": absorbed multi-head latent attention (DeepSeek-V3): N query heads over one cached
  latent of d_latent + d_rope (512 + 64); the values are its first d_latent.

FLOPs (`decode_attention_flops`): QK^T and PV over every cached token, 2·B·R·N·S·(Dk + Dv); no
causal halving (every cached token is in the past). Bytes: the cache read once, plus Q and O.
With few query heads per cached head the kernel is memory-bound (GQA: about 8 FLOP a byte);
absorbed MLA with 128 heads is not (about 240).

The cache may be fp8 (e4m3), upcast in the kernel to the compute dtype: FlashMLA's FP8 kernel
dequantizes its cache and runs its matmuls in bf16 the same way. The implementation is plain
jnp (XLA fuses it); the serving stacks run FlashMLA or FlashInfer, so a calibration takes from
these cases the chip's cache-read bandwidth when memory-bound, and their compute rate only for
a stack of the same implementation (harness.studies.calibrate).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from kernels.base import (DTYPES, ROUNDING_EXCESS_METRIC, Case, itemsize, random_array,
                          rounding_excess)

KINDS = ("gqa", "mla")


def decode_attention_flops(b: int, rows: int, n_heads: int, s: int, dk: int, dv: int) -> float:
    """QK^T (2·Dk) and PV (2·Dv) per query row, head and cached token."""
    return 2.0 * b * rows * n_heads * s * (dk + dv)


def _dims(kind, head_dim, d_latent, d_rope):
    if kind == "mla":
        return d_latent + d_rope, d_latent
    return head_dim, head_dim


def _attend(kind, n_kv_heads, dv, q, k, v, compute):
    """Softmax(q k^T / sqrt(Dk)) v in `compute` dtype, the softmax in fp32; q (B, R, N, Dk).
    The dots return the compute dtype (a GPU accumulates them in fp32 inside; XLA:CPU has no
    bf16 x bf16 -> fp32 batched dot)."""
    b, r, n, dk = q.shape
    scale = dk ** -0.5
    if kind == "mla":  # one latent for every head: k (B, S, Dk), values its first dv
        c = k.astype(compute)
        scores = jnp.einsum("brnd,bsd->bnrs", q, c).astype(jnp.float32) * scale
        p = jax.nn.softmax(scores, axis=-1).astype(compute)
        return jnp.einsum("bnrs,bsd->brnd", p, c[..., :dv])
    g = n // n_kv_heads
    qg = q.reshape(b, r, n_kv_heads, g, dk)
    kc, vc = k.astype(compute), v.astype(compute)
    scores = jnp.einsum("brkgd,bskd->bkgrs", qg, kc).astype(jnp.float32) * scale
    p = jax.nn.softmax(scores, axis=-1).astype(compute)
    out = jnp.einsum("bkgrs,bskd->brkgd", p, vc)
    return out.reshape(b, r, n, dv)


def decode_attention_case(kind: str, b: int, s: int, n_heads: int, n_kv_heads: int = 1,
                          head_dim: int = 128, rows: int = 1, kv_dtype: str | None = None,
                          dtype: str = "bf16", d_latent: int = 512, d_rope: int = 64) -> Case:
    """One decode-attention case (module notes); the cache is in `dtype` unless `kv_dtype`."""
    if kind not in KINDS:
        raise ValueError(f"decode attention kind {kind!r}: one of {KINDS}")
    kv_dtype = kv_dtype or dtype
    dk, dv = _dims(kind, head_dim, d_latent, d_rope)
    kv_heads = 1 if kind == "mla" else n_kv_heads
    compute = DTYPES[dtype]
    # P is rounded to the compute dtype before PV, as in kernels/attention.py's forward pass,
    # whose tolerance this takes (0.01-0.02 seen on a CPU at S 256-512; a wrong scale reads 16)
    tol = {"fp32": 1e-3, "bf16": 0.1, "fp16": 2e-2}[dtype]

    def fn(q, *cache):
        k, v = (cache[0], None) if kind == "mla" else cache
        return _attend(kind, kv_heads, dv, q, k, v, compute).astype(compute)

    def make(key):
        kq, kk, kv = jax.random.split(key, 3)
        q = random_array(kq, (b, rows, n_heads, dk), dtype)
        if kind == "mla":
            return fn, (q, random_array(kk, (b, s, dk), kv_dtype))
        return fn, (q, random_array(kk, (b, s, kv_heads, dk), kv_dtype),
                    random_array(kv, (b, s, kv_heads, dv), kv_dtype))

    def check(args, out):
        q, *cache = args
        k, v = (cache[0], None) if kind == "mla" else cache
        ref = _attend(kind, kv_heads, dv, q.astype(jnp.float32), k.astype(jnp.float32),
                      None if v is None else v.astype(jnp.float32), jnp.float32)
        return (rounding_excess(out, ref, dtype), tol,
                ROUNDING_EXCESS_METRIC + ", float32 reference on the device from the same cache")

    cache_elems = b * s * (dk if kind == "mla" else kv_heads * (dk + dv))
    moved = cache_elems * itemsize(kv_dtype) + b * rows * n_heads * (dk + dv) * itemsize(dtype)
    mla = f"-dl{d_latent}-dr{d_rope}" if kind == "mla" else f"-kv{kv_heads}-d{dk}"
    return Case(
        name=f"decode_attention/{kind}/{dtype}-kv{kv_dtype}/b{b}-s{s}-h{n_heads}{mla}-r{rows}",
        group="decode_attention",
        params={"kind": kind, "b": b, "s": s, "t": rows, "rows": rows, "n_heads": n_heads,
                "n_kv_heads": kv_heads, "head_dim": dk, "dv": dv, "kv_dtype": kv_dtype,
                "dtype": dtype, "impl": "xla", "pass": "decode"},
        make=make,
        flops=decode_attention_flops(b, rows, n_heads, s, dk, dv),
        bytes=float(moved),
        peak_dtype=dtype,
        check=check,
    )
