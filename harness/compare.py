"""Compare two result sets case by case and say, with statistics, whether anything got worse.

Per pair of cases (paired by `CaseResult.key`): the ratio of medians NEW/BASE and a decision
interval around it, and a verdict read off the interval (asv's rule, with an interval instead of
a test):
- slower: the whole interval lies above the factor (proven worse by more than the factor);
- inconclusive: the ratio is beyond the factor but the interval reaches below it (likely worse,
  not proven; asv's `~`);
- faster: the whole interval lies below 1/factor; otherwise same.

The interval's width has two parts, added in quadrature on the log scale:
- the sampling uncertainty of each median, from a bootstrap of the raw samples;
- the run-to-run noise of the machine, which no single run's samples show: two back-to-back
  runs of one commit differ by more than their samples' spread (a busy neighbour, a different
  frequency or memory placement). It is estimated from the pair itself as the robust spread
  (MAD) of all per-case log ratios, less the sampling part: most cases do not change between
  two commits, so their spread is the noise. A family (kernel group) with enough cases that is
  noisier than the whole keeps its own figure. With fewer than RUN_NOISE_MIN_CASES cases it is
  not estimated (or `run_noise` gives it).
The interval's level is family-wise: 1 - alpha/m over the m compared pairs (Bonferroni). On a
normal approximation the interval stays finite at any sample count, so the correction widens it
but never makes a large change undetectable, unlike rank tests whose smallest p-value is fixed
by the sample counts. Direction (lower or higher is better) is read from each record, never
guessed from a name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as _sps

from harness.format import markdown_cell, markdown_table, measured, table
from harness.resultset import CaseResult, ResultSet, load
from harness.stats import bootstrap_medians, padded_sorted, row_medians


def plain_table(header, rows) -> str:
    """Every column left-aligned, no rule: the compare and history tables."""
    return table(header, rows, align="l" * len(header), rule=False)

VERDICTS = ("faster", "slower", "inconclusive", "same", "newly failing", "fixed", "new", "missing",
            "not comparable")
WORSE_VERDICTS = ("slower", "newly failing")
# Verdicts that mean the pair was actually compared (anything else: nothing to compare with).
COMPARED_VERDICTS = ("faster", "slower", "inconclusive", "same", "newly failing", "fixed")
# asv-style marks in the table (asv prints `~` for a change beyond the factor it cannot prove).
MARKS = {"slower": "+", "faster": "-", "inconclusive": "~", "newly failing": "x", "fixed": "!"}
# The order a comparison lists its cases in: what got worse first, then what got better, then
# what changed status, then the rest (a case measured in neither set last).
DISPLAY_ORDER = ("newly failing", "slower", "inconclusive", "faster", "fixed", "new", "missing",
                 "not comparable", "same")

EXIT_OK = 0
EXIT_WORSE = 1
EXIT_USER_ERROR = 2
EXIT_NOTHING_COMPARABLE = 3

DEFAULT_FACTOR = 1.05
DEFAULT_ALPHA = 0.01
BOOTSTRAP_RESAMPLES = 2000
# Fixed so that the same two files always give the same table (golden tests, CI logs).
BOOTSTRAP_SEED = 20261128
# Below this many compared pairs the spread of their ratios says little about the machine's
# run-to-run noise (and a few real changes would dominate it): it is then not estimated.
RUN_NOISE_MIN_CASES = 12
# A median from fewer samples has no usable uncertainty: such a pair can be inconclusive, never
# slower or faster.
MIN_SAMPLES_FOR_VERDICT = 3
# MAD -> standard deviation for normal data; a normal's 10th percentile in sds.
_MAD_TO_SD = 1.4826
_LOW_TAIL_Z = 1.2816


@dataclass(frozen=True)
class CaseComparison:
    key: str
    name: str
    group: str
    verdict: str
    reason: str = ""
    direction: str | None = None
    unit: str | None = None
    base_median: float | None = None
    new_median: float | None = None
    ratio: float | None = None  # NEW median / BASE median, in the record's unit
    ratio_ci_low: float | None = None  # the decision interval (Comparison.level, run noise included)
    ratio_ci_high: float | None = None
    sampling_sd: float | None = None  # bootstrap standard deviation of log(ratio)
    run_noise: float | None = None  # the run-to-run noise (sd of log ratio) its interval includes
    base_n: int = 0
    new_n: int = 0

    @property
    def mark(self) -> str:
        return MARKS.get(self.verdict, "")

    @property
    def slowdown(self) -> float | None:
        """The ratio oriented so that > 1 is worse, whatever the record's direction."""
        if self.ratio is None or not self.ratio > 0:
            return None
        return self.ratio if self.direction == "lower" else 1.0 / self.ratio


@dataclass(frozen=True)
class FamilySummary:
    group: str
    n_compared: int  # cases with a ratio (ok in both sets)
    geomean_slowdown: float | None  # > 1 is worse
    counts: dict


@dataclass(frozen=True)
class Comparison:
    base_label: str
    new_label: str
    factor: float
    alpha: float
    resamples: int
    comparable: bool
    not_comparable_reasons: tuple[str, ...]
    notes: tuple[str, ...]
    cases: tuple[CaseComparison, ...]
    n_tests: int = 0
    level: float = 0.0  # two-sided confidence of each decision interval (1 - alpha / n_tests)
    run_noise: float = 0.0  # the machine's run-to-run noise, sd of log(ratio)
    run_noise_source: str = ""
    family_run_noise: dict = field(default_factory=dict)  # per family with enough cases
    strict: bool = False  # inconclusive counts as worse in the exit code
    base_meta: dict = field(default_factory=dict, repr=False)
    new_meta: dict = field(default_factory=dict, repr=False)

    def counts(self) -> dict:
        out = {v: 0 for v in VERDICTS}
        for c in self.cases:
            out[c.verdict] += 1
        return out

    @property
    def exit_code(self) -> int:
        if not self.comparable:
            return EXIT_NOTHING_COMPARABLE
        counts = self.counts()
        if any(counts[v] for v in WORSE_VERDICTS) or (self.strict and counts["inconclusive"]):
            return EXIT_WORSE
        if not any(counts[v] for v in COMPARED_VERDICTS):
            return EXIT_NOTHING_COMPARABLE
        return EXIT_OK

    def families(self) -> list[FamilySummary]:
        groups: dict[str, list[CaseComparison]] = {}
        for c in self.cases:
            groups.setdefault(c.group, []).append(c)
        out = []
        for g in sorted(groups):
            members = groups[g]
            logs = [math.log(c.slowdown) for c in members if c.slowdown is not None]
            counts = {}
            for c in members:
                counts[c.verdict] = counts.get(c.verdict, 0) + 1
            out.append(FamilySummary(g, len(logs), math.exp(sum(logs) / len(logs)) if logs else None, counts))
        return out


# ---------------------------------------------------------------------------- statistics


def bootstrap_log_ratio(base_samples, new_samples, *, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Bootstrap draws of log(median(new)/median(base)) for many pairs at once: an array of shape
    (pairs, resamples). `base_samples` and `new_samples` are equal-length lists of 1-D arrays."""
    if not len(base_samples):
        return np.zeros((0, resamples))
    rng = np.random.default_rng(seed)
    mb = bootstrap_medians([np.asarray(s, float) for s in base_samples], resamples, rng)
    mn = bootstrap_medians([np.asarray(s, float) for s in new_samples], resamples, rng)
    return np.log(mn) - np.log(mb)


def bootstrap_ratio_ci(base_samples, new_samples, *, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of median(new)/median(base) for many pairs at once (sampling
    uncertainty only). Returns (low, high) arrays, one entry per pair."""
    draws = bootstrap_log_ratio(base_samples, new_samples, resamples=resamples, seed=seed)
    if not draws.size:
        return np.array([]), np.array([])
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(draws, [tail, 100.0 - tail], axis=1)
    return np.exp(low), np.exp(high)


def estimate_run_noise(log_slowdowns, sampling_sd) -> float:
    """The run-to-run noise (sd of log ratio) that the per-case ratios show beyond their sampling
    uncertainty, less the typical sampling variance in quadrature. The spread is the larger of
    two robust scales around the median log ratio:
    - the MAD, as a standard deviation (robust to fewer than half the cases changing);
    - the lower tail: the 80th percentile of how far the cases below the median fall, / 1.2816
      (a normal's 10th percentile). Run-to-run noise has heavy tails (an A/A pair of this
      repository's VM moved one collective 1.87x while the MAD said 13%), and a regression only
      ever moves cases up, so the lower side sees the noise's tail without the changes."""
    x = np.asarray(log_slowdowns, float)
    center = np.median(x)
    spread = _MAD_TO_SD * float(np.median(np.abs(x - center)))
    below = center - x[x < center]
    if below.size >= 5:
        spread = max(spread, float(np.percentile(below, 80)) / _LOW_TAIL_Z)
    sampling = float(np.median(np.asarray(sampling_sd, float) ** 2))
    return math.sqrt(max(0.0, spread**2 - sampling))


def normal_quantile(p: float) -> float:
    return float(_sps.norm.ppf(p))


# ---------------------------------------------------------------------------- comparability


def jax_series(version: str | None) -> str | None:
    """The part of a JAX version whose change may change performance: 0.x.y -> '0.x', else major."""
    if not version:
        return None
    parts = str(version).split(".")
    if parts[0] == "0" and len(parts) > 1:
        return f"0.{parts[1]}"
    return parts[0]


def comparability(base_meta: dict, new_meta: dict) -> tuple[list[str], list[str]]:
    """(reasons the sets cannot be compared, notes worth showing even when they can)."""
    reasons, notes = [], []
    bd, nd = base_meta.get("device") or {}, new_meta.get("device") or {}
    if bd.get("kind") != nd.get("kind"):
        reasons.append(f"device kind differs: {bd.get('kind')} vs {nd.get('kind')}")
    if bd.get("count") != nd.get("count"):
        reasons.append(f"device count differs: {bd.get('count')} vs {nd.get('count')}")
    bj, nj = (base_meta.get("software") or {}).get("jax"), (new_meta.get("software") or {}).get("jax")
    if bj and nj and jax_series(bj) != jax_series(nj):
        reasons.append(f"JAX major version differs: {bj} vs {nj} (0.x minor releases count as major)")
    elif bj != nj:
        notes.append(f"JAX version: {bj} vs {nj}")
    bm, nm = base_meta.get("machine_id"), new_meta.get("machine_id")
    if bm and nm and bm != nm:
        notes.append(f"different machines: {bm} vs {nm}")
    elif base_meta.get("fingerprint_id") != new_meta.get("fingerprint_id"):
        notes.append(f"machine fingerprint differs: {base_meta.get('fingerprint_id')} vs {new_meta.get('fingerprint_id')}")
    for label, meta in (("BASE", base_meta), ("NEW", new_meta)):
        if meta.get("complete") is False:
            notes.append(f"{label} is an incomplete (interrupted) run; missing cases are expected")
        busy = [w for w in meta.get("warnings") or [] if isinstance(w, str) and w.startswith("busy machine")]
        if busy:
            notes.append(f"{label} was measured on a busy machine: {busy[0][len('busy machine: '):]}; "
                         "expect run-to-run noise")
    return reasons, notes


# ---------------------------------------------------------------------------- verdicts


def _status_verdict(b: CaseResult, n: CaseResult) -> tuple[str, str] | None:
    """The verdict when at least one side did not measure; None when both are ok."""
    if b.status == "ok" and n.status == "ok":
        return None
    if n.status == "failed":
        if b.status == "failed":
            return "same", f"failing in both: {n.reason or ''}".rstrip(": ")
        return "newly failing", n.reason or "failed"
    if b.status == "failed" and n.status == "ok":
        return "fixed", f"was failing: {b.reason or ''}".rstrip(": ")
    if n.status == "skipped":
        if b.status == "skipped":
            return "same", f"skipped in both: {n.reason or ''}".rstrip(": ")
        return "missing", f"skipped in NEW: {n.reason or ''}".rstrip(": ")
    # b skipped, n ok
    return "new", f"skipped in BASE: {b.reason or ''}".rstrip(": ")


def _label(rs: ResultSet, fallback: str) -> str:
    commit = ((rs.meta.get("git") or {}).get("commit") or "")[:8]
    parts = [str(rs.path) if rs.path else fallback]
    if commit:
        parts.append(f"commit {commit}")
    if rs.meta.get("created_utc"):
        parts.append(str(rs.meta["created_utc"]))
    dev = rs.meta.get("device") or {}
    parts.append(f"{dev.get('kind')} x{dev.get('count')}")
    jax = (rs.meta.get("software") or {}).get("jax")
    if jax:
        parts.append(f"jax {jax}")
    return ", ".join(parts)


def compare_sets(base: ResultSet, new: ResultSet, *, factor: float = DEFAULT_FACTOR, alpha: float = DEFAULT_ALPHA,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 run_noise: float | None = None, strict: bool = False) -> Comparison:
    """Pair the cases of two sets and give each pair a verdict (module docstring). `run_noise`
    (sd of log ratio) replaces the estimate from the pair; `strict` makes an inconclusive case
    fail the exit code."""
    if not factor >= 1.0:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    reasons, notes = comparability(base.meta, new.meta)
    comparable = not reasons
    base_by_key = {c.key: c for c in base.cases}
    new_by_key = {c.key: c for c in new.cases}
    # Display names: the bare name unless two cases share it with different parameters.
    names = [c.name for c in base.cases] + [c.name for c in new.cases if c.key not in base_by_key]
    dup = {nm for nm in names if names.count(nm) > 1} if len(set(names)) != len(names) else set()

    def display(c: CaseResult) -> str:
        return c.key if c.name in dup else c.name

    rows: list[dict] = []
    tested: list[int] = []  # indices into rows that get the statistics
    for key, b in base_by_key.items():
        n = new_by_key.get(key)
        row = dict(key=key, name=display(b), group=b.group, direction=b.direction, unit=b.unit)
        rows.append(row)
        if n is None:
            row.update(verdict="missing", reason="not in NEW")
            continue
        if not comparable:
            row.update(verdict="not comparable", reason="; ".join(reasons))
            continue
        sv = _status_verdict(b, n)
        if sv is not None:
            row.update(verdict=sv[0], reason=sv[1])
            continue
        if (b.direction, b.unit) != (n.direction, n.unit):
            row.update(verdict="not comparable",
                       reason=f"unit/direction changed: {b.unit}/{b.direction} vs {n.unit}/{n.direction}")
            continue
        if not b.samples_s or not n.samples_s:
            row.update(verdict="not comparable", reason="no raw samples")
            continue
        row.update(bs=np.asarray(b.samples_s, float), ns=np.asarray(n.samples_s, float))
        tested.append(len(rows) - 1)
    for key, n in new_by_key.items():
        if key not in base_by_key:
            rows.append(dict(key=key, name=display(n), group=n.group, direction=n.direction, unit=n.unit,
                             verdict="new", reason="not in BASE" if n.status == "ok" else f"not in BASE; {n.status}"))

    m = len(tested)
    level = 1.0 - alpha / max(m, 1)
    z = normal_quantile(1.0 - alpha / (2.0 * max(m, 1)))
    noise, noise_source = 0.0, ""
    family_noise: dict[str, float] = {}
    if tested:
        bs = [rows[i]["bs"] for i in tested]
        ns = [rows[i]["ns"] for i in tested]
        draws = bootstrap_log_ratio(bs, ns, resamples=resamples, seed=seed)
        sampling_sd = draws.std(axis=1)
        med_b, med_n = row_medians(*padded_sorted(bs)), row_medians(*padded_sorted(ns))
        log_ratio = np.log(med_n) - np.log(med_b)
        sign = np.array([1.0 if rows[i]["direction"] == "lower" else -1.0 for i in tested])
        groups = np.array([rows[i]["group"] for i in tested])
        case_noise = np.zeros(m)
        if run_noise is not None:
            noise, noise_source = float(run_noise), "given"
            case_noise[:] = noise
        elif m >= RUN_NOISE_MIN_CASES:
            noise = estimate_run_noise(sign * log_ratio, sampling_sd)
            case_noise[:] = noise
            # A family noisier than the whole (collectives on shared cores) keeps its own noise;
            # a quieter one keeps the overall figure, which its few cases could not lower safely.
            for g in sorted(set(groups)):
                sel = groups == g
                if sel.sum() >= RUN_NOISE_MIN_CASES:
                    family_noise[g] = estimate_run_noise((sign * log_ratio)[sel], sampling_sd[sel])
                    case_noise[sel] = max(noise, family_noise[g])
            noise_source = f"estimated from the spread of the {m} per-case ratios" + "".join(
                f"; {g}: {100 * (math.exp(v) - 1):.1f}%" for g, v in family_noise.items() if v > noise)
        else:
            noise_source = f"not estimated: {m} compared cases (needs {RUN_NOISE_MIN_CASES})"
        half = z * np.sqrt(sampling_sd**2 + case_noise**2)
        log_factor = math.log(factor)
        for j, i in enumerate(tested):
            row = rows[i]
            worse = sign[j] * log_ratio[j]  # log of the slowdown: > 0 is worse
            lo, hi = worse - half[j], worse + half[j]
            few = min(len(row["bs"]), len(row["ns"])) < MIN_SAMPLES_FOR_VERDICT
            if few and worse > log_factor:
                verdict, reason = "inconclusive", f"fewer than {MIN_SAMPLES_FOR_VERDICT} samples"
            elif few:
                verdict, reason = "same", f"fewer than {MIN_SAMPLES_FOR_VERDICT} samples"
            elif lo > log_factor:
                verdict, reason = "slower", ""
            elif hi < -log_factor:
                verdict, reason = "faster", ""
            elif worse > log_factor:
                verdict, reason = "inconclusive", "beyond the factor, not proven: the interval reaches below it"
            elif worse < -log_factor:
                verdict, reason = "same", "possibly faster, not proven"
            elif lo > 0.0:
                verdict, reason = "same", f"proven worse, but within the factor {factor:g}"
            else:
                verdict, reason = "same", ""
            # the interval on the record's own ratio (new/base), not the oriented slowdown
            r_lo, r_hi = (lo, hi) if sign[j] > 0 else (-hi, -lo)
            row.update(verdict=verdict, reason=reason, base_median=float(med_b[j]), new_median=float(med_n[j]),
                       ratio=float(math.exp(log_ratio[j])), ratio_ci_low=float(math.exp(r_lo)),
                       ratio_ci_high=float(math.exp(r_hi)), sampling_sd=float(sampling_sd[j]),
                       run_noise=float(case_noise[j]),
                       base_n=len(row["bs"]), new_n=len(row["ns"]))

    cases = []
    for row in rows:
        row.pop("bs", None), row.pop("ns", None)
        if "base_median" not in row:
            b, n = base_by_key.get(row["key"]), new_by_key.get(row["key"])
            row["base_median"] = b.median_s if b is not None else None
            row["new_median"] = n.median_s if n is not None else None
        cases.append(CaseComparison(**row))
    cases = changed_first(cases)
    return Comparison(
        base_label=_label(base, "BASE"), new_label=_label(new, "NEW"), factor=factor, alpha=alpha,
        resamples=resamples, comparable=comparable, not_comparable_reasons=tuple(reasons),
        notes=tuple(notes), cases=tuple(cases), n_tests=m, level=level, run_noise=noise,
        run_noise_source=noise_source, family_run_noise=family_noise, strict=strict, base_meta=base.meta,
        new_meta=new.meta,
    )


def changed_first(cases) -> list[CaseComparison]:
    """Cases in DISPLAY_ORDER; the biggest slowdown first among the worse, the biggest speed-up
    first among the faster; a case measured in neither set after every other `same`; otherwise
    the suite's order."""
    def key(item):
        i, c = item
        worse = c.slowdown if c.slowdown is not None else 1.0
        size = -worse if c.verdict in ("slower", "inconclusive") else worse if c.verdict == "faster" else 0.0
        return (DISPLAY_ORDER.index(c.verdict), c.verdict == "same" and c.ratio is None, size, i)

    return [c for _, c in sorted(enumerate(cases), key=key)]


def compare_files(base_path, new_path, **kwargs) -> Comparison:
    """Load both files (UserError on a bad one) and compare them."""
    return compare_sets(load(Path(base_path)), load(Path(new_path)), **kwargs)


# ---------------------------------------------------------------------------- display

def format_ratio(c: CaseComparison) -> tuple[str, str]:
    if c.ratio is None:
        return "-", "-"
    return f"{c.ratio:.3f}", f"[{c.ratio_ci_low:.3f}, {c.ratio_ci_high:.3f}]"


TABLE_HEADER = ("case", "base", "new", "new/base", "interval", "", "verdict", "note")


def table_rows(cmp: Comparison, only_changed: bool = False) -> list[tuple[str, ...]]:
    """Display strings, one tuple per case, in TABLE_HEADER's order (shared by every format)."""
    out = []
    for c in cmp.cases:
        if only_changed and c.verdict == "same":
            continue
        ratio, ci = format_ratio(c)
        out.append((c.name, measured(c.base_median, c.unit), measured(c.new_median, c.unit),
                    ratio, ci, c.mark, c.verdict, c.reason))
    return out


def family_rows(cmp: Comparison) -> list[tuple[str, str, str]]:
    out = []
    for f in cmp.families():
        gm = "-" if f.geomean_slowdown is None else f"{f.geomean_slowdown:.3f}"
        counts = ", ".join(f"{n} {v}" for v, n in sorted(f.counts.items(), key=lambda kv: VERDICTS.index(kv[0])))
        out.append((f.group, gm, counts))
    return out


def exit_message(cmp: Comparison) -> str:
    code = cmp.exit_code
    n_inc = cmp.counts()["inconclusive"]
    if code == EXIT_WORSE:
        if cmp.strict and n_inc and not any(cmp.counts()[v] for v in WORSE_VERDICTS):
            return f"exit 1: {n_inc} inconclusive (--strict counts them as worse)"
        return "exit 1: something is slower or newly failing"
    if code == EXIT_NOTHING_COMPARABLE:
        why = "; ".join(cmp.not_comparable_reasons) or "no case measured in both sets"
        return f"exit 3: nothing comparable ({why})"
    if n_inc:
        return (f"exit 0: nothing proven worse; {n_inc} inconclusive (~: beyond the factor, not proven; "
                "--strict fails on them)")
    return "exit 0: nothing worse"


def _level(level: float) -> str:
    text = f"{100 * level:.6f}".rstrip("0").rstrip(".")
    return f"{text}%"


def header_lines(cmp: Comparison) -> list[str]:
    lines = [f"base: {cmp.base_label}", f"new:  {cmp.new_label}",
             f"factor {cmp.factor:g}, alpha {cmp.alpha:g} family-wise over {cmp.n_tests} compared cases: "
             f"each interval is {_level(cmp.level)} ({cmp.resamples} bootstrap resamples of the medians"
             + (f", run-to-run noise {100 * (math.exp(cmp.run_noise) - 1):.1f}%" if cmp.run_noise else "") + ")",
             f"run-to-run noise: {cmp.run_noise_source}" if cmp.run_noise_source else "",
             "slower (+): the interval lies above the factor; inconclusive (~): beyond the factor, not proven; "
             "faster (-): below 1/factor"]
    lines = [l for l in lines if l]
    lines += [f"NOT COMPARABLE: {r}" for r in cmp.not_comparable_reasons]
    lines += [f"note: {n}" for n in cmp.notes]
    return lines


def verdict_line(cmp: Comparison) -> str:
    return "verdicts: " + ", ".join(f"{n} {v}" for v, n in cmp.counts().items() if n)


def format_table(cmp: Comparison, only_changed: bool = False) -> str:
    counts = cmp.counts()
    lines = header_lines(cmp) + [""]
    lines += plain_table(TABLE_HEADER, table_rows(cmp, only_changed)).split("\n")
    lines += ["", "by family (geometric mean of new/base, oriented so > 1 is worse):"]
    lines += ["  " + s for s in plain_table(("family", "geomean", "verdicts"),
                                            family_rows(cmp)).split("\n")]
    lines += ["", verdict_line(cmp), exit_message(cmp)]
    return "\n".join(lines) + "\n"


def format_markdown(cmp: Comparison, only_changed: bool = False) -> str:
    lines = ["### rackbench compare", ""] + [f"- {markdown_cell(l)}" for l in header_lines(cmp)] + [""]
    lines += [markdown_table(TABLE_HEADER, table_rows(cmp, only_changed))]
    lines += ["", "Geometric mean of new/base per family (> 1 is worse):", ""]
    lines += [markdown_table(("family", "geomean", "verdicts"), family_rows(cmp))]
    lines += ["", f"**{markdown_cell(exit_message(cmp))}**"]
    return "\n".join(lines) + "\n"


def _num(v):
    return v if v is None or math.isfinite(v) else None


def case_record(c: CaseComparison) -> dict:
    """One compared case with its units in the keys (JSON and CSV): the medians in the record's
    unit (`base_median_s` for times), the interval on new/base, the log-scale spreads."""
    unit = c.unit or "s"
    return {"name": c.name, "key": c.key, "group": c.group, "verdict": c.verdict, "mark": c.mark, "reason": c.reason,
            "direction": c.direction, "unit": unit, f"base_median_{unit}": _num(c.base_median),
            f"new_median_{unit}": _num(c.new_median), "ratio": _num(c.ratio), "ratio_ci_low": _num(c.ratio_ci_low),
            "ratio_ci_high": _num(c.ratio_ci_high), "slowdown": _num(c.slowdown),
            "sampling_sd_log": _num(c.sampling_sd), "run_noise_sd_log": _num(c.run_noise),
            "base_samples": c.base_n, "new_samples": c.new_n}


def csv_records(cmp: Comparison, only_changed: bool = False) -> list[dict]:
    return [case_record(c) for c in cmp.cases if not (only_changed and c.verdict == "same")]


CSV_COLUMNS = ("name", "group", "verdict", "mark", "reason", "direction", "unit", "base_median_s", "new_median_s",
               "ratio", "ratio_ci_low", "ratio_ci_high", "slowdown", "sampling_sd_log", "run_noise_sd_log",
               "base_samples", "new_samples", "key")


def csv_columns(records: list[dict]) -> list[str]:
    """CSV_COLUMNS, with the median columns of any unit other than seconds after them."""
    extra = [k for r in records for k in r if k not in CSV_COLUMNS]
    return list(CSV_COLUMNS) + list(dict.fromkeys(extra))


def to_json_dict(cmp: Comparison, only_changed: bool = False) -> dict:
    return {
        "base": cmp.base_label,
        "new": cmp.new_label,
        "factor": cmp.factor,
        "alpha": cmp.alpha,
        "bootstrap_resamples": cmp.resamples,
        "interval_level": cmp.level,
        "run_noise_sd_log": cmp.run_noise,
        "run_noise_source": cmp.run_noise_source,
        "family_run_noise_sd_log": cmp.family_run_noise,
        "strict": cmp.strict,
        "comparable": cmp.comparable,
        "not_comparable_reasons": list(cmp.not_comparable_reasons),
        "notes": list(cmp.notes),
        "counts": cmp.counts(),
        "families": [{"group": f.group, "n_compared": f.n_compared, "geomean_slowdown": f.geomean_slowdown,
                      "counts": f.counts} for f in cmp.families()],
        "cases": csv_records(cmp, only_changed),
        "exit_code": cmp.exit_code,
    }
