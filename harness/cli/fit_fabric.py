"""`rackbench fit-fabric`: fit latency and bandwidth to a result set's measured collective sweep."""
from __future__ import annotations

import json

from harness.cli.common import add_format
from harness.format import si, table
from harness.studies.fabric_fit import fit_result_set


def register(p) -> None:
    p.description = ("Weighted least-squares alpha-beta fit (relative residuals) of one collective's "
                    "measured sweep in RESULT_SET, with 95% confidence intervals, and the measured "
                    "fabric the collective model can use in place of a catalog scale-up fabric.")
    p.add_argument("result_set", metavar="RESULT_SET", help="a stored result set (JSON)")
    p.add_argument("--op", default="all_reduce",
                   help="all_reduce, all_gather, reduce_scatter, all_to_all or send (default: all_reduce)")
    p.add_argument("--ranks", type=int, default=None, help="pick one rank count if the set has several")
    p.add_argument("--dtype", default=None, help="pick one dtype if the set has several")
    add_format(p)
    p.set_defaults(func=run)


def _size(size_bytes: float) -> str:
    """Sweep sizes are powers of two: say 1 KiB, not 1.02 kB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size_bytes >= scale and size_bytes % scale == 0:
            return f"{int(size_bytes // scale)} {unit}"
    return si(size_bytes, "B")


def _ci(pair, unit) -> str:
    return f"[{si(pair[0], unit)}, {si(pair[1], unit)}]"


def render(fit) -> str:
    fab = fit.fabric()
    lines = [
        f"{fit.op} over {fit.ranks} ranks ({fit.dtype}), {len(fit.size_bytes)} sizes, from {fit.source}",
        f"model: time = latency + size / bandwidth, least squares on relative residuals, {fit.dof} dof",
        f"  latency     {si(fit.latency_s, 's'):>10}   95% CI {_ci(fit.latency_ci95_s, 's')}",
        f"  algbw       {si(fit.algbw_bytes_per_s, 'B/s'):>10}   95% CI {_ci(fit.algbw_ci95_bytes_per_s, 'B/s')}",
        f"  busbw       {si(fit.busbw_bytes_per_s, 'B/s'):>10}   95% CI {_ci(fit.busbw_ci95_bytes_per_s, 'B/s')}",
        f"  residuals   rms {100 * fit.rms_relative_residual:.1f}% of the measured time, "
        f"max {100 * max(abs(r) for r in fit.relative_residuals):.1f}%",
        f"  fabric      latency {si(fab.latency_s, 's')}, bandwidth {si(fab.bw_bytes_per_s, 'B/s')} "
        "(clusters.collectives.MeasuredFabric, for Group(scale_up=...))",
    ]
    if fit.note:
        lines.append(f"  note: {fit.note}")
    rows = []
    for s, t, f, r, e in zip(fit.size_bytes, fit.time_s, fit.fitted_s, fit.relative_residuals,
                             fit.prediction_error95(fit.size_bytes)):
        rows.append([_size(s), si(t, "s"), si(f, "s"), f"{100 * r:+.1f}%", f"±{100 * e:.0f}%",
                     si(s / t, "B/s")])
    lines += ["", table(["size", "measured", "fitted", "residual", "95% pred.", "algbw"], rows)]
    return "\n".join(lines)


def run(args) -> int:
    fit = fit_result_set(args.result_set, op=args.op, ranks=args.ranks, dtype=args.dtype)
    if args.format == "json":
        print(json.dumps(fit.to_dict(), indent=1))
    else:
        print(render(fit))
    return 0
