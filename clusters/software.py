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
# How the serving stack's prefill sends tokens to experts: "deduplicated" (DeepEP's normal
# kernels: once per destination node and GPU) or "per_expert" (a plain all-to-all of copies)
DISPATCH_MODES = ("deduplicated", "per_expert")

_STACK = {
    "families": Field("str_list"), "description": Field("str"),
    "tp_comm_overlap": Field("table", spec={"value": Field("bool"), "source": Field("str")}),
    "ep_overlap": Field("table", spec={"value": Field("bool"), "source": Field("str")}),
    "comm_core_fraction": Field("sourced", hi=0.9),
    "tp_overlap_sms": Field("sourced", hi=1000, required=False),
    "prefill_overlap_sms": Field("sourced", hi=1000, required=False),
    "moe_dispatch": Field("table", spec={"mode": Field("str", choices=DISPATCH_MODES),
                                         "source": Field("str")}),
    "decode_overlap": Field("table", spec={"mode": Field("str", choices=("hooks", "split")),
                                           "attention_share": Field("float", hi=1.0, required=False),
                                           "source": Field("str")}),
}


@dataclass(frozen=True)
class DecodeOverlap:
    """How two overlapped decode micro-batches share a chip (clusters.inference)."""

    mode: str  # "hooks": communication without compute cores; "split": fixed core shares
    attention_share: float | None  # "split": the attention stream's share of the cores
    source: str


@dataclass(frozen=True)
class Stack:
    name: str
    description: str
    families: tuple[str, ...]
    offers: dict  # overlap option -> bool
    comm_core_fraction: float  # of the chip's cores, while overlapped communication runs
    sources: dict
    decode_overlap: DecodeOverlap
    moe_dispatch: str = "per_expert"
    # SMs the TP-overlap GEMMs give up for as long as they run (Transformer Engine's userbuffers
    # margin); None: the stack's TP overlap costs comm_core_fraction while communication runs
    tp_overlap_sms: int | None = None
    # SMs the expert all-to-all holds for the whole of an overlapped (two-batch) prefill: the
    # GEMMs run on the rest throughout; None: the all-to-all takes comm_core_fraction of the
    # cores only while it runs
    prefill_overlap_sms: int | None = None


@lru_cache(maxsize=4)
def stacks(path: Path = PATH) -> tuple[Stack, ...]:
    doc = read_toml(path, "software practice")
    spec = {"stack": Field("table_map", spec=_STACK)}
    out = []
    for name, s in check(path, doc, spec).values["stack"].items():
        d = s["decode_overlap"]
        if d["mode"] == "split" and d["attention_share"] is None:
            raise ModelInputError(f"{path}: stack {name}: decode_overlap mode 'split' needs "
                                  "attention_share")
        out.append(Stack(name, s["description"], tuple(s["families"]),
                         {k: s[k]["value"] for k in OVERLAPS}, s["comm_core_fraction"],
                         {k: s[k]["source"] for k in OVERLAPS},
                         DecodeOverlap(d["mode"], d["attention_share"], d["source"]),
                         s["moe_dispatch"]["mode"],
                         None if s["tp_overlap_sms"] is None else int(s["tp_overlap_sms"]),
                         None if s["prefill_overlap_sms"] is None
                         else int(s["prefill_overlap_sms"])))
    return tuple(out)


# A family with no published practice here (a measured local device, say): nothing is overlapped
NO_PRACTICE = Stack("none", "no published software practice: no communication overlap", (),
                    {k: False for k in OVERLAPS}, 0.0, {},
                    DecodeOverlap("hooks", None, "no published practice"))


def stack_for(family: str) -> Stack:
    return next((s for s in stacks() if family in s.families), NO_PRACTICE)
