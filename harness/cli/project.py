"""`rackbench project`: project a model's training or serving onto a cluster
(clusters.projection), calibrated as harness.studies.calibrate chooses."""
from __future__ import annotations

import argparse
import json
import math

from clusters.catalog import load_system
from clusters.projection import MAX_CHIPS, PLAN_DEGREES, project_serve, project_train
from clusters.workloads import load_model
from harness.cli.common import add_calibration, add_format, positive
from harness.errors import UserError
from harness.format import percent, percent_range, si, si_range, table
from harness.studies.calibrate import REFERENCE_DIR, choose_calibration

PLAN_FLAGS = PLAN_DEGREES


def register(p) -> None:
    p.description = ("Project a model (name or file) onto N chips of a catalog system. Without "
                     "plan flags the training plan is searched, under the software practice "
                     "published for the chip's family.")
    p.add_argument("--model", required=True, help="model name (see clusters/data/models) or file")
    p.add_argument("--system", required=True, help="catalog system name, e.g. hgx-h100")
    p.add_argument("--chips", required=True, type=int,
                   help="number of chips (packages: 384 910C are 768 ranks)")
    p.add_argument("--mode", default="train", choices=("train", "prefill", "decode"))
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp8", "int8"),
                   help="GEMM and weight precision (int8: inference only)")
    plan = p.add_argument_group("plan (degrees count ranks, one per device)")
    for flag in ("tp", "pp", "vpp", "dp", "ep", "cp"):
        plan.add_argument(f"--{flag}", type=int, help=f"{flag.upper()} degree")
    plan.add_argument("--micro-batch", type=int, help="sequences per micro-batch")
    plan.add_argument("--global-batch", type=int,
                      help="sequences per step (train; default: about 4M tokens) or concurrent "
                           "sequences of the instance (decode)")
    plan.add_argument("--seq-len", type=int, help="sequence length (default: the model's)")
    plan.add_argument("--recompute", choices=("none", "selective", "full"))
    plan.add_argument("--zero", type=int, choices=(0, 1, 2, 3),
                      help="0 replicated, 1 optimizer sharded, 2 + gradients, 3 (FSDP) + weights")
    sw = p.add_argument_group("software (on/off; unset: the family's practice when searching, "
                              "off for a fixed plan)")
    sw.add_argument("--tp-comm-overlap", action=argparse.BooleanOptionalAction,
                    help="TP collectives overlapped with GEMMs (Transformer Engine userbuffers)")
    sw.add_argument("--ep-overlap", action=argparse.BooleanOptionalAction,
                    help="EP all-to-all hidden behind another micro-batch (DualPipe, two-batch "
                         "overlap)")
    sw.add_argument("--sequence-parallel", action=argparse.BooleanOptionalAction,
                    help="sequence parallelism with TP (default on)")
    sw.add_argument("--dp-overlap", action=argparse.BooleanOptionalAction,
                    help="DP gradient sync overlapped with backward (default on)")
    sw.add_argument("--attention", choices=("flash", "materialized"),
                    help="attention implementation (materialized: the 2021 Megatron stack)")
    sw.add_argument("--dropout", action="store_true", help="model trained with dropout")
    sw.add_argument("--calibration-variant", metavar="NAME",
                    help="a variant of the calibration for another software era (flash2: "
                         "Hopper attention of stacks before FlashAttention-3)")
    sv = p.add_argument_group("serving")
    sv.add_argument("--batch-per-chip", type=float,
                    help="fixed batch per chip (decode: sequences; prefill: prompts); "
                         "fractional when a TP group serves fewer sequences than it has chips")
    sv.add_argument("--concurrency", type=int, help="decode: sequences of the whole instance")
    sv.add_argument("--fill-kv", action="store_true",
                    help="decode: the largest batch the KV cache holds")
    sv.add_argument("--tpot-ms", type=float, help="decode: the largest batch meeting this TPOT")
    sv.add_argument("--ttft-ms", type=float, help="prefill latency target")
    sv.add_argument("--context", type=int, help="decode: tokens in each KV cache (default seq-len)")
    sv.add_argument("--overlap", action=argparse.BooleanOptionalAction,
                    help="two overlapped micro-batches (two-batch overlap, microbatch "
                         "pipelining); default: whichever is faster")
    sv.add_argument("--attention-precision", choices=("bf16", "fp8"), default="bf16",
                    help="decode attention kernel (fp8: FlashMLA-FP8 on an fp8 KV cache)")
    sv.add_argument("--mtp-tokens", type=int, default=0, help="multi-token prediction drafts")
    sv.add_argument("--mtp-acceptance", type=float, default=0.0,
                    help="acceptance of each draft (DeepSeek-V3: 0.85-0.90 for one)")
    sv.add_argument("--ranks-per-chip", type=int,
                    help="attention-DP ranks per chip (default: devices per chip with tp 1)")
    sv.add_argument("--attention-dp", action="store_true",
                    help="attention data-parallel over the instance (tp 1 for attention)")
    sv.add_argument("--kv-precision", choices=("bf16", "fp16", "fp8", "int8"),
                    help="KV-cache format (default: the weights')")
    sv.add_argument("--input-len", type=int, default=0,
                    help="aggregated serving: prompt length prefilled in flight")
    sv.add_argument("--output-len", type=int, default=0,
                    help="aggregated serving: tokens generated per request")
    sv.add_argument("--prefill-aligned", action="store_true",
                    help="attention-DP ranks admit prompts in the same iterations")
    p.add_argument("--train-tokens", type=float, default=15e12,
                   help="token budget for time-to-train (default 15e12)")
    p.add_argument("--top", type=int, default=3, help="plans shown when searching")
    p.add_argument("--band", action=argparse.BooleanOptionalAction, default=True,
                   help="10th-90th percentile band and the inputs that move it most "
                        "(default: on)")
    add_calibration(p)
    add_format(p)
    p.set_defaults(func=run)


def compute(args) -> dict:
    """The projection `args` ask for, as a dict (what --format json prints)."""
    for name in ("chips", "micro_batch", "global_batch", "seq_len", "tp", "pp", "vpp", "dp",
                 "ep", "cp", "context", "top", "concurrency", "ranks_per_chip"):
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
        software = {k: getattr(args, k) for k in ("tp_comm_overlap", "ep_overlap",
                                                   "sequence_parallel", "dp_overlap")
                    if getattr(args, k) is not None}
        if args.dropout:
            software["dropout"] = True
        if args.attention:
            software["attention_impl"] = args.attention
        return project_train(
            model, system, args.chips, cal, precision=args.precision,
            global_batch=args.global_batch, seq_len=args.seq_len,
            degrees={k: getattr(args, k) for k in PLAN_DEGREES}, software=software,
            top=args.top, train_tokens=args.train_tokens,
            calibration_variant=args.calibration_variant, band=args.band)
    if args.attention_dp and (args.tp or 1) > 1:
        raise UserError("--attention-dp runs attention data-parallel (tp 1); drop --tp")
    batch = args.batch_per_chip
    if batch is None and args.mode == "prefill":
        batch = args.micro_batch
    if batch is None and args.concurrency:
        batch = args.concurrency / args.chips
    if batch is None and args.global_batch:
        batch = max(1, args.global_batch // args.chips)
    overlap = args.overlap if args.overlap is not None else args.ep_overlap
    return project_serve(
        model, system, args.chips, cal, mode=args.mode, precision=args.precision,
        tp=1 if args.attention_dp else args.tp, ep=args.ep, batch_per_chip=batch,
        fill_kv=args.fill_kv, seq_len=args.seq_len, context=args.context, overlap=overlap,
        attention_precision=args.attention_precision,
        tpot_s=None if args.tpot_ms is None else args.tpot_ms / 1e3,
        ttft_s=None if args.ttft_ms is None else args.ttft_ms / 1e3,
        mtp_tokens=args.mtp_tokens, mtp_acceptance=args.mtp_acceptance,
        ranks_per_chip=args.ranks_per_chip, kv_precision=args.kv_precision,
        input_len=args.input_len, output_len=args.output_len,
        prefill_aligned=args.prefill_aligned, band=args.band)


def run(args) -> int:
    doc = compute(args)
    if args.format == "json":
        print(json.dumps(doc, indent=2, default=float))
    else:
        print(_render(doc))
    return 0


def _days(doc: dict) -> str:
    days = doc["time_to_train_s"] / 86400
    lo, hi = doc.get("time_to_train_s_p10"), doc.get("time_to_train_s_p90")
    band = "" if lo is None else f" ({lo / 86400:.0f}-{hi / 86400:.0f})" if days >= 10 else \
        f" ({lo / 86400:.1f}-{hi / 86400:.1f})"
    return f"{days:.1f} days{band}"


def _render(doc: dict) -> str:
    lines = [f"{doc['model']} on {doc['chips']} chips of {doc['system']} ({doc['mode']}), "
             f"calibration: {doc.get('calibration')}"]
    if "plans_evaluated" in doc:
        lines.append(f"searched {doc['plans_evaluated']:,} plans; best:")
    plan = doc.get("plan", {})
    lines.append("plan: " + " ".join(f"{k}={v}" for k, v in plan.items()))
    if not doc.get("feasible", True):
        lines.append(f"INFEASIBLE: {doc.get('infeasible_reason')}")
    def ranged(key, unit, scale=1.0):
        lo, hi = doc.get(f"{key}_p10"), doc.get(f"{key}_p90")
        return si_range(doc[key] * scale, None if lo is None else lo * scale,
                        None if hi is None else hi * scale, unit)

    def pct(key):
        return percent_range(doc[key], doc.get(f"{key}_p10"), doc.get(f"{key}_p90"))

    if doc["mode"] == "train":
        step = doc["step_time_s"]
        rows = [[k.removesuffix("_s"), f"{v:.4g} s", percent(v / step)]
                for k, v in doc["breakdown_s"].items() if v > 0]
        rows.append(["total step", ranged("step_time_s", "s"), "100%"])
        lines += ["", table(["part", "time", "share"], rows, "lrr"), ""]
        lines += [
            f"tokens/s: {ranged('tokens_per_s_per_chip', '')} per chip, "
            f"{ranged('tokens_per_s', '')} per cluster",
            f"model FLOP/s per chip: {ranged('model_flops_per_s_per_chip', 'FLOP/s')}; "
            f"MFU {pct('mfu')} ({doc['mfu_definition']})",
            f"hardware FLOP/s per chip: {ranged('hardware_flops_per_s_per_chip', 'FLOP/s')}; "
            f"HFU {pct('hfu')}",
            f"memory per chip: {doc['memory_bytes_per_chip'] / 1e9:.1f} GB "
            f"(usable {doc['memory']['capacity_bytes'] / 1e9:.1f} GB)",
            f"power: {si(doc['chip_power_w'], 'W')} chips, {si(doc['power_w'], 'W')} systems; "
            f"{ranged('joules_per_token', 'J')}/token",
            f"time to train {doc['train_tokens']:.3g} tokens: " + _days(doc),
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
        rows.append(["total step", ranged("step_time_s", "s"), "100%"])
        lines += ["", table(["part", "time", "share"], rows, "lrr"), ""]
        for k, v in doc.items():
            if k.endswith(("_s", "_per_chip", "_w", "_per_token")) and isinstance(v, float) \
                    and k != "step_time_s" and not k.endswith(("_p10", "_p90")):
                unit = "B" if "bytes" in k else {"_s": "s", "_w": "W", "_per_token": "J"}.get(
                    next((e for e in ("_s", "_w", "_per_token") if k.endswith(e)), ""), "")
                lines.append(f"{k}: {ranged(k, unit)}")
        lines.append(f"max_batch_per_chip (KV-cache limit): {doc['max_batch_per_chip']}")
    band = doc.get("band")
    if band:
        form = band["model_form"]
        lines.append("band: 10th-90th percentile, from the calibration's and catalog's input "
                     "ranges" + (f" and the model's error on {form['rows']} published "
                                 f"{form['pool']} rows" if form else "")
                     + "; moved most by: " + ", ".join(
                         f"{s['input']} ({100 * s['swing']:+.0f}%)" for s in band["sensitivity"]))
    for n in doc.get("notes", []):
        lines.append(f"note: {n}")
    return "\n".join(lines)
