"""Collective kernels on 8 host CPU devices (tests/conftest.py asks XLA for them): nccl-tests
sizes and factors, outputs against an independent numpy model of each collective, wrong outputs
caught, algbw/busbw stored by the runner, skips, suites, and the 8-device default of `run`."""
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import kernels.collectives as kc
from clusters.collectives import bus_factor as model_bus_factor
from harness.runner import measure_case, run_suite
from harness.suites import build_suite
from harness.timing import TimingConfig

ROOT = Path(__file__).resolve().parents[2]
N = jax.device_count()
needs_8 = pytest.mark.skipif(N != 8, reason=f"needs 8 host devices (tests/conftest.py); JAX sees {N}")
FAST = TimingConfig(min_time_s=0.002, samples=5, min_samples=5, max_case_time_s=0.2, warmup_calls=1)


def test_bus_factors_agree_with_the_collective_model():
    for op in kc.OPS:
        for n in range(2, 17):
            assert kc.bus_factor(op, n) == pytest.approx(model_bus_factor(op, n), rel=1e-15), (op, n)
    assert kc.bus_factor("all_reduce", 8) == 1.75 and kc.bus_factor("all_to_all", 8) == 0.875


def test_sizes_follow_nccl_tests():
    # (per-rank input, per-rank output, chunk, S) in elements / bytes for S = 1 MiB of fp32 on 8 ranks
    mib = 2**20
    assert kc.shapes("all_reduce", mib, 8, "fp32") == (mib // 4, mib // 4, mib // 4, mib)
    assert kc.shapes("all_gather", mib, 8, "fp32") == (mib // 32, mib // 4, mib // 32, mib)
    assert kc.shapes("reduce_scatter", mib, 8, "fp32") == (mib // 4, mib // 32, mib // 32, mib)
    assert kc.shapes("all_to_all", mib, 8, "fp32") == (mib // 4, mib // 4, mib // 32, mib)
    assert kc.shapes("send", mib, 8, "fp32") == (mib // 4, mib // 4, mib // 4, mib)
    # a size the ranks do not divide is rounded down to whole elements per chunk, and recorded so
    assert kc.shapes("all_gather", 1000, 6, "fp32")[3] == 6 * 41 * 4
    assert kc.sweep_sizes(2**10, 2**24, 4) == [2**10 * 4**i for i in range(8)]


def _numpy_collective(op: str, x: np.ndarray) -> np.ndarray:
    """Rank d's output from the (n, per-rank) input, written from the collectives' definitions."""
    n = x.shape[0]
    if op == "all_reduce":
        return np.tile(x.sum(axis=0), (n, 1))
    if op == "all_gather":
        return np.tile(x.reshape(-1), (n, 1))
    if op == "reduce_scatter":
        return x.sum(axis=0).reshape(n, -1)
    if op == "all_to_all":
        chunks = x.reshape(n, n, -1)  # [sender, destination, element]
        return np.stack([chunks[:, d, :].reshape(-1) for d in range(n)])
    if op == "send":
        return np.roll(x, 1, axis=0)  # rank d receives rank d-1's buffer
    raise AssertionError(op)


@needs_8
@pytest.mark.parametrize("op", kc.OPS)
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_output_matches_numpy_model_and_closed_form(op, dtype):
    case = kc.collective_case(op, 4096, dtype)
    fn, (x,) = case.make(None)
    out = jax.jit(fn)(x)
    xs = np.asarray(x.astype(np.float32), dtype=np.float64).reshape(N, -1)
    # inputs differ on every rank, so a wrong chunk order or a missing rank shows
    assert len({row.tobytes() for row in xs}) == N
    want = _numpy_collective(op, xs)
    got = np.asarray(out.astype(np.float32), dtype=np.float64).reshape(N, -1)
    reduces = op in ("all_reduce", "reduce_scatter")
    if dtype == "bf16" and reduces:  # sums above 256 round to bf16's 8 significant bits
        np.testing.assert_allclose(got, want, rtol=2**-7)
    else:  # moved data and fp32 sums of small integers are exact
        np.testing.assert_array_equal(got, want)
    err, tol, metric = case.check((x,), out)
    assert err <= (2**-7 if dtype == "bf16" and reduces else 0.0)
    assert tol == kc.TOLERANCE[dtype] and "closed-form" in metric
    assert case.bytes == case.params["size_bytes"] == 4096 and case.params["ranks"] == N


@needs_8
@pytest.mark.parametrize("read_whole", [True, False])
@pytest.mark.parametrize("op", kc.OPS)
def test_wrong_output_is_caught(op, read_whole, monkeypatch):
    if not read_whole:  # the path large outputs take: sampled on the devices first
        monkeypatch.setattr(kc, "READ_WHOLE_SHARD_BYTES", 0)
    case = kc.collective_case(op, 1 << 16)
    fn, args = case.make(None)
    out = jax.jit(fn)(*args)
    assert case.check(args, out)[0] == 0.0
    last_rank_first = out.shape[0] - out.shape[0] // N
    err, tol, _ = case.check(args, out.at[last_rank_first].add(1000.0))
    assert err > tol


@needs_8
def test_host_and_device_built_inputs_agree(monkeypatch):
    host = np.asarray(kc.make_input(N, 1000, "fp32"))
    monkeypatch.setattr(kc, "HOST_FILL_MAX_ELEMENTS", 0)
    device = np.asarray(kc.make_input(N, 1000, "fp32"))
    np.testing.assert_array_equal(host, device)
    j = np.arange(1000)
    np.testing.assert_array_equal(host[3000:4000], (j + 5 * 3) % 61 + 1)  # rank 3's shard


@needs_8
def test_fewer_ranks_than_devices():
    case = kc.collective_case("all_reduce", 4096, ranks=4)
    assert case.params["ranks"] == 4 and case.skip(jax.devices()[0]) is None
    fn, args = case.make(None)
    out = jax.jit(fn)(*args)
    assert case.check(args, out)[0] == 0.0


def test_one_rank_is_skipped_with_a_reason():
    case = kc.collective_case("all_reduce", 4096, ranks=1)
    reason = case.skip(jax.devices()[0])
    assert "at least 2 devices" in reason and "JAX_NUM_CPU_DEVICES" in reason
    result = measure_case(case, jax.devices()[0], 0, FAST)
    assert result.status == "skipped" and result.reason == reason


@needs_8
def test_runner_stores_algbw_and_busbw():
    case = kc.collective_case("all_gather", 1 << 16)
    r = measure_case(case, jax.devices()[0], 0, FAST)
    assert r.status == "ok", r.reason
    algbw = r.extra["algbw_bytes_per_s"]
    assert algbw == pytest.approx(r.bytes / r.median_s, rel=1e-12)
    assert algbw == pytest.approx(r.achieved_bytes_per_s, rel=1e-12)
    assert r.extra["busbw_bytes_per_s"] == pytest.approx(algbw * 7 / 8, rel=1e-12)
    assert r.check["error"] == 0.0


@needs_8
def test_no_memory_roofline_for_collectives(tmp_path):
    """Their bytes are message sizes, so fraction-of-peak against HBM/DRAM bandwidth is left out."""
    (r,) = run_suite(cases=[kc.collective_case("send", 4096)], cfg=FAST, out_path=tmp_path / "s.json").result_set.cases
    assert r.status == "ok" and r.fraction_of_peak is None and r.roofline_fraction is None


@needs_8
def test_suites_hold_the_sweeps():
    quick = [c for c in build_suite("quick", "cpu") if c.group == "collective"]
    assert [(c.params["op"], c.params["size_bytes"]) for c in quick] == [
        (op, s) for op in ("all_reduce", "all_gather") for s in (2**10, 2**14, 2**18)]
    default = [c for c in build_suite("default", "cpu") if c.group == "collective"]
    assert len(default) == 40 and {c.params["op"] for c in default} == set(kc.OPS)
    assert {c.params["size_bytes"] for c in default} == {2**10 * 4**i for i in range(8)}
    assert all(c.params["ranks"] == 8 and c.multi_device for c in default)
    gpu = [c for c in build_suite("default", "gpu") if c.group == "collective"]
    assert max(c.params["size_bytes"] for c in gpu) == 2**30


@needs_8
@pytest.mark.slow
def test_default_cpu_sweep_completes(tmp_path):
    """The default suite's 40 collective cases, with its CPU timing budget: all ok and checked.
    (How long it takes is the machine's business, not a test's: a loaded machine extends noisy
    cases, harness.timing.extend_noisy.)"""
    outcome = run_suite(suite="default", pattern="^collective/", out_path=tmp_path / "c.json")
    cases = outcome.result_set.cases
    assert len(cases) == 40 and all(c.status == "ok" for c in cases), [c.reason for c in cases if c.status != "ok"]
    assert all(c.check["error"] == 0.0 and c.extra["busbw_bytes_per_s"] > 0 for c in cases)


def _devices_seen(env_extra: dict) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env.update(env_extra)
    code = ("import os; from harness.device import default_cpu_devices; default_cpu_devices(os.environ); "
            "import jax; print(jax.device_count())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


def test_run_asks_for_8_host_devices():
    """In a fresh process (XLA reads the flag once): what `rackbench run` does before JAX starts."""
    assert _devices_seen({"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}) == 8


def test_default_cpu_devices_appends_to_xla_flags():
    from harness.device import default_cpu_devices

    env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    assert default_cpu_devices(env) is True
    assert env["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=8"
    assert default_cpu_devices(env) is False  # already there: unchanged
    env = {"JAX_NUM_CPU_DEVICES": "4"}
    assert default_cpu_devices(env) is False and "XLA_FLAGS" not in env
