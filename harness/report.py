"""The report: one self-contained HTML file (plots inlined as base64 PNG) and a Markdown twin.

Sections: the comparison table, change points and trend plots per kernel family, a roofline
of the measured cases against the set's ceilings, and the projection tables when
`clusters.report_tables` exists. Every string that came from a result set goes through
html.escape (a case may be named `<script>`); the page also forbids scripts outright (CSP).
"""
from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import compare as cmp_mod
from harness.format import markdown_cell, markdown_table
from harness.studies import projection_tables as projections
from harness.resultset import ResultSet, write_atomic

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left}
th{background:#f0f0f0}
tr.slower td,tr.newly-failing td{background:#fde2e2}
tr.faster td,tr.fixed td{background:#e2f5e2}
tr.not-comparable td{background:#eee;color:#666}
.note{color:#555}
img{max-width:100%}
"""


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


def trend_plots(history, max_labelled: int = 8) -> dict[str, bytes]:
    """One PNG per kernel family: each case's median over the sets, relative to the median of
    its own series, so cases of very different sizes share an axis. A family with many cases
    shows them faint, its per-set median bold, and the cases with a change point labelled."""
    by_group: dict[str, list] = {}
    for c in history.cases:
        if np.isfinite(c.values).sum() >= 2:
            by_group.setdefault(c.group, []).append(c)
    out = {}
    x = np.arange(len(history.sets))
    for group in sorted(by_group):
        fig, ax = _figure()
        cases = by_group[group]
        rel = np.array([c.values / np.nanmedian(c.values) for c in cases])
        few = len(cases) <= max_labelled
        labelled = 0
        for c, r in zip(cases, rel):
            show = few or (c.change_points and labelled < max_labelled)
            labelled += bool(show)
            ax.plot(x, r, linewidth=1 if show else 0.6, alpha=0.9 if show else 0.15, color=None if show else "grey",
                    marker="." if show and len(x) <= 60 else None, label=_plot_text(c.name) if show else None)
            for cp in c.change_points:
                ax.axvline(cp.index - 0.5, color="red" if cp.verdict == "slower" else "green", alpha=0.4, linestyle="--")
        if not few:
            ax.plot(x, np.nanmedian(rel, axis=0), color="black", linewidth=2, label=f"median of {len(cases)} cases")
        ax.set_title(_plot_text(f"{group}: median per set relative to the case's usual level (dashed: change points)"),
                     fontsize="medium")
        ax.set_xlabel("set (oldest to newest)")
        ax.set_ylabel("median / median of the series")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
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


def roofline_plot(rs: ResultSet) -> bytes | None:
    points = roofline_points(rs)
    if not points:
        return None
    peaks, bw = _ceilings(rs.meta)
    fig, ax = _figure(8.0, 5.5)
    ai = np.array([p[2] for p in points])
    lo, hi = ai.min() / 4, ai.max() * 4
    if bw and peaks:
        lo, hi = min(lo, min(peaks.values()) / bw / 4), max(hi, max(peaks.values()) / bw * 4)
    xs = np.geomspace(lo, hi, 200)
    for dtype, peak in sorted(peaks.items(), key=lambda kv: kv[1]):
        roof = np.minimum(peak, bw * xs) if bw else np.full_like(xs, peak)
        ax.plot(xs, roof, linewidth=1.5, label=_plot_text(f"roof {dtype}: {peak:.3g} FLOP/s"))
    if bw and not peaks:
        ax.plot(xs, bw * xs, linewidth=1.5, label=_plot_text(f"memory roof {bw:.3g} B/s"))
    for group in sorted({p[0] for p in points}):
        sel = [p for p in points if p[0] == group]
        ax.scatter([p[2] for p in sel], [p[3] for p in sel], s=18, label=_plot_text(group), zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("achieved FLOP/s")
    source = (rs.meta.get("ceilings") or {}).get("source") or "no ceilings recorded"
    kind = (rs.meta.get("device") or {}).get("kind")
    ax.set_title(_plot_text(f"roofline: {kind} (ceilings: {source})"))
    ax.legend(fontsize="small")
    return _png(fig)


# ---------------------------------------------------------------------------- projection hook


def projection_tables() -> list:
    """[(title, DataFrame)]: the head-to-head projection tables the report includes."""
    return projections.projection_tables()


# ---------------------------------------------------------------------------- building


def _html_table(header, rows, row_classes=None) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for i, r in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _df_rows(df) -> tuple[list[str], list[list[str]]]:
    header = [str(c) for c in df.columns]
    rows = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    return header, rows


def _cell(v) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in str(text).lower()).strip("-") or "x"


def build_report(*, comparison=None, new: ResultSet | None = None, history=None,
                 title: str = "rackbench report", image_prefix: str = "report") -> Report:
    h = [f"<h1>{esc(title)}</h1>"]
    md = [f"# {markdown_cell(title)}", ""]
    images: dict[str, bytes] = {}

    if new is not None:
        dev, sw, git = new.meta.get("device") or {}, new.meta.get("software") or {}, new.meta.get("git") or {}
        facts = [("result set", new.path or "-"), ("machine", new.meta.get("machine_id")),
                 ("device", f"{dev.get('kind')} x{dev.get('count')}"), ("jax", sw.get("jax")),
                 ("commit", (git.get("commit") or "")[:12]), ("created", new.meta.get("created_utc"))]
        h.append('<p class="note">' + "<br>".join(f"{esc(k)}: {esc(v)}" for k, v in facts) + "</p>")
        md += [f"- {markdown_cell(k)}: {markdown_cell(v)}" for k, v in facts] + [""]

    if comparison is not None:
        rows = cmp_mod.table_rows(comparison)
        h += ["<h2>Comparison</h2>", '<p class="note">' + "<br>".join(esc(l) for l in cmp_mod.header_lines(comparison)) + "</p>",
              _html_table(cmp_mod.TABLE_HEADER, rows, [c.verdict.replace(" ", "-") for c in comparison.cases]),
              "<h3>Geometric mean of new/base per family (&gt; 1 is worse)</h3>",
              _html_table(("family", "geomean", "verdicts"), cmp_mod.family_rows(comparison)),
              f"<p><strong>{esc(cmp_mod.exit_message(comparison))}</strong></p>"]
        md += ["## Comparison", "", cmp_mod.format_markdown(comparison)]

    if history is not None and history.sets:
        cps = sorted(((cp, c) for c in history.cases for cp in c.change_points), key=lambda t: (t[0].index, t[1].name))
        cp_rows = [(c.name, cp.verdict, f"{cp.ratio:.3f}", f"{cp.z:.1f}",
                    f"{(cp.before.commit or '?')[:8]} ({(cp.before.created_utc or '?')[:10]})",
                    f"{(cp.after.commit or '?')[:8]} ({(cp.after.created_utc or '?')[:10]})") for cp, c in cps]
        cp_header = ("case", "step", "after/before", "z", "last set before", "first set after")
        h += ["<h2>History</h2>",
              f'<p class="note">{esc(len(history.sets))} sets of machine {esc(history.machine_id)} in {esc(history.directory)}</p>']
        h += [f'<p class="note">warning: {esc(w)}</p>' for w in history.warnings]
        h += ["<h3>Change points</h3>", _html_table(cp_header, cp_rows) if cp_rows else "<p>none found</p>"]
        md += ["## History", "", f"{len(history.sets)} sets of machine {markdown_cell(history.machine_id)}.", "",
               "### Change points", ""]
        md += [markdown_table(cp_header, cp_rows)] if cp_rows else ["none found"]
        md.append("")
        plots = trend_plots(history)
        if plots:
            h.append("<h3>Trends per kernel family</h3>")
            md += ["### Trends per kernel family", ""]
        for group, png in plots.items():
            name = f"{image_prefix}-trend-{_slug(group)}.png"
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
            name = f"{image_prefix}-roofline.png"
            images[name] = png
            h.append(_img(png, "roofline"))
            md += [f"![roofline]({name})", ""]

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
    """Write <name>.html (self-contained), <name>.md and the PNGs the Markdown links, each
    atomically (0644; a full disk leaves no half-written file and no temp file)."""
    out_dir = Path(out_dir)
    report = build_report(image_prefix=name, **kwargs)
    for img_name, png in report.images.items():
        write_atomic(out_dir / img_name, png)
    html_path, md_path = out_dir / f"{name}.html", out_dir / f"{name}.md"
    for path, text in ((html_path, report.html), (md_path, report.markdown)):
        write_atomic(path, text)
    return html_path, md_path
