"""Uncertainty bands (clusters.uncertainty): sourced input ranges, seeded stratified sampling,
propagation through the one cost model, the band arithmetic, sensitivity, and the project
outputs that carry them."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from clusters import uncertainty as U
from clusters.calibration import default_calibration
from clusters.catalog import load_system
from clusters.plan import Plan, to_table
from clusters.projection import project_serve, project_train, train_band
from clusters.train import evaluate, train_step
from clusters.workloads import load_model

CAL = default_calibration()
H100, CM = load_system("hgx-h100"), load_system("cloudmatrix-384")
L70 = load_model("llama3-70b")
PLAN = Plan(tp=4, pp=2, dp=8, global_batch=128, seq_len=8192)


def test_every_default_input_carries_a_sourced_range():
    entries = list(CAL.entries) + [e for v in CAL.variants.values() for e in v]
    for e in entries:
        assert e.spread is not None, (e.kernel, e.family, e.dtype)
        assert e.spread[0] <= 1 <= e.spread[1] and len(e.spread_source) > 20
    for fam in CAL.sustained:
        assert f"sustained:{fam}" in CAL.spreads
    for name in CAL.ratios:
        assert f"ratio:{name}" in CAL.spreads
    for fam in CAL.chip_spread:
        assert f"chip_spread:{fam}" in CAL.spreads
    int8 = next(e for e in CAL.entries if e.family == "ascend-910c" and e.kernel == "gemm")
    assert int8.spread == pytest.approx((0.774 / 0.80, 0.827 / 0.80), rel=1e-3)
    # the disputed catalog figures: UB efficiency (borrowed from NCCL) and the 910C's power
    spreads = U.catalog_spreads()
    assert ("fabric", "ub-cm384", "efficiency") in spreads
    assert ("system", "cloudmatrix-384", "power_w") in spreads


def test_a_bad_spread_is_one_line(tmp_path):
    from clusters.calibration import load_calibration_file
    from clusters.errors import ModelInputError
    text = (CAL_PATH := default_calibration.__globals__["DEFAULT_PATH"]).read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("spread = [[0.9675, 1.034]]", "spread = [[1.2, 1.3]]", 1))
    with pytest.raises(ModelInputError, match="must bracket 1"):
        load_calibration_file(bad)
    assert CAL_PATH.is_file()


def test_samples_are_seeded_stratified_and_shared_by_name():
    inp = U.Input("gemm efficiency (x)", 0.8, 1.25, "gemm", "test")
    a, b = inp.samples(), inp.samples()
    assert np.array_equal(a, b) and len(a) == U.SAMPLES
    assert a.min() >= 0.8 and a.max() <= 1.25
    # one draw in each of the SAMPLES equal strata of log(range)
    strata = np.floor(np.log(a / 0.8) / np.log(1.25 / 0.8) * U.SAMPLES).astype(int)
    assert sorted(strata) == list(range(U.SAMPLES))
    other = U.Input("attention efficiency (x)", 0.8, 1.25, "attention", "test")
    assert not np.array_equal(a, other.samples())
    # the H100 and the 910C borrow the same Hopper GEMM entry: same name, same draws
    h = {i.name: i for i in U.inputs_for(CAL, H100, "bf16", "train")}
    c = {i.name: i for i in U.inputs_for(CAL, CM, "bf16", "train")}
    shared = set(h) & set(c)
    assert "gemm efficiency (nvidia-hopper)" in shared
    assert "sustained clock (*)" in c and "ascend-910c software factor (compute)" in c


def test_eff_scale_rows_move_only_their_class():
    table = to_table([PLAN] * 3)
    ones = {k: np.ones(3) for k in ("gemm", "attention", "memory", "scale_up", "scale_out")}
    scaled = dict(ones, gemm=np.array([1.0, 0.5, 1.0]), scale_up=np.array([1.0, 1.0, 0.5]))
    ev = evaluate(L70, H100, table, CAL, eff_scale=scaled)
    plain = evaluate(L70, H100, table, CAL)
    assert ev.parts_s["gemm_s"][0] == pytest.approx(plain.parts_s["gemm_s"][0])
    assert ev.parts_s["gemm_s"][1] == pytest.approx(2 * plain.parts_s["gemm_s"][1])
    assert ev.parts_s["attention_s"][1] == pytest.approx(plain.parts_s["attention_s"][1])
    assert ev.parts_s["tp_comm_s"][2] == pytest.approx(2 * plain.parts_s["tp_comm_s"][2])
    assert ev.parts_s["gemm_s"][2] == pytest.approx(plain.parts_s["gemm_s"][2])
    # all ones is the model itself
    same = evaluate(L70, H100, table, CAL, eff_scale=ones)
    assert np.allclose(same.step_time_s, train_step(L70, H100, PLAN, CAL).step_time_s)


def test_perturbed_copies_scale_and_cap():
    mult = {c: 1.0 for c in U.CLASSES} | {"gemm": 0.5, "memory": 2.0, "scale_up": 0.5,
                                          "power": 1.2, "stream": 0.8}
    cal, cm = U.perturbed(CAL, CM, mult)
    for old, new in zip(CAL.entries, cal.entries):
        factor = {"gemm": 0.5, "memory": 2.0}.get(old.kernel, 1.0)
        assert new.efficiencies == pytest.approx(tuple(min(1.0, v * factor)
                                                       for v in old.efficiencies))
    assert cal.ratio("gemm_stream_over_memory") == pytest.approx(
        0.8 * CAL.ratio("gemm_stream_over_memory"))
    assert cm.scale_up.efficiency == pytest.approx(0.5 * CM.scale_up.efficiency)
    # the measured fused dispatch/combine slows with its fabric
    assert cm.scale_up.moe_a2a.points[0][1] == pytest.approx(2 * CM.scale_up.moe_a2a.points[0][1])
    assert cm.power_w == pytest.approx(1.2 * CM.power_w)
    assert CAL.entries[0].efficiencies != cal.entries[0].efficiencies  # a copy, not in place


def test_band_arithmetic():
    exact = U.Band(0.0, 0.0, None, ())
    assert exact.rate(100.0) == pytest.approx((100.0, 100.0))
    form = U.ModelForm("train", 10, 0.0, 0.1, 0.0, 0.1)
    band = U.Band(0.0, 0.0, form, ())
    lo, hi = band.rate(100.0)
    assert lo == pytest.approx(100 * math.exp(-U.Z90 * 0.1))
    assert hi == pytest.approx(100 * math.exp(U.Z90 * 0.1))
    tlo, thi = band.time(2.0)
    assert (tlo, thi) == pytest.approx((2 / math.exp(U.Z90 * 0.1), 2 * math.exp(U.Z90 * 0.1)))
    # a model that over-predicts by 30% moves the band down, but never past the value
    biased = U.Band(0.0, 0.0, U.ModelForm("train", 10, math.log(1.3), 0.05, 0.0, 0.05), ())
    lo, hi = biased.rate(100.0)
    assert lo < 100.0 / 1.2 and hi == 100.0
    # the fit: model variance is what the residuals show beyond the inputs'
    fit = U.ModelForm.fit("x", [0.1, -0.1, 0.2, 0.0], [0.0001] * 4)
    assert fit.sd == pytest.approx(math.sqrt(np.var([0.1, -0.1, 0.2, 0.0], ddof=1) - 0.0001))
    assert fit.bias == pytest.approx(0.05)


def test_ratio_band_cancels_shared_inputs():
    samples = tuple(np.log(np.linspace(0.8, 1.2, 16)))
    a = U.Band(0.0, float(np.var(samples)), None, (), log_samples=samples)
    assert a.rate(1.0)[0] < 0.9  # alone it is uncertain
    assert U.ratio_band(a, a, 2.0) == pytest.approx((2.0, 2.0))  # against itself it is not
    form = U.ModelForm("train", 10, 0.2, 0.1, 0.0, 0.1)
    b = replace(a, model=form)
    lo, hi = U.ratio_band(b, b, 2.0)  # independent model errors do not cancel; the bias does
    assert lo == pytest.approx(2 * math.exp(-U.Z90 * 0.1 * math.sqrt(2)))
    assert hi == pytest.approx(2 * math.exp(U.Z90 * 0.1 * math.sqrt(2)))


METRICS = ("step_time_s", "tokens_per_s_per_chip", "model_flops_per_s_per_chip", "mfu",
           "joules_per_token")


def test_project_train_json_has_ordered_bands_and_three_inputs():
    doc = project_train(L70, H100, 64, CAL, global_batch=128, seq_len=8192,
                        degrees={"tp": 4, "pp": 2})
    for k in METRICS:
        assert doc[f"{k}_p10"] <= doc[k] <= doc[f"{k}_p90"], k
        assert doc[f"{k}_p10"] < doc[f"{k}_p90"], k
    # the step's band is the throughput's, inverted
    assert doc["step_time_s_p90"] * doc["tokens_per_s_per_chip_p10"] == pytest.approx(
        doc["step_time_s"] * doc["tokens_per_s_per_chip"], rel=1e-9)
    sens = doc["band"]["sensitivity"]
    assert len(sens) == 3 and sens[0]["swing"] >= sens[1]["swing"] >= sens[2]["swing"]
    # deterministic
    again = project_train(L70, H100, 64, CAL, global_batch=128, seq_len=8192,
                          degrees={"tp": 4, "pp": 2})
    assert again["mfu_p10"] == doc["mfu_p10"]
    # a searched plan's band belongs to the plan shown
    searched = project_train(L70, H100, 64, CAL, global_batch=128, seq_len=8192)
    plan = Plan(**{k: v for k, v in searched["plan"].items()})
    band = train_band(L70, H100, plan, CAL)
    assert searched["mfu_p10"] == pytest.approx(band.rate(searched["mfu"])[0])


def test_sensitivity_finds_a_planted_wide_input():
    wide = replace(CAL, entries=tuple(replace(e, spread=(0.5, 1.5)) if (
        e.kernel, e.family, e.dtype) == ("attention", "nvidia-hopper", "*") else e
        for e in CAL.entries))
    band = train_band(L70, H100, PLAN, wide)
    inputs = [name for name, _ in band.top(2) if not name.startswith("model form")]
    assert inputs[0] == "attention efficiency (nvidia-hopper)"
    narrow = train_band(L70, H100, PLAN, CAL)
    assert band.log_var > 1.5 * narrow.log_var  # and the band widens with it


def test_project_serve_json_has_ordered_bands():
    r1 = load_model("deepseek-r1")
    doc = project_serve(r1, CM, 160, CAL, mode="decode", precision="int8", ep=160,
                        batch_per_chip=96, context=4224, kv_precision="bf16", mtp_tokens=1,
                        mtp_acceptance=0.7)
    for k in ("step_time_s", "tokens_per_s_per_chip", "tpot_s", "joules_per_token"):
        assert doc[f"{k}_p10"] <= doc[k] <= doc[f"{k}_p90"], k
    names = {i["name"] for i in doc["band"]["inputs"]}
    assert {"ratio gemm_stream_over_memory", "ub-cm384 efficiency",
            "cloudmatrix-384 power"} <= names
    # power widens the energy band beyond the throughput's
    e = math.log(doc["joules_per_token_p90"] / doc["joules_per_token_p10"])
    t = math.log(doc["tokens_per_s_per_chip_p90"] / doc["tokens_per_s_per_chip_p10"])
    assert e > t
    off = project_serve(r1, CM, 160, CAL, mode="decode", precision="int8", ep=160,
                        batch_per_chip=96, context=4224, kv_precision="bf16", band=False)
    assert "band" not in off and "tpot_s_p10" not in off


def test_the_slowest_device_is_an_input_of_a_job_of_several():
    """The chip-to-chip spread's range becomes a compute input for a job of more than one
    device: its ends are the slowest device's pace at the spread's ends over the pace at the
    value used (wider spread, slower job), and a wider job has the wider input."""
    from clusters.calibration import slowest_of
    name = "slowest device of the job (chip spread *)"
    assert name not in {i.name for i in U.inputs_for(CAL, H100, "bf16", "train", ranks=1)}
    by_ranks = {}
    for n in (8, 8192):
        inp = {i.name: i for i in U.inputs_for(CAL, H100, "bf16", "train", ranks=n)}[name]
        cv = CAL.chip_spread["*"][0]
        lo, hi, _ = CAL.spreads["chip_spread:*"]
        assert inp.acts_on == "compute" and inp.lo < 1 < inp.hi
        assert inp.lo == pytest.approx(slowest_of(n, cv * hi) / slowest_of(n, cv))
        assert inp.hi == pytest.approx(slowest_of(n, cv * lo) / slowest_of(n, cv))
        by_ranks[n] = inp
    assert by_ranks[8192].lo < by_ranks[8].lo and by_ranks[8192].hi > by_ranks[8].hi
