"""Serving model: published inference rows (25%), KV-cache limit, TPOT target, invariants."""

from clusters.validation import PUBLISHED_CSV

import pandas as pd
import pytest

from clusters import flops as F
from clusters.catalog import load_system
from clusters.inference import (ServePlan, best_batch_for_tpot, decode, kv_bytes_per_token,
                                max_batch_per_chip, prefill, weight_bytes_per_chip)
from clusters.workloads import load_model
from clusters.errors import ModelInputError

CSV = PUBLISHED_CSV
TOLERANCE = 0.25
DSV3, R1, L70 = (load_model(n) for n in ("deepseek-v3", "deepseek-r1", "llama3-70b"))
H100, H200 = load_system("hgx-h100"), load_system("hgx-h200")

# Published plans (fp8 weights and KV cache as served by SGLang / TensorRT-LLM). What the row
# does not state takes the default: no two-batch overlap unless the row names it.
ROWS = {
    # 4 nodes, EP32 with attention DP; 16,384 tokens per device = 4 prompts of 4K; TBO on.
    "I-SGL-H100-PREFILL": (prefill, DSV3, H100, ServePlan(
        chips=32, ep=32, batch_per_chip=4, context=4096, precision="fp8", kv_bytes=1,
        overlap=True), 8),
    # 9 nodes, EP72 (redundant experts fill 256/72), 256 sequences per GPU at ~2K context.
    "I-SGL-H100-DECODE": (decode, DSV3, H100, ServePlan(
        chips=72, ep=72, batch_per_chip=256, context=2048, precision="fp8", kv_bytes=1), 8),
    # one node, TP8 EP8 with attention DP: tp=1 for attention; 1024/8 = 128 sequences per GPU,
    # mid-generation context ISL 1K + half of OSL 2K. The blog's H200 max-throughput config
    # sets no kv_cache_dtype (only its B200 R1-0528 run enables an fp8 KV cache): bf16 cache.
    # trtllm-bench serves aggregated: max_num_tokens 1151 = one 1K prompt + 127 decode tokens
    # per rank per iteration, so prompts are prefilled in flight (input_len / output_len).
    "I-TRT-H200-DECODE": (decode, R1, H200, ServePlan(
        chips=8, ep=8, batch_per_chip=128, context=2048, precision="fp8", kv_bytes=2,
        input_len=1024, output_len=2048), 1),
}
# Rows the model misses today, with what we believe is missing. strict: a fix makes them fail.
KNOWN_GAPS: dict[str, str] = {
    "I-TRT-H200-MINLAT": "one sequence on a TP8 instance: ServePlan counts batch_per_chip * tp "
                         "sequences per TP group, so a batch smaller than the group cannot be "
                         "typed, and the MTP acceptance of the blog's 3 draft tokens is not "
                         "sourced here",
    "I-TRT-B200-FP4": "NVFP4 weights: the catalog has no fp4 peak and the serving model no fp4 "
                      "precision",
}


def _rows():
    if not CSV.is_file():
        return []
    df = pd.read_csv(CSV)
    rows = df[df["kind"].isin(["prefill", "decode"])]
    return [pytest.param(r, id=r["id"], marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[r["id"]])]
                         if r["id"] in KNOWN_GAPS else []) for _, r in rows.iterrows()]


def _project(row):
    if row["id"] not in ROWS:
        raise NotImplementedError(KNOWN_GAPS[row["id"]])
    fn, model, system, plan, per = ROWS[row["id"]]
    r = fn(model, system, plan)
    return r, r.tokens_per_s_per_chip * per


def test_every_inference_row_has_a_plan():
    if not CSV.is_file():
        pytest.skip("published.csv not present")
    df = pd.read_csv(CSV)
    assert set(df[df["kind"].isin(["prefill", "decode"])]["id"]) == set(ROWS) | set(KNOWN_GAPS)


@pytest.mark.parametrize("row", _rows())
def test_inference_row_within_tolerance(row):
    r, value = _project(row)
    assert r.feasible
    assert value == pytest.approx(row["value"], rel=TOLERANCE)


def test_kv_cache_closed_form_and_limit():
    # Llama 3 70B, bf16 cache, TP8: 80 layers x 2 (K, V) x 128 dims x 1 KV head per chip x 2 B
    plan = ServePlan(chips=8, tp=8, batch_per_chip=1, context=8192)
    assert kv_bytes_per_token(L70, plan) == 80 * 2 * 128 * 1 * 2
    free = 80e9 * 0.95 - weight_bytes_per_chip(L70, plan)
    # each chip caches its KV head for the group's 8 sequences per unit of batch_per_chip
    assert max_batch_per_chip(L70, plan, 80e9) == int(free // (80 * 2 * 128 * 2 * 8192 * 8))
    longer = ServePlan(chips=8, tp=8, batch_per_chip=1, context=32768)
    assert max_batch_per_chip(L70, longer, 80e9) < max_batch_per_chip(L70, plan, 80e9)
    # MLA caches 576 latent values per layer, whatever the TP degree
    assert kv_bytes_per_token(DSV3, ServePlan(chips=8, tp=8)) == 61 * 576 * 2


def test_weights_per_chip_moe():
    p = ServePlan(chips=8, ep=8, precision="fp8")
    expert = F.ffn_params(DSV3, 2048)
    assert weight_bytes_per_chip(DSV3, p) == pytest.approx(
        F.total_params(DSV3) - F.expert_params_per_layer(DSV3) * 58 + 58 * 32 * expert)


def test_decode_breakdown_sums_and_grows_with_batch():
    base = ServePlan(chips=8, tp=8, context=4096)
    small, big = (decode(L70, H100, ServePlan(**{**base.__dict__, "batch_per_chip": b}))
                  for b in (1, 64))
    for r in (small, big):
        assert sum(r.breakdown_s.values()) == pytest.approx(r.step_time_s)
    assert big.step_time_s > small.step_time_s
    assert big.tokens_per_s_per_chip > 10 * small.tokens_per_s_per_chip
    # batch 1 is bound by reading the weights: at least weights / HBM bandwidth
    assert small.step_time_s > weight_bytes_per_chip(L70, base) / H100.chip.hbm_bw_bytes_per_s
    assert big.to_dict()["tpot_s"] == big.step_time_s


def test_tpot_target_picks_the_largest_batch_that_meets_it():
    plan = ServePlan(chips=8, tp=8, context=4096)
    r = best_batch_for_tpot(L70, H100, plan, 0.030)
    assert r.step_time_s <= 0.030
    over = decode(L70, H100, ServePlan(**{**plan.__dict__,
                                          "batch_per_chip": r.plan.batch_per_chip + 1}))
    assert over.step_time_s > 0.030 or r.plan.batch_per_chip == r.max_batch_per_chip
    with pytest.raises(ModelInputError, match="TPOT target"):
        best_batch_for_tpot(L70, H100, plan, 0.001)


def test_prefill_is_compute_bound_below_peak():
    plan = ServePlan(chips=8, tp=8, batch_per_chip=1, context=8192)
    r = prefill(L70, H100, plan)
    flops = F.inference_flops_per_token(L70, 8192) * 8192 / 8
    assert flops / r.step_time_s < 989e12
    assert r.breakdown_s["gemm_s"] > r.breakdown_s["tp_comm_s"]


@pytest.mark.parametrize("plan, words", [
    (ServePlan(chips=8, ep=8), ["ep=8", "no experts"]),
    (ServePlan(chips=16, tp=16), ["tp=16", "scale-up domain"]),
    (ServePlan(chips=8, tp=3), ["tp=3"]),
    (ServePlan(chips=8, tp=8, batch_per_chip=0), ["batch_per_chip"]),
])
def test_bad_serve_plans(plan, words):
    with pytest.raises(ModelInputError) as exc:
        decode(L70, H100, plan)
    for w in words:
        assert w in str(exc.value)








def test_disaggregated_pools_balance_prefill_and_decode():
    from clusters.inference import disaggregated

    pre = ServePlan(chips=32, ep=32, batch_per_chip=4, context=4096, precision="fp8",
                    kv_bytes=1, overlap=True)
    dec = ServePlan(chips=72, ep=72, batch_per_chip=256, context=2048, precision="fp8",
                    kv_bytes=1)
    r = disaggregated(DSV3, H100, pre, dec, input_len=2000, output_len=100)
    p_rate, d_rate = r.prefill.tokens_per_s_per_chip, r.decode.tokens_per_s_per_chip
    assert r.prefill_chips_per_decode_chip == pytest.approx(d_rate * 20 / p_rate)
    # per decode chip: d_rate output tokens need 20x that in prefill, done by `ratio` chips
    assert r.output_tokens_per_s_per_chip * (1 + r.prefill_chips_per_decode_chip) == \
        pytest.approx(d_rate)


def test_in_flight_prefill_limits_and_lock_step_ranks():
    """Aggregated serving: batch/output_len prompts per chip per step, each charged one
    `prefill` of a prompt per chip; aligned ranks pay r of them per step, independent ranks
    pay whenever any of the n attention-DP ranks holds one: 1 - (1 - r)^n."""
    base = ServePlan(chips=8, ep=8, batch_per_chip=128, context=2048, precision="fp8",
                     kv_bytes=2)
    one = prefill(R1, H200, ServePlan(chips=8, ep=8, batch_per_chip=1, context=1024,
                                      precision="fp8", kv_bytes=2)).step_time_s
    assert decode(R1, H200, base).breakdown_s["prefill_s"] == 0.0  # decode-only pool
    r = 128 / 2048
    agg = ServePlan(**{**base.__dict__, "input_len": 1024, "output_len": 2048})
    aligned = ServePlan(**{**agg.__dict__, "prefill_aligned": True})
    assert decode(R1, H200, aligned).breakdown_s["prefill_s"] == pytest.approx(one * r)
    assert decode(R1, H200, agg).breakdown_s["prefill_s"] == pytest.approx(
        one * (1 - (1 - r) ** 8))
    # one attention-DP rank (tp = chips): the two schedules coincide
    solo = ServePlan(chips=8, tp=8, ep=8, batch_per_chip=16, context=2048, precision="fp8",
                     input_len=1024, output_len=2048)
    assert decode(R1, H200, solo).breakdown_s["prefill_s"] == pytest.approx(
        decode(R1, H200, ServePlan(**{**solo.__dict__, "prefill_aligned": True}))
        .breakdown_s["prefill_s"])


def test_memory_bound_gemm_streams_below_a_copy_kernel():
    """A decode-shaped GEMM (few rows) is bound by its weight bytes at the calibrated memory
    efficiency times the DeepGEMM streaming ratio; a large one by its FLOPs."""
    from clusters.calibration import default_calibration
    from clusters.train import Rates
    cal = default_calibration()
    rates = Rates(H200.chip, cal, "fp8")
    stream = cal.ratio("gemm_stream_over_memory")
    g = F.Gemm("expert_up", 32, 4096, 7168, count=32)
    moved = 32 * ((32 * 7168 + 7168 * 4096) * 1 + 2 * 32 * 4096)
    assert rates.gemm_s(g) == pytest.approx(rates.mem_s(moved) / stream)
    assert stream == pytest.approx(0.671 / 0.896)
    big = F.Gemm("ffn_up", 8192, 8192, 8192)
    eff = default_calibration().efficiency("gemm", "nvidia-hopper", "fp8", big.flops)
    assert rates.gemm_s(big) == pytest.approx(big.flops / (H200.chip.peak("fp8") * eff))


@pytest.mark.parametrize("fn", [prefill, decode])
def test_ep_beyond_the_routed_experts_is_a_user_error(fn):
    """384 chips, 256 routed experts: EP384 would leave chips with no expert (it used to divide
    by zero in the expert GEMMs); the plan is refused with one line naming both numbers."""
    cm = load_system("cloudmatrix-384")
    plan = ServePlan(chips=384, ep=384, context=4096, precision="int8", kv_bytes=1)
    with pytest.raises(ModelInputError, match=r"ep=384 exceeds the 256 routed experts"):
        fn(R1, cm, plan)
    ok = fn(R1, cm, ServePlan(**{**plan.__dict__, "ep": 256}))
    assert ok.step_time_s > 0


def test_flops_moe_gemms_rejects_ep_beyond_experts():
    with pytest.raises(ValueError, match="ep=384"):
        F.moe_gemms(R1, 4096, 1, 384)


