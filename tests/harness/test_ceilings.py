"""The memory ceiling (harness/ceilings.py) and what the runner does with fractions above 1."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import jax
import pytest

from harness import ceilings
from harness.resultset import CaseResult, ResultSet
from harness.ceilings import COMPUTE_FROM_RUN, apply_ceilings, measured_ceilings

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import fast_cfg  # noqa: E402


def _cache(tmp_path: Path, entries) -> Path:
    for i, (level, kind, size) in enumerate(entries):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return tmp_path


def test_last_level_cache_is_the_highest_data_level_in_sysfs(tmp_path):
    d = _cache(tmp_path, [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                          (3, "Unified", "307200K")])
    size, source = ceilings.last_level_cache(d)
    assert size == 300 * 2**20 and "level 3" in source


def test_last_level_cache_falls_back_to_sysconf(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sysconf", lambda name: 32 * 2**20 if name == "SC_LEVEL3_CACHE_SIZE" else 0)
    assert ceilings.last_level_cache(tmp_path / "missing") == (32 * 2**20, "sysconf SC_LEVEL3_CACHE_SIZE")


def test_buffer_is_four_times_the_cache_within_the_memory():
    assert ceilings.buffer_bytes("cpu", 300 * 2**20, 20 * 2**30) == (1200 * 2**20, "")
    assert ceilings.buffer_bytes("cpu", 2**20, None)[0] == ceilings.MIN_BUFFER_BYTES  # a tiny cache: still memory
    size, note = ceilings.buffer_bytes("cpu", 300 * 2**20, 4 * 2**30)  # 1/4 of the memory, two buffers' worth
    assert size == 512 * 2**20 and "reduced" in note
    assert ceilings.buffer_bytes("gpu", None, 80 * 2**30)[0] == 2**30


def test_a_small_buffer_says_its_ceiling_may_be_a_cache(monkeypatch):
    monkeypatch.setattr(ceilings, "last_level_cache", lambda: (300 * 2**20, "test"))
    memory = ceilings.memory_section("cpu", fast_cfg())
    assert memory["buffer_bytes"] == 2**20 and "may be a cache bandwidth" in memory["note"]


def test_sweep_streams_in_place_and_records_the_load():
    s = ceilings.sweep(jax.devices()[0], 4 * 2**20, 3, "before the cases")
    assert s["calls"] == 3 and len(s["samples_s"]) == 3 and s["buffer_bytes"] == 4 * 2**20
    assert s["best_bytes_per_s"] == pytest.approx(2 * 4 * 2**20 / min(s["samples_s"]))
    assert s["best_bytes_per_s"] >= s["median_bytes_per_s"] > 0
    assert "loadavg_1m" in s  # and other_cpu_fraction, once the sweep outlasts a clock tick


def _case(name, group, median_s, flops, bytes_, dtype="fp32"):
    return CaseResult(name=name, group=group, params={"dtype": dtype}, status="ok", samples_s=[median_s],
                      stats={"median_s": median_s}, flops=flops, bytes=bytes_, achieved_flops_per_s=flops / median_s,
                      achieved_bytes_per_s=bytes_ / median_s,
                      extra={"peak_dtype": dtype if group.startswith("matmul") else None})


def test_fractions_above_one_mark_the_ceiling_wrong_instead_of_being_stored():
    big = _case("matmul/fp32/big", "matmul", 1.0, 100e9, 1e6)  # 100 GFLOP/s: the compute ceiling
    thin = _case("matmul/fp32/thin", "matmul_model", 1e-3, 2e6, 60e6)  # 60 GB/s of traffic, memory-bound
    slow = _case("matmul/fp32/slow", "matmul_model", 1e-2, 2e6, 60e6)  # 6 GB/s
    stream = _case("membw/stream_add/fp32/16MiB", "membw", 1e-3, 4e6, 32 * 2**20, dtype=None)
    rs = ResultSet(meta={}, cases=[big, thin, slow, stream])
    memory = {"llc_bytes": 300 * 2**20, "sweeps": [{"best_bytes_per_s": 10e9}, {"best_bytes_per_s": 20e9}]}
    ceil = measured_ceilings(rs.cases, memory)
    assert ceil["peak_bw_bytes_per_s"] == 20e9 and ceil["compute"] == COMPUTE_FROM_RUN
    apply_ceilings(rs, ceil)
    # compute peak from the run itself: no fraction of peak, no compute-bound roofline
    assert big.fraction_of_peak is None and big.roofline_fraction is None and "above_ceiling" not in big.extra
    # memory-bound at 3x the memory ceiling: impossible, so marked, not stored
    assert thin.roofline_fraction is None
    assert thin.extra["above_ceiling"]["roofline_fraction"] == pytest.approx(3.0)
    assert thin.extra["above_ceiling"]["ceiling"] == "memory"
    assert "fits the 300 MiB last-level cache" in thin.extra["above_ceiling"]["note"]
    assert slow.roofline_fraction == pytest.approx(0.3) and "above_ceiling" not in slow.extra
    assert stream.fraction_of_peak is None and stream.extra["above_ceiling"]["fraction_of_peak"] == pytest.approx(
        32 * 2**20 / 1e-3 / 20e9)
    assert [e["case"] for e in ceil["exceeded"]] == ["matmul/fp32/thin", "membw/stream_add/fp32/16MiB"]
    # applied again (the runner does after every case): the same, no stale marks
    apply_ceilings(rs, ceil)
    assert len(ceil["exceeded"]) == 2 and slow.roofline_fraction == pytest.approx(0.3)


def test_catalog_ceilings_give_fractions_and_mark_the_impossible():
    ok = _case("matmul/bf16/a", "matmul", 1.0, 500e12, 1e9, dtype="bf16")
    over = _case("matmul/bf16/b", "matmul", 1.0, 1200e12, 1e9, dtype="bf16")
    rs = ResultSet(meta={}, cases=[ok, over])
    ceil = {"peak_flops_per_s": {"bf16": 989e12}, "peak_bw_bytes_per_s": 3.35e12, "source": "catalog: h100"}
    apply_ceilings(rs, ceil)
    assert ok.fraction_of_peak == pytest.approx(500 / 989) and ok.roofline_fraction == pytest.approx(500 / 989)
    assert over.fraction_of_peak is None and over.extra["above_ceiling"]["ceiling"] == "compute"
