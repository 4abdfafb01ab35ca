"""Projection tables for `rackbench report`: the head-to-head summary, one table per workload.

Uses the calibration `rackbench project` would (newest GPU reference set, else the sourced
default file) and names it in the title. Computed once per process: a report asks for it once,
and the projection does not depend on the result sets being reported.
"""
from __future__ import annotations

from functools import lru_cache

import pandas as pd


@lru_cache(maxsize=1)
def _tables() -> tuple:
    from harness.studies.calibrate import choose_calibration
    from clusters.versus import versus
    from harness.studies.calibrate import REFERENCE_DIR

    v = versus(calibration=choose_calibration(None, REFERENCE_DIR), break_evens=False)
    out = []
    for workload, mode in dict.fromkeys((r.workload, r.mode) for r in v.rows):
        rows = [r for r in v.rows if (r.workload, r.mode) == (workload, mode)]
        df = pd.DataFrame({
            "system": [r.contender.system.name for r in rows],
            "basis": [r.contender.basis for r in rows],
            "chips": [r.contender.chips for r in rows],
            "tokens_per_s_per_chip": [r.tokens_per_s_per_chip if r.feasible else None for r in rows],
            "tokens_per_s_per_kw": [r.tokens_per_s_per_kw if r.feasible else None for r in rows],
            "mfu": [r.mfu for r in rows],
            "throughput_vs_cloudmatrix": [v.relative(r) for r in rows],
            "plan": [r.plan if r.feasible else f"infeasible: {r.reason}" for r in rows],
        })
        title = f"{workload} ({mode}), against CloudMatrix 384; calibration: {v.calibration}"
        out.append((title, df))
    return tuple(out)


def projection_tables() -> list[tuple[str, pd.DataFrame]]:
    return [(title, df.copy()) for title, df in _tables()]
