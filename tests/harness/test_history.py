"""history: change points that night-to-night comparisons miss; bad files skipped, never touched."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness import compare, history

DATA = Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("rackbench_test_synth", DATA / "synth.py")
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)


STEP_AT = 30
STEPPED = range(0, 20, 2)  # half the cases get the step, half do not


@pytest.fixture(scope="module")
def stepped_results(tmp_path_factory):
    """60 nights x 20 cases; a 2.5% slowdown from night 30 in every other case; 0.5% nightly wander."""
    root = tmp_path_factory.mktemp("results")
    paths = synth.nightly_series(root, 60, 20, step_at=STEP_AT, step=1.025, night_sd=0.005, seed=3,
                                 step_cases=STEPPED)
    return root, paths


def test_planted_step_found_within_two_nights(stepped_results):
    root, _ = stepped_results
    h = history.load_history(root / "box-a")
    assert len(h.sets) == 60 and len(h.cases) == 20 and h.warnings == ()
    for i, c in enumerate(h.cases):
        if i in STEPPED:
            assert len(c.change_points) == 1, c.name
            cp = c.change_points[0]
            assert abs(cp.index - STEP_AT) <= 2, (c.name, cp.index)
            assert cp.verdict == "slower" and cp.ratio == pytest.approx(1.025, abs=0.008)
            assert cp.after.commit.startswith(f"{cp.index:08x}") and cp.before.commit.startswith(f"{cp.index - 1:08x}")
        else:
            assert c.change_points == (), c.name


def test_the_step_is_invisible_to_every_night_to_night_compare(stepped_results):
    """The reason history exists: no single adjacent pair of nights flags the 2.5% step."""
    _, paths = stepped_results
    for a, b in zip(paths[STEP_AT - 2 : STEP_AT + 2], paths[STEP_AT - 1 : STEP_AT + 3]):
        cmp = compare.compare_files(a, b)
        assert cmp.counts()["slower"] == 0 and cmp.exit_code == 0


def test_table_names_commits_either_side(cli, capsys, stepped_results):
    root, _ = stepped_results
    assert cli(["history", str(root / "box-a"), "--case", "^matmul/case0000$"]) == 0
    out = capsys.readouterr().out
    cp = history.load_history(root / "box-a", case_regex="^matmul/case0000$").cases[0].change_points[0]
    assert f"between set #{cp.index - 1} {cp.before.commit[:8]} (2026-01-{cp.index:02d}) and #{cp.index} " \
           f"{cp.after.commit[:8]} (2026-01-{cp.index + 1:02d})" in out
    assert "change points: 1" in out
    assert "attention/" not in out


def test_json_format(cli, capsys, stepped_results):
    root, _ = stepped_results
    assert cli(["history", str(root), "--format", "json", "--case", "case000[01]"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["machine_id"] == "box-a" and len(doc["sets"]) == 60
    assert [c["name"] for c in doc["cases"]] == ["matmul/case0000", "attention/case0001"]
    assert len(doc["cases"][0]["medians_s"]) == 60
    assert len(doc["cases"][0]["change_points"]) == 1 and doc["cases"][1]["change_points"] == []


def test_pure_noise_has_no_change_points(tmp_path):
    synth.nightly_series(tmp_path, 60, 100, night_sd=0.02, seed=4)
    h = history.load_history(tmp_path)
    assert sum(len(c.change_points) for c in h.cases) == 0


def test_change_points_closed_cases():
    rng = np.random.default_rng(0)
    y = np.exp(rng.normal(0, 0.01, 80))
    y[20:] *= 1.10
    y[55:] /= 1.10 * 1.05  # back down, and further
    cps = history.change_points(y)
    assert [c[0] for c in cps] == [20, 55]
    assert cps[0][1] == pytest.approx(1.10, abs=0.01) and cps[1][1] == pytest.approx(1 / 1.155, abs=0.01)
    # a single terrible night is an outlier, not a level change
    z = np.exp(rng.normal(0, 0.01, 60))
    z[30] *= 3.0
    assert history.change_points(z) == []
    # constant series, too-short series
    assert history.change_points(np.ones(40)) == [] and history.change_points([1.0, 2.0, 3.0]) == []


def test_bad_and_foreign_files_are_skipped_and_nothing_is_modified(cli, capsys, tmp_path, tree_hash):
    root = tmp_path / "results"
    paths = synth.nightly_series(root, 12, 5, seed=5)
    d = root / "box-a"
    (d / "20260201T020000-truncated.json").write_text(paths[0].read_text()[:5000])
    (d / "20260202T020000-corrupt.json").write_bytes(b"\x00\xff not json")
    doc = json.loads(paths[1].read_text())
    doc["rackbench"]["schema_version"] = 99
    (d / "20260203T020000-future.json").write_text(json.dumps(doc))
    other = json.loads(paths[2].read_text())
    other["rackbench"].update(machine_id="gpu-box", fingerprint_id="fp-gggg")
    other["rackbench"]["created_utc"] = "2025-12-01T00:00:00Z"
    (d / "20251201T000000-othermach.json").write_text(json.dumps(other))
    partial = json.loads(paths[3].read_text())
    partial["rackbench"]["complete"] = False
    (d / "20251202T000000-partial.json").write_text(json.dumps(partial))
    shutil.copy(DATA / "pytest_benchmark_base.json", d / "20251203T000000-pytestbench.json")
    before = tree_hash(root)

    assert cli(["history", str(d)]) == 0
    out = capsys.readouterr().out
    assert tree_hash(root) == before
    warnings = [line for line in out.splitlines() if line.startswith("warning: skipped: ")]
    assert len(warnings) == 6
    text = "\n".join(warnings)
    assert "truncated.json: not valid JSON" in text and "corrupt.json: not valid JSON" in text
    assert "future.json: unknown schema version 99" in text
    assert "othermach.json: from another machine (gpu-box, fingerprint fp-gggg" in text
    assert "partial.json: incomplete (interrupted) run" in text
    assert "pytestbench.json: a plain pytest-benchmark file has no machine fingerprint" in text
    assert "box-a, fingerprint fp-aaaa), 12 sets" in out


def test_results_root_picks_newest_machine(tmp_path):
    # "zz-old-box" sorts last by name but its newest set (night 5) is older than new-box's (night 8)
    synth.nightly_series(tmp_path, 5, 3, seed=6, machine_id="zz-old-box", fingerprint_id="fp-old")
    synth.nightly_series(tmp_path, 8, 3, seed=7, machine_id="new-box", fingerprint_id="fp-new")
    h = history.load_history(tmp_path)
    assert (h.machine_id, h.fingerprint_id, len(h.sets)) == ("new-box", "fp-new", 8)


def test_empty_and_missing_dirs_are_user_errors(cli, capsys, tmp_path):
    assert cli(["history", str(tmp_path / "nope")]) == 2
    assert "no such results directory" in capsys.readouterr().err
    assert cli(["history", str(tmp_path)]) == 2
    assert "no result sets" in capsys.readouterr().err
    synth.nightly_series(tmp_path, 2, 2)
    assert cli(["history", str(tmp_path), "--case", "("]) == 2
    assert "not a regular expression" in capsys.readouterr().err


def test_sparkline():
    assert history.sparkline(np.array([1.0, 2.0, np.nan, 8.0])) == "▁▂ █"
    assert history.sparkline(np.array([np.nan])) == ""


def test_one_suite_per_series_and_nothing_after_until(tmp_path):
    """A quick run's medians are not a default run's: the series is the newest set's suite (or
    --suite), the others are left out with one line; `until` (a report on an older set) drops
    the sets created after it."""
    rng = np.random.default_rng(11)
    made = []
    for day, suite in ((1, "default"), (2, "quick"), (3, "default"), (4, "quick"), (5, "default")):
        rs = synth.make_set(synth.many_cases(rng, 2), created_utc=f"2026-11-0{day}T02:00:00Z", commit=str(day) * 40)
        rs.meta["suite"] = suite
        made.append(synth.save_in(tmp_path, rs))
    h = history.load_history(tmp_path / "box-a")
    assert h.suite == "default" and [s.path for s in h.sets] == [made[0], made[2], made[4]]
    assert "left out: 2 set(s) of another suite (quick); this series is suite default (history --suite picks one)" in h.warnings
    q = history.load_history(tmp_path / "box-a", suite="quick")
    assert [s.path for s in q.sets] == [made[1], made[3]]
    older = history.load_history(tmp_path / "box-a", until="2026-11-03T02:00:00Z")
    assert [s.path for s in older.sets] == [made[0], made[2]]
    assert "left out: 2 set(s) created after 2026-11-03T02:00:00Z, the set reported on" in older.warnings
