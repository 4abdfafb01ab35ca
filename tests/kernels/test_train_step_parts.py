"""The training step's parts as kernel cases (kernels.train_step.part_cases): they are the
step's GEMMs, the two transposed backward loops compute the step's values, and the compiled
step still runs what the closing-the-loop check prices it from: one dot per weight and pass,
the SwiGLU gate's gradient written transposed in its loop, the logit gradient padded then
transposed. (The GEMM layouts' own products: tests/kernels/test_matmul_check.py.)"""
import re

import jax
import jax.numpy as jnp
import optax
import pytest

from kernels.train_step import (TinyLlama, logits_grad_case, make_step, part_cases, step_gemms,
                                swiglu_gate_grad_case, init_params)

SMALL = TinyLlama(layers=2, hidden=64, ffn=192, heads=2, kv_heads=1, vocab=512, seq_len=32, batch=2)


def _run(case, fn=None):
    f, args = case.make(jax.random.key(3))
    out = jax.jit(fn or f)(*args)
    err, tol, _ = case.check(args, out)
    return err, tol


def test_the_part_gemms_are_the_steps_three_per_weight():
    cases = [c for c in part_cases(SMALL, "fp32") if c.group == "matmul_model"]
    want = {(s, layout) for g in step_gemms(SMALL) for _, s, layout in g.passes()}
    got = {((c.params["m"], c.params["n"], c.params["k"]), c.params.get("layout", "nn")) for c in cases}
    assert got == want and len(cases) == 3 * len(step_gemms(SMALL))
    # every weight's three GEMMs, and nothing else: 7 per layer and the head
    assert sum(g.count for g in step_gemms(SMALL)) == 7 * SMALL.layers + 1


@pytest.mark.parametrize("make_case", [swiglu_gate_grad_case, logits_grad_case])
def test_the_transposed_loops_compute_the_steps_values(make_case):
    err, tol = _run(make_case(SMALL))
    assert err < tol


def test_a_wrong_gradient_or_pad_fails():
    case = swiglu_gate_grad_case(SMALL)
    _, args = case.make(jax.random.key(3))
    sig, dh, g, u = args
    wrong = (dh * u * sig).T  # the silu derivative's second term lost
    assert case.check(args, wrong)[0] > case.check(args, wrong)[1]
    lcase = logits_grad_case(SMALL)
    fn, (d,) = lcase.make(jax.random.key(3))
    shifted = jnp.pad(d, ((0, 0), (1, 0), (0, 0))).reshape(-1, SMALL.vocab)  # padded at the front
    assert lcase.check((d,), (shifted, shifted.T))[0] > lcase.check((d,), (shifted, shifted.T))[1]


# ------------------------------------------------------------------ the compiled step

def _entry_ops(text: str) -> list[str]:
    return text[text.index("\nENTRY"):].splitlines()


def _fused(text: str, line: str) -> str:
    name = re.search(r"calls=%([\w.\-]+)", line).group(1)
    start = text.index(f"\n%{name} ")
    return text[start:text.index("\n}", start)]


@pytest.fixture(scope="module")
def compiled_step():
    m = TinyLlama()  # the suite's own step: what XLA fuses depends on the shapes
    opt = optax.adamw(3e-4, weight_decay=0.1)
    params = init_params(m, jax.random.key(0))
    tokens = jnp.zeros((m.batch, m.seq_len), jnp.int32)
    text = jax.jit(make_step(m, jnp.float32, opt)).lower(params, opt.init(params), tokens).compile().as_text()
    return m, text


def test_the_compiled_step_runs_one_dot_per_weight_and_pass(compiled_step):
    m, text = compiled_step
    dots = re.findall(r"= f32\[([\d,]+)\]\{[\d,]+\} dot\(", text)
    shapes = {tuple(int(d) for d in s.split(",")) for s in dots}
    t = m.batch * m.seq_len
    for g in step_gemms(m):
        for _, (mm, nn, _k), _ in g.passes():
            assert (mm, nn) in shapes, (g.name, mm, nn)
    # no merged projection: Q, K and V's outputs (256 + 2 x 128) or gate and up's (2 x 704)
    kv = m.kv_heads * m.head_dim
    assert (t, m.hidden + 2 * kv) not in shapes and (t, 2 * m.ffn) not in shapes
    two_d = [s for s in dots if s.count(",") == 1]
    assert len(two_d) == 3 * (7 * m.layers + 1)  # the attention's batched dots are 4-d


def test_the_compiled_step_writes_the_gradients_transposed_as_the_cases_do(compiled_step):
    """One loop per layer computes the SwiGLU gate's gradient from four inputs and writes it
    transposed; the logit gradient is padded in one loop and that is transposed in another."""
    m, text = compiled_step
    t = m.batch * m.seq_len
    swiglu, logits, fused_pad = 0, 0, 0
    pads = {re.search(r"%([\w.\-]+) =", line).group(1) for line in _entry_ops(text)
            if re.search(r"= f32\[[\d,]+\]\{[\d,]+\} fusion\(", line) and " pad(" in _fused(text, line)}
    for line in _entry_ops(text):
        if "kind=kLoop" not in line:
            continue
        body = _fused(text, line)
        if " transpose(" not in body:
            continue
        out = re.search(r"= f32\[([\d,]+)\]", line).group(1)
        inputs = len(re.findall(r" parameter\(\d+\)", body))
        if out == f"{m.ffn},{t}" and inputs == 4 and " subtract(" in body:
            swiglu += 1  # dG = dH·U·σ(G)·(1 + G·(1 − σ(G))), read from σ(G), dH, G, U
        if out == f"{m.vocab},{t}":
            operands = re.search(r"fusion\(([^)]*)\)", line).group(1)
            logits += any(f"%{p}" in operands.split(", ") for p in pads)
            fused_pad += " pad(" in body
    assert (swiglu, logits, fused_pad) == (m.layers, 1, 0)
