"""Calibration from a stored result set: the ok kernel cases turned into plain efficiencies
(clusters.calibration.Entry) the model can use, and the choice of calibration `project`,
`versus` and `report` make (a GPU reference set if there is one, else the sourced default)."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from clusters.calibration import (FLASH_FWD_BWD_OVER_FWD, Calibration, Entry,
                                  default_calibration)
from clusters.catalog import load_chip
from harness.errors import UserError
from harness.conditions import CLOCK_LIMIT_REASONS
from harness.resultset import load, load_dataframe, to_dataframe

# GPU reference sets measured with this repository; `project`, `versus` and `report` calibrate
# from the newest when there is one
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"
# harness result-set groups -> kernel classes (matmul_model: GEMMs at models' layer shapes)
_GROUP_TO_KERNEL = {"matmul": "gemm", "matmul_model": "gemm", "attention": "attention",
                    "membw": "memory", "copy": "memory"}
# Attention implementations of kernels/attention.py, most preferred first for calibrating a
# flash-attention training model: cuDNN's fused kernel, XLA's, the plain jnp reference.
ATTENTION_IMPL_PREFERENCE = ("cudnn", "xla", "jnp")
# forward+backward over forward FLOPs as the harness counts them (kernels/attention.py: no
# recompute); the model's entries count the FlashAttention convention (FLASH_FWD_BWD_OVER_FWD)
HARNESS_FWD_BWD_OVER_FWD = 3.0


def calibration_from_dataframe(df, name: str, family: str | None = None,
                               attention_impl: str | None = None) -> Calibration:
    """Efficiencies measured in a result set (harness.resultset.load_dataframe): per kernel
    class and dtype, the ok cases' fraction of the device's peak against their size. `family`
    is the catalog family of the measuring device (None: its device kind is used as the family,
    so every target borrows). Software factors of the default file still apply to borrowing
    families.

    Which cases: matmul and matmul_model (square sweep and real layer shapes) for "gemm",
    compute-bound shapes only (see _memory_bound); membw
    (stream_add and rmsnorm) for "memory"; for "attention" only forward+backward (training),
    causal when measured (what a decoder trains with), of one implementation: `attention_impl`
    when given (the closing-the-loop check passes the one its training step ran), otherwise
    the fused flash kernel ("cudnn") when the set has it, since the training model charges
    flash attention, else "xla", else the plain "jnp" reference. Attention efficiencies are
    stored in the default file's convention (FlashAttention papers: forward+backward =
    3.5x forward FLOPs, the backward recompute included, sized by forward FLOPs), which is how
    clusters.train consumes them; the harness counts 3x, so a measured fraction is scaled by
    3.5/3 and its size divided by 3. The projected attention time of a measured shape is then
    the measured time."""
    device = df.attrs.get("device", {}) or {}
    kind = str(device.get("kind") or device.get("device_kind") or "unknown device")
    platform = str(device.get("platform") or "").lower()
    if family is None and device.get("catalog_chip"):
        family = load_chip(device["catalog_chip"]).family
    fam = family or kind
    # Short kernel runs on an accelerator hold the boost clock, and the sustained-clock factor
    # derates them; but a run the power or thermal limit held (NVML's throttle reasons, in the
    # set's conditions and warnings) already is at the sustained clock. On an H200 (2026-11-30)
    # the power limit took the 8192^3 bf16 matmul from 789 to 701 TFLOP/s within 80 ms, and every
    # case runs 21 samples of at least 20 ms: its medians match the 8-GPU sustained reading
    # (MSMF 698.6 TFLOP/s) that the factor itself comes from.
    burst = platform not in ("", "cpu") and not held_at_limit(df.attrs.get("meta", {}) or {})
    entries = []
    ok = df[df["status"] == "ok"] if "status" in df else df
    by_key: dict[tuple[str, str], list[tuple[float, float]]] = {}
    spread_of: dict[tuple[str, str], list] = {}
    for group, kernel in _GROUP_TO_KERNEL.items():
        rows = ok[ok["group"] == group] if "group" in ok else ok.iloc[0:0]
        if kernel == "attention":
            rows = _training_attention_rows(rows, attention_impl)
        for _, r in rows.iterrows():
            params = r.get("params") or {}
            dtype = str(params.get("dtype", "*"))
            if kernel == "memory":
                peak, rate, size = r.get("peak_bw_bytes_per_s"), r.get("achieved_bytes_per_s"), r.get("bytes")
            else:
                peak, rate, size = r.get("peak_flops_per_s"), r.get("achieved_flops_per_s"), r.get("flops")
            if not peak or not rate or not size or any(map(_nan, (peak, rate, size))):
                continue
            if kernel == "gemm" and _memory_bound(r):
                continue  # the projection's roofline charges such shapes their bytes itself
            eff, size = float(rate) / float(peak), float(size)
            if kernel == "attention":
                eff *= FLASH_FWD_BWD_OVER_FWD / HARNESS_FWD_BWD_OVER_FWD
                size /= HARNESS_FWD_BWD_OVER_FWD
            by_key.setdefault((kernel, dtype), []).append((size, min(1.0, eff)))
            spread_of.setdefault((kernel, dtype), []).append(_ci_spread(r))
    # A memory kernel moves bytes whatever their type: the measured points also answer the
    # dtypes the set did not stream (an fp8 training projection asks for fp8 memory; the
    # H200 set has fp32 and bf16, and validate's T-NEMO-175B crashed on it).
    if any(k == "memory" for k, _ in by_key) and ("memory", "*") not in by_key:
        for (kernel, dtype), pts in list(by_key.items()):
            if kernel == "memory":
                by_key.setdefault(("memory", "*"), []).extend(pts)
                spread_of.setdefault(("memory", "*"), []).extend(spread_of[(kernel, dtype)])
    for (kernel, dtype), pts in sorted(by_key.items()):
        sizes, effs = pooled(pts)
        spread = _median_spread(spread_of[(kernel, dtype)])
        entries.append(Entry(kernel, fam, dtype, sizes, effs, f"measured: result set {name}", burst,
                             spread=spread, spread_source="" if spread is None else (
                                 f"result set {name}: the 95% confidence intervals of its "
                                 f"{len(pts)} cases' medians (median bounds)")))
    if not entries:
        raise UserError(f"{name}: result set has no ok matmul, attention or membw cases to "
                        "calibrate from")
    default = default_calibration()
    # Kernel classes the set did not measure fall back to the default file's entries.
    have = {e.kernel for e in entries}
    entries += [e for e in default.entries if e.kernel not in have]
    # Every target family borrows the measuring device's entries first.
    borrow = {f: fam for f in ("nvidia-ampere", "nvidia-hopper", "nvidia-blackwell",
                               "ascend-910b", "ascend-910c") if f != fam}
    return Calibration(name, f"measured on {kind}", tuple(entries), default.software_factors,
                       measured_on=kind, borrow=borrow, sustained=default.sustained,
                       ratios=default.ratios, variants=default.variants,
                       chip_spread=default.chip_spread,
                       # the ranges of what it inherits (sustained clock, ratios, software
                       # factors, chip spread) come with it
                       spreads=default.spreads)


def _ci_spread(r) -> tuple[float, float] | None:
    """A case's efficiency range from its median time's 95% CI, as multipliers (efficiency
    goes as 1/time): (median / CI high, median / CI low)."""
    med, lo, hi = r.get("median_s"), r.get("ci95_low_s"), r.get("ci95_high_s")
    if any(v is None or _nan(v) or v <= 0 for v in (med, lo, hi)):
        return None
    return min(1.0, float(med) / float(hi)), max(1.0, float(med) / float(lo))


def _median_spread(spreads) -> tuple[float, float] | None:
    have = [x for x in spreads if x is not None]
    if not have:
        return None
    return (min(1.0, float(np.median([a for a, _ in have]))),
            max(1.0, float(np.median([b for _, b in have]))))


# Cases within this many decades of size are pooled into one calibration point.
POOL_DECADES = 0.25


def pooled(points: list[tuple[float, float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(log10 sizes, efficiencies), one point per POOL_DECADES-wide bin of size: the median
    size and median efficiency of the cases in it. Different shapes of one size, and the run's
    own noise (10-20% between neighbouring cases on a busy CPU), would otherwise make the
    interpolated curve jump from case to case, and equal sizes give np.interp no order."""
    bins: dict[int, list[tuple[float, float]]] = {}
    for size, eff in points:
        bins.setdefault(math.floor(math.log10(size) / POOL_DECADES), []).append((math.log10(size), eff))
    sizes, effs = [], []
    for key in sorted(bins):
        b = bins[key]
        sizes.append(float(np.median([s for s, _ in b])))
        effs.append(float(np.median([e for _, e in b])))
    return tuple(sizes), tuple(effs)


def _param(rows, key):
    return rows["params"].map(lambda p: (p or {}).get(key))


def _training_attention_rows(rows, impl: str | None):
    """The attention cases a training projection should use (see calibration_from_dataframe):
    forward+backward, causal if any, one implementation."""
    if rows.empty or "params" not in rows:
        return rows
    rows = rows[_param(rows, "pass").fillna("fwd_bwd") == "fwd_bwd"]
    causal = _param(rows, "causal")
    if bool((causal == True).any()):  # noqa: E712 - a column of bools/None
        rows = rows[causal == True]  # noqa: E712
    impls = _param(rows, "impl")
    if impl is None:
        impl = next((i for i in ATTENTION_IMPL_PREFERENCE if bool((impls == i).any())), None)
    return rows if impl is None or impls.isna().all() else rows[impls == impl]


def _memory_bound(r) -> bool:
    """A GEMM whose compulsory bytes take longer at the measuring device's bandwidth ceiling
    than its FLOPs at the compute ceiling (few rows: decode, lightly loaded experts). Its
    fraction of peak FLOP/s measures memory, not the GEMM kernel's compute efficiency."""
    bw, moved, peak, flops = (r.get(k) for k in ("peak_bw_bytes_per_s", "bytes",
                                                  "peak_flops_per_s", "flops"))
    if not bw or not moved or any(map(_nan, (bw, moved))):
        return False
    return float(moved) / float(bw) > float(flops) / float(peak)


def _nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def held_at_limit(meta) -> bool:
    """Whether a run's GPUs were seen held by a power or thermal limit: a throttle reason in a
    conditions snapshot or in the warnings the runner writes from them (conditions.throttled;
    the meta keeps only the last call's snapshots, the warnings every call's)."""
    snaps = [s for s in ((meta.get("conditions") or {}).get(k) for k in ("before", "after")) if s]
    for snap in snaps:
        for g in snap.get("gpus") or []:
            if any(r in CLOCK_LIMIT_REASONS for r in g.get("throttle_reasons") or []):
                return True
    return any(" throttled: " in str(w) and any(r in str(w) for r in CLOCK_LIMIT_REASONS)
               for w in meta.get("warnings") or [])


def _unfit_reference(rs) -> str | None:
    """Why a GPU set cannot calibrate by default, or None: it must be complete, with no failed
    case (a wrong answer or a crash is no efficiency, and the efficiencies it leaves out would
    be interpolated from the others)."""
    failed = sum(c.status == "failed" for c in rs.cases)
    if failed:
        return f"{failed} failed case{'s' if failed != 1 else ''}"
    if rs.meta.get("complete") is False:
        return "incomplete (resume it with rackbench run --resume)"
    return None


def reference_sets(reference_dir: str | Path | None) -> tuple[tuple[Path, object] | None, list[str]]:
    """The newest GPU set in reference_dir fit to calibrate ((path, dataframe) or None), and a
    line for each newer GPU set passed over, with the reason. Sets are checked without pandas
    (the model commands' start-up: tests/harness/test_cli_startup.py); only the one used is
    made a dataframe."""
    skipped: list[str] = []
    if reference_dir is None or not Path(reference_dir).is_dir():
        return None, skipped
    for p in sorted(Path(reference_dir).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        rs = load(p)
        if str((rs.meta.get("device") or {}).get("platform", "")).lower() not in ("gpu", "cuda"):
            continue
        why = _unfit_reference(rs)
        if why is None:
            return (p, to_dataframe(rs)), skipped
        skipped.append(f"{p.name}: not used as the calibration: {why}")
    return None, skipped


def pick_calibration(path: str | Path | None = None,
                     reference_dir: str | Path | None = None) -> tuple[Calibration, list[str]]:
    """choose_calibration's choice, and a line for each reference set passed over (reference_sets)."""
    if path is not None:
        return calibration_from_dataframe(load_dataframe(path), Path(path).name), []
    chosen, skipped = reference_sets(reference_dir)
    if chosen is not None:
        p, df = chosen
        return calibration_from_dataframe(df, p.name), skipped
    default = default_calibration()
    if skipped:  # said wherever the calibration is named (Calibration.notes_for)
        default = replace(default, description=f"{default.description}; " + "; ".join(skipped))
    return default, skipped


def choose_calibration(path: str | Path | None = None,
                       reference_dir: str | Path | None = None) -> Calibration:
    """--calibration FILE when given; else the newest GPU reference set in reference_dir that
    is complete with no failed case (reference_sets); else the default data file. Never
    silently a CPU set for a GPU target."""
    return pick_calibration(path, reference_dir)[0]
