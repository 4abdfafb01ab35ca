"""Several processes (hosts): `jax.distributed` set-up from flags or a launcher's environment, and
the helpers that keep every process's multi-device cases in lock-step.

Every process runs the same suite. A multi-device case (a collective) is one program over all
global devices, so every process must call it the same number of times; the harness's timing
decisions (host or device loop, repetitions, sample count) are made from local clock readings,
which differ between processes, so for those cases the decisions are agreed first (the slowest
process's single-call time sets them) and then fixed. Per-device cases run independently on each
process's first local device.
"""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import replace

import numpy as np

from harness.errors import UserError
from harness.timing import TimingConfig, sample_count

# Large enough that TimingConfig's own sizing always lands on the fixed counts we pass.
_HUGE_S = 1e18

# What each launcher sets; jax.distributed.initialize() detects SLURM and Open MPI (mpirun,
# through OMPI_MCA_orte_hnp_uri) itself when given no arguments.
_SLURM = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
_ORTE = "OMPI_MCA_orte_hnp_uri"


def launcher(environ=None) -> str | None:
    """Which launcher's environment this process sees, or None."""
    env = os.environ if environ is None else environ
    if all(k in env for k in _SLURM):
        return "slurm"
    if _ORTE in env:
        return "open-mpi"
    if "OMPI_COMM_WORLD_SIZE" in env:
        return "open-mpi (no ORTE URI: needs --coordinator or JAX_COORDINATOR_ADDRESS)"
    if "JAX_COORDINATOR_ADDRESS" in env:
        return "JAX_* environment"
    return None


def _int_env(env, key: str) -> int | None:
    value = env.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment {key}={value!r}: not an integer") from None


def resolve(coordinator: str | None, num_processes: int | None, process_id: int | None, environ=None) -> dict:
    """The arguments for jax.distributed.initialize: flags first, then JAX_COORDINATOR_ADDRESS /
    JAX_NUM_PROCESSES / JAX_PROCESS_ID, then Open MPI's OMPI_COMM_WORLD_SIZE/RANK; whatever is
    still None is left to jax's own launcher detection (SLURM, mpirun)."""
    env = os.environ if environ is None else environ
    source = "flags"
    if coordinator is None and num_processes is None and process_id is None:
        source = launcher(env)
        if source is None:
            raise UserError(
                "--distributed: no --coordinator/--num-processes/--process-id given and no launcher "
                "environment found (SLURM_*, OMPI_COMM_WORLD_*, JAX_COORDINATOR_ADDRESS)")
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None:
        num_processes = _int_env(env, "JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _int_env(env, "JAX_PROCESS_ID")
    if _ORTE not in env and "OMPI_COMM_WORLD_SIZE" in env:
        num_processes = num_processes if num_processes is not None else _int_env(env, "OMPI_COMM_WORLD_SIZE")
        process_id = process_id if process_id is not None else _int_env(env, "OMPI_COMM_WORLD_RANK")
    if coordinator is not None and not re.fullmatch(r"\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}", coordinator):
        raise UserError(f"coordinator address {coordinator!r}: expected HOST:PORT, e.g. 10.0.0.1:1234")
    if num_processes is not None and num_processes < 1:
        raise UserError(f"process count {num_processes}: must be at least 1")
    if process_id is not None and (process_id < 0 or (num_processes is not None and process_id >= num_processes)):
        raise UserError(f"process id {process_id}: must be in 0..{(num_processes or 1) - 1}")
    if launcher(env) is None and None in (coordinator, num_processes, process_id):
        raise UserError("distributed run: the coordinator address, the process count and this "
                        "process's id are all needed (no SLURM or mpirun environment to detect "
                        "the rest from)")
    return {"coordinator_address": coordinator, "num_processes": num_processes,
            "process_id": process_id, "source": source}


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> dict:
    """Start jax.distributed; must run before anything initialises JAX's backends.

    CPU devices talk through gloo (set explicitly: older jax defaulted to no CPU collectives);
    GPUs through NCCL, which JAX picks itself.
    """
    import jax

    spec = resolve(coordinator, num_processes, process_id)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    t0 = time.perf_counter()
    try:
        jax.distributed.initialize(
            coordinator_address=spec["coordinator_address"], num_processes=spec["num_processes"],
            process_id=spec["process_id"], initialization_timeout=timeout_s)
    except (ValueError, TypeError) as exc:
        raise UserError(f"distributed run: {exc}") from None
    return {
        **spec,
        "init_s": time.perf_counter() - t0,
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_device_count": jax.local_device_count(),
        "device_count": jax.device_count(),
    }


def is_lockstep(case) -> bool:
    """Whether `case` must run in lock-step: a multi-device case in a multi-process run."""
    import jax

    return bool(getattr(case, "multi_device", False)) and jax.process_count() > 1


def barrier(name: str) -> None:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def gather(value: float) -> list[float]:
    """`value` from every process, in process order."""
    from jax.experimental import multihost_utils

    return [float(v) for v in np.asarray(multihost_utils.process_allgather(np.asarray([value], np.float32))).ravel()]


def agree_max(value: float) -> float:
    """The largest `value` over all processes (NaN if any is NaN), so all take the same branch."""
    return float(np.max(gather(value)))


def lockstep_timing(call, args, cfg: TimingConfig, name: str) -> tuple[TimingConfig, str, str]:
    """(config, method, note) for time_compiled that make every process run the same calls.

    After a barrier, each process times a few single calls; the slowest process's best time
    picks the method and the repetitions as time_compiled would, and the returned config pins
    them (TimingConfig's own sizing then always lands on these counts).
    """
    import jax

    barrier(f"rackbench:{name}")
    jax.block_until_ready(call(*args))
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(call(*args))
        best = min(best, time.perf_counter() - t0)
    single = agree_max(best)
    method = "host-loop" if single >= cfg.host_loop_min_call_s else "device-loop"
    reps = max(1, min(cfg.max_reps, math.ceil(cfg.min_time_s / single)))
    samples = sample_count(reps * single, cfg)
    fixed = replace(cfg, min_time_s=_HUGE_S, max_case_time_s=_HUGE_S, max_reps=reps, samples=samples,
                    max_samples=samples, min_samples=min(cfg.min_samples, samples))
    note = (f"lock-step over {jax.process_count()} processes: {method}, repetitions and {samples} samples "
            f"fixed from the slowest process's single call ({single * 1e6:.1f} us)")
    return fixed, method, note
