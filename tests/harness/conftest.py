"""Fixtures shared by the harness tests."""
import hashlib
from pathlib import Path

import pytest


@pytest.fixture
def cli():
    """The real `rackbench` entry point, every sub-command registered."""
    import harness.cli as cli_mod

    return cli_mod.main


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def tree_hash():
    """Hash of a directory tree (names and bytes): proves a command modified nothing."""
    return _tree_hash
