"""Calibrating from a result set (harness.studies.calibrate)."""
import math

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
                         bytes=None, achieved_bytes_per_s=None, peak_bw_bytes_per_s=None))
    rows.append(dict(name="copy", group="copy", status="ok", params={"dtype": "bf16"}, flops=None,
                     achieved_flops_per_s=None, peak_flops_per_s=None, bytes=1e9,
                     achieved_bytes_per_s=0.9 * 3.35e12, peak_bw_bytes_per_s=3.35e12))
    rows.append(dict(name="matmul", group="matmul", status="failed", params={"dtype": "bf16"},
                     flops=1e12, achieved_flops_per_s=None, peak_flops_per_s=989e12, bytes=None,
                     achieved_bytes_per_s=None, peak_bw_bytes_per_s=None))
    df = pd.DataFrame(rows)
    df.attrs["device"] = {"kind": "NVIDIA H100 80GB HBM3" if platform == "gpu" else "cpu",
                          "platform": platform, "catalog_chip": chip}
    return df


def test_calibration_from_a_result_set_interpolates_by_size():
    cal = calibration_from_dataframe(_frame(), "set.json")
    sustained = 0.848  # a GPU result set is timed in bursts
    assert cal.efficiency("gemm", "nvidia-hopper", "bf16", 1e10) == pytest.approx(0.45 * sustained)
    assert cal.efficiency("gemm", "nvidia-hopper", "bf16", 1e15) == pytest.approx(0.8 * sustained)
    assert cal.efficiency("memory", "nvidia-hopper", "bf16", 1e9) == pytest.approx(0.9)
    # attention was not measured: the default file's entry fills in
    default = default_calibration()
    call, peak = 1e12, 989e12
    assert cal.efficiency("attention", "nvidia-hopper", "bf16", call, peak) == pytest.approx(
        default.efficiency("attention", "nvidia-hopper", "bf16", call, peak))
    # another family borrows the measurement; Ascend with its software factor
    assert cal.efficiency("gemm", "ascend-910c", "bf16", 1e15) == pytest.approx(
        0.8 * 0.848 * 0.981)


def test_a_measured_calibration_inherits_the_chip_spread_and_the_ranges():
    """One measured device says nothing of how chips of its kind differ: the set's calibration
    takes the default file's chip-to-chip spread (so a job runs at its slowest device's pace
    as it does on the default) and the ranges of everything it inherits."""
    cal = calibration_from_dataframe(_frame(), "set.json")
    default = default_calibration()
    assert cal.chip_spread == default.chip_spread and cal.chip_spread
    assert cal.pace("nvidia-hopper", 384) == default.pace("nvidia-hopper", 384) < 0.96
    assert cal.spreads == default.spreads


def test_cpu_calibration_says_so():
    cal = calibration_from_dataframe(_frame("cpu", None), "cpu.json")
    assert any("calibrated on cpu" in n for n in cal.notes_for("nvidia-hopper"))


def test_result_set_without_usable_cases():
    df = _frame().iloc[0:0]
    df.attrs["device"] = {"kind": "x"}
    with pytest.raises(UserError, match="no ok matmul"):
        calibration_from_dataframe(df, "empty.json")


def test_cpu_set_with_only_fp32_still_calibrates_a_gpu_target_and_says_so():
    df = _frame("cpu", None)
    df["params"] = [{"dtype": "fp32"}] * len(df)
    cal = calibration_from_dataframe(df, "cpu.json")
    assert cal.efficiency("gemm", "nvidia-hopper", "bf16", 1e15) == pytest.approx(0.8)
    assert any("calibrated on cpu" in n for n in cal.notes_for("nvidia-hopper"))


def test_harness_groups_map_to_kernel_classes():
    df = _frame()
    df.loc[df["group"] == "copy", "group"] = "membw"
    df.loc[0, "group"] = "matmul_model"
    cal = calibration_from_dataframe(df, "set.json")
    assert cal.efficiency("memory", "nvidia-hopper", "bf16", 1e9) == pytest.approx(0.9)
    assert cal.lookup("gemm", "nvidia-hopper", "bf16")[0].source == "measured: result set set.json"


def _attention_rows():
    rows = []
    for impl, causal, passes, eff in (("cudnn", True, "fwd_bwd", 0.45), ("xla", True, "fwd_bwd", 0.3),
                                      ("xla", False, "fwd_bwd", 0.6), ("cudnn", True, "fwd", 0.7),
                                      ("jnp", True, "fwd_bwd", 0.1)):
        rows.append(dict(name=f"attention/{impl}", group="attention", status="ok",
                         params={"dtype": "bf16", "impl": impl, "causal": causal, "pass": passes},
                         flops=3e12, achieved_flops_per_s=eff * 989e12, peak_flops_per_s=989e12,
                         bytes=1e9, achieved_bytes_per_s=None, peak_bw_bytes_per_s=3.35e12))
    df = pd.concat([_frame(), pd.DataFrame(rows)], ignore_index=True)
    df.attrs["device"] = _frame().attrs["device"]
    return df


def test_training_attention_is_causal_forward_backward_of_one_implementation_in_flash_units():
    # cuDNN (the fused flash kernel) when measured; the harness counts fwd+bwd as 3x forward,
    # the calibration (and FlashAttention's papers) 3.5x: 0.45 becomes 0.525, sized by fwd FLOPs
    cal = calibration_from_dataframe(_attention_rows(), "set.json")
    entry, _ = cal.lookup("attention", "nvidia-hopper", "bf16")
    assert entry.efficiencies == (pytest.approx(0.45 * 3.5 / 3),)
    assert entry.log10_sizes == (pytest.approx(12.0),)  # 3e12 / 3
    xla = calibration_from_dataframe(_attention_rows(), "set.json", attention_impl="xla")
    assert xla.lookup("attention", "nvidia-hopper", "bf16")[0].efficiencies == (
        pytest.approx(0.3 * 3.5 / 3),)  # causal only: the full-mask case is not a decoder's


def test_memory_bound_gemms_do_not_calibrate_gemm_efficiency():
    df = _frame()
    # a decode-like GEMM: its bytes at 3.35 TB/s take longer than its FLOPs at 989 TFLOP/s
    extra = dict(name="matmul/decode", group="matmul_model", status="ok", params={"dtype": "bf16"},
                 flops=1e10, achieved_flops_per_s=0.05 * 989e12, peak_flops_per_s=989e12,
                 bytes=1e9, achieved_bytes_per_s=None, peak_bw_bytes_per_s=3.35e12)
    df2 = pd.concat([df, pd.DataFrame([extra])], ignore_index=True)
    df2.attrs["device"] = df.attrs["device"]
    a = calibration_from_dataframe(df, "a").lookup("gemm", "nvidia-hopper", "bf16")[0]
    b = calibration_from_dataframe(df2, "b").lookup("gemm", "nvidia-hopper", "bf16")[0]
    assert a.efficiencies == b.efficiencies


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
    entry, _ = cal.lookup("gemm", "nvidia-hopper", "bf16")
    assert entry.spread == pytest.approx((np.median([1 / 1.25, 2 / 2.2, 3 / 3.3]),
                                          np.median([1 / 0.9, 2 / 1.9, 3 / 2.0])))
    assert "confidence intervals" in entry.spread_source


def test_a_run_held_at_the_power_limit_is_not_derated_again():
    """The H200 run (2026-11-30) was held by its 700 W limit (NVML: sw_power_cap): its medians
    are sustained readings, so the sustained-clock factor (0.848) must not apply on top. A run
    that stayed at boost is derated as before."""
    capped = _frame()
    capped.attrs["meta"] = {"warnings": ["GPU 0 throttled: sw_power_cap"]}
    assert calibration_from_dataframe(capped, "capped.json").efficiency(
        "gemm", "nvidia-hopper", "bf16", 1e15) == pytest.approx(0.8)
    snap = _frame()
    snap.attrs["meta"] = {"conditions": {"after": {"gpus": [{"throttle_reasons": ["hw_thermal_slowdown"]}]}}}
    assert calibration_from_dataframe(snap, "hot.json").efficiency(
        "gemm", "nvidia-hopper", "bf16", 1e15) == pytest.approx(0.8)
    idle = _frame()
    idle.attrs["meta"] = {"warnings": ["GPU 0 throttled: gpu_idle"],
                          "conditions": {"after": {"gpus": [{"throttle_reasons": ["gpu_idle"]}]}}}
    assert calibration_from_dataframe(idle, "boost.json").efficiency(
        "gemm", "nvidia-hopper", "bf16", 1e15) == pytest.approx(0.8 * 0.848)


def test_measured_memory_answers_every_dtype():
    """The H200 set streamed fp32 and bf16 only; an fp8 training projection asked for fp8
    memory and crashed (validate's T-NEMO-175B). Bytes are bytes: the measured points answer."""
    cal = calibration_from_dataframe(_frame(), "set.json")
    assert cal.efficiency("memory", "nvidia-hopper", "fp8", 1e9) == pytest.approx(0.9)
    assert cal.efficiency("memory", "nvidia-hopper", "bf16", 1e9) == pytest.approx(0.9)
    h200 = calibration_from_dataframe(load_dataframe(H200_SET), H200_SET.name)
    assert 0 < h200.efficiency("memory", "nvidia-hopper", "fp8", 1e9) <= 1


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
