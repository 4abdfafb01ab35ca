"""How sizes are written in case names, one form for every kernel; no JAX here, so the harness
can rename the cases of older result sets without importing it."""
from __future__ import annotations

import re


def size_label(size_bytes: int) -> str:
    """Whole binary units without a space (1KiB, 16MiB, 1GiB), bytes otherwise (1000B).
    GiB = 2**30 (ARCHITECTURE.md)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size_bytes >= scale and size_bytes % scale == 0:
            return f"{size_bytes // scale}{unit}"
    return f"{size_bytes}B"


# Case names written before sizes had one form: the stream cases named their buffer in bytes
# (membw/stream_add/fp32/16777216B, now .../16MiB).
_OLD_STREAM = re.compile(r"(membw/stream_add/[A-Za-z0-9]+/)([0-9]+)B")


def current_name(name: str) -> str:
    """A case name as this version of the suite writes it (older sets are renamed on load, so
    compare, history and nightly pair them with new ones)."""
    m = _OLD_STREAM.fullmatch(name)
    return m.group(1) + size_label(int(m.group(2))) if m else name
