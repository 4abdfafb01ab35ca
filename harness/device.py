"""What this run is on: device, host, software and git state, and the device's ceilings.

Ceilings (peak FLOP/s per dtype, memory bandwidth) come from the catalog when the device is a
known chip; otherwise (any CPU) they are measured in the run and the result set says so.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

# Host devices a CPU run gets, so the collective sweep has ranks to talk between.
CPU_DEVICES = 8
_COUNT_FLAG = "--xla_force_host_platform_device_count"


def default_cpu_devices(environ, count: int = CPU_DEVICES) -> bool:
    """Ask XLA for `count` host devices unless the user chose a number (XLA_FLAGS or
    JAX_NUM_CPU_DEVICES). Read when JAX creates its CPU client, so call this before anything
    touches a device. Goes into XLA_FLAGS, which the result set records (software.xla_flags)."""
    if _COUNT_FLAG in environ.get("XLA_FLAGS", "") or environ.get("JAX_NUM_CPU_DEVICES"):
        return False
    environ["XLA_FLAGS"] = f"{environ.get('XLA_FLAGS', '')} {_COUNT_FLAG}={count}".strip()
    return True


def cpu_device_warning(asked: bool, count: int = CPU_DEVICES) -> str | None:
    """After default_cpu_devices: a warning if JAX's CPU backend was initialised before the
    flag could act, so this run would store under another machine id than `make bench`."""
    if not asked:
        return None
    import jax

    if jax.local_devices()[0].platform == "cpu" and jax.local_device_count() != count:
        return (f"asked XLA for {count} host devices but JAX sees {jax.local_device_count()} "
                "(its backends were initialised first)")
    return None


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def host_info() -> dict:
    return {
        "hostname": socket.gethostname(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu": host_cpu(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": host_memory_bytes(),
    }


def git_info(repo: Path | None = None) -> dict:
    repo = repo or Path(__file__).resolve().parent.parent
    commit = _run(["git", "rev-parse", "HEAD"], repo)
    if commit is None:
        return {"commit": None, "branch": None, "dirty": None, "commit_time": None}
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], repo)
    return {
        "commit": commit,
        "branch": _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], repo),
        "dirty": bool(status),
        "commit_time": _run(["git", "show", "-s", "--format=%cI", "HEAD"], repo),
    }


def git_changed(repo: Path, paths: tuple[str, ...]) -> list[str]:
    """Files under `paths` of `repo` with uncommitted changes, untracked ones included."""
    out = _run(["git", "status", "--porcelain", "--", *paths], repo) or ""
    return [line.split(maxsplit=1)[1] for line in out.splitlines() if line.strip()]


@functools.lru_cache(maxsize=1)
def _nvidia_smi_gpus() -> list[dict]:
    """Every GPU the driver lists, through nvidia-smi: name, driver version, total memory.
    Asked once per process: the answer does not change and each call costs a subprocess."""
    smi = _run(["nvidia-smi", "--query-gpu=index,uuid,name,driver_version,memory.total",
                "--format=csv,noheader,nounits"])
    gpus = []
    for line in (smi or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        try:
            total = int(float(parts[4]) * 2**20)  # reported in MiB
        except ValueError:
            total = None
        gpus.append({"index": parts[0], "uuid": parts[1], "name": parts[2], "driver": parts[3],
                     "total_bytes": total})
    return gpus


def _nvml_gpus() -> list[dict]:
    """The same through NVML (nvidia-ml-py's pynvml), which needs no subprocess."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no GPU: NVML raises its own error types
        return []
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name, uuid = pynvml.nvmlDeviceGetName(h), pynvml.nvmlDeviceGetUUID(h)
            gpus.append({"index": str(i), "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                         "name": name.decode() if isinstance(name, bytes) else name,
                         "total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total)})
    except Exception:  # noqa: BLE001
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    return gpus


def _first_visible(gpus: list[dict], environ) -> dict | None:
    """The GPU that is this process's first CUDA device (JAX's device 0): the first entry of
    CUDA_VISIBLE_DEVICES (an index or a UUID prefix) if set, else the driver's first GPU. (The
    driver numbers GPUs in PCI order, CUDA fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; on
    a machine of identical GPUs the capacity is the same either way.)"""
    visible = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not gpus:
        return None
    if not visible:
        return gpus[0]
    first = visible[0]
    for g in gpus:
        if g["index"] == first or (g.get("uuid") and g["uuid"].startswith(first)):
            return g
    return None


def driver_memory(environ=os.environ) -> dict | None:
    """Total memory of this process's first GPU as the driver reports it (NVML, else
    nvidia-smi): {"hbm_bytes", "hbm_bytes_source", "driver_name"}, or None without one. JAX's
    memory_stats only knows its allocator's pool (75% of it by default)."""
    for source, listing in (("nvml", _nvml_gpus), ("nvidia-smi", _nvidia_smi_gpus)):
        gpu = _first_visible(listing(), environ)
        if gpu and gpu.get("total_bytes"):
            return {"hbm_bytes": gpu["total_bytes"], "hbm_bytes_source": f"{source}: total memory of "
                    f"GPU {gpu['index']} ({gpu['name']})", "driver_name": gpu["name"]}
    return None


def _cuda_versions() -> dict:
    """CUDA runtime/driver/cuDNN versions through jax's private hook; absent without the plugin."""
    out: dict = {}
    try:
        from jax._src.lib import cuda_versions  # private API: guarded, may move
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        cuda_versions = None
    if cuda_versions is not None:
        for key, fn in (
            ("cuda_runtime", "cuda_runtime_get_version"),
            ("cuda_driver", "cuda_driver_get_version"),
            ("cudnn", "cudnn_get_version"),
            ("cublas", "cublas_get_version"),
        ):
            try:
                out[key] = getattr(cuda_versions, fn)()
            except Exception:  # noqa: BLE001
                pass
    gpus = _nvidia_smi_gpus()
    if gpus:
        out["nvidia_driver"] = gpus[0]["driver"]
    return out


def software_info() -> dict:
    import jax
    import jaxlib
    import numpy

    info = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_compiler": platform.python_compiler(),
        "executable": sys.executable,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": numpy.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_env": {k: v for k, v in os.environ.items() if k.startswith("JAX_")},
    }
    try:
        import optax

        info["optax"] = optax.__version__
    except ImportError:
        info["optax"] = None
    info.update(_cuda_versions())
    return info


def _device_memory_bytes(dev) -> int | None:
    """What JAX's allocator may use (memory_stats bytes_limit): on a GPU a pool of 75% of the
    memory by default (XLA_PYTHON_CLIENT_MEM_FRACTION), not the card's capacity; a CPU's is
    the host's memory."""
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats raise or return None
        stats = None
    if stats:
        return stats.get("bytes_limit") or stats.get("bytes_reservable_limit")
    if dev.platform == "cpu":
        return host_memory_bytes()
    return None


def device_info() -> dict:
    import jax

    devs = jax.devices()
    d0 = devs[0]
    info = {
        "platform": d0.platform,
        "kind": d0.device_kind,
        "count": len(devs),
        "local_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "memory_bytes": _device_memory_bytes(d0),
        "memory_bytes_source": "host memory" if d0.platform == "cpu" else
        "jax memory_stats bytes_limit: the allocator's pool, not the device's capacity",
        "hbm_bytes": None,
        "compute_capability": getattr(d0, "compute_capability", None),
        "catalog_chip": None,
    }
    if d0.platform == "gpu":
        info.update(driver_memory() or {"hbm_bytes_source": "no NVML or nvidia-smi answer"})
    chip = catalog_chip(info["kind"], info["platform"])
    if chip is not None:
        info["catalog_chip"] = chip.name
    else:
        info["catalog_note"] = catalog_note(info["kind"], info["platform"])
    return info


def catalog_chip(device_kind: str, platform_name: str):
    """The catalog chip matching this device, or None (CPUs are never in the catalog)."""
    if platform_name == "cpu":
        return None
    from clusters.catalog import match_device_kind

    return match_device_kind(device_kind)


def catalog_note(device_kind: str, platform_name: str) -> str | None:
    """Why an accelerator has no catalog chip, in one line; None for a match or a CPU."""
    if platform_name == "cpu" or catalog_chip(device_kind, platform_name) is not None:
        return None
    from clusters.catalog import near_device_kind

    near = near_device_kind(device_kind)
    parts = "is another part" if len(near) == 1 else "are other parts"
    why = (f"{' and '.join(f'{c.name} ({c.description})' for c in near)} {parts} of that name, with "
           "other peaks, power or memory, and the catalog has no sourced figures for this one"
           if near else "no sourced spec sheet for it is in clusters/data/chips")
    return (f"{device_kind!r} is not in the catalog: {why}; its ceilings are measured in the run "
            "(best matmul per dtype, best stream bandwidth)")


def catalog_ceilings(chip) -> dict:
    return {
        "peak_flops_per_s": dict(chip.peak_flops_per_s),
        "peak_bw_bytes_per_s": chip.hbm_bw_bytes_per_s,
        "source": f"catalog: {chip.name}",
        "sources": {k: v for k, v in chip.sources.items() if k.startswith(("peak_flops_per_s", "hbm_bw"))},
    }


def _name_part(text) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text or "unknown").lower()).strip("-") or "unknown"


def fingerprint(host: dict, device: dict, software: dict | None = None) -> tuple[dict, str]:
    """What must match for two runs to be the same machine (the nightly baseline, history):
    the device (platform, kind = the GPU's name, count), the GPU driver, the host's CPU model and
    count, its memory (to the GiB: the kernel's own reservations move MemTotal by megabytes),
    its kernel release and its name. A change to any of them starts a new series."""
    memory = host.get("memory_bytes")
    fp = {
        "platform": device.get("platform"),
        "device_kind": device.get("kind"),
        "device_count": device.get("count"),
        "gpu_driver": (software or {}).get("nvidia_driver"),
        "host_cpu": host.get("cpu"),
        "host_cpu_count": host.get("cpu_count"),
        "host_memory_gib": round(memory / 2**30) if isinstance(memory, (int, float)) and memory > 0 else None,
        "kernel": host.get("release"),
        "hostname": host.get("hostname"),
    }
    digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]
    return fp, digest


def machine_id(host: dict, device: dict, fingerprint_id: str) -> str:
    """Directory name under results/: readable (host, platform, device kind and count), and
    ending in the fingerprint's first 6 hex digits, so two machines that share a host name never
    share a directory."""
    return (f"{_name_part(host.get('hostname'))}-{_name_part(device.get('platform'))}-"
            f"{_name_part(device.get('kind'))}-x{device.get('count')}-{fingerprint_id[:6]}")


def environment() -> dict:
    """The run-level metadata of a result set, minus what the run itself adds."""
    host = host_info()
    device = device_info()
    software = software_info()
    fp, fp_id = fingerprint(host, device, software)
    return {
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "machine_id": machine_id(host, device, fp_id),
        "fingerprint": fp,
        "fingerprint_id": fp_id,
        "host": host,
        "device": device,
        "software": software,
        "git": git_info(),
    }
