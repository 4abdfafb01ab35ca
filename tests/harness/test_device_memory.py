"""The card's memory as its driver reports it (NVML, else nvidia-smi), beside JAX's allocator
pool, and the projection of the closing loop using the former. The driver is simulated: a fake
pynvml module and a fake nvidia-smi answer, as an H200 box gives them."""
from __future__ import annotations

import sys
import types

import pytest

from harness import device
from harness.studies.closing_loop import local_system

H200_BYTES = 143771 * 2**20  # nvidia-smi's memory.total on the lent H200 (KINDS.md, 2026-10-27)
POOL_BYTES = int(0.75 * H200_BYTES)  # what JAX's memory_stats calls bytes_limit by default


def _fake_pynvml(gpus):
    m = types.ModuleType("pynvml")
    m.nvmlInit = lambda: None
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: gpus[h][0].encode()  # older nvidia-ml-py returns bytes
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h}aaaa"
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=gpus[h][1], used=0, free=gpus[h][1])
    return m


@pytest.fixture
def no_smi(monkeypatch):
    monkeypatch.setattr(device, "_run", lambda cmd, cwd=None: None)
    device._nvidia_smi_gpus.cache_clear()
    yield
    device._nvidia_smi_gpus.cache_clear()


def test_nvml_gives_the_cards_capacity(monkeypatch, no_smi):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml([("NVIDIA H200", H200_BYTES)]))
    got = device.driver_memory({})
    assert got["hbm_bytes"] == H200_BYTES and got["driver_name"] == "NVIDIA H200"
    assert got["hbm_bytes_source"].startswith("nvml")


def test_cuda_visible_devices_picks_the_gpu_jax_calls_device_0(monkeypatch, no_smi):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml([("NVIDIA H100 80GB HBM3", 85e9), ("NVIDIA H200", H200_BYTES)]))
    assert device.driver_memory({"CUDA_VISIBLE_DEVICES": "1,0"})["hbm_bytes"] == H200_BYTES
    assert device.driver_memory({"CUDA_VISIBLE_DEVICES": "GPU-1a"})["hbm_bytes"] == H200_BYTES
    assert device.driver_memory({})["hbm_bytes"] == 85e9
    assert device.driver_memory({"CUDA_VISIBLE_DEVICES": "7"}) is None  # not one the driver lists


def test_nvidia_smi_when_nvml_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    answer = "0, GPU-5e3c, NVIDIA H200, 580.159.03, 143771\n"
    monkeypatch.setattr(device, "_run", lambda cmd, cwd=None: answer if cmd[0] == "nvidia-smi" else None)
    device._nvidia_smi_gpus.cache_clear()
    try:
        got = device.driver_memory({})
        assert got["hbm_bytes"] == H200_BYTES and got["hbm_bytes_source"].startswith("nvidia-smi")
        assert device._cuda_versions()["nvidia_driver"] == "580.159.03"
    finally:
        device._nvidia_smi_gpus.cache_clear()


def test_no_driver_no_figure(monkeypatch, no_smi):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert device.driver_memory({}) is None


def test_cpu_device_records_host_memory_and_no_hbm():
    info = device.device_info()
    assert info["platform"] == "cpu" and info["hbm_bytes"] is None
    assert info["memory_bytes_source"] == "host memory"


def _gpu_meta(**dev):
    return {"device": {"platform": "gpu", "kind": "NVIDIA H200", "count": 1, "catalog_chip": None, **dev},
            "ceilings": {"peak_flops_per_s": {"bf16": 7e14}, "peak_bw_bytes_per_s": 4e12, "source": "measured"}}


def test_projection_uses_the_cards_capacity_not_the_pool():
    s = local_system(_gpu_meta(memory_bytes=POOL_BYTES, hbm_bytes=H200_BYTES), "bf16")
    assert s.chip.hbm_bytes == H200_BYTES
    # a set from before the driver's figure was recorded: the catalog's capacity, else the pool
    assert local_system(_gpu_meta(memory_bytes=POOL_BYTES, catalog_chip="h200"), "bf16").chip.hbm_bytes == 141e9
    assert local_system(_gpu_meta(memory_bytes=POOL_BYTES), "bf16").chip.hbm_bytes == POOL_BYTES


@pytest.mark.parametrize("kind, says", [
    ("NVIDIA H100 PCIe", "h100 (NVIDIA H100 SXM5 80 GB) and h100-nvl"),
    ("NVIDIA RTX 6000 Ada Generation", "no sourced spec sheet"),
])
def test_a_gpu_outside_the_catalog_is_said_to_be(kind, says):
    note = device.catalog_note(kind, "gpu")
    assert note.startswith(f"{kind!r} is not in the catalog") and says in note
    assert "measured in the run" in note and "\n" not in note


def test_catalog_gpus_and_cpus_need_no_note():
    assert device.catalog_note("NVIDIA H200 NVL", "gpu") is None
    assert device.catalog_note("cpu", "cpu") is None
