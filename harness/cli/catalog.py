"""`rackbench catalog [NAME]`: list the chips, systems and fabrics, or show one item with every source."""
from __future__ import annotations

from dataclasses import fields, is_dataclass

from clusters import catalog
from harness.cli.common import add_format, emit
from harness.errors import UserError
from harness.format import flat_record, markdown_table, si, table


def register(p) -> None:
    p.description = ("Without NAME: key figures of every chip, system and fabric. With NAME: every "
                     "number of that item with its source.")
    p.add_argument("name", nargs="?", help="a chip, system or fabric name")
    add_format(p, "csv", "markdown")
    p.set_defaults(func=run)


def _price(value: float | None) -> str:
    return "-" if value is None else f"${value:,.0f}"


def _peak(chip: catalog.Chip, dtype: str) -> str:
    return si(chip.peak_flops_per_s.get(dtype), "FLOP/s")


def _items() -> dict[str, list]:
    return {"chips": [catalog.load_chip(n) for n in catalog.list_chips()],
            "systems": [catalog.load_system(n) for n in catalog.list_systems()],
            "fabrics": [catalog.load_fabric(n) for n in catalog.list_fabrics()]}


def _list_tables(items: dict[str, list]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of the three lists."""
    return [
        ("chips (dense peaks; bandwidths per direction)",
         ["name", "bf16", "fp8", "HBM", "HBM bw", "scale-up bw", "scale-out bw", "power", "price"],
         [[c.name, _peak(c, "bf16"), _peak(c, "fp8"), si(c.hbm_bytes, "B"),
           si(c.hbm_bw_bytes_per_s, "B/s"), si(c.scale_up_bw_bytes_per_s, "B/s"),
           si(c.scale_out_bw_bytes_per_s, "B/s"), si(c.power_w, "W"), _price(c.price_usd)]
          for c in items["chips"]]),
        ("systems (power includes the whole system as sourced)",
         ["name", "chip", "chips/domain", "topology", "scale-up", "scale-out", "power", "price"],
         [[s.name, s.chip.name, str(s.chips_per_domain), s.domain_topology, s.scale_up.name,
           s.scale_out.name, si(s.power_w, "W"), _price(s.price_usd)] for s in items["systems"]]),
        ("fabrics (bandwidth per chip per direction; efficiency = achievable fraction)",
         ["name", "kind", "bw/chip", "efficiency", "latency", "per hop", "in-network reduction"],
         [[f.name, f.kind, si(f.bw_bytes_per_s_per_chip, "B/s"), f"{f.efficiency:.2f}",
           si(f.latency_s, "s"), si(f.per_hop_latency_s, "s"),
           "-" if not f.in_network_reduction else f"yes ({f.inr_efficiency:.2f})"]
          for f in items["fabrics"]]),
    ]


def _lists(markdown: bool = False) -> str:
    out = []
    for title, headers, rows in _list_tables(_items()):
        if markdown:
            out += [f"**{title}**", "", markdown_table(headers, rows), ""]
        else:
            out += [title, table(headers, rows), ""]
    out.append("rackbench catalog NAME shows one item with the source of every number.")
    return "\n".join(out)


def _list_doc() -> dict[str, list[dict]]:
    """--format json without NAME: every item's figures (units in the keys), sources aside."""
    return {kind: [{k: v for k, v in _as_json(item).items() if k not in ("sources", "notes")}
                   for item in items] for kind, items in _items().items()}


def _list_records() -> list[dict]:
    """--format csv without NAME: one row per chip, system and fabric, `kind` first (a
    fabric's measured MoE all-to-all points are in the JSON only)."""
    return [{"kind": kind.removesuffix("s"),
             **flat_record({k: v for k, v in r.items() if k != "moe_a2a"})}
            for kind, recs in _list_doc().items() for r in recs]


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


def _moe_a2a(m: catalog.MoeAllToAll) -> dict:
    return {"points": [{"ep_ranks": n, "dispatch_s": d, "combine_s": c} for n, d, c in m.points],
            "shape_elements": m.shape_elements, "source": m.source}


def _as_json(item) -> dict:
    out = {}
    for f in fields(item):
        value = getattr(item, f.name)
        if isinstance(value, catalog.MoeAllToAll):
            value = _moe_a2a(value)
        elif is_dataclass(value):
            value = value.name
        elif f.name in ("sources", "notes", "peak_flops_per_s"):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        # a fabric's own kind (nvlink, ub) is not the catalog kind the output leads with
        out["fabric_kind" if isinstance(item, catalog.Fabric) and f.name == "kind" else f.name] = value
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


def _rows(item) -> list[dict]:
    """Every sourced number of an item: key, value, display unit, source, note."""
    return [{"key": key, "value": value, "unit": _unit(key), "source": item.sources[key],
             "note": item.notes.get(key)} for key, value in _numbers(item).items()]


def _show(kind: str, item, markdown: bool = False) -> str:
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
    for r in _rows(item):
        value, unit = r["value"], r["unit"]
        shown = f"${value:,.0f}" if r["key"] == "price_usd" else (si(value, unit) if unit else f"{value:g}")
        rows.append([r["key"], shown, r["source"] + (f"  (note: {r['note']})" if r["note"] else "")])
    headers = ["key", "value", "source"]
    lines += ["", markdown_table(headers, rows) if markdown else table(headers, rows, align="lrl")]
    if kind == "fabric" and item.moe_a2a is not None:
        m = item.moe_a2a
        lines += ["", "measured MoE dispatch / combine per EP rank (the serving model's floor for "
                  "the expert all-to-all): " + ", ".join(
                      f"EP{n} {si(d, 's')} / {si(c, 's')}" for n, d, c in m.points),
                  f"  source: {m.source}"]
    return "\n".join(lines)


def run(args) -> int:
    if args.name is None:
        emit(args.format, json_doc=_list_doc, records=_list_records, table=_lists,
             markdown=lambda: _lists(markdown=True), indent=1)
        return 0
    kind, item = _find(args.name)
    emit(args.format, json_doc=lambda: {"kind": kind, **_as_json(item)}, indent=1,
         records=lambda: [{"item": item.name, **r} for r in _rows(item)],
         table=lambda: _show(kind, item), markdown=lambda: _show(kind, item, markdown=True))
    return 0
