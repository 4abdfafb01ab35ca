"""`rackbench collective`: modelled time and nccl-tests algbw/busbw of one collective on a catalog system."""
from __future__ import annotations

import re

import numpy as np

from clusters.catalog import load_system
from clusters.collectives import ALGORITHMS, OPS, Group, collective
from harness.cli.common import add_format, add_plot, check_plot_path, emit, write_figure
from harness.errors import UserError
from harness.format import byte_size, si, table

SWEEP_MIN_BYTES = 2**10  # 1 KiB
SWEEP_MAX_BYTES = 2**32  # 4 GiB

_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> float:
    """'1GiB', '64MB', '1e9', '4096' -> bytes. GB = 1e9, GiB = 2**30 (ARCHITECTURE.md)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise UserError(f"--bytes {text!r}: expected a size like 4096, 1e9, 64MB or 1GiB")
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def register(p) -> None:
    p.description = ("Alpha-beta model of a collective among RANKS ranks of a catalog system. "
                    "Sizes follow nccl-tests (all_gather: the whole output; all_to_all: each rank's "
                    "whole send buffer); algbw = size / time; busbw uses nccl-tests' factors.")
    p.add_argument("--system", required=True, help="catalog system, e.g. hgx-h100")
    p.add_argument("--op", required=True, help=f"one of {', '.join(OPS)}")
    p.add_argument("--ranks", required=True, type=int, help="ranks in the group")
    p.add_argument("--ranks-per-domain", type=int, default=None,
                   help="ranks in each scale-up domain (default: fill domains)")
    p.add_argument("--bytes", dest="size", default=None, help="message size: 4096, 1e9, 64MB, 1GiB")
    p.add_argument("--algorithm", default=None, help=f"force one of {', '.join(ALGORITHMS)} (default: fastest)")
    p.add_argument("--sweep", action="store_true", help="sizes from 1 KiB to 4 GiB in powers of two")
    add_plot(p, "busbw against size (a sweep)")
    add_format(p, "csv")
    p.set_defaults(func=run)


def _sweep_sizes() -> np.ndarray:
    return 2.0 ** np.arange(np.log2(SWEEP_MIN_BYTES), np.log2(SWEEP_MAX_BYTES) + 1)


def _row(result, i) -> dict:
    return {"size_bytes": float(result.size_bytes[i]), "time_s": float(result.time_s[i]),
            "algbw_bytes_per_s": float(result.algbw_bytes_per_s[i]),
            "busbw_bytes_per_s": float(result.busbw_bytes_per_s[i]),
            "algorithm": str(result.algorithm[i]), "latency_s": float(result.latency_s[i])}


def _plot(path: str, result, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(result.size_bytes, result.busbw_bytes_per_s / 1e9, marker="o", ms=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes, nccl-tests convention)")
    ax.set_ylabel("busbw (GB/s)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    try:
        write_figure(fig, path)
    finally:
        plt.close(fig)


def compute(args) -> dict:
    """The collective `args` ask for: the group and one row per size (what --format json
    prints). A --plot path is checked before any work."""
    check_plot_path(args.plot)
    if args.op not in OPS:
        raise UserError(f"--op {args.op!r}: valid: {', '.join(OPS)}")
    if args.algorithm is not None and args.algorithm not in ALGORITHMS:
        raise UserError(f"--algorithm {args.algorithm!r}: valid: {', '.join(ALGORITHMS)}")
    sweep = args.sweep or args.plot is not None
    if args.size is None and not sweep:
        raise UserError("give --bytes SIZE or --sweep")
    sizes = _sweep_sizes() if sweep else np.array([parse_size(args.size)])
    if sweep and args.size is not None:
        sizes = np.union1d(sizes, [parse_size(args.size)])
    system = load_system(args.system)
    group = Group(system, args.ranks, args.ranks_per_domain)
    result = collective(args.op, sizes, group, args.algorithm)
    return {"system": system.name, "op": args.op, "ranks": group.ranks,
            "ranks_per_domain": group.ranks_per_domain, "domains": group.domains,
            "results": [_row(result, i) for i in range(len(sizes))], "_result": result}


def run(args) -> int:
    doc = compute(args)
    result, rows = doc.pop("_result"), doc["results"]
    title = (f"{doc['op']} on {doc['ranks']} ranks of {doc['system']} "
             f"({doc['ranks_per_domain']} per domain, {doc['domains']} "
             f"domain{'s' if doc['domains'] > 1 else ''})")
    if args.plot:
        _plot(args.plot, result, title)
    context = {k: v for k, v in doc.items() if k != "results"}
    single = not (args.sweep or args.plot is not None)
    emit(args.format, json_doc=lambda: {**context, **rows[0]} if single else doc, indent=1,
         records=lambda: [{**context, **r} for r in rows],
         table=lambda: title + "\n" + table(
             ["size", "time", "algbw", "busbw", "algorithm"],
             [[byte_size(r["size_bytes"]), si(r["time_s"], "s"), si(r["algbw_bytes_per_s"], "B/s"),
               si(r["busbw_bytes_per_s"], "B/s"), r["algorithm"]] for r in rows], align="rrrrl"))
    if args.plot and args.format == "table":
        print(f"plot: {args.plot}")
    return 0
