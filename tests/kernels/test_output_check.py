"""The rounding-aware output check (kernels.base.rounding_excess): a correctly rounded bf16
output scores 0 at the GPU suite's sizes, where the old max|out-ref|/rms(ref) failed causal
attention at 4K and 8K tokens and RMSNorm at 8192 columns; a real bf16 kernel (XLA on this CPU)
passes with a wide margin; and a wrong mask, a wrong scale and swapped operands still fail."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.attention import attention_case, attention_reference, reference_attention
from kernels.base import relative_error, rounding_excess
from kernels.matmul import matmul_case
from kernels.membw import _rmsnorm_reference, rmsnorm_case

SUITE_SEQS = (1024, 2048, 4096, 8192)  # harness/suites.py, the GPU default suite


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.parametrize("t", SUITE_SEQS)
def test_correct_bf16_attention_passes_at_every_suite_length(t):
    """Causal forward, one query head (the error is per row: more heads or batches only add
    rows), at the suite's sequence lengths: the fp32 reference rounded to bf16 scores 0, where
    the old metric failed it at 4K and 8K (0.104 and 0.130 on this seed), and XLA's bf16 kernel
    passes with a wide margin."""
    case = attention_case(1, t, 1, 1, 128, True, "fwd", "xla", "bf16")
    fn, args = case.make(jax.random.key(t))
    ref = attention_reference(args, True, "fwd")
    rounded = ref.astype(jnp.bfloat16)
    err, tol, metric = case.check(args, rounded)
    assert err == 0.0 and "ulp" in metric
    old = relative_error(np.asarray(rounded.astype(jnp.float32)), np.asarray(ref))
    assert (old > tol) == (t >= 4096), old
    err, tol, _ = case.check(args, jax.jit(fn)(*args))
    assert err < tol / 5, err


@pytest.mark.parametrize("causal", [True, False])
def test_correct_bf16_attention_forward_backward_passes(causal):
    """Output, dQ, dK and dV of XLA's bf16 kernel (bf16 P and dS inside) against the fp32
    reference: 0.008-0.013 of a row at every length from 1K to 8K when measured once on this
    CPU with two heads; kept at 1K here for time."""
    case = attention_case(1, 1024, 2, 1, 128, causal, "fwd_bwd", "xla", "bf16")
    fn, args = case.make(jax.random.key(11))
    refs = attention_reference(args, causal, "fwd_bwd")
    assert case.check(args, tuple(r.astype(jnp.bfloat16) for r in refs))[0] == 0.0
    err, tol, _ = case.check(args, jax.jit(fn)(*args))
    assert err < tol / 5, err


def test_a_row_small_by_cancellation_is_not_held_to_its_own_size():
    """Causal attention's first dQ row is zero in exact arithmetic (one key: softmax 1, dS 0).
    On an H200 the kernels and the fp32 reference both left rounding noise there, and noise over
    noise (0.2-3) failed every fwd_bwd case. Planted here: fp32-level noise in both rows passes;
    a real error in that row, half the tensor's rms, still fails; and XLA's own bf16 gradients
    at 32 query and 8 KV heads, whose dQ row 1 is small by cancellation, pass."""
    case = attention_case(1, 256, 4, 1, 128, True, "fwd_bwd", "xla", "bf16")
    fn, args = case.make(jax.random.key(3))
    out = [np.asarray(o, np.float64) for o in jax.jit(fn)(*args)]
    ref = [np.asarray(r, np.float64) for r in attention_reference(args, True, "fwd_bwd")]
    rng = np.random.default_rng(0)
    assert np.all(ref[1][:, 0] == 0)  # dQ's first row
    ref[1][:, 0] += 1e-8 * rng.standard_normal(ref[1][:, 0].shape)
    noisy = out[1].copy()
    noisy[:, 0] += 1e-7 * rng.standard_normal(noisy[:, 0].shape)
    tol = case.check(args, tuple(out))[1]
    assert rounding_excess(noisy, ref[1], "bf16") < tol / 5
    whole = np.sqrt(np.mean(ref[1] ** 2))
    wrong = out[1].copy()
    wrong[:, 0, :, 0] += 0.5 * whole
    assert rounding_excess(wrong, ref[1], "bf16") > tol
    gqa = attention_case(1, 1024, 32, 8, 128, True, "fwd_bwd", "xla", "bf16")
    fn, args = gqa.make(jax.random.key(5))
    err, tol, _ = gqa.check(args, jax.jit(fn)(*args))
    assert err < tol / 2, err  # 0.27 against dQ row 1's own size


def _old_metric_on_device(out, ref) -> float:
    """The check this replaced, max|out-ref|/rms(ref), in float32 on the device."""
    out, ref = out.astype(jnp.float32), ref.astype(jnp.float32)
    return float(jnp.max(jnp.abs(out - ref)) / jnp.sqrt(jnp.mean(ref * ref)))


@pytest.mark.slow
def test_correct_bf16_rmsnorm_passes_at_suite_width():
    """The GPU suite's 8192 columns, 4096 of its 16384 rows (rows are independent): the rounded
    reference failed the old metric (0.049 here, 0.053 at the full size; tolerance 0.03)."""
    case = rmsnorm_case(4096, 8192, "bf16")
    fn, args = case.make(jax.random.key(3))
    ref = _rmsnorm_reference(*args, 1e-6)
    rounded = ref.astype(jnp.bfloat16)
    err, tol, _ = case.check(args, rounded)
    assert err == 0.0
    old = _old_metric_on_device(rounded, ref)
    assert old > tol, old
    del ref, rounded
    err, tol, _ = case.check(args, jax.jit(fn)(*args))
    assert err < tol / 10, err


def _planted(kind, causal=True):
    """Attention with one bug, computed like the kernel (bf16 inputs, fp32 softmax)."""
    def f(q, k, v):
        if kind == "swapped_kv":
            return reference_attention(q, v, k, causal)
        if kind == "swapped_qk":
            return reference_attention(k.repeat(q.shape[2] // k.shape[2], axis=2), q[:, :, :k.shape[2]].repeat(
                q.shape[2] // k.shape[2], axis=2), v, causal)
        if kind == "scale_missing":  # logits not divided by sqrt(head_dim)
            return reference_attention(q * np.sqrt(q.shape[-1]).astype(q.dtype), k, v, causal)
        if kind == "scale_1_over_d":  # divided by head_dim instead of its square root
            return reference_attention(q / np.sqrt(q.shape[-1]).astype(q.dtype), k, v, causal)
        if kind == "mask_off_by_one":  # every query also sees the next key
            return _shifted_mask(q, k, v)
        if kind == "mask_missing":
            return reference_attention(q, k, v, False)
        raise ValueError(kind)
    return f


def _shifted_mask(q, k, v):
    n, kh = q.shape[2], k.shape[2]
    k, v = jnp.repeat(k, n // kh, axis=2), jnp.repeat(v, n // kh, axis=2)
    logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=jnp.float32) / np.sqrt(q.shape[-1])
    t = q.shape[1]
    logits = jnp.where(jnp.tril(jnp.ones((t, t), dtype=bool), k=1), logits, -jnp.inf)
    p = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bnts,bsnh->btnh", p.astype(v.dtype), v, preferred_element_type=jnp.float32).astype(q.dtype)


@pytest.mark.parametrize("passes", ["fwd", "fwd_bwd"])
@pytest.mark.parametrize("kind", ["mask_off_by_one", "mask_missing", "scale_missing", "scale_1_over_d",
                                  "swapped_kv", "swapped_qk"])
def test_wrong_attention_fails(kind, passes):
    case = attention_case(1, 256, 2, 2, 64, True, passes, "xla", "bf16")
    _, args = case.make(jax.random.key(5))
    fwd = _planted(kind)
    if passes == "fwd":
        out = jax.jit(fwd)(*args)
    else:
        def fwd_bwd(q, k, v, do):
            o, vjp = jax.vjp(fwd, q, k, v)
            return (o, *vjp(do))
        out = jax.jit(fwd_bwd)(*args)
    err, tol, _ = case.check(args, out)
    assert err > 2 * tol, (kind, err)


@pytest.mark.parametrize("wrong", [
    lambda y: y * 1.01,  # a 1% scale error
    lambda y: y[:, ::-1],  # columns reversed (weight applied to the wrong features)
    lambda y: y.at[:, 0].set(0),  # one feature lost
])
def test_wrong_rmsnorm_fails(wrong):
    case = rmsnorm_case(64, 1024, "bf16")
    fn, args = case.make(jax.random.key(6))
    err, tol, _ = case.check(args, wrong(jax.jit(fn)(*args)))
    assert err > tol, err


def test_bf16_matmul_rounding_is_allowed_and_a_swap_is_not():
    case = matmul_case(128, 128, 1024, "bf16")
    fn, (a, b) = case.make(jax.random.key(7))
    ref = jnp.matmul(a.astype(jnp.float32), b.astype(jnp.float32), precision="highest")
    err, tol, _ = case.check((a, b), ref.astype(jnp.bfloat16))
    assert err < tol / 10
    err, tol, _ = case.check((a, b), jnp.matmul(b[:128], a[:, :128].T, precision="highest").astype(jnp.bfloat16))
    assert err > tol


def test_rounding_excess_closed_forms():
    ref = np.array([[1.0, 3.0, -1.0, 0.0]])
    # bf16 spacing in [1, 2) is 2^-7: an error of half that is rounding, of a whole one is not
    assert rounding_excess(ref + [[2 ** -8, 0, 0, 0]], ref, "bf16") == 0.0
    rms = np.sqrt(np.mean(ref * ref))
    assert rounding_excess(ref + [[2 ** -7, 0, 0, 0]], ref, "bf16") == pytest.approx(2 ** -8 / rms)
    # per row: a row larger than the tensor's rms is judged against its own size, a row a
    # thousand times smaller against the tensor's rms
    two = np.vstack([ref, ref * 1e-3])
    whole = np.sqrt(np.mean(two * two))
    bad = two.copy()
    bad[1, 0] += 0.1e-3
    assert rounding_excess(bad, two, "fp32") == pytest.approx(0.1e-3 / whole, rel=1e-6)
    bad = two.copy()
    bad[0, 0] += 0.1
    assert rounding_excess(bad, two, "fp32") == pytest.approx(0.1 / rms, rel=1e-6)
    assert rounding_excess(np.array([[np.nan, 1.0]]), np.array([[1.0, 1.0]]), "bf16") == np.inf
    # the device path agrees with the host path
    out = ref + [[2 ** -7, 0, 2 ** -6, 0]]
    assert rounding_excess(jnp.asarray(out, jnp.float32), jnp.asarray(ref, jnp.float32), "bf16") == pytest.approx(
        rounding_excess(out, ref, "bf16"))
