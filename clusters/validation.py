"""Published measurements the model is checked against (clusters/data/validation/published.csv:
one row per measurement, with its plan as published, metric, definition and source, and its
cold error: the signed error the code of the moment the row was added read, before anything was
changed for it, with that commit (`cold_error`, `cold_commit`). Rows in the file before cold
errors were recorded (2026-12-08) have `cold_commit` PRE_COLD and no cold error; a row added
since has both, written by `rackbench validate --record-cold`."""
from __future__ import annotations

import csv
from pathlib import Path

PUBLISHED_CSV = Path(__file__).parent / "data" / "validation" / "published.csv"
PRE_COLD = "-"  # cold_commit of a row in the file before cold errors were recorded


def published_rows(path: Path = PUBLISHED_CSV) -> list[dict]:
    """Every row as a dict of strings, in file order."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
