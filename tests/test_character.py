import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from characters.character import Character
from motions.kinematics import Skeleton, forward_kinematics, points


def test_layout_matches_the_field_style():
    c = Character()
    assert len(c.body_names) == 15
    assert c.num_dof == 28 and c.model.nu == 28
    assert c.model.nq == 7 + 28
    assert 50 <= c.mass <= 70
    assert 1.55 <= c.standing_height <= 1.85
    assert set(c.key_body_names) == {"head", "right_hand", "left_hand", "right_foot", "left_foot"}
    lo, hi = c.joint_limits.T
    assert np.all(lo < hi)
    kp, kd = c.pd_gains
    assert np.all(kp > 0) and np.all(kd > 0)


def test_stands_under_pd_hold_for_ten_seconds():
    c = Character()
    m, d = c.model, mujoco.MjData(c.model)
    d.ctrl[:] = c.rest_qpos()[7:][c.actuator_joint]
    for _ in range(int(10.0 / m.opt.timestep)):
        mujoco.mj_step(m, d)
    assert d.qpos[2] > 0.9 * c.rest_qpos()[2], "pelvis sank: the character fell"
    assert np.linalg.norm(d.qpos[:2]) < 0.05, "the character drifted"
    assert np.abs(d.qpos[7:]).max() < np.deg2rad(3)
    assert np.linalg.norm(d.qvel) < 1e-2


def test_jax_forward_kinematics_matches_mujoco():
    c = Character()
    m, d = c.model, mujoco.MjData(c.model)
    rng = np.random.default_rng(0)
    lo, hi = c.joint_limits.T
    skel = Skeleton.from_model(m)
    fk = jax.jit(lambda q: forward_kinematics(skel, q))
    for _ in range(5):
        q = c.rest_qpos()
        q[:3] = rng.normal(size=3)
        quat = rng.normal(size=4)
        q[3:7] = quat / np.linalg.norm(quat)
        q[7:] = rng.uniform(lo, hi)
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        state = fk(jnp.asarray(q))
        np.testing.assert_allclose(state.pos, d.xpos[1:], atol=1e-5)
        # quaternions are equal up to sign
        dots = np.abs(np.sum(np.asarray(state.rot) * d.xquat[1:], axis=-1))
        np.testing.assert_allclose(dots, 1.0, atol=1e-5)
        toe = points(state, c.point_bodies, c.point_offsets)[c.point_names.index("left_toe")]
        foot = c.body_index("left_foot") + 1
        np.testing.assert_allclose(toe, d.xpos[foot] + d.xmat[foot].reshape(3, 3) @ np.array([0.12, 0, -0.05]), atol=1e-5)
