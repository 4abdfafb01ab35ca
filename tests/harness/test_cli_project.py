"""`rackbench project` through the real entry point: flags reach the plan, JSON keys, one-line
errors naming the flag or value, exit codes."""
import json

import pytest

from harness import cli


def _cli(argv, capsys):
    rc = cli.main(["project", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err.strip()


def _json(argv, capsys):
    rc, out, err = _cli([*argv, "--format", "json"], capsys)
    assert rc == 0, err
    return json.loads(out)


def test_cli_project_json_with_plan(capsys):
    rc, out, _ = _cli(["--model", "llama3-70b", "--system", "hgx-h100", "--chips", "64",
                       "--precision", "fp8", "--tp", "4", "--pp", "4", "--cp", "2", "--vpp", "5",
                       "--global-batch", "128", "--seq-len", "8192", "--format", "json"], capsys)
    assert rc == 0
    doc = json.loads(out)
    for key in ("step_time_s", "tokens_per_s_per_chip", "model_flops_per_s_per_chip",
                "hardware_flops_per_s_per_chip", "mfu", "memory_bytes_per_chip", "power_w",
                "breakdown_s", "plan", "calibration"):
        assert key in doc
    assert doc["plan"]["dp"] == 2 and "plans_evaluated" not in doc
    assert sum(doc["breakdown_s"].values()) == pytest.approx(doc["step_time_s"])
    assert 0 < doc["mfu"] < 1


def test_cli_project_searches_without_plan_flags(capsys):
    rc, out, _ = _cli(["--model", "llama3-8b", "--system", "hgx-h100", "--chips", "8",
                       "--global-batch", "64"], capsys)
    assert rc == 0
    assert "searched" in out and "plans" in out and "MFU" in out


@pytest.mark.parametrize("argv, words", [
    (["--model", "llama9", "--system", "hgx-h100", "--chips", "8"], ["unknown model 'llama9'"]),
    (["--model", "llama3-8b", "--system", "hgx-h900", "--chips", "8"], ["hgx-h900"]),
    (["--model", "llama3-8b", "--system", "hgx-h100", "--chips", "12", "--tp", "8"],
     ["12 ranks (12 chips)", "tp*pp*cp"]),
    (["--model", "llama3-8b", "--system", "hgx-h100", "--chips", "8", "--global-batch", "-4"],
     ["--global-batch", "positive"]),
    (["--model", "llama3-8b", "--system", "hgx-h100", "--chips", "8", "--tp", "2", "--dp", "2"],
     ["does not equal the 8 ranks"]),
    # 1e9 chips once searched plans for over 90 s; the bound is checked before any work
    (["--model", "llama3-405b", "--system", "hgx-h100", "--chips", "1000000000"],
     ["--chips 1000000000", "at most 1,048,576"]),
    (["--model", "llama3-8b", "--system", "hgx-h100", "--chips", "8", "--train-tokens", "nan"],
     ["--train-tokens", "positive"]),
])
def test_cli_project_bad_input_is_one_line(argv, words, capsys):
    rc, _, err = _cli(argv, capsys)
    assert rc == 2 and "\n" not in err
    for w in words:
        assert w in err


def test_cli_software_flags_reach_the_plan(capsys):
    rc, out, _ = _cli(["--model", "gpt3-175b", "--system", "dgx-a100", "--chips", "384",
                       "--tp", "8", "--pp", "12", "--global-batch", "1536", "--recompute", "full",
                       "--zero", "0", "--attention", "materialized", "--dropout",
                       "--precision", "bf16", "--format", "json"], capsys)
    plan = json.loads(out)["plan"]
    assert rc == 0 and plan["attention_impl"] == "materialized" and plan["dropout"] is True
    rc, out, _ = _cli(["--model", "deepseek-v3", "--system", "hgx-h800", "--chips", "256",
                       "--global-batch", "1024", "--ep-overlap", "--format", "json", "--top", "1"],
                      capsys)
    assert rc == 0 and json.loads(out)["plan"]["ep_overlap"] is True


def test_cli_decode_with_tpot_target(capsys):
    doc = _json(["--model", "llama3-70b", "--system", "hgx-h100", "--chips", "8", "--tp", "8",
                "--mode", "decode", "--tpot-ms", "30", "--context", "4096"], capsys)
    assert doc["mode"] == "decode" and doc["tpot_s"] <= 0.030
    assert doc["output_tokens_per_s_per_chip"] > 0 and doc["plan"]["batch_per_chip"] > 1
    assert doc["calibration"] == "default"


def test_cli_prefill(capsys):
    doc = _json(["--model", "deepseek-r1", "--system", "cloudmatrix-384", "--chips", "32",
                "--mode", "prefill", "--precision", "int8", "--seq-len", "4096"], capsys)
    assert doc["ttft_s"] > 0 and doc["input_tokens_per_s_per_chip"] > 0
    assert doc["plan"]["ep"] == 32


def test_cli_default_ep_stops_at_the_expert_count(capsys):
    doc = _json(["--model", "deepseek-r1", "--system", "cloudmatrix-384", "--chips", "384",
                "--mode", "prefill", "--precision", "int8", "--seq-len", "4096"], capsys)
    assert doc["plan"]["ep"] == 256 and doc["ttft_s"] > 0
