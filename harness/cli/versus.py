"""`rackbench versus`: CloudMatrix 384 head to head with NVIDIA's racks (clusters.versus)."""
from __future__ import annotations

import math

import matplotlib

from clusters.projection import TRAIN_TOKENS_PER_STEP
from clusters.versus import CONTEXT, DEFAULT_TPOT_S, PROMPT, WORKLOADS, versus
from harness.cli.common import (add_calibration, add_format, add_plot, check_plot_path, emit,
                                write_figure)
from harness.errors import UserError
from harness.format import count, count_range, markdown_table, percent, table
from harness.studies.calibrate import REFERENCE_DIR, choose

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend

HEADERS = ["workload", "system", "basis", "chips", "step", "tokens/s (band)", "/chip", "/system",
           "/kW", "/$M", "MFU", "J/token", "vs CM384 (band)", "verdict", "plan"]


def register(p) -> None:
    p.description = (
        "Project Llama 3 405B training, DeepSeek-V3 training and DeepSeek-R1 serving "
                    "on CloudMatrix 384 and its rivals (one GB200 NVL72, and GB200 at equal chips, "
                    "power and price; 384 H100, H800, H20), each with its best plan, and the Ascend "
                    "software efficiency at which CloudMatrix would match each rival.")
    p.add_argument("--workload", action="append", choices=tuple(WORKLOADS),
                   help="repeatable; default: all three")
    add_format(p, "csv", "markdown")
    add_plot(p, "a bar chart of throughput relative to CloudMatrix")
    add_calibration(p)
    p.add_argument("--tpot-ms", type=float, default=DEFAULT_TPOT_S * 1e3,
                   help=f"decode latency target per output token (default {DEFAULT_TPOT_S * 1e3:g})")
    p.set_defaults(func=run)


def run(args) -> int:
    check_plot_path(args.plot)
    if not args.tpot_ms > 0 or not math.isfinite(args.tpot_ms):
        raise UserError(f"--tpot-ms must be a positive number, got {args.tpot_ms:g}")
    choice = choose(args.calibration, REFERENCE_DIR)
    workloads = tuple(dict.fromkeys(args.workload or WORKLOADS))
    v = versus(workloads, choice.calibration, args.tpot_ms / 1e3)
    if args.plot:
        plot(v, args.plot)
    # which calibration and why, and the reference sets passed over (a set of another family,
    # a CPU run's included, sets nothing here: the calibration's notes say so)
    why = "\n".join([choice.why, *choice.passed_over])
    emit(args.format, json_doc=v.to_dict, records=lambda: records(v),
         table=lambda: render(v, why=why), markdown=lambda: render(v, markdown=True, why=why))
    if args.plot and args.format != "json" and args.format != "csv":
        print(f"plot: {args.plot}")
    return 0


def records(v) -> list[dict]:
    """--format csv: one row per contender and workload (the table's rows); the break-evens
    are in the table and the JSON."""
    return [{k: val for k, val in r.items() if k != "sensitivity"}
            for r in v.to_dict()["rows"]]


# ------------------------------------------------------------------ display

def _step(row) -> str:
    if not row.feasible:
        return "-"
    if row.mode == "train":
        return f"{row.step_time_s:.3g} s"
    t = row.step_time_s
    text = f"{t:.3g} s" if t >= 1 else f"{t * 1e3:.3g} ms"
    return text + (" TPOT" if row.mode == "decode" else " TTFT")


def rows_for_table(v) -> list[list[str]]:
    out = []
    for r in v.rows:
        w = WORKLOADS[r.workload].label if r.mode == "train" else f"DeepSeek-R1 {r.mode}"
        c = r.contender
        if not r.feasible:
            out.append([w, c.system.name, c.basis, str(c.chips), "-", "-", "-", "-", "-", "-",
                        "-", "-", "-", "-", f"infeasible: {(r.reason or '')[:60]}"])
            continue
        rel, rel_band, tps_band = v.relative(r), v.relative_band(r), r.tokens_per_s_band
        tps = count_range(r.tokens_per_s, *(tps_band or (None, None)))
        vs = "-" if rel is None else f"{rel:.2f}x" + (
            "" if rel_band is None or c.basis == "reference"
            else f" ({rel_band[0]:.2f}-{rel_band[1]:.2f})")
        out.append([w, c.system.name, c.basis, str(c.chips), _step(r), tps,
                    count(r.tokens_per_s_per_chip), count(r.tokens_per_s_per_system),
                    count(r.tokens_per_s_per_kw), count(r.tokens_per_s_per_million_usd),
                    percent(r.mfu) if r.mfu is not None else "-",
                    f"{r.joules_per_token:.3g}", vs, v.verdict(r) or "-", r.plan])
    return out


def render(v, markdown: bool = False, why: str | None = None) -> str:
    """The table (or Markdown) form; `why` a line saying why this calibration was chosen."""
    rows = rows_for_table(v)
    body = markdown_table(HEADERS, rows) if markdown else table(HEADERS, rows, "lllrrrrrrrrrrll")
    lines = [
        f"CloudMatrix 384 head to head; calibration: {v.calibration}", *([why] if why else []),
        f"training: bf16, ~{TRAIN_TOKENS_PER_STEP / 1e6:g}M tokens per step, best plan per system; "
        f"serving DeepSeek-R1: 8-bit (fp8 NVIDIA, int8 Ascend), decode at TPOT <= "
        f"{v.tpot_s * 1e3:g} ms with {CONTEXT}-token contexts, prefill of {PROMPT}-token prompts",
        "tokens/s: whole contender; /system: per scale-up system of that kind; /kW: whole-system "
        "power; /$M: per million $ of systems (where the catalog has a price); vs CM384: "
        "throughput over CloudMatrix 384's on the contender's basis; (band): 10th-90th "
        "percentile (clusters.uncertainty: input ranges and the model's error on published "
        "rows; a ratio pairs the two projections' samples); verdict: the rival ahead of or "
        "behind CloudMatrix across the whole band, else too close to call",
        "", body, "", "break-even: the Ascend software factor (compute and memory kernels) "
        "CloudMatrix needs to match each rival (1.0 = as efficient as the NVIDIA kernels it "
        "borrows)"]
    for b in v.break_evens:
        sep = "- " if markdown else "  "
        lines.append(f"{sep}{b.workload} {b.mode} vs {b.rival.system.name} x{b.rival.chips} "
                     f"({b.rival.basis}): {b.verdict}")
    if v.break_evens:
        b = v.break_evens[0]
        lines.append(f"(the calibration's own Ascend factors: compute x{b.current_compute:g}, "
                     f"memory x{b.current_memory:g})")
    lines += [f"note: {n}" for n in v.calibration_notes]
    return "\n".join(lines)


def plot(v, path: str) -> None:
    """Grouped bars: each rival's throughput over CloudMatrix 384's, per workload."""
    groups = []
    for r in v.rows:
        if (r.workload, r.mode) not in groups:
            groups.append((r.workload, r.mode))
    rivals = []
    for r in v.rows:
        key = (r.contender.system.name, r.contender.basis)
        if r.contender.basis != "reference" and key not in rivals:
            rivals.append(key)
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / max(1, len(rivals))
    for j, (name, basis) in enumerate(rivals):
        ys, err = [], [[], []]
        for g in groups:
            row = next((r for r in v.rows if (r.workload, r.mode) == g
                        and (r.contender.system.name, r.contender.basis) == (name, basis)), None)
            rel = v.relative(row) if row is not None else None
            band = v.relative_band(row) if rel is not None else None
            ys.append(0.0 if rel is None else rel)
            err[0].append(0.0 if band is None else rel - band[0])
            err[1].append(0.0 if band is None else band[1] - rel)
        xs = [i + (j - (len(rivals) - 1) / 2) * width for i in range(len(groups))]
        chips = next(r.contender.chips for r in v.rows
                     if (r.contender.system.name, r.contender.basis) == (name, basis))
        ax.bar(xs, ys, width, yerr=err, capsize=2, error_kw={"lw": 0.8},
               label=f"{name} x{chips} ({basis})")
    ax.axhline(1.0, color="black", lw=1)
    ax.text(len(groups) - 0.5, 1.02, "CloudMatrix 384 = 1", ha="right", va="bottom", fontsize=8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{w}\n{m}" for w, m in groups])
    ax.set_ylabel("throughput / CloudMatrix 384's (bars: 10th-90th percentile)")
    ax.set_title(f"Head to head (calibration: {v.calibration})", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    try:
        write_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
