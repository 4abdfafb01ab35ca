"""`rackbench report`: the HTML and Markdown report for one result set (newest by default),
compared with a base (the previous set of the same machine by default), with its history."""
from __future__ import annotations

import sys
from pathlib import Path

from harness import compare, history, nightly, report, resultset
from harness.cli.common import add_format, emit
from harness.errors import UserError
from harness.resultset import check_writable_dir


def register(p) -> None:
    p.description = (
        "Without --new: the newest set of the machine measured most recently in --results. "
        "Without --base: the latest earlier set of the same suite and machine fingerprint, if any. "
        "The history shows the sets of NEW's suite up to NEW.")
    p.add_argument("--base", metavar="SET", help="baseline result set (a file, a directory, latest~N)")
    p.add_argument("--new", metavar="SET", help="result set to report on (a file, a directory, latest)")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default %(default)s)")
    p.add_argument("--out", default="reports", metavar="DIR", help="output directory (default %(default)s)")
    add_format(p)
    p.set_defaults(func=run)


def _newest_readable(results: Path, warnings: list[str]) -> tuple[Path, resultset.ResultSet]:
    """The newest set of the machine measured most recently that loads; each unreadable one
    on the way is skipped with a warning."""
    files = resultset.sets_by_age(resultset.machine_directory(results), warnings)
    for path in reversed(files):
        try:
            return path, resultset.load(path)
        except UserError as exc:
            warnings.append(f"skipped: {exc}")
    raise UserError(f"{results}: no readable result set")


def run(args) -> int:
    results = Path(args.results)
    check_writable_dir(args.out, "--out")
    warnings: list[str] = []
    if args.new:
        new_path = resultset.resolve_set(args.new, results)
        new = resultset.load(new_path)
    else:
        new_path, new = _newest_readable(results, warnings)
    if args.base:
        base = resultset.load(resultset.resolve_set(args.base, results))
    else:
        base, more = nightly.find_baseline(results, new) if results.is_dir() else (None, [])
        warnings += more
    for w in dict.fromkeys(warnings):  # one line per file, however many readers met it
        print(f"report: {w}", file=sys.stderr)
    comparison = compare.compare_sets(base, new) if base is not None else None
    hist = None
    # machine_id is schema-checked to be one safe path component; the set's own directory next
    machine = resultset.safe_machine_id(new.meta.get("machine_id"))
    for candidate in ((results / machine) if machine else None, new_path.parent):
        if candidate is not None and candidate.is_dir():
            try:
                hist = history.load_history(candidate, suite=new.meta.get("suite"), until=new.meta.get("created_utc"))
                break
            except UserError:
                continue
    stem = new_path.name.removesuffix(".gz").removesuffix(".json")
    html_path, md_path = report.write_report(
        args.out, f"report-{stem}", comparison=comparison, new=new, history=hist,
        title=f"rackbench report: {new.meta.get('machine_id') or new_path.name}",
    )
    lines = (["report: no base set: comparison section left out"] if base is None else []) + [
        f"report: {html_path}", f"report: {md_path}"]
    emit(args.format, table=lambda: "\n".join(lines), json_doc=lambda: {
        "html": str(html_path), "markdown": str(md_path), "images": str(html_path.parent / f"report-{stem}-png"),
        "new": str(new_path), "base": str(base.path) if base is not None else None,
        "compare_exit_code": comparison.exit_code if comparison is not None else None})
    return 0
