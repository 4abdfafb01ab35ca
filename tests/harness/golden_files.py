"""The golden-file check both golden test modules use (test_golden.py for the model commands,
test_golden_measure.py for the measurement commands): a table or Markdown file must match to
the character; JSON and CSV in every key, column and string, and in every number to 1e-9 (the
last bits of numpy's exp and log may differ between CPUs). RACKBENCH_GOLDEN=update writes the
files instead, for review with `git diff tests/harness/golden/`."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RACKBENCH_GOLDEN") == "update"
EXT = {"table": "txt", "markdown": "md", "json": "json", "csv": "csv"}


def same(got, want, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: keys differ"
        for k in want:
            same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: lengths differ"
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300), \
            f"{where}: {got!r} != {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _cell(text: str):
    try:
        return float(text) if any(c.isdigit() for c in text) and text.strip() == text else text
    except ValueError:
        return text


def compare(fmt: str, got: str, want: str) -> None:
    if fmt == "json":
        same(json.loads(got), json.loads(want))
    elif fmt == "csv":
        rows = [[_cell(c) for c in r] for r in csv.reader(io.StringIO(got))]
        same(rows, [[_cell(c) for c in r] for r in csv.reader(io.StringIO(want))])
    else:
        assert got == want


def check(name: str, fmt: str, got: str) -> None:
    """`got` against golden/<name>.<ext>, or written there with RACKBENCH_GOLDEN=update."""
    path = GOLDEN / f"{name}.{EXT[fmt]}"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
        return
    assert path.exists(), f"no golden file {path}: RACKBENCH_GOLDEN=update regenerates it"
    compare(fmt, got, path.read_text())
