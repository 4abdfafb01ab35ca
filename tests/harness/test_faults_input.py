"""Impossible or wrong-shaped result sets: one line naming the file and the field, exit 2, never
a traceback; directory readers (history, report, nightly) skip such a file with one warning and
go on. Malformed sets are generated (hypothesis) from a real document by replacing one value
anywhere in it."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import history, nightly
from harness.errors import UserError
from harness.resultset import load, save

DATA = Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("rackbench_test_synth", DATA / "synth.py")
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)


def _good_doc() -> dict:
    cases = [synth.make_case("matmul/a", "matmul", [1e-3, 1.1e-3, 0.9e-3, 1.05e-3], params={"n": 1}),
             synth.make_case("membw/b", "membw", [2e-3, 2.1e-3, 1.9e-3], direction="higher"),
             synth.make_case("matmul/c", "matmul", status="skipped", reason="no fp8")]
    rs = synth.make_set(cases)
    return json.loads(json.dumps(rs.to_json_dict()))


GOOD = _good_doc()


def _paths(doc, prefix=()):
    """Every (path, value) in the `rackbench` section, containers included."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


SECTION_PATHS = [p for p, _ in _paths(GOOD["rackbench"], ("rackbench",)) if len(p) > 1]

BAD_VALUES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=5),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -1.0, 0.0, -1e-3, 1e308 * 10]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _replace(doc, path, value):
    out = json.loads(json.dumps(doc))
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


def _write(tmp_path, doc, name="bad.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))  # allow_nan: writes NaN/Infinity as a careless tool would
    return path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(SECTION_PATHS), value=BAD_VALUES)
def test_any_wrong_value_loads_or_is_one_line_naming_the_file(tmp_path, path, value):
    file = _write(tmp_path, _replace(GOOD, path, value))
    try:
        rs = load(file)
    except UserError as exc:
        text = str(exc)
        assert text.startswith(str(file)) and "\n" not in text
        return
    # what loaded is usable: every ok case has finite positive samples and a positive median
    for c in rs.cases:
        if c.status == "ok":
            assert c.samples_s and all(math.isfinite(v) and v > 0 for v in c.samples_s)
            assert c.median_s > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(SECTION_PATHS), value=BAD_VALUES)
def test_compare_and_show_never_trace_back(cli, capsys, tmp_path, path, value):
    good = _write(tmp_path, GOOD, "good.json")
    bad = _write(tmp_path, _replace(GOOD, path, value))
    for argv in (["compare", str(good), str(bad)], ["show", str(bad)]):
        code = cli(argv)
        err = capsys.readouterr().err
        assert code in (0, 1, 2, 3), argv
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and str(bad) in err


@pytest.mark.parametrize("samples, field", [
    ([float("nan"), 1e-3, 1e-3], "samples_s[0]"),
    ([1e-3, float("inf"), 1e-3], "samples_s[1]"),
    ([1e-3, 1e-3, -1e-3], "samples_s[2]"),
    ([0.0, 1e-3, 1e-3], "samples_s[0]"),
    ([], "samples_s"),
])
def test_impossible_samples_exit_2_naming_the_field(cli, capsys, tmp_path, samples, field):
    doc = _replace(GOOD, ("rackbench", "cases", 0, "samples_s"), samples)
    bad = _write(tmp_path, doc)
    good = _write(tmp_path, GOOD, "good.json")
    for argv in (["compare", str(good), str(bad)], ["show", str(bad)]):
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(bad) in err and f"rackbench.cases[0] (matmul/a).{field}" in err


def test_show_refuses_a_negative_median(cli, capsys, tmp_path):
    bad = _write(tmp_path, _replace(GOOD, ("rackbench", "cases", 0, "stats", "median_s"), -1e-3))
    assert cli(["show", str(bad)]) == 2
    assert "stats.median_s: must not be negative" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"rackbench": {"schema_version": 2, "seed": ' + "9" * 5000 + ', "cases": []}}', "not a result set"),
    ('{"rackbench": "a string"}', "rackbench: must be an object"),
    ('{"rackbench": {"schema_version": 2, "cases": [1, 2, 3]}}', "rackbench.cases[0]: must be an object"),
    ('{"rackbench": {"schema_version": 2, "cases": {}}}', "rackbench.cases: must be a list"),
    ('{"machine_info": {}, "benchmarks": [{"name": "x", "stats": null}]}', "benchmarks[0].stats: must be an object"),
    ('{"machine_info": {}, "benchmarks": [{"name": "x", "stats": {"data": [1, -2]}}]}', "benchmarks[0].stats.data[1]"),
])
def test_wrong_shapes_are_one_line(cli, capsys, tmp_path, text, message):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    assert cli(["show", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and message in err, err


def test_null_timing_and_a_string_for_an_object(tmp_path):
    for path, value, field in ((("rackbench", "cases", 0, "timing"), None, "timing: must be an object"),
                               (("rackbench", "device"), "cpu", "rackbench.device: must be an object")):
        with pytest.raises(UserError, match=field.replace("(", r"\(").replace(")", r"\)")):
            load(_write(tmp_path, _replace(GOOD, path, value)))


def test_an_unsafe_machine_id_is_refused(tmp_path):
    """report joins the machine id into a path: `../elsewhere` must never get that far."""
    with pytest.raises(UserError, match=r"rackbench.machine_id: must be one safe path component"):
        load(_write(tmp_path, _replace(GOOD, ("rackbench", "machine_id"), "../elsewhere")))


def test_duplicate_cases_are_refused(tmp_path):
    doc = json.loads(json.dumps(GOOD))
    doc["rackbench"]["cases"].append(doc["rackbench"]["cases"][0])
    with pytest.raises(UserError, match=r"cases\[3\]: the same name and parameters as cases\[0\]"):
        load(_write(tmp_path, doc))


# ---------------------------------------------------------------------------- directory readers

BAD_FILES = {
    "cases-ints": lambda d: _replace(d, ("rackbench", "cases"), [1, 2]),
    "string-device": lambda d: _replace(d, ("rackbench", "device"), "x"),
    "null-timing": lambda d: _replace(d, ("rackbench", "cases", 0, "timing"), None),
    "nan-sample": lambda d: _replace(d, ("rackbench", "cases", 0, "samples_s"), [float("nan")] * 3),
    "zero-median": lambda d: _replace(d, ("rackbench", "cases", 0, "stats", "median_s"), 0),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_a_malformed_file_among_good_ones_is_skipped_with_one_warning(cli, capsys, tmp_path, kind, tree_hash):
    results = tmp_path / "results"
    paths = [synth.save_in(results, synth.make_set(synth.many_cases(__import__("numpy").random.default_rng(i), 4),
                                                   created_utc=f"2026-11-0{i}T02:00:00Z", commit=f"{i}" * 40))
             for i in (1, 2, 3)]
    doc = json.loads(paths[1].read_text())
    paths[1].write_text(json.dumps(BAD_FILES[kind](doc)))
    before = tree_hash(results)

    h = history.load_history(results / "box-a")
    assert len(h.sets) == 2 and len(h.warnings) == 1 and str(paths[1]) in h.warnings[0]
    assert cli(["history", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.count("warning: skipped") == 1 and str(paths[1]) in out

    base, warnings = nightly.find_baseline(results, load(paths[2]))
    assert base.path == paths[0] and len(warnings) == 1 and str(paths[1]) in warnings[0]
    out_dir = tmp_path / "reports"
    assert cli(["report", "--results", str(results), "--out", str(out_dir)]) == 0
    captured = capsys.readouterr()
    assert "report: skipped" in captured.err and str(paths[1]) in captured.err
    assert (out_dir / f"report-{paths[2].stem}.html").is_file()
    assert tree_hash(results) == before


def test_report_skips_a_malformed_newest_set(cli, capsys, tmp_path):
    results = tmp_path / "results"
    rng = __import__("numpy").random.default_rng(0)
    good = synth.save_in(results, synth.make_set(synth.many_cases(rng, 3), created_utc="2026-11-01T02:00:00Z"))
    newest = results / "box-a" / "20261109T020000-ffffffff.json"
    newest.write_text('{"rackbench": {"schema_version": 2, "cases": "oops"}}')
    assert cli(["report", "--results", str(results), "--out", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("report: skipped") == 1 and f"report-{good.stem}.html" in captured.out


def test_gate_survives_a_malformed_file(tmp_path):
    results = tmp_path / "results"
    rng = __import__("numpy").random.default_rng(1)
    synth.save_in(results, synth.make_set(synth.many_cases(rng, 4), created_utc="2026-11-01T02:00:00Z"))
    (results / "box-a" / "20261102T020000-bad00000.json").write_text('{"rackbench": {"schema_version": 2, "cases": [1]}}')
    new = synth.save_in(results, synth.make_set(synth.many_cases(rng, 4), created_utc="2026-11-03T02:00:00Z",
                                                commit="3" * 40))
    out = nightly.gate(new, results, tmp_path / "reports")
    assert out.baseline_path is not None and out.exit_code in (0, 1)
    assert sum("skipped" in m for m in out.messages) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(SECTION_PATHS), value=BAD_VALUES)
def test_directory_readers_never_trace_back(tmp_path, path, value):
    """history (its fast reader and the full loader) and nightly's baseline search on a
    directory holding one good set and one generated bad one: the bad one is used or skipped."""
    d = tmp_path / "box-a"
    d.mkdir(exist_ok=True)
    (d / "20261101T000000-aaaaaaaa.json").write_text(json.dumps(GOOD, indent=1))
    bad = _replace(GOOD, path, value)
    (d / "20261102T000000-bbbbbbbb.json").write_text(json.dumps(bad, indent=1))
    h = history.load_history(d)
    assert 1 <= len(h.sets) + len(h.warnings) <= 2
    new = load(d / "20261101T000000-aaaaaaaa.json")
    nightly.find_baseline(tmp_path, new)
