"""`rackbench history [DIR]`: trends and change points over every stored set of one machine."""
from __future__ import annotations

from harness import history
from harness.cli.common import add_format, emit


def register(p) -> None:
    p.description = (
        "DIR is one machine's directory (results/<machine_id>) or results/ itself, "
        "in which case the machine measured most recently is used; the series is one suite's (the "
        "newest set's, or --suite). Unreadable, incomplete, other-machine and other-suite files are "
        "skipped with a warning; nothing is written.")
    p.add_argument("directory", metavar="DIR", nargs="?", default="results")
    p.add_argument("--case", metavar="REGEX", help="only cases whose name matches (re.search)")
    p.add_argument("--suite", help="the suite whose sets make the series (default: the newest set's)")
    add_format(p, "csv", "markdown")
    p.set_defaults(func=run)


def run(args) -> int:
    h = history.load_history(args.directory, case_regex=args.case, suite=args.suite)
    records = history.csv_records(h)
    columns = list(history.CSV_COLUMNS) + list(dict.fromkeys(k for r in records for k in r
                                                             if k not in history.CSV_COLUMNS))
    emit(args.format, json_doc=lambda: history.to_json_dict(h), records=lambda: records, columns=columns,
         table=lambda: history.format_table(h).rstrip("\n"),
         markdown=lambda: history.format_table(h, markdown=True).rstrip("\n"), indent=1)
    return 0
