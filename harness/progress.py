"""What a run shows while it measures: a bar on a terminal, one line per finished case in a log
(cron, `make bench > log`, CI), nothing with --quiet."""
from __future__ import annotations

import sys

from harness.format import duration


class Progress:
    """The runner's calls; this base class says nothing."""

    def start(self, total: int) -> None: ...

    def case_started(self, index: int, name: str) -> None: ...

    def case_done(self, index: int, result) -> None: ...

    def close(self) -> None: ...


class BarProgress(Progress):
    """On a terminal: a tqdm bar showing the case being measured."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="case", file=self.stream, dynamic_ncols=True)

    def case_started(self, index: int, name: str) -> None:
        self.bar.set_postfix_str(name[-48:])

    def case_done(self, index: int, result) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def case_line(index: int, total: int, result) -> str:
    """`[12/98] matmul/fp32/256x256x256 ok 394.1 us`: name, status, median (or the reason)."""
    what = duration(result.median_s) if result.status == "ok" else (result.reason or "")[:80]
    return f"[{index + 1}/{total}] {result.name} {result.status} {what}".rstrip()


class LineProgress(Progress):
    """In a log: one line per finished case, flushed at once."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.total = 0

    def start(self, total: int) -> None:
        self.total = total

    def case_done(self, index: int, result) -> None:
        print(case_line(index, self.total, result), file=self.stream, flush=True)


def progress_for(stream, quiet: bool) -> Progress | None:
    """A bar on a terminal, lines otherwise, None with --quiet."""
    if quiet:
        return None
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return BarProgress(stream) if tty else LineProgress(stream)
