"""Every stored set of one machine as time series per case, with change-point detection.

A nightly compare sees two nights; a 2.5% step hides in night-to-night noise there. Over the
whole series it does not: binary segmentation on ranks of the per-night medians (a Wilcoxon
rank-sum statistic at every split, Bonferroni-corrected over the splits) finds where the level
moved, robust to the odd bad night, with no noise model to tune. The price: a step needs about
seven nights on each side before it is significant; the nightly compare covers last night.
Read-only: nothing under results/ is ever written.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as _sps

from harness.errors import UserError
from harness import resultset, schema
from harness.compare import plain_table
from harness.format import markdown_table, measured
from harness.resultset import SCHEMA_VERSION, case_key
from kernels.naming import current_name

# Family-wise false-alarm rate per case series (split positions are Bonferroni-corrected).
DEFAULT_ALPHA = 0.001
# Steps smaller than this (ratio of segment medians) are not reported: real but irrelevant.
DEFAULT_MIN_CHANGE = 0.01
MIN_SEGMENT = 3


@dataclass(frozen=True)
class SetInfo:
    path: Path
    created_utc: str | None
    commit: str | None


@dataclass(frozen=True)
class ChangePoint:
    index: int  # position of the first set after the step
    before: SetInfo
    after: SetInfo
    ratio: float  # median level after / before, in the record's unit
    z: float  # rank-sum statistic at the split
    verdict: str  # "slower" or "faster", from the record's direction


@dataclass(frozen=True)
class CaseHistory:
    key: str
    name: str
    group: str
    direction: str
    unit: str
    values: np.ndarray  # the median per set; NaN where the case was absent, failed or skipped
    change_points: tuple[ChangePoint, ...]


@dataclass(frozen=True)
class History:
    directory: Path
    machine_id: str | None
    fingerprint_id: str | None
    sets: tuple[SetInfo, ...]
    cases: tuple[CaseHistory, ...]
    warnings: tuple[str, ...]
    suite: str | None = None


# ---------------------------------------------------------------------------- change points


def _rank_split(y: np.ndarray, min_size: int) -> tuple[int, float]:
    """Best split k (left = y[:k]) by the standardised Wilcoxon rank-sum statistic, and |z|."""
    m = y.size
    r = _sps.rankdata(y)
    k = np.arange(min_size, m - min_size + 1)
    u = 2.0 * np.cumsum(r)[k - 1] - k * (m + 1.0)  # 2*(rank sum of the left part - its mean)
    z = np.abs(u) / np.sqrt(k * (m - k) * (m + 1.0) / 3.0)
    best = int(np.argmax(z))
    return _refine(y, int(k[best]), min_size), float(z[best])


def _refine(y: np.ndarray, k: int, min_size: int, window: int = 5) -> int:
    """Move a split to the nearby position that best fits two flat levels (least absolute
    deviations from each side's median). The standardised rank statistic detects well but is
    biased towards the nearer end of the segment: its variance shrinks there."""
    m = y.size
    candidates = range(max(min_size, k - window), min(m - min_size, k + window) + 1)
    costs = [np.abs(y[:j] - np.median(y[:j])).sum() + np.abs(y[j:] - np.median(y[j:])).sum() for j in candidates]
    return candidates[int(np.argmin(costs))]


def change_points(values, *, alpha: float = DEFAULT_ALPHA, min_change: float = DEFAULT_MIN_CHANGE,
                  min_size: int = MIN_SEGMENT) -> list[tuple[int, float, float]]:
    """Steps in a positive series: [(index of first value after the step, after/before ratio, z)].

    Binary segmentation: split a segment where the rank-sum statistic peaks if it beats the
    Bonferroni threshold for that segment's number of candidate splits and the segment medians
    differ by at least `min_change`; recurse on both halves.
    """
    y = np.log(np.asarray(values, dtype=float))
    found = []
    stack = [(0, y.size)]
    while stack:
        a, b = stack.pop()
        m = b - a
        if m < 2 * min_size:
            continue
        k, z = _rank_split(y[a:b], min_size)
        threshold = _sps.norm.isf(alpha / (2.0 * (m - 2 * min_size + 1)))
        ratio = math.exp(np.median(y[a + k : b]) - np.median(y[a : a + k]))
        if z > threshold and abs(ratio - 1.0) >= min_change:
            found.append((a + k, ratio, z))
            stack += [(a, a + k), (a + k, b)]
    # Ratios from the final segmentation: neighbours, not the coarse halves of the first split.
    found.sort()
    edges = [0] + [f[0] for f in found] + [y.size]
    return [
        (idx, math.exp(np.median(y[idx : edges[i + 2]]) - np.median(y[edges[i] : idx])), z)
        for i, (idx, _, z) in enumerate(found)
    ]


# ---------------------------------------------------------------------------- reading


# A raw-samples list as json.dumps writes it. Inside a JSON string every quote is escaped, so
# this can only match the key itself; the list holds numbers only, so it has no inner ']'.
_SAMPLES_LIST = re.compile(r'"samples_s":\s*\[([^\]]*)\]')
# What the fast reader accepts as a list of samples without parsing it: plain positive decimals
# in JSON's grammar (no sign, NaN or Infinity; at most 20 digits either side of the point,
# exponents of at most two digits: always finite). Anything
# else, zero included, sends the file to the full loader, which names the bad field.
_PLAIN_NUMBER = r"\s*(?:0|[1-9][0-9]{0,19})(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,2})?\s*"
_SAMPLES_OK = re.compile(rf"(?:{_PLAIN_NUMBER}(?:,{_PLAIN_NUMBER})*)?\s*")
_DECODER = json.JSONDecoder()


class _Unusual(Exception):
    """A samples list the fast reader does not vouch for."""


def _count_samples(match: re.Match) -> str:
    body = match.group(1)
    if not body.strip():
        return '"samples_s":0'
    if not _SAMPLES_OK.fullmatch(body):
        raise _Unusual
    values = body.split(",")
    if not min(map(float, values)) > 0.0:  # grammar checked above: finite, no sign; zero is not a time
        raise _Unusual
    return f'"samples_s":{len(values)}'


def _fast_section(path: Path) -> dict | None:
    """The `rackbench` section of a file we wrote, parsed without the duplicate `benchmarks`
    and with each raw-samples list replaced by its length, and schema-checked.

    Parsing JSON is what costs (365 files must take seconds): resultset.save writes the section
    last, so decoding from its key to the end reads about a third of the numbers; a regular
    expression vouches for the samples (plain positive numbers) without parsing them. Anything
    unexpected returns None and the caller falls back to resultset.load, which gives the
    authoritative error or migration.
    """
    try:
        data = path.read_bytes()
        # the last "rackbench" key; the end check below proves it is the top-level one
        i = data.rindex(b'"rackbench":')
        text = _SAMPLES_LIST.sub(_count_samples, data[data.index(b"{", i):].decode())
        # save() indents, and json parses the text about twice as fast without it. A JSON string
        # cannot hold a raw newline, so whatever starts a line is layout, never data.
        text = "".join(map(str.lstrip, text.split("\n")))
        section, end = _DECODER.raw_decode(text)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError, _Unusual):
        return None
    if text[end:].strip() != "}" or not isinstance(section, dict):
        return None
    if section.get("schema_version") != SCHEMA_VERSION or not isinstance(section.get("cases"), list):
        return None
    try:
        schema.check_section(section, samples_stripped=True)
    except schema.SchemaError:
        return None  # the full loader names the field
    return section


_KEYS: dict = {}


def _key(name: str, params: dict) -> str:
    """case_key, memoised: the same few hundred cases recur in every night's file."""
    try:
        memo = (name, tuple(sorted(params.items())))
        key = _KEYS.get(memo)
    except TypeError:  # unhashable parameter values (lists): compute it every time
        return case_key(name, params)
    if key is None:
        key = _KEYS[memo] = case_key(name, params)
    return key


def _read(path: Path) -> tuple[dict, list[dict], bool]:
    """(meta, case dicts, foreign) for one file; UserError if it cannot be read."""
    section = _fast_section(path)
    if section is not None:
        try:
            cases = [
                {"key": _key(current_name(c["name"]), c["params"]), "name": current_name(c["name"]),
                 "group": c["group"], "status": c["status"],
                 "direction": c["direction"], "unit": c["unit"], "median": c["stats"].get("median_s")}
                for c in section["cases"]
            ]
            return {k: v for k, v in section.items() if k != "cases"}, cases, False
        except (KeyError, TypeError, AttributeError):
            pass  # let the full loader name the problem
    rs = resultset.load(path)
    cases = [{"key": c.key, "name": c.name, "group": c.group, "status": c.status, "direction": c.direction,
              "unit": c.unit, "median": c.median_s} for c in rs.cases]
    return rs.meta, cases, rs.foreign


def result_files(directory: Path) -> list[Path]:
    return resultset.set_files(directory)


def machine_directory(path) -> Path:
    """A machine's directory: PATH itself if it holds sets, else its subdirectory whose newest
    set is the newest (the machine measured most recently; resultset.machine_directory)."""
    return resultset.machine_directory(path)


def load_history(directory, *, case_regex: str | None = None, alpha: float = DEFAULT_ALPHA,
                 min_change: float = DEFAULT_MIN_CHANGE, suite: str | None = None,
                 until: str | None = None) -> History:
    """The series of one machine (the newest set's) and one suite (`suite`, else the newest
    set's: a quick run's medians are not a default run's), of the sets created up to `until`
    (a report on an older set shows nothing after it)."""
    directory = machine_directory(directory)
    try:
        pattern = re.compile(case_regex) if case_regex else None
    except re.error as exc:
        raise UserError(f"case filter {case_regex!r}: not a regular expression ({exc})") from None
    warnings: list[str] = []
    loaded = []
    for path in result_files(directory):
        try:
            meta, cases, foreign = _read(path)
        except UserError as exc:
            warnings.append(f"skipped: {exc}")
            continue
        if foreign:
            warnings.append(f"skipped: {path}: a plain pytest-benchmark file has no machine fingerprint")
        elif meta.get("complete") is False:
            warnings.append(f"skipped: {path}: incomplete (interrupted) run")
        else:
            loaded.append((str(meta.get("created_utc") or ""), path.name, path, meta, cases))
    loaded.sort(key=lambda t: (t[0], t[1]))
    if until is not None:
        later = [item for item in loaded if item[0] > until]
        if later:
            warnings.append(f"left out: {len(later)} set(s) created after {until}, the set reported on")
        loaded = [item for item in loaded if item[0] <= until]
    if loaded:
        want = suite if suite is not None else loaded[-1][3].get("suite")
        other = [item for item in loaded if item[3].get("suite") != want]
        if other:
            names = sorted({str(item[3].get("suite")) for item in other})
            warnings.append(f"left out: {len(other)} set(s) of another suite ({', '.join(names)}); this series is "
                            f"suite {want} (history --suite picks one)")
        loaded = [item for item in loaded if item[3].get("suite") == want]
    # One machine: the newest set decides which; sets with another fingerprint are not merged.
    machine_id = fingerprint_id = None
    if loaded:
        newest = loaded[-1][3]
        machine_id, fingerprint_id = newest.get("machine_id"), newest.get("fingerprint_id")
        kept = []
        for item in loaded:
            meta = item[3]
            if (meta.get("machine_id"), meta.get("fingerprint_id")) != (machine_id, fingerprint_id):
                warnings.append(f"skipped: {item[2]}: from another machine ({meta.get('machine_id')}, fingerprint "
                                f"{meta.get('fingerprint_id')}; this series is {machine_id}, {fingerprint_id})")
            else:
                kept.append(item)
        loaded = kept
    sets = tuple(SetInfo(p, created or None, (meta.get("git") or {}).get("commit")) for created, _, p, meta, _ in loaded)
    series: dict[str, dict] = {}
    for i, (_, _, _, _, cases) in enumerate(loaded):
        for c in cases:
            if pattern is not None and not pattern.search(c["name"]):
                continue
            s = series.get(c["key"])
            if s is None:
                s = series[c["key"]] = dict(c, values=np.full(len(loaded), np.nan))
            if c["status"] == "ok" and c["median"] is not None and c["median"] > 0:
                s["values"][i] = c["median"]
    out = [_case_history(s, sets, alpha, min_change) for s in series.values()]
    suite_name = loaded[-1][3].get("suite") if loaded else suite
    return History(directory, machine_id, fingerprint_id, sets, tuple(out), tuple(warnings), suite_name)


def _case_history(s: dict, sets: tuple[SetInfo, ...], alpha: float, min_change: float) -> CaseHistory:
    values = s["values"]
    present = np.flatnonzero(np.isfinite(values))
    cps = []
    for idx, ratio, z in change_points(values[present], alpha=alpha, min_change=min_change):
        after, before = int(present[idx]), int(present[idx - 1])
        worse = ratio > 1.0 if s["direction"] == "lower" else ratio < 1.0
        cps.append(ChangePoint(after, sets[before], sets[after], ratio, z, "slower" if worse else "faster"))
    return CaseHistory(s["key"], s["name"], s["group"], s["direction"], s["unit"], values, tuple(cps))


# ---------------------------------------------------------------------------- display

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: np.ndarray, width: int = 24) -> str:
    """The series in `width` characters (the newest at the right); blanks where no value."""
    v = np.asarray(values, dtype=float)[-width:]
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return ""
    lo, hi = finite.min(), finite.max()
    scale = (len(_BARS) - 1) / (hi - lo) if hi > lo else 0.0
    return "".join(" " if not math.isfinite(x) else _BARS[int(round((x - lo) * scale))] for x in v)


def _fmt(v: float, unit: str) -> str:
    return measured(None if not math.isfinite(v) else float(v), unit)


def _short(info: SetInfo) -> str:
    return f"{(info.commit or 'unknown')[:8]} ({(info.created_utc or '?')[:10]})"


TABLE_HEADER = ("case", "sets", "first", "last", "last/first", "last/best", "trend", "change points")


def format_table(h: History, markdown: bool = False) -> str:
    lines = [f"history: {h.directory} (machine {h.machine_id}, fingerprint {h.fingerprint_id}), {len(h.sets)} sets "
             f"of suite {h.suite}"]
    if h.sets:
        lines.append(f"from {_short(h.sets[0])} to {_short(h.sets[-1])}")
    lines += [f"warning: {w}" for w in h.warnings]
    if markdown:
        lines = [f"- {line}" for line in lines]
    rows = []
    for c in h.cases:
        v = c.values[np.isfinite(c.values)]
        if v.size == 0:
            rows.append((c.name, "0", "-", "-", "-", "-", "", ""))
            continue
        best = v.min() if c.direction == "lower" else v.max()
        steps = ", ".join(f"{cp.verdict} x{cp.ratio:.3f} at #{cp.index}" for cp in c.change_points)
        rows.append((c.name, str(v.size), _fmt(v[0], c.unit), _fmt(v[-1], c.unit), f"{v[-1] / v[0]:.3f}",
                     f"{v[-1] / best:.3f}", sparkline(c.values), steps))
    table = markdown_table(TABLE_HEADER, rows) if markdown else plain_table(TABLE_HEADER, rows)
    lines += ["", *table.split("\n")]
    cps = [(cp, c) for c in h.cases for cp in c.change_points]
    lines += ["", f"change points: {len(cps)}"]
    for cp, c in sorted(cps, key=lambda t: (t[0].index, t[1].name)):
        lines.append(("- " if markdown else "  ") + f"{c.name}: {cp.verdict} x{cp.ratio:.3f} (z={cp.z:.1f}) between "
                     f"set #{cp.index - 1} {_short(cp.before)} and #{cp.index} {_short(cp.after)}")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("name", "group", "set", "created_utc", "commit", "median_s", "unit", "direction", "path", "key")


def csv_records(h: History) -> list[dict]:
    """One row per case per set, oldest first (the long form pandas and spreadsheets pivot):
    the median in the record's unit (`median_s` for times), empty where the case was not
    measured in that set."""
    rows = []
    for c in h.cases:
        for i, (s, v) in enumerate(zip(h.sets, c.values)):
            rows.append({"name": c.name, "group": c.group, "set": i, "created_utc": s.created_utc, "commit": s.commit,
                         f"median_{c.unit}": float(v) if math.isfinite(v) else None, "unit": c.unit,
                         "direction": c.direction, "path": str(s.path), "key": c.key})
    return rows


def to_json_dict(h: History) -> dict:
    def info(s: SetInfo) -> dict:
        return {"path": str(s.path), "created_utc": s.created_utc, "commit": s.commit}

    return {
        "directory": str(h.directory),
        "machine_id": h.machine_id,
        "fingerprint_id": h.fingerprint_id,
        "suite": h.suite,
        "warnings": list(h.warnings),
        "sets": [info(s) for s in h.sets],
        "cases": [
            {"key": c.key, "name": c.name, "group": c.group, "direction": c.direction, "unit": c.unit,
             f"medians_{c.unit}": [float(x) if math.isfinite(x) else None for x in c.values],
             "change_points": [{"index": cp.index, "ratio": cp.ratio, "z": cp.z, "verdict": cp.verdict,
                                "before": info(cp.before), "after": info(cp.after)} for cp in c.change_points]}
            for c in h.cases
        ],
    }
