"""`rackbench report`: the HTML and Markdown report for one result set (newest by default),
compared with a base (the previous set of the same machine by default), with its history."""
from __future__ import annotations

from pathlib import Path

from harness import compare, history, nightly, report, resultset
from harness.errors import UserError


def register(p) -> None:
    p.description = (
        "Without --new: the newest set of the machine measured most recently in --results. "
        "Without --base: the latest earlier set with the same machine fingerprint, if any.")
    p.add_argument("--base", metavar="FILE", help="baseline result set")
    p.add_argument("--new", metavar="FILE", help="result set to report on")
    p.add_argument("--results", default="results", metavar="DIR", help="result store (default %(default)s)")
    p.add_argument("--out", default="reports", metavar="DIR", help="output directory (default %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    results = Path(args.results)
    if args.new:
        new_path = Path(args.new)
    else:
        files = history.result_files(history.machine_directory(results))
        new_path = files[-1]
    new = resultset.load(new_path)
    if args.base:
        base = resultset.load(args.base)
    else:
        base, warnings = nightly.find_baseline(results, new) if results.is_dir() else (None, [])
        for w in warnings:
            print(f"report: {w}")
    comparison = compare.compare_sets(base, new) if base is not None else None
    hist = None
    machine_dir = results / str(new.meta.get("machine_id")) if new.meta.get("machine_id") else None
    for candidate in (machine_dir, new_path.parent):
        if candidate is not None and candidate.is_dir():
            try:
                hist = history.load_history(candidate)
                break
            except UserError:
                continue
    html_path, md_path = report.write_report(
        args.out, f"report-{new_path.stem}", comparison=comparison, new=new, history=hist,
        title=f"rackbench report: {new.meta.get('machine_id') or new_path.name}",
    )
    if base is None:
        print("report: no base set: comparison section left out")
    print(f"report: {html_path}")
    print(f"report: {md_path}")
    return 0
