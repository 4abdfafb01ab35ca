"""`rackbench migrate FILE...`: rewrite stored result sets at the current schema version."""
from __future__ import annotations

import sys

from harness.cli.common import add_format, emit
from harness.errors import UserError
from harness.resultset import SCHEMA_VERSION, migrate_file


def register(p) -> None:
    p.description = (
        f"Rewrite each result set rackbench wrote at schema version {SCHEMA_VERSION}, atomically and in place "
        "(compressed sets stay compressed). Sets of the current version are left untouched; plain "
        "pytest-benchmark files are refused. Loading migrates older sets in memory anyway; this makes it "
        "permanent, and an error names the first file that cannot be migrated.")
    p.add_argument("files", metavar="SET", nargs="+", help="result set files (or directories: their newest set)")
    add_format(p, "csv")
    p.set_defaults(func=run)


def run(args) -> int:
    failed = 0
    done = []
    for path in args.files:
        try:
            before, after = migrate_file(path)
        except UserError as exc:
            if len(args.files) == 1:
                raise
            print(f"rackbench migrate: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        done.append({"path": str(path), "schema_version_before": before, "schema_version_after": after,
                     "migrated": before != after})
    lines = [f"{d['path']}: migrated from schema version {d['schema_version_before']} to {d['schema_version_after']}"
             if d["migrated"] else f"{d['path']}: already at schema version {d['schema_version_after']}" for d in done]
    if done:
        emit(args.format, json_doc=lambda: done, records=lambda: done, table=lambda: "\n".join(lines), indent=1)
    return 2 if failed else 0
