"""Parameter counts, per-layer GEMM shapes and FLOP counts of a transformer Model.

Conventions: a multiply-add is 2 FLOPs. "Forward" counts one forward pass; training is
forward + backward = 3x forward for GEMMs (backward computes the input and the weight
gradient, each as many FLOPs as the forward). The input embedding is a lookup (0 FLOPs);
the output layer is a GEMM and is counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from clusters.workloads import Model

RECOMPUTE = ("none", "selective", "full")


# ---------------------------------------------------------------- parameters

def attention_params(model: Model) -> int:
    """Weights (and biases) of one attention block, norms excluded."""
    h = model.hidden_size
    if model.mla is not None:
        # DeepSeek-V3 MLA (arXiv 2412.19437 sec. 2.1.1): W^DQ, W^UQ(+rope), W^DKV(+shared rope
        # key), W^UK and W^UV, W^O; plus the RMSNorms on the two latents.
        m, nh = model.mla, model.n_heads
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            q = h * m.q_lora_rank + m.q_lora_rank * nh * qk + m.q_lora_rank
        else:
            q = h * nh * qk
        kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank
        kv += m.kv_lora_rank * nh * (m.qk_nope_head_dim + m.v_head_dim)
        return q + kv + nh * m.v_head_dim * h
    q_dim = model.n_heads * model.head_dim
    kv_dim = model.n_kv_heads * model.head_dim
    weights = h * (q_dim + 2 * kv_dim) + q_dim * h
    bias = (q_dim + 2 * kv_dim + h) if model.linear_bias else 0
    return weights + bias


def ffn_params(model: Model, ffn_hidden_size: int) -> int:
    """One FFN (dense layer or one expert): SwiGLU has 3 matrices, GeLU 2."""
    h = model.hidden_size
    weights = model.ffn_matrices * h * ffn_hidden_size
    bias = (ffn_hidden_size * (model.ffn_matrices - 1) + h) if model.linear_bias else 0
    return weights + bias


def norm_params(model: Model) -> int:
    """Two norms per layer; LayerNorm (GPT, with biases) has 2h each, RMSNorm h."""
    return 2 * model.hidden_size * (2 if model.linear_bias else 1)


def router_params(model: Model) -> int:
    return 0 if model.moe is None else model.hidden_size * model.moe.n_routed_experts


def expert_params_per_layer(model: Model) -> int:
    """Routed experts of one MoE layer (what expert parallelism shards)."""
    if model.moe is None:
        return 0
    return model.moe.n_routed_experts * ffn_params(model, model.moe.expert_ffn_hidden_size)


def dense_layer_params(model: Model) -> int:
    return attention_params(model) + ffn_params(model, model.ffn_hidden_size) + norm_params(model)


def moe_layer_params(model: Model, active: bool = False) -> int:
    """One MoE layer; `active` counts only the experts a token uses (top-k + shared)."""
    moe = model.moe
    one = ffn_params(model, moe.expert_ffn_hidden_size)
    experts = (moe.experts_per_token if active else moe.n_routed_experts) * one
    shared = moe.n_shared_experts * one
    return attention_params(model) + experts + shared + router_params(model) + norm_params(model)


def moe_layer_nonexpert_params(model: Model) -> int:
    """An MoE layer without its routed experts (what tensor/data parallelism shards)."""
    return moe_layer_params(model) - expert_params_per_layer(model)


def embedding_params(model: Model) -> int:
    """Input embedding, output layer (unless tied), learned positions, final norm."""
    h = model.hidden_size
    n = model.vocab_size * h * (1 if model.tied_embeddings else 2)
    if model.position_embedding == "learned":
        n += model.seq_len * h
    return n + h * (2 if model.linear_bias else 1)


def total_params(model: Model) -> int:
    """All parameters of the main model (MTP modules excluded, as DeepSeek's 671B does)."""
    layers = model.n_dense_layers * dense_layer_params(model)
    if model.moe is not None:
        layers += model.n_moe_layers * moe_layer_params(model)
    return layers + embedding_params(model)


def active_params(model: Model) -> int:
    """Parameters a token touches: dense parts plus top-k and shared experts."""
    layers = model.n_dense_layers * dense_layer_params(model)
    if model.moe is not None:
        layers += model.n_moe_layers * moe_layer_params(model, active=True)
    return layers + embedding_params(model)


def mtp_params(model: Model) -> int:
    """DeepSeek MTP modules (arXiv 2412.19437 sec. 2.2): a block and a 2h x h projection each;
    embedding and output head are shared with the main model."""
    if not model.mtp_modules:
        return 0
    block = moe_layer_params(model) if model.moe else dense_layer_params(model)
    h = model.hidden_size
    return model.mtp_modules * (block + 2 * h * h + 3 * h)


# ---------------------------------------------------------------- GEMM shapes

@dataclass(frozen=True)
class Gemm:
    """One forward GEMM on one chip: (m x k) @ (k x n), `count` times per layer."""

    name: str
    m: int
    n: int
    k: int
    count: int = 1
    replicated: bool = False  # every TP rank computes it in full (not split by TP)

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k * self.count


def attention_gemms(model: Model, tokens: int, tp: int) -> list[Gemm]:
    """Projection GEMMs of one attention block; Megatron TP splits heads (column-parallel
    QKV, row-parallel output)."""
    h = model.hidden_size
    if model.mla is not None:
        m, nh = model.mla, model.n_heads
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        out = []
        if m.q_lora_rank:
            # The down-projections are small and replicated across TP ranks (as in Megatron-Core).
            out += [Gemm("q_down", tokens, m.q_lora_rank, h, replicated=True),
                    Gemm("q_up", tokens, nh * qk // tp, m.q_lora_rank)]
        else:
            out.append(Gemm("q_proj", tokens, nh * qk // tp, h))
        out += [Gemm("kv_down", tokens, m.kv_lora_rank + m.qk_rope_head_dim, h, replicated=True),
                Gemm("kv_up", tokens, nh * (m.qk_nope_head_dim + m.v_head_dim) // tp,
                     m.kv_lora_rank),
                Gemm("attn_out", tokens, h, nh * m.v_head_dim // tp)]
        return out
    q_dim = model.n_heads * model.head_dim
    kv_dim = model.n_kv_heads * model.head_dim
    return [Gemm("qkv", tokens, (q_dim + 2 * kv_dim) // tp, h),
            Gemm("attn_out", tokens, h, q_dim // tp)]


def ffn_gemms(model: Model, tokens: int, ffn_hidden_size: int, tp: int, name="ffn",
              count: int = 1) -> list[Gemm]:
    """A dense FFN (or `count` identical experts) split column/row-parallel over tp."""
    h = model.hidden_size
    up_width = (2 if model.activation == "swiglu" else 1) * ffn_hidden_size // tp
    return [Gemm(f"{name}_up", tokens, up_width, h, count),
            Gemm(f"{name}_down", tokens, h, ffn_hidden_size // tp, count)]


def output_gemm(model: Model, tokens: int, tp: int) -> Gemm:
    return Gemm("logits", tokens, model.vocab_size // tp, model.hidden_size)


def moe_gemms(model: Model, tokens: int, tp: int, ep: int) -> list[Gemm]:
    """One MoE layer's FFN part on one chip, for `tokens` tokens of the TP group (the chip's
    context shard). With sequence parallelism (required with TP, as in Megatron-Core) each TP
    rank routes tokens/tp of them; with balanced routing each of its E/ep local experts
    receives tokens/tp * ep * top_k / E tokens gathered from the expert group. Routed experts
    are not tensor-parallel (expert-tensor-parallel 1, the Megatron-Core default for
    fine-grained MoE); shared experts are, like a dense FFN over all the group's tokens."""
    moe = model.moe
    if not 1 <= ep <= moe.n_routed_experts:
        # plans are validated before they get here (clusters.plan, clusters.inference)
        raise ValueError(f"moe_gemms: ep={ep} leaves no routed expert on some chip "
                         f"({moe.n_routed_experts} experts)")
    routed_tokens = tokens // tp
    local = moe.n_routed_experts // ep
    per_expert = max(1, round(routed_tokens * ep * moe.experts_per_token / moe.n_routed_experts))
    out = [Gemm("router", routed_tokens, moe.n_routed_experts, model.hidden_size)]
    out += ffn_gemms(model, per_expert, moe.expert_ffn_hidden_size, 1, "expert", local)
    if moe.n_shared_experts:
        out += ffn_gemms(model, tokens, moe.expert_ffn_hidden_size * moe.n_shared_experts, tp,
                         "shared")
    return out


# Transformer Engine's userbuffers overlap (the --tp-comm-overlap of Megatron-Core and NeMo) runs
# each overlapped GEMM in chunks, one per communication step: "ring_exchange" (the forward QKV and
# FC1 GEMMs with their all-gather, the backward dgrad of the output projection and FC2) in tp
# chunks, "pipeline" (the forward output projection and FC2 with their reduce-scatter) in 4; the
# other backward GEMMs overlap in bulk, unsplit (TransformerEngine transformer_engine/pytorch/
# module/base.py, initialize_ub: `methods`, and get_default_config's num_splits = tp_size for
# ring_exchange, else 4). Shorter calls lose efficiency (the calibration's gemm_size_factor).
COLUMN_PARALLEL = ("qkv", "q_proj", "ffn_up")
ROW_PARALLEL = ("attn_out", "ffn_down")
PIPELINE_SPLITS = 4


def overlap_chunks(gemms: list[Gemm], tp: int) -> list[tuple[Gemm, Gemm]]:
    """(whole GEMM, the chunks it runs as) for every GEMM call TP-communication overlap splits
    in one forward + backward: column-parallel GEMMs in tp chunks (forward), row-parallel ones
    in PIPELINE_SPLITS (forward) and tp (backward dgrad, same shape as the forward)."""
    def split(g, n):
        return g, Gemm(f"{g.name}_split{n}", max(1, g.m // n), g.n, g.k, g.count * n)
    out = []
    if tp <= 1:
        return out
    for g in gemms:
        if g.name in COLUMN_PARALLEL:
            out.append(split(g, tp))
        elif g.name in ROW_PARALLEL:
            out += [split(g, PIPELINE_SPLITS), split(g, tp)]
    return out


def layer_gemms(model: Model, tokens: int, tp: int, ep: int = 1,
                chunks: bool = True) -> list[Gemm]:
    """Every distinct GEMM shape a training step prices (clusters.train.layer_times and
    output_layer_s) for `tokens` tokens per rank at tensor parallelism `tp` and expert
    parallelism `ep`: the attention projections, the dense FFN (dense layers), the MoE layer's
    router, routed and shared experts, the output layer, and the chunks TP-communication
    overlap runs the TP GEMMs in (overlap_chunks; `chunks` False leaves them out). The kernel
    suite measures exactly
    these shapes for the models it names (harness.suites)."""
    gemms = attention_gemms(model, tokens, tp)
    if model.n_dense_layers:
        gemms += ffn_gemms(model, tokens, model.ffn_hidden_size, tp)
    if model.moe is not None:
        gemms += moe_gemms(model, tokens, tp, ep)
    gemms.append(output_gemm(model, tokens, tp))
    if chunks:
        gemms += [chunk for _, chunk in overlap_chunks(gemms, tp)]
    seen, out = set(), []
    for g in gemms:
        if (g.m, g.n, g.k) not in seen:
            seen.add((g.m, g.n, g.k))
            out.append(g)
    return out


# ---------------------------------------------------------------- FLOPs per token

def attention_core_flops_fwd(model: Model, seq_len: int, causal: bool) -> float:
    """Forward QK^T and AV of one layer, per token: 2*s*(d_qk + d_v) per head.
    causal=False counts every key for every query (the PaLM / Megatron / NeMo convention for
    reported FLOPs); causal=True halves it (what a causal FlashAttention kernel executes)."""
    if model.mla is not None:
        d_qk = model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim
        d_v = model.mla.v_head_dim
    else:
        d_qk = d_v = model.head_dim
    flops = 2.0 * seq_len * model.n_heads * (d_qk + d_v)
    return flops / 2 if causal else flops


def layer_matmul_flops_fwd(model: Model) -> float:
    """Forward GEMM FLOPs per token of all transformer layers (active experts only):
    2 FLOPs per weight a token multiplies (biases and norms excluded)."""
    gemms = model.n_dense_layers * sum(g.flops for g in _layer_gemms_one_token(model, False))
    if model.moe is not None:
        gemms += model.n_moe_layers * sum(g.flops for g in _layer_gemms_one_token(model, True))
    return gemms


def _layer_gemms_one_token(model: Model, moe_layer: bool) -> list[Gemm]:
    gemms = attention_gemms(model, 1, 1)
    if not moe_layer:
        return gemms + ffn_gemms(model, 1, model.ffn_hidden_size, 1)
    moe = model.moe
    gemms.append(Gemm("router", 1, moe.n_routed_experts, model.hidden_size))
    return gemms + ffn_gemms(model, 1, moe.expert_ffn_hidden_size, 1, "expert",
                             moe.experts_per_token + moe.n_shared_experts)


def output_flops_fwd(model: Model) -> float:
    return 2.0 * model.vocab_size * model.hidden_size


def model_flops_per_token(model: Model, seq_len: int, causal: bool = False) -> float:
    """Training model FLOPs per token: 3x the forward GEMMs of the active parameters including
    the output layer, plus attention QK^T and AV, without recompute. causal=False counts every
    key for every query: the PaLM MFU definition (Chowdhery et al. 2022, arXiv 2204.02311
    App. B: 6N + 12*L*H*Q*T), Megatron-LM's num_floating_point_operations and NeMo's flops
    formulas, so what published "model TFLOP/s" and MFU figures count. causal=True halves
    attention (a causal model needs only the lower triangle, which is what FlashAttention
    executes and what rackbench's MFU divides: it can then never exceed the efficiencies the
    step is made of, whatever the sequence length)."""
    attn = model.n_layers * attention_core_flops_fwd(model, seq_len, causal=causal)
    return 3.0 * (layer_matmul_flops_fwd(model) + output_flops_fwd(model) + attn)


def recompute_flops_per_token(model: Model, seq_len: int, recompute: str) -> float:
    """Extra forward FLOPs re-executed in backward. full: every transformer layer's forward
    (Narayanan et al. 2021, arXiv 2104.04473 sec. 5.1: 4 passes instead of 3; the output layer
    is not recomputed). selective: only attention QK^T/softmax/AV (Korthikanti et al. 2022,
    arXiv 2205.05198 sec. 4.2). Both non-causal, to match the Megatron count."""
    if recompute not in RECOMPUTE:
        raise ValueError(recompute)
    attn = model.n_layers * attention_core_flops_fwd(model, seq_len, causal=False)
    if recompute == "full":
        return layer_matmul_flops_fwd(model) + attn
    if recompute == "selective":
        return attn
    return 0.0


def hardware_flops_per_token(model: Model, seq_len: int, recompute: str) -> float:
    """Hardware FLOPs per token: model FLOPs plus the recomputed forward (what Megatron 2021
    reports as achieved TFLOP/s, and what HFU divides)."""
    return model_flops_per_token(model, seq_len) + recompute_flops_per_token(
        model, seq_len, recompute)


def megatron_2021_flops_per_token(model: Model, seq_len: int) -> float:
    """Narayanan et al. 2021 (arXiv 2104.04473 sec. 5.1) FLOPs per iteration with full
    recompute, 96*B*s*l*h^2*(1 + s/(6h) + V/(16*l*h)), divided by B*s tokens. Exact for
    GPT-style models (FFN 4h, MHA, GeLU); biases and norms not counted; attention non-causal."""
    l, h, v, s = model.n_layers, model.hidden_size, model.vocab_size, seq_len
    return 96.0 * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))


def inference_flops_per_token(model: Model, context_len: int) -> float:
    """Forward FLOPs per generated (decode) or prefilled token attending to `context_len`
    keys: active-parameter GEMMs plus attention over the context (no causal halving: a
    decode token attends to every cached key)."""
    attn = model.n_layers * attention_core_flops_fwd(model, context_len, causal=False)
    return layer_matmul_flops_fwd(model) + output_flops_fwd(model) + attn
