"""After a fall, `SimLoop` gets the character up by the controller's learned get-up skill and carries on with the
queue; without one, or when the get-up times out, it restarts the character."""
from __future__ import annotations

import dataclasses
import json

import mujoco
import numpy as np
import pytest

from padl.env import PhysicsConfig
from superpadl import host
from superpadl.host import HoldController, SimLoop


class Recorder(HoldController):
    """Holds the rest pose and records the commands it is given."""

    def __init__(self, get_up: str | None):
        super().__init__()
        self.get_up_command, self.given = get_up, []

    def set_command(self, text: str) -> None:
        super().set_command(text)
        self.given.append(text)


def knock_down(loop: SimLoop) -> None:
    """Lay the character on its back, on the floor."""
    d = loop.data
    d.qpos[2] = 0.15
    d.qpos[3:7] = [np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]  # 90 degrees about y: lying
    d.qvel[:] = 0.0
    mujoco.mj_forward(loop.model, d)


def stand_up(loop: SimLoop) -> None:
    d = loop.data
    d.qpos[:], d.qvel[:] = loop.controller.initial_state()
    mujoco.mj_forward(loop.model, d)


def test_without_a_get_up_skill_a_fall_restarts():
    loop = SimLoop(HoldController().model, Recorder(None))
    loop.command("wave")
    knock_down(loop)
    loop.advance(0.2)
    assert (loop.falls, loop.restarts, loop.get_ups) == (1, 1, [])
    assert loop.pelvis_height > host.STAND_HEIGHT  # back on its feet at once, by teleport


def test_a_fall_is_got_up_from_and_the_queue_goes_on():
    c = Recorder("get up from the ground")
    loop = SimLoop(c.model, c)
    loop.command("wave for 1s; then bow")
    knock_down(loop)
    loop.advance(2.0)  # lying still: the get-up command is given, the queue's clock runs on, no restart
    assert (loop.falls, loop.restarts) == (1, 0)
    assert c.given == ["wave", "get up from the ground"]  # "bow" came due during the get-up: held back
    assert loop.current.text == "bow"
    stand_up(loop)  # as a learned get-up would end
    loop.advance(host.STOOD_S + 0.2)
    assert len(loop.get_ups) == 1 and 2.0 <= loop.get_ups[0] <= 2.0 + host.STOOD_S + 0.3
    assert c.given[-1] == "bow" and loop.restarts == 0 and loop.falls == 1


def test_a_get_up_that_times_out_restarts():
    c = Recorder("get up from the ground")
    loop = SimLoop(c.model, c)
    loop.command("wave")
    knock_down(loop)
    loop.advance(host.GET_UP_TIMEOUT_S - 1.0)
    assert loop.restarts == 0 and loop.pelvis_height < host.STAND_HEIGHT  # still trying (a PD hold cannot rise)
    loop.advance(1.5)
    assert (loop.falls, loop.restarts, loop.get_ups) == (1, 1, [])
    assert c.given[-1] == "wave" and loop.pelvis_height > host.STAND_HEIGHT


def test_shoves_fell_a_character_without_a_get_up_and_it_never_gets_up():
    """The forced-fall measure on a controller that can only stand: every shove fells it, none is got up from."""
    from superpadl import endurance as E

    summary = E.shove_summary(E.shove(HoldController(), 3, watch_s=3.0))
    assert summary["fell"] == 3 and summary["got_up_in_time"] == 0 and summary["got_up_share"] == 0.0


@pytest.fixture(scope="module")
def get_up_expert(tmp_path_factory):
    """(folder, the lying poses): a library of two standing clips and two crude get-ups (face down and up), and an
    untrained expert of all four in `expert`."""
    from characters.character import Character
    from motions.clip import LibraryWriter, velocities
    from motions.library import MotionLibrary
    from padl.env import EnvConfig, PhysicsConfig
    from padl.expert import ExpertConfig, train
    from padl.falls import facing_z, fallen_states
    from synthetic import write_synthetic_library

    tmp_path = tmp_path_factory.mktemp("get_up")
    character = Character()
    q, _ = fallen_states(MotionLibrary(write_synthetic_library(tmp_path / "standing")), 48, seed=0)
    lying = {"down": q[np.argmin(facing_z(q))], "up": q[np.argmax(facing_z(q))]}
    write_synthetic_library(tmp_path / "lib", kinds=("sway", "stand"))
    writer = LibraryWriter(tmp_path / "lib", character, {})
    for side, pose in lying.items():
        w = np.linspace(0.0, 1.0, 30)[:, None]
        qpos = (1 - w) * pose.astype(np.float64) + w * character.rest_qpos()  # a crude get-up
        qpos[:, 3:7] /= np.linalg.norm(qpos[:, 3:7], axis=1, keepdims=True)
        writer.add({"id": f"getup_{side}", "captions": [f"get up from lying face {side}"], "source_file": "synthetic",
                    "source_format": "synthetic", "licence": "CC0", "labels": {}, "loop": False, "num_frames": 30,
                    "duration_s": 29 / 30, "joint_map": {}, "scale": 1.0, "qa": {}, "flagged": False,
                    "flag_reasons": []}, qpos, 30.0, velocities(character, qpos, 30.0))
    writer.commit()
    clips = ("synthetic_sway", "synthetic_stand", "getup_down", "getup_up")
    train(MotionLibrary(tmp_path / "lib"), tmp_path / "expert", ExpertConfig(env=EnvConfig(
        num_envs=2, clips=clips, physics=PhysicsConfig(backend="mujoco", num_threads=1))), iterations=0, progress=False)
    return tmp_path, lying


def test_the_expert_runtime_gets_up_by_the_get_up_clip_of_the_side_it_lies_on(get_up_expert):
    """`ExpertController` with get-up clips (first frame lying): they are no user's command, `get_up_command` plays
    the one whose first frame lies on the character's side (face down or up), re-anchored where it lies."""
    from superpadl.runtime import load_controller

    tmp_path, lying = get_up_expert
    (tmp_path / "controller.json").write_text(json.dumps(
        {"format": "padl-expert-controller", "library": "lib", "experts": ["expert"]}))
    c = load_controller(tmp_path)
    assert sorted(c.get_up_clips) == ["getup_down", "getup_up"] and c.get_up_command == "get up from the ground"
    assert sorted(set(c.caption_clips)) == ["synthetic_stand", "synthetic_sway"]  # no user's command gets one up
    for side, pose in lying.items():
        qpos = pose.astype(np.float64)
        qpos[:2] += [3.0, -2.0]  # wherever it fell
        c.reset(qpos, np.zeros(c.model.nv))
        c.set_command(c.get_up_command)
        assert c.clip == f"getup_{side}"
        np.testing.assert_allclose(c.anchor.points(c._ref([0.0])[0][0, :3])[:2], qpos[:2], atol=1e-4)


def test_the_global_policy_runtime_keeps_its_get_up_from_user_commands_and_gives_it_after_a_fall():
    """`PolicyController` of a policy with a get-up clip (one captioned "get up from the ground"): it takes no user's
    command (a nearest-caption match never lands there), it is no one-shot clip turning into standing after its
    length, and `SimLoop` gives it after a fall. The shipped policy, its punch relabelled as the get-up."""
    from superpadl.policies import GlobalPolicy
    from superpadl.runtime import DEFAULT_MODEL, PolicyController

    shipped = GlobalPolicy.load(DEFAULT_MODEL)
    punch = next(c for c in shipped.caption_clips if "punch" in c)
    meta = dict(shipped.meta, captions=["get up from the ground" if c == punch else t
                                        for t, c in zip(shipped.captions, shipped.caption_clips)])
    c = PolicyController(GlobalPolicy(shipped.tree, meta))
    assert c.get_up_command == "get up from the ground" and punch not in c.caption_clips
    assert punch not in c.one_shot_s and len(c.captions) == len(c.caption_emb) < len(shipped.captions)
    c.set_command("throw a punch")
    assert c.clip != punch
    loop = SimLoop(c.model, c)
    loop.command("stand still")
    knock_down(loop)
    loop.advance(0.2)
    assert (loop.falls, loop.restarts) == (1, 0) and c.clip == punch and c.matched_caption == c.get_up_command


def test_get_ups_are_distilled_in_a_group_of_their_own_scored_without_transitions(get_up_expert, tmp_path):
    """The groups stage puts the get-up clips in a group of their own (they begin lying where the others stand), and
    that group's evaluations score no transitions (no user switches to or from a get-up) instead of failing."""
    from motions.library import MotionLibrary
    from superpadl.groups import GroupConfig, distill_groups

    folder, _ = get_up_expert
    lib = MotionLibrary(folder / "lib")
    cfg = GroupConfig(env=dataclasses.replace(GroupConfig().env, num_envs=4, physics=PhysicsConfig(
        backend="mujoco", num_threads=1)), rollout_steps=4, iterations=1, bc_warmup_iterations=1, eval_every=1,
        eval_episodes=1, eval_transitions=2)
    results = distill_groups(lib, [folder / "expert"], tmp_path / "groups", cfg, progress=False, log=lambda m: None)
    spec = json.loads((tmp_path / "groups" / "groups.json").read_text())
    assert [g["clips"] for g in spec["groups"]] == [["synthetic_stand", "synthetic_sway"], ["getup_down", "getup_up"]]
    assert "transition_success" in results["group_000"] and "transition_success" not in results["group_001"]
