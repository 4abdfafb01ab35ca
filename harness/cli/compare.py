"""`rackbench compare BASE NEW`: the per-case verdicts and the exit code a CI gate acts on."""
from __future__ import annotations

from harness import compare
from harness.cli.common import add_format, add_verdict_flags, emit, verdict_options


def register(p) -> None:
    p.description = (
        "Pair cases by name and parameters; per pair: the ratio of medians, a decision interval "
        "(bootstrap of the medians plus the pair's run-to-run noise, family-wise level), and a "
        "verdict: slower (+) when the interval lies above the factor, inconclusive (~) when the "
        "ratio is beyond the factor but not proven. Exit codes: 0 nothing proven worse, "
        "1 something slower or newly failing (or inconclusive, with --strict), 2 bad input, "
        "3 nothing comparable.")
    p.add_argument("base", metavar="BASE", help="baseline result set (rackbench or pytest-benchmark JSON; a file, "
                                                "a directory for its newest set, or latest~N)")
    p.add_argument("new", metavar="NEW", help="result set to judge (a file, a directory, or latest)")
    add_verdict_flags(p, compare.DEFAULT_FACTOR, compare.DEFAULT_ALPHA)
    p.add_argument("--only-changed", action="store_true", help="hide cases whose verdict is 'same'")
    add_format(p, "csv", "markdown")
    p.set_defaults(func=run)


def run(args) -> int:
    cmp = compare.compare_files(args.base, args.new, **verdict_options(args))
    print_comparison(cmp, args.format, args.only_changed)
    return cmp.exit_code


def print_comparison(cmp: compare.Comparison, fmt: str, only_changed: bool) -> None:
    """A comparison in the --format asked for (compare and nightly)."""
    records = compare.csv_records(cmp, only_changed)
    emit(fmt, json_doc=lambda: compare.to_json_dict(cmp, only_changed), records=lambda: records,
         columns=compare.csv_columns(records), table=lambda: compare.format_table(cmp, only_changed).rstrip("\n"),
         markdown=lambda: compare.format_markdown(cmp, only_changed).rstrip("\n"), indent=1)
