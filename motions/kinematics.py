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


def tree_plan(skel: Skeleton):
    """Static plan of a level-by-level pass: the bodies of each tree depth, with their parents' places in the
    concatenation of earlier levels; each body's hinges padded to a common count with an identity slot (J)."""
    parent = np.asarray(skel.parent)
    depth = np.zeros(len(parent), int)
    for b, p in enumerate(parent):  # MuJoCo lists a parent before its children
        depth[b] = 0 if p < 0 else depth[p] + 1
    levels = [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]
    order = np.concatenate(levels)
    place = np.empty(len(parent), int)
    place[order] = np.arange(len(parent))
    joints = [np.flatnonzero(np.asarray(skel.joint_body) == b) for b in range(len(parent))]
    width = max(1, max(len(j) for j in joints))
    slots = np.full((len(parent), width), len(skel.joint_body))
    for b, j in enumerate(joints):
        slots[b, :len(j)] = j
    return levels, [place[parent[lv]] for lv in levels], place, slots


def joint_quats(skel: Skeleton, qpos):
    """(..., J + 1, 4) each hinge's rotation, then an identity in slot J (where `tree_plan` pads a body's hinges)."""
    dt = qpos.dtype
    q = axis_angle_to_quat(jnp.asarray(skel.joint_axis, dt), qpos[..., 7:])
    return jnp.concatenate([q, jnp.broadcast_to(jnp.asarray([1.0, 0, 0, 0], dt), qpos.shape[:-1] + (1, 4))], -2)


def ancestors(parent: np.ndarray) -> np.ndarray:
    """(B, B) float32: row b marks b and every body above it (a sum down the tree is one product with it)."""
    up = np.zeros((len(parent), len(parent)), np.float32)
    for b in range(len(parent)):
        a = b
        while a >= 0:
            up[b, a] = 1.0
            a = parent[a]
    return up


def forward_kinematics(skel: Skeleton, qpos) -> BodyState:
    """World positions and rotations of all bodies for qpos (..., 7 + J), MuJoCo's convention.

    Bodies of one tree depth are composed together (one quaternion product per depth rather than per body), which
    keeps the traced program, and so its compile time, small."""
    levels, parents, place, slots = tree_plan(skel)
    dt = qpos.dtype
    root_pos, root_rot = qpos[..., :3], quat_normalize(qpos[..., 3:7])
    joint_q = joint_quats(skel, qpos)
    joints = joint_q[..., slots[:, 0], :]  # MuJoCo composes a body's joints left to right
    for k in range(1, slots.shape[1]):
        joints = quat_mul(joints, joint_q[..., slots[:, k], :])
    local = quat_mul(jnp.broadcast_to(jnp.asarray(skel.local_quat, dt), joints.shape), joints)
    offset = jnp.asarray(skel.offset, dt)
    (root,) = levels[0]  # one root, whose frame is qpos's free joint
    rot, pos = quat_mul(root_rot, joints[..., root, :])[..., None, :], root_pos[..., None, :]
    for lv, par in zip(levels[1:], parents[1:]):
        prot, ppos = rot[..., par, :], pos[..., par, :]
        rot = jnp.concatenate([rot, quat_mul(prot, local[..., lv, :])], axis=-2)
        pos = jnp.concatenate([pos, ppos + quat_rotate(prot, jnp.broadcast_to(offset[lv], ppos.shape))], axis=-2)
    return BodyState(pos[..., place, :], rot[..., place, :])


def points(state: BodyState, bodies: np.ndarray, offsets: np.ndarray):
    """World positions of points fixed in bodies (e.g. a toe in the foot frame)."""
    off = jnp.asarray(offsets, state.pos.dtype)
    return state.pos[..., bodies, :] + quat_rotate(state.rot[..., bodies, :], jnp.broadcast_to(off, state.pos[..., bodies, :].shape))
