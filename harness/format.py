"""Display formatting, done once at the edge: SI prefixes for rates, times and sizes, counts,
percentages, plain-text and Markdown tables (with cell escaping). Every command formats through
this module."""
from __future__ import annotations

import csv
import io
import math

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"),
             (1e-6, "u"), (1e-9, "n"))
# Times in comparisons read best in s, ms, us, ns only (a 2000 s step is "2000 s", not "2 ks").
_TIME_PREFIXES = ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def si(value: float | None, unit: str, digits: int = 3) -> str:
    """1.23e12, "FLOP/s" -> "1.23 TFLOP/s"; None or not finite -> "-"."""
    if _missing(value):
        return "-"
    if value == 0:
        return f"0 {unit}"
    for scale, p in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {p}{unit}"
    return f"{value:.3g} {unit}"


def si_range(value: float | None, lo: float | None, hi: float | None, unit: str,
             digits: int = 3) -> str:
    """A value with its band in the value's prefix: 7.66, 6.9, 8.4, "s" -> "7.66 s (6.9-8.4)";
    without a band (lo or hi None) just si(value, unit)."""
    text = si(value, unit, digits)
    if _missing(lo) or _missing(hi) or _missing(value) or value == 0:
        return text
    scale = next((sc for sc, _ in _PREFIXES if abs(value) >= sc), 1.0)
    return text + band_text(lo, hi, scale)


def _plain(x: float) -> str:
    """Two or three significant figures, never an exponent: 6.9, 13, 1180."""
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.2g}" if abs(x) < 10 else f"{x:.3g}"


def percent_range(x: float | None, lo: float | None, hi: float | None) -> str:
    """58.2% (52.1-60.3%), or percent(x) without a band."""
    if _missing(lo) or _missing(hi):
        return percent(x)
    return f"{percent(x)} ({100 * lo:.1f}-{100 * hi:.1f}%)"


def duration(seconds: float | None) -> str:
    return si(seconds, "s")


def format_value(v: float | None, unit: str | None) -> str:
    """A measured value with its unit: seconds with an s/ms/us/ns prefix (4 significant
    figures), any other unit as it is."""
    if _missing(v):
        return "-"
    if unit == "s":
        for scale, prefix in _TIME_PREFIXES:
            if abs(v) >= scale or scale == 1e-9:
                return f"{v / scale:.4g} {prefix}s"
    return f"{v:.4g} {unit or ''}".rstrip()


def count(x: float | None, digits: int = 3) -> str:
    """A throughput or count without a unit: 1.22M, 69.6k, 181."""
    if _missing(x):
        return "-"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.{digits}g}M"
    if abs(x) >= 1e3:
        return f"{x / 1e3:.{digits}g}k"
    return f"{x:.{digits}g}"


def percent(x: float | None) -> str:
    return "-" if _missing(x) else f"{100 * x:.1f}%"


def table(headers, rows, align: str | None = None, rule: bool = True) -> str:
    """A plain text table; `align` gives l/r per column (default: first left, rest right);
    `rule` puts a line of dashes under the header."""
    align = align or ("l" + "r" * (len(headers) - 1))
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]

    def fmt(cells):
        out = []
        for i, cell in enumerate(cells):
            s = str(cell)
            out.append(s.ljust(widths[i]) if align[i] == "l" else s.rjust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(headers)]
    if rule:
        lines.append("  ".join("-" * w for w in widths))
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def markdown_cell(text) -> str:
    """A Markdown table cell: no pipes, no raw HTML (GitHub renders inline HTML), one line."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("\n", " "))


def markdown_table(headers, rows) -> str:
    lines = ["| " + " | ".join(markdown_cell(h) for h in headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(markdown_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def csv_text(records: list[dict], columns: list[str] | None = None) -> str:
    """Records as CSV for spreadsheets and pandas: one row per record, raw numbers (not SI
    strings), column names with their units as in the JSON keys; nested values as JSON text;
    missing values empty. `columns` picks and orders them (default: every key, first seen
    first)."""
    import json

    if columns is None:
        columns = list(dict.fromkeys(k for r in records for k in r))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in records:
        row = []
        for c in columns:
            v = r.get(c)
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                row.append("")
            elif isinstance(v, (dict, list, tuple)):
                row.append(json.dumps(v, default=float))
            else:
                row.append(v)
        writer.writerow(row)
    return out.getvalue().rstrip("\n")


def byte_size(n: float | None) -> str:
    """A message or buffer size as the rest of the tool writes it: 1 to 1023 whole binary units
    in that unit (2**30 -> "1 GiB", 3 * 2**20 -> "3 MiB"), anything else in SI (64e6 -> "64 MB",
    not 62500 KiB; 1536 -> "1.54 kB"). GiB = 2**30, GB = 1e9 (ARCHITECTURE.md)."""
    if _missing(n):
        return "-"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if scale <= abs(n) < 1024 * scale and n % scale == 0:
            return f"{int(n // scale)} {unit}"
    return si(n, "B")


def count_range(value: float | None, lo: float | None, hi: float | None) -> str:
    """count() with its band in the same form: 8.84k (6.3k-10.7k); without a band count(value)."""
    if _missing(lo) or _missing(hi) or _missing(value):
        return count(value)
    return f"{count(value)} ({count(lo)}-{count(hi)})"


def number(x: float | None, digits: int = 4) -> str:
    """A plain number for a table cell, never an exponent above 1: `digits` significant
    figures, whole numbers from 10**digits up with thousands separators (12,040)."""
    if _missing(x):
        return "-"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def time_unit(seconds: float) -> tuple[float, str]:
    """The scale and unit (s, ms, us, ns) a time reads best in: 0.05 -> (1e-3, "ms")."""
    for scale, prefix in _TIME_PREFIXES:
        if abs(seconds) >= scale:
            return scale, prefix + "s"
    return _TIME_PREFIXES[-1][0], _TIME_PREFIXES[-1][1] + "s"


def fixed_column(values, scale: float, reference: float, digits: int = 4) -> list[str]:
    """Values divided by `scale`, all with the decimals that give `reference` `digits`
    significant figures, so a column of parts lines up with its total: scale 1, reference
    5.695: [4.2446, 0.4397, 0.00125] -> ["4.245", "0.440", "0.001"]."""
    ref = abs(reference / scale)
    decimals = max(0, digits - 1 - (math.floor(math.log10(ref)) if ref > 0 else 0))
    return [f"{v / scale:.{decimals}f}" for v in values]


def band_text(lo: float | None, hi: float | None, scale: float = 1.0) -> str:
    """A band in a value's scale, for beside the value: " (6.9-8.4)"; "" without one."""
    if _missing(lo) or _missing(hi):
        return ""
    return f" ({_plain(lo / scale)}-{_plain(hi / scale)})"


# unit suffixes of field names (ARCHITECTURE.md), longest first
_UNIT_SUFFIXES = ("_flops_per_s", "_bytes_per_s", "_per_s", "_bytes", "_usd", "_s", "_w", "_j")


def flat_record(doc: dict, prefix: str = "") -> dict:
    """A nested record as one flat row for csv_text, each column keeping its unit at the end:
    a nested table's keys go under their parent's name less its unit, and take the parent's
    unit when they carry none ("plan": {"tp": 8} -> "plan_tp"; "breakdown_s": {"gemm_s": ..}
    -> "breakdown_gemm_s"; "peak_flops_per_s": {"bf16": ..} -> "peak_bf16_flops_per_s").
    Lists stay as they are (csv_text writes them as JSON text)."""
    out = {}
    for key, value in doc.items():
        name = prefix + key
        if not isinstance(value, dict):
            out[name] = value
            continue
        unit = next((u for u in _UNIT_SUFFIXES if name.endswith(u)), "")
        stem = name[:len(name) - len(unit)]
        for k, v in flat_record(value).items():
            out[f"{stem}_{k}" if not unit or k.endswith(_UNIT_SUFFIXES) else f"{stem}_{k}{unit}"] = v
    return out


def quantity(x: float | None, digits: int = 3) -> str:
    """A large count as model sizes and token budgets are written: 8.03B, 671B, 15T, 69.6k."""
    if _missing(x):
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{suffix}"
    return f"{x:.{digits}g}"


def measured(value: float | None, unit: str | None) -> str:
    """A measured value in the unit a record names, as the rest of the tool writes it: seconds
    with an s/ms/us/ns prefix, `bytes_per_s` and `flops_per_s` as SI rates (8 GB/s), `bytes` as
    a size; any other unit as format_value writes it."""
    if unit == "bytes_per_s":
        return si(value, "B/s")
    if unit == "flops_per_s":
        return si(value, "FLOP/s")
    if unit == "bytes":
        return byte_size(value)
    return format_value(value, unit)
