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
  position_embedding    str   "rope" (no parameters) or "learned" (seq_len x hidden parameters)
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

import math

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

from clusters.errors import ModelInputError

MODELS_DIR = Path(__file__).parent / "data" / "models"

ACTIVATIONS = ("swiglu", "gelu")
POSITION_EMBEDDINGS = ("rope", "learned")


@dataclass(frozen=True)
class MoE:
    n_routed_experts: int
    experts_per_token: int
    n_shared_experts: int
    expert_ffn_hidden_size: int
    n_dense_layers: int


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


_REQUIRED = {
    "name": str, "description": str, "source": str,
    "n_layers": int, "hidden_size": int, "ffn_hidden_size": int, "n_heads": int,
    "n_kv_heads": int, "head_dim": int, "vocab_size": int, "activation": str,
    "tied_embeddings": bool, "position_embedding": str, "linear_bias": bool, "seq_len": int,
}
_OPTIONAL = {"reported_params": float, "reported_active_params": float}
_SECTIONS = ("sources", "moe", "mla", "mtp")
_MOE_KEYS = {f.name: int for f in fields(MoE)}
_MLA_KEYS = {f.name: int for f in fields(MLA)}
_MTP_KEYS = {"n_modules": int}


def _check_type(where: str, key: str, value, kind):
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ModelInputError(f"{where}: key {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _read_table(where: str, table: dict, spec: dict, section: str, required=True) -> dict:
    prefix = f"[{section}] " if section else ""
    unknown = sorted(set(table) - set(spec))
    if unknown:
        raise ModelInputError(f"{where}: unknown key {prefix}{unknown[0]!r} (known: {', '.join(spec)})")
    out = {}
    for key, kind in spec.items():
        if key not in table:
            if required:
                raise ModelInputError(f"{where}: missing key {prefix}{key!r}")
            continue
        out[key] = _check_type(where, prefix + key, table[key], kind)
    return out


# The largest value each size may take. Far above any published model, and low enough that a
# projection (plan search over divisors, per-layer arrays) ends in a second: 2**63-1 layers
# would hang the search rather than fail.
MAX_VALUE = {
    "n_layers": 10_000, "hidden_size": 1 << 20, "ffn_hidden_size": 1 << 24, "n_heads": 1 << 16,
    "n_kv_heads": 1 << 16, "head_dim": 1 << 16, "vocab_size": 100_000_000, "seq_len": 1 << 24,
    "reported_params": 1e16, "reported_active_params": 1e16,
    "n_routed_experts": 1 << 20, "experts_per_token": 1 << 20, "n_shared_experts": 1 << 10,
    "expert_ffn_hidden_size": 1 << 24, "n_dense_layers": 10_000,
    "q_lora_rank": 1 << 20, "kv_lora_rank": 1 << 20, "qk_nope_head_dim": 1 << 16,
    "qk_rope_head_dim": 1 << 16, "v_head_dim": 1 << 16, "n_modules": 100,
}


def _positive(where: str, d: dict, keys, allow_zero=()):
    for key in keys:
        v = d.get(key)
        if v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ModelInputError(f"{where}: key {key!r} must be a finite number, got {v}")
        if v < 0 or (v == 0 and key not in allow_zero):
            raise ModelInputError(f"{where}: key {key!r} must be positive, got {v}")
        limit = MAX_VALUE.get(key)
        if limit is not None and v > limit:
            raise ModelInputError(f"{where}: key {key!r} is {v}, above the largest supported value {limit:g}")


def model_from_dict(doc: dict, where: str) -> Model:
    """Validate a parsed model document; errors name `where` (the file) and the key."""
    known_top = set(_REQUIRED) | set(_OPTIONAL) | set(_SECTIONS)
    unknown = sorted(set(doc) - known_top)
    if unknown:
        raise ModelInputError(f"{where}: unknown key {unknown[0]!r}")
    top = {k: v for k, v in doc.items() if k not in _SECTIONS}
    values = _read_table(where, {k: v for k, v in top.items() if k in _REQUIRED}, _REQUIRED, "")
    values.update(_read_table(where, {k: v for k, v in top.items() if k in _OPTIONAL},
                              _OPTIONAL, "", required=False))
    _positive(where, values, [k for k, t in {**_REQUIRED, **_OPTIONAL}.items()
                              if t in (int, float)])
    if values["activation"] not in ACTIVATIONS:
        raise ModelInputError(f"{where}: key 'activation' must be one of {ACTIVATIONS}, "
                        f"got {values['activation']!r}")
    if values["position_embedding"] not in POSITION_EMBEDDINGS:
        raise ModelInputError(f"{where}: key 'position_embedding' must be one of "
                        f"{POSITION_EMBEDDINGS}, got {values['position_embedding']!r}")
    if values["n_heads"] % values["n_kv_heads"]:
        raise ModelInputError(f"{where}: key 'n_kv_heads' ({values['n_kv_heads']}) must divide "
                        f"n_heads ({values['n_heads']})")

    sources = doc.get("sources", {})
    if not isinstance(sources, dict):
        raise ModelInputError(f"{where}: [sources] must be a table")
    known_for_sources = set(_REQUIRED) | set(_OPTIONAL) | set(_MOE_KEYS) | set(_MLA_KEYS) \
        | {"n_modules"}
    for key, text in sources.items():
        if key not in known_for_sources:
            raise ModelInputError(f"{where}: [sources] names unknown key {key!r}")
        if not isinstance(text, str) or not text.strip():
            raise ModelInputError(f"{where}: [sources] {key!r} must be a non-empty string")
    if not values["source"].strip():
        raise ModelInputError(f"{where}: key 'source' must not be empty")

    moe = None
    if "moe" in doc:
        m = _read_table(where, _as_table(where, doc, "moe"), _MOE_KEYS, "moe")
        _positive(where, m, m, allow_zero=("n_shared_experts", "n_dense_layers"))
        if m["experts_per_token"] > m["n_routed_experts"]:
            raise ModelInputError(f"{where}: key [moe] 'experts_per_token' ({m['experts_per_token']}) "
                            f"exceeds n_routed_experts ({m['n_routed_experts']})")
        if m["n_dense_layers"] >= values["n_layers"]:
            raise ModelInputError(f"{where}: key [moe] 'n_dense_layers' ({m['n_dense_layers']}) "
                            f"must be less than n_layers ({values['n_layers']})")
        moe = MoE(**m)
    mla = None
    if "mla" in doc:
        m = _read_table(where, _as_table(where, doc, "mla"), _MLA_KEYS, "mla")
        _positive(where, m, m, allow_zero=("q_lora_rank",))
        if values["n_kv_heads"] != values["n_heads"]:
            raise ModelInputError(f"{where}: key 'n_kv_heads' must equal n_heads for an [mla] model")
        mla = MLA(**m)
    mtp_modules = 0
    if "mtp" in doc:
        m = _read_table(where, _as_table(where, doc, "mtp"), _MTP_KEYS, "mtp")
        _positive(where, m, m, allow_zero=("n_modules",))
        mtp_modules = m["n_modules"]
    return Model(**values, moe=moe, mla=mla, mtp_modules=mtp_modules,
                 sources=dict(sources), path=where)


def _as_table(where: str, doc: dict, key: str) -> dict:
    if not isinstance(doc[key], dict):
        raise ModelInputError(f"{where}: [{key}] must be a table")
    return doc[key]


def load_model_file(path) -> Model:
    path = Path(path)
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ModelInputError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise ModelInputError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelInputError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelInputError(f"{path}: not a TOML text file (not UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelInputError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ModelInputError(f"{path}: not valid TOML (nested too deeply)") from None
    return model_from_dict(doc, str(path))


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
