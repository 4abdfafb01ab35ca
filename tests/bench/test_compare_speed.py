"""Benchmark: compare two generated result sets of 500 cases each, loading included (< 1 s).

CI runs this once as a test (pyproject's addopts has --benchmark-disable). For the figure:
    .venv/bin/python -m pytest tests/harness/test_compare_bench.py --benchmark-enable
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from harness import compare

DATA = Path(__file__).parents[1] / "harness" / "data"
_spec = importlib.util.spec_from_file_location("rackbench_test_synth", DATA / "synth.py")
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)

N_CASES = 500
BUDGET_S = 1.0


def test_compare_500_vs_500_under_1s(benchmark, tmp_path):
    # two nights of one machine, 50 samples per case, in save()'s own layout
    base, new = synth.nightly_series(tmp_path, 2, N_CASES, n_samples=50, night_sd=0.005, seed=0)

    timings = []

    def timed():
        # CPU seconds, not wall: the code is single-threaded, so on an idle machine they are the
        # same, and on a shared CI box they do not count the time other jobs held the cores.
        t0 = time.process_time()
        out = compare.compare_files(base, new)
        timings.append(time.process_time() - t0)
        return out

    cmp = benchmark(timed)
    if not benchmark.enabled:
        timed(), timed()  # best of three: the figure least disturbed by neighbours on a shared box
    assert len(cmp.cases) == N_CASES and cmp.n_tests == N_CASES
    assert cmp.exit_code == 0
    assert min(timings) < BUDGET_S, f"compare took {min(timings):.2f} CPU s (best of {len(timings)})"
