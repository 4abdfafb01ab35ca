"""Plan search: enumerate every valid training plan for a chip count as a plan table and rank
them with the one cost model (clusters.train.evaluate), which evaluates the whole table at once.
"""
from __future__ import annotations

import math

import numpy as np

from clusters.calibration import Calibration
from clusters.catalog import System
from clusters.errors import ModelInputError
from clusters.plan import CATEGORIES, FIELDS, Plan, to_table, validate_plan
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


def enumerate_plans(model: Model, system: System, chips: int, global_batch: int, seq_len: int,
                    precision: str = "bf16", software: dict | None = None) -> dict[str, np.ndarray]:
    """Every valid plan as a plan table (clusters.plan.to_table columns): degrees that divide,
    TP inside the scale-up domain and dividing the heads, CP dividing the sequence, EP dividing
    the experts and TP x CP x DP, micro-batch counts, interleaving depths, recompute and ZeRO
    choices; `software` fixes the software options (SOFTWARE) for all of them."""
    software = _check_software(software)
    cps = (1,) if software.get("attention_impl") == "materialized" else CP_DEGREES
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
    fixed = to_table([Plan(global_batch=global_batch, seq_len=seq_len, precision=precision,
                           **software)])
    table = {name: np.repeat(fixed[name], len(a)) for name in FIELDS}
    table.update({name: a[:, i] for i, name in enumerate(varied)})
    return table


def search(model: Model, system: System, chips: int, global_batch: int, seq_len: int,
           precision: str = "bf16", calibration: Calibration | None = None,
           top: int = 5, software: dict | None = None) -> tuple[list[TrainResult], int]:
    """The `top` fastest feasible plans, each as evaluate's TrainResult, and the number of
    plans evaluated."""
    plans = enumerate_plans(model, system, chips, global_batch, seq_len, precision, software)
    ev = evaluate(model, system, plans, calibration)
    feasible = ev.feasible
    order = np.argsort(np.where(feasible, ev.step_time_s, np.inf), kind="stable")
    best = [int(i) for i in order[:top] if feasible[i]]
    if not best:
        r = ev.result(int(np.argmin(ev.total_memory_bytes)))
        raise ModelInputError(f"no plan of {model.name} fits on {chips} chips of {system.name}; "
                              f"the smallest-memory plan {r.reason}")
    for i in best:
        validate_plan(model, ev.plan(i))
    return [ev.result(i) for i in best], ev.n
