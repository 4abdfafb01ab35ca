"""`rackbench vendor-check SET VENDOR_JSON`: our kernels against torch/cuBLAS on the same card."""
from __future__ import annotations

import sys

from harness.cli.common import add_format, emit
from harness.errors import UserError
from harness.format import markdown_table, percent, si, table
from harness.resultset import load, rewrite
from harness.vendor import VENDOR_CALLS, compare, load_vendor

SPAN_NOTE = (f"ratio and gate: our samples over torch's span of work ({VENDOR_CALLS} calls from a cold start), "
             "since a longer run can be held at a lower clock by the power limit")


def run(args) -> int:
    rs = load(args.result_set)
    vendor = load_vendor(args.vendor_json)
    if args.write and rs.foreign:
        raise UserError(f"{args.result_set}: --write records only in result sets rackbench wrote; this is a plain "
                        "pytest-benchmark file and is left untouched")
    rows = compare(rs, vendor)
    out = [[r.what, r.ours_case or "(no matching case)", si(r.ours, r.unit), si(r.ours_whole_run, r.unit),
            si(r.vendor, r.unit), percent(r.ratio),
            "-" if r.min_ratio is None else ("PASS" if r.passed else "FAIL") + f" (>= {r.min_ratio:.0%})"] for r in rows]
    header = ["figure", "our case", "ours, torch's span", "ours, whole run", "vendor", "ratio", "gate"]
    ours_kind = (rs.meta.get("device") or {}).get("kind")
    same = ours_kind == vendor.get("device")
    title = f"vendor: {vendor.get('device')} torch {vendor.get('torch')}" + (
        "" if same else f"\nnote: the set was measured on {ours_kind}, the vendor figures on {vendor.get('device')}: "
                        "not the same card, so the ratios say little")
    emit(args.format, json_doc=lambda: {"result_set": str(rs.path), "device": ours_kind,
                                        "vendor_device": vendor.get("device"), "same_device": same,
                                        "torch": vendor.get("torch"), "rows": _records(rows)},
         records=lambda: _records(rows), table=lambda: title + "\n" + table(header, out, "llrrrrl") + "\n" + SPAN_NOTE,
         markdown=lambda: "".join(f"- {line}\n" for line in title.split("\n")) + "\n" + markdown_table(header, out).rstrip("\n")
         + "\n\n" + SPAN_NOTE + "\n",
         indent=1)
    if args.write:
        rs.meta["vendor_baselines"] = vendor
        rs.meta["vendor_check"] = [{"what": r.what, "case": r.ours_case, "ratio": r.ratio, "passed": r.passed,
                                    "ours_over_vendor_span": r.ours, "ours_whole_run": r.ours_whole_run}
                                   for r in rows]
        rewrite(rs)
        print(f"recorded in {rs.path}", file=sys.stderr if args.format in ("json", "csv") else sys.stdout)
    failed = [r for r in rows if r.passed is False]
    return 1 if failed else 0


def _records(rows) -> list[dict]:
    """One row per figure, the rate's unit in the keys (FLOP/s or bytes/s)."""
    out = []
    for r in rows:
        unit = "flops_per_s" if r.unit == "FLOP/s" else "bytes_per_s"
        out.append({"figure": r.what, "case": r.ours_case, f"ours_{unit}": r.ours,
                    f"ours_whole_run_{unit}": r.ours_whole_run, f"vendor_{unit}": r.vendor,
                    "ratio": r.ratio, "min_ratio": r.min_ratio, "passed": r.passed})
    return out


def register(p) -> None:
    p.add_argument("result_set", metavar="SET", help="a result set (a file, a directory for its newest set, or latest)")
    p.add_argument("vendor_json", help="the JSON printed by shared/gpu/vendor_baselines.py")
    p.add_argument("--write", action="store_true", help="record the vendor figures in the result set")
    add_format(p, "csv", "markdown")
    p.set_defaults(func=run)
