"""`rackbench catalog` and `rackbench collective` through the real entry point, harness.cli.main."""
from __future__ import annotations

import json

import pytest

from harness import cli
from harness.cli.collective import parse_size


def test_catalog_lists_everything(capsys):
    assert cli.main(["catalog"]) == 0
    out = capsys.readouterr().out
    for name in ("h100", "ascend-910c", "cloudmatrix-384", "gb200-nvl72", "nvlink4", "ub-cm384"):
        assert name in out
    assert "989 TFLOP/s" in out and "559 kW" in out


def test_catalog_shows_one_item_with_sources(capsys):
    assert cli.main(["catalog", "ascend-910c"]) == 0
    out = capsys.readouterr().out
    assert "752 TFLOP/s" in out and "[P1]" in out and "note:" in out
    assert cli.main(["catalog", "hgx-a800", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "system" and data["chip"] == "a800" and data["sources"]["power_w"]


def test_catalog_unknown_name_exits_2(capsys):
    assert cli.main(["catalog", "h999"]) == 2
    err = capsys.readouterr().err
    assert "h999" in err and "hgx-h100" in err and err.count("\n") == 1


def test_collective_table(capsys):
    assert cli.main(["collective", "--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8",
                     "--bytes", "8GiB", "--algorithm", "ring"]) == 0
    out = capsys.readouterr().out
    assert "8 GiB" in out and "ring" in out and "GB/s" in out


def test_collective_json_matches_published_nvls(capsys):
    assert cli.main(["collective", "--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8",
                     "--bytes", "8GiB", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["algorithm"] == "inr"
    assert data["busbw_bytes_per_s"] == pytest.approx(480e9, rel=0.15)
    assert data["algbw_bytes_per_s"] == pytest.approx(data["size_bytes"] / data["time_s"])
    assert set(data) >= {"time_s", "algbw_bytes_per_s", "busbw_bytes_per_s", "algorithm"}


def test_collective_sweep_json_and_plot(tmp_path, capsys):
    png = tmp_path / "busbw.png"
    assert cli.main(["collective", "--system", "hgx-h800", "--op", "all_to_all", "--ranks", "32",
                     "--ranks-per-domain", "8", "--sweep", "--plot", str(png), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    sizes = [r["size_bytes"] for r in data["results"]]
    assert sizes[0] == 1024 and sizes[-1] == 4 * 2**30 and len(sizes) == 23
    assert data["domains"] == 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, needle", [
    (["--system", "nope", "--op", "all_reduce", "--ranks", "8", "--bytes", "1MB"], "nope"),
    (["--system", "hgx-h100", "--op", "allreduce", "--ranks", "8", "--bytes", "1MB"], "allreduce"),
    (["--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8", "--bytes", "1 parsec"], "--bytes"),
    (["--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8"], "--sweep"),
    (["--system", "hgx-h100", "--op", "all_reduce", "--ranks", "12", "--bytes", "1MB"], "multiple"),
    (["--system", "hgx-h100", "--op", "all_reduce", "--ranks", "16", "--bytes", "1MB", "--algorithm", "inr"], "valid"),
    (["--system", "hgx-h100", "--op", "all_reduce", "--ranks", "8", "--bytes", "1MB", "--algorithm", "magic"], "magic"),
])
def test_collective_bad_input_exits_2(capsys, argv, needle):
    assert cli.main(["collective", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_collective_non_integer_ranks_exits_2(capsys):
    with pytest.raises(SystemExit) as info:  # argparse's own type check
        cli.main(["collective", "--system", "hgx-h100", "--op", "all_reduce", "--ranks", "eight", "--bytes", "1"])
    assert info.value.code == 2


@pytest.mark.parametrize("text, expected", [("1GiB", 2**30), ("64MB", 64e6), ("1e9", 1e9), ("4096", 4096),
                                            ("1.5 KiB", 1536), ("2gb", 2e9)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected
