"""Serving model: KV-cache limit, TPOT target, invariants and mechanisms. The published serving
rows run through `rackbench validate` (tests/harness/test_validate.py)."""

import pytest

from clusters import flops as F
from clusters.catalog import load_system
from clusters.inference import (ServePlan, best_batch_for_tpot, decode, kv_bytes_per_token,
                                max_batch_per_chip, prefill, weight_bytes_per_chip)
from clusters.workloads import load_model
from clusters.errors import ModelInputError

DSV3, R1, L70 = (load_model(n) for n in ("deepseek-v3", "deepseek-r1", "llama3-70b"))
H100, H200 = load_system("hgx-h100"), load_system("hgx-h200")


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




# ---- serving mechanisms (each fails on the old behaviour)

H20 = load_system("hgx-h20")


def test_fp8_attention_runs_on_the_fp8_peak_at_its_measured_share():
    """FlashMLA-FP8 on an fp8 cache: the attention part shrinks by 2 x 0.818 (FA3's fp8 share
    of its peak against bf16's), and it needs an fp8 cache and fp8 tensor cores."""
    from dataclasses import replace
    from clusters.calibration import default_calibration
    plan = ServePlan(chips=16, ep=16, batch_per_chip=48, context=4864, precision="fp8",
                     kv_bytes=1)
    bf16 = decode(R1, H20, plan).breakdown_s["attention_s"]
    fp8 = decode(R1, H20, replace(plan, attention_precision="fp8")).breakdown_s["attention_s"]
    ratio = default_calibration().ratio("fp8_over_bf16_attention")
    assert ratio == pytest.approx((1008 / 1979) / (616 / 989), rel=2e-3)
    assert bf16 / fp8 == pytest.approx(2 * ratio, rel=0.05)
    with pytest.raises(ModelInputError, match="fp8 KV cache"):
        decode(R1, H20, replace(plan, kv_bytes=2, attention_precision="fp8"))
    with pytest.raises(ModelInputError, match="attention_precision"):
        decode(R1, H20, replace(plan, attention_precision="int4"))


def test_overlap_none_takes_the_faster_and_says_which():
    """At 4 sequences per die two micro-batches stream the weights twice: the serial step wins;
    at 96 per NPU pipelining does. overlap=None picks per batch and records the choice."""
    from dataclasses import replace
    cm = load_system("cloudmatrix-384")
    base = ServePlan(chips=160, ep=160, context=4224, precision="int8", kv_bytes=2,
                     ranks_per_chip=2, mtp_tokens=1, mtp_acceptance=0.7)
    for batch in (8, 96):
        plan = replace(base, batch_per_chip=batch)
        on, off = (decode(R1, cm, replace(plan, overlap=o)) for o in (True, False))
        auto = decode(R1, cm, replace(plan, overlap=None))
        best = min(on, off, key=lambda r: r.step_time_s)
        assert auto.step_time_s == pytest.approx(best.step_time_s)
        assert auto.plan.overlap is best.plan.overlap
    assert decode(R1, cm, replace(base, batch_per_chip=8, overlap=None)).plan.overlap is False


def test_prefill_dispatch_is_deduplicated_on_deepep_stacks():
    """DeepEP's normal kernels send a token once per destination node (DeepSeek-V3 routes each
    token to at most 4) and GPU: on 4 H100 nodes the expert all-to-all of prefill costs less
    than a per-expert all-to-all; the CANN stack keeps the plain one."""
    from dataclasses import replace
    from clusters.train import ep_dispatch_s
    plan = ServePlan(chips=32, ep=32, batch_per_chip=4, context=4096, precision="fp8",
                     kv_bytes=1, overlap=False)
    tokens = 4 * 4096
    dedup = ep_dispatch_s(H100, DSV3, tokens, 32, 1, "deduplicated")
    plain = ep_dispatch_s(H100, DSV3, tokens, 32, 1, "per_expert")
    assert dedup < 0.6 * plain
    unlimited = replace(DSV3, moe=replace(DSV3.moe, max_nodes_per_token=0))
    # over 8 nodes the 4-node limit binds
    assert ep_dispatch_s(H100, unlimited, tokens, 64, 1, "deduplicated") > \
        1.2 * ep_dispatch_s(H100, DSV3, tokens, 64, 1, "deduplicated")
    r = prefill(DSV3, H100, plan)
    assert r.breakdown_s["ep_comm_s"] == pytest.approx(
        DSV3.n_moe_layers * (dedup + ep_dispatch_s(H100, DSV3, tokens, 32, 2, "deduplicated")))


def test_overlapped_moe_prefill_runs_four_slots_on_the_sms_deepep_leaves(monkeypatch):
    """Two-batch prefill overlap as SGLang runs it: each MoE layer is four slots, each as long
    as the longer of one micro-batch's compute and the other's communication, and the GEMMs run
    on the SMs DeepEP does not hold for the whole overlapped forward. The old model hid
    min(compute, comm) in one lump and let overlap never lose."""
    import clusters.inference as I
    from dataclasses import replace
    on = ServePlan(chips=32, ep=32, batch_per_chip=4, context=4096, precision="fp8",
                   kv_bytes=1, overlap=True)
    serial = prefill(DSV3, H100, replace(on, overlap=False))
    over = prefill(DSV3, H100, on)
    b = over.breakdown_s
    compute = b["gemm_s"] + b["attention_s"] + b["elementwise_s"] + b["tp_comm_s"]
    # the GEMMs of the overlapped layers run on 112 of 132 SMs: the step exceeds the serial
    # compute by at least that slowdown, and hides the rest of the all-to-all
    moe_gemm_share = DSV3.n_moe_layers / DSV3.n_layers
    assert over.step_time_s >= compute + 0.9 * (132 / 112 - 1) * b["gemm_s"] * moe_gemm_share
    assert over.step_time_s < serial.step_time_s

    # a slot is as long as its longer side; GEMMs confined to the SMs DeepEP leaves are not
    # slowed further, the other kernels lose DeepEP's 20 SMs while it runs
    calls = []
    orig = I._beside_comm_s

    def spy(fixed, shared, comm_s, f):
        calls.append((fixed, shared, comm_s, f))
        return orig(fixed, shared, comm_s, f)

    monkeypatch.setattr(I, "_beside_comm_s", spy)
    prefill(DSV3, H100, on)
    monkeypatch.undo()
    assert len(calls) == 4 and all(f == pytest.approx(20 / 132) for *_, f in calls)
    attention_slots, expert_slots = calls[:2], calls[2:]
    assert all(fixed > 0 and shared > 0 for fixed, shared, *_ in attention_slots)
    assert all(fixed > 0 and shared == 0 for fixed, shared, *_ in expert_slots)
    assert orig(0.0, 1.0, 2.0, 0.25) == 2.0  # communication-bound
    assert orig(0.0, 2.0, 1.0, 0.25) == pytest.approx(2.25)  # 1 s at 3/4 speed, then full
    assert orig(2.0, 0.0, 1.0, 0.25) == 2.0  # reserved-SM GEMMs do not slow
    assert orig(1.0, 1.0, 1.0, 0.5) == pytest.approx(2 + 1 / 3)  # an even mix of the two

    # where the all-to-all is short (4 GB200 on NVLink), holding 20 SMs costs more than it
    # hides: forced on, overlap loses; left to the model (None) the serial step is chosen
    gb = load_system("gb200-nvl72")
    p4 = ServePlan(chips=4, ep=4, batch_per_chip=8, context=2000,
                   precision="fp8", kv_bytes=1, overlap=True)
    forced = prefill(R1, gb, p4)
    off = prefill(R1, gb, replace(p4, overlap=False))
    auto = prefill(R1, gb, replace(p4, overlap=None))
    assert forced.step_time_s > off.step_time_s
    assert auto.step_time_s == pytest.approx(off.step_time_s) and auto.plan.overlap is False


def test_overlapped_prefill_halves_hold_the_whole_batch():
    """The two micro-batches of an overlapped prefill hold the group's prompts, no more: an
    average of 2.5 prompts per chip reads between 2 and 3 per chip in tokens/s (a split into
    2 + 1 prompts would price three)."""
    from dataclasses import replace
    base = ServePlan(chips=32, ep=32, batch_per_chip=2, context=4096, precision="fp8",
                     kv_bytes=1, overlap=True)
    rate = {b: prefill(DSV3, H100, replace(base, batch_per_chip=b)).tokens_per_s_per_chip
            for b in (2, 2.5, 3)}
    assert min(rate[2], rate[3]) * 0.97 <= rate[2.5] <= max(rate[2], rate[3]) * 1.03


@pytest.mark.parametrize("system, chips, devices",
                         [("hgx-h100", 32, 32), ("cloudmatrix-384", 16, 32)])
def test_an_instance_computes_at_its_slowest_devices_pace(system, chips, devices):
    """An instance's ranks run every layer in lock-step, so its GEMMs and attention run at the
    pace of the slowest of its devices (a 910C package is two): against a calibration with no
    chip-to-chip spread, the compute parts take 1/pace as long and the rest is unchanged."""
    from dataclasses import replace
    from clusters.calibration import default_calibration, slowest_of
    from clusters.inference import instance_devices
    sy = load_system(system)
    cal = default_calibration()
    even = replace(cal, chip_spread={})
    plan = ServePlan(chips=chips, ep=chips, batch_per_chip=4, context=4096, precision="fp8"
                     if system == "hgx-h100" else "int8")
    assert instance_devices(sy, plan) == devices
    pace = slowest_of(devices, cal.chip_spread["*"][0])
    assert pace < 0.97
    a, b = prefill(DSV3, sy, plan, cal), prefill(DSV3, sy, plan, even)
    assert a.breakdown_s["attention_s"] == pytest.approx(b.breakdown_s["attention_s"] / pace)
    even_gemm = b.breakdown_s["gemm_s"]
    assert even_gemm < a.breakdown_s["gemm_s"] <= even_gemm / pace * (1 + 1e-9)
    assert a.breakdown_s["ep_comm_s"] == b.breakdown_s["ep_comm_s"]
    assert a.breakdown_s["elementwise_s"] == b.breakdown_s["elementwise_s"]


def test_a_forced_overlap_that_meets_no_tpot_searches_without_it_and_says_so():
    """Issue 20, mechanism 5: with two-batch overlap forced on, one sequence a chip cannot be
    split and runs without overlap; a TPOT no overlapped batch meets once came back as batch 1,
    as if overlapped. Planted: a target between the one-sequence step and the two-sequence
    overlapped step."""
    from dataclasses import replace as dc_replace

    from clusters.catalog import load_system
    from clusters.inference import ServePlan, best_batch_for_tpot, decode
    from clusters.workloads import load_model

    model, system = load_model("deepseek-r1"), load_system("hgx-h800")
    plan = ServePlan(chips=32, tp=1, ep=32, precision="fp8", kv_bytes=1.0, overlap=True,
                     attention_precision="bf16", ranks_per_chip=1, batch_per_chip=1,
                     context=4096)
    one = decode(model, system, dc_replace(plan, overlap=False), None).tpot_s
    two = decode(model, system, dc_replace(plan, batch_per_chip=2), None).tpot_s
    assert one < two  # the overlapped pair streams the weights twice
    r = best_batch_for_tpot(model, system, plan, (one + two) / 2)
    assert r.plan.overlap is False and r.plan.batch_per_chip >= 1
    assert any("two-batch overlap meets no TPOT" in n for n in r.notes)
    # where an overlapped batch meets the target, it is the answer, overlapped
    loose = best_batch_for_tpot(model, system, plan, 0.2)
    assert loose.plan.overlap is True and loose.plan.batch_per_chip >= 2
