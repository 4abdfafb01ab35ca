"""Calibration from a stored result set (ARCHITECTURE.md, "Calibration"): what the set measured,
cleaned of the timing loop's own costs, laid over the sourced default file as measured entries
(clusters.calibration) that answer only what they measured; and the choice of calibration
`project`, `versus`, `validate` and `report` make.

What a set may set, and how:
- software-stack efficiencies of its own chip family, per kernel class, dtype and kernel
  implementation: GEMMs (XLA:GPU calls cuBLAS(Lt), the library the projected stacks call; the
  set's vendor check states ours against torch's cuBLAS on the same card, and a GEMM class
  that fails it sets nothing), fused attention (cuDNN's forward+backward, which stands in for a
  stack that runs cuDNN; a Hopper stack runs FlashAttention-3, which no set measures), decode
  attention. Curves are sized by a call's ideal duration (FLOPs over the dtype's peak), so a
  chip of the same family with another peak reads them at its own call durations, and a GEMM
  curve answers only calls as far above their chip's ridge point as its own points were;
- hardware characteristics of its own chip (the catalog chip, or the device kind): achievable
  memory bandwidth by operation (streams, norms, KV-cache reads) and the weight-streaming
  efficiency of thin (memory-bound) GEMMs, sized by bytes.
Nothing of a set answers another family, another dtype, another kernel implementation or a
size outside what it measured: the published entry answers there, and the lookup records
"extrapolated".

Cases are cleaned first (`clean_time`): a device-loop case flagged near the loop's own cost is
left out (its time bounds the kernel's from above; subtracting the empty loop's cost gives
bandwidths above the peak on the H200 set, so it is no correction), and a device-loop case
whose loop body copied its carried input is corrected by that copy's time at the set's own
stream bandwidth (the copies are counted from the compiled program, timing.loop_copies; a GPU
set that predates the count is taken to have made one, as the first H200 run's loop did).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from clusters.calibration import FLASH_FWD_BWD_OVER_FWD, Calibration, Entry, default_calibration
from clusters.catalog import load_chip
from clusters.dtypes import bytes_per_element
from clusters.errors import ModelInputError
from harness.errors import UserError
from harness.conditions import CLOCK_LIMIT_REASONS
from harness.resultset import (created_time, load, load_dataframe, resolve_set, sets_by_age,
                               to_dataframe)

# GPU reference sets measured with this repository; `project`, `versus` and `report` calibrate
# from the newest when there is one
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"
# harness result-set groups -> kernel classes (matmul_model: GEMMs at models' layer shapes)
_GROUP_TO_KERNEL = {"matmul": "gemm", "matmul_model": "gemm", "matmul_grouped": "gemm",
                    "attention": "attention",
                    "decode_attention": "decode_attention", "membw": "memory", "copy": "memory"}
# A membw or copy case's operation (kernels/membw.py) -> the memory operation class its points
# measure (clusters.calibration.MEMORY_OPS, and "norm", which no projection prices)
MEMORY_OP_OF_CASE = {"stream_add": "stream", "copy": "stream", "rmsnorm": "norm"}
# Attention implementations of kernels/attention.py, most preferred first where nothing else
# decides which a local projection uses: cuDNN's fused kernel, XLA's, the plain jnp reference.
ATTENTION_IMPL_PREFERENCE = ("cudnn", "xla", "jnp")
# forward+backward over forward FLOPs as the harness counts them (kernels/attention.py: no
# recompute); the model's entries count the FlashAttention convention (FLASH_FWD_BWD_OVER_FWD)
HARNESS_FWD_BWD_OVER_FWD = 3.0
# A GEMM case calibrates the compute curve only this many times above its chip's ridge point
# (peak FLOP/s over bandwidth): nearer it its time depends on the memory system as well, which
# differs between chips of one family (H20's ridge is a fifth of H200's).
COMPUTE_BOUND_MARGIN = 2.0
# The note harness.timing gives a device-loop case within 5x of the empty loop's cost
NEAR_OVERHEAD_NOTE = "near the device loop's own cost"
# A correction for the loop's copies may take at most this share of a case's time; beyond it
# the case says more about the copy than about the kernel, and is left out.
MAX_CORRECTION = 0.5
# A measured curve answers half a pooling bin beyond its outermost points (POOL_DECADES)
POOL_DECADES = 0.25
VENDOR_GATE = 0.9  # ours over the vendor library's rate on the same card (harness.vendor)


@dataclass(frozen=True)
class _SetContext:
    name: str
    kind: str  # the device kind
    platform: str
    family: str  # catalog family, else the device kind
    chip: str  # catalog chip name, else the device kind
    nvidia: bool
    burst: bool  # timed at boost clock: derate by the family's sustained-clock factor
    copy_bw: float | None  # the set's best host-loop stream bandwidth, bytes/s
    vendor: dict  # case name -> ours over vendor (harness.vendor)


def _context(df, name: str, family: str | None) -> _SetContext:
    device = df.attrs.get("device", {}) or {}
    meta = df.attrs.get("meta", {}) or {}
    kind = str(device.get("kind") or device.get("device_kind") or "unknown device")
    platform = str(device.get("platform") or "").lower()
    catalog = load_chip(device["catalog_chip"]) if device.get("catalog_chip") else None
    fam = family or (catalog.family if catalog else kind)
    # Short kernel runs on an accelerator hold the boost clock, and the sustained-clock factor
    # derates them; but a run the power or thermal limit held (NVML's throttle reasons, in the
    # set's conditions and warnings) already is at the sustained clock. On an H200 (2026-11-30)
    # the power limit took the 8192^3 bf16 matmul from 789 to 701 TFLOP/s within 80 ms, and
    # every case runs 21 samples of at least 20 ms: its medians match the 8-GPU sustained
    # reading (MSMF 698.6 TFLOP/s) that the factor itself comes from.
    burst = platform not in ("", "cpu") and not held_at_limit(meta)
    copy_bw = None
    if "group" in df and len(df):
        streams = df[(df["status"] == "ok") & (df["group"].isin(["membw", "copy"]))]
        for _, r in streams.iterrows():
            op = (r.get("params") or {}).get("op", "copy")
            rate = r.get("achieved_bytes_per_s")
            if (MEMORY_OP_OF_CASE.get(op) == "stream" and r.get("timing_method") == "host-loop"
                    and rate and not _nan(rate)):
                copy_bw = max(copy_bw or 0.0, float(rate))
    vendor = {str(v.get("case")): float(v["ratio"]) for v in meta.get("vendor_check") or []
              if isinstance(v, dict) and v.get("case") and isinstance(v.get("ratio"), (int, float))}
    return _SetContext(name, kind, platform, fam, catalog.name if catalog else kind,
                       bool(catalog and catalog.vendor.lower() == "nvidia"), burst, copy_bw, vendor)


def clean_time(r, ctx: _SetContext) -> tuple[float | None, str]:
    """A case's median time with the timing loop's own work taken out, and what was done (""),
    or None and why it is left out."""
    t = r.get("median_s")
    if t is None or _nan(t) or t <= 0:
        return None, "no median time"
    t = float(t)
    if r.get("timing_method") != "device-loop":
        return t, ""
    if any(str(n).startswith(NEAR_OVERHEAD_NOTE) for n in (r.get("timing_notes") or [])):
        return None, "within 5x of the device loop's own cost: an upper bound on its time"
    copies = r.get("loop_copies")
    assumed = copies is None or _nan(copies)
    if assumed:  # recorded since 2026-12-08; the first H200 run's loop copied once
        copies = 1 if ctx.platform not in ("", "cpu") else 0
    copies = int(copies)
    if copies == 0:
        return t, ""
    carried = r.get("carried_bytes")
    if carried is None or _nan(carried):
        carried = carried_bytes(r.get("group"), r.get("params") or {})
    bw = ctx.copy_bw or r.get("peak_bw_bytes_per_s")
    if not carried or not bw or _nan(bw):
        return None, "its device loop copied the carried input, of unknown size"
    extra = copies * 2.0 * float(carried) / float(bw)
    if extra > MAX_CORRECTION * t:
        return None, (f"its device loop's copies of the carried input ({copies} x "
                      f"{carried / 1e6:.0f} MB) take {extra / t:.0%} of its time")
    how = "assumed (a GPU set before the count was recorded)" if assumed else "counted"
    return t - extra, (f"corrected for {copies} copy of the carried input a repetition ({how}): "
                       f"{extra * 1e6:.1f} us at {bw / 1e12:.2f} TB/s")


def carried_bytes(group, params: dict) -> float | None:
    """The bytes of a case's first argument (what the device loop carries), from its params,
    for sets that predate timing.carried_bytes: kernels/matmul.py's A (m x k),
    kernels/attention.py's Q (b x t x heads x head_dim), kernels/membw.py's input."""
    dtype = params.get("dtype", "fp32")
    try:
        size = bytes_per_element(dtype)
        if group in ("matmul", "matmul_model"):
            return float(params["m"]) * float(params["k"]) * size
        if group == "matmul_grouped":
            return float(params["groups"]) * float(params["m"]) * float(params["k"]) * size
        if group in ("attention", "decode_attention"):
            return (float(params["b"]) * float(params["t"]) * float(params["n_heads"])
                    * float(params["head_dim"]) * size)
        if params.get("op") == "stream_add":
            return float(params["elements"]) * size
        if params.get("op") == "rmsnorm":
            return float(params["rows"]) * float(params["cols"]) * size
    except (KeyError, TypeError, ValueError, ModelInputError):  # params it cannot read
        return None
    return None


def _gemm_impl(ctx: _SetContext, dtype: str) -> tuple[str, str]:
    """The implementation a GEMM case ran and what states it: XLA:GPU lowers dots to cuBLAS
    (tests/kernels/test_gpu_paths.py finds the cuBLASLt call in the compiled fp8 matmul); the
    vendor check holds ours against torch.matmul on the same card."""
    if not (ctx.nvidia and ctx.platform in ("gpu", "cuda")):
        return f"xla:{ctx.platform or 'unknown'}", ""
    ratio = next((v for k, v in ctx.vendor.items() if k.startswith(f"matmul/{dtype}/")), None)
    if ratio is None:
        return "cublas", "XLA:GPU's cuBLAS call (no vendor check in this dtype)"
    if ratio < VENDOR_GATE:
        return "xla", (f"ours at {ratio:.1%} of torch's cuBLAS on the same card (vendor check, "
                       f"under {VENDOR_GATE:.0%}): not cuBLAS's rate")
    return "cublas", f"ours at {ratio:.1%} of torch's cuBLAS on the same card (vendor check)"


def calibration_from_dataframe(df, name: str, family: str | None = None,
                               attention_impl: str | None = None) -> Calibration:
    """The default file with what a result set (harness.resultset.load_dataframe) measured laid
    over it as measured entries (see the module notes): per kernel class, dtype and
    implementation, the ok cases' cleaned efficiencies against their size. `family` overrides
    the measuring device's (its catalog family, else its device kind); `attention_impl` puts
    that implementation's attention first (the closing-the-loop check passes the one its
    training step ran).

    Which cases: matmul and matmul_model for "gemm" (compute-bound by COMPUTE_BOUND_MARGIN; a
    memory-bound one measures weight streaming, memory operation "weights"); for "attention"
    forward+backward, causal when measured (what a decoder trains with), each implementation
    its own entry, stored in the default file's convention (FlashAttention papers:
    forward+backward = 3.5x forward FLOPs, sized by forward FLOPs; the harness counts 3x, so a
    measured fraction is scaled by 3.5/3 and its FLOPs divided by 3); "decode_attention" cases
    (a KV-cache read when memory-bound, operation "kv_read"); membw and copy cases for "memory",
    by operation (stream_add: "stream", rmsnorm: "norm")."""
    ctx = _context(df, name, family)
    ok = df[df["status"] == "ok"] if "status" in df else df
    points: dict[tuple, list] = {}  # (kernel, dtype, impl, op) -> [(size, eff, over_ridge)]
    spread_of: dict[tuple, list] = {}
    stated: dict[tuple, str] = {}
    notes: list[str] = []
    for group, kernel in _GROUP_TO_KERNEL.items():
        rows = ok[ok["group"] == group] if "group" in ok else ok.iloc[0:0]
        if kernel == "attention":
            rows = _training_attention_rows(rows)
        for _, r in rows.iterrows():
            params = r.get("params") or {}
            t, what = clean_time(r, ctx)
            if t is None:
                notes.append(f"{r.get('name')}: left out: {what}")
                continue
            if what:
                notes.append(f"{r.get('name')}: {what}")
            for key, pt in _points(kernel, r, params, t, ctx, stated):
                points.setdefault(key, []).append(pt)
                spread_of.setdefault(key, []).append(_ci_spread(r))
    entries = []
    order = ((attention_impl,) if attention_impl else ()) + ATTENTION_IMPL_PREFERENCE
    for key in sorted(points, key=lambda k: (k[0], k[1], order.index(k[2])
                                             if k[2] in order else len(order), k[3])):
        kernel, dtype, impl, op = key
        pts = points[key]
        sizes, effs = pooled([(s, e) for s, e, _ in pts])
        ridges = [x for _, _, x in pts if x is not None]
        spread = _median_spread(spread_of[key])
        source = f"measured: result set {name}" + (f" ({stated[key]})" if key in stated else "")
        entries.append(Entry(
            kernel, ctx.chip if kernel == "memory" else ctx.family, dtype, sizes, effs, source,
            ctx.burst and kernel != "memory", "flops" if kernel == "memory" else "seconds",
            spread=spread, spread_source="" if spread is None else (
                f"result set {name}: the 95% confidence intervals of its {len(pts)} cases' "
                "medians (median bounds)"),
            impl=impl, op=op, measured_in=name,
            domain=(min(sizes) - POOL_DECADES / 2, max(sizes) + POOL_DECADES / 2),
            min_over_ridge=min(ridges) if ridges else None))
    if not entries:
        raise UserError(f"{name}: result set has no ok matmul, attention or membw cases to "
                        "calibrate from")
    default = default_calibration()
    return replace(default, name=name,
                   description=f"the default file, with what {name} measured on {ctx.kind}",
                   entries=default.entries + tuple(entries), measured_on=ctx.kind,
                   measured_family=ctx.family, measured_chip=ctx.chip, set_notes=tuple(notes))


def _points(kernel: str, r, params: dict, t: float, ctx: _SetContext, stated: dict):
    """The calibration points of one cleaned case: (key, (size, efficiency, over_ridge))."""
    dtype = str(params.get("dtype", "*"))
    flops, moved = r.get("flops"), r.get("bytes")
    peak, bw = r.get("peak_flops_per_s"), r.get("peak_bw_bytes_per_s")

    def have(*v):
        return all(x is not None and not _nan(x) and x > 0 for x in v)

    def streamed(dt, op):  # a bandwidth point: the case's bytes at its cleaned time
        return ("memory", dt, "", op), (float(moved), min(1.0, moved / t / bw), None)

    if kernel == "memory":
        if have(moved, bw):
            yield streamed("*", MEMORY_OP_OF_CASE.get(str(params.get("op", "copy")), "stream"))
        return
    if not have(flops, peak):
        return
    over_ridge = flops / moved / (peak / bw) if have(moved, bw) else None
    if kernel == "gemm":
        if over_ridge is not None and over_ridge < 1.0:  # memory-bound: it streams weights
            yield streamed(dtype, "weights")
            return
        if over_ridge is not None and over_ridge < COMPUTE_BOUND_MARGIN:
            return
        if params.get("impl"):  # a grouped GEMM (ragged_dot): sized per group, as one expert's
            per_call = flops / float(params.get("groups") or 1)
            yield ("gemm", dtype, str(params["impl"]), "*"), (
                per_call / peak, min(1.0, flops / t / peak), over_ridge)
            return
        impl, why = _gemm_impl(ctx, dtype)
        if why:
            stated[("gemm", dtype, impl, "*")] = why
        yield ("gemm", dtype, impl, "*"), (flops / peak, min(1.0, flops / t / peak), over_ridge)
    elif kernel == "attention":
        eff = flops / t / peak * FLASH_FWD_BWD_OVER_FWD / HARNESS_FWD_BWD_OVER_FWD
        fwd = flops / HARNESS_FWD_BWD_OVER_FWD
        yield ("attention", dtype, str(params.get("impl", "")), "*"), (fwd / peak, min(1.0, eff), None)
    elif kernel == "decode_attention":
        if over_ridge is not None and over_ridge < 1.0:  # memory-bound: it reads its cache
            yield streamed("*", "kv_read")
            return
        yield ("decode_attention", dtype, str(params.get("impl", "")), "*"), (
            flops / peak, min(1.0, flops / t / peak), None)


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


def _training_attention_rows(rows):
    """The attention cases a training projection prices with (see calibration_from_dataframe):
    forward+backward, causal if any; every implementation (each becomes its own entry)."""
    if rows.empty or "params" not in rows:
        return rows
    rows = rows[_param(rows, "pass").fillna("fwd_bwd") == "fwd_bwd"]
    causal = _param(rows, "causal")
    if bool((causal == True).any()):  # noqa: E712 - a column of bools/None
        rows = rows[causal == True]  # noqa: E712
    return rows


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


def _on_gpu(meta) -> bool:
    return str((meta.get("device") or {}).get("platform", "")).lower() in ("gpu", "cuda")


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
        if not _on_gpu(rs.meta):
            continue
        why = _unfit_reference(rs)
        if why is None:
            return (p, to_dataframe(rs)), skipped
        skipped.append(f"{p.name}: not used as the calibration: {why}")
    return None, skipped


# --calibration's two words: the sourced default file, and make bench's choice
DEFAULT_SPEC, AUTO_SPEC = "default", "auto"


@dataclass(frozen=True)
class Choice:
    """A calibration, one line saying which and why, and the reference sets passed over."""

    calibration: Calibration
    why: str
    passed_over: tuple[str, ...] = ()
    path: Path | None = None  # the set that calibrates; None: the default file alone


@lru_cache(maxsize=8)
def _from_file(path: str, mtime_ns: int, size: int) -> Calibration:
    """A set's calibration, read once per file version (validate asks for it once per row)."""
    return calibration_from_dataframe(load_dataframe(path), Path(path).name)


def from_set(spec: str | Path, results_dir: str | Path = "results") -> Calibration:
    """The calibration of the set `spec` names (a file, `latest`, a directory; resolve_set)."""
    path = resolve_set(str(spec), results_dir)
    if not Path(path).is_file():
        load(path)  # the one-line error naming it
    st = Path(path).stat()
    return _from_file(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def _default_or_reference(reference_dir) -> Choice:
    chosen, skipped = reference_sets(reference_dir)
    if chosen is not None:
        p, df = chosen
        return Choice(calibration_from_dataframe(df, p.name),
                      f"calibration: {p.name}, the newest GPU set in results/reference/ (complete, "
                      "no failed case)", tuple(skipped), p)
    default = default_calibration()
    if skipped:  # said wherever the calibration is named (Calibration.notes_for)
        default = replace(default, description=f"{default.description}; " + "; ".join(skipped))
    return Choice(default, "calibration: the default file (published kernel figures); no "
                  "complete GPU set without failed cases in results/reference/", tuple(skipped))


def _unfit_for_auto(rs) -> str | None:
    """Why make bench's own run cannot calibrate its head-to-head, or None."""
    dev = rs.meta.get("device") or {}
    if not _on_gpu(rs.meta):
        return f"it was measured on {dev.get('kind') or 'a CPU'}, whose kernels set nothing for GPU or NPU targets"
    if not dev.get("catalog_chip"):
        return f"its device ({dev.get('kind')}) is not a catalog chip"
    if rs.meta.get("complete") is False:
        return "it is incomplete (resume it with rackbench run --resume)"
    return None


def newest_run(results_dir: str | Path) -> Path:
    """The newest set this machine's runs stored under `results_dir` (its machine directories,
    results/reference/ left out: those sets were measured elsewhere)."""
    base = Path(results_dir)
    if not base.is_dir():
        raise UserError(f"{base}: no such results directory")
    dirs = [base] + [d for d in sorted(base.iterdir()) if d.is_dir() and d.name != "reference"]
    newest = [(created_time(f[-1]) or "", f[-1].name, f[-1]) for f in map(sets_by_age, dirs) if f]
    if not newest:
        raise UserError(f"{base}: no result sets (*.json) here or in its machine directories "
                        "(results/reference/ aside)")
    return max(newest)[2]


def choose(spec: str | Path | None = None, reference_dir: str | Path | None = REFERENCE_DIR,
           results_dir: str | Path = "results") -> Choice:
    """The calibration a command uses, and why:
    - a set (file, `latest`, directory): that set over the default file;
    - "default": the sourced default file;
    - "auto" (make bench; "auto:DIR" for another results directory): the newest set in
      `results_dir` when it was measured on a catalog GPU and is complete (its failed cases
      measure nothing), else as with no spec;
    - None: the newest GPU set in `reference_dir` that is complete with no failed case, else
      the default file."""
    if spec is None:
        return _default_or_reference(reference_dir)
    if str(spec) == DEFAULT_SPEC:
        return Choice(default_calibration(), "calibration: the default file (published kernel "
                      "figures), as asked")
    if str(spec) == AUTO_SPEC or str(spec).startswith(AUTO_SPEC + ":"):
        results_dir = str(spec)[len(AUTO_SPEC) + 1:] or results_dir

        try:
            path = newest_run(results_dir)
        except UserError as exc:
            fallback = _default_or_reference(reference_dir)
            return replace(fallback, why=f"{fallback.why} (auto: no run in {results_dir}/: {exc})")
        rs = load(path)
        why = _unfit_for_auto(rs)
        if why is not None:
            fallback = _default_or_reference(reference_dir)
            return replace(fallback, why=f"{fallback.why} (auto: the run just made, {path.name}, "
                           f"is not used: {why})")
        failed = sum(c.status == "failed" for c in rs.cases)
        tail = f"; its {failed} failed cases measure nothing" if failed else ""
        return Choice(from_set(path, results_dir),
                      f"calibration: {path.name}, the run just made (auto: measured on "
                      f"{rs.meta['device'].get('kind')}, a catalog GPU, and complete{tail})",
                      path=path)
    path = resolve_set(str(spec), results_dir)
    cal = from_set(path, results_dir)
    return Choice(cal, f"calibration: {cal.name} over the default file (--calibration {spec})",
                  path=Path(path))


def choose_calibration(path: str | Path | None = None,
                       reference_dir: str | Path | None = None) -> Calibration:
    """choose's calibration (see there)."""
    return choose(path, reference_dir).calibration


def priced_lines(priced_by: list[dict]) -> list[str]:
    """One line per kernel class, dtype and memory operation a projection priced: how many of
    its calls a measured entry answered, how many fell outside the measured sizes (published
    entry), and what priced the rest. Empty when nothing was measured (the default file)."""
    if not any(r["status"] != "default" or r["note"] for r in priced_by):
        return []
    groups: dict[tuple, list[dict]] = {}
    for r in priced_by:
        groups.setdefault((r["kernel"], r["dtype"], r["op"]), []).append(r)
    lines = []
    for (kernel, dtype, op), rows in groups.items():
        calls = sum(r["calls"] for r in rows)
        bits = []
        for status in ("measured", "extrapolated", "default"):
            these = [r for r in rows if r["status"] == status]
            if not these:
                continue
            n = sum(r["calls"] for r in these)
            entries = ", ".join(dict.fromkeys(r["entry"] for r in these))
            notes = "; ".join(dict.fromkeys(r["note"] for r in these if r["note"]))
            bits.append(f"{status} {n}/{calls} ({entries}{': ' + notes if notes else ''})")
        what = " ".join(x for x in (kernel if not op else f"{kernel}:{op}", dtype) if x)
        lines.append(f"{what}: " + "; ".join(bits))
    return lines


def priced_counts(priced_by: list[dict]) -> dict[str, int]:
    """Calls by status (measured, extrapolated, default) over a projection's lookups."""
    out = {"measured": 0, "extrapolated": 0, "default": 0}
    for r in priced_by:
        out[r["status"]] += r["calls"]
    return out
