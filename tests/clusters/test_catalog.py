"""The catalog: shipped files load and are fully sourced; each kind of bad input is a ModelInputError naming file and key."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from clusters import catalog
from clusters.errors import ModelInputError

REQUIRED_CHIPS = {"ascend-910b2", "ascend-910b3", "ascend-910c", "a100", "a800", "h100", "h100-nvl", "h800",
                  "h20", "h200", "h200-nvl", "b200", "gb200"}
REQUIRED_SYSTEMS = {"atlas-800t-a2", "cloudmatrix-384", "dgx-a100", "hgx-a800", "hgx-h100", "hgx-h800",
                    "hgx-h20", "hgx-h200", "hgx-b200", "gb200-nvl72"}

# Models (clusters/data/models) follow their own format, owned by the workload catalog.
SHIPPED = sorted(p for kind in ("chips", "fabrics", "systems") for p in (catalog.DATA_DIR / kind).glob("*.toml"))


def test_required_names_are_shipped():
    assert set(catalog.list_chips()) == REQUIRED_CHIPS
    assert set(catalog.list_systems()) == REQUIRED_SYSTEMS
    assert catalog.list_fabrics()  # every system's fabrics resolve (checked below)


def _unsourced_numbers(node, path=""):
    """Yield key paths of numbers that are not the `value` of a table with a non-empty `source`."""
    if isinstance(node, dict):
        if "value" in node:
            src = node.get("source")
            if not (isinstance(src, str) and src.strip()):
                yield path
            return
        for key, child in node.items():
            yield from _unsourced_numbers(child, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _unsourced_numbers(child, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_number_has_a_source(path: Path):
    with open(path, "rb") as f:
        data = tomllib.load(f)
    assert list(_unsourced_numbers(data)) == []


def test_every_shipped_item_loads_and_sources_cover_every_number():
    for name in catalog.list_chips():
        chip = catalog.load_chip(name)
        assert chip.name == name
        assert set(f"peak_flops_per_s.{d}" for d in chip.peak_flops_per_s) <= set(chip.sources)
        for key in ("hbm_bytes", "hbm_bw_bytes_per_s", "power_w", "scale_up_bw_bytes_per_s",
                    "scale_out_bw_bytes_per_s"):
            assert key in chip.sources
        assert chip.price_usd is None or "price_usd" in chip.sources
    for name in catalog.list_fabrics():
        fabric = catalog.load_fabric(name)
        assert 0 < fabric.efficiency <= 1
        assert fabric.in_network_reduction == (fabric.inr_efficiency is not None)
    for name in catalog.list_systems():
        system = catalog.load_system(name)
        assert system.chips_per_domain >= 1
        # switched-inr means the scale-up fabric reduces in the switch
        assert (system.domain_topology == "switched-inr") == system.scale_up.in_network_reduction


def test_figures_are_dense_and_in_base_units():
    h100 = catalog.load_chip("h100")
    assert h100.peak("bf16") == 989e12  # dense, not the 1,979 sparse figure
    assert h100.hbm_bytes == 85.52e9  # 81559 MiB as nvidia-smi reports: "80 GB" is 80 GiB
    assert h100.scale_up_bw_bytes_per_s == 450e9  # per direction
    assert catalog.load_chip("a800").scale_up_bw_bytes_per_s == 200e9
    assert catalog.load_chip("h800").scale_up_bw_bytes_per_s == 200e9
    cm = catalog.load_system("cloudmatrix-384")
    assert cm.chips_per_domain == 384 and cm.scale_up.bw_bytes_per_s_per_chip == 392e9
    assert cm.power_w == pytest.approx(559e3, rel=0.01)
    assert catalog.load_system("gb200-nvl72").chips_per_domain == 72


def test_absent_dtype_raises_naming_chip_and_dtype():
    a100 = catalog.load_chip("a100")
    assert "fp8" not in a100.peak_flops_per_s  # absent, not zero
    with pytest.raises(ModelInputError, match=r"a100.*fp8"):
        a100.peak("fp8")
    assert "fp8" not in catalog.load_chip("ascend-910c").peak_flops_per_s


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ModelInputError, match=r"unknown chip 'h999'.*h100"):
        catalog.load_chip("h999")
    with pytest.raises(ModelInputError, match=r"unknown system 'nope'.*hgx-h100"):
        catalog.load_system("nope")
    with pytest.raises(ModelInputError, match=r"unknown fabric 'x'.*nvlink4"):
        catalog.load_fabric("x")


@pytest.mark.parametrize("kind, expected", [
    ("NVIDIA H100 80GB HBM3", "h100"),
    ("NVIDIA H200", "h200"),
    ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA B200", "b200"),
    ("NVIDIA GB200", "gb200"),
    ("NVIDIA H800", "h800"),
    ("NVIDIA H20", "h20"),
    ("NVIDIA GH200 480GB", None),
    ("NVIDIA H100 PCIe", None),
    ("NVIDIA H100 NVL", "h100-nvl"),
    ("NVIDIA H200 NVL", "h200-nvl"),
    ("NVIDIA A100-PCIE-40GB", None),  # CUDA writes PCIE in capitals here
    ("NVIDIA A100-SXM4-40GB", "a100"),
    ("cpu", None),
    ("TFRT_CPU_0", None),
])
def test_match_device_kind(kind, expected):
    chip = catalog.match_device_kind(kind)
    assert (chip.name if chip else None) == expected


@pytest.mark.parametrize("kind, near", [
    ("NVIDIA H100 PCIe", ["h100", "h100-nvl"]),
    ("NVIDIA A100-PCIE-40GB", ["a100"]),
    ("NVIDIA H200", []),  # matched: nothing is near
    ("NVIDIA RTX 6000 Ada Generation", []),
])
def test_near_device_kind_names_the_other_parts(kind, near):
    assert [c.name for c in catalog.near_device_kind(kind)] == near


def test_nvl_parts_are_their_own_chips():
    """The NVL cards' dense peaks are the datasheets' sparse figures halved, below the SXM parts'."""
    for nvl, sxm in (("h200-nvl", "h200"), ("h100-nvl", "h100")):
        a, b = catalog.load_chip(nvl), catalog.load_chip(sxm)
        assert a.peak("bf16") == 1671e12 / 2 < b.peak("bf16")
        assert a.peak("fp8") == 3341e12 / 2 and a.power_w < b.power_w and a.family == b.family


def test_cluster_chips():
    cluster = catalog.Cluster(catalog.load_system("hgx-h100"), 4)
    assert cluster.chips == 32
    with pytest.raises(ModelInputError):
        catalog.Cluster(catalog.load_system("hgx-h100"), 0)


# --- bad input: each kind gives a ModelInputError naming the file and the key ---

_GOOD_CHIP = (catalog.DATA_DIR / "chips" / "h100.toml").read_text()
_GOOD_SYSTEM = (catalog.DATA_DIR / "systems" / "hgx-h100.toml").read_text()


def _chip_with(old: str, new: str) -> str:
    """The shipped H100 file with one edit; an edit that matches nothing is a broken test."""
    assert old in _GOOD_CHIP, f"test edit does not apply: {old!r}"
    return _GOOD_CHIP.replace(old, new)


def _write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_chip_file_loads(tmp_path):
    chip = catalog.load_chip_file(_write(tmp_path, _GOOD_CHIP, "mine.toml"))
    assert chip.peak("fp8") == 1979e12


@pytest.mark.parametrize("label, text, key", [
    ("unknown key", _GOOD_CHIP + '\n[tdp_watts]\nvalue = 1\nsource = "x"\n', "tdp_watts"),
    ("missing key", _chip_with("[hbm_bytes]\nvalue = 85.52e9\n", "[hbm_bytesX]\nvalue = 85.52e9\n"), "hbm_bytes"),
    ("missing source", re.sub(r'(\[hbm_bytes\]\nvalue = [^\n]*\n)source = [^\n]*\n', r'\1', _GOOD_CHIP), "hbm_bytes"),
    ("negative value", _chip_with("value = 700", "value = -700"), "power_w"),
    ("zero value", _chip_with("value = 3.35e12", "value = 0"), "hbm_bw_bytes_per_s"),
    ("impossible bandwidth", _chip_with("value = 450e9", "value = 450e18"), "scale_up_bw_bytes_per_s"),
    ("bad dtype key", _chip_with("fp8 = {", "fp4 = {"), "peak_flops_per_s.fp4"),
    ("bare number", _chip_with("[power_w]\nvalue = 700\nsource = \"[N2] NVIDIA H100 product page (max TDP up to 700 W)\"\n", "").replace('family = "nvidia-hopper"', 'family = "nvidia-hopper"\npower_w = 700'), "power_w"),
    ("string value", _chip_with("value = 700", 'value = "700"'), "power_w"),
])
def test_bad_chip_file(tmp_path, label, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(ModelInputError) as info:
        catalog.load_chip_file(path)
    message = str(info.value)
    assert str(path) in message and key in message, message
    assert "\n" not in message


def test_malformed_toml_names_the_file(tmp_path):
    path = _write(tmp_path, _GOOD_CHIP + "\n[oops\n")
    with pytest.raises(ModelInputError, match="malformed TOML") as info:
        catalog.load_chip_file(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ModelInputError, match="no such file"):
        catalog.load_chip_file(tmp_path / "absent.toml")


@pytest.mark.parametrize("label, text, key", [
    ("chips_per_domain < 1", _GOOD_SYSTEM.replace("value = 8\n", "value = 0\n"), "chips_per_domain"),
    ("fractional chips_per_domain", _GOOD_SYSTEM.replace("value = 8\n", "value = 7.5\n"), "chips_per_domain"),
    ("bad topology", _GOOD_SYSTEM.replace('"switched-inr"', '"torus"'), "domain_topology"),
    ("unknown chip", _GOOD_SYSTEM.replace('chip = "h100"', 'chip = "h999"'), "h999"),
    ("inr without inr fabric", _GOOD_SYSTEM.replace('scale_up = "nvlink4"', 'scale_up = "nvlink3"'), "domain_topology"),
])
def test_bad_system_file(tmp_path, label, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(ModelInputError) as info:
        catalog.load_system_file(path)
    assert str(path) in str(info.value) and key in str(info.value), str(info.value)


def test_fabric_efficiency_above_one_is_rejected(tmp_path):
    text = (catalog.DATA_DIR / "fabrics" / "nvlink4.toml").read_text().replace("value = 0.8\n", "value = 1.3\n")
    path = _write(tmp_path, text)
    with pytest.raises(ModelInputError, match="efficiency") as info:
        catalog.load_fabric_file(path)
    assert str(path) in str(info.value)


def test_inr_fields_required_with_inr(tmp_path):
    text = (catalog.DATA_DIR / "fabrics" / "nvlink4.toml").read_text()
    text = text.split("[inr_efficiency]")[0]
    path = _write(tmp_path, text)
    with pytest.raises(ModelInputError, match="inr_efficiency"):
        catalog.load_fabric_file(path)


def test_devices_per_package_is_optional_and_sourced():
    assert catalog.load_chip("h100").devices == 1  # absent means one device
    c = catalog.load_chip("ascend-910c")
    assert c.devices == 2 and "2506.12708" in c.sources["devices_per_package"]


@pytest.mark.parametrize("value", ["0", "2.5"])
def test_devices_per_package_must_be_a_positive_integer(tmp_path, value):
    text = _GOOD_CHIP + f'\n[devices_per_package]\nvalue = {value}\nsource = "x"\n'
    with pytest.raises(ModelInputError, match="devices_per_package"):
        catalog.load_chip_file(_write(tmp_path, text, "dies.toml"))
