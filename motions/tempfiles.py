"""Temporary files of atomic writes, named with the writing process's id so that a later run can tell the leftovers
of a killed writer (swept: that process is gone) from the files of a writer still at work (kept), and never touches
a file it did not name itself."""
from __future__ import annotations

import os
import re
from pathlib import Path

# padl.checkpoint's temporaries: .tmp-<pid>-<mkstemp's 8 characters><suffix>
CHECKPOINT_TEMP = re.compile(r"\.tmp-(?P<pid>\d+)-[a-z0-9_]{8}\.(npz|json|probe)")
# rendering.offscreen.VideoWriter's: .<stem>.partial-<pid>.<the video's suffix>
PARTIAL_VIDEO = re.compile(r"\..+\.partial-(?P<pid>\d+)\.[A-Za-z0-9]+")


def prefix() -> str:
    """The `tempfile.mkstemp` prefix of this process's checkpoint temporaries (`CHECKPOINT_TEMP`)."""
    return f".tmp-{os.getpid()}-"


def alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep(folder: str | os.PathLike, pattern: re.Pattern = CHECKPOINT_TEMP) -> list[Path]:
    """Remove the files in `folder` whose whole name matches `pattern` and whose writer is no longer running;
    returns them. A missing or unreadable folder has none."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m and entry.is_file(follow_symlinks=False) and not alive(int(m["pid"])):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed
