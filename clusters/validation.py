"""Published measurements the model is checked against (clusters/data/validation/published.csv:
one row per measurement, with its plan as published, metric, definition and source)."""
from __future__ import annotations

import csv
from pathlib import Path

PUBLISHED_CSV = Path(__file__).parent / "data" / "validation" / "published.csv"


def published_rows(path: Path = PUBLISHED_CSV) -> list[dict]:
    """Every row as a dict of strings, in file order."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
