"""`rackbench compare BASE NEW`: the per-case verdicts and the exit code a CI gate acts on."""
from __future__ import annotations

import json

from harness import compare
from harness.cli.common import add_format, add_verdict_flags, verdict_options


def register(p) -> None:
    p.description = (
        "Pair cases by name and parameters; per pair: the ratio of medians, a decision interval "
        "(bootstrap of the medians plus the pair's run-to-run noise, family-wise level), and a "
        "verdict: slower (+) when the interval lies above the factor, inconclusive (~) when the "
        "ratio is beyond the factor but not proven. Exit codes: 0 nothing proven worse, "
        "1 something slower or newly failing (or inconclusive, with --strict), 2 bad input, "
        "3 nothing comparable.")
    p.add_argument("base", metavar="BASE", help="baseline result set (rackbench or pytest-benchmark JSON)")
    p.add_argument("new", metavar="NEW", help="result set to judge")
    add_verdict_flags(p, compare.DEFAULT_FACTOR, compare.DEFAULT_ALPHA)
    p.add_argument("--only-changed", action="store_true", help="hide cases whose verdict is 'same'")
    add_format(p, "markdown")
    p.set_defaults(func=run)


def run(args) -> int:
    cmp = compare.compare_files(args.base, args.new, **verdict_options(args))
    if args.format == "json":
        print(json.dumps(compare.to_json_dict(cmp, args.only_changed), indent=1))
    elif args.format == "markdown":
        print(compare.format_markdown(cmp, args.only_changed), end="")
    else:
        print(compare.format_table(cmp, args.only_changed), end="")
    return cmp.exit_code
