"""The CLI, run in-process on small inputs, output and exit codes asserted."""
import json

import pytest

from harness import cli


def _main(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_quick_filtered_then_show(tmp_path, capsys):
    target = tmp_path / "set.json"
    code, out, _ = _main(["run", "--suite", "quick", "--filter", r"matmul/fp(32/128|8)", "--out-file", str(target),
                          "--min-time-s", "0.002"], capsys)
    assert code == 0
    assert f"stored: {target}" in out
    doc = json.loads(target.read_text())
    names = [c["name"] for c in doc["rackbench"]["cases"]]
    assert names == ["matmul/fp32/128x128x128", "matmul/fp8/256x256x256"]
    code, out, _ = _main(["show", str(target)], capsys)
    assert code == 0
    assert "matmul/fp32/128x128x128" in out and "device-loop" in out
    assert "skipped" in out and "compute capability" in out
    assert "1 ok, 0 failed, 1 skipped" in out
    assert "compute ceiling: no catalog peak for cpu" in out and "memory ceiling: " in out


def test_devices_reports_the_platform(capsys):
    code, out, _ = _main(["devices"], capsys)
    assert code == 0
    assert "platform: cpu" in out and "catalog chip: none" in out
    code, out, _ = _main(["devices", "--format", "json"], capsys)
    assert json.loads(out)["device"]["platform"] == "cpu"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--suite", "quick", "--filter", "("], "case filter '(': not a valid regular expression"),
        (["run", "--suite", "quick", "--filter", "no-such-case"], "case filter 'no-such-case': matches no case"),
        (["run", "--suite", "quick", "--min-time-s", "-1"], "--min-time-s -1.0: must be positive"),
        (["show", "/nonexistent/x.json"], "/nonexistent/x.json: no such result file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    code, out, err = _main(argv + (["--out", str(tmp_path)] if argv[0] == "run" else []), capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_show_corrupt_file_exit_2(tmp_path, capsys):
    p = tmp_path / "broken.json"
    p.write_text('{"rackbench": {"schema_version": 1, "cases": [')
    code, _, err = _main(["show", str(p)], capsys)
    assert code == 2 and str(p) in err and "corrupted or truncated" in err
