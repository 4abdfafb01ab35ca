"""Never lose or leave half a file: a full disk (ENOSPC, simulated at each step of a write), file
modes, names unique per run, output places checked before anything is measured, vendor-check
writing only our own sets, and the schema migration on the stored sets of this repository."""
from __future__ import annotations

import errno
import gzip
import importlib.util
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import report, resultset
from harness.errors import UserError
from harness.resultset import SCHEMA_VERSION, load, migrate_file, save, save_new, write_atomic

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import fast_cfg, tiny_case  # noqa: E402

DATA = Path(__file__).parent / "data"
SETS = DATA / "sets"
_spec = importlib.util.spec_from_file_location("rackbench_test_synth", DATA / "synth.py")
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)


def _set(seed=0, **meta):
    return synth.make_set(synth.many_cases(np.random.default_rng(seed), 4), **meta)


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDisk:
    """A file object whose writes fail as a full disk makes them fail."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[: len(data) // 2])  # half of it got out before the disk filled up
        _enospc()

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _fail_write(monkeypatch):
    real = resultset.os.fdopen
    monkeypatch.setattr(resultset.os, "fdopen", lambda fd, mode="r": _FullDisk(real(fd, mode)))


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_full_disk_leaves_the_old_file_whole_and_no_temp_file(tmp_path, monkeypatch, step):
    path = save(_set(0), tmp_path / "set.json")
    before = path.read_bytes()
    if step == "write":
        _fail_write(monkeypatch)
    else:
        monkeypatch.setattr(resultset.os, step, _enospc)
    with pytest.raises(UserError) as err:
        save(_set(1), path)
    assert str(err.value) == f"{path}: cannot write (No space left on device)"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.json"]


def test_full_disk_during_report_leaves_no_truncated_png(cli, capsys, tmp_path, monkeypatch):
    results = tmp_path / "results"
    synth.save_in(results, _set(0, created_utc="2026-11-01T02:00:00Z"))
    synth.save_in(results, _set(1, created_utc="2026-11-02T02:00:00Z", commit="b" * 40))
    out = tmp_path / "reports"
    out.mkdir()
    _fail_write(monkeypatch)
    assert cli(["report", "--results", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No space left on device" in err
    assert list(out.iterdir()) == []  # neither a half PNG nor a temp file


def test_full_disk_mid_run_keeps_the_last_whole_set(cli, tmp_path, monkeypatch):
    """The set is claimed before the first case and rewritten after each: when a rewrite fails,
    the run stops with one line and the file still holds the last whole version."""
    from harness.runner import run_suite

    calls = {"n": 0}
    real_replace = resultset.os.replace

    def replace_then_fail(src, dst):
        calls["n"] += 1
        if calls["n"] >= 2:  # the claim (a link) and the first rewrite succeed
            _enospc()
        return real_replace(src, dst)

    monkeypatch.setattr(resultset.os, "replace", replace_then_fail)
    out = tmp_path / "set.json"
    with pytest.raises(UserError, match="No space left on device"):
        run_suite(suite="quick", cases=[tiny_case("tiny/a"), tiny_case("tiny/b"), tiny_case("tiny/c")],
                  cfg=fast_cfg(), out_path=out)
    stored = load(out)
    assert stored.meta["complete"] is False and [c.name for c in stored.cases] == ["tiny/a"]
    assert [p.name for p in tmp_path.iterdir()] == ["set.json"]


def test_written_files_are_0644(tmp_path):
    path = save(_set(), tmp_path / "a.json")
    png = write_atomic(tmp_path / "p.png", b"\x89PNG")
    html, md = report.write_report(tmp_path / "rep", "r", new=load(path))
    for p in (path, png, html, md, *(tmp_path / "rep").glob("*.png")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_set_names_are_unique_for_runs_in_the_same_second(tmp_path):
    rs = _set()
    first = save_new(rs, tmp_path / "20261101T020000-aaaaaaaa.json")
    second = save_new(_set(1), tmp_path / "20261101T020000-aaaaaaaa.json")
    third = save_new(_set(2), tmp_path / "20261101T020000-aaaaaaaa.json")
    assert [p.name for p in (first, second, third)] == [
        "20261101T020000-aaaaaaaa.json", "20261101T020000-aaaaaaaa-2.json", "20261101T020000-aaaaaaaa-3.json"]
    assert load(first).cases[0].samples_s == rs.cases[0].samples_s  # the first was not overwritten


def test_exclusive_write_without_hard_links(tmp_path, monkeypatch):
    """Some file systems refuse links: the name is then reserved with O_EXCL."""
    monkeypatch.setattr(resultset.os, "link", lambda a, b: (_ for _ in ()).throw(OSError(errno.EPERM, "no links")))
    a = save_new(_set(0), tmp_path / "x.json")
    b = save_new(_set(1), tmp_path / "x.json")
    assert (a.name, b.name) == ("x.json", "x-2.json") and load(a).path == a
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-2.json", "x.json"]


def test_two_runs_started_in_the_same_second_keep_both_sets(tmp_path, monkeypatch):
    from harness import device
    from harness.runner import run_suite

    env = device.environment()
    env["created_utc"] = "2026-11-01T02:00:00.000000Z"
    monkeypatch.setattr(device, "environment", lambda: dict(env))
    a = run_suite(suite="quick", cases=[tiny_case("tiny/a")], cfg=fast_cfg(), results_dir=tmp_path)
    b = run_suite(suite="quick", cases=[tiny_case("tiny/b")], cfg=fast_cfg(), results_dir=tmp_path)
    assert a.path != b.path and a.path.parent == b.path.parent
    assert [c.name for c in load(a.path).cases] == ["tiny/a"] and [c.name for c in load(b.path).cases] == ["tiny/b"]


# ---------------------------------------------------------------------------- places checked first


@pytest.mark.parametrize("flags, message", [
    (["--out", "{file}"], "--out {file}: exists and is not a directory"),
    (["--out", "{file}/sub"], "--out {file}/sub: cannot write there"),
    (["--out-file", "{file}"], "--out-file {file}: already exists"),
    (["--out-file", "{tmp}"], "--out-file {tmp}: is a directory"),
])
def test_run_checks_its_output_place_before_measuring(cli, capsys, tmp_path, monkeypatch, flags, message):
    import harness.cli.run as run_cli

    monkeypatch.setattr(run_cli, "run_suite", lambda **kw: pytest.fail("measured before checking --out"))
    file = tmp_path / "a-file"
    file.write_text("x")
    fill = lambda s: s.format(file=file, tmp=tmp_path)  # noqa: E731
    assert cli(["run", "--suite", "quick", *map(fill, flags)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and fill(message) in err


def test_nightly_checks_its_places_before_measuring(cli, capsys, tmp_path, monkeypatch):
    from harness import nightly

    monkeypatch.setattr(nightly, "_run_suite", lambda *a, **k: pytest.fail("measured before checking"))
    file = tmp_path / "a-file"
    file.write_text("x")
    assert cli(["nightly", "--results", str(tmp_path / "r"), "--report-dir", str(file)]) == 2
    assert f"--report-dir {file}: exists and is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["collective", "--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8"],
                                 ["versus", "--workload", "llama3-405b"]])
def test_plot_must_be_a_png_in_a_writable_place(cli, capsys, tmp_path, cmd):
    assert cli([*cmd, "--plot", str(tmp_path / "x.txt")]) == 2
    assert "must end in .png" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert cli([*cmd, "--plot", str(tmp_path / "f" / "x.png")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------- vendor-check


def test_vendor_check_write_refuses_a_plain_pytest_benchmark_file(cli, capsys, tmp_path):
    pb = tmp_path / "pb.json"
    shutil.copy(DATA / "pytest_benchmark_base.json", pb)
    before = pb.read_bytes()
    vendor = tmp_path / "v.json"
    vendor.write_text(json.dumps({"matmul_bf16": {"m": 8, "n": 8, "k": 8, "tflops_per_s": 1.0},
                                  "copy": {"bytes_per_s": 1e9}}))
    assert cli(["vendor-check", str(pb), str(vendor), "--write"]) == 2
    assert "rackbench wrote" in capsys.readouterr().err
    assert pb.read_bytes() == before


@pytest.mark.parametrize("doc, message", [
    ({"matmul_bf16": {"m": 8, "n": 8, "k": 8, "tflops_per_s": 0}, "copy": {"bytes_per_s": 1e9}},
     "matmul_bf16.tflops_per_s: must be a positive number"),
    ({"matmul_bf16": {"m": 0, "n": 8, "k": 8, "tflops_per_s": 1}, "copy": {"bytes_per_s": 1e9}},
     "matmul_bf16.m: must be a positive integer"),
    ({"matmul_bf16": {"m": 8, "n": 8, "k": 8, "tflops_per_s": 1}, "copy": {"bytes_per_s": 0}},
     "copy.bytes_per_s: must be a positive number"),
    ({"matmul_bf16": "x", "copy": {}}, "matmul_bf16: must be an object"),
    ([1, 2], "top level is not an object"),
])
def test_vendor_files_with_zeros_or_wrong_shapes_are_one_line(cli, capsys, tmp_path, doc, message):
    rs = save(_set(), tmp_path / "set.json")
    vendor = tmp_path / "v.json"
    vendor.write_text(json.dumps(doc))
    assert cli(["vendor-check", str(rs), str(vendor)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


# ---------------------------------------------------------------------------- migration


STORED_V1 = sorted(DATA.glob("*.json")) + sorted(SETS.glob("*-v1.json.gz"))


@pytest.mark.parametrize("path", STORED_V1, ids=lambda p: p.name)
def test_migration_of_the_stored_sets(cli, capsys, tmp_path, path):
    doc = resultset.read_document(path)
    if "rackbench" not in doc:
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        assert cli(["migrate", str(copy)]) == 2  # a plain pytest-benchmark file is not ours to rewrite
        assert "not a rackbench result set" in capsys.readouterr().err
        return
    assert doc["rackbench"]["schema_version"] == 1
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    in_memory = load(path)
    assert cli(["migrate", str(copy)]) == 0
    assert f"migrated from schema version 1 to {SCHEMA_VERSION}" in capsys.readouterr().out
    migrated = load(copy)
    raw = resultset.read_document(copy)["rackbench"]
    assert raw["schema_version"] == SCHEMA_VERSION
    assert [vars(c) for c in migrated.cases] == [vars(c) for c in in_memory.cases]
    assert all(c.conditions == {} for c in migrated.cases)
    old = doc["rackbench"]
    assert raw["migrated_from"]["machine_id"] == old["machine_id"]
    assert raw["fingerprint"]["host_cpu"] == old["host"]["cpu"] and raw["machine_id"].endswith(raw["fingerprint_id"][:6])
    assert (copy.read_bytes()[:2] == b"\x1f\x8b") == (path.read_bytes()[:2] == b"\x1f\x8b")  # compression kept
    assert stat.S_IMODE(copy.stat().st_mode) == 0o644
    assert migrate_file(copy) == (SCHEMA_VERSION, SCHEMA_VERSION)  # idempotent


def test_a_version_with_no_migration_names_the_remedy(tmp_path):
    doc = json.loads((DATA / "base.json").read_text())
    doc["rackbench"]["schema_version"] = 0
    (tmp_path / "old.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"schema version 0 is too old.*rackbench migrate"):
        load(tmp_path / "old.json")


def test_gzip_sets_load_and_damaged_ones_are_one_line(tmp_path):
    path = save(_set(), tmp_path / "a.json")
    gz = tmp_path / "a.json.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert [vars(c) for c in load(gz).cases] == [vars(c) for c in load(path).cases]
    gz.write_bytes(gz.read_bytes()[:40])
    with pytest.raises(UserError, match="damaged gzip"):
        load(gz)
