"""The hardware catalog: chips, fabrics and systems read from sourced TOML files into frozen dataclasses.

Each item is one file under clusters/data/{chips,fabrics,systems}/<name>.toml. Every number is a
table `{ value = ..., source = "...", note = "..." (optional) }`; strings and booleans are plain.
Key names carry base SI units. Loading validates everything and raises `ModelInputError` naming the
file and the key, so a bad catalog never reaches the models.
"""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from clusters.errors import ModelInputError

DATA_DIR = Path(__file__).parent / "data"

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")
FABRIC_KINDS = ("nvlink", "hccs", "ub", "infiniband", "roce")
TOPOLOGIES = ("switched", "switched-inr", "full-mesh", "clos")

# Ceilings that no real part reaches; values above them are typos (a missing "e9" or an extra "e3").
_MAX_FLOPS = 1e17
_MAX_BW = 1e15
_MAX_BYTES = 1e13
_MAX_LATENCY_S = 1e-2
_MAX_POWER_W = 1e8
_MAX_PRICE_USD = 1e10


# --- field specs: one table per kind drives validation, so field lists are not repeated by hand ---

@dataclass(frozen=True)
class _Field:
    kind: str  # "str", "bool", "str_list", "number", "dtype_map"
    required: bool = True
    lo: float = 0.0  # exclusive lower bound for numbers
    hi: float = math.inf  # inclusive upper bound
    integer: bool = False
    choices: tuple[str, ...] = ()


def _num(hi: float, lo: float = 0.0, required: bool = True, integer: bool = False) -> _Field:
    return _Field("number", required=required, lo=lo, hi=hi, integer=integer)


_CHIP_FIELDS: dict[str, _Field] = {
    "name": _Field("str"),
    "vendor": _Field("str", choices=("nvidia", "huawei")),
    "family": _Field("str"),
    "description": _Field("str"),
    "device_kind_patterns": _Field("str_list"),
    "peak_flops_per_s": _Field("dtype_map", hi=_MAX_FLOPS),
    "hbm_bytes": _num(_MAX_BYTES),
    "hbm_bw_bytes_per_s": _num(_MAX_BW),
    "power_w": _num(1e4),
    "scale_up_bw_bytes_per_s": _num(_MAX_BW),
    "scale_out_bw_bytes_per_s": _num(_MAX_BW),
    "price_usd": _num(_MAX_PRICE_USD, required=False),
    # devices one package presents to software (dies with their own HBM); absent means 1
    "devices_per_package": _num(16, lo=0.5, required=False, integer=True),
}

_FABRIC_FIELDS: dict[str, _Field] = {
    "name": _Field("str"),
    "kind": _Field("str", choices=FABRIC_KINDS),
    "description": _Field("str"),
    "bw_bytes_per_s_per_chip": _num(_MAX_BW),
    "latency_s": _num(_MAX_LATENCY_S),
    "per_hop_latency_s": _num(_MAX_LATENCY_S),
    "efficiency": _num(1.0),
    "in_network_reduction": _Field("bool"),
    # Only for fabrics that reduce in the switch (NVLS): fraction of the achievable bandwidth the
    # switch reduction reaches, and its extra fixed latency.
    "inr_efficiency": _num(1.0, required=False),
    "inr_latency_s": _num(_MAX_LATENCY_S, required=False),
}

_SYSTEM_FIELDS: dict[str, _Field] = {
    "name": _Field("str"),
    "description": _Field("str"),
    "chip": _Field("str"),
    "chips_per_domain": _num(1e6, lo=0.5, integer=True),
    "domain_topology": _Field("str", choices=TOPOLOGIES),
    "scale_up": _Field("str"),
    "scale_out": _Field("str"),
    "power_w": _num(_MAX_POWER_W),
    "price_usd": _num(_MAX_PRICE_USD, required=False),
}


# --- dataclasses ---

@dataclass(frozen=True)
class Chip:
    name: str
    vendor: str
    family: str
    description: str
    peak_flops_per_s: Mapping[str, float]  # dense; a dtype the chip lacks is absent
    hbm_bytes: float
    hbm_bw_bytes_per_s: float
    power_w: float
    scale_up_bw_bytes_per_s: float  # per chip, per direction
    scale_out_bw_bytes_per_s: float  # per chip, per direction (NIC)
    price_usd: float | None
    device_kind_patterns: tuple[str, ...]
    sources: Mapping[str, str]
    notes: Mapping[str, str]
    devices_per_package: int | None = None  # dies software sees as devices; None means 1

    @property
    def devices(self) -> int:
        """Devices the package presents to software: each has its own share of the HBM and
        runs its own ranks (the Ascend 910C is two)."""
        return int(self.devices_per_package or 1)

    def peak(self, dtype: str) -> float:
        try:
            return self.peak_flops_per_s[dtype]
        except KeyError:
            have = ", ".join(sorted(self.peak_flops_per_s))
            raise ModelInputError(f"chip {self.name!r} has no {dtype!r} peak (it has: {have})") from None


@dataclass(frozen=True)
class Fabric:
    name: str
    kind: str
    description: str
    bw_bytes_per_s_per_chip: float  # line rate, per direction
    latency_s: float  # fixed software + hardware cost of one collective call
    per_hop_latency_s: float  # added per algorithm step that crosses this fabric
    efficiency: float  # achievable fraction of the line rate for copy traffic (ring, all-to-all)
    in_network_reduction: bool
    inr_efficiency: float | None  # fraction of achievable bw that switch reduction reaches
    inr_latency_s: float | None
    sources: Mapping[str, str]
    notes: Mapping[str, str]

    @property
    def achievable_bw_bytes_per_s(self) -> float:
        return self.bw_bytes_per_s_per_chip * self.efficiency


@dataclass(frozen=True)
class System:
    name: str
    description: str
    chip: Chip
    chips_per_domain: int
    domain_topology: str
    scale_up: Fabric
    scale_out: Fabric
    power_w: float  # whole system including network and cooling overhead
    price_usd: float | None
    sources: Mapping[str, str]
    notes: Mapping[str, str]


@dataclass(frozen=True)
class Cluster:
    system: System
    n_systems: int

    def __post_init__(self) -> None:
        if not isinstance(self.n_systems, int) or self.n_systems < 1:
            raise ModelInputError(f"cluster of {self.system.name}: n_systems must be a positive integer, got {self.n_systems!r}")

    @property
    def chips(self) -> int:
        return self.system.chips_per_domain * self.n_systems


# --- validation ---

def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ModelInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelInputError(f"{path}: not a TOML text file (not UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelInputError(f"{path}: malformed TOML: {exc}") from None


def _check_number(path: Path, key: str, raw: Any, spec: _Field, sources: dict, notes: dict) -> float:
    if not isinstance(raw, dict):
        raise ModelInputError(f"{path}: key {key!r} must be a table {{ value = ..., source = \"...\" }}, got {raw!r}")
    unknown = set(raw) - {"value", "source", "note"}
    if unknown:
        raise ModelInputError(f"{path}: key {key!r} has unknown field(s) {sorted(unknown)} (allowed: value, source, note)")
    if "value" not in raw:
        raise ModelInputError(f"{path}: key {key!r} has no value")
    src = raw.get("source")
    if not isinstance(src, str) or not src.strip():
        raise ModelInputError(f"{path}: key {key!r} has no source")
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelInputError(f"{path}: key {key!r} value must be a finite number, got {value!r}")
    if not (value > spec.lo):
        raise ModelInputError(f"{path}: key {key!r} value {value!r} must be greater than {spec.lo:g}")
    if value > spec.hi:
        raise ModelInputError(f"{path}: key {key!r} value {value!r} is impossible (above {spec.hi:g}); check the units")
    if spec.integer and value != int(value):
        raise ModelInputError(f"{path}: key {key!r} value {value!r} must be an integer")
    if "note" in raw and not isinstance(raw["note"], str):
        raise ModelInputError(f"{path}: key {key!r} note must be a string")
    sources[key] = src
    if "note" in raw:
        notes[key] = raw["note"]
    return int(value) if spec.integer else float(value)


def _validate(path: Path, data: dict[str, Any], fields: dict[str, _Field]) -> tuple[dict, dict, dict]:
    """Check `data` against `fields`; return (values, sources, notes)."""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ModelInputError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(fields)})")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    notes: dict[str, str] = {}
    for key, spec in fields.items():
        if key not in data:
            if spec.required:
                raise ModelInputError(f"{path}: missing key {key!r}")
            values[key] = None
            continue
        raw = data[key]
        if spec.kind == "str":
            if not isinstance(raw, str) or not raw.strip():
                raise ModelInputError(f"{path}: key {key!r} must be a non-empty string, got {raw!r}")
            if spec.choices and raw not in spec.choices:
                raise ModelInputError(f"{path}: key {key!r} is {raw!r}; expected one of {', '.join(spec.choices)}")
            values[key] = raw
        elif spec.kind == "bool":
            if not isinstance(raw, bool):
                raise ModelInputError(f"{path}: key {key!r} must be true or false, got {raw!r}")
            values[key] = raw
        elif spec.kind == "str_list":
            if not isinstance(raw, list) or not raw or not all(isinstance(s, str) and s for s in raw):
                raise ModelInputError(f"{path}: key {key!r} must be a non-empty list of strings")
            for pattern in raw:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ModelInputError(f"{path}: key {key!r} has a bad regex {pattern!r}: {exc}") from None
            values[key] = tuple(raw)
        elif spec.kind == "number":
            values[key] = _check_number(path, key, raw, spec, sources, notes)
        elif spec.kind == "dtype_map":
            if not isinstance(raw, dict) or not raw:
                raise ModelInputError(f"{path}: key {key!r} must be a table of dtypes ({', '.join(DTYPES)})")
            out = {}
            for dtype, entry in raw.items():
                if dtype not in DTYPES:
                    raise ModelInputError(f"{path}: key '{key}.{dtype}' is not a known dtype (allowed: {', '.join(DTYPES)})")
                out[dtype] = _check_number(path, f"{key}.{dtype}", entry, _num(spec.hi), sources, notes)
            values[key] = MappingProxyType(out)
        else:  # pragma: no cover - a bug in the field table
            raise AssertionError(spec.kind)
    if values.get("name") is not None and values["name"] != path.stem and path.parent.parent == DATA_DIR:
        raise ModelInputError(f"{path}: key 'name' is {values['name']!r} but shipped files must be named <name>.toml")
    return values, sources, notes


def _frozen(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


# --- loading ---

def load_chip_file(path: str | Path) -> Chip:
    path = Path(path)
    values, sources, notes = _validate(path, _read_toml(path), _CHIP_FIELDS)
    return Chip(**values, sources=_frozen(sources), notes=_frozen(notes))


def load_fabric_file(path: str | Path) -> Fabric:
    path = Path(path)
    values, sources, notes = _validate(path, _read_toml(path), _FABRIC_FIELDS)
    has_inr = values["in_network_reduction"]
    for key in ("inr_efficiency", "inr_latency_s"):
        if has_inr and values[key] is None:
            raise ModelInputError(f"{path}: missing key {key!r} (required when in_network_reduction = true)")
        if not has_inr and values[key] is not None:
            raise ModelInputError(f"{path}: key {key!r} given but in_network_reduction = false")
    return Fabric(**values, sources=_frozen(sources), notes=_frozen(notes))


def load_system_file(path: str | Path) -> System:
    """Load a system file; its chip and fabrics are looked up by name in the shipped catalog."""
    path = Path(path)
    values, sources, notes = _validate(path, _read_toml(path), _SYSTEM_FIELDS)
    try:
        chip = load_chip(values["chip"])
        scale_up = load_fabric(values["scale_up"])
        scale_out = load_fabric(values["scale_out"])
    except ModelInputError as exc:
        raise ModelInputError(f"{path}: {exc}") from None
    topo = values["domain_topology"]
    if topo == "switched-inr" and not scale_up.in_network_reduction:
        raise ModelInputError(f"{path}: key 'domain_topology' is switched-inr but fabric {scale_up.name!r} has no in-network reduction")
    values.update(chip=chip, scale_up=scale_up, scale_out=scale_out)
    return System(**values, sources=_frozen(sources), notes=_frozen(notes))


def _names(kind: str) -> list[str]:
    return sorted(p.stem for p in (DATA_DIR / kind).glob("*.toml"))


def _load_named(kind: str, name: str, loader: Callable[[Path], Any]) -> Any:
    if not isinstance(name, str) or name not in _names(kind):
        raise ModelInputError(f"unknown {kind[:-1]} {name!r}; valid names: {', '.join(_names(kind))}")
    return loader(DATA_DIR / kind / f"{name}.toml")


def list_chips() -> list[str]:
    return _names("chips")


def list_fabrics() -> list[str]:
    return _names("fabrics")


def list_systems() -> list[str]:
    return _names("systems")


def load_chip(name: str) -> Chip:
    return _load_named("chips", name, load_chip_file)


def load_fabric(name: str) -> Fabric:
    return _load_named("fabrics", name, load_fabric_file)


def load_system(name: str) -> System:
    return _load_named("systems", name, load_system_file)


def match_device_kind(device_kind: str) -> Chip | None:
    """The first catalog chip (in name order) one of whose patterns matches JAX's device_kind; None for CPUs etc."""
    for name in list_chips():
        chip = load_chip(name)
        if any(re.search(p, device_kind) for p in chip.device_kind_patterns):
            return chip
    return None
