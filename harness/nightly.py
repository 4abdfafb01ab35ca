"""The nightly regression gate: run the suite, store it, compare with the latest earlier set of
the same suite and machine fingerprint, write the report, and exit with compare's code.

`gate()` is everything after the measuring, so it is tested on generated sets without running
a kernel; `run_nightly()` only adds the run in front of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness import compare, history, report, resultset
from harness.errors import UserError
from harness.resultset import ResultSet, check_writable_dir


@dataclass(frozen=True)
class NightlyOutcome:
    exit_code: int
    new_path: Path
    baseline_path: Path | None
    comparison: compare.Comparison | None
    report_paths: tuple[Path, ...]
    messages: tuple[str, ...]


def _candidates(results_dir: Path, machine_id: str | None, warnings: list[str]) -> list[Path]:
    """Result files, newest first by created time (resultset.sets_by_age): the machine's own
    directory before the others, since that is where its fingerprint almost always is. Files
    that cannot be read are left out with a line in `warnings`."""
    own = results_dir / machine_id if machine_id else None
    mine = resultset.sets_by_age(own, warnings)[::-1] if own and own.is_dir() else []
    rest = [p for d in sorted({p.parent for p in results_dir.rglob("*.json*")}) if own is None or d != own
            for p in resultset.sets_by_age(d, warnings)]
    rest.sort(key=lambda p: (resultset.created_time(p) or "", p.name), reverse=True)
    return mine + rest


def find_baseline(results_dir, new: ResultSet) -> tuple[ResultSet | None, list[str]]:
    """The latest complete set, earlier than `new`, of the same suite with the same
    fingerprint_id (a quick run is no baseline for a default one); plus warnings about files
    that could not be considered. Reads only."""
    results_dir = Path(results_dir)
    fingerprint, created = new.meta.get("fingerprint_id"), str(new.meta.get("created_utc") or "")
    warnings: list[str] = []
    if not fingerprint or not results_dir.is_dir():
        return None, warnings
    new_path = Path(new.path).resolve() if new.path else None
    for path in _candidates(results_dir, new.meta.get("machine_id"), warnings):
        if new_path is not None and path.resolve() == new_path:
            continue
        try:
            rs = resultset.load(path)
        except UserError as exc:
            warnings.append(f"skipped: {exc}")
            continue
        if rs.foreign or rs.meta.get("fingerprint_id") != fingerprint or rs.meta.get("suite") != new.meta.get("suite"):
            continue
        if rs.meta.get("complete") is False:
            warnings.append(f"skipped: {path}: incomplete (interrupted) run")
            continue
        if str(rs.meta.get("created_utc") or "") < created:
            return rs, warnings
    return None, warnings


def gate(new_path, results_dir="results", report_dir="reports", *, factor: float = compare.DEFAULT_FACTOR,
         alpha: float = compare.DEFAULT_ALPHA, run_noise: float | None = None,
         strict: bool = False) -> NightlyOutcome:
    """Find the baseline for the set at `new_path`, compare, write the report. Never writes
    under `results_dir`."""
    new_path = Path(new_path)
    new = resultset.load(new_path)
    base, messages = find_baseline(results_dir, new)
    comparison = None
    if base is None:
        messages.append(f"no earlier result set with fingerprint {new.meta.get('fingerprint_id')} in {results_dir}: "
                        "nothing to compare with; this set is the first baseline (exit 0)")
        code = compare.EXIT_OK
    else:
        messages.append(f"baseline: {base.path}")
        comparison = compare.compare_sets(base, new, factor=factor, alpha=alpha, run_noise=run_noise, strict=strict)
        code = comparison.exit_code
    if new.meta.get("complete") is False:
        messages.append(f"{new_path}: the run is incomplete (interrupted); missing cases are expected")
    try:
        hist = history.load_history(new_path.parent, suite=new.meta.get("suite"), until=new.meta.get("created_utc"))
    except UserError as exc:
        hist = None
        messages.append(f"no history section: {exc}")
    html_path, md_path = report.write_report(
        report_dir, f"nightly-{new_path.stem}", comparison=comparison, new=new, history=hist,
        title=f"rackbench nightly: {new.meta.get('machine_id')} {new_path.stem}",
    )
    return NightlyOutcome(code, new_path, base.path if base else None, comparison, (html_path, md_path), tuple(messages))


def _run_suite(suite: str, results_dir: Path, progress=None) -> Path:
    """Measure `suite` as `rackbench run` does (the same CPU device count, so the set lands in
    the same machine directory as `make bench`'s) and return the stored set's path. Ctrl-C:
    the partial set stays stored and KeyboardInterrupt goes on up (exit 130, no comparison)."""
    import os
    import sys

    from harness.device import cpu_device_warning, default_cpu_devices

    from harness.interrupts import deferred

    asked = default_cpu_devices(os.environ)  # before anything initialises JAX's backends
    with deferred():  # imports JAX (only when really measuring) and starts its backends
        from harness.runner import run_suite

        import jax

        jax.devices()

    warning = cpu_device_warning(asked)
    if warning:
        print(f"nightly: warning: {warning}", file=sys.stderr)
    outcome = run_suite(suite=suite, results_dir=results_dir, progress=progress)
    if outcome.interrupted:
        print(f"nightly: interrupted; the partial set is stored (complete: false): {outcome.path}", file=sys.stderr)
        raise KeyboardInterrupt
    return Path(outcome.path)


def run_nightly(suite: str = "default", results_dir="results", report_dir="reports", *,
                factor: float = compare.DEFAULT_FACTOR, alpha: float = compare.DEFAULT_ALPHA,
                run_noise: float | None = None, strict: bool = False, progress=None,
                run: Callable[..., Path] | None = None) -> NightlyOutcome:
    """Measure `suite` into `results_dir` (the runner stores the set), then `gate()` it.
    Both directories are checked writable before anything is measured.
    `run(suite, results_dir, progress=...) -> path of the stored set` replaces the runner (tests)."""
    check_writable_dir(results_dir, "--results")
    check_writable_dir(report_dir, "--report-dir")
    new_path = (run or _run_suite)(suite, Path(results_dir), progress=progress)
    return gate(new_path, results_dir, report_dir, factor=factor, alpha=alpha, run_noise=run_noise, strict=strict)
