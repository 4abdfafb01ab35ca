"""Serving model: prefill (compute-bound forward of whole prompts) and decode (one token per
sequence per step: weights, KV cache and expert weights read; expert all-to-all and TP
collectives), the batch a latency target allows, and the KV-cache memory limit.

Layout of one serving instance of `chips` chips: attention and dense layers are tensor-parallel
over `tp` chips and data-parallel over chips/tp groups ("attention DP", each group serves its
own sequences with replicated attention weights); routed experts are spread over `ep` chips
(with redundant copies when ep does not divide the expert count, as EPLB does). Disaggregated
serving is two instances, one per phase, each projected on its own; an aggregated instance
(ServePlan.input_len / output_len) also prefills new prompts in flight, and its attention-DP
ranks run in lock-step, so one rank's prompt stalls all (`in_flight_prefill_s`). Decode
attention is a forward-only kernel of its own class (the calibration's "decode_attention"
entries: the decode kernels' measured compute-bound utilisation) that reads the KV cache at the
memory entries' "kv_read" rate; memory-bound GEMMs stream weights at the small-M GEMM rate of
clusters.train. A multi-die chip can run one attention-DP rank per die
(ServePlan.ranks_per_chip: replicated weights held and streamed per die); multi-token
prediction verifies drafted tokens in the same step (ServePlan.mtp_tokens / mtp_acceptance:
TPOT = step / tokens emitted per sequence); where a fabric's fused dispatch/combine operators
were measured (the catalog fabric's moe_a2a) the expert all-to-all is never charged less than they take.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from dataclasses import dataclass, field, replace

import numpy as np

from clusters import flops as F
from clusters.calibration import Calibration, default_calibration
from clusters.catalog import System
from clusters.memory import USABLE_HBM_FRACTION
from clusters.plan import Plan
from clusters.software import stack_for
from clusters.train import Rates, comm_s, elementwise_bytes_per_token, layer_times, power_fields
from clusters.workloads import Model
from clusters.dtypes import bytes_per_element
from clusters.errors import ModelInputError

# Weight formats a serving plan can use (bytes per element: clusters.dtypes)
SERVE_PRECISIONS = ("bf16", "fp16", "fp8", "int8")
ATTENTION_PRECISIONS = ("bf16", "fp8")
def devices_per_chip(chip) -> int:
    """Devices one package presents to software, from the catalog (the 910C is two dies, each
    its own device with 64 GB of HBM)."""
    return chip.devices

@dataclass(frozen=True)
class ServePlan:
    chips: int
    tp: int = 1
    ep: int = 1
    # decode: concurrent sequences per chip; prefill: prompts per chip. A TP group serves
    # batch_per_chip * tp of them (one sequence on a TP8 group is 1/8); an average that is not
    # whole (13,200 over 144 ranks) runs at the pace of the ranks holding the most.
    batch_per_chip: float = 1
    context: int = 2048  # decode: tokens in each sequence's KV cache; prefill: prompt length
    precision: str = "bf16"  # weights and GEMMs
    kv_bytes: float = 2.0  # bytes per cached element (bf16 2, fp8 1)
    # two-batch overlap: communication hidden behind the other batch; None: whichever of the
    # two is faster for this batch (what a server's operator would pick), recorded in the result
    overlap: bool | None = False
    # Precision of the decode attention kernel's QK^T and AV: "fp8" where the published stack
    # runs it on an fp8 cache (FlashMLA-FP8, TensorRT-LLM's fp8 MLA); needs kv_bytes 1
    attention_precision: str = "bf16"
    # Aggregated (in-flight batching) serving: prompts of input_len tokens are prefilled on the
    # decode chips, output_len tokens generated per request. 0 = decode only (disaggregated).
    input_len: int = 0
    output_len: int = 0
    # Whether the scheduler aligns the attention-DP ranks' prompts into the same iterations
    # (TensorRT-LLM's later "ADP balance" context wait); otherwise each rank admits its own.
    prefill_aligned: bool = False
    # Attention-DP ranks per chip (tp = 1 only). A dual-die Ascend 910C presents each die as its
    # own device with its own 64 GB of HBM, and CloudMatrix-Infer runs one rank per die (DP320
    # over 160 NPUs, arXiv 2506.12708): each die holds and reads its own copy of the replicated
    # weights (attention, dense layers, router, shared expert, embedding and head), so per chip
    # they are stored and streamed `ranks_per_chip` times; GEMM rows split between the ranks.
    ranks_per_chip: int = 1
    # Multi-token prediction (DeepSeek-V3 sec. 2.2, speculative decoding): each step verifies
    # mtp_tokens drafted tokens per sequence (the main model runs 1 + mtp_tokens query rows per
    # sequence) and drafts the next ones with the MTP module (one more MoE layer and the shared
    # head, per drafted token); on average 1 + mtp_tokens x mtp_acceptance tokens are emitted.
    mtp_tokens: int = 0
    mtp_acceptance: float = 0.0

    @property
    def attention_dp(self) -> int:
        return self.chips // self.tp * self.ranks_per_chip

    @property
    def tokens_per_sequence_step(self) -> float:
        """Output tokens one sequence emits per decode step on average: the verified token
        plus the accepted drafts, where draft i counts only if drafts 1..i-1 were accepted
        (speculative decoding, Leviathan et al. 2023, arXiv 2211.17192 eq. 1: (1-a^(k+1))/(1-a)
        for acceptance a per draft). One draft at a = 0.85-0.90 is DeepSeek-V3's 1.85-1.9
        (arXiv 2412.19437 sec. 5.4.3)."""
        a, k = self.mtp_acceptance, self.mtp_tokens
        return sum(a ** i for i in range(k + 1))


def instance_devices(system: System, plan: ServePlan) -> int:
    """Devices of one serving instance: its TP, attention-DP and expert ranks run every layer
    in lock-step, so its compute moves at the pace of the slowest of them (Rates.pace)."""
    return plan.chips * system.chip.devices


def validate(model: Model, plan: ServePlan, system: System) -> None:
    for key in ("chips", "tp", "ep", "context", "ranks_per_chip"):
        v = getattr(plan, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ModelInputError(f"serve plan: {key} must be a positive integer, got {v!r}")
    group = plan.batch_per_chip * plan.tp if isinstance(plan.batch_per_chip, (int, float)) \
        and not isinstance(plan.batch_per_chip, bool) else 0
    if not (math.isfinite(group) and group >= 1):
        raise ModelInputError(f"serve plan: batch_per_chip {plan.batch_per_chip!r} gives "
                              f"{group:g} sequences per TP group of {plan.tp}; at least 1 is "
                              "needed")
    if plan.ranks_per_chip > 1 and plan.tp != 1:
        raise ModelInputError(f"serve plan: ranks_per_chip={plan.ranks_per_chip} needs tp=1 (one "
                        f"attention-DP rank per die), got tp={plan.tp}")
    if not isinstance(plan.mtp_tokens, int) or plan.mtp_tokens < 0:
        raise ModelInputError(f"serve plan: mtp_tokens must be a non-negative integer, got "
                        f"{plan.mtp_tokens!r}")
    if plan.mtp_tokens and not model.mtp_modules:
        raise ModelInputError(f"serve plan: mtp_tokens={plan.mtp_tokens} but {model.name} has no "
                        "MTP module")
    if not 0.0 <= plan.mtp_acceptance <= 1.0:
        raise ModelInputError(f"serve plan: mtp_acceptance must be in [0, 1], got "
                        f"{plan.mtp_acceptance!r}")
    if plan.chips % plan.tp:
        raise ModelInputError(f"serve plan: tp={plan.tp} does not divide {plan.chips} chips")
    if plan.tp > system.chips_per_domain:
        raise ModelInputError(f"serve plan: tp={plan.tp} exceeds the {system.chips_per_domain}-chip "
                        f"scale-up domain of {system.name}")
    if model.n_heads % plan.tp:
        raise ModelInputError(f"serve plan: tp={plan.tp} does not divide {model.n_heads} heads")
    if plan.ep > plan.chips:
        raise ModelInputError(f"serve plan: ep={plan.ep} exceeds the instance's {plan.chips} chips")
    if plan.ep > 1 and model.moe is None:
        raise ModelInputError(f"serve plan: ep={plan.ep} but {model.name} has no experts")
    if model.moe is not None and plan.ep > model.moe.n_routed_experts:
        # every EP rank must host at least one routed expert; ranks holding only redundant
        # copies are not modelled (the expert GEMMs would have no local expert to run)
        raise ModelInputError(f"serve plan: ep={plan.ep} exceeds the {model.moe.n_routed_experts} "
                        f"routed experts of {model.name}")
    if plan.precision not in SERVE_PRECISIONS:
        raise ModelInputError(f"serve plan: precision must be one of {SERVE_PRECISIONS}")
    if plan.attention_precision not in ATTENTION_PRECISIONS:
        raise ModelInputError(f"serve plan: attention_precision must be one of "
                              f"{ATTENTION_PRECISIONS}, got {plan.attention_precision!r}")
    if plan.attention_precision == "fp8":
        if "fp8" not in system.chip.peak_flops_per_s:
            raise ModelInputError(f"serve plan: fp8 attention needs fp8 tensor cores; "
                                  f"{system.chip.name} has none")
        if plan.kv_bytes != 1:
            raise ModelInputError("serve plan: fp8 attention reads an fp8 KV cache (kv_bytes 1), "
                                  f"got kv_bytes {plan.kv_bytes:g}")


def kv_bytes_per_token(model: Model, plan: ServePlan) -> float:
    """KV cache bytes one token adds on one chip (all layers). MLA caches the compressed latent
    and the shared rotary key (arXiv 2412.19437 sec. 2.1.1), which TP cannot split; GQA heads
    are split over TP down to one KV head per chip."""
    if model.mla is not None:
        per_layer = model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
    else:
        per_layer = 2 * model.head_dim * max(1, model.n_kv_heads // plan.tp)
    return model.n_layers * per_layer * plan.kv_bytes


def weight_bytes_per_chip(model: Model, plan: ServePlan) -> float:
    """Non-expert weights split by TP (replicated over attention-DP groups, and held once per
    rank with ranks_per_chip > 1); routed experts over EP with ceil(E/ep) experts per chip
    (redundant copies fill the remainder)."""
    wb = bytes_per_element(plan.precision)
    dense = model.n_dense_layers * F.dense_layer_params(model) + F.embedding_params(model)
    experts = 0.0
    if model.moe is not None:
        dense += model.n_moe_layers * F.moe_layer_nonexpert_params(model)
        local = math.ceil(model.moe.n_routed_experts / plan.ep)
        experts = model.n_moe_layers * local * F.ffn_params(model, model.moe.expert_ffn_hidden_size)
    return wb * (dense / plan.tp * plan.ranks_per_chip + experts)


def max_batch_per_chip(model: Model, plan: ServePlan, hbm_bytes: float) -> int:
    """Sequences per chip whose KV cache fits beside the weights (activations neglected).
    A TP group serves batch_per_chip * tp sequences and each chip caches its KV-head share of
    all of them (the whole latent for MLA, which TP cannot split)."""
    free = hbm_bytes * USABLE_HBM_FRACTION - weight_bytes_per_chip(model, plan)
    return max(0, int(free // kv_cache_bytes_per_chip(model, plan, 1)))


def kv_cache_bytes_per_chip(model: Model, plan: ServePlan, batch_per_chip: int) -> float:
    return batch_per_chip * plan.tp * plan.context * kv_bytes_per_token(model, plan)


@dataclass(frozen=True)
class ServeResult:
    mode: str
    model: str
    system: str
    plan: ServePlan
    step_time_s: float
    breakdown_s: dict
    tokens_per_step_per_chip: float
    memory_bytes_per_chip: float
    capacity_bytes: float
    max_batch_per_chip: int
    chips_power_w: float  # all the instance's chips
    system_power_w: float  # the whole systems, pro rata of their chips used
    notes: tuple = field(default_factory=tuple)
    systems: float = 0.0  # systems used, pro rata (48 chips of a 72-chip rack: 0.667)

    @property
    def tpot_s(self) -> float:
        """Decode: time per output token of one sequence (the step over the tokens a sequence
        emits per step: 1, or more with multi-token prediction)."""
        return self.step_time_s / self.plan.tokens_per_sequence_step

    @property
    def feasible(self) -> bool:
        return self.memory_bytes_per_chip <= self.capacity_bytes

    @property
    def tokens_per_s_per_chip(self) -> float:
        return self.tokens_per_step_per_chip / self.step_time_s

    @property
    def joules_per_token(self) -> float:
        return self.system_power_w / (self.tokens_per_s_per_chip * self.plan.chips)

    def to_dict(self) -> dict:
        p = self.plan
        out = {
            "mode": self.mode, "model": self.model, "system": self.system, "chips": p.chips,
            "plan": {k: getattr(p, k) for k in p.__dataclass_fields__},
            "feasible": self.feasible,
            "infeasible_reason": None if self.feasible else (
                f"needs {self.memory_bytes_per_chip / 1e9:.1f} GB per chip, "
                f"{self.capacity_bytes / 1e9:.1f} GB usable"),
            "step_time_s": self.step_time_s, "breakdown_s": dict(self.breakdown_s),
            "tokens_per_s_per_chip": self.tokens_per_s_per_chip,
            "memory_bytes_per_chip": self.memory_bytes_per_chip,
            "usable_memory_bytes_per_chip": self.capacity_bytes,
            "max_batch_per_chip": self.max_batch_per_chip,
            **power_fields(self.chips_power_w, p.chips, self.system_power_w, self.systems),
            "joules_per_token": self.joules_per_token, "notes": list(self.notes),
        }
        if self.mode == "decode":
            out["tpot_s"] = self.tpot_s
            out["output_tokens_per_s_per_chip"] = self.tokens_per_s_per_chip
        else:
            out["ttft_s"] = self.step_time_s
            out["input_tokens_per_s_per_chip"] = self.tokens_per_s_per_chip
        return out


def _hide_prefill_comm(parts: dict, system: System, comm_keys=("tp_comm_s", "ep_comm_s")) -> None:
    """Prefill of a model without an expert all-to-all, with two overlapped micro-batches
    (compute-bound, so splitting the batch costs no extra weight traffic): communication hides
    behind the other micro-batch's compute, but the communication kernels hold the family's core
    share while they run (clusters.software), slowing the compute they hide behind; the exposed
    remainder stays in the comm parts."""
    compute = sum(v for k, v in parts.items() if k not in comm_keys)
    comm = sum(parts.get(k, 0.0) for k in comm_keys)
    if comm <= 0:
        return
    f = stack_for(system.chip.family).comm_core_fraction
    hidden = min(compute, comm)
    for k in comm_keys:
        share = parts.get(k, 0.0) / comm
        parts[k] -= hidden * share * (1 - f / (1 - f))


def _beside_comm_s(fixed: float, shared: float, comm: float, f: float) -> float:
    """Time of a slot of compute issued while `comm` seconds of communication run beside it on
    f of the cores. `shared` is compute (seconds at the full chip) that runs on 1 - f of the
    cores while the communication runs and on all of them after; `fixed` is compute that the
    communication does not slow (GEMMs already confined to the cores it leaves). The two mix
    evenly through the slot, which lasts until both the compute and the communication are
    done."""
    work = fixed + shared
    if work <= 0:
        return comm
    slow = (fixed + shared / (1 - f)) / work  # the compute's stretch while comm runs
    return comm if comm >= work * slow else work + comm * (1 - 1 / slow)


def _overlapped_moe_prefill_s(model: Model, system: System, rates: Rates, p: Plan,
                              halves: tuple[int, int], dispatch: str) -> float:
    """One MoE layer's forward with the batch split into two micro-batches of `halves`
    sequences (per TP group), as SGLang's two-batch overlap runs prefill on DeepEP's normal
    kernels (sglang/srt/operations_strategy.py, _compute_moe_deepseek_blog_prefill: stages
    split after the dispatch and combine launches, both micro-batches at the same stage) and
    CloudMatrix-Infer's prefill micro-batches: each micro-batch runs attention, dispatch,
    experts and combine; the four communications queue on one stream and each runs beside the
    other micro-batch's compute, so a layer is four slots: (A's attention | B's combine),
    (B's attention | A's dispatch), (A's experts | B's dispatch), (B's experts | A's combine).
    Every slot lasts as long as the longer side (_beside_comm_s). The communication kernels'
    cores are the family's practice (clusters.software). Where the stack reserves SMs for the
    all-to-all for the whole overlapped forward (prefill_overlap_sms: SGLang runs DeepGEMM on
    the rest), every GEMM runs on the chip's SMs less those throughout, and the other kernels
    (attention, memory-bound work), which take whatever SMs are free, lose them only while the
    all-to-all runs; otherwise all compute loses the family's core share while it runs. The
    TP collectives stay on the compute stream (exposed)."""
    stack = stack_for(system.chip.family)
    sms, reserved = system.chip.sm_count, stack.prefill_overlap_sms
    if reserved and sms and sms > reserved:
        f, gemm_slow = reserved / sms, sms / (sms - reserved)
    else:
        f, gemm_slow = stack.comm_core_fraction, None
    a, m, d, c = [], [], [], []  # per micro-batch: (fixed, shared) compute, and comm times
    for b in halves:
        lt = layer_times(model, replace(p, micro_batch=b, global_batch=b * p.dp), system, rates,
                         True, dispatch)
        other = lt.attention + lt.elementwise + lt.tp_comm
        if gemm_slow is None:
            a.append((0.0, lt.attention_gemm + other))
            m.append((0.0, lt.gemm - lt.attention_gemm))
        else:
            a.append((gemm_slow * lt.attention_gemm, other))
            m.append((gemm_slow * (lt.gemm - lt.attention_gemm), 0.0))
        d.append(lt.ep_dispatch)
        c.append(lt.ep_comm - lt.ep_dispatch)
    return (_beside_comm_s(*a[0], c[1], f) + _beside_comm_s(*a[1], d[0], f)
            + _beside_comm_s(*m[0], d[1], f) + _beside_comm_s(*m[1], c[0], f))


def _result(mode, model, system, plan, parts, tokens, cal):
    step = sum(parts.values())
    kv = kv_cache_bytes_per_chip(model, plan, plan.batch_per_chip) if mode == "decode" else 0.0
    mem = weight_bytes_per_chip(model, plan) + kv
    chip = system.chip
    return ServeResult(
        mode=mode, model=model.name, system=system.name, plan=plan, step_time_s=step,
        breakdown_s=parts, tokens_per_step_per_chip=tokens, memory_bytes_per_chip=mem,
        capacity_bytes=chip.hbm_bytes * USABLE_HBM_FRACTION,
        max_batch_per_chip=max_batch_per_chip(model, plan, chip.hbm_bytes),
        chips_power_w=plan.chips * chip.power_w,
        system_power_w=plan.chips / system.chips_per_domain * system.power_w,
        notes=tuple(cal.notes_for(chip.family))
        + tuple(cal.pace_note(chip.family, instance_devices(system, plan), chip.name)),
        systems=plan.chips / system.chips_per_domain)


def prefill(model: Model, system: System, plan: ServePlan,
            calibration: Calibration | None = None) -> ServeResult:
    """One forward of batch_per_chip prompts of `context` tokens on each attention-DP group:
    the training forward pass (clusters.train.layer_times) without backward."""
    validate(model, plan, system)
    cal = calibration or default_calibration()
    rates = Rates(system.chip, cal, plan.precision, instance_devices(system, plan))
    group_batch = plan.batch_per_chip * plan.tp
    p = Plan(tp=plan.tp, dp=max(1, plan.ep), ep=plan.ep if model.moe else 1,
             micro_batch=group_batch, global_batch=group_batch * max(1, plan.ep),
             seq_len=plan.context, precision="fp8" if plan.precision in ("fp8", "int8")
             else "bf16")
    dispatch = stack_for(system.chip.family).moe_dispatch
    parts = {"gemm_s": 0.0, "attention_s": 0.0, "elementwise_s": 0.0, "tp_comm_s": 0.0,
             "ep_comm_s": 0.0}
    for moe_layer, n in ((False, model.n_dense_layers), (True, model.n_moe_layers)):
        if n == 0:
            continue
        lt = layer_times(model, p, system, rates, moe_layer, dispatch)
        for k, v in (("gemm_s", lt.gemm), ("attention_s", lt.attention),
                     ("elementwise_s", lt.elementwise), ("tp_comm_s", lt.tp_comm),
                     ("ep_comm_s", lt.ep_comm)):
            parts[k] += n * v
    # logits only for each prompt's last token
    parts["gemm_s"] += rates.gemm_s(F.output_gemm(model, group_batch, plan.tp))
    if plan.overlap is not False and model.n_moe_layers and parts["ep_comm_s"] > 0:
        # two micro-batches of whole prompts through each MoE layer
        # (_overlapped_moe_prefill_s); the dense layers run both back to back. What the step
        # spends beyond its compute is the wait on communication. With overlap None the faster
        # of the two is taken: holding SMs for the all-to-all can cost more than it hides when
        # the all-to-all is short. A single prompt per group is not split: no overlap.
        if group_batch / plan.ranks_per_chip < 2:
            if plan.overlap:
                raise ModelInputError(
                    f"--overlap: two-batch overlap splits each rank's prompts into two "
                    f"micro-batches, and a rank holds "
                    f"{group_batch / plan.ranks_per_chip:g} prompt(s)")
            return _result("prefill", model, system, replace(plan, overlap=False), parts,
                           plan.batch_per_chip * plan.context, cal)
        # whole prompts where the group holds a whole number of them; an average batch that
        # is not (some ranks one prompt more than others) splits evenly
        first = math.ceil(group_batch / 2) if float(group_batch).is_integer() else group_batch / 2
        halves = (first, group_batch - first)
        moe_s = model.n_moe_layers * _overlapped_moe_prefill_s(model, system, rates, p, halves,
                                                               dispatch)
        serial = sum(parts.values())
        step = serial - model.n_moe_layers * (lt.gemm + lt.attention + lt.elementwise
                                              + lt.tp_comm + lt.ep_comm) + moe_s
        if plan.overlap or step < serial:
            parts["ep_comm_s"] = 0.0
            parts["overlap_wait_s"] = max(0.0, step - sum(parts.values()))
        plan = replace(plan, overlap="overlap_wait_s" in parts)
    elif plan.overlap is not False:  # no expert all-to-all: overlap never loses
        _hide_prefill_comm(parts, system)
        plan = replace(plan, overlap=True)
    return _result("prefill", model, system, plan, parts,
                   plan.batch_per_chip * plan.context, cal)


def _decode_parts(model: Model, system: System, plan: ServePlan, cal: Calibration,
                  batch_per_chip: int) -> dict:
    """One decode step of `batch_per_chip` sequences per chip, by stream: the attention side
    (its GEMMs, the dense layers, the head, attention over the cache, memory-bound work, TP
    collectives), the MoE side (router, routed and shared experts) and the expert all-to-all."""
    chip = system.chip
    dtype = _decode_dtype(plan, chip)
    rates = Rates(chip, cal, dtype, instance_devices(system, plan))
    tp, r, q = plan.tp, plan.ranks_per_chip, 1 + plan.mtp_tokens
    # query rows per attention-DP rank: one per sequence, 1 + mtp_tokens with MTP verification
    tokens = _rank_rows(batch_per_chip, tp, r) * q
    h = model.hidden_size
    attn_layers = model.n_layers + plan.mtp_tokens  # the MTP block runs once per drafted token
    moe_layers = model.n_moe_layers + (plan.mtp_tokens if model.moe is not None else 0)
    dense_layers = model.n_dense_layers + (plan.mtp_tokens if model.moe is None else 0)

    gemms = _decode_attention_gemms(model, tokens, tp)
    dense_ffn = F.ffn_gemms(model, tokens, model.ffn_hidden_size, tp)
    # replicated-weight GEMMs run once on every rank of the chip
    attn_gemm = r * attn_layers * sum(rates.gemm_s(g) for g in gemms)
    attn_gemm += r * dense_layers * sum(rates.gemm_s(g) for g in dense_ffn)
    # the main head and, per drafted token, the MTP module's pass through the shared head
    attn_gemm += r * (1 + plan.mtp_tokens) * rates.gemm_s(F.output_gemm(model, tokens, tp))
    moe_gemm, dispatch, combine = 0.0, 0.0, 0.0
    if model.moe is not None:
        moe_gemm = moe_layers * _decode_moe_s(model, plan, rates, batch_per_chip)
        if plan.ep > 1:
            routed = batch_per_chip * q * model.moe.experts_per_token
            d, c = _ep_all_to_all_s(system, plan, routed, h, bytes_per_element(dtype))
            dispatch, combine = moe_layers * d, moe_layers * c

    # attention over the cache: read every cached byte once per step, compute QK and AV for
    # every query row (MTP verifies 1 + mtp_tokens rows against the same cache)
    kv_read = kv_cache_bytes_per_chip(model, plan, batch_per_chip)
    if model.mla is not None:  # absorbed MLA: heads attend over the latent (MQA-like)
        d = model.mla.kv_lora_rank
        flops = 2.0 * model.n_heads / tp * plan.context * (2 * d + model.mla.qk_rope_head_dim)
    else:
        flops = 2.0 * model.n_heads / tp * plan.context * 2 * model.head_dim
    chip_rows = batch_per_chip * tp * q  # query rows of all the chip's ranks
    attn_flops = attn_layers * chip_rows * flops
    # one kernel call per layer: its size is a layer's share of the step's attention. An fp8
    # kernel runs on the fp8 peak at the efficiency FlashAttention-3 reaches there relative to
    # its bf16 one (calibration ratio fp8_over_bf16_attention)
    peak = chip.peak(plan.attention_precision)
    eff = cal.efficiency("decode_attention", chip.family, plan.attention_precision,
                         attn_flops / attn_layers, peak, chip=chip.name)
    attention = max(attn_flops / (peak * eff),
                    rates.mem_s(kv_read * attn_layers / model.n_layers, "kv_read"))

    p = Plan(tp=tp, micro_batch=1, global_batch=1, seq_len=1, precision=dtype
             if dtype != "int8" else "fp8")
    elementwise = attn_layers * rates.mem_s(
        chip_rows * elementwise_bytes_per_token(model, p, model.moe is not None))
    tp_comm = attn_layers * 2 * comm_s(system, "all_reduce", 2.0 * tokens * h, tp, 1)
    return {"attn_gemm_s": attn_gemm, "moe_gemm_s": moe_gemm, "attention_s": attention,
            "elementwise_s": elementwise, "tp_comm_s": tp_comm, "dispatch_s": dispatch,
            "combine_s": combine, "ep_comm_s": dispatch + combine}


def _rank_rows(batch_per_chip: float, tp: int, ranks_per_chip: int) -> int:
    """Sequences one attention rank (a TP group, or one die of a chip) holds: the GEMM rows of
    its projections per query position."""
    return math.ceil(round(batch_per_chip * tp / ranks_per_chip, 9))


def _decode_dtype(plan: ServePlan, chip) -> str:
    """GEMM precision of a serving plan on `chip`: 8-bit weights run the chip's fp8 GEMM where
    it has one, int8 where only that (the 910C), else bf16."""
    if plan.precision in ("fp8", "int8") and "fp8" in chip.peak_flops_per_s:
        return "fp8"
    return "int8" if plan.precision == "int8" else "bf16"


def _attention_side(parts: dict) -> float:
    return parts["attn_gemm_s"] + parts["attention_s"] + parts["elementwise_s"] + parts["tp_comm_s"]


def overlapped_decode(model: Model, system: System, plan: ServePlan,
                      cal: Calibration) -> dict | None:
    """A decode step split into two micro-batches whose attention and MoE phases overlap
    (SGLang's two-batch overlap, CloudMatrix-Infer's microbatch pipelining): the named parts of
    the step, or None when the batch cannot be split. Nothing is free:
    - each micro-batch streams the weights again (memory-bound GEMMs cost per micro-batch),
      and each pays the all-to-all's fixed costs;
    - how the streams share the chip is the family's published practice (clusters.software):
      "hooks": the all-to-all moves in the background without compute cores (DeepEP's
      low-latency kernels with receive hooks). Each MoE layer runs four stages per micro-batch
      (attention, dispatch, experts, combine) and the two micro-batches are two stages apart,
      so each of the layer's four slots pairs one micro-batch's compute with the other's
      communication and lasts as long as the longer of the two (DeepEP's two-micro-batch
      overlap figure): max(A1, C2) + max(D1, A2) + max(M1, D2) + max(C1, M2). Dense layers
      have no all-to-all and run their two micro-batches back to back.
      "split": the attention stream and the MoE stream (with its dispatch and combine) each
      hold a fixed share of the compute cores while sharing the memory bandwidth: in each
      phase one micro-batch's attention side runs on its share (its compute-bound kernels
      slow down, its memory-bound ones do not) while the other's experts run on theirs and
      their all-to-all moves; the phase lasts as long as the slower stream, and no less than
      the two streams' memory traffic at the full bandwidth.
    The part `overlap_wait_s` is what the step spends beyond the two micro-batches' compute
    (exposed communication, and in "split" the streams waiting for each other)."""
    group = round(plan.batch_per_chip * plan.tp)  # sequences per TP group
    if group < 2:
        return None
    b1, b2 = math.ceil(group / 2) / plan.tp, (group - math.ceil(group / 2)) / plan.tp
    halves = [_decode_parts(model, system, plan, cal, b) for b in (b1, b2)]
    both = {k: halves[0][k] + halves[1][k] for k in halves[0]}
    compute = _attention_side(both) + both["moe_gemm_s"]
    practice = stack_for(system.chip.family).decode_overlap
    if practice.mode == "split":
        fa = practice.attention_share
        on = {}  # each micro-batch's parts on the attention share, on the MoE share, memory only
        for name, factor in (("attention", fa), ("moe", 1 - fa), ("memory", 1e9)):
            sub = _with_compute(system, factor)
            on[name] = [_decode_parts(model, sub, plan, cal, b) for b in (b1, b2)]

        def phase(i, j):  # micro-batch i's attention side with micro-batch j's MoE stream
            memory = _attention_side(on["memory"][i]) + on["memory"][j]["moe_gemm_s"]
            return max(_attention_side(on["attention"][i]),
                       on["moe"][j]["moe_gemm_s"] + halves[j]["ep_comm_s"], memory)
        # each layer runs two phases (mb1's attention with mb2's MoE, then the reverse)
        step = phase(0, 1) + phase(1, 0)
    else:
        n_moe = model.n_moe_layers + (plan.mtp_tokens if model.moe is not None else 0)
        if n_moe == 0:
            step = compute
        else:
            attn_layers = model.n_layers + plan.mtp_tokens
            # per-layer stage times of each micro-batch; the attention side of a dense layer
            # has nothing to overlap with
            a = [_attention_side(x) / attn_layers for x in halves]
            m, d, c = ([x[k] / n_moe for x in halves] for k in ("moe_gemm_s", "dispatch_s",
                                                               "combine_s"))
            per_moe_layer = (max(a[0], c[1]) + max(d[0], a[1]) + max(m[0], d[1])
                             + max(c[0], m[1]))
            step = n_moe * per_moe_layer + (attn_layers - n_moe) * (a[0] + a[1])
    parts = {"gemm_s": both["attn_gemm_s"] + both["moe_gemm_s"],
             "attention_s": both["attention_s"], "elementwise_s": both["elementwise_s"],
             "tp_comm_s": both["tp_comm_s"], "ep_comm_s": 0.0,
             "overlap_wait_s": max(0.0, step - compute)}
    return parts


def _with_compute(system: System, factor: float) -> System:
    """`system` whose chip has `factor` of its compute peaks (a stream's share of the cores);
    memory bandwidth and fabrics unchanged."""
    chip = system.chip
    peaks = MappingProxyType({k: v * factor for k, v in chip.peak_flops_per_s.items()})
    return replace(system, chip=replace(chip, peak_flops_per_s=peaks))


def decode(model: Model, system: System, plan: ServePlan,
           calibration: Calibration | None = None) -> ServeResult:
    """One decode step: every sequence of the instance emits one token (1 + accepted drafts
    with MTP). With `plan.overlap` the batch runs as two overlapped micro-batches
    (overlapped_decode); with overlap None, as whichever is faster (the result's plan says
    which)."""
    validate(model, plan, system)
    cal = calibration or default_calibration()
    parts = overlapped_decode(model, system, plan, cal) if plan.overlap is not False else None
    one = _decode_parts(model, system, plan, cal, plan.batch_per_chip)
    serial = {"gemm_s": one["attn_gemm_s"] + one["moe_gemm_s"],
              "attention_s": one["attention_s"], "elementwise_s": one["elementwise_s"],
              "tp_comm_s": one["tp_comm_s"], "ep_comm_s": one["ep_comm_s"]}
    if parts is None or (plan.overlap is None and sum(serial.values()) <= sum(parts.values())):
        parts = serial
    if plan.overlap is None:  # record the choice
        plan = replace(plan, overlap="overlap_wait_s" in parts)
    parts["prefill_s"] = in_flight_prefill_s(model, system, plan, calibration)
    return _result("decode", model, system, plan, parts,
                   plan.batch_per_chip * plan.tokens_per_sequence_step, cal)


def in_flight_prefill_s(model: Model, system: System, plan: ServePlan,
                        calibration: Calibration | None = None) -> float:
    """Prefill work an aggregated server adds to a decode step, on average. A request holds its
    slot for output_len steps, so each step r = batch_per_chip / output_len requests finish on
    a chip and as many prompts of input_len tokens are prefilled in their place (in-flight
    batching, e.g. trtllm-bench with max_num_tokens = one prompt + the decode batch; Hopper has
    no chunked MLA context, so a prompt goes through in one iteration). Attention-DP ranks run
    each iteration in lock-step (the MoE layers need all of them), so an iteration lasts as
    long as its slowest rank: one rank's prompt stalls every rank (TensorRT-LLM tech blog 10,
    "ADP Balance Strategy": time_i = max over ranks, balance ratio 54% with its baseline
    round-robin scheduler). With `prefill_aligned` the prompts of all ranks share iterations:
    r prompt iterations per step. Otherwise each rank admits its prompts independently and a
    step holds a prompt with probability 1 - (1 - r)^n over the n = chips / tp ranks.
    A prompt iteration is charged the whole `prefill` of one prompt per chip: an upper bound,
    since it counts the expert GEMMs as if every rank prefilled and a mixed iteration reads
    the weights decode also reads only once."""
    if not (plan.input_len and plan.output_len):
        return 0.0
    one = prefill(model, system, replace(plan, batch_per_chip=1, context=plan.input_len,
                                         input_len=0, output_len=0), calibration)
    r = plan.batch_per_chip / plan.output_len
    if plan.prefill_aligned or r >= 1:
        return one.step_time_s * r
    return one.step_time_s * (1 - (1 - r) ** plan.attention_dp)


def _decode_attention_gemms(model: Model, tokens: int, tp: int) -> list[F.Gemm]:
    if model.mla is None:
        return F.attention_gemms(model, tokens, tp)
    m, nh, h = model.mla, model.n_heads // tp, model.hidden_size
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    out = [F.Gemm("q_down", tokens, m.q_lora_rank, h),
           F.Gemm("q_up", tokens, nh * qk, m.q_lora_rank)] if m.q_lora_rank else \
        [F.Gemm("q_proj", tokens, nh * qk, h)]
    return out + [
        F.Gemm("kv_down", tokens, m.kv_lora_rank + m.qk_rope_head_dim, h),
        # W_UK absorbed into the query and W_UV into the output, per head (DeepSeek-V2 sec. 2.1)
        F.Gemm("absorb_uk", tokens, m.kv_lora_rank, m.qk_nope_head_dim, nh),
        F.Gemm("absorb_uv", tokens, m.v_head_dim, m.kv_lora_rank, nh),
        F.Gemm("attn_out", tokens, h, nh * m.v_head_dim)]


def _ep_all_to_all_s(system: System, plan: ServePlan, routed: float, h: int,
                     dispatch_bytes: int) -> tuple[float, float]:
    """(dispatch, combine) of one MoE layer for `routed` token copies per chip: the fabric
    model, or where the fabric has measured fused operators (Fabric.moe_a2a) the slower of the
    two, the measurement scaled to the step's token copies per rank."""
    d_model = comm_s(system, "all_to_all", routed * h * dispatch_bytes, plan.ep, 1)
    c_model = comm_s(system, "all_to_all", 2.0 * routed * h, plan.ep, 1)
    # the measurement of the fabric the expert group crosses (its scale-up domain, or beyond)
    spans_domains = plan.ep > system.chips_per_domain
    measured = (system.scale_out if spans_domains else system.scale_up).moe_a2a
    if measured is None:
        return d_model, c_model
    points = measured.points
    ranks = plan.ep * plan.ranks_per_chip
    x = [math.log(n) for n, _, _ in points]
    dispatch = float(np.interp(math.log(ranks), x, [d for _, d, _ in points]))
    combine = float(np.interp(math.log(ranks), x, [c for _, _, c in points]))
    scale = routed / plan.ranks_per_chip * h / measured.shape_elements
    # the measured dispatch moved 1-byte (fp8/int8) tokens, its combine 2-byte ones
    return max(d_model, scale * dispatch * dispatch_bytes), max(c_model, scale * combine)


def _decode_moe_s(model: Model, plan: ServePlan, rates: Rates, batch_per_chip: int) -> float:
    """Routed and shared experts of one MoE layer on one chip for one decode step. The
    instance's tokens spread over all experts; a local expert is read if any token picks it.
    Router and shared experts run on every attention-DP rank of the chip."""
    moe = model.moe
    E, k = moe.n_routed_experts, moe.experts_per_token
    q, r = 1 + plan.mtp_tokens, plan.ranks_per_chip
    instance_tokens = batch_per_chip * plan.chips * q
    local = math.ceil(E / plan.ep)
    p_active = 1 - (1 - k / E) ** instance_tokens
    active = max(1, round(local * p_active))
    per_expert = max(1, round(instance_tokens * k / E / p_active))
    t = sum(rates.gemm_s(g) for g in F.ffn_gemms(model, per_expert, moe.expert_ffn_hidden_size,
                                                 1, "expert", active))
    tokens = _rank_rows(batch_per_chip, plan.tp, r) * q
    t += r * rates.gemm_s(F.Gemm("router", tokens, E, model.hidden_size))
    if moe.n_shared_experts:
        t += r * sum(rates.gemm_s(g) for g in F.ffn_gemms(
            model, tokens, moe.expert_ffn_hidden_size * moe.n_shared_experts, plan.tp, "shared"))
    return t


def fill_kv_cache(model: Model, system: System, plan: ServePlan) -> ServePlan:
    """`plan` with the largest batch per chip whose KV cache fits beside the weights (as
    servers size their batch when the cache is the limit)."""
    limit = max_batch_per_chip(model, plan, system.chip.hbm_bytes)
    if limit < 1:
        raise ModelInputError(f"{model.name}: weights alone do not fit on {plan.chips} chips of "
                              f"{system.name} with this plan")
    return replace(plan, batch_per_chip=limit)


def best_batch_for_tpot(model: Model, system: System, plan: ServePlan, tpot_s: float,
                        calibration: Calibration | None = None) -> ServeResult:
    """The largest batch per chip whose decode step meets the TPOT target and whose KV cache
    fits (bisection: step time grows with batch). With two-batch overlap asked for, a batch
    its TP group cannot split runs without it, so the search starts at the first batch that
    splits; when no overlapped batch meets the target, the batch is searched without overlap
    and the result says so (a forced overlap once fell to one sequence a chip, run without it,
    as if that were the overlapped answer)."""
    limit = max_batch_per_chip(model, plan, system.chip.hbm_bytes)
    if limit < 1:
        raise ModelInputError(f"{model.name}: weights alone do not fit on {plan.chips} chips of "
                        f"{system.name} with this plan")

    def at(batch: int, p: ServePlan = plan) -> ServeResult:
        return decode(model, system, replace(p, batch_per_chip=batch), calibration)

    def largest(first: int, p: ServePlan) -> int:
        lo, hi = first - 1, limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if at(mid, p).tpot_s <= tpot_s:
                lo = mid
            else:
                hi = mid - 1
        return lo

    splits = max(1, math.ceil(2 / plan.tp))  # the smallest batch a TP group can split in two
    if plan.overlap is True and splits > 1 and limit >= splits:
        best = largest(splits, plan)
        if best >= splits:
            return at(best)
        alone = largest(1, replace(plan, overlap=False))
        if alone >= 1:
            r = at(alone, replace(plan, overlap=False))
            return replace(r, notes=r.notes + (
                f"two-batch overlap meets no TPOT of {tpot_s * 1e3:g} ms (two sequences a "
                f"chip, the fewest it splits, take {at(splits).tpot_s * 1e3:.1f} ms: each "
                "micro-batch streams the weights): searched without it",))
    best = largest(1, plan)
    if best == 0:
        raise ModelInputError(f"TPOT target {tpot_s * 1e3:.1f} ms is below the single-sequence "
                        f"step time of {model.name} on this plan")
    return at(best)


@dataclass(frozen=True)
class Disaggregated:
    """A prefill pool and a decode pool sized so that prefill keeps decode fed."""

    prefill: ServeResult
    decode: ServeResult
    prefill_chips_per_decode_chip: float
    output_tokens_per_s_per_chip: float  # over both pools' chips

    def to_dict(self) -> dict:
        return {"prefill": self.prefill.to_dict(), "decode": self.decode.to_dict(),
                "prefill_chips_per_decode_chip": self.prefill_chips_per_decode_chip,
                "output_tokens_per_s_per_chip": self.output_tokens_per_s_per_chip}


def disaggregated(model: Model, system: System, prefill_plan: ServePlan, decode_plan: ServePlan,
                  input_len: int, output_len: int,
                  calibration: Calibration | None = None) -> Disaggregated:
    """Each request needs input_len prefill tokens per output_len decoded ones: the prefill
    pool needs (decode rate x input_len / output_len) / prefill rate chips per decode chip.
    KV-cache transfer between pools is assumed hidden behind decode (stated)."""
    p = prefill(model, system, prefill_plan, calibration)
    d = decode(model, system, decode_plan, calibration)
    ratio = d.tokens_per_s_per_chip * input_len / output_len / p.tokens_per_s_per_chip
    return Disaggregated(p, d, ratio, d.tokens_per_s_per_chip / (1 + ratio))
