"""Ctrl-C held back while native code starts: a KeyboardInterrupt raised inside a C extension's
import or JAX's backend set-up becomes an ImportError, or crashes the process (seen: jaxlib's
import turned it into "Encountered an error while initializing the extension", and one Ctrl-C
0.1 s after start gave SIGSEGV). Inside `deferred()` a Ctrl-C is only noted; it is raised as
KeyboardInterrupt as soon as the block ends, so the command still stops within a second."""
from __future__ import annotations

import signal
from contextlib import contextmanager


@contextmanager
def deferred():
    pending: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    except ValueError:  # not the main thread: nothing to hold back
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending and previous is not signal.SIG_IGN:
        raise KeyboardInterrupt


def caused_by_interrupt(exc: BaseException) -> bool:
    """True if a KeyboardInterrupt is somewhere in the exception's cause or context chain (an
    extension that turned Ctrl-C into its own error)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
