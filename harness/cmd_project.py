"""`rackbench project`: project a model's training or serving onto a cluster (clusters/)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from harness.errors import UserError
from harness.format import percent, si, table

PLAN_FLAGS = ("tp", "pp", "vpp", "dp", "ep", "cp", "micro_batch", "recompute", "zero")
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "results" / "reference"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "project", help="project training or inference of a model onto a system",
        description="Project a model (name or file) onto N chips of a catalog system. Without "
                    "plan flags the training plan is searched.")
    p.add_argument("--model", required=True, help="model name (see clusters/data/models) or file")
    p.add_argument("--system", required=True, help="catalog system name, e.g. hgx-h100")
    p.add_argument("--chips", required=True, type=int, help="number of chips")
    p.add_argument("--mode", default="train", choices=("train", "prefill", "decode"))
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp8", "int8"))
    for flag in ("tp", "pp", "vpp", "dp", "ep", "cp"):
        p.add_argument(f"--{flag}", type=int, help=f"{flag.upper()} degree")
    p.add_argument("--micro-batch", type=int, help="sequences per micro-batch")
    p.add_argument("--global-batch", type=int,
                   help="sequences per step (train; default: about 4M tokens) or concurrent "
                        "sequences (decode)")
    p.add_argument("--seq-len", type=int, help="sequence length (default: the model's)")
    p.add_argument("--recompute", choices=("none", "selective", "full"))
    p.add_argument("--zero", type=int, choices=(0, 1, 2, 3))
    p.add_argument("--tp-comm-overlap", action="store_true",
                   help="TP collectives overlapped with GEMMs (Transformer Engine userbuffers)")
    p.add_argument("--ep-overlap", action="store_true",
                   help="EP all-to-all hidden behind compute (DualPipe / two-batch overlap)")
    p.add_argument("--attention", choices=("flash", "materialized"),
                   help="attention implementation (materialized: 2021 Megatron stack)")
    p.add_argument("--dropout", action="store_true", help="model trained with dropout")
    p.add_argument("--tpot-ms", type=float, help="decode latency target per output token")
    p.add_argument("--ttft-ms", type=float, help="prefill latency target")
    p.add_argument("--context", type=int, help="decode: tokens in the KV cache (default seq-len)")
    p.add_argument("--train-tokens", type=float, default=15e12,
                   help="token budget for time-to-train (default 15e12)")
    p.add_argument("--top", type=int, default=3, help="plans shown when searching")
    p.add_argument("--calibration", help="result set to calibrate from (default: newest GPU "
                                          "reference set, else the sourced default file)")
    p.add_argument("--format", default="table", choices=("table", "json"))
    p.set_defaults(func=run)


def _positive(name: str, value) -> None:
    if value is not None and value < 1:
        raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def run(args) -> int:
    from clusters.calibration import choose_calibration
    from clusters.catalog import load_system
    from clusters.workloads import load_model

    for name in ("chips", "micro_batch", "global_batch", "seq_len", "tp", "pp", "vpp", "dp",
                 "ep", "cp", "context", "top"):
        _positive(name, getattr(args, name))
    model = load_model(args.model)
    system = load_system(args.system)
    cal = choose_calibration(args.calibration, REFERENCE_DIR)
    seq = args.seq_len or model.seq_len
    if args.mode == "train":
        doc = _train(args, model, system, cal, seq)
    else:
        doc = _inference(args, model, system, cal, seq)
    doc["calibration"] = cal.name
    if args.format == "json":
        print(json.dumps(doc, indent=2, default=float))
    else:
        print(_render(doc))
    return 0


def _train(args, model, system, cal, seq) -> dict:
    from clusters.plan import Plan, validate_plan
    from clusters.search import search
    from clusters.train import train_step

    if args.precision == "int8":
        raise UserError("--precision int8 is for inference; train with bf16 or fp8")
    gb = args.global_batch or max(1, 2 ** round(math.log2(4e6 / seq)))
    software = {k: True for k in ("tp_comm_overlap", "ep_overlap", "dropout") if getattr(args, k)}
    if args.attention:
        software["attention_impl"] = args.attention
    given = {k: getattr(args, k) for k in PLAN_FLAGS if getattr(args, k) is not None}
    if given:
        tp, pp, cp = given.get("tp", 1), given.get("pp", 1), given.get("cp", 1)
        if "dp" not in given:
            if args.chips % (tp * pp * cp):
                raise UserError(f"--chips {args.chips} is not divisible by tp*pp*cp = "
                                f"{tp * pp * cp}")
            given["dp"] = args.chips // (tp * pp * cp)
        plan = Plan(global_batch=gb, seq_len=seq, precision=args.precision, **given, **software)
        validate_plan(model, plan, args.chips)
        results, evaluated = [train_step(model, system, plan, cal)], None
    else:
        results, evaluated = search(model, system, args.chips, gb, seq, args.precision, cal,
                                    top=args.top, software=software)
    best = results[0]
    doc = best.to_dict()
    doc["time_to_train_s"] = best.time_to_train_s(args.train_tokens)
    doc["train_tokens"] = args.train_tokens
    if evaluated is not None:
        doc["plans_evaluated"] = evaluated
        doc["alternatives"] = [{"plan": r.to_dict()["plan"], "step_time_s": r.step_time_s,
                                "mfu": r.mfu} for r in results[1:]]
    return doc


def _inference(args, model, system, cal, seq) -> dict:
    try:
        from clusters import inference
    except ImportError:  # pragma: no cover - the inference model is not in this checkout
        raise UserError(f"--mode {args.mode} is not available yet (clusters/inference.py)")
    return inference.project_cli(args, model, system, cal, seq)


def _render(doc: dict) -> str:
    lines = [f"{doc['model']} on {doc['chips']} chips of {doc['system']} ({doc['mode']}), "
             f"calibration: {doc.get('calibration')}"]
    if "plans_evaluated" in doc:
        lines.append(f"searched {doc['plans_evaluated']:,} plans; best:")
    plan = doc.get("plan", {})
    lines.append("plan: " + " ".join(f"{k}={v}" for k, v in plan.items()))
    if not doc.get("feasible", True):
        lines.append(f"INFEASIBLE: {doc.get('infeasible_reason')}")
    if doc["mode"] == "train":
        step = doc["step_time_s"]
        rows = [[k.removesuffix("_s"), f"{v:.4g} s", percent(v / step)]
                for k, v in doc["breakdown_s"].items() if v > 0]
        rows.append(["total step", f"{step:.4g} s", "100%"])
        lines += ["", table(["part", "time", "share"], rows, "lrr"), ""]
        lines += [
            f"tokens/s: {si(doc['tokens_per_s_per_chip'], '')} per chip, "
            f"{si(doc['tokens_per_s'], '')} per cluster",
            f"model FLOP/s per chip: {si(doc['model_flops_per_s_per_chip'], 'FLOP/s')}; "
            f"MFU {percent(doc['mfu'])} ({doc['mfu_definition']})",
            f"hardware FLOP/s per chip: {si(doc['hardware_flops_per_s_per_chip'], 'FLOP/s')}; "
            f"HFU {percent(doc['hfu'])}",
            f"memory per chip: {doc['memory_bytes_per_chip'] / 1e9:.1f} GB "
            f"(usable {doc['memory']['capacity_bytes'] / 1e9:.1f} GB)",
            f"power: {si(doc['chip_power_w'], 'W')} chips, {si(doc['power_w'], 'W')} systems; "
            f"{doc['joules_per_token']:.3g} J/token",
            f"time to train {doc['train_tokens']:.3g} tokens: "
            f"{doc['time_to_train_s'] / 86400:.1f} days",
        ]
        if doc.get("capex_usd"):
            lines.append(f"capex (pro rata of systems used): ${doc['capex_usd']:,.0f}")
        for alt in doc.get("alternatives", []):
            lines.append("also: " + " ".join(f"{k}={v}" for k, v in alt["plan"].items()
                                             if k in PLAN_FLAGS) +
                         f" step {alt['step_time_s']:.4g} s, MFU {percent(alt['mfu'])}")
    else:
        step = doc["step_time_s"]
        rows = [[k.removesuffix("_s"), f"{v * 1e3:.4g} ms", percent(v / step)]
                for k, v in doc["breakdown_s"].items() if v > 0]
        rows.append(["total step", f"{step * 1e3:.4g} ms", "100%"])
        lines += ["", table(["part", "time", "share"], rows, "lrr"), ""]
        for k, v in doc.items():
            if k.endswith(("_s", "_per_chip", "_w", "_per_token")) and isinstance(v, float) \
                    and k != "step_time_s":
                lines.append(f"{k}: {v:.4g}")
        lines.append(f"max_batch_per_chip (KV-cache limit): {doc['max_batch_per_chip']}")
    for n in doc.get("notes", []):
        lines.append(f"note: {n}")
    return "\n".join(lines)
