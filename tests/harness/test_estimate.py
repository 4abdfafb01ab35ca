"""harness.estimate: the time a list of cases takes, from FLOPs, bytes, the catalog's peaks
and compile costs, checked in closed form, and against the wall times a real CPU run recorded
(a stored set, so the check reads no clock)."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from clusters.catalog import load_chip
from harness.estimate import (CPU_COSTS, GPU_COSTS, ROOFLINE_FRACTION, Ceilings, estimate_case, estimate_cases,
                              fit_budget, parts)
from harness.resultset import load
from harness.runner import default_timing
from harness.suites import build_suite
from harness.timing import TimingConfig, sample_count
from kernels.attention import attention_case
from kernels.collectives import collective_case
from kernels.matmul import matmul_case

H200 = Ceilings.from_chip(load_chip("h200"))
GPU = SimpleNamespace(platform="gpu", compute_capability="9.0")
CFG = default_timing("default", "gpu")
CPU_SET = Path(__file__).parent / "data" / "sets" / "vm-cpu-x8-20261128T162718-c64393e5-v1.json.gz"


def test_a_long_matmul_is_host_loop_at_half_the_peak():
    case = matmul_case(8192, 8192, 8192, "bf16")
    est = estimate_case(case, GPU, H200, CFG, GPU_COSTS)
    call = 2 * 8192**3 / 989e12 / ROOFLINE_FRACTION
    assert est.call_s == pytest.approx(call)
    single = call + GPU_COSTS.dispatch_s
    reps = math.ceil(CFG.min_time_s / single)
    inputs = case.bytes / 2 * GPU_COSTS.input_element_s
    assert est.method == "host-loop" and est.compiles == 1
    assert est.compile_s == pytest.approx(GPU_COSTS.compile_s["matmul"] + GPU_COSTS.small_compile_s)
    assert est.run_s == pytest.approx(2 * single + sample_count(reps * call, CFG) * reps * call + inputs)
    assert est.total_s == pytest.approx(est.compile_s + est.run_s + est.check_s)


def test_device_loop_compiles_once_more_or_twice():
    """A kernel much longer than the dispatch keeps the probe program; a decode-sized one needs
    a second loop program sized from the probe."""
    mid = estimate_case(matmul_case(4096, 1024, 4096, "bf16"), GPU, H200, CFG, GPU_COSTS)
    tiny = estimate_case(matmul_case(64, 1024, 1024, "bf16"), GPU, H200, CFG, GPU_COSTS)
    assert mid.method == tiny.method == "device-loop"
    assert (mid.compiles, tiny.compiles) == (2, 3)
    assert tiny.compile_s - mid.compile_s == pytest.approx(GPU_COSTS.loop_compile_s)


def test_skipped_cases_cost_nothing():
    est = estimate_case(collective_case("all_reduce", 1024, ranks=1), GPU, H200, CFG, GPU_COSTS)
    assert est.skipped and est.total_s == 0
    cpu = SimpleNamespace(platform="cpu", compute_capability=None)
    assert estimate_case(matmul_case(256, 256, 256, "fp8"), cpu, H200, CFG, GPU_COSTS).skipped


def test_one_attention_reference_compile_per_shape_and_pass():
    """The check's fp32 reference is one program per shape and pass: implementations and masks
    of a shape share it (kernels.attention._reference_fn)."""
    cases = [attention_case(2, 1024, 8, 2, 128, causal, "fwd", impl, "bf16")
             for impl in ("cudnn", "xla") for causal in (True, False)]
    ests = estimate_cases(cases, GPU, H200, CFG, GPU_COSTS)
    compiles = [e.check_s > GPU_COSTS.compile_s["attention/fwd"] for e in ests]
    assert compiles == [True, False, False, False]


def test_a_prior_set_and_the_compilation_cache_replace_the_model():
    cases = [matmul_case(4096, 4096, 4096, "bf16"), matmul_case(1024, 1024, 1024, "bf16")]
    prior = SimpleNamespace(path="prior.json", cases=[SimpleNamespace(name=cases[0].name, timing={"case_wall_s": 7.5})])
    a, b = estimate_cases(cases, GPU, H200, CFG, GPU_COSTS, prior=prior, compiled_before=[cases[1].name])
    assert a.total_s == 7.5 and a.source == "recorded in prior.json"
    fresh = estimate_case(cases[1], GPU, H200, CFG, GPU_COSTS)
    assert fresh.compile_s - b.compile_s == pytest.approx(GPU_COSTS.compile_s["matmul"] - GPU_COSTS.cache_hit_s)


def test_fit_and_parts():
    ests = [SimpleNamespace(total_s=t) for t in (100, 100, 100, 400, 50)]
    assert fit_budget(ests, 250) == 2
    assert fit_budget(ests[3:], 250) == 1  # a case longer than the budget still gets its own part
    assert [len(p) for p in parts(ests, 250)] == [2, 1, 1, 1]
    assert fit_budget([], 10) == 0 and parts([], 10) == []


def test_the_estimate_matches_a_recorded_cpu_run():
    """The default CPU suite as the stored 2-core set measured it: the estimate of the cases
    it holds (whose compile medians CPU_COSTS took from it) is within 40% of their recorded
    wall time in total (it was 79 s against 97 s when written)."""
    rs = load(CPU_SET)
    recorded = {c.name: c.timing["case_wall_s"] for c in rs.cases}
    cases = [c for c in build_suite("default", "cpu", device_count=1) if c.name in recorded]
    assert len(cases) > 50
    cpu = SimpleNamespace(platform="cpu", compute_capability=None)
    ests = estimate_cases(cases, cpu, Ceilings.from_meta(rs.meta["ceilings"]), TimingConfig(**rs.meta["timing_config"]),
                          CPU_COSTS)
    ratio = sum(e.total_s for e in ests) / sum(recorded[c.name] for c in cases)
    assert 0.6 < ratio < 1.4, ratio
