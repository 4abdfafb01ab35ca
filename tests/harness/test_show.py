"""show: one table per family in its own rate, nothing impossible or by-construction printed as a
figure, a status filter that says when nothing matches, and JSON and CSV with units in the keys."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

SETS = Path(__file__).parent / "data" / "sets"
AA = str(SETS / "aa-20261130T123428-b.json.gz")  # a real default-suite CPU set (8 host devices)


def test_families_each_in_their_own_rate(cli, capsys):
    assert cli(["show", AA]) == 0
    out = capsys.readouterr().out
    assert "matmul: 7 measured, rate in FLOP/s" in out
    assert "membw: 3 measured, rate in bytes/s (read + write)" in out
    assert "collective: 40 measured, algbw = size / time, busbw = algbw x bus factor" in out
    row = next(line for line in out.splitlines() if line.startswith("collective/all_reduce/fp32/x8/1MiB "))
    assert "946 MB/s" in row and "1.66 GB/s" in row  # algbw, and busbw = 2(8-1)/8 x algbw
    assert "membw/stream_add/fp32/16MiB" in out and "16777216B" not in out  # renamed on load, warnings too


def test_nothing_impossible_or_by_construction_is_printed_as_a_figure(cli, capsys):
    """The set's expert GEMMs beat its (old, cache-sized) memory ceiling 2-3x: marked, not printed;
    its best matmul and best stream case would be 100% of themselves: not printed."""
    assert cli(["show", AA]) == 0
    out = capsys.readouterr().out
    expert = next(line for line in out.splitlines() if line.startswith("matmul/fp32/deepseek-v3/expert_down/"))
    assert "over ceiling" in expert and "320" not in expert
    assert "matmul/fp32/deepseek-v3/expert_down/tp8/t64: 3.20x the memory ceiling" in out
    assert "100.0%" not in out
    assert "a fraction of it is 100% by construction" in out


def test_status_filter_with_no_match_says_so_once(cli, capsys):
    assert cli(["show", AA, "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert "no failed cases (of 109: 95 ok, 0 failed, 14 skipped)" in out
    assert "---" not in out and "large spread" not in out  # no empty table, no unrelated warnings
    assert "(2 warning(s) about the whole run not shown with --status)" in out


def test_json_and_csv_have_units_in_their_keys(cli, capsys):
    assert cli(["show", AA, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    case = next(c for c in doc["cases"] if c["name"] == "collective/send/fp32/x8/1MiB")
    assert case["size_bytes"] == 2**20 and case["algbw_bytes_per_s"] == case["busbw_bytes_per_s"] > 0
    assert case["median_s"] > 0 and case["achieved_bytes_per_s"] is None  # a message size is not traffic
    expert = next(c for c in doc["cases"] if c["name"].endswith("expert_down/tp8/t64"))
    assert expert["roofline_fraction"] is None and 3.1 < expert["above_ceiling_fraction"] < 3.3
    assert cli(["show", AA, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 109 and float(rows[0]["median_s"]) > 0  # raw numbers, not "295 us"
