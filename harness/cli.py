"""The `rackbench` command: one entry point, sub-commands registered by small modules.

Each module in COMMAND_MODULES defines `register(subparsers)` which adds its parser and sets
`func` (a callable taking the parsed args and returning an exit code). User errors are
`UserError`, caught here once: one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import UserError

# Order is the order shown in --help.
COMMAND_MODULES = (
    "harness.cmd_run",
    "harness.cmd_show",
    "harness.cmd_devices",
    "harness.cmd_vendor",
    "harness.cmd_catalog",
    "harness.cmd_collective",
    "harness.cmd_fit",
    "harness.cmd_compare",
    "harness.cmd_nightly",
    "harness.cmd_history",
    "harness.cmd_report",
    "harness.cmd_project",
    "harness.cmd_versus",
)

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rackbench",
        description="Measure JAX kernels, keep result sets, compare them, project onto clusters.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"rackbench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"rackbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
