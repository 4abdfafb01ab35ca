"""`rackbench validate`: every published measurement the repository keeps, projected through the
same command line as `rackbench project` (harness.studies.validation)."""
from __future__ import annotations

from clusters.uncertainty import MODEL_ERROR_PATH
from harness.cli.common import add_format, emit
from harness.errors import UserError
from harness.format import markdown_table, number, table
from harness.resultset import write_atomic
from harness.studies.validation import (MEDIAN_TARGET, MODES, ROW_TARGET, coverage,
                                        model_error_toml, summarize, validate)


def register(p) -> None:
    p.description = ("Run every published row of clusters/data/validation/published.csv through "
                     "the rackbench command line of its published setup and print published, "
                     "projected and signed error per row, then the median and max |error| per "
                     f"mode (targets: median <= {MEDIAN_TARGET:.0%}, every row <= {ROW_TARGET:.0%}). "
                     "Known gaps (a mechanism the model lacks) are shown and left out of the "
                     "statistics.")
    p.add_argument("--mode", choices=MODES, help="only this mode's rows")
    p.add_argument("--write-model-error", action="store_true",
                   help=f"write the per-mode model-form error the bands use ({MODEL_ERROR_PATH})")
    add_format(p, "csv", "markdown")
    p.set_defaults(func=run)


ROW_KEYS = ("id", "mode", "metric", "unit", "published", "projected", "error", "gap", "source")


def _rows(results) -> list[dict]:
    """Each published row: `published` and `projected` in the row's `unit`, `error` the signed
    fraction (projected / published - 1), `gap` the known gap's reason (or None)."""
    return [{k: v for k, v in r.to_dict().items() if k in ROW_KEYS} for r in results]


def run(args) -> int:
    if args.write_model_error and args.mode:
        raise UserError("--write-model-error fits every mode: drop --mode")
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
        out.append(f"{item}{s.mode}: {s.rows} rows, median |error| {s.median_abs_error:.1%}, max "
                   f"{s.max_abs_error:.1%}, {s.within_row_target} within {ROW_TARGET:.0%}; "
                   f"{s.gaps} known gap{'s' if s.gaps != 1 else ''} (median over all "
                   f"{s.projected} projected rows {s.median_abs_error_all:.1%})")
    if cover.rows:
        out.append(f"{item}bands: the leave-one-out 80% band holds the published figure for "
                   f"{cover.inside} of {cover.rows} rows projected as published ({cover.fraction:.0%}; "
                   f"target 70-90%), median half-width {cover.median_half_width:.1%} (target <= 20%)")
    if wrote:
        out.append(f"wrote {MODEL_ERROR_PATH}")
    gaps = [r for r in results if r.gap]
    if gaps:
        out += ["", "known gaps (strict expected failures in tests/harness/test_validate.py):"]
        out += [f"{'- ' if markdown else '  '}{r.id}: {r.gap}" for r in gaps]
    return "\n".join(out)
