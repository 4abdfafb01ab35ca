"""The memory ceiling of a device the catalog does not know (every CPU): a STREAM-style add over
buffers several times the last-level cache, timed in sweeps repeated during the run, the best
kept, each sweep recorded with the load it ran under.

Why this way: a buffer that fits the last-level cache measures the cache, not memory, and the
cases whose traffic goes to memory then beat their "ceiling" (DeepSeek-V3's expert GEMMs read
2-3x a 16 MiB stream on this repository's VM); a busy neighbour halves one sweep and not the
next (3.3 GB/s under load, 36.9 GB/s four minutes later), so one sweep is not a ceiling. The
best of a sweep before the cases and one after them is.

The last-level cache comes from Linux's sysfs (/sys/devices/system/cpu/cpu0/cache/index*/:
the highest level holding data), else glibc's sysconf (SC_LEVEL3_CACHE_SIZE, then L2). On a
GPU no portable query exists; the buffer is GPU_BUFFER_BYTES, 4x the largest GPU last-level
cache shipping (AMD MI300X's 256 MiB Infinity Cache; an H100 has 50 MiB of L2).
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

from harness import conditions

# The buffer (each of input and output) is at least this many times the last-level cache.
LLC_MULTIPLE = 4
# No buffer below this: a machine that reports a tiny or no cache still streams from memory.
MIN_BUFFER_BYTES = 256 * 2**20
GPU_BUFFER_BYTES = 2**30
# Input, output and XLA's slack must fit this share of the available memory, or the buffer shrinks.
MAX_MEMORY_SHARE = 0.25
DEFAULT_CALLS = 5
DTYPE = "fp32"
_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
METHOD = (f"y = x + 1 in place over a float32 buffer of at least {LLC_MULTIPLE}x the last-level cache "
          "(read + write bytes / time), one call at a time; the best call of every sweep, the best sweep kept")


def _size_bytes(text: str) -> int | None:
    """sysfs cache sizes: '307200K', '2048K', '32M', '512'."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in "KMG" else text
    return int(digits) * scale if digits.isdigit() else None


def last_level_cache(cache_dir: Path = _CACHE_DIR) -> tuple[int | None, str]:
    """(bytes of the largest-level data cache, where the figure came from); (None, why) when
    neither sysfs nor sysconf says."""
    best: tuple[int, int] | None = None
    for index in sorted(cache_dir.glob("index*")) if cache_dir.is_dir() else []:
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = _size_bytes((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and size and (best is None or level > best[0]):
            best = (level, size)
    if best is not None:
        return best[1], f"sysfs: level {best[0]} cache of cpu0 ({cache_dir})"
    for name in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
        try:
            size = os.sysconf(name)
        except (ValueError, OSError, AttributeError):
            continue
        if size and size > 0:
            return int(size), f"sysconf {name}"
    return None, "unknown: neither sysfs nor sysconf reports a cache size"


def buffer_bytes(platform: str, llc_bytes: int | None, available_bytes: int | None) -> tuple[int, str]:
    """The size of each buffer of a sweep, and a note when it could not be what it should."""
    if platform == "cpu":
        want = max(MIN_BUFFER_BYTES, LLC_MULTIPLE * (llc_bytes or 0))
    else:
        want = GPU_BUFFER_BYTES
    note = ""
    if available_bytes:
        cap = int(MAX_MEMORY_SHARE * available_bytes / 2)
        if cap < want:
            note = f"buffer reduced from {want / 2**20:.0f} MiB to {cap / 2**20:.0f} MiB to fit the available memory"
            want = cap
    want -= want % 4096
    return want, note


def sweep(device, n_bytes: int, calls: int, when: str) -> dict:
    """One sweep: `calls` timed calls of y = x + 1 on `device` over a buffer of `n_bytes`,
    updated in place (the input is donated: a fresh output per call would time the kernel's
    page faults on a CPU, 1.5 GB/s where the in-place add streams 19 GB/s); the record holds
    every call's time, the best and median rate, and the load meanwhile."""
    import jax

    from kernels.membw import ramp, stream_add, stream_bytes

    n = max(1, n_bytes // 4)
    started_utc = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    cpu0 = conditions.cpu_times()
    with jax.default_device(device):
        x = ramp(n, DTYPE)
        stride = max(1, n // 4096)
        before = x[::stride]
        add = jax.jit(stream_add, donate_argnums=0).lower(x).compile()
        x = add(x)  # warm-up, and the output checked once
        if not bool(jax.numpy.all(x[::stride] == before + 1)):
            raise RuntimeError("memory ceiling sweep: y = x + 1 gave a wrong result")
        times = []
        for _ in range(max(1, calls)):
            t0 = time.perf_counter()
            x = add(x)
            jax.block_until_ready(x)
            times.append(time.perf_counter() - t0)
        del x, before
    moved = stream_bytes(n, DTYPE)
    rates = sorted(moved / t for t in times)
    return {"when": when, "started_utc": started_utc, "buffer_bytes": n * 4, "calls": len(times),
            "samples_s": times, "best_bytes_per_s": rates[-1], "median_bytes_per_s": rates[len(rates) // 2],
            **conditions.case_conditions(cpu0, conditions.cpu_times())}


def memory_section(platform: str, cfg) -> dict:
    """The `memory` part of a set's measured ceilings before any sweep: method, cache, buffer."""
    llc, llc_source = last_level_cache() if platform == "cpu" else (None, "not queried on a GPU")
    if cfg.ceiling_buffer_bytes:
        size, note = int(cfg.ceiling_buffer_bytes), "buffer size set by the timing configuration"
    else:
        size, note = buffer_bytes(platform, llc, conditions.memory_available_bytes())
    if llc and size < LLC_MULTIPLE * llc:
        note = (note + "; " if note else "") + (f"the buffer is {size / llc:.2g}x the last-level cache, under "
                                                f"{LLC_MULTIPLE}x: the ceiling may be a cache bandwidth")
    return {"method": METHOD, "llc_bytes": llc, "llc_source": llc_source, "buffer_bytes": size,
            "note": note or None, "sweeps": []}


def best_bandwidth(memory: dict) -> float | None:
    rates = [s.get("best_bytes_per_s") for s in memory.get("sweeps") or []]
    rates = [r for r in rates if isinstance(r, (int, float)) and r > 0]
    return max(rates) if rates else None


MEASURED_SOURCE = ("measured in this run: best matmul rate per dtype; memory: the best sweep of y = x + 1 over "
                   "buffers several times the last-level cache")
# On a device the catalog does not know, the compute ceiling is the run's own best matmul: a
# fraction of it would be 100% for that case by construction, so none is given.
COMPUTE_FROM_RUN = "the run's own best matmul per dtype (no catalog peak): fractions of it are not given"


def measured_ceilings(cases, memory: dict | None = None) -> dict:
    """Ceilings of a device the catalog does not know: the best matmul rate per dtype seen in
    this run (each with the case it came from and the share of the CPUs other processes took
    meanwhile), and the memory bandwidth of the ceiling sweeps in `memory` (memory_section,
    its `sweeps` filled), not of the suite's stream cases, whose buffers may fit a cache."""
    flops: dict[str, float] = {}
    origin: dict[str, dict] = {}
    for c in cases:
        if c.status != "ok":
            continue
        if c.group in ("matmul", "matmul_model") and c.achieved_flops_per_s:
            d = c.params["dtype"]
            if c.achieved_flops_per_s > flops.get(d, 0.0):
                flops[d] = c.achieved_flops_per_s
                origin[d] = {"case": c.name, **c.conditions}
    out = {
        "peak_flops_per_s": flops,
        "peak_bw_bytes_per_s": best_bandwidth(memory) if memory else None,
        "source": MEASURED_SOURCE,
        "compute": COMPUTE_FROM_RUN,
        "measured_by": origin,
    }
    if memory is not None:
        out["memory"] = memory
    return out


def compute_from_run(ceilings: dict) -> bool:
    """Whether the compute ceiling is the run's own best matmul (sets of every version: older
    ones say so only in their source)."""
    return ceilings.get("compute") == COMPUTE_FROM_RUN or str(ceilings.get("source") or "").startswith("measured")


def case_fractions(c, peak: float | None, bw: float | None, from_run: bool, llc_bytes=None):
    """(fraction of peak, roofline fraction, above) of one ok case under these ceilings. A
    fraction above 1 is impossible: it means the ceiling is wrong for the case (a memory ceiling
    measured in a cache, a catalog figure too low, a miscounted FLOP or byte); it is then None
    and `above` says which ceiling and by how much ({} otherwise). A compute ceiling from the
    run's own best matmul gives no fraction of peak and no compute-bound roofline fraction
    (100% by construction for the best case, relative to it for the rest)."""
    dtype = c.extra.get("peak_dtype")
    of_peak = roofline = peak_kind = roof_kind = None
    if peak and not from_run and c.achieved_flops_per_s is not None:
        of_peak, peak_kind = c.achieved_flops_per_s / peak, "compute"
    elif bw and dtype is None and c.achieved_bytes_per_s is not None:
        of_peak, peak_kind = c.achieved_bytes_per_s / bw, "memory"
    compute_s = (c.flops / peak) if peak and c.flops else 0.0
    memory_s = (c.bytes / bw) if bw and c.bytes else 0.0
    if memory_s > 0 and memory_s >= compute_s:
        roofline, roof_kind = memory_s / c.median_s, "memory"
    elif compute_s > 0 and not from_run:
        roofline, roof_kind = compute_s / c.median_s, "compute"
    above: dict = {}
    if of_peak is not None and of_peak > 1.0:
        above["fraction_of_peak"], of_peak = of_peak, None
    if roofline is not None and roofline > 1.0:
        above["roofline_fraction"], roofline = roofline, None
    if above:
        kind = roof_kind if "roofline_fraction" in above else peak_kind
        worst = max(above.values())
        text = f"{worst:.2f}x the {kind} ceiling: above 1 is impossible, so the ceiling is wrong for this case"
        if kind == "memory" and llc_bytes and c.bytes and c.bytes <= llc_bytes:
            text += (f" (its {c.bytes / 2**20:.3g} MiB of traffic fits the {llc_bytes / 2**20:.0f} MiB last-level "
                     "cache; the ceiling is memory's)")
        above.update(ceiling=kind, note=text)
    return of_peak, roofline, above


def apply_ceilings(rs, ceilings: dict) -> None:
    """Fill peak, fraction of peak and roofline fraction of every ok case (case_fractions); a
    case above a ceiling keeps the figure in `extra.above_ceiling` instead, and the set's
    `ceilings.exceeded` lists those cases."""
    peaks = ceilings.get("peak_flops_per_s") or {}
    bw = ceilings.get("peak_bw_bytes_per_s")
    from_run = compute_from_run(ceilings)
    llc = (ceilings.get("memory") or {}).get("llc_bytes")
    exceeded = []
    for c in rs.cases:
        if c.status != "ok" or not c.median_s:
            continue
        c.extra.pop("above_ceiling", None)
        if c.group == "collective":  # bytes are nccl-tests message sizes, not memory traffic
            continue
        dtype = c.extra.get("peak_dtype")
        c.peak_flops_per_s = peaks.get(dtype) if dtype else None
        c.peak_bw_bytes_per_s = bw
        c.fraction_of_peak, c.roofline_fraction, above = case_fractions(c, c.peak_flops_per_s, bw, from_run, llc)
        if above:
            c.extra["above_ceiling"] = above
            exceeded.append({"case": c.name, "ceiling": above["ceiling"],
                             "fraction": max(v for k, v in above.items() if k.endswith("fraction"))})
    ceilings["exceeded"] = exceeded
