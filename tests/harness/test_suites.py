"""The kernel suite measures exactly the model GEMMs the projection prices: for every model
and layout the suite names, the matmul shapes it builds equal the shapes clusters.train asks
its Rates to price in a training step at that layout (captured from the pricing calls)."""
from __future__ import annotations

import re

import pytest

from clusters import train
from clusters.catalog import load_system
from clusters.plan import Plan
from clusters.workloads import load_model
from clusters.flops import layer_gemms
from harness.suites import GEMM_MODELS, build_suite, model_gemm_layouts

LABEL = re.compile(r"matmul/[a-z0-9]+/(?P<model>[^/]+)/(?P<gemm>[^/]+)/tp(?P<tp>\d+)/t(?P<tokens>\d+)$")


def _priced_shapes(monkeypatch, model, tp, ep, tokens) -> set[tuple[int, int, int]]:
    seen = set()
    price = train.Rates.gemm_s

    def recording(self, g, dtype=None):
        seen.add((g.m, g.n, g.k))
        return price(self, g, dtype)

    monkeypatch.setattr(train.Rates, "gemm_s", recording)
    plan = Plan(tp=tp, ep=ep if model.moe else 1, dp=max(1, ep // tp), micro_batch=1,
                global_batch=max(1, ep // tp), seq_len=tokens)
    train.train_step(model, load_system("hgx-h100"), plan)
    monkeypatch.undo()
    return seen


@pytest.mark.parametrize("suite", ["default", "full"])
def test_measured_model_gemms_are_the_priced_ones(monkeypatch, suite):
    measured: dict[tuple, set] = {}
    for case in build_suite(suite, "gpu"):
        if case.group != "matmul_model":
            continue
        m = LABEL.match(case.name)
        assert m, case.name
        key = (m["model"], int(m["tp"]), int(m["tokens"]))
        measured.setdefault(key, set()).add((case.params["m"], case.params["n"], case.params["k"]))
    assert {k[0] for k in measured} == set(GEMM_MODELS)
    layouts = {(name, tp, tokens): ep for name, tp, ep, tokens in
               model_gemm_layouts(sorted({k[1] for k in measured}), sorted({k[2] for k in measured}))}
    assert set(measured) <= set(layouts)
    chunks_measured = 0
    for (name, tp, tokens), shapes in measured.items():
        model, ep = load_model(name), layouts[(name, tp, tokens)]
        priced = _priced_shapes(monkeypatch, model, tp, ep, tokens)
        whole = {(g.m, g.n, g.k) for g in layer_gemms(model, tokens, tp, ep, chunks=False)}
        chunks = {(g.m, g.n, g.k) for g in layer_gemms(model, tokens, tp, ep)} - whole
        # every layer GEMM the projection prices is measured; the shorter calls TP-overlap
        # splits them into only in the full suite (the default one interpolates them by size)
        assert whole <= shapes <= priced and priced - shapes <= chunks, (name, tp, tokens)
        chunks_measured += len(shapes & chunks)
    assert (chunks_measured > 0) == (suite == "full")


def test_a_changed_model_file_changes_the_measured_shapes(monkeypatch):
    """The shapes come from the model files: a wider FFN in llama3-8b's file moves its FFN
    GEMMs (and nothing hard-coded elsewhere keeps the old ones)."""
    import dataclasses

    import harness.suites as suites

    real = suites.load_model

    def wider(name):
        m = real(name)
        return dataclasses.replace(m, ffn_hidden_size=2 * m.ffn_hidden_size) if name == "llama3-8b" else m

    monkeypatch.setattr(suites, "load_model", wider)
    shapes = {c.name: (c.params["n"], c.params["k"]) for c in suites._model_gemm_cases([8], [64], "bf16")}
    assert shapes["matmul/bf16/llama3-8b/ffn_up/tp8/t64"] == (2 * 2 * 14336 // 8, 4096)
    assert shapes["matmul/bf16/llama3-8b/ffn_down/tp8/t64"] == (4096, 2 * 14336 // 8)


def test_the_default_gpu_suite_measures_every_shape_class_the_projections_price():
    """Issue 20's list: causal forward+backward attention 1K-16K on cuDNN, decode attention as
    its own class (GQA over a cache, absorbed MLA, an fp8 cache), fp8 GEMMs with fp32
    accumulation at model and decode shapes (M 16-256), grouped MoE GEMMs, memory-bound work
    at 1-100 MB."""
    cases = build_suite("default", "gpu", device_count=1)
    names = {c.name for c in cases}
    by_group = {}
    for c in cases:
        by_group.setdefault(c.group, []).append(c)
    fwd_bwd = {c.params["t"] for c in by_group["attention"] if c.params["impl"] == "cudnn"
               and c.params["causal"] and c.params["pass"] == "fwd_bwd"}
    assert {1024, 2048, 4096, 8192, 16384} <= fwd_bwd
    decode = by_group["decode_attention"]
    assert {c.params["kind"] for c in decode} == {"gqa", "mla"}
    assert {c.params["kv_dtype"] for c in decode} == {"bf16", "fp8"}
    fp8_rows = {c.params["m"] for c in by_group["matmul_model"] if c.params["dtype"] == "fp8"}
    assert {16, 256, 4096} <= fp8_rows
    assert all("fp32" in c.params["accumulation"] for c in cases
               if c.group.startswith("matmul") and c.params.get("dtype") == "fp8")
    assert {c.params["m"] for c in by_group["matmul_grouped"]} == {16, 512}
    sizes = sorted(c.bytes for c in by_group["membw"])
    assert sizes[0] <= 1e6 and any(1e7 <= s <= 1.1e8 for s in sizes) and sizes[-1] >= 4e9
    assert "attention/jnp/fwd/bf16/causal/b16-t1024-h32-kv8-d128" not in names  # in `full`
