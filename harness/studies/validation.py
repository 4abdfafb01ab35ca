"""The model against published measurements: every row of clusters/data/validation/published.csv
run through the `rackbench` command line of its published setup (setups.toml next to it), the
same parser and code `rackbench project` and `rackbench collective` run, and compared with the
published figure on the metric and FLOP convention its source uses."""
from __future__ import annotations

import csv
import importlib
import io
import math
import shlex
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from clusters import uncertainty as U
from clusters.tomldata import Field, check, read_toml
from clusters.validation import PUBLISHED_CSV, published_rows
from harness import cli
from harness.errors import UserError
from harness.resultset import write_atomic

SETUPS = PUBLISHED_CSV.parent / "setups.toml"
MODES = ("train", "prefill", "decode", "collective")
# Targets (README): per mode the median |error| at most 10%, every row at most 25%
MEDIAN_TARGET, ROW_TARGET = 0.10, 0.25
UNITS = {"TFLOP/s": 1e12, "GB/s": 1e9, "tokens/s": 1.0}
_SETUP = {"args": Field("str"), "flops": Field("str", required=False, choices=("full", "causal")),
          "scale": Field("float", required=False, hi=1e6), "gap": Field("str", required=False),
          "substitute": Field("str", required=False), "note": Field("str", required=False)}


def _metric(row: dict, setup: dict, doc: dict) -> float:
    """The published metric, in base units, from a command's JSON document."""
    name = row["metric"]
    if "results" in doc:  # rackbench collective
        r = doc["results"][0]
        key = "algbw_bytes_per_s" if name == "bandwidth" else "busbw_bytes_per_s"
        return r[key]
    if name == "model_tflops_per_chip":
        if setup["flops"] is None:
            raise UserError(f"{SETUPS}: {row['id']} needs key 'flops' (full or causal)")
        return doc["model_flops_per_s_per_chip" if setup["flops"] == "full"
                   else "causal_model_flops_per_s_per_chip"]
    if name == "hardware_tflops_per_chip":
        return doc["hardware_flops_per_s_per_chip"]
    if name == "output_tokens_per_s_per_user":
        return 1.0 / doc["tpot_s"]
    if name == "output_tokens_per_s_total":
        return doc["output_tokens_per_s_per_chip"] * doc["chips"]
    if name in ("input_tokens_per_s_per_node", "input_tokens_per_s_per_chip"):
        return doc["input_tokens_per_s_per_chip"]
    if name in ("output_tokens_per_s_per_node", "output_tokens_per_s_per_chip"):
        return doc["output_tokens_per_s_per_chip"]
    if name == "tokens_per_s_per_chip":
        return doc["tokens_per_s_per_chip"]
    raise UserError(f"{PUBLISHED_CSV}: row {row['id']}: no rule for metric {name!r}")


@dataclass(frozen=True)
class RowResult:
    id: str
    mode: str
    metric: str
    unit: str
    published: float
    projected: float | None
    error: float | None  # projected / published - 1
    gap: str | None  # a known gap: why the model cannot reproduce the row yet
    args: str
    source: str
    feasible: bool = True  # the published setup fits in memory
    substitute: str | None = None  # what the setup types in place of a published setting
    # the projection's input uncertainty (clusters.uncertainty): mean and sd of
    # log(sampled / central); None for rows without a band (collectives)
    input_log_mean: float | None = None
    input_log_sd: float | None = None
    # what priced the projection (clusters.calibration.Calibration.priced_by)
    priced_by: tuple = ()
    # the error when the row was added, before any change for it, and that commit
    # (clusters.validation: PRE_COLD for rows older than the record, "" not yet recorded)
    cold_error: float | None = None
    cold_commit: str = ""

    @property
    def within(self) -> bool:
        return self.error is not None and abs(self.error) <= ROW_TARGET

    @property
    def reproduced(self) -> bool:
        """Projected as published (no substitute), fits, and within the row target."""
        return self.substitute is None and self.feasible and self.within

    def to_dict(self) -> dict:
        return asdict(self)


def setups() -> dict:
    doc = read_toml(SETUPS, "validation setups")
    if not isinstance(doc, dict):
        raise UserError(f"{SETUPS}: not a table of rows")
    return {rid: check(SETUPS, t, _SETUP, rid).values for rid, t in doc.items()}


def run_row(row: dict, setup: dict, calibration: str | None = None) -> RowResult:
    """One published row through the command line of its setup; `calibration` (a set, "auto",
    "default") for every command that takes one (`project`; `collective` does not)."""
    argv = shlex.split(setup["args"])
    parser = cli.build_parser(argv[:1])
    args = parser.parse_args(argv + ["--format", "json"])
    if calibration is not None and hasattr(args, "calibration"):
        args.calibration = calibration
    module = importlib.import_module(cli.module_name(args.command))
    projected, gap, feasible, band, priced = None, setup["gap"], True, None, ()
    if setup["substitute"] is not None and gap is None:
        raise UserError(f"{SETUPS}: {row['id']} has a substitute but no gap saying why")
    try:
        doc = module.compute(args)
        projected = _metric(row, setup, doc) * (setup["scale"] or 1.0) / UNITS[row["unit"]]
        feasible = doc.get("feasible", True) is not False
        band = doc.get("band")
        priced = tuple(doc.get("priced_by") or ())
        if gap is None and not feasible:
            gap = f"the published setup does not fit in memory: {doc.get('infeasible_reason')}"
    except cli.INPUT_ERRORS as exc:
        if gap is None:
            raise UserError(f"{row['id']}: {setup['args']}: {exc}") from None
    published = float(row["value"])
    error = None if projected is None else projected / published - 1.0
    mode = row["kind"]
    return RowResult(row["id"], mode, row["metric"], row["unit"], published, projected, error,
                     gap, setup["args"], row["source"], feasible, setup["substitute"],
                     None if band is None else band["input_log_mean"],
                     None if band is None else band["input_log_sd"], priced,
                     float(row["cold_error"]) if row.get("cold_error") else None,
                     row.get("cold_commit") or "")


def validate(mode: str | None = None, calibration: str | None = None) -> list[RowResult]:
    """Every published row (of one mode: train, prefill, decode or collective), under the
    calibration `project` would choose, or `calibration` (a set, "auto", "default")."""
    if mode is not None and mode not in MODES:
        raise UserError(f"unknown validation mode {mode!r} (choose from {', '.join(MODES)})")
    plans = setups()
    rows = [r for r in published_rows() if mode is None or r["kind"] == mode]
    missing = [r["id"] for r in rows if r["id"] not in plans]
    if missing:
        raise UserError(f"{SETUPS}: no setup for {', '.join(missing)}")
    return [run_row(r, plans[r["id"]], calibration) for r in rows]


# A set calibrates the published rows acceptably (issue 20) when per mode its median |error|
# is at most MEDIAN_TARGET and no more than this above the default file's, and every row that
# is not a known gap is within ROW_TARGET.
SET_MEDIAN_SLACK = 0.02


@dataclass(frozen=True)
class SetVerdict:
    """What a measured set does to one mode's rows, against the default file's."""

    mode: str
    default: "ModeSummary"
    measured: "ModeSummary"
    moved: int  # rows (not known gaps) whose projection the set changed by more than 0.1%

    @property
    def meets(self) -> bool:
        d, m = self.default, self.measured
        if m.rows == 0:
            return True
        return (m.median_abs_error <= MEDIAN_TARGET
                and m.median_abs_error <= d.median_abs_error + SET_MEDIAN_SLACK
                and m.within_row_target == m.rows)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "default": self.default.to_dict(),
                "measured": self.measured.to_dict(), "rows_moved": self.moved,
                "meets_targets": self.meets}


def compare_calibrations(default: list[RowResult], measured: list[RowResult]) -> list[SetVerdict]:
    """Per mode, the default file's rows against a measured set's (same rows, same order)."""
    by_id = {r.id: r for r in default}
    out = []
    for d, m in zip(summarize(default), summarize(measured)):
        moved = sum(1 for r in measured if r.mode == m.mode and r.projected is not None
                    and r.gap is None
                    and by_id[r.id].projected is not None
                    and abs(r.projected / by_id[r.id].projected - 1) > 1e-3)
        out.append(SetVerdict(m.mode, d, m, moved))
    return out


@dataclass(frozen=True)
class ModeSummary:
    mode: str
    rows: int  # rows compared (known gaps excluded)
    gaps: int
    median_abs_error: float
    max_abs_error: float
    within_row_target: int
    # over every row with a projection, known gaps included
    projected: int
    median_abs_error_all: float
    # rows with a cold error (added since cold errors were recorded): the out-of-sample figure
    cold_rows: int = 0
    median_abs_cold_error: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(results: list[RowResult]) -> list[ModeSummary]:
    out = []
    for mode in MODES:
        these = [r for r in results if r.mode == mode]
        if not these:
            continue
        errs = [abs(r.error) for r in these if r.gap is None]
        every = [abs(r.error) for r in these if r.error is not None]
        cold = [abs(r.cold_error) for r in these if r.cold_error is not None]
        out.append(ModeSummary(mode, len(errs), sum(r.gap is not None for r in these),
                               statistics.median(errs) if errs else math.nan,
                               max(errs) if errs else math.nan,
                               sum(e <= ROW_TARGET for e in errs), len(every),
                               statistics.median(every) if every else math.nan,
                               len(cold), statistics.median(cold) if cold else math.nan))
    return out


# ------------------------------------------------------------------ cold errors

def unrecorded(results: list[RowResult]) -> list[str]:
    """Rows added without their cold error (cold_commit empty)."""
    return [r.id for r in results if not r.cold_commit]


def _code_commit(root: Path) -> str:
    """HEAD's short hash, refusing uncommitted code: a cold error is the error of committed
    code. The validation data (the rows being added) may be uncommitted."""
    from harness.device import git_changed, git_info

    commit = git_info(root)["commit"]
    if commit is None:
        raise UserError(f"{root}: not a git checkout: a cold error needs the commit of the code")
    dirty = [f for f in git_changed(root, ("clusters", "harness", "kernels"))
             if not f.startswith("clusters/data/validation/")]
    if dirty:
        raise UserError(f"uncommitted code ({', '.join(dirty[:3])}): commit it first, a cold "
                        "error is the error of committed code")
    return commit[:12]


def record_cold(results: list[RowResult], path: Path = PUBLISHED_CSV,
                commit: str | None = None) -> list[str]:
    """Write the cold error (the current error) and commit of every row that has none yet,
    before anything is changed for it; the ids written. Rows the code cannot project get the
    commit and an empty error."""
    todo = {r.id: r for r in results if not r.cold_commit}
    if not todo:
        return []
    commit = commit or _code_commit(Path(__file__).resolve().parents[2])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    ie, ic, iid = header.index("cold_error"), header.index("cold_commit"), header.index("id")
    for row in rows[1:]:
        r = todo.get(row[iid])
        if r is not None:
            row[ie] = "" if r.error is None else f"{r.error:.4f}"
            row[ic] = commit
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    write_atomic(path, out.getvalue())
    return sorted(todo)


# ------------------------------------------------------------------ model-form error, bands

def _banded(results: list[RowResult]) -> list[RowResult]:
    """Rows that calibrate and test the bands: projected as published (no substitute), fitting
    in memory, with a band. Rows with a known gap count: their errors are the model's real
    errors on real setups, and a band fitted without them would be too narrow for setups no
    one has checked yet."""
    return [r for r in results if r.projected is not None and r.input_log_sd is not None
            and r.feasible and r.substitute is None]


def _residual(r: RowResult) -> float:
    """log(projected / published), the projection taken at its input samples' mean."""
    return math.log(r.projected / r.published) + r.input_log_mean


def fit_model_forms(results: list[RowResult], exclude: str | None = None) -> dict:
    """Model-form error per pool (clusters.uncertainty.POOLS) from the rows that calibrate the
    bands (_banded), without row `exclude` (leave-one-out)."""
    out = {}
    for pool in sorted(set(U.POOLS.values())):
        rows = [r for r in _banded(results) if U.POOLS[r.mode] == pool and r.id != exclude]
        if rows:
            out[pool] = U.ModelForm.fit(pool, [_residual(r) for r in rows],
                                        [r.input_log_sd ** 2 for r in rows],
                                        f"rackbench validate: {len(rows)} {pool} rows projected as "
                                        "published")
    return out


@dataclass(frozen=True)
class Coverage:
    """Leave-one-out check of the 80% bands: each banded row's band (_banded), with the
    model-form error fitted on the other rows of its pool, against its published figure."""

    rows: int
    inside: int
    median_half_width: float  # (p90 - p10) / 2 / projected
    per_pool: dict  # pool -> (rows, inside)
    misses: tuple  # ids of rows outside their band

    @property
    def fraction(self) -> float:
        return self.inside / self.rows if self.rows else math.nan

    @property
    def accepted(self) -> tuple[int, int]:
        """The counts of rows inside their 80% bands that a two-sided binomial test at the 5%
        level finds consistent with 80% for this many rows (36-47 of 52)."""
        return coverage_range(self.rows)

    @property
    def consistent(self) -> bool:
        lo, hi = self.accepted
        return lo <= self.inside <= hi

    def to_dict(self) -> dict:
        return {"rows": self.rows, "inside": self.inside, "fraction": self.fraction,
                "median_half_width": self.median_half_width,
                "per_pool": {k: {"rows": n, "inside": i} for k, (n, i) in self.per_pool.items()},
                "misses": list(self.misses)}


BAND_LEVEL, COVERAGE_ALPHA = 0.80, 0.05


def coverage_range(rows: int) -> tuple[int, int]:
    """Counts of rows inside 80% bands that are consistent with 80% coverage: those a
    two-sided exact binomial test at the 5% level does not reject (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    ok = [k for k in range(rows + 1)
          if binomtest(k, rows, BAND_LEVEL).pvalue >= COVERAGE_ALPHA]
    return (min(ok), max(ok)) if ok else (0, rows)


def band_of(r: RowResult, form: U.ModelForm | None) -> tuple[float, float]:
    """(p10, p90) of row `r`'s projection under model-form error `form`."""
    band = U.Band(r.input_log_mean, r.input_log_sd ** 2, form, ())
    return band.rate(r.projected)


def coverage(results: list[RowResult]) -> Coverage:
    rows = _banded(results)
    inside, widths, per_pool, misses = 0, [], {}, []
    for r in rows:
        pool = U.POOLS[r.mode]
        form = fit_model_forms(results, exclude=r.id).get(pool)
        if form is not None and not math.isfinite(form.sd):
            form = None
        lo, hi = band_of(r, form)
        ok = lo <= r.published <= hi
        inside += ok
        n, i = per_pool.get(pool, (0, 0))
        per_pool[pool] = (n + 1, i + ok)
        widths.append((hi - lo) / 2 / r.projected)
        if not ok:
            misses.append(r.id)
    return Coverage(len(rows), inside, statistics.median(widths) if widths else math.nan,
                    per_pool, tuple(misses))


def model_error_toml(results: list[RowResult]) -> str:
    """clusters/data/validation/model_error.toml for these results."""
    lines = ["# Model-form error per pool of validation rows (clusters.uncertainty.ModelForm),",
             "# written by `rackbench validate --write-model-error`; tests/harness/test_validate.py",
             "# recomputes it and fails when it is stale. Log residuals log(projected / published)",
             "# of the rows projected as published that fit in memory (known gaps included), at",
             "# the mean of each projection's input samples.", ""]
    for pool, f in fit_model_forms(results).items():
        if not math.isfinite(f.sd):
            continue
        lines += [f"[pool.{pool}]", f"rows = {f.rows}", f"bias = {f.bias:.6f}",
                  f"residual_sd = {f.residual_sd:.6f}", f"input_sd = {f.input_sd:.6f}",
                  f"sd = {f.sd:.6f}", f'source = "{f.source}"', ""]
    return "\n".join(lines)
