"""One training step of a small Llama-style decoder (RMSNorm, GQA attention, SwiGLU MLP,
untied LM head), with optax AdamW, compiled as one program: forward, backward, update.

Its dimensions travel in the case's params so the projection engine can rebuild the same
model from the result set and predict this step's time from the same run's kernel
measurements (the closing-the-loop check).
"""
from __future__ import annotations

from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kernels.tiny_llama import (ATTENTION_IMPL, FUSION_GROUP, GEMM_PASSES, StepGemm,  # noqa: F401
                                TinyLlama, step_gemms)
from kernels.base import (DTYPES, ROUNDING_EXCESS_METRIC, TOLERANCE, Case, itemsize, random_array,
                          rounding_excess)


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


# ------------------------------------------------------------------ the step's parts as kernels
# The closing-the-loop check (harness.studies.closing_loop) prices this step from kernel cases
# of the same run. These are the step's own parts, measured alone at its shapes: its GEMMs in
# the three layouts a weight's GEMMs run in, its attention, and the two backward fusions XLA:CPU
# writes transposed. harness.suites adds them to the CPU suites.

def gemm_part_cases(m: TinyLlama, dtype: str) -> list[Case]:
    """Every GEMM shape and layout the step runs, as matmul cases (group matmul_model)."""
    from kernels.matmul import matmul_case

    t = m.batch * m.seq_len
    return [matmul_case(*shape, dtype, label=f"tiny-llama/{g.name}/{p}/t{t}", group="matmul_model",
                        layout=layout)
            for g in step_gemms(m) for p, shape, layout in g.passes()]


def attention_part_case(m: TinyLlama, dtype: str) -> Case:
    """The step's attention at its own shape (batch, sequence, query and KV heads, head dim):
    causal forward+backward of the implementation the step calls."""
    from kernels.attention import attention_case

    return attention_case(m.batch, m.seq_len, m.heads, m.kv_heads, m.head_dim, True, "fwd_bwd",
                          ATTENTION_IMPL["xla-causal"], dtype)


def _swiglu_gate_grad_t(sig, dh, g, u):
    """The gradient of silu(G)·U with respect to G, from σ(G) saved by the forward, transposed."""
    a = dh * u
    return jnp.transpose(a * sig + g * a * sig * (1 - sig))


def swiglu_gate_grad_case(m: TinyLlama, dtype: str = "fp32") -> Case:
    """The SwiGLU gate's gradient dG = dH·U·(σ(G) + G·σ(G)·(1 − σ(G))) written transposed (ffn x
    tokens), as XLA:CPU computes it in the step's backward. The gate's weight-gradient GEMM
    (dW = Hᵀ·dG) takes dG transposed, and XLA fuses that transpose into the elementwise loop
    that computes dG, which then reads its four inputs (σ(G) saved by the forward, dH, G, U:
    tokens x ffn each) across their rows. The loop the compiled step runs (one per layer) has
    these four inputs and this output; on the 2-core CPU it took 9.6 ms against 0.40 ms for the
    same loop written untransposed (jax 0.10.2, 2026-12-08)."""
    t, f = m.batch * m.seq_len, m.ffn
    elems = t * f

    def make(key):
        ks = jax.random.split(key, 4)
        g = random_array(ks[0], (t, f), dtype)
        sig = jax.nn.sigmoid(g)
        return _swiglu_gate_grad_t, (sig, random_array(ks[1], (t, f), dtype), g,
                                     random_array(ks[2], (t, f), dtype))

    def check(args, out):
        s, dh, g, u = (np.asarray(x, dtype=np.float64) for x in args)
        ref = (dh * u * (s + g * s * (1 - s))).T
        return rounding_excess(out, ref, dtype), TOLERANCE[dtype], ROUNDING_EXCESS_METRIC + ", float64 reference"

    return Case(
        name=f"{FUSION_GROUP}/swiglu_gate_grad_t/{dtype}/t{t}-f{f}", group=FUSION_GROUP,
        params={"op": "swiglu_gate_grad_t", "tokens": t, "ffn": f, "dtype": dtype},
        make=make, flops=6.0 * elems, bytes=5.0 * elems * itemsize(dtype), peak_dtype=None,
        check=check)


def _logits_grad_pad_t(d):
    b, t1, v = d.shape
    padded = jnp.pad(d, ((0, 0), (0, 1), (0, 0))).reshape(b * (t1 + 1), v)
    return padded, jnp.transpose(padded)


def logits_grad_case(m: TinyLlama, dtype: str = "fp32") -> Case:
    """The loss's gradient on the logits as the step's backward hands it to the LM head's two
    GEMMs: the loss reads logits[:, :-1] (the last position has no next token), so its gradient
    (batch x seq-1 x vocab) is padded back to every position with zeros (tokens x vocab, for
    dX = dLogits·Wᵀ), and that is transposed (vocab x tokens) for dW = Xᵀ·dLogits. Two passes
    over the vocab-wide gradient that clusters.train's 16 bytes per logit do not count. The
    compiled step pads in one loop and transposes the result in another, as this case does (had
    XLA fused the pad into the transpose, that loop alone would take 23 ms on the 2-core CPU,
    against 1.8 + 3.3 ms apart)."""
    b, t1, v = m.batch, m.seq_len - 1, m.vocab

    def make(key):
        return _logits_grad_pad_t, (random_array(key, (b, t1, v), dtype),)

    def check(args, out):
        d = np.asarray(args[0], dtype=np.float64)
        ref = np.pad(d, ((0, 0), (0, 1), (0, 0))).reshape(b * (t1 + 1), v)
        err = max(rounding_excess(out[0], ref, dtype), rounding_excess(out[1], ref.T, dtype))
        return err, TOLERANCE[dtype], ROUNDING_EXCESS_METRIC + ", float64 reference"

    return Case(
        name=f"{FUSION_GROUP}/logits_grad_pad_t/{dtype}/b{b}-t{m.seq_len}-v{v}", group=FUSION_GROUP,
        params={"op": "logits_grad_pad_t", "batch": b, "seq_len": m.seq_len, "vocab": v, "dtype": dtype},
        make=make, flops=0.0,
        # the pad reads the gradient and writes it padded; the transpose reads and writes that
        bytes=float(b * v * (t1 + 3 * (t1 + 1)) * itemsize(dtype)), peak_dtype=None, check=check)


def part_cases(m: TinyLlama, dtype: str) -> list[Case]:
    """The step's parts the closing-the-loop check prices it from (see above)."""
    return (gemm_part_cases(m, dtype) + [attention_part_case(m, dtype)]
            + [swiglu_gate_grad_case(m, dtype), logits_grad_case(m, dtype)])
