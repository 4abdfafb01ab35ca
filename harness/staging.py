"""The staged reference run on a lent GPU (scripts/gpu-reference), planned by harness.estimate.

A lent GPU allows 10 minutes a command and 15 in all, start-up included, so the run is cut into
stages, each one command of at most STAGE_BUDGET_S by the estimate, its results saved as it goes:
  vendor     our bf16 8192^3 matmul and cuDNN attention at torch SDPA's shape, then
             vendor_baselines.py (torch on the same card) and `rackbench vendor-check`;
  suite      the rest of the default suite, `rackbench run --resume --budget-s`, as many calls
             as the estimate needs (each stops before a case that would not fit);
  gpu-tests  `pytest -m gpu`, whose programs the suite has left in the compilation cache.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.estimate import CaseEstimate, Ceilings, Costs, estimate_cases, parts
from harness.suites import VENDOR_CASES, gpu_test_cases, vendor_cases
from harness.timing import TimingConfig

STAGES = ("vendor", "suite", "gpu-tests")
STAGE_BUDGET_S = 300.0  # half a command's 10 minutes: room for an estimate that is 2x short
# What a stage's command spends outside `rackbench run`'s own budget: the process start
# (harness.estimate.GPU_COSTS.process_start_s is 20 s) and the copy of its files. The script
# passes `--budget-s` = its stage budget minus this (tests/harness/test_staging.py checks).
RUN_START_MARGIN_S = 30.0
# Besides its cases, the vendor stage runs the bootstrap (an offline editable install, ~10 s),
# `rackbench devices` (a process start), vendor_baselines.py (import torch, CUDA start, three
# measurements of 25 calls each, the largest on 4 GiB: 30 s, pessimistic) and `rackbench
# vendor-check` (no JAX).
VENDOR_EXTRA_S = 10.0 + 20.0 + 30.0 + 5.0
# pytest collects every test module (each imports JAX, pandas, the harness) before the -m gpu
# ones run; the fp8 test compiles its program once more to read the optimized HLO (cached).
GPU_TESTS_EXTRA_S = 30.0
# tests/kernels/test_gpu_paths.py's sampling budget
GPU_TESTS_TIMING = TimingConfig(min_time_s=0.005, samples=5, max_case_time_s=0.5)


@dataclass(frozen=True)
class StagePlan:
    name: str
    part: int  # 1-based; the suite stage may take several calls
    cases: tuple[CaseEstimate, ...]
    fixed_s: float  # process starts and the stage's other commands

    @property
    def total_s(self) -> float:
        return self.fixed_s + sum(c.total_s for c in self.cases)


def plan_reference(suite_cases, device, ceilings: Ceilings, cfg: TimingConfig, costs: Costs,
                   budget_s: float = STAGE_BUDGET_S, done=(), prior=None) -> list[StagePlan]:
    """The stages of the reference run for `suite_cases` (the default GPU suite), each cut to
    `budget_s` by the estimate; cases named in `done` (a set already begun) are left out."""
    done = set(done)
    run_budget_s = budget_s - RUN_START_MARGIN_S
    vendor = [c for c in vendor_cases() if c.name not in done]
    rest = [c for c in suite_cases if c.name not in done and c.name not in VENDOR_CASES]
    plans = [StagePlan("vendor", 1, tuple(estimate_cases(vendor, device, ceilings, cfg, costs, prior)),
                       costs.process_start_s + VENDOR_EXTRA_S)]
    suite_estimates = estimate_cases(rest, device, ceilings, cfg, costs, prior)
    for i, part in enumerate(parts(suite_estimates, run_budget_s) or [[]], start=1):
        plans.append(StagePlan("suite", i, tuple(part), costs.process_start_s))
    measured = {c.name for c in suite_cases}
    tests = estimate_cases(gpu_test_cases(), device, ceilings, GPU_TESTS_TIMING, costs, None, measured)
    plans.append(StagePlan("gpu-tests", 1, tuple(tests), costs.process_start_s + GPU_TESTS_EXTRA_S))
    return plans
