"""The one schema check every loaded result set goes through, hand-written (no pydantic or
jsonschema on the GPU image): types, finite positive times, samples present for ok cases, safe
machine ids. A violation is a SchemaError naming the field (`rackbench.cases[3].samples_s[2]`);
resultset.load prefixes the file. Unknown run-level keys are allowed (later versions add optional
fields); unknown case fields are not (resultset.load names them).
"""
from __future__ import annotations

import math
import re

STATUSES = ("ok", "failed", "skipped")
DIRECTIONS = ("lower", "higher")
# A machine id becomes a directory name under results/: one path component, no '..'.
MACHINE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


class SchemaError(ValueError):
    """One field of a result set is wrong; the message names the field."""


def _fail(where: str, what: str, value) -> None:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    raise SchemaError(f"{where}: {what}, got {text}")


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite(v) -> bool:
    # int > 1e308 would overflow math.isfinite's float conversion: no such number is a time
    try:
        return is_number(v) and math.isfinite(v)
    except OverflowError:
        return False


def check_type(where: str, v, kind, *, optional: bool = True) -> None:
    if v is None and optional:
        return
    if kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind is float:
        ok = is_number(v)
    else:
        ok = isinstance(v, kind)
    if not ok:
        names = {dict: "an object", list: "a list", str: "a string", int: "an integer",
                 float: "a number", bool: "true or false"}
        _fail(where, f"must be {names.get(kind, kind.__name__)}" + (" or null" if optional else ""), v)


def check_number(where: str, v, *, optional: bool = True, positive: bool = False,
                 nonnegative: bool = False) -> None:
    if v is None and optional:
        return
    if not finite(v):
        _fail(where, "must be a finite number" + (" or null" if optional else ""), v)
    if positive and not v > 0:
        _fail(where, "must be positive", v)
    if nonnegative and v < 0:
        _fail(where, "must not be negative", v)


def check_samples(where: str, samples, *, required: bool) -> None:
    check_type(where, samples, list, optional=False)
    if required and not samples:
        _fail(where, "an ok case needs its raw samples (a non-empty list of seconds)", samples)
    for i, v in enumerate(samples):
        if not finite(v) or not v > 0:
            _fail(f"{where}[{i}]", "must be a finite positive number of seconds", v)


def check_machine_id(where: str, v) -> None:
    if v is None:
        return
    if not isinstance(v, str) or not MACHINE_ID.fullmatch(v) or ".." in v:
        _fail(where, "must be one safe path component (letters, digits, '.', '_', '+', '-'; no '..')", v)


_CASE_NUMBERS_NONNEG = ("flops", "bytes", "achieved_flops_per_s", "achieved_bytes_per_s",
                        "fraction_of_peak", "roofline_fraction")
_CASE_NUMBERS_POS = ("peak_flops_per_s", "peak_bw_bytes_per_s")
_CASE_DICTS = ("params", "stats", "timing", "check", "extra", "conditions")
_STAT_TIMES = ("median_s", "q1_s", "q3_s", "iqr_s", "ci95_low_s", "ci95_high_s", "mean_s",
               "stddev_s", "min_s", "max_s")


def _plain(v, positive: bool = False) -> bool:
    """The common case, without function calls: a finite non-negative (or positive) float or
    int. Anything else goes through check_number, which names the problem."""
    t = type(v)
    if t is float:
        return (0.0 < v < math.inf) if positive else (0.0 <= v < math.inf)  # NaN fails both
    if t is int:
        return v > 0 if positive else v >= 0
    return False


def check_case(where: str, c, *, samples_stripped: bool = False, fields=None) -> None:
    """One entry of rackbench.cases. With `samples_stripped` (history's fast reader) samples_s
    is a count the reader already checked, not the list. `fields`: the known field names.
    Written for speed (history checks 73,000 cases): plain values take a fast path."""
    if type(c) is not dict:
        check_type(where, c, dict, optional=False)
    if fields is not None and not fields.issuperset(c):
        raise SchemaError(f"{where}: unknown case field(s) {sorted(map(str, set(c) - fields))}")
    name = c.get("name")
    if type(name) is not str or not name:
        _fail(f"{where}.name", "must be a non-empty string", name)
    if type(c.get("group")) is not str:
        check_type(f"{where} ({name[:60]}).group", c.get("group"), str, optional=False)
    status = c.get("status")
    if status not in STATUSES:
        _fail(f"{where} ({name[:60]}).status", f"must be one of {', '.join(STATUSES)}", status)
    if c.get("direction", "lower") not in DIRECTIONS:
        _fail(f"{where} ({name[:60]}).direction", f"must be one of {', '.join(DIRECTIONS)}", c["direction"])
    for key in ("reason", "unit"):
        v = c.get(key)
        if v is not None and type(v) is not str:
            check_type(f"{where} ({name[:60]}).{key}", v, str)
    for key in _CASE_DICTS:
        if key in c and type(c[key]) is not dict:
            check_type(f"{where} ({name[:60]}).{key}", c[key], dict, optional=False)
    ok = status == "ok"
    samples = c.get("samples_s", [])
    if samples_stripped:
        if ok and not samples:
            _fail(f"{where} ({name[:60]}).samples_s", "an ok case needs its raw samples (a non-empty list of seconds)", [])
    elif not (type(samples) is list and all(_plain(v, positive=True) for v in samples) and (samples or not ok)):
        check_samples(f"{where} ({name[:60]}).samples_s", samples, required=ok)
    stats = c.get("stats") or {}
    for key in _STAT_TIMES:
        if key not in stats:
            continue
        v = stats[key]
        if not (_plain(v) or (v is None and not ok)):
            check_number(f"{where} ({name[:60]}).stats.{key}", v, optional=not ok, nonnegative=True)
    if ok:
        if not _plain(stats.get("median_s"), positive=True):
            check_number(f"{where} ({name[:60]}).stats.median_s", stats.get("median_s"), optional=False, positive=True)
        if "n" in stats and type(stats["n"]) is not int:
            check_type(f"{where} ({name[:60]}).stats.n", stats["n"], int, optional=False)
    for key in _CASE_NUMBERS_NONNEG:
        v = c.get(key)
        if v is not None and not _plain(v):
            check_number(f"{where} ({name[:60]}).{key}", v, nonnegative=True)
    for key in _CASE_NUMBERS_POS:
        v = c.get(key)
        if v is not None and not _plain(v, positive=True):
            check_number(f"{where} ({name[:60]}).{key}", v, positive=True)
    reps = (c.get("timing") or {}).get("reps_per_sample")
    if reps is not None and (type(reps) is not int or reps < 1):
        _fail(f"{where} ({name[:60]}).timing.reps_per_sample", "must be a positive integer", reps)


def check_section(section: dict, *, samples_stripped: bool = False, case_fields=None) -> None:
    """The `rackbench` section of one of our files, version already current."""
    w = "rackbench"
    for key in ("created_utc", "suite", "fingerprint_id", "filter"):
        check_type(f"{w}.{key}", section.get(key), str)
    check_machine_id(f"{w}.machine_id", section.get("machine_id"))
    # readers do `meta.get(key, {})`: a key that is there must hold its type, null included
    for key in ("host", "device", "software", "git", "fingerprint", "conditions", "timing_config", "ceilings"):
        if key in section:
            check_type(f"{w}.{key}", section[key], dict, optional=False)
    for key in ("complete", "interrupted"):
        if key in section:
            check_type(f"{w}.{key}", section[key], bool, optional=False)
    check_type(f"{w}.seed", section.get("seed"), int)
    warnings = section.get("warnings")
    if "warnings" in section:
        check_type(f"{w}.warnings", warnings, list, optional=False)
    for i, text in enumerate(warnings or []):
        check_type(f"{w}.warnings[{i}]", text, str, optional=False)
    device = section.get("device") or {}
    check_type(f"{w}.device.kind", device.get("kind"), str)
    check_type(f"{w}.device.platform", device.get("platform"), str)
    count = device.get("count")
    check_type(f"{w}.device.count", count, int)
    if count is not None and count < 1:
        _fail(f"{w}.device.count", "must be at least 1", count)
    check_type(f"{w}.software.jax", (section.get("software") or {}).get("jax"), str)
    check_type(f"{w}.git.commit", (section.get("git") or {}).get("commit"), str)
    ceilings = section.get("ceilings")
    if ceilings:
        peaks = ceilings.get("peak_flops_per_s")
        if "peak_flops_per_s" in ceilings:
            check_type(f"{w}.ceilings.peak_flops_per_s", peaks, dict, optional=False)
        for k, v in (peaks or {}).items():
            check_number(f"{w}.ceilings.peak_flops_per_s.{k}", v, positive=True)
        check_number(f"{w}.ceilings.peak_bw_bytes_per_s", ceilings.get("peak_bw_bytes_per_s"), positive=True)
    cases = section.get("cases")
    check_type(f"{w}.cases", cases, list, optional=False)
    for i, c in enumerate(cases):
        check_case(f"{w}.cases[{i}]", c, samples_stripped=samples_stripped, fields=case_fields)


def check_foreign(doc: dict) -> None:
    """A plain pytest-benchmark file: what compare and show read of it."""
    check_type("machine_info", doc.get("machine_info"), dict, optional=False)
    check_type("commit_info", doc.get("commit_info"), dict)
    check_type("datetime", doc.get("datetime"), str)
    benches = doc.get("benchmarks")
    check_type("benchmarks", benches, list, optional=False)
    for i, b in enumerate(benches):
        where = f"benchmarks[{i}]"
        check_type(where, b, dict, optional=False)
        name = b.get("name")
        if not isinstance(name, str) or not name:
            _fail(f"{where}.name", "must be a non-empty string", name)
        check_type(f"{where}.group", b.get("group"), str)
        check_type(f"{where}.params", b.get("params"), dict)
        stats = b.get("stats")
        check_type(f"{where}.stats", stats, dict, optional=False)
        check_samples(f"{where}.stats.data", stats.get("data"), required=True)
        it = stats.get("iterations", 1)
        if not isinstance(it, int) or isinstance(it, bool) or it < 1:
            _fail(f"{where}.stats.iterations", "must be a positive integer", it)
