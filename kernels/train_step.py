"""One training step of a small Llama-style decoder (RMSNorm, GQA attention, SwiGLU MLP,
untied LM head), with optax AdamW, compiled as one program: forward, backward, update.

Its dimensions travel in the case's params so the projection engine can rebuild the same
model from the result set and predict this step's time from the same run's kernel
measurements (the closing-the-loop check).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kernels.base import DTYPES, Case


@dataclass(frozen=True)
class TinyLlama:
    layers: int = 4
    hidden: int = 256
    ffn: int = 704  # SwiGLU at about 8/3 of hidden, rounded to a multiple of 64 (Llama's habit)
    heads: int = 4
    kv_heads: int = 2
    vocab: int = 4096
    seq_len: int = 256
    batch: int = 4

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def matmul_params(m: TinyLlama) -> int:
    """Weights that take part in matmuls: per layer Q, K, V, O and the three SwiGLU matrices,
    plus the LM head. The embedding is a lookup, not a matmul, so it is not counted."""
    kv = m.kv_heads * m.head_dim
    per_layer = m.hidden * m.hidden * 2 + 2 * m.hidden * kv + 3 * m.hidden * m.ffn
    return m.layers * per_layer + m.hidden * m.vocab


def train_step_flops(m: TinyLlama) -> float:
    """Model FLOPs of one step, the project's MFU definition (PaLM, arXiv 2204.02311 app. B):
    6 per matmul weight per token (forward 2, backward 4), plus attention QK^T and PV at
    4·B·T²·D per layer forward, times 3 for forward and backward, with the full T² (PaLM does
    not halve causal attention; the attention kernel cases do, as useful work). No recompute."""
    tokens = m.batch * m.seq_len
    attention = 3 * 4 * m.batch * m.seq_len**2 * m.hidden * m.layers
    return 6.0 * matmul_params(m) * tokens + attention


def init_params(m: TinyLlama, key) -> dict:
    ks = iter(jax.random.split(key, 3 + 7 * m.layers))
    kv = m.kv_heads * m.head_dim

    def w(shape, fan_in):
        return jax.random.normal(next(ks), shape, jnp.float32) / np.sqrt(fan_in)

    layers = []
    for _ in range(m.layers):
        layers.append({
            "norm1": jnp.ones((m.hidden,)), "norm2": jnp.ones((m.hidden,)),
            "wq": w((m.hidden, m.hidden), m.hidden), "wk": w((m.hidden, kv), m.hidden),
            "wv": w((m.hidden, kv), m.hidden), "wo": w((m.hidden, m.hidden), m.hidden),
            "w_gate": w((m.hidden, m.ffn), m.hidden), "w_up": w((m.hidden, m.ffn), m.hidden),
            "w_down": w((m.ffn, m.hidden), m.ffn),
        })
    return {"embed": w((m.vocab, m.hidden), 1.0) * 0.02, "layers": layers,
            "norm_f": jnp.ones((m.hidden,)), "head": w((m.hidden, m.vocab), m.hidden)}


def _rmsnorm(x, g, eps=1e-6):
    x32 = x.astype(jnp.float32)
    return (x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + eps) * g).astype(x.dtype)


def loss_fn(params, tokens, m: TinyLlama, compute_dtype):
    """Next-token cross-entropy. Weights are kept in fp32 and cast to the compute dtype."""
    c = lambda a: a.astype(compute_dtype)  # noqa: E731
    b, t = tokens.shape
    x = c(params["embed"])[tokens]
    for lp in params["layers"]:
        h = _rmsnorm(x, lp["norm1"])
        q = (h @ c(lp["wq"])).reshape(b, t, m.heads, m.head_dim)
        k = (h @ c(lp["wk"])).reshape(b, t, m.kv_heads, m.head_dim)
        v = (h @ c(lp["wv"])).reshape(b, t, m.kv_heads, m.head_dim)
        a = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
        x = x + a.reshape(b, t, m.hidden) @ c(lp["wo"])
        h = _rmsnorm(x, lp["norm2"])
        x = x + (jax.nn.silu(h @ c(lp["w_gate"])) * (h @ c(lp["w_up"]))) @ c(lp["w_down"])
    logits = (_rmsnorm(x, params["norm_f"]) @ c(params["head"])).astype(jnp.float32)
    targets = jnp.roll(tokens, -1, axis=1)
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], targets[:, :-1]).mean()


def make_step(m: TinyLlama, compute_dtype, optimizer):
    def step(params, opt_state, tokens):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, m, compute_dtype)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def train_step_case(m: TinyLlama = TinyLlama(), dtype: str = "fp32", optimizer=None) -> Case:
    """`optimizer` defaults to AdamW (lr 3e-4, weight decay 0.1); tests pass a broken one."""
    compute_dtype = DTYPES[dtype]
    optimizer = optimizer or optax.adamw(3e-4, weight_decay=0.1)
    step = make_step(m, compute_dtype, optimizer)

    def make(key):
        kp, kt = jax.random.split(key)
        params = init_params(m, kp)
        tokens = jax.random.randint(kt, (m.batch, m.seq_len), 0, m.vocab)
        # The step's first argument is the token batch so the harness's device loop (which
        # nudges the first argument) would perturb data, not weights; in practice a step is
        # long enough to be timed with host dispatches.
        fn = lambda tok, p, s: step(p, s, tok)  # noqa: E731
        return fn, (tokens, params, optimizer.init(params))

    def check(args, out):
        """The loss at initialisation must be close to ln(vocab) + 1/2 (near-uniform predictions),
        and the loss at the updated weights, on the same batch, must be lower: the gradients
        and the optimiser really learn. (A forward pass, so the check compiles a third of a
        step rather than a whole second one.)"""
        tokens, params, opt_state = args
        new_params, new_state, loss0 = out
        # RMS-normed features into a head initialised at 1/sqrt(fan_in) give unit-variance
        # logits, and the log-sum-exp of V iid N(0, 1) logits averages ln V + 1/2
        expected = float(np.log(m.vocab)) + 0.5
        err = abs(float(loss0) - expected) / expected
        loss1 = jax.jit(loss_fn, static_argnums=(2, 3))(new_params, tokens, m, compute_dtype)
        what = "|initial loss - expected| / expected, expected = ln(vocab) + 1/2; fails outright if the step does not lower the loss"
        if not float(loss1) < float(loss0):
            return float("inf"), 0.1, what
        return err, 0.1, what

    tokens = m.batch * m.seq_len
    return Case(
        name=f"train_step/tiny-llama/{dtype}/l{m.layers}-d{m.hidden}-t{m.seq_len}-b{m.batch}",
        group="train_step",
        params={**asdict(m), "dtype": dtype, "optimizer": "adamw", "attention": "xla-causal",
                "matmul_params": matmul_params(m), "tokens_per_step": tokens},
        make=make,
        flops=train_step_flops(m),
        # fp32 weights, grads and two Adam moments, read and written once per step: a floor
        bytes=float(matmul_params(m) + m.vocab * m.hidden) * 4 * 6,
        peak_dtype=dtype,
        check=check,
    )
