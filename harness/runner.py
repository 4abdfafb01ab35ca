"""Run a suite: for each case build inputs, compile, check the output, time it, and keep the
result set on disk after every case, so a crash or Ctrl-C never loses what was measured."""
from __future__ import annotations

import re
import sys
import time
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from harness import ceilings as ceilings_mod
from harness.ceilings import apply_ceilings, measured_ceilings
from harness import conditions
from harness import device as device_mod
from harness import distributed
from harness.errors import UserError
from harness.estimate import Ceilings, costs_for, estimate_cases, fit_budget
from harness.format import duration
from harness.progress import Progress
from harness.resultset import (CaseResult, ResultSet, check_new_file, default_path, load, save,
                               save_new)
from harness.stats import LARGE_SPREAD_IQR_OVER_MEDIAN, summarize
from harness.suites import build_suite
from harness.timing import (LOOP_ADDED_WORK_NOTE, MIN_SAMPLES, TimingConfig, compile_ahead,
                            device_loop_overhead, loop_overhead_note, time_compiled)
from kernels.base import Case

DEFAULT_SEED = 20261128
_BUDGET_STOP = "stopped by the time budget"


def case_key(seed: int, name: str):
    """Per-case PRNG key: the run's seed folded with a stable hash of the case name, so a case's
    inputs do not change when other cases are added or filtered out."""
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if "RESOURCE_EXHAUSTED" in str(exc) or "out of memory" in str(exc).lower():
        return f"out of memory: {first[:300]}"
    return f"{type(exc).__name__}: {first[:300]}"


def measure_case(case: Case, dev, seed: int, cfg: TimingConfig) -> CaseResult:
    """One case, isolated: anything it raises becomes a failed result, never a crashed run."""
    base = dict(name=case.name, group=case.group, params=dict(case.params), flops=case.flops, bytes=case.bytes)
    reason = case.skip(dev)
    if reason:
        return CaseResult(status="skipped", reason=reason, **base)
    lockstep = distributed.is_lockstep(case)  # every process must make the same calls
    try:
        fn, args = case.make(case_key(seed, case.name))
        compiled = compile_ahead(fn, args)
        out = compiled.fn(*args)
        jax.block_until_ready(out)
        check: dict = {"reference": "none"}
        if case.check is not None:
            err, tol, *how = case.check(args, out)
            if lockstep:  # each process checked its own shards; all must take the same branch
                err = distributed.agree_max(err)
            check = {"error": err, "tolerance": tol,
                     "metric": how[0] if how else "max|out-ref|/rms(ref) against a float64 or fp32-highest reference"}
            if not np.isfinite(err) or err > tol:
                return CaseResult(
                    status="failed",
                    reason=f"wrong result: error {err:.3g} > tolerance {tol:.3g}",
                    check=check,
                    timing={"lower_s": compiled.lower_s, "compile_s": compiled.compile_s},
                    **base,
                )
        del out
        if lockstep:
            tcfg, method, note = distributed.lockstep_timing(compiled.fn, args, cfg, case.name)
            timing = time_compiled(fn, compiled, args, tcfg, force_method=method)
            timing.notes.append(note)
        else:
            timing = time_compiled(fn, compiled, args, cfg, cross_check=not case.multi_device)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - failure isolation is the point
        return CaseResult(status="failed", reason=_reason(exc), extra={"traceback": traceback.format_exc(limit=3)}, **base)
    summary = summarize(timing.samples_s)
    median = summary.median_s
    res = CaseResult(
        status="ok",
        samples_s=list(timing.samples_s),
        stats=summary.to_dict(),
        achieved_flops_per_s=case.flops / median if median > 0 else None,
        achieved_bytes_per_s=case.bytes / median if median > 0 else None,
        timing=timing.to_dict(cfg),
        check=check,
        extra={"peak_dtype": case.peak_dtype},
        **base,
    )
    if case.derived is not None:
        res.extra.update(case.derived(median))
    if lockstep:
        res.extra["process_medians_s"] = distributed.gather(median)
    if summary.relative_iqr > LARGE_SPREAD_IQR_OVER_MEDIAN:
        res.timing["notes"].append(f"large spread: IQR is {summary.relative_iqr:.0%} of the median")
    return res


@dataclass
class RunOutcome:
    result_set: ResultSet
    path: Path
    interrupted: bool  # Ctrl-C stopped the run before every case ran


def select(cases: list[Case], pattern: str | None) -> list[Case]:
    if not pattern:
        return cases
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"case filter {pattern!r}: not a valid regular expression ({exc})") from None
    chosen = [c for c in cases if rx.search(c.name)]
    if not chosen:
        raise UserError(f"case filter {pattern!r}: matches no case of the suite")
    return chosen


def _resumable(path: Path, suite: str, seed: int, env: dict) -> ResultSet:
    """The set at `path` to continue: the same suite, seed and machine, or a UserError."""
    rs = load(path)
    meta = rs.meta
    for what, have, want in (("suite", meta.get("suite"), suite), ("seed", meta.get("seed"), seed),
                             ("machine fingerprint", meta.get("fingerprint_id"), env["fingerprint_id"])):
        if have != want:
            raise UserError(f"{path}: cannot resume: its {what} is {have!r}, this run's is {want!r}")
    return rs


def run_suite(
    suite: str = "default",
    pattern: str | None = None,
    results_dir: Path | str = "results",
    cfg: TimingConfig | None = None,
    seed: int = DEFAULT_SEED,
    out_path: Path | None = None,
    cases: list[Case] | None = None,
    progress: Progress | None = None,
    write: bool = True,
    budget_s: float | None = None,
    resume: bool = False,
    announce: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Measure a suite and store it. `cases` overrides the suite's table (tests use it).

    `resume`: continue the set at `out_path` if there is one (same suite, seed and machine):
    its cases are kept and not measured again; the set then covers the whole suite, and
    `pattern` only picks what this call measures. `budget_s`: measure cases in order while the
    estimate of the next one (harness.estimate) still fits the seconds left, then stop; the set
    is complete once every case of the suite is in it. `announce` gets the plan, one line,
    before anything is measured.

    Without `resume` the file is created before the first case is measured, exclusively: an
    unwritable place fails at once, and two runs started in the same second get two files
    (`save_new`). It is then rewritten atomically after every case, and `complete` is true
    exactly when every case of the suite is in the set."""
    if out_path is not None and write and not resume:
        check_new_file(out_path, "--out-file")
    env = device_mod.environment()
    dev = jax.local_devices()[0]  # per-device cases run on this process's first device
    scope = cases if cases is not None else build_suite(suite, dev.platform)
    cfg = cfg or default_timing(suite, dev.platform)
    chip = device_mod.catalog_chip(env["device"]["kind"], dev.platform)
    previous = _resumable(Path(out_path), suite, seed, env) if resume and out_path and Path(out_path).exists() else None
    if resume:
        done = {c.name for c in previous.cases} if previous else set()
        chosen = [c for c in (select(scope, pattern) if pattern else scope) if c.name not in done]
    else:
        scope = chosen = select(scope, pattern)
    before = conditions.snapshot()
    meta = {
        **env,
        "seed": seed,
        "suite": suite,
        "filter": None if resume else pattern,
        "argv": sys.argv,
        "timing_config": cfg.__dict__,
        "conditions": {"before": before},
        "complete": False,
        "interrupted": False,
        "warnings": [w for w in [conditions.busy_before(before)] + conditions.throttled(before) if w],
        "n_cases_planned": len(scope),
    }
    if env["device"].get("catalog_note"):
        meta["warnings"].append(env["device"]["catalog_note"])
    if previous is not None:
        # the set keeps its first call's identity; what changed since is in its stages
        # (a budget's stop is the state of the last call, not history: the next call replaces it)
        meta = {**previous.meta, "complete": False, "interrupted": False, "n_cases_planned": len(scope),
                "conditions": {"before": before},
                "warnings": [w for w in previous.meta.get("warnings", []) if not w.startswith(_BUDGET_STOP)]}
        if previous.meta.get("git", {}).get("commit") != env["git"]["commit"]:
            meta["warnings"].append(f"resumed at commit {env['git']['commit']}; the set was begun at "
                                    f"{previous.meta.get('git', {}).get('commit')}")
    rs = ResultSet(meta=meta, cases=list(previous.cases) if previous else [])
    n_before = len(rs.cases)
    ceilings = device_mod.catalog_ceilings(chip) if chip else None
    estimates = _estimates(chosen, dev, chip, previous, cfg) if budget_s is not None or announce else None
    planned = fit_budget(estimates, budget_s) if budget_s is not None else len(chosen)
    if announce:
        announce(plan_line(estimates, planned, budget_s, len(scope) - len(chosen)))

    # a device the catalog does not know gets its memory ceiling from sweeps before and after
    # the cases (harness.ceilings), measured by the process that writes the set
    memory = None
    if ceilings is None and (previous is not None or any(c.group != "collective" for c in chosen)):
        kept = ((previous.meta.get("ceilings") or {}).get("memory") if previous else None) or {}
        memory = ceilings_mod.memory_section(dev.platform, cfg)
        memory["sweeps"] = list(kept.get("sweeps") or [])

    def prepare() -> None:
        used = ceilings or measured_ceilings(rs.cases, memory)
        rs.meta["ceilings"] = used
        apply_ceilings(rs, used)
        have = {c.name for c in rs.cases}
        rs.meta["complete"] = all(c.name in have for c in scope)

    path = Path(out_path) if out_path else default_path(Path(results_dir), meta)
    if write:  # claim the name now: an unwritable --out fails before anything is measured
        prepare()
        if resume and out_path is not None:
            save(rs, path)  # the set being continued (or begun) at its own name
        elif out_path is not None:
            try:
                save(rs, path, exclusive=True)
            except FileExistsError:
                raise UserError(f"--out-file {path}: already exists (a stored set is never overwritten)") from None
        else:
            path = save_new(rs, path)

    def store() -> None:
        prepare()
        if write:
            save(rs, path)

    call_started = time.perf_counter()  # the budget counts from here
    # what the device loop costs by itself, so the cases it would dominate can be flagged
    rs.meta["device_loop_overhead"] = device_loop_overhead(cfg)
    overhead_s = rs.meta["device_loop_overhead"]["per_rep_s"]
    if memory is not None and write:
        _memory_sweep(memory, dev, cfg, "before the cases", rs.meta["warnings"])

    interrupted = False
    stopped_at = None
    bar = progress or Progress()
    bar.start(len(chosen))
    busy_cases = []
    try:
        for i, case in enumerate(chosen):
            if budget_s is not None and i and time.perf_counter() - call_started + estimates[i].total_s > budget_s:
                stopped_at = i  # the next case would not fit the seconds left
                break
            bar.case_started(i, case.name)
            started = time.perf_counter()
            cpu0 = conditions.cpu_times()
            result = measure_case(case, dev, seed, cfg)
            # everything the case cost: inputs, compile, check, warm-up, samples
            result.timing["case_wall_s"] = time.perf_counter() - started
            if result.status == "ok" and result.timing.get("method") == "device-loop":
                result.timing["loop_overhead_s"] = overhead_s
                note = loop_overhead_note(result.median_s, overhead_s)
                if note:
                    result.timing["notes"].append(note)
            result.conditions = conditions.case_conditions(cpu0, conditions.cpu_times())
            if result.conditions.get("other_cpu_fraction", 0.0) > conditions.BUSY_OTHER_CPU_FRACTION:
                busy_cases.append(result.conditions["other_cpu_fraction"])
            rs.cases.append(result)
            for note in result.timing.get("notes", []):
                if note.startswith(("large spread", "near the device loop", LOOP_ADDED_WORK_NOTE)):
                    rs.meta["warnings"].append(f"{case.name}: {note}")
            store()
            bar.case_done(i, result)
    except KeyboardInterrupt:
        interrupted = len(rs.cases) - n_before < len(chosen)
        if interrupted:
            rs.meta["interrupted"] = True
            rs.meta["warnings"].append(f"interrupted after {len(rs.cases) - n_before} of {len(chosen)} cases")
    finally:
        bar.close()
    if memory is not None and write and not interrupted:
        try:
            _memory_sweep(memory, dev, cfg, "after the cases", rs.meta["warnings"])
        except KeyboardInterrupt:  # every case is stored; the ceiling keeps the first sweep
            memory["sweeps_interrupted"] = True
    after = conditions.snapshot()
    rs.meta["conditions"]["after"] = after
    if busy_cases:
        rs.meta["warnings"].append(
            f"busy machine: other processes used more than {conditions.BUSY_OTHER_CPU_FRACTION:.0%} of the CPUs "
            f"during {len(busy_cases)} of {len(rs.cases)} cases (up to {max(busy_cases):.0%}); see each case's conditions")
    rs.meta["warnings"] += conditions.throttled(after)
    names = {c.name for c in rs.cases}
    left = [c.name for c in scope if c.name not in names]
    if stopped_at is not None:
        rs.meta["warnings"].append(f"{_BUDGET_STOP} ({budget_s:g} s) after {stopped_at} of "
                                   f"{len(chosen)} cases; {len(left)} of the suite left (run again with --resume)")
    rs.meta.setdefault("stages", []).append({
        "started_utc": env["created_utc"], "commit": env["git"]["commit"], "filter": pattern,
        "budget_s": budget_s, "estimate_s": sum(e.total_s for e in estimates[:planned]) if estimates else None,
        "wall_s": time.perf_counter() - call_started, "cases_measured": len(rs.cases) - n_before,
        "cases_left": len(left), "device_loop_overhead_s": overhead_s,
    })
    store()
    return RunOutcome(rs, path, interrupted)


def _memory_sweep(memory: dict, dev, cfg: TimingConfig, when: str, warnings: list) -> None:
    """One memory-ceiling sweep appended to `memory["sweeps"]`; a failure (out of memory, a
    wrong result) is a warning, never a failed run."""
    try:
        memory["sweeps"].append(ceilings_mod.sweep(dev, memory["buffer_bytes"], cfg.ceiling_calls, when))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - the run goes on without this sweep
        warnings.append(f"memory ceiling sweep {when} failed: {_reason(exc)}")


def _estimates(cases: list[Case], dev, chip, previous, cfg: TimingConfig) -> list:
    """harness.estimate's figures for `cases` on this device."""
    ceilings = Ceilings.best(chip, dev.platform, previous.meta.get("ceilings") if previous else None)
    return estimate_cases(cases, dev, ceilings, cfg, costs_for(dev.platform))


def plan_line(estimates: list, planned: int, budget_s: float | None, done: int) -> str:
    """One line: what this call will measure and how long that should take."""
    mine = estimates[:planned]
    total = sum(e.total_s for e in mine)
    parts = ", ".join(f"{k} {duration(sum(getattr(e, k + '_s') for e in mine))}" for k in ("compile", "run", "check"))
    budget = f" of a {duration(budget_s)} budget" if budget_s is not None else ""
    kept = f"; {done} already in the set" if done else ""
    return (f"plan: {planned} of {len(estimates)} cases to measure in this call, estimated {duration(total)}{budget} "
            f"({parts}); {len(estimates) - planned} left after it{kept}")


def default_timing(suite: str, platform: str) -> TimingConfig:
    """Sample budgets per suite. Every case gets at least MIN_SAMPLES (10) samples, the slowest
    included; beyond that, up to `samples` while its sampling stays within `max_case_time_s`."""
    if suite == "quick":  # a smoke test: its memory-ceiling buffer (64 MiB) may sit in a cache, and says so
        return TimingConfig(min_time_s=0.005, samples=15, min_samples=MIN_SAMPLES, max_case_time_s=0.3,
                            ceiling_calls=3, ceiling_buffer_bytes=64 * 2**20)
    if platform == "cpu":
        return TimingConfig(min_time_s=0.02, samples=15, min_samples=MIN_SAMPLES, max_case_time_s=1.0)
    if suite == "default":
        return TimingConfig(min_time_s=0.02, samples=21, min_samples=MIN_SAMPLES, max_case_time_s=0.6)
    return TimingConfig(min_time_s=0.05, samples=31, min_samples=MIN_SAMPLES, max_case_time_s=2.0)
