"""`rackbench run`: measure a suite on this machine and store the result set."""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import jax

from harness import distributed
from harness.cli.common import add_format
from harness.cli.show import print_set
from harness.device import cpu_device_warning, default_cpu_devices
from harness.errors import UserError
from harness.interrupts import deferred
from harness.resultset import check_new_file, check_writable_dir, save, warning_summary
from harness.progress import progress_for
from harness.runner import DEFAULT_SEED, default_timing, run_suite
from harness.studies.closing_loop import add_projections
from harness.suites import SUITES


def _check_output(args) -> None:
    if args.out_file and args.resume:  # continuing a set: it may exist; its folder must be writable
        check_writable_dir(str(Path(args.out_file).parent), "--out-file")
    elif args.out_file:
        check_new_file(args.out_file, "--out-file")
    else:
        check_writable_dir(args.out, "--out")


def _note(fmt: str):
    """Where lines around the set's table go: stdout beside a table, stderr beside JSON or CSV
    (stdout then holds the data alone)."""
    return print if fmt in ("table", "markdown") else (lambda text: print(text, file=sys.stderr))


def run(args) -> int:
    # Output places are checked before anything is measured: at once on one host; with
    # --distributed once the processes know which of them (process 0) writes.
    if not args.distributed:
        _check_output(args)
    if args.min_time_s is not None and not args.min_time_s > 0:
        raise UserError(f"--min-time-s {args.min_time_s}: must be positive")
    asked = default_cpu_devices(os.environ)
    dist = None
    if args.distributed:
        dist = distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    elif any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)):
        raise UserError("--coordinator/--num-processes/--process-id need --distributed")
    if args.resume and not args.out_file:
        raise UserError("--resume needs --out-file: the set to continue")
    if args.budget_s is not None and args.budget_s <= 0:
        raise UserError(f"--budget-s {args.budget_s}: must be positive")
    if args.distributed and (args.resume or args.budget_s is not None):
        raise UserError("--resume and --budget-s are for one process; not with --distributed")
    with deferred():  # JAX's backends start here: a Ctrl-C waits until they have
        platform = jax.local_devices()[0].platform
    if args.distributed and jax.process_index() == 0:
        _check_output(args)
    warning = cpu_device_warning(asked)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    lead = jax.process_index() == 0
    cfg = default_timing(args.suite, platform)
    if args.min_time_s is not None:
        cfg = replace(cfg, min_time_s=args.min_time_s, max_case_time_s=max(cfg.max_case_time_s, 5 * args.min_time_s))
    out_file = Path(args.out_file) if args.out_file else None
    outcome = run_suite(
        suite=args.suite, pattern=args.filter, results_dir=Path(args.out), cfg=cfg, seed=args.seed,
        out_path=out_file, progress=progress_for(sys.stderr, args.quiet) if lead else None, write=lead,
        budget_s=args.budget_s, resume=args.resume, announce=_note(args.format) if lead else None,
    )
    if dist is not None:
        if lead:  # how the processes found each other, next to meta.device.process_count
            outcome.result_set.meta["distributed"] = dist  # stored by the save below
        distributed.barrier("rackbench:run-end")  # every process has finished measuring
        jax.distributed.shutdown()
    if not lead:
        print(f"process {jax.process_index()} of {jax.process_count()}: measured; process 0 stores the result set")
        return 130 if outcome.interrupted else 0
    add_projections(outcome.result_set)  # closing the loop: the step projected from this set
    save(outcome.result_set, outcome.path)
    # JSON and CSV keep stdout to the data; what would follow the table goes to stderr
    note = _note(args.format)
    if not args.quiet:
        print_set(outcome.result_set, args.format, warnings="summary")
    else:
        summary = warning_summary(outcome.result_set.meta.get("warnings") or [], outcome.path)
        if summary:
            note(summary)
    note(f"stored: {outcome.path}")
    if not outcome.result_set.meta["complete"] and not outcome.interrupted:
        left = outcome.result_set.meta["stages"][-1]["cases_left"]
        note(f"incomplete: {left} cases of the suite left; run again with --resume --out-file {outcome.path}")
    if outcome.interrupted:
        print("interrupted: the result set keeps every case measured before Ctrl-C", file=sys.stderr)
        return 130
    return 0


def register(p) -> None:
    p.add_argument("--suite", default="default", choices=SUITES)
    p.add_argument("--filter", help="regular expression on case names")
    p.add_argument("--out", default="results", help="results directory (default: results)")
    p.add_argument("--out-file", help="write the result set to this exact path instead")
    p.add_argument("--min-time-s", type=float, help="minimum duration of one sample")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="input PRNG seed (recorded)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress (bar or per-case lines) and no table; the stored path and the warnings line stay")
    add_format(p, "csv", "markdown")
    p.add_argument("--budget-s", type=float, metavar="S",
                   help="stop before a case whose estimate (harness/estimate.py) would not fit the seconds "
                        "left; the plan is printed first; the set is then incomplete, to --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue the set at --out-file (same suite, seed and machine): keep its cases and "
                        "measure the rest of the suite; --filter picks which of them this call measures")
    p.add_argument("--distributed", action="store_true",
                   help="one process of several (hosts): start jax.distributed from the flags below or from "
                        "the launcher's environment (SLURM, mpirun, JAX_COORDINATOR_ADDRESS); every process "
                        "measures, process 0 stores the result set")
    p.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (with --distributed)")
    p.add_argument("--num-processes", type=int, help="how many processes in all (with --distributed)")
    p.add_argument("--process-id", type=int, help="this process's index, 0-based (with --distributed)")
    p.set_defaults(func=run)
