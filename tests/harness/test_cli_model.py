"""`rackbench model` through the real entry point: the template names every key of the model
schema and loads as it is (its commented-out sections too), and projects exactly as the model
it copies; list and show."""
from __future__ import annotations

import dataclasses
import json
import re

import pytest

from clusters import workloads
from clusters.workloads import load_model, load_model_file
from harness import cli
from harness.cli.model import KEYS


def _out(argv, capsys) -> str:
    assert cli.main(argv) == 0
    return capsys.readouterr().out


def test_template_documents_exactly_the_schema():
    spec = {"": set(workloads._TOP), "moe": set(workloads._MOE), "mla": set(workloads._MLA),
            "mtp": set(workloads._MTP)}
    assert {k: set(v) for k, v in KEYS.items()} == spec
    assert set(workloads._SPEC) - set(workloads._TOP) == {"sources", "moe", "mla", "mtp"}


@pytest.mark.parametrize("base", ["llama3-8b", "deepseek-v3", "gpt3-175b"])
def test_template_loads_as_the_model_it_copies(base, tmp_path, capsys):
    text = _out(["model", "template", "--from", base], capsys)
    path = tmp_path / "my.toml"
    path.write_text(text)
    got, want = load_model_file(path), load_model(base)
    differ = {f.name for f in dataclasses.fields(got) if getattr(got, f.name) != getattr(want, f.name)}
    assert differ == {"name", "description", "path"}
    for key in (k for keys in KEYS.values() for k in keys):  # every key is there, set or commented
        assert re.search(rf"^(# )?{key} = ", text, re.M), key


def test_template_projects_like_its_model(tmp_path, capsys):
    path = tmp_path / "my.toml"
    path.write_text(_out(["model", "template"], capsys))
    argv = ["--system", "hgx-h100", "--chips", "8", "--tp", "8", "--global-batch", "64",
            "--format", "json", "--no-band"]
    mine = json.loads(_out(["project", "--model", str(path), *argv], capsys))
    shipped = json.loads(_out(["project", "--model", "llama3-8b", *argv], capsys))
    assert mine["model"] == "my-model"
    assert mine["step_time_s"] == shipped["step_time_s"] and mine["mfu"] == shipped["mfu"]


def test_template_commented_sections_load_when_uncommented(tmp_path, capsys):
    """The commented-out [moe] and [mtp] of the dense template are valid TOML and valid values
    ([mla] needs n_kv_heads = n_heads, which Llama's GQA is not)."""
    lines, out, section = _out(["model", "template"], capsys).splitlines(), [], None
    for line in lines:
        m = re.match(r"# \[(\w+)\]", line)
        section = m.group(1) if m else (section if line.startswith("# ") else None)
        out.append(line[2:] if section in ("moe", "mtp") else line)
    path = tmp_path / "moe.toml"
    path.write_text("\n".join(out))
    m = load_model_file(path)
    assert m.moe.n_routed_experts == 256 and m.mtp_modules == 1 and m.mla is None


def test_list_and_show(capsys):
    out = _out(["model", "list"], capsys)
    for name in workloads.list_models():
        assert name in out
    assert "671B" in out and "37.6B" in out  # DeepSeek-V3's computed total and active
    rows = json.loads(_out(["model", "list", "--format", "json"], capsys))
    assert {r["name"] for r in rows} == set(workloads.list_models())
    out = _out(["model", "show", "deepseek-v3"], capsys)
    assert "671B computed, 671B reported" in out and "moe.max_nodes_per_token" in out
    assert "file: clusters/data/models/deepseek-v3.toml" in out


def test_show_a_bad_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    assert cli.main(["model", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1
