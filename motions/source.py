"""The common in-memory form every importer produces, before retargeting.

Importers differ in file format only; they all hand the retargeter the same thing: a skeleton (names, parents,
rest offsets) and per-frame local joint rotations plus root translation, already in metres and Z-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
