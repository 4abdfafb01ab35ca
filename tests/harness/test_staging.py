"""The staged GPU reference run (harness/staging.py, scripts/gpu-reference, `rackbench plan`):
planned here for one H200, every stage fits its budget by the code's own estimate, the vendor
comparison comes first, the GPU tests last, and every case of the suite is measured once."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from clusters.catalog import load_chip
from harness import cli
from harness.estimate import GPU_COSTS, Ceilings
from harness.runner import default_timing, select
from harness.staging import RUN_START_MARGIN_S, STAGE_BUDGET_S, plan_reference
from harness.suites import VENDOR_CASES, VENDOR_FILTER, build_suite, gpu_test_cases

ROOT = Path(__file__).resolve().parents[2]
GPU = SimpleNamespace(platform="gpu", compute_capability="9.0")
SUITE = build_suite("default", "gpu", device_count=1)


def _plan(**kw):
    return plan_reference(SUITE, GPU, Ceilings.from_chip(load_chip("h200")), default_timing("default", "gpu"),
                          GPU_COSTS, **kw)


def test_every_stage_fits_five_minutes_on_one_h200():
    plans = _plan()
    assert STAGE_BUDGET_S == 300
    assert [p.name for p in plans][0] == "vendor" and plans[-1].name == "gpu-tests"
    assert all(p.name == "suite" for p in plans[1:-1])
    for p in plans:
        assert p.total_s <= STAGE_BUDGET_S, (p.name, p.part, p.total_s)


def test_the_suite_is_measured_once_and_the_vendor_cases_first():
    plans = _plan()
    assert [c.name for c in plans[0].cases] == list(VENDOR_CASES)
    measured = [c.name for p in plans[:-1] for c in p.cases]
    assert sorted(measured) == sorted(c.name for c in SUITE)
    assert len(measured) == len(set(measured))


def test_cases_already_in_the_set_are_not_planned_again():
    done = set(VENDOR_CASES) | {SUITE[0].name}
    plans = _plan(done=done)
    assert plans[0].cases == ()
    assert SUITE[0].name not in {c.name for p in plans for c in p.cases if p.name == "suite"}


def test_the_gpu_tests_measure_suite_cases_from_the_compilation_cache():
    names = {c.name for c in SUITE}
    assert {c.name for c in gpu_test_cases()} <= names
    tests = _plan()[-1]
    assert all("compilation cache" in c.source for c in tests.cases)


def test_the_vendor_filter_picks_exactly_the_vendor_cases():
    assert [c.name for c in select(SUITE, VENDOR_FILTER)] == list(VENDOR_CASES)
    assert VENDOR_CASES == ("matmul/bf16/8192x8192x8192", "attention/cudnn/fwd/bf16/causal/b1-t8192-h32-kv32-d128")


def test_the_script_gives_run_the_budget_the_plan_assumes():
    script = (ROOT / "scripts/gpu-reference").read_text()
    assert re.search(rf"^RUN_START_MARGIN_S={int(RUN_START_MARGIN_S)}$", script, re.M)
    assert "JAX_COMPILATION_CACHE_DIR" in script and "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0" in script


def test_plan_command_for_an_h200(capsys):
    assert cli.main(["plan", "--device-kind", "NVIDIA H200"]) == 0
    out = capsys.readouterr().out
    assert "catalog: h200" in out and "assumed" in out and "OVER" not in out
    assert re.search(r"^vendor\s+1\s+2\s", out, re.M) and re.search(r"^gpu-tests\s+1\s+5\s", out, re.M)
    # a budget no stage fits is exit 1, and says which
    assert cli.main(["plan", "--device-kind", "NVIDIA H200", "--budget-s", "60"]) == 1
    assert "OVER" in capsys.readouterr().out


def test_plan_command_bad_budget_is_one_line(capsys):
    assert cli.main(["plan", "--device-kind", "NVIDIA H200", "--budget-s", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def _set_up_checkout():
    """The script runs scripts/bootstrap in this checkout: only where that is a no-op (the
    venv made and current), so the test never rebuilds the venv it runs in."""
    stamp = ROOT / ".venv" / ".rackbench-installed"
    if not stamp.exists() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        pytest.skip("the checkout's .venv is not set up and current (make setup)")


def test_the_script_plans_without_a_gpu(tmp_path):
    _set_up_checkout()
    r = subprocess.run(["bash", "scripts/gpu-reference", "plan"], cwd=ROOT, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "STATE": str(tmp_path / "state"),
                            "OUT": str(tmp_path / "out"), "DEVICE_KIND": "NVIDIA H200", "HOME": str(tmp_path)},
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    plan = (tmp_path / "out" / "plan.txt").read_text()
    rows = re.findall(r"^(vendor|suite|gpu-tests)\s+\d", plan, re.M)
    assert rows[0] == "vendor" and rows[-1] == "gpu-tests" and f"{len(rows)} commands" in plan


@pytest.mark.slow
def test_the_suite_stage_saves_as_it_goes_and_resumes(tmp_path):
    """The script's suite stage on this CPU with the quick suite: a budget that admits one case
    leaves an incomplete set in $STATE and $OUT; the next call completes it."""
    _set_up_checkout()
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "STATE": str(tmp_path / "state"), "SUITE": "quick",
           "HOME": str(tmp_path)}

    def stage(budget_s, out):
        return subprocess.run(["bash", "scripts/gpu-reference", "suite"], cwd=ROOT, capture_output=True, text=True,
                              env={**env, "BUDGET_S": str(budget_s), "OUT": str(tmp_path / out)}, timeout=300)

    first = stage(int(RUN_START_MARGIN_S) + 1, "out1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "plan: 1 of " in first.stdout and "incomplete:" in first.stdout
    from harness.resultset import load

    rs = load(tmp_path / "out1" / "reference.json")
    assert len(rs.cases) == 1 and rs.meta["complete"] is False
    assert {"log.txt", "plan.txt"} <= {p.name for p in (tmp_path / "out1").iterdir()}
    second = stage(600, "out2")
    assert second.returncode == 0, second.stdout + second.stderr
    rs = load(tmp_path / "out2" / "reference.json")
    assert rs.meta["complete"] is True and len(rs.meta["stages"]) == 2
    assert len({c.name for c in rs.cases}) == len(rs.cases) == rs.meta["n_cases_planned"]


@pytest.mark.slow
def test_the_lease_stage_fits_its_stages_into_total_s(tmp_path):
    """`lease` on this CPU with the quick suite and TOTAL_S=200: no room for the vendor stage
    (it needs GPU_TESTS_S + 120 s beside it and 50 s of its own), so it says so; the suite and
    the GPU tests run in what is left (the suite ~160 s, which a loaded 2-core machine needs:
    at TOTAL_S=100 the suite ran out of budget there), and their files are in $OUT."""
    _set_up_checkout()
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "STATE": str(tmp_path / "state"), "SUITE": "quick",
           "HOME": str(tmp_path), "OUT": str(tmp_path / "out"), "TOTAL_S": "200", "GPU_TESTS_S": "40"}
    r = subprocess.run(["bash", "scripts/gpu-reference", "lease"], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=420)
    assert r.returncode == 0, r.stdout + r.stderr
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "no time left for the vendor stage" in log
    assert re.search(r"lease: suite exit 0 after \d+ s", log) and re.search(r"lease: gpu-tests exit 0 after \d+ s", log)
    from harness.resultset import load

    assert load(tmp_path / "out" / "reference.json").meta["complete"] is True
    assert "skipped" in (tmp_path / "out" / "gpu-tests.txt").read_text()
