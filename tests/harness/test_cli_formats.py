"""The formatter's forms (closed cases), the figures projections name (power per chip and per
system add up, J/token is the systems' power over the tokens), and the forms of `devices`,
whose output is this machine's and so has no golden file."""
from __future__ import annotations

import csv
import io
import json

import pytest

from harness import cli
from harness.format import (byte_size, count_range, fixed_column, flat_record, number, quantity,
                            si_range, time_unit)


@pytest.mark.parametrize("n, text", [(2**30, "1 GiB"), (3 * 2**20, "3 MiB"), (4096, "4 KiB"),
                                     (2**32, "4 GiB"), (64e6, "64 MB"), (1e9, "1 GB"),
                                     (1536, "1.54 kB"), (512, "512 B"), (None, "-")])
def test_byte_size(n, text):
    assert byte_size(n) == text


def test_counts_and_numbers():
    assert quantity(8.03e9) == "8.03B" and quantity(15e12) == "15T" and quantity(69_600) == "69.6k"
    assert count_range(8840, 6270, 10700) == "8.84k (6.27k-10.7k)"
    assert count_range(8840, None, None) == "8.84k"
    assert number(12_036.2) == "12,036" and number(484.676) == "484.7" and number(430.0) == "430"


def test_times_in_one_unit_line_up():
    assert time_unit(0.05) == (1e-3, "ms") and time_unit(5.7) == (1.0, "s")
    assert time_unit(2e-6) == (1e-6, "us")
    assert fixed_column([4.2446, 0.4397, 0.00125], 1.0, 5.6947) == ["4.245", "0.440", "0.001"]
    assert fixed_column([0.02005, 0.0264], 1e-3, 0.04997) == ["20.05", "26.40"]
    assert si_range(7.66, 6.9, 8.4, "s") == "7.66 s (6.9-8.4)"  # unchanged by band_text


def test_flat_record_keeps_units_at_the_end():
    flat = flat_record({"plan": {"tp": 8}, "breakdown_s": {"gemm_s": 1.0},
                        "memory": {"weights_bytes": 3}, "peak_flops_per_s": {"bf16": 1e15},
                        "notes": ["a"]})
    assert flat == {"plan_tp": 8, "breakdown_gemm_s": 1.0, "memory_weights_bytes": 3,
                    "peak_bf16_flops_per_s": 1e15, "notes": ["a"]}


def _project(argv, capsys) -> dict:
    assert cli.main(["project", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv, chip_w, system_w, systems", [
    (["--model", "llama3-70b", "--system", "hgx-h100", "--chips", "64", "--tp", "8", "--pp", "4",
      "--global-batch", "128"], 700.0, 10_200.0, 8),
    (["--model", "deepseek-r1", "--system", "gb200-nvl72", "--chips", "48", "--mode", "decode",
      "--precision", "fp8", "--batch-per-chip", "64"], 1_200.0, 120_000.0, 48 / 72),
    (["--model", "deepseek-r1", "--system", "cloudmatrix-384", "--chips", "32", "--mode",
      "prefill", "--precision", "int8"], 600.0, 559_378.0, 32 / 384),
])
def test_power_is_named_for_what_it_covers(argv, chip_w, system_w, systems, capsys):
    doc = _project([*argv, "--no-band"], capsys)
    assert "chip_power_w" not in doc  # all the chips' power under one chip's name
    assert doc["power_w_per_chip"] == pytest.approx(chip_w)
    assert doc["chips_power_w"] == pytest.approx(doc["chips"] * chip_w)
    assert doc["power_w_per_system"] == pytest.approx(system_w)
    assert doc["systems"] == pytest.approx(systems)
    assert doc["power_w"] == pytest.approx(systems * system_w)
    tokens_per_s = doc.get("tokens_per_s") or doc["tokens_per_s_per_chip"] * doc["chips"]
    assert doc["joules_per_token"] == pytest.approx(doc["power_w"] / tokens_per_s)
    assert doc["memory_bytes_per_chip"] > 0 and doc["usable_memory_bytes_per_chip"] > 0


def test_project_table_shows_both_powers_and_no_raw_floats(capsys):
    assert cli.main(["project", "--model", "deepseek-r1", "--system", "gb200-nvl72", "--chips",
                     "48", "--mode", "decode", "--precision", "fp8", "--batch-per-chip", "64"]) == 0
    out = capsys.readouterr().out
    assert "1.2 kW per chip (57.6 kW for the 48 chips)" in out
    assert "120 kW per gb200-nvl72 system (0.667 systems used: 80 kW)" in out
    assert "J/token" in out and "TPOT" in out and "the KV cache holds" in out
    assert "e+" not in out and "e-0" not in out and "_per_chip:" not in out


def test_devices_forms(capsys):
    assert cli.main(["devices", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["devices"]) == doc["device"]["count"]
    assert cli.main(["devices", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == doc["device"]["count"]
    assert {r["platform"] for r in rows} == {doc["device"]["platform"]}
    assert sorted(int(r["id"]) for r in rows) == sorted(d["id"] for d in doc["devices"])
