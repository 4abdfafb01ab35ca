"""Decode attention and grouped GEMM cases (kernels/decode_attention.py, kernels/matmul.py's
grouped_matmul_case): their counts, and checks that pass the kernel and fail planted bugs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from kernels.decode_attention import decode_attention_case, decode_attention_flops
from kernels.matmul import grouped_matmul_case


@pytest.mark.parametrize("case", [
    decode_attention_case("gqa", 4, 512, 8, 1, 64, dtype="fp32"),
    decode_attention_case("gqa", 2, 256, 8, 2, 64, kv_dtype="fp8"),
    decode_attention_case("mla", 2, 256, 16, rows=2, d_latent=128, d_rope=32),
    decode_attention_case("mla", 2, 256, 16, rows=1, kv_dtype="fp8", d_latent=128, d_rope=32),
], ids=lambda c: c.name)
def test_decode_attention_passes_its_check_and_a_wrong_scale_fails_it(case):
    fn, args = case.make(jax.random.key(0))
    err, tol, _ = case.check(args, jax.jit(fn)(*args))
    assert err < tol
    bad = jax.jit(lambda q, *cache: fn(q * 3.0, *cache))(*args)  # softmax scale off by 3
    assert case.check(args, bad)[0] > 10 * tol


def test_decode_attention_counts():
    """GQA: 2·B·R·N·S·(D + D) FLOPs and the cache read once (K and V of N_kv heads); MLA: one
    latent of 512 + 64 per token, values its first 512."""
    gqa = decode_attention_case("gqa", 64, 8192, 8, 1, 128)
    assert gqa.flops == 2.0 * 64 * 1 * 8 * 8192 * 256
    assert gqa.bytes == 64 * 8192 * 1 * 256 * 2 + 64 * 8 * 256 * 2
    assert gqa.flops / gqa.bytes == pytest.approx(8.0, rel=0.01)  # memory-bound on any GPU
    mla = decode_attention_case("mla", 64, 4096, 128, rows=2, kv_dtype="fp8")
    assert mla.flops == decode_attention_flops(64, 2, 128, 4096, 576, 512)
    assert mla.bytes == 64 * 4096 * 576 * 1 + 64 * 2 * 128 * 1088 * 2
    assert mla.params["kv_dtype"] == "fp8" and mla.params["impl"] == "xla"


def test_grouped_gemm_passes_its_check_and_a_wrong_group_fails_it():
    case = grouped_matmul_case(8, 64, 256, 512, "bf16")
    fn, args = case.make(jax.random.key(0))
    out = jax.jit(fn)(*args)
    err, tol, _ = case.check(args, out)
    assert err < tol and out.shape == (8 * 64, 256)
    a, b, sizes = args
    swapped = jax.jit(fn)(a, jnp.roll(b, 1, axis=0), sizes)  # each group against its neighbour's B
    assert case.check(args, swapped)[0] > 10 * tol
    assert case.flops == 8 * 2.0 * 64 * 256 * 512 and case.params["groups"] == 8
