"""How long measuring a list of cases takes, from the code's own arithmetic, before it runs.

Per case: compiles x compile time, plus warm-up and samples x the kernel's time (its FLOPs and
bytes at a fraction of the device's roofline, repeated as harness/timing.py would), plus the
output check (attention's fp32 reference is a compile and a run of its own). The reference run
on a lent GPU is cut into stages that each fit a device call by this estimate
(scripts/gpu-reference), and `rackbench run --budget-s` stops before a case that would not fit.

Compile times are the estimate's weak part. On a CPU they are medians measured here; on a GPU
they are pessimistic assumptions until a GPU set exists: pass one as `prior` and every case it
holds is estimated from its own recorded wall time instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from harness.timing import TimingConfig, final_trip_count, probe_trip_count, sample_count
from kernels.base import Case, itemsize

# A kernel runs at this fraction of its roofline bound (max of FLOPs / peak, bytes / bandwidth);
# tuned kernels reach 0.6-0.9 of it on a GPU, so a half keeps the estimate on the long side.
ROOFLINE_FRACTION = 0.5


@dataclass(frozen=True)
class Costs:
    """The fixed costs a case pays besides its kernel's own time."""

    compile_s: Mapping[str, float]  # first compile of a case's program, per group (attention: per pass)
    loop_compile_s: float  # each device-loop program (the kernel's autotuning is already done)
    small_compile_s: float  # per case: input generation and check helpers, compiled per shape
    dispatch_s: float  # one dispatched call of a tiny program, blocked on
    loop_rep_s: float  # the device loop's own cost per repetition
    process_start_s: float  # python, `import jax`, the device client, the environment probe
    cache_hit_s: float  # a program the persistent compilation cache already holds
    input_element_s: float  # generating one random input element (standard normal)
    source: str


# Medians per group in a default-suite set measured on the 2-core CPU machine
# (results/vm-cpu-cpu-x8/20261128T162718-c64393e5.json): lower + compile, loop compile, and
# what a case's wall time holds besides them and its samples (inputs, check helpers: 0.4 s for
# attention); random inputs at ~20 ns an element (harness/suites.py); a blocked dispatch and a
# loop repetition as jax-notes measured them (6.6 us, 0.01 us); the process start assumed.
CPU_COSTS = Costs(
    compile_s=MappingProxyType({"matmul": 0.07, "matmul_model": 0.06, "attention/fwd": 0.27,
                                "attention/fwd_bwd": 0.56, "membw": 0.11, "fusion": 0.11,
                                "train_step": 3.6, "collective": 0.05,
                                # assumed like their nearest kin (no CPU run has them yet)
                                "matmul_grouped": 0.1, "decode_attention": 0.27}),
    loop_compile_s=0.35, small_compile_s=0.4, dispatch_s=6.6e-6, loop_rep_s=0.01e-6, process_start_s=3.0,
    cache_hit_s=0.05, input_element_s=20e-9, source="measured on the 2-core CPU (results/vm-cpu-cpu-x8/20261128T162718-c64393e5.json)")

# Assumptions, not measurements. XLA:GPU autotunes each GEMM (cuBLAS and Triton candidates) and
# cuDNN builds its attention graphs at compile time, so first compiles take seconds; later
# programs of the same kernel reuse the autotuning. Pessimistic on purpose; replaced by a set's
# own records where there is one (`prior`). On the first H200 run (2026-11-30, results/reference/)
# compiles took a third of these (medians 0.6-1.0 s per kernel, 10.7 s for the training step)
# while the rest took longer than modelled: 514 s measured in four calls against 562 s estimated.
GPU_COSTS = Costs(
    compile_s=MappingProxyType({"matmul": 2.0, "matmul_model": 2.0, "attention/fwd": 3.0,
                                "attention/fwd_bwd": 6.0, "membw": 1.0, "fusion": 1.0,
                                "train_step": 60.0, "collective": 2.0, "matmul_grouped": 3.0,
                                "decode_attention": 3.0}),
    loop_compile_s=1.0, small_compile_s=0.3, dispatch_s=30e-6, loop_rep_s=5e-6, process_start_s=20.0,
    cache_hit_s=0.2, input_element_s=1e-11, source="assumed (the first H200 run took 514 s where these gave 562 s): seconds per XLA:GPU compile with autotuning")


def costs_for(platform: str) -> Costs:
    return CPU_COSTS if platform == "cpu" else GPU_COSTS


@dataclass(frozen=True)
class Ceilings:
    peak_flops_per_s: Mapping[str, float]
    bw_bytes_per_s: float
    source: str

    @classmethod
    def from_chip(cls, chip) -> "Ceilings":
        return cls(MappingProxyType(dict(chip.peak_flops_per_s)), chip.hbm_bw_bytes_per_s, f"catalog: {chip.name}")

    @classmethod
    def from_meta(cls, ceilings: Mapping) -> "Ceilings | None":
        """A result set's recorded ceilings (meta["ceilings"]), if it has both kinds."""
        peaks = {k: float(v) for k, v in (ceilings.get("peak_flops_per_s") or {}).items() if v}
        bw = ceilings.get("peak_bw_bytes_per_s")
        return cls(MappingProxyType(peaks), float(bw), str(ceilings.get("source"))) if peaks and bw else None

    @classmethod
    def best(cls, chip, platform: str, measured: Mapping | None = None) -> "Ceilings":
        """The catalog chip's, else those a set measured (its meta["ceilings"]), else a guess."""
        return (cls.from_chip(chip) if chip else None) or (cls.from_meta(measured) if measured else None) \
            or cls.guess(platform)

    @classmethod
    def guess(cls, platform: str) -> "Ceilings":
        """A device with neither a catalog chip nor a measured set: on a CPU the 2-core
        machine's measured ceilings (the set CPU_COSTS names), on a GPU a modest one's."""
        if platform == "cpu":
            return cls(MappingProxyType({"fp32": 1.27e11, "bf16": 1.03e11}), 5.3e9,
                       "measured on the 2-core CPU (results/vm-cpu-cpu-x8/20261128T162718-c64393e5.json)")
        return cls(MappingProxyType({d: 1e14 for d in ("fp32", "bf16", "fp16", "fp8")}), 1e12,
                   "assumed for a GPU outside the catalog: 100 TFLOP/s in every dtype, 1 TB/s")

    def bound_s(self, flops: float, bytes_: float, dtype: str | None) -> float:
        peak = self.peak_flops_per_s.get(dtype) if dtype else None
        return max(flops / peak if peak else 0.0, bytes_ / self.bw_bytes_per_s if self.bw_bytes_per_s else 0.0)


@dataclass(frozen=True)
class CaseEstimate:
    name: str
    skipped: bool
    method: str | None  # host-loop or device-loop, as harness.timing would choose
    call_s: float  # one kernel call
    compiles: int
    compile_s: float
    run_s: float  # inputs, warm-up and samples
    check_s: float  # the output check: reference compile and run, helpers
    source: str  # "model" or the prior set it was read from
    total_s: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_s", self.compile_s + self.run_s + self.check_s)


def _compile_key(case: Case) -> str:
    return f"attention/{case.params['pass']}" if case.group == "attention" else case.group


def _kernel_call_s(case: Case, ceilings: Ceilings) -> float:
    flops = case.flops
    if case.group == "attention" and case.params.get("causal") and case.params.get("impl") != "cudnn":
        flops *= 2  # XLA and the jnp reference compute the masked half too; the FLOP count does not
    return ceilings.bound_s(flops, case.bytes, case.peak_dtype) / ROOFLINE_FRACTION


def _sampling(call_s: float, cfg: TimingConfig, costs: Costs,
              cross_check: bool = True) -> tuple[str, int, float]:
    """(method, loop compiles, seconds of warm-up and samples), as time_compiled proceeds."""
    single = call_s + costs.dispatch_s
    warmup_s = max(1, cfg.warmup_calls) * single
    if single >= cfg.host_loop_min_call_s:
        reps = max(1, min(cfg.max_reps, math.ceil(cfg.min_time_s / single)))
        return "host-loop", 0, warmup_s + sample_count(reps * call_s, cfg) * reps * call_s
    per_rep = call_s + costs.loop_rep_s
    probe_reps = probe_trip_count(single, cfg)
    reps = final_trip_count(probe_reps, per_rep, cfg)
    compiles = 1 if reps == probe_reps else 2
    probe_s = 3 * (probe_reps * per_rep + costs.dispatch_s)  # first run and two timed ones
    n = sample_count(reps * per_rep, cfg)
    cross_s = 0.0
    if cross_check and cfg.cross_check_min_call_s is not None and per_rep >= cfg.cross_check_min_call_s:
        # the host loop's samples and as many more of the device loop's (timing._cross_check)
        cross_s = cfg.min_samples * (max(1, math.ceil(cfg.min_time_s / per_rep)) * call_s + reps * per_rep)
    return "device-loop", compiles, warmup_s + probe_s + (n + 1) * reps * per_rep + cross_s


def _check_s(case: Case, ceilings: Ceilings, costs: Costs, references: set, cached: bool) -> float:
    """The output check: attention compiles an fp32 reference per shape and pass (shared by
    the implementations and both masks, so only the first case of a shape pays) and runs it at
    the fp32 peak; the training step compiles and runs a forward pass."""
    if case.group == "attention":
        p = case.params
        key = (p["b"], p["t"], p["s"], p["n_heads"], p["n_kv_heads"], p["head_dim"], p["dtype"], p["pass"])
        compile_s = 0.0 if key in references else costs.cache_hit_s if cached else costs.compile_s[_compile_key(case)]
        references.add(key)
        full_flops = case.flops * (2 if p["causal"] else 1)
        return compile_s + ceilings.bound_s(full_flops, case.bytes, "fp32") / ROOFLINE_FRACTION
    if case.group == "train_step":
        return costs.compile_s["train_step"] / 3 + _kernel_call_s(case, ceilings) / 3
    if case.group == "decode_attention":  # an fp32 reference of the same shape, compiled per case
        first = costs.cache_hit_s if cached else costs.compile_s["decode_attention"]
        return first + ceilings.bound_s(case.flops, case.bytes, "fp32") / ROOFLINE_FRACTION
    return 0.0


def estimate_case(case: Case, device, ceilings: Ceilings, cfg: TimingConfig, costs: Costs,
                  references: set | None = None, cached: bool = False) -> CaseEstimate:
    """`device` answers case.skip (a jax device, or anything with its platform and
    compute_capability); `references` carries the attention references already compiled;
    `cached`: the persistent compilation cache holds the case's programs from an earlier
    process (its loop programs too, unless their trip counts differ: counted as compiles)."""
    if case.skip(device):
        return CaseEstimate(case.name, True, None, 0.0, 0, 0.0, 0.0, 0.0, "model")
    references = set() if references is None else references
    call_s = _kernel_call_s(case, ceilings)
    method, loop_compiles, run_s = _sampling(call_s, cfg, costs, cross_check=not case.multi_device)
    first_s = costs.cache_hit_s if cached else costs.compile_s[_compile_key(case)]
    compile_s = first_s + loop_compiles * costs.loop_compile_s + costs.small_compile_s
    # the inputs, counted as the case's compulsory bytes in its dtype (the output included)
    inputs_s = case.bytes / itemsize(case.params.get("dtype", "fp32")) * costs.input_element_s
    return CaseEstimate(case.name, False, method, call_s, 1 + loop_compiles, compile_s, run_s + inputs_s,
                        _check_s(case, ceilings, costs, references, cached),
                        "model, programs in the compilation cache" if cached else "model")


def estimate_cases(cases: Iterable[Case], device, ceilings: Ceilings, cfg: TimingConfig, costs: Costs,
                   prior=None, compiled_before: Iterable[str] = ()) -> list[CaseEstimate]:
    """Every case in order. A case that `prior` (a result set) holds is estimated from its own
    recorded wall time (timing.case_wall_s); the model estimates the rest. The first program of
    a case named in `compiled_before` is read from the persistent compilation cache."""
    recorded = {}
    if prior is not None:
        where = getattr(prior, "path", None) or "prior set"
        recorded = {c.name: c.timing["case_wall_s"] for c in prior.cases if c.timing.get("case_wall_s")}
    cached = set(compiled_before)
    references: set = set()
    out = []
    for case in cases:
        est = estimate_case(case, device, ceilings, cfg, costs, references, case.name in cached)
        if case.name in recorded and not est.skipped:
            est = CaseEstimate(case.name, False, est.method, est.call_s, est.compiles, 0.0, recorded[case.name],
                               0.0, f"recorded in {where}")
        out.append(est)
    return out


def loop_overhead_s(cfg: TimingConfig, costs: Costs) -> float:
    """What measuring the device loop's own cost takes once per run (harness.timing)."""
    _, loop_compiles, run_s = _sampling(0.0, cfg, costs)
    return (1 + loop_compiles) * costs.small_compile_s + run_s


def fit_budget(estimates: list[CaseEstimate], budget_s: float) -> int:
    """How many of `estimates`, in order, fit in `budget_s` (at least one, so that a case longer
    than any budget is measured on its own rather than never)."""
    used, n = 0.0, 0
    for est in estimates:
        if n and used + est.total_s > budget_s:
            break
        used += est.total_s
        n += 1
    return n


def parts(estimates: list[CaseEstimate], budget_s: float) -> list[list[CaseEstimate]]:
    """The cases cut, in order, into consecutive parts that each fit `budget_s`."""
    out, rest = [], list(estimates)
    while rest:
        n = fit_budget(rest, budget_s)
        out.append(rest[:n])
        rest = rest[n:]
    return out
