"""Kernel efficiencies (achieved rate / the measuring device's peak) that turn FLOPs and bytes
into time on a target chip: from a result set, or from the sourced default data file.

Three kernel classes: "gemm" (matmul), "attention" (fused attention, forward+backward for
training), "memory" (bandwidth-bound: elementwise, norms, copies). An efficiency may vary with
size (FLOPs for compute kernels, bytes for memory): it is interpolated in log10(size) between
measured points and held flat outside them.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from harness.errors import UserError

DEFAULT_PATH = Path(__file__).parent / "data" / "calibration" / "default.toml"
KERNELS = ("gemm", "attention", "memory")
# harness result-set groups -> kernel classes (matmul_model: GEMMs at models' layer shapes)
_GROUP_TO_KERNEL = {"matmul": "gemm", "matmul_model": "gemm", "attention": "attention",
                    "membw": "memory", "copy": "memory"}
# Attention implementations of kernels/attention.py, most preferred first for calibrating a
# flash-attention training model: cuDNN's fused kernel, XLA's, the plain jnp reference.
ATTENTION_IMPL_PREFERENCE = ("cudnn", "xla", "jnp")
# forward+backward over forward FLOPs: as the harness counts them (kernels/attention.py: no
# recompute) and as FlashAttention's benchmarks and this file's attention entries do (the
# backward recomputes QK^T: 5 GEMMs against 2, Dao 2023 arXiv 2307.08691 sec. 3.1)
HARNESS_FWD_BWD_OVER_FWD = 3.0
FLASH_BWD_OVER_FWD = 2.5  # clusters.train charges the backward at this multiple of the forward
FLASH_FWD_BWD_OVER_FWD = 1.0 + FLASH_BWD_OVER_FWD


@dataclass(frozen=True)
class Entry:
    kernel: str
    family: str  # catalog chip family, or "*"
    dtype: str  # catalog dtype, or "*"
    log10_sizes: tuple[float, ...]  # empty: one efficiency for every size
    efficiencies: tuple[float, ...]
    source: str
    burst: bool = False  # measured in short bursts at boost clock (see Calibration.sustained)

    def at(self, size: float) -> float:
        if len(self.efficiencies) == 1:
            return self.efficiencies[0]
        return float(np.interp(math.log10(max(size, 1.0)), self.log10_sizes, self.efficiencies))


@dataclass(frozen=True)
class SoftwareFactor:
    """Multiplies borrowed efficiencies for a chip family (compute kernels / memory kernels)."""

    compute: float
    memory: float
    source: str


@dataclass(frozen=True)
class Calibration:
    name: str
    description: str
    entries: tuple[Entry, ...]
    software_factors: Mapping[str, SoftwareFactor] = field(default_factory=dict)
    measured_on: str | None = None  # device kind of a result set; None for the default file
    borrow: Mapping[str, str] = field(default_factory=dict)  # family -> family to borrow from
    # Compute kernels timed in short bursts run at boost clock; a training run sustains the
    # power-saturated clock. family (or "*") -> (factor, source), applied to burst entries.
    sustained: Mapping[str, tuple[float, str]] = field(default_factory=dict)

    def lookup(self, kernel: str, family: str, dtype: str) -> tuple[Entry, bool]:
        """The entry used and whether it was borrowed from another family."""
        # None as dtype: any dtype measured on the family borrowed from (a CPU set may only
        # have fp32); never another dtype of the target's own family (int8 is not bf16)
        order = [(family, dtype), (family, "*")]
        if family in self.borrow:
            b = self.borrow[family]
            order += [(b, dtype), (b, "*"), (b, None)]
        order += [("*", dtype), ("*", "*")]
        for fam, dt in order:
            for e in self.entries:
                if e.kernel == kernel and e.family == fam and (dt is None or e.dtype == dt):
                    return e, fam != family
        raise UserError(f"calibration {self.name!r} has no {kernel!r} efficiency for {family} "
                        f"{dtype} (add an entry for family '*')")

    def efficiency(self, kernel: str, family: str, dtype: str, size: float = 0.0) -> float:
        entry, borrowed = self.lookup(kernel, family, dtype)
        eff = entry.at(size)
        if entry.burst and kernel != "memory":
            eff *= self.sustained.get(family, self.sustained.get("*", (1.0, "")))[0]
        factor = self.software_factors.get(family)
        if borrowed and factor is not None:
            eff *= factor.memory if kernel == "memory" else factor.compute
        return eff

    def notes_for(self, family: str, vendor_is_gpu: bool = True) -> list[str]:
        """What a reader should know about using this calibration for `family`."""
        notes = [f"calibration: {self.name} ({self.description})"]
        if self.measured_on is not None and "cpu" in self.measured_on.lower() and vendor_is_gpu:
            notes.append(f"calibrated on {self.measured_on}, unlike the target ({family}): "
                         "efficiencies transfer poorly")
        factor = self.software_factors.get(family)
        if factor is not None:
            notes.append(f"software factor for {family}: compute x{factor.compute}, memory "
                         f"x{factor.memory} on borrowed efficiencies ({factor.source})")
        return notes

    def with_software_factor(self, family: str, compute: float, memory: float,
                             source: str = "user override") -> "Calibration":
        factors = dict(self.software_factors)
        factors[family] = SoftwareFactor(compute, memory, source)
        return Calibration(self.name, self.description, self.entries, factors, self.measured_on,
                           self.borrow, self.sustained)


def _bad(where, msg):
    raise UserError(f"{where}: {msg}")


def load_calibration_file(path: str | Path = DEFAULT_PATH) -> Calibration:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: calibration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"name", "description", "entry", "software_factor", "borrow",
                          "sustained_clock"}
    if unknown:
        _bad(path, f"unknown key {sorted(unknown)[0]!r}")
    entries = []
    for i, e in enumerate(doc.get("entry", [])):
        where = f"{path}: entry {i + 1}"
        extra = set(e) - {"kernel", "family", "dtype", "efficiency", "points", "source", "burst"}
        if extra:
            _bad(where, f"unknown key {sorted(extra)[0]!r}")
        if e.get("kernel") not in KERNELS:
            _bad(where, f"key 'kernel' must be one of {KERNELS}, got {e.get('kernel')!r}")
        if not str(e.get("source", "")).strip():
            _bad(where, "missing key 'source'")
        if "points" in e:  # [[size, efficiency], ...]
            pts = sorted((float(s), float(v)) for s, v in e["points"])
            sizes = tuple(math.log10(s) for s, _ in pts)
            effs = tuple(v for _, v in pts)
        elif "efficiency" in e:
            sizes, effs = (), (float(e["efficiency"]),)
        else:
            _bad(where, "missing key 'efficiency' (or 'points')")
        if not all(0 < v <= 1 for v in effs):
            _bad(where, f"key 'efficiency' must be in (0, 1], got {effs}")
        entries.append(Entry(e["kernel"], e.get("family", "*"), e.get("dtype", "*"), sizes,
                             effs, e["source"], bool(e.get("burst", False))))
    factors = {}
    for fam, f in doc.get("software_factor", {}).items():
        for key in ("compute", "memory", "source"):
            if key not in f:
                _bad(path, f"[software_factor.{fam}] missing key {key!r}")
        if not (0 < f["compute"] <= 1.5 and 0 < f["memory"] <= 1.5):
            _bad(path, f"[software_factor.{fam}] factors must be in (0, 1.5]")
        factors[fam] = SoftwareFactor(float(f["compute"]), float(f["memory"]), f["source"])
    borrow = doc.get("borrow", {})
    if not all(isinstance(v, str) for v in borrow.values()):
        _bad(path, "[borrow] values must be family names")
    sustained = {}
    for fam, f in doc.get("sustained_clock", {}).items():
        if not isinstance(f, dict) or not 0 < f.get("factor", 0) <= 1 or "source" not in f:
            _bad(path, f"[sustained_clock.{fam}] needs factor in (0, 1] and source")
        sustained[fam] = (float(f["factor"]), f["source"])
    return Calibration(doc.get("name", path.stem), doc.get("description", str(path)),
                       tuple(entries), factors, borrow=dict(borrow), sustained=sustained)


def default_calibration() -> Calibration:
    return load_calibration_file(DEFAULT_PATH)


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
        from clusters.catalog import load_chip

        family = load_chip(device["catalog_chip"]).family
    fam = family or kind
    # Harness kernels are timed in short runs: on an accelerator that is the boost clock.
    burst = platform not in ("", "cpu")
    entries = []
    ok = df[df["status"] == "ok"] if "status" in df else df
    by_key: dict[tuple[str, str], list[tuple[float, float]]] = {}
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
    for (kernel, dtype), pts in sorted(by_key.items()):
        sizes, effs = _pooled(pts)
        entries.append(Entry(kernel, fam, dtype, sizes, effs, f"measured: result set {name}", burst))
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
                       measured_on=kind, borrow=borrow, sustained=default.sustained)


# Cases within this many decades of size are pooled into one calibration point.
POOL_DECADES = 0.25


def _pooled(points: list[tuple[float, float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
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


def choose_calibration(path: str | Path | None = None,
                       reference_dir: str | Path | None = None) -> Calibration:
    """--calibration FILE when given; else the newest GPU reference set in reference_dir;
    else the default data file. Never silently a CPU set for a GPU target."""
    from harness.resultset import load_dataframe

    if path is not None:
        return calibration_from_dataframe(load_dataframe(path), Path(path).name)
    if reference_dir is not None and Path(reference_dir).is_dir():
        for p in sorted(Path(reference_dir).glob("*.json"), key=lambda p: p.stat().st_mtime,
                        reverse=True):
            df = load_dataframe(p)
            dev = df.attrs.get("device", {}) or {}
            if str(dev.get("platform", "")).lower() in ("gpu", "cuda"):
                return calibration_from_dataframe(df, p.name)
    return default_calibration()
