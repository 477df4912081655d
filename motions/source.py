"""The common in-memory form every importer produces, before retargeting.

Importers differ in file format only; they all hand the retargeter the same thing: a skeleton (names, parents,
rest offsets) and per-frame local joint rotations plus root translation, already in metres and Z-up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

# What a take may declare. Frame rate and duration size every later array and the retargeter's work, so a
# header outside these bounds is refused before anything is allocated for it.
MIN_FPS, MAX_FPS = 1.0, 1000.0  # frame time 1 s .. 1 ms
MAX_DURATION_S = 600.0  # 10 minutes; the datasets' longest takes last a few minutes


class MotionImportError(ValueError):
    """Bad input file. The message is one line naming the file and what is wrong."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass
class SourceMotion:
    """A skeleton motion in the source's own joint set.

    joint_names: J names (end sites included, named '<parent>_end').
    parents: (J,) int, parent index, -1 for the root; parents come before children.
    offsets: (J, 3) rest translation of each joint in its parent's frame, metres, Z-up world axes at rest.
    local_rot: (T, J, 4) unit quaternions, w x y z, rotation of each joint relative to its parent.
    root_pos: (T, 3) world position of the root joint, metres, Z-up.
    fps: frames per second of the source.
    """

    joint_names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    local_rot: np.ndarray
    root_pos: np.ndarray
    fps: float
    source_file: str
    source_format: str
    labels: dict = field(default_factory=dict)  # e.g. {"content": "walk", "style": "tired"} or {"name": "walk"}

    @property
    def num_frames(self) -> int:
        return int(self.local_rot.shape[0])

    def index(self, name: str) -> int:
        return self.joint_names.index(name)


def check_fps(path, fps: float) -> None:
    """Refuse a frame rate outside MIN_FPS..MAX_FPS (a hostile header, or a unit mistake)."""
    if not (math.isfinite(fps) and MIN_FPS * (1 - 1e-9) <= fps <= MAX_FPS * (1 + 1e-9)):
        raise MotionImportError(path, f"frame rate {fps:g} fps (frame time {1 / fps if fps else math.inf:g} s) is "
                                      f"outside {MIN_FPS:g}-{MAX_FPS:g} fps "
                                      f"(frame time {1 / MAX_FPS:g}-{1 / MIN_FPS:g} s)")


def check_duration(src: SourceMotion) -> None:
    """Refuse a take longer than MAX_DURATION_S: retargeting resamples it, so its length sizes the work."""
    duration = (src.num_frames - 1) / src.fps
    if duration > MAX_DURATION_S:
        raise MotionImportError(src.source_file, f"{src.num_frames} frames at {src.fps:g} fps last {duration:.6g} s; "
                                                 f"the longest accepted is {MAX_DURATION_S:g} s (import a span: "
                                                 f"FILE@START:END)")


def parse_spec(spec) -> tuple[Path, tuple[float, float] | None]:
    """'FILE' or 'FILE@START:END' (seconds) -> (path, span). A span cuts one skill out of a long take, so that
    a clip can start and end at rest (as ProtoMotions' motion files give start and end times)."""
    text = str(spec)
    path, sep, span = text.rpartition("@")
    if not sep or Path(text).is_file():
        return Path(text), None
    try:
        start, end = (float(x) for x in span.split(":"))
    except ValueError:
        raise MotionImportError(text, f"span '{span}' is not START:END in seconds") from None
    if not (math.isfinite(end) and 0 <= start < end):
        raise MotionImportError(text, f"span '{span}' needs 0 <= START < END")
    return Path(path), (start, end)


def cut(src: SourceMotion, span: tuple[float, float]) -> SourceMotion:
    """The frames of src from span[0] to span[1] seconds, both ends included; labels record the span."""
    first, last = (round(t * src.fps) for t in span)
    if last > src.num_frames - 1:
        raise MotionImportError(src.source_file, f"span ends at {span[1]:g} s but the take lasts "
                                f"{(src.num_frames - 1) / src.fps:.2f} s")
    return replace(src, local_rot=src.local_rot[first:last + 1], root_pos=src.root_pos[first:last + 1],
                   labels={**src.labels, "span_s": [span[0], span[1]]})
