"""The alpha-beta fabric fit: exact recovery, its intervals against scipy and by coverage, the
fabric it returns inside the collective model, a real 8-device CPU sweep predicted on sizes it
was not fitted on, result-set errors, and `rackbench fit-fabric`."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from scipy.optimize import curve_fit

from clusters.catalog import load_system
from clusters.collectives import Group, collective, with_measured_scale_up
from harness.studies.fabric_fit import MEASURED_OPS, fit_alpha_beta, fit_result_set, model_factor
from harness import cli
from harness.errors import UserError
from harness.resultset import CaseResult, ResultSet, save
from harness.timing import TimingConfig

SIZES = 2.0 ** np.arange(10, 31, 2)  # 1 KiB .. 1 GiB, 4+ decades


def test_exact_alpha_beta_sweep_is_recovered():
    latency, bw = 23e-6, 370e9
    fit = fit_alpha_beta(SIZES, latency + SIZES / bw, "all_reduce", 8)
    assert fit.latency_s == pytest.approx(latency, rel=1e-6)
    assert fit.algbw_bytes_per_s == pytest.approx(bw, rel=1e-6)
    assert fit.busbw_bytes_per_s == pytest.approx(bw * 1.75, rel=1e-6)
    assert max(abs(r) for r in fit.relative_residuals) < 1e-9
    lo, hi = fit.latency_ci95_s
    assert lo <= latency <= hi and hi - lo < 1e-6 * latency


def test_intervals_match_scipy_weighted_curve_fit():
    rng = np.random.default_rng(3)
    t = (40e-6 + SIZES / 2e9) * (1 + 0.1 * rng.standard_normal(SIZES.size))
    fit = fit_alpha_beta(SIZES, t, "all_gather", 8)
    # curve_fit with sigma = the measured time minimises the same relative residuals, and with
    # absolute_sigma=False scales the covariance by the residual variance, as we do
    p, cov = curve_fit(lambda s, a, b: a + b * s, SIZES, t, p0=[40e-6, 5e-10], sigma=t, absolute_sigma=False)
    assert fit.latency_s == pytest.approx(p[0], rel=1e-6)
    assert fit.s_per_byte == pytest.approx(p[1], rel=1e-6)
    np.testing.assert_allclose(np.asarray(fit.cov), cov, rtol=1e-4)


def test_confidence_intervals_cover_the_truth_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    latency, s_per_byte, trials = 1e-4, 1e-9, 400
    sizes = 2.0 ** np.arange(10, 25, 2)
    hit_a = hit_b = hit_pred = 0
    for _ in range(trials):
        t = (latency + s_per_byte * sizes) * (1 + 0.05 * rng.standard_normal(sizes.size))
        fit = fit_alpha_beta(sizes, t, "all_reduce", 8)
        hit_a += fit.latency_ci95_s[0] <= latency <= fit.latency_ci95_s[1]
        hit_b += fit.s_per_byte_ci95[0] <= s_per_byte <= fit.s_per_byte_ci95[1]
        new_s = 2.0**19  # a size between fitted ones, measured afresh
        new_t = (latency + s_per_byte * new_s) * (1 + 0.05 * rng.standard_normal())
        hit_pred += abs(new_t - fit.predict(new_s)) / new_t <= fit.prediction_error95(new_s)
    # binomial(400, 0.95): 99.9% of runs fall within [0.92, 0.975]
    for hits in (hit_a, hit_b, hit_pred):
        assert 0.92 <= hits / trials <= 0.985, (hit_a, hit_b, hit_pred)


@pytest.mark.parametrize("op", MEASURED_OPS)
@pytest.mark.parametrize("ranks", [4, 8])
def test_fitted_fabric_reproduces_the_fit_inside_the_collective_model(op, ranks):
    """The MeasuredFabric, as a switched scale-up domain's fabric, gives back the fitted line."""
    fit = fit_alpha_beta(SIZES, 15e-6 + SIZES / 90e9, op, ranks)
    group = Group(load_system("hgx-h800"), ranks, scale_up=fit.fabric())
    modelled = collective(op, SIZES, group)
    np.testing.assert_allclose(modelled.time_s, fit.predict(SIZES), rtol=1e-9)
    if op == "all_reduce":
        assert set(modelled.algorithm) == {"ring"}
    # and with_measured_scale_up is the same thing
    same = collective(op, SIZES, with_measured_scale_up(Group(load_system("hgx-h800"), ranks), fit.fabric()))
    np.testing.assert_allclose(same.time_s, modelled.time_s, rtol=1e-12)
    assert fit.fabric().bw_bytes_per_s == pytest.approx(model_factor(op, ranks) * 90e9, rel=1e-6)


def test_negative_latency_is_noted_and_floored_in_the_fabric():
    t = -5e-6 + SIZES / 1e9
    fit = fit_alpha_beta(SIZES[3:], t[3:], "send", 2)
    assert fit.latency_s < 0 and "negative" in fit.note and fit.fabric().latency_s == 0.0


@pytest.mark.skipif(jax.device_count() != 8, reason=f"needs 8 host devices (tests/conftest.py); JAX sees {jax.device_count()}")
def test_real_cpu_sweep_predicts_sizes_it_was_not_fitted_on(tmp_path):
    from harness.runner import run_suite
    from kernels.collectives import collective_case

    sizes = [2**k for k in range(10, 21)]  # 1 KiB .. 1 MiB in steps of 2
    cfg = TimingConfig(min_time_s=0.005, samples=7, min_samples=5, max_case_time_s=0.3, warmup_calls=1)
    outcome = run_suite(cases=[collective_case("all_gather", s) for s in sizes], cfg=cfg,
                        out_path=tmp_path / "sweep.json")
    cases = outcome.result_set.cases
    assert all(c.status == "ok" for c in cases), [c.reason for c in cases]
    s = np.array([c.params["size_bytes"] for c in cases], dtype=float)
    t = np.array([c.median_s for c in cases])
    fit_idx, held = np.arange(0, len(s), 2), np.arange(1, len(s), 2)
    fit = fit_alpha_beta(s[fit_idx], t[fit_idx], "all_gather", 8)
    err = np.abs(t[held] - fit.predict(s[held])) / t[held]
    stated = fit.prediction_error95(s[held], joint=True)  # one claim about all held-out sizes
    assert np.all(err <= stated), list(zip(s[held], err, stated))
    assert 0 < fit.latency_s < 0.1 and fit.algbw_bytes_per_s > 1e6
    # the whole sweep from the stored file, as `rackbench fit-fabric` reads it
    full = fit_result_set(tmp_path / "sweep.json", op="all_gather")
    assert full.ranks == 8 and len(full.size_bytes) == len(sizes)


def _case(op, size, t, ranks=8, dtype="fp32", status="ok"):
    return CaseResult(name=f"collective/{op}/{dtype}/x{ranks}/{size}", group="collective", status=status,
                      params={"op": op, "size_bytes": size, "ranks": ranks, "dtype": dtype},
                      stats={"median_s": t} if status == "ok" else {}, bytes=size,
                      samples_s=[t] * 3 if status == "ok" else [],
                      reason=None if status == "ok" else "a collective needs at least 2 devices; JAX sees 1")


def _store(tmp_path, cases, name="set.json"):
    rs = ResultSet(meta={"device": {"kind": "cpu", "count": 8}}, cases=cases)
    return save(rs, tmp_path / name)


def test_result_set_errors_name_the_file_and_the_problem(tmp_path):
    none = _store(tmp_path, [], "none.json")
    with pytest.raises(UserError, match=r"none\.json: no all_reduce case; its collectives: none"):
        fit_result_set(none)
    skipped = _store(tmp_path, [_case("all_reduce", 1024, 0, status="skipped")], "skipped.json")
    with pytest.raises(UserError, match="no measured all_reduce case; its 1 all_reduce case.* were skipped: .*at least 2 "
                                        "devices"):
        fit_result_set(skipped)
    two = _store(tmp_path, [_case("send", 2**k, 1e-4 + 2**k / 1e9) for k in (10, 12)], "two.json")
    with pytest.raises(UserError, match="2 distinct sizes.*at least 3"):
        fit_result_set(two, op="send")
    mixed = _store(tmp_path, [_case("send", 2**k, 1e-4 + 2**k / 1e9, ranks=r) for k in (10, 12, 14) for r in (4, 8)],
                   "mixed.json")
    with pytest.raises(UserError, match="several ranks .*; choose one ranks"):
        fit_result_set(mixed, op="send")
    assert fit_result_set(mixed, op="send", ranks=4).ranks == 4
    # a filter nothing matches says what was looked for and what the set has
    with pytest.raises(UserError, match=r"mixed\.json: no measured send case over 2 ranks; the set measured send over "
                                        r"4 ranks in fp32 \(3 sizes\), over 8 ranks in fp32 \(3 sizes\)"):
        fit_result_set(mixed, op="send", ranks=2)
    for op in ("broadcst", "broadcast"):  # a typo, and an op the model has but no kernel measures
        with pytest.raises(UserError, match=f"collective '{op}' is not one the suite measures"):
            fit_result_set(mixed, op=op)


def test_cli_fit_fabric_table_and_json(tmp_path, capsys):
    sizes = [2**k for k in range(10, 25, 2)]
    path = _store(tmp_path, [_case("all_reduce", s, 30e-6 + s / 2e9) for s in sizes])
    assert cli.main(["fit-fabric", str(path)]) == 0
    out = capsys.readouterr().out
    assert "all_reduce over 8 ranks (fp32), 8 sizes" in out
    assert "30 us" in out and "2 GB/s" in out and "3.5 GB/s" in out  # latency, algbw, busbw 2 x 7/8
    assert "1 KiB" in out and "16 MiB" in out
    assert cli.main(["fit-fabric", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["latency_s"] == pytest.approx(30e-6, rel=1e-6)
    assert data["fabric"]["bw_bytes_per_s"] == pytest.approx(3.5e9, rel=1e-6)
    assert len(data["relative_residuals"]) == 8 and data["dof"] == 6
    assert cli.main(["fit-fabric", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such result file" in capsys.readouterr().err


def test_joint_prediction_band_is_wider_and_reduces_to_one_size():
    rng = np.random.default_rng(3)
    s = np.array([2.0**k for k in range(10, 22)])
    t = (50e-6 + s / 2e9) * (1 + 0.05 * rng.standard_normal(s.size))
    fit = fit_alpha_beta(s, t, "all_reduce", 8)
    held = s[[1, 5, 9]]
    single, joint = fit.prediction_error95(held), fit.prediction_error95(held, joint=True)
    assert np.all(joint > single)
    # Bonferroni over 3 sizes: each at 1 - 0.05/3, so the t quantile ratio is fixed
    from scipy import stats as sps
    ratio = sps.t.ppf(1 - 0.025 / 3, fit.dof) / sps.t.ppf(0.975, fit.dof)
    np.testing.assert_allclose(joint / single, ratio)
    np.testing.assert_allclose(fit.prediction_error95(held[:1], joint=True), single[:1])
