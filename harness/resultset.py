"""The result-set format: versioned JSON in pytest-benchmark's layout, checked when loaded and
written atomically.

Layout (so `pytest-benchmark compare FILE` reads our files as they are):
  machine_info, commit_info, datetime, version     pytest-benchmark's own top-level keys
  benchmarks[]                                     one entry per case that produced samples,
                                                   our per-case fields under extra_info.rackbench
  rackbench                                        our run-level section: schema_version, seed,
                                                   suite, host, device, software, ceilings,
                                                   conditions, complete, warnings, and cases[]
                                                   with EVERY case (ok, failed, skipped) in full

`rackbench.cases` is the source of truth; `benchmarks` is derived from it on write. Case names
that a later suite writes differently (kernels.naming.current_name) are renamed on load, so an
older set pairs with a newer one in compare, history and nightly; no version change is needed. A plain
pytest-benchmark file (no `rackbench` section) loads too, as a foreign set. Every load goes
through one schema check (harness.schema): a file that fails it is one UserError naming the file
and the field. Files may be gzip-compressed (the test fixtures are).
"""
from __future__ import annotations

import errno
import gzip
import json
import math
import os
import re
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import schema
from harness.errors import UserError
from harness.stats import pytest_benchmark_stats
from kernels.naming import current_name

SCHEMA_VERSION = 2
# What each version changed. Loading an older version migrates it in memory (see _MIGRATIONS);
# `rackbench migrate FILE` rewrites the file. A newer version than this code knows fails naming
# the file.
SCHEMA_HISTORY = {
    1: "first version: pytest-benchmark layout, per-case fields in extra_info.rackbench, "
    "run-level section `rackbench` holding every case including failed and skipped ones",
    2: "conditions: run-level `conditions` (before/after: load average, CPU governor and "
    "frequency, NVIDIA clocks, power, temperature, throttle reasons) and per-case `conditions` "
    "(other processes' CPU share, load); the fingerprint names CPU model and count, memory, "
    "kernel, device kind and count, GPU driver and host, and the machine id ends with its first "
    "6 hex digits; loading checks every field (harness.schema)",
}
# Optional fields added within a version (read when present; an older set simply lacks them):
# v2 timing.carried_bytes and timing.loop_copies, a device-loop case's carried input and the
# copies of it the compiled loop body makes (harness.timing.loop_body_copies), 2026-12-08.

# The pytest-benchmark JSON format version we write; its compare command only reads keys.
PYTEST_BENCHMARK_FORMAT = "5.1.0"

STATUSES = schema.STATUSES
DIRECTIONS = schema.DIRECTIONS
# Stored sets are meant to be read by anyone on the machine (a nightly's reports, a colleague).
FILE_MODE = 0o644


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
    conditions: dict = field(default_factory=dict)  # the machine while the case ran (harness.conditions)

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


_CASE_FIELDS = frozenset(CaseResult.__dataclass_fields__)


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


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort: not every file system opens directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish_exclusive(tmp: str, path: Path) -> None:
    """Give the finished temp file the name `path`, failing with FileExistsError if the name is
    taken: a hard link is atomic and never replaces; where links are refused, reserve the name
    with O_EXCL and rename over the reservation (only ours can be there)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def write_atomic(path, data: str | bytes, *, exclusive: bool = False, mode: int = FILE_MODE) -> Path:
    """Write a file so that a reader never sees half of it: temp file in the same directory,
    fsync, mode 0644, rename. The temp file is removed on every failure Python can catch
    (disk full, Ctrl-C). `exclusive`: fail with FileExistsError instead of replacing a file.
    Other OS errors become one-line UserErrors naming the path."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UserError(f"{path}: cannot write ({path.parent} is not a directory)") from None
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if exclusive:
            _publish_exclusive(tmp, path)
        else:
            os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except FileExistsError:
        raise  # exclusive and the name is taken: the caller picks another
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def check_writable_dir(directory, what: str) -> Path:
    """Before any work: `directory` exists or can be made, and a file can be created in it.
    UserError naming `what` (the flag) otherwise."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rackbench-probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise UserError(f"{what} {directory}: exists and is not a directory") from None
    except OSError as exc:
        raise UserError(f"{what} {directory}: cannot write there ({exc.strerror or exc})") from None
    return directory


def check_new_file(path, what: str) -> Path:
    """Before any work: `path` does not exist yet and its directory is writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path}: is a directory")
    if path.exists() or path.is_symlink():
        raise UserError(f"{what} {path}: already exists (a stored set is never overwritten; remove it or "
                        "choose another name)")
    check_writable_dir(path.parent, what)
    return path


def _document_text(rs: ResultSet) -> str:
    doc = _finite_or_none(_to_document(rs))
    return json.dumps(doc, indent=1, default=_json_default) + "\n"


def save(rs: ResultSet, path: Path, *, exclusive: bool = False) -> Path:
    """Write the set to `path`, replacing what is there (the run that owns the file), or with
    `exclusive`, only if no file has that name (FileExistsError otherwise)."""
    write_atomic(Path(path), _document_text(rs), exclusive=exclusive)
    rs.path = Path(path)
    return Path(path)


def save_new(rs: ResultSet, path: Path, attempts: int = 1000) -> Path:
    """Write the set under `path` or, if that name is taken (another run started in the same
    second), `<stem>-2.json`, `-3`, ...: exclusive creation, so no run overwrites another's set."""
    path = Path(path)
    for i in range(1, attempts + 1):
        candidate = path if i == 1 else path.with_name(f"{path.stem}-{i}{path.suffix}")
        try:
            return save(rs, candidate, exclusive=True)
        except FileExistsError:
            continue
    raise UserError(f"{path}: {attempts} result sets of that name already exist")


# Warning kinds a run records, for the one-line summary (details stay in the set and in `show`).
_WARNING_KINDS = (
    ("large spread", re.compile(r"large spread")),
    ("busy machine", re.compile(r"busy machine")),
    ("GPU throttled", re.compile(r"throttled")),
    ("interrupted", re.compile(r"^interrupted")),
    # harness.timing.LOOP_ADDED_WORK_NOTE, not imported: timing imports JAX, this module does not
    ("device loop slower than the host loop", re.compile(r"cross-check: the device loop read")),
)


def warning_counts(warnings) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in warnings:
        kind = next((k for k, rx in _WARNING_KINDS if rx.search(str(w))), "other")
        out[kind] = out.get(kind, 0) + 1
    return out


def warning_summary(warnings, path=None) -> str:
    """`warnings: 75 large spread, 1 busy machine (details: rackbench show FILE)`, or ''."""
    counts = warning_counts(warnings)
    if not counts:
        return ""
    where = f"rackbench show {path}" if path else "rackbench show"
    return "warnings: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" (details: {where})"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "unknown"


def safe_machine_id(machine_id) -> str | None:
    """The machine id as a directory name, or None when it is not one safe path component."""
    if isinstance(machine_id, str) and schema.MACHINE_ID.fullmatch(machine_id) and ".." not in machine_id:
        return machine_id
    return None


def default_path(results_dir: Path, meta: dict) -> Path:
    """results/<machine>/<UTC time>-<short commit>.json (save_new adds -2, -3 if it is taken)."""
    machine = safe_machine_id(meta.get("machine_id")) or slug(meta.get("machine_id") or "unknown")
    stamp = meta["created_utc"].replace("-", "").replace(":", "").split(".")[0]
    commit = slug((meta.get("git", {}).get("commit") or "nogit")[:8])
    return Path(results_dir) / machine / f"{stamp}-{commit}.json"


# ---------------------------------------------------------------------------- migrations


def _migrate_1_to_2(section: dict) -> dict:
    """v1 -> v2: empty conditions (v1 recorded none), the v2 fingerprint and machine id computed
    from the host, device and software v1 already stored; the old identity is kept."""
    from harness.device import fingerprint, machine_id

    out = dict(section)
    out["cases"] = [dict(c, conditions=c.get("conditions") or {}) if isinstance(c, dict) else c
                    for c in section.get("cases") or []]
    out.setdefault("conditions", {})
    host, device = out.get("host"), out.get("device")
    if isinstance(host, dict) and isinstance(device, dict) and device.get("kind") and device.get("platform"):
        software = out.get("software") if isinstance(out.get("software"), dict) else {}
        fp, fp_id = fingerprint(host, device, software)
        out["migrated_from"] = {"schema_version": 1, "machine_id": section.get("machine_id"),
                                "fingerprint_id": section.get("fingerprint_id"),
                                "fingerprint": section.get("fingerprint")}
        out["fingerprint"], out["fingerprint_id"] = fp, fp_id
        out["machine_id"] = machine_id(host, device, fp_id)
    out["schema_version"] = 2
    return out


# version -> function(section dict) -> section dict of version + 1
_MIGRATIONS: dict[int, Any] = {1: _migrate_1_to_2}


def _migrated(section: dict, where: str) -> dict:
    version = section.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(f"{where}: schema_version missing or not an integer")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"{where}: unknown schema version {version} (this rackbench reads up to {SCHEMA_VERSION}); upgrade rackbench"
        )
    while version < SCHEMA_VERSION:
        migrate = _MIGRATIONS.get(version)
        if migrate is None:
            raise UserError(f"{where}: schema version {version} is too old for this rackbench (it migrates "
                            f"{min(_MIGRATIONS)} and later); re-measure, or run `rackbench migrate {where}` "
                            "with a rackbench of that time")
        try:
            section = migrate(section)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise UserError(f"{where}: cannot migrate from schema version {version} ({exc})") from None
        version += 1
    return section


# ---------------------------------------------------------------------------- reading


def read_document(path, what: str = "result file") -> Any:
    """The parsed JSON of a file (gzip or plain); every way it can fail is one UserError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):
            raise UserError(f"{path}: a damaged gzip file; the file is corrupted or truncated") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid JSON (not UTF-8 text); the file is corrupted or truncated") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the file is corrupted or truncated"
        ) from None
    except RecursionError:
        raise UserError(f"{path}: not a result set (JSON nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise UserError(f"{path}: not a result set ({str(exc).splitlines()[0][:120]})") from None


def _case_from_dict(d: dict, where: str) -> CaseResult:
    unknown = set(d) - _CASE_FIELDS
    if unknown:
        raise UserError(f"{where}: unknown case field(s) {sorted(unknown)}")
    try:
        case = CaseResult(**d)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: bad case record ({exc})") from None
    case.name = current_name(case.name)  # a set of an older suite pairs with new ones by name
    return case


def _foreign_cases(doc: dict) -> list[CaseResult]:
    """Cases from a plain pytest-benchmark file (already schema-checked): per-call times in
    stats.data."""
    from harness.stats import summarize

    cases = []
    for b in doc["benchmarks"]:
        data = [float(v) for v in b["stats"]["data"]]
        cases.append(
            CaseResult(
                name=b["name"],
                group=b.get("group") or "pytest-benchmark",
                params=b.get("params") or {},
                status="ok",
                samples_s=data,
                stats=summarize(data).to_dict(),
                timing={"method": "pytest-benchmark", "reps_per_sample": b["stats"].get("iterations", 1)},
            )
        )
    return cases


def _foreign_set(doc: dict, path: Path) -> ResultSet:
    try:
        schema.check_foreign(doc)
    except schema.SchemaError as exc:
        raise UserError(f"{path}: {exc}") from None
    info = doc["machine_info"]
    meta = {
        "schema_version": None,
        "created_utc": doc.get("datetime"),
        "host": {"hostname": info.get("node") if isinstance(info.get("node"), str) else None},
        "git": {"commit": (doc.get("commit_info") or {}).get("id")},
        "device": {"kind": "unknown (pytest-benchmark file)", "count": None},
        "software": {"python": info.get("python_version")},
        "complete": True,
    }
    return ResultSet(meta=meta, cases=_foreign_cases(doc), path=path, foreign=True)


def section_of(doc, path) -> dict | None:
    """The current-version `rackbench` section of a parsed document (migrated, schema-checked),
    or None for a plain pytest-benchmark file. UserError for anything else."""
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not a result set (top level is not an object)")
    section = doc.get("rackbench")
    if section is None:
        if "benchmarks" in doc and "machine_info" in doc:
            return None
        raise UserError(f"{path}: not a rackbench or pytest-benchmark result set")
    if not isinstance(section, dict):
        raise UserError(f"{path}: rackbench: must be an object, got {type(section).__name__}")
    section = _migrated(section, str(path))
    try:
        schema.check_section(section, case_fields=_CASE_FIELDS)
    except schema.SchemaError as exc:
        raise UserError(f"{path}: {exc}") from None
    return section


def load(path) -> ResultSet:
    """Load a result set (ours or pytest-benchmark's, plain or gzip). Any problem is a one-line
    UserError naming the file and, for a bad field, the field. `path` may also be `latest`,
    `latest~N`, a directory or `DIR~N` (resolve_set, in ./results)."""
    path = resolve_set(path)
    doc = read_document(path)
    section = section_of(doc, path)
    if section is None:
        return _foreign_set(doc, path)
    cases = [_case_from_dict(c, f"{path}: rackbench.cases[{i}]") for i, c in enumerate(section["cases"])]
    seen: dict[str, int] = {}
    for i, c in enumerate(cases):
        if c.key in seen:
            raise UserError(f"{path}: rackbench.cases[{i}]: the same name and parameters as cases[{seen[c.key]}] "
                            f"({c.name})")
        seen[c.key] = i
    meta = {k: v for k, v in section.items() if k != "cases"}
    return ResultSet(meta=meta, cases=cases, path=path)


# ---------------------------------------------------------------------------- naming sets

# `latest` is the newest set, `latest~1` the one before it, ... (as git's HEAD~1); DIR~N counts
# back in a directory the same way.
_LATEST = re.compile(r"latest(?:~([0-9]+))?")
_BACK = re.compile(r"(.+)~([0-9]+)")
# The top-level pytest-benchmark key our files carry the set's creation time in (save() writes
# one space of indent): read without parsing the whole file.
_DATETIME = re.compile(rb'^ "datetime": "([^"\\]*)"', re.M)


def set_files(directory) -> list[Path]:
    """The result files (*.json, *.json.gz) directly in `directory`, by name."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith((".json", ".json.gz")))


def created_time(path) -> str | None:
    """When a set was measured (its `created_utc`; a pytest-benchmark file's `datetime`), read
    cheaply; None for a file that is not a readable set."""
    try:
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error):
        return None
    m = _DATETIME.search(raw)
    if m:
        return m.group(1).decode("utf-8", "replace")
    try:  # another layout (a pytest-benchmark file, an older writer): parse it
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    section = doc.get("rackbench") if isinstance(doc.get("rackbench"), dict) else {}
    value = section.get("created_utc") or doc.get("datetime")
    return value if isinstance(value, str) else None


def sets_by_age(directory, warnings: list | None = None) -> list[Path]:
    """The sets directly in `directory`, oldest first: by created time, then by file name. A
    file whose time cannot be read is left out if it does not load either (with a line in
    `warnings` naming it and what is wrong), and counts as the oldest if it does."""
    dated = []
    for p in set_files(directory):
        t = created_time(p)
        if t is None:
            try:
                load(p)
            except UserError as exc:
                if warnings is not None:
                    warnings.append(f"skipped: {exc}")
                continue
            t = ""
        dated.append((t, p.name, p))
    return [p for _, _, p in sorted(dated)]


def machine_directory(path) -> Path:
    """PATH itself if it holds sets, else its subdirectory (one machine's) whose newest set is
    the newest of all: the machine measured most recently."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such results directory")
    if set_files(path):
        return path
    newest = []
    for d in sorted(p for p in path.iterdir() if p.is_dir()):
        files = sets_by_age(d)
        if files:
            newest.append((created_time(files[-1]), files[-1].name, d))
    if not newest:
        raise UserError(f"{path}: no result sets (*.json) here or in its machine subdirectories")
    return max(newest)[2]


def resolve_set(name, results_dir="results") -> Path:
    """The file a result-set argument names: a file as it is; `latest` (or `latest~N`, the Nth
    before it) in `results_dir`; a directory (or `DIR~N`) for its newest set. A directory of
    machine directories (results/) means the machine measured most recently, as `history` and
    `report` read it. Newest is by the sets' created time, ties by file name."""
    text = str(name)
    path = Path(text)
    if path.is_file() or path.is_symlink():
        return path
    latest = _LATEST.fullmatch(text)
    back_match = _BACK.fullmatch(text)
    if latest:
        base, back = Path(results_dir), int(latest.group(1) or 0)
        if not base.is_dir():
            raise UserError(f"{text}: no results directory {base} here (run from where results/ is, "
                            "or name the set's file or directory)")
    elif path.is_dir():
        base, back = path, 0
    elif back_match and Path(back_match.group(1)).is_dir():
        base, back = Path(back_match.group(1)), int(back_match.group(2))
    else:
        return path  # load() says it does not exist
    directory = machine_directory(base)
    files = sets_by_age(directory)
    if back >= len(files):
        raise UserError(f"{text}: {directory} holds {len(files)} readable result set(s); {text} needs "
                        f"{back + 1}")
    return files[-1 - back]


def rewrite(rs: ResultSet) -> Path:
    """Write a loaded set back over its own file, atomically, at the current schema version,
    compressed if the file was. Only sets rackbench wrote: a plain pytest-benchmark file would
    lose what our layout does not carry (extra_info, fullname, machine_info.cpu)."""
    if rs.foreign or rs.path is None:
        raise UserError(f"{rs.path}: not a result set rackbench wrote; it is left as it is "
                        "(rewriting it in rackbench's layout would drop its own fields)")
    path = Path(rs.path)
    text = _document_text(rs)
    try:
        compressed = path.read_bytes()[:2] == b"\x1f\x8b"
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    write_atomic(path, gzip.compress(text.encode(), mtime=0) if compressed else text)
    return path


def migrate_file(path) -> tuple[int, int]:
    """Rewrite one of our result files at the current schema version, atomically, in place.
    Returns (version before, version after); a current file is left untouched."""
    path = resolve_set(path)
    doc = read_document(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("rackbench"), dict):
        raise UserError(f"{path}: not a rackbench result set (only sets rackbench wrote are migrated)")
    before = doc["rackbench"].get("schema_version")
    rs = load(path)
    if before == SCHEMA_VERSION:
        return before, SCHEMA_VERSION
    rewrite(rs)
    return before, SCHEMA_VERSION


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
        row["timing_notes"] = list(c.timing.get("notes") or [])
        row["carried_bytes"] = c.timing.get("carried_bytes")
        row["loop_copies"] = c.timing.get("loop_copies")
        row["samples_s"] = list(c.samples_s)
        for k, v in c.params.items():
            row[f"param_{k}"] = v
        for k, v in c.extra.items():
            if isinstance(v, (int, float, str, bool)) or v is None:
                row[k] = v
        rows.append(row)
    columns = list(_FLAT_FIELDS) + list(_STAT_FIELDS) + [
        "params", "key", "timing_method", "reps_per_sample", "timing_notes", "carried_bytes",
        "loop_copies", "samples_s"]
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=columns)
    df.attrs["device"] = rs.device
    df.attrs["meta"] = rs.meta
    return df


def load_dataframe(path):
    return to_dataframe(load(path))
