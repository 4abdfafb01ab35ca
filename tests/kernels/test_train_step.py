"""The training-step case: its FLOP count by hand, and a check that catches a step that does
not learn."""
import jax
import optax
import pytest

from kernels.train_step import TinyLlama, matmul_params, train_step_case, train_step_flops

SMALL = TinyLlama(layers=1, hidden=64, ffn=128, heads=2, kv_heads=1, vocab=256, seq_len=32, batch=2)


def test_flops_by_hand():
    m = SMALL
    # per layer: Q and O 64x64 each, K and V 64x32 each, three 64x128 SwiGLU matrices; head 64x256
    assert matmul_params(m) == (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128) + 64 * 256
    tokens = 2 * 32
    attention = 3 * 4 * 2 * 32**2 * 64 * 1  # full T^2 (PaLM), forward and backward
    assert train_step_flops(m) == 6 * matmul_params(m) * tokens + attention


def _check(case):
    fn, args = case.make(jax.random.key(0))
    return case.check(args, jax.jit(fn)(*args))


def test_a_learning_step_passes_the_check():
    err, tol, _ = _check(train_step_case(SMALL))
    assert err < tol


def test_a_step_that_does_not_learn_fails_the_check():
    err, tol, what = _check(train_step_case(SMALL, optimizer=optax.sgd(0.0)))
    assert err == float("inf") and "does not lower the loss" in what


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_params_carry_the_model_for_the_projection(dtype):
    p = train_step_case(SMALL, dtype).params
    assert (p["layers"], p["hidden"], p["vocab"], p["seq_len"], p["batch"], p["dtype"]) == (1, 64, 256, 32, 2, dtype)
    assert p["tokens_per_step"] == 64
