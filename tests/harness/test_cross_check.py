"""The device loop against the host loop (harness.timing._cross_check): both can only add time
to a kernel's own, so a device loop provably slower than the host loop measured work of its own,
and the host loop's samples are kept. On the first H200 run the 1 GiB stream add read 1.06 ms a
repetition through the device loop, slower than one dispatched call of it (0.71 ms)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import harness.timing as timing_mod
from harness.timing import (CROSS_CHECK_MARGIN, TimingConfig, compile_ahead, loop_adds_work,
                            loop_body_copies, while_bodies,
                            repeat_on_device, time_compiled)
from kernels.matmul import matmul_case
from kernels.membw import stream_add


def _spread(center, rel=0.005, n=12):
    return list(center * (1 + rel * np.linspace(-1, 1, n)))


def test_the_decision_needs_a_margin_and_separate_intervals():
    assert loop_adds_work(_spread(2.0), _spread(1.0))
    assert not loop_adds_work(_spread(1.0), _spread(1.0))  # the same
    assert not loop_adds_work(_spread(1.0), _spread(2.0))  # the host loop slower: dispatch-bound
    # provably apart but within the margin: noise between two methods, not a loop's work
    assert not loop_adds_work(_spread(1 + CROSS_CHECK_MARGIN / 2, rel=0.001), _spread(1.0, rel=0.001))
    # 10% slower in the median but the samples overlap widely
    assert not loop_adds_work(_spread(1.1, rel=0.5), _spread(1.0, rel=0.5))


# every case long enough to be checked, and always on the device loop first
_CFG = TimingConfig(min_time_s=0.02, samples=10, max_case_time_s=0.5, host_loop_min_call_s=10.0,
                    cross_check_min_call_s=0.0)


def _stream():
    x = jnp.arange(1 << 18, dtype=jnp.float32)
    return stream_add, (x,), compile_ahead(stream_add, (x,))


def _padded_repeat(fn, reps):
    """A planted fault: a device loop that runs the kernel four times for every repetition it
    counts (as a loop that copies its carried input pays extra work every repetition)."""
    return repeat_on_device(fn, 4 * reps)


def _matmul(n):
    fn, args = matmul_case(n, n, n, "fp32").make(jax.random.key(0))
    return fn, args, compile_ahead(fn, args)


def test_a_loop_that_adds_work_is_caught_and_the_host_loop_kept(monkeypatch):
    monkeypatch.setattr(timing_mod, "repeat_on_device", _padded_repeat)
    # a compute-bound kernel of a few ms: this CPU's host loop then times the kernel, not its
    # dispatch (~0.3 ms) nor the first touch of a fresh output (which a 16 MB add pays)
    fn, args, compiled = _matmul(384)
    t = time_compiled(fn, compiled, args, _CFG)
    check = t.cross_check
    assert check["kept"] == "host-loop", check
    assert check["device_loop_median_s"] > 2 * check["host_loop_median_s"]
    assert t.method == "host-loop" and t.reps_per_sample == check["host_loop_reps_per_sample"]
    assert np.median(t.samples_s) < check["device_loop_median_s"] / 2
    assert "added work" in t.notes[0]
    d = t.to_dict(_CFG)
    assert d["method"] == "host-loop" and d["cross_check"]["kept"] == "host-loop"


def test_the_real_loop_is_cross_checked_and_its_record_is_consistent():
    fn, args, compiled = _stream()
    t = time_compiled(fn, compiled, args, _CFG)
    check = t.cross_check
    assert check["device_loop_median_s"] > 0 and check["host_loop_median_s"] > 0
    assert t.method == check["kept"]
    assert t.to_dict(_CFG)["cross_check"] == check


def test_no_cross_check_below_the_threshold_when_forced_or_for_multi_device_cases():
    fn, args, compiled = _stream()
    high = TimingConfig(min_time_s=0.005, samples=10, max_case_time_s=0.5, host_loop_min_call_s=10.0,
                        cross_check_min_call_s=10.0)
    assert time_compiled(fn, compiled, args, high).cross_check is None
    # lockstep runs force the method so every process takes the same branch
    forced = time_compiled(fn, compiled, args, _CFG, force_method="device-loop")
    assert forced.cross_check is None and forced.method == "device-loop"
    # the runner's multi-device cases: a host loop of collectives queues a hundred at once
    assert time_compiled(fn, compiled, args, _CFG, cross_check=False).cross_check is None


def _loop_copies(backend: str | None = None) -> int:
    x = jax.device_put(jnp.arange(1 << 16, dtype=jnp.float32),
                       jax.devices(backend)[0] if backend else None)
    hlo = jax.jit(repeat_on_device(stream_add, 7)).lower(x).compile().as_text()
    assert while_bodies(hlo), "no while loop in the compiled device loop"
    return loop_body_copies(hlo, x)


def test_the_copy_reader_finds_a_planted_copy_in_a_loop_body():
    """A loop whose body reads the carried array after updating it must copy it (the old value
    stays alive): the reader counts it; the device loop's own body has none."""
    x = jnp.arange(1 << 16, dtype=jnp.float32)

    def copying(v):
        def body(_, c):
            cur, acc = c
            new = jax.lax.dynamic_update_slice(cur, cur[:1] + 1.0, (0,))
            return new, acc + cur[5] + new[1]
        return jax.lax.fori_loop(0, 7, body, (v, 0.0))

    assert loop_body_copies(jax.jit(copying).lower(x).compile().as_text(), x) >= 1
    assert _loop_copies() == 0


def test_a_device_loop_case_records_its_carried_bytes_and_loop_copies():
    fn, args, compiled = _stream()
    t = time_compiled(fn, compiled, args, _CFG, force_method="device-loop")
    record = t.to_dict(_CFG)
    assert record["carried_bytes"] == args[0].nbytes and record["loop_copies"] == 0


def test_the_loop_body_does_not_copy_the_carried_input():
    """One copy of the (undonated) input before the loop is allowed; none inside it, where it
    would be paid every repetition."""
    assert _loop_copies() == 0


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs an NVIDIA GPU; this machine has none")
def test_the_loop_body_does_not_copy_the_carried_input_on_the_gpu():
    """XLA:GPU's copy insertion differs from the CPU's: this is where the H200's copy was."""
    assert _loop_copies("gpu") == 0


def test_a_run_warns_of_a_case_the_cross_check_switched(monkeypatch, tmp_path):
    """Through the runner: the switched case carries both medians and the run's warnings line
    names the kind, so a GPU run that meets the fault says so at the end."""
    from harness.resultset import warning_summary
    from harness.runner import run_suite

    monkeypatch.setattr(timing_mod, "repeat_on_device", _padded_repeat)
    monkeypatch.setattr("harness.runner.ceilings_mod.sweep", lambda *a, **k: {"skipped": "test"})
    # the case on the device loop whatever the machine's load, and always checked
    outcome = run_suite(suite="default", pattern=r"^matmul/fp32/512x512x512$", cfg=_CFG,
                        out_path=tmp_path / "s.json")
    (case,) = outcome.result_set.cases
    assert case.status == "ok" and case.timing["cross_check"]["kept"] == "host-loop"
    assert case.timing["method"] == "host-loop"
    warnings = outcome.result_set.meta["warnings"]
    assert any("the loop added work" in w for w in warnings)
    assert "device loop slower than the host loop" in warning_summary(warnings)
