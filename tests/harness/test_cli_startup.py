"""The paths that do not measure load neither JAX, SciPy nor pandas (what keeps them fast; the
times themselves are a benchmark: tests/bench/test_startup.py), and `--version` works."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("jax", "jaxlib", "scipy", "pandas", "matplotlib", "optax")
PATHS = [
    ["--help"],
    ["catalog"],
    ["catalog", "h100", "--format", "json"],
    ["collective", "--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8", "--bytes", "1GiB"],
    ["project", "--model", "llama3-70b", "--system", "hgx-h100", "--chips", "64", "--tp", "8",
     "--pp", "4"],
    ["project", "--model", "llama3-8b", "--system", "hgx-h100", "--chips", "8"],
    ["project", "--model", "deepseek-r1", "--system", "hgx-h200", "--chips", "8", "--mode",
     "decode", "--precision", "fp8", "--tpot-ms", "50"],
    ["project", "--model", "llama3-8b", "--system", "hgx-h100", "--chips", "8", "--format", "csv"],
    ["model", "template"],
    ["model", "list"],
    ["model", "show", "deepseek-v3", "--format", "json"],
    ["collective", "--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8", "--sweep",
     "--format", "csv"],
]
PROBE = """
import contextlib, io, json, sys
from harness.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
""" % (HEAVY,)


@pytest.mark.parametrize("argv", PATHS, ids=lambda a: " ".join(a[:3]))
def test_model_paths_do_not_load_the_measuring_stack(argv):
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                         timeout=120)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["code"] == 0, out.stderr
    assert doc["loaded"] == [], f"{' '.join(argv)} imported {doc['loaded']}"


def _declared_version():
    import tomllib

    with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def test_version(capsys):
    from harness import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"rackbench {_declared_version()}"


def test_version_of_an_uninstalled_tree(monkeypatch):
    """scripts/bootstrap's fallback puts the tree on the path without distribution metadata
    (an image without setuptools): the version still comes from pyproject.toml."""
    import importlib.metadata

    from harness import cli

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert cli.version() == _declared_version()
