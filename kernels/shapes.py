"""The GEMM shapes real models run, per layer, at a tensor-parallel degree and token count.

Dimensions come from the model papers/cards, cited per model. Column-parallel layers split
their output dimension by TP, row-parallel layers their input dimension (Megatron-LM,
Shoeybi et al. 2019, arXiv 1909.08053 §3). m is the tokens in flight on one rank.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DenseDims:
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    source: str


@dataclass(frozen=True)
class MlaMoeDims:
    hidden: int
    heads: int
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    expert_ffn: int
    dense_ffn: int
    routed_experts: int
    experts_per_token: int
    vocab: int
    source: str


MODELS = {
    "llama3-8b": DenseDims(4096, 14336, 32, 8, 128, 128256, "Llama 3 paper, arXiv 2407.21783 Table 3"),
    "llama3-70b": DenseDims(8192, 28672, 64, 8, 128, 128256, "Llama 3 paper, arXiv 2407.21783 Table 3"),
    "llama3-405b": DenseDims(16384, 53248, 128, 8, 128, 128256, "Llama 3 paper, arXiv 2407.21783 Table 3"),
    "deepseek-v3": MlaMoeDims(
        hidden=7168, heads=128, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
        qk_rope_head_dim=64, v_head_dim=128, expert_ffn=2048, dense_ffn=18432,
        routed_experts=256, experts_per_token=8, vocab=129280,
        source="DeepSeek-V3 technical report, arXiv 2412.19437 §4.2; HF config.json",
    ),
}


def dense_gemms(d: DenseDims, tp: int, tokens: int) -> list[tuple[str, int, int, int]]:
    """(layer, m, n, k) of a Llama-style block with SwiGLU, plus the LM head."""
    qkv_out = (d.heads + 2 * d.kv_heads) * d.head_dim
    return [
        ("attn_qkv", tokens, qkv_out // tp, d.hidden),
        ("attn_out", tokens, d.hidden, d.heads * d.head_dim // tp),
        ("mlp_gate_up", tokens, 2 * d.ffn // tp, d.hidden),
        ("mlp_down", tokens, d.hidden, d.ffn // tp),
        ("lm_head", tokens, d.vocab // tp, d.hidden),
    ]


def mla_moe_gemms(d: MlaMoeDims, tp: int, tokens: int) -> list[tuple[str, int, int, int]]:
    """(layer, m, n, k) of a DeepSeek-V3 block: MLA projections, one routed expert, dense MLP.

    The low-rank down-projections (q_a, kv_a) are small and replicated, not TP-split. Routed
    experts are whole on their rank (expert parallel); with balanced routing each expert sees
    tokens·top_k/experts rows.
    """
    qk_head = d.qk_nope_head_dim + d.qk_rope_head_dim
    per_expert = max(1, tokens * d.experts_per_token // d.routed_experts)
    return [
        ("mla_q_a", tokens, d.q_lora_rank, d.hidden),
        ("mla_q_b", tokens, d.heads * qk_head // tp, d.q_lora_rank),
        ("mla_kv_a", tokens, d.kv_lora_rank + d.qk_rope_head_dim, d.hidden),
        ("mla_kv_b", tokens, d.heads * (d.qk_nope_head_dim + d.v_head_dim) // tp, d.kv_lora_rank),
        ("attn_out", tokens, d.hidden, d.heads * d.v_head_dim // tp),
        ("expert_gate_up", per_expert, 2 * d.expert_ffn, d.hidden),
        ("expert_down", per_expert, d.hidden, d.expert_ffn),
        ("dense_mlp_gate_up", tokens, 2 * d.dense_ffn // tp, d.hidden),
    ]


def model_gemms(model: str, tp: int, tokens: int) -> list[tuple[str, int, int, int]]:
    d = MODELS[model]
    if isinstance(d, DenseDims):
        return dense_gemms(d, tp, tokens)
    return mla_moe_gemms(d, tp, tokens)
