"""`rackbench vendor-check SET VENDOR_JSON`: our kernels against torch/cuBLAS on the same card."""
from __future__ import annotations

from harness.errors import UserError
from harness.format import percent, si, table
from harness.resultset import load, rewrite
from harness.vendor import compare, load_vendor


def run(args) -> int:
    rs = load(args.result_set)
    vendor = load_vendor(args.vendor_json)
    if args.write and rs.foreign:
        raise UserError(f"{args.result_set}: --write records only in result sets rackbench wrote; this is a plain "
                        "pytest-benchmark file and is left untouched")
    rows = compare(rs, vendor)
    out = [[r.what, r.ours_case or "(no matching case)", si(r.ours, r.unit), si(r.vendor, r.unit), percent(r.ratio),
            "-" if r.min_ratio is None else ("PASS" if r.passed else "FAIL") + f" (>= {r.min_ratio:.0%})"] for r in rows]
    print(f"vendor: {vendor.get('device')} torch {vendor.get('torch')}")
    print(table(["figure", "our case", "ours", "vendor", "ratio", "gate"], out, "llrrrl"))
    if args.write:
        rs.meta["vendor_baselines"] = vendor
        rs.meta["vendor_check"] = [{"what": r.what, "case": r.ours_case, "ratio": r.ratio, "passed": r.passed} for r in rows]
        rewrite(rs)
        print(f"recorded in {rs.path}")
    failed = [r for r in rows if r.passed is False]
    return 1 if failed else 0


def register(p) -> None:
    p.add_argument("result_set")
    p.add_argument("vendor_json", help="the JSON printed by shared/gpu/vendor_baselines.py")
    p.add_argument("--write", action="store_true", help="record the vendor figures in the result set")
    p.set_defaults(func=run)
