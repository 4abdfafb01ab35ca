"""Training step time of a model under a parallel plan on a system, as a sum of named parts.

How time is built (per micro-batch, per layer, on one chip of the busiest pipeline stage):
- GEMMs from their shapes (clusters.flops), each max(FLOPs / (peak x calibrated efficiency),
  bytes / (HBM bandwidth x weight-streaming efficiency)): a roofline, so small
  shapes lose efficiency, and a memory-bound GEMM streams its weights at the rate DeepGEMM's
  small-M kernels reach, below a copy kernel's (the calibration's memory entry, operation
  "weights": a measured thin-GEMM curve of the chip, else a published memory entry times
  gemm_stream_over_memory). The GEMM's arithmetic intensity over the chip's ridge point goes
  with it, so a measured GEMM curve answers only calls as compute-bound as its own points.
  Backward = 2x forward (input and weight
  gradients). In fp8 training the output layer stays in bf16 (Megatron-Core builds it outside
  Transformer Engine's fp8 autocast), see `output_layer_s`.
- Attention: FlashAttention executes the causal half of QK^T and AV at the calibrated attention
  efficiency, backward 2.5x forward (5 GEMMs against 2, Dao 2023 arXiv 2307.08691 sec. 3.1).
  `flash2_era` gives a calibration for stacks that predate FlashAttention-3 on Hopper.
  The 2021 Megatron stack ("materialized") runs them as batched GEMMs and writes the s x s
  scores to memory (softmax and dropout are then memory-bound work).
- The compute bound of GEMMs and attention runs at the pace of the job's slowest device
  (Rates.pace, Calibration.pace: the expected slowest of the plan's ranks, chips differing by
  the calibration's chip_spread), since every step waits at its collectives for it.
- Memory-bound work (norms, residual adds, activation functions, RoPE, dropout, fp8 casts,
  MoE permutes, cross-entropy) from its bytes at the calibrated memory efficiency; backward 2x.
- Recompute re-runs the forward (full) or attention (selective) during backward.
- Communication from clusters.collectives on the fabric each group spans:
  TP (all-reduce, or all-gather + reduce-scatter with sequence parallelism) inside the layer,
  exposed unless `tp_comm_overlap` (then hidden behind the layer's GEMMs as far as they last);
  CP ring attention K/V exchange, hidden behind attention compute as far as it lasts;
  EP all-to-all dispatch and combine, exposed unless `ep_overlap` (DualPipe / two-batch
  overlap: hidden behind the same pass's compute as far as it lasts); PP activation sends
  (1/tp of the activation each, Megatron's scatter/gather), exposed;
  DP gradient reduce-scatter + parameter all-gather (all-reduce without ZeRO), hierarchical
  when the group spans domains, see `dp_exposed_s` for the overlap rules (ZeRO 3 gathers the
  weights every micro-batch).
  The busiest pipeline stage holds ceil(L/p) layers, or L/p layers plus the output layer when
  that is heavier; it sets the pace of every micro-batch.
- Pipeline bubble (p-1)/v micro-batch times (Narayanan et al. 2021, arXiv 2104.04473 sec. 2.2).
- Optimizer: Adam reads and writes ~30 bytes per locally-owned parameter, memory-bound.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clusters import flops as F
from clusters.calibration import FLASH_BWD_OVER_FWD, Calibration, default_calibration
from clusters.catalog import Chip, System, device_view
from clusters.collectives import Group, collective, moe_dispatch
from clusters.dtypes import bytes_per_element
from clusters.flops import RECOMPUTE
from clusters.memory import (USABLE_HBM_FRACTION, MemoryBreakdown, breakdown_at, memory_table,
                             params_per_chip)
from clusters.software import stack_for
from clusters.plan import PRECISIONS, Plan, decode, plan_at, table_size, to_table, validate_plan
from clusters.tables import by_unique
from clusters.workloads import Model

PARTS = ("gemm_s", "attention_s", "elementwise_s", "recompute_s", "tp_comm_s", "cp_comm_s",
         "ep_comm_s", "pp_comm_s", "pipeline_bubble_s", "dp_comm_s", "optimizer_s")
MFU_DEFINITION = ("model FLOPs with causal attention (6N + the lower triangle of QK^T and AV, "
                  "no recompute) per second per chip / dense peak of the GEMM precision")
MFU_PALM_DEFINITION = ("model FLOPs (PaLM: 6N + attention QK^T/AV without causal halving, no "
                  "recompute) per second per chip / dense peak of the GEMM precision")
HFU_DEFINITION = "hardware FLOPs (model FLOPs + recomputed forward) per second per chip / same peak"
OPTIMIZER_BYTES_PER_PARAM = 30.0  # fp32 master, m, v read+written (24), grad read (4), bf16 write (2)
@dataclass(frozen=True)
class Rates:
    """The target chip's effective rates under a calibration, in a job of `ranks` devices:
    compute (GEMM and attention at their compute bound) runs at the pace of the job's slowest
    device (Calibration.pace); memory-bound work and communication do not depend on the SM
    clock that varies between chips."""

    chip: Chip
    cal: Calibration
    precision: str
    ranks: int = 1
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def pace(self) -> float:
        if "pace" not in self._memo:
            self._memo["pace"] = self.cal.pace(self.chip.family, self.ranks, chip=self.chip.name)
        return self._memo["pace"]

    def gemm_s(self, g: F.Gemm, dtype: str | None = None) -> float:
        dtype = dtype or self.precision
        key = (g.m, g.n, g.k, g.count, dtype)
        if key not in self._memo:
            self._memo[key] = self._gemm_s(g, dtype)
        return self._memo[key]

    def _gemm_s(self, g: F.Gemm, dtype: str) -> float:
        peak = self.chip.peak(dtype)
        in_bytes = bytes_per_element(dtype)
        moved = g.count * ((g.m * g.k + g.k * g.n) * in_bytes + 2 * g.m * g.n)
        ridge = peak / self.chip.hbm_bw_bytes_per_s
        eff = self.cal.efficiency("gemm", self.chip.family, dtype, g.flops / g.count, peak,
                                  chip=self.chip.name, over_ridge=g.flops / moved / ridge)
        return max(g.flops / (peak * eff * self.pace), self.mem_s(moved, "weights", dtype))

    def attention_s(self, flops: float, moved_bytes: float, call_flops: float | None = None) -> float:
        """Fused attention of `flops` (forward), its efficiency read at the size of one kernel
        call (`call_flops`, default all of it: one call)."""
        peak = self.chip.peak("bf16")
        eff = self.cal.efficiency("attention", self.chip.family, "bf16", call_flops or flops,
                                  peak, chip=self.chip.name)
        return max(flops / (peak * eff * self.pace), self.mem_s(moved_bytes))

    def mem_s(self, moved_bytes: float, op: str = "stream", dtype: str | None = None) -> float:
        """`moved_bytes` through HBM by memory-bound work of operation class `op`
        (clusters.calibration.MEMORY_OPS): elementwise work and copies ("stream"), a KV cache
        read ("kv_read"), or a thin GEMM streaming its `dtype` weights ("weights")."""
        eff = self.cal.efficiency("memory", self.chip.family, dtype or self.precision,
                                  moved_bytes, chip=self.chip.name, op=op)
        return moved_bytes / (self.chip.hbm_bw_bytes_per_s * eff)


def flash2_era(cal: Calibration) -> Calibration:
    """`cal` with its Hopper attention at FlashAttention-2's measured rate (the calibration's
    "flash2" variant), for projecting runs of stacks that predate FlashAttention-3."""
    return cal.variant("flash2")


@dataclass(frozen=True)
class LayerTimes:
    """Forward times of one layer for one micro-batch on one chip (before exposure rules)."""

    gemm: float
    attention: float
    attention_bwd: float
    elementwise: float
    tp_comm: float
    cp_comm: float
    ep_comm: float
    # what overlapping the TP collectives with the GEMMs adds to them (forward + backward):
    # the overlapped GEMMs run in chunks (gemm_split_extra_s)
    gemm_split: float = 0.0
    # forward + backward time of the GEMMs Transformer Engine overlaps with an SM margin
    # (sm_margin_gemm_s): they run on fewer SMs while TP communication is overlapped
    gemm_margin: float = 0.0
    # the parts of `gemm` and `ep_comm` that serving's overlapped prefill schedules apart: the
    # attention projections' GEMMs, and the dispatch direction of the expert all-to-all
    # (ep_comm less it is the combine)
    attention_gemm: float = 0.0
    ep_dispatch: float = 0.0


def sm_margin_gemm_s(gemms: list, rates: "Rates") -> float:
    """Forward + backward time (at full speed) of the GEMMs TE's 'pipeline' and 'bulk'
    overlaps run with an SM margin: the row-parallel forward GEMMs (output projection, FC2) and
    the column-parallel ones' backward dgrad and wgrad (QKV, FC1), each as long as its forward."""
    total = 0.0
    for g in gemms:
        if g.name in F.ROW_PARALLEL:
            total += rates.gemm_s(g)
        elif g.name in F.COLUMN_PARALLEL:
            total += 2 * rates.gemm_s(g)
    return total


def gemm_split_extra_s(gemms: list, tp: int, rates: "Rates") -> float:
    """Extra GEMM time per micro-batch (forward + backward) when the TP collectives overlap
    the GEMMs in chunks (clusters.flops.overlap_chunks), over the same GEMMs run whole."""
    return sum(rates.gemm_s(chunk) - rates.gemm_s(g) for g, chunk in F.overlap_chunks(gemms, tp))


def ranks_per_domain(system: System, stride: int, size: int) -> int:
    """Members of a group (ranks r0 + i*stride) that share one scale-up domain."""
    d = system.chips_per_domain
    k = 1 if stride >= d else min(size, max(1, d // stride))
    while size % k:
        k -= 1
    return k


# Collective times memoised per system object (kept alive in the value, so an id is never
# reused for another system while its entries exist); the plan search asks the same questions
# thousands of times.
_COMM_MEMO: dict = {}


def _collective_s(system: System, op: str, size_bytes, ranks: int, per_domain: int):
    key = (id(system), op, float(size_bytes), ranks, per_domain)
    hit = _COMM_MEMO.get(key)
    if hit is not None and hit[0] is system:
        return hit[1]
    if len(_COMM_MEMO) > 200_000:
        _COMM_MEMO.clear()
    t = float(collective(op, size_bytes, Group(system, ranks, per_domain)).time_s)
    _COMM_MEMO[key] = (system, t)
    return t


def comm_s(system: System, op: str, size_bytes: float, ranks: int, stride: int) -> float:
    if ranks <= 1 or size_bytes <= 0:
        return 0.0
    return _collective_s(system, op, size_bytes, ranks, ranks_per_domain(system, stride, ranks))


def send_s(system: System, size_bytes: float, stride: int) -> float:
    """A point-to-point send between neighbours `stride` ranks apart."""
    same_domain = stride < system.chips_per_domain
    return _collective_s(system, "send", size_bytes, 2, 2 if same_domain else 1)


def elementwise_bytes_per_token(model: Model, plan: Plan, moe_layer: bool) -> float:
    """Forward memory-bound bytes per token of one layer on one chip."""
    tp = plan.tp
    repl = tp if (plan.sequence_parallel and tp > 1) else 1
    h = model.hidden_size
    # two norms (read + write h, 2 bytes) and two residual adds (read 2h, write h), or with
    # dropout two fused bias-dropout-adds (read x, bias, residual; write out and 1-byte mask)
    replicated = 8.0 * h + (14.0 * h if plan.dropout else 12.0 * h)
    q_dim = model.n_heads * model.head_dim
    kv_dim = model.n_kv_heads * model.head_dim
    sharded = 4.0 * (q_dim + kv_dim) if model.position_embedding == "rope" else 0.0
    if plan.attention_impl == "materialized":
        sharded += 4.0 * model.n_heads * plan.seq_len  # scale-mask-softmax read + write
        if plan.dropout:
            sharded += 5.0 * model.n_heads * plan.seq_len  # read, write, 1-byte mask
    act = 6.0 if model.activation == "swiglu" else 4.0  # read 2f write f / read f write f
    if moe_layer:
        moe = model.moe
        routed = moe.experts_per_token * (act * moe.expert_ffn_hidden_size + 8.0 * h)
        sharded_ffn = act * moe.expert_ffn_hidden_size * moe.n_shared_experts
        per_token = replicated / repl + routed / repl + (sharded + sharded_ffn) / tp
        f_in = moe.expert_ffn_hidden_size
    else:
        per_token = replicated / repl + (sharded + act * model.ffn_hidden_size) / tp
        f_in = model.ffn_hidden_size
    if plan.precision == "fp8":
        # cast each GEMM input to fp8 (read 2 bytes, write 1): qkv, out-proj, up and down inputs
        per_token += 3.0 * (2 * h + q_dim + f_in) / tp
    return per_token


def layer_times(model: Model, plan: Plan, system: System, rates: Rates,
                moe_layer: bool, dispatch: str = "per_expert") -> LayerTimes:
    """One layer's forward on one chip. `dispatch` is how the expert all-to-all sends tokens
    (clusters.software.DISPATCH_MODES): one copy per routed expert, or "deduplicated" as
    DeepEP's normal kernels do (ep_dispatch_s)."""
    tp, cp = plan.tp, plan.cp
    tokens = plan.micro_batch * plan.seq_len // cp  # tokens of this chip's sequence shard
    sp = plan.sequence_parallel and tp > 1
    gemms = F.attention_gemms(model, tokens, tp)
    n_attention = len(gemms)
    if moe_layer:
        gemms += F.moe_gemms(model, tokens, tp, plan.ep)
    else:
        gemms += F.ffn_gemms(model, tokens, model.ffn_hidden_size, tp)
    times = [rates.gemm_s(g) for g in gemms]
    gemm = sum(times)
    gemm_split = gemm_split_extra_s(gemms, tp, rates) if (tp > 1 and sp) else 0.0
    gemm_margin = sm_margin_gemm_s(gemms, rates) if (tp > 1 and sp) else 0.0

    heads = model.n_heads // tp
    if model.mla is not None:
        d_qk = model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim
        d_v = model.mla.v_head_dim
        kv_heads = heads
    else:
        d_qk = d_v = model.head_dim
        kv_heads = max(1, model.n_kv_heads // tp)
    if plan.attention_impl == "flash":
        flops = tokens * F.attention_core_flops_fwd(model, plan.seq_len, causal=True) / tp
        moved = 2.0 * tokens * (heads * (d_qk + 2 * d_v) + kv_heads * (d_qk + d_v))
        # Ring attention (cp > 1) runs one kernel per ring step, each on this chip's query chunk
        # against one key/value chunk: cp calls of 1/cp the work, at the efficiency of that size
        attention = rates.attention_s(flops, moved, call_flops=flops / cp)
        attention_bwd = FLASH_BWD_OVER_FWD * attention
    else:
        s, count = plan.seq_len, heads * plan.micro_batch
        attention = (rates.gemm_s(F.Gemm("qk", s, s, d_qk, count), "bf16")
                     + rates.gemm_s(F.Gemm("av", s, d_v, s, count), "bf16"))
        attention_bwd = 2.0 * attention
    elementwise = rates.mem_s(tokens * elementwise_bytes_per_token(model, plan, moe_layer))

    act_bytes = 2.0 * tokens * model.hidden_size
    if sp:
        tp_comm = 2 * (comm_s(system, "all_gather", act_bytes, tp, 1)
                       + comm_s(system, "reduce_scatter", act_bytes, tp, 1))
    else:
        tp_comm = 2 * comm_s(system, "all_reduce", act_bytes, tp, 1)
    cp_comm = 0.0
    if cp > 1:
        kv_bytes = 2.0 * tokens * model.n_heads * (d_qk + d_v) if model.mla else \
            2.0 * tokens * 2 * model.n_kv_heads * model.head_dim
        # The ring's cp ranks sit tp apart (rank order tp, cp, dp, pp) and span tp * cp
        # consecutive ranks: when that exceeds a scale-up domain some hops cross the scale-out
        # fabric, and since every ring step waits for all of them, every step runs at that rate.
        crossing = tp * cp > system.chips_per_domain
        cp_comm = (cp - 1) * send_s(system, kv_bytes, system.chips_per_domain if crossing else 1)
    ep_comm = ep_dispatch = 0.0
    if moe_layer and plan.ep > 1:
        sent = tokens // tp if sp else tokens
        ep_dispatch = ep_dispatch_s(system, model, sent, plan.ep,
                                    bytes_per_element(plan.precision), dispatch)
        ep_comm = ep_dispatch + ep_dispatch_s(system, model, sent, plan.ep, 2, dispatch)
    return LayerTimes(gemm, attention, attention_bwd, elementwise, tp_comm, cp_comm, ep_comm,
                      gemm_split, gemm_margin, sum(times[:n_attention]), ep_dispatch)


def ep_dispatch_s(system: System, model: Model, tokens: float, ep: int, token_bytes: float,
                  dispatch: str = "per_expert") -> float:
    """One direction of the expert all-to-all for `tokens` tokens of `token_bytes` per element
    on each of `ep` consecutive ranks: a plain all-to-all of one copy per routed expert, or
    DeepEP's deduplicated dispatch (clusters.collectives.moe_dispatch, within the model's
    node limit) where the experts divide evenly over the ranks."""
    if ep <= 1 or tokens <= 0:
        return 0.0
    moe = model.moe
    per_token = model.hidden_size * token_bytes
    if dispatch == "deduplicated" and moe.n_routed_experts % ep == 0:
        key = (id(system), "moe_dispatch", float(tokens * per_token), ep, moe.n_routed_experts,
               moe.experts_per_token, moe.max_nodes_per_token)
        hit = _COMM_MEMO.get(key)
        if hit is None or hit[0] is not system:
            group = Group(system, ep, ranks_per_domain(system, 1, ep))
            t = float(moe_dispatch(tokens * per_token, group, moe.n_routed_experts,
                                   moe.experts_per_token,
                                   moe.max_nodes_per_token or None).time_s)
            hit = _COMM_MEMO[key] = (system, t)
        return hit[1]
    return comm_s(system, "all_to_all", tokens * moe.experts_per_token * per_token, ep, 1)


def output_layer_s(model: Model, rates: Rates, tokens: int, tp: int) -> tuple[float, float]:
    """(GEMM, memory-bound) time of the output layer and cross-entropy for one micro-batch,
    forward + backward: the vocab GEMM three times, fp32 logits written and read in forward and
    backward (16 bytes per logit). In fp8 training the output layer still runs in bf16:
    Megatron-Core's GPTModel builds it as tensor_parallel.ColumnParallelLinear (a plain torch
    matmul, megatron/core/models/gpt/gpt_model.py), outside Transformer Engine's fp8 autocast,
    which wraps only the transformer layers."""
    dtype = "bf16" if rates.precision == "fp8" else None
    gemm = 3 * rates.gemm_s(F.output_gemm(model, tokens, tp), dtype)
    return gemm, rates.mem_s(16.0 * tokens * model.vocab_size / tp)


def dp_exposed_s(rs, ag, compute_mb, m, zero, overlap):
    """Exposed data-parallel communication per step (numpy arrays, one entry per plan).
    ZeRO 0 and 1: gradients accumulate in a full local buffer and are reduced once per step
    (all-reduce, or reduce-scatter + parameter all-gather with a sharded optimizer); overlapped,
    the last micro-batch's backward (2/3 of its compute) hides the reduce-scatter and the first
    one's forward (1/3) the all-gather (Megatron-Core overlap_grad_reduce /
    overlap_param_gather). ZeRO 2 keeps only its gradient shard, so every micro-batch's
    backward reduce-scatters its gradients ("for zero stage 2 (and 3), gradient reduction is
    required after every backward because of gradient partitioning", DeepSpeed maintainer,
    deepspeedai/DeepSpeed#2252), each hidden behind that backward; the weights are gathered once
    per step. ZeRO 3 / FSDP reshards the weights after use: every micro-batch all-gathers them
    for forward and again for backward and reduce-scatters its gradients, hidden behind all the
    forward and backward compute (layer-by-layer prefetch)."""
    z3_hidden = (np.maximum(0.0, m * ag - m * compute_mb / 3)
                 + np.maximum(0.0, m * (ag + rs) - m * compute_mb * 2 / 3))
    z2_hidden = m * np.maximum(0.0, rs - compute_mb * 2 / 3) + np.maximum(0.0, ag - compute_mb / 3)
    z01_hidden = np.maximum(0.0, rs - compute_mb * 2 / 3) + np.maximum(0.0, ag - compute_mb / 3)
    hidden = np.where(zero >= 3, z3_hidden, np.where(zero == 2, z2_hidden, z01_hidden))
    exposed = np.where(zero >= 3, m * (2 * ag + rs), np.where(zero == 2, m * rs + ag, rs + ag))
    return np.where(overlap, hidden, exposed)


LAYER_PARTS = ("gemm_s", "attention_s", "elementwise_s", "recompute_s", "tp_comm_s",
               "cp_comm_s", "ep_comm_s")


def _overlapped(comm, compute, slowdown):
    """A communication overlapped with `compute`: the part that outlasts it, plus what the
    compute it hides behind loses to the communication kernels' share of the cores."""
    hidden = np.minimum(comm, compute)
    return comm - hidden + slowdown * hidden


def layer_parts(lt: dict, tp_comm_overlap, ep_overlap, recompute,
                comm_core_fraction: float = 0.0, sm_margin: float | None = None) -> dict:
    """One layer, one micro-batch, forward + backward (+ recompute): the exposed parts, from
    the forward times `lt` (LayerTimes fields as arrays) and each plan's software choices.
    Overlapped communication is not free: while its kernels run they hold
    `comm_core_fraction` of the cores (clusters.software), so the compute it hides behind runs
    1/(1 - fraction) times longer; that extra is charged to the communication part. TP
    overlap on a stack with an SM margin (`sm_margin`: the share of the chip's SMs Transformer
    Engine's userbuffers take) instead slows the margin GEMMs by 1/(1 - margin) for as long
    as they run, whatever the communication's length; charged to the TP part too."""
    gemm, attn, attn_bwd, elem = lt["gemm"], lt["attention"], lt["attention_bwd"], lt["elementwise"]
    slowdown = comm_core_fraction / (1.0 - comm_core_fraction)
    tp_slowdown = 0.0 if sm_margin is not None else slowdown
    margin_extra = lt["gemm_margin"] * (sm_margin / (1.0 - sm_margin)) if sm_margin else 0.0
    fwd_compute = gemm + attn + elem
    tp_fwd = np.where(tp_comm_overlap, _overlapped(lt["tp_comm"], gemm, tp_slowdown),
                      lt["tp_comm"])
    tp_bwd = np.where(tp_comm_overlap, _overlapped(lt["tp_comm"], 2 * gemm, tp_slowdown)
                      + margin_extra, lt["tp_comm"])
    full = recompute == RECOMPUTE.index("full")
    selective = recompute == RECOMPUTE.index("selective")
    # each EP direction hidden behind the same pass of another micro-batch when overlapped
    ep_hidden = (_overlapped(lt["ep_comm"], fwd_compute, slowdown)
                 + _overlapped(lt["ep_comm"], 2 * (gemm + elem) + attn_bwd, slowdown))
    return {
        "gemm_s": 3 * gemm + np.where(tp_comm_overlap, lt["gemm_split"], 0.0),
        "attention_s": attn + attn_bwd,
        "elementwise_s": 3 * elem,
        "recompute_s": np.where(full, fwd_compute, np.where(selective, attn, 0.0)),
        "tp_comm_s": tp_fwd + tp_bwd + np.where(full, tp_fwd, 0.0),
        # ring attention: fwd sends K,V, bwd K,V and their gradients, behind attention compute
        "cp_comm_s": (np.maximum(0.0, lt["cp_comm"] - attn)
                      + np.maximum(0.0, 2 * lt["cp_comm"] - attn_bwd)),
        "ep_comm_s": np.where(ep_overlap, ep_hidden, 2 * lt["ep_comm"])
        + np.where(full & ~np.asarray(ep_overlap, dtype=bool), lt["ep_comm"], 0.0),
    }


# Plan fields a layer's forward times depend on (clusters.plan column names); a dense layer
# and the output layer do not depend on EP, so they are computed once per key without it
_LAYER_KEY = ("tp", "cp", "micro_batch", "seq_len", "precision", "sequence_parallel",
              "attention_impl", "dropout")
_LAYER_FIELDS = ("gemm", "attention", "attention_bwd", "elementwise", "tp_comm", "cp_comm",
                 "ep_comm", "gemm_split", "gemm_margin")


class _RatesByPrecision(dict):
    """Rates of one chip and calibration, one per (GEMM precision, ranks in the job), made on
    first use."""

    def __init__(self, chip: Chip, cal: Calibration):
        super().__init__()
        self.chip, self.cal = chip, cal

    def __missing__(self, key: tuple[str, int]) -> Rates:
        precision, ranks = key
        self[key] = r = Rates(self.chip, self.cal, precision, ranks)
        return r


def _key_plan(names, key) -> Plan:
    return Plan(**{name: decode(name, v) for name, v in zip(names, key)})


def job_ranks(table: dict) -> np.ndarray:
    """Devices of each plan's job (tp x pp x dp x cp): the ranks whose slowest sets the pace."""
    return table["tp"] * table["pp"] * table["dp"] * table["cp"]


def _layer_table(model: Model, system: System, table: dict, rates: _RatesByPrecision) -> dict:
    """Forward times of a dense and (for MoE models) an MoE layer, and the output layer's
    GEMM and memory time, for every plan (computed once per distinct key of plan columns and
    job size)."""

    def dense_and_logits(key):
        p = _key_plan(_LAYER_KEY, key[:-1])
        r = rates[p.precision, int(key[-1])]
        lt = layer_times(model, p, system, r, False)
        logit = output_layer_s(model, r, p.micro_batch * p.seq_len // p.cp, p.tp)
        return tuple(getattr(lt, f) for f in _LAYER_FIELDS) + logit

    def moe(key):
        p = _key_plan(_LAYER_KEY + ("ep",), key[:-1])
        lt = layer_times(model, p, system, rates[p.precision, int(key[-1])], True)
        return tuple(getattr(lt, f) for f in _LAYER_FIELDS)

    ranks = job_ranks(table)[:, None]
    keys = np.stack([table[k] for k in _LAYER_KEY], 1)
    d = by_unique(np.concatenate([keys, ranks], 1), dense_and_logits)
    out = {"dense": {f: d[:, i] for i, f in enumerate(_LAYER_FIELDS)},
           "logit_gemm_s": d[:, -2], "logit_mem_s": d[:, -1]}
    if model.moe is None:
        out["moe"] = out["dense"]
    else:
        e = by_unique(np.concatenate([keys, table["ep"][:, None], ranks], 1), moe)
        out["moe"] = {f: e[:, i] for i, f in enumerate(_LAYER_FIELDS)}
    return out


def _group_collective(system: System, op: str, sizes, ranks, stride, where=True) -> np.ndarray:
    """comm_s for every plan (0 where `where` is False): one vectorised collective call per
    distinct (ranks, stride)."""
    sizes = np.broadcast_to(np.asarray(sizes, dtype=float), ranks.shape)
    out = np.zeros(len(sizes))
    sel = (ranks > 1) & (sizes > 0) & where
    if not sel.any():
        return out
    code = ranks * (int(stride.max()) + 1) + stride
    for c in np.unique(code[sel]):
        idx = np.nonzero(sel & (code == c))[0]
        r, st = int(ranks[idx[0]]), int(stride[idx[0]])
        group = Group(system, r, ranks_per_domain(system, st, r))
        out[idx] = collective(op, sizes[idx], group).time_s
    return out


@dataclass(frozen=True)
class Evaluation:
    """The cost model's answer for every plan of a table (arrays aligned with its rows)."""

    model: Model
    system: System
    calibration: Calibration
    plans: dict  # the plan table (clusters.plan.to_table)
    parts_s: dict  # PARTS -> seconds per step
    memory_bytes: dict  # memory_table's parts -> bytes per chip
    capacity_bytes: float

    @property
    def n(self) -> int:
        return table_size(self.plans)

    @property
    def step_time_s(self) -> np.ndarray:
        return sum(self.parts_s[k] for k in PARTS)

    @property
    def total_memory_bytes(self) -> np.ndarray:
        return sum(self.memory_bytes.values())

    @property
    def feasible(self) -> np.ndarray:
        return self.total_memory_bytes <= self.capacity_bytes

    def plan(self, i: int) -> Plan:
        return plan_at(self.plans, i)

    def result(self, i: int) -> "TrainResult":
        """Row `i` as a TrainResult (the named breakdown, memory, throughput, power), per
        package: a plan's ranks are devices (clusters.catalog.device_view)."""
        plan, chip, system = self.plan(i), self.system.chip, self.system
        devices = chip.devices
        chips = plan.chips // devices
        # Power and price pro rata of the systems' chips used (a 64-chip slice of a
        # CloudMatrix 384 is charged 64/384 of it).
        n_systems = chips / system.chips_per_domain
        breakdown = {k: float(self.parts_s[k][i]) for k in PARTS}
        return TrainResult(
            model=self.model.name, system=system.name, chips=chips, plan=plan,
            step_time_s=sum(breakdown.values()), breakdown_s=breakdown,
            memory=breakdown_at(self.memory_bytes, i, self.capacity_bytes),
            tokens_per_step=plan.tokens_per_step,
            model_flops_per_token=F.model_flops_per_token(self.model, plan.seq_len),
            hardware_flops_per_token=F.hardware_flops_per_token(self.model, plan.seq_len,
                                                                plan.recompute),
            peak_flops_per_s=chip.peak(plan.precision), chips_power_w=chips * chip.power_w,
            system_power_w=n_systems * system.power_w, systems=n_systems,
            capex_usd=None if system.price_usd is None else n_systems * system.price_usd,
            notes=tuple(self.calibration.notes_for(chip.family))
            + tuple(self.calibration.pace_note(chip.family, plan.chips,
                                               device_view(system).chip.name)) + (
                (f"{system.chip.name}: {devices} devices per chip, the plan's {plan.chips} ranks "
                 f"are {chips} chips",) if devices > 1 else ()),
            causal_flops_per_token=F.model_flops_per_token(self.model, plan.seq_len, causal=True),
            devices_per_chip=devices)


def _scale_layer_table(lt: dict, c: dict, cpd: int, eff: dict) -> None:
    """Divide each part of the layer table by its kernel class's efficiency multiplier per row
    (clusters.uncertainty): GEMMs by "gemm", attention by "attention", memory-bound work by
    "memory", each collective by the fabric its group spans."""
    tp, cp, ep = c["tp"], c["cp"], c["ep"]
    fabric = {"tp_comm": eff["scale_up"],
              "cp_comm": np.where(tp * cp > cpd, eff["scale_out"], eff["scale_up"]),
              "ep_comm": np.where(ep > cpd, eff["scale_out"], eff["scale_up"])}
    by_field = {"gemm": eff["gemm"], "gemm_split": eff["gemm"], "gemm_margin": eff["gemm"],
                "attention": eff["attention"],
                "attention_bwd": eff["attention"], "elementwise": eff["memory"], **fabric}
    for kind in ("dense", "moe"):
        lt[kind] = {f: lt[kind][f] / by_field[f] for f in _LAYER_FIELDS}
    lt["logit_gemm_s"] = lt["logit_gemm_s"] / eff["gemm"]
    lt["logit_mem_s"] = lt["logit_mem_s"] / eff["memory"]


def evaluate(model: Model, system: System, plans: dict,
             calibration: Calibration | None = None, eff_scale: dict | None = None) -> Evaluation:
    """The training step of every plan in `plans` (a plan table, clusters.plan.to_table) on
    `system`: the one implementation of the training cost model. Plans are assumed valid
    (clusters.plan.validate_plan, or clusters.search.enumerate_plans); their degrees count
    ranks, one per device (a 910C package is two: clusters.catalog.device_view).
    `eff_scale` (clusters.uncertainty: kernel class -> one multiplier per plan row) scales each
    row's efficiencies, so a batch of samples of one plan is a table of its copies."""
    cal = calibration or default_calibration()
    package_system, system = system, device_view(system)
    c = plans
    tp, pp, dp, cp, ep, vpp, mb, zero = (c[k] for k in (
        "tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "zero"))
    L = model.n_layers
    rates = _RatesByPrecision(system.chip, cal)
    ones = np.ones(len(tp))
    eff = {k: np.asarray(eff_scale[k], dtype=float) if eff_scale and k in eff_scale else ones
           for k in ("gemm", "attention", "memory", "scale_up", "scale_out", "power")}
    cpd = system.chips_per_domain

    lt = _layer_table(model, system, c, rates)
    if eff_scale:
        _scale_layer_table(lt, c, cpd, eff)
    stack = stack_for(system.chip.family)
    cores = stack.comm_core_fraction
    margin = (stack.tp_overlap_sms / system.chip.sm_count
              if stack.tp_overlap_sms and system.chip.sm_count else None)
    dense = layer_parts(lt["dense"], c["tp_comm_overlap"], c["ep_overlap"], c["recompute"], cores,
                        margin)
    moe = layer_parts(lt["moe"], c["tp_comm_overlap"], c["ep_overlap"], c["recompute"], cores,
                      margin)
    per_layer = {k: dense[k] * model.n_dense_layers / L + moe[k] * model.n_moe_layers / L
                 for k in LAYER_PARTS}
    logits = {k: np.zeros(len(tp)) for k in LAYER_PARTS}
    logits["gemm_s"], logits["elementwise_s"] = lt["logit_gemm_s"], lt["logit_mem_s"]

    # Busiest stage: ceil(L/p) layers, or an average share plus the output layer if heavier.
    lps = np.ceil(L / pp)
    layer_total = sum(per_layer.values())
    use_ceil = (pp > 1) & (lps * layer_total >= L / pp * layer_total + sum(logits.values()))
    stage = {k: np.where(pp == 1, L * per_layer[k] + logits[k],
                         np.where(use_ceil, lps * per_layer[k], L / pp * per_layer[k] + logits[k]))
             for k in LAYER_PARTS}

    # Each TP rank sends only its 1/tp slice of the boundary activation; without sequence
    # parallelism the receiver all-gathers it over the scale-up fabric (Megatron's
    # scatter/gather optimisation, Narayanan et al. 2021 sec. 4.1).
    tokens = mb * c["seq_len"] // cp
    boundary = 2.0 * tokens * model.hidden_size
    same_domain = (tp * cp * dp) < system.chips_per_domain  # the PP neighbour's stride
    send = by_unique(np.stack([(boundary / tp).astype(np.int64), same_domain], 1),
                     lambda k: (send_s(system, k[0], 1 if k[1] else system.chips_per_domain),))
    gather = _group_collective(system, "all_gather", boundary, tp, np.ones_like(tp),
                               where=~c["sequence_parallel"] & (pp > 1))
    stage["pp_comm_s"] = np.where(pp > 1, 2 * vpp * (send[:, 0] / np.where(
        same_domain, eff["scale_up"], eff["scale_out"]) + gather / eff["scale_up"]), 0.0)

    m = c["global_batch"] // (dp * mb)
    microbatch_s = sum(stage.values())
    parts = {k: m * v for k, v in stage.items()}
    parts["pipeline_bubble_s"] = (pp - 1) / vpp * microbatch_s

    nonexpert, experts = params_per_chip(model, tp, pp, ep)
    dp_ranks, edp = dp * cp, tp * cp * dp // ep
    rs, ag = np.zeros(len(tp)), np.zeros(len(tp))
    for size, ranks, stride in ((2.0 * nonexpert, dp_ranks, tp), (2.0 * experts, edp, ep)):
        rs += _group_collective(system, "all_reduce", size, ranks, stride, where=zero == 0)
        rs += _group_collective(system, "reduce_scatter", size, ranks, stride, where=zero >= 1)
        ag += _group_collective(system, "all_gather", size, ranks, stride, where=zero >= 1)
    dp_fabric = np.where(tp * cp * dp > cpd, eff["scale_out"], eff["scale_up"])
    rs, ag = rs / dp_fabric, ag / dp_fabric
    compute = stage["gemm_s"] + stage["attention_s"] + stage["elementwise_s"]
    parts["dp_comm_s"] = dp_exposed_s(rs, ag, compute, m, zero, c["dp_overlap"])
    owned = np.where(zero >= 1, nonexpert / dp_ranks + experts / edp, nonexpert + experts)
    optimizer = np.zeros(len(tp))
    for code in np.unique(c["precision"]):
        rows = c["precision"] == code
        optimizer[rows] = rates[PRECISIONS[code], 1].mem_s(OPTIMIZER_BYTES_PER_PARAM * owned[rows])
    parts["optimizer_s"] = optimizer / eff["memory"]

    return Evaluation(model=model, system=package_system, calibration=cal, plans=c,
                      parts_s={k: parts[k] for k in PARTS},
                      memory_bytes=memory_table(model, c),
                      capacity_bytes=system.chip.hbm_bytes * USABLE_HBM_FRACTION)


def power_fields(chips_power_w: float, chips: int, systems_power_w: float,
                 systems: float) -> dict:
    """A result's power, each figure named for what it covers: `power_w` the whole systems
    used (pro rata of their chips; what joules_per_token divides), `power_w_per_system` one
    of them, `chips_power_w` the chips alone (their rated power), `power_w_per_chip` one."""
    return {"power_w": systems_power_w,
            "power_w_per_system": systems_power_w / systems if systems else None,
            "systems": systems, "chips_power_w": chips_power_w,
            "power_w_per_chip": chips_power_w / chips if chips else None}


@dataclass(frozen=True)
class TrainResult:
    model: str
    system: str
    chips: int
    plan: Plan
    step_time_s: float
    breakdown_s: dict
    memory: MemoryBreakdown
    tokens_per_step: int
    model_flops_per_token: float
    hardware_flops_per_token: float
    peak_flops_per_s: float
    chips_power_w: float  # all the plan's chips
    system_power_w: float  # the whole systems, pro rata of their chips used
    capex_usd: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)
    causal_flops_per_token: float = 0.0  # model FLOPs with causal attention (what MFU divides)
    devices_per_chip: int = 1  # ranks per package (the plan's degrees count ranks)
    systems: float = 0.0  # systems used, pro rata (64 chips of a CloudMatrix 384: 0.167)

    @property
    def feasible(self) -> bool:
        return self.memory.feasible

    @property
    def reason(self) -> str | None:
        return self.memory.reason

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_time_s

    @property
    def tokens_per_s_per_chip(self) -> float:
        """Per package (chip): a multi-device chip's ranks count together."""
        return self.tokens_per_s / self.chips

    @property
    def model_flops_per_s_per_chip(self) -> float:
        return self.model_flops_per_token * self.tokens_per_s_per_chip

    @property
    def hardware_flops_per_s_per_chip(self) -> float:
        return self.hardware_flops_per_token * self.tokens_per_s_per_chip

    @property
    def mfu(self) -> float:
        """Model FLOPs with causal attention per second per chip over its dense peak."""
        return self.causal_flops_per_token * self.tokens_per_s_per_chip / self.peak_flops_per_s

    @property
    def mfu_palm(self) -> float:
        """The PaLM-convention MFU publications report (attention counted in full)."""
        return self.model_flops_per_s_per_chip / self.peak_flops_per_s

    @property
    def hfu(self) -> float:
        return self.hardware_flops_per_s_per_chip / self.peak_flops_per_s

    @property
    def joules_per_token(self) -> float:
        return self.system_power_w / self.tokens_per_s

    def time_to_train_s(self, tokens: float) -> float:
        return tokens / self.tokens_per_s

    def to_dict(self) -> dict:
        p = self.plan
        return {
            "model": self.model, "system": self.system, "chips": self.chips, "mode": "train",
            "plan": {k: getattr(p, k) for k in p.__dataclass_fields__},
            "feasible": self.feasible, "infeasible_reason": self.reason,
            "step_time_s": self.step_time_s, "breakdown_s": dict(self.breakdown_s),
            "tokens_per_step": self.tokens_per_step,
            "tokens_per_s": self.tokens_per_s, "tokens_per_s_per_chip": self.tokens_per_s_per_chip,
            "model_flops_per_token": self.model_flops_per_token,
            "hardware_flops_per_token": self.hardware_flops_per_token,
            "model_flops_per_s_per_chip": self.model_flops_per_s_per_chip,
            "causal_model_flops_per_s_per_chip": self.causal_flops_per_token
            * self.tokens_per_s_per_chip,
            "hardware_flops_per_s_per_chip": self.hardware_flops_per_s_per_chip,
            "peak_flops_per_s": self.peak_flops_per_s,
            "mfu": self.mfu, "mfu_definition": MFU_DEFINITION,
            "mfu_palm": self.mfu_palm, "mfu_palm_definition": MFU_PALM_DEFINITION,
            "ranks": self.plan.chips, "devices_per_chip": self.devices_per_chip,
            "hfu": self.hfu, "hfu_definition": HFU_DEFINITION,
            "memory_bytes_per_chip": self.memory.total_bytes,
            "usable_memory_bytes_per_chip": self.memory.capacity_bytes,
            "memory": self.memory.to_dict(),
            **power_fields(self.chips_power_w, self.chips, self.system_power_w, self.systems),
            "joules_per_token": self.joules_per_token, "capex_usd": self.capex_usd,
            "notes": list(self.notes),
        }


def train_step(model: Model, system: System, plan: Plan,
               calibration: Calibration | None = None) -> TrainResult:
    """Project one optimizer step of `plan` (whose chip count is tp*pp*dp*cp) on `system`: the
    cost model (evaluate) for a table of one plan."""
    validate_plan(model, plan)
    return evaluate(model, system, to_table([plan]), calibration).result(0)


def step_gemm_flops(model: Model, plan: Plan) -> float:
    """GEMM FLOPs one step executes on all chips, summed from the per-chip shapes the time
    model uses (forward + backward, recompute excluded). Independent of the plan: a check that
    TP, CP, EP and micro-batching split the work without losing or duplicating any."""
    tokens = plan.micro_batch * plan.seq_len // plan.cp

    def total(gemms):  # replicated GEMMs (MLA down-projections) do one rank's work once
        return sum(g.flops / (plan.tp if g.replicated else 1) for g in gemms)

    attention = total(F.attention_gemms(model, tokens, plan.tp))
    per_chip_mb = model.n_dense_layers * (attention + total(
        F.ffn_gemms(model, tokens, model.ffn_hidden_size, plan.tp)))
    if model.moe is not None:
        per_chip_mb += model.n_moe_layers * (attention + total(
            F.moe_gemms(model, tokens, plan.tp, plan.ep)))
    per_chip_mb += F.output_gemm(model, tokens, plan.tp).flops
    # Layers are split over pp stages: the per-chip sum above covers all layers, so divide.
    return 3.0 * per_chip_mb * plan.n_microbatches * plan.tp * plan.cp * plan.dp
