"""Forward kinematics of the character and quaternion maths, in JAX (jit- and vmap-friendly).

The same functions serve the motion library (reference body states), retargeting (IK residuals) and the
environment's observations, so that every stage agrees on one definition of a pose. Quaternions are w x y z.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import mujoco
import numpy as np


def quat_mul(a, b):
    aw, ax, ay, az = jnp.moveaxis(a, -1, 0)
    bw, bx, by, bz = jnp.moveaxis(b, -1, 0)
    return jnp.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def quat_conj(q):
    return q * jnp.array([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def quat_rotate(q, v):
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * jnp.cross(u, v)
    return v + w * t + jnp.cross(u, t)


def quat_normalize(q):
    return q / jnp.linalg.norm(q, axis=-1, keepdims=True).clip(1e-9)


def axis_angle_to_quat(axis, angle):
    half = 0.5 * angle[..., None]
    return jnp.concatenate([jnp.cos(half), jnp.sin(half) * axis], axis=-1)


def quat_slerp(q0, q1, t):
    """Shortest-path spherical interpolation; t broadcasts against the leading dims."""
    t = jnp.asarray(t)[..., None]
    dot = jnp.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = jnp.where(dot < 0, -q1, q1)
    dot = jnp.abs(dot).clip(0.0, 1.0)
    theta = jnp.arccos(dot)
    sin_theta = jnp.sin(theta)
    small = sin_theta < 1e-6
    w0 = jnp.where(small, 1.0 - t, jnp.sin((1.0 - t) * theta) / jnp.where(small, 1.0, sin_theta))
    w1 = jnp.where(small, t, jnp.sin(t * theta) / jnp.where(small, 1.0, sin_theta))
    return quat_normalize(w0 * q0 + w1 * q1)


def quat_to_tan_norm(q):
    """6-D rotation: the first two columns of the rotation matrix (continuous, as in ASE/PHC)."""
    x = quat_rotate(q, jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0], q.dtype), q.shape[:-1] + (3,)))
    z = quat_rotate(q, jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0], q.dtype), q.shape[:-1] + (3,)))
    return jnp.concatenate([x, z], axis=-1)


def heading_yaw(q):
    """The yaw of q's forward (x) axis about z: the heading of the field's observations."""
    fwd = quat_rotate(q, jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0], q.dtype), q.shape[:-1] + (3,)))
    return jnp.arctan2(fwd[..., 1], fwd[..., 0])


def heading_quat_inv(q):
    """Rotation about z that removes the yaw of q (the heading frame of the field's observations)."""
    yaw = heading_yaw(q)
    axis = jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0], q.dtype), q.shape[:-1] + (3,))
    return axis_angle_to_quat(axis, -yaw)


class Skeleton(NamedTuple):
    """Static kinematic tree of the character as arrays (bodies without the world body)."""

    parent: np.ndarray  # (B,) index into bodies, -1 for the root
    offset: np.ndarray  # (B, 3) body position in the parent frame
    local_quat: np.ndarray  # (B, 4) body orientation in the parent frame
    joint_body: np.ndarray  # (J,) body index of each hinge, in qpos order
    joint_axis: np.ndarray  # (J, 3)

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> "Skeleton":
        hinge = [j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
        return cls(
            parent=model.body_parentid[1:] - 1,
            offset=model.body_pos[1:].copy(),
            local_quat=model.body_quat[1:].copy(),
            joint_body=model.jnt_bodyid[hinge] - 1,
            joint_axis=model.jnt_axis[hinge].copy(),
        )


class BodyState(NamedTuple):
    pos: jnp.ndarray  # (..., B, 3)
    rot: jnp.ndarray  # (..., B, 4)


def forward_kinematics(skel: Skeleton, qpos) -> BodyState:
    """World positions and rotations of all bodies for qpos (..., 7 + J), MuJoCo's convention."""
    root_pos, root_rot, angles = qpos[..., :3], quat_normalize(qpos[..., 3:7]), qpos[..., 7:]
    joint_q = axis_angle_to_quat(jnp.asarray(skel.joint_axis, qpos.dtype), angles)  # (..., J, 4)
    pos, rot = [], []
    for b, p in enumerate(skel.parent):
        if p < 0:
            r, x = root_rot, root_pos
        else:
            r = quat_mul(rot[p], jnp.broadcast_to(jnp.asarray(skel.local_quat[b], qpos.dtype), root_rot.shape))
            x = pos[p] + quat_rotate(rot[p], jnp.broadcast_to(jnp.asarray(skel.offset[b], qpos.dtype), root_pos.shape))
        for j in np.flatnonzero(skel.joint_body == b):  # MuJoCo composes a body's joints left to right
            r = quat_mul(r, joint_q[..., j, :])
        pos.append(x)
        rot.append(r)
    return BodyState(jnp.stack(pos, axis=-2), jnp.stack(rot, axis=-2))


def points(state: BodyState, bodies: np.ndarray, offsets: np.ndarray):
    """World positions of points fixed in bodies (e.g. a toe in the foot frame)."""
    off = jnp.asarray(offsets, state.pos.dtype)
    return state.pos[..., bodies, :] + quat_rotate(state.rot[..., bodies, :], jnp.broadcast_to(off, state.pos[..., bodies, :].shape))
