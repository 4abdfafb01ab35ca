"""`rackbench fit-fabric`: fit latency and bandwidth to a result set's measured collective sweep."""
from __future__ import annotations

from harness.cli.common import add_format, emit
from harness.format import byte_size, markdown_table, si, table
from harness.studies.fabric_fit import bus_factor, fit_result_set


def register(p) -> None:
    p.description = ("Weighted least-squares alpha-beta fit (relative residuals) of one collective's "
                    "measured sweep in RESULT_SET, with 95% confidence intervals, and the measured "
                    "fabric the collective model can use in place of a catalog scale-up fabric.")
    p.add_argument("result_set", metavar="RESULT_SET",
                   help="a stored result set (a file, a directory for its newest set, or latest~N)")
    p.add_argument("--op", default="all_reduce",
                   help="all_reduce, all_gather, reduce_scatter, all_to_all or send (default: all_reduce)")
    p.add_argument("--ranks", type=int, default=None, help="pick one rank count if the set has several")
    p.add_argument("--dtype", default=None, help="pick one dtype if the set has several")
    add_format(p, "csv", "markdown")
    p.set_defaults(func=run)


def _ci(pair, unit) -> str:
    return f"[{si(pair[0], unit)}, {si(pair[1], unit)}]"


def size_records(fit) -> list[dict]:
    """One row per measured size (CSV): measured and fitted time, residual, prediction error,
    and the measured algbw and busbw."""
    factor = bus_factor(fit.op, fit.ranks)
    return [{"size_bytes": float(s), "measured_s": float(t), "fitted_s": float(f), "relative_residual": float(r),
             "prediction_error95": float(e), "algbw_bytes_per_s": float(s / t), "busbw_bytes_per_s": float(factor * s / t)}
            for s, t, f, r, e in zip(fit.size_bytes, fit.time_s, fit.fitted_s, fit.relative_residuals,
                                     fit.prediction_error95(fit.size_bytes))]


def render(fit, markdown: bool = False) -> str:
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
    rows = [[byte_size(r["size_bytes"]), si(r["measured_s"], "s"), si(r["fitted_s"], "s"),
             f"{100 * r['relative_residual']:+.1f}%", f"±{100 * r['prediction_error95']:.0f}%",
             si(r["algbw_bytes_per_s"], "B/s"), si(r["busbw_bytes_per_s"], "B/s")] for r in size_records(fit)]
    header = ["size", "measured", "fitted", "residual", "95% pred.", "algbw", "busbw"]
    if markdown:
        return "\n".join([f"- {l.strip()}" for l in lines] + ["", markdown_table(header, rows)])
    return "\n".join(lines + ["", table(header, rows)])


def run(args) -> int:
    fit = fit_result_set(args.result_set, op=args.op, ranks=args.ranks, dtype=args.dtype)
    emit(args.format, json_doc=fit.to_dict, records=lambda: size_records(fit), table=lambda: render(fit),
         markdown=lambda: render(fit, markdown=True), indent=1)
    return 0
