"""Model files: every shipped model loads, and bad files fail naming the file and the key."""
import pytest

from clusters.workloads import list_models, load_model, load_model_file
from clusters.errors import ModelInputError

REQUIRED = ["llama3-8b", "llama3-70b", "llama3-405b", "gpt3-175b", "deepseek-v3",
            "qwen3-235b-a22b", "mixtral-8x22b", "deepseek-r1", "llama2-70b",
            "gpt-18b", "gpt-146b", "gpt-310b", "gpt-530b", "gpt-1t"]

GOOD = """
name = "tiny"
description = "a test model"
source = "made up for a test"
n_layers = 2
hidden_size = 64
ffn_hidden_size = 256
n_heads = 4
n_kv_heads = 2
head_dim = 16
vocab_size = 1000
activation = "swiglu"
tied_embeddings = false
position_embedding = "rope"
linear_bias = false
seq_len = 128
"""


def test_every_required_model_ships():
    assert set(REQUIRED) <= set(list_models())
    for name in REQUIRED:
        m = load_model(name)
        assert m.name == name
        assert m.source


def test_deepseek_v3_shape():
    m = load_model("deepseek-v3")
    assert m.moe.n_routed_experts == 256 and m.moe.experts_per_token == 8
    assert m.moe.n_shared_experts == 1 and m.moe.n_dense_layers == 3
    assert m.moe.expert_ffn_hidden_size == 2048
    assert m.mla.kv_lora_rank == 512 and m.mla.qk_rope_head_dim == 64
    assert m.n_moe_layers == 58 and m.mtp_modules == 1


def write(tmp_path, text, name="m.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_by_path(tmp_path):
    m = load_model(str(write(tmp_path, GOOD)))
    assert m.name == "tiny" and m.n_kv_heads == 2 and not m.is_moe


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("n_layers", "n_layerz"), ["m.toml", "n_layerz"]),
    (lambda t: t.replace("vocab_size = 1000\n", ""), ["m.toml", "missing", "vocab_size"]),
    (lambda t: t.replace("hidden_size = 64", "hidden_size = -64"), ["hidden_size", "greater than 0"]),
    (lambda t: t.replace("n_kv_heads = 2", "n_kv_heads = 3"), ["n_kv_heads", "divide"]),
    (lambda t: t.replace('"swiglu"', '"relu"'), ["activation"]),
    (lambda t: t.replace("n_layers = 2", 'n_layers = "2"'), ["n_layers", "int"]),
    (lambda t: t + "\n[moe]\nn_routed_experts = 4\nexperts_per_token = 8\n"
     "n_shared_experts = 0\nexpert_ffn_hidden_size = 32\nn_dense_layers = 0\n",
     ["experts_per_token"]),
    (lambda t: t + "\n[moe]\nn_routed_experts = 4\nexperts_per_token = 2\n"
     "n_shared_experts = 0\nexpert_ffn_hidden_size = 32\n", ["moe.n_dense_layers", "missing"]),
    (lambda t: t + "\n[sources]\nbogus = \"x\"\n", ["bogus"]),
    (lambda t: t + "\n[mla]\nq_lora_rank = 0\nkv_lora_rank = 8\nqk_nope_head_dim = 8\n"
     "qk_rope_head_dim = 8\nv_head_dim = 8\n", ["n_kv_heads", "mla"]),
    (lambda t: t.replace("seq_len = 128", "seq_len = 128\nseq_len = 3"), ["m.toml", "TOML"]),
    (lambda t: t.replace("n_layers = 2", "n_layers = 9223372036854775807"), ["n_layers", "impossible"]),
])
def test_bad_files_name_file_and_key(tmp_path, edit, words):
    p = write(tmp_path, edit(GOOD))
    with pytest.raises(ModelInputError) as exc:
        load_model_file(p)
    for w in words:
        assert w in str(exc.value)


def test_unknown_model_name():
    with pytest.raises(ModelInputError, match="unknown model 'llama9'"):
        load_model("llama9")


def test_missing_file(tmp_path):
    with pytest.raises(ModelInputError, match="no such file"):
        load_model(str(tmp_path / "nope.toml"))


def test_a_binary_file_or_a_directory_is_one_line(tmp_path):
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\x00\xff\xfe model")
    with pytest.raises(ModelInputError, match="b.toml: not UTF-8"):
        load_model(str(binary))
    (tmp_path / "d.toml").mkdir()
    with pytest.raises(ModelInputError, match="d.toml: is a directory"):
        load_model(str(tmp_path / "d.toml"))


@pytest.mark.parametrize("replace, message", [
    (("n_layers = 2", "n_layers = 9223372036854775807"), "'n_layers' value 9223372036854775807 is impossible"),
    (("hidden_size = 64", "hidden_size = 10000001"), "'hidden_size' value 10000001 is impossible"),
    (("seq_len = 128", "seq_len = 1000000001"), "'seq_len' value 1000000001 is impossible"),
    (("seq_len = 128", "seq_len = 128\nreported_params = inf"), "'reported_params' value must be a finite number"),
])
def test_sizes_are_bounded_before_any_work(tmp_path, replace, message):
    """2**63-1 layers once hung a projection for minutes; now the file is refused at load."""
    path = tmp_path / "huge.toml"
    path.write_text(GOOD.replace(*replace))
    with pytest.raises(ModelInputError, match=message):
        load_model_file(path)


def test_projection_refuses_a_chip_count_it_cannot_search():
    from clusters.projection import MAX_CHIPS, check_chips

    check_chips(MAX_CHIPS)
    for bad in (0, MAX_CHIPS + 1, 10**9, 8.0, True):
        with pytest.raises(ModelInputError, match="chips must be an integer from 1 to"):
            check_chips(bad)
