"""Transformer workloads as data: load and validate model files (clusters/data/models/*.toml).

Model file keys (every number needs a source: the top-level `source`, or a per-key entry in
`[sources]`):

Top level (all required unless marked optional):
  name                  str   the model's name (what `--model` accepts)
  description           str   one line
  source                str   where the numbers come from (paper, model card, config.json)
  n_layers              int   transformer blocks (MoE and dense together; MTP modules excluded)
  hidden_size           int   model width h (residual stream)
  ffn_hidden_size       int   FFN inner size of the dense layers (for SwiGLU: the gate/up width)
  n_heads               int   query heads
  n_kv_heads            int   key/value heads (= n_heads for MHA; fewer for GQA; 1 for MQA);
                              must divide n_heads
  head_dim              int   per-head dimension of Q, K and V (for MLA models: see [mla])
  vocab_size            int   vocabulary rows of the embedding / output layer (padded, as trained)
  activation            str   "swiglu" (3 FFN matrices) or "gelu" (2 FFN matrices)
  tied_embeddings       bool  output layer shares the input embedding's weights
  position_embedding    str   "rope" (no parameters), "learned" (seq_len x hidden parameters) or
                              "none" (no position information: no parameters and no work)
  linear_bias           bool  linear layers and norms carry biases (GPT-2/3 style)
  seq_len               int   default sequence length for projections (pre-training context)
  reported_params       float optional: published total parameter count (checked by tests)
  reported_active_params float optional: published activated parameters per token (MoE)

[sources] (optional)    key = "source" for any key whose source differs from `source`.

[moe] (optional; absent = dense):
  n_routed_experts      int   routed experts per MoE layer
  experts_per_token     int   routed experts each token goes to (top-k); <= n_routed_experts
  n_shared_experts      int   always-active shared experts (0 if none)
  expert_ffn_hidden_size int  inner size of one expert's FFN (same activation as the model)
  n_dense_layers        int   leading layers that use a dense FFN of ffn_hidden_size (< n_layers)
  max_nodes_per_token   int   optional: node-limited routing, a token's experts lie on at most
                              this many nodes (DeepSeek-V3: 4); 0 or absent = no limit

[mla] (optional; DeepSeek multi-head latent attention; requires n_kv_heads = n_heads):
  q_lora_rank           int   query compression rank (0 = queries not compressed)
  kv_lora_rank          int   compressed KV latent width (what the KV cache stores, with rope)
  qk_nope_head_dim      int   per-head query/key width without rotary position
  qk_rope_head_dim      int   per-head query/key rotary width (the key part is shared by heads)
  v_head_dim            int   per-head value width

[mtp] (optional; DeepSeek multi-token prediction):
  n_modules             int   extra prediction depth; each adds one transformer block and a
                              2h x h projection (counted separately from the main model)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from clusters.errors import ModelInputError
from clusters.tomldata import Field, check, read_toml

MODELS_DIR = Path(__file__).parent / "data" / "models"

ACTIVATIONS = ("swiglu", "gelu")
POSITION_EMBEDDINGS = ("rope", "learned", "none")


@dataclass(frozen=True)
class MoE:
    n_routed_experts: int
    experts_per_token: int
    n_shared_experts: int
    expert_ffn_hidden_size: int
    n_dense_layers: int
    max_nodes_per_token: int = 0  # node-limited routing (0: any node)


@dataclass(frozen=True)
class MLA:
    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    source: str
    n_layers: int
    hidden_size: int
    ffn_hidden_size: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    activation: str
    tied_embeddings: bool
    position_embedding: str
    linear_bias: bool
    seq_len: int
    reported_params: float | None = None
    reported_active_params: float | None = None
    moe: MoE | None = None
    mla: MLA | None = None
    mtp_modules: int = 0
    sources: Mapping[str, str] = field(default_factory=dict)
    path: str = ""

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def n_moe_layers(self) -> int:
        return 0 if self.moe is None else self.n_layers - self.moe.n_dense_layers

    @property
    def n_dense_layers(self) -> int:
        return self.n_layers - self.n_moe_layers

    @property
    def ffn_matrices(self) -> int:
        """Weight matrices per FFN: SwiGLU has gate, up and down; GeLU has up and down."""
        return 3 if self.activation == "swiglu" else 2

    def source_of(self, key: str) -> str:
        return self.sources.get(key, self.source)


# Upper bounds no real model reaches: a value above one is a typo, and would make a plan search
# or a memory model run for hours (2**63 layers) instead of failing.
_MAX_DIM = 10_000_000
_MAX_LAYERS = 100_000


def _int(hi=_MAX_DIM, zero_ok=False, required=True) -> Field:
    return Field("int", lo=0, lo_inclusive=zero_ok, hi=hi, required=required)


_TOP = {
    "name": Field("str"), "description": Field("str"), "source": Field("str"),
    "n_layers": _int(_MAX_LAYERS), "hidden_size": _int(), "ffn_hidden_size": _int(),
    "n_heads": _int(), "n_kv_heads": _int(), "head_dim": _int(), "vocab_size": _int(1e9),
    "activation": Field("str", choices=ACTIVATIONS), "tied_embeddings": Field("bool"),
    "position_embedding": Field("str", choices=POSITION_EMBEDDINGS), "linear_bias": Field("bool"),
    "seq_len": _int(1e9),
    "reported_params": Field("float", required=False, hi=1e16),
    "reported_active_params": Field("float", required=False, hi=1e16),
}
_MOE = {"n_routed_experts": _int(1e6), "experts_per_token": _int(1e6),
        "n_shared_experts": _int(1e6, zero_ok=True), "expert_ffn_hidden_size": _int(),
        "n_dense_layers": _int(_MAX_LAYERS, zero_ok=True),
        "max_nodes_per_token": _int(1e6, zero_ok=True, required=False)}
_MLA = {"q_lora_rank": _int(zero_ok=True), "kv_lora_rank": _int(), "qk_nope_head_dim": _int(),
        "qk_rope_head_dim": _int(), "v_head_dim": _int()}
_MTP = {"n_modules": _int(1000, zero_ok=True)}
_SPEC = {**_TOP, "sources": Field("str_map", required=False),
         "moe": Field("table", required=False, spec=_MOE),
         "mla": Field("table", required=False, spec=_MLA),
         "mtp": Field("table", required=False, spec=_MTP)}


def model_from_dict(doc: dict, where: str) -> Model:
    """Validate a parsed model document; errors name `where` (the file) and the key."""
    values = check(where, doc, _SPEC).values
    if values["n_heads"] % values["n_kv_heads"]:
        raise ModelInputError(f"{where}: key 'n_kv_heads' ({values['n_kv_heads']}) must divide "
                              f"n_heads ({values['n_heads']})")
    sources = values.pop("sources") or {}
    known = set(_TOP) | set(_MOE) | set(_MLA) | set(_MTP)
    for key in sources:
        if key not in known:
            raise ModelInputError(f"{where}: [sources] names unknown key {key!r}")
    moe = values.pop("moe")
    if moe is not None:
        if moe["experts_per_token"] > moe["n_routed_experts"]:
            raise ModelInputError(f"{where}: key 'moe.experts_per_token' "
                                  f"({moe['experts_per_token']}) exceeds n_routed_experts "
                                  f"({moe['n_routed_experts']})")
        if moe["n_dense_layers"] >= values["n_layers"]:
            raise ModelInputError(f"{where}: key 'moe.n_dense_layers' ({moe['n_dense_layers']}) "
                                  f"must be less than n_layers ({values['n_layers']})")
        moe = MoE(**{k: v for k, v in moe.items() if v is not None})
    mla = values.pop("mla")
    if mla is not None:
        if values["n_kv_heads"] != values["n_heads"]:
            raise ModelInputError(f"{where}: key 'n_kv_heads' must equal n_heads for an [mla] "
                                  "model")
        mla = MLA(**mla)
    mtp = values.pop("mtp")
    return Model(**values, moe=moe, mla=mla, mtp_modules=mtp["n_modules"] if mtp else 0,
                 sources=dict(sources), path=where)


def load_model_file(path) -> Model:
    path = Path(path)
    return model_from_dict(read_toml(path, "model"), str(path))


def list_models() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def load_model(name_or_path: str | Path) -> Model:
    """A shipped model by name (`llama3-405b`) or a user's model file by path."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or Path(text).is_file():
        return load_model_file(text)
    path = MODELS_DIR / f"{text}.toml"
    if not path.is_file():
        raise ModelInputError(f"unknown model {text!r} (known: {', '.join(list_models())}; "
                        "or pass a model file path)")
    return load_model_file(path)
