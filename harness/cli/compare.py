"""`rackbench compare BASE NEW`: the per-case verdicts and the exit code a CI gate acts on."""
from __future__ import annotations

import json

from harness import compare
from harness.cli.common import add_format
from harness.errors import UserError


def register(p) -> None:
    p.description = (
        "Pair cases by name and parameters; per pair: ratio of medians with a bootstrap "
        "CI, Mann-Whitney U with Holm correction, and a verdict. Exit codes: 0 nothing worse, "
        "1 something slower or newly failing, 2 bad input, 3 nothing comparable.")
    p.add_argument("base", metavar="BASE", help="baseline result set (rackbench or pytest-benchmark JSON)")
    p.add_argument("new", metavar="NEW", help="result set to judge")
    p.add_argument("--factor", type=float, default=compare.DEFAULT_FACTOR,
                   help="minimum effect, as a ratio of medians, to call a case slower or faster (default %(default)s)")
    p.add_argument("--alpha", type=float, default=compare.DEFAULT_ALPHA,
                   help="significance level after Holm correction (default %(default)s)")
    p.add_argument("--only-changed", action="store_true", help="hide cases whose verdict is 'same'")
    add_format(p, "markdown")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.factor >= 1.0:
        raise UserError(f"--factor {args.factor}: must be >= 1 (1.05 means a 5% change)")
    if not 0.0 < args.alpha < 1.0:
        raise UserError(f"--alpha {args.alpha}: must be between 0 and 1")
    cmp = compare.compare_files(args.base, args.new, factor=args.factor, alpha=args.alpha)
    if args.format == "json":
        print(json.dumps(compare.to_json_dict(cmp, args.only_changed), indent=1))
    elif args.format == "markdown":
        print(compare.format_markdown(cmp, args.only_changed), end="")
    else:
        print(compare.format_table(cmp, args.only_changed), end="")
    return cmp.exit_code
