"""Builders for synthetic result sets used by the compare/history/report/nightly tests.

Loaded by path (tests run in importlib mode, so there is no package to import it from):
    synth = load_synth()   # see the helper at the top of each test module
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.resultset import CaseResult, ResultSet, default_path, save
from harness.stats import summarize


def make_meta(
    *,
    machine_id: str = "box-a",
    fingerprint_id: str = "fp-aaaa",
    device_kind: str = "cpu",
    device_count: int = 1,
    jax: str = "0.10.2",
    created_utc: str = "2026-11-01T00:00:00Z",
    commit: str = "a" * 40,
    complete: bool = True,
    hostname: str = "host-a",
) -> dict:
    return {
        "created_utc": created_utc,
        "machine_id": machine_id,
        "fingerprint": {"platform": "cpu", "device_kind": device_kind, "device_count": device_count,
                        "host_cpu": "synthetic", "hostname": hostname},
        "fingerprint_id": fingerprint_id,
        "seed": 0,
        "suite": "quick",
        "git": {"commit": commit, "branch": "main", "dirty": False, "commit_time": created_utc},
        "host": {"hostname": hostname, "system": "Linux", "release": "6", "machine": "x86_64",
                 "cpu": "synthetic", "cpu_count": 2, "memory_bytes": 8 * 2**30},
        "device": {"platform": "cpu", "kind": device_kind, "count": device_count,
                   "memory_bytes": 8 * 2**30, "catalog_chip": None},
        "software": {"python": "3.11.2", "jax": jax, "jaxlib": jax, "numpy": "2.4.6"},
        "ceilings": {"peak_flops_per_s": {"float32": 1.0e11, "bfloat16": 2.0e11},
                     "peak_bw_bytes_per_s": 2.0e10, "source": "measured: synthetic"},
        "complete": complete,
        "warnings": [],
    }


def samples(rng: np.random.Generator, median_s: float, n: int, rel_sd: float) -> list[float]:
    """Log-normal timing samples around `median_s` (timings are skewed, never negative)."""
    return [float(v) for v in median_s * np.exp(rng.normal(0.0, rel_sd, n))]


def make_case(name: str, group: str, samples_s=(), *, params=None, status: str = "ok",
              reason=None, direction: str = "lower", flops=None, bytes=None) -> CaseResult:
    samples_s = list(samples_s)
    stats = summarize(samples_s).to_dict() if samples_s else {}
    med = stats.get("median_s")
    achieved_f = flops / med if (flops and med) else None
    achieved_b = bytes / med if (bytes and med) else None
    return CaseResult(
        name=name, group=group, params=dict(params or {}), status=status, reason=reason,
        direction=direction, samples_s=samples_s, stats=stats, flops=flops, bytes=bytes,
        achieved_flops_per_s=achieved_f, achieved_bytes_per_s=achieved_b,
        timing={"method": "synthetic", "reps_per_sample": 1},
    )


def make_set(cases, **meta_kw) -> ResultSet:
    return ResultSet(meta=make_meta(**meta_kw), cases=list(cases))


def many_cases(rng: np.random.Generator, n_cases: int, n_samples: int = 30, rel_sd: float = 0.02,
               slowdown: float = 1.0, medians=None):
    """`n_cases` ok cases spread over four families; `medians` fixes each case's true median."""
    groups = ("matmul", "attention", "membw", "collective")
    if medians is None:
        medians = 1e-4 * np.exp(np.linspace(0.0, 4.0, n_cases))
    return [
        make_case(f"{groups[i % 4]}/case{i:04d}", groups[i % 4],
                  samples(rng, medians[i] * slowdown, n_samples, rel_sd), params={"size": i},
                  flops=2.0 * 256**3, bytes=3 * 4 * 256**2)
        for i in range(n_cases)
    ]


def save_in(results_dir: Path, rs: ResultSet) -> Path:
    """Save where the harness would: results/<machine_id>/<stamp>-<commit8>.json."""
    return save(rs, default_path(Path(results_dir), rs.meta))


def nightly_series(results_dir: Path, n_nights: int, n_cases: int, *, step_at=None, step=1.0,
                   night_sd: float = 0.02, seed: int = 0, n_samples: int = 15,
                   machine_id: str = "box-a", fingerprint_id: str = "fp-aaaa", step_cases=None,
                   indent: int | None = 1, distinct: int | None = None) -> list[Path]:
    """One stored set per night; from night `step_at` on, the true median of the cases in
    `step_cases` (default: all) is multiplied by `step`.

    Each night's medians also wander by `night_sd` (machine state, thermal, noisy neighbours):
    that is what makes a small step invisible to any single night-to-night comparison.
    Built from one template document whose times are scaled per case and night, because
    summarising 73,000 cases from scratch would make the benchmark fixture slower than the code.
    `indent=1` is the layout resultset.save writes; None writes compact JSON (json's C encoder:
    much faster to generate, slightly faster to parse).
    """
    import json

    from harness.resultset import _json_default

    rng = np.random.default_rng(seed)
    base = 1e-4 * np.exp(np.linspace(0.0, 3.0, n_cases))
    template = make_set(many_cases(rng, n_cases, n_samples=n_samples, rel_sd=0.01, medians=base),
                        machine_id=machine_id, fingerprint_id=fingerprint_id)
    doc = json.loads(json.dumps(template.to_json_dict(), default=_json_default))
    cases, benches = doc["rackbench"]["cases"], doc["benchmarks"]
    stepped = np.zeros(n_cases, bool)
    stepped[list(range(n_cases)) if step_cases is None else list(step_cases)] = True
    time_keys = ("median_s", "q1_s", "q3_s", "iqr_s", "ci95_low_s", "ci95_high_s", "mean_s", "stddev_s", "min_s", "max_s")
    bench_keys = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr", "total")
    samples0 = np.array([c["samples_s"] for c in cases])
    stats0 = np.array([[c["stats"][k] for k in time_keys] for c in cases])
    bstats0 = np.array([[b["stats"][k] for k in bench_keys] for b in benches])
    def render(factor: np.ndarray) -> str:
        samples = (samples0 * factor[:, None]).tolist()
        stats = (stats0 * factor[:, None]).tolist()
        bstats = (bstats0 * factor[:, None]).tolist()
        for i, (case, bench) in enumerate(zip(cases, benches)):
            case["samples_s"] = bench["stats"]["data"] = samples[i]
            case["stats"].update(zip(time_keys, stats[i]))
            bench["stats"].update(zip(bench_keys, bstats[i]))
            bench["stats"]["ops"] = 1.0 / bench["stats"]["mean"]
        meta = doc["rackbench"]
        meta["created_utc"] = doc["datetime"] = "@@CREATED@@"
        meta["git"]["commit"] = doc["commit_info"]["id"] = "@@COMMIT@@"
        return json.dumps(doc, indent=indent) + "\n"

    def factors() -> np.ndarray:
        return np.exp(rng.normal(0.0, night_sd, n_cases))

    # `distinct` renders only that many nights per level (before/after the step) and gives each
    # night one of them at random, so the indenting encoder runs dozens of times, not hundreds.
    pools = None
    if distinct:
        pools = ([render(factors()) for _ in range(distinct)],
                 [render(np.where(stepped, factors() * step, factors())) for _ in range(distinct)])
    paths = []
    for night in range(n_nights):
        after = step_at is not None and night >= step_at
        if pools is not None:
            text = pools[after][int(rng.integers(distinct))]
        else:
            factor = factors()
            text = render(np.where(stepped, factor * step, factor) if after else factor)
        day = np.datetime64("2026-01-01T02:00:00") + np.timedelta64(night, "D")
        commit = f"{night:08x}" + "c" * 32
        path = Path(results_dir) / machine_id / f"{str(day).replace('-', '').replace(':', '')}-{commit[:8]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("@@CREATED@@", str(day) + "Z").replace("@@COMMIT@@", commit))
        paths.append(path)
    return paths
