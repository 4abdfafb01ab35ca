"""The result-set schema: round trip, pytest-benchmark compatibility, bad files."""
import json
import subprocess
import sys

import pytest

from harness.errors import UserError
from harness.resultset import SCHEMA_VERSION, CaseResult, ResultSet, load, save, to_dataframe
from harness.stats import summarize


def _set():
    s = [1.0e-3, 1.1e-3, 0.9e-3, 1.05e-3, 0.95e-3]
    ok = CaseResult(name="matmul/fp32/64x64x64", group="matmul", params={"m": 64, "dtype": "fp32"}, status="ok",
                    samples_s=s, stats=summarize(s).to_dict(), flops=2 * 64**3, bytes=3 * 64 * 64 * 4,
                    achieved_flops_per_s=2 * 64**3 / 1e-3, timing={"method": "host-loop", "reps_per_sample": 3})
    bad = CaseResult(name="matmul/fp8/64x64x64", group="matmul", params={"dtype": "fp8"}, status="skipped", reason="no fp8")
    return ResultSet(meta={"created_utc": "2026-11-28T15:00:00Z", "machine_id": "m", "git": {"commit": "abc"},
                           "device": {"kind": "cpu", "count": 1}}, cases=[ok, bad])


def test_round_trip_keeps_every_field(tmp_path):
    rs = _set()
    save(rs, tmp_path / "a.json")
    back = load(tmp_path / "a.json")
    assert [vars(c) for c in back.cases] == [vars(c) for c in rs.cases]
    assert back.meta["schema_version"] == SCHEMA_VERSION
    assert back.meta["machine_id"] == "m"


def test_layout_is_pytest_benchmark_json(tmp_path):
    save(_set(), tmp_path / "a.json")
    doc = json.loads((tmp_path / "a.json").read_text())
    assert set(doc) >= {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    (bench,) = doc["benchmarks"]  # only cases with samples; the skipped one lives in rackbench.cases
    assert bench["stats"]["median"] == pytest.approx(1.0e-3) and bench["stats"]["iterations"] == 3
    assert bench["extra_info"]["rackbench"]["status"] == "ok"


def test_pytest_benchmark_compare_reads_our_files(tmp_path):
    save(_set(), tmp_path / "a.json")
    save(_set(), tmp_path / "b.json")
    # its console script's entry point, run by this interpreter: the script itself lies beside
    # whichever interpreter installed the package (the parent venv's, on the GPU image)
    cli = "import sys; from pytest_benchmark.cli import main; sys.exit(main())"
    out = subprocess.run([sys.executable, "-c", cli, "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "matmul/fp32/64x64x64" in out.stdout


def test_dataframe_one_row_per_case(tmp_path):
    df = to_dataframe(_set())
    assert list(df["name"]) == ["matmul/fp32/64x64x64", "matmul/fp8/64x64x64"]
    assert df.loc[0, "median_s"] == pytest.approx(1.0e-3)
    assert df.loc[1, "status"] == "skipped" and df.loc[0, "param_m"] == 64


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"rackbench": {"schema_version": 99, "cases": []}}', "unknown schema version 99"),
        ('{"rackbench": {"cases": []}}', "schema_version missing"),
        ("[1, 2]", "not a result set"),
        ('{"rackbench": {"schema_version": 1, "cases": [{"name": "x", "bogus": 1}]}}', "unknown case field"),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(UserError) as err:
        load(p)
    assert message in str(err.value) and str(p) in str(err.value)
    assert "\n" not in str(err.value)


def test_binary_file(tmp_path):
    p = tmp_path / "binary.json"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(UserError, match="not UTF-8 text"):
        load(p)


def test_truncated_file(tmp_path):
    save(_set(), tmp_path / "a.json")
    text = (tmp_path / "a.json").read_text()
    (tmp_path / "a.json").write_text(text[: len(text) // 2])
    with pytest.raises(UserError, match="corrupted or truncated"):
        load(tmp_path / "a.json")


def test_failed_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    save(_set(), tmp_path / "a.json")
    before = (tmp_path / "a.json").read_text()
    import harness.resultset as rsmod

    def explode(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(rsmod.os, "replace", explode)
    with pytest.raises(UserError, match="a.json: cannot write"):
        save(_set(), tmp_path / "a.json")
    assert (tmp_path / "a.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


def test_loads_plain_pytest_benchmark_files(tmp_path):
    doc = {"machine_info": {"node": "n", "python_version": "3.11"}, "commit_info": {"id": "c"}, "datetime": "x",
           "version": "5.1.0", "benchmarks": [{"name": "test_a", "group": None, "params": None,
                                              "stats": {"data": [1.0, 2.0, 3.0], "iterations": 1}}]}
    (tmp_path / "pb.json").write_text(json.dumps(doc))
    rs = load(tmp_path / "pb.json")
    assert rs.foreign and rs.cases[0].stats["median_s"] == 2.0
