"""Plan search: enumeration rules, the table evaluation row by row, feasible best-first results
(its speed: tests/bench/test_search_speed.py)."""

import numpy as np
import pytest

from clusters import search as S
from clusters.catalog import load_system
from clusters.plan import Plan, table_rows, to_table
from clusters.train import evaluate, train_step
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
def test_each_row_of_a_table_is_evaluated_as_if_alone(model, system, chips, gb, seq, software):
    """The cost model computes expensive parts once per distinct key of plan columns and
    broadcasts them: a key that missed a column that matters would hand one plan another
    plan's numbers. Each sampled row, evaluated as a table of one, must give the same answer."""
    m, sy = load_model(model), load_system(system)
    plans = S.enumerate_plans(m, sy, chips, gb, seq, software=software)
    ev = evaluate(m, sy, plans)
    assert ev.n > 100
    for i in np.random.default_rng(1).choice(ev.n, 25, replace=False):
        alone = evaluate(m, sy, table_rows(plans, [int(i)]))
        for k, v in ev.parts_s.items():
            assert alone.parts_s[k][0] == v[i], (k, ev.plan(int(i)))
        for k, v in ev.memory_bytes.items():
            assert alone.memory_bytes[k][0] == v[i], (k, ev.plan(int(i)))


def test_a_mixed_table_of_software_choices_and_precisions():
    """Rows that differ in every software option and precision, evaluated together and alone,
    and through train_step (the single-plan entry point)."""
    m, sy = load_model("llama3-8b"), load_system("hgx-h100")
    base = Plan(tp=2, pp=2, dp=2, global_batch=64, seq_len=4096)
    plans = [base, base.with_(precision="fp8"), base.with_(tp_comm_overlap=True),
             base.with_(recompute="full", dp_overlap=False), base.with_(sequence_parallel=False),
             base.with_(attention_impl="materialized", dropout=True),
             base.with_(zero=3, dp_overlap=False)]
    ev = evaluate(m, sy, to_table(plans))
    steps = ev.step_time_s
    assert len(set(steps.tolist())) == len(plans)  # every choice changes the step
    for i, p in enumerate(plans):
        # the same arithmetic; NumPy 2.5 (the GPU image's) rounds a few ufuncs' last bit
        # differently in a 7-row table than in a 1-row one
        assert train_step(m, sy, p).step_time_s == pytest.approx(steps[i], rel=1e-12, abs=0)


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
