"""The result-set format: versioned JSON in pytest-benchmark's layout, written atomically.

Layout (so `pytest-benchmark compare FILE` reads our files as they are):
  machine_info, commit_info, datetime, version     pytest-benchmark's own top-level keys
  benchmarks[]                                     one entry per case that produced samples,
                                                   our per-case fields under extra_info.rackbench
  rackbench                                        our run-level section: schema_version, seed,
                                                   suite, host, device, software, ceilings,
                                                   complete, warnings, and cases[] with EVERY case
                                                   (ok, failed, skipped) in full

`rackbench.cases` is the source of truth; `benchmarks` is derived from it on write. A plain
pytest-benchmark file (no `rackbench` section) loads too, as a foreign set.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.stats import pytest_benchmark_stats

SCHEMA_VERSION = 1
# What each version changed. Loading an older version migrates it (see _MIGRATIONS) or fails
# with the remedy; a newer version than this code knows fails naming the file.
SCHEMA_HISTORY = {
    1: "first version: pytest-benchmark layout, per-case fields in extra_info.rackbench, "
    "run-level section `rackbench` holding every case including failed and skipped ones",
}
_MIGRATIONS: dict[int, Any] = {}  # version -> function(dict) -> dict of version+1

# The pytest-benchmark JSON format version we write; its compare command only reads keys.
PYTEST_BENCHMARK_FORMAT = "5.1.0"

STATUSES = ("ok", "failed", "skipped")
DIRECTIONS = ("lower", "higher")


@dataclass
class CaseResult:
    """One case's outcome. Times are per kernel call, in seconds."""

    name: str
    group: str
    params: dict
    status: str
    reason: str | None = None
    unit: str = "s"
    direction: str = "lower"
    samples_s: list[float] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # harness.stats.Summary.to_dict()
    flops: float | None = None
    bytes: float | None = None
    achieved_flops_per_s: float | None = None
    achieved_bytes_per_s: float | None = None
    peak_flops_per_s: float | None = None
    peak_bw_bytes_per_s: float | None = None
    fraction_of_peak: float | None = None
    roofline_fraction: float | None = None
    timing: dict = field(default_factory=dict)  # method, reps_per_sample, lower_s, compile_s, ...
    check: dict = field(default_factory=dict)  # error, tolerance, reference
    extra: dict = field(default_factory=dict)  # case-specific figures (busbw, projected time...)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"case {self.name}: status {self.status!r} not in {STATUSES}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"case {self.name}: direction {self.direction!r}")

    @property
    def key(self) -> str:
        """Name plus canonical parameters: how cases are paired across result sets."""
        return case_key(self.name, self.params)

    @property
    def median_s(self) -> float | None:
        return self.stats.get("median_s")


def case_key(name: str, params: dict) -> str:
    return name + " " + json.dumps(params, sort_keys=True, separators=(",", ":"))


@dataclass
class ResultSet:
    meta: dict  # the `rackbench` section minus `cases`
    cases: list[CaseResult]
    path: Path | None = None
    foreign: bool = False  # loaded from a plain pytest-benchmark file

    @property
    def device(self) -> dict:
        return self.meta.get("device", {})

    def case(self, name: str) -> CaseResult:
        for c in self.cases:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json_dict(self) -> dict:
        return _to_document(self)

    def to_dataframe(self):
        return to_dataframe(self)


# ---------------------------------------------------------------------------- writing


def _to_document(rs: ResultSet) -> dict:
    meta = dict(rs.meta)
    meta["schema_version"] = SCHEMA_VERSION
    cases = [asdict(c) for c in rs.cases]
    benchmarks = []
    for c in rs.cases:
        if not c.samples_s:
            continue
        extra = {k: v for k, v in asdict(c).items() if k not in ("samples_s", "name", "params", "group")}
        benchmarks.append(
            {
                "group": c.group,
                "name": c.name,
                "fullname": f"rackbench::{c.name}",
                "params": c.params,
                "param": c.name.split("/", 1)[-1],
                "extra_info": {"rackbench": extra},
                "options": {
                    "disable_gc": False,
                    "timer": "time.perf_counter",
                    "min_rounds": len(c.samples_s),
                    "max_time": None,
                    "min_time": c.timing.get("min_time_s"),
                    "warmup": True,
                },
                "stats": pytest_benchmark_stats(c.samples_s, c.timing.get("reps_per_sample", 1)),
            }
        )
    host = meta.get("host", {})
    software = meta.get("software", {})
    git = meta.get("git", {})
    return {
        "machine_info": {
            "node": host.get("hostname", ""),
            "processor": host.get("cpu", ""),
            "machine": host.get("machine", ""),
            "python_compiler": software.get("python_compiler", ""),
            "python_implementation": software.get("python_implementation", ""),
            "python_implementation_version": software.get("python", ""),
            "python_version": software.get("python", ""),
            "python_build": [],
            "release": host.get("release", ""),
            "system": host.get("system", ""),
            "cpu": {"brand_raw": host.get("cpu", ""), "count": host.get("cpu_count")},
        },
        "commit_info": {
            "id": git.get("commit", "unknown"),
            "time": git.get("commit_time"),
            "author_time": git.get("commit_time"),
            "dirty": git.get("dirty", False),
            "project": "rackbench",
            "branch": git.get("branch"),
        },
        "benchmarks": benchmarks,
        "datetime": meta.get("created_utc"),
        "version": PYTEST_BENCHMARK_FORMAT,
        "rackbench": {**meta, "cases": cases},
    }


def _json_default(o):
    # numpy scalars sneak in from the statistics; store them as plain numbers
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _finite_or_none(doc):
    """JSON has no NaN or infinity; store them as null rather than write invalid JSON."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: _finite_or_none(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_finite_or_none(v) for v in doc]
    return doc


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader never sees half of it: temp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save(rs: ResultSet, path: Path) -> Path:
    doc = _finite_or_none(_to_document(rs))
    write_atomic(Path(path), json.dumps(doc, indent=1, default=_json_default) + "\n")
    rs.path = Path(path)
    return Path(path)


def default_path(results_dir: Path, meta: dict) -> Path:
    """results/<machine>/<UTC time>-<short commit>.json"""
    machine = meta.get("machine_id") or "unknown"
    stamp = meta["created_utc"].replace("-", "").replace(":", "").split(".")[0]
    commit = (meta.get("git", {}).get("commit") or "nogit")[:8]
    return Path(results_dir) / machine / f"{stamp}-{commit}.json"


# ---------------------------------------------------------------------------- reading


def _case_from_dict(d: dict, where: str) -> CaseResult:
    known = {f for f in CaseResult.__dataclass_fields__}
    unknown = set(d) - known
    if unknown:
        raise UserError(f"{where}: unknown case field(s) {sorted(unknown)}")
    try:
        return CaseResult(**d)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: bad case record ({exc})") from None


def _foreign_cases(doc: dict, where: str) -> list[CaseResult]:
    """Cases from a plain pytest-benchmark file: per-call times in stats.data."""
    from harness.stats import summarize

    cases = []
    for i, b in enumerate(doc.get("benchmarks", [])):
        try:
            data = [float(v) for v in b["stats"]["data"]]
            name = b["name"]
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where}: benchmarks[{i}] has no stats.data samples") from None
        cases.append(
            CaseResult(
                name=name,
                group=b.get("group") or "pytest-benchmark",
                params=b.get("params") or {},
                status="ok",
                samples_s=data,
                stats=summarize(data).to_dict(),
                timing={"method": "pytest-benchmark", "reps_per_sample": b["stats"].get("iterations", 1)},
            )
        )
    return cases


def load(path) -> ResultSet:
    """Load a result set (ours or pytest-benchmark's). Any problem is a one-line UserError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such result file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid JSON (not UTF-8 text); the file is corrupted or truncated") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the file is corrupted or truncated"
        ) from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not a result set (top level is not an object)")
    section = doc.get("rackbench")
    if section is None:
        if isinstance(doc.get("benchmarks"), list) and "machine_info" in doc:
            meta = {
                "schema_version": None,
                "created_utc": doc.get("datetime"),
                "host": {"hostname": doc["machine_info"].get("node")},
                "git": {"commit": (doc.get("commit_info") or {}).get("id")},
                "device": {"kind": "unknown (pytest-benchmark file)", "count": None},
                "software": {"python": doc["machine_info"].get("python_version")},
                "complete": True,
            }
            return ResultSet(meta=meta, cases=_foreign_cases(doc, str(path)), path=path, foreign=True)
        raise UserError(f"{path}: not a rackbench or pytest-benchmark result set")
    version = section.get("schema_version")
    if not isinstance(version, int):
        raise UserError(f"{path}: schema_version missing or not an integer")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{path}: unknown schema version {version} (this rackbench reads up to {SCHEMA_VERSION}); upgrade rackbench"
        )
    while version < SCHEMA_VERSION:
        migrate = _MIGRATIONS.get(version)
        if migrate is None:
            raise UserError(f"{path}: schema version {version} is too old; re-run `rackbench migrate {path}`")
        section = migrate(section)
        version += 1
    raw_cases = section.get("cases")
    if not isinstance(raw_cases, list):
        raise UserError(f"{path}: rackbench.cases missing")
    cases = [_case_from_dict(c, f"{path}: case {i}") for i, c in enumerate(raw_cases)]
    meta = {k: v for k, v in section.items() if k != "cases"}
    return ResultSet(meta=meta, cases=cases, path=path)


# ---------------------------------------------------------------------------- pandas

_FLAT_FIELDS = (
    "name", "group", "status", "reason", "unit", "direction", "flops", "bytes",
    "achieved_flops_per_s", "achieved_bytes_per_s", "peak_flops_per_s", "peak_bw_bytes_per_s",
    "fraction_of_peak", "roofline_fraction",
)
_STAT_FIELDS = ("n", "median_s", "q1_s", "q3_s", "iqr_s", "ci95_low_s", "ci95_high_s", "mean_s", "stddev_s", "min_s", "max_s")


def to_dataframe(rs: ResultSet):
    """One row per case; params stay a dict column and are also spread as `param_<k>` columns."""
    import pandas as pd

    rows = []
    for c in rs.cases:
        row = {f: getattr(c, f) for f in _FLAT_FIELDS}
        row.update({f: c.stats.get(f) for f in _STAT_FIELDS})
        row["params"] = c.params
        row["key"] = c.key
        row["timing_method"] = c.timing.get("method")
        row["reps_per_sample"] = c.timing.get("reps_per_sample")
        row["samples_s"] = list(c.samples_s)
        for k, v in c.params.items():
            row[f"param_{k}"] = v
        for k, v in c.extra.items():
            if isinstance(v, (int, float, str, bool)) or v is None:
                row[k] = v
        rows.append(row)
    columns = list(_FLAT_FIELDS) + list(_STAT_FIELDS) + ["params", "key", "timing_method", "reps_per_sample", "samples_s"]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=columns)
    df.attrs["device"] = rs.device
    df.attrs["meta"] = rs.meta
    return df


def load_dataframe(path):
    return to_dataframe(load(path))
