"""Kernel efficiencies (achieved rate / the device's peak) that turn FLOPs and bytes into time
on a target chip: the sourced default data file, and on top of it what a result set measured.

Four kernel classes: "gemm" (matmul), "attention" (fused attention, forward+backward for
training), "decode_attention" (attention of one new token over a KV cache), "memory"
(bandwidth-bound: elementwise, norms, copies; and, by operation class, KV-cache reads and the
weight streaming of thin GEMMs). An efficiency may vary with size (FLOPs, bytes, or a call's
ideal duration in seconds): it is interpolated in log10(size) between points and held flat
outside them.

Two kinds of entry (ARCHITECTURE.md, "Calibration"):
- published entries, each with its source: the software stack a family's projections run
  (cuBLAS GEMMs, FlashAttention-3 on Hopper, ...), found along a chain (the chip's own entry,
  its family's, a borrowed family's, any family's);
- measured entries (`measured_in` names the result set): a GEMM, attention or decode-attention
  curve answers only its own family, its own dtype and the same kernel implementation as the
  published entry it stands in for (`impl`), and only inside the sizes it measured (`domain`);
  a memory entry is a characteristic of the chip that measured it (its `family` is that chip's
  catalog name) and answers only that chip. Outside, the published entry answers and the
  lookup says "extrapolated". Every answer is recorded (`recording`, `priced_by`), so a
  projection can name, per kernel class, the entry that priced it and whether it was measured.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

from clusters.errors import ModelInputError
from clusters.tomldata import Field, check, read_toml

DEFAULT_PATH = Path(__file__).parent / "data" / "calibration" / "default.toml"
KERNELS = ("gemm", "attention", "decode_attention", "memory")
# Software-stack efficiencies: a measured curve stands in for its own family's published entry.
# "memory" is a hardware characteristic: a measured curve answers the chip that measured it.
STACK_KERNELS = ("gemm", "attention", "decode_attention")
# What a memory-bound call does with its bytes: "stream" (elementwise work, norms, copies),
# "kv_read" (decode attention reading a KV cache), "weights" (a thin GEMM streaming its
# weights). A published memory entry ("*") answers every operation; a measured one only its own.
MEMORY_OPS = ("stream", "kv_read", "weights")
# forward+backward over forward FLOPs as FlashAttention's benchmarks and this file's attention
# entries count them (the backward recomputes QK^T: 5 GEMMs against 2, Dao 2023 arXiv
# 2307.08691 sec. 3.1)
FLASH_BWD_OVER_FWD = 2.5  # clusters.train charges the backward at this multiple of the forward
FLASH_FWD_BWD_OVER_FWD = 1.0 + FLASH_BWD_OVER_FWD
# How a lookup was answered (Calibration.priced_by)
MEASURED, DEFAULT, EXTRAPOLATED = "measured", "default", "extrapolated"


@lru_cache(maxsize=1)
def _normal_tail_grid() -> tuple[np.ndarray, np.ndarray]:
    """x from 0 to 9 in steps of 0.005 and P(Z > x) there (the same integrals as 9,001 points
    to 1e-11); computed once for every n."""
    x = np.linspace(0.0, 9.0, 1801)
    return x, np.array([0.5 * math.erfc(v / math.sqrt(2.0)) for v in x])


@lru_cache(maxsize=256)
def expected_max_normal(n: int) -> float:
    """E[max of n independent standard normal draws] (0 for one, 0.564 for two, 1.42 for 8,
    3.04 for 512): the integral of P(max > x) over x > 0 less that of P(max < x) over x < 0,
    on a fine grid."""
    if n <= 1:
        return 0.0
    x, tail = _normal_tail_grid()
    above = 1.0 - (1.0 - tail) ** n  # P(max > x)
    below = tail ** n  # P(max < -x), by symmetry
    return float(np.trapezoid(above - below, x))


def slowest_of(n: int, cv: float) -> float:
    """The expected rate of the slowest of `n` devices whose rates are normal with coefficient
    of variation `cv`, over the mean rate."""
    return max(0.0, 1.0 - cv * expected_max_normal(int(n)))


@dataclass(frozen=True)
class Entry:
    kernel: str
    family: str  # catalog chip family, a catalog chip name, or "*"
    dtype: str  # catalog dtype, or "*"
    log10_sizes: tuple[float, ...]  # empty: one efficiency for every size
    efficiencies: tuple[float, ...]
    source: str
    burst: bool = False  # measured in short bursts at boost clock (see Calibration.sustained)
    # what log10_sizes measure: "flops" (or bytes, for memory kernels) of one kernel call, or
    # "seconds": the call's ideal duration at the target's peak (flops / peak), which carries a
    # size curve measured on one chip over to a faster one (a kernel loses efficiency to fixed
    # per-call costs and wave quantisation by how short it is, not by its FLOPs)
    size_basis: str = "flops"
    # how far the efficiency may be off, as multipliers (lo, hi) of it, and why: the spread in
    # the cited measurement, between sources that disagree, or a result set's confidence
    # interval (clusters.uncertainty samples it)
    spread: tuple[float, float] | None = None
    spread_source: str = ""
    # the kernel implementation the figures describe ("cublas", "fa3", "cudnn", "flashmla",
    # ...; "" any): a measured curve stands in for a published entry of the same one only
    impl: str = ""
    # memory entries: the operation class (MEMORY_OPS, or "norm" for a measured norm) or "*"
    op: str = "*"
    # a measured entry: the result set it comes from, the log10 sizes its points span (it
    # answers nowhere else), and for GEMMs the least arithmetic intensity over the measuring
    # chip's ridge point (peak FLOP/s over bandwidth) among its points: a call nearer its own
    # chip's ridge is outside what the curve measured
    measured_in: str = ""
    domain: tuple[float, float] | None = None
    min_over_ridge: float | None = None

    @property
    def measured(self) -> bool:
        return bool(self.measured_in)

    def covers(self, size, over_ridge: float | None = None):
        """Whether a call of `size` (in size_basis units; a number or an array) and arithmetic
        intensity `over_ridge` (times its chip's ridge point) lies inside what this entry
        measured."""
        inside = np.ones(np.shape(size), dtype=bool) if np.ndim(size) else True
        if self.domain is not None:
            x = np.log10(np.maximum(size, 1e-30))
            inside = (x >= self.domain[0]) & (x <= self.domain[1])
        if self.min_over_ridge is not None and over_ridge is not None:
            inside = inside & (over_ridge >= self.min_over_ridge)
        return bool(inside) if np.ndim(inside) == 0 else inside

    def at(self, size):
        """The efficiency at `size` (a number or a numpy array): interpolated in log10(size)
        between the points, flat outside them. Sizes in seconds are small numbers (34.8e-6 for
        a 35 us call): nothing is clamped to 1, which once made every seconds-sized curve read
        its top point."""
        if len(self.efficiencies) == 1:
            return self.efficiencies[0]
        if np.ndim(size) == 0:
            return float(np.interp(math.log10(max(size, 1e-30)), self.log10_sizes,
                                   self.efficiencies))
        return np.interp(np.log10(np.maximum(size, 1e-30)), self.log10_sizes, self.efficiencies)

    def label(self) -> str:
        """A short name for output: kernel, where it belongs, dtype, operation, implementation."""
        bits = [self.kernel if self.op == "*" else f"{self.kernel}:{self.op}", self.family]
        if self.dtype != "*":
            bits.append(self.dtype)
        if self.impl:
            bits.append(self.impl)
        return " ".join(bits)


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
    # Named ratios between sourced efficiencies (name -> (value, source)): how one kernel's
    # efficiency relates to another's where only the latter is calibrated (ratio())
    ratios: Mapping[str, tuple[float, str]] = field(default_factory=dict)
    # Named variants: entries that replace the matching (kernel, family) entries for a stack
    # of another era (variant())
    variants: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    # How a GEMM's efficiency falls below its published entry's (a best-shape measurement) as
    # the call gets short: ((log10 ideal seconds, factor), ...) and its source; empty: no such
    # effect. A measured GEMM curve, taken at the model's own shapes, already holds it.
    gemm_size_factor: tuple = ()
    gemm_size_source: str = ""
    # How much chips of one kind differ in sustained compute rate: family (or "*") ->
    # (coefficient of variation, source). A synchronous job runs at its slowest chip's pace
    # (pace()).
    chip_spread: Mapping[str, tuple[float, str]] = field(default_factory=dict)
    # ranges of the non-entry inputs, as multipliers (lo, hi, source): "sustained:<family>",
    # "ratio:<name>", "software:<family>:compute|memory", "chip_spread:<family>" (of the
    # coefficient of variation)
    spreads: Mapping[str, tuple[float, float, str]] = field(default_factory=dict)
    # a measured calibration: the family and catalog chip (or device kind) that measured it,
    # and each case of the set it left out or corrected, with the reason
    measured_family: str | None = None
    measured_chip: str | None = None
    set_notes: tuple[str, ...] = ()
    # every answer given, when recording (recording()): (kernel, dtype, op, family, status,
    # entry label, source, note) -> calls
    record: Counter | None = field(default=None, compare=False, repr=False)
    # lookups answered so far (not an input: a copy made with dataclasses.replace starts empty)
    _lookups: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def lookup(self, kernel: str, family: str, dtype: str,
               chip: str | None = None) -> tuple[Entry, bool]:
        """The published entry used and whether it was borrowed from another family. An entry
        whose `family` names the catalog chip itself (e.g. "gb200") is preferred to its
        family's."""
        published, borrowed, _, _ = self._resolve(kernel, family, dtype, chip, "*")
        if published is None:
            raise self._no_entry(kernel, family, dtype)
        return published, borrowed

    def _no_entry(self, kernel: str, family: str, dtype: str) -> ModelInputError:
        return ModelInputError(f"calibration {self.name!r} has no {kernel!r} efficiency for "
                               f"{family} {dtype} (add an entry for family '*')")

    def _resolve(self, kernel: str, family: str, dtype: str, chip: str | None, op: str):
        """(published entry or None, whether it is borrowed, the measured entry that may stand
        in for it or None, a measured entry of another implementation or None)."""
        key = (kernel, family, dtype, chip, op)
        if key not in self._lookups:
            self._lookups[key] = self._find(kernel, family, dtype, chip, op)
        return self._lookups[key]

    def _find(self, kernel, family, dtype, chip, op):
        def fits(e: Entry) -> bool:
            return e.kernel == kernel and (kernel != "memory" or e.op in ("*", op))

        published, borrowed = None, False
        order = [(chip, dtype), (chip, "*")] if chip else []
        order += [(family, dtype), (family, "*")]
        if family in self.borrow:
            b = self.borrow[family]
            order += [(b, dtype), (b, "*")]
        order += [("*", dtype), ("*", "*")]
        for fam, dt in order:
            hit = next((e for e in self.entries if not e.measured and fits(e)
                        and e.family == fam and e.dtype == dt), None)
            if hit is not None:
                published, borrowed = hit, fam not in (family, chip)
                break
        # measured: a stack kernel of this very family and dtype; a memory curve of this chip
        # (or this family, for a device the catalog does not know), its own operation, any dtype
        # for bytes that stream or read ("*") or this dtype for weights
        if kernel in STACK_KERNELS:
            mine = [e for e in self.entries if e.measured and fits(e) and e.family == family
                    and e.dtype == dtype]
        else:
            def of(o):
                return [e for e in self.entries if e.measured and e.kernel == kernel
                        and e.op == o and e.family in (chip, family) and e.dtype in (dtype, "*")]
            mine = of(op)
            if not mine and published is None and op != "stream":
                # a device with no published entry (a local chip): its own stream curve
                # stands in (a "weights" call then streams at it times the ratio)
                mine = of("stream")
        stack_impl = published.impl if published is not None else ""
        same = [e for e in mine if not stack_impl or not e.impl or e.impl == stack_impl]
        other = [e for e in mine if e not in same]
        return published, borrowed, (same[0] if same else None), (other[0] if other else None)

    def efficiency(self, kernel: str, family: str, dtype: str, size: float = 0.0,
                   peak: float | None = None, chip: str | None = None, op: str = "stream",
                   over_ridge: float | None = None) -> float:
        """Achieved over peak for one kernel call of `size` (FLOPs, or bytes for memory
        kernels) on `family` (and catalog `chip`, whose own entries and sustained-clock factor
        come first); `peak` (FLOP/s of the dtype) places a call on the curves sized in seconds;
        `op` is a memory call's operation class (MEMORY_OPS); `over_ridge` a GEMM's arithmetic
        intensity over its chip's ridge point (peak / bandwidth).

        A measured entry answers inside its domain; outside it the published entry does
        ("extrapolated"), and where there is none (a device the catalog does not know) the
        measured curve is held flat at its nearest point. A weight-streaming call answered by a
        published memory entry (a copy kernel's figure) streams at its efficiency times the
        gemm_stream_over_memory ratio; an fp8 decode-attention call answered by a bf16 or "*"
        entry runs at it times fp8_over_bf16_attention."""
        published, borrowed, measured, other = self._resolve(kernel, family, dtype, chip,
                                                             op if kernel == "memory" else "*")
        if measured is None and published is None:
            raise self._no_entry(kernel, family, dtype)
        args = (kernel, family, dtype, size, peak, chip, op)
        if measured is None:
            note = "" if other is None or published is None else (
                f"{other.impl} measured in {other.measured_in}, but the stack runs "
                f"{published.impl}: the published entry answers")
            return self._answer(published, borrowed, DEFAULT, note, *args)
        x = self._basis_size(measured, size, peak, kernel)
        inside = measured.covers(x, over_ridge)
        if published is None:  # nothing else to answer: the curve, held flat outside
            status = np.where(inside, MEASURED, EXTRAPOLATED)
            return self._answer(measured, False, status if np.ndim(status) else str(status),
                                "outside the measured sizes, no published entry: held at the "
                                "nearest point", *args)
        if np.ndim(inside) == 0:
            if inside:
                return self._answer(measured, False, MEASURED, "", *args)
            return self._answer(published, borrowed, EXTRAPOLATED, "outside the measured sizes: "
                                "the published entry answers", *args)
        return np.where(inside, self._answer(measured, False, MEASURED, "", *args, where=inside),
                        self._answer(published, borrowed, EXTRAPOLATED, "outside the measured "
                                     "sizes: the published entry answers", *args, where=~inside))

    def _answer(self, entry: Entry, borrowed: bool, status, note: str, kernel: str, family: str,
                dtype: str, size, peak, chip, op, where=None):
        """`entry`'s efficiency for the call(s) of `size`, recorded (for an array, the elements
        `where` selects) under `status` (an array of statuses where the curve was held)."""
        eff = entry.at(self._basis_size(entry, size, peak, kernel))
        if entry.burst and kernel != "memory":
            eff = eff * self.sustained.get(chip, self.sustained.get(
                family, self.sustained.get("*", (1.0, ""))))[0]
        if kernel == "gemm" and peak is not None and self.gemm_size_factor and not entry.measured:
            eff = eff * self.size_factor(size / peak)
        if kernel == "memory" and op == "weights" and entry.op != "weights":
            eff = eff * self.ratio("gemm_stream_over_memory")
        if kernel == "decode_attention" and dtype == "fp8" and entry.dtype != "fp8":
            eff = eff * self.ratio("fp8_over_bf16_attention")
        factor = self.software_factors.get(family)
        if borrowed and factor is not None:
            eff = eff * (factor.memory if kernel == "memory" else factor.compute)
        if self.record is not None:
            if np.ndim(status):
                statuses = Counter(np.asarray(status).ravel().tolist())
            else:
                n = int(np.count_nonzero(where)) if where is not None else int(np.size(size))
                statuses = Counter({status: n}) if n else Counter()
            for st, n in statuses.items():
                self.record[(kernel, dtype, op if kernel == "memory" else "", family, st,
                             entry.label(), entry.measured_in or entry.source,
                             "" if st == MEASURED else note)] += n
        return eff

    @staticmethod
    def _basis_size(entry: Entry, size: float, peak: float | None, kernel: str) -> float:
        if entry.size_basis != "seconds":
            return size
        if peak is None:
            raise ModelInputError(f"the {kernel} entry for {entry.family} is sized in seconds "
                                  "and needs a peak")
        return size / peak

    def recording(self) -> "Calibration":
        """A copy that records every answer it gives (priced_by)."""
        return replace(self, record=Counter())

    def priced_by(self) -> list[dict]:
        """What a recording copy answered: one row per kernel class, dtype, operation, status
        and entry, with the number of calls, most calls first."""
        rows = [{"kernel": k, "dtype": d, "op": o, "family": f, "status": s, "entry": e,
                 "source": src, "note": n, "calls": c}
                for (k, d, o, f, s, e, src, n), c in (self.record or {}).items()]
        return sorted(rows, key=lambda r: (r["kernel"], r["dtype"], r["op"], -r["calls"]))

    def chip_cv(self, family: str, chip: str | None = None) -> tuple[float, str]:
        """The (coefficient of variation, its key) of chips' sustained compute rate for `chip`
        or `family`, else "*"; (0, "") where the calibration has none."""
        for key in (chip, family, "*"):
            if key is not None and key in self.chip_spread:
                return self.chip_spread[key][0], key
        return 0.0, ""

    def pace(self, family: str, ranks: int, chip: str | None = None) -> float:
        """The compute rate a synchronous job on `ranks` devices runs at, over one typical
        device's: the expected slowest of `ranks` normal draws with the chip_spread
        coefficient of variation (1 - cv x expected_max_normal(ranks)). Every step waits at
        its collectives for the slowest device, so the whole job moves at its pace."""
        cv, _ = self.chip_cv(family, chip)
        return slowest_of(ranks, cv)

    def pace_note(self, family: str, ranks: int, chip: str | None = None) -> list[str]:
        """The output's line on the job's pace (empty for one device or no chip spread)."""
        cv, key = self.chip_cv(family, chip)
        if ranks <= 1 or cv <= 0:
            return []
        return [f"compute at the pace of the slowest of {ranks:,} devices: "
                f"x{slowest_of(ranks, cv):.3f} (chips differ by {cv:.1%}, calibration "
                f"chip_spread.{key})"]

    def notes_for(self, family: str) -> list[str]:
        """What a reader should know about using this calibration for `family`."""
        notes = [f"calibration: {self.name} ({self.description})"]
        if self.measured_family is not None and self.measured_family != family:
            notes.append(f"the set measured {self.measured_on} ({self.measured_family}): none of "
                         f"it applies to {family}, whose kernels the published entries price")
        factor = self.software_factors.get(family)
        if factor is not None:
            notes.append(f"software factor for {family}: compute x{factor.compute}, memory "
                         f"x{factor.memory} on borrowed efficiencies ({factor.source})")
        return notes

    def with_software_factor(self, family: str, compute: float, memory: float,
                             source: str = "user override") -> "Calibration":
        factors = dict(self.software_factors)
        factors[family] = SoftwareFactor(compute, memory, source)
        return replace(self, software_factors=factors)

    def size_factor(self, seconds: float) -> float:
        """gemm_size_factor at a call's ideal duration (flat outside the measured points)."""
        if not self.gemm_size_factor:
            return 1.0
        xs, ys = zip(*self.gemm_size_factor)
        if np.ndim(seconds):
            return np.interp(np.log10(np.maximum(seconds, 1e-12)), xs, ys)
        return float(np.interp(math.log10(max(seconds, 1e-12)), xs, ys))

    def ratio(self, name: str) -> float:
        """A named ratio of the calibration file's [ratio] table."""
        try:
            return self.ratios[name][0]
        except KeyError:
            raise ModelInputError(f"calibration {self.name!r} has no ratio {name!r} (known: "
                                  f"{', '.join(sorted(self.ratios)) or 'none'})") from None

    def variant(self, name: str) -> "Calibration":
        """This calibration with the entries of variant `name` in place of the entries of the
        same kernel and family (e.g. "flash2": attention kernels of stacks that predate
        FlashAttention-3). Measured entries stay: they stand in for a published entry of their
        own implementation only."""
        if name not in self.variants:
            raise ModelInputError(f"calibration {self.name!r} has no variant {name!r} (known: "
                                  f"{', '.join(sorted(self.variants)) or 'none'})")
        new = self.variants[name]
        replaced = {(e.kernel, e.family) for e in new}
        kept = tuple(e for e in self.entries
                     if e.measured or (e.kernel, e.family) not in replaced)
        return replace(self, name=f"{self.name}+{name}", entries=kept + new,
                       description=f"{self.description}; variant {name}")


_ENTRY = {
    "kernel": Field("str", choices=KERNELS), "family": Field("str", required=False),
    "dtype": Field("str", required=False), "efficiency": Field("float", required=False, hi=1.0),
    "points": Field("number_rows", required=False, width=2), "source": Field("str"),
    "burst": Field("bool", required=False),
    "size": Field("str", required=False, choices=("flops", "seconds")),
    "spread": Field("number_rows", required=False, width=2),
    "spread_source": Field("str", required=False),
    "impl": Field("str", required=False),
}
_SPREAD = {"spread": Field("number_rows", required=False, width=2),
           "spread_source": Field("str", required=False)}
_FACTOR = {"compute": Field("float", hi=1.5), "memory": Field("float", hi=1.5),
           "source": Field("str"), "compute_spread": Field("number_rows", required=False, width=2),
           "memory_spread": Field("number_rows", required=False, width=2),
           "spread_source": Field("str", required=False)}
_SUSTAINED = {"factor": Field("float", hi=1.0), "source": Field("str"), **_SPREAD}
_CHIP_SPREAD = {"cv": Field("float", hi=0.2), "source": Field("str"), **_SPREAD}
_RATIO = {"numerator": Field("float", hi=1e3), "denominator": Field("float", hi=1e3),
          "source": Field("str"), **_SPREAD}
_SPEC = {
    "name": Field("str", required=False), "description": Field("str", required=False),
    "entry": Field("table_list", required=False, spec=_ENTRY),
    "software_factor": Field("table_map", required=False, spec=_FACTOR),
    "borrow": Field("str_map", required=False),
    "sustained_clock": Field("table_map", required=False, spec=_SUSTAINED),
    "chip_spread": Field("table_map", required=False, spec=_CHIP_SPREAD),
    "ratio": Field("table_map", required=False, spec=_RATIO),
    "variant": Field("table_map", required=False, spec={
        "description": Field("str"), "entry": Field("table_list", spec=_ENTRY)}),
    "gemm_size_factor": Field("table", required=False, spec={
        "points": Field("number_rows", width=2), "source": Field("str")}),
}


def _spread(where: str, raw, source) -> tuple[float, float] | None:
    """A (lo, hi) multiplier range: [[lo, hi]] in the file (one row of two numbers)."""
    if raw is None:
        return None
    if len(raw) != 1:
        raise ModelInputError(f"{where}: a spread is one row [[lo, hi]], got {len(raw)} rows")
    lo, hi = (float(v) for v in raw[0])
    if not 0 < lo <= 1 <= hi <= 10:
        raise ModelInputError(f"{where}: spread [{lo:g}, {hi:g}] must bracket 1 (0 < lo <= 1 <= hi)")
    if not source:
        raise ModelInputError(f"{where}: a spread needs its spread_source")
    return lo, hi


def _entry(where, e: dict) -> Entry:
    if (e["efficiency"] is None) == (e["points"] is None):
        raise ModelInputError(f"{where}: give key 'efficiency' or 'points' (one of them)")
    if e["points"] is not None:  # [[size, efficiency], ...]
        pts = sorted((float(size), float(v)) for size, v in e["points"])
        sizes, effs = tuple(math.log10(size) for size, _ in pts), tuple(v for _, v in pts)
        if not all(0 < v <= 1 for v in effs):
            raise ModelInputError(f"{where}: key 'points' efficiencies must be in (0, 1], got {effs}")
    else:
        sizes, effs = (), (e["efficiency"],)
    return Entry(e["kernel"], e["family"] or "*", e["dtype"] or "*", sizes, effs, e["source"],
                 bool(e["burst"]), e["size"] or "flops",
                 _spread(where, e["spread"], e["spread_source"]), e["spread_source"] or "",
                 impl=e["impl"] or "")


def load_calibration_file(path: str | Path = DEFAULT_PATH) -> Calibration:
    path = Path(path)
    doc = check(path, read_toml(path, "calibration"), _SPEC).values
    entries = tuple(_entry(f"{path}: entry {i + 1}", e) for i, e in enumerate(doc["entry"] or []))
    factors = {fam: SoftwareFactor(f["compute"], f["memory"], f["source"])
               for fam, f in (doc["software_factor"] or {}).items()}
    sustained = {fam: (f["factor"], f["source"]) for fam, f in (doc["sustained_clock"] or {}).items()}
    ratios = {name: (r["numerator"] / r["denominator"], r["source"])
              for name, r in (doc["ratio"] or {}).items()}
    variants = {name: tuple(_entry(f"{path}: variant {name} entry {i + 1}", e)
                            for i, e in enumerate(v["entry"]))
                for name, v in (doc["variant"] or {}).items()}
    spreads = {}
    for fam, f in (doc["sustained_clock"] or {}).items():
        if f["spread"] is not None:
            spreads[f"sustained:{fam}"] = (*_spread(f"{path}: sustained_clock.{fam}", f["spread"],
                                                    f["spread_source"]), f["spread_source"])
    chip_spread = {fam: (f["cv"], f["source"]) for fam, f in (doc["chip_spread"] or {}).items()}
    for fam, f in (doc["chip_spread"] or {}).items():
        if f["spread"] is not None:
            spreads[f"chip_spread:{fam}"] = (*_spread(f"{path}: chip_spread.{fam}", f["spread"],
                                                      f["spread_source"]), f["spread_source"])
    for name, r in (doc["ratio"] or {}).items():
        if r["spread"] is not None:
            spreads[f"ratio:{name}"] = (*_spread(f"{path}: ratio.{name}", r["spread"],
                                                 r["spread_source"]), r["spread_source"])
    for fam, f in (doc["software_factor"] or {}).items():
        for part in ("compute", "memory"):
            if f[f"{part}_spread"] is not None:
                spreads[f"software:{fam}:{part}"] = (*_spread(
                    f"{path}: software_factor.{fam}", f[f"{part}_spread"], f["spread_source"]),
                    f["spread_source"])
    curve = doc["gemm_size_factor"]
    if curve is not None:
        pts = sorted(curve["points"])
        if any(not 0 < f <= 1 for _, f in pts):
            raise ModelInputError(f"{path}: key 'gemm_size_factor.points' factors must be in (0, 1]")
        curve_points = tuple((math.log10(sec), f) for sec, f in pts)
    return Calibration(doc["name"] or path.stem, doc["description"] or str(path), entries,
                       factors, borrow=dict(doc["borrow"] or {}), sustained=sustained,
                       chip_spread=chip_spread,
                       ratios=ratios, variants=variants,
                       gemm_size_factor=curve_points if curve is not None else (),
                       gemm_size_source=curve["source"] if curve is not None else "",
                       spreads=spreads)


def default_calibration() -> Calibration:
    return load_calibration_file(DEFAULT_PATH)
