"""`rackbench nightly`: run the suite, store it, compare with the last set of this machine,
write the report; the exit code is compare's (0 nothing worse, 1 worse, 2 bad input, 3 nothing
comparable), and 0 with a message when there is no earlier set yet."""
from __future__ import annotations

import sys

from harness import compare, nightly
from harness.cli.common import add_verdict_flags, verdict_options
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
    p.set_defaults(func=run)


def print_outcome(outcome: nightly.NightlyOutcome) -> None:
    print(f"nightly: new set {outcome.new_path}")
    for m in outcome.messages:
        print(f"nightly: {m}")
    if outcome.comparison is not None:
        print(compare.format_table(outcome.comparison, only_changed=True), end="")
    print("nightly: report " + " and ".join(str(p) for p in outcome.report_paths))
    print(f"nightly: exit {outcome.exit_code}")


def run(args) -> int:
    outcome = nightly.run_nightly(args.suite, args.results, args.report_dir, **verdict_options(args),
                                  progress=progress_for(sys.stderr, args.quiet))
    print_outcome(outcome)
    return outcome.exit_code
