"""compare: the golden pair's verdicts, statistics that catch 5% and ignore noise."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness import compare, stats
from harness.errors import UserError
from harness.resultset import load, save

DATA = Path(__file__).parent / "data"


def _load_synth():
    spec = importlib.util.spec_from_file_location("rackbench_test_synth", DATA / "synth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


synth = _load_synth()


# The whole table, JSON, CSV and Markdown of this pair are golden files:
# tests/harness/test_golden_measure.py (golden/compare.*).


def test_golden_only_changed_hides_same(cli, capsys, monkeypatch):
    monkeypatch.chdir(DATA)
    assert cli(["compare", "base.json", "new.json", "--only-changed"]) == 1
    out = capsys.readouterr().out
    assert "matmul/bf16/512" not in out
    assert "matmul/fp32/256" in out and "train_step/tiny" in out
    assert "attention/causal/1024" in out  # inconclusive is a change worth showing


def test_golden_json(cli, capsys, monkeypatch):
    monkeypatch.chdir(DATA)
    assert cli(["compare", "base.json", "new.json", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    verdicts = {c["name"]: c["verdict"] for c in doc["cases"]}
    assert verdicts == {
        "matmul/fp32/256": "slower", "matmul/fp32/512": "faster", "matmul/bf16/512": "same",
        "matmul/fp16/256": "missing", "matmul/fp8/256": "same", "attention/causal/1024": "inconclusive",
        "attention/full/512": "newly failing", "membw/copy/64MiB": "slower",
        "collective/allreduce/1MiB": "fixed", "train_step/tiny": "new",
    }
    assert doc["exit_code"] == 1 and doc["counts"]["slower"] == 2 and doc["counts"]["inconclusive"] == 1
    marks = {c["name"]: c["mark"] for c in doc["cases"]}
    assert marks["attention/causal/1024"] == "~" and marks["matmul/fp32/256"] == "+"
    membw = next(c for c in doc["cases"] if c["name"] == "membw/copy/64MiB")
    # higher is better here: the ratio fell, which is worse, so the oriented slowdown is 1/ratio
    assert membw["direction"] == "higher" and membw["ratio"] == pytest.approx(0.802, abs=5e-4)
    fam = {f["group"]: f for f in doc["families"]}
    assert fam["membw"]["geomean_slowdown"] == pytest.approx(1 / membw["ratio"])


def test_golden_markdown_escapes_and_has_table(cli, capsys, monkeypatch):
    monkeypatch.chdir(DATA)
    assert cli(["compare", "base.json", "new.json", "--format", "markdown"]) == 1
    out = capsys.readouterr().out
    assert "| matmul/fp32/256 | 992.7 us | 1.211 ms | 1.220 | [1.194, 1.246] | + | slower |  |" in out
    assert "**exit 1: something is slower or newly failing**" in out


def test_same_file_is_all_same_exit_0(cli, capsys):
    assert cli(["compare", str(DATA / "base.json"), str(DATA / "base.json")]) == 0
    assert "exit 0: nothing worse" in capsys.readouterr().out


def test_pytest_benchmark_files_compare(cli, capsys):
    code = cli(["compare", str(DATA / "pytest_benchmark_base.json"), str(DATA / "pytest_benchmark_new.json")])
    out = capsys.readouterr().out
    assert code == 1
    # pytest-benchmark files hold only cases with samples, and no direction: lower is assumed
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("matmul/", "membw/"))}
    assert rows["matmul/fp32/256"][-1] == "slower"
    assert rows["matmul/fp32/512"][-1] == "faster"


def test_other_machine_is_not_comparable_exit_3(cli, capsys):
    assert cli(["compare", str(DATA / "base.json"), str(DATA / "other_machine.json")]) == 3
    out = capsys.readouterr().out
    assert "NOT COMPARABLE: device kind differs: cpu vs NVIDIA H200" in out
    assert "NOT COMPARABLE: JAX major version differs: 0.10.2 vs 0.11.2" in out
    assert "exit 3: nothing comparable" in out
    rows = out.split("\n\n")[1]
    assert " slower" not in rows and "not comparable" in rows


@pytest.mark.parametrize(
    "meta_change, reason",
    [
        ({"device_count": 8}, "device count differs: 1 vs 8"),
        ({"jax": "0.11.0"}, "JAX major version differs: 0.10.2 vs 0.11.0 (0.x minor releases count as major)"),
    ],
)
def test_not_comparable_reasons(meta_change, reason):
    base = synth.make_set([synth.make_case("m", "matmul", [1.0, 1.1, 0.9])])
    new = synth.make_set([synth.make_case("m", "matmul", [1.0, 1.1, 0.9])], **meta_change)
    cmp = compare.compare_sets(base, new)
    assert cmp.not_comparable_reasons == (reason,)
    assert [c.verdict for c in cmp.cases] == ["not comparable"] and cmp.exit_code == 3


def test_jax_patch_release_is_comparable_with_a_note():
    base = synth.make_set([synth.make_case("m", "matmul", [1.0, 1.1, 0.9])])
    new = synth.make_set([synth.make_case("m", "matmul", [1.0, 1.1, 0.9])], jax="0.10.7")
    cmp = compare.compare_sets(base, new)
    assert cmp.comparable and cmp.notes == ("JAX version: 0.10.2 vs 0.10.7",)
    assert compare.jax_series("0.10.2") == "0.10" and compare.jax_series("1.2.0") == "1"


def test_no_common_cases_exit_3():
    base = synth.make_set([synth.make_case("a", "matmul", [1.0, 1.1])])
    new = synth.make_set([synth.make_case("b", "matmul", [1.0, 1.1])])
    cmp = compare.compare_sets(base, new)
    assert [c.verdict for c in cmp.cases] == ["new", "missing"] and cmp.exit_code == 3


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t[: len(t) // 2], "not valid JSON"),
        (lambda t: "\x00\x13garbage" + t[10:], "not valid JSON"),
        (lambda t: "\udcff\udcfe" + t, "not valid JSON (not UTF-8 text)"),
        (lambda t: t.replace('"schema_version": 1', '"schema_version": 99'), "unknown schema version 99"),
    ],
    ids=["truncated", "corrupted", "binary", "unknown-version"],
)
def test_bad_files_exit_2_and_results_untouched(cli, capsys, tmp_path, mutate, message, tree_hash):
    results = tmp_path / "results" / "box-a"
    results.mkdir(parents=True)
    good = results / "20261101T020000-11111111.json"
    shutil.copy(DATA / "base.json", good)
    bad = results / "20261102T020000-22222222.json"
    bad.write_bytes(mutate((DATA / "new.json").read_text()).encode("utf-8", "surrogateescape"))
    before = tree_hash(tmp_path / "results")
    assert cli(["compare", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and message in err
    assert tree_hash(tmp_path / "results") == before


def test_bad_flags_exit_2(cli, capsys):
    assert cli(["compare", str(DATA / "base.json"), str(DATA / "new.json"), "--factor", "0.9"]) == 2
    assert "--factor 0.9" in capsys.readouterr().err


# ---------------------------------------------------------------------------- statistics


def test_synthetic_5_percent_slowdown_is_flagged():
    rng = np.random.default_rng(11)
    base = synth.make_set(synth.many_cases(rng, 20, n_samples=200, rel_sd=0.02))
    new = synth.make_set(synth.many_cases(rng, 20, n_samples=200, rel_sd=0.02, slowdown=1.05))
    # The planted effect is exactly 5%, so a 1.05 threshold would be a coin toss on the point
    # estimate; 1.03 asks "is a 5% slowdown caught", which is the claim.
    # The margin is 2% against intervals of about +-1.5% (family-wise over 20 cases, with the
    # run-to-run noise the 20 ratios show): a case the interval cannot separate is inconclusive.
    cmp = compare.compare_sets(base, new, factor=1.03)
    verdicts = [c.verdict for c in cmp.cases]
    assert set(verdicts) <= {"slower", "inconclusive"} and verdicts.count("slower") >= 18
    assert cmp.exit_code == 1
    for c in cmp.cases:
        assert c.ratio_ci_low < 1.05 < c.ratio_ci_high or abs(c.ratio - 1.05) < 0.01
    fam = cmp.families()
    assert all(f.geomean_slowdown == pytest.approx(1.05, abs=0.005) for f in fam)


def test_5_percent_with_few_noisy_samples_is_not_flagged():
    rng = np.random.default_rng(12)
    base = synth.make_set(synth.many_cases(rng, 8, n_samples=5, rel_sd=0.15))
    new = synth.make_set(synth.many_cases(rng, 8, n_samples=5, rel_sd=0.15, slowdown=1.05))
    cmp = compare.compare_sets(base, new)
    assert set(cmp.counts()) >= {"same"} and cmp.counts()["slower"] == 0 and cmp.exit_code == 0
    # what is beyond the factor by chance is inconclusive, never slower; --strict fails on it
    if cmp.counts()["inconclusive"]:
        assert compare.compare_sets(base, new, strict=True).exit_code == 1


def test_proven_but_small_change_is_same():
    rng = np.random.default_rng(13)
    base = synth.make_set(synth.many_cases(rng, 4, n_samples=400, rel_sd=0.005))
    new = synth.make_set(synth.many_cases(rng, 4, n_samples=400, rel_sd=0.005, slowdown=1.02))
    cmp = compare.compare_sets(base, new)
    assert all(c.ratio_ci_low > 1.0 for c in cmp.cases)  # proven worse ...
    assert [c.verdict for c in cmp.cases] == ["same"] * 4  # ... but within the factor
    assert cmp.cases[0].reason == "proven worse, but within the factor 1.05"


def test_pure_noise_200_cases_no_false_alarm():
    rng = np.random.default_rng(14)
    base = synth.make_set(synth.many_cases(rng, 200, n_samples=30, rel_sd=0.05))
    new = synth.make_set(synth.many_cases(rng, 200, n_samples=30, rel_sd=0.05))
    cmp = compare.compare_sets(base, new)
    assert cmp.counts()["slower"] == 0 and cmp.counts()["faster"] == 0 and cmp.exit_code == 0
    assert cmp.counts()["same"] >= 198
    # the family-wise level: 1 - alpha / 200 for each interval
    assert cmp.level == pytest.approx(1 - 0.01 / 200)


def test_run_to_run_noise_is_estimated_from_the_unchanged_cases():
    """Each case of NEW moves by its own run-to-run factor (sd 10% in log) on top of sampling
    noise: the estimate recovers it, and 30 of 100 cases made 1.5x slower do not inflate it."""
    rng = np.random.default_rng(21)
    log_ratio = rng.normal(0.0, 0.10, 100)
    sampling = np.full(100, 0.01)
    assert compare.estimate_run_noise(log_ratio, sampling) == pytest.approx(0.10, rel=0.2)
    planted = log_ratio.copy()
    planted[:30] += np.log(1.5)
    # the plain standard deviation would double; the MAD moves by a third
    assert np.std(planted) > 0.2 and compare.estimate_run_noise(planted, sampling) < 0.15
    # sampling noise alone is not counted twice
    assert compare.estimate_run_noise(rng.normal(0, 0.01, 100), sampling) < 0.005


def test_run_noise_widens_the_interval_so_a_noisy_machine_proves_nothing():
    """Two runs of one commit whose cases each moved by up to +-40% (a busy machine): with the
    noise estimated, no case is called slower; with the noise ignored (run_noise=0) many are."""
    rng = np.random.default_rng(22)
    medians = 1e-3 * np.exp(np.linspace(0, 3, 60))
    base = synth.make_set(synth.many_cases(rng, 60, n_samples=15, rel_sd=0.02, medians=medians))
    moved = medians * np.exp(rng.normal(0.0, 0.2, 60))
    new = synth.make_set(synth.many_cases(rng, 60, n_samples=15, rel_sd=0.02, medians=moved))
    honest = compare.compare_sets(base, new)
    assert honest.counts()["slower"] == 0 and honest.run_noise > 0.1
    naive = compare.compare_sets(base, new, run_noise=0.0)
    assert naive.counts()["slower"] >= 10


def test_a_family_wise_correction_never_makes_detection_impossible():
    """Ten samples a case and 500 compared cases: the Bonferroni level is 1 - 2e-5, yet a 1.5x
    case with a 3% spread is proven slower (a rank test's smallest p-value at 10 vs 10 samples,
    1.1e-5, times 500 would exceed alpha)."""
    rng = np.random.default_rng(23)
    base = synth.make_set(synth.many_cases(rng, 500, n_samples=10, rel_sd=0.03))
    cases = synth.many_cases(rng, 500, n_samples=10, rel_sd=0.03)
    cases[0] = synth.make_case(cases[0].name, cases[0].group, [v * 1.5 for v in base.cases[0].samples_s],
                               params=cases[0].params)
    cmp = compare.compare_sets(base, synth.make_set(cases))
    assert cmp.cases[0].verdict == "slower" and cmp.exit_code == 1
    assert cmp.counts()["slower"] == 1


def test_few_samples_are_never_proven():
    base = synth.make_set([synth.make_case("m", "matmul", [1.0, 1.01])])
    new = synth.make_set([synth.make_case("m", "matmul", [2.0, 2.02])])
    (c,) = compare.compare_sets(base, new).cases
    assert c.verdict == "inconclusive" and "fewer than 3 samples" in c.reason


def test_bootstrap_medians_match_naive_resampling():
    """The two-beta shortcut gives the same bootstrap distribution as resampling, odd and even n."""
    rng = np.random.default_rng(15)
    for n in (7, 12):
        x = rng.lognormal(0.0, 0.3, n)
        fast = stats.bootstrap_medians([x], 100_000, np.random.default_rng(1))[0]
        naive = np.median(x[rng.integers(0, n, (100_000, n))], axis=1)
        xs = np.sort(x)
        possible = 0.5 * (xs[:, None] + xs[None, :]) if n % 2 == 0 else xs
        assert np.isin(fast, possible).all()  # only values a resample's median can take
        support = np.union1d(fast, naive)
        # probability of each bootstrap median value; 100k draws give about +-0.003 on each
        p_fast = (fast[:, None] == support).mean(axis=0)
        p_naive = (naive[:, None] == support).mean(axis=0)
        np.testing.assert_allclose(p_fast, p_naive, atol=0.006)


def test_direction_is_read_from_the_record():
    rng = np.random.default_rng(16)
    higher_b = synth.make_case("tput", "membw", synth.samples(rng, 100.0, 50, 0.01), direction="higher")
    higher_n = synth.make_case("tput", "membw", synth.samples(rng, 120.0, 50, 0.01), direction="higher")
    cmp = compare.compare_sets(synth.make_set([higher_b]), synth.make_set([higher_n]))
    assert cmp.cases[0].verdict == "faster" and cmp.cases[0].slowdown == pytest.approx(1 / 1.2, rel=0.02)


def test_status_transitions():
    ok = lambda n: synth.make_case(n, "g", [1.0, 1.0, 1.0])  # noqa: E731
    failed = lambda n: synth.make_case(n, "g", status="failed", reason="boom")  # noqa: E731
    skipped = lambda n: synth.make_case(n, "g", status="skipped", reason="no gpu")  # noqa: E731
    base = synth.make_set([ok("a"), failed("b"), failed("c"), ok("d"), skipped("e"), skipped("f")])
    new = synth.make_set([failed("a"), ok("b"), failed("c"), skipped("d"), ok("e"), failed("f")])
    got = {c.name: (c.verdict, c.reason) for c in compare.compare_sets(base, new).cases}
    assert got == {
        "a": ("newly failing", "boom"), "b": ("fixed", "was failing: boom"),
        "c": ("same", "failing in both: boom"), "d": ("missing", "skipped in NEW: no gpu"),
        "e": ("new", "skipped in BASE: no gpu"), "f": ("newly failing", "boom"),
    }


def test_same_name_different_params_are_separate_rows():
    a1 = synth.make_case("mm", "matmul", [1.0, 1.0], params={"n": 1})
    a2 = synth.make_case("mm", "matmul", [2.0, 2.0], params={"n": 2})
    cmp = compare.compare_sets(synth.make_set([a1, a2]), synth.make_set([a1, a2]))
    assert [c.name for c in cmp.cases] == ['mm {"n":1}', 'mm {"n":2}']
    assert [c.verdict for c in cmp.cases] == ["same", "same"]


def test_incomplete_new_set_is_noted(tmp_path):
    rs = synth.make_set([synth.make_case("m", "matmul", [1.0, 1.1, 0.9])], complete=False)
    path = save(rs, tmp_path / "x.json")
    cmp = compare.compare_sets(load(DATA / "base.json"), load(path))
    assert "NEW is an incomplete (interrupted) run; missing cases are expected" in cmp.notes


def test_missing_file_is_user_error():
    with pytest.raises(UserError, match="no such result file"):
        compare.compare_files(DATA / "base.json", DATA / "does-not-exist.json")


def test_renamed_stream_cases_pair_with_their_old_names(tmp_path):
    """Stream cases were named in bytes (16777216B) before sizes had one form (16MiB): an older
    set's case is renamed on load, so compare and history see one case, not a new and a missing."""
    from harness.history import load_history

    rng = np.random.default_rng(3)
    params = {"op": "stream_add", "elements": 2**22, "dtype": "fp32"}

    def one(name, created, commit):
        case = synth.make_case(name, "membw", synth.samples(rng, 4e-3, 20, 0.01), params=params)
        return synth.make_set([case], created_utc=created, commit=commit)

    old = synth.save_in(tmp_path, one("membw/stream_add/fp32/16777216B", "2026-11-01T00:00:00Z", "a" * 40))
    new = synth.save_in(tmp_path, one("membw/stream_add/fp32/16MiB", "2026-11-02T00:00:00Z", "b" * 40))
    assert load(old).cases[0].name == "membw/stream_add/fp32/16MiB"
    cmp = compare.compare_files(old, new)
    assert [(c.name, c.verdict) for c in cmp.cases] == [("membw/stream_add/fp32/16MiB", "same")]
    h = load_history(Path(old).parent)
    assert [c.name for c in h.cases] == ["membw/stream_add/fp32/16MiB"]
    assert np.isfinite(h.cases[0].values).all()
