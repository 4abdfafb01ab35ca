"""Training step model: invariants, breakdown bookkeeping, bad plans, calibration effects."""
import pytest

from clusters import flops as F
from clusters.calibration import default_calibration
from clusters.catalog import load_system
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
    assert r.mfu == pytest.approx(r.model_flops_per_s_per_chip / 989e12)
    assert r.hfu >= r.mfu
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
    with pytest.raises(ModelInputError, match="does not equal the chip count 16"):
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
    z2, z3 = (train_step(L70, H100, p.with_(zero=z)) for z in (2, 3))
    m = p.n_microbatches
    # ZeRO 3 all-gathers twice and reduce-scatters once per micro-batch: 3m/2 x ZeRO 2 volume
    assert z3.breakdown_s["dp_comm_s"] == pytest.approx(1.5 * m * z2.breakdown_s["dp_comm_s"],
                                                        rel=0.05)
    assert z3.memory.weights_bytes < z2.memory.weights_bytes


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
    assert old.efficiency("attention", "nvidia-hopper", "bf16") == pytest.approx(
        flash2.efficiencies[0] * cal.sustained["nvidia-hopper"][0])
    assert old.efficiency("attention", "nvidia-ampere", "bf16") == \
        cal.efficiency("attention", "nvidia-ampere", "bf16")
    m = load_model("llama3-8b")
    plan = Plan(dp=8, global_batch=8, seq_len=8192, precision="fp8")
    new_r, old_r = (train_step(m, load_system("hgx-h100"), plan, c) for c in (cal, old))
    ratio = cal.efficiency("attention", "nvidia-hopper", "bf16") / \
        old.efficiency("attention", "nvidia-hopper", "bf16")
    assert old_r.breakdown_s["attention_s"] == pytest.approx(new_r.breakdown_s["attention_s"] * ratio)
    assert old_r.breakdown_s["gemm_s"] == new_r.breakdown_s["gemm_s"]
