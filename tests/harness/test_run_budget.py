"""`rackbench run --budget-s` and `--resume`: a call stops before a case that would not fit
its budget, the set is stored incomplete, and the next call continues it until the suite is
complete, each case measured once, in the suite's order. Budgets here are far below or far
above what the cases take, so no assertion depends on this machine's speed."""
from __future__ import annotations

import json

import pytest

from harness import cli
from harness.errors import UserError
from harness.runner import run_suite
from harness.timing import TimingConfig
from kernels.matmul import matmul_case
from kernels.membw import stream_case

CFG = TimingConfig(min_time_s=0.002, samples=5, min_samples=5, max_case_time_s=0.05, ceiling_calls=1,
                   ceiling_buffer_bytes=2**20)
CASES = [matmul_case(32, 32, 32, "fp32"), stream_case(1024), matmul_case(48, 48, 48, "fp32")]


def test_a_budget_stops_and_resume_completes(tmp_path):
    out = tmp_path / "set.json"
    said = []
    first = run_suite(suite="quick", cases=CASES, cfg=CFG, out_path=out, budget_s=1e-6, resume=True,
                      announce=said.append).result_set
    # the first case always runs (a case longer than any budget still gets measured)
    assert [c.name for c in first.cases] == [CASES[0].name]
    assert said and said[0].startswith("plan: 1 of 3 cases") and "2 left after it" in said[0]
    assert first.meta["complete"] is False and any("time budget" in w for w in first.meta["warnings"])
    stored = json.loads(out.read_text())["rackbench"]
    assert stored["complete"] is False and len(stored["cases"]) == 1

    second = run_suite(suite="quick", cases=CASES, cfg=CFG, out_path=out, budget_s=None, resume=True).result_set
    assert [c.name for c in second.cases] == [c.name for c in CASES]
    assert second.meta["complete"] is True
    assert [s["cases_measured"] for s in second.meta["stages"]] == [1, 2]
    assert second.meta["created_utc"] == first.meta["created_utc"]  # one set, begun once


def test_resume_measures_only_what_the_filter_picks_but_keeps_the_whole_suite_in_scope(tmp_path):
    out = tmp_path / "set.json"
    rs = run_suite(suite="quick", cases=CASES, cfg=CFG, out_path=out, resume=True, pattern="stream").result_set
    assert [c.name for c in rs.cases] == [CASES[1].name]
    assert rs.meta["n_cases_planned"] == 3 and rs.meta["complete"] is False
    rs = run_suite(suite="quick", cases=CASES, cfg=CFG, out_path=out, resume=True).result_set
    assert sorted(c.name for c in rs.cases) == sorted(c.name for c in CASES) and rs.meta["complete"]


def test_resume_refuses_another_suite_or_seed(tmp_path):
    out = tmp_path / "set.json"
    run_suite(suite="quick", cases=CASES[:1], cfg=CFG, out_path=out, resume=True)
    with pytest.raises(UserError, match=r"set.json: cannot resume: its seed is \d+, this run's is 7"):
        run_suite(suite="quick", cases=CASES, cfg=CFG, out_path=out, resume=True, seed=7)
    with pytest.raises(UserError, match="its suite is 'quick'"):
        run_suite(suite="default", cases=CASES, cfg=CFG, out_path=out, resume=True)


@pytest.mark.parametrize("argv, needle", [
    (["run", "--resume"], "--resume needs --out-file"),
    (["run", "--budget-s", "0", "--out-file", "x.json"], "--budget-s 0.0: must be positive"),
])
def test_bad_flags_are_one_line_exit_2(argv, needle, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
