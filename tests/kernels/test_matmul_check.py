"""The matmul output check: it passes true products and catches wrong ones, on sampled rows
and columns."""
import jax
import jax.numpy as jnp
import pytest

from kernels.matmul import matmul_case


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_true_product_passes(dtype):
    case = matmul_case(96, 200, 128, dtype)
    fn, args = case.make(jax.random.key(1))
    err, tol, _ = case.check(args, jax.jit(fn)(*args))
    assert err < tol


@pytest.mark.parametrize("wrong", [
    lambda out, a, b: out * 1.01,  # a 1% scale error (e.g. a bad accumulation type)
    lambda out, a, b: jnp.matmul(b, a, precision="highest"),  # operands swapped: B @ A
    lambda out, a, b: out.at[:, ::2].set(0),  # half the columns lost
])
def test_wrong_products_fail(wrong):
    case = matmul_case(128, 128, 128, "fp32")
    fn, (a, b) = case.make(jax.random.key(2))
    out = wrong(jax.jit(fn)(a, b), a, b)
    err, tol, _ = case.check((a, b), out)
    assert err > tol


def _run(case, fn=None):
    f, args = case.make(jax.random.key(3))
    err, tol, _ = case.check(args, jax.jit(fn or f)(*args))
    return err, tol


@pytest.mark.parametrize("layout", ["nn", "nt", "tn"])
def test_each_layout_computes_its_product(layout):
    """A training step's three GEMMs of one weight: forward, input gradient (B read transposed),
    weight gradient (A read transposed)."""
    err, tol = _run(matmul_case(96, 80, 112, "fp32", layout=layout))
    assert err < tol


@pytest.mark.parametrize("layout, wrong", [
    ("nt", lambda a, b: a @ b),  # B used as stored, not transposed
    ("tn", lambda a, b: a @ b),  # A used as stored
    ("nn", lambda a, b: a.T @ b),
])
def test_a_layout_read_the_wrong_way_fails(layout, wrong):
    err, tol = _run(matmul_case(64, 64, 64, "fp32", layout=layout), wrong)
    assert err > tol


def test_sampled_indices_cover_the_edges():
    from kernels.matmul import _spread

    idx = _spread(1000, 64)
    assert idx[0] == 0 and idx[-1] == 999 and len(idx) == 64
    assert list(_spread(5, 64)) == [0, 1, 2, 3, 4]


def _cuda_module(case) -> str:
    """The case's program lowered for CUDA (StableHLO), which needs no GPU."""
    from jax import export

    fn, args = case.make(jax.random.key(0))
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
    return export.export(jax.jit(fn), platforms=["cuda"])(*shapes).mlir_module()


def test_fp8_names_fp32_accumulation_and_needs_no_transpose():
    """At default precision XLA would choose cuBLASLt's fast fp8 accumulation; the case asks for
    fp32 accumulation by name, and B arrives N x K, contracted on its last axis (cuBLASLt's fp8
    layout), so no transpose sits inside the timed program."""
    case = matmul_case(256, 128, 512, "fp8")
    text = _cuda_module(case)
    dots = [line for line in text.splitlines() if "stablehlo.dot_general" in line]
    assert len(dots) == 1
    assert "accumulation_type = f32" in dots[0] and "allow_imprecise_accumulation = false" in dots[0]
    assert "contracting_dims = [1] x [1]" in dots[0]
    assert "stablehlo.transpose" not in text
    assert case.params["b_layout"] == "nk" and "fp32" in case.params["accumulation"]
    # the planted fault: the same product written as a @ b on a K x N B, at default precision
    planted = matmul_case(256, 128, 512, "bf16")
    dot = next(line for line in _cuda_module(planted).splitlines() if "stablehlo.dot_general" in line)
    assert "algorithm" not in dot and "contracting_dims = [1] x [0]" in dot


def test_fp8_check_reads_b_in_its_layout():
    """The check on an N x K B: the true product passes, B used as if it were K x N fails."""
    case = matmul_case(64, 64, 64, "fp8")
    _, (a, b_nk) = case.make(jax.random.key(4))
    a32, b32 = a.astype(jnp.float32), b_nk.astype(jnp.float32)
    good = jnp.matmul(a32, b32.T, precision="highest").astype(jnp.bfloat16)
    err, tol, _ = case.check((a, b_nk), good)
    assert err < tol
    wrong = jnp.matmul(a32, b32, precision="highest").astype(jnp.bfloat16)
    assert case.check((a, b_nk), wrong)[0] > tol
