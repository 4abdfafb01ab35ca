"""The device loop returns the kernel's own output (the nudge never changes a value). Its
timing properties (dispatch excluded, flat per repetition, agreement with a hand-written loop)
are wall-clock checks: tests/bench/test_timing_properties.py."""
import jax
import numpy as np

from harness.timing import repeat_on_device
from kernels.matmul import matmul_case


def _inputs(n):
    fn, args = matmul_case(n, n, n, "fp32").make(jax.random.key(0))
    return fn, args


def test_device_loop_returns_the_kernels_output():
    fn, args = _inputs(64)
    out = jax.jit(repeat_on_device(fn, 3))(*args)
    # the nudge is 1e-30 times an output element: it never changes a value
    np.testing.assert_allclose(np.asarray(out), np.asarray(fn(*args)), rtol=1e-6)


def test_a_noisy_case_gets_more_samples_within_its_budget():
    """extend_noisy: a quiet case stops at its samples; one that swings between two modes (a
    neighbour coming and going) samples until its median is certain enough, capped by
    max_samples and by the time budget."""
    import itertools

    from harness.stats import log_median_sd
    from harness.timing import TARGET_LOG_RATIO_SD, TimingConfig, extend_noisy

    cfg = TimingConfig(min_time_s=0.01, samples=10, min_samples=10, max_samples=200, max_case_time_s=1.0)
    quiet = [1.0 + 0.001 * i for i in range(10)]
    assert extend_noisy(list(quiet), lambda: 1.0, 0.01, cfg) == quiet
    modes = itertools.cycle([1.0, 2.0, 1.1, 1.9, 1.05])
    noisy = extend_noisy([next(modes) for _ in range(10)], lambda: next(modes), 0.01, cfg)
    assert 10 < len(noisy) <= 200
    assert log_median_sd(noisy) <= TARGET_LOG_RATIO_SD / 2**0.5 or len(noisy) == 200
    # the budget: 5 x 1 s at 0.2 s a sample is 25 samples at most
    capped = extend_noisy([next(modes) for _ in range(10)], lambda: next(modes), 0.2, cfg)
    assert len(capped) <= 25
