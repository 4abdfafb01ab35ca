"""Collective-communication cost model: alpha-beta times for collectives among ranks placed on a system.

Every algorithm here is linear in the message size S: time = latency_s + s_per_byte * S, where the
latency is the fabric's base cost plus per-step hop latencies, and the per-byte cost is the bytes
each rank must move over its bottleneck link divided by that link's *achievable* bandwidth
(line rate x sourced efficiency; never fitted to the published rows in validation/published.csv).
Pipelined multi-stage algorithms (hierarchical, NVLSTree, inter-domain all-to-all) run their stages
concurrently, so their per-byte cost is the maximum of the stages', not the sum.

Size convention (nccl-tests, so numbers compare with what users measure): S is
- all_reduce: the buffer each rank reduces;
- all_gather: the whole gathered output on each rank (n x the per-rank input);
- reduce_scatter: the whole input on each rank (n x the per-rank output);
- all_to_all: each rank's whole send buffer, n chunks of S/n, its own chunk included;
- broadcast: the buffer; send: the message between two ranks.
algbw = S / time; busbw = algbw x factor, factor 2(n-1)/n for all_reduce, (n-1)/n for
all_gather, reduce_scatter and all_to_all, 1 for broadcast and send.

All-to-all and the DeepEP rows: DeepEP reports *logical* bandwidth, the bytes a rank receives
(intranode, its own tokens included) or sends per destination node (internode, its own node
included) divided by time. That is this module's algbw. The model charges the rank's own
chunk inside a domain at the link rate (SM-driven all-to-all kernels such as DeepEP's and
NCCL's move every chunk, their own included, through the same copy loop: DeepEP's 153-158 GB/s
logical on H800 is at the ~160 GB/s achievable NVLink rate although 1/8 of it is local), while
across domains the local-domain share moves over the scale-up fabric in parallel with the NIC
traffic, so the NICs carry (n-k)/n of S. DeepEP's own dispatch is not this plain all-to-all: it
sends each token once per destination domain and forwards it over the scale-up fabric inside
the domain; `moe_dispatch` models that (see there).

Which algorithms exist depends on the library that runs on the system. NVIDIA systems (NVLink
scale-up) run NCCL, whose multi-node all-reduce is ring, tree or NVLSTree (NVLS inside the node,
tree across nodes; NVIDIA/nccl src/tuning/ring.cc, tree.cc, nvls.cc) and whose all-gather and
reduce-scatter across nodes are rings; it has no rail-parallel hierarchical all-reduce without
IB SHARP (CollNet), which this catalog does not model. Ascend systems run HCCL, which is
hierarchical by construction: a server-internal level (level0) and a server-to-server level
(level1), with a "pipeline" algorithm that drives both levels' links at once (HCCL_ALGO, CANN
environment-variable reference, hiascend.com). So `hierarchical` is offered on HCCL systems
only, and `inr_tree` (NVLSTree) on NCCL systems with in-switch reduction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from clusters.catalog import System
from clusters.errors import ModelInputError

OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send")
ALGORITHMS = ("ring", "tree", "inr", "inr_tree", "direct", "hierarchical")

# Scale-up fabric kinds whose systems run NCCL (module docstring: which algorithms exist).
_NCCL_SCALE_UP_KINDS = ("nvlink",)


class FabricLike(Protocol):
    """What the model reads from a fabric; catalog `Fabric` and `MeasuredFabric` both provide it."""
    name: str
    latency_s: float
    per_hop_latency_s: float
    in_network_reduction: bool
    inr_efficiency: float | None
    inr_latency_s: float | None

    @property
    def achievable_bw_bytes_per_s(self) -> float: ...


@dataclass(frozen=True)
class MeasuredFabric:
    """Latency and bandwidth fitted from a measured sweep, used in place of a catalog fabric.

    Fit `bw_bytes_per_s` as the bus bandwidth of the sweep (busbw at large sizes) and
    `latency_s` as the intercept: ring all-reduce on this fabric then reproduces the sweep.
    """
    name: str
    latency_s: float
    bw_bytes_per_s: float
    per_hop_latency_s: float = 0.0
    source: str = "measured"
    in_network_reduction: bool = False
    inr_efficiency: float | None = None
    inr_latency_s: float | None = None

    def __post_init__(self) -> None:
        if not (self.latency_s >= 0 and self.per_hop_latency_s >= 0 and self.bw_bytes_per_s > 0):
            raise ModelInputError(f"measured fabric {self.name!r}: latency must be >= 0 and bandwidth > 0")

    @property
    def achievable_bw_bytes_per_s(self) -> float:
        return self.bw_bytes_per_s


@dataclass(frozen=True)
class Group:
    """`ranks` ranks placed on `system`, `ranks_per_domain` of them in each scale-up domain.

    ranks_per_domain defaults to packing domains full (min(ranks, chips_per_domain)).
    `scale_up` / `scale_out` replace the system's fabrics, e.g. with a `MeasuredFabric`.
    """
    system: System
    ranks: int
    ranks_per_domain: int | None = None
    scale_up: FabricLike | None = None
    scale_out: FabricLike | None = None

    def __post_init__(self) -> None:
        cpd = self.system.chips_per_domain
        if not isinstance(self.ranks, (int, np.integer)) or self.ranks < 1:
            raise ModelInputError(f"ranks must be a positive integer, got {self.ranks!r}")
        k = self.ranks_per_domain
        if k is None:
            k = min(self.ranks, cpd)
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ModelInputError(f"ranks-per-domain must be a positive integer, got {k!r}")
        if k > cpd:
            raise ModelInputError(f"ranks-per-domain {k} exceeds the {cpd} chips per domain of {self.system.name}")
        if k > self.ranks or self.ranks % k:
            raise ModelInputError(f"ranks {self.ranks} is not a multiple of ranks-per-domain {k}")
        object.__setattr__(self, "ranks_per_domain", int(k))

    @property
    def domains(self) -> int:
        return self.ranks // self.ranks_per_domain

    @property
    def up(self) -> FabricLike:
        return self.scale_up if self.scale_up is not None else self.system.scale_up

    @property
    def out(self) -> FabricLike:
        return self.scale_out if self.scale_out is not None else self.system.scale_out


@dataclass(frozen=True)
class AlphaBeta:
    """time_s = latency_s + s_per_byte * size_bytes."""
    latency_s: float
    s_per_byte: float

    def time_s(self, size_bytes):
        return self.latency_s + self.s_per_byte * np.asarray(size_bytes, dtype=float)


@dataclass(frozen=True)
class CollectiveResult:
    op: str
    ranks: int
    ranks_per_domain: int
    size_bytes: np.ndarray
    time_s: np.ndarray
    algbw_bytes_per_s: np.ndarray
    busbw_bytes_per_s: np.ndarray
    algorithm: np.ndarray  # chosen per size (str array, same shape as size_bytes)
    latency_s: np.ndarray  # the S -> 0 limit of the chosen algorithm


def bus_factor(op: str, n: int) -> float:
    """nccl-tests' busbw / algbw factor (nccl-tests doc/PERFORMANCE.md)."""
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    if op in ("broadcast", "send"):
        return 1.0
    raise ModelInputError(f"unknown collective {op!r}; valid: {', '.join(OPS)}")


# --- bandwidth seen by one rank on each fabric ---

def _link_bw(group: Group) -> float:
    """Achievable bandwidth a ring step (one neighbour) gets inside a domain.

    On a full mesh each peer has its own link, 1/(chips-1) of the chip's bandwidth, and a ring
    uses one of them; on a switch or Clos the whole per-chip bandwidth reaches any peer.
    """
    bw = group.up.achievable_bw_bytes_per_s
    if group.system.domain_topology == "full-mesh" and group.system.chips_per_domain > 1:
        return bw / (group.system.chips_per_domain - 1)
    return bw


def _all_peers_bw(group: Group, ranks_used: int) -> float:
    """Achievable bandwidth when a rank talks to all `ranks_used - 1` peers at once."""
    bw = group.up.achievable_bw_bytes_per_s
    if group.system.domain_topology == "full-mesh" and group.system.chips_per_domain > 1:
        return bw * (ranks_used - 1) / (group.system.chips_per_domain - 1)
    return bw


def _ring_bw(group: Group) -> float:
    """Ring bottleneck (busbw). Across domains each ring (channel) crosses every domain boundary
    once, and the channels spread over the k NICs of a domain, so the cross-domain budget is
    k x NIC. Inside a domain a channel is then a chain of k-1 scale-up hops, not a closed ring of
    k: the rank that hands the channel to its NIC sends nothing over the scale-up fabric, and as
    the channels rotate over the k rails each rank's scale-up link carries (k-1)/k of the ring
    traffic. This is why a ring across 8-NIC H100 nodes reaches ~376-396 GB/s busbw (8 x 47-49.5
    GB/s per NIC: nccl-tests #290, #319) although the same NVLink ring inside one node stops at
    ~370 (nccl-tests #212)."""
    k, d = group.ranks_per_domain, group.domains
    intra = _link_bw(group) if k > 1 else math.inf
    if d == 1:
        return intra
    if k > 1:
        intra *= k / (k - 1)
    return min(intra, k * group.out.achievable_bw_bytes_per_s)


def _runs_nccl(group: Group) -> bool:
    """Whether the group's system runs NCCL (NVLink scale-up) rather than HCCL; decided by the
    catalog system's fabric, so a measured fabric swapped in does not change the library."""
    return group.system.scale_up.kind in _NCCL_SCALE_UP_KINDS


def _base_latency(group: Group) -> float:
    lat = group.up.latency_s if group.ranks_per_domain > 1 else 0.0
    if group.domains > 1:
        lat = max(lat, group.out.latency_s)
    return lat


def _steps_latency(group: Group, steps: int, inter_steps: int) -> float:
    return (steps - inter_steps) * group.up.per_hop_latency_s + inter_steps * group.out.per_hop_latency_s


# --- algorithms: each returns AlphaBeta or None when not valid for (op, group) ---

def _ring(op: str, g: Group) -> AlphaBeta | None:
    n, d = g.ranks, g.domains
    if op == "all_reduce":
        frac, steps, inter = 2 * (n - 1) / n, 2 * (n - 1), 2 * (d - 1)
    elif op in ("all_gather", "reduce_scatter"):
        frac, steps, inter = (n - 1) / n, n - 1, d - 1
    elif op == "broadcast":  # pipelined chain: every byte crosses every link once
        frac, steps, inter = 1.0, n - 1, d - 1
    else:
        return None
    return AlphaBeta(_base_latency(g) + _steps_latency(g, steps, inter), frac / _ring_bw(g))


def _tree(op: str, g: Group) -> AlphaBeta | None:
    """NCCL double binary tree: chain inside a domain, binary tree across domains. All-reduce
    (reduce up, broadcast down) has algbw = busbw / 2 (NCCL tuning.cc ratio .5)."""
    if op not in ("all_reduce", "broadcast"):
        return None
    k, d = g.ranks_per_domain, g.domains
    depth_hops = (k - 1) * g.up.per_hop_latency_s + math.ceil(math.log2(d)) * g.out.per_hop_latency_s
    passes = 2 if op == "all_reduce" else 1
    return AlphaBeta(_base_latency(g) + passes * depth_hops, passes / _ring_bw(g))


def _inr_all_reduce_s_per_byte(g: Group, k: int) -> float:
    """In-switch reduction (NVLS): reduce-scatter by multimem load-reduce, all-gather by multicast
    store. Per rank and direction that is S + S/k bytes (NCCL sym_kernels.cc RSxLDMC_AGxSTMC
    busBytes), at the achievable link rate times the switch-reduction efficiency."""
    bw = g.up.achievable_bw_bytes_per_s * g.up.inr_efficiency
    return (1 + 1 / k) / bw


def _inr(op: str, g: Group) -> AlphaBeta | None:
    if op != "all_reduce" or g.domains != 1 or not g.up.in_network_reduction:
        return None
    return AlphaBeta(g.up.latency_s + g.up.inr_latency_s, _inr_all_reduce_s_per_byte(g, g.ranks))


def _inr_tree(op: str, g: Group) -> AlphaBeta | None:
    """NCCL NVLSTree all-reduce: NVLS reduce-scatter inside each domain, so each rank holds S/k
    reduced; a double binary tree across domains on each rank's own NIC (rail) over that S/k;
    NVLS multicast all-gather inside again; the three stages pipelined.

    Scale-up traffic per rank is the single-domain NVLS figure, S (1 + 1/k) per direction. Per NIC
    per direction the tree moves S/k with two domains (each tree is a chain, and the two trees run
    opposite ways) and 2 S/k with more: in one tree a domain is interior (half the data, up from
    two children and to a parent, down from the parent and to two children: 3/2 S/k) and in the
    other a leaf (1/2 S/k). NCCL's own model has the same shape: src/tuning/nvls.cc doubles the
    inter-node bandwidth of NVLSTree for nNodes <= 2 and not beyond, and its latency is the NVLS
    latency plus 2 log2(nNodes) network hops. So at 4 x 8 H100 the NIC bound is algbw = 8 x 47 / 2
    GB/s, busbw 364 (nccl-tests #309 measured 365.8), while 2 x 8 is NVLink-bound (#309: 470)."""
    k, d = g.ranks_per_domain, g.domains
    if op != "all_reduce" or d == 1 or k == 1 or not g.up.in_network_reduction or not _runs_nccl(g):
        return None
    intra = _inr_all_reduce_s_per_byte(g, k)
    inter = (1 if d == 2 else 2) / k / g.out.achievable_bw_bytes_per_s
    lat = _base_latency(g) + g.up.inr_latency_s + 2 * math.ceil(math.log2(d)) * g.out.per_hop_latency_s
    return AlphaBeta(lat, max(intra, inter))


def _direct(op: str, g: Group) -> AlphaBeta | None:
    n, k, d = g.ranks, g.ranks_per_domain, g.domains
    hop_u, hop_o = g.up.per_hop_latency_s, g.out.per_hop_latency_s
    if op == "send":
        if d == 1:
            return AlphaBeta(g.up.latency_s + hop_u, 1 / _link_bw(g))
        return AlphaBeta(g.out.latency_s + hop_o, 1 / g.out.achievable_bw_bytes_per_s)
    if op == "all_to_all":
        if d == 1:
            # Own chunk charged at the link rate (see module docstring); on a full mesh the
            # per-peer links may bind first.
            per_byte = max(1 / g.up.achievable_bw_bytes_per_s, 1 / (n * _link_bw(g)))
            return AlphaBeta(g.up.latency_s + hop_u, per_byte)
        intra = (k / n) / g.up.achievable_bw_bytes_per_s
        inter = ((n - k) / n) / g.out.achievable_bw_bytes_per_s
        return AlphaBeta(_base_latency(g) + hop_o + hop_u, max(intra, inter))
    # One-shot all-pairs reduce-scatter / all-gather: native on a full mesh (HCCL's mesh
    # algorithms), where a ring would leave all but one link idle.
    if d != 1 or g.system.domain_topology != "full-mesh" or op not in ("all_reduce", "all_gather", "reduce_scatter"):
        return None
    bw = _all_peers_bw(g, n)
    if op == "all_reduce":
        return AlphaBeta(g.up.latency_s + 2 * hop_u, 2 * (n - 1) / n / bw)
    return AlphaBeta(g.up.latency_s + hop_u, (n - 1) / n / bw)


def _hierarchical(op: str, g: Group) -> AlphaBeta | None:
    """Inside the domain, across domains on each rank's own NIC (rails), inside again; stages
    pipelined, so the slowest stage sets the per-byte cost. HCCL's level0/level1 structure; NCCL
    has no such algorithm (module docstring), so it is not offered on NCCL systems."""
    k, d = g.ranks_per_domain, g.domains
    if d == 1 or k == 1 or op not in ("all_reduce", "all_gather", "reduce_scatter") or _runs_nccl(g):
        return None
    out_bw = g.out.achievable_bw_bytes_per_s
    hop_u, hop_o = g.up.per_hop_latency_s, g.out.per_hop_latency_s
    intra_ring_bw = _link_bw(g) if g.system.domain_topology != "full-mesh" else _all_peers_bw(g, k)
    if op == "all_reduce":
        if g.up.in_network_reduction:
            intra = _inr_all_reduce_s_per_byte(g, k)
            intra_lat = g.up.inr_latency_s
        else:
            intra = 2 * (k - 1) / k / intra_ring_bw
            intra_lat = 2 * (k - 1) * hop_u
        inter = 2 * (d - 1) / d / k / out_bw  # all-reduce of S/k among d ranks
        inter_lat = 2 * (d - 1) * hop_o
    else:
        intra = (k - 1) / k / intra_ring_bw
        inter = (d - 1) / d / k / out_bw
        intra_lat, inter_lat = (k - 1) * hop_u, (d - 1) * hop_o
    return AlphaBeta(_base_latency(g) + intra_lat + inter_lat, max(intra, inter))


_ALGORITHM_FUNCS = {"ring": _ring, "tree": _tree, "inr": _inr, "inr_tree": _inr_tree, "direct": _direct,
                    "hierarchical": _hierarchical}


def algorithms(op: str, group: Group) -> dict[str, AlphaBeta]:
    """Every algorithm valid for `op` on `group`, as alpha-beta costs."""
    if op not in OPS:
        raise ModelInputError(f"unknown collective {op!r}; valid: {', '.join(OPS)}")
    if group.ranks == 1:
        return {"none": AlphaBeta(0.0, 0.0)}
    out = {}
    for name, func in _ALGORITHM_FUNCS.items():
        cost = func(op, group)
        if cost is not None:
            out[name] = cost
    return out


def collective(op: str, size_bytes, group: Group, algorithm: str | None = None) -> CollectiveResult:
    """Time and nccl-tests algbw/busbw of `op` on `size_bytes` (scalar or array) among `group`.

    With `algorithm` None the fastest valid algorithm is chosen per size.
    """
    sizes = np.asarray(size_bytes, dtype=float)
    if not np.all(np.isfinite(sizes)) or np.any(sizes < 0):
        raise ModelInputError("message sizes must be finite and >= 0 bytes")
    valid = algorithms(op, group)
    if algorithm is not None and group.ranks > 1:
        if algorithm not in valid:
            raise ModelInputError(f"algorithm {algorithm!r} is not valid for {op} on {group.ranks} ranks of "
                            f"{group.system.name}; valid: {', '.join(valid)}")
        valid = {algorithm: valid[algorithm]}
    names = list(valid)
    times = np.stack([valid[a].time_s(sizes) for a in names])  # (algorithms, *sizes.shape)
    best = np.argmin(times, axis=0)
    time_s = np.take_along_axis(times, best[None, ...], axis=0)[0]
    latency_s = np.asarray([valid[a].latency_s for a in names])[best]
    chosen = np.asarray(names)[best]
    with np.errstate(divide="ignore", invalid="ignore"):
        algbw = np.where(time_s > 0, sizes / np.where(time_s > 0, time_s, 1.0), 0.0)
    busbw = algbw * bus_factor(op, group.ranks) if group.ranks > 1 else np.zeros_like(algbw)
    return CollectiveResult(op=op, ranks=group.ranks, ranks_per_domain=group.ranks_per_domain,
                            size_bytes=sizes, time_s=time_s, algbw_bytes_per_s=algbw,
                            busbw_bytes_per_s=busbw, algorithm=chosen, latency_s=latency_s)


def with_measured_scale_up(group: Group, fabric: FabricLike) -> Group:
    """The same group with its scale-up fabric replaced by a measured one."""
    return replace(group, scale_up=fabric)


# --- MoE dispatch with per-domain deduplication (DeepEP normal kernels) ---

def _expected_distinct(bins: int, per_bin: int, draws: int) -> float:
    """Expected number of distinct bins hit when `draws` items are drawn without replacement from
    `bins` x `per_bin` items (hypergeometric: a bin is missed with C(N - per_bin, draws) / C(N, draws))."""
    total = bins * per_bin
    draws = min(draws, total)
    return bins * (1 - math.comb(total - per_bin, draws) / math.comb(total, draws))


def moe_dispatch(token_bytes, group: Group, num_experts: int, top_k: int,
                 max_domains: int | None = None) -> CollectiveResult:
    """MoE dispatch as DeepEP's normal kernels run it (combine is its mirror and costs the same).

    Each rank holds tokens worth `token_bytes` (each token counted once) and routes each to `top_k`
    of `num_experts` experts, spread evenly over the ranks, chosen uniformly within at most
    `max_domains` domains (DeepSeek-V3 group-limited gating; DeepEP's benchmark draws random
    scores, top-4 groups, top-8 experts). Across domains a token crosses the NIC once per
    destination domain (deduplicated), to the same-index rank there, which forwards it over the
    scale-up fabric to every rank of that domain holding one of its experts (DeepEP README,
    "forwarding data from NVLink domain to RDMA domain").

    The returned algbw is DeepEP's reported "bottleneck bandwidth": logical bytes over time,
    where the logical bytes are token x distinct destination domains, own domain included
    (internode; its test counts num_rdma_token_sent that way), or token x distinct destination
    ranks (single domain); the result's size_bytes are those logical bytes. busbw is reported
    equal to algbw (no nccl-tests convention applies).

    Per rank: NIC bytes = token x remote destination domains; scale-up bytes = token x distinct
    destination ranks (every arriving token is copied to each selected rank of the domain, the
    forwarder's own copy included, as in the single-domain all-to-all above). The ratio of
    scale-up to logical bytes is g, the ranks hit per destination domain, so the bound is
    min(NIC x domains / remote domains, scale-up / g). With 2 domains of 8 H800s (EP16), a token's
    8 experts among 256 hit ~1.99 domains and ~6.45 ranks, g = 3.24, and 160 GB/s of NVLink caps
    the logical rate at ~49 GB/s while the NICs would allow 94: EP16 is forwarding-bound (DeepEP
    README: 43 GB/s). From 4 domains on g is ~2 and the NICs bind (EP32/64: 58/51 GB/s).
    """
    n, k, d = group.ranks, group.ranks_per_domain, group.domains
    if n == 1:
        return collective("all_to_all", token_bytes, group)
    if num_experts < n or num_experts % n or not 1 <= top_k <= num_experts:
        raise ModelInputError(f"moe dispatch: {num_experts} experts must be a positive multiple of the {n} ranks, "
                        f"and top-k {top_k} between 1 and the expert count")
    m = d if max_domains is None else max_domains
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ModelInputError(f"moe dispatch: max-domains must be a positive integer, got {max_domains!r}")
    m = min(m, d)
    per_rank = num_experts // n
    domains_hit = _expected_distinct(m, k * per_rank, top_k)
    ranks_hit = _expected_distinct(m * k, per_rank, top_k)
    sizes = np.asarray(token_bytes, dtype=float)
    if not np.all(np.isfinite(sizes)) or np.any(sizes < 0):
        raise ModelInputError("message sizes must be finite and >= 0 bytes")
    hop_u, hop_o = group.up.per_hop_latency_s, group.out.per_hop_latency_s
    if d == 1:
        logical = ranks_hit
        per_logical_byte = max(1 / group.up.achievable_bw_bytes_per_s, 1 / (n * _link_bw(group)))
        latency = group.up.latency_s + hop_u
    else:
        logical = domains_hit
        remote = domains_hit * (d - 1) / d  # own domain is among the chosen ones with the same odds as any
        per_logical_byte = (remote / logical) / group.out.achievable_bw_bytes_per_s
        if k > 1:
            per_logical_byte = max(per_logical_byte,
                                   (ranks_hit / logical) / _all_peers_bw(group, k))
        latency = _base_latency(group) + hop_o + (hop_u if k > 1 else 0.0)
    logical_bytes = sizes * logical
    time_s = latency + per_logical_byte * logical_bytes
    algbw = np.where(time_s > 0, logical_bytes / time_s, 0.0)
    return CollectiveResult(op="all_to_all", ranks=n, ranks_per_domain=k, size_bytes=logical_bytes,
                            time_s=time_s, algbw_bytes_per_s=algbw, busbw_bytes_per_s=algbw,
                            algorithm=np.full(sizes.shape, "direct"), latency_s=np.full(sizes.shape, latency))
