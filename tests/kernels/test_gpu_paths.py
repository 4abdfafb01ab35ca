"""GPU-only paths: cuDNN flash attention and fp8 matmul. They skip with a reason elsewhere.
The cases are harness.suites.gpu_test_cases (the staged reference run estimates this stage)."""
import jax
import pytest

from harness.runner import measure_case
from harness.suites import gpu_test_cases
from harness.timing import TimingConfig
from kernels.attention import attention_case
from kernels.matmul import matmul_case

ON_GPU = jax.default_backend() == "gpu"
needs_gpu = pytest.mark.skipif(not ON_GPU, reason="needs an NVIDIA GPU; this machine has none")
CFG = TimingConfig(min_time_s=0.005, samples=5, max_case_time_s=0.5)


GPU_CASES = {c.name: c for c in gpu_test_cases()}


def _case(group, **params):
    return next(c for c in GPU_CASES.values() if c.group == group and all(c.params[k] == v for k, v in params.items()))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("passes", ["fwd", "fwd_bwd"])
def test_cudnn_attention_is_checked_and_faster_than_xla_causal(passes):
    res = {impl: measure_case(_case("attention", impl=impl, **{"pass": passes}), jax.devices()[0], 1, CFG)
           for impl in ("cudnn", "xla")}
    assert res["cudnn"].status == "ok", res["cudnn"].reason
    # cuDNN skips the masked half of causal attention; XLA computes it all
    assert res["cudnn"].stats["median_s"] < res["xla"].stats["median_s"]


@pytest.mark.gpu
@needs_gpu
def test_fp8_matmul_runs_where_supported():
    dev = jax.devices()[0]
    res = measure_case(_case("matmul", dtype="fp8"), dev, 1, CFG)
    if float(dev.compute_capability) < 8.9:
        assert res.status == "skipped"
    else:
        assert res.status == "ok", res.reason
        # what XLA made of it: one cuBLASLt fp8 call with the named fp32 accumulation, and no
        # transpose or copy of B beside it in the timed program
        fn, args = _case("matmul", dtype="fp8").make(jax.random.key(0))
        hlo = jax.jit(fn).lower(*args).compile().as_text()
        assert "cublas$lt$matmul$f8" in hlo, hlo[:2000]
        assert "ALG_DOT_ANY_F8_ANY_F8_F32" in hlo and "FAST_ACCUM" not in hlo
        assert " transpose(" not in hlo and " copy(" not in hlo, hlo[:4000]


def test_gpu_only_cases_skip_with_a_reason_on_cpu():
    if ON_GPU:
        pytest.skip("this machine has a GPU")
    dev = jax.devices()[0]
    for case in (attention_case(1, 128, 4, 2, 128, True, "fwd", "cudnn", "bf16"), matmul_case(64, 64, 64, "fp8")):
        res = measure_case(case, dev, 1, CFG)
        assert res.status == "skipped" and res.reason
