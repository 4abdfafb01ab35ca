"""Ctrl-C held back while native code starts: a KeyboardInterrupt raised inside a C extension's
import or JAX's backend set-up becomes an ImportError, or crashes the process (seen: jaxlib's
import turned it into "Encountered an error while initializing the extension", and one Ctrl-C
0.1 s after start gave SIGSEGV). Inside `deferred()` a Ctrl-C is only noted; it is raised as
KeyboardInterrupt as soon as the block ends, so the command still stops within a second.

Outside it, a Ctrl-C that lands where Python ignores exceptions (a garbage-collection callback
such as JAX's `_xla_gc_callback`, a `__del__`) would be printed as "Exception ignored" and
lost, and the run would go on: `install()` makes the console's handler send it again a moment
later instead (seen on the loaded 2-core machine, 1.5 s into `rackbench run`)."""
from __future__ import annotations

import gc
import os
import signal
import threading
from contextlib import contextmanager

# How long a Ctrl-C that landed in a garbage-collection callback waits before it is sent again
REDELIVER_S = 0.05


def in_ignoring_context(frame) -> bool:
    """Whether `frame` (or a caller of it) runs where Python prints and drops exceptions: a
    gc callback or a `__del__` method."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _redeliver() -> None:
    timer = threading.Timer(REDELIVER_S, os.kill, (os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()


def _on_sigint(signum, frame) -> None:
    if in_ignoring_context(frame):
        _redeliver()  # raised here it would be dropped; raised a moment later it is not
        return
    raise KeyboardInterrupt


def install() -> None:
    """The console's Ctrl-C handler (main thread only): KeyboardInterrupt, as Python's own,
    except where Python would drop it (in_ignoring_context)."""
    try:
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread
        pass


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
