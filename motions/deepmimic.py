"""DeepMimic motion importer (humanoid3d JSON clips): Y-up metres in, Z-up metres out."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .bvh import read_text, snap_fps
from .quat import change_basis, quat_about_axis, quat_normalize
from .source import MotionImportError, SourceMotion, check_fps

# (name, parent, offset from parent in DeepMimic's Y-up frame (+x forward, +z right), values in a frame).
# Listed in the order the values follow each other in a frame row; the skeleton is DeepMimic's humanoid3d.
_JOINTS = [
    ("root", None, (0.0, 0.0, 0.0), 4),
    ("chest", "root", (0.0, 0.236151, 0.0), 4),
    ("neck", "chest", (0.0, 0.223894, 0.0), 4),
    ("right_hip", "root", (0.0, 0.0, 0.084887), 4),
    ("right_knee", "right_hip", (0.0, -0.421546, 0.0), 1),
    ("right_ankle", "right_knee", (0.0, -0.40987, 0.0), 4),
    ("right_shoulder", "chest", (-0.02405, 0.24350, 0.18311), 4),
    ("right_elbow", "right_shoulder", (0.0, -0.274788, 0.0), 1),
    ("left_hip", "root", (0.0, 0.0, -0.084887), 4),
    ("left_knee", "left_hip", (0.0, -0.421546, 0.0), 1),
    ("left_ankle", "left_knee", (0.0, -0.40987, 0.0), 4),
    ("left_shoulder", "chest", (-0.02405, 0.24350, -0.18311), 4),
    ("left_elbow", "left_shoulder", (0.0, -0.274788, 0.0), 1),
]
# End sites: wrists, toes and the top of the head, which the clips do not animate.
_ENDS = [
    ("neck_end", "neck", (0.0, 0.25, 0.0)),
    ("right_elbow_end", "right_elbow", (0.0, -0.258947, 0.0)),
    ("right_ankle_end", "right_ankle", (0.17, -0.06, 0.0)),
    ("left_elbow_end", "left_elbow", (0.0, -0.258947, 0.0)),
    ("left_ankle_end", "left_ankle", (0.17, -0.06, 0.0)),
]
VALUES_PER_FRAME = 1 + 3 + sum(n for *_, n in _JOINTS)  # dt, root position, rotations: 44


def _frames(path, doc) -> np.ndarray:
    """The Frames table as a (T, 44) float array, every malformed row named by its index."""
    if not isinstance(doc, dict) or "Frames" not in doc:
        raise MotionImportError(path, "no 'Frames' key (not a DeepMimic motion?)")
    rows = doc["Frames"]
    if not isinstance(rows, list):
        raise MotionImportError(path, "'Frames' is not a list")
    if not rows:
        raise MotionImportError(path, "zero frames")
    out = np.empty((len(rows), VALUES_PER_FRAME))
    for k, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != VALUES_PER_FRAME:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise MotionImportError(path, f"frame {k}: expected {VALUES_PER_FRAME} values, got {got}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            raise MotionImportError(path, f"frame {k}: non-numeric value")
        out[k] = row
    bad = np.argwhere(~np.isfinite(out))
    if len(bad):
        raise MotionImportError(path, f"non-finite value {out[tuple(bad[0])]} in frame {bad[0][0]}")
    return out


def _fps(path, dt) -> float:
    """Frames are evenly spaced except that the last dt may be 0 (it closes the clip); use the median."""
    body = dt[:-1] if len(dt) > 1 else dt
    bad = np.flatnonzero(body <= 0)
    if len(bad) or dt[-1] < 0:
        k = int(bad[0]) if len(bad) else len(dt) - 1
        raise MotionImportError(path, f"frame {k}: dt must be positive, got {dt[k]}")
    fps = 1.0 / float(np.median(body))
    check_fps(path, fps)
    return snap_fps(fps)


def load_deepmimic(path) -> SourceMotion:
    """Parse a DeepMimic humanoid3d clip; 1-DoF knees and elbows turn about their local z axis."""
    try:
        doc = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise MotionImportError(path, f"invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    frames = _frames(path, doc)
    fps = _fps(path, frames[:, 0])
    num_frames = len(frames)
    names = [n for n, *_ in _JOINTS] + [n for n, *_ in _ENDS]
    parent_names = [p for _, p, *_ in _JOINTS] + [p for _, p, _ in _ENDS]
    parents = np.array([-1 if p is None else names.index(p) for p in parent_names])
    offsets = np.array([o for _, _, o, _ in _JOINTS] + [o for *_, o in _ENDS], dtype=np.float64)

    rot = np.zeros((num_frames, len(names), 4))
    rot[..., 0] = 1.0
    col = 4
    for j, (name, _, _, dof) in enumerate(_JOINTS):
        if dof == 4:
            q = frames[:, col:col + 4]
            norms = np.linalg.norm(q, axis=-1)
            if (norms < 1e-6).any():
                k = int(np.argmax(norms < 1e-6))
                raise MotionImportError(path, f"frame {k}: zero-length quaternion for {name}")
            rot[:, j] = quat_normalize(q)
        else:
            rot[:, j] = quat_about_axis("Z", frames[:, col])
        col += dof

    local_rot, offsets, root_pos = change_basis(rot, offsets, frames[:, 1:4])
    stem = Path(path).stem
    labels = {"name": stem.removeprefix("humanoid3d_"), "loop": doc.get("Loop")}
    return SourceMotion(joint_names=names, parents=parents, offsets=offsets, local_rot=local_rot,
                        root_pos=root_pos, fps=fps, source_file=str(path),
                        source_format="deepmimic", labels=labels)
