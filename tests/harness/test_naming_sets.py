"""Naming a result set: `latest`, `latest~N`, a directory and `DIR~N`, newest by created time
(ties by file name), in every command that reads a set."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from harness.errors import UserError
from harness.resultset import created_time, load, resolve_set, save

DATA = Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("rackbench_test_synth", DATA / "synth.py")
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)


def _put(directory: Path, file_name: str, created: str, machine: str = "box-a") -> Path:
    rng = np.random.default_rng(abs(hash(file_name)) % 2**32)
    rs = synth.make_set(synth.many_cases(rng, 2), created_utc=created, machine_id=machine)
    return save(rs, directory / machine / file_name)


@pytest.fixture
def results(tmp_path):
    """Two machines; within box-a the file names disagree with the created times on purpose."""
    r = tmp_path / "results"
    _put(r, "a-oldest.json", "2026-11-01T00:00:00Z")
    _put(r, "z-middle.json", "2026-11-02T00:00:00Z")
    _put(r, "m-newest.json", "2026-11-03T00:00:00Z")
    _put(r, "b-tie.json", "2026-11-03T00:00:00Z")  # same time as m-newest: the name breaks the tie
    _put(r, "zzz-box-b.json", "2026-10-01T00:00:00Z", machine="box-b")  # older machine
    return r


def test_latest_is_the_newest_set_of_the_most_recent_machine(results):
    assert resolve_set("latest", results).name == "m-newest.json"
    assert resolve_set("latest~1", results).name == "b-tie.json"
    assert resolve_set("latest~3", results).name == "a-oldest.json"
    with pytest.raises(UserError, match=r"latest~4: .*box-a holds 4 readable result set\(s\); latest~4 needs 5"):
        resolve_set("latest~4", results)


def test_a_directory_means_its_newest_set(results):
    assert resolve_set(results / "box-b").name == "zzz-box-b.json"
    assert resolve_set(results).name == "m-newest.json"
    assert resolve_set(f"{results / 'box-a'}~2").name == "z-middle.json"
    plain = results / "box-a" / "a-oldest.json"
    assert resolve_set(plain) == plain  # a file is itself


def test_created_time_reads_plain_gzip_and_pytest_benchmark_files(results, tmp_path):
    path = results / "box-a" / "a-oldest.json"
    assert created_time(path) == "2026-11-01T00:00:00Z"
    gz = tmp_path / "x.json.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert created_time(gz) == "2026-11-01T00:00:00Z"
    assert created_time(DATA / "pytest_benchmark_new.json") == "2026-11-02T02:00:00Z"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert created_time(bad) is None


def test_no_results_directory_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"latest: no results directory results here"):
        load("latest")


def test_commands_accept_latest_and_directories(cli, capsys, results, monkeypatch):
    monkeypatch.chdir(results.parent)
    assert cli(["show", "latest"]) == 0
    assert "m-newest.json" in capsys.readouterr().out
    assert cli(["show", "results/box-b/"]) == 0
    assert "zzz-box-b.json" in capsys.readouterr().out
    assert cli(["compare", "latest~3", "latest", "--format", "json"]) in (0, 1)
    out = capsys.readouterr().out
    assert "a-oldest.json" in out and "m-newest.json" in out
    assert cli(["report", "--base", "latest~1", "--new", "latest", "--out", "rep"]) == 0
    assert "report-m-newest.html" in capsys.readouterr().out
