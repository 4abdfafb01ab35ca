"""Summary statistics of timing samples: median, IQR, a distribution-free CI of the median.

Timing samples are skewed (a floor and a tail), so the summaries are order statistics, not
mean and standard deviation; the mean and stddev are kept only for pytest-benchmark readers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# A spread above this (IQR / median) makes the run warn: the median is then not trustworthy
# to the few-percent level that regression verdicts need.
LARGE_SPREAD_IQR_OVER_MEDIAN = 0.10


@dataclass(frozen=True)
class Summary:
    n: int
    median_s: float
    q1_s: float
    q3_s: float
    iqr_s: float
    ci95_low_s: float
    ci95_high_s: float
    ci95_coverage: float  # the exact coverage of the order-statistic interval (>= 0.95 when n >= 6)
    mean_s: float
    stddev_s: float
    min_s: float
    max_s: float

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def relative_iqr(self) -> float:
        return self.iqr_s / self.median_s if self.median_s > 0 else float("inf")


def median_ci(sorted_samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    The number of samples below the true median is Binomial(n, 1/2), so the interval between
    order statistics x_(j) and x_(k) (1-based) covers the median with probability
    P(j <= B < k). We take the narrowest symmetric pair reaching `confidence`; with too few
    samples (n < 6 for 95%) no pair does, and we return (min, max) with its real coverage.
    Returns (low, high, coverage).
    """
    x = np.asarray(sorted_samples, dtype=float)
    n = x.size
    if n == 0:
        raise ValueError("no samples")
    if n == 1:
        return float(x[0]), float(x[0]), 0.0
    best = (float(x[0]), float(x[-1]), float(1.0 - 2.0 * 0.5**n))
    # j counts from the outside in; coverage of [x_(j), x_(n+1-j)] is P(j <= B <= n-j).
    for j in range(1, n // 2 + 1):
        coverage = binomial_half_mass(n, j, n - j)
        if coverage < confidence:
            break
        best = (float(x[j - 1]), float(x[n - j]), coverage)
    return best


def binomial_half_mass(n: int, lo: int, hi: int) -> float:
    """P(lo <= B <= hi) for B ~ Binomial(n, 1/2), summed exactly in integers (tested against
    scipy.stats.binom; kept here so loading a result set does not import SciPy)."""
    return sum(math.comb(n, i) for i in range(lo, hi + 1)) / 2**n  # int / int: correctly rounded


def padded_sorted(sample_lists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    n = np.array([len(s) for s in sample_lists])
    out = np.full((len(sample_lists), int(n.max())), np.nan)
    for i, s in enumerate(sample_lists):
        out[i, : len(s)] = np.sort(s)
    return out, n


def row_medians(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """numpy's median of each row of a NaN-padded sorted array with n[i] valid entries."""
    rows = np.arange(len(n))
    return 0.5 * (x[rows, (n - 1) // 2] + x[rows, n // 2])


def bootstrap_medians(sample_lists: list[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap medians, shape (cases, resamples), in O(resamples) per case instead of O(n*resamples).

    A bootstrap resample draws x_sorted[floor(n*V)] for uniform V, and floor is monotone, so the
    m-th smallest resampled value is x_sorted[floor(n*U_(m))] with U_(m) ~ Beta(m, n-m+1), the
    m-th order statistic of n uniforms. Given U_(m) = u, the next one is u + (1-u)*Beta(1, n-m),
    and Beta(1, k) is 1 - V**(1/k). Those two draws give exactly the bootstrap distribution of
    numpy's median (the mean of the two middle values for even n) without building any resample.
    """
    x, n = padded_sorted(sample_lists)
    m = ((n + 1) // 2)[:, None]  # lower middle rank, 1-based
    nn = n[:, None]
    u_m = rng.beta(m, nn - m + 1, size=(len(n), resamples))
    i_lo = np.minimum(np.floor(nn * u_m).astype(np.int64), nn - 1)
    out = np.take_along_axis(x, i_lo, axis=1)
    even = np.flatnonzero(n % 2 == 0)
    if even.size:  # odd n: the median is the single middle value, no second draw
        ne, me = nn[even], m[even]
        u_next = 1.0 - (1.0 - u_m[even]) * rng.random((even.size, resamples)) ** (1.0 / (ne - me))
        i_hi = np.minimum(np.floor(ne * u_next).astype(np.int64), ne - 1)
        out[even] = 0.5 * (out[even] + np.take_along_axis(x[even], i_hi, axis=1))
    return out



# Fixed: the same samples always give the same answer (the runner's stopping rule).
_LOG_MEDIAN_SD_SEED = 20261130


def log_median_sd(samples, resamples: int = 1000) -> float:
    """The bootstrap standard deviation of log(median), by the estimator compare uses for its
    intervals (bootstrap_medians). Unlike a normal-theory formula from the IQR, it grows when
    the samples split into two modes (a busy neighbour coming and going) and the median jumps
    between them."""
    x = np.asarray(samples, dtype=float)
    if x.size < 3 or not (x > 0).all():
        return math.inf
    draws = bootstrap_medians([x], resamples, np.random.default_rng(_LOG_MEDIAN_SD_SEED))[0]
    return float(np.log(draws).std())


def summarize(samples_s) -> Summary:
    x = np.sort(np.asarray(samples_s, dtype=float))
    if x.size == 0:
        raise ValueError("no samples")
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    low, high, cov = median_ci(x)
    return Summary(
        n=int(x.size),
        median_s=float(med),
        q1_s=float(q1),
        q3_s=float(q3),
        iqr_s=float(q3 - q1),
        ci95_low_s=low,
        ci95_high_s=high,
        ci95_coverage=cov,
        mean_s=float(x.mean()),
        stddev_s=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min_s=float(x[0]),
        max_s=float(x[-1]),
    )


def pytest_benchmark_stats(samples_s, reps_per_sample: int) -> dict:
    """The `stats` block pytest-benchmark writes, so `pytest-benchmark compare` reads our files.

    `data` holds per-call seconds (each sample's time divided by its repetitions), which is what
    pytest-benchmark stores for its own rounds.
    """
    x = np.asarray(samples_s, dtype=float)
    s = summarize(x)
    iqr_lo, iqr_hi = s.q1_s - 1.5 * s.iqr_s, s.q3_s + 1.5 * s.iqr_s
    sd_lo, sd_hi = s.mean_s - s.stddev_s, s.mean_s + s.stddev_s
    iqr_out = int(((x < iqr_lo) | (x > iqr_hi)).sum())
    sd_out = int(((x < sd_lo) | (x > sd_hi)).sum())
    inside = x[(x >= iqr_lo) & (x <= iqr_hi)]
    return {
        "min": s.min_s,
        "max": s.max_s,
        "mean": s.mean_s,
        "stddev": s.stddev_s,
        "rounds": s.n,
        "median": s.median_s,
        "iqr": s.iqr_s,
        "q1": s.q1_s,
        "q3": s.q3_s,
        "iqr_outliers": iqr_out,
        "stddev_outliers": sd_out,
        "outliers": f"{sd_out};{iqr_out}",
        "ld15iqr": float(inside.min()) if inside.size else s.min_s,
        "hd15iqr": float(inside.max()) if inside.size else s.max_s,
        "ops": 1.0 / s.mean_s if s.mean_s > 0 else 0.0,
        "total": float(x.sum() * reps_per_sample),
        "data": [float(v) for v in x],
        "iterations": int(reps_per_sample),
    }
