"""Closing the loop: the training-step case of a result set projected from the same set's kernel
cases onto the device that measured them (harness.studies.closing_loop)."""
from __future__ import annotations

import dataclasses

import pytest

from clusters import flops as F
from clusters.catalog import load_chip
from harness.studies.closing_loop import (close_loop, local_calibration, local_plan,
                                   local_system, model_from_case)
from harness.device import catalog_ceilings
from harness.errors import UserError
from harness.studies.closing_loop import add_projections, closing_loop_line
from harness.resultset import CaseResult, ResultSet, load, save, to_dataframe
from kernels.attention import attention_flops
from clusters.train import Rates, elementwise_bytes_per_token
from kernels.train_step import (TinyLlama, matmul_params, part_cases, step_gemms, train_step_case,
                                train_step_flops)

CPU_META = {"device": {"platform": "cpu", "kind": "cpu", "count": 1, "memory_bytes": 16e9,
                       "catalog_chip": None},
            "ceilings": {"peak_flops_per_s": {"fp32": 1e11, "bf16": 4e10},
                         "peak_bw_bytes_per_s": 1e10, "source": "measured in this run"}}
SMALL = TinyLlama(layers=2, hidden=256, ffn=704, heads=4, kv_heads=2, vocab=2048, seq_len=256,
                  batch=2)


# ------------------------------------------------------------------ the three inputs

def test_local_system_takes_the_measured_ceilings_and_an_fp32_step_uses_the_bf16_slot():
    s = local_system(CPU_META, "fp32", "x.json")
    # its own family: no published entry of a catalog family prices the set's own step
    assert s.chips_per_domain == 1 and s.chip.family == s.chip.name == "local:cpu"
    assert s.chip.hbm_bw_bytes_per_s == 1e10 and s.chip.hbm_bytes == 16e9
    assert s.chip.peak("fp32") == 1e11
    assert s.chip.peak("bf16") == 1e11  # the plan's bf16 slot carries the step's fp32 peak
    assert "x.json" in s.chip.sources["peak_flops_per_s"]
    assert local_system(CPU_META, "bf16").chip.peak("bf16") == 4e10  # a bf16 step: its own


def test_local_system_of_a_catalog_gpu_set_is_the_catalog_chip():
    h100 = load_chip("h100")
    meta = {"device": {"platform": "gpu", "kind": "NVIDIA H100 80GB HBM3", "count": 1,
                       "memory_bytes": 85e9, "catalog_chip": "h100"},
            "ceilings": catalog_ceilings(h100)}
    s = local_system(meta, "bf16")
    assert s.chip.family == "local:NVIDIA H100 80GB HBM3" and s.chip.power_w == h100.power_w
    assert s.chip.peak("bf16") == h100.peak("bf16")
    assert s.chip.hbm_bw_bytes_per_s == h100.hbm_bw_bytes_per_s


@pytest.mark.parametrize("ceilings, needle", [
    ({"peak_flops_per_s": {"bf16": 1e11}, "peak_bw_bytes_per_s": 1e10}, "no fp32 FLOP/s"),
    ({"peak_flops_per_s": {"fp32": 1e11}, "peak_bw_bytes_per_s": None}, "no memory-bandwidth"),
])
def test_missing_ceilings_are_user_errors_naming_the_set(ceilings, needle):
    with pytest.raises(UserError, match=f"set.json: {needle}"):
        local_system({**CPU_META, "ceilings": ceilings}, "fp32", "set.json")


def test_rebuilt_model_counts_the_kernels_flops():
    # 6 x matmul weights x tokens: the kernel's count equals the clusters model's 3 x forward
    m = TinyLlama()
    params = train_step_case(m).params
    model = model_from_case(params)
    tokens = m.batch * m.seq_len
    gemm = 3 * (F.layer_matmul_flops_fwd(model) + F.output_flops_fwd(model)) * tokens
    assert gemm == pytest.approx(6.0 * matmul_params(m) * tokens)
    # and the step's FLOPs are the model FLOPs of clusters' MFU definition (PaLM, no halving)
    assert F.model_flops_per_token(model, m.seq_len) * tokens == pytest.approx(
        train_step_flops(m))


def test_local_plan_is_one_chip_whole_batch_no_recompute():
    p = local_plan(train_step_case(SMALL).params, "fp32")
    assert (p.tp, p.pp, p.dp, p.cp, p.ep, p.chips) == (1, 1, 1, 1, 1, 1)
    assert p.micro_batch == p.global_batch == SMALL.batch and p.seq_len == SMALL.seq_len
    assert p.recompute == "none" and p.precision == "bf16"


# ------------------------------------------------------------------ a set built in code

def _ok(name, group, params, median_s, flops=None, moved=None, peak=None, bw=1e10, dtype=None):
    return CaseResult(name=name, group=group, params=params, status="ok",
                      stats={"median_s": median_s}, samples_s=[median_s] * 3, flops=flops, bytes=moved,
                      achieved_flops_per_s=flops / median_s if flops else None,
                      achieved_bytes_per_s=moved / median_s if moved else None,
                      peak_flops_per_s=peak, peak_bw_bytes_per_s=bw,
                      extra={"peak_dtype": dtype})


def _synthetic_set(gemm_eff=0.5, attn_time_s=0.02, step_s=0.2, tmp_path=None, dtype="fp32",
                   meta=CPU_META, peak=1e11, bw=1e10) -> ResultSet:
    """GEMMs at `gemm_eff` of `peak` at every size, one attention case at the step's own shape
    taking attn_time_s, streams at the full `bw`, and the step."""
    cases = [_ok(f"matmul/{dtype}/{n}", "matmul", {"m": n, "n": n, "k": n, "dtype": dtype},
                 2 * n**3 / (gemm_eff * peak), flops=2.0 * n**3, moved=12.0 * n * n, peak=peak,
                 bw=bw, dtype=dtype) for n in (128, 256, 512, 1024, 2048, 4096, 8192)]
    m = SMALL
    a = dict(b=m.batch, t=m.seq_len, s=m.seq_len, n_heads=m.heads, n_kv_heads=m.kv_heads,
             head_dim=m.hidden // m.heads, causal=True, impl="xla", dtype=dtype)
    fl = attention_flops(m.batch, m.seq_len, m.seq_len, m.heads, m.hidden // m.heads, True,
                         "fwd_bwd")
    cases.append(_ok("attention/xla/fwd_bwd", "attention", {**a, "pass": "fwd_bwd"}, attn_time_s,
                     flops=fl, moved=1e6, peak=peak, bw=bw, dtype=dtype))
    # a jnp case at another efficiency must not be picked for an XLA step
    cases.append(_ok("attention/jnp/fwd_bwd", "attention", {**a, "impl": "jnp", "pass": "fwd_bwd"},
                     attn_time_s * 10, flops=fl, moved=1e6, peak=peak, bw=bw, dtype=dtype))
    for n in (1 << 18, 1 << 26):
        cases.append(_ok(f"membw/stream_add/{n}", "membw", {"op": "stream_add", "dtype": dtype},
                         8.0 * n / bw, flops=float(n), moved=8.0 * n, bw=bw))
    step = train_step_case(m, dtype)
    cases.append(_ok(step.name, "train_step", dict(step.params), step_s, flops=step.flops,
                     moved=step.bytes, peak=peak, bw=bw, dtype=dtype))
    rs = ResultSet(meta=dict(meta), cases=cases)
    if tmp_path is not None:
        save(rs, tmp_path / "synthetic.json")
    return rs


def test_projection_from_a_synthetic_set_follows_its_kernels(tmp_path):
    rs = _synthetic_set(tmp_path=tmp_path)
    loop = close_loop(rs)
    parts = loop.breakdown_s
    assert loop.projected_step_time_s == pytest.approx(sum(parts.values()))
    for k in ("tp_comm_s", "cp_comm_s", "ep_comm_s", "pp_comm_s", "dp_comm_s",
              "pipeline_bubble_s", "recompute_s"):
        assert parts[k] == 0.0  # one chip: nothing to communicate, no pipeline
    model = model_from_case(rs.cases[-1].params)
    tokens = SMALL.batch * SMALL.seq_len
    gemm_flops = 3 * (F.layer_matmul_flops_fwd(model) + F.output_flops_fwd(model)) * tokens
    # compute-bound at these sizes: GEMM time is their FLOPs at half of the peak
    assert parts["gemm_s"] == pytest.approx(gemm_flops / (0.5 * 1e11), rel=1e-6)
    # the attention case has the step's shape: each layer's attention takes its measured time
    assert parts["attention_s"] == pytest.approx(SMALL.layers * 0.02, rel=1e-6)
    assert loop.error == pytest.approx(loop.projected_step_time_s / 0.2 - 1)
    assert "synthetic.json" in loop.calibration


def test_a_gpu_set_closes_the_loop_at_burst_clock_on_its_catalog_chip():
    h100 = load_chip("h100")
    meta = {"device": {"platform": "gpu", "kind": "NVIDIA H100 80GB HBM3", "count": 1,
                       "memory_bytes": 85e9, "catalog_chip": "h100"},
            "ceilings": catalog_ceilings(h100)}
    rs = _synthetic_set(dtype="bf16", meta=meta, peak=h100.peak("bf16"),
                        bw=h100.hbm_bw_bytes_per_s, attn_time_s=2e-5, step_s=2e-3)
    cal = local_calibration(to_dataframe(rs), "gpu.json", "bf16", "xla")
    local, peak = "local:NVIDIA H100 80GB HBM3", h100.peak("bf16")
    # the step is timed in bursts like the kernels: no sustained-clock derating
    assert cal.efficiency("gemm", local, "bf16", 2.0 * 1024 ** 3, peak) == pytest.approx(0.5)
    # only the set's own kernels: no published Hopper entry prices the local chip
    assert all(e.measured for e in cal.entries)
    loop = close_loop(rs)
    assert loop.system.chip.family == local
    assert loop.breakdown_s["activation_dtype_s"] == 0.0  # bf16 activations, as modelled
    assert loop.projected_step_time_s == pytest.approx(sum(loop.breakdown_s.values()))
    assert loop.breakdown_s["dp_comm_s"] == loop.breakdown_s["tp_comm_s"] == 0.0


def test_calibration_refuses_a_set_without_the_steps_dtype():
    rs = _synthetic_set()
    rs.cases = [c for c in rs.cases if c.group != "attention"]
    with pytest.raises(UserError, match="no ok fp32 attention case"):
        local_calibration(to_dataframe(rs), "set.json", "fp32", "xla")


def test_add_projections_stores_the_figures_and_show_prints_them(tmp_path):
    rs = _synthetic_set(tmp_path=tmp_path)
    add_projections(rs)
    extra = rs.cases[-1].extra
    assert extra["projected_step_time_s"] == pytest.approx(close_loop(rs).projected_step_time_s)
    assert extra["projection_error"] == pytest.approx(extra["projected_step_time_s"] / 0.2 - 1)
    assert sum(extra["projection_breakdown_s"].values()) == pytest.approx(
        extra["projected_step_time_s"])
    save(rs, tmp_path / "s.json")
    again = load(tmp_path / "s.json")  # survives the JSON round trip
    line = closing_loop_line(again)
    assert "measured 200 ms" in line and f"{extra['projection_error']:+.1%}" in line


def test_add_projections_skips_quietly(tmp_path):
    rs = _synthetic_set()
    rs.cases = rs.cases[:-1]
    add_projections(rs)  # no training step: nothing to do
    assert closing_loop_line(rs) is None
    failed = _synthetic_set()
    failed.cases[-1] = dataclasses.replace(failed.cases[-1], status="failed", reason="OOM")
    add_projections(failed)
    assert "failed: OOM" in failed.cases[-1].extra["projection_skipped"]
    assert "not projected" in closing_loop_line(failed)
    nomem = _synthetic_set()
    nomem.meta = {**CPU_META, "ceilings": {**CPU_META["ceilings"], "peak_bw_bytes_per_s": None}}
    add_projections(nomem)
    assert "memory-bandwidth" in nomem.cases[-1].extra["projection_skipped"]
    assert "projected_step_time_s" not in nomem.cases[-1].extra


# ------------------------------------------------------------------ measured on this machine


def test_the_local_chip_records_held_curves_as_extrapolated():
    """With no published entry beside them, the set's curves are held flat outside their sizes
    and the record says so, for one call and for a column of calls alike."""
    import numpy as np

    rs = _synthetic_set()
    cal = local_calibration(to_dataframe(rs), "set.json", "fp32", "xla").recording()
    fam = "local:cpu"
    inside = cal.efficiency("gemm", fam, "bf16", 2.0 * 1024 ** 3, 1e11)
    assert cal.efficiency("gemm", fam, "bf16", 1e17, 1e11) == pytest.approx(inside)
    cal.efficiency("memory", fam, "bf16", np.array([8.0 * (1 << 20), 1e15]))
    counts = {(r["kernel"], r["status"]): r["calls"] for r in cal.priced_by()}
    assert counts == {("gemm", "measured"): 1, ("gemm", "extrapolated"): 1,
                      ("memory", "measured"): 1, ("memory", "extrapolated"): 1}


# ------------------------------------------------------------------ the step's parts, measured

def _part_cases(rs, gemm_s=None, attention_s=None, swiglu_s=None, logits_s=None, peak=1e11,
                bw=1e10, dtype="fp32"):
    """Add the step's own parts (kernels.train_step.part_cases) to a synthetic set: every GEMM
    shape and layout at gemm_s(pass, shape) seconds, the attention at the step's shape, the two
    transposed loops."""
    m = SMALL
    if gemm_s is not None:
        for g in step_gemms(m):
            for p, (mm, nn, kk), layout in g.passes():
                params = {"m": mm, "n": nn, "k": kk, "dtype": dtype, "layout": layout}
                rs.cases.insert(0, _ok(f"matmul/{dtype}/tiny-llama/{g.name}/{p}", "matmul_model",
                                       params, gemm_s(p, (mm, nn, kk)), flops=2.0 * mm * nn * kk,
                                       moved=4.0 * (mm * kk + kk * nn + mm * nn), peak=peak, bw=bw,
                                       dtype=dtype))
    t = m.batch * m.seq_len
    if swiglu_s is not None:
        rs.cases.insert(0, _ok("fusion/swiglu", "fusion", {"op": "swiglu_gate_grad_t", "tokens": t,
                                                           "ffn": m.ffn, "dtype": dtype},
                               swiglu_s, moved=20.0 * t * m.ffn, bw=bw))
    if logits_s is not None:
        rs.cases.insert(0, _ok("fusion/logits", "fusion", {"op": "logits_grad_pad_t", "batch": m.batch,
                                                           "seq_len": m.seq_len, "vocab": m.vocab,
                                                           "dtype": dtype},
                               logits_s, moved=8.0 * t * m.vocab, bw=bw))
    return rs


def _gemm_time(p, shape):
    """Planted times: a weight gradient 1.5x, an input gradient 1.2x its forward's rate."""
    mm, nn, kk = shape
    return 2.0 * mm * nn * kk / 4e10 * {"fwd": 1.0, "dgrad": 1.2, "wgrad": 1.5}[p]


def test_the_steps_gemms_are_priced_at_their_own_shapes_and_layouts():
    base = close_loop(_synthetic_set())
    rs = _part_cases(_synthetic_set(), gemm_s=_gemm_time)
    loop = close_loop(rs)
    want = sum(g.count * _gemm_time(p, s) for g in step_gemms(SMALL) for p, s, _ in g.passes())
    assert loop.breakdown_s["gemm_s"] == pytest.approx(want)
    # the square sweep alone (half of the peak at every size) prices them at 3 x forward
    assert base.breakdown_s["gemm_s"] == pytest.approx(
        3 * sum(g.count * 2.0 * g.m * g.n * g.k for g in step_gemms(SMALL)) / 5e10, rel=1e-6)
    assert any("at this set's time for that shape and layout" in n for n in loop.notes)
    # a weight-gradient layout the set lacks falls back to the calibration, and is said to
    rs.cases = [c for c in rs.cases if c.params.get("layout") != "tn"]
    partial = close_loop(rs)
    rates = Rates(partial.system.chip, local_calibration(to_dataframe(rs), "x", "fp32", "xla"), "bf16")
    assert partial.breakdown_s["gemm_s"] == pytest.approx(want - sum(
        g.count * (_gemm_time("wgrad", s) - rates.gemm_s(F.Gemm("w", *s)))
        for g in step_gemms(SMALL) for p, s, _ in g.passes() if p == "wgrad"))
    assert partial.breakdown_s["gemm_s"] != pytest.approx(want)
    assert any(f"{len(step_gemms(SMALL))} by the calibration (not measured)" in n for n in partial.notes)


def test_attention_is_the_steps_shape_not_a_case_of_equal_flops():
    """The suite's attention cases have head dim 128; the step's 64 has twice the scores (and
    their softmax) per FLOP. A case of the step's FLOPs at another shape prices it only when the
    set lacks the step's own shape."""
    m = SMALL
    rs = _synthetic_set(attn_time_s=0.02)
    wide = dict(b=2 * m.batch, t=m.seq_len // 2, s=m.seq_len // 2, n_heads=m.heads, n_kv_heads=m.kv_heads,
                head_dim=2 * (m.hidden // m.heads), causal=True, impl="xla", dtype="fp32", **{"pass": "fwd_bwd"})
    fl = attention_flops(wide["b"], wide["t"], wide["s"], m.heads, wide["head_dim"], True, "fwd_bwd")
    assert fl == attention_flops(m.batch, m.seq_len, m.seq_len, m.heads, m.hidden // m.heads, True,
                                 "fwd_bwd")
    rs.cases.insert(0, _ok("attention/xla/fwd_bwd/wide", "attention", wide, 0.01, flops=fl,
                           moved=1e6, peak=1e11, bw=1e10, dtype="fp32"))
    assert close_loop(rs).breakdown_s["attention_s"] == pytest.approx(m.layers * 0.02)
    rs.cases = [c for c in rs.cases if c.name != "attention/xla/fwd_bwd"]
    loop = close_loop(rs)  # only the calibration's, read at the step's FLOPs: the wide case's
    assert loop.breakdown_s["attention_s"] == pytest.approx(m.layers * 0.01, rel=0.05)
    assert any("no attention case at the step's shape" in n for n in loop.notes)


def test_the_transposed_gradient_loops_are_charged_once_per_layer_and_once():
    rs = _synthetic_set()
    assert close_loop(rs).breakdown_s["transposed_grads_s"] == 0.0
    assert any("not measured: left out" in n for n in close_loop(rs).notes)
    loop = close_loop(_part_cases(rs, swiglu_s=0.004, logits_s=0.007))
    assert loop.breakdown_s["transposed_grads_s"] == pytest.approx(SMALL.layers * 0.004 + 0.007)
    assert loop.projected_step_time_s == pytest.approx(sum(loop.breakdown_s.values()))


def test_the_step_has_no_position_embedding_and_is_charged_no_rotary_work():
    model = model_from_case(train_step_case(SMALL).params)
    assert model.position_embedding == "none"
    plan = local_plan(train_step_case(SMALL).params, "fp32")
    rope = dataclasses.replace(model, position_embedding="rope")
    kv = model.n_kv_heads * model.head_dim
    assert (elementwise_bytes_per_token(rope, plan, False)
            - elementwise_bytes_per_token(model, plan, False)) == 4.0 * (model.hidden_size + kv)


def test_the_cpu_suite_measures_the_steps_parts():
    from harness.suites import build_suite

    names = {c.name for c in build_suite("default", "cpu", device_count=1)}
    m = TinyLlama()
    assert {c.name for c in part_cases(m, "fp32")} <= names
