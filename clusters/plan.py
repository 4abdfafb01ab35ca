"""The parallel plan (how a model is laid out on chips), validated against a model.

Rank order, innermost first: tensor (TP), context (CP), data (DP), pipeline (PP), as in
Megatron-Core's default "tp-cp-ep-dp-pp" and Llama 3's [TP, CP, PP, DP] minus the PP/DP swap
(which only changes which fabric DP and PP cross when both span domains). The expert group
(EP) is carved from the TP x CP x DP ranks starting innermost, so it sits inside the scale-up
domain when it fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Sequence

import numpy as np

from clusters.flops import RECOMPUTE
from clusters.workloads import Model
from clusters.errors import ModelInputError

PRECISIONS = ("bf16", "fp16", "fp8")
ATTENTION_IMPLS = ("flash", "materialized")


@dataclass(frozen=True)
class Plan:
    """Degrees and choices of one training plan. `global_batch` and `micro_batch` count
    sequences of `seq_len` tokens."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    vpp: int = 1  # virtual pipeline stages per rank (interleaved schedule)
    micro_batch: int = 1
    global_batch: int = 1
    seq_len: int = 2048
    recompute: str = "none"  # none | selective | full
    zero: int = 1  # 0: replicated; 1: optimizer sharded; 2: + grads; 3 (FSDP): + weights
    sequence_parallel: bool = True  # only meaningful with tp > 1
    precision: str = "bf16"  # GEMM precision; attention runs in bf16 (FlashAttention 2/3 bf16)
    # Software choices of the stack being modelled (the 2021 Megatron-LM stack materialised
    # attention scores and used dropout; modern stacks use FlashAttention and no dropout).
    attention_impl: str = "flash"
    dropout: bool = False
    tp_comm_overlap: bool = False  # TP collectives overlapped with GEMMs (TE userbuffers)
    dp_overlap: bool = True  # DP gradient sync overlapped with the last micro-batch's backward
    # EP all-to-all hidden behind another micro-batch's compute (DeepSeek-V3's DualPipe,
    # arXiv 2412.19437 sec. 3.2.1; SGLang/Megatron two-batch overlap)
    ep_overlap: bool = False

    @property
    def chips(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def n_microbatches(self) -> int:
        return self.global_batch // (self.dp * self.micro_batch)

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len

    def with_(self, **changes) -> "Plan":
        return replace(self, **changes)


# Plans as a table: one numpy column per Plan field, one row per plan, so the cost model
# evaluates thousands of plans at once (a single plan is a table of one). Categorical fields
# are stored as indices into these tuples, booleans as bool columns.
CATEGORIES = {"recompute": RECOMPUTE, "precision": PRECISIONS, "attention_impl": ATTENTION_IMPLS}
FIELDS = tuple(f.name for f in fields(Plan))
BOOLEANS = tuple(f.name for f in fields(Plan) if f.type in ("bool", bool))


def to_table(plans: Sequence[Plan]) -> dict[str, np.ndarray]:
    """Columns of every Plan field for `plans` (categorical fields as indices)."""
    cols = {}
    for name in FIELDS:
        values = [getattr(p, name) for p in plans]
        if name in CATEGORIES:
            cols[name] = np.asarray([CATEGORIES[name].index(v) for v in values], dtype=np.int64)
        elif name in BOOLEANS:
            cols[name] = np.asarray(values, dtype=bool)
        else:
            cols[name] = np.asarray(values, dtype=np.int64)
    return cols


def decode(name: str, value):
    """A table cell as the Plan field's value (categorical index -> name, 0/1 -> bool)."""
    if name in CATEGORIES:
        return CATEGORIES[name][int(value)]
    if name in BOOLEANS:
        return bool(value)
    return int(value)


def table_size(table: dict) -> int:
    return len(table["tp"])


def plan_at(table: dict, i: int) -> Plan:
    """Row `i` of a plan table as a Plan."""
    return Plan(**{name: decode(name, table[name][i]) for name in FIELDS})


def table_rows(table: dict, index) -> dict[str, np.ndarray]:
    """The rows `index` (an index array or mask) of a plan table."""
    return {k: v[index] for k, v in table.items()}


def layers_per_stage(model: Model, plan: Plan) -> int:
    """Transformer layers on the busiest pipeline stage (the slowest stage sets the pace)."""
    return math.ceil(model.n_layers / plan.pp)


def validate_plan(model: Model, plan: Plan, chips: int | None = None) -> Plan:
    """Raise ModelInputError naming the first problem; returns the plan for chaining."""
    for key in ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "global_batch", "seq_len"):
        v = getattr(plan, key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ModelInputError(f"plan: {key} must be a positive integer, got {v!r}")
    if plan.recompute not in RECOMPUTE:
        raise ModelInputError(f"plan: recompute must be one of {RECOMPUTE}, got {plan.recompute!r}")
    if plan.zero not in (0, 1, 2, 3):
        raise ModelInputError(f"plan: zero must be 0, 1, 2 or 3, got {plan.zero!r}")
    if plan.precision not in PRECISIONS:
        raise ModelInputError(f"plan: precision must be one of {PRECISIONS}, got {plan.precision!r}")
    if plan.attention_impl not in ATTENTION_IMPLS:
        raise ModelInputError(f"plan: attention_impl must be one of {ATTENTION_IMPLS}")
    if chips is not None and plan.chips != chips:
        raise ModelInputError(f"plan: tp*pp*dp*cp = {plan.tp}*{plan.pp}*{plan.dp}*{plan.cp} = "
                        f"{plan.chips} does not equal the {chips} ranks (one per device; chips x devices per chip)")
    if plan.global_batch % (plan.dp * plan.micro_batch):
        raise ModelInputError(f"plan: global batch {plan.global_batch} is not divisible by "
                        f"dp*micro_batch = {plan.dp * plan.micro_batch}")
    if model.n_heads % plan.tp:
        raise ModelInputError(f"plan: tp={plan.tp} does not divide the {model.n_heads} heads of "
                        f"{model.name}")
    if plan.pp > model.n_layers:
        raise ModelInputError(f"plan: pp={plan.pp} exceeds the {model.n_layers} layers")
    if plan.vpp > 1 and (plan.pp == 1 or plan.vpp > layers_per_stage(model, plan)):
        raise ModelInputError(f"plan: vpp={plan.vpp} needs pp > 1 and at most one virtual stage "
                        f"per layer ({layers_per_stage(model, plan)} layers per stage)")
    if plan.vpp > 1 and plan.n_microbatches % plan.pp:
        raise ModelInputError(f"plan: the interleaved schedule (vpp={plan.vpp}) needs the "
                        f"{plan.n_microbatches} micro-batches to be a multiple of pp={plan.pp}")
    if plan.attention_impl == "materialized" and plan.cp > 1:
        raise ModelInputError("plan: context parallelism needs attention_impl 'flash' (ring attention)")
    if plan.seq_len % (2 * plan.cp) and plan.cp > 1:
        raise ModelInputError(f"plan: seq_len {plan.seq_len} not divisible by 2*cp = {2 * plan.cp}")
    if model.moe is not None and plan.tp > 1 and not plan.sequence_parallel:
        raise ModelInputError(f"plan: tp={plan.tp} with experts needs sequence_parallel (as "
                        "Megatron-Core requires)")
    if plan.ep > 1:
        if model.moe is None:
            raise ModelInputError(f"plan: ep={plan.ep} but {model.name} has no experts")
        if model.moe.n_routed_experts % plan.ep:
            raise ModelInputError(f"plan: ep={plan.ep} does not divide the "
                            f"{model.moe.n_routed_experts} experts of {model.name}")
        if (plan.tp * plan.cp * plan.dp) % plan.ep:
            raise ModelInputError(f"plan: ep={plan.ep} must divide tp*cp*dp = "
                            f"{plan.tp * plan.cp * plan.dp} (experts are sharded over those ranks)")
    return plan
