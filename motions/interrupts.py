"""SIGTERM handled like Ctrl-C by the command-line tools: it raises in the main thread, so the cleanups on the way
out run (a partial video or temporary file is removed; a checkpoint being written stays whole, as it is renamed
into place only once complete) and the tool ends with one line instead of a traceback or a silent kill."""
from __future__ import annotations

import signal


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program was."""


def _raise(signum, frame):
    raise Terminated()


def terminate_as_interrupt() -> None:
    """From now on SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread (called from another
    thread, e.g. a tool run inside a server, nothing changes)."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


def report(prog: str, e: KeyboardInterrupt) -> int:
    """The one line a tool prints on an interrupt, and its exit code (128 + the signal, as a shell reports)."""
    import sys

    sig = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
    print(f"{prog}: interrupted ({sig.name})", file=sys.stderr)
    return 128 + int(sig)
