"""Memory per chip of a training plan: weights, gradients, optimizer state, activations.

Mixed-precision Adam (Rajbhandari et al. 2020, ZeRO, arXiv 1910.02054 sec. 3.1) with
Megatron-LM's fp32 gradient accumulation: 2 bytes bf16 weights + 4 bytes fp32 gradients +
12 bytes optimizer state (fp32 master weights, momentum, variance) per parameter.
ZeRO stage 1 shards the optimizer state over the data-parallel ranks, stage 2 also the
gradients, stage 3 (= FSDP) also the weights. Activations follow Korthikanti et al. 2022
(arXiv 2205.05198 sec. 4), generalised from GPT to GQA/MLA, SwiGLU and MoE.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clusters import flops as F
from clusters.dtypes import bytes_per_element
from clusters.plan import Plan, decode, to_table
from clusters.tables import by_unique
from clusters.workloads import Model

WEIGHT_BYTES = float(bytes_per_element("bf16"))  # the weights of mixed-precision training
GRAD_BYTES = 4.0  # fp32 main_grad accumulation (Megatron-LM default for bf16 training)
OPTIMIZER_BYTES = 12.0
# Stated assumption: 5% of HBM is not available to tensors (CUDA/CANN context, communicator
# buffers, allocator fragmentation). PyTorch reports ~0.5-1 GiB context plus NCCL buffers and
# fragmentation of a few GB on 80 GB parts; 5% is a round, overridable figure.
USABLE_HBM_FRACTION = 0.95


@dataclass(frozen=True)
class MemoryBreakdown:
    weights_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    capacity_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes

    @property
    def feasible(self) -> bool:
        return self.total_bytes <= self.capacity_bytes

    @property
    def reason(self) -> str | None:
        if self.feasible:
            return None
        gb = 1e9
        return (f"needs {self.total_bytes / gb:.1f} GB per chip (weights {self.weights_bytes / gb:.1f}, "
                f"grads {self.grads_bytes / gb:.1f}, optimizer {self.optimizer_bytes / gb:.1f}, "
                f"activations {self.activations_bytes / gb:.1f}) but {self.capacity_bytes / gb:.1f} GB "
                f"is usable")

    def to_dict(self) -> dict:
        return {"weights_bytes": self.weights_bytes, "grads_bytes": self.grads_bytes,
                "optimizer_bytes": self.optimizer_bytes,
                "activations_bytes": self.activations_bytes, "total_bytes": self.total_bytes,
                "capacity_bytes": self.capacity_bytes, "feasible": self.feasible}


def params_per_chip(model: Model, tp, pp, ep):
    """(non-expert, expert) parameters held by a chip of the busiest stage, before ZeRO, for
    numpy arrays (or scalars) of tp, pp and ep. Non-expert parameters are split by TP; routed
    experts by EP (experts are not TP-split). Pipeline stages hold an equal share of layers;
    the input embedding sits on the first stage and the output layer on the last (both on the
    one stage when pp = 1)."""
    n = model.n_layers
    dense = model.n_dense_layers * F.dense_layer_params(model)
    moe_nonexpert = model.n_moe_layers * F.moe_layer_nonexpert_params(model) if model.moe else 0
    experts = model.n_moe_layers * F.expert_params_per_layer(model)
    share = np.ceil(n / np.asarray(pp)) / n
    vh = model.vocab_size * model.hidden_size
    embed = np.where(np.asarray(pp) == 1, F.embedding_params(model), vh)
    return ((dense + moe_nonexpert) * share + embed) / tp, experts * share / ep


def activation_bytes_per_token_layer(model: Model, plan: Plan, moe_layer: bool) -> float:
    """Bytes stored per token per layer for the backward pass (Korthikanti et al. 2022 eq. 2
    and sec. 4.1-4.2, generalised). Parts replicated across TP ranks without sequence
    parallelism are divided by tp only when sequence_parallel is on."""
    tp = plan.tp
    sp = plan.sequence_parallel and tp > 1
    h = model.hidden_size
    repl_div = tp if sp else 1
    if plan.recompute == "full":
        return 2.0 * h / repl_div  # only the layer input is kept
    # GEMM inputs kept for the weight gradient are stored in the GEMM precision: with fp8
    # (Transformer Engine) one byte, otherwise two.
    lo = float(bytes_per_element(plan.precision))
    # Replicated without SP: the two norm inputs (4h), QKV and MLP inputs (2 x lo*h) and, with
    # dropout, the two 1-byte dropout masks (2h).
    replicated = 4.0 * h + 2 * lo * h + (2.0 * h if plan.dropout else 0.0)
    if model.mla is not None:
        m = model.mla
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        # q, k, v for attention (bf16) and the out-projection input
        sharded = 2.0 * model.n_heads * (2 * qk + m.v_head_dim) + lo * model.n_heads * m.v_head_dim
        replicated += lo * (m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim)
    else:
        q_dim, kv_dim = model.n_heads * model.head_dim, model.n_kv_heads * model.head_dim
        sharded = 2.0 * (q_dim + 2 * kv_dim) + lo * q_dim  # Q, K, V and the out-proj input
    if plan.attention_impl == "materialized" and plan.recompute == "none":
        # softmax output (2), dropout mask (1) and dropout output (2) per score: 5*a*s bytes
        sharded += (5.0 if plan.dropout else 2.0) * model.n_heads * plan.seq_len
    # FFN: SwiGLU keeps the gate/up output (2f elements, bf16) and the down-projection input;
    # GeLU its input (f) and output (the down-projection input).
    per_f = (4.0 if model.activation == "swiglu" else 2.0) + lo
    if moe_layer:
        moe = model.moe
        # Routed tokens are a sequence shard; each is copied to top-k experts (input kept).
        routed = moe.experts_per_token * (lo * h + per_f * moe.expert_ffn_hidden_size) / repl_div
        shared = per_f * moe.expert_ffn_hidden_size * moe.n_shared_experts / tp
        ffn = routed + shared
    else:
        ffn = per_f * model.ffn_hidden_size / tp
    return replicated / repl_div + sharded / tp + ffn


def edge_stage_layers(n_layers, pp):
    """Transformer layers on the first and on the last pipeline stage (ints or numpy arrays).
    When pp does not divide the layers, the stages holding the embedding and the output layer
    give up the shortfall: Llama 3 405B's 126 layers on 16 stages run 7 on the first and the
    last stage and 8 on the others (Dubey et al. 2024, arXiv 2407.21783 sec. 3.3.2: "we reduce
    one Transformer layer each from the first and the last stages"); never fewer than L // pp.
    The first stage holds the most activations of a 1F1B schedule, so this sets its memory;
    the busiest stage for time still holds ceil(L/pp) layers."""
    ceil = -(-n_layers // pp)
    short = pp * ceil - n_layers
    floor = n_layers // pp
    return (np.maximum(ceil - short // 2, floor), np.maximum(ceil - (short - short // 2), floor))


def per_layer_full(model: Model, plan: Plan, moe_frac: float) -> float:
    """Bytes per token of one layer's full activations (rebuilt during a full-recompute
    backward), the heavier of a dense and an MoE layer."""
    none = plan.with_(recompute="none")
    return max(activation_bytes_per_token_layer(model, none, False),
               activation_bytes_per_token_layer(model, none, True) if moe_frac else 0.0)


# Plan fields the activation bytes per token and layer depend on
_ACTIVATION_KEY = ("tp", "recompute", "precision", "dropout", "attention_impl",
                   "sequence_parallel", "seq_len")


def memory_table(model: Model, table: dict) -> dict[str, np.ndarray]:
    """Bytes per chip of every plan in a plan table (clusters.plan.to_table): weights,
    gradients and optimizer state after ZeRO sharding, and activations of the first pipeline
    stage at the peak of a 1F1B schedule: min(m, p) micro-batches in flight, times
    (1 + (p-1)/(p*v)) with interleaving (Korthikanti et al. 2022 sec. 4.2.3), plus, with full
    recompute, one layer's full activations rebuilt during its backward; and the fp32 logits
    on the last stage (pp = 1: the same chip)."""
    c = table
    tp, pp, dp, cp, ep, vpp, mb, zero = (c[k] for k in (
        "tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "zero"))
    nonexpert, experts = params_per_chip(model, tp, pp, ep)
    # Non-expert state is sharded over the DP x CP group (Megatron distributed optimizer);
    # expert state over the expert-data-parallel group, tp*cp*dp/ep ranks.
    sharded = nonexpert / (dp * cp) + experts / (tp * cp * dp // ep)
    full = nonexpert + experts
    lps = np.ceil(model.n_layers / pp)
    # FSDP (ZeRO 3): weights sharded at rest, plus two layers gathered at a time (current and
    # prefetch)
    weights = WEIGHT_BYTES * np.where(zero >= 3, sharded + 2.0 / lps * full, full)
    moe_frac = model.n_moe_layers / model.n_layers

    def per_token(key):
        p = Plan(**{name: decode(name, v) for name, v in zip(_ACTIVATION_KEY, key)})
        v = (1 - moe_frac) * activation_bytes_per_token_layer(model, p, False)
        if moe_frac:
            v += moe_frac * activation_bytes_per_token_layer(model, p, True)
        rebuilt = per_layer_full(model, p, moe_frac) if p.recompute == "full" else 0.0
        return v, rebuilt

    pt = by_unique(np.stack([c[k] for k in _ACTIVATION_KEY], 1), per_token)
    tokens = mb * c["seq_len"] / cp
    per_layer = pt[:, 0] * tokens
    m = c["global_batch"] // (dp * mb)
    in_flight = np.minimum(m, pp) * np.where(vpp > 1, 1 + (pp - 1) / (pp * vpp), 1.0)
    first, last = edge_stage_layers(model.n_layers, pp)
    stored = per_layer * first * in_flight + pt[:, 1] * tokens
    logits = 4.0 * tokens * model.vocab_size / tp
    return {
        "weights_bytes": weights,
        "grads_bytes": GRAD_BYTES * np.where(zero >= 2, sharded, full),
        "optimizer_bytes": OPTIMIZER_BYTES * np.where(zero >= 1, sharded, full),
        "activations_bytes": np.where(pp == 1, stored + logits,
                                      np.maximum(stored, per_layer * last + logits)),
    }


def breakdown_at(parts: dict, i: int, capacity_bytes: float) -> MemoryBreakdown:
    """Row `i` of memory_table's columns as a MemoryBreakdown."""
    return MemoryBreakdown(**{k: float(v[i]) for k, v in parts.items()},
                           capacity_bytes=capacity_bytes)


def memory_per_chip(model: Model, plan: Plan, hbm_bytes: float,
                    usable_fraction: float = USABLE_HBM_FRACTION) -> MemoryBreakdown:
    """One plan: memory_table for a table of one."""
    return breakdown_at(memory_table(model, to_table([plan])), 0, hbm_bytes * usable_fraction)
