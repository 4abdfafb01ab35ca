"""Start-up and whole-process targets on this machine (best of several runs, interleaved with
a bare interpreter so load hits both alike):
- `rackbench --help`, `catalog`, `collective` and `project` (a fixed plan) cost at most 0.3 s
  over a bare interpreter start;
- a whole plan search, as one process, finishes within 1.0 s: Llama 3 405B on 16,384 H100 and
  DeepSeek-V3 on 2,048 H800 (with the band on the winner, as `project` runs by default);
- the band (clusters.uncertainty) at most doubles `project` on a fixed plan (training, and a
  decode step) against the same command with --no-band;
- `versus` with bands (all three workloads, break-even ranges) within 30 s.
Run: `pytest -m bench tests/bench/test_startup.py -s` (prints the table README quotes)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

ENTRY = "import sys; from harness.cli import main; sys.exit(main())"
OVERHEAD = {
    "--help": ["--help"],
    "catalog": ["catalog"],
    "collective": ["collective", "--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8",
                   "--bytes", "1GiB"],
    "project (fixed plan)": ["project", "--model", "llama3-405b", "--system", "hgx-h100",
                             "--chips", "8192", "--tp", "8", "--pp", "16", "--vpp", "4",
                             "--micro-batch", "1", "--global-batch", "2048", "--zero", "2"],
}
SEARCHES = {
    "Llama 3 405B on 16,384 H100": ["project", "--model", "llama3-405b", "--system", "hgx-h100",
                                    "--chips", "16384"],
    "DeepSeek-V3 on 2,048 H800": ["project", "--model", "deepseek-v3", "--system", "hgx-h800",
                                  "--chips", "2048"],
}
ROUNDS = 7
# As a user's machine runs it: Python keeps compiled bytecode (some CI images switch that off;
# the first of the rounds then writes it).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run_s(argv) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60, env=ENV)
    return time.perf_counter() - t0


def _best(argvs: dict) -> dict:
    bare = [sys.executable, "-c", "pass"]
    best = {name: float("inf") for name in argvs} | {"bare interpreter": float("inf")}
    for _ in range(ROUNDS):
        best["bare interpreter"] = min(best["bare interpreter"], _run_s(bare))
        for name, args in argvs.items():
            best[name] = min(best[name], _run_s([sys.executable, "-c", ENTRY, *args]))
    return best


def test_model_commands_start_within_0_3_s_of_a_bare_interpreter():
    best = _best(OVERHEAD)
    bare = best.pop("bare interpreter")
    print(f"\nbare interpreter {bare:.3f} s (best of {ROUNDS})")
    for name, t in best.items():
        print(f"{name:24s} {t:.3f} s, {t - bare:+.3f} s over bare")
    for name, t in best.items():
        assert t - bare <= 0.3, f"{name}: {t - bare:.3f} s over a bare interpreter"


@pytest.mark.parametrize("name", list(SEARCHES))
def test_whole_plan_search_within_1_s(name):
    best = _best({name: SEARCHES[name]})
    print(f"\n{name}: {best[name]:.3f} s as one process (bare interpreter "
          f"{best['bare interpreter']:.3f} s; best of {ROUNDS})")
    assert best[name] <= 1.0


BANDED = {
    "train (fixed plan)": OVERHEAD["project (fixed plan)"],
    "decode (fixed batch)": ["project", "--mode", "decode", "--model", "deepseek-r1", "--system",
                             "hgx-h100", "--chips", "72", "--ep", "72", "--attention-dp",
                             "--precision", "fp8", "--batch-per-chip", "256", "--context", "2000"],
}


@pytest.mark.parametrize("name", list(BANDED))
def test_band_at_most_doubles_a_fixed_plan_projection(name):
    best = _best({"band": BANDED[name], "no band": [*BANDED[name], "--no-band"]})
    print(f"\n{name}: {best['band']:.3f} s with its band, {best['no band']:.3f} s without "
          f"({best['band'] / best['no band']:.2f}x; best of {ROUNDS})")
    assert best["band"] <= 2 * best["no band"]


def test_versus_with_bands_within_30_s():
    from clusters.versus import versus
    t0 = time.perf_counter()
    v = versus()
    elapsed = time.perf_counter() - t0
    print(f"\nversus with bands: {elapsed:.1f} s")
    assert all(r.band is not None for r in v.rows if r.feasible)
    assert elapsed <= 30
