"""`rackbench catalog [NAME]`: list the chips, systems and fabrics, or show one item with every source."""
from __future__ import annotations

import json
from dataclasses import fields, is_dataclass

from clusters import catalog
from harness.cli.common import add_format
from harness.errors import UserError
from harness.format import si, table


def register(p) -> None:
    p.description = ("Without NAME: key figures of every chip, system and fabric. With NAME: every "
                     "number of that item with its source.")
    p.add_argument("name", nargs="?", help="a chip, system or fabric name")
    add_format(p)
    p.set_defaults(func=run)


def _price(value: float | None) -> str:
    return "-" if value is None else f"${value:,.0f}"


def _peak(chip: catalog.Chip, dtype: str) -> str:
    return si(chip.peak_flops_per_s.get(dtype), "FLOP/s")


def _lists() -> str:
    chips = [catalog.load_chip(n) for n in catalog.list_chips()]
    systems = [catalog.load_system(n) for n in catalog.list_systems()]
    fabrics = [catalog.load_fabric(n) for n in catalog.list_fabrics()]
    out = ["chips (dense peaks; bandwidths per direction)", table(
        ["name", "bf16", "fp8", "HBM", "HBM bw", "scale-up bw", "scale-out bw", "power", "price"],
        [[c.name, _peak(c, "bf16"), _peak(c, "fp8"), si(c.hbm_bytes, "B"), si(c.hbm_bw_bytes_per_s, "B/s"),
          si(c.scale_up_bw_bytes_per_s, "B/s"), si(c.scale_out_bw_bytes_per_s, "B/s"), si(c.power_w, "W"),
          _price(c.price_usd)] for c in chips])]
    out += ["", "systems (power includes the whole system as sourced)", table(
        ["name", "chip", "chips/domain", "topology", "scale-up", "scale-out", "power", "price"],
        [[s.name, s.chip.name, str(s.chips_per_domain), s.domain_topology, s.scale_up.name, s.scale_out.name,
          si(s.power_w, "W"), _price(s.price_usd)] for s in systems])]
    out += ["", "fabrics (bandwidth per chip per direction; efficiency = achievable fraction)", table(
        ["name", "kind", "bw/chip", "efficiency", "latency", "per hop", "in-network reduction"],
        [[f.name, f.kind, si(f.bw_bytes_per_s_per_chip, "B/s"), f"{f.efficiency:.2f}", si(f.latency_s, "s"),
          si(f.per_hop_latency_s, "s"), "-" if not f.in_network_reduction else f"yes ({f.inr_efficiency:.2f})"]
         for f in fabrics])]
    out += ["", "rackbench catalog NAME shows one item with the source of every number."]
    return "\n".join(out)


def _find(name: str):
    if name in catalog.list_chips():
        return "chip", catalog.load_chip(name)
    if name in catalog.list_systems():
        return "system", catalog.load_system(name)
    if name in catalog.list_fabrics():
        return "fabric", catalog.load_fabric(name)
    valid = catalog.list_chips() + catalog.list_systems() + catalog.list_fabrics()
    raise UserError(f"unknown catalog item {name!r}; valid names: {', '.join(valid)}")


def _numbers(item) -> dict[str, float]:
    """Every sourced number of an item, by the key path used in `sources`."""
    out = {}
    for key in item.sources:
        if "." in key:
            top, sub = key.split(".", 1)
            out[key] = getattr(item, top)[sub]
        else:
            out[key] = getattr(item, key)
    return out


def _as_json(item) -> dict:
    out = {}
    for f in fields(item):
        value = getattr(item, f.name)
        if is_dataclass(value):
            value = value.name
        elif f.name in ("sources", "notes", "peak_flops_per_s"):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _unit(key: str) -> str:
    """Display unit from the key name (units live in names: ARCHITECTURE.md)."""
    if "flops_per_s" in key:
        return "FLOP/s"
    if "bytes_per_s" in key:
        return "B/s"
    if key.endswith("_bytes"):
        return "B"
    if key.endswith("_s"):
        return "s"
    if key.endswith("_w"):
        return "W"
    return ""


def _show(kind: str, item) -> str:
    lines = [f"{kind} {item.name}: {item.description}"]
    if kind == "chip":
        lines.append(f"vendor {item.vendor}, family {item.family}; device_kind patterns: "
                     + ", ".join(item.device_kind_patterns))
    elif kind == "system":
        lines.append(f"chip {item.chip.name}, topology {item.domain_topology}, "
                     f"scale-up {item.scale_up.name}, scale-out {item.scale_out.name}")
    else:
        lines.append(f"kind {item.kind}, in-network reduction: {'yes' if item.in_network_reduction else 'no'}")
    rows = []
    for key, value in _numbers(item).items():
        unit = _unit(key)
        shown = f"${value:,.0f}" if key == "price_usd" else (si(value, unit) if unit else f"{value:g}")
        note = item.notes.get(key)
        rows.append([key, shown, item.sources[key] + (f"  (note: {note})" if note else "")])
    lines += ["", table(["key", "value", "source"], rows, align="lrl")]
    return "\n".join(lines)


def run(args) -> int:
    if args.name is None:
        if args.format == "json":
            print(json.dumps({"chips": catalog.list_chips(), "systems": catalog.list_systems(),
                              "fabrics": catalog.list_fabrics()}, indent=1))
        else:
            print(_lists())
        return 0
    kind, item = _find(args.name)
    if args.format == "json":
        print(json.dumps({"kind": kind, **_as_json(item)}, indent=1))
    else:
        print(_show(kind, item))
    return 0
