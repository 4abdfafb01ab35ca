"""The `rackbench` command: one entry point, one module per sub-command.

Each command's module (COMMANDS) defines `register(parser)`, which adds the command's flags and
sets `func` (a callable taking the parsed args and returning an exit code). A command module
parses its flags and calls library functions with keyword arguments. Only the invoked command's
module is imported, so `--help` loads none of them and the model commands (`catalog`,
`collective`, `model`, `project`) never load JAX, SciPy or pandas: they start in a fraction of a second.

Input errors of every package (harness.errors.INPUT_ERRORS) are caught here once: one line on
stderr naming the input, exit code 2. Ctrl-C is exit 130 with one line at any moment (a second
Ctrl-C while exiting is ignored), and a closed pipe (`rackbench catalog | head -1`) ends quietly
with exit 0.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from harness.errors import INPUT_ERRORS
from harness.interrupts import caused_by_interrupt, deferred
from harness.interrupts import install as install_interrupt_handler

# (name, one line of help), in the order --help shows them. The module of a command is
# harness/cli/<name with - as _>.py; only the invoked command's module is imported.
COMMANDS = (
    ("run", "measure a suite on this machine and store the result set"),
    ("show", "show a stored result set as a table"),
    ("devices", "show the devices JAX sees and their catalog match"),
    ("vendor-check", "compare a result set with vendor_baselines.py output (same card)"),
    ("plan", "estimate the staged GPU reference run: each stage's cases and time against its budget"),
    ("catalog", "list chips, systems and fabrics, or show one with its sources"),
    ("collective", "model one collective on a catalog system (time, algbw, busbw)"),
    ("fit-fabric", "fit latency + size/bandwidth to a measured collective sweep"),
    ("compare", "compare two result sets; exit 1 if anything got slower or newly fails"),
    ("nightly", "run the suite, compare with the previous set of this machine, write the report"),
    ("history", "trend table and change points over all stored sets of one machine"),
    ("migrate", "rewrite stored result sets at the current schema version"),
    ("report", "write a self-contained HTML report (and Markdown) of a result set"),
    ("model", "model files: a commented template, the shipped models, one model's numbers"),
    ("project", "project training or inference of a model onto a system"),
    ("versus", "CloudMatrix 384 against GB200 NVL72 and H100/H800/H20 clusters"),
    ("validate", "project every published measurement and print the errors per row and mode"),
)


def module_name(command: str) -> str:
    return "harness.cli." + command.replace("-", "_")


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def version() -> str:
    """The installed distribution's version; where the tree runs uninstalled (scripts/bootstrap's
    fallback on an image without setuptools), the version its pyproject.toml declares."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("rackbench")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        try:
            with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as f:
                return str(tomllib.load(f)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


class _Version(argparse.Action):
    """--version, resolved only when asked for (importlib.metadata is not free at start-up)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the version and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"rackbench {version()}")
        parser.exit()


def build_parser(commands=None) -> argparse.ArgumentParser:
    """The whole parser. `commands` names the sub-commands whose flags are registered (their
    modules imported); the others get a stub that carries their help line. None: all."""
    parser = argparse.ArgumentParser(
        prog="rackbench",
        description="Measure JAX kernels, keep result sets, compare them, project onto clusters.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_line in COMMANDS:
        if commands is None or name in commands:
            p = sub.add_parser(name, help=help_line, description=help_line)
            importlib.import_module(module_name(name)).register(p)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def _invoked(argv: list[str]) -> tuple[str, ...]:
    """The sub-command on the command line (the first word that names one), if any."""
    names = {name for name, _ in COMMANDS}
    return tuple(a for a in argv if a in names)[:1]


def _quiet_exit(code: int) -> int:
    """The console script's way out. From here on a second Ctrl-C changes nothing: the exit code
    is decided. After an interrupt the process ends at once (os._exit, after flushing): JAX may
    still be running a computation dispatched before the Ctrl-C, and the interpreter's shutdown
    under it can crash (seen: SIGSEGV instead of 130). Everything worth keeping was written
    atomically (and fsynced) before."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass
    if code == EXIT_INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    return code


def _drop_stdout() -> None:
    # the reader went away (`| head`): say nothing, and keep Python from complaining again
    # when it flushes stdout at exit
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    console = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if console:
        install_interrupt_handler()
    try:
        try:
            with deferred():  # the command's imports (JAX, SciPy) must not see a Ctrl-C half-way
                parser = build_parser(_invoked(argv))
            args = parser.parse_args(argv)
            try:
                code = int(args.func(args) or 0)
            except INPUT_ERRORS as exc:
                print(f"rackbench {args.command}: error: {exc}", file=sys.stderr)
                code = EXIT_USER_ERROR
            except Exception as exc:
                if not caused_by_interrupt(exc):  # a lazy import that turned Ctrl-C into its own error
                    raise
                raise KeyboardInterrupt from None
            sys.stdout.flush()  # a closed pipe shows here, not in Python's exit handler
        except KeyboardInterrupt:
            if console:  # a second Ctrl-C must not interrupt the message
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            print("rackbench: interrupted", file=sys.stderr)
            code = EXIT_INTERRUPTED
    except BrokenPipeError:
        _drop_stdout()
        code = 0
    return _quiet_exit(code) if console else code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
