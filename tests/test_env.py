"""The imitation environment: reset on the reference, both physics backends agreeing, terminations, bad input,
the Gymnasium wrapper and MJX sharding. Each env instance compiles its jitted functions once (tens of seconds
on a small CPU), so envs are module fixtures shared by the tests."""
import re
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from characters.character import Character
from motions import kinematics as K
from motions.library import MotionLibrary
from padl import observations as O
from padl.env import ActionConfig, EnvConfig, EpisodeConfig, ImitationEnv, PhysicsConfig, StartConfig, fallen
from padl.evaluate import rollout
from padl.rewards import RewardConfig, mean_body_pos_error, tracking_terms
from synthetic import write_synthetic_library

REPO = Path(__file__).resolve().parents[1]
N = 4


@pytest.fixture(scope="module")
def synth_path(tmp_path_factory) -> Path:
    return write_synthetic_library(tmp_path_factory.mktemp("lib") / "synthetic")


@pytest.fixture(scope="module")
def synth(synth_path) -> MotionLibrary:
    return MotionLibrary(synth_path)


@pytest.fixture(scope="module")
def walk_lib(tmp_path_factory) -> MotionLibrary:
    data = Path(os.environ.get("PADL_SHARED_DATA", REPO.parent / "shared" / "data"))
    src = data / "deepmimic" / "motions" / "humanoid3d_walk.txt"
    if not src.is_file():
        pytest.skip(f"real mocap not found at {data} (set PADL_SHARED_DATA)")
    from motions.importer import import_clips

    out = tmp_path_factory.mktemp("walk") / "lib"
    import_clips([src], out, progress=False)
    return MotionLibrary(out, include_flagged=True)


@pytest.fixture(scope="module")
def walk_env(walk_lib) -> ImitationEnv:
    return ImitationEnv(walk_lib, EnvConfig(num_envs=8, physics=PhysicsConfig(backend="mujoco")))


@pytest.fixture(scope="module")
def cenv(synth) -> ImitationEnv:
    return ImitationEnv(synth, EnvConfig(num_envs=N, physics=PhysicsConfig(backend="mujoco", num_threads=2)))


@pytest.fixture(scope="module")
def xenv(synth) -> ImitationEnv:
    return ImitationEnv(synth, EnvConfig(num_envs=N, physics=PhysicsConfig(backend="mjx")))


def body_pos_mujoco(model, qpos) -> np.ndarray:
    """(N, B, 3) body positions by MuJoCo's own kinematics."""
    d = mujoco.MjData(model)
    out = []
    for q in np.asarray(qpos, np.float64):
        d.qpos[:] = q
        mujoco.mj_kinematics(model, d)
        out.append(d.xpos[1:].copy())
    return np.array(out)


# -- pure functions ---------------------------------------------------------------------------------------------

def test_observation_functions_have_documented_sizes():
    c = Character()
    skel = K.Skeleton.from_model(c.model)
    rng = np.random.default_rng(0)
    qpos = jnp.asarray(np.concatenate([[0, 0, 0.9, 1, 0, 0, 0], rng.uniform(-0.3, 0.3, 28)])[None], jnp.float32)
    qvel = jnp.asarray(rng.normal(size=(1, 34)), jnp.float32)
    body = K.forward_kinematics(skel, qpos)
    lin, ang = O.body_velocities(skel, qpos, qvel, body.pos, body.rot)
    sizes = O.obs_sizes(EnvConfig().obs)
    assert O.policy_obs(body.pos, body.rot, lin, ang).shape == (1, sizes["policy"]) == (1, 223)
    ref = O.reference_obs(qpos[:, :3], body.rot[:, 0], jnp.stack([body.pos] * 2, 1), jnp.stack([body.rot] * 2, 1),
                          jnp.array([0.25]))
    assert ref.shape == (1, sizes["reference"]) == (1, 273)
    assert O.disc_obs_frame(qpos, qvel, body.pos[:, c.key_bodies]).shape == (1, sizes["disc_frame"]) == (1, 84)
    assert sizes["disc"] == 840 and sizes["obs"] == 496


def test_body_velocities_match_mujoco():
    c = Character()
    m, d = c.model, mujoco.MjData(c.model)
    rng = np.random.default_rng(1)
    d.qpos[:] = c.rest_qpos()
    d.qpos[3:7] = np.array([0.9, 0.1, 0.3, -0.2]) / np.linalg.norm([0.9, 0.1, 0.3, -0.2])
    d.qpos[7:] = rng.uniform(-0.5, 0.5, 28)
    d.qvel[:] = rng.normal(size=34)
    mujoco.mj_forward(m, d)
    skel = K.Skeleton.from_model(m)
    q, v = jnp.asarray(d.qpos[None], jnp.float32), jnp.asarray(d.qvel[None], jnp.float32)
    body = K.forward_kinematics(skel, q)
    lin, ang = O.body_velocities(skel, q, v, body.pos, body.rot)
    res = np.zeros(6)
    for b in range(1, m.nbody):
        mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_BODY, b, res, 0)  # at the body's centre of mass
        np.testing.assert_allclose(ang[0, b - 1], res[:3], atol=1e-4)
        np.testing.assert_allclose(lin[0, b - 1], res[3:] + np.cross(res[:3], d.xpos[b] - d.xipos[b]), atol=1e-4)


def test_policy_obs_ignores_heading():
    """Turning the whole character about z (and its velocities) leaves the heading-frame observation alone."""
    c = Character()
    skel = K.Skeleton.from_model(c.model)
    rng = np.random.default_rng(2)
    qpos = np.concatenate([[0.3, -0.2, 0.9, 1, 0, 0, 0], rng.uniform(-0.3, 0.3, 28)])[None].astype(np.float32)
    qvel = rng.normal(size=(1, 34)).astype(np.float32)
    yaw = K.axis_angle_to_quat(jnp.array([0.0, 0.0, 1.0]), jnp.array(1.1))

    def obs(q, v):
        q, v = jnp.asarray(q), jnp.asarray(v)
        body = K.forward_kinematics(skel, q)
        lin, ang = O.body_velocities(skel, q, v, body.pos, body.rot)
        return np.concatenate([O.policy_obs(body.pos, body.rot, lin, ang),
                               O.disc_obs_frame(q, v, body.pos[:, c.key_bodies])], -1)

    turned_q = qpos.copy()
    turned_q[:, :3] = K.quat_rotate(yaw, qpos[:, :3])
    turned_q[:, 3:7] = K.quat_mul(yaw, qpos[:, 3:7])
    turned_v = qvel.copy()
    turned_v[:, :3] = K.quat_rotate(yaw, qvel[:, :3])  # angular velocity is root-local: unchanged
    np.testing.assert_allclose(obs(qpos, qvel), obs(turned_q, turned_v), atol=2e-5)


def test_tracking_reward_is_one_on_the_reference_and_lower_off_it(synth):
    c = Character()
    ref = synth.sample(np.zeros(3, np.int32), np.array([0.1, 0.5, 1.0], np.float32))
    args = (RewardConfig(), synth.skeleton.parent, c.key_bodies)
    on = tracking_terms(*args, ref.qpos, ref.qvel, ref.body_pos, ref.body_rot, ref.qpos, ref.qvel, ref.body_pos, ref.body_rot)
    for name in ("pose", "vel", "key_body", "root", "tracking"):
        np.testing.assert_allclose(on[name], 1.0, atol=1e-5)
    off_q = ref.qpos.at[:, 7:].add(0.3).at[:, 0].add(0.2)
    body = K.forward_kinematics(synth.skeleton, off_q)
    off = tracking_terms(*args, off_q, ref.qvel, body.pos, body.rot, ref.qpos, ref.qvel, ref.body_pos, ref.body_rot)
    assert np.all(np.asarray(off["tracking"]) < 0.5)
    assert np.all(np.asarray(mean_body_pos_error(body.pos, ref.body_pos)) > 0.1)


# -- reset ------------------------------------------------------------------------------------------------------

def check_reset_on_reference(env: ImitationEnv, lib: MotionLibrary, seed: int):
    state = env.reset(seed)
    ref = lib.sample(np.asarray(state.clip), np.asarray(state.clip_time))
    pos = body_pos_mujoco(env.character.model, state.qpos)
    assert np.abs(pos - np.asarray(ref.body_pos)).max() <= 1e-3  # metres
    np.testing.assert_allclose(state.qvel, ref.qvel, atol=1e-5)
    assert np.isfinite(np.asarray(state.obs)).all() and np.isfinite(np.asarray(state.disc_obs)).all()
    assert state.obs.shape == (env.num_envs, env.obs_size)
    assert state.disc_obs.shape == (env.num_envs, O.obs_sizes(env.config.obs)["disc"])


def test_reset_places_character_on_reference(cenv, synth):
    check_reset_on_reference(cenv, synth, seed=3)


def test_reset_on_walk_reference(walk_env, walk_lib):
    for seed in (0, 1):
        check_reset_on_reference(walk_env, walk_lib, seed)


# -- both backends ----------------------------------------------------------------------------------------------

def test_backends_agree(cenv, xenv):
    """Same state -> same observation and reward (both run the same JAX function after physics).

    After reset: identical to float32 rounding (tolerance 1e-5). After 5 control steps (20 physics steps):
    - in the air (character lifted 30 cm, no contacts) the physics agrees too: obs within 2e-3 absolute
      (velocities dominate; MJX runs float32 with 2/4 solver iterations, MuJoCo C float64 with 20/10);
    - on the floor MJX's plane-box collision keeps only the foot corners within 1 mm of the deepest one
      (MuJoCo C keeps all penetrating corners), so the trajectories part: only a loose check there.
    """
    sc, sx = cenv.reset(7), xenv.reset(7)
    np.testing.assert_allclose(np.asarray(sx.obs), np.asarray(sc.obs), atol=1e-5)
    np.testing.assert_allclose(np.asarray(sx.disc_obs), np.asarray(sc.disc_obs), atol=1e-5)
    actions = np.random.default_rng(0).uniform(-0.5, 0.5, (5, N, 28)).astype(np.float32)

    lift = lambda s, q: s._replace(qpos=q)
    qc = sc.qpos.copy()
    qc[:, 2] += 0.3
    ac, ax = lift(sc, qc), lift(sx, jnp.asarray(qc, jnp.float32))
    gc, gx = sc, sx
    for a in actions:
        ac, ax = cenv.step(ac, a), xenv.step(ax, a)
        gc, gx = cenv.step(gc, a), xenv.step(gx, a)
    assert not np.asarray(ac.done | ac.truncated).any() and not np.asarray(ax.done | ax.truncated).any()
    np.testing.assert_allclose(np.asarray(ax.qpos), ac.qpos, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ax.obs), np.asarray(ac.obs), atol=2e-3)
    np.testing.assert_allclose(np.asarray(ax.reward), np.asarray(ac.reward), atol=1e-3)
    for name in ac.terms:
        np.testing.assert_allclose(np.asarray(ax.terms[name]), np.asarray(ac.terms[name]), atol=1e-3)

    live = ~np.asarray(gc.done | gc.truncated | gx.done | gx.truncated)
    body = lambda q: np.asarray(K.forward_kinematics(cenv.library.skeleton, jnp.asarray(q, jnp.float32)).pos)
    gap = np.asarray(mean_body_pos_error(body(gx.qpos), body(gc.qpos)))
    assert np.all(gap[live] < 0.1), gap  # metres; measured up to ~5 cm
    assert np.all(np.abs(np.asarray(gx.reward) - np.asarray(gc.reward))[live] < 0.1)


def test_mjx_small_batch_runs(xenv):
    s = xenv.reset(11)
    rng = np.random.default_rng(5)
    for _ in range(10):
        s = xenv.step(s, jnp.asarray(rng.uniform(-1, 1, (N, 28)), jnp.float32))
    assert np.isfinite(np.asarray(s.obs)).all() and np.isfinite(np.asarray(s.reward)).all()
    assert int(s.info["blowups"]) == 0
    assert s.obs.dtype == jnp.float32 and s.qpos.dtype == jnp.float32


def test_switch_reanchors_the_new_clip_where_the_character_stands(cenv, synth):
    """A switched env's new reference begins at the character's root (xy and heading) with the clip's own height
    and joint angles, and keeps that anchor as it steps; the other envs are untouched."""
    s = cenv.reset(3)
    for _ in range(3):
        s = cenv.step(s, np.zeros((N, 28), np.float32))
    q = s.qpos.copy()  # turn every character by 100 degrees and move it, so an unanchored reference would be far off
    turn = np.array([np.cos(np.radians(50)), 0.0, 0.0, np.sin(np.radians(50))])
    q[:, 3:7] = np.asarray(K.quat_mul(jnp.asarray(np.tile(turn, (N, 1)), jnp.float32),
                                      jnp.asarray(q[:, 3:7], jnp.float32)))
    q[:, :2] += [2.0, -1.5]
    s = s._replace(qpos=q)
    mask, new = np.array([True, False, True, False]), np.full(N, 1 - np.asarray(s.clip)[0])
    w = cenv.switch(s, mask, new)
    assert np.array_equal(np.asarray(w.clip), np.where(mask, new, s.clip))
    np.testing.assert_allclose(np.asarray(w.clip_time)[mask], 0.0)
    for name in ("anchor", "obs", "clip_time"):
        np.testing.assert_array_equal(np.asarray(getattr(w, name))[~mask], np.asarray(getattr(s, name))[~mask])
    np.testing.assert_array_equal(np.asarray(w.ref.body_pos)[~mask], np.asarray(s.ref.body_pos)[~mask])
    clip = jnp.asarray(w.clip)
    first = cenv.core.refs(clip, jnp.zeros((N, 1)), jnp.asarray(w.anchor))
    plain = cenv.core.refs(clip, jnp.zeros((N, 1)))
    np.testing.assert_allclose(np.asarray(first.qpos)[mask, 0, :2], q[mask, :2], atol=1e-5)
    dyaw = np.asarray(K.heading_yaw(first.qpos[mask, 0, 3:7]) - K.heading_yaw(jnp.asarray(q[mask, 3:7], jnp.float32)))
    np.testing.assert_allclose(np.sin(dyaw), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(first.qpos)[mask, 0, 2], np.asarray(plain.qpos)[mask, 0, 2], atol=1e-6)
    np.testing.assert_allclose(np.asarray(first.qpos)[mask, 0, 7:], np.asarray(plain.qpos)[mask, 0, 7:])
    np.testing.assert_allclose(np.asarray(first.body_pos)[mask, 0, :, 2], np.asarray(plain.body_pos)[mask, 0, :, 2],
                               atol=1e-5)
    assert np.abs(np.asarray(first.qpos)[mask, 0, :2] - np.asarray(plain.qpos)[mask, 0, :2]).min() > 1.0
    stepped = cenv.step(w, np.zeros((N, 28), np.float32))
    k = cenv.config.obs.ref_frames
    times = jnp.asarray(stepped.clip_time)[:, None] + jnp.arange(1, k + 1) / cenv.config.physics.control_hz
    window = cenv.core.refs(clip, times, jnp.asarray(w.anchor))
    np.testing.assert_allclose(np.asarray(stepped.ref.body_pos)[mask], np.asarray(window.body_pos)[mask], atol=1e-5)
    assert not np.asarray(stepped.done)[mask].any()  # the new reference is where the character is: no body error


# -- terminations -----------------------------------------------------------------------------------------------

def test_fall_detector_fires_when_knocked_over(synth):
    """A hard shove with the PD targets held at the reference: the character ends on the floor."""
    c = Character()
    m, d = c.model, mujoco.MjData(c.model)
    ref = synth.sample(np.zeros(1, np.int32), np.zeros(1, np.float32))
    d.qpos[:] = np.asarray(ref.qpos[0], np.float64)
    d.qvel[:] = 0
    d.qvel[1], d.qvel[3] = 2.0, 6.0  # sideways and rolling
    d.ctrl[:] = d.qpos[7:][c.actuator_joint]
    non_foot = np.setdiff1d(np.arange(15), c.foot_bodies)
    fell_at = None
    for step in range(90):  # 3 s of control steps
        for _ in range(4):
            mujoco.mj_step(m, d)
        pos = np.asarray(d.xpos[None, 1:], np.float32)
        if bool(fallen(pos, ref.body_pos, non_foot, 0.15, 0.1)[0]):
            fell_at = step
            break
    assert fell_at is not None, f"pelvis at {d.xpos[1, 2]:.2f} m after 3 s"
    # The same pose is not a fall where the reference is itself on the floor (a crawl, a roll).
    assert not bool(fallen(pos, jnp.asarray(pos), non_foot, 0.15, 0.1)[0])


def test_kinematic_walk_replay_never_terminates(walk_env, walk_lib):
    """Setting the state from the reference each step (no physics) must give no fall, no body-error
    termination and a tracking reward near 1 over several walk cycles."""
    env = walk_env
    state = env.reset(0)
    # Plain height rule as well: no non-foot body of the walk comes near the floor.
    ref = walk_lib.sample(np.zeros(200, np.int32), np.linspace(0, 3 * walk_lib.durations[0], 200, dtype=np.float32))
    non_foot = np.setdiff1d(np.arange(15), env.character.foot_bodies)
    assert float(np.asarray(ref.body_pos)[:, non_foot, 2].min()) > 0.15
    n = env.num_envs
    for _ in range(90):
        r = walk_lib.sample(np.asarray(state.clip), np.asarray(state.clip_time) + env.core.dt)
        state = env._post(state._replace(qpos=None, qvel=None, warmstart=None), np.asarray(r.qpos, np.float64),
                          np.asarray(r.qvel, np.float64), np.zeros((n, 34)), np.zeros(n, bool), np.zeros(n, bool))
        assert not np.asarray(state.done).any()
        assert float(np.asarray(state.info["body_error"]).max()) < 0.01
        assert float(np.asarray(state.reward).min()) > 0.9
    assert int(state.info["falls"]) == 0 and int(state.info["body_error_terminations"]) == 0


def test_shoved_character_episode_ends_and_resets(cenv):
    s = cenv.reset(5)
    qvel = s.qvel.copy()
    qvel[:, 1], qvel[:, 3] = 3.0, 8.0
    s = s._replace(qvel=qvel)
    ended = np.zeros(N, bool)
    for _ in range(45):
        s = cenv.step(s, np.zeros((N, 28), np.float32))
        ended |= np.asarray(s.done)
        assert np.isfinite(np.asarray(s.obs)).all()
    assert ended.all()
    assert int(s.info["falls"]) + int(s.info["body_error_terminations"]) >= N


def test_clip_weights_and_first_frame_share_steer_episode_starts(tmp_path):
    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("sway", "squat", "balance")))
    cenv = ImitationEnv(lib, EnvConfig(num_envs=N, physics=PhysicsConfig(backend="mujoco")))
    core, c = cenv.core, len(cenv.core.clips)
    assert c == 3
    start = jax.jit(core.start, static_argnums=1)  # one draw size throughout: one compile per configuration
    only_last = jnp.zeros(c).at[c - 1].set(1.0)
    assert set(np.asarray(start(jax.random.key(0), 4000, only_last)["clip"]).tolist()) == {int(core.clips[-1])}
    clip = np.asarray(start(jax.random.key(1), 4000, jnp.ones(c).at[0].set(3.0))["clip"])
    assert abs(np.mean(clip == int(core.clips[0])) - 3 / 5) < 0.03
    # Through the env: the weights ride in the state, and the next pool is drawn with them.
    s = cenv.reset(4)
    assert np.allclose(np.asarray(s.clip_weights), 1.0)
    s = s._replace(clip_weights=only_last, pool_next=jnp.asarray(core.pool, jnp.int32))
    s = cenv.step(s, np.full((N, 28), np.nan, np.float32))  # every env ends and restarts from the new pool
    assert np.asarray(s.done).all()
    assert set(np.asarray(s.clip).tolist()) == {int(core.clips[-1])}
    assert np.allclose(np.asarray(s.clip_weights), np.asarray(only_last))
    # A share of the starts at a clip's first frame, the rest at uniform times.
    half = ImitationEnv(lib, EnvConfig(num_envs=N, physics=PhysicsConfig(backend="mujoco"),
                                       starts=StartConfig(first_frame_share=0.5))).core
    t = np.asarray(jax.jit(half.start, static_argnums=1)(jax.random.key(2), 4000)["clip_time"])
    assert abs(np.mean(t == 0) - 0.5) < 0.04 and (t > 0.1).mean() > 0.4


def test_foreign_starts_begin_the_own_clip_in_another_clips_state(tmp_path):
    """A foreign start puts the character in another clip's reference state and begins the own clip at its first
    frame, re-anchored at the character; for `recover_s` a body error does not end it, while a fall still would."""
    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("sway", "squat", "balance")))
    own, others = "synthetic_squat", ("synthetic_sway", "synthetic_balance")
    env = ImitationEnv(lib, EnvConfig(num_envs=N, clips=(own,), physics=PhysicsConfig(backend="mujoco"),
                                      starts=StartConfig(foreign_share=0.5, foreign_clips=others),
                                      episode=EpisodeConfig(recover_s=1.0)))
    c = jax.jit(env.core.start, static_argnums=1)(jax.random.key(0), 1000)
    assert np.all(np.asarray(c["clip"]) == lib.index(own))
    on_ref = np.asarray(lib.sample(np.asarray(c["clip"]), np.asarray(c["clip_time"])).qpos)
    foreign = np.abs(np.asarray(c["qpos"])[:, 7:] - on_ref[:, 7:]).max(-1) > 1e-3  # not on the own reference
    assert abs(foreign.mean() - 0.5) < 0.05 and np.all(np.asarray(c["clip_time"])[foreign] == 0)
    qpos = np.asarray(c["qpos"])[foreign]
    first = env.core.refs(jnp.full(int(foreign.sum()), lib.index(own)), jnp.zeros((int(foreign.sum()), 1)),
                          jnp.asarray(c["anchor"])[foreign])
    np.testing.assert_allclose(np.asarray(first.qpos)[:, 0, :2], qpos[:, :2], atol=1e-5)
    dyaw = np.asarray(K.heading_yaw(first.qpos[:, 0, 3:7]) - K.heading_yaw(jnp.asarray(qpos[:, 3:7])))
    np.testing.assert_allclose(np.sin(dyaw), 0.0, atol=1e-5)
    # The character's pose is one of the other clips' (at some time of it).
    times = np.linspace(0, lib.durations[lib.index(others[0])], 200, dtype=np.float32)
    poses = np.concatenate([np.asarray(lib.sample(np.full(200, lib.index(o)), times).qpos)[:, 7:] for o in others])
    assert np.abs(qpos[:, None, 7:] - poses[None]).max(-1).min(1).max() < 0.05
    # recover_s: a character 2 m off its reference goes on for its first second, then the body error ends it.
    s = env.reset(1)
    s = s._replace(qpos=s.qpos + np.r_[2.0, np.zeros(34)], clip_time=np.zeros(N, np.float32))
    ended_at = np.full(N, -1)
    for t in range(40):
        s = env.step(s, np.zeros((N, 28), np.float32))
        ended_at = np.where((ended_at < 0) & np.asarray(s.done), t, ended_at)
    assert np.all(ended_at >= 29), ended_at
    assert int(s.info["body_error_terminations"]) >= N
    # Evaluation starts foreign only when asked: a recovery fine-tune is judged on recovering.
    for share in (0.0, 1.0):
        (_, sim, ref, _, _), = rollout(lib, lambda st: np.zeros((1, 28), np.float32), [own], seconds=0.1,
                                      env_config=env.config, foreign_share=share)
        gap = np.linalg.norm(sim[0] - ref[0], axis=-1).mean()
        assert (gap > 0.02) if share else (gap < 0.002), (share, gap)  # on the own reference: about 1 mm


def test_state_starts_put_the_character_in_a_recorded_state_and_begin_the_own_clip_there(tmp_path):
    """With `state_starts`, foreign starts take the file's simulated states (not other clips' reference states), the
    own clip at its first frame re-anchored at the character; a file that is not one is refused naming it."""
    from padl.env import load_state_starts

    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("sway", "squat")))
    own = "synthetic_squat"
    ref = lib.sample(np.full(3, lib.index("synthetic_sway")), np.array([0.1, 0.4, 0.7], np.float32))
    qpos, qvel = np.array(ref.qpos, np.float32), np.array(ref.qvel, np.float32)
    qpos[:, 7:] += 0.05  # off any reference: a simulated state
    qpos[:, 0] += np.arange(3)
    np.savez(tmp_path / "states.npz", qpos=qpos, qvel=qvel)
    env = ImitationEnv(lib, EnvConfig(num_envs=N, clips=(own,), physics=PhysicsConfig(backend="mujoco"),
                                      starts=StartConfig(foreign_share=0.5, state_starts=str(tmp_path / "states.npz"))))
    c = jax.jit(env.core.start, static_argnums=1)(jax.random.key(0), 600)
    got = np.asarray(c["qpos"])
    which = np.abs(got[:, None, :] - qpos[None]).max(-1).argmin(1)
    pooled = np.abs(got - qpos[which]).max(-1) < 1e-5
    assert abs(pooled.mean() - 0.5) < 0.06 and len(set(which[pooled])) == 3
    np.testing.assert_allclose(np.asarray(c["qvel"])[pooled], qvel[which[pooled]], atol=1e-5)
    assert np.all(np.asarray(c["clip_time"])[pooled] == 0)
    first = env.core.refs(jnp.full(int(pooled.sum()), lib.index(own)), jnp.zeros((int(pooled.sum()), 1)),
                          jnp.asarray(c["anchor"])[pooled])
    np.testing.assert_allclose(np.asarray(first.qpos)[:, 0, :2], got[pooled, :2], atol=1e-5)
    # the rest start on the own reference
    on_ref = np.asarray(lib.sample(np.asarray(c["clip"])[~pooled], np.asarray(c["clip_time"])[~pooled]).qpos)
    assert np.abs(got[~pooled, 7:] - on_ref[:, 7:]).max() < 1e-4
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    np.savez(tmp_path / "short.npz", qpos=qpos[:, :30], qvel=qvel)
    for name in ("bad.npz", "short.npz", "absent.npz"):
        with pytest.raises(ValueError, match=re.escape(str(tmp_path / name))):
            load_state_starts(tmp_path / name, 35, 34)
    with pytest.raises(ValueError, match="foreign_share"):
        ImitationEnv(lib, EnvConfig(num_envs=N, clips=(own,), physics=PhysicsConfig(backend="mujoco"),
                                    starts=StartConfig(state_starts=str(tmp_path / "states.npz"))))


def test_recover_follow_keeps_the_reference_at_the_character_then_leaves_it_there(tmp_path):
    """With `recover_follow`, a character 2 m off its reference has it re-anchored at its root and heading through
    the clip's first recover_s (no body-error end, where the test above ends at recover_s); then the anchor stays."""
    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("squat",)))
    env = ImitationEnv(lib, EnvConfig(num_envs=N, physics=PhysicsConfig(backend="mujoco"),
                                      episode=EpisodeConfig(recover_s=0.5, recover_follow=True)))
    s = env.reset(1)
    s = s._replace(qpos=s.qpos + np.r_[2.0, np.zeros(34)], clip_time=np.zeros(N, np.float32))
    anchors = []
    for t in range(40):
        s = env.step(s, np.zeros((N, 28), np.float32))
        assert not np.asarray(s.done | s.truncated).any(), f"ended at step {t}"
        anchors.append(np.asarray(s.anchor))
        if t < 14:  # clip_time < 0.5 s before this step: the reference's root is where the character's is
            now = env.core.refs(jnp.asarray(s.clip), jnp.asarray(s.clip_time)[:, None], jnp.asarray(s.anchor))
            np.testing.assert_allclose(np.asarray(now.qpos)[:, 0, :2], np.asarray(s.qpos)[:, :2], atol=1e-4)
    assert np.abs(anchors[5] - anchors[0]).max() > 1e-4  # it followed the character
    assert np.array_equal(anchors[-1], anchors[15])  # then stayed
    assert np.all(anchors[-1][:, 1] > 1.5)  # near where the character stands, 2 m off the clip


def test_recover_follow_without_heading_moves_the_reference_but_keeps_the_commands_heading(tmp_path):
    """`follow_heading=False`: a character turned 90 degrees and 2 m off its reference has the reference's root
    brought to its position while the reference keeps the heading it began with; with the heading followed, the
    reference turns with the character."""
    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("squat",)))
    turn = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])  # 90 degrees about z (w, x, y, z)
    yaws = {}
    for heading in (True, False):
        env = ImitationEnv(lib, EnvConfig(num_envs=N, physics=PhysicsConfig(backend="mujoco"), episode=EpisodeConfig(
            recover_s=0.5, recover_follow=True, follow_heading=heading)))
        s = env.reset(1)
        qpos = np.array(s.qpos)
        qpos[:, 0] += 2.0
        qpos[:, 3:7] = np.asarray(K.quat_mul(jnp.asarray(np.broadcast_to(turn, (N, 4))), jnp.asarray(qpos[:, 3:7])))
        start_yaw = np.asarray(s.anchor)[:, 0].copy()
        s = s._replace(qpos=qpos, clip_time=np.zeros(N, np.float32))
        for _ in range(3):
            s = env.step(s, np.zeros((N, 28), np.float32))
        now = env.core.refs(jnp.asarray(s.clip), jnp.asarray(s.clip_time)[:, None], jnp.asarray(s.anchor))
        np.testing.assert_allclose(np.asarray(now.qpos)[:, 0, :2], np.asarray(s.qpos)[:, :2], atol=1e-4)
        yaws[heading] = np.angle(np.exp(1j * (np.asarray(s.anchor)[:, 0] - start_yaw)))
    assert np.all(np.abs(yaws[True] - np.pi / 2) < 0.3)  # turned with the character (less what 3 steps turned it)
    np.testing.assert_allclose(yaws[False], 0.0, atol=1e-6)  # kept the command's heading


def test_anchor_cycles_moves_a_looping_reference_to_the_character_as_each_cycle_begins(tmp_path):
    """With `anchor_cycles`, a character 2 m off a looping reference (within the body-error limit: 1e6) has the
    reference re-anchored at its root exactly at each cycle's first step and nowhere else; without, never."""
    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("squat",), frames=15))
    cycle = float(lib.durations[0])
    assert bool(lib.data.loop[0])
    for on in (True, False):
        env = ImitationEnv(lib, EnvConfig(num_envs=N, physics=PhysicsConfig(backend="mujoco"),
                                          starts=StartConfig(init="start"),
                                          episode=EpisodeConfig(anchor_cycles=on, max_body_error=1e6,
                                                                fall_height=-1.0)))
        s = env.reset(1)
        s = s._replace(qpos=s.qpos + np.r_[2.0, np.zeros(34)])
        moved = []
        for _ in range(40):
            before, t0 = np.asarray(s.anchor), np.asarray(s.clip_time)
            s = env.step(s, np.zeros((N, 28), np.float32))
            assert not np.asarray(s.done | s.truncated).any()
            moved.append(np.abs(np.asarray(s.anchor) - before).max(-1) > 1e-6)
            crossed = np.floor(np.asarray(s.clip_time) / cycle) > np.floor(t0 / cycle)
            if on and crossed.any():
                now = env.core.refs(jnp.asarray(s.clip), jnp.asarray(s.clip_time)[:, None], jnp.asarray(s.anchor))
                np.testing.assert_allclose(np.asarray(now.qpos)[:, 0, :2], np.asarray(s.qpos)[:, :2], atol=1e-4)
            assert np.array_equal(moved[-1], crossed & on), (on, float(s.clip_time[0]))
        assert np.asarray(moved).sum(0).min() == (2 if on else 0)  # 40 steps (1.33 s) of a 0.47 s cycle: 2 begun
    # Evaluation's rollouts measure against the reference where the env had it: at each cycle's first step the
    # reference pelvis is right under the character's, which the unanchored clip is not.

    cfg = EnvConfig(physics=PhysicsConfig(backend="mujoco"),
                    episode=EpisodeConfig(anchor_cycles=True, max_body_error=1e6))
    (_, sim, ref, failed, _), = rollout(lib, lambda s: np.zeros((1, 28), np.float32), ["synthetic_squat"], 1,
                                        seconds=1.3, env_config=cfg)
    assert not failed.any() and len(sim) == 39  # 1.3 s
    begins = np.flatnonzero(np.diff(np.floor((np.arange(40) / 30.0 + 1e-6) / cycle)) > 0)  # steps whose time wraps
    assert len(begins) == 2
    np.testing.assert_allclose(sim[begins, 0, :2], ref[begins, 0, :2], atol=1e-4)
    plain = np.asarray(lib.sample(np.zeros(2, np.int32), (begins + 1) / 30.0).body_pos)
    assert np.abs(sim[begins, 0, :2] - plain[:, 0, :2]).max() > 1e-3


def test_hold_s_goes_on_past_a_clips_end_with_the_reference_still(tmp_path):
    """With `hold_s` a non-looping clip's episode goes on that long past the clip's end (instead of ending with it),
    its reference held in the last frame (still: tests/test_library.py), and starts are drawn over the hold too."""
    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("balance",)))
    i = lib.index("synthetic_balance")
    dur = float(lib.durations[i])
    assert not bool(lib.data.loop[i])
    past, last = lib.sample(np.full(2, i), np.array([dur + 0.1, dur + 1.0])), lib.sample(np.full(1, i), np.array([dur]))
    np.testing.assert_allclose(np.asarray(past.qpos), np.repeat(np.asarray(last.qpos), 2, 0), atol=1e-6)
    # hold_clips: only the clips named hold (an empty list: none does)
    for hold, follow, clips in ((0.0, False, None), (0.5, False, None), (0.5, True, None),
                                (0.5, True, ("synthetic_balance",)), (0.5, True, ())):
        env = ImitationEnv(lib, EnvConfig(num_envs=4, physics=PhysicsConfig(backend="mujoco"),
                                          starts=StartConfig(init="start"),
                                          # PD alone topples this pose: only the clock ends it
                                          episode=EpisodeConfig(hold_s=hold, fall_height=-1.0, max_body_error=1e6,
                                                                hold_follow=follow, hold_clips=clips)))
        hold, follow = (0.0, False) if clips == () else (hold, follow)
        s, steps, anchors = env.reset(0), 0, []
        while not np.asarray(s.done | s.truncated).any():
            anchors.append(np.asarray(s.anchor))
            s, steps = env.step(s, np.zeros((4, 28), np.float32)), steps + 1
        hz = env.config.physics.control_hz
        assert np.asarray(s.truncated).all() and steps == round((dur + hold) * hz), (hold, steps)
        # hold_follow: the held reference moves with the toppling character, the clip's own reference does not
        moved = [np.abs(a - anchors[0]).max() > 1e-4 for a in anchors]
        assert not any(moved[:round(dur * hz)]) and any(moved) == follow, (hold, follow)
    held = ImitationEnv(lib, EnvConfig(num_envs=4, physics=PhysicsConfig(backend="mujoco"),
                                       episode=EpisodeConfig(hold_s=1.0))).core
    t = np.asarray(jax.jit(held.start, static_argnums=1)(jax.random.key(0), 2000)["clip_time"])
    assert abs((t > dur).mean() - 1.0 / (dur + 1.0)) < 0.04
    with pytest.raises(ValueError, match="hold_s"):
        ImitationEnv(lib, EnvConfig(num_envs=2, episode=EpisodeConfig(hold_s=-1.0)))
    with pytest.raises(ValueError, match="hold_clips.*'nope'"):
        ImitationEnv(lib, EnvConfig(num_envs=2, episode=EpisodeConfig(hold_s=1.0, hold_clips=("nope",))))


# -- bad input --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["mujoco", "mjx"])
def test_nan_action_resets_only_that_env(backend, cenv, xenv):
    env = cenv if backend == "mujoco" else xenv
    s = env.reset(2)
    a = np.zeros((N, 28), np.float32)
    a[2, 5] = np.nan
    s = env.step(s, a)
    assert np.asarray(s.info["nan_action"]).tolist() == [False, False, True, False]
    assert int(s.info["nan_actions"]) == 1 and int(s.info["blowups"]) == 0
    done = np.asarray(s.done)
    assert done[2] and not done[[0, 1, 3]].any()
    assert np.asarray(s.step).tolist() == [1, 1, 0, 1]  # env 2 starts a new episode
    assert float(s.reward[2]) == 0.0
    assert np.isfinite(np.asarray(s.obs)).all() and np.isfinite(np.asarray(s.qpos)).all()
    s = env.step(s, np.full((N, 28), np.inf, np.float32))  # +-inf counts as bad too
    assert int(s.info["nan_actions"]) == 1 + N and np.asarray(s.done).all()
    # Envs that reset in the same step start from distinct draws of the start pool.
    assert len(set(np.asarray(s.clip_time).tolist())) == N and np.asarray(s.step).tolist() == [0] * N


def test_out_of_range_actions_are_clipped(cenv):
    s = cenv.reset(4)
    a = np.random.default_rng(3).uniform(-1, 1, (N, 28)).astype(np.float32)
    big = cenv.step(s, a * 50)
    np.testing.assert_array_equal(big.qpos, cenv.step(s, np.clip(a * 50, -1, 1)).qpos)
    # step is a function of its input state: the same state and action give the same result again.
    np.testing.assert_array_equal(cenv.step(s, a).qpos, cenv.step(s, a).qpos)


def test_physics_blowup_resets_that_env_and_is_counted(cenv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo appends its warnings to MUJOCO_LOG.TXT in the working directory
    s = cenv.reset(6)
    qvel = s.qvel.copy()
    qvel[1] = 1e12  # MuJoCo declares the state unstable and resets it itself (with a warning only)
    s = cenv.step(s._replace(qvel=qvel), np.zeros((N, 28), np.float32))
    assert np.asarray(s.info["blowup"]).tolist() == [False, True, False, False]
    assert int(s.info["blowups"]) == 1 and bool(s.done[1]) and int(s.step[1]) == 0
    assert np.isfinite(np.asarray(s.obs)).all() and np.isfinite(np.asarray(s.final_obs)).all()
    qpos = s.qpos.copy()
    qpos[3, 10] = np.nan
    s = cenv.step(s._replace(qpos=qpos), np.zeros((N, 28), np.float32))
    assert bool(s.info["blowup"][3]) and int(s.info["blowups"]) == 2
    assert np.isfinite(s.qpos).all()


def test_bad_config_is_refused(synth):
    with pytest.raises(ValueError, match="backend"):
        ImitationEnv(synth, EnvConfig(num_envs=2, physics=PhysicsConfig(backend="tpu-magic")))
    with pytest.raises(ValueError, match="timestep"):
        ImitationEnv(synth, EnvConfig(num_envs=2, physics=PhysicsConfig(physics_hz=240.0)))
    with pytest.raises(ValueError, match="not in the library"):
        ImitationEnv(synth, EnvConfig(num_envs=2, clips=("nope",)))
    with pytest.raises(ValueError, match="action.mode"):
        ImitationEnv(synth, EnvConfig(num_envs=2, action=ActionConfig(mode="torque")))
    with pytest.raises(ValueError, match="first_frame_share"):
        ImitationEnv(synth, EnvConfig(num_envs=2, starts=StartConfig(first_frame_share=1.5)))


# -- gymnasium --------------------------------------------------------------------------------------------------

def test_gymnasium_env_passes_checker(synth_path):
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    import padl.gym_env  # noqa: F401  (registers the id)

    env = gymnasium.make("padl/Imitation-v0", library_path=synth_path, render_mode="rgb_array", width=160, height=120)
    check_env(env.unwrapped, skip_render_check=False)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert 0.0 <= reward <= 1.0 and {"pose", "tracking", "body_error"} <= set(info)
    frame = env.render()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8 and frame.std() > 0
    env.close()


# -- sharding ---------------------------------------------------------------------------------------------------

SHARD_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import jax, numpy as np
    from synthetic import write_synthetic_library
    from motions.library import MotionLibrary
    from padl.env import EnvConfig, ImitationEnv, PhysicsConfig
    print("devices", jax.local_devices(), flush=True)
    lib = MotionLibrary(write_synthetic_library(Path({out!r})))
    env = ImitationEnv(lib, EnvConfig(num_envs=2, physics=PhysicsConfig(backend="mjx")))
    print("mesh", env.mesh, flush=True)
    s = env.reset(0)
    print("reset sharding", s.obs.sharding, flush=True)
    for i in range(2):
        t = time.time()
        s = env.step(s, np.zeros((2, 28), np.float32))
        jax.block_until_ready(s.obs)
        print("step", i, "%.1f s" % (time.time() - t), flush=True)
    assert len(s.obs.sharding.device_set) == 2, s.obs.sharding
    assert np.isfinite(np.asarray(s.obs)).all()
    print("SHARDED-OK", flush=True)
""")


@pytest.mark.slow
def test_mjx_batch_shards_over_two_host_devices(tmp_path):
    """Two forced host devices, a batch of 2: DESIGN.md saw this configuration hang, so it runs in a
    subprocess under a timeout and reports where it stopped."""
    env = {**os.environ, "XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=false "
                                      "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    script = SHARD_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "lib"))
    try:
        p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"sharded MJX step did not finish in 420 s (hang?); output so far:\n{out}")
    assert p.returncode == 0 and "SHARDED-OK" in p.stdout, p.stdout + p.stderr[-3000:]
