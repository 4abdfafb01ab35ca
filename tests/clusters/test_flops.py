"""Parameter and FLOP counts against published totals and closed forms."""
import pytest

from clusters import flops as F
from clusters.workloads import list_models, load_model


@pytest.mark.parametrize("name", [n for n in list_models()])
def test_total_params_match_published(name):
    m = load_model(name)
    if m.reported_params is None:
        pytest.skip("no published total")
    # within 1%, or equal at the precision the source prints (Megatron 2021 gives billions to
    # one decimal: its "1.7B" is our 1.652B rounded)
    billions = F.total_params(m) / 1e9
    assert billions == pytest.approx(m.reported_params / 1e9, rel=0.01) or \
        round(billions, 1) == round(m.reported_params / 1e9, 1)


@pytest.mark.parametrize("name", ["deepseek-v3", "qwen3-235b-a22b", "mixtral-8x22b"])
def test_active_params_match_published(name):
    m = load_model(name)
    assert F.active_params(m) == pytest.approx(m.reported_active_params, rel=0.03)


def test_llama3_405b_exact_count():
    # 126 * (attention 570,425,344 + SwiGLU 2,617,245,696 + norms 32,768) + 2 * 128256*16384 + 16384
    m = load_model("llama3-405b")
    assert F.total_params(m) == 126 * (570425344 + 2617245696 + 32768) + 2 * 128256 * 16384 + 16384


def test_deepseek_mtp_is_about_14b_with_shared_head():
    # DeepSeek-V3's hub checkpoint is 685B = 671B main + 14B MTP (which includes the shared
    # embedding and head as stored there: 2 * 0.93B).
    m = load_model("deepseek-v3")
    with_head = F.mtp_params(m) + 2 * m.vocab_size * m.hidden_size
    assert with_head == pytest.approx(14e9, rel=0.06)


@pytest.mark.parametrize("name", ["gpt-18b", "gpt-146b", "gpt-310b", "gpt-530b", "gpt-1t",
                                  "gpt3-175b"])
def test_hardware_flops_with_full_recompute_equal_megatron_formula(name):
    m = load_model(name)
    assert F.hardware_flops_per_token(m, m.seq_len, "full") == pytest.approx(
        F.megatron_2021_flops_per_token(m, m.seq_len), rel=1e-9)


def test_model_flops_is_palm_6n_plus_12lhqt_for_llama():
    # PaLM: 6N + 12*L*H*Q*T where N excludes the input embedding (a lookup).
    m = load_model("llama3-8b")
    s = 8192
    n = F.total_params(m) - m.vocab_size * m.hidden_size - (2 * m.n_layers + 1) * m.hidden_size
    expect = 6 * n + 12 * m.n_layers * m.n_heads * m.head_dim * s
    assert F.model_flops_per_token(m, s) == pytest.approx(expect, rel=1e-9)


def test_recompute_ordering_and_causal_halving():
    m = load_model("llama3-70b")
    s = 4096
    none = F.hardware_flops_per_token(m, s, "none")
    sel = F.hardware_flops_per_token(m, s, "selective")
    full = F.hardware_flops_per_token(m, s, "full")
    assert none == F.model_flops_per_token(m, s) < sel < full
    assert F.attention_core_flops_fwd(m, s, causal=True) * 2 == F.attention_core_flops_fwd(m, s, False)


def test_gemm_shapes_sum_to_layer_flops():
    m = load_model("llama3-70b")
    per_tok = sum(g.flops for g in F.attention_gemms(m, 1, 1) + F.ffn_gemms(m, 1, m.ffn_hidden_size, 1))
    assert per_tok == 2 * (F.dense_layer_params(m) - F.norm_params(m))
    # Tensor parallelism splits the FLOPs evenly.
    tp8 = sum(g.flops for g in F.attention_gemms(m, 1, 8) + F.ffn_gemms(m, 1, m.ffn_hidden_size, 8))
    assert tp8 * 8 == per_tok


def test_moe_gemms_balance_tokens_over_experts():
    m = load_model("deepseek-v3")
    tokens, ep = 4096, 64
    g = {x.name: x for x in F.moe_gemms(m, tokens, 1, ep)}
    assert g["expert_up"].count == 4
    assert g["expert_up"].m == tokens * ep * 8 // 256
    # Expert FLOPs per chip = tokens * top-k * one expert's FLOPs per token.
    one = 2 * F.ffn_params(m, 2048)
    assert g["expert_up"].flops + g["expert_down"].flops == pytest.approx(tokens * 8 * one)


def test_layer_gemms_llama3_70b_tp8():
    shapes = {g.name: (g.m, g.n, g.k) for g in F.layer_gemms(load_model("llama3-70b"), 4096, 8)}
    assert shapes["qkv"] == (4096, (64 + 16) * 128 // 8, 8192)
    assert shapes["ffn_up"] == (4096, 2 * 28672 // 8, 8192)
    assert shapes["ffn_down"] == (4096, 8192, 28672 // 8)
    assert shapes["attn_out"] == (4096, 8192, 64 * 128 // 8)
    assert shapes["logits"] == (4096, 128256 // 8, 8192)


def test_layer_gemms_deepseek_v3():
    shapes = {g.name: (g.m, g.n, g.k) for g in F.layer_gemms(load_model("deepseek-v3"), 4096, 1)}
    assert shapes["kv_down"] == (4096, 512 + 64, 7168)
    assert shapes["q_up"] == (4096, 128 * 192, 1536)
    assert shapes["expert_up"] == (4096 * 8 // 256, 2 * 2048, 7168)  # balanced routing
    assert shapes["expert_down"] == (4096 * 8 // 256, 7168, 2048)
    assert shapes["ffn_up"] == (4096, 2 * 18432, 7168)  # the three dense layers


def test_tp_overlap_chunks_follow_transformer_engines_defaults():
    """Ring exchange splits the column-parallel forward GEMMs and the row-parallel dgrads in tp
    chunks, the pipeline method the row-parallel forward GEMMs in 4 (TE initialize_ub)."""
    shapes = {g.name: (g.m, g.n, g.k) for g in F.layer_gemms(load_model("llama3-70b"), 4096, 8)}
    assert shapes["qkv_split8"] == (512, (64 + 16) * 128 // 8, 8192)
    assert shapes["ffn_up_split8"] == (512, 2 * 28672 // 8, 8192)
    assert shapes["attn_out_split4"] == (1024, 8192, 64 * 128 // 8)
    assert shapes["attn_out_split8"] == (512, 8192, 64 * 128 // 8)
    assert shapes["ffn_down_split4"] == (1024, 8192, 28672 // 8)
    assert not any("split" in g.name for g in F.layer_gemms(load_model("llama3-70b"), 4096, 1))
    pairs = F.overlap_chunks(F.attention_gemms(load_model("llama3-70b"), 4096, 8), 8)
    assert all(whole.flops == pytest.approx(chunk.flops) for whole, chunk in pairs)
