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

from clusters.errors import ModelInputError

DEFAULT_PATH = Path(__file__).parent / "data" / "calibration" / "default.toml"
KERNELS = ("gemm", "attention", "memory")
# forward+backward over forward FLOPs as FlashAttention's benchmarks and this file's attention
# entries count them (the backward recomputes QK^T: 5 GEMMs against 2, Dao 2023 arXiv
# 2307.08691 sec. 3.1)
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

    def at(self, size):
        """The efficiency at `size` (a number or a numpy array): interpolated in log10(size)
        between the measured points, flat outside them."""
        if len(self.efficiencies) == 1:
            return self.efficiencies[0]
        if np.ndim(size) == 0:
            return float(np.interp(math.log10(max(size, 1.0)), self.log10_sizes,
                                   self.efficiencies))
        return np.interp(np.log10(np.maximum(size, 1.0)), self.log10_sizes, self.efficiencies)


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
    # lookups answered so far (not an input: a copy made with dataclasses.replace starts empty)
    _lookups: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def lookup(self, kernel: str, family: str, dtype: str) -> tuple[Entry, bool]:
        """The entry used and whether it was borrowed from another family."""
        key = (kernel, family, dtype)
        if key not in self._lookups:
            self._lookups[key] = self._lookup(kernel, family, dtype)
        return self._lookups[key]

    def _lookup(self, kernel: str, family: str, dtype: str) -> tuple[Entry, bool]:
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
        raise ModelInputError(f"calibration {self.name!r} has no {kernel!r} efficiency for {family} "
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
    raise ModelInputError(f"{where}: {msg}")


def load_calibration_file(path: str | Path = DEFAULT_PATH) -> Calibration:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ModelInputError(f"{path}: calibration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelInputError(f"{path}: not valid TOML: {exc}") from None
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
