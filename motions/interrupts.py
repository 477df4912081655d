"""SIGTERM handled like Ctrl-C by the command-line tools: it raises in the main thread, so the cleanups on the way
out run (a partial video or temporary file is removed; a checkpoint being written stays whole, as it is renamed
into place only once complete) and the tool ends with one line instead of a traceback or a silent kill.

An interrupt raised inside a garbage-collection callback (JAX runs one at every collection), where Python prints
and ignores exceptions, would be lost and the tool would run on to its end: it is delivered again (`_redeliver`).
A compilation interrupted goes on on XLA's worker thread, and JAX's exit handler would free the client under it (a
segmentation fault after the one line): the tool ends without exit handlers (`report`)."""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import NoReturn


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program was."""


_terminated = False  # a SIGTERM came since terminate_as_interrupt(): whatever error follows, the run was interrupted


def _raise(signum, frame):
    global _terminated
    _terminated = True
    raise Terminated()


def terminate_as_interrupt() -> None:
    """From now on SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread (called from another
    thread, e.g. a tool run inside a server, nothing changes). An interrupt raised where Python ignores exceptions
    is delivered again (`_redeliver`)."""
    global _previous_hook, _terminated
    if threading.current_thread() is threading.main_thread():
        _terminated = False
        signal.signal(signal.SIGTERM, _raise)
        if sys.unraisablehook is not _redeliver:
            _previous_hook, sys.unraisablehook = sys.unraisablehook, _redeliver


_previous_hook = sys.__unraisablehook__


def _redeliver(unraisable) -> None:
    """sys.unraisablehook: an interrupt ignored (raised in a garbage-collection callback, a __del__) is sent to the
    main thread again shortly, from another thread, so that it is raised once the ignoring code has returned; any
    other unraisable exception goes to the hook installed before (Python's prints it)."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        _previous_hook(unraisable)
        return
    sig = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
    again = threading.Timer(0.05, signal.pthread_kill, (threading.main_thread().ident, sig))
    again.daemon = True
    again.start()


def interrupt_behind(e: BaseException) -> KeyboardInterrupt | None:
    """The interrupt `e` was raised while unwinding, if any: a library that turns an interrupt into its own error on
    the way out (a video writer closed mid-frame) must not make an interrupted run look like a failed one. An error
    that does not chain it (one made in C++ code the signal cut short) still follows a SIGTERM received."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return Terminated() if _terminated else None


@contextmanager
def as_interrupt():
    """Around a tool's work: an error that an interrupt caused (`interrupt_behind`) is raised as that interrupt, so
    the tool ends as interrupted (128 + the signal), not as failed (1)."""
    try:
        yield
    except Exception as e:
        if (interrupt := interrupt_behind(e)) is not None:
            raise interrupt from None
        raise


def report(prog: str, e: KeyboardInterrupt) -> NoReturn:
    """Print the one line of an interrupt and end the process with exit code 128 + the signal, as a shell reports.
    It ends at once, without Python's exit handlers: the cleanups ran on the way here, and JAX's handler would
    free XLA's client under a compilation still running on a worker thread (a segmentation fault)."""
    sig = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
    print(f"{prog}: interrupted ({sig.name})", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + int(sig))
