"""Conditions (harness.conditions), machine identity (harness.device) and the warnings line."""
from __future__ import annotations

import os
import types

import pytest

from harness import conditions, device
from harness.resultset import warning_summary


def test_snapshot_reads_load_and_cpus_here():
    snap = conditions.snapshot(nvml=None, window_s=0.05)
    assert len(snap["loadavg"]) == 3 and snap["cpu_count"] == os.cpu_count()
    assert snap.get("other_cpu_fraction") is None or 0.0 <= snap["other_cpu_fraction"] <= 1.0
    if os.path.exists("/proc/cpuinfo"):
        assert snap.get("freq_mhz_median", 1) > 0


def test_other_processes_cpu_share_is_busy_minus_ours():
    before = conditions.CpuTimes(busy_s=100.0, total_s=1000.0, own_s=10.0)
    # 20 s of wall on 2 CPUs = 40 CPU-seconds; 30 busy of which 12 were ours: others took 18/40
    after = conditions.CpuTimes(busy_s=130.0, total_s=1040.0, own_s=22.0)
    assert conditions.other_cpu_fraction(before, after) == pytest.approx(0.45)
    assert conditions.other_cpu_fraction(before, conditions.CpuTimes(None, None, 0.0)) is None
    real = conditions.cpu_times()
    assert real.own_s >= 0 and (real.busy_s is None or real.total_s >= real.busy_s)


def test_throttle_reasons_are_named():
    assert conditions.throttle_reason_names(0x1 | 0x4 | 0x40) == ["gpu_idle", "sw_power_cap", "hw_thermal_slowdown"]
    assert conditions.throttle_reason_names(0x10000) == ["other(0x10000)"]


def _fake_nvml(mask=0x4):
    """What nvidia-ml-py answers on one H200, as a stand-in (no GPU here)."""
    return types.SimpleNamespace(
        NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0,
        nvmlSystemGetDriverVersion=lambda: "580.159.04", nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: "h0", nvmlDeviceGetName=lambda h: b"NVIDIA H200",
        nvmlDeviceGetClockInfo=lambda h, c: {1: 1755, 2: 3201}[c],
        nvmlDeviceGetMaxClockInfo=lambda h, c: {1: 1980, 2: 3201}[c],
        nvmlDeviceGetPowerUsage=lambda h: 612_000, nvmlDeviceGetEnforcedPowerLimit=lambda h: 700_000,
        nvmlDeviceGetTemperature=lambda h, t: 71,
        nvmlDeviceGetCurrentClocksEventReasons=lambda h: mask,
    )


def test_gpu_conditions_through_nvml():
    (g,) = conditions.gpus(_fake_nvml())
    assert g == {"index": 0, "driver": "580.159.04", "name": "NVIDIA H200", "sm_clock_mhz": 1755,
                 "sm_clock_max_mhz": 1980, "mem_clock_mhz": 3201, "mem_clock_max_mhz": 3201, "power_w": 612.0,
                 "power_limit_w": 700.0, "temperature_c": 71, "throttle_reasons": ["sw_power_cap"]}
    snap = conditions.snapshot(nvml=_fake_nvml(), window_s=0)
    assert conditions.throttled(snap) == ["GPU 0 throttled: sw_power_cap"]
    assert conditions.throttled(conditions.snapshot(nvml=_fake_nvml(mask=0x1), window_s=0)) == []  # idle: no warning


def test_a_missing_nvml_field_is_left_out():
    nvml = _fake_nvml()
    nvml.nvmlDeviceGetPowerUsage = lambda h: (_ for _ in ()).throw(RuntimeError("NVML_ERROR_NOT_SUPPORTED"))
    (g,) = conditions.gpus(nvml)
    assert "power_w" not in g and g["power_limit_w"] == 700.0


def test_busy_machine_before_the_run_warns():
    # what other processes take right now decides; the lagging load average only without it
    assert conditions.busy_before({"other_cpu_fraction": 0.6, "loadavg": [0.1] * 3, "cpu_count": 2}) == (
        "busy machine: other processes used 60% of the 2 CPUs just before the run "
        "(they compete with the kernels; timings may be slower and noisier)")
    assert conditions.busy_before({"other_cpu_fraction": 0.05, "loadavg": [3.0] * 3, "cpu_count": 2}) is None
    assert conditions.busy_before({"loadavg": [3.0, 2.0, 1.0], "cpu_count": 2}).startswith("busy machine: load")
    assert conditions.busy_before({"loadavg": [0.2, 0.2, 0.2], "cpu_count": 2}) is None


def test_warnings_summarised_in_one_line():
    warnings = [f"case{i}: large spread: IQR is 20% of the median" for i in range(75)]
    warnings += ["busy machine: load average 3 on 2 CPUs before the run", "GPU 0 throttled: hw_slowdown"]
    line = warning_summary(warnings, "x.json")
    assert line == "warnings: 75 large spread, 1 busy machine, 1 GPU throttled (details: rackbench show x.json)"
    assert warning_summary([]) == ""


HOST = {"hostname": "vm", "cpu": "AMD EPYC 9554", "cpu_count": 2, "memory_bytes": 24 * 2**30, "release": "6.18.44"}
DEV = {"platform": "cpu", "kind": "cpu", "count": 8}


@pytest.mark.parametrize("change", [
    {"host": {"cpu": "Intel Xeon 8480"}}, {"host": {"cpu_count": 16}}, {"host": {"memory_bytes": 64 * 2**30}},
    {"host": {"release": "6.19.0"}}, {"host": {"hostname": "other"}}, {"device": {"count": 1}},
    {"device": {"platform": "gpu", "kind": "NVIDIA H200"}}, {"software": {"nvidia_driver": "580.1"}},
])
def test_the_fingerprint_tells_machines_apart(change):
    fp, fp_id = device.fingerprint(HOST, DEV, {})
    fp2, fp2_id = device.fingerprint({**HOST, **change.get("host", {})}, {**DEV, **change.get("device", {})},
                                     change.get("software", {}))
    assert fp_id != fp2_id
    assert device.machine_id({**HOST, **change.get("host", {})}, {**DEV, **change.get("device", {})}, fp2_id) != \
        device.machine_id(HOST, DEV, fp_id)


def test_the_fingerprint_ignores_megabytes_of_memory_and_the_machine_id_is_readable():
    _, a = device.fingerprint(HOST, DEV, {})
    _, b = device.fingerprint({**HOST, "memory_bytes": 24 * 2**30 - 50 * 2**20}, DEV, {})
    assert a == b
    assert device.machine_id(HOST, DEV, a) == f"vm-cpu-cpu-x8-{a[:6]}"


def test_devices_names_the_directory_run_uses(cli, capsys):
    assert cli(["devices"]) == 0
    out = capsys.readouterr().out
    name = out.strip().splitlines()[-1].split(": ", 1)[1]
    assert name == device.environment()["machine_id"] and "-x8-" in name


def test_nightly_asks_for_runs_cpu_device_count_before_measuring(monkeypatch, tmp_path):
    from harness import nightly
    from harness.runner import RunOutcome

    seen = {}
    env = {}
    monkeypatch.setattr(os, "environ", env)

    def fake_run_suite(**kw):
        seen["flags"] = env.get("XLA_FLAGS")
        return RunOutcome(None, tmp_path / "set.json", False)

    monkeypatch.setattr("harness.runner.run_suite", fake_run_suite)
    monkeypatch.setattr("harness.device.cpu_device_warning", lambda asked, count=8: None)
    nightly._run_suite("quick", tmp_path)
    assert seen["flags"] == f"--xla_force_host_platform_device_count={device.CPU_DEVICES}"
