"""Analytic FLOP and byte formulas against hand counts."""

from kernels.attention import attention_bytes, attention_flops
from kernels.matmul import matmul_bytes, matmul_flops
from kernels.membw import rmsnorm_bytes, stream_bytes
from kernels.shapes import model_gemms


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


def test_model_gemm_shapes_llama3_70b_tp8():
    shapes = {layer: (m, n, k) for layer, m, n, k in model_gemms("llama3-70b", 8, 4096)}
    assert shapes["attn_qkv"] == (4096, (64 + 16) * 128 // 8, 8192)
    assert shapes["mlp_gate_up"] == (4096, 2 * 28672 // 8, 8192)
    assert shapes["mlp_down"] == (4096, 8192, 28672 // 8)
    assert shapes["attn_out"] == (4096, 8192, 64 * 128 // 8)


def test_model_gemm_shapes_deepseek_v3():
    shapes = {layer: (m, n, k) for layer, m, n, k in model_gemms("deepseek-v3", 1, 4096)}
    assert shapes["mla_kv_a"] == (4096, 512 + 64, 7168)
    assert shapes["mla_q_b"] == (4096, 128 * 192, 1536)
    assert shapes["expert_gate_up"] == (4096 * 8 // 256, 4096, 7168)  # balanced routing
    # Parameters of one MoE layer's routed experts: 256 experts x 3 matrices of 7168x2048
    up, down = shapes["expert_gate_up"], shapes["expert_down"]
    assert 256 * (up[1] * up[2] + down[1] * down[2]) == 256 * 3 * 7168 * 2048
