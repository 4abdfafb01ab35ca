"""Memory per chip: Korthikanti et al. 2022 closed forms, ZeRO sharding, MoE, infeasibility."""
import pytest

from clusters import flops as F
from clusters.memory import (activation_bytes_per_token_layer, memory_per_chip,
                             params_per_chip)
from clusters.plan import Plan
from clusters.workloads import load_model

GPT = load_model("gpt3-175b")
H, A, S = GPT.hidden_size, GPT.n_heads, 2048
MEG2021 = dict(attention_impl="materialized", dropout=True, seq_len=S, global_batch=8)


@pytest.mark.parametrize("t", [1, 2, 8])
def test_korthikanti_no_parallelism_tricks(t):
    # eq. (2) with tensor parallelism: s*b*h*(10 + 24/t + 5*a*s/(h*t)) bytes per layer
    p = Plan(tp=t, sequence_parallel=False, **MEG2021)
    expect = H * (10 + 24 / t + 5 * A * S / (H * t))
    assert activation_bytes_per_token_layer(GPT, p, False) == pytest.approx(expect)


def test_korthikanti_sequence_parallel_selective_and_full():
    t = 8
    sp = Plan(tp=t, **MEG2021)
    assert activation_bytes_per_token_layer(GPT, sp, False) == pytest.approx(
        H * (34 / t + 5 * A * S / (H * t)))
    sel = sp.with_(recompute="selective")
    assert activation_bytes_per_token_layer(GPT, sel, False) == pytest.approx(34 * H / t)
    full = sp.with_(recompute="full")
    assert activation_bytes_per_token_layer(GPT, full, False) == pytest.approx(2 * H / t)


def test_flash_attention_stores_no_scores_and_fp8_saves_gemm_inputs():
    m = load_model("llama3-70b")
    bf16 = Plan(tp=8, seq_len=8192, global_batch=8)
    fp8 = bf16.with_(precision="fp8")
    a, b = (activation_bytes_per_token_layer(m, p, False) for p in (bf16, fp8))
    # independent of seq_len with FlashAttention
    assert a == activation_bytes_per_token_layer(m, bf16.with_(seq_len=2048), False)
    q = m.n_heads * m.head_dim
    assert a - b == pytest.approx((2 * m.hidden_size) / 8 + (q + m.ffn_hidden_size) / 8)


def test_zero_stages_shard_what_they_claim():
    m = load_model("llama3-70b")
    base = Plan(tp=8, pp=1, dp=16, global_batch=16, seq_len=4096)
    mems = [memory_per_chip(m, base.with_(zero=z), 80e9) for z in range(4)]
    nonexpert, _ = params_per_chip(m, base.tp, base.pp, base.ep)
    assert mems[0].optimizer_bytes == pytest.approx(12 * nonexpert)
    assert mems[1].optimizer_bytes == pytest.approx(12 * nonexpert / 16)
    assert mems[1].grads_bytes == pytest.approx(4 * nonexpert)
    assert mems[2].grads_bytes == pytest.approx(4 * nonexpert / 16)
    assert mems[3].weights_bytes < mems[2].weights_bytes == pytest.approx(2 * nonexpert)
    totals = [x.total_bytes for x in mems]
    assert totals == sorted(totals, reverse=True)


def test_moe_expert_weights_split_by_ep():
    m = load_model("deepseek-v3")
    p = Plan(tp=1, pp=16, dp=64, ep=64, global_batch=1024, seq_len=4096)
    _, experts = params_per_chip(m, p.tp, p.pp, p.ep)
    # busiest stage: ceil(61/16) = 4 layers, MoE layers pro rata; 256/64 = 4 experts each
    per_layer_per_chip = 4 * F.ffn_params(m, 2048)
    assert per_layer_per_chip * 64 == F.expert_params_per_layer(m)
    assert experts == pytest.approx(4 * (58 / 61) * per_layer_per_chip)


def test_infeasible_plan_says_why():
    m = load_model("llama3-405b")
    mem = memory_per_chip(m, Plan(tp=8, global_batch=8, seq_len=8192), 80e9)
    assert not mem.feasible
    assert "needs" in mem.reason and "GB per chip" in mem.reason and "weights" in mem.reason


def test_megatron_gpt3_plan_fits_an_a100():
    p = Plan(tp=8, pp=12, dp=4, global_batch=1536, recompute="full", zero=0,
             sequence_parallel=False, **{k: v for k, v in MEG2021.items() if k != "global_batch"})
    mem = memory_per_chip(GPT, p, 80e9)
    assert mem.feasible, mem.reason


@pytest.mark.parametrize("layers, pp, edges", [(126, 16, (7, 7)), (96, 12, (8, 8)),
                                                (61, 8, (7, 7)), (17, 16, (1, 1)),
                                                (80, 1, (80, 80)), (127, 16, (8, 7))])
def test_edge_stages_give_up_the_shortfall(layers, pp, edges):
    from clusters.memory import edge_stage_layers
    assert tuple(int(x) for x in edge_stage_layers(layers, pp)) == edges


def test_llama3_405b_published_plan_holds_seven_layers_on_the_first_stage():
    """arXiv 2407.21783 sec. 3.3.2: 126 layers on 16 stages, one fewer on the first and the
    last; one-layer chunks (v = 8); no activation checkpointing; it fits an 80 GB H100."""
    m = load_model("llama3-405b")
    p = Plan(tp=8, pp=16, dp=64, vpp=8, global_batch=2048, seq_len=8192, zero=2)
    per_layer = activation_bytes_per_token_layer(m, p, False) * 8192
    assert memory_per_chip(m, p, 80e9).activations_bytes == pytest.approx(per_layer * 7 * 16 * (1 + 15 / (16 * 8)))
    assert memory_per_chip(m, p, 80e9).feasible
