"""Statistics against scipy/numpy on known samples."""
import numpy as np
import pytest
from scipy import stats as sps

from harness.stats import binomial_half_mass, median_ci, pytest_benchmark_stats, summarize


def test_summary_matches_numpy_on_known_samples():
    x = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 6.0]
    s = summarize(x)
    assert s.median_s == 4.0
    assert s.q1_s == pytest.approx(np.percentile(x, 25))
    assert s.q3_s == pytest.approx(np.percentile(x, 75))
    assert s.iqr_s == pytest.approx(np.percentile(x, 75) - np.percentile(x, 25))
    assert s.mean_s == pytest.approx(31 / 7)
    assert s.stddev_s == pytest.approx(np.std(x, ddof=1))
    assert (s.min_s, s.max_s, s.n) == (1.0, 10.0, 7)


@pytest.mark.parametrize("n", [6, 7, 10, 21, 50, 101])
def test_median_ci_matches_scipy_quantile_test(n):
    x = np.sort(np.random.default_rng(n).lognormal(size=n))
    low, high, coverage = median_ci(x)
    ref = sps.quantile_test(x, q=np.median(x), p=0.5).confidence_interval(0.95)
    assert (low, high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert coverage >= 0.95


def test_median_ci_small_samples_say_their_real_coverage():
    low, high, coverage = median_ci(np.array([1.0, 2.0, 3.0]))
    assert (low, high) == (1.0, 3.0)
    assert coverage == pytest.approx(0.75)  # 1 - 2 * 0.5**3: not a 95% interval, and it says so


def test_median_ci_covers_the_true_median_about_95_percent():
    rng = np.random.default_rng(0)
    true_median = np.exp(0.0)  # lognormal(0, 1)
    hits = 0
    for _ in range(2000):
        low, high, _ = median_ci(np.sort(rng.lognormal(size=15)))
        hits += low <= true_median <= high
    assert 0.95 <= hits / 2000 <= 0.995  # exact coverage for n=15 is 0.9648


def test_pytest_benchmark_stats_block():
    st = pytest_benchmark_stats([1.0, 2.0, 3.0, 4.0, 100.0], reps_per_sample=3)
    assert st["median"] == 3.0 and st["rounds"] == 5 and st["iterations"] == 3
    assert st["iqr_outliers"] == 1  # 100 is beyond q3 + 1.5 IQR
    assert st["total"] == pytest.approx(110 * 3)
    assert st["data"] == [1.0, 2.0, 3.0, 4.0, 100.0]


@pytest.mark.parametrize("n", [2, 7, 10, 31, 200, 2000])
def testbinomial_half_mass_matches_scipy(n):
    for j in range(1, n // 2 + 1, max(1, n // 20)):
        want = sps.binom.cdf(n - j, n, 0.5) - sps.binom.cdf(j - 1, n, 0.5)
        assert binomial_half_mass(n, j, n - j) == pytest.approx(want, rel=1e-9, abs=1e-15)
