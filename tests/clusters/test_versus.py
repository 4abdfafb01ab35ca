"""`rackbench versus`: CloudMatrix 384 head to head (clusters.versus, harness.cmd_versus)."""
from __future__ import annotations

import json

import pytest

from clusters.catalog import load_system
from clusters.calibration import default_calibration
from clusters.search import search
from clusters.versus import (GRANULARITY, RIVALS, ReferenceCurve, contenders, global_batch,
                             scaled_chips, versus)
from harness import cli
from harness.errors import UserError
from harness.resultset import CaseResult, ResultSet, save

CM = load_system("cloudmatrix-384")
GB = load_system("gb200-nvl72")


@pytest.fixture(scope="module")
def v():
    return versus(("llama3-405b", "deepseek-r1"))


def test_contenders_cover_every_basis():
    cs = contenders()
    assert (cs[0].system.name, cs[0].chips, cs[0].basis) == ("cloudmatrix-384", 384, "reference")
    got = {(c.system.name, c.basis): c.chips for c in cs[1:]}
    assert set(got) == set(RIVALS)
    assert got[("gb200-nvl72", "per system")] == 72
    assert got[("gb200-nvl72", "equal chips")] == 384
    for name in ("hgx-h100", "hgx-h800", "hgx-h20"):
        assert got[(name, "same chips")] == 384


@pytest.mark.parametrize("basis, key", [("equal power", "power_w"), ("equal price", "price_usd")])
def test_equal_power_and_price_scale_the_rival_to_the_reference_within_rounding(basis, key):
    chips = scaled_chips(CM, GB, basis)
    per_chip = getattr(GB, key) / GB.chips_per_domain
    assert chips % GRANULARITY == 0
    # rounded to the nearest GRANULARITY chips: off by at most half of that many chips' share
    assert abs(chips * per_chip - getattr(CM, key)) <= GRANULARITY / 2 * per_chip
    c = next(c for c in contenders() if c.basis == basis)
    assert getattr(c, key) == pytest.approx(chips * per_chip)


def test_an_unpriced_rival_has_no_equal_price_count():
    with pytest.raises(UserError, match="hgx-h800 has no price"):
        scaled_chips(CM, load_system("hgx-h800"), "equal price")


def test_rows_are_consistent(v):
    assert {(r.workload, r.mode) for r in v.rows} == {
        ("llama3-405b", "train"), ("deepseek-r1", "decode"), ("deepseek-r1", "prefill")}
    for r in v.rows:
        assert r.feasible, (r.contender.label, r.reason)
        c = r.contender
        assert r.tokens_per_s_per_chip * c.chips == pytest.approx(r.tokens_per_s)
        assert r.tokens_per_s_per_kw == pytest.approx(r.tokens_per_s / c.power_w * 1e3)
        assert r.joules_per_token * r.tokens_per_s == pytest.approx(c.power_w)
        assert (r.tokens_per_s_per_million_usd is None) == (c.system.price_usd is None)
        assert r.plan
        if r.mode == "train":
            assert 0.05 < r.mfu < 0.9
        if r.mode == "decode":
            assert r.step_time_s <= 0.050 + 1e-12  # the TPOT target holds
        if c.basis == "reference":
            assert v.relative(r) == 1.0
    # one CloudMatrix 384 (384 chips) against one NVL72 (72): per system, CloudMatrix's whole
    # throughput is the comparison, not per chip
    train = [r for r in v.rows if r.mode == "train"]
    per_system = next(r for r in train if r.contender.basis == "per system")
    assert v.relative(per_system) == pytest.approx(per_system.tokens_per_s_per_system
                                                   / train[0].tokens_per_s_per_system)


def test_break_even_is_where_the_gap_closes(v):
    found = [b for b in v.break_evens if b.factor is not None and b.factor > 0.02]
    assert found
    for b in found:
        assert 0.0 <= b.gap_at_factor < 0.03  # the bisection stops just on the winning side
    for b in v.break_evens:
        if b.factor is None:  # cannot match: behind even at the perfect factor
            assert b.gap_at_factor < 0 and b.gap_at_current < 0
        else:  # ahead today exactly when today's factor is at or above the break-even
            assert (b.gap_at_current >= 0) == (b.factor <= b.current_compute + 0.005)


def test_reference_throughput_grows_with_the_software_factor():
    from clusters.workloads import load_model

    ref = contenders()[0]
    curve = ReferenceCurve(load_model("llama3-405b"), ref, default_calibration(), "train", 0.05)
    ys = [curve.tokens_per_s(f) for f in (0.3, 0.6, 0.9, curve.current[0], 1.0, curve.perfect)]
    assert ys == sorted(ys) and ys[0] < ys[-1]
    # at the calibration's own factor the curve is the calibration itself
    row = next(r for r in versus(("llama3-405b",), break_evens=False).rows
               if r.contender.basis == "reference")
    assert curve.tokens_per_s(curve.current[0]) == pytest.approx(row.tokens_per_s, rel=1e-6)
    # between the probed factors the candidate plans still hold the full search's best
    model = load_model("llama3-405b")
    (best,), _ = search(model, ref.system, ref.chips, global_batch(model.seq_len), model.seq_len,
                        "bf16", curve.calibration(0.7), top=1)
    assert curve.tokens_per_s(0.7) == pytest.approx(best.tokens_per_s, rel=1e-6)


# ------------------------------------------------------------------ the command

UNITLESS = {"chips", "n_systems", "mfu", "throughput_vs_reference", "feasible", "plan", "system",
            "basis", "workload", "mode", "infeasible_reason", "rival", "rival_chips", "verdict",
            "factor_needed", "perfect_factor", "current_compute_factor", "current_memory_factor",
            "gap_at_current", "gap_at_factor"}
UNITS = ("_s", "_w", "_usd", "_per_s", "_per_chip", "_per_system", "_per_kw",
         "_per_million_usd", "_per_token", "_tokens", "_per_step")


def test_json_fields_carry_units(capsys):
    assert cli.main(["versus", "--workload", "llama3-405b", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["calibration"] == "default" and doc["tpot_s"] == pytest.approx(0.05)
    keys = {k for r in doc["rows"] + doc["break_even"] for k in r}
    for k in keys - UNITLESS:
        assert k.endswith(UNITS), k
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
                                      stats={"median_s": 1e-2}, flops=2.7e8,
                                      achieved_flops_per_s=2.7e10, peak_flops_per_s=5e10)])
    save(cpu, tmp_path / "cpu.json")
    assert cli.main(["versus", "--calibration", str(tmp_path / "cpu.json")]) == 2
    err = capsys.readouterr().err
    assert "cpu.json" in err and "CPU" in err
