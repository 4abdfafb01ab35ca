"""`rackbench run`: measure a suite on this machine and store the result set."""
from __future__ import annotations

import sys
from pathlib import Path

from harness.cmd_show import render
from harness.errors import UserError
from harness.runner import DEFAULT_SEED, default_timing, run_suite
from harness.suites import SUITES


def _progress():
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return lambda total: tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True)


def run(args) -> int:
    import jax

    platform = jax.devices()[0].platform
    cfg = default_timing(args.suite, platform)
    if args.min_time_s is not None:
        if args.min_time_s <= 0:
            raise UserError(f"--min-time-s {args.min_time_s}: must be positive")
        from dataclasses import replace

        cfg = replace(cfg, min_time_s=args.min_time_s, max_case_time_s=max(cfg.max_case_time_s, 5 * args.min_time_s))
    out_file = Path(args.out_file) if args.out_file else None
    outcome = run_suite(
        suite=args.suite, pattern=args.filter, results_dir=Path(args.out), cfg=cfg, seed=args.seed,
        out_path=out_file, progress=_progress(),
    )
    if not args.quiet:
        print(render(outcome.result_set))
    print(f"stored: {outcome.path}")
    if outcome.interrupted:
        print("interrupted: the result set keeps every case measured before Ctrl-C", file=sys.stderr)
        return 130
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="measure a suite on this machine and store the result set")
    p.add_argument("--suite", default="default", choices=SUITES)
    p.add_argument("--filter", help="regular expression on case names")
    p.add_argument("--out", default="results", help="results directory (default: results)")
    p.add_argument("--out-file", help="write the result set to this exact path instead")
    p.add_argument("--min-time-s", type=float, help="minimum duration of one sample")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="input PRNG seed (recorded)")
    p.add_argument("--quiet", action="store_true", help="do not print the table")
    p.set_defaults(func=run)
