"""`rackbench plan`: the staged GPU reference run (scripts/gpu-reference), estimated before it
runs: each stage's cases, compile and sampling time, against the stage budget."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from harness.cli.common import add_format, emit
from harness.errors import UserError
from harness.format import duration, format_value, table


def _target(args):
    """(device for case.skip, platform, device count, catalog chip, label)."""
    from clusters.catalog import match_device_kind

    if args.device_kind:
        chip = match_device_kind(args.device_kind)
        platform = "cpu" if args.device_kind.lower() == "cpu" else "gpu"
        device = SimpleNamespace(platform=platform, compute_capability=args.compute_capability,
                                 device_kind=args.device_kind)
        return device, platform, args.devices or 1, chip, args.device_kind
    import os

    from harness.device import catalog_chip, default_cpu_devices

    default_cpu_devices(os.environ)  # the host devices `rackbench run` would ask for
    import jax

    device = jax.local_devices()[0]
    chip = catalog_chip(device.device_kind, device.platform)
    return device, device.platform, args.devices or jax.device_count(), chip, device.device_kind


def _stage_record(p, budget_s: float) -> dict:
    """--format csv: one stage, its cases summed (the table's columns, in seconds)."""
    measured = [c for c in p.cases if not c.skipped]
    return {"stage": p.name, "part": p.part, "cases": len(measured),
            "skipped": len(p.cases) - len(measured),
            "compile_s": sum(c.compile_s for c in measured), "run_s": sum(c.run_s for c in measured),
            "check_s": sum(c.check_s for c in measured), "fixed_s": p.fixed_s,
            "total_s": p.total_s, "budget_s": budget_s, "over_budget": p.total_s > budget_s}


def run(args) -> int:
    from harness.estimate import Ceilings, costs_for
    from harness.resultset import load
    from harness.runner import default_timing
    from harness.staging import plan_reference
    from harness.suites import build_suite

    if args.budget_s <= 0:
        raise UserError(f"--budget-s {args.budget_s}: must be positive")
    device, platform, count, chip, label = _target(args)
    begun = load(args.out_file) if args.out_file and Path(args.out_file).exists() else None
    prior = load(args.prior) if args.prior else None
    ceilings = Ceilings.best(chip, platform, begun.meta.get("ceilings") if begun else None)
    costs = costs_for(platform)
    plans = plan_reference(build_suite(args.suite, platform, device_count=count), device, ceilings,
                           default_timing(args.suite, platform), costs, args.budget_s,
                           done={c.name for c in begun.cases} if begun else (), prior=prior)
    if args.stage != "all":
        plans = [p for p in plans if p.name == args.stage]
    over = [p for p in plans if p.total_s > args.budget_s]
    if args.format != "table":
        emit(args.format, indent=1, json_doc=lambda: {
            "device": label, "devices": count, "ceilings": ceilings.source, "costs": costs.source,
            "budget_s": args.budget_s, "stages": [
                {"stage": p.name, "part": p.part, "total_s": p.total_s, "fixed_s": p.fixed_s,
                 "cases": [{"name": c.name, "skipped": c.skipped, "method": c.method, "compiles": c.compiles,
                            "compile_s": c.compile_s, "run_s": c.run_s, "check_s": c.check_s,
                            "total_s": c.total_s, "source": c.source} for c in p.cases]} for p in plans]},
            records=lambda: [_stage_record(p, args.budget_s) for p in plans])
        return 1 if over else 0
    print(f"plan: suite {args.suite} on {label} x{count} ({ceilings.source}); stage budget {duration(args.budget_s)}")
    print(f"compile times: {costs.source}" + (f"; cases in {args.prior} from their recorded times" if prior else ""))
    if begun:
        print(f"{len(begun.cases)} cases already in {args.out_file}")
    rows = []
    for p in plans:
        r = _stage_record(p, args.budget_s)
        rows.append([r["stage"], r["part"], r["cases"], r["skipped"], duration(r["compile_s"]),
                     duration(r["run_s"]), duration(r["check_s"]), duration(r["fixed_s"]),
                     duration(r["total_s"]), "OVER" if r["over_budget"] else "ok"])
    print(table(["stage", "call", "cases", "skipped", "compile", "run", "check", "start+other", "estimate", "budget"],
                rows, "lrrrrrrrrl"))
    total = sum(p.total_s for p in plans)
    print(f"{len(plans)} command{'s' if len(plans) != 1 else ''}, estimated {format_value(total, 's')} ({total / 60:.1f} min) of device time, "
          "plus the machine's own start")
    return 1 if over else 0


def register(p) -> None:
    from harness.staging import STAGE_BUDGET_S, STAGES
    from harness.suites import SUITES

    p.add_argument("--suite", default="default", choices=SUITES)
    p.add_argument("--device-kind", help="plan for this device (JAX's device_kind, e.g. 'NVIDIA H200'), "
                                         "not the one here")
    p.add_argument("--devices", type=int, help="devices of the planned machine (default: 1 with "
                                               "--device-kind, else what JAX sees)")
    p.add_argument("--compute-capability", default="9.0",
                   help="with --device-kind: its CUDA compute capability (default 9.0, Hopper)")
    p.add_argument("--budget-s", type=float, default=STAGE_BUDGET_S, help="seconds one stage may take")
    p.add_argument("--out-file", help="a reference set already begun: its cases are not planned again")
    p.add_argument("--prior", help="an earlier set of the same machine: its cases' recorded wall times "
                                   "replace the model's estimate")
    p.add_argument("--stage", default="all", choices=("all",) + STAGES)
    add_format(p, "csv")
    p.set_defaults(func=run)
