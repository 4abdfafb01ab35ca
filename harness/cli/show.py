"""`rackbench show SET`: a result set, one table per kernel family, each in the rate its cases
are measured in (FLOP/s; bytes/s; algbw and busbw for collectives), with the fraction of the
device's peak and of the roofline where the ceilings make them information, and how each case
was timed; the same as JSON, CSV or Markdown."""
from __future__ import annotations

from harness.ceilings import case_fractions, compute_from_run
from harness.cli.common import add_format, emit
from harness.format import byte_size, duration, markdown_table, measured, percent, si, table
from harness.resultset import ResultSet, load, warning_summary
from harness.stats import LARGE_SPREAD_IQR_OVER_MEDIAN
from harness.studies.closing_loop import closing_loop_line
from kernels.naming import current_name

# Columns of the CSV and the keys of each JSON case, units in the names (ARCHITECTURE.md).
CASE_COLUMNS = (
    "name", "group", "status", "reason", "median_s", "ci95_low_s", "ci95_high_s", "iqr_over_median", "n_samples",
    "work_flops", "traffic_bytes", "achieved_flops_per_s", "achieved_bytes_per_s", "size_bytes", "ranks", "algbw_bytes_per_s",
    "busbw_bytes_per_s", "fraction_of_peak", "roofline_fraction", "above_ceiling_fraction", "above_ceiling",
    "timing_method", "reps_per_sample", "other_cpu_fraction",
)
_BUS_FACTORS = "2(n-1)/n for all_reduce; (n-1)/n for all_gather, reduce_scatter and all_to_all; 1 for send (nccl-tests)"
# A rate kind per family: what its cases are bound by and measured in.
_KINDS = {"flops": "rate in FLOP/s", "bytes": "rate in bytes/s (read + write); of peak: of the memory ceiling",
          "collective": "algbw = size / time, busbw = algbw x bus factor", "time": "time only"}


class _Ceilings:
    """What the set's ceilings allow show to say about each case, for sets of every version."""

    def __init__(self, meta: dict, cases=()):
        ceil = meta.get("ceilings") or {}
        self.raw = ceil
        self.peaks = {k: v for k, v in (ceil.get("peak_flops_per_s") or {}).items() if v}
        self.bw = ceil.get("peak_bw_bytes_per_s")
        self.from_run = bool(ceil) and compute_from_run(ceil)
        self.memory = ceil.get("memory") or {}
        # a set from before the ceiling sweeps took its memory ceiling from its best stream case:
        # that case's memory fractions are 100% by construction
        origin = (ceil.get("measured_by") or {}).get("bandwidth") or {}
        self.bw_case = current_name(origin["case"]) if self.from_run and origin.get("case") and not self.memory else None
        if self.from_run and self.bw and not self.memory and self.bw_case is None:  # version 1 did not name it
            self.bw_case = next((c.name for c in cases if c.group == "membw" and c.status == "ok"
                                 and c.achieved_bytes_per_s == self.bw), None)

    def fractions(self, c):
        """(fraction of peak, roofline fraction, above) as the runner stores them, derived
        again so that sets written before fractions above 1 were refused read the same."""
        if c.status != "ok" or not c.median_s or c.group == "collective":
            return None, None, {}
        peak = c.peak_flops_per_s or self.peaks.get(c.extra.get("peak_dtype"))
        if c.name == self.bw_case:
            return None, None, {}
        of_peak, roofline, above = case_fractions(c, peak, c.peak_bw_bytes_per_s or self.bw, self.from_run,
                                                  self.memory.get("llc_bytes"))
        if "peak_dtype" not in c.extra and c.group in _COMPUTE_GROUPS:  # another writer's compute case:
            of_peak = None  # its peak is unknown, and a memory fraction is not its "of peak"
            above.pop("fraction_of_peak", None)
        return of_peak, roofline, above


# Families bound by compute, for records that do not name their peak dtype (other writers).
_COMPUTE_GROUPS = ("matmul", "matmul_model", "attention", "train_step")


def family_kind(cases) -> str:
    ok = [c for c in cases if c.status == "ok"]
    if any(c.group == "collective" for c in cases):
        return "collective"
    if any((c.extra.get("peak_dtype") or ("peak_dtype" not in c.extra and c.group in _COMPUTE_GROUPS))
           and c.achieved_flops_per_s for c in ok):
        return "flops"
    if any(c.achieved_bytes_per_s for c in ok):
        return "bytes"
    return "time"


def _spread(c) -> float | None:
    s = c.stats
    return s["iqr_s"] / s["median_s"] if s.get("median_s") and s.get("iqr_s") is not None else None


def case_record(c, ceilings: _Ceilings) -> dict:
    """One case as raw numbers with unit-named keys (JSON and CSV)."""
    s = c.stats
    of_peak, roofline, above = ceilings.fractions(c)
    ok = c.status == "ok"
    unit = c.unit or "s"  # the samples' unit: seconds, except in other writers' records
    rec = {
        "name": c.name, "group": c.group, "status": c.status, "reason": c.reason,
        f"median_{unit}": s.get("median_s") if ok else None, f"ci95_low_{unit}": s.get("ci95_low_s") if ok else None,
        f"ci95_high_{unit}": s.get("ci95_high_s") if ok else None, "iqr_over_median": _spread(c) if ok else None,
        "n_samples": len(c.samples_s) if ok else 0, "work_flops": c.flops, "traffic_bytes": c.bytes,
        "achieved_flops_per_s": c.achieved_flops_per_s if ok and c.group != "collective" else None,
        "achieved_bytes_per_s": c.achieved_bytes_per_s if ok and c.group != "collective" else None,
        "size_bytes": c.params.get("size_bytes") if c.group == "collective" else None,
        "ranks": c.params.get("ranks") if c.group == "collective" else None,
        "algbw_bytes_per_s": c.extra.get("algbw_bytes_per_s") if ok else None,
        "busbw_bytes_per_s": c.extra.get("busbw_bytes_per_s") if ok else None,
        "fraction_of_peak": of_peak, "roofline_fraction": roofline,
        "above_ceiling_fraction": max((v for k, v in above.items() if k.endswith("fraction")), default=None),
        "above_ceiling": above.get("note"),
        "timing_method": c.timing.get("method") if ok else None,
        "reps_per_sample": c.timing.get("reps_per_sample") if ok else None,
        "other_cpu_fraction": c.conditions.get("other_cpu_fraction") if ok else None,
    }
    return rec


def _families(cases) -> list[tuple[str, list]]:
    groups: dict[str, list] = {}
    for c in cases:
        groups.setdefault(c.group, []).append(c)
    return list(groups.items())


def _fraction_cell(value, above: dict, key: str) -> str:
    return "over ceiling" if key in above else percent(value)


def _family_table(group: str, cases, ceilings: _Ceilings, others: bool, markdown: bool) -> list[str]:
    kind = family_kind(cases)
    headers = ["case", "median", "95% CI", "IQR/med"]
    if kind == "flops":
        headers += ["FLOP/s", "of peak", "roofline"]
    elif kind == "bytes":
        headers += ["bytes/s", "of peak", "roofline"]
    elif kind == "collective":
        headers += ["size", "algbw", "busbw"]
    headers += (["others' CPU"] if others else []) + ["timing"]
    rows = []
    for c in cases:
        s = c.stats
        spread = _spread(c)
        row = [c.name, measured(s.get("median_s"), c.unit),
               f"[{measured(s.get('ci95_low_s'), c.unit)}, {measured(s.get('ci95_high_s'), c.unit)}]",
               percent(spread) + ("*" if spread is not None and spread > LARGE_SPREAD_IQR_OVER_MEDIAN else "")]
        of_peak, roofline, above = ceilings.fractions(c)
        if kind == "flops":
            row += [si(c.achieved_flops_per_s, "FLOP/s"), _fraction_cell(of_peak, above, "fraction_of_peak"),
                    _fraction_cell(roofline, above, "roofline_fraction")]
        elif kind == "bytes":
            row += [si(c.achieved_bytes_per_s, "B/s"), _fraction_cell(of_peak, above, "fraction_of_peak"),
                    _fraction_cell(roofline, above, "roofline_fraction")]
        elif kind == "collective":
            row += [byte_size(c.params.get("size_bytes")), si(c.extra.get("algbw_bytes_per_s"), "B/s"),
                    si(c.extra.get("busbw_bytes_per_s"), "B/s")]
        row += ([percent(c.conditions.get("other_cpu_fraction"))] if others else [])
        row.append(f"{c.timing.get('method')} x{c.timing.get('reps_per_sample')}, n={len(c.samples_s)}")
        rows.append(row)
    # a fraction column no case of the family has (every compute fraction of a CPU) goes
    for name in ("of peak", "roofline"):
        if name in headers and all(r[headers.index(name)] == "-" for r in rows):
            i = headers.index(name)
            headers = headers[:i] + headers[i + 1:]
            rows = [r[:i] + r[i + 1:] for r in rows]
    title = f"{group}: {len(cases)} measured, {_KINDS[kind]}"
    footer = [f"bus factor: {_BUS_FACTORS}"] if kind == "collective" else []
    if markdown:
        return [f"#### {title}", "", markdown_table(headers, rows), "", *footer, *([""] if footer else [])]
    return [title, table(headers, rows, "l" + "r" * (len(headers) - 2) + "l"), *footer, ""]


def _not_measured_table(cases, markdown: bool) -> list[str]:
    rows = [[c.name, c.status, c.reason or ""] for c in cases]
    title = f"not measured ({len(cases)}: failed or skipped, with the reason)"
    if markdown:
        return [f"#### {title}", "", markdown_table(["case", "status", "reason"], rows), ""]
    return [title, table(["case", "status", "reason"], rows, "lll"), ""]


def _ceiling_lines(rs: ResultSet, ceilings: _Ceilings) -> list[str]:
    ceil, meta = ceilings.raw, rs.meta
    if not ceil:
        return ["ceilings: none recorded: no fraction of peak or roofline"]
    kind = (meta.get("device") or {}).get("kind")
    peaks = ", ".join(f"{k} {si(v, 'FLOP/s')}" for k, v in ceilings.peaks.items()) or "-"
    if not ceilings.from_run:
        return [f"ceilings ({ceil.get('source')}): {peaks}; memory {si(ceilings.bw, 'B/s')}"]
    lines = [f"compute ceiling: no catalog peak for {kind}; this run's best matmul per dtype is {peaks}: "
             "a fraction of it is 100% by construction, so no fraction of peak and no compute-bound roofline "
             "is shown"]
    memory = ceilings.memory
    sweeps = memory.get("sweeps") or []
    if sweeps:
        llc = memory.get("llc_bytes")
        size = byte_size(memory.get("buffer_bytes"))
        cache = f"{memory['buffer_bytes'] / llc:.1f}x the {byte_size(llc)} last-level cache" if llc else "cache unknown"
        each = "; ".join(f"{si(s.get('best_bytes_per_s'), 'B/s')} {s.get('when')}"
                         + (f" (others took {percent(s['other_cpu_fraction'])} of the CPUs)"
                            if s.get("other_cpu_fraction") is not None else "") for s in sweeps)
        lines.append(f"memory ceiling: {si(ceilings.bw, 'B/s')}, the best of {len(sweeps)} sweep(s) of y = x + 1 "
                     f"in place over a {size} buffer ({cache}): {each}")
        if memory.get("note"):
            lines.append(f"  note: {memory['note']}")
    elif ceilings.bw and ceilings.bw_case:
        origin = (ceil.get("measured_by") or {}).get("bandwidth") or {}
        busy = origin.get("other_cpu_fraction")
        lines.append(f"memory ceiling: {si(ceilings.bw, 'B/s')}, the best stream_add case of the run "
                     f"({ceilings.bw_case}" + (f", others took {percent(busy)} of the CPUs" if busy is not None else "")
                     + "): a set from before the ceiling sweeps, whose buffer may fit a cache")
    elif ceilings.bw:
        lines.append(f"memory ceiling: {si(ceilings.bw, 'B/s')} ({ceil.get('source')})")
    else:
        lines.append("memory ceiling: none measured (no sweep in this run): no memory fraction or roofline")
    return lines


def _warning_lines(rs: ResultSet, shown_names: set[str] | None) -> list[str]:
    """Each warning once; the large-spread ones as one line (the cases carry a * in IQR/med).
    With a status filter, only warnings about the shown cases, and the run-wide ones."""
    names = {c.name for c in rs.cases}
    spread, lines, run_wide = [], [], 0
    for w in dict.fromkeys(str(w) for w in rs.meta.get("warnings") or []):
        head, _, rest = w.partition(": ")
        case = current_name(head) if rest and current_name(head) in names else None
        if case is None and shown_names is not None:
            run_wide += 1
            continue
        if shown_names is not None and case not in shown_names:
            continue
        if "large spread" in rest:
            spread.append(case)
            continue
        lines.append(f"warning: {case}: {rest}" if case else f"warning: {w}")
    if spread:
        lines.insert(0, f"warning: large spread (IQR above {LARGE_SPREAD_IQR_OVER_MEDIAN:.0%} of the median) in "
                        f"{len(spread)} case(s), marked * in IQR/med")
    if run_wide:
        lines.append(f"({run_wide} warning(s) about the whole run not shown with --status)")
    return lines


def render(rs: ResultSet, status_filter: str | None = None, warnings: str = "all", markdown: bool = False) -> str:
    """The set as text (or Markdown). `warnings`: "all" lists them (show), "summary" gives one
    line with counts (run, which may have dozens)."""
    m = rs.meta
    dev = m.get("device", {})
    sw = m.get("software", {})
    ceilings = _Ceilings(m, rs.cases)
    lines = [
        f"result set: {rs.path}",
        f"device: {dev.get('kind')} x{dev.get('count')} ({dev.get('platform')})"
        + (f", catalog chip {dev['catalog_chip']}" if dev.get("catalog_chip") else ""),
        f"software: python {sw.get('python')}, jax {sw.get('jax')}, jaxlib {sw.get('jaxlib')}",
        f"suite: {m.get('suite')}  seed: {m.get('seed')}  created: {m.get('created_utc')}  "
        f"commit: {(m.get('git') or {}).get('commit') or '-'}",
        *_ceiling_lines(rs, ceilings),
    ]
    if not m.get("complete", True):
        lines.append("INCOMPLETE: " + ("interrupted" if m.get("interrupted") else "the run did not finish"))
    if markdown:
        lines = [f"- {line}" for line in lines]
    lines.append("")
    counts = {s: sum(c.status == s for c in rs.cases) for s in ("ok", "failed", "skipped")}
    shown = [c for c in rs.cases if not status_filter or c.status == status_filter]
    others = any("other_cpu_fraction" in c.conditions for c in shown if c.status == "ok")
    for group, cases in _families([c for c in shown if c.status == "ok"]):
        lines += _family_table(group, cases, ceilings, others, markdown)
    not_measured = [c for c in shown if c.status != "ok"]
    if not_measured:
        lines += _not_measured_table(not_measured, markdown)
    total = f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped"
    if status_filter and not shown:
        lines.append(f"no {status_filter} cases (of {len(rs.cases)}: {total})")
    else:
        lines.append(total + (f"; shown: the {len(shown)} {status_filter}" if status_filter else ""))
    if any(c.status == "ok" for c in shown):
        lines.append("timing: host-loop = N dispatched calls then block, per call = total/N; device-loop = N "
                     "repetitions inside one compiled program (dispatch excluded); n = samples"
                     + ("; others' CPU: the share of all CPUs other processes took while the case ran" if others else ""))
    exceeded = [(c, ceilings.fractions(c)[2]) for c in shown]
    exceeded = [(c, a) for c, a in exceeded if a]
    if exceeded:
        lines.append(f"over ceiling: {len(exceeded)} case(s) ran faster than a ceiling allows, which is impossible: "
                     "the ceiling is wrong for them, and no fraction is shown")
        lines += [f"  {c.name}: {a['note']}" for c, a in exceeded]
    overhead = m.get("device_loop_overhead") or {}
    if overhead.get("per_rep_s") and not status_filter:
        lines.append(f"device loop's own cost: {duration(overhead['per_rep_s'])} per repetition (an empty-work "
                     f"loop); device-loop cases under {overhead.get('flag_ratio', 5):g}x that are flagged below")
    loop = closing_loop_line(rs)
    if loop and not status_filter:
        lines.append(loop)
    if warnings == "all":
        lines += _warning_lines(rs, {c.name for c in shown} if status_filter else None)
    else:
        summary = warning_summary(m.get("warnings") or [], rs.path)
        if summary:
            lines.append(summary)
    cond = m.get("conditions") or {}
    for when in ("before", "after"):
        snap = cond.get(when) or {}
        if snap and not status_filter:
            lines.append(f"conditions {when}: " + conditions_line(snap))
    return "\n".join(lines)


def document(rs: ResultSet, status_filter: str | None = None) -> dict:
    """The JSON form: the set's identity, its ceilings, counts, warnings and one record per case."""
    m = rs.meta
    ceilings = _Ceilings(m, rs.cases)
    return {
        "path": str(rs.path) if rs.path else None,
        "machine_id": m.get("machine_id"), "created_utc": m.get("created_utc"),
        "commit": (m.get("git") or {}).get("commit"), "suite": m.get("suite"), "seed": m.get("seed"),
        "device": m.get("device"), "software": m.get("software"), "complete": m.get("complete", True),
        "ceilings": {"peak_flops_per_s": ceilings.peaks, "peak_bw_bytes_per_s": ceilings.bw,
                     "source": ceilings.raw.get("source"), "compute_from_run": ceilings.from_run,
                     "memory": ceilings.memory or None},
        "counts": {s: sum(c.status == s for c in rs.cases) for s in ("ok", "failed", "skipped")},
        "warnings": list(m.get("warnings") or []),
        "cases": records(rs, status_filter),
    }


def records(rs: ResultSet, status_filter: str | None = None) -> list[dict]:
    ceilings = _Ceilings(rs.meta, rs.cases)
    return [case_record(c, ceilings) for c in rs.cases if not status_filter or c.status == status_filter]


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


def print_set(rs: ResultSet, fmt: str, status_filter: str | None = None, warnings: str = "all") -> None:
    """Print a set in the --format asked for (show and run)."""
    rows = records(rs, status_filter)
    # CASE_COLUMNS, then the medians of a record whose samples are not seconds (another writer's)
    columns = list(CASE_COLUMNS) + list(dict.fromkeys(k for r in rows for k in r if k not in CASE_COLUMNS))
    emit(fmt, json_doc=lambda: document(rs, status_filter), records=lambda: rows,
         columns=columns, table=lambda: render(rs, status_filter, warnings),
         markdown=lambda: render(rs, status_filter, warnings, markdown=True))


def run(args) -> int:
    print_set(load(args.file), args.format, args.status)
    return 0


def register(p) -> None:
    p.add_argument("file", metavar="SET",
                   help="a result set: a file, a directory (its newest set), or latest / latest~N (in ./results)")
    p.add_argument("--status", choices=("ok", "failed", "skipped"), help="only cases with this status")
    add_format(p, "csv", "markdown")
    p.set_defaults(func=run)
