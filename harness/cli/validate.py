"""`rackbench validate`: every published measurement the repository keeps, projected through the
same command line as `rackbench project` (harness.studies.validation)."""
from __future__ import annotations

import json

from clusters.uncertainty import MODEL_ERROR_PATH
from harness.cli.common import add_format
from harness.errors import UserError
from harness.format import table
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
    add_format(p)
    p.set_defaults(func=run)


def _figure(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def run(args) -> int:
    if args.write_model_error and args.mode:
        raise UserError("--write-model-error fits every mode: drop --mode")
    results = validate(args.mode)
    summary = summarize(results)
    cover = coverage(results)
    if args.write_model_error:
        write_atomic(MODEL_ERROR_PATH, model_error_toml(results))
    if args.format == "json":
        print(json.dumps({"rows": [{k: v for k, v in r.to_dict().items()
                                    if k in ("id", "mode", "metric", "unit", "published",
                                             "projected", "error", "gap", "source")}
                                   for r in results],
                          "summary": [s.to_dict() for s in summary],
                          "band_coverage": cover.to_dict(),
                          "targets": {"median_abs_error": MEDIAN_TARGET,
                                      "max_abs_error": ROW_TARGET}}, indent=1))
        return 0
    rows = [[r.id, r.mode, r.metric, r.unit, _figure(r.published), _figure(r.projected),
             "-" if r.error is None else f"{r.error:+.1%}", "known gap" if r.gap else ""]
            for r in results]
    print(table(["row", "mode", "metric", "unit", "published", "projected", "error", ""], rows,
                "llllrrrl"))
    print()
    for s in summary:
        print(f"{s.mode}: {s.rows} rows, median |error| {s.median_abs_error:.1%}, max "
              f"{s.max_abs_error:.1%}, {s.within_row_target} within {ROW_TARGET:.0%}; "
              f"{s.gaps} known gap{'s' if s.gaps != 1 else ''} (median over all "
              f"{s.projected} projected rows {s.median_abs_error_all:.1%})")
    if cover.rows:
        print(f"bands: the leave-one-out 80% band holds the published figure for "
              f"{cover.inside} of {cover.rows} rows projected as published ({cover.fraction:.0%}; target "
              f"70-90%), median half-width {cover.median_half_width:.1%} (target <= 20%)")
    if args.write_model_error:
        print(f"wrote {MODEL_ERROR_PATH}")
    gaps = [r for r in results if r.gap]
    if gaps:
        print("\nknown gaps (strict expected failures in tests/harness/test_validate.py):")
        for r in gaps:
            print(f"  {r.id}: {r.gap}")
    return 0
