"""The training step's model (kernels/train_step.py) as plain dimensions, and the shapes of the
parts the closing-the-loop check prices it from; no JAX here, so `rackbench show` can project
a stored set's step without loading it (harness.studies.closing_loop)."""
from __future__ import annotations

from dataclasses import dataclass


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


# kernels/train_step.py's `attention` param -> the kernels/attention.py implementation it runs
ATTENTION_IMPL = {"xla-causal": "xla", "cudnn-causal": "cudnn", "jnp-causal": "jnp"}
# the group of the backward loops measured alone (kernels.train_step.swiglu_gate_grad_case,
# logits_grad_case)
FUSION_GROUP = "fusion"
# a weight's three GEMMs: the pass, and the layout (kernels.matmul.LAYOUTS) it runs in
GEMM_PASSES = (("fwd", "nn"), ("dgrad", "nt"), ("wgrad", "tn"))


@dataclass(frozen=True)
class StepGemm:
    """GEMMs of one shape in the step: `name` the weights, (m, n, k) the forward's (tokens, out
    features, in features), `count` such weights per step."""

    name: str
    m: int
    n: int
    k: int
    count: int

    def passes(self) -> list[tuple[str, tuple[int, int, int], str]]:
        """(pass, (m, n, k), layout) of its three GEMMs: forward Y = X·W (tokens x in, in x out),
        input gradient dX = dY·Wᵀ (W read transposed), weight gradient dW = Xᵀ·dY (both read
        across their token rows). Each 2·m·n·k FLOPs."""
        shapes = {"fwd": (self.m, self.n, self.k), "dgrad": (self.m, self.k, self.n),
                  "wgrad": (self.k, self.n, self.m)}
        return [(p, shapes[p], layout) for p, layout in GEMM_PASSES]


def step_gemms(m: TinyLlama) -> list[StepGemm]:
    """The step's GEMMs as loss_fn writes them: one dot per weight (Q, K, V, output projection,
    gate, up and down in every layer, and the LM head), not Megatron's fused QKV and gate-up;
    XLA:CPU does not merge them either (tests/kernels/test_train_step_parts.py counts the dots
    of the compiled step). Weights of one shape share an entry."""
    t, h, f, kv = m.batch * m.seq_len, m.hidden, m.ffn, m.kv_heads * m.head_dim
    return [StepGemm("wq-wo", t, h, h, 2 * m.layers), StepGemm("wk-wv", t, kv, h, 2 * m.layers),
            StepGemm("wgate-wup", t, f, h, 2 * m.layers), StepGemm("wdown", t, h, f, m.layers),
            StepGemm("head", t, m.vocab, h, 1)]
