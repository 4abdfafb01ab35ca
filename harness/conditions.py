"""The conditions a run was measured under, pyperf-style: load, CPU frequency and governor, the
share of the CPUs other processes took while each case ran, and on NVIDIA GPUs the clocks,
power limit, temperature and throttle reasons (NVML through nvidia-ml-py).

Everything here only reads (/proc, /sys, NVML) and every reader returns None or leaves a key
out where the machine does not expose it: conditions are evidence for judging a result, never a
reason for a run to fail.
"""
from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path

# A machine is busy when other processes keep more than this share of its CPUs: the kernels
# then compete for cores (on a CPU run) or for the host thread that feeds the GPU.
BUSY_OTHER_CPU_FRACTION = 0.25
# Load average per CPU above which the machine is called busy before a run starts.
BUSY_LOAD_PER_CPU = 0.5

_PROC_STAT = Path("/proc/stat")
_CPU_SYS = Path("/sys/devices/system/cpu")

# NVML clock-event (throttle) reason bits, named as nvidia-smi names them.
_THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# The reasons that hold the clock below boost for power or heat: a run that shows one is timed
# at the sustained clock (harness.studies.calibrate.held_at_limit)
CLOCK_LIMIT_REASONS = ("sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
                       "hw_power_brake_slowdown")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_frequency() -> dict:
    """Governors and current frequencies (MHz) of the CPUs, from cpufreq or /proc/cpuinfo."""
    out: dict = {}
    governors, freqs = set(), []
    for d in sorted(_CPU_SYS.glob("cpu[0-9]*/cpufreq")):
        g = _read(d / "scaling_governor")
        if g:
            governors.add(g.strip())
        f = _read(d / "scaling_cur_freq")
        if f and f.strip().isdigit():
            freqs.append(int(f) / 1000.0)
    if not freqs:
        text = _read(Path("/proc/cpuinfo")) or ""
        for line in text.splitlines():
            if line.startswith("cpu MHz"):
                try:
                    freqs.append(float(line.split(":", 1)[1]))
                except ValueError:
                    pass
    if governors:
        out["governor"] = ",".join(sorted(governors))
    if freqs:
        out["freq_mhz_min"] = min(freqs)
        out["freq_mhz_median"] = statistics.median(freqs)
        out["freq_mhz_max"] = max(freqs)
    return out


def memory_available_bytes() -> int | None:
    text = _read(Path("/proc/meminfo")) or ""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            try:
                return int(line.split()[1]) * 1024
            except (ValueError, IndexError):
                return None
    return None


def _pynvml():
    try:
        import pynvml  # nvidia-ml-py; absent or without a driver: no GPU conditions
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None
    return pynvml


def throttle_reason_names(mask: int) -> list[str]:
    return [name for bit, name in _THROTTLE_REASONS.items() if mask & bit] + (
        [f"other(0x{mask & ~sum(_THROTTLE_REASONS):x})"] if mask & ~sum(_THROTTLE_REASONS) else [])


def gpus(nvml=None) -> list[dict] | None:
    """Per NVIDIA GPU: name, driver, SM and memory clocks (current and max), power draw and
    limit, temperature and the active throttle reasons. None without NVML."""
    nvml = nvml or _pynvml()
    if nvml is None:
        return None
    out = []
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        count = nvml.nvmlDeviceGetCount()
    except Exception:  # noqa: BLE001
        return None
    for i in range(count):
        g: dict = {"index": i, "driver": _text(driver)}
        try:
            h = nvml.nvmlDeviceGetHandleByIndex(i)
        except Exception:  # noqa: BLE001
            continue
        for key, call in (
            ("name", lambda: _text(nvml.nvmlDeviceGetName(h))),
            ("sm_clock_mhz", lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)),
            ("sm_clock_max_mhz", lambda: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM)),
            ("mem_clock_mhz", lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)),
            ("mem_clock_max_mhz", lambda: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_MEM)),
            ("power_w", lambda: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
            ("power_limit_w", lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
            ("temperature_c", lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
            ("throttle_reasons", lambda: throttle_reason_names(int(_throttle_mask(nvml, h)))),
        ):
            try:
                g[key] = call()
            except Exception:  # noqa: BLE001 - a field the driver or GPU does not support
                pass
        out.append(g)
    return out


def _throttle_mask(nvml, handle) -> int:
    fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
        nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    return fn(handle)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def other_cpu_now(window_s: float = 0.3) -> float | None:
    """The share of all CPUs other processes use right now, over a short idle window of ours.
    Unlike the load average, which lags by a minute, it does not count a run that just ended
    (make bench before nightly) against the next one."""
    import time

    before = cpu_times()
    time.sleep(window_s)
    return other_cpu_fraction(before, cpu_times())


def snapshot(nvml=None, window_s: float = 0.3) -> dict:
    """The machine's state now: what a result set stores before and after the run."""
    snap: dict = {"loadavg": loadavg(), "cpu_count": os.cpu_count(),
                  "memory_available_bytes": memory_available_bytes(),
                  "other_cpu_fraction": other_cpu_now(window_s) if window_s > 0 else None}
    snap.update(cpu_frequency())
    g = gpus(nvml)
    if g is not None:
        snap["gpus"] = g
    return {k: v for k, v in snap.items() if v is not None}


# ---------------------------------------------------------------------------- per case


@dataclass(frozen=True)
class CpuTimes:
    busy_s: float | None  # every CPU's busy time since boot (None: /proc/stat unreadable)
    total_s: float | None
    own_s: float  # this process's CPU time, all threads


def cpu_times() -> CpuTimes:
    t = os.times()
    own = t.user + t.system
    text = _read(_PROC_STAT)
    if not text or not text.startswith("cpu "):
        return CpuTimes(None, None, own)
    try:
        fields = [int(x) for x in text.split("\n", 1)[0].split()[1:]]
    except ValueError:
        return CpuTimes(None, None, own)
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return CpuTimes((total - idle) / tick, total / tick, own)


def other_cpu_fraction(before: CpuTimes, after: CpuTimes) -> float | None:
    """The share of all CPUs' time that other processes used between two readings (0..1)."""
    if before.busy_s is None or after.busy_s is None:
        return None
    total = after.total_s - before.total_s
    if total <= 0:
        return None
    other = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return round(min(1.0, max(0.0, other / total)), 3)


def case_conditions(before: CpuTimes, after: CpuTimes) -> dict:
    """What a case records about the machine while it ran."""
    out: dict = {}
    frac = other_cpu_fraction(before, after)
    if frac is not None:
        out["other_cpu_fraction"] = frac
    la = loadavg()
    if la is not None:
        out["loadavg_1m"] = la[0]
    return out


def busy_before(snap: dict) -> str | None:
    """A warning when the machine is already busy before the run, or None: from the CPU share
    other processes use right now where /proc/stat tells it, else from the load average."""
    n = snap.get("cpu_count") or 1
    other = snap.get("other_cpu_fraction")
    if other is not None:
        if other > BUSY_OTHER_CPU_FRACTION:
            return (f"busy machine: other processes used {other:.0%} of the {n} CPUs just before the run "
                    "(they compete with the kernels; timings may be slower and noisier)")
        return None
    la = snap.get("loadavg")
    if la and la[0] > BUSY_LOAD_PER_CPU * n:
        return (f"busy machine: load average {la[0]:g} on {n} CPUs before the run "
                "(other processes compete with the kernels; timings may be slower and noisier)")
    return None


def throttled(snap: dict) -> list[str]:
    """Warnings for GPUs that were throttling for a reason other than being idle."""
    out = []
    for g in snap.get("gpus") or []:
        reasons = [r for r in g.get("throttle_reasons") or [] if r not in ("gpu_idle", "applications_clocks_setting")]
        if reasons:
            out.append(f"GPU {g.get('index')} throttled: {', '.join(reasons)}")
    return out
