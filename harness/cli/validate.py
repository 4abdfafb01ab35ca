"""`rackbench validate`: every published measurement the repository keeps, projected through the
same command line as `rackbench project` (harness.studies.validation)."""
from __future__ import annotations

from clusters.uncertainty import MODEL_ERROR_PATH
from harness.cli.common import add_format, emit
from harness.errors import UserError
from harness.format import markdown_table, number, table
from harness.resultset import write_atomic
from harness.studies.calibrate import DEFAULT_SPEC, choose, priced_counts
from harness.studies.validation import (MEDIAN_TARGET, MODES, ROW_TARGET, SET_MEDIAN_SLACK,
                                        compare_calibrations, coverage, model_error_toml,
                                        record_cold, summarize, unrecorded, validate)


def register(p) -> None:
    p.description = ("Run every published row of clusters/data/validation/published.csv through "
                     "the rackbench command line of its published setup and print published, "
                     "projected and signed error per row, then the median and max |error| per "
                     f"mode (targets: median <= {MEDIAN_TARGET:.0%}, every row <= {ROW_TARGET:.0%}). "
                     "Known gaps (a mechanism the model lacks) are shown and left out of the "
                     "statistics.")
    p.add_argument("--mode", choices=MODES, help="only this mode's rows")
    p.add_argument("--calibration", metavar="SET",
                   help="a result set (file, latest, a directory), or auto[:DIR] (make bench's "
                        "own run, the newest in DIR (default results), when measured on a "
                        "catalog GPU and complete): every row under it beside the default "
                        "file, what priced each row (measured, default, extrapolated), and per "
                        f"mode whether the set meets the targets (median <= {MEDIAN_TARGET:.0%} "
                        f"and at most {SET_MEDIAN_SLACK:.0%} above the default file's, every row "
                        f"within {ROW_TARGET:.0%})")
    p.add_argument("--summary", action="store_true",
                   help="with --calibration: only the per-mode lines")
    p.add_argument("--record-cold", action="store_true",
                   help="write the cold error (today's error, with the commit of the code) of "
                        "every published row that has none: run it when a row is added, before "
                        "anything is changed for it (the code must be committed)")
    p.add_argument("--write-model-error", action="store_true",
                   help=f"write the per-mode model-form error the bands use ({MODEL_ERROR_PATH})")
    add_format(p, "csv", "markdown")
    p.set_defaults(func=run)


ROW_KEYS = ("id", "mode", "metric", "unit", "published", "projected", "error", "gap", "source",
            "cold_error", "cold_commit")


def _rows(results) -> list[dict]:
    """Each published row: `published` and `projected` in the row's `unit`, `error` the signed
    fraction (projected / published - 1), `gap` the known gap's reason (or None)."""
    return [{k: v for k, v in r.to_dict().items() if k in ROW_KEYS} for r in results]


def run(args) -> int:
    if args.write_model_error and args.mode:
        raise UserError("--write-model-error fits every mode: drop --mode")
    if args.calibration is not None:
        if args.write_model_error:
            raise UserError("--write-model-error fits the calibration project uses: drop "
                            "--calibration")
        return run_with_set(args)
    if args.summary:
        raise UserError("--summary goes with --calibration SET")
    results = validate(args.mode)
    if args.record_cold:
        if args.mode:
            raise UserError("--record-cold records every new row: drop --mode")
        written = record_cold(results)
        print(f"cold errors recorded for {len(written)} row(s)"
              + (f": {', '.join(written)}" if written else ""))
        results = validate(args.mode)
    summary = summarize(results)
    cover = coverage(results)
    if args.write_model_error:
        write_atomic(MODEL_ERROR_PATH, model_error_toml(results))
    emit(args.format, indent=1, records=lambda: _rows(results),
         json_doc=lambda: {"rows": _rows(results), "summary": [s.to_dict() for s in summary],
                           "band_coverage": cover.to_dict(),
                           "targets": {"median_abs_error": MEDIAN_TARGET,
                                       "max_abs_error": ROW_TARGET}},
         table=lambda: render(results, summary, cover, args.write_model_error),
         markdown=lambda: render(results, summary, cover, args.write_model_error, markdown=True))
    return 0


def render(results, summary, cover, wrote: bool, markdown: bool = False) -> str:
    headers = ["row", "mode", "metric", "unit", "published", "projected", "error", "gap"]
    rows = [[r.id, r.mode, r.metric, r.unit, number(r.published), number(r.projected),
             "-" if r.error is None else f"{r.error:+.1%}", "known gap" if r.gap else ""]
            for r in results]
    out = [markdown_table(headers, rows) if markdown else table(headers, rows, "llllrrrl"), ""]
    item = "- " if markdown else ""
    for s in summary:
        cold = (f"; cold (out of sample): median |error| {s.median_abs_cold_error:.1%} over "
                f"{s.cold_rows} row{'s' if s.cold_rows != 1 else ''} added since 2026-12-08"
                if s.cold_rows else "")
        out.append(f"{item}{_mode_line(s)}; "
                   f"{s.gaps} known gap{'s' if s.gaps != 1 else ''} (median over all "
                   f"{s.projected} projected rows {s.median_abs_error_all:.1%}){cold}")
    missing = unrecorded(results)
    if missing:
        out.append(f"{item}NO COLD ERROR for {', '.join(missing)}: run `rackbench validate "
                   "--record-cold` before changing anything for a new row")
    if cover.rows:
        out.append(f"{item}bands: the leave-one-out 80% band holds the published figure for "
                   f"{cover.inside} of {cover.rows} rows projected as published ({cover.fraction:.0%}; "
                   f"target: consistent with 80%, {cover.accepted[0]}-{cover.accepted[1]} of {cover.rows} "
                   f"by a two-sided binomial test at 5%), median half-width "
                   f"{cover.median_half_width:.1%} (target <= 20%)")
    if wrote:
        out.append(f"wrote {MODEL_ERROR_PATH}")
    gaps = [r for r in results if r.gap]
    if gaps:
        out += ["", "known gaps (strict expected failures in tests/harness/test_validate.py):"]
        out += [f"{'- ' if markdown else '  '}{r.id}: {r.gap}" for r in gaps]
    return "\n".join(out)


# ------------------------------------------------------------------ --calibration SET

def _priced_text(priced_by) -> str:
    """A row's lookups by status: measured (M), extrapolated (X: outside the measured sizes,
    the published entry), default (D)."""
    c = priced_counts(priced_by)
    return " ".join(f"{k}{c[name]}" for k, name in (("M", "measured"), ("X", "extrapolated"),
                                                    ("D", "default")) if c[name])


def run_with_set(args) -> int:
    choice = choose(args.calibration)
    if choice.path is None:
        # the default file (asked for, or auto on a machine whose run sets nothing: a CPU) alone
        results = validate(args.mode, DEFAULT_SPEC)
        lines = [choice.why, *[_mode_line(s) for s in summarize(results)]]
        emit(args.format, indent=1, records=lambda: _rows(results),
             json_doc=lambda: {"calibration_why": choice.why,
                               "summary": [s.to_dict() for s in summarize(results)]},
             table=lambda: "\n".join(lines), markdown=lambda: "\n".join(lines))
        return 0
    default = validate(args.mode, DEFAULT_SPEC)
    measured = validate(args.mode, str(choice.path))
    verdicts = compare_calibrations(default, measured)
    cal = choice.calibration

    def records():
        out = []
        for d, m in zip(default, measured):
            row = {k: v for k, v in m.to_dict().items() if k in ROW_KEYS}
            row.update({"default_projected": d.projected, "default_error": d.error,
                        "priced": _priced_text(m.priced_by)})
            out.append(row)
        return out

    def json_doc():
        return {"calibration": cal.name, "calibration_why": choice.why,
                "set_notes": list(cal.set_notes),
                "rows": [{**r, "priced_by": list(m.priced_by)}
                         for r, m in zip(records(), measured)],
                "verdicts": [v.to_dict() for v in verdicts],
                "targets": {"median_abs_error": MEDIAN_TARGET, "median_above_default":
                            SET_MEDIAN_SLACK, "max_abs_error": ROW_TARGET}}

    def text(markdown=False):
        out = [choice.why]
        if cal.set_notes:
            out.append(f"the set's cases: {len(cal.set_notes)} left out or corrected (--format "
                       "json lists them: near the device loop's own cost, or its loop's copies)")
        if not args.summary:
            out.append("priced: the row's kernel lookups under the set: M measured (a curve of "
                       "the set), X extrapolated (outside its sizes: the published entry), D "
                       "default (published: another family, dtype or kernel)")
            headers = ["row", "mode", "published", "default", "error", "with set", "error",
                       "priced", "gap"]
            rows = [[m.id, m.mode, number(m.published), number(d.projected),
                     "-" if d.error is None else f"{d.error:+.1%}", number(m.projected),
                     "-" if m.error is None else f"{m.error:+.1%}", _priced_text(m.priced_by),
                     "known gap" if m.gap else ""] for d, m in zip(default, measured)]
            out += [markdown_table(headers, rows) if markdown
                    else table(headers, rows, "llrrrrrll"), ""]
        item = "- " if markdown else ""
        for v in verdicts:
            d, m = v.default, v.measured
            out.append(f"{item}{v.mode}: {m.rows} rows, median |error| {d.median_abs_error:.1%} "
                       f"(default file) -> {m.median_abs_error:.1%} (set), max "
                       f"{d.max_abs_error:.1%} -> {m.max_abs_error:.1%}, within {ROW_TARGET:.0%}: "
                       f"{d.within_row_target} -> {m.within_row_target}; the set moved "
                       f"{v.moved} of the mode's rows; "
                       + ("meets the targets" if v.meets else "MISSES the targets"))
        return "\n".join(out)

    emit(args.format, indent=1, records=records, json_doc=json_doc, table=text,
         markdown=lambda: text(markdown=True))
    return 0


def _mode_line(s) -> str:
    return (f"{s.mode}: {s.rows} rows, median |error| {s.median_abs_error:.1%}, max "
            f"{s.max_abs_error:.1%}, {s.within_row_target} within {ROW_TARGET:.0%}")
