"""Plan search: the vectorised evaluation equals train_step plan by plan, finds feasible
plans (its speed: tests/bench/test_search_speed.py).
"""

import numpy as np
import pytest

from clusters import search as S
from clusters.catalog import load_system
from clusters.train import train_step
from clusters.workloads import load_model
from clusters.errors import ModelInputError

DSV3 = load_model("deepseek-v3")
H800 = load_system("hgx-h800")
CASES = [("llama3-70b", "hgx-h100", 64, 128, 8192, {}),
         ("deepseek-v3", "hgx-h800", 256, 1024, 4096, {}),
         ("deepseek-v3", "hgx-h800", 256, 1024, 4096, {"ep_overlap": True, "tp_comm_overlap": True}),
         ("gpt3-175b", "dgx-a100", 96, 192, 2048, {"attention_impl": "materialized", "dropout": True}),
         ("llama3-405b", "cloudmatrix-384", 384, 768, 8192, {})]


@pytest.mark.parametrize("model, system, chips, gb, seq, software", CASES)
def test_vectorised_evaluation_equals_train_step(model, system, chips, gb, seq, software):
    m, sy = load_model(model), load_system(system)
    plans = S.enumerate_plans(m, sy, chips, gb, seq, software=software)
    ev = S.evaluate(m, sy, plans, gb, seq, software=software)
    assert ev.n > 100
    for i in np.random.default_rng(1).choice(ev.n, 25, replace=False):
        r = train_step(m, sy, ev.plan(int(i)))
        assert ev.step_time_s[i] == pytest.approx(r.step_time_s, rel=1e-9)
        assert ev.memory_bytes[i] == pytest.approx(r.memory.total_bytes, rel=1e-9)
        assert bool(ev.feasible[i]) == r.feasible
        for k, v in r.breakdown_s.items():
            assert ev.parts_s[k][i] == pytest.approx(v, rel=1e-9, abs=1e-15)


def test_vectorised_evaluation_equals_train_step_fp8():
    """fp8 (bf16 output layer) and an uneven layer split (126 layers: edge stages hold 7)."""
    for name, chips in (("llama3-8b", 8), ("llama3-405b", 256)):  # 126 % 16, 32, 64 != 0
        m, sy = load_model(name), load_system("hgx-h100")
        plans = S.enumerate_plans(m, sy, chips, 256, 8192, precision="fp8")
        ev = S.evaluate(m, sy, plans, 256, 8192, precision="fp8")
        uneven = np.nonzero(m.n_layers % plans["pp"])[0]
        picks = np.random.default_rng(2).choice(ev.n, min(ev.n, 25), replace=False)
        for i in np.concatenate([picks, uneven[:10]]):
            r = train_step(m, sy, ev.plan(int(i)))
            assert ev.step_time_s[i] == pytest.approx(r.step_time_s, rel=1e-9)
            assert ev.memory_bytes[i] == pytest.approx(r.memory.total_bytes, rel=1e-9)


def test_enumeration_respects_the_rules():
    plans = S.enumerate_plans(DSV3, H800, 256, 1024, 4096)
    tp, pp, dp, cp, ep = (plans[k] for k in ("tp", "pp", "dp", "cp", "ep"))
    assert np.all(tp * pp * dp * cp == 256)
    assert np.all(tp <= 8)  # tensor parallel inside the NVLink domain
    assert np.all(256 % ep == 0) and np.all((tp * cp * dp) % ep == 0)
    assert np.all(1024 % (dp * plans["micro_batch"]) == 0)
    assert set(np.unique(plans["zero"])) == {0, 1, 2, 3}


def test_search_returns_feasible_best_first():
    results, n = S.search(load_model("llama3-70b"), load_system("hgx-h100"), 64, 128, 8192, top=3)
    assert n > 1000 and len(results) == 3
    assert all(r.feasible for r in results)
    times = [r.step_time_s for r in results]
    assert times == sorted(times)


def test_search_rejects_unknown_software_option():
    with pytest.raises(ModelInputError, match="unknown software option 'fast'"):
        S.search(load_model("llama3-8b"), load_system("hgx-h100"), 8, 64, 8192,
                 software={"fast": True})


def test_search_explains_when_nothing_fits():
    with pytest.raises(ModelInputError, match="no plan of llama3-405b fits on 8 chips"):
        S.search(load_model("llama3-405b"), load_system("hgx-h100"), 8, 64, 8192)
