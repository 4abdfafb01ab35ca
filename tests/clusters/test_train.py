"""Training step model: invariants, breakdown bookkeeping, bad plans, calibration effects."""
import numpy as np
import pytest

from clusters import flops as F
from clusters.calibration import default_calibration, expected_max_normal, slowest_of
from clusters.collectives import Group, collective
from clusters.catalog import load_system
from dataclasses import replace

from clusters.plan import Plan, validate_plan
from clusters.train import PARTS, step_gemm_flops, train_step
from clusters.workloads import load_model
from clusters.errors import ModelInputError

H100 = load_system("hgx-h100")
L70 = load_model("llama3-70b")
DSV3 = load_model("deepseek-v3")

DENSE_PLANS = [
    Plan(tp=1, pp=1, dp=64, global_batch=256, seq_len=4096),
    Plan(tp=8, pp=1, dp=8, global_batch=256, seq_len=4096),
    Plan(tp=8, pp=4, dp=2, global_batch=256, seq_len=4096, micro_batch=2, vpp=5),
    Plan(tp=4, pp=2, dp=4, cp=2, global_batch=256, seq_len=4096, sequence_parallel=False),
    Plan(tp=2, pp=8, dp=4, global_batch=256, seq_len=4096, recompute="full", zero=3),
]


@pytest.mark.parametrize("plan", DENSE_PLANS)
def test_total_gemm_flops_independent_of_plan(plan):
    expect = 3 * (F.layer_matmul_flops_fwd(L70) + F.output_flops_fwd(L70)) * plan.tokens_per_step
    assert step_gemm_flops(L70, plan) == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("plan", [
    Plan(tp=1, pp=16, dp=32, ep=32, global_batch=512, seq_len=4096),
    Plan(tp=8, pp=8, dp=8, ep=64, global_batch=512, seq_len=4096),
    Plan(tp=4, pp=4, dp=16, ep=8, cp=1, global_batch=512, seq_len=4096, micro_batch=2),
])
def test_moe_gemm_flops_independent_of_plan(plan):
    expect = 3 * (F.layer_matmul_flops_fwd(DSV3) + F.output_flops_fwd(DSV3)) * plan.tokens_per_step
    assert step_gemm_flops(DSV3, plan) == pytest.approx(expect, rel=1e-9)


@pytest.mark.parametrize("plan", DENSE_PLANS)
def test_breakdown_sums_to_total_and_metrics_agree(plan):
    r = train_step(L70, H100, plan)
    assert set(r.breakdown_s) == set(PARTS)
    assert sum(r.breakdown_s.values()) == pytest.approx(r.step_time_s)
    assert all(v >= 0 for v in r.breakdown_s.values())
    assert r.tokens_per_s_per_chip * r.chips * r.step_time_s == pytest.approx(plan.tokens_per_step)
    assert r.mfu_palm == pytest.approx(r.model_flops_per_s_per_chip / 989e12)
    # MFU counts causal attention (the lower triangle): below the PaLM convention's
    assert r.mfu == pytest.approx(
        F.model_flops_per_token(L70, plan.seq_len, causal=True) * r.tokens_per_s_per_chip / 989e12)
    assert r.hfu >= r.mfu_palm > r.mfu
    d = r.to_dict()
    for key in ("step_time_s", "tokens_per_s_per_chip", "model_flops_per_s_per_chip",
                "hardware_flops_per_s_per_chip", "mfu", "memory_bytes_per_chip", "power_w",
                "joules_per_token", "breakdown_s", "plan"):
        assert key in d


def test_tp1_means_no_tp_communication():
    r = train_step(L70, H100, DENSE_PLANS[0])
    assert r.breakdown_s["tp_comm_s"] == 0.0
    assert train_step(L70, H100, DENSE_PLANS[1]).breakdown_s["tp_comm_s"] > 0


def test_no_pipeline_no_bubble_and_interleaving_shrinks_it():
    assert train_step(L70, H100, DENSE_PLANS[1]).breakdown_s["pipeline_bubble_s"] == 0
    p = Plan(tp=8, pp=4, dp=2, global_batch=64, seq_len=4096)
    b1 = train_step(L70, H100, p).breakdown_s["pipeline_bubble_s"]
    b5 = train_step(L70, H100, p.with_(vpp=5)).breakdown_s["pipeline_bubble_s"]
    assert b5 < b1 / 4  # (p-1)/(v m): 5x fewer bubble micro-batch slots, slightly more sends


@pytest.mark.parametrize("plan", DENSE_PLANS)
def test_doubling_chips_never_more_than_halves_step_time(plan):
    big = plan.with_(dp=plan.dp * 2)
    assert train_step(L70, H100, big).step_time_s >= train_step(L70, H100, plan).step_time_s / 2


def test_recompute_costs_time_and_saves_memory():
    p = Plan(tp=8, pp=4, dp=2, global_batch=64, seq_len=4096)
    none, full = (train_step(L70, H100, p.with_(recompute=r)) for r in ("none", "full"))
    assert full.step_time_s > none.step_time_s
    assert full.memory.activations_bytes < none.memory.activations_bytes / 5
    assert full.model_flops_per_token == none.model_flops_per_token
    assert full.hardware_flops_per_token > none.hardware_flops_per_token


def test_infeasible_plan_explains_itself():
    r = train_step(load_model("llama3-405b"), H100, Plan(tp=8, global_batch=8, seq_len=8192))
    assert not r.feasible
    assert "GB per chip" in r.reason and "usable" in r.reason
    assert r.to_dict()["infeasible_reason"] == r.reason


@pytest.mark.parametrize("kwargs, words", [
    (dict(tp=3), ["tp=3", "64 heads"]),
    (dict(dp=4, global_batch=6), ["global batch 6", "dp*micro_batch"]),
    (dict(global_batch=-1), ["global_batch", "positive"]),
    (dict(ep=2), ["ep=2", "no experts"]),
    (dict(recompute="some"), ["recompute"]),
    (dict(vpp=2), ["vpp=2"]),
])
def test_bad_plans_raise_user_errors(kwargs, words):
    with pytest.raises(ModelInputError) as exc:
        validate_plan(L70, Plan(**{"global_batch": 8, **kwargs}))
    for w in words:
        assert w in str(exc.value)


def test_plan_must_match_chip_count():
    with pytest.raises(ModelInputError, match="does not equal the 16 ranks"):
        validate_plan(L70, Plan(tp=8, dp=4, global_batch=8), chips=16)


def test_ep_must_divide_experts():
    with pytest.raises(ModelInputError, match="does not divide the 256 experts"):
        validate_plan(DSV3, Plan(tp=1, dp=96, ep=96, global_batch=96))


def test_ascend_software_factor_is_explicit_and_overridable():
    cm = load_system("cloudmatrix-384")
    p = Plan(tp=8, pp=4, dp=12, global_batch=96, seq_len=4096)
    cal = default_calibration()
    base = train_step(L70, cm, p, cal)
    mature = train_step(L70, cm, p, cal.with_software_factor("ascend-910c", 1.0, 1.0))
    assert mature.step_time_s < base.step_time_s
    assert any("software factor for ascend-910c" in n for n in base.notes)


def test_fp8_needs_an_fp8_chip():
    with pytest.raises(ModelInputError, match="fp8"):
        train_step(L70, load_system("dgx-a100"), Plan(tp=8, global_batch=8, precision="fp8"))


def test_moe_expert_parallel_pays_all_to_all():
    p = Plan(tp=1, pp=16, dp=32, ep=32, global_batch=512, seq_len=4096, zero=1)
    r = train_step(DSV3, load_system("hgx-h800"), p)
    assert r.breakdown_s["ep_comm_s"] > 0
    assert train_step(DSV3, load_system("hgx-h800"), p.with_(ep=8)).breakdown_s["ep_comm_s"] \
        < r.breakdown_s["ep_comm_s"]  # EP8 stays inside the NVLink domain


def test_moe_with_tp_needs_sequence_parallel():
    with pytest.raises(ModelInputError, match="sequence_parallel"):
        validate_plan(DSV3, Plan(tp=4, dp=2, global_batch=8, sequence_parallel=False))


def test_zero3_pays_per_micro_batch_gathers():
    p = Plan(tp=1, pp=1, dp=64, global_batch=256, seq_len=4096, dp_overlap=False)
    z1, z3 = (train_step(L70, H100, p.with_(zero=z)) for z in (1, 3))
    m = p.n_microbatches
    # ZeRO 3 all-gathers twice and reduce-scatters once per micro-batch: 3m/2 x ZeRO 1 volume
    assert z3.breakdown_s["dp_comm_s"] == pytest.approx(1.5 * m * z1.breakdown_s["dp_comm_s"],
                                                        rel=0.05)
    assert z3.memory.weights_bytes < z1.memory.weights_bytes


def test_ep_overlap_hides_all_to_all_behind_compute():
    p = Plan(tp=1, pp=16, dp=128, ep=64, global_batch=15360, seq_len=4096, precision="fp8")
    h800 = load_system("hgx-h800")
    plain, hidden = (train_step(DSV3, h800, p.with_(ep_overlap=o)) for o in (False, True))
    assert hidden.breakdown_s["ep_comm_s"] < plain.breakdown_s["ep_comm_s"]
    assert hidden.step_time_s < plain.step_time_s
    assert hidden.breakdown_s["gemm_s"] == plain.breakdown_s["gemm_s"]


def test_interleaving_needs_micro_batches_in_multiples_of_pp():
    with pytest.raises(ModelInputError, match="multiple of pp=4"):
        validate_plan(L70, Plan(tp=8, pp=4, dp=1, vpp=2, global_batch=6))


def test_fp8_training_keeps_the_output_layer_in_bf16():
    """Megatron-Core's output layer is a plain ColumnParallelLinear outside Transformer
    Engine's fp8 autocast: in fp8 training its three GEMMs run at the bf16 rate."""
    from clusters.train import Rates, output_layer_s
    m, chip = load_model("llama3-8b"), load_system("hgx-h100").chip
    fp8, bf16 = (Rates(chip, default_calibration(), p) for p in ("fp8", "bf16"))
    g = F.output_gemm(m, 4096, 1)
    gemm, mem = output_layer_s(m, fp8, 4096, 1)
    assert gemm == pytest.approx(3 * fp8.gemm_s(g, "bf16")) == pytest.approx(output_layer_s(
        m, bf16, 4096, 1)[0])
    assert gemm > 3 * fp8.gemm_s(g, "fp8")
    assert mem == pytest.approx(fp8.mem_s(16.0 * 4096 * m.vocab_size))


def test_flash2_era_slows_hopper_attention_only():
    from clusters.train import flash2_era
    cal = default_calibration()
    old = flash2_era(cal)
    (flash2,) = cal.variants["flash2"]
    assert flash2.efficiencies == (pytest.approx(335 / 989, rel=1e-5),)  # FA2: 335 of 989 TFLOP/s
    peak = load_system("hgx-h100").chip.peak("bf16")
    call = 1e12  # FLOPs of one forward call: ~1 ms at the peak, on the plateau
    assert old.efficiency("attention", "nvidia-hopper", "bf16", call, peak) == pytest.approx(
        flash2.efficiencies[0] * cal.sustained["nvidia-hopper"][0])
    assert old.efficiency("attention", "nvidia-ampere", "bf16", call, peak) == \
        cal.efficiency("attention", "nvidia-ampere", "bf16", call, peak)
    m = load_model("llama3-8b")
    plan = Plan(dp=8, global_batch=8, seq_len=8192, precision="fp8")
    new_r, old_r = (train_step(m, load_system("hgx-h100"), plan, c) for c in (cal, old))
    # FA3 (sized curve) is faster than FA2 (flat) on these 8K calls; the GEMMs do not change
    assert old_r.breakdown_s["attention_s"] > new_r.breakdown_s["attention_s"] * 1.3
    assert old_r.breakdown_s["gemm_s"] == new_r.breakdown_s["gemm_s"]


# ---- mechanisms that used to be free lunches (each test fails on the old behaviour)

def test_zero2_reduce_scatters_every_micro_batch():
    """ZeRO 2 keeps only a gradient shard, so each micro-batch's backward reduce-scatters its
    gradients (deepspeedai/DeepSpeed#2252); ZeRO 1 accumulates whole and reduces once. Without
    overlap the exposed DP time is m reduce-scatters plus one gather against one of each."""
    p = Plan(tp=8, pp=4, dp=8, global_batch=256, seq_len=8192, dp_overlap=False)
    z1, z2 = (train_step(L70, H100, p.with_(zero=z)) for z in (1, 2))
    m = p.n_microbatches
    rs_plus_ag = z1.breakdown_s["dp_comm_s"]
    assert m == 32 and z2.breakdown_s["dp_comm_s"] > 8 * rs_plus_ag
    assert z2.memory.grads_bytes < z1.memory.grads_bytes  # what ZeRO 2 buys


def test_context_parallel_across_nodes_pays_the_nic():
    """A TP2 x CP16 ring spans 32 ranks, four 8-GPU nodes: its K/V exchange crosses the NIC
    (every ring step waits for the slowest hop); TP2 x CP4 stays on NVLink."""
    h100 = load_system("hgx-h100")
    inside = Plan(tp=2, cp=4, dp=1, global_batch=8, seq_len=32768)
    across = Plan(tp=2, cp=16, dp=1, global_batch=8, seq_len=32768)
    kv = 2.0 * 32768 // 16 * 2 * L70.n_kv_heads * L70.head_dim
    from clusters.train import layer_times, Rates
    rates = Rates(h100.chip, default_calibration(), "bf16")
    t_across = layer_times(L70, across, h100, rates, False).cp_comm
    nic = 15 * float(collective("send", kv, Group(h100, 2, 1)).time_s)
    assert t_across == pytest.approx(nic)
    t_inside = layer_times(L70, inside, h100, rates, False).cp_comm
    nvlink = 3 * float(collective("send", 2.0 * 32768 // 4 * 2 * L70.n_kv_heads * L70.head_dim,
                                  Group(h100, 2, 2)).time_s)
    assert t_inside == pytest.approx(nvlink)


def test_ring_attention_runs_at_the_efficiency_of_its_chunks():
    """With size-dependent attention efficiency, CP's cp kernel calls of 1/cp the work each run
    at the efficiency of that smaller size."""
    from dataclasses import replace as dc_replace

    from clusters.calibration import Entry
    from clusters.train import Rates, layer_times
    cal = default_calibration()
    sized = Entry("attention", "nvidia-hopper", "*", (9.0, 14.0), (0.2, 0.6), "test", False)
    cal = dc_replace(cal, entries=(sized,) + tuple(e for e in cal.entries if not (
        e.kernel == "attention" and e.family == "nvidia-hopper")))
    rates = Rates(H100.chip, cal, "bf16")
    one = layer_times(L70, Plan(tp=8, cp=1, global_batch=1, seq_len=65536), H100, rates, False)
    ring = layer_times(L70, Plan(tp=8, cp=8, global_batch=1, seq_len=65536), H100, rates, False)
    # the same total attention FLOPs per chip would take 8x less with cp 8 at equal efficiency
    assert ring.attention > one.attention / 8 * 1.1


def test_mfu_cannot_exceed_the_efficiencies_at_long_context():
    """Llama 3 8B at 128K: the PaLM count includes the upper triangle nobody computes; MFU
    (causal) stays below the best kernel efficiency, the PaLM figure does not have to."""
    m = load_model("llama3-8b")
    r = train_step(m, H100, Plan(tp=8, cp=16, dp=1, global_batch=16, seq_len=131072,
                                 precision="bf16"))
    cal = default_calibration()
    best = max(cal.efficiency(k, "nvidia-hopper", "bf16", 1e15, H100.chip.peak("bf16"))
               for k in ("gemm", "attention"))
    assert r.mfu < best
    assert r.mfu_palm > r.mfu * 1.3


def test_a_910c_trains_as_two_devices():
    """The 910C presents two dies, each its own device with half the package (as in serving):
    384 chips are 768 ranks, and the result reports per chip."""
    from clusters.search import search
    cm = load_system("cloudmatrix-384")
    (best,), _ = search(L70, cm, 384, 512, 8192, top=1)
    assert best.plan.chips == 768 and best.chips == 384 and best.devices_per_chip == 2
    assert best.tokens_per_s_per_chip * 384 == pytest.approx(best.tokens_per_s)
    assert best.peak_flops_per_s == cm.chip.peak("bf16")  # the package's
    assert best.memory.capacity_bytes == pytest.approx(cm.chip.hbm_bytes / 2 * 0.95)


def test_ties_are_broken_by_less_memory_then_smaller_groups():
    """Plans of equal step time (ZeRO stages whose DP traffic is fully hidden) rank by memory."""
    from clusters.search import enumerate_plans, rank
    from clusters.train import evaluate
    plans = enumerate_plans(L70, H100, 64, 128, 8192)
    ev = evaluate(L70, H100, plans)
    order = rank(ev)
    steps, mem = ev.step_time_s[order], ev.total_memory_bytes[order]
    feasible = ev.feasible[order]
    same = np.isclose(steps[1:], steps[:-1], rtol=0, atol=1e-9) & feasible[1:] & feasible[:-1]
    assert same.any()  # there are ties to break
    assert np.all(mem[1:][same] >= mem[:-1][same])


def test_tp_comm_overlap_runs_the_tp_gemms_in_chunks():
    """Transformer Engine's userbuffers overlap splits the TP GEMMs into chunks (tp for ring
    exchange, 4 for the pipeline method): shorter calls, lower efficiency. The GEMM part grows
    with the overlap on; without TP there is nothing to split."""
    m = load_model("llama3-70b")
    base = Plan(tp=8, pp=1, dp=1, global_batch=1, seq_len=8192, precision="bf16")
    plain, split = (train_step(m, H100, replace(base, tp_comm_overlap=o)).breakdown_s["gemm_s"]
                    for o in (False, True))
    assert split > plain * 1.01
    one = replace(base, tp=1, dp=8, global_batch=8)
    assert train_step(m, H100, replace(one, tp_comm_overlap=True)).breakdown_s["gemm_s"] == \
        pytest.approx(train_step(m, H100, one).breakdown_s["gemm_s"])


def test_tp_overlap_holds_an_sm_margin_on_transformer_engine_stacks():
    """TE's pipeline and bulk overlaps run their GEMMs on the chip's SMs less 16 for as long as
    they run (initialize_ub: num_sm 16, set_sm_margin): on H100 (132 SMs) those GEMMs, the
    row-parallel forward ones and the column-parallel ones' dgrad and wgrad, take 132/116 as
    long. H20, with 78 SMs, loses more of itself; a chip with no SM count keeps the old rule."""
    from clusters.train import evaluate, layer_times, Rates, sm_margin_gemm_s
    from clusters import flops as F
    from clusters.plan import to_table
    m = load_model("llama3-70b")
    plan = Plan(tp=8, pp=1, dp=1, global_batch=1, seq_len=8192, precision="bf16",
                tp_comm_overlap=True)
    on = train_step(m, H100, plan)
    h100 = replace(H100, chip=replace(H100.chip, sm_count=None))
    old = train_step(m, h100, plan)
    rates = Rates(H100.chip, default_calibration(), "bf16", plan.chips)  # the job's pace
    tokens = 8192
    gemms = F.attention_gemms(m, tokens, 8) + F.ffn_gemms(m, tokens, m.ffn_hidden_size, 8)
    margin = sm_margin_gemm_s(gemms, rates) * m.n_layers
    assert margin > 0.5 * on.breakdown_s["gemm_s"]  # most of the GEMM time is in the margin set
    assert on.breakdown_s["gemm_s"] == pytest.approx(old.breakdown_s["gemm_s"])
    assert on.step_time_s > old.step_time_s
    extra = margin * 16 / (132 - 16)
    assert on.breakdown_s["tp_comm_s"] >= extra * (1 - 1e-9)
    h20 = load_system("hgx-h20")
    r20 = train_step(m, h20, plan)
    assert r20.breakdown_s["tp_comm_s"] >= sm_margin_gemm_s(
        gemms, Rates(h20.chip, default_calibration(), "bf16")) * m.n_layers * 16 / (78 - 16) * (
        1 - 1e-9)


def test_a_large_job_computes_at_its_slowest_devices_pace():
    """Every step waits at its collectives for the slowest device, so the same per-device
    work (a TP8 group of Llama 3 70B, one micro-batch per DP rank) computes more slowly in a
    job of 1,024 devices than in one of 8: the GEMMs and attention by the expected slowest of
    1,024 normal draws over that of 8 (calibration chip_spread), the memory-bound work and
    the TP collectives not at all. Without the mechanism the two are equal."""
    cal = default_calibration()
    small = Plan(tp=8, dp=1, global_batch=1, seq_len=8192)
    large = small.with_(dp=128, global_batch=128)
    r8, r1024 = (train_step(L70, H100, p) for p in (small, large))
    cv = cal.chip_spread["*"][0]
    assert cv > 0.01
    expected = slowest_of(8, cv) / slowest_of(1024, cv)
    assert expected > 1.03
    for part in ("gemm_s", "attention_s"):
        assert r1024.breakdown_s[part] / r8.breakdown_s[part] == pytest.approx(expected, rel=1e-9)
    for part in ("elementwise_s", "tp_comm_s"):
        assert r1024.breakdown_s[part] == pytest.approx(r8.breakdown_s[part], rel=1e-12)


def test_the_pace_acts_on_the_compute_bound_only():
    """A GEMM bound by streaming its weights (4 rows) takes as long in any job; a compute-bound
    one takes 1/pace longer. A single device is its own slowest: pace 1."""
    from clusters.train import Rates
    cal = default_calibration()
    one, many = (Rates(H100.chip, cal, "bf16", n) for n in (1, 4096))
    assert one.pace == 1.0 and many.pace == pytest.approx(slowest_of(4096, cal.chip_spread["*"][0]))
    big, thin = F.Gemm("big", 8192, 8192, 8192), F.Gemm("thin", 4, 8192, 8192)
    assert many.gemm_s(big) == pytest.approx(one.gemm_s(big) / many.pace, rel=1e-12)
    assert many.gemm_s(thin) == one.gemm_s(thin)


def test_expected_slowest_of_normal_draws():
    """E[max of n standard normals]: 1/sqrt(pi) for two, and a seeded Monte Carlo for more."""
    assert expected_max_normal(1) == 0.0
    assert expected_max_normal(2) == pytest.approx(1 / np.sqrt(np.pi), abs=1e-6)
    rng = np.random.default_rng(7)
    for n in (8, 64, 512):
        mc = rng.standard_normal((40_000, n)).max(axis=1).mean()
        assert expected_max_normal(n) == pytest.approx(mc, abs=0.01)
    values = [expected_max_normal(n) for n in (2, 8, 384, 8192, 65536)]
    assert values == sorted(values) and values[-1] < 4.5
    assert slowest_of(384, 0.017) == pytest.approx(1 - 0.017 * expected_max_normal(384))


@pytest.mark.parametrize("chips", [384, 8192])
def test_searched_llama3_405b_on_h100_stays_within_25_percent_of_published(chips):
    """Meta's Llama 3 405B bf16 runs reached 38-43% MFU on 8K-16K H100 (arXiv 2407.21783
    Table 4). A searched plan on 384 or 8,192 H100 with their batch (2,048 sequences of 8K)
    may beat that only by what named mechanisms give (no bubble at 1,024 micro-batches,
    FlashAttention-3): at most 25% over 43%. It read 56.0% on 384 before the job's slowest
    device set the pace."""
    from clusters.search import search
    results, _ = search(load_model("llama3-405b"), H100, chips, 2048, 8192, top=1)
    assert results[0].feasible
    assert 0.40 < results[0].mfu <= 0.54, (chips, results[0].plan, results[0].mfu)
