"""`rackbench versus` through the real entry point: JSON, table, Markdown, plot, bad input."""
from __future__ import annotations

import json

import pytest

from clusters.versus import RIVALS
from harness import cli
from harness.resultset import CaseResult, ResultSet, save

UNITLESS = {"chips", "n_systems", "mfu", "throughput_vs_reference", "feasible", "plan", "system",
            "basis", "workload", "mode", "infeasible_reason", "rival", "rival_chips", "verdict",
            "factor_needed", "perfect_factor", "current_compute_factor", "current_memory_factor",
            "gap_at_current", "gap_at_factor", "sensitivity", "factor_range"}
UNITS = ("_s", "_w", "_usd", "_per_s", "_per_chip", "_per_system", "_per_kw",
         "_per_million_usd", "_per_token", "_tokens", "_per_step")


def test_json_fields_carry_units(capsys):
    assert cli.main(["versus", "--workload", "llama3-405b", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["calibration"] == "default" and doc["tpot_s"] == pytest.approx(0.05)
    keys = {k.removesuffix("_p10").removesuffix("_p90")
            for r in doc["rows"] + doc["break_even"] for k in r}
    for k in keys - UNITLESS:
        assert k.endswith(UNITS), k
    for r in doc["rows"]:  # bands bracket the central figures
        assert r["tokens_per_s_p10"] <= r["tokens_per_s"] <= r["tokens_per_s_p90"]
        if r["basis"] != "reference":
            assert r["throughput_vs_reference_p10"] <= r["throughput_vs_reference"] \
                <= r["throughput_vs_reference_p90"]
            lo, hi = r["throughput_vs_reference_p10"], r["throughput_vs_reference_p90"]
            assert r["verdict"] == ("ahead" if lo > 1 else "behind" if hi < 1
                                    else "too close to call")
        assert len(r["sensitivity"]) == 3
    row = doc["rows"][0]
    assert {"step_time_s", "tokens_per_s", "tokens_per_s_per_chip", "tokens_per_s_per_kw",
            "joules_per_token", "power_w", "mfu", "plan"} <= set(row)
    assert len(doc["rows"]) == 1 + len(RIVALS) and len(doc["break_even"]) == len(RIVALS)


def test_table_markdown_and_plot(tmp_path, capsys):
    png = tmp_path / "v.png"
    assert cli.main(["versus", "--workload", "llama3-405b", "--workload", "llama3-405b",
                     "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "calibration: default" in out and "break-even" in out and "equal power" in out
    assert out.count("Llama 3 405B training") == 1 + len(RIVALS)  # repeated flag: once
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["versus", "--workload", "deepseek-r1", "--format", "markdown",
                     "--tpot-ms", "80"]) == 0
    out = capsys.readouterr().out
    assert "| DeepSeek-R1 decode | cloudmatrix-384 |" in out and "TPOT <= 80 ms" in out


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Llama 3 405B training")]


def test_bad_input_exits_2(tmp_path, capsys):
    assert cli.main(["versus", "--tpot-ms", "-5"]) == 2
    err = capsys.readouterr().err
    assert "--tpot-ms" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        cli.main(["versus", "--workload", "gpt-5"])
    assert exc.value.code == 2
    capsys.readouterr()
    cpu = ResultSet(meta={"device": {"platform": "cpu", "kind": "cpu", "catalog_chip": None}},
                    cases=[CaseResult(name="matmul/fp32/512", group="matmul",
                                      params={"dtype": "fp32"}, status="ok",
                                      stats={"median_s": 1e-2}, samples_s=[1e-2] * 3, flops=2.7e8,
                                      achieved_flops_per_s=2.7e10, peak_flops_per_s=5e10)])
    save(cpu, tmp_path / "cpu.json")
    # a CPU set is no error: it sets nothing for these chips (as in project), and says so
    assert cli.main(["versus", "--workload", "llama3-405b", "--calibration",
                     str(tmp_path / "cpu.json")]) == 0
    out = capsys.readouterr().out
    assert "none of it applies to ascend-910c" in out
    default = cli.main(["versus", "--workload", "llama3-405b", "--calibration", "default"])
    same = capsys.readouterr().out
    assert default == 0 and _table_rows(out) == _table_rows(same)
    assert cli.main(["versus", "--calibration", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
