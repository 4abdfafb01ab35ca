"""`rackbench project`: project a model's training or serving onto a cluster
(clusters.projection), calibrated as harness.studies.calibrate chooses."""
from __future__ import annotations

import argparse
import math

from clusters.catalog import load_system
from clusters.projection import MAX_CHIPS, PLAN_DEGREES, project_serve, project_train
from clusters.workloads import load_model
from harness.cli.common import add_calibration, add_format, emit, positive
from harness.errors import UserError
from harness.format import (band_text, count, count_range, fixed_column, flat_record, number,
                            percent, percent_range, quantity, si, si_range, table, time_unit)
from harness.studies.calibrate import REFERENCE_DIR, choose, priced_lines

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
    add_format(p, "csv")
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
    choice = choose(args.calibration, REFERENCE_DIR)
    doc = _compute(args, model, system, choice.calibration)
    doc["calibration_why"] = choice.why
    return doc


def _compute(args, model, system, cal) -> dict:
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
    emit(args.format, json_doc=lambda: doc, records=lambda: records(doc),
         table=lambda: render(doc))
    return 0


def records(doc: dict) -> list[dict]:
    """--format csv: one row per plan shown, `rank` 1 the projection (the search's best), then
    the search's alternatives; nested fields flattened (plan_tp, breakdown_gemm_s,
    memory_weights_bytes), bands as <metric>_p10/_p90 columns. The band's sensitivity, the
    notes and the definitions are in the JSON only."""
    best = {k: v for k, v in doc.items()
            if k not in ("alternatives", "band", "notes") and not k.endswith("_definition")}
    context = {k: doc[k] for k in ("model", "system", "chips", "mode", "calibration")}
    return [{"rank": 1, **flat_record(best)}] + [
        {"rank": i, **context, **flat_record(alt)}
        for i, alt in enumerate(doc.get("alternatives", []), 2)]


def _plan_text(plan: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in plan.items())


def _ranged(doc: dict, key: str, unit: str) -> str:
    return si_range(doc[key], doc.get(f"{key}_p10"), doc.get(f"{key}_p90"), unit)


def _pct(doc: dict, key: str) -> str:
    return percent_range(doc[key], doc.get(f"{key}_p10"), doc.get(f"{key}_p90"))


def _rate(doc: dict, key: str, times: float = 1.0) -> str:
    lo, hi = doc.get(f"{key}_p10"), doc.get(f"{key}_p90")
    return count_range(doc[key] * times, None if lo is None else lo * times,
                       None if hi is None else hi * times)


def _breakdown(doc: dict) -> tuple[str, float, str]:
    """The step's named parts in one unit (the total's), with the total and its band."""
    step = doc["step_time_s"]
    scale, unit = time_unit(step)
    parts = {k: v for k, v in doc["breakdown_s"].items() if v > 0}
    cells = fixed_column([*parts.values(), step], scale, step)
    rows = [[k.removesuffix("_s"), c, percent(v / step)]
            for (k, v), c in zip(parts.items(), cells)]
    rows.append(["total step", cells[-1] + band_text(doc.get("step_time_s_p10"),
                                                     doc.get("step_time_s_p90"), scale), "100%"])
    return table(["part", f"time ({unit})", "share"], rows, "lrr"), scale, unit


def _days(doc: dict) -> str:
    days = doc["time_to_train_s"] / 86400
    lo, hi = doc.get("time_to_train_s_p10"), doc.get("time_to_train_s_p90")
    if days >= 100:  # 2486 days, not 2485.6
        return f"{days:.0f} days" + ("" if lo is None else f" ({lo / 86400:.0f}-{hi / 86400:.0f})")
    band = "" if lo is None else f" ({lo / 86400:.0f}-{hi / 86400:.0f})" if days >= 10 else \
        f" ({lo / 86400:.1f}-{hi / 86400:.1f})"
    return f"{days:.1f} days{band}"


def _train_lines(doc: dict, scale: float, unit: str) -> list[str]:
    step, chips = doc["step_time_s"], doc["chips"]
    peak = f"{si(doc['peak_flops_per_s'], 'FLOP/s')} {doc['plan']['precision']} peak"
    mem = doc["memory"]
    lines = [
        f"tokens/s per chip: {_rate(doc, 'tokens_per_s_per_chip')}; "
        f"for the {chips:,} chips: {_rate(doc, 'tokens_per_s')}",
        f"model FLOP/s per chip (causal attention): "
        f"{_ranged(doc, 'causal_model_flops_per_s_per_chip', 'FLOP/s')}; MFU {_pct(doc, 'mfu')} "
        f"of the {peak}",
        f"  MFU: {doc['mfu_definition']}",
        f"  PaLM's count (attention without causal halving): "
        f"{_ranged(doc, 'model_flops_per_s_per_chip', 'FLOP/s')} per chip, MFU "
        f"{_pct(doc, 'mfu_palm')}",
        f"hardware FLOP/s per chip (recompute included): "
        f"{_ranged(doc, 'hardware_flops_per_s_per_chip', 'FLOP/s')}; HFU {_pct(doc, 'hfu')}",
        f"memory per chip: {si(doc['memory_bytes_per_chip'], 'B')} of "
        f"{si(doc['usable_memory_bytes_per_chip'], 'B')} usable (weights "
        f"{si(mem['weights_bytes'], 'B')}, gradients {si(mem['grads_bytes'], 'B')}, optimizer "
        f"{si(mem['optimizer_bytes'], 'B')}, activations {si(mem['activations_bytes'], 'B')})",
        _power_line(doc),
        f"time to train {quantity(doc['train_tokens'])} tokens: " + _days(doc),
    ]
    if doc.get("capex_usd"):
        lines.append(f"capex: ${doc['capex_usd']:,.0f} (the systems used, pro rata)")
    for alt in doc.get("alternatives", []):
        plan = {k: v for k, v in alt["plan"].items() if k in PLAN_FLAGS}
        lines.append(f"also: {_plan_text(plan)}: step {fixed_column([alt['step_time_s']], scale, step)[0]} "
                     f"{unit}, {count(alt['tokens_per_s_per_chip'])} tokens/s per chip, "
                     f"MFU {percent(alt['mfu'])}")
    return lines


def _serve_lines(doc: dict) -> list[str]:
    plan, chips = doc["plan"], doc["chips"]
    if doc["mode"] == "decode":
        lines = [
            f"output tokens/s per chip: {_rate(doc, 'output_tokens_per_s_per_chip')}; for the "
            f"{chips:,} chips: {_rate(doc, 'output_tokens_per_s_per_chip', chips)}",
            f"TPOT: {_ranged(doc, 'tpot_s', 's')}" + (
                f" ({plan['mtp_tokens']} multi-token-prediction draft{'s' if plan['mtp_tokens'] > 1 else ''} "
                f"at {percent(plan['mtp_acceptance'])} acceptance)" if plan["mtp_tokens"] else ""),
            f"batch per chip: {_plural(plan['batch_per_chip'], 'sequence')} of "
            f"{plan['context']:,}-token context (the KV cache holds {doc['max_batch_per_chip']:,})"]
    else:
        lines = [
            f"input tokens/s per chip: {_rate(doc, 'input_tokens_per_s_per_chip')}; for the "
            f"{chips:,} chips: {_rate(doc, 'input_tokens_per_s_per_chip', chips)}",
            f"TTFT: {_ranged(doc, 'ttft_s', 's')}",
            f"batch per chip: {_plural(plan['batch_per_chip'], 'prompt')} of "
            f"{plan['context']:,} tokens"]
    lines += [f"memory per chip: {si(doc['memory_bytes_per_chip'], 'B')} of "
              f"{si(doc['usable_memory_bytes_per_chip'], 'B')} usable", _power_line(doc)]
    return lines


def _plural(n: float, noun: str, digits: int = 4) -> str:
    return f"{number(n, digits)} {noun}" + ("" if n == 1 else "s")


def _power_line(doc: dict) -> str:
    return (f"power: {si(doc['power_w_per_chip'], 'W')} per chip ({si(doc['chips_power_w'], 'W')} "
            f"for the {doc['chips']:,} chips); {si(doc['power_w_per_system'], 'W')} per "
            f"{doc['system']} system ({_plural(doc['systems'], 'system', 3)} used: {si(doc['power_w'], 'W')}); "
            f"{_ranged(doc, 'joules_per_token', 'J/token')} at the systems' power")


def render(doc: dict) -> str:
    """The table form: header, plan, the step's parts, then the named figures with bands."""
    lines = [f"{doc['model']} on {doc['chips']:,} chips of {doc['system']} ({doc['mode']}), "
             f"calibration: {doc.get('calibration')}"]
    if "plans_evaluated" in doc:
        lines.append(f"searched {doc['plans_evaluated']:,} plans; best:")
    lines.append("plan: " + _plan_text(doc["plan"]))
    if not doc.get("feasible", True):
        lines.append(f"INFEASIBLE: {doc.get('infeasible_reason')}")
    parts, scale, unit = _breakdown(doc)
    lines += ["", parts, ""]
    lines += _train_lines(doc, scale, unit) if doc["mode"] == "train" else _serve_lines(doc)
    band = doc.get("band")
    if band:
        form = band["model_form"]
        lines.append("band: 10th-90th percentile, from the calibration's and catalog's input "
                     "ranges" + (f" and the model's error on {form['rows']} published "
                                 f"{form['pool']} rows" if form else "")
                     + "; moved most by: " + ", ".join(
                         f"{s['input']} ({100 * s['swing']:+.0f}%)" for s in band["sensitivity"]))
    priced = priced_lines(doc.get("priced_by", []))
    if priced:
        lines.append("priced by (measured: a curve of the set; extrapolated: outside its sizes, "
                     "the published entry):")
        lines += [f"  {line}" for line in priced]
    if doc.get("calibration_why"):
        lines.append(doc["calibration_why"])
    for n in doc.get("notes", []):
        lines.append(f"note: {n}")
    return "\n".join(lines)
