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


def test_sampled_indices_cover_the_edges():
    from kernels.matmul import _spread

    idx = _spread(1000, 64)
    assert idx[0] == 0 and idx[-1] == 999 and len(idx) == 64
    assert list(_spread(5, 64)) == [0, 1, 2, 3, 4]
