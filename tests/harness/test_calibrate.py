"""Calibrating from a result set (harness.studies.calibrate)."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clusters.calibration import default_calibration

from harness.errors import UserError
from harness.resultset import load_dataframe
from harness.studies.calibrate import REFERENCE_DIR, calibration_from_dataframe

# the first GPU reference set: one H200, 2026-11-30 (README "On a GPU box")
H200_SET = REFERENCE_DIR / "vm-gpu-nvidia-h200-x1-24057e-20261130T161457.json"


def _frame(platform="gpu", chip="h100"):
    rows = []
    for size, eff in ((1e9, 0.3), (1e11, 0.6), (1e13, 0.8)):
        rows.append(dict(name="matmul", group="matmul", status="ok", params={"dtype": "bf16"},
                         flops=size, achieved_flops_per_s=eff * 989e12, peak_flops_per_s=989e12,
                         bytes=None, achieved_bytes_per_s=None, peak_bw_bytes_per_s=None,
                         median_s=size / (eff * 989e12)))
    rows.append(dict(name="copy", group="copy", status="ok", params={"dtype": "bf16"}, flops=None,
                     achieved_flops_per_s=None, peak_flops_per_s=None, bytes=1e9,
                     achieved_bytes_per_s=0.9 * 3.35e12, peak_bw_bytes_per_s=3.35e12,
                     median_s=1e9 / (0.9 * 3.35e12)))
    rows.append(dict(name="matmul", group="matmul", status="failed", params={"dtype": "bf16"},
                     flops=1e12, achieved_flops_per_s=None, peak_flops_per_s=989e12, bytes=None,
                     achieved_bytes_per_s=None, peak_bw_bytes_per_s=None))
    df = pd.DataFrame(rows)
    df.attrs["device"] = {"kind": "NVIDIA H100 80GB HBM3" if platform == "gpu" else "cpu",
                          "platform": platform, "catalog_chip": chip}
    return df


HOPPER_BF16 = 989e12


def _cal(df, name="set.json", **kw):
    return calibration_from_dataframe(df, name, **kw)


def _gemm(cal, flops, family="nvidia-hopper", dtype="bf16", peak=HOPPER_BF16, chip=None):
    return cal.efficiency("gemm", family, dtype, flops, peak, chip=chip)


def test_a_measured_gemm_curve_answers_inside_its_sizes_and_the_published_entry_outside():
    """Sized by a call's ideal duration (1 us, 101 us, 10 ms here), interpolated inside, and
    outside the measured sizes the published entry answers (never the curve held flat)."""
    cal = _cal(_frame())
    default = default_calibration()
    sustained = 0.848  # a GPU set timed at boost clock is derated to the sustained clock
    assert _gemm(cal, 1e10) == pytest.approx(0.45 * sustained)
    assert _gemm(cal, 1e12) == pytest.approx(0.7 * sustained)
    for outside in (1e15, 1e7):
        assert _gemm(cal, outside) == pytest.approx(_gemm(default, outside))
    # attention was not measured: the published entry
    call = 1e12
    assert cal.efficiency("attention", "nvidia-hopper", "bf16", call, HOPPER_BF16) == \
        pytest.approx(default.efficiency("attention", "nvidia-hopper", "bf16", call, HOPPER_BF16))


def test_what_priced_a_call_is_recorded():
    rec = _cal(_frame()).recording()
    _gemm(rec, 1e10)
    _gemm(rec, 1e15)
    rows = {r["status"]: r for r in rec.priced_by()}
    assert rows["measured"]["calls"] == 1 and rows["measured"]["source"] == "set.json"
    assert rows["extrapolated"]["entry"] == "gemm nvidia-hopper cublas"
    assert "outside the measured sizes" in rows["extrapolated"]["note"]


def test_a_measured_calibration_inherits_the_chip_spread_and_the_ranges():
    """One measured device says nothing of how chips of its kind differ: the set's calibration
    takes the default file's chip-to-chip spread (so a job runs at its slowest device's pace
    as it does on the default) and the ranges of everything it inherits."""
    cal = _cal(_frame())
    default = default_calibration()
    assert cal.chip_spread == default.chip_spread and cal.chip_spread
    assert cal.pace("nvidia-hopper", 384) == default.pace("nvidia-hopper", 384) < 0.96
    assert cal.spreads == default.spreads


def test_a_cpu_set_sets_nothing_for_a_gpu_target_and_says_so():
    df = _frame("cpu", None)
    df["params"] = [{"dtype": "fp32"}] * len(df)
    cal = _cal(df, "cpu.json")
    default = default_calibration()
    for flops in (1e10, 1e12, 1e15):
        assert _gemm(cal, flops) == _gemm(default, flops)
    assert cal.efficiency("memory", "nvidia-hopper", "bf16", 1e9, chip="h100") == \
        default.efficiency("memory", "nvidia-hopper", "bf16", 1e9, chip="h100")
    assert any("none of it applies to nvidia-hopper" in n for n in cal.notes_for("nvidia-hopper"))


def test_result_set_without_usable_cases():
    df = _frame().iloc[0:0]
    df.attrs["device"] = {"kind": "x"}
    with pytest.raises(UserError, match="no ok matmul"):
        calibration_from_dataframe(df, "empty.json")


def _measured(cal, kernel, **match):
    return [e for e in cal.entries if e.measured and e.kernel == kernel
            and all(getattr(e, k) == v for k, v in match.items())]


def test_harness_groups_map_to_kernel_classes_and_memory_belongs_to_the_measuring_chip():
    df = _frame()
    df.loc[df["group"] == "copy", "group"] = "membw"
    df["params"] = [{"dtype": "bf16", "op": "stream_add"}] * len(df)
    df.loc[0, "group"] = "matmul_model"
    cal = _cal(df)
    # bytes streamed are a characteristic of the H100 that measured them, not of Hopper
    assert cal.efficiency("memory", "nvidia-hopper", "bf16", 1e9, chip="h100") == pytest.approx(0.9)
    assert cal.efficiency("memory", "nvidia-hopper", "bf16", 1e9, chip="h800") == \
        default_calibration().efficiency("memory", "nvidia-hopper", "bf16", 1e9, chip="h800")
    (gemm,) = _measured(cal, "gemm")
    assert gemm.source.startswith("measured: result set set.json") and gemm.impl == "cublas"


def _attention_rows(device=None):
    rows = []
    for impl, causal, passes, eff in (("cudnn", True, "fwd_bwd", 0.45), ("xla", True, "fwd_bwd", 0.3),
                                      ("xla", False, "fwd_bwd", 0.6), ("cudnn", True, "fwd", 0.7),
                                      ("jnp", True, "fwd_bwd", 0.1)):
        rows.append(dict(name=f"attention/{impl}", group="attention", status="ok",
                         params={"dtype": "bf16", "impl": impl, "causal": causal, "pass": passes},
                         flops=3e12, achieved_flops_per_s=eff * 989e12, peak_flops_per_s=989e12,
                         bytes=1e9, achieved_bytes_per_s=None, peak_bw_bytes_per_s=3.35e12,
                         median_s=3e12 / (eff * 989e12)))
    df = pd.concat([_frame(), pd.DataFrame(rows)], ignore_index=True)
    df.attrs["device"] = device or _frame().attrs["device"]
    return df


def test_training_attention_is_causal_forward_backward_per_implementation_in_flash_units():
    # the harness counts fwd+bwd as 3x forward, the calibration (and FlashAttention's papers)
    # 3.5x: 0.45 becomes 0.525, sized by the forward's ideal duration (1e12 FLOPs at peak)
    cal = _cal(_attention_rows())
    by_impl = {e.impl: e for e in _measured(cal, "attention")}
    assert set(by_impl) == {"cudnn", "xla", "jnp"}  # causal only: no full-mask entry
    assert by_impl["cudnn"].efficiencies == (pytest.approx(0.45 * 3.5 / 3),)
    assert by_impl["cudnn"].log10_sizes == (pytest.approx(math.log10(1e12 / 989e12)),)
    assert by_impl["xla"].efficiencies == (pytest.approx(0.3 * 3.5 / 3),)
    # Hopper's stack runs FlashAttention-3, which no set measures: the published entry answers
    default = default_calibration()
    rec = cal.recording()
    assert rec.efficiency("attention", "nvidia-hopper", "bf16", 1e12, 989e12) == \
        default.efficiency("attention", "nvidia-hopper", "bf16", 1e12, 989e12)
    assert "cudnn measured in set.json, but the stack runs fa3" in rec.priced_by()[0]["note"]


def test_a_memory_bound_gemm_measures_weight_streaming_not_gemm_efficiency():
    df = _frame()
    # a decode-like GEMM: its bytes at 3.35 TB/s take longer than its FLOPs at 989 TFLOP/s
    extra = dict(name="matmul/decode", group="matmul_model", status="ok", params={"dtype": "bf16"},
                 flops=1e10, achieved_flops_per_s=None, peak_flops_per_s=989e12,
                 bytes=1e9, achieved_bytes_per_s=0.6 * 3.35e12, peak_bw_bytes_per_s=3.35e12,
                 median_s=1e9 / (0.6 * 3.35e12))
    df2 = pd.concat([df, pd.DataFrame([extra])], ignore_index=True)
    df2.attrs["device"] = df.attrs["device"]
    a, b = _measured(_cal(df), "gemm")[0], _measured(_cal(df2), "gemm")[0]
    assert a.efficiencies == b.efficiencies
    (weights,) = _measured(_cal(df2), "memory", op="weights")
    assert weights.efficiencies == (pytest.approx(0.6),)
    assert _cal(df2).efficiency("memory", "nvidia-hopper", "bf16", 1e9, chip="h100",
                                op="weights") == pytest.approx(weights.efficiencies[0])


def test_measured_points_are_pooled_by_quarter_decade():
    from harness.studies.calibrate import pooled

    # three shapes of one size (noise and shape) and one far away: two points, medians
    sizes, effs = pooled([(1e9, 0.5), (1.1e9, 0.7), (1.2e9, 0.6), (1e11, 0.9)])
    assert len(sizes) == 2
    assert effs == (0.6, 0.9)
    assert sizes[0] == pytest.approx(math.log10(1.1e9)) and sizes[1] == pytest.approx(11.0)


def test_a_measured_entry_takes_its_range_from_the_sets_confidence_intervals():
    """A case timed at 1.0 ms with a 95% CI of 0.9-1.25 ms: efficiency may be 0.8-1.11 of
    the measured one; the entry carries the median of its cases' bounds, and the band
    (clusters.uncertainty) samples it."""
    import pandas as pd
    from harness.studies.calibrate import calibration_from_dataframe
    rows = []
    for m, lo, hi in ((1e-3, 0.9e-3, 1.25e-3), (2e-3, 1.9e-3, 2.2e-3), (3e-3, 2.0e-3, 3.3e-3)):
        rows.append({"name": f"matmul/bf16/{m}", "group": "matmul", "status": "ok",
                     "params": {"dtype": "bf16"}, "flops": 2e12 * m, "bytes": 1e6,
                     "peak_flops_per_s": 4e15, "achieved_flops_per_s": 2e15,
                     "median_s": m, "ci95_low_s": lo, "ci95_high_s": hi})
    df = pd.DataFrame(rows)
    df.attrs["device"] = {"kind": "NVIDIA H100 80GB HBM3", "platform": "gpu"}
    cal = calibration_from_dataframe(df, "set.json", family="nvidia-hopper")
    (entry,) = _measured(cal, "gemm")
    assert entry.spread == pytest.approx((np.median([1 / 1.25, 2 / 2.2, 3 / 3.3]),
                                          np.median([1 / 0.9, 2 / 1.9, 3 / 2.0])))
    assert "confidence intervals" in entry.spread_source


def test_a_run_held_at_the_power_limit_is_not_derated_again():
    """The H200 run (2026-11-30) was held by its 700 W limit (NVML: sw_power_cap): its medians
    are sustained readings, so the sustained-clock factor (0.848) must not apply on top. A run
    that stayed at boost is derated as before."""
    capped = _frame()
    capped.attrs["meta"] = {"warnings": ["GPU 0 throttled: sw_power_cap"]}
    assert _gemm(_cal(capped, "capped.json"), 1e13) == pytest.approx(0.8)
    snap = _frame()
    snap.attrs["meta"] = {"conditions": {"after": {"gpus": [{"throttle_reasons": ["hw_thermal_slowdown"]}]}}}
    assert _gemm(_cal(snap, "hot.json"), 1e13) == pytest.approx(0.8)
    idle = _frame()
    idle.attrs["meta"] = {"warnings": ["GPU 0 throttled: gpu_idle"],
                          "conditions": {"after": {"gpus": [{"throttle_reasons": ["gpu_idle"]}]}}}
    assert _gemm(_cal(idle, "boost.json"), 1e13) == pytest.approx(0.8 * 0.848)


def test_measured_memory_answers_every_dtype_of_its_chip():
    """The H200 set streamed fp32 and bf16 only; an fp8 training projection asked for fp8
    memory and crashed (validate's T-NEMO-175B). Bytes are bytes: the measured points answer
    every dtype, on the chip that measured them."""
    cal = _cal(_frame())
    assert cal.efficiency("memory", "nvidia-hopper", "fp8", 1e9, chip="h100") == pytest.approx(0.9)
    assert cal.efficiency("memory", "nvidia-hopper", "bf16", 1e9, chip="h100") == pytest.approx(0.9)
    h200 = calibration_from_dataframe(load_dataframe(H200_SET), H200_SET.name)
    assert 0.8 < h200.efficiency("memory", "nvidia-hopper", "fp8", 4e9, chip="h200") <= 1


def test_a_reference_set_with_failed_cases_is_passed_over_and_named(tmp_path):
    """results/reference/ calibrates `project`, `versus` and `validate` by default only with a
    complete set that has no failed case; a set passed over is named with the reason."""
    import shutil

    from harness.resultset import load, save
    from harness.studies.calibrate import choose_calibration, reference_sets

    h200 = load(H200_SET)
    assert sum(c.status == "failed" for c in h200.cases) == 8
    shutil.copy(H200_SET, tmp_path / "h200.json")
    cal = choose_calibration(None, tmp_path)
    assert cal.measured_on is None and "h200.json: not used as the calibration: 8 failed cases" in cal.description
    assert any("8 failed cases" in n for n in cal.notes_for("nvidia-hopper"))
    # the same set without its failed cases (and complete) is used
    h200.cases[:] = [c for c in h200.cases if c.status != "failed"]
    h200.meta["complete"] = True
    save(h200, tmp_path / "h200.json")
    (path, _), skipped = reference_sets(tmp_path)
    assert path.name == "h200.json" and skipped == []
    assert choose_calibration(None, tmp_path).measured_on == "NVIDIA H200"


def _store(rs, directory, name):
    from harness.resultset import save

    directory.mkdir(parents=True, exist_ok=True)
    save(rs, directory / name)
    return directory / name


def test_auto_takes_the_run_just_made_on_a_catalog_gpu_and_says_why(tmp_path):
    """make bench's head-to-head: the newest run of this machine calibrates when it was
    measured on a catalog GPU and is complete (its failed cases measure nothing); a CPU run,
    or an incomplete one, falls back with the reason; results/reference/ is not a run here."""
    from harness.resultset import load
    from harness.studies.calibrate import choose

    results = tmp_path / "results"
    h200 = load(H200_SET)
    h200.meta["complete"] = True
    _store(h200, results / "reference", "ref.json")  # not this machine's run
    fallback = choose("auto:" + str(results), reference_dir=tmp_path / "none")
    assert fallback.calibration.measured_on is None and "no run in" in fallback.why
    _store(h200, results / "vm-gpu-h200", "run.json")
    picked = choose("auto:" + str(results), reference_dir=tmp_path / "none")
    assert picked.calibration.measured_family == "nvidia-hopper"
    assert "run.json, the run just made" in picked.why and "8 failed cases" in picked.why
    h200.meta["complete"] = False
    _store(h200, results / "vm-gpu-h200", "run.json")
    assert "is incomplete" in choose("auto:" + str(results), tmp_path / "none").why
    cpu = load(Path(__file__).parent / "data" / "sets" / "vm-cpu-x8-20261128T162718-c64393e5-v1.json.gz")
    cpu.meta["created_utc"] = "2099-01-01T00:00:00+00:00"
    _store(cpu, results / "vm-cpu", "cpu.json")
    why = choose("auto:" + str(results), tmp_path / "none").why
    assert "cpu.json, is not used: it was measured on cpu" in why
    # falling back, the choice names the set that calibrates: a clean reference set, not the run
    h200.meta["complete"] = True
    h200.cases[:] = [c for c in h200.cases if c.status != "failed"]
    ref = _store(h200, tmp_path / "ref", "clean.json")
    fallback = choose("auto:" + str(results), tmp_path / "ref")
    assert fallback.path == ref and fallback.calibration.measured_chip == "h200"
    assert choose("default").path is None and picked.path == results / "vm-gpu-h200" / "run.json"


def test_default_and_a_named_set_and_a_missing_one(tmp_path):
    from harness.studies.calibrate import choose

    assert choose("default").calibration.measured_on is None
    named = choose(str(H200_SET))
    assert named.calibration.measured_chip == "h200" and "--calibration" in named.why
    with pytest.raises(UserError, match="nothing.json"):
        choose(str(tmp_path / "nothing.json"))


def test_decode_attention_and_grouped_gemm_cases_set_only_what_transfers():
    """A memory-bound GQA decode case measures the chip's cache-read bandwidth (kv_read, the H200
    only); an absorbed-MLA case's compute rate is XLA's, not FlashMLA's, so it prices no Hopper
    stack; a grouped GEMM (ragged_dot) stands in for no cuBLAS GEMM."""
    from kernels.decode_attention import decode_attention_case
    from kernels.matmul import grouped_matmul_case

    def row(case, eff, bound):
        rate = eff * (989e12 if bound == "flops" else 4.8e12)
        t = (case.flops if bound == "flops" else case.bytes) / rate
        return dict(name=case.name, group=case.group, status="ok", params=dict(case.params),
                    flops=case.flops, bytes=case.bytes, median_s=t, peak_flops_per_s=989e12,
                    peak_bw_bytes_per_s=4.8e12, achieved_flops_per_s=case.flops / t,
                    achieved_bytes_per_s=case.bytes / t, timing_method="host-loop")

    gqa = decode_attention_case("gqa", 64, 32768, 8, 1, 128)
    mla = decode_attention_case("mla", 64, 4096, 128, rows=2)
    grouped = grouped_matmul_case(32, 512, 4096, 7168, "bf16")
    df = pd.DataFrame([row(gqa, 0.8, "bytes"), row(mla, 0.5, "flops"), row(grouped, 0.6, "flops")])
    df.attrs["device"] = {"kind": "NVIDIA H200", "platform": "gpu", "catalog_chip": "h200"}
    cal, default = _cal(df, "h200.json"), default_calibration()
    assert cal.efficiency("memory", "nvidia-hopper", "fp8", gqa.bytes, chip="h200",
                          op="kv_read") == pytest.approx(0.8)
    for chip, op in (("h100", "kv_read"), ("h200", "stream")):
        assert cal.efficiency("memory", "nvidia-hopper", "fp8", gqa.bytes, chip=chip, op=op) == \
            default.efficiency("memory", "nvidia-hopper", "fp8", gqa.bytes, chip=chip, op=op)
    rec = cal.recording()
    assert rec.efficiency("decode_attention", "nvidia-hopper", "bf16", mla.flops, 989e12,
                          chip="h200") == default.efficiency(
        "decode_attention", "nvidia-hopper", "bf16", mla.flops, 989e12, chip="h200")
    assert "xla measured in h200.json, but the stack runs flashmla" in rec.priced_by()[0]["note"]
    (g,) = _measured(cal, "gemm")
    assert g.impl == "ragged_dot" and g.log10_sizes == (pytest.approx(
        math.log10(grouped.flops / 32 / 989e12)),)
    per_expert = grouped.flops / 32
    assert _gemm(cal, per_expert, chip="h200") == _gemm(default, per_expert, chip="h200")
