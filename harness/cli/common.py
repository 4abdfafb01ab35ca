"""Flags several commands share, defined once."""
from __future__ import annotations

import argparse

from harness.errors import UserError

FORMATS = ("table", "json")


def add_format(p: argparse.ArgumentParser, *extra: str) -> None:
    """--format table|json (and `extra`, e.g. markdown), default table."""
    p.add_argument("--format", choices=FORMATS + extra, default="table",
                   help="output format (default: table)")


def add_calibration(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", metavar="SET",
                   help="result set to calibrate from (default: the newest GPU set in "
                        "results/reference/, else the sourced default file)")


def add_plot(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--plot", metavar="PNG", help=f"write {what} to this PNG file")


def positive(name: str, value, allow_none: bool = True) -> None:
    """A positive-integer flag, checked before any work starts."""
    if value is None and allow_none:
        return
    if value is None or value < 1:
        raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
