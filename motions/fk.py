"""Forward kinematics of a SourceMotion, in numpy: the reference the importers' tests check against."""
from __future__ import annotations

import numpy as np

from .quat import quat_mul, quat_rotate


def forward_kinematics(parents, offsets, local_rot, root_pos):
    """World joint positions (T,J,3) and rotations (T,J,4) from a parent-before-child skeleton."""
    local_rot = np.asarray(local_rot, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    num_frames, num_joints = local_rot.shape[:2]
    pos = np.zeros((num_frames, num_joints, 3))
    rot = np.zeros((num_frames, num_joints, 4))
    for j, p in enumerate(np.asarray(parents)):
        if p < 0:
            pos[:, j] = root_pos
            rot[:, j] = local_rot[:, j]
        else:
            pos[:, j] = pos[:, p] + quat_rotate(rot[:, p], offsets[j])
            rot[:, j] = quat_mul(rot[:, p], local_rot[:, j])
    return pos, rot


def global_transforms(src):
    """(pos (T,J,3), rot (T,J,4)) of every joint of a SourceMotion, metres, Z-up."""
    return forward_kinematics(src.parents, src.offsets, src.local_rot, src.root_pos)
