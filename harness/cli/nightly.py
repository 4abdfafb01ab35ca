"""`rackbench nightly`: run the suite, store it, compare with the last set of this machine,
write the report; the exit code is compare's (0 nothing worse, 1 worse, 2 bad input, 3 nothing
comparable), and 0 with a message when there is no earlier set yet."""
from __future__ import annotations

import sys

from harness import compare, nightly
from harness.cli.common import add_format, add_verdict_flags, emit, verdict_options
from harness.progress import progress_for


def register(p) -> None:
    p.description = (
        "The regression gate for cron or CI. Exit codes: 0 nothing proven worse (or no earlier "
        "set to compare with), 1 something slower or newly failing (or inconclusive, with --strict), "
        "2 bad input or an unwritable place, 3 nothing comparable, 130 interrupted.")
    p.add_argument("--suite", default="default", help="suite to run (default %(default)s)")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default %(default)s)")
    p.add_argument("--report-dir", default="reports", metavar="DIR", help="where reports go (default %(default)s)")
    add_verdict_flags(p, compare.DEFAULT_FACTOR, compare.DEFAULT_ALPHA)
    p.add_argument("--quiet", action="store_true", help="no per-case progress while measuring")
    add_format(p, "csv", "markdown")
    p.set_defaults(func=run)


def print_outcome(outcome: nightly.NightlyOutcome, fmt: str = "table") -> None:
    """The table and Markdown show the changed cases; JSON and CSV every case (CSV: the
    comparison's rows, the rest of the outcome on stderr)."""
    cmp = outcome.comparison
    lines = [f"nightly: new set {outcome.new_path}", *(f"nightly: {m}" for m in outcome.messages)]
    tail = ["nightly: report " + " and ".join(str(p) for p in outcome.report_paths), f"nightly: exit {outcome.exit_code}"]
    if fmt == "csv":
        for line in lines + tail:
            print(line, file=sys.stderr)
    records = compare.csv_records(cmp) if cmp is not None else []
    emit(fmt, json_doc=lambda: {
        "new": str(outcome.new_path), "baseline": str(outcome.baseline_path) if outcome.baseline_path else None,
        "messages": list(outcome.messages), "comparison": compare.to_json_dict(cmp) if cmp is not None else None,
        "reports": [str(p) for p in outcome.report_paths], "exit_code": outcome.exit_code},
         records=lambda: records, columns=compare.csv_columns(records),
         table=lambda: "\n".join(lines + ([compare.format_table(cmp, only_changed=True).rstrip("\n")] if cmp else [])
                                 + tail),
         markdown=lambda: "\n".join([f"- {l}" for l in lines] + [""]
                                    + ([compare.format_markdown(cmp, only_changed=True).rstrip("\n"), ""] if cmp else [])
                                    + [f"- {l}" for l in tail]), indent=1)


def run(args) -> int:
    outcome = nightly.run_nightly(args.suite, args.results, args.report_dir, **verdict_options(args),
                                  progress=progress_for(sys.stderr, args.quiet))
    print_outcome(outcome, args.format)
    return outcome.exit_code
