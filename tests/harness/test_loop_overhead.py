"""The device loop's own cost, measured once per run with an empty-work loop, recorded, and
used to flag cases it would dominate (decode-sized GEMMs on a GPU: 1-10 us against a loop of a
few us). Assertions here are on recorded structure and on the flag's arithmetic; the ratio of
a tiny kernel's time to the overhead is a wall-clock figure, checked in tests/bench."""
from __future__ import annotations

from harness.runner import run_suite
from harness.timing import LOOP_OVERHEAD_FLAG_RATIO, TimingConfig, device_loop_overhead, loop_overhead_note
from kernels.matmul import matmul_case
from kernels.membw import stream_case

# host_loop_min_call_s of a second: every case here is device-looped, however loaded the machine
CFG = TimingConfig(min_time_s=0.002, samples=5, min_samples=5, max_case_time_s=0.1, host_loop_min_call_s=1.0,
                   ceiling_calls=1, ceiling_buffer_bytes=2**20)


def test_flag_arithmetic():
    assert loop_overhead_note(4.9e-6, 1e-6) is not None  # under 5x: flagged
    assert loop_overhead_note(5.0e-6, 1e-6) is None
    assert loop_overhead_note(1e-6, None) is None  # not measured: nothing to say
    note = loop_overhead_note(3e-6, 2e-6)
    assert "1.5x" in note and "2.00 us" in note and "upper bound" in note
    assert LOOP_OVERHEAD_FLAG_RATIO == 5.0


def test_overhead_is_measured_with_the_device_loop():
    got = device_loop_overhead(CFG)
    assert got["per_rep_s"] > 0 and got["reps_per_sample"] >= 2
    assert len(got["samples_s"]) >= CFG.min_samples and got["per_rep_s"] in got["samples_s"]


def test_a_run_records_the_overhead_beside_every_device_loop_case(tmp_path):
    cases = [stream_case(16), matmul_case(64, 64, 64, "fp32")]
    rs = run_suite(suite="quick", cases=cases, cfg=CFG, out_path=tmp_path / "s.json").result_set
    overhead = rs.meta["device_loop_overhead"]["per_rep_s"]
    loop_cases = [c for c in rs.cases if c.timing.get("method") == "device-loop"]
    assert len(loop_cases) == 2
    for c in loop_cases:
        assert c.timing["loop_overhead_s"] == overhead
        flagged = any(n.startswith("near the device loop") for n in c.timing["notes"])
        assert flagged == (c.median_s < LOOP_OVERHEAD_FLAG_RATIO * overhead)
        assert flagged == any(w.startswith(f"{c.name}: near the device loop") for w in rs.meta["warnings"])
