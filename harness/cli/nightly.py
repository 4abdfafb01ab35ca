"""`rackbench nightly`: run the suite, store it, compare with the last set of this machine,
write the report; the exit code is compare's (0 nothing worse, 1 worse, 2 bad input, 3 nothing
comparable), and 0 with a message when there is no earlier set yet."""
from __future__ import annotations

from harness import compare, nightly


def register(p) -> None:
    p.description = (
        "The regression gate for cron or CI. Exit codes: 0 nothing worse (or no earlier "
        "set to compare with), 1 something slower or newly failing, 2 bad input, 3 nothing comparable.")
    p.add_argument("--suite", default="default", help="suite to run (default %(default)s)")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default %(default)s)")
    p.add_argument("--report-dir", default="reports", metavar="DIR", help="where reports go (default %(default)s)")
    p.add_argument("--factor", type=float, default=compare.DEFAULT_FACTOR)
    p.add_argument("--alpha", type=float, default=compare.DEFAULT_ALPHA)
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
    outcome = nightly.run_nightly(args.suite, args.results, args.report_dir, factor=args.factor, alpha=args.alpha)
    print_outcome(outcome)
    return outcome.exit_code
