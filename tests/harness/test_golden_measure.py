"""Golden outputs of the measurement commands (show, compare, history, fit-fabric, vendor-check,
nightly, migrate, report): each case runs the real entry point (harness.cli.main) from
tests/harness/data on its checked-in sets and compares what it prints (and, for nightly and
report, the Markdown it writes) with tests/harness/golden/<command>-<case>.<format>, as
golden_files.check does (to the character; JSON and CSV numbers to 1e-9). Temporary
directories are written as <tmp>.

After an intended change to an output, regenerate the files and review their diff:

    RACKBENCH_GOLDEN=update .venv/bin/python -m pytest -q -p no:randomly tests/harness/test_golden_measure.py
    git diff tests/harness/golden/

`rackbench run` is left out: it measures (tests/harness/test_cli.py runs it and checks its forms).
"""
from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness import cli, report

sys.path.insert(0, str(Path(__file__).parent))
from golden_files import EXT, GOLDEN, check  # noqa: E402

DATA = Path(__file__).parent / "data"
# The prefixes of this module's golden files (the model commands' are test_golden.py's).
COMMANDS = ("show", "compare", "history", "fit-fabric", "vendor-check", "nightly", "migrate", "report")

CPU_A = "sets/aa-20261130T123428-a.json.gz"  # two back-to-back default runs on the 2-core VM
CPU_B = "sets/aa-20261130T123428-b.json.gz"
CPU_V1 = "sets/vm-cpu-x8-20261128T162718-c64393e5-v1.json.gz"  # schema version 1, migrated on load

# (case name, argv, formats, exit code), run from tests/harness/data
CASES = [
    ("show-synthetic", ["show", "new.json"], ("table", "json", "csv", "markdown"), 0),
    ("show-cpu", ["show", CPU_B], ("table", "json", "csv", "markdown"), 0),
    ("show-cpu-failed", ["show", CPU_B, "--status", "failed"], ("table", "json"), 0),
    ("show-cpu-skipped", ["show", CPU_B, "--status", "skipped"], ("table",), 0),
    ("show-cpu-v1", ["show", CPU_V1], ("table",), 0),
    ("compare", ["compare", "base.json", "new.json"], ("table", "json", "csv", "markdown"), 1),
    ("compare-only-changed", ["compare", "base.json", "new.json", "--only-changed"], ("table", "markdown"), 1),
    ("compare-cpu", ["compare", CPU_A, CPU_B], ("table", "csv"), 0),
    ("compare-pytest-benchmark", ["compare", "pytest_benchmark_base.json", "pytest_benchmark_new.json"],
     ("table",), 1),
    ("compare-other-machine", ["compare", "base.json", "other_machine.json"], ("table", "json"), 3),
    ("history", ["history", "sets"], ("table", "json", "csv", "markdown"), 0),
    ("fit-fabric-send", ["fit-fabric", CPU_B, "--op", "send"], ("table", "json", "csv", "markdown"), 0),
    ("vendor-check", ["vendor-check", CPU_B, "vendor_h200.json"], ("table", "json", "csv", "markdown"), 1),
]
PARAMS = [pytest.param(argv, name, fmt, code, id=f"{name}.{EXT[fmt]}")
          for name, argv, fmts, code in CASES for fmt in fmts]


def _run(argv, fmt, capsys) -> tuple[int, str]:
    code = cli.main([*argv, *([] if fmt == "table" else ["--format", fmt])])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("argv, name, fmt, code", PARAMS)
def test_golden(argv, name, fmt, code, capsys, monkeypatch):
    monkeypatch.chdir(DATA)
    got_code, out = _run(argv, fmt, capsys)
    assert got_code == code, out
    check(name, fmt, out)


@pytest.fixture
def fixed_projections(monkeypatch):
    """The report's projection tables come from the model, which has its own golden files: a
    fixed table here keeps the report's golden about the report (its None and large-number
    cells included)."""
    monkeypatch.setattr(report.projections, "projection_tables", lambda: [(
        "llama3-405b (train), against CloudMatrix 384; calibration: default",
        pd.DataFrame({"system": ["cloudmatrix-384", "hgx-h20"], "chips": [384, 384],
                      "tokens_per_s_per_chip": [176.9, None], "tokens_per_s_per_kw": [11670.25, None],
                      "mfu": [0.5937, None], "plan": ["tp4 pp3 dp16", "infeasible: memory"]}))])


def _results(tmp_path: Path) -> Path:
    """base.json and new.json where the harness would store them."""
    results = tmp_path / "results"
    (results / "box-a").mkdir(parents=True)
    for name in ("base.json", "new.json"):
        shutil.copy(DATA / name, results / "box-a" / name.replace(".json", "-set.json"))
    return results


def _normalised(text: str, tmp_path: Path) -> str:
    return text.replace(str(tmp_path), "<tmp>")


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
def test_golden_nightly(fmt, tmp_path, capsys, monkeypatch, fixed_projections):
    """nightly's gate on the checked-in pair: the run itself is replaced by storing new.json."""
    results = _results(tmp_path)
    new = results / "box-a" / "new-set.json"
    new.unlink()

    def fake_run(suite, results_dir, progress=None):
        return Path(shutil.copy(DATA / "new.json", new))

    monkeypatch.setattr("harness.nightly._run_suite", fake_run)
    code, out = _run(["nightly", "--results", str(results), "--report-dir", str(tmp_path / "reports")], fmt, capsys)
    assert code == 1
    check("nightly", fmt, _normalised(out, tmp_path))
    if fmt == "table":
        md = (tmp_path / "reports" / "nightly-new-set.md").read_text()
        check("nightly-report", "markdown", _normalised(md, tmp_path))


def test_golden_report(tmp_path, capsys, fixed_projections):
    results = _results(tmp_path)
    code, out = _run(["report", "--results", str(results), "--out", str(tmp_path / "o")], "table", capsys)
    assert code == 0
    check("report", "table", _normalised(out, tmp_path))
    check("report", "markdown", _normalised((tmp_path / "o" / "report-new-set.md").read_text(), tmp_path))
    code, out = _run(["report", "--results", str(results), "--out", str(tmp_path / "o")], "json", capsys)
    check("report", "json", _normalised(out, tmp_path))


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_golden_migrate(fmt, tmp_path, capsys):
    copy = tmp_path / "v1.json"
    copy.write_bytes(gzip.decompress((DATA / CPU_V1).read_bytes()))
    code, out = _run(["migrate", str(copy)], fmt, capsys)
    assert code == 0
    check("migrate", fmt, _normalised(out, tmp_path))


def test_every_golden_file_of_these_commands_has_a_case():
    """A golden file whose case was removed would sit there checked by nothing."""
    names = {f"{name}.{EXT[fmt]}" for name, _, fmts, _ in CASES for fmt in fmts}
    names |= {f"nightly.{EXT[f]}" for f in ("table", "json", "csv", "markdown")} | {"nightly-report.md"}
    names |= {"report.txt", "report.md", "report.json"} | {f"migrate.{EXT[f]}" for f in ("table", "json", "csv")}
    ours = {p.name for p in GOLDEN.iterdir() if p.name.startswith(COMMANDS)}
    assert ours == names
