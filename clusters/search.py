"""Plan search: enumerate every valid training plan for a chip count and evaluate them all at
once with numpy, using the same cost model as clusters.train (tested equal plan by plan).

What varies between plans but is expensive (a layer's GEMM/attention/communication times, a
collective on a group) depends on few distinct values (TP x CP x micro-batch x EP, the DP
group's shape); those are computed once per distinct value with the scalar code of
clusters.train and broadcast. Everything else (pipeline, bubble, ZeRO, memory) is vectorised.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clusters import flops as F
from clusters import memory as M
from clusters.calibration import Calibration, default_calibration
from clusters.catalog import System
from clusters.plan import Plan, validate_plan
from clusters.collectives import Group, collective
from clusters.train import (OPTIMIZER_BYTES_PER_PARAM, PARTS, Rates, TrainResult, layer_parts,
                            ranks_per_domain, dp_exposed_s, layer_times, output_layer_s,
                            send_s,
                            train_step)
from clusters.workloads import Model
from clusters.errors import ModelInputError

RECOMPUTES = ("none", "selective", "full")
MICRO_BATCHES = (1, 2, 4, 8)
ZERO_STAGES = (0, 1, 2, 3)
CP_DEGREES = (1, 2, 4, 8, 16)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def enumerate_plans(model: Model, system: System, chips: int, global_batch: int, seq_len: int,
                    precision: str = "bf16", software: dict | None = None) -> dict[str, np.ndarray]:
    """Every valid plan as columns (tp, pp, dp, cp, ep, vpp, micro_batch, recompute, zero)."""
    cps = (1,) if (software or {}).get("attention_impl") == "materialized" else CP_DEGREES
    rows = []
    heads = model.n_heads
    experts = model.moe.n_routed_experts if model.moe else 1
    for tp in _divisors(chips):
        if tp > system.chips_per_domain or heads % tp:
            continue
        for cp in cps:
            if (chips // tp) % cp or (cp > 1 and seq_len % (2 * cp)):
                continue
            for pp in _divisors(chips // (tp * cp)):
                if pp > model.n_layers:
                    continue
                dp = chips // (tp * cp * pp)
                lps = math.ceil(model.n_layers / pp)
                vpps = [1] if pp == 1 else _divisors(lps)
                eps = [e for e in _divisors(math.gcd(experts, tp * cp * dp))] if model.moe else [1]
                for ep in eps:
                    for mb in MICRO_BATCHES:
                        if global_batch % (dp * mb):
                            continue
                        # the interleaved schedule needs micro-batches in multiples of pp
                        ok_vpps = vpps if (global_batch // (dp * mb)) % pp == 0 else [1]
                        for vpp in ok_vpps:
                            for rc in range(len(RECOMPUTES)):
                                for z in ZERO_STAGES:
                                    rows.append((tp, pp, dp, cp, ep, vpp, mb, rc, z))
    if not rows:
        raise ModelInputError(f"no valid plan for {model.name} on {chips} chips of {system.name} with "
                        f"global batch {global_batch} (needs a divisor structure that fits)")
    a = np.asarray(rows, dtype=np.int64)
    names = ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "recompute", "zero")
    return {n: a[:, i] for i, n in enumerate(names)}


SOFTWARE = ("tp_comm_overlap", "ep_overlap", "attention_impl", "dropout")


def _check_software(software: dict | None) -> dict:
    software = dict(software or {})
    unknown = set(software) - set(SOFTWARE)
    if unknown:
        raise ModelInputError(f"search: unknown software option {sorted(unknown)[0]!r} "
                        f"(known: {', '.join(SOFTWARE)})")
    return software


def _plan_at(cols: dict, i: int, global_batch: int, seq_len: int, precision: str,
             software: dict | None = None) -> Plan:
    return Plan(**(software or {}), tp=int(cols["tp"][i]), pp=int(cols["pp"][i]), dp=int(cols["dp"][i]),
                cp=int(cols["cp"][i]), ep=int(cols["ep"][i]), vpp=int(cols["vpp"][i]),
                micro_batch=int(cols["micro_batch"][i]), global_batch=global_batch,
                seq_len=seq_len, recompute=RECOMPUTES[int(cols["recompute"][i])],
                zero=int(cols["zero"][i]), precision=precision)


def _by_unique(keys: np.ndarray, compute) -> np.ndarray:
    """compute(row_of_keys) -> tuple of floats, evaluated once per distinct key row."""
    keys = np.asarray(keys, dtype=np.int64)
    # encode rows as one int64 (mixed radix) so np.unique works on a flat array
    radix = keys.max(axis=0) + 1
    code = np.zeros(len(keys), dtype=np.int64)
    for j in range(keys.shape[1]):
        code = code * int(radix[j]) + keys[:, j]
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    table = np.asarray([compute(tuple(int(x) for x in keys[i])) for i in first], dtype=float)
    return table[inverse.reshape(-1)]


@dataclass(frozen=True)
class Evaluation:
    """Vectorised results for every enumerated plan (arrays aligned with `plans`)."""

    plans: dict
    step_time_s: np.ndarray
    parts_s: dict
    memory_bytes: np.ndarray
    feasible: np.ndarray
    global_batch: int
    seq_len: int
    precision: str
    software: dict

    @property
    def n(self) -> int:
        return len(self.step_time_s)

    def plan(self, i: int) -> Plan:
        return _plan_at(self.plans, i, self.global_batch, self.seq_len, self.precision,
                        self.software)


def evaluate(model: Model, system: System, plans: dict, global_batch: int, seq_len: int,
             precision: str = "bf16", calibration: Calibration | None = None,
             software: dict | None = None) -> Evaluation:
    """Every plan in `plans`; `software` fixes Plan's software choices (SOFTWARE) for all."""
    software = _check_software(software)
    cal = calibration or default_calibration()
    chip = system.chip
    rates = Rates(chip, cal, precision)
    c = plans
    tp, pp, dp, cp, ep, vpp, mb, rc, zero = (c[k] for k in (
        "tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "recompute", "zero"))
    L = model.n_layers
    base = Plan(global_batch=global_batch, seq_len=seq_len, precision=precision, **software)

    nparts = len(_LAYER_PARTS)

    def layer(key):
        t, cpp, m, e = key
        p = base.with_(tp=t, cp=cpp, micro_batch=m, ep=e, dp=max(1, e),
                       global_batch=global_batch * max(1, e))
        dense_t = layer_times(model, p, system, rates, False)
        moe_t = layer_times(model, p, system, rates, True) if model.moe is not None else None
        row = []
        for r in RECOMPUTES:  # recompute changes only how the same times are combined
            pr = p.with_(recompute=r)
            out = {k: v * model.n_dense_layers / L for k, v in layer_parts(dense_t, pr).items()}
            if moe_t is not None:
                for k, v in layer_parts(moe_t, pr).items():
                    out[k] += v * model.n_moe_layers / L
            row += [out[k] for k in _LAYER_PARTS]
        tokens = m * seq_len // cpp
        logit_gemm, logit_mem = output_layer_s(model, rates, tokens, t)
        return tuple(row) + (logit_gemm, logit_mem)

    table = _by_unique(np.stack([tp, cp, mb, ep], 1), layer)
    rows = np.arange(len(tp))
    per_layer = {k: table[rows, rc * nparts + i] for i, k in enumerate(_LAYER_PARTS)}
    logit_gemm, logit_mem = table[:, -2], table[:, -1]
    logits = {k: np.zeros_like(logit_gemm) for k in _LAYER_PARTS}
    logits["gemm_s"], logits["elementwise_s"] = logit_gemm, logit_mem

    lps = np.ceil(L / pp)
    layer_total = sum(per_layer.values())
    logit_total = logit_gemm + logit_mem
    use_ceil = (pp > 1) & (lps * layer_total >= L / pp * layer_total + logit_total)
    stage = {}
    for k in _LAYER_PARTS:
        share = np.where(use_ceil, lps * per_layer[k], L / pp * per_layer[k] + logits[k])
        stage[k] = np.where(pp == 1, L * per_layer[k] + logits[k], share)

    tokens = mb * seq_len // cp
    act = 2.0 * tokens * model.hidden_size / np.where(tp > 1, tp, 1)
    same = (tp * cp * dp) < system.chips_per_domain
    send = _by_unique(np.stack([act.astype(np.int64), same], 1),
                      lambda k: (send_s(system, k[0], 1 if k[1] else system.chips_per_domain),))[:, 0]
    stage["pp_comm_s"] = np.where(pp > 1, 2 * vpp * send, 0.0)

    m = global_batch // (dp * mb)
    microbatch = sum(stage.values())
    parts = {k: m * v for k, v in stage.items()}
    parts["pipeline_bubble_s"] = (pp - 1) / vpp * microbatch

    nonexpert, experts = params_per_chip_arrays(model, tp, pp, ep)
    dp_ranks = dp * cp
    edp = tp * cp * dp // ep

    rs, ag = np.zeros(len(tp)), np.zeros(len(tp))
    for sizes, ranks, stride in ((2.0 * nonexpert, dp_ranks, tp), (2.0 * experts, edp, ep)):
        for op, out, mask in (("all_reduce", rs, zero == 0), ("reduce_scatter", rs, zero >= 1),
                              ("all_gather", ag, zero >= 1)):
            out += _group_collective(system, op, sizes, ranks, stride, mask)
    compute = stage["gemm_s"] + stage["attention_s"] + stage["elementwise_s"]
    parts["dp_comm_s"] = dp_exposed_s(rs, ag, compute, m, zero, True)  # dp_overlap default
    owned = np.where(zero >= 1, nonexpert / dp_ranks + experts / edp, nonexpert + experts)
    parts["optimizer_s"] = _mem_s_array(rates, OPTIMIZER_BYTES_PER_PARAM * owned)

    step = sum(parts[k] for k in PARTS)
    mem = memory_arrays(model, c, global_batch, seq_len, precision, nonexpert, experts, software)
    capacity = chip.hbm_bytes * M.USABLE_HBM_FRACTION
    return Evaluation(plans=c, step_time_s=step, parts_s={k: parts[k] for k in PARTS},
                      memory_bytes=mem, feasible=mem <= capacity, global_batch=global_batch,
                      seq_len=seq_len, precision=precision, software=software)


def _group_collective(system: System, op: str, sizes: np.ndarray, ranks: np.ndarray,
                      stride: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """comm_s for every plan under `mask`, one vectorised collective call per distinct group."""
    out = np.zeros(len(sizes))
    sel = mask & (ranks > 1) & (sizes > 0)
    if not sel.any():
        return out
    code = ranks * (int(stride.max()) + 1) + stride
    for c in np.unique(code[sel]):
        idx = np.nonzero(sel & (code == c))[0]
        r, st = int(ranks[idx[0]]), int(stride[idx[0]])
        group = Group(system, r, ranks_per_domain(system, st, r))
        out[idx] = collective(op, sizes[idx], group).time_s
    return out


_LAYER_PARTS = ("gemm_s", "attention_s", "elementwise_s", "recompute_s", "tp_comm_s",
                "cp_comm_s", "ep_comm_s")


def _mem_s_array(rates: Rates, moved: np.ndarray) -> np.ndarray:
    return np.asarray([rates.mem_s(float(x)) for x in np.atleast_1d(moved)]) \
        if rates.cal.lookup("memory", rates.chip.family, rates.precision)[0].log10_sizes \
        else moved / (rates.chip.hbm_bw_bytes_per_s * rates.cal.efficiency(
            "memory", rates.chip.family, rates.precision))


def params_per_chip_arrays(model: Model, tp, pp, ep):
    """Vectorised clusters.memory.params_per_chip."""
    n = model.n_layers
    dense = model.n_dense_layers * F.dense_layer_params(model)
    moe_nonexpert = model.n_moe_layers * F.moe_layer_nonexpert_params(model) if model.moe else 0
    experts = model.n_moe_layers * F.expert_params_per_layer(model)
    share = np.ceil(n / pp) / n
    vh = model.vocab_size * model.hidden_size
    embed = np.where(pp == 1, F.embedding_params(model), vh)
    return ((dense + moe_nonexpert) * share + embed) / tp, experts * share / ep


def memory_arrays(model: Model, c: dict, global_batch: int, seq_len: int, precision: str,
                  nonexpert: np.ndarray, experts: np.ndarray,
                  software: dict | None = None) -> np.ndarray:
    """Vectorised clusters.memory.memory_per_chip(...).total_bytes."""
    tp, pp, dp, cp, ep, vpp, mb, rc, zero = (c[k] for k in (
        "tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "recompute", "zero"))
    shard, eshard = dp * cp, tp * cp * dp // ep
    sharded = nonexpert / shard + experts / eshard
    full = nonexpert + experts
    opt = M.OPTIMIZER_BYTES * np.where(zero >= 1, sharded, full)
    grads = M.GRAD_BYTES * np.where(zero >= 2, sharded, full)
    lps = np.ceil(model.n_layers / pp)
    weights = M.WEIGHT_BYTES * np.where(zero >= 3, sharded + 2.0 / lps * full, full)

    base = Plan(global_batch=global_batch, seq_len=seq_len, precision=precision,
                **(software or {}))
    moe_frac = model.n_moe_layers / model.n_layers

    def per_token(key):
        t, r = key
        p = base.with_(tp=t, recompute=RECOMPUTES[r])
        v = (1 - moe_frac) * M.activation_bytes_per_token_layer(model, p, False)
        if moe_frac:
            v += moe_frac * M.activation_bytes_per_token_layer(model, p, True)
        full_layer = M.per_layer_full(model, p, moe_frac) if RECOMPUTES[r] == "full" else 0.0
        return v, full_layer

    pt = _by_unique(np.stack([tp, rc], 1), per_token)
    tokens = mb * seq_len / cp
    per_layer = pt[:, 0] * tokens
    m = global_batch // (dp * mb)
    in_flight = np.minimum(m, pp) * np.where(vpp > 1, 1 + (pp - 1) / (pp * vpp), 1.0)
    first, last = M.edge_stage_layers(model.n_layers, pp)
    stored = per_layer * first * in_flight + pt[:, 1] * tokens
    logits = 4.0 * tokens * model.vocab_size / tp
    act = np.where(pp == 1, stored + logits, np.maximum(stored, per_layer * last + logits))
    return weights + grads + opt + act


def search(model: Model, system: System, chips: int, global_batch: int, seq_len: int,
           precision: str = "bf16", calibration: Calibration | None = None,
           top: int = 5, software: dict | None = None) -> tuple[list[TrainResult], int]:
    """The `top` fastest feasible plans, each re-projected in full by train_step, and the
    number of plans evaluated."""
    software = _check_software(software)
    plans = enumerate_plans(model, system, chips, global_batch, seq_len, precision, software)
    ev = evaluate(model, system, plans, global_batch, seq_len, precision, calibration, software)
    order = np.argsort(np.where(ev.feasible, ev.step_time_s, np.inf))
    best = [i for i in order[:top] if ev.feasible[i]]
    if not best:
        i = int(np.argmin(ev.memory_bytes))
        r = train_step(model, system, ev.plan(i), calibration)
        raise ModelInputError(f"no plan of {model.name} fits on {chips} chips of {system.name}; the "
                        f"smallest-memory plan {r.reason}")
    return [train_step(model, system, validate_plan(model, ev.plan(int(i))), calibration)
            for i in best], ev.n
