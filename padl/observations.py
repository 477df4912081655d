"""Observations of the imitation environment: pure JAX functions of arrays, shared by both physics backends.

Everything the policy and the discriminator see is expressed in the character's **heading frame** (the world
rotated about z so that the root faces +x, origin under nothing: only rotations are removed), so that a motion
looks the same whichever way the character walks. Layouts and sizes (B = 15 bodies, J = 28 hinges, E = 5 key
bodies, K reference frames, H stacked discriminator frames):

    policy_obs       1 + 3(B-1) + 6B + 3B + 3B              = 223
    reference_obs    K * (3B + 6B) + 3                      = 273 for K = 2
    disc_obs_frame   1 + 6 + 3 + 3 + J + J + 3E             = 84  (H = 10 stacked: 840)

`obs_sizes(config)` returns them for an environment configuration.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from motions import kinematics as K

NUM_BODIES = 15
NUM_JOINTS = 28
NUM_KEY_BODIES = 5
PHASE_SIZE = 3  # phase in [0, 1], sin and cos of 2*pi*phase


def obs_sizes(config=None) -> dict[str, int]:
    """Sizes of each observation part for an `EnvConfig.obs` (None: the defaults)."""
    k = getattr(config, "ref_frames", 2)
    h = getattr(config, "disc_frames", 10)
    policy = 1 + 3 * (NUM_BODIES - 1) + 12 * NUM_BODIES
    reference = k * 9 * NUM_BODIES + PHASE_SIZE
    disc_frame = 13 + 2 * NUM_JOINTS + 3 * NUM_KEY_BODIES
    return {"policy": policy, "reference": reference, "obs": policy + reference, "disc_frame": disc_frame,
            "disc": h * disc_frame, "action": NUM_JOINTS}


def _rotate(q, v):
    """quat_rotate with q broadcast over v's extra body axis."""
    return K.quat_rotate(jnp.broadcast_to(q, v.shape[:-1] + (4,)), v)


def _heading(root_rot):
    """(..., 1, 4) inverse heading rotation, ready to broadcast over bodies."""
    return K.heading_quat_inv(root_rot)[..., None, :]


def policy_obs(body_pos, body_rot, body_vel, body_angvel):
    """(..., 223): root height; body positions relative to the root (root excluded); 6-D rotations,
    linear and angular velocities of all bodies; all in the heading frame. Inputs are world-frame
    (..., B, 3|4) arrays with the root first."""
    hq = _heading(body_rot[..., 0, :])
    flat = lambda x: x.reshape(x.shape[:-2] + (-1,))
    rel = _rotate(hq, body_pos[..., 1:, :] - body_pos[..., :1, :])
    rot = K.quat_to_tan_norm(K.quat_mul(jnp.broadcast_to(hq, body_rot.shape), body_rot))
    return jnp.concatenate([
        body_pos[..., 0, 2:3], flat(rel), flat(rot), flat(_rotate(hq, body_vel)), flat(_rotate(hq, body_angvel)),
    ], axis=-1)


def reference_obs(root_pos, root_rot, ref_pos, ref_rot, phase):
    """(..., K*135 + 3): the next K reference frames' body positions (relative to the character's root) and
    6-D rotations, both in the character's current heading frame, then the phase features.

    root_pos (..., 3), root_rot (..., 4): the simulated root now; ref_pos (..., K, B, 3), ref_rot (..., K, B, 4);
    phase (...,) in [0, 1] (time in clip / clip duration). Seeing the reference relative to itself tells the
    policy both where to go and how far off it is.
    """
    hq = K.heading_quat_inv(root_rot)[..., None, None, :]
    pos = K.quat_rotate(jnp.broadcast_to(hq, ref_pos.shape[:-1] + (4,)), ref_pos - root_pos[..., None, None, :])
    rot = K.quat_to_tan_norm(K.quat_mul(jnp.broadcast_to(hq, ref_rot.shape), ref_rot))
    frames = jnp.concatenate([pos, rot], axis=-1)
    angle = 2.0 * jnp.pi * phase
    return jnp.concatenate([
        frames.reshape(frames.shape[:-3] + (-1,)), phase[..., None], jnp.sin(angle)[..., None], jnp.cos(angle)[..., None],
    ], axis=-1)


def disc_obs_frame(qpos, qvel, key_body_pos):
    """(..., 84), one frame of the discriminator's (AMP/ASE) observation: root height, root rotation 6-D in the
    heading frame, root linear and angular velocity in the heading frame, the 28 joint angles and velocities,
    and the E key bodies' positions relative to the root in the heading frame. qvel follows MuJoCo (free
    joint angular velocity in the root's local frame). Frames are stacked, newest first, by the environment."""
    root_pos, root_rot = qpos[..., :3], K.quat_normalize(qpos[..., 3:7])
    hq = K.heading_quat_inv(root_rot)
    ang_world = K.quat_rotate(root_rot, qvel[..., 3:6])
    key = _rotate(hq[..., None, :], key_body_pos - root_pos[..., None, :])
    return jnp.concatenate([
        root_pos[..., 2:3], K.quat_to_tan_norm(K.quat_mul(hq, root_rot)),
        K.quat_rotate(hq, qvel[..., :3]), K.quat_rotate(hq, ang_world),
        qpos[..., 7:], qvel[..., 6:], key.reshape(key.shape[:-2] + (-1,)),
    ], axis=-1)


def body_velocities(skel: K.Skeleton, qpos, qvel, body_pos, body_rot):
    """World linear and angular velocities (..., B, 3) of the body origins from qvel, by propagating down the
    tree (hinges sit at their body's origin). Both backends derive them from (qpos, qvel) with this one
    function, so their observations agree for the same state. body_pos/rot come from forward_kinematics.

    All bodies at once: each body's own angular velocity relative to its parent, then sums over its ancestors
    (a constant matrix), which keeps the traced program small."""
    levels, _, _, slots = K.tree_plan(skel)
    dt = qpos.dtype
    joint_q = K.joint_quats(skel, qpos)
    axis = jnp.concatenate([jnp.asarray(skel.joint_axis, dt), jnp.zeros((1, 3), dt)])
    rate = jnp.concatenate([qvel[..., 6:], jnp.zeros(qvel.shape[:-1] + (1,), dt)], axis=-1)
    # Joints compose left to right (r = r_pre Rx Ry Rz): the world axis of a body's joint k is the body rotation
    # with its joints after k undone, applied to the joint's local axis.
    r, rel = body_rot, 0.0
    for k in reversed(range(slots.shape[1])):
        j = slots[:, k]
        rel = rel + K.quat_rotate(r, jnp.broadcast_to(axis[j], body_pos.shape)) * rate[..., j, None]
        r = K.quat_mul(r, K.quat_conj(joint_q[..., j, :]))
    parent = np.asarray(skel.parent)
    root = levels[0][0]
    rel = rel.at[..., root, :].add(K.quat_rotate(body_rot[..., root, :], qvel[..., 3:6]))
    up = K.ancestors(parent)
    ang = jnp.einsum("ba,...ai->...bi", up, rel)
    p = np.where(parent < 0, np.arange(len(parent)), parent)
    edge = jnp.cross(ang[..., p, :], body_pos - body_pos[..., p, :])  # zero for the root
    edge = edge.at[..., root, :].add(qvel[..., :3])
    return jnp.einsum("ba,...ai->...bi", up, edge), ang
