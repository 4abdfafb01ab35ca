"""Flags several commands share, defined once."""
from __future__ import annotations

import argparse

from harness.errors import UserError

FORMATS = ("table", "json")


def add_format(p: argparse.ArgumentParser, *extra: str) -> None:
    """--format table|json (and `extra`: "csv" for commands that print records, harness.format
    .csv_text; "markdown" where a table is pasted), default table."""
    p.add_argument("--format", choices=FORMATS + extra, default="table",
                   help="output format (default: table)")


def add_calibration(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", metavar="SET",
                   help="a result set (file, latest, a directory) whose measurements go over the "
                        "sourced default file, where they apply (its chip family, dtypes, kernels "
                        "and sizes); 'default' for the file alone; 'auto[:DIR]' for the newest run "
                        "in DIR (default results) when measured on a catalog GPU and complete. "
                        "Default: the newest complete GPU set without failed cases in "
                        "results/reference/, else the default file")


def add_plot(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--plot", metavar="PNG", help=f"write {what} to this PNG file")


def positive(name: str, value, allow_none: bool = True) -> None:
    """A positive-integer flag, checked before any work starts."""
    if value is None and allow_none:
        return
    if value is None or value < 1:
        raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def add_verdict_flags(p: argparse.ArgumentParser, factor: float, alpha: float) -> None:
    """compare's verdict knobs, shared by compare and nightly (defaults: harness.compare's)."""
    p.add_argument("--factor", type=float, default=factor,
                   help="minimum effect, as a ratio of medians, to call a case slower or faster (default %(default)s)")
    p.add_argument("--alpha", type=float, default=alpha,
                   help="family-wise error rate: each interval is at 1 - alpha/(compared cases) (default %(default)s)")
    p.add_argument("--run-noise", type=float, metavar="FRACTION",
                   help="the machine's run-to-run noise as a fraction (0.03 = 3%%) instead of the estimate from "
                        "the pair's own spread")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 on inconclusive cases too (likely worse, not proven)")


def verdict_options(args) -> dict:
    """The checked keyword arguments of compare.compare_sets from add_verdict_flags' flags."""
    import math

    if not (math.isfinite(args.factor) and args.factor >= 1.0):
        raise UserError(f"--factor {args.factor}: must be >= 1 (1.05 means a 5% change)")
    if not 0.0 < args.alpha < 1.0:
        raise UserError(f"--alpha {args.alpha}: must be between 0 and 1")
    noise = None
    if args.run_noise is not None:
        if not (math.isfinite(args.run_noise) and 0.0 <= args.run_noise < 10.0):
            raise UserError(f"--run-noise {args.run_noise}: must be a fraction >= 0 (0.03 = 3%)")
        noise = math.log1p(args.run_noise)
    return {"factor": args.factor, "alpha": args.alpha, "run_noise": noise, "strict": args.strict}


def check_plot_path(path: str | None) -> None:
    """--plot: a .png in a writable directory, checked before any work."""
    if path is None:
        return
    from pathlib import Path

    from harness.resultset import check_writable_dir

    p = Path(path)
    if p.suffix.lower() != ".png":
        raise UserError(f"--plot {path}: must end in .png (the plot is a PNG image)")
    if p.is_dir():
        raise UserError(f"--plot {path}: is a directory")
    check_writable_dir(p.parent if str(p.parent) else Path("."), "--plot")


def write_figure(fig, path: str, **savefig) -> None:
    """Save a matplotlib figure as PNG atomically (no half-written file on a full disk)."""
    import io

    from harness.resultset import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig)
    write_atomic(path, buf.getvalue())


def emit(fmt: str, *, json_doc=None, records=None, table=None, markdown=None,
         columns: list[str] | None = None, indent: int = 2, json_default=float) -> None:
    """Print a command's output in the --format asked for. Each form is a callable, so only
    the one printed is built: json_doc -> the JSON document (numpy scalars and the like through
    `json_default`), records -> the rows of harness.format.csv_text (`columns` picks and
    orders them), table and markdown -> text. JSON has no NaN or infinity: a figure that is
    not finite is written as null, as csv_text leaves it empty."""
    import json

    if fmt == "json":
        print(json.dumps(_finite(json_doc()), indent=indent, default=json_default,
                         allow_nan=False))
    elif fmt == "csv":
        from harness.format import csv_text

        print(csv_text(records(), columns))
    elif fmt == "markdown":
        print(markdown())
    else:
        print(table())


def _finite(doc):
    """`doc` with every float that is not finite replaced by None (strict JSON)."""
    import math

    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [_finite(v) for v in doc]
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    return doc
