"""Closing the loop on this machine: a small training step and the kernels it is made of,
measured here, and the step projected from the kernels within 25%. Wall-clock: a marked suite
(`bench`), not part of `make test`; `make bench` reports the same check from its own run
(`rackbench show` prints the closing-the-loop line)."""
import dataclasses
import math

from harness.studies.closing_loop import TOLERANCE, add_projections, closing_loop_line
from kernels.train_step import TinyLlama, train_step_case

SMALL = TinyLlama(layers=2, hidden=256, ffn=704, heads=4, kv_heads=2, vocab=2048, seq_len=256,
                  batch=2)


def _measure(path):
    from harness.runner import default_timing, run_suite
    from kernels.attention import attention_case
    from kernels.matmul import matmul_case
    from kernels.membw import rmsnorm_case, stream_case

    m = SMALL
    # The learning check compiles the step a second time; the kernel tests run it. Here only
    # the time matters.
    step = dataclasses.replace(train_step_case(m, "fp32"), check=None)
    cases = [matmul_case(n, n, n, "fp32") for n in (256, 512, 1024)]
    cases.append(attention_case(m.batch, m.seq_len, m.heads, m.kv_heads, m.hidden // m.heads,
                                True, "fwd_bwd", "xla", "fp32"))
    cases.append(step)  # between the kernels: contention on a shared CPU drifts over seconds
    cases += [stream_case(1 << 20), stream_case(1 << 22), stream_case(1 << 24),
              rmsnorm_case(1024, 1024, "fp32")]
    out = run_suite(suite="quick", cases=cases, cfg=default_timing("quick", "cpu"),
                    out_path=path)
    assert all(c.status == "ok" for c in out.result_set.cases), [
        (c.name, c.reason) for c in out.result_set.cases if c.status != "ok"]
    return out.result_set


def test_projection_of_a_step_measured_here_lands_within_25_percent(tmp_path):
    """The issue's check, on a set measured in the test. This CPU is shared: when the load of
    other processes changes between the kernel cases and the step, one re-measurement is
    allowed (both errors are printed)."""
    errors = []
    for attempt in range(2):
        rs = _measure(tmp_path / f"set{attempt}.json")
        add_projections(rs)
        extra = next(c for c in rs.cases if c.group == "train_step").extra
        errors.append(extra["projection_error"])
        print(f"attempt {attempt}: {closing_loop_line(rs)}")
        if abs(errors[-1]) <= TOLERANCE:
            break
    assert abs(errors[-1]) <= TOLERANCE, errors
    assert math.isfinite(extra["projected_step_time_s"])
