"""The hardware catalog: chips, fabrics and systems read from sourced TOML files into frozen dataclasses.

Each item is one file under clusters/data/{chips,fabrics,systems}/<name>.toml. Every number is a
table `{ value = ..., source = "...", note = "..." (optional) }`; strings and booleans are plain.
Key names carry base SI units. Loading validates everything and raises `ModelInputError` naming the
file and the key, so a bad catalog never reaches the models.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from clusters.dtypes import DTYPES
from clusters.errors import ModelInputError
from clusters.tomldata import Field, check, read_toml

DATA_DIR = Path(__file__).parent / "data"

FABRIC_KINDS = ("nvlink", "hccs", "ub", "infiniband", "roce")
TOPOLOGIES = ("switched", "switched-inr", "full-mesh", "clos")

# Ceilings that no real part reaches; values above them are typos (a missing "e9" or an extra "e3").
_MAX_FLOPS = 1e17
_MAX_BW = 1e15
_MAX_BYTES = 1e13
_MAX_LATENCY_S = 1e-2
_MAX_POWER_W = 1e8
_MAX_PRICE_USD = 1e10


# --- field specs: one table per kind drives validation (clusters.tomldata) ---

def _num(hi: float, lo: float = 0.0, required: bool = True, integer: bool = False) -> Field:
    """A sourced number in (lo, hi]."""
    return Field("sourced", required=required, lo=lo, hi=hi, integer=integer)


_CHIP_FIELDS: dict[str, Field] = {
    "name": Field("str"),
    "vendor": Field("str", choices=("nvidia", "huawei")),
    "family": Field("str"),
    "description": Field("str"),
    "device_kind_patterns": Field("str_list"),
    "peak_flops_per_s": Field("dtype_map", hi=_MAX_FLOPS, keys=DTYPES),
    "hbm_bytes": _num(_MAX_BYTES),
    "hbm_bw_bytes_per_s": _num(_MAX_BW),
    "power_w": _num(1e4),
    "scale_up_bw_bytes_per_s": _num(_MAX_BW),
    "scale_out_bw_bytes_per_s": _num(_MAX_BW),
    "price_usd": _num(_MAX_PRICE_USD, required=False),
    # devices one package presents to software (dies with their own HBM); absent means 1
    "devices_per_package": _num(16, lo=0.5, required=False, integer=True),
    # NVIDIA streaming multiprocessors: what share of the chip a kernel holding N of them takes
    "sm_count": _num(1e4, lo=0.5, required=False, integer=True),
}

_FABRIC_FIELDS: dict[str, Field] = {
    "name": Field("str"),
    "kind": Field("str", choices=FABRIC_KINDS),
    "description": Field("str"),
    "bw_bytes_per_s_per_chip": _num(_MAX_BW),
    "latency_s": _num(_MAX_LATENCY_S),
    "per_hop_latency_s": _num(_MAX_LATENCY_S),
    "efficiency": _num(1.0),
    "in_network_reduction": Field("bool"),
    # Only for fabrics that reduce in the switch (NVLS): fraction of the achievable bandwidth the
    # switch reduction reaches, and its extra fixed latency.
    "inr_efficiency": _num(1.0, required=False),
    "inr_latency_s": _num(_MAX_LATENCY_S, required=False),
    # Where the fabric's serving stack has its own fused MoE dispatch/combine operators and they
    # were measured: the measurement (MoeAllToAll), sourced as a whole
    "moe_a2a": Field("table", required=False, spec={"source": Field("str"), "value": Field(
        "table", spec={"tokens_per_rank": Field("int", hi=1e7), "experts_per_token": Field("int", hi=1e4),
                       "hidden": Field("int", hi=1e7),
                       "points": Field("number_rows", width=3)})}),
}

_SYSTEM_FIELDS: dict[str, Field] = {
    "name": Field("str"),
    "description": Field("str"),
    "chip": Field("str"),
    "chips_per_domain": _num(1e6, lo=0.5, integer=True),
    "domain_topology": Field("str", choices=TOPOLOGIES),
    "scale_up": Field("str"),
    "scale_out": Field("str"),
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
    sm_count: int | None = None  # streaming multiprocessors (NVIDIA); None: not an SM design

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
class MoeAllToAll:
    """Measured MoE dispatch and combine times per EP rank at one token shape."""

    points: tuple[tuple[int, float, float], ...]  # (EP ranks, dispatch_s, combine_s), by ranks
    shape_elements: int  # tokens per rank x experts per token x hidden of the measurement
    source: str


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
    moe_a2a: MoeAllToAll | None = None

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


def device_view(system: System) -> System:
    """The system as software sees it. A package that presents several devices (the 910C's two
    dies, each its own NPU with its own HBM: devices_per_package) becomes that many devices,
    each with its share of the package's peaks, memory, bandwidths, power and price, on fabrics
    whose per-chip bandwidth is shared the same way; the domain holds that many more of them.
    Plans count ranks, one per device; results report per package. A one-device chip's system
    is returned as it is."""
    n = system.chip.devices
    if n == 1:
        return system
    c = system.chip
    chip = replace(
        c, name=f"{c.name} device", description=f"one of the {n} devices of a {c.name} package",
        peak_flops_per_s=MappingProxyType({k: v / n for k, v in c.peak_flops_per_s.items()}),
        hbm_bytes=c.hbm_bytes / n, hbm_bw_bytes_per_s=c.hbm_bw_bytes_per_s / n,
        power_w=c.power_w / n, scale_up_bw_bytes_per_s=c.scale_up_bw_bytes_per_s / n,
        scale_out_bw_bytes_per_s=c.scale_out_bw_bytes_per_s / n,
        price_usd=None if c.price_usd is None else c.price_usd / n, devices_per_package=None)
    return replace(system, chip=chip, chips_per_domain=system.chips_per_domain * n,
                   scale_up=replace(system.scale_up, bw_bytes_per_s_per_chip=system.scale_up.bw_bytes_per_s_per_chip / n),
                   scale_out=replace(system.scale_out, bw_bytes_per_s_per_chip=system.scale_out.bw_bytes_per_s_per_chip / n))


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

def _validate(path: Path, fields: dict[str, Field]) -> tuple[dict, dict, dict]:
    """Read and check one catalog file; return (values, sources, notes)."""
    c = check(path, read_toml(path, "catalog"), fields)
    values = c.values
    if "peak_flops_per_s" in values:
        values["peak_flops_per_s"] = MappingProxyType(values["peak_flops_per_s"])
    if values.get("name") is not None and values["name"] != path.stem and path.parent.parent == DATA_DIR:
        raise ModelInputError(f"{path}: key 'name' is {values['name']!r} but shipped files must be named <name>.toml")
    return values, c.sources, c.notes


def _frozen(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


# --- loading ---

def load_chip_file(path: str | Path) -> Chip:
    path = Path(path)
    values, sources, notes = _validate(path, _CHIP_FIELDS)
    return Chip(**values, sources=_frozen(sources), notes=_frozen(notes))


def load_fabric_file(path: str | Path) -> Fabric:
    path = Path(path)
    values, sources, notes = _validate(path, _FABRIC_FIELDS)
    has_inr = values["in_network_reduction"]
    for key in ("inr_efficiency", "inr_latency_s"):
        if has_inr and values[key] is None:
            raise ModelInputError(f"{path}: missing key {key!r} (required when in_network_reduction = true)")
        if not has_inr and values[key] is not None:
            raise ModelInputError(f"{path}: key {key!r} given but in_network_reduction = false")
    if values["moe_a2a"] is not None:
        m = values["moe_a2a"]["value"]
        values["moe_a2a"] = MoeAllToAll(
            points=tuple(sorted((int(r), d, c) for r, d, c in m["points"])),
            shape_elements=m["tokens_per_rank"] * m["experts_per_token"] * m["hidden"],
            source=values["moe_a2a"]["source"])
    return Fabric(**values, sources=_frozen(sources), notes=_frozen(notes))


def load_system_file(path: str | Path) -> System:
    """Load a system file; its chip and fabrics are looked up by name in the shipped catalog."""
    path = Path(path)
    values, sources, notes = _validate(path, _SYSTEM_FIELDS)
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


def near_device_kind(device_kind: str) -> list[Chip]:
    """Catalog chips whose name (up to its first '-') is a word of a device_kind that none of
    them matches: other parts of the same name, e.g. the SXM h100 for "NVIDIA H100 PCIe",
    whose peaks, power and memory are not this part's."""
    if match_device_kind(device_kind) is not None:
        return []
    near = []
    for name in list_chips():
        if re.search(rf"\b{re.escape(name.split('-')[0])}\b", device_kind, re.IGNORECASE):
            near.append(load_chip(name))
    return near
