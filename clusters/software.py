"""The software practice of each chip family (clusters/data/software.toml): which communication
overlaps its training stack offers, and what share of the chip's cores overlapped communication
takes from compute. The plan search offers a family's overlaps as choices; the cost model
charges their core share."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from clusters.errors import ModelInputError
from clusters.tomldata import Field, check, read_toml

PATH = Path(__file__).parent / "data" / "software.toml"
OVERLAPS = ("tp_comm_overlap", "ep_overlap")

_STACK = {
    "families": Field("str_list"), "description": Field("str"),
    "tp_comm_overlap": Field("table", spec={"value": Field("bool"), "source": Field("str")}),
    "ep_overlap": Field("table", spec={"value": Field("bool"), "source": Field("str")}),
    "comm_core_fraction": Field("sourced", hi=0.9),
}


@dataclass(frozen=True)
class Stack:
    name: str
    description: str
    families: tuple[str, ...]
    offers: dict  # overlap option -> bool
    comm_core_fraction: float  # of the chip's cores, while overlapped communication runs
    sources: dict


@lru_cache(maxsize=4)
def stacks(path: Path = PATH) -> tuple[Stack, ...]:
    doc = read_toml(path, "software practice")
    spec = {"stack": Field("table_map", spec=_STACK)}
    out = []
    for name, s in check(path, doc, spec).values["stack"].items():
        out.append(Stack(name, s["description"], tuple(s["families"]),
                         {k: s[k]["value"] for k in OVERLAPS}, s["comm_core_fraction"],
                         {k: s[k]["source"] for k in OVERLAPS}))
    return tuple(out)


def stack_for(family: str) -> Stack:
    for s in stacks():
        if family in s.families:
            return s
    raise ModelInputError(f"no software practice for chip family {family!r} in {PATH}")
