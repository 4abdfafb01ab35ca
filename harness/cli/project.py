"""`rackbench project`: project a model's training or serving onto a cluster
(clusters.projection), calibrated as harness.studies.calibrate chooses."""
from __future__ import annotations

import json
import math

from clusters.catalog import load_system
from clusters.projection import MAX_CHIPS, PLAN_DEGREES, project_serve, project_train
from clusters.workloads import load_model
from harness.cli.common import add_calibration, add_format, positive
from harness.errors import UserError
from harness.format import percent, si, table
from harness.studies.calibrate import REFERENCE_DIR, choose_calibration

PLAN_FLAGS = PLAN_DEGREES


def register(p) -> None:
    p.description = ("Project a model (name or file) onto N chips of a catalog system. Without "
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
    add_calibration(p)
    add_format(p)
    p.set_defaults(func=run)


def run(args) -> int:
    for name in ("chips", "micro_batch", "global_batch", "seq_len", "tp", "pp", "vpp", "dp",
                 "ep", "cp", "context", "top"):
        positive(name, getattr(args, name))
    if args.chips > MAX_CHIPS:
        raise UserError(f"--chips {args.chips}: at most {MAX_CHIPS:,} (a larger search would not end)")
    for name in ("train_tokens", "tpot_ms", "ttft_ms"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    model = load_model(args.model)
    system = load_system(args.system)
    cal = choose_calibration(args.calibration, REFERENCE_DIR)
    if args.mode == "train":
        software = {k: True for k in ("tp_comm_overlap", "ep_overlap", "dropout")
                    if getattr(args, k)}
        if args.attention:
            software["attention_impl"] = args.attention
        doc = project_train(
            model, system, args.chips, cal, precision=args.precision,
            global_batch=args.global_batch, seq_len=args.seq_len,
            degrees={k: getattr(args, k) for k in PLAN_DEGREES}, software=software,
            top=args.top, train_tokens=args.train_tokens)
    else:
        if args.mode == "prefill":
            batch = args.micro_batch
        else:
            batch = max(1, args.global_batch // args.chips) if args.global_batch else None
        doc = project_serve(
            model, system, args.chips, cal, mode=args.mode, precision=args.precision,
            tp=args.tp, ep=args.ep, batch_per_chip=batch, seq_len=args.seq_len,
            context=args.context, overlap=args.ep_overlap,
            tpot_s=None if args.tpot_ms is None else args.tpot_ms / 1e3,
            ttft_s=None if args.ttft_ms is None else args.ttft_ms / 1e3)
    if args.format == "json":
        print(json.dumps(doc, indent=2, default=float))
    else:
        print(_render(doc))
    return 0


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
