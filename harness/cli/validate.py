"""`rackbench validate`: every published measurement the repository keeps, projected through the
same command line as `rackbench project` (harness.studies.validation)."""
from __future__ import annotations

import json

from harness.cli.common import add_format
from harness.format import table
from harness.studies.validation import MEDIAN_TARGET, MODES, ROW_TARGET, summarize, validate


def register(p) -> None:
    p.description = ("Run every published row of clusters/data/validation/published.csv through "
                     "the rackbench command line of its published setup and print published, "
                     "projected and signed error per row, then the median and max |error| per "
                     f"mode (targets: median <= {MEDIAN_TARGET:.0%}, every row <= {ROW_TARGET:.0%}). "
                     "Known gaps (a mechanism the model lacks) are shown and left out of the "
                     "statistics.")
    p.add_argument("--mode", choices=MODES, help="only this mode's rows")
    add_format(p)
    p.set_defaults(func=run)


def _figure(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def run(args) -> int:
    results = validate(args.mode)
    summary = summarize(results)
    if args.format == "json":
        print(json.dumps({"rows": [{k: v for k, v in r.to_dict().items()
                                    if k in ("id", "mode", "metric", "unit", "published",
                                             "projected", "error", "gap", "source")}
                                   for r in results],
                          "summary": [s.to_dict() for s in summary],
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
    gaps = [r for r in results if r.gap]
    if gaps:
        print("\nknown gaps (strict expected failures in tests/harness/test_validate.py):")
        for r in gaps:
            print(f"  {r.id}: {r.gap}")
    return 0
