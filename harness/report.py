"""The report: one self-contained HTML file (plots inlined as base64 PNG) and a Markdown twin,
readable at a glance.

Sections: a summary line; the comparison, changed cases first, with the full table folded
behind a <details>; the change points and one trend plot per kernel family over the sets'
dates (commits in the tick labels, the legend beside the axes); a roofline of the measured
cases with numbered points and their table; the projection tables when there are any. Every
string that came from a result set goes through html.escape (a case may be named `<script>`);
the page also forbids scripts outright (CSP). The Markdown twin links its PNGs, written into
a folder beside it (`<name>-png/`), so the HTML stands alone.
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from harness import compare as cmp_mod
from harness.ceilings import case_fractions, compute_from_run
from harness.format import markdown_cell, markdown_table, number, percent, si
from harness.studies import projection_tables as projections
from harness.resultset import ResultSet, write_atomic

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left;vertical-align:top;white-space:nowrap}
td:last-child{white-space:normal}
td.num{text-align:right}
th{background:#f0f0f0}
tr.slower td,tr.newly-failing td{background:#fde2e2}
tr.inconclusive td{background:#fff4d6}
tr.faster td,tr.fixed td{background:#e2f5e2}
tr.not-comparable td{background:#eee;color:#666}
.note{color:#555}
.summary{font-size:1.1em;padding:0.5em 0.8em;border-left:4px solid #888;background:#f7f7f7}
.summary.worse{border-color:#c33}
.summary.ok{border-color:#3a3}
details{margin:0.5em 0 1em}
summary{cursor:pointer;color:#035}
img{max-width:100%}
"""
# Trend plots tick every set up to this many; beyond, the date axis picks its own ticks.
_TICK_EVERY_SET = 12


@dataclass
class Report:
    title: str
    html: str
    markdown: str
    images: dict = field(default_factory=dict)  # file name -> PNG bytes (the Markdown links them)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _plot_text(value) -> str:
    """A label for matplotlib: '$' would start mathtext (and can make a name fail to render)."""
    return str(value).replace("$", r"\$")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _figure(width_in: float = 8.0, height_in: float = 4.5):
    # The object API, not pyplot: no global state, no GUI backend, Agg underneath.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    return fig, fig.add_subplot(1, 1, 1)


# ---------------------------------------------------------------------------- plots


def _when(created_utc: str | None) -> datetime | None:
    if not created_utc:
        return None
    try:
        return datetime.fromisoformat(str(created_utc).replace("Z", "+00:00"))
    except ValueError:
        return None


def _set_label(info) -> str:
    when = _when(info.created_utc)
    return f"{when:%m-%d %H:%M}\n{(info.commit or '?')[:8]}" if when else (info.commit or "?")[:8]


def _column_medians(rel: np.ndarray) -> np.ndarray:
    """The median of each set (column) over the cases that have a value there; NaN where none
    has (np.nanmedian would warn "All-NaN slice")."""
    out = np.full(rel.shape[1], np.nan)
    for j in range(rel.shape[1]):
        col = rel[:, j][np.isfinite(rel[:, j])]
        if col.size:
            out[j] = np.median(col)
    return out


def trend_plots(history, max_labelled: int = 8) -> dict[str, bytes]:
    """One PNG per kernel family: each case's median over the sets, relative to the median of
    its own series, so cases of very different sizes share an axis; x is the sets' dates, each
    tick naming its commit. A family with many cases shows them faint, its per-set median bold,
    and the cases with a change point labelled. The legend sits beside the axes."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    by_group: dict[str, list] = {}
    for c in history.cases:
        if np.isfinite(c.values).sum() >= 2:
            by_group.setdefault(c.group, []).append(c)
    when = [_when(s.created_utc) for s in history.sets]
    dated = all(w is not None for w in when)
    x = when if dated else list(range(len(history.sets)))
    out = {}
    for group in sorted(by_group):
        fig, ax = _figure(9.0, 4.2)
        cases = by_group[group]
        rel = np.array([c.values / np.median(c.values[np.isfinite(c.values)]) for c in cases])
        few = len(cases) <= max_labelled
        labelled, steps = 0, {}
        for c, r in zip(cases, rel):
            show = few or (c.change_points and labelled < max_labelled)
            labelled += bool(show)
            ok = np.isfinite(r)
            ax.plot([x[i] for i in np.flatnonzero(ok)], r[ok], linewidth=1 if show else 0.6,
                    alpha=0.9 if show else 0.15, color=None if show else "grey",
                    marker="." if show and len(x) <= 60 else None, label=_plot_text(c.name) if show else None)
            for cp in c.change_points:
                edge = x[cp.index - 1] + (x[cp.index] - x[cp.index - 1]) / 2
                ax.axvline(edge, color="red" if cp.verdict == "slower" else "green", alpha=0.4, linestyle="--")
                steps[edge] = f"{(cp.before.commit or '?')[:8]} -> {(cp.after.commit or '?')[:8]}"
        for edge, text in steps.items():  # the commits either side of each step, on the plot
            ax.annotate(text, xy=(edge, 0.98), xycoords=("data", "axes fraction"), rotation=90, fontsize=6.5,
                        va="top", ha="right", color="#444")
        if not few:
            ax.plot(x, _column_medians(rel), color="black", linewidth=2, label=f"median of {len(cases)} cases")
        title = f"{group}: each case's median per set / its usual level (lower is faster)"
        if steps:
            title += "; dashed: change points (red slower, green faster)"
        ax.set_title(_plot_text(title), fontsize="medium")
        ax.set_ylabel("median / median of the series")
        if dated and len(x) <= _TICK_EVERY_SET:
            ax.set_xticks(x)
            ax.set_xticklabels([_set_label(s) for s in history.sets], fontsize="x-small")
            ax.set_xlabel("set: UTC date and time, commit")
        elif dated:
            locator = AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
            ax.set_xlabel(f"date (UTC); {len(x)} sets from {(history.sets[0].commit or '?')[:8]} to "
                          f"{(history.sets[-1].commit or '?')[:8]}")
        else:
            ax.set_xticks(x)
            ax.set_xticklabels([(s.commit or "?")[:8] for s in history.sets], fontsize="x-small", rotation=90)
            ax.set_xlabel("set (commit); no creation times recorded")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        out[group] = _png(fig)
    return out


def _ceilings(meta: dict) -> tuple[dict, float | None]:
    ceil = meta.get("ceilings") or {}
    peaks = ceil.get("peak_flops_per_s") or {}
    if not isinstance(peaks, dict):
        peaks = {"peak": peaks}
    peaks = {str(k): float(v) for k, v in peaks.items() if isinstance(v, (int, float)) and v > 0}
    bw = ceil.get("peak_bw_bytes_per_s")
    return peaks, float(bw) if isinstance(bw, (int, float)) and bw > 0 else None


def roofline_points(rs: ResultSet) -> list[tuple[str, str, float, float]]:
    """(group, name, arithmetic intensity in FLOP/byte, achieved FLOP/s) for measured cases."""
    out = []
    for c in rs.cases:
        if c.status != "ok" or not c.flops or not c.bytes or not c.achieved_flops_per_s:
            continue
        out.append((c.group, c.name, c.flops / c.bytes, float(c.achieved_flops_per_s)))
    return out


def roofline_rows(rs: ResultSet) -> list[tuple[str, str, str, str, str]]:
    """The roofline's points as numbered on the plot: (#, case, FLOP/byte, achieved, of the
    roof), the last 'over ceiling' where the case beats its ceiling (the ceiling is wrong)."""
    peaks, bw = _ceilings(rs.meta)
    from_run = compute_from_run(rs.meta.get("ceilings") or {})
    by_name = {c.name: c for c in rs.cases}
    rows = []
    for i, (_, name, ai, rate) in enumerate(roofline_points(rs), 1):
        c = by_name[name]
        _, roof, above = case_fractions(c, c.peak_flops_per_s or peaks.get(c.extra.get("peak_dtype")),
                                        c.peak_bw_bytes_per_s or bw, from_run)
        cell = "over ceiling" if "roofline_fraction" in above else percent(roof)
        rows.append((str(i), name, number(ai, 3), si(rate, "FLOP/s"), cell))
    return rows


def _label_groups(points, decades: float = 0.12) -> dict[tuple[float, float], list[int]]:
    """Point numbers (1-based) grouped by where they fall on the log-log plot: within about
    `decades` of each other they share a label at the group's first point."""
    groups: dict[tuple[int, int], list[int]] = {}
    first: dict[tuple[int, int], tuple[float, float]] = {}
    for i, (_, _, x, y) in enumerate(points, 1):
        cell = (round(math.log10(x) / decades), round(math.log10(y) / decades))
        groups.setdefault(cell, []).append(i)
        first.setdefault(cell, (x, y))
    return {first[cell]: numbers for cell, numbers in groups.items()}


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3,5'."""
    out, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(out)


def roofline_plot(rs: ResultSet) -> bytes | None:
    points = roofline_points(rs)
    if not points:
        return None
    peaks, bw = _ceilings(rs.meta)
    from_run = compute_from_run(rs.meta.get("ceilings") or {})
    fig, ax = _figure(9.0, 6.0)
    ai = np.array([p[2] for p in points])
    lo, hi = ai.min() / 4, ai.max() * 4
    if bw and peaks:
        lo, hi = min(lo, min(peaks.values()) / bw / 4), max(hi, max(peaks.values()) / bw * 4)
    xs = np.geomspace(lo, hi, 200)
    compute_label = "best {0} matmul of the run: {1}" if from_run else "{0} peak: {1}"
    for dtype, peak in sorted(peaks.items(), key=lambda kv: kv[1]):
        roof = np.minimum(peak, bw * xs) if bw else np.full_like(xs, peak)
        ax.plot(xs, roof, linewidth=1.5, label=_plot_text(compute_label.format(dtype, si(peak, "FLOP/s"))))
    if bw and not peaks:
        ax.plot(xs, bw * xs, linewidth=1.5, label=_plot_text(f"memory ceiling {si(bw, 'B/s')}"))
    for group in sorted({p[0] for p in points}):
        sel = [p for p in points if p[0] == group]
        ax.scatter([p[2] for p in sel], [p[3] for p in sel], s=22, label=_plot_text(group), zorder=3)
    over = [i for i, row in enumerate(roofline_rows(rs)) if row[4] == "over ceiling"]
    if over:
        ax.scatter([points[i][2] for i in over], [points[i][3] for i in over], s=90, facecolors="none",
                   edgecolors="red", linewidths=1.2, zorder=4, label="above its ceiling: the ceiling is wrong for it")
    # numbered as in the table under the plot; points that fall together share one label
    for (x, y), numbers in _label_groups(points).items():
        ax.annotate(_ranges(numbers), (x, y), xytext=(4, 2), textcoords="offset points", fontsize=6.5, zorder=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("achieved FLOP/s")
    kind = (rs.meta.get("device") or {}).get("kind")
    memory = f"memory {si(bw, 'B/s')}" if bw else "no memory ceiling"
    ax.set_title(_plot_text(f"roofline: {kind}; ceilings {'measured in the run' if from_run else 'from the catalog'}, "
                            f"{memory}"), fontsize="medium")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return _png(fig)


# ---------------------------------------------------------------------------- projection hook


def projection_tables() -> list:
    """[(title, DataFrame)]: the head-to-head projection tables the report includes."""
    return projections.projection_tables()


# ---------------------------------------------------------------------------- building


_NUMBER_CELL = re.compile(r"[-+±]?[0-9][0-9,.]*(e[-+]?[0-9]+)?%?( [A-Za-z]{0,6}(/s)?)?")


def _is_num(text: str) -> bool:
    """A cell that holds one number (with an SI unit at most): right-aligned."""
    return bool(_NUMBER_CELL.fullmatch(text.strip()))


def _html_table(header, rows, row_classes=None) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes else ""
        cells = "".join(f'<td class="num">{esc(c)}</td>' if _is_num(str(c)) else f"<td>{esc(c)}</td>" for c in r)
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>\n{body}\n</details>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _header(column: str) -> str:
    """A data frame's column name as a table header: tokens_per_s_per_chip -> tokens/s per chip."""
    if column == "mfu":
        return "MFU"
    text = column.replace("_per_s", "/s").replace("_per_", " per ").replace("_vs_", " vs ").replace("_", " ")
    return text[:-3] + " kW" if text.endswith(" kw") else text


def _df_rows(df) -> tuple[list[str], list[list[str]]]:
    header = [_header(str(c)) for c in df.columns]
    fractions = [str(c) == "mfu" or str(c).endswith("_fraction") for c in df.columns]
    rows = [[_cell(v, frac) for v, frac in zip(row, fractions)] for row in df.itertuples(index=False)]
    return header, rows


def _cell(v, fraction: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return percent(float(v)) if fraction else number(float(v))
    return str(v)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in str(text).lower()).strip("-") or "x"


def _summary(comparison) -> tuple[str, str]:
    """(one line, css class) saying at a glance what the comparison found."""
    counts = comparison.counts()
    code = comparison.exit_code
    worse = counts["slower"] + counts["newly failing"]
    parts = [f"{counts[v]} {v}" for v in cmp_mod.DISPLAY_ORDER if counts[v] and v != "same"]
    line = (f"{'WORSE' if code == cmp_mod.EXIT_WORSE else 'nothing comparable' if code == 3 else 'nothing proven worse'}: "
            + (", ".join(parts) if parts else "no change") + f"; {counts['same']} same")
    return line, "worse" if worse or code != 0 else "ok"


def _comparison_section(comparison, h: list[str], md: list[str]) -> None:
    changed = [c for c in comparison.cases if c.verdict != "same"]
    line, cls = _summary(comparison)
    rows_changed = cmp_mod.table_rows(comparison, only_changed=True)
    rows_all = cmp_mod.table_rows(comparison)
    classes_all = [c.verdict.replace(" ", "-") for c in comparison.cases]
    h += ["<h2>Comparison</h2>", f'<p class="summary {cls}">{esc(line)}</p>',
          '<p class="note">' + "<br>".join(esc(l) for l in cmp_mod.header_lines(comparison)) + "</p>"]
    if changed:
        h += [f"<h3>Changed: {len(changed)} of {len(comparison.cases)} cases, worst first</h3>",
              _html_table(cmp_mod.TABLE_HEADER, rows_changed, [c.verdict.replace(" ", "-") for c in changed])]
    else:
        h.append(f"<p>No case changed ({len(comparison.cases)} compared).</p>")
    h += [_details(f"All {len(comparison.cases)} cases", _html_table(cmp_mod.TABLE_HEADER, rows_all, classes_all)),
          "<h3>Geometric mean of new/base per family (&gt; 1 is worse)</h3>",
          _html_table(("family", "geomean", "verdicts"), cmp_mod.family_rows(comparison)),
          f"<p><strong>{esc(cmp_mod.exit_message(comparison))}</strong></p>"]
    md += ["## Comparison", "", f"**{markdown_cell(line)}**", ""]
    md += [f"- {markdown_cell(l)}" for l in cmp_mod.header_lines(comparison)] + [""]
    if changed:
        md += [f"### Changed: {len(changed)} of {len(comparison.cases)} cases, worst first", "",
               markdown_table(cmp_mod.TABLE_HEADER, rows_changed), ""]
    else:
        md += [f"No case changed ({len(comparison.cases)} compared).", ""]
    md += [f"<details><summary>All {len(comparison.cases)} cases</summary>", "",
           markdown_table(cmp_mod.TABLE_HEADER, rows_all), "", "</details>", "",
           "Geometric mean of new/base per family (> 1 is worse):", "",
           markdown_table(("family", "geomean", "verdicts"), cmp_mod.family_rows(comparison)), "",
           f"**{markdown_cell(cmp_mod.exit_message(comparison))}**", ""]


def build_report(*, comparison=None, new: ResultSet | None = None, history=None,
                 title: str = "rackbench report", image_prefix: str = "report") -> Report:
    """The page and its Markdown twin; `images` holds the PNGs the Markdown links, by the path
    it links them at (`<image_prefix>-png/<name>.png`)."""
    h = [f"<h1>{esc(title)}</h1>"]
    md = [f"# {markdown_cell(title)}", ""]
    images: dict[str, bytes] = {}
    folder = f"{image_prefix}-png"

    if new is not None:
        dev, sw, git = new.meta.get("device") or {}, new.meta.get("software") or {}, new.meta.get("git") or {}
        facts = [("result set", new.path or "-"), ("machine", new.meta.get("machine_id")),
                 ("device", f"{dev.get('kind')} x{dev.get('count')}"), ("jax", sw.get("jax")),
                 ("suite", new.meta.get("suite")), ("commit", (git.get("commit") or "")[:12]),
                 ("created", new.meta.get("created_utc"))]
        h.append('<p class="note">' + "<br>".join(f"{esc(k)}: {esc(v)}" for k, v in facts) + "</p>")
        md += [f"- {markdown_cell(k)}: {markdown_cell(v)}" for k, v in facts] + [""]

    if comparison is not None:
        _comparison_section(comparison, h, md)

    if history is not None and history.sets:
        cps = sorted(((cp, c) for c in history.cases for cp in c.change_points), key=lambda t: (t[0].index, t[1].name))
        cp_rows = [(c.name, cp.verdict, f"{cp.ratio:.3f}", f"{cp.z:.1f}",
                    f"{(cp.before.commit or '?')[:8]} ({(cp.before.created_utc or '?')[:10]})",
                    f"{(cp.after.commit or '?')[:8]} ({(cp.after.created_utc or '?')[:10]})") for cp, c in cps]
        cp_header = ("case", "step", "after/before", "z", "last set before", "first set after")
        span = (f"{len(history.sets)} sets of suite {history.suite} on machine {history.machine_id}, "
                f"{(history.sets[0].created_utc or '?')[:10]} to {(history.sets[-1].created_utc or '?')[:10]}")
        h += ["<h2>History</h2>", f'<p class="note">{esc(span)} ({esc(history.directory)})</p>']
        h += [f'<p class="note">{esc(w)}</p>' for w in history.warnings]
        h += ["<h3>Change points</h3>", _html_table(cp_header, cp_rows) if cp_rows else "<p>none found</p>"]
        md += ["## History", "", f"{markdown_cell(span)}.", "", *[f"- {markdown_cell(w)}" for w in history.warnings],
               "", "### Change points", ""]
        md += [markdown_table(cp_header, cp_rows)] if cp_rows else ["none found"]
        md.append("")
        plots = trend_plots(history)
        if plots:
            h.append("<h3>Trends per kernel family</h3>")
            md += ["### Trends per kernel family", ""]
        for group, png in plots.items():
            name = f"{folder}/trend-{_slug(group)}.png"
            images[name] = png
            h += [f"<h4>{esc(group)}</h4>", _img(png, f"trend of {group}")]
            md += [f"![trend of {markdown_cell(group)}]({name})", ""]

    if new is not None:
        png = roofline_plot(new)
        h.append("<h2>Roofline</h2>")
        md += ["## Roofline", ""]
        if png is None:
            h.append("<p>no measured case has FLOPs, bytes and an achieved rate</p>")
            md += ["no measured case has FLOPs, bytes and an achieved rate", ""]
        else:
            name = f"{folder}/roofline.png"
            images[name] = png
            rows = roofline_rows(new)
            header = ("#", "case", "FLOP/byte", "achieved", "of the roof")
            h += [_img(png, "roofline"),
                  _details(f"The {len(rows)} points, numbered as on the plot", _html_table(header, rows))]
            md += [f"![roofline]({name})", "", f"<details><summary>The {len(rows)} points, numbered as on the "
                   "plot</summary>", "", markdown_table(header, rows), "", "</details>", ""]

    tables = projection_tables()
    if tables:
        h.append("<h2>Projections</h2>")
        md += ["## Projections", ""]
        for t_title, df in tables:
            header, rows = _df_rows(df)
            h += [f"<h3>{esc(t_title)}</h3>", _html_table(header, rows)]
            md += [f"### {markdown_cell(t_title)}", "", markdown_table(header, rows), ""]

    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Defence in depth beside the escaping: this page never needs a script or a fetch.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        *h,
        "</body></html>",
    ])
    return Report(title, page + "\n", "\n".join(md).rstrip() + "\n", images)


def write_report(out_dir, name: str, **kwargs) -> tuple[Path, Path]:
    """Write <name>.html (self-contained), <name>.md and, in <name>-png/, the PNGs the Markdown
    links, each atomically (0644; a full disk leaves no half-written file and no temp file)."""
    out_dir = Path(out_dir)
    report = build_report(image_prefix=name, **kwargs)
    folder = out_dir / f"{name}-png"
    try:
        for img_name, png in report.images.items():
            write_atomic(out_dir / img_name, png)
    except BaseException:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a full disk leaves nothing behind, not even the empty folder
        raise
    html_path, md_path = out_dir / f"{name}.html", out_dir / f"{name}.md"
    for path, text in ((html_path, report.html), (md_path, report.markdown)):
        write_atomic(path, text)
    return html_path, md_path
