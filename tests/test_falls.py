"""Simulated falls (`padl.falls`) and get-up starts (`EnvConfig.fall_starts`): where a get-up skill begins."""
from __future__ import annotations

import numpy as np
import pytest

from characters.character import Character
from motions.clip import LibraryWriter, velocities
from motions.library import MotionLibrary
from padl.env import EnvConfig, ImitationEnv, PhysicsConfig, StartConfig
from padl.falls import LYING_HEIGHT, facing_z, fallen_states
from synthetic import write_synthetic_library


@pytest.fixture(scope="module")
def standing(tmp_path_factory):
    return MotionLibrary(write_synthetic_library(tmp_path_factory.mktemp("lib") / "standing"))


@pytest.fixture(scope="module")
def falls(standing):
    return fallen_states(standing, 96, seed=0)


def test_falls_end_lying_on_either_side_at_rest(falls):
    q, v = falls
    assert len(q) >= 80  # nearly every shoved, limp character ends on the floor
    assert (q[:, 2] < LYING_HEIGHT).all() and np.abs(v).max() < 5.0
    side = np.sign(facing_z(q))
    assert (side < 0).sum() >= 0.15 * len(q) and (side > 0).sum() >= 0.15 * len(q)  # face down and face up


def _with_get_up(path, falls, standing: bool = False) -> MotionLibrary:
    """A library of a crude get-up (from a face-down fall to the rest pose in 1 s), with a standing clip or not."""
    character = Character()
    if standing:
        write_synthetic_library(path, kinds=("stand",))
    q, _ = falls
    down = q[np.argmin(facing_z(q))].astype(np.float64)
    frames = 30
    w = np.linspace(0.0, 1.0, frames)[:, None]
    qpos = (1 - w) * down + w * character.rest_qpos()
    qpos[:, 3:7] /= np.linalg.norm(qpos[:, 3:7], axis=1, keepdims=True)
    writer = LibraryWriter(path, character, {})
    writer.add({"id": "getup", "captions": ["get up"], "source_file": "synthetic", "source_format": "synthetic",
                "licence": "CC0", "labels": {}, "loop": False, "num_frames": frames, "duration_s": (frames - 1) / 30,
                "joint_map": {}, "scale": 1.0, "qa": {}, "flagged": False, "flag_reasons": []},
               qpos, 30.0, velocities(character, qpos, 30.0))
    writer.commit()
    return MotionLibrary(path)


def test_a_get_up_is_no_foreign_start_nor_begun_from_one(tmp_path, falls):
    """Foreign starts (`StartConfig.foreign_share`) neither put a standing clip in a get-up's lying states nor begin a
    get-up standing: every episode starts upright on the standing clip and lying on the get-up."""
    lib = _with_get_up(tmp_path / "lib", falls, standing=True)
    env = ImitationEnv(lib, EnvConfig(num_envs=32, physics=PhysicsConfig(backend="mujoco", num_threads=1),
                                      starts=StartConfig(foreign_share=1.0)))
    s = env.reset(0)
    qpos, clip = np.asarray(s.qpos), np.asarray(s.clip)
    up = clip == lib.index("getup")
    assert 0 < up.sum() < 32 and (qpos[~up, 2] > 0.7).all()
    own = np.asarray(lib.sample(clip[up], np.asarray(s.clip_time)[up]).qpos)  # the get-up's own reference state
    np.testing.assert_allclose(qpos[up, :3], own[:, :3], atol=1e-4)


def test_get_up_starts_where_a_fall_left_the_character(tmp_path, falls):
    """A clip that starts on the floor (a get-up) starts from fallen states of its own side, its reference
    re-anchored at the character, and being low in it is no fall."""
    env = ImitationEnv(_with_get_up(tmp_path / "lib", falls), EnvConfig(num_envs=16,
                                                                  physics=PhysicsConfig(backend="mujoco", num_threads=1),
                                                                  starts=StartConfig(fall_starts=1.0)))
    s = env.reset(0)
    start = np.asarray(s.qpos)
    assert (start[:, 2] < LYING_HEIGHT).all()
    assert (facing_z(start) < 0).mean() >= 0.9  # face down, as the clip begins
    assert not np.allclose(start[0, 7:], start[1:, 7:], atol=1e-3)  # drawn from many falls, not one pose
    ref = np.asarray(s.ref.qpos)[:, 0]
    np.testing.assert_allclose(ref[:, :2], start[:, :2], atol=0.05)  # the reference begins where the character lies
    for _ in range(15):
        s = env.step(s, np.zeros((16, env.action_size), np.float32))
    assert int(s.info["falls"]) == 0


def test_fall_starts_must_be_a_share(standing):
    with pytest.raises(ValueError, match="fall_starts"):
        ImitationEnv(standing, EnvConfig(num_envs=2, physics=PhysicsConfig(backend="mujoco"),
                                         starts=StartConfig(fall_starts=1.5)))
