"""How a kernel is timed: compile ahead, warm up, then samples that each last a minimum time.

Two ways to repeat a kernel inside one sample, chosen per case and recorded in the result:
- host-loop: N dispatches of the compiled program back to back, then block on every output.
  Used when one call is long enough (>= `host_loop_min_call_s`) that dispatch hides behind
  execution. This is the "compile, warm up, N calls, block, divide" loop everyone writes.
- device-loop: N repetitions inside one compiled program (lax.fori_loop with a static trip
  count), each repetition reading one element changed by the previous one, so XLA can neither
  hoist the kernel out of the loop nor run repetitions in parallel, and an optimization
  barrier so it cannot compute only the element the next repetition reads. One dispatch per
  sample, so per-call time excludes dispatch overhead. Tests check the time per repetition
  stays flat as N grows (nothing hoisted or deduplicated).

Both can only add time to the kernel's own: the host loop the dispatch gaps it fails to hide,
the device loop its own work per repetition. A device-loop case long enough for the host loop
to hide dispatch (CROSS_CHECK_MIN_CALL_S) is therefore timed both ways, in turn, and keeps the
host loop's samples when the device loop is provably slower (`loop_adds_work`): on an H200 the
first device loop read a 1 GiB stream add at 1.06 ms a repetition, slower than one dispatched
call of it (0.71 ms), consistent with XLA:GPU copying the carried input every repetition.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp

from harness.stats import log_median_sd, summarize

# The perturbation scale carried between repetitions: small enough never to change a value
# in practice, but a constant that XLA cannot fold away.
_CARRY_SCALE = 1e-30
# A device-loop case whose time per repetition is under this many times the loop's own cost
# (an empty-work loop, measured once per run) is flagged: the loop is then 20% of it or more.
LOOP_OVERHEAD_FLAG_RATIO = 5.0
# A device-loop probe that lasts this fraction of min_time is long enough to time with.
PROBE_KEPT_FRACTION = 0.25


# A device-loop case is also timed by the host loop when its repetitions last at least this.
# Below it the host loop mostly times dispatch: on the H200 one blocked call of a 10-20 us
# kernel took 130-250 us, and on this CPU the host loop read 0.3 ms a call for a 1 MB add.
# A dispatch-bound host loop reads slow, which never switches a case (loop_adds_work), so the
# threshold only spares time.
CROSS_CHECK_MIN_CALL_S = 200e-6
# The device loop is declared slower than the host loop only beyond this margin and with the two
# medians' 95% intervals apart: noise alone must not switch a case's method.
CROSS_CHECK_MARGIN = 0.03
# How the note of a case the cross-check moved to the host loop begins (the runner makes it a
# run warning; harness.resultset counts those by this text)
LOOP_ADDED_WORK_NOTE = "cross-check: the device loop read"


# Every case gets at least this many samples, the slowest included: with fewer, the ratio of two
# medians has too wide a confidence interval for compare to prove a 20% change.
MIN_SAMPLES = 10


@dataclass(frozen=True)
class TimingConfig:
    min_time_s: float = 0.05  # each sample lasts at least this long
    samples: int = 15  # samples per case, unless the case budget says fewer
    min_samples: int = MIN_SAMPLES  # never fewer, so compare can prove a change
    max_case_time_s: float = 3.0  # time budget for one case's samples
    # A case whose samples spread widely gets more, up to max_samples, while its sampling stays
    # within noisy_budget_factor x max_case_time_s (see extend_noisy).
    max_samples: int = 200
    noisy_budget_factor: float = 5.0
    warmup_calls: int = 2  # timed one by one; the best is the single dispatched call time
    host_loop_min_call_s: float = 1e-3  # shorter calls are repeated on the device
    # device-loop cases from this per-call time on are also timed by the host loop (None: never)
    cross_check_min_call_s: float | None = CROSS_CHECK_MIN_CALL_S
    max_reps: int = 1_000_000
    # The memory-ceiling sweep of a device the catalog does not know (harness/ceilings.py):
    # timed calls per sweep, and each buffer's size (None: from the last-level cache).
    ceiling_calls: int = 5
    ceiling_buffer_bytes: int | None = None


@dataclass
class Timing:
    samples_s: list[float]  # per-call seconds, one per sample
    method: str
    reps_per_sample: int
    lower_s: float
    compile_s: float
    dispatch_call_s: float  # one call dispatched and blocked on, best of a few (includes dispatch)
    loop_compile_s: float | None = None
    notes: list[str] = field(default_factory=list)
    # the device loop against the host loop (time_compiled): both medians, and which was kept
    cross_check: dict | None = None
    # the device loop's carried input (its first argument): its bytes, and how many copies of it
    # the compiled loop body makes each repetition (loop_body_copies; None where not read)
    carried_bytes: int | None = None
    loop_copies: int | None = None

    def to_dict(self, cfg: TimingConfig) -> dict:
        out = {
            "method": self.method,
            "reps_per_sample": self.reps_per_sample,
            "lower_s": self.lower_s,
            "compile_s": self.compile_s,
            "loop_compile_s": self.loop_compile_s,
            "dispatch_call_s": self.dispatch_call_s,
            "min_time_s": cfg.min_time_s,
            "warmup_calls": cfg.warmup_calls,
            "notes": list(self.notes),
        }
        if self.cross_check is not None:
            out["cross_check"] = dict(self.cross_check)
        if self.carried_bytes is not None:
            out["carried_bytes"] = self.carried_bytes
        if self.loop_copies is not None:
            out["loop_copies"] = self.loop_copies
        return out


@dataclass
class Compiled:
    fn: Callable  # the compiled executable
    lower_s: float
    compile_s: float


def compile_ahead(fn: Callable, args: tuple) -> Compiled:
    """jit, lower and compile before any timing; both phases timed on their own."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return Compiled(compiled, t1 - t0, t2 - t1)


def _first_leaf(tree):
    return jax.tree_util.tree_leaves(tree)[0]


def repeat_on_device(fn: Callable, reps: int) -> Callable:
    """fn repeated `reps` times in one program, each repetition depending on the last.

    The first argument is carried through the loop and one of its elements is nudged by a
    value read from the previous repetition's output; that read goes through an optimization
    barrier so the whole output must exist. Returns the last output.

    The nudge is a one-element dynamic_update_slice, the update XLA performs in place in a loop
    (it is how decoding loops write a KV cache), not `x.at[...].add`: that is a scatter, which
    XLA:CPU turns into the same in-place update but which the first H200 run suggests XLA:GPU
    performed as a copy of the whole carried input every repetition (see the module notes).
    """

    def looped(*args):
        first, rest = args[0], args[1:]
        out_shape = jax.eval_shape(fn, *args)
        out0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), out_shape)
        origin = (0,) * first.ndim

        def body(_, carry):
            x, out = carry
            out = jax.lax.optimization_barrier(out)
            nudge = _first_leaf(out).reshape(-1)[0].astype(jnp.float32) * _CARRY_SCALE
            corner = jax.lax.dynamic_slice(x, origin, (1,) * x.ndim)
            x = jax.lax.dynamic_update_slice(x, corner + nudge.astype(x.dtype), origin)
            return x, fn(x, *rest)

        _, out = jax.lax.fori_loop(0, reps, body, (first, out0))
        return out

    return looped


# numpy dtype names -> HLO element types (the ones the kernels use)
_HLO_TYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64",
              "float8_e4m3fn": "f8e4m3fn", "float8_e5m2": "f8e5m2", "int8": "s8", "int32": "s32"}


def while_bodies(hlo: str) -> list[str]:
    """The text of every while loop's body computation in an optimized HLO module."""
    names = set(re.findall(r"body=%?([\w.\-]+)", hlo))
    blocks = re.split(r"\n(?=\S)", hlo)
    return [b for b in blocks if any(re.match(rf"(ENTRY )?%?{re.escape(n)}[ (]", b) for n in names)]


def loop_body_copies(hlo: str, carried) -> int | None:
    """How many copies of an array shaped like `carried` the while-loop bodies of a compiled
    module make: each one is paid every repetition of the device loop. On the first H200 run
    XLA:GPU copied the carried input every repetition (see the module notes); a calibration
    corrects or drops a case by this count (harness.studies.calibrate). None when the type is
    not one this reads."""
    hlo_type = _HLO_TYPES.get(str(getattr(carried, "dtype", "")))
    if hlo_type is None:
        return None
    shape = ",".join(str(d) for d in carried.shape)
    pattern = re.compile(rf"{re.escape(hlo_type)}\[{shape}\]\S* copy\(")
    return sum(1 for body in while_bodies(hlo) for line in body.splitlines()
               if pattern.search(line))


def _loop_copies(looped, carried) -> int | None:
    try:
        return loop_body_copies(looped.as_text(), carried)
    except Exception:  # noqa: BLE001 - a backend that cannot print its module: not read
        return None


def _block(x):
    jax.block_until_ready(x)


def _best_single_call(call: Callable, args: tuple, tries: int = 3) -> float:
    best = math.inf
    for _ in range(tries):
        t0 = time.perf_counter()
        _block(call(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def _host_loop_sample(call: Callable, args: tuple, reps: int) -> float:
    outs = []
    t0 = time.perf_counter()
    for _ in range(reps):
        outs.append(call(*args))
    _block(outs)
    return (time.perf_counter() - t0) / reps


def _device_loop_sample(looped: Callable, args: tuple, reps: int) -> float:
    t0 = time.perf_counter()
    _block(looped(*args))
    return (time.perf_counter() - t0) / reps


def probe_trip_count(single_call_s: float, cfg: TimingConfig) -> int:
    return max(2, min(cfg.max_reps, math.ceil(cfg.min_time_s / max(single_call_s, 1e-12))))


def final_trip_count(probe_reps: int, per_rep_s: float, cfg: TimingConfig) -> int:
    """The probe's own trip count if its repetitions last PROBE_KEPT_FRACTION of min_time,
    else enough repetitions for min_time."""
    if probe_reps * per_rep_s >= PROBE_KEPT_FRACTION * cfg.min_time_s:
        return probe_reps
    return max(probe_reps, min(cfg.max_reps, math.ceil(cfg.min_time_s / max(per_rep_s, 1e-12))))


# The sd of log(new median / base median) a case should reach so that compare proves a 1.5x
# change at its family-wise level: (log 1.5 - log 1.05) / 3.9 sds (two-sided, 100 compared
# cases) = 0.092, less a margin. Each of the two medians then needs sd(log median) <= 0.08 /
# sqrt(2), by the bootstrap compare uses.
TARGET_LOG_RATIO_SD = 0.08


def extend_noisy(samples: list[float], take: Callable[[], float], per_sample_s: float, cfg: TimingConfig) -> list[float]:
    """More samples for a case whose median is too uncertain for compare to prove a 1.5x change
    (harness.stats.log_median_sd, compare's own bootstrap), as long as the case's sampling time
    stays within the noisy budget and under max_samples."""
    budget_s = cfg.noisy_budget_factor * cfg.max_case_time_s
    target = TARGET_LOG_RATIO_SD / math.sqrt(2.0)
    while len(samples) < cfg.max_samples and (len(samples) + 1) * per_sample_s <= budget_s:
        if log_median_sd(samples) <= target:
            break
        samples.append(take())
    return samples


def sample_count(per_sample_s: float, cfg: TimingConfig) -> int:
    fit = int(cfg.max_case_time_s // max(per_sample_s, 1e-9))
    return max(cfg.min_samples, min(cfg.samples, fit))


def time_compiled(fn: Callable, compiled: Compiled, args: tuple, cfg: TimingConfig, force_method: str | None = None,
                  cross_check: bool = True) -> Timing:
    """Warm up and sample an already compiled kernel (the output check happens before this).
    `cross_check=False` spares a device-loop case the host loop's samples (_cross_check): the
    runner's multi-device cases, whose host loop would queue a hundred collectives at once
    (on the CPU's 8 simulated devices XLA aborted under it)."""
    call = compiled.fn
    # The warm-up calls are timed one by one (dispatch, run, block): the best of them is the
    # single-call time that picks the method, so no extra calls are spent probing.
    single = _best_single_call(call, args, tries=max(1, cfg.warmup_calls))
    method = force_method or ("host-loop" if single >= cfg.host_loop_min_call_s else "device-loop")

    if method == "host-loop":
        reps = max(1, min(cfg.max_reps, math.ceil(cfg.min_time_s / single)))
        n = sample_count(reps * single, cfg)
        samples = [_host_loop_sample(call, args, reps) for _ in range(n)]
        samples = extend_noisy(samples, lambda: _host_loop_sample(call, args, reps), reps * single, cfg)
        return Timing(samples, method, reps, compiled.lower_s, compiled.compile_s, single)

    # device-loop: a probe whose trip count the single call suggests (that call includes the
    # dispatch, so the probe lasts at most about min_time); it is kept as the timed program when
    # it lasts at least PROBE_KEPT_FRACTION of min_time, which spares a second loop compile for
    # every kernel much longer than the dispatch; otherwise the real trip count is sized from it
    probe_reps = probe_trip_count(single, cfg)
    t0 = time.perf_counter()
    probe = compile_ahead(repeat_on_device(fn, probe_reps), args).fn
    loop_compile = time.perf_counter() - t0
    _block(probe(*args))
    per_rep = _best_single_call(probe, args, tries=2) / probe_reps
    reps = final_trip_count(probe_reps, per_rep, cfg)
    looped = probe
    if reps != probe_reps:
        t0 = time.perf_counter()
        looped = compile_ahead(repeat_on_device(fn, reps), args).fn
        loop_compile += time.perf_counter() - t0
        _block(looped(*args))
    n = sample_count(reps * per_rep, cfg)
    samples = [_device_loop_sample(looped, args, reps) for _ in range(n)]
    samples = extend_noisy(samples, lambda: _device_loop_sample(looped, args, reps), reps * per_rep, cfg)
    notes = [
        f"device-loop: {reps} repetitions in one compiled program per sample; per-call time "
        f"excludes dispatch (one dispatched call took {single * 1e6:.1f} us)"
    ]
    timing = Timing(samples, method, reps, compiled.lower_s, compiled.compile_s, single, loop_compile, notes)
    carried = args[0]
    timing.carried_bytes = int(getattr(carried, "nbytes", 0)) or None
    timing.loop_copies = _loop_copies(looped, carried)
    if force_method is None and cross_check:
        _cross_check(timing, call, args, cfg, lambda: _device_loop_sample(looped, args, reps))
    return timing


def loop_adds_work(device_samples: list[float], host_samples: list[float]) -> bool:
    """Whether the device loop is provably slower per call than the host loop: its median above
    the host loop's by more than CROSS_CHECK_MARGIN, and the lower end of its 95% interval above
    the upper end of the host loop's. The device loop excludes dispatch, so once the host loop
    hides dispatch a slower device loop measured work of its own."""
    d, h = summarize(device_samples), summarize(host_samples)
    return d.median_s > h.median_s * (1 + CROSS_CHECK_MARGIN) and d.ci95_low_s > h.ci95_high_s


def _cross_check(timing: Timing, call: Callable, args: tuple, cfg: TimingConfig,
                 device_sample: Callable[[], float]) -> None:
    """Time a long enough device-loop case by the host loop too: min_samples samples of each
    loop, taken in turn so that a change in the machine's load meets both alike. The device
    loop's are compared with the host loop's (loop_adds_work); when the device loop is provably
    slower the host loop's samples, grown like any case's (extend_noisy), are kept. Both
    medians go in the record."""
    if cfg.cross_check_min_call_s is None:
        return
    per_call = summarize(timing.samples_s).median_s
    if per_call < cfg.cross_check_min_call_s:
        return
    # enough calls for min_time even where the device loop's figure is inflated by its own work
    shortest = min(per_call, timing.dispatch_call_s)
    reps = max(1, min(cfg.max_reps, math.ceil(cfg.min_time_s / shortest)))
    host, device = [], []
    for _ in range(cfg.min_samples):
        host.append(_host_loop_sample(call, args, reps))
        device.append(device_sample())
    host_median, device_median = summarize(host).median_s, summarize(device).median_s
    slower = loop_adds_work(device, host)
    timing.cross_check = {"device_loop_median_s": device_median, "host_loop_median_s": host_median,
                          "samples_each": cfg.min_samples, "host_loop_reps_per_sample": reps,
                          "kept": "host-loop" if slower else "device-loop"}
    if not slower:
        timing.notes.append(f"cross-check: the host loop read {host_median * 1e6:.1f} us per call "
                            f"against the device loop's {device_median * 1e6:.1f} us (taken in turn)")
        return
    timing.samples_s = extend_noisy(host, lambda: _host_loop_sample(call, args, reps),
                                    reps * host_median, cfg)
    timing.method, timing.reps_per_sample = "host-loop", reps
    timing.notes = [  # the device loop's note no longer describes the samples kept
        f"{LOOP_ADDED_WORK_NOTE} {device_median * 1e6:.1f} us per call, "
        f"{device_median / host_median - 1:.0%} over the host loop's {host_median * 1e6:.1f} us "
        f"(taken in turn): the loop added work to every repetition, so the host loop's samples "
        f"are kept"]


def device_loop_overhead(cfg: TimingConfig) -> dict:
    """What one repetition of the device loop costs with (almost) no work in it: one float32
    added to, plus the barrier, the element read and the nudge that every repetition of a real
    kernel also pays (on a GPU, a few kernel launches). Measured with the same loop and the
    same sample budget as the cases, once per run."""
    x = jnp.ones((1,), jnp.float32)

    def empty(v):
        return v + 1.0

    timing = time_compiled(empty, compile_ahead(empty, (x,)), (x,), cfg, force_method="device-loop")
    samples = sorted(timing.samples_s)
    return {
        "per_rep_s": samples[len(samples) // 2],
        "samples_s": list(timing.samples_s),
        "reps_per_sample": timing.reps_per_sample,
        "kernel": "x + 1 on one float32 element, repeated by the device loop",
        "flag_ratio": LOOP_OVERHEAD_FLAG_RATIO,
    }


def loop_overhead_note(median_s: float, overhead_s: float | None) -> str | None:
    """A note for a device-loop case within LOOP_OVERHEAD_FLAG_RATIO of the loop's own cost."""
    if not overhead_s or median_s >= LOOP_OVERHEAD_FLAG_RATIO * overhead_s:
        return None
    return (f"near the device loop's own cost: {median_s * 1e6:.2f} us per call is {median_s / overhead_s:.1f}x "
            f"the empty loop's {overhead_s * 1e6:.2f} us per repetition (flagged under "
            f"{LOOP_OVERHEAD_FLAG_RATIO:g}x): an upper bound on the kernel's own time")
