"""Uncertainty bands: how far a projection may be off, from two sources.

Input uncertainty. Every calibration entry, ratio, sustained-clock, chip-spread and software factor
carries a range with its source (clusters/data/calibration/*.toml), and so do the catalog figures
that sources dispute (clusters/data/uncertainty.toml). A projection's inputs are the ones its chip,
precision and mode use (`inputs_for`); each is sampled log-uniformly over its range, stratified (a
Latin hypercube), seeded by the input's name so that two projections sharing an input (H100 and
H800 borrow the same Hopper GEMM entry; the 910C borrows it too) draw the same values at the same
sample index. The samples go through the one cost model: training as rows of a plan table
(clusters.train.evaluate's `eff_scale`), serving through perturbed copies of the calibration and
system (`perturbed`). Inputs act on kernel classes as efficiency multipliers: "gemm", "attention",
"memory", "compute" (GEMM and attention: the sustained clock, the job's slowest device, a software
factor), "stream" (memory-bound GEMMs' weight streaming), "decode_attention", "fp8_attention",
"scale_up", "scale_out" (fabric efficiencies) and "power" (energy only).

Model-form uncertainty. What the model gets wrong even with exact inputs, per mode: the
residuals log(projected / published) of the validation rows the model reproduces (rackbench
validate), their mean (the bias) and the spread they show beyond their own input spread,
sigma_model^2 = max(0, var(residuals) - mean(input variance)) (`ModelForm`). Stored in
clusters/data/validation/model_error.toml by `rackbench validate --write-model-error`; a test
recomputes it and fails when it is stale. The coverage test fits it leave-one-out.

The band. The log of a metric is taken as normal with mean log(value) + mean(log input
ratio) - bias and variance var(log input ratio) + sigma_model^2; p10 and p90 are its 10th and
90th percentiles, widened where needed to contain the central value (a large bias could
otherwise move the band past it). `sensitivity` is one-at-a-time on the same samples: each
input alone at its samples' 10th and 90th percentile values, the others at 1; the model-form
spread competes as one more input.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import numpy as np

from clusters.calibration import Calibration, slowest_of
from clusters.catalog import System
from clusters.errors import ModelInputError
from clusters.tomldata import Field, check, read_toml

SAMPLES = 64
SEED = 20261130
Z90 = 1.2815515655446004  # the standard normal's 90th percentile
CATALOG_PATH = Path(__file__).parent / "data" / "uncertainty.toml"
MODEL_ERROR_PATH = Path(__file__).parent / "data" / "validation" / "model_error.toml"
CLASSES = ("gemm", "attention", "memory", "compute", "stream", "decode_attention",
           "fp8_attention", "scale_up", "scale_out", "power")
# validation modes -> the pool of rows whose residuals give a projection's model-form error
POOLS = {"train": "train", "prefill": "serve", "decode": "serve", "collective": "collective"}


@dataclass(frozen=True)
class Input:
    """One uncertain input: its efficiency (or power) may be lo..hi times the value used."""

    name: str
    lo: float
    hi: float
    acts_on: str  # a CLASSES member
    source: str

    def samples(self, n: int = SAMPLES, seed: int = SEED) -> np.ndarray:
        """n stratified log-uniform draws over [lo, hi], the same for the same name."""
        rng = np.random.default_rng([seed, zlib.crc32(self.name.encode())])
        u = (rng.permutation(n) + rng.random(n)) / n
        return self.lo * (self.hi / self.lo) ** u


# ------------------------------------------------------------------- the catalog's ranges

_RANGE = {"spread": Field("number_rows", width=2), "source": Field("str")}


@lru_cache(maxsize=2)
def catalog_spreads(path: Path = CATALOG_PATH) -> dict:
    """{(kind, name, figure): (lo, hi, source)} from clusters/data/uncertainty.toml."""
    doc = read_toml(path, "catalog uncertainty")
    unknown = set(doc) - {"fabric", "system"}
    if unknown:
        raise ModelInputError(f"{path}: unknown section {sorted(unknown)[0]!r} (fabric, system)")
    out = {}
    for kind in ("fabric", "system"):
        for name, figures in (doc.get(kind) or {}).items():
            if not isinstance(figures, dict):
                raise ModelInputError(f"{path}: [{kind}.{name}] must be a table of figures")
            for figure, raw in figures.items():
                where = f"{kind}.{name}.{figure}"
                values = check(path, raw, _RANGE, where).values
                (lo, hi), = values["spread"]
                if not 0 < lo <= 1 <= hi <= 10:
                    raise ModelInputError(f"{path}: {where}: spread [{lo:g}, {hi:g}] must "
                                          "bracket 1")
                out[(kind, name, figure)] = (float(lo), float(hi), values["source"])
    return out


def _catalog_input(kind: str, name: str, figure: str, label: str, acts_on: str) -> Input | None:
    spreads = catalog_spreads()
    hit = spreads.get((kind, name, figure)) or spreads.get((kind, "*", figure))
    if hit is None:
        return None
    lo, hi, source = hit
    return Input(label, lo, hi, acts_on, source)


# ------------------------------------------------------------- a projection's inputs

def inputs_for(cal: Calibration, system: System, precision: str, mode: str,
               attention_precision: str = "bf16", ranks: int = 1) -> list[Input]:
    """The uncertain inputs a projection of `mode` on `system` in `precision`, a job of
    `ranks` devices, uses."""
    chip = system.chip
    family = chip.family
    gemm_dtype = {"fp16": "bf16"}.get(precision, precision)
    if gemm_dtype not in chip.peak_flops_per_s:
        gemm_dtype = "bf16"
    out: list[Input] = []
    burst = False
    kernels = [("gemm", gemm_dtype, "gemm"), ("attention", "bf16", "attention"),
               ("memory", precision, "memory")]
    if mode == "decode":
        kernels.append(("decode_attention", attention_precision, "decode_attention"))
    for kernel, dtype, acts_on in kernels:
        entry, _ = cal.lookup(kernel, family, dtype, chip.name)
        burst |= entry.burst and kernel != "memory"
        if entry.spread is not None:
            label = f"{kernel} efficiency ({entry.family}{'' if entry.dtype == '*' else ' ' + entry.dtype})"
            out.append(Input(label, *entry.spread, acts_on, entry.spread_source))
    if burst:
        key = next((k for k in (f"sustained:{chip.name}", f"sustained:{family}", "sustained:*")
                    if k in cal.spreads or k.split(":", 1)[1] in cal.sustained), None)
        if key is not None and key in cal.spreads:
            lo, hi, source = cal.spreads[key]
            out.append(Input(f"sustained clock ({key.split(':', 1)[1]})", lo, hi, "compute", source))
    cv, key = cal.chip_cv(family, chip.name)
    hit = cal.spreads.get(f"chip_spread:{key}")
    if ranks > 1 and cv > 0 and hit is not None:
        # the slowest of `ranks` devices at the ends of the coefficient of variation's range,
        # over its pace at the value used (a wider spread is the slower end)
        pace = slowest_of(ranks, cv)
        lo, hi = slowest_of(ranks, cv * hit[1]) / pace, slowest_of(ranks, cv * hit[0]) / pace
        # one name for any job size, so that projections of several sizes draw alike
        out.append(Input(f"slowest device of the job (chip spread {key})", lo, hi, "compute",
                         hit[2]))
    if family in cal.software_factors:
        for part, acts_on in (("compute", "compute"), ("memory", "memory")):
            hit = cal.spreads.get(f"software:{family}:{part}")
            if hit is not None:
                out.append(Input(f"{family} software factor ({part})", hit[0], hit[1], acts_on,
                                 hit[2]))
    ratios = ["gemm_stream_over_memory"] if mode in ("decode", "prefill") else []
    if mode == "decode" and attention_precision == "fp8":
        ratios.append("fp8_over_bf16_attention")
    acts = {"gemm_stream_over_memory": "stream", "fp8_over_bf16_attention": "fp8_attention"}
    for name in ratios:
        hit = cal.spreads.get(f"ratio:{name}")
        if hit is not None:
            out.append(Input(f"ratio {name}", hit[0], hit[1], acts[name], hit[2]))
    for fabric, acts_on in ((system.scale_up, "scale_up"), (system.scale_out, "scale_out")):
        inp = _catalog_input("fabric", fabric.name, "efficiency",
                             f"{fabric.name} efficiency", acts_on)
        if inp is not None and all(i.name != inp.name for i in out):
            out.append(inp)
    power = _catalog_input("system", system.name, "power_w", f"{system.name} power", "power")
    if power is not None:
        out.append(power)
    return out


def sample_matrix(inputs: list[Input], n: int = SAMPLES) -> np.ndarray:
    """(n, len(inputs)) multipliers, column j input j's samples."""
    if not inputs:
        return np.ones((n, 0))
    return np.stack([i.samples(n) for i in inputs], 1)


def class_multipliers(inputs: list[Input], values: np.ndarray) -> dict[str, np.ndarray]:
    """Efficiency (or power) multiplier per class for each row of `values` ((rows, inputs))."""
    rows = values.shape[0]
    out = {c: np.ones(rows) for c in CLASSES}
    for j, inp in enumerate(inputs):
        out[inp.acts_on] = out[inp.acts_on] * values[:, j]
    for c in ("gemm", "attention"):  # the sustained clock and software factors act on both
        out[c] = out[c] * out["compute"]
    return out


def one_at_a_time(inputs: list[Input], values: np.ndarray) -> np.ndarray:
    """(2 * len(inputs), len(inputs)) rows: input j alone at its samples' 10th and 90th
    percentile values, every other input at 1."""
    k = len(inputs)
    rows = np.ones((2 * k, k))
    for j in range(k):
        rows[2 * j, j], rows[2 * j + 1, j] = np.percentile(values[:, j], [10, 90])
    return rows


# ---------------------------------------------------------------- serving: perturbed copies

def perturbed(cal: Calibration, system: System, mult: dict[str, float]) -> tuple[Calibration, System]:
    """The calibration and system with every efficiency scaled by its class multiplier
    (capped at 1), fabric efficiencies and measured dispatch/combine times by the fabric's,
    and power by "power"."""
    def scaled(e):
        m = {"gemm": mult["gemm"], "attention": mult["attention"], "memory": mult["memory"],
             "decode_attention": mult["decode_attention"]}[e.kernel]
        return replace(e, efficiencies=tuple(min(1.0, v * m) for v in e.efficiencies))
    ratios = dict(cal.ratios)
    for name, cls in (("gemm_stream_over_memory", "stream"),
                      ("fp8_over_bf16_attention", "fp8_attention")):
        if name in ratios:
            ratios[name] = (ratios[name][0] * mult[cls], ratios[name][1])
    new_cal = replace(cal, entries=tuple(scaled(e) for e in cal.entries), ratios=ratios)

    def fabric(f, m):
        a2a = f.moe_a2a
        if a2a is not None and m != 1.0:
            a2a = replace(a2a, points=tuple((n, d / m, c / m) for n, d, c in a2a.points))
        return replace(f, efficiency=min(1.0, f.efficiency * m), moe_a2a=a2a)
    chip = replace(system.chip, power_w=system.chip.power_w * mult["power"])
    new_sys = replace(system, chip=chip, scale_up=fabric(system.scale_up, mult["scale_up"]),
                      scale_out=fabric(system.scale_out, mult["scale_out"]),
                      power_w=system.power_w * mult["power"])
    return new_cal, new_sys


# ------------------------------------------------------------------------ model form

@dataclass(frozen=True)
class ModelForm:
    """Model-form error of one pool of validation rows (log residuals)."""

    pool: str
    rows: int
    bias: float  # mean log(projected / published)
    residual_sd: float
    input_sd: float  # root mean input variance of those rows
    sd: float  # the model's own spread: sqrt(max(0, residual_sd^2 - input_sd^2))
    source: str = ""

    @staticmethod
    def fit(pool: str, residuals, input_vars, source: str = "") -> "ModelForm":
        r = np.asarray(residuals, dtype=float)
        v = np.asarray(input_vars, dtype=float)
        if len(r) < 2:
            return ModelForm(pool, len(r), 0.0, math.nan, math.nan, math.nan, source)
        var = float(np.var(r, ddof=1))
        mean_in = float(np.mean(v)) if len(v) else 0.0
        return ModelForm(pool, len(r), float(np.mean(r)), math.sqrt(var), math.sqrt(mean_in),
                         math.sqrt(max(0.0, var - mean_in)), source)


_MODEL_FORM = {"rows": Field("int", lo=0, lo_inclusive=True, hi=1e6),
               "bias": Field("float", lo=-5, hi=5), "residual_sd": Field("float", lo=0, lo_inclusive=True, hi=5),
               "input_sd": Field("float", lo=0, lo_inclusive=True, hi=5),
               "sd": Field("float", lo=0, lo_inclusive=True, hi=5), "source": Field("str")}


@lru_cache(maxsize=2)
def model_forms(path: Path = MODEL_ERROR_PATH) -> dict[str, ModelForm]:
    """The stored model-form error per pool ("train", "serve", "collective")."""
    if not path.is_file():
        return {}
    doc = read_toml(path, "model-form error")
    out = {}
    for pool, raw in (doc.get("pool") or {}).items():
        v = check(path, raw, _MODEL_FORM, f"pool.{pool}").values
        out[pool] = ModelForm(pool, v["rows"], v["bias"], v["residual_sd"], v["input_sd"], v["sd"],
                              v["source"])
    return out


def model_form_for(mode: str) -> ModelForm | None:
    form = model_forms().get(POOLS.get(mode, mode))
    return form if form is not None and math.isfinite(form.sd) else None


# ------------------------------------------------------------------------------- bands

@dataclass(frozen=True)
class Band:
    """A projection's band: for a rate-like metric (tokens/s, FLOP/s, MFU) the multiplier
    samples of its inputs (ratio to the central projection), the model-form error, and each
    input's one-at-a-time swing."""

    log_mean: float  # mean log(sampled / central) over the input samples
    log_var: float
    model: ModelForm | None
    swings: tuple[tuple[str, float], ...]  # (input, |log(high / low)|), largest first
    inputs: tuple[Input, ...] = field(default=(), repr=False)
    # of log(sampled / central) of joules per token (power / rate)
    energy_log_mean: float = 0.0
    energy_log_var: float = 0.0
    # log(sampled / central) per input sample, in sample order: two bands of projections that
    # share inputs pair up sample by sample (ratio_band)
    log_samples: tuple[float, ...] = field(default=(), repr=False)

    @staticmethod
    def from_samples(ratios, swings: dict[str, float], inputs, model: ModelForm | None,
                     power=None) -> "Band":
        """`ratios`: the rate's samples over its central value; `power`: the power
        multiplier of each sample (None: exact)."""
        logs = np.log(np.asarray(ratios, dtype=float))
        energy = (np.log(np.asarray(power, dtype=float)) if power is not None else 0.0) - logs
        if model is not None and math.isfinite(model.sd) and model.sd > 0:
            swings = {**swings, f"model form ({model.pool} rows)": 2 * Z90 * model.sd}
        ordered = tuple(sorted(swings.items(), key=lambda kv: -kv[1]))
        return Band(float(np.mean(logs)), float(np.var(logs)), model, ordered, tuple(inputs),
                    float(np.mean(energy)), float(np.var(energy)), tuple(float(x) for x in logs))

    @property
    def model_sd(self) -> float:
        return self.model.sd if self.model is not None and math.isfinite(self.model.sd) else 0.0

    def _log_sd(self, extra_var: float = 0.0) -> float:
        sd_model = self.model.sd if self.model is not None and math.isfinite(self.model.sd) else 0.0
        return math.sqrt(max(0.0, self.log_var + sd_model ** 2 + extra_var))

    def rate(self, value: float) -> tuple[float, float]:
        """(p10, p90) of a rate-like metric whose central projection is `value`."""
        if not math.isfinite(value) or value <= 0:
            return value, value
        bias = self.model.bias if self.model is not None else 0.0
        mu = math.log(value) + self.log_mean - bias
        sd = self._log_sd()
        lo, hi = math.exp(mu - Z90 * sd), math.exp(mu + Z90 * sd)
        return min(lo, value), max(hi, value)

    def time(self, value: float) -> tuple[float, float]:
        """(p10, p90) of a time-like metric (the inverse of a rate)."""
        if not math.isfinite(value) or value <= 0:
            return value, value
        lo, hi = self.rate(1.0 / value)
        return 1.0 / hi, 1.0 / lo

    def energy(self, value: float) -> tuple[float, float]:
        """(p10, p90) of joules per token: time-like, with the power range on top."""
        if not math.isfinite(value) or value <= 0:
            return value, value
        bias = self.model.bias if self.model is not None else 0.0
        mu = math.log(value) + self.energy_log_mean + bias
        sd = self._log_sd(self.energy_log_var - self.log_var)
        lo, hi = math.exp(mu - Z90 * sd), math.exp(mu + Z90 * sd)
        return min(lo, value), max(hi, value)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return list(self.swings[:k])

    def to_dict(self) -> dict:
        m = self.model
        return {"samples": SAMPLES, "seed": SEED, "quantiles": [0.1, 0.9],
                "input_log_mean": self.log_mean, "input_log_sd": math.sqrt(self.log_var),
                "model_form": None if m is None else {
                    "pool": m.pool, "rows": m.rows, "bias": m.bias, "sd": m.sd},
                "sensitivity": [{"input": name, "swing": math.expm1(s)} for name, s in self.top()],
                "inputs": [{"name": i.name, "range": [i.lo, i.hi], "acts_on": i.acts_on,
                            "source": i.source} for i in self.inputs]}


def ratio_band(num: Band, den: Band, ratio: float) -> tuple[float, float]:
    """(p10, p90) of the ratio of two projections (num / den) whose central ratio is `ratio`:
    their input samples pair up by index (shared inputs cancel), their model-form errors are
    independent, and a bias common to both (the same pool) cancels."""
    if not (math.isfinite(ratio) and ratio > 0):
        return ratio, ratio
    a, b = np.asarray(num.log_samples), np.asarray(den.log_samples)
    diff = a - b if len(a) == len(b) and len(a) else np.zeros(1)
    bias = (num.model.bias if num.model else 0.0) - (den.model.bias if den.model else 0.0)
    mu = math.log(ratio) + float(np.mean(diff)) - bias
    sd = math.sqrt(float(np.var(diff)) + num.model_sd ** 2 + den.model_sd ** 2)
    lo, hi = math.exp(mu - Z90 * sd), math.exp(mu + Z90 * sd)
    return min(lo, ratio), max(hi, ratio)


def add_band_fields(doc: dict, band: Band, rates=(), times=(), energies=()) -> None:
    """`<metric>_p10` and `<metric>_p90` beside each named metric of `doc`, and doc["band"]."""
    for keys, fn in ((rates, band.rate), (times, band.time), (energies, band.energy)):
        for key in keys:
            value = doc.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                doc[f"{key}_p10"], doc[f"{key}_p90"] = fn(float(value))
    doc["band"] = band.to_dict()
