"""Calibration: the default file's sources and lookups."""

import pytest

from clusters.calibration import default_calibration, load_calibration_file
from clusters.catalog import list_chips, load_chip
from clusters.errors import ModelInputError


def test_every_default_efficiency_cites_a_source():
    cal = default_calibration()
    assert cal.entries
    for e in cal.entries:
        assert len(e.source) > 30 and all(0 < v <= 1 for v in e.efficiencies)
    for f in cal.software_factors.values():
        assert "2506.12708" in f.source


@pytest.mark.parametrize("chip", list_chips())
def test_every_catalog_chip_gets_every_kernel_class(chip):
    c = load_chip(chip)
    cal = default_calibration()
    for kernel in ("gemm", "attention", "memory"):
        for dtype in c.peak_flops_per_s:
            # a long call (1 PFLOP, or 1 GB moved): the measured plateau, not a short call's loss
            eff = cal.efficiency(kernel, c.family, dtype, 1e15 if kernel != "memory" else 1e9,
                                 c.peak(dtype), chip=c.name)
            assert 0.2 < eff < 1, (kernel, dtype, eff)


def test_sustained_clock_and_ascend_factor_are_applied_as_documented():
    cal = default_calibration()
    # H100 fp8: MAMF burst 0.709 x Hopper sustained/burst 0.848
    assert cal.efficiency("gemm", "nvidia-hopper", "fp8") == pytest.approx(0.709 * 0.848)
    # H100 bf16: a sustained (MSMF) measurement, no factor
    assert cal.efficiency("gemm", "nvidia-hopper", "bf16") == pytest.approx(0.706)
    # 910C bf16 GEMM: borrowed from Hopper, times the CloudMatrix384 compute ratio
    assert cal.efficiency("gemm", "ascend-910c", "bf16") == pytest.approx(0.706 * 0.981)
    # 910C int8 GEMM: its own measurement (an operator micro-benchmark, so burst: the
    # sustained-clock assumption applies), no borrowing factor
    assert cal.efficiency("gemm", "ascend-910c", "int8") == pytest.approx(
        0.80 * cal.sustained["*"][0])
    mature = cal.with_software_factor("ascend-910c", 1.0, 1.0)
    assert mature.efficiency("gemm", "ascend-910c", "bf16") == pytest.approx(0.706)


def test_a_chip_entry_comes_before_its_familys():
    """GB200 has its own MAMF readings (72.9% bf16, 72.3% fp8 of higher peaks than B200's);
    B200, same family, keeps the family entries."""
    cal = default_calibration()
    sustained = cal.sustained["nvidia-blackwell"][0]
    assert cal.efficiency("gemm", "nvidia-blackwell", "fp8", chip="gb200") == pytest.approx(
        0.723 * sustained)
    assert cal.efficiency("gemm", "nvidia-blackwell", "fp8", chip="b200") == pytest.approx(
        0.763 * sustained)
    assert cal.efficiency("gemm", "nvidia-blackwell", "bf16", chip="gb200") == pytest.approx(
        0.729 * sustained)
    assert cal.efficiency("gemm", "nvidia-blackwell", "bf16", chip="b200") == pytest.approx(0.634)
    # and the projection uses it: the same plan on GB200 and on a GB200 without its own entry
    from dataclasses import replace
    from clusters.catalog import load_system
    from clusters.plan import Plan
    from clusters.train import train_step
    from clusters.workloads import load_model
    family_only = replace(cal, entries=tuple(e for e in cal.entries if e.family != "gb200"))
    m, s = load_model("llama3-8b"), load_system("gb200-nvl72")
    plan = Plan(dp=8, global_batch=64, seq_len=8192, precision="fp8")
    own, borrowed = (train_step(m, s, plan, c).breakdown_s["gemm_s"] for c in (cal, family_only))
    assert own > borrowed * 1.03


def test_bad_calibration_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "x"\n[[entry]]\nkernel = "gemm"\nefficiency = 1.5\nsource = "me"\n')
    with pytest.raises(ModelInputError, match="c.toml: key 'entry.1.efficiency' value 1.5 is impossible"):
        load_calibration_file(p)
    p.write_text('name = "x"\n[[entry]]\nkernel = "gemmm"\nefficiency = 0.5\nsource = "me"\n')
    with pytest.raises(ModelInputError, match="key 'entry.1.kernel' is 'gemmm'"):
        load_calibration_file(p)
    p.write_text('name = "x"\n[[entry]]\nkernel = "gemm"\nsource = "me"\n')
    with pytest.raises(ModelInputError, match="entry 1: give key 'efficiency' or 'points'"):
        load_calibration_file(p)
    p.write_text('[ratio.r]\nnumerator = 1\nsource = "me"\n')
    with pytest.raises(ModelInputError, match="missing key 'ratio.r.denominator'"):
        load_calibration_file(p)
