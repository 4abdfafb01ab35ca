"""Golden outputs of the model commands: each case runs the real entry point (harness.cli.main)
and compares what it prints with tests/harness/golden/<case>.<format>. A table or Markdown file
must match to the character; JSON and CSV must match in every key, column and string, and in
every number to 1e-9 (the last bits of numpy's exp and log may differ between CPUs).

After an intended change to an output, regenerate the files and review their diff:

    RACKBENCH_GOLDEN=update .venv/bin/python -m pytest -q -p no:randomly tests/harness/test_golden.py
    git diff tests/harness/golden/

`rackbench devices` is left out: its output is this machine's (hostname, memory, device count);
tests/harness/test_cli.py checks its forms instead.
"""
from __future__ import annotations

import csv
import importlib
import io
import json
import math
import os
from pathlib import Path

import pytest

from harness import cli

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RACKBENCH_GOLDEN") == "update"
EXT = {"table": "txt", "markdown": "md", "json": "json", "csv": "csv"}

TRAIN = ["project", "--model", "llama3-70b", "--system", "hgx-h100", "--chips", "64", "--tp", "8",
         "--pp", "4", "--global-batch", "128"]
SEARCH = ["project", "--model", "llama3-8b", "--system", "hgx-h100", "--chips", "8",
          "--global-batch", "64", "--top", "3"]
DECODE = ["project", "--model", "deepseek-r1", "--system", "gb200-nvl72", "--chips", "48",
          "--mode", "decode", "--precision", "fp8", "--tpot-ms", "50"]
PREFILL = ["project", "--model", "deepseek-r1", "--system", "cloudmatrix-384", "--chips", "32",
           "--mode", "prefill", "--precision", "int8", "--seq-len", "4096"]
ALL_REDUCE = ["collective", "--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8",
              "--bytes", "1GiB"]
SWEEP = ["collective", "--system", "hgx-h800", "--op", "all_to_all", "--ranks", "16",
         "--ranks-per-domain", "8", "--sweep"]
PLAN = ["plan", "--device-kind", "NVIDIA H200", "--stage", "vendor"]

# (case name, argv, formats)
CASES = [
    ("project-train", TRAIN, ("table", "json", "csv")),
    ("project-search", SEARCH, ("table", "csv")),
    ("project-decode", DECODE, ("table", "json", "csv")),
    ("project-prefill", PREFILL, ("table", "csv")),
    ("collective", ALL_REDUCE, ("table", "json", "csv")),
    ("collective-sweep", SWEEP, ("table", "csv")),
    ("catalog", ["catalog"], ("table", "csv", "markdown")),
    ("catalog-h100", ["catalog", "h100"], ("table", "json", "csv", "markdown")),
    ("catalog-ub-cm384", ["catalog", "ub-cm384"], ("table", "json")),
    ("validate-collective", ["validate", "--mode", "collective"], ("table", "json", "csv", "markdown")),
    ("versus-llama3-405b", ["versus", "--workload", "llama3-405b"], ("table",)),
    ("plan-vendor", PLAN, ("table", "json", "csv")),
    ("model-template", ["model", "template"], ("table",)),
    ("model-list", ["model", "list"], ("table", "csv")),
    ("model-show", ["model", "show", "deepseek-v3"], ("table", "json", "csv")),
]
PARAMS = [pytest.param(argv, name, fmt, id=f"{name}.{EXT[fmt]}")
          for name, argv, fmts in CASES for fmt in fmts]


@pytest.fixture
def no_reference_sets(tmp_path, monkeypatch):
    """The default calibration, whatever sits in results/reference/ of this checkout."""
    for name in ("project", "versus"):
        monkeypatch.setattr(importlib.import_module(f"harness.cli.{name}"), "REFERENCE_DIR",
                            tmp_path)


def _same(got, want, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys differ"
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: lengths differ"
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300), \
            f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _cell(text: str):
    try:
        return float(text) if any(c.isdigit() for c in text) and text.strip() == text else text
    except ValueError:
        return text


def _compare(fmt: str, got: str, want: str) -> None:
    if fmt == "json":
        _same(json.loads(got), json.loads(want))
    elif fmt == "csv":
        rows = [[_cell(c) for c in r] for r in csv.reader(io.StringIO(got))]
        _same(rows, [[_cell(c) for c in r] for r in csv.reader(io.StringIO(want))])
    else:
        assert got == want


@pytest.mark.parametrize("argv, name, fmt", PARAMS)
def test_golden(argv, name, fmt, capsys, no_reference_sets):
    code = cli.main([*argv, *([] if fmt == "table" else ["--format", fmt])])
    got = capsys.readouterr().out
    assert code == 0, got
    path = GOLDEN / f"{name}.{EXT[fmt]}"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
        return
    assert path.exists(), f"no golden file {path}: RACKBENCH_GOLDEN=update (see this module)"
    _compare(fmt, got, path.read_text())


def test_every_golden_file_has_a_case():
    """A golden file whose case was removed would sit there checked by nothing."""
    names = {f"{name}.{EXT[fmt]}" for name, _, fmts in CASES for fmt in fmts}
    assert {p.name for p in GOLDEN.iterdir()} == names
