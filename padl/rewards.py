"""DeepMimic-style tracking reward: named exp(-k * error) terms and their weighted sum, pure JAX.

Defaults follow DeepMimic (Peng et al. 2018, Sec. 5 and its code): pose w=0.5 k=2, velocity w=0.05 k=0.1,
end-effector (key body) w=0.15 k=40, root w=0.2 k=5 plus centre of mass w=0.1 k=10. We have no centre-of-mass
term, so its weight goes to the root term (w=0.3) and the root error keeps DeepMimic's composition
(position^2 + 0.1 rotation^2 + 0.01 linear velocity^2 + 0.001 angular velocity^2) and k=5.
Weights sum to 1, so `tracking` lies in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from motions import kinematics as K


@dataclass(frozen=True)
class RewardConfig:
    pose_weight: float = 0.5
    pose_scale: float = 2.0  # on the sum over joints of squared rotation angles (rad^2)
    vel_weight: float = 0.05
    vel_scale: float = 0.1  # on the sum of squared joint-velocity errors ((rad/s)^2)
    key_body_weight: float = 0.15
    key_body_scale: float = 40.0  # on the sum over key bodies of squared root-relative position errors (m^2)
    root_weight: float = 0.3
    root_scale: float = 5.0  # on pos^2 + 0.1 rot^2 + 0.01 vel^2 + 0.001 angvel^2 of the root


def rotation_angle(q):
    """Angle (rad, in [0, pi]) of unit quaternions (..., 4)."""
    return 2.0 * jnp.arctan2(jnp.linalg.norm(q[..., 1:], axis=-1), jnp.abs(q[..., 0]))


def local_rotations(body_rot, parent: np.ndarray):
    """(..., B-1, 4) each non-root body's rotation relative to its parent: the joint rotations."""
    p = np.asarray(parent)[1:]
    return K.quat_mul(K.quat_conj(body_rot[..., p, :]), body_rot[..., 1:, :])


def mean_body_pos_error(sim_pos, ref_pos):
    """(...,) mean over bodies of the Euclidean position error (m): the termination and success metric."""
    return jnp.mean(jnp.linalg.norm(sim_pos - ref_pos, axis=-1), axis=-1)


def tracking_terms(cfg: RewardConfig, parent: np.ndarray, key_bodies: np.ndarray,
                   sim_qpos, sim_qvel, sim_pos, sim_rot, ref_qpos, ref_qvel, ref_pos, ref_rot):
    """Dict of (...,) rewards: pose, vel, key_body, root, and `tracking` = their weighted sum.

    Pose compares joint (parent-relative) rotations rather than world rotations, as DeepMimic does, so that a
    root error is charged once, in `root`, not again in every body below it.
    """
    pose_err = jnp.sum(rotation_angle(K.quat_mul(
        local_rotations(sim_rot, parent), K.quat_conj(local_rotations(ref_rot, parent)))) ** 2, axis=-1)
    vel_err = jnp.sum((sim_qvel[..., 6:] - ref_qvel[..., 6:]) ** 2, axis=-1)
    rel = lambda pos: pos[..., key_bodies, :] - pos[..., :1, :]
    key_err = jnp.sum((rel(sim_pos) - rel(ref_pos)) ** 2, axis=(-1, -2))
    sim_root_rot, ref_root_rot = sim_rot[..., 0, :], ref_rot[..., 0, :]
    root_err = (
        jnp.sum((sim_qpos[..., :3] - ref_qpos[..., :3]) ** 2, axis=-1)
        + 0.1 * rotation_angle(K.quat_mul(sim_root_rot, K.quat_conj(ref_root_rot))) ** 2
        + 0.01 * jnp.sum((sim_qvel[..., :3] - ref_qvel[..., :3]) ** 2, axis=-1)
        + 0.001 * jnp.sum((K.quat_rotate(sim_root_rot, sim_qvel[..., 3:6])
                           - K.quat_rotate(ref_root_rot, ref_qvel[..., 3:6])) ** 2, axis=-1)
    )
    terms = {
        "pose": jnp.exp(-cfg.pose_scale * pose_err),
        "vel": jnp.exp(-cfg.vel_scale * vel_err),
        "key_body": jnp.exp(-cfg.key_body_scale * key_err),
        "root": jnp.exp(-cfg.root_scale * root_err),
    }
    terms["tracking"] = (cfg.pose_weight * terms["pose"] + cfg.vel_weight * terms["vel"]
                         + cfg.key_body_weight * terms["key_body"] + cfg.root_weight * terms["root"])
    return terms
