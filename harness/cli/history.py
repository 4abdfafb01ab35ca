"""`rackbench history [DIR]`: trends and change points over every stored set of one machine."""
from __future__ import annotations

import json

from harness import history
from harness.cli.common import add_format


def register(p) -> None:
    p.description = (
        "DIR is one machine's directory (results/<machine_id>) or results/ itself, "
        "in which case the machine measured most recently is used. Unreadable, incomplete and "
        "other-machine files are skipped with a warning; nothing is written.")
    p.add_argument("directory", metavar="DIR", nargs="?", default="results")
    p.add_argument("--case", metavar="REGEX", help="only cases whose name matches (re.search)")
    add_format(p)
    p.set_defaults(func=run)


def run(args) -> int:
    h = history.load_history(args.directory, case_regex=args.case)
    if args.format == "json":
        print(json.dumps(history.to_json_dict(h), indent=1))
    else:
        print(history.format_table(h), end="")
    return 0
