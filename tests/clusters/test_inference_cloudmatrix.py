"""DeepSeek-R1 serving on CloudMatrix384 against results published outside published.csv:
Zuo et al., "Serving Large Language Models on Huawei CloudMatrix384", arXiv 2506.12708 (v3),
within 25%, with the paper's serving configuration; and the mechanisms that configuration needs
(one attention-DP rank per 910C die, multi-token prediction, the measured fused dispatch and
combine).

The paper's configuration (sec. 4-5 and its evaluation tables, read through the abstract and
two full-text readings: EfficientPaper's note on 2506.12708 and a section-by-section Chinese
reading of v3): DeepSeek-R1 with INT8 weights and activations (W8A8), prefill / decode / caching
disaggregated. Decode: one instance of 160 NPUs = 320 dies, EP320 (one expert per die: 256
routed, 32 redundant, 32 shared-expert replicas), attention data-parallel over the 320 dies,
MTP with one speculative token at 70% acceptance (1.7 tokens per step), MLA in BF16 (its 65.4%
utilisation is a BF16 figure), so a BF16 KV cache; microbatch pipelining on. Its TPOT-SLO table:

    prompt / output   batch per NPU   TPOT      tokens/s per NPU   (= batch / TPOT)
    1,024 / 1,024     128             46.8 ms   2,733
    2,048 / 256       112             47.4 ms   2,360
    4,096 / 256        96             49.4 ms   1,943   (abstract: 1,943 at TPOT < 50 ms)
    4,096 / 256        24             24.6 ms     974
    4,096 / 256         8             14.9 ms     538   (abstract: 538 under 15 ms)

Prefill: instances of 16 NPUs (32 dies), EP32, 4K prompts, 16,384 tokens per NPU, 6,688 tokens/s
per NPU with perfect EPLB (5,655 with its default EPLB), microbatch pipelining on (+23-31%).
Its ablations: decode microbatch pipelining +5.8% / +9.4% / +6.9% at batch 64 / 96 / 128.

Decode is checked both without and with microbatch pipelining (clusters.inference's "split"
stream model: the attention stream on 16+32 of a die's cube and vector cores, the MoE stream on
8+16, sharing the memory bandwidth); the sign of the pipelining gain is a strict xfail below.
"""
from dataclasses import replace

import pytest

from clusters import flops as F
from clusters.catalog import load_system
from clusters.inference import (ServePlan,
                                best_batch_for_tpot, decode, devices_per_chip, prefill,
                                weight_bytes_per_chip)
from clusters.workloads import load_model
from clusters.errors import ModelInputError

TOLERANCE = 0.25
R1, L70 = load_model("deepseek-r1"), load_model("llama3-70b")
CM, H100 = load_system("cloudmatrix-384"), load_system("hgx-h100")

DECODE = ServePlan(chips=160, ep=160, context=4096, precision="int8", kv_bytes=2,
                   ranks_per_chip=2, mtp_tokens=1, mtp_acceptance=0.7)
PREFILL = ServePlan(chips=16, ep=16, batch_per_chip=4, context=4096, precision="int8",
                    kv_bytes=2, ranks_per_chip=2, overlap=True)

# (prompt, output, batch per NPU, TPOT s, tokens/s per NPU); the cache holds the prompt and, on
# average, half the output
SLO_TABLE = [(1024, 1024, 128, 0.0468, 2733), (2048, 256, 112, 0.0474, 2360),
             (4096, 256, 96, 0.0494, 1943),
             pytest.param(4096, 256, 24, 0.0246, 974, marks=pytest.mark.xfail(strict=True, reason=(
                 "the paper's TPOT rises 9.7 ms from batch 8 to 24 and 24.8 ms from 24 to 96; "
                 "the model's, memory-bound at small batch, rises 4.8 and 26 ms: it reads "
                 "19.1 ms at batch 24 (+29% tokens/s) without pipelining and 28.7 ms with it, "
                 "and the paper does not say which ran at this point"))),
             (4096, 256, 8, 0.0149, 538)]


def _ids(rows):
    return [f"{p}+{o}-batch{b}" for p, o, b, _, _ in
            (r.values if hasattr(r, "values") else r for r in rows)]


@pytest.mark.parametrize("prompt, output, batch, tpot_s, tokens_per_s", SLO_TABLE,
                         ids=_ids(SLO_TABLE))
def test_decode_at_the_papers_batches(prompt, output, batch, tpot_s, tokens_per_s):
    plan = replace(DECODE, batch_per_chip=batch, context=prompt + output // 2)
    r = decode(R1, CM, plan)
    assert r.feasible
    print(f"\n{prompt}+{output} batch {batch}: TPOT {r.tpot_s * 1e3:.1f} ms (paper "
          f"{tpot_s * 1e3:.1f}), {r.tokens_per_s_per_chip:.0f} tokens/s per NPU (paper "
          f"{tokens_per_s}, {r.tokens_per_s_per_chip / tokens_per_s - 1:+.1%})")
    assert r.tokens_per_s_per_chip == pytest.approx(tokens_per_s, rel=TOLERANCE)
    assert r.tpot_s == pytest.approx(tpot_s, rel=TOLERANCE)


@pytest.mark.parametrize("slo_s, tokens_per_s", [
    (0.050, 1943),
    pytest.param(0.015, 538, marks=pytest.mark.xfail(strict=True, reason=(
        "at the paper's batch 8 the model reads within 5% (rackbench validate, I-CMI-DECODE-"
        "15MS), but its small-batch steps grow more slowly with batch than the paper's (see "
        "batch 24), so under 15 ms it fits batch 10: +26%")))],
    ids=["tpot50ms", "tpot15ms"])
def test_decode_headline_under_the_tpot_slo(slo_s, tokens_per_s):
    """The abstract's figures: the largest batch whose TPOT meets the SLO (4K KV cache)."""
    r = best_batch_for_tpot(R1, CM, DECODE, slo_s)
    print(f"\nTPOT <= {slo_s * 1e3:.0f} ms: batch {r.plan.batch_per_chip}, "
          f"{r.tokens_per_s_per_chip:.0f} tokens/s per NPU (paper {tokens_per_s}, "
          f"{r.tokens_per_s_per_chip / tokens_per_s - 1:+.1%})")
    assert r.tpot_s <= slo_s and r.feasible
    assert r.tokens_per_s_per_chip == pytest.approx(tokens_per_s, rel=TOLERANCE)


def test_decode_with_microbatch_pipelining():
    """The paper's decode runs with microbatch pipelining (two streams on fixed core shares):
    at the 50 ms SLO the model lands on its 1,943 tokens/s per NPU."""
    r = best_batch_for_tpot(R1, CM, replace(DECODE, overlap=True), 0.050)
    print(f"\ndecode with pipelining at 50 ms: batch {r.plan.batch_per_chip}, "
          f"{r.tokens_per_s_per_chip:.0f} tokens/s per NPU (paper 1,943)")
    assert r.tokens_per_s_per_chip == pytest.approx(1943, rel=TOLERANCE)


@pytest.mark.xfail(strict=True, reason=(
    "the paper measures +5.8/+9.4/+6.9% from decode microbatch pipelining at batch 64/96/128; "
    "the stream model gives -14/-7/-4%: its MLA decode is compute-bound (2 query rows per "
    "sequence with MTP, ~480 FLOP per KV byte against the 910C's ~235 ridge), so the attention "
    "stream on 16 of 24 cube cores runs 1.5x slower; the paper's gain implies its attention "
    "stream was not compute-bound on that share, which no published breakdown lets us check"))
def test_decode_pipelining_gains_what_the_paper_measures():
    for batch in (64, 96, 128):
        plain = decode(R1, CM, replace(DECODE, batch_per_chip=batch))
        piped = decode(R1, CM, replace(DECODE, batch_per_chip=batch, overlap=True))
        gain = piped.tokens_per_s_per_chip / plain.tokens_per_s_per_chip - 1
        assert 0.0 < gain < 0.15, (batch, gain)


def test_prefill_per_npu():
    """6,688 tokens/s per NPU (perfect EPLB) with microbatch pipelining, whose core share the
    model charges: the MoE stream's 8 of 24 cube cores slow the compute it hides behind."""
    r = prefill(R1, CM, PREFILL)
    print(f"\nprefill: {r.tokens_per_s_per_chip:.0f} tokens/s per NPU (paper 6,688)")
    assert r.feasible
    assert r.tokens_per_s_per_chip == pytest.approx(6688, rel=TOLERANCE)
    plain = prefill(R1, CM, replace(PREFILL, overlap=False))
    assert 1.0 < r.tokens_per_s_per_chip / plain.tokens_per_s_per_chip < 1.31


# ---------------------------------------------------------------- the mechanisms

def test_one_rank_per_die_holds_and_reads_the_replicated_weights_per_die():
    one = ServePlan(chips=160, ep=160, batch_per_chip=96, context=4096, precision="int8")
    two = replace(one, ranks_per_chip=2)
    replicated = (R1.n_dense_layers * F.dense_layer_params(R1) + F.embedding_params(R1)
                  + R1.n_moe_layers * F.moe_layer_nonexpert_params(R1))
    assert weight_bytes_per_chip(R1, two) - weight_bytes_per_chip(R1, one) == \
        pytest.approx(replicated)
    a, b = decode(R1, CM, one), decode(R1, CM, two)
    # batch 96 streams the attention weights: a second copy per chip costs about their read
    assert b.breakdown_s["gemm_s"] > a.breakdown_s["gemm_s"] + 0.5 * replicated / \
        CM.chip.hbm_bw_bytes_per_s
    assert b.breakdown_s["attention_s"] == pytest.approx(a.breakdown_s["attention_s"])
    assert devices_per_chip(CM.chip) == 2 and devices_per_chip(H100.chip) == 1
    with pytest.raises(ModelInputError, match="ranks_per_chip=2 needs tp=1"):
        decode(R1, CM, replace(two, tp=4))


def test_mtp_emits_accepted_tokens_and_verifies_every_draft():
    plan = replace(DECODE, batch_per_chip=32)
    r = decode(R1, CM, plan)
    assert r.tokens_per_step_per_chip == pytest.approx(32 * 1.7)
    assert r.tpot_s == pytest.approx(r.step_time_s / 1.7)
    assert r.to_dict()["tpot_s"] == r.tpot_s
    plain = decode(R1, CM, replace(plan, mtp_tokens=0, mtp_acceptance=0.0))
    # two query rows per sequence against the same cache: more attention compute, the same
    # bytes; and one more MoE layer (the MTP block)
    assert r.step_time_s > plain.step_time_s
    assert r.tokens_per_s_per_chip > plain.tokens_per_s_per_chip
    with pytest.raises(ModelInputError, match="no MTP module"):
        decode(L70, H100, ServePlan(chips=8, tp=8, mtp_tokens=1, mtp_acceptance=0.5))
    with pytest.raises(ModelInputError, match="mtp_acceptance"):
        decode(R1, CM, replace(plan, mtp_acceptance=1.5))


def test_measured_fused_dispatch_and_combine_at_their_own_shape():
    """128 tokens per die rank, top-8, hidden 7168, EP256 (128 chips x 2 dies): one MoE layer's
    all-to-all costs the measured 152 + 149 us."""
    measured = CM.scale_up.moe_a2a
    assert R1.hidden_size * R1.moe.experts_per_token * 128 == measured.shape_elements
    plan = ServePlan(chips=128, ep=128, batch_per_chip=256, context=1024, precision="int8",
                     kv_bytes=1, ranks_per_chip=2)
    r = decode(R1, CM, plan)
    (_, d8, c8), (_, d256, c256) = measured.points
    assert r.breakdown_s["ep_comm_s"] / R1.n_moe_layers == pytest.approx(d256 + c256)
    # half the tokens: half the time (bandwidth-bound), never below the fabric model
    half = decode(R1, CM, replace(plan, batch_per_chip=128))
    assert half.breakdown_s["ep_comm_s"] == pytest.approx(r.breakdown_s["ep_comm_s"] / 2)
    # NVIDIA fabrics keep the fabric model
    assert H100.scale_up.moe_a2a is None and d8 < d256
