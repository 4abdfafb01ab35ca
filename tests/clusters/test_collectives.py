"""The collective model against published measurements, closed forms and invariants."""
from __future__ import annotations

import csv

from clusters.validation import PUBLISHED_CSV

import numpy as np
import pytest

from clusters.catalog import load_system
from clusters.collectives import (OPS, Group, MeasuredFabric, algorithms, bus_factor, collective,
                                  with_measured_scale_up)
from clusters.errors import ModelInputError

PUBLISHED = PUBLISHED_CSV
TOLERANCE = 0.15
GiB = 2**30

# DeepEP normal-kernel benchmark: 4096 tokens, hidden 7168, top-8 (published.csv). Per-rank logical
# bytes: each token to at most 8 ranks in BF16 (combine); an upper bound that keeps latency
# negligible (~0.5 GB vs microseconds), so the comparison is of bandwidth only.
DEEPEP_BYTES = 4096 * 7168 * 2 * 8


def _published() -> dict[str, dict]:
    with open(PUBLISHED, newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def _expected_bytes_per_s(row: dict) -> float:
    assert row["unit"] == "GB/s"
    return float(row["value"]) * 1e9


# (row id, system, op, ranks, ranks per domain, algorithm, size, which figure, divisor)
# "figure" is busbw or algbw; DeepEP's "bandwidth" is logical bytes per rank / time = algbw
# (see clusters/collectives.py). C-NDR-NIC is busbw per NIC: the ring's cross-node traffic
# spreads over the 8 NICs of a node, so per-NIC busbw = busbw / 8.
CASES = [
    ("C-H100-NVLS", "hgx-h100", "all_reduce", 8, None, "inr", 8 * GiB, "busbw", 1),
    ("C-H100-RING", "hgx-h100", "all_reduce", 8, None, "ring", 8 * GiB, "busbw", 1),
    ("C-NDR-NIC", "hgx-h100", "all_reduce", 16, 8, "ring", 8 * GiB, "busbw", 8),
    ("C-A800-NODE", "hgx-a800", "all_reduce", 8, None, None, 8e9, "busbw", 1),
    ("C-DEEPEP-H800-INTRA", "hgx-h800", "all_to_all", 8, None, None, DEEPEP_BYTES, "algbw", 1),
    ("C-DEEPEP-H800-INTER", "hgx-h800", "all_to_all", 32, 8, None, DEEPEP_BYTES, "algbw", 1),
    # per HDR NIC across two DGX A100 nodes, as C-NDR-NIC
    ("C-HDR-NIC", "dgx-a100", "all_reduce", 16, 8, "ring", 8 * GiB, "busbw", 8),
    # DeepEP V2 intranode on B200, 8192 tokens per batch
    ("C-DEEPEP-B200-NVLINK", "hgx-b200", "all_to_all", 8, None, None, 2 * DEEPEP_BYTES, "algbw", 1),
]


def model_value(system, op, ranks, k, algorithm, size, figure, divisor) -> float:
    result = collective(op, size, Group(load_system(system), ranks, k), algorithm)
    value = result.busbw_bytes_per_s if figure == "busbw" else result.algbw_bytes_per_s
    return float(value) / divisor


def test_every_collective_row_is_covered():
    rows = {k for k, r in _published().items() if r["kind"] == "collective"}
    assert rows == {case[0] for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reproduces_published_collective(case):
    row_id, *args = case
    expected = _expected_bytes_per_s(_published()[row_id])
    got = model_value(*args)
    assert got == pytest.approx(expected, rel=TOLERANCE), f"{row_id}: model {got/1e9:.1f} GB/s vs published {expected/1e9:.1f}"


def test_default_choice_on_h100_is_nvls_for_large_and_not_for_small():
    g = Group(load_system("hgx-h100"), 8)
    assert str(collective("all_reduce", 8 * GiB, g).algorithm) == "inr"
    assert str(collective("all_reduce", 1024, g).algorithm) != "inr"  # NVLS' 25 us latency loses


# --- closed forms ---

def test_ring_all_reduce_closed_form_with_measured_fabric():
    alpha, hop, bw, n = 5e-6, 1e-6, 100e9, 8
    g = with_measured_scale_up(Group(load_system("hgx-h100"), n), MeasuredFabric("fit", alpha, bw, hop))
    sizes = np.array([0.0, 1e6, 1e9])
    r = collective("all_reduce", sizes, g, "ring")
    expected = alpha + 2 * (n - 1) * hop + 2 * (n - 1) / n * sizes / bw
    np.testing.assert_allclose(r.time_s, expected, rtol=1e-12)
    np.testing.assert_allclose(r.busbw_bytes_per_s[1:], sizes[1:] / expected[1:] * 2 * (n - 1) / n)
    assert "inr" not in algorithms("all_reduce", g)  # a measured fabric reduces in no switch


def test_ring_all_gather_closed_form_from_catalog():
    g = Group(load_system("hgx-h100"), 8)
    up = g.system.scale_up
    s = 1e9
    expected = up.latency_s + 7 * up.per_hop_latency_s + 7 / 8 * s / (up.bw_bytes_per_s_per_chip * up.efficiency)
    assert float(collective("all_gather", s, g, "ring").time_s) == pytest.approx(expected, rel=1e-12)


def test_nvls_closed_form():
    g = Group(load_system("hgx-h100"), 8)
    up = g.system.scale_up
    s = 1e9
    expected = up.latency_s + up.inr_latency_s + s * (1 + 1 / 8) / (up.bw_bytes_per_s_per_chip * up.efficiency * up.inr_efficiency)
    assert float(collective("all_reduce", s, g, "inr").time_s) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("op, n, factor", [("all_reduce", 8, 1.75), ("all_gather", 8, 0.875),
                                           ("reduce_scatter", 4, 0.75), ("all_to_all", 2, 0.5),
                                           ("broadcast", 8, 1.0), ("send", 2, 1.0)])
def test_bus_factors_are_nccl_tests(op, n, factor):
    assert bus_factor(op, n) == factor


# --- invariants ---

SYSTEM_GROUPS = [("hgx-h100", 8, None), ("hgx-h100", 32, 8), ("hgx-h100", 16, 4), ("atlas-800t-a2", 8, None),
                 ("atlas-800t-a2", 16, 8), ("cloudmatrix-384", 384, None), ("cloudmatrix-384", 768, 384),
                 ("gb200-nvl72", 72, None), ("dgx-a100", 64, 8)]


@pytest.mark.parametrize("system, n, k", SYSTEM_GROUPS)
@pytest.mark.parametrize("op", OPS)
def test_time_monotone_in_size_and_tends_to_latency(system, n, k, op):
    g = Group(load_system(system), n, k)
    sizes = 2.0 ** np.arange(0, 36)
    r = collective(op, sizes, g)
    assert np.all(np.diff(r.time_s) > 0)
    assert np.all(np.diff(r.busbw_bytes_per_s) >= -1e-6 * r.busbw_bytes_per_s[1:])
    tiny = collective(op, np.array([0.0, 1e-3]), g)
    assert tiny.time_s[0] == pytest.approx(float(tiny.latency_s[0]))
    assert tiny.time_s[1] == pytest.approx(float(tiny.latency_s[1]), rel=1e-6)
    assert 0 < tiny.time_s[0] < 1e-3  # microseconds to a millisecond, not zero, not seconds


@pytest.mark.parametrize("op", OPS)
def test_single_rank_costs_nothing(op):
    r = collective(op, np.array([0, 1e9]), Group(load_system("hgx-h100"), 1))
    assert np.all(r.time_s == 0) and np.all(r.busbw_bytes_per_s == 0)


def test_crossing_domains_is_slower_than_staying_inside():
    sys = load_system("hgx-h100")
    inside = collective("all_reduce", 1e9, Group(sys, 8), "ring").time_s
    across = collective("all_reduce", 1e9, Group(sys, 16, 8), "ring").time_s
    thin = collective("all_reduce", 1e9, Group(sys, 16, 2), "ring").time_s  # only 2 NICs per domain
    assert inside < across < thin


def test_hierarchical_beats_ring_across_nodes_for_large_messages():
    # HCCL (Ascend) is hierarchical by construction (server-internal level0, server-to-server level1).
    g = Group(load_system("atlas-800t-a2"), 32, 8)
    algs = algorithms("all_reduce", g)
    assert {"ring", "tree", "hierarchical"} <= set(algs) and "inr" not in algs
    assert str(collective("all_reduce", 4 * GiB, g).algorithm) == "hierarchical"


def test_nccl_offers_no_hierarchical_all_reduce():
    # NCCL's multi-node all-reduce is ring, tree or NVLSTree; a rail-parallel hierarchical one would
    # predict ~2x the ~190 GB/s busbw NVIDIA measures on DGX-A100 (NVIDIA/nccl #812).
    a100 = Group(load_system("dgx-a100"), 64, 8)
    assert set(algorithms("all_reduce", a100)) == {"ring", "tree"}
    h100 = Group(load_system("hgx-h100"), 32, 8)
    assert set(algorithms("all_reduce", h100)) == {"ring", "tree", "inr_tree"}


def test_full_mesh_prefers_all_pairs_over_a_single_ring():
    g = Group(load_system("atlas-800t-a2"), 8)
    ring = collective("all_reduce", 1e9, g, "ring").time_s
    direct = collective("all_reduce", 1e9, g, "direct").time_s
    assert direct < ring / 5  # a ring uses 1 of 7 HCCS links


def test_all_to_all_across_domains_is_nic_bound():
    g = Group(load_system("hgx-h800"), 32, 8)
    r = collective("all_to_all", 1e9, g)
    nic = g.system.scale_out.bw_bytes_per_s_per_chip * g.system.scale_out.efficiency
    assert float(r.algbw_bytes_per_s) == pytest.approx(nic * 32 / 24, rel=1e-3)


# --- bad input ---

def test_bad_input_is_user_error():
    sys = load_system("hgx-h100")
    with pytest.raises(ModelInputError, match="unknown collective"):
        collective("allreduce", 1e6, Group(sys, 8))
    with pytest.raises(ModelInputError, match="valid: .*ring"):
        collective("all_reduce", 1e6, Group(sys, 16, 8), "inr")
    with pytest.raises(ModelInputError, match="multiple"):
        Group(sys, 12, 8)
    with pytest.raises(ModelInputError, match="exceeds"):
        Group(sys, 16, 16)
    with pytest.raises(ModelInputError, match="positive"):
        Group(sys, 0)
    with pytest.raises(ModelInputError, match=">= 0"):
        collective("all_reduce", -1, Group(sys, 8))
