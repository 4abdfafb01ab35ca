"""`rackbench model`: the model files `project --model` reads: a commented template to start one
from, the shipped models, and one model's numbers with their sources and parameter counts."""
from __future__ import annotations

import json
import math
from pathlib import Path

from clusters import flops as F
from clusters.workloads import MODELS_DIR, Model, list_models, load_model
from harness.cli.common import add_format, emit
from harness.format import quantity, table

# The model-file schema (clusters/workloads.py), key by key in file order: (type, meaning and
# unit). Sizes and widths count elements, lengths count tokens; no key has a physical unit.
# tests/harness/test_cli_model.py checks that these are exactly the keys the loader knows.
KEYS = {
    "": {
        "name": ("str", "the model's name, as outputs show it"),
        "description": ("str", "one line"),
        "source": ("str", "where the numbers come from (paper, model card, config.json); "
                   "covers every key [sources] does not name"),
        "n_layers": ("int", "transformer blocks, dense and MoE together (MTP modules excluded)"),
        "hidden_size": ("int", "model width h, elements"),
        "ffn_hidden_size": ("int", "FFN inner size of the dense layers, elements (SwiGLU: the "
                            "gate/up width)"),
        "n_heads": ("int", "query heads"),
        "n_kv_heads": ("int", "key/value heads: n_heads for MHA, fewer for GQA, 1 for MQA; "
                       "divides n_heads"),
        "head_dim": ("int", "per-head width of Q, K and V, elements (MLA models: see [mla])"),
        "vocab_size": ("int", "embedding and output rows, padded as trained"),
        "activation": ("str", '"swiglu" (3 FFN matrices) or "gelu" (2)'),
        "tied_embeddings": ("bool", "the output layer shares the input embedding"),
        "position_embedding": ("str", '"rope" (no parameters), "learned" (seq_len x h) or "none"'),
        "linear_bias": ("bool", "linear layers and norms carry biases (GPT-2/3 style)"),
        "seq_len": ("int", "default sequence length of projections, tokens"),
        "reported_params": ("float, optional", "published total parameters (a check, not an "
                            "input)"),
        "reported_active_params": ("float, optional", "published parameters per token (MoE)"),
    },
    "moe": {
        "n_routed_experts": ("int", "routed experts per MoE layer"),
        "experts_per_token": ("int", "routed experts per token (top-k), <= n_routed_experts"),
        "n_shared_experts": ("int", "always-active shared experts (0: none)"),
        "expert_ffn_hidden_size": ("int", "one expert's FFN inner size, elements"),
        "n_dense_layers": ("int", "leading layers with a dense FFN of ffn_hidden_size"),
        "max_nodes_per_token": ("int, optional", "node-limited routing: nodes a token's experts "
                                "span at most (0: no limit)"),
    },
    "mla": {
        "q_lora_rank": ("int", "query compression rank (0: queries not compressed)"),
        "kv_lora_rank": ("int", "KV latent width, what the KV cache stores with the rope part"),
        "qk_nope_head_dim": ("int", "per-head query/key width without rotary position"),
        "qk_rope_head_dim": ("int", "per-head query/key rotary width (the key part is shared)"),
        "v_head_dim": ("int", "per-head value width"),
    },
    "mtp": {
        "n_modules": ("int", "multi-token-prediction depth: each module is one block and a "
                      "2h x h projection, counted apart from the main model"),
    },
}
SECTIONS = {"moe": "mixture of experts (absent: dense)",
            "mla": "DeepSeek multi-head latent attention (requires n_kv_heads = n_heads)",
            "mtp": "DeepSeek multi-token prediction"}
TEMPLATE_BASE = "llama3-8b"  # the template's values, a small dense model
EXAMPLE = "deepseek-v3"  # the commented-out sections' values: it has every section


def register(p) -> None:
    p.description = ("Model files for `rackbench project --model FILE`: `template` prints a "
                     "commented one that loads as it is, `list` the shipped models, `show` one "
                     "model's numbers with their sources and parameter counts.")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    t = sub.add_parser("template", help="print a commented model file (rackbench model template > my.toml)")
    t.add_argument("--from", dest="base", default=TEMPLATE_BASE, metavar="MODEL",
                   help=f"take the values of this shipped model or file (default {TEMPLATE_BASE})")
    t.set_defaults(func=run_template)
    ls = sub.add_parser("list", help="the shipped models with their sizes")
    add_format(ls, "csv")
    ls.set_defaults(func=run_list)
    sh = sub.add_parser("show", help="one model (name or file): every key, its source, parameters")
    sh.add_argument("model", help="a shipped model's name or a model file")
    add_format(sh, "csv")
    sh.set_defaults(func=run_show)


# ------------------------------------------------------------------ template

def _value(model: Model | None, section: str, key: str):
    if model is None:
        return None
    if section == "":
        return getattr(model, key)
    if section == "mtp":
        return model.mtp_modules or None
    part = getattr(model, section)
    return None if part is None else getattr(part, key)


def toml_value(v) -> str:
    """A TOML literal: strings as basic strings, floats in a form that reads back exactly
    (8.03e9, not 8030000000.0)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v and abs(v) >= 1e6:
            e = math.floor(math.log10(abs(v)))
            text = f"{v / 10 ** e:.12g}e{e}"
            if float(text) == v:
                return text
        return repr(v)
    return json.dumps(v)  # a TOML basic string: JSON's escapes are TOML's


def _line(key: str, value, doc: tuple[str, str], commented: bool) -> str:
    kind, meaning = doc
    text = f"{'# ' if commented else ''}{key} = {toml_value(value)}"
    return f"{text:<40}  # {kind}: {meaning}"


def template(base: Model, example: Model) -> str:
    """A model file with every key, commented with its type, meaning and unit: `base`'s values,
    and sections `base` lacks commented out with `example`'s. Loads and projects as it is."""
    lines = [
        "# A rackbench model file. Edit the values and their sources, then",
        "#   rackbench model show my.toml                          # checks it, counts parameters",
        "#   rackbench project --model my.toml --system hgx-h100 --chips 8",
        f"# Values: {base.name} ({base.description}); the commented-out parts show {example.name}'s.",
        "# Loading rejects unknown keys, missing keys, wrong types and impossible values, naming",
        "# the key. Sizes and widths count elements, lengths tokens. Every number needs a source:",
        "# `source` covers all keys, [sources] names another for any key.",
        "",
    ]
    for key, doc in KEYS[""].items():
        value = {"name": "my-model",
                 "description": f"{base.description} (from rackbench model template)"}.get(
                     key, _value(base, "", key))
        commented = value is None
        lines.append(_line(key, _value(example, "", key) if commented else value, doc, commented))
    lines += ["", "[sources]  # optional: key = \"source\" for any key whose source is not `source`"]
    lines += [f"{k} = {toml_value(v)}" for k, v in base.sources.items()]
    for section, keys in KEYS.items():
        if not section:
            continue
        have = _value(base, section, next(iter(keys))) is not None
        model = base if have else example
        prefix = "" if have else "# "
        lines += ["", f"{prefix}[{section}]  # optional: {SECTIONS[section]}"
                  + ("" if have else f"; {example.name}'s values")]
        lines += [_line(k, _value(model, section, k), doc, not have) for k, doc in keys.items()]
    return "\n".join(lines)


def run_template(args) -> int:
    print(template(load_model(args.base), load_model(EXAMPLE)))
    return 0


# ------------------------------------------------------------------ list and show

def _sizes(m: Model) -> dict:
    return {"name": m.name, "params": F.total_params(m), "active_params": F.active_params(m),
            "mtp_params": F.mtp_params(m), "n_layers": m.n_layers, "hidden_size": m.hidden_size,
            "n_heads": m.n_heads, "n_kv_heads": m.n_kv_heads,
            "n_routed_experts": m.moe.n_routed_experts if m.moe else None,
            "experts_per_token": m.moe.experts_per_token if m.moe else None,
            "mla": m.mla is not None, "seq_len": m.seq_len, "description": m.description}


def run_list(args) -> int:
    rows = [_sizes(load_model(n)) for n in list_models()]

    def text() -> str:
        body = table(["name", "params", "active", "layers", "hidden", "heads", "kv heads",
                      "experts", "attention", "seq len"],
                     [[r["name"], quantity(r["params"]), quantity(r["active_params"]),
                       r["n_layers"], r["hidden_size"], r["n_heads"], r["n_kv_heads"],
                       "-" if r["n_routed_experts"] is None
                       else f"{r['n_routed_experts']} top-{r['experts_per_token']}",
                       "MLA" if r["mla"] else "MHA" if r["n_kv_heads"] == r["n_heads"]
                       else "GQA" if r["n_kv_heads"] > 1 else "MQA", f"{r['seq_len']:,}"]
                      for r in rows], "lrrrrrrrll")
        return (body + "\nparams: the main model's (MTP modules apart), computed from the file; "
                "active: per token. rackbench model show NAME gives every key with its source.")

    emit(args.format, json_doc=lambda: rows, records=lambda: rows, table=text)
    return 0


def _keys(m: Model) -> list[dict]:
    """Every key the file set, with its value and source."""
    out = []
    for section, keys in KEYS.items():
        for key in keys:
            value = _value(m, section, key)
            if value is None or key in ("name", "description", "source"):
                continue
            out.append({"key": f"{section}.{key}" if section else key, "value": value,
                        "source": m.source_of(key)})
    return out


def _path(m: Model) -> str:
    """A shipped model's file relative to the repository, a user's as given."""
    path = Path(m.path)
    return str(path.relative_to(MODELS_DIR.parents[2])) if path.is_relative_to(MODELS_DIR) else m.path


def run_show(args) -> int:
    m = load_model(args.model)
    sizes = _sizes(m)

    def text() -> str:
        reported = {"params": m.reported_params, "active_params": m.reported_active_params}
        lines = [f"model {m.name}: {m.description}", f"file: {_path(m)}", f"source: {m.source}", ""]
        for key, label in (("params", "parameters"), ("active_params", "active per token"),
                           ("mtp_params", "MTP modules")):
            if key == "mtp_params" and not sizes[key]:
                continue
            rep = reported.get(key)
            lines.append(f"{label}: {quantity(sizes[key])} computed"
                         + (f", {quantity(rep)} reported ({sizes[key] / rep - 1:+.1%})" if rep else ""))
        rows = [[r["key"], quantity(r["value"]) if isinstance(r["value"], float)
                 else toml_value(r["value"]).strip('"'), r["source"]] for r in _keys(m)]
        return "\n".join(lines + ["", table(["key", "value", "source"], rows, "lrl")])

    emit(args.format, json_doc=lambda: {**sizes, "source": m.source, "path": _path(m),
                                        "keys": _keys(m)},
         records=lambda: _keys(m), table=text)
    return 0
