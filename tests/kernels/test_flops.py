"""Analytic FLOP and byte formulas against hand counts."""

from kernels.attention import attention_bytes, attention_flops
from kernels.matmul import matmul_bytes, matmul_flops
from kernels.membw import rmsnorm_bytes, stream_bytes


def test_matmul_flops_and_bytes_by_hand():
    # 2x3 @ 3x4: 8 outputs, each 3 multiplies + 3 adds (BLAS counts 2k per output)
    assert matmul_flops(2, 4, 3) == 48
    assert matmul_bytes(2, 4, 3, "fp32") == (6 + 12 + 8) * 4
    assert matmul_bytes(2, 4, 3, "bf16") == (6 + 12 + 8) * 2
    assert matmul_bytes(2, 4, 3, "fp8") == (6 + 12) * 1 + 8 * 2  # fp8 inputs, bf16 output


def test_attention_flops_by_hand():
    # B=1, N=1, T=S=2, H=1: QK^T is 2x1 @ 1x2 = 2*2*2*1 = 8 FLOPs, PV the same -> 16
    assert attention_flops(1, 2, 2, 1, 1, causal=False, passes="fwd") == 16
    assert attention_flops(1, 2, 2, 1, 1, causal=True, passes="fwd") == 8
    assert attention_flops(1, 2, 2, 1, 1, causal=False, passes="fwd_bwd") == 48
    # scales linearly in batch, heads and head dim, quadratically in sequence
    base = attention_flops(2, 1024, 1024, 8, 128, False, "fwd")
    assert attention_flops(2, 2048, 2048, 8, 128, False, "fwd") == 4 * base
    assert base == 4 * 2 * 8 * 1024 * 1024 * 128


def test_attention_bytes_by_hand():
    # fwd: read Q, K, V, write O; GQA with 1 KV head of 2 query heads, bf16
    b, t, n, kv, h = 1, 4, 2, 1, 8
    q = b * t * n * h
    kvn = 2 * b * t * kv * h
    assert attention_bytes(b, t, t, n, kv, h, "bf16", "fwd") == (2 * q + kvn) * 2
    # backward reads Q, O, dO, K, V and writes dQ, dK, dV
    assert attention_bytes(b, t, t, n, kv, h, "bf16", "fwd_bwd") == (2 * q + kvn + 4 * q + 2 * kvn) * 2


def test_membw_bytes():
    assert stream_bytes(1000, "fp32") == 8000
    assert rmsnorm_bytes(10, 100, "bf16") == (2 * 1000 + 100) * 2
