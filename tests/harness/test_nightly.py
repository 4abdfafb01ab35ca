"""nightly: baseline = latest earlier complete set with the same fingerprint; exit = compare's."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from harness import nightly

DATA = Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("rackbench_test_synth", DATA / "synth.py")
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)


def night(results: Path, day: int, slowdown: float = 1.0, seed: int = 0, **meta) -> Path:
    rng = np.random.default_rng(seed)
    rs = synth.make_set(synth.many_cases(rng, 8, n_samples=40, rel_sd=0.01, slowdown=slowdown),
                        created_utc=f"2026-11-{day:02d}T02:00:00Z", commit=f"{day:08d}" + "0" * 32, **meta)
    return synth.save_in(results, rs)


def test_first_night_has_no_baseline_exit_0(tmp_path, tree_hash):
    results = tmp_path / "results"
    new = night(results, 1)
    before = tree_hash(results)
    out = nightly.gate(new, results, tmp_path / "reports")
    assert out.exit_code == 0 and out.baseline_path is None and out.comparison is None
    assert any("nothing to compare with; this set is the first baseline (exit 0)" in m for m in out.messages)
    assert all(p.is_file() for p in out.report_paths)
    assert tree_hash(results) == before


def test_baseline_is_latest_earlier_complete_same_fingerprint(tmp_path, tree_hash):
    results = tmp_path / "results"
    night(results, 1, seed=1)
    expected = night(results, 2, seed=2)
    night(results, 3, seed=3, complete=False)  # interrupted: not a baseline
    (results / "box-a" / "20261103T030000-corrupt0.json").write_text('{"rackbench": ')  # truncated
    night(results, 3, seed=4, machine_id="box-b", fingerprint_id="fp-bbbb")  # newer, other machine
    night(results, 9, seed=5)  # later than the new set: not "earlier"
    new = night(results, 4, slowdown=1.20, seed=6)
    before = tree_hash(results)
    out = nightly.gate(new, results, tmp_path / "reports")
    assert out.baseline_path == expected
    assert out.exit_code == 1 and out.comparison.counts()["slower"] == 8
    assert any("corrupt0.json: not valid JSON" in m for m in out.messages)
    assert any("incomplete (interrupted) run" in m for m in out.messages)
    assert tree_hash(results) == before
    html = out.report_paths[0].read_text()
    assert "Comparison" in html and "slower" in html


def test_unchanged_night_exit_0(tmp_path):
    results = tmp_path / "results"
    night(results, 1, seed=1)
    new = night(results, 2, seed=2)
    out = nightly.gate(new, results, tmp_path / "reports")
    assert out.exit_code == 0 and out.comparison.counts()["same"] == 8


def test_only_other_fingerprints_means_no_baseline(tmp_path):
    results = tmp_path / "results"
    night(results, 1, machine_id="gpu-box", fingerprint_id="fp-gggg", device_kind="NVIDIA H200")
    new = night(results, 2)
    out = nightly.gate(new, results, tmp_path / "reports")
    assert out.exit_code == 0 and out.baseline_path is None


def test_cli_nightly_runs_suite_then_gates(cli, capsys, tmp_path, monkeypatch):
    results = tmp_path / "results"
    night(results, 1, seed=1)
    calls = []

    def fake_run_suite(suite, results_dir, **kw):
        calls.append((suite, results_dir))
        return night(results_dir, 2, slowdown=1.2, seed=2)

    monkeypatch.setattr(nightly, "_run_suite", fake_run_suite)
    code = cli(["nightly", "--suite", "quick", "--results", str(results), "--report-dir", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert code == 1 and calls == [("quick", results)]
    assert "nightly: baseline: " in out and "exit 1: something is slower or newly failing" in out
    assert "nightly: exit 1" in out
    assert sorted(p.name for p in (tmp_path / "rep").glob("*.html")) == ["nightly-20261102T020000Z-00000002.html"]


def test_cli_nightly_not_comparable_exit_3(cli, capsys, tmp_path, monkeypatch):
    """Same fingerprint but JAX upgraded 0.10 -> 0.11 overnight: the gate cannot judge (exit 3)."""
    results = tmp_path / "results"
    night(results, 1, seed=1)
    monkeypatch.setattr(nightly, "_run_suite", lambda suite, d, **kw: night(d, 2, seed=2, jax="0.11.1"))
    assert cli(["nightly", "--results", str(results), "--report-dir", str(tmp_path / "rep")]) == 3
    assert "NOT COMPARABLE: JAX major version differs" in capsys.readouterr().out


def test_gate_on_bad_new_file_is_user_error(cli, capsys, tmp_path, monkeypatch):
    results = tmp_path / "results"
    bad = results / "box-a" / "20261102T020000-deadbeef.json"
    bad.parent.mkdir(parents=True)
    doc = json.loads((DATA / "new.json").read_text())
    doc["rackbench"]["schema_version"] = 7
    bad.write_text(json.dumps(doc))
    monkeypatch.setattr(nightly, "_run_suite", lambda suite, d, **kw: bad)
    assert cli(["nightly", "--results", str(results), "--report-dir", str(tmp_path / "rep")]) == 2
    assert "unknown schema version 7" in capsys.readouterr().err
