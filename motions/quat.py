"""Small numpy quaternion helpers, w x y z, vectorised over leading dimensions.

One convention everywhere in the importers (wxyz, Hamilton product, active rotations) so that no loader
has to remember scipy's xyzw order; scipy is used only for the matrix conversion.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

_AXES = {"X": 0, "Y": 1, "Z": 2}


def quat_normalize(q):
    """Unit quaternions (input may drift from unit length in files and after products)."""
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_conj(q):
    """Conjugate, i.e. the inverse of a unit quaternion."""
    q = np.asarray(q, dtype=np.float64)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_mul(a, b):
    """Hamilton product a*b: rotate by b first, then by a."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def quat_rotate(q, v):
    """Rotate vectors v (...,3) by unit quaternions q (...,4): v + 2w(u x v) + 2u x (u x v)."""
    q, v = np.asarray(q, dtype=np.float64), np.asarray(v, dtype=np.float64)
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def axis_angle_to_quat(rotvec):
    """Rotation vectors (axis * angle in radians, as SMPL/AMASS store them) to quaternions."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(a/2)/a -> 1/2 as a -> 0; the series keeps tiny rotations exact
    k = np.where(angle > 1e-8, np.sin(half) / np.where(angle > 1e-8, angle, 1.0), 0.5 - angle**2 / 48.0)
    return np.concatenate([np.cos(half), rotvec * k], axis=-1)


def quat_about_axis(axis: str, angle_rad):
    """Rotation by angle (radians, any shape) about the principal axis 'X', 'Y' or 'Z'."""
    angle_rad = np.asarray(angle_rad, dtype=np.float64)
    q = np.zeros(angle_rad.shape + (4,))
    q[..., 0] = np.cos(0.5 * angle_rad)
    q[..., 1 + _AXES[axis.upper()]] = np.sin(0.5 * angle_rad)
    return q


def quat_from_euler(angles_deg, order: str):
    """Euler angles in degrees, intrinsic, applied in the listed order: 'ZXY' -> R = Rz @ Rx @ Ry.

    This is how BVH channels compose (the first listed rotation channel is the outermost), for any
    number of rotation channels.
    """
    angles = np.radians(np.asarray(angles_deg, dtype=np.float64))
    if angles.shape[-1] != len(order):
        raise ValueError(f"{angles.shape[-1]} angles for order {order!r}")
    q = np.zeros(angles.shape[:-1] + (4,))
    q[..., 0] = 1.0
    for i, axis in enumerate(order):
        q = quat_mul(q, quat_about_axis(axis, angles[..., i]))
    return q


def quat_to_matrix(q):
    """Unit quaternions (...,4) to rotation matrices (...,3,3)."""
    q = np.asarray(q, dtype=np.float64)
    flat = q.reshape(-1, 4)
    m = Rotation.from_quat(flat[:, [1, 2, 3, 0]]).as_matrix()
    return m.reshape(q.shape[:-1] + (3, 3))


def quat_from_matrix(m):
    """Rotation matrices (...,3,3) to unit quaternions (...,4) with w >= 0."""
    m = np.asarray(m, dtype=np.float64)
    xyzw = Rotation.from_matrix(m.reshape(-1, 3, 3)).as_quat()
    q = xyzw[:, [3, 0, 1, 2]]
    q = np.where(q[:, :1] < 0, -q, q)
    return q.reshape(m.shape[:-2] + (4,))


def quat_slerp(q0, q1, t):
    """Spherical interpolation along the shorter arc; t broadcasts against the leading dims."""
    q0, q1 = quat_normalize(q0), quat_normalize(q1)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-6
    safe = np.where(small, 1.0, sin_theta)
    w0 = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(small, t, np.sin(t * theta) / safe)
    return quat_normalize(w0 * q0 + w1 * q1)


# Y-up -> Z-up changes of axes; both are proper rotations, so handedness is kept, and both end with the
# character facing +x with its left on +y (the DeepMimic / AMP / MuJoCo-humanoid convention).
# For Y-up data facing +x (DeepMimic): +90 degrees about x, (x, y, z) -> (x, -z, y).
Y_UP_TO_Z_UP = np.array([np.sqrt(0.5), np.sqrt(0.5), 0.0, 0.0])
# For Y-up data facing +z (BVH convention, CMU, SMPL): 120 degrees about (1,1,1), (x, y, z) -> (z, x, y).
Y_UP_Z_FWD_TO_Z_UP = np.array([0.5, 0.5, 0.5, 0.5])


def change_basis(rot, offsets, root_pos, c=Y_UP_TO_Z_UP):
    """Re-express a skeleton in new world axes: vectors v' = C v, rotations q' = C q C^-1."""
    c_inv = quat_conj(c)
    rot = quat_mul(quat_mul(c, rot), c_inv)
    return rot, quat_rotate(c, offsets), quat_rotate(c, root_pos)
