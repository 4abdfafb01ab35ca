"""`rackbench show FILE`: a result set as a table, with fraction of peak and roofline."""
from __future__ import annotations

from harness.format import duration, percent, si, table
from harness.studies.closing_loop import closing_loop_line
from harness.resultset import ResultSet, load, warning_summary


def render(rs: ResultSet, status_filter: str | None = None, warnings: str = "all") -> str:
    """The set as text. `warnings`: "all" lists each warning (show), "summary" gives one line
    with counts (run, which may have dozens)."""
    m = rs.meta
    dev = m.get("device", {})
    sw = m.get("software", {})
    ceil = m.get("ceilings", {}) or {}
    lines = [
        f"result set: {rs.path}",
        f"device: {dev.get('kind')} x{dev.get('count')} ({dev.get('platform')})"
        + (f", catalog chip {dev['catalog_chip']}" if dev.get("catalog_chip") else ""),
        f"software: python {sw.get('python')}, jax {sw.get('jax')}, jaxlib {sw.get('jaxlib')}",
        f"suite: {m.get('suite')}  seed: {m.get('seed')}  created: {m.get('created_utc')}  "
        f"commit: {(m.get('git') or {}).get('commit') or '-'}",
    ]
    if ceil:
        peaks = ", ".join(f"{k} {si(v, 'FLOP/s')}" for k, v in (ceil.get("peak_flops_per_s") or {}).items())
        lines.append(f"ceilings ({ceil.get('source')}): {peaks or '-'}; memory {si(ceil.get('peak_bw_bytes_per_s'), 'B/s')}")
        busy = {k: v.get("other_cpu_fraction") for k, v in (ceil.get("measured_by") or {}).items()
                if isinstance(v, dict) and v.get("other_cpu_fraction") is not None}
        if busy:
            lines.append("  measured while other processes took " + ", ".join(
                f"{percent(v)} of the CPUs ({k})" for k, v in busy.items()))
    if not m.get("complete", True):
        lines.append("INCOMPLETE: " + ("interrupted" if m.get("interrupted") else "the run did not finish"))
    rows = []
    others = any("other_cpu_fraction" in c.conditions for c in rs.cases)
    for c in rs.cases:
        if status_filter and c.status != status_filter:
            continue
        busy = [percent(c.conditions.get("other_cpu_fraction"))] if others else []
        if c.status != "ok":
            rows.append([c.name, c.status, "-", "-", "-", "-", "-", "-", *busy, (c.reason or "")[:70]])
            continue
        s = c.stats
        ci = f"[{duration(s.get('ci95_low_s'))}, {duration(s.get('ci95_high_s'))}]"
        spread = s["iqr_s"] / s["median_s"] if s.get("median_s") else None
        rows.append(
            [
                c.name,
                "ok",
                duration(s.get("median_s")),
                ci,
                percent(spread),
                si(c.achieved_flops_per_s, "FLOP/s") if c.extra.get("peak_dtype") else si(c.achieved_bytes_per_s, "B/s"),
                percent(c.fraction_of_peak),
                percent(c.roofline_fraction),
                *busy,
                f"{c.timing.get('method')} x{c.timing.get('reps_per_sample')}, n={len(c.samples_s)}",
            ]
        )
    headers = ["case", "status", "median", "95% CI", "IQR/med", "rate", "of peak", "roofline",
               *(["others' CPU"] if others else []), "timing / reason"]
    lines += ["", table(headers, rows, "llrrrrrr" + ("r" if others else "") + "l")]
    n_ok = sum(c.status == "ok" for c in rs.cases)
    n_failed = sum(c.status == "failed" for c in rs.cases)
    n_skipped = sum(c.status == "skipped" for c in rs.cases)
    lines.append(f"\n{n_ok} ok, {n_failed} failed, {n_skipped} skipped")
    lines.append(
        "timing: host-loop = N dispatched calls then block, per call = total/N; "
        "device-loop = N repetitions inside one compiled program (dispatch excluded); n = samples"
        + ("; others' CPU: the share of all CPUs other processes took while the case ran" if others else "")
    )
    overhead = m.get("device_loop_overhead") or {}
    if overhead.get("per_rep_s"):
        lines.append(f"device loop's own cost: {duration(overhead['per_rep_s'])} per repetition (an empty-work "
                     f"loop); device-loop cases under {overhead.get('flag_ratio', 5):g}x that are flagged below")
    loop = closing_loop_line(rs)
    if loop:
        lines.append(loop)
    if warnings == "all":
        for w in m.get("warnings", []):
            lines.append(f"warning: {w}")
    summary = warning_summary(m.get("warnings") or [], rs.path)
    if summary:
        lines.append(summary)
    cond = (m.get("conditions") or {})
    for when in ("before", "after"):
        snap = cond.get(when) or {}
        if snap:
            lines.append(f"conditions {when}: " + conditions_line(snap))
    return "\n".join(lines)


def conditions_line(snap: dict) -> str:
    parts = []
    if snap.get("loadavg"):
        parts.append("load " + "/".join(f"{x:g}" for x in snap["loadavg"]) + f" on {snap.get('cpu_count')} CPUs")
    if snap.get("other_cpu_fraction") is not None:
        parts.append(f"other processes {percent(snap['other_cpu_fraction'])} of the CPUs")
    if snap.get("governor"):
        parts.append(f"governor {snap['governor']}")
    if snap.get("freq_mhz_median"):
        parts.append(f"CPU {snap['freq_mhz_min']:.0f}-{snap['freq_mhz_max']:.0f} MHz")
    for g in snap.get("gpus") or []:
        bits = [f"GPU {g.get('index')} {g.get('name', '')}".rstrip()]
        if g.get("sm_clock_mhz") is not None:
            bits.append(f"SM {g['sm_clock_mhz']}/{g.get('sm_clock_max_mhz')} MHz")
        if g.get("temperature_c") is not None:
            bits.append(f"{g['temperature_c']} C")
        if g.get("power_w") is not None:
            bits.append(f"{g['power_w']:.0f}/{g.get('power_limit_w', 0):.0f} W")
        if g.get("throttle_reasons"):
            bits.append("throttle: " + ",".join(g["throttle_reasons"]))
        parts.append(" ".join(bits))
    return "; ".join(parts) or "-"


def run(args) -> int:
    rs = load(args.file)
    print(render(rs, args.status))
    return 0


def register(p) -> None:
    p.add_argument("file", help="a result-set JSON file")
    p.add_argument("--status", choices=("ok", "failed", "skipped"), help="only cases with this status")
    p.set_defaults(func=run)
