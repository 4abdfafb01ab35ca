"""Collectives across every device JAX sees (all processes), through a mesh and `jax.shard_map`.

Five operations, named as clusters.collectives names them so a measured sweep and the model
compare row for row: all_reduce (lax.psum), all_gather (lax.all_gather), reduce_scatter
(lax.psum_scatter), all_to_all (lax.all_to_all) and send (lax.ppermute around a ring: every
rank sends to the next one at once, what nccl-tests' sendrecv measures).

Sizes follow nccl-tests (doc/PERFORMANCE.md), as clusters/collectives.py does: S is
- all_reduce: the buffer each rank reduces;
- all_gather: the whole gathered output on each rank (n x the per-rank input);
- reduce_scatter: the whole input on each rank (n x the per-rank output);
- all_to_all: each rank's whole send buffer, n chunks of S/n, its own chunk included;
- send: the buffer each rank sends.
algbw = S / time and busbw = algbw x `bus_factor(op, n)`.

Inputs are known integers, different on every rank and every element, so the reference of each
output element is a closed form (see `_value`); large ones are built on the devices, shard by
shard, so a 1 GiB-per-rank case never passes through host memory.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from kernels.errors import KernelInputError
from kernels.base import DTYPES, TOLERANCE, Case, itemsize, relative_error
from kernels.naming import size_label

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send")
PRIMITIVE = {
    "all_reduce": "lax.psum",
    "all_gather": "lax.all_gather(tiled)",
    "reduce_scatter": "lax.psum_scatter(tiled)",
    "all_to_all": "lax.all_to_all(tiled)",
    "send": "lax.ppermute(ring i -> i+1)",
}
AXIS = "x"

# Output elements compared with the closed-form reference, per addressable shard: enough to
# catch any wrong chunk order or missing contribution, cheap at 1 GiB per rank.
CHECK_ELEMENTS = 4096
# Inputs up to this many elements per rank are built on the host: cheaper than compiling the
# device-side filler, which wins above it.
HOST_FILL_MAX_ELEMENTS = 2**18
# Output shards up to this size are read whole (no extra compile); larger ones are sliced on
# the devices first.
READ_WHOLE_SHARD_BYTES = 64 * 2**20
CHECK_METRIC = (f"max|out-ref|/rms(ref) at up to {CHECK_ELEMENTS} evenly spaced elements of each "
                "addressable shard, against the closed-form float64 reference")

# Input element j of mesh position d is ((j + _STRIDE * d) % _MODULUS) + 1: small integers, exact
# in every dtype (their fp32 sums too; bf16 sums above 256 round, within the bf16 tolerance),
# and, _MODULUS being prime, different on every rank for up to 61 ranks.
_MODULUS = 61
_STRIDE = 5


def bus_factor(op: str, n: int) -> float:
    """nccl-tests' busbw / algbw factor (nccl-tests doc/PERFORMANCE.md, "Bus bandwidth").

    all_reduce 2(n-1)/n; all_gather, reduce_scatter and all_to_all (n-1)/n; send 1 (sendrecv).
    tests/kernels/test_collectives_kernels.py checks this agrees with clusters.collectives.
    """
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    if op == "send":
        return 1.0
    raise KernelInputError(f"unknown collective {op!r}; valid: {', '.join(OPS)}")




def shapes(op: str, size_bytes: int, n: int, dtype: str) -> tuple[int, int, int, int]:
    """(per-rank input elements, per-rank output elements, chunk elements, actual nccl-tests
    size in bytes); the chunk is S/n for the ops that split the buffer into n, else S.

    The requested size is rounded down to a whole number of elements per chunk (at least one),
    so with a rank count that does not divide it the recorded size is the one measured.
    """
    b = itemsize(dtype)
    if op in ("all_reduce", "send"):
        c = max(1, size_bytes // b)
        return c, c, c, c * b
    c = max(1, size_bytes // (n * b))  # one chunk: S/n
    if op == "all_gather":
        return c, n * c, c, n * c * b
    if op == "reduce_scatter":
        return n * c, c, c, n * c * b
    if op == "all_to_all":
        return n * c, n * c, c, n * c * b
    raise KernelInputError(f"unknown collective {op!r}; valid: {', '.join(OPS)}")


def _value(d, j):
    """Input element j on mesh position d (works on numpy and jax integer arrays)."""
    return (j + _STRIDE * d) % _MODULUS + 1


def reference(op: str, n: int, d: int, idx: np.ndarray, chunk: int) -> np.ndarray:
    """Output elements `idx` of mesh position d, in float64; `chunk` as `shapes` returns it."""
    idx = np.asarray(idx, dtype=np.int64)
    ranks = np.arange(n, dtype=np.int64)[:, None]
    if op == "all_reduce":
        return _value(ranks, idx[None, :]).sum(axis=0).astype(np.float64)
    if op == "all_gather":  # out[e*c + j] = in_e[j]
        return _value(idx // chunk, idx % chunk).astype(np.float64)
    if op == "reduce_scatter":  # out[j] = sum_e in_e[d*c + j]
        return _value(ranks, d * chunk + idx[None, :]).sum(axis=0).astype(np.float64)
    if op == "all_to_all":  # out[e*c + j] = in_e[d*c + j]
        return _value(idx // chunk, d * chunk + idx % chunk).astype(np.float64)
    if op == "send":  # ring i -> i+1: out_d = in_{d-1}
        return _value((d - 1) % n, idx).astype(np.float64)
    raise KernelInputError(f"unknown collective {op!r}")


@functools.lru_cache(maxsize=None)
def mesh(n: int):
    """A 1-D mesh over the first n global devices. Auto axis type: inputs arrive sharded anyway,
    and the harness's device loop carries zeros of the output's shape, which an Explicit mesh
    would reject as a sharding mismatch (jax-notes §5)."""
    devices = jax.devices()[:n]
    return jax.make_mesh((n,), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def _per_rank_fn(op: str, n: int):
    if op == "all_reduce":
        return lambda x: jax.lax.psum(x, AXIS)
    if op == "all_gather":
        return lambda x: jax.lax.all_gather(x, AXIS, axis=0, tiled=True)
    if op == "reduce_scatter":
        return lambda x: jax.lax.psum_scatter(x, AXIS, scatter_dimension=0, tiled=True)
    if op == "all_to_all":
        return lambda x: jax.lax.all_to_all(x, AXIS, 0, 0, tiled=True)
    if op == "send":
        perm = [(i, (i + 1) % n) for i in range(n)]
        return lambda x: jax.lax.ppermute(x, AXIS, perm)
    raise KernelInputError(f"unknown collective {op!r}")


def collective_fn(op: str, n: int):
    """The timed function: global array (n * per-rank input,) sharded over the mesh ->
    global array (n * per-rank output,), each rank's output in its own shard."""
    return jax.shard_map(_per_rank_fn(op, n), mesh=mesh(n), in_specs=P(AXIS), out_specs=P(AXIS))


def make_input(n: int, per_rank: int, dtype: str) -> jax.Array:
    """The known input, each rank's shard filled from its mesh position: on the host for small
    buffers (no compile), by a small program on the devices for large ones (no host copy)."""
    dt = DTYPES[dtype]
    m = mesh(n)
    sharding = NamedSharding(m, P(AXIS))
    if per_rank <= HOST_FILL_MAX_ELEMENTS:
        def block(index):  # only this process's shards are asked for
            sl = index[0]
            g = np.arange(sl.start or 0, n * per_rank if sl.stop is None else sl.stop, dtype=np.int64)
            return _value(g // per_rank, g % per_rank).astype(dt)

        return jax.make_array_from_callback((n * per_rank,), sharding, block)

    def fill():
        d = jax.lax.axis_index(AXIS)
        j = jax.lax.iota(jnp.int32, per_rank)
        return _value(d, j).astype(dt)

    filler = jax.shard_map(fill, mesh=m, in_specs=(), out_specs=P(AXIS))
    return jax.jit(filler, out_shardings=sharding)()


def _sampled(out: jax.Array, n: int, stride: int) -> jax.Array:
    """Every `stride`-th element of each rank's output shard, sliced on the devices (one small
    program), so checking a 1 GiB-per-rank output moves kilobytes to the host."""
    sample = jax.shard_map(lambda o: o[::stride], mesh=mesh(n), in_specs=P(AXIS), out_specs=P(AXIS))
    return jax.jit(sample)(out)


def check_output(op: str, n: int, out: jax.Array, chunk: int, dtype: str) -> tuple[float, float, str]:
    """Worst relative error over this process's shards, each sampled at CHECK_ELEMENTS evenly
    spaced elements. Only addressable shards are read, so it works unchanged when other
    processes own the rest."""
    length = out.shape[0] // n
    stride = max(1, -(-length // CHECK_ELEMENTS))
    small = length * out.dtype.itemsize <= READ_WHOLE_SHARD_BYTES
    sampled = out if small else _sampled(out, n, stride)
    idx = np.arange(0, length, stride, dtype=np.int64)
    worst = 0.0
    for shard in sampled.addressable_shards:
        d = (shard.index[0].start or 0) // shard.data.shape[0]  # mesh position = shard position
        got = np.asarray(shard.data)
        got = (got[idx] if small else got).astype(np.float64)
        worst = max(worst, relative_error(got, reference(op, n, d, idx, chunk)))
    return worst, TOLERANCE[dtype], CHECK_METRIC


def collective_case(op: str, size_bytes: int, dtype: str = "fp32", ranks: int | None = None) -> Case:
    """`op` on `size_bytes` (nccl-tests convention) among `ranks` devices (default: all of them,
    across every process)."""
    if op not in OPS:
        raise KernelInputError(f"unknown collective {op!r}; valid: {', '.join(OPS)}")
    n = jax.device_count() if ranks is None else ranks
    per_in, _, chunk, actual = shapes(op, size_bytes, max(n, 1), dtype)
    factor = bus_factor(op, n) if n >= 2 else 0.0

    def make(key):  # the key is unused: inputs are the known integers of `_value`
        return collective_fn(op, n), (make_input(n, per_in, dtype),)

    def check(args, out):
        return check_output(op, n, out, chunk, dtype)

    def skip(device) -> str | None:
        if n < 2:
            hint = " (on a CPU, JAX_NUM_CPU_DEVICES=8 gives 8 host devices)" if device.platform == "cpu" else ""
            return f"a collective needs at least 2 devices; JAX sees {n}{hint}"
        if n > jax.device_count():
            return f"{n} ranks requested; JAX sees {jax.device_count()} devices"
        return None

    def derived(median_s: float) -> dict:
        algbw = actual / median_s
        return {"algbw_bytes_per_s": algbw, "busbw_bytes_per_s": algbw * factor, "bus_factor": factor}

    return Case(
        name=f"collective/{op}/{dtype}/x{n}/{size_label(actual)}",
        group="collective",
        params={"op": op, "size_bytes": actual, "ranks": n, "dtype": dtype},
        make=make,
        # communication: the reduction's adds are not counted (they never bound a collective)
        flops=0.0,
        bytes=float(actual),
        peak_dtype=None,
        check=check,
        skip=skip,
        note=f"{PRIMITIVE[op]} over {n} devices via jax.shard_map; size = nccl-tests convention",
        derived=derived,
        multi_device=True,
    )


def sweep_sizes(min_bytes: int, max_bytes: int, step: int = 4) -> list[int]:
    """min, min*step, ... up to max inclusive (powers of `step` times min)."""
    count = int(math.floor(math.log(max_bytes / min_bytes, step) + 1e-9)) + 1
    return [min_bytes * step**i for i in range(count)]


def collective_sweep(ops, min_bytes: int, max_bytes: int, step: int = 4, dtype: str = "fp32") -> list[Case]:
    return [collective_case(op, s, dtype) for op in ops for s in sweep_sizes(min_bytes, max_bytes, step)]
