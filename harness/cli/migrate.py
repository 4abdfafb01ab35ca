"""`rackbench migrate FILE...`: rewrite stored result sets at the current schema version."""
from __future__ import annotations

import sys

from harness.errors import UserError
from harness.resultset import SCHEMA_VERSION, migrate_file


def register(p) -> None:
    p.description = (
        f"Rewrite each result set rackbench wrote at schema version {SCHEMA_VERSION}, atomically and in place "
        "(compressed sets stay compressed). Sets of the current version are left untouched; plain "
        "pytest-benchmark files are refused. Loading migrates older sets in memory anyway; this makes it "
        "permanent, and an error names the first file that cannot be migrated.")
    p.add_argument("files", metavar="FILE", nargs="+", help="result set files")
    p.set_defaults(func=run)


def run(args) -> int:
    failed = 0
    for path in args.files:
        try:
            before, after = migrate_file(path)
        except UserError as exc:
            if len(args.files) == 1:
                raise
            print(f"rackbench migrate: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if before == after:
            print(f"{path}: already at schema version {after}")
        else:
            print(f"{path}: migrated from schema version {before} to {after}")
    return 2 if failed else 0
