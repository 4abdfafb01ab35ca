"""Plan search: enumerate every valid training plan for a chip count as a plan table and rank
them with the one cost model (clusters.train.evaluate), which evaluates the whole table at once.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from clusters.calibration import Calibration
from clusters.catalog import System, device_view
from clusters.errors import ModelInputError
from clusters.plan import CATEGORIES, FIELDS, Plan, to_table, validate_plan
from clusters.software import stack_for
from clusters.train import TrainResult, evaluate
from clusters.workloads import Model

RECOMPUTES = CATEGORIES["recompute"]
MICRO_BATCHES = (1, 2, 4, 8)
ZERO_STAGES = (0, 1, 2, 3)
CP_DEGREES = (1, 2, 4, 8, 16)
SOFTWARE = ("tp_comm_overlap", "ep_overlap", "attention_impl", "dropout")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _check_software(software: dict | None) -> dict:
    software = dict(software or {})
    unknown = set(software) - set(SOFTWARE)
    if unknown:
        raise ModelInputError(f"search: unknown software option {sorted(unknown)[0]!r} "
                              f"(known: {', '.join(SOFTWARE)})")
    return software


def practice(system: System, software: dict | None = None) -> dict:
    """The software options a search uses on `system`: the overlaps its family's published
    stack offers (clusters.software), on, unless `software` says otherwise. An offered overlap
    is on because it never lengthens the step in this model: it hides communication behind
    compute and gives back only the core share its kernels take (under half), and it costs no
    memory the model counts. A tuple value searches each of its values."""
    offered = stack_for(system.chip.family).offers
    out = {k: True for k, on in offered.items() if on}
    out.update(_check_software(software))
    return out


def enumerate_plans(model: Model, system: System, chips: int, global_batch: int, seq_len: int,
                    precision: str = "bf16", software: dict | None = None) -> dict[str, np.ndarray]:
    """Every valid plan as a plan table (clusters.plan.to_table columns): degrees that divide,
    TP inside the scale-up domain and dividing the heads, CP dividing the sequence, EP dividing
    the experts and TP x CP x DP, micro-batch counts, interleaving depths, recompute and ZeRO
    choices; `software` fixes the software options (SOFTWARE) for all of them."""
    software = _check_software(software)
    cps = (1,) if "materialized" in _values(software.get("attention_impl")) else CP_DEGREES
    rows = []  # every layout; recompute and ZeRO choices are crossed in below
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
                eps = _divisors(math.gcd(experts, tp * cp * dp)) if model.moe else [1]
                for mb in MICRO_BATCHES:
                    if global_batch % (dp * mb):
                        continue
                    # the interleaved schedule needs micro-batches in multiples of pp
                    ok_vpps = vpps if (global_batch // (dp * mb)) % pp == 0 else [1]
                    rows += [(tp, pp, dp, cp, ep, vpp, mb) for ep in eps for vpp in ok_vpps]
    if not rows:
        raise ModelInputError(f"no valid plan for {model.name} on {chips} chips of {system.name} "
                              f"with global batch {global_batch} (needs a divisor structure that "
                              "fits)")
    layouts = np.asarray(rows, dtype=np.int64)
    choices = np.asarray([(rc, z) for rc in range(len(RECOMPUTES)) for z in ZERO_STAGES],
                         dtype=np.int64)
    a = np.concatenate([np.repeat(layouts, len(choices), axis=0),
                        np.tile(choices, (len(layouts), 1))], axis=1)
    varied = ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "recompute", "zero")
    searched = {k: v for k, v in software.items() if isinstance(v, tuple)}
    variants = [dict(zip(searched, combo)) for combo in itertools.product(*searched.values())]
    parts = []
    for variant in variants:
        fixed = to_table([Plan(global_batch=global_batch, seq_len=seq_len, precision=precision,
                               **{**software, **variant})])
        table = {name: np.repeat(fixed[name], len(a)) for name in FIELDS}
        table.update({name: a[:, i] for i, name in enumerate(varied)})
        parts.append(table)
    return {name: np.concatenate([t[name] for t in parts]) for name in FIELDS}


def _values(v) -> tuple:
    return v if isinstance(v, tuple) else (v,)


def rank(ev) -> np.ndarray:
    """Row indices of an Evaluation, best first: feasible before infeasible, then the shorter
    step; plans whose steps agree to the nanosecond are ties, broken by the stated rule: less
    memory per chip, then smaller communication groups (tp x cp, then ep, then pp), then the
    lower ZeRO stage and the less recompute (the simpler setup), then enumeration order."""
    p = ev.plans
    step = np.where(ev.feasible, np.round(ev.step_time_s * 1e9), np.inf)
    keys = (np.arange(ev.n), p["recompute"], p["zero"], p["pp"], p["ep"], p["tp"] * p["cp"],
            np.round(ev.total_memory_bytes), step)
    return np.lexsort(keys)


def search(model: Model, system: System, chips: int, global_batch: int, seq_len: int,
           precision: str = "bf16", calibration: Calibration | None = None,
           top: int = 5, software: dict | None = None) -> tuple[list[TrainResult], int]:
    """The `top` best feasible plans (`rank`), each as evaluate's TrainResult, and the number
    of plans evaluated. `chips` counts packages; plans count ranks, one per device."""
    ranks = chips * system.chip.devices
    plans = enumerate_plans(model, device_view(system), ranks, global_batch, seq_len, precision,
                            practice(system, software))
    ev = evaluate(model, system, plans, calibration)
    feasible = ev.feasible
    best = [int(i) for i in rank(ev)[:top] if feasible[i]]
    if not best:
        r = ev.result(int(np.argmin(ev.total_memory_bytes)))
        raise ModelInputError(f"no plan of {model.name} fits on {chips} chips of {system.name}; "
                              f"the smallest-memory plan {r.reason}")
    for i in best:
        validate_plan(model, ev.plan(i))
    return [ev.result(i) for i in best], ev.n
