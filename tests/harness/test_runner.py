"""Failure isolation, wrong answers, interrupted runs and the stored result set."""
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import fast_cfg, tiny_case  # noqa: E402

from harness.resultset import load  # noqa: E402
from harness.runner import case_key, run_suite  # noqa: E402


def _run(tmp_path, cases, **kw):
    return run_suite(suite="quick", cases=cases, cfg=fast_cfg(), out_path=tmp_path / "set.json", **kw)


def test_wrong_answer_is_failed_not_fast(tmp_path):
    outcome = _run(tmp_path, [tiny_case("tiny/wrong", out=1.0), tiny_case("tiny/right")])
    wrong, right = outcome.result_set.cases
    assert wrong.status == "failed" and wrong.reason.startswith("wrong result")
    assert wrong.samples_s == [] and wrong.check["error"] > wrong.check["tolerance"]
    # at least its 5; a busy machine may earn a noisy case more (timing.extend_noisy)
    assert right.status == "ok" and len(right.samples_s) >= 5


def test_raising_kernel_is_failed_with_its_message_and_the_run_goes_on(tmp_path):
    outcome = _run(tmp_path, [tiny_case("tiny/raises", raises=RuntimeError("boom: no such op")), tiny_case("tiny/after")])
    failed, after = outcome.result_set.cases
    assert failed.status == "failed"
    assert failed.reason == "RuntimeError: boom: no such op"
    assert after.status == "ok"
    stored = load(tmp_path / "set.json")
    assert [c.status for c in stored.cases] == ["failed", "ok"]
    assert stored.meta["complete"] is True


def test_out_of_memory_reason_is_named(tmp_path):
    exc = RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 80.00GiB")
    (case,) = _run(tmp_path, [tiny_case("tiny/oom", raises=exc)]).result_set.cases
    assert case.reason.startswith("out of memory: RESOURCE_EXHAUSTED")


def test_skipped_case_keeps_its_reason(tmp_path):
    from kernels.matmul import matmul_case

    (case,) = _run(tmp_path, [matmul_case(64, 64, 64, "fp8")]).result_set.cases
    assert case.status == "skipped" and "fp8" in case.reason


def test_interrupted_run_leaves_a_readable_result_set(tmp_path):
    outcome = _run(tmp_path, [tiny_case("tiny/first"), tiny_case("tiny/ctrl-c", interrupt=True), tiny_case("tiny/never")])
    assert outcome.interrupted
    stored = load(tmp_path / "set.json")
    assert [c.name for c in stored.cases] == ["tiny/first"]
    assert stored.cases[0].status == "ok"
    assert stored.meta["complete"] is False and stored.meta["interrupted"] is True
    assert any("interrupted after 1 of 3 cases" in w for w in stored.meta["warnings"])


def test_result_set_records_environment_seed_and_ceilings(tmp_path):
    rs = _run(tmp_path, [tiny_case("tiny/a")], seed=7).result_set
    stored = load(tmp_path / "set.json")
    for key in ("created_utc", "machine_id", "fingerprint_id", "host", "device", "software", "git", "ceilings"):
        assert key in stored.meta, key
    assert stored.meta["seed"] == 7
    assert stored.meta["device"]["platform"] == "cpu" and stored.meta["device"]["count"] >= 1
    assert stored.meta["software"]["jax"] == jax.__version__
    # a CPU is not in the catalog: the ceilings are measured, and the set says so
    assert stored.meta["ceilings"]["source"].startswith("measured in this run")
    (case,) = stored.cases
    # the only fp32 matmul is the measured fp32 ceiling: 100% by construction, so no fraction
    assert case.fraction_of_peak is None and case.peak_flops_per_s == case.achieved_flops_per_s
    memory = stored.meta["ceilings"]["memory"]
    assert [s["when"] for s in memory["sweeps"]] == ["before the cases", "after the cases"]
    assert stored.meta["ceilings"]["peak_bw_bytes_per_s"] == max(s["best_bytes_per_s"] for s in memory["sweeps"])
    assert all("loadavg_1m" in s for s in memory["sweeps"])  # the load each sweep ran under (and the CPU
    # share others took, where the sweep outlasts a clock tick: not this 1 MiB one)
    assert case.achieved_flops_per_s == case.flops / case.stats["median_s"]
    assert rs.cases[0].stats == case.stats


def test_inputs_are_seeded_random_and_never_zero():
    from kernels.matmul import matmul_case

    case = matmul_case(16, 16, 16, "bf16")
    _, (a1, _) = case.make(case_key(1, case.name))
    _, (a2, _) = case.make(case_key(1, case.name))
    _, (a3, _) = case.make(case_key(2, case.name))
    assert np.array_equal(np.asarray(a1, np.float32), np.asarray(a2, np.float32))
    assert not np.array_equal(np.asarray(a1, np.float32), np.asarray(a3, np.float32))
    assert np.count_nonzero(np.asarray(a1, np.float32)) > 0.95 * a1.size


def test_default_path_layout(tmp_path):
    outcome = run_suite(suite="quick", cases=[tiny_case("tiny/a")], cfg=fast_cfg(), results_dir=tmp_path)
    rel = outcome.path.relative_to(tmp_path)
    assert rel.parts[0] == outcome.result_set.meta["machine_id"]
    assert rel.name.endswith(".json") and "T" in rel.name.split("-")[0]
