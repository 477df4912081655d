"""The expert runtime controller: text picks the clip by caption, the reference is re-anchored at the character,
targets respect the actuator ranges, and controller folders load with clear errors."""
import json
from pathlib import Path

import numpy as np
import pytest

from motions.library import MotionLibrary
from padl.env import EnvConfig, EpisodeConfig, PhysicsConfig
from padl.expert import ExpertConfig, train
from superpadl.runtime import Anchor, load_controller
from superpadl.cli import main as superpadl_main
from synthetic import write_synthetic_library


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ctl")
    lib_path = write_synthetic_library(root / "lib", kinds=("sway", "squat"))
    lib = MotionLibrary(lib_path)
    cfg = ExpertConfig(env=EnvConfig(num_envs=4, clips=("synthetic_sway", "synthetic_squat"),
                                     physics=PhysicsConfig(backend="mujoco", num_threads=1)))
    train(lib, root / "expert", cfg, iterations=0, progress=False)  # an untrained expert: PD on the reference
    (root / "controller.json").write_text(json.dumps(
        {"format": "padl-expert-controller", "library": "lib", "experts": ["expert"]}))
    return root


def test_anchor_moves_the_reference_root_onto_the_character():
    rng = np.random.default_rng(0)
    ref = np.concatenate([[0.3, -0.2, 0.9], [np.cos(0.4), 0, 0, np.sin(0.4)], np.zeros(28)])
    char = np.concatenate([[2.0, 1.0, 0.95], [np.cos(-1.0), 0, 0, np.sin(-1.0)], np.zeros(28)])
    a = Anchor.between(ref, char)
    moved = a.qpos(ref)
    np.testing.assert_allclose(moved[:2], char[:2], atol=1e-9)  # same place on the floor, own height
    assert moved[2] == pytest.approx(0.9)
    np.testing.assert_allclose(np.abs(moved[3:7] @ char[3:7]), 1.0, atol=1e-9)  # same heading
    p = rng.normal(size=(5, 3))  # a rigid motion: distances between points are kept
    np.testing.assert_allclose(np.linalg.norm(a.points(p)[0] - a.points(p)[1]), np.linalg.norm(p[0] - p[1]))
    kept = Anchor.between(ref, char, yaw=0.25)  # the position follows, the heading is the one given
    np.testing.assert_allclose(kept.qpos(ref)[:2], char[:2], atol=1e-9)
    assert kept.yaw == pytest.approx(0.25)


def test_commands_pick_clips_and_targets_stay_in_range(folder):
    c = load_controller(folder)
    assert c.match("someone bends the knees slowly")[0] == "synthetic_squat"
    assert c.match("swinging both arms while standing")[0] == "synthetic_sway"
    qpos, qvel = c.initial_state()
    c.reset(qpos, qvel)
    c.set_command("bend your knees")
    assert c.clip == "synthetic_squat"
    low, high = c.model.actuator_ctrlrange.T
    for _ in range(5):
        t = c.act(qpos, qvel)
        assert t.shape == (28,) and np.all(t >= low - 1e-6) and np.all(t <= high + 1e-6)
    assert c.clip_time == pytest.approx(5 / 30)
    with pytest.raises(ValueError, match="empty prompt"):
        c.set_command("   ")


def test_an_expert_drives_the_targets_the_environment_trained_it_on_even_past_its_action_range(folder):
    """The environment clips actions to [-1, 1] before the PD targets; a mean action past 1 (states off the clips)
    unclipped in the runtime was a larger residual than the expert was trained with."""
    import jax.numpy as jnp

    from padl.env import ImitationEnv, pd_targets

    c = load_controller(folder)
    qpos, qvel = c.initial_state()
    c.reset(qpos, qvel)
    c.set_command("bend your knees")
    expert = c.experts[0]
    expert.act = lambda obs: np.full((1, 28), 3.0, np.float32)  # far past the range
    targets = c.act(qpos, qvel)
    env = ImitationEnv(c.library, EnvConfig(num_envs=1, clips=("synthetic_squat",),
                                            physics=PhysicsConfig(backend="mujoco", num_threads=1)))
    ref = c._ref(np.array([1 / 30]))[0][0, 7:].astype(np.float32)
    np.testing.assert_allclose(targets, env._targets(ref, np.ones(28, np.float32)), atol=1e-6)
    low, high = c.model.actuator_ctrlrange.T
    same = [pd_targets(x(ref), x(np.full(28, a, np.float32)), "residual", 0.5, c.character.actuator_joint, low, high)
            for x in (np.asarray, jnp.asarray) for a in (1.0, 3.0)]
    for t in same[1:]:
        np.testing.assert_allclose(np.asarray(t), same[0], atol=1e-6)


@pytest.mark.parametrize("hold_s", [0.0, 0.5])
def test_an_ended_one_shot_clip_hands_over_to_the_standing_expert_where_it_also_starts(tmp_path, hold_s):
    """As the global policy and DAgger's labels do, a one-shot command held past its clip's end turns into the
    standing skill, from where the character is, once the stand its expert practised past the end (`hold_s`) is
    over; the character starts (and restarts) in the standing clip's first frame, the runtime's start pose."""
    from superpadl import endurance as E

    lib_path = write_synthetic_library(tmp_path / "lib", kinds=("balance", "stand"), shift={"stand": (0.5, 0.0)})
    lib = MotionLibrary(lib_path)
    cfg = ExpertConfig(env=EnvConfig(num_envs=2, clips=("synthetic_balance", "synthetic_stand"),
                                     physics=PhysicsConfig(backend="mujoco", num_threads=1),
                                     episode=EpisodeConfig(hold_s=hold_s)))
    train(lib, tmp_path / "expert", cfg, iterations=0, progress=False)
    (tmp_path / "controller.json").write_text(json.dumps(
        {"format": "padl-expert-controller", "library": "lib", "experts": ["expert"]}))
    c = load_controller(tmp_path)
    assert c.idle == "synthetic_stand" and c.caption_clips == ["synthetic_balance", "synthetic_stand"]
    qpos, qvel = c.initial_state()
    np.testing.assert_allclose(qpos, E.first_frame(lib, "synthetic_stand"))
    c.reset(qpos, qvel)
    c.set_command("stand on one leg")
    assert c.clip == "synthetic_balance"
    end = lib.durations[lib.index("synthetic_balance")]
    steps = int((end + hold_s) * c.control_hz)
    moved = qpos + np.r_[0.3, np.zeros(34)]  # in the hold the character stepped aside
    for k in range(steps + 5):
        in_hold = c.clip == "synthetic_balance" and c.clip_time >= end
        c.act(moved if in_hold else qpos, qvel)
        if k < steps - cfg.env.obs.ref_frames:
            assert c.clip == "synthetic_balance", k
        if in_hold and c.clip == "synthetic_balance":  # the held last frame stands where the character stands
            np.testing.assert_allclose(c.anchor.qpos(c._ref([end])[0][0])[:2], moved[:2], atol=1e-6)
    assert c.clip == "synthetic_stand" and 0 < c.clip_time < 1.0


def test_an_expert_controller_restart_ends_a_one_shot_command_in_standing_and_a_looping_one_goes_on(tmp_path):
    """The expert-level runtime, as `PolicyController`: a restart (a fall without a get-up) during a one-shot clip
    stands from the restart pose instead of replaying the clip that fell; during a looping clip it goes on, from the
    clip's start."""
    lib_path = write_synthetic_library(tmp_path / "lib", kinds=("balance", "sway", "stand"))
    lib = MotionLibrary(lib_path)
    clips = ("synthetic_balance", "synthetic_sway", "synthetic_stand")
    cfg = ExpertConfig(env=EnvConfig(num_envs=2, clips=clips, physics=PhysicsConfig(backend="mujoco", num_threads=1),
                                     episode=EpisodeConfig(hold_s=1.0)))
    train(lib, tmp_path / "expert", cfg, iterations=0, progress=False)
    (tmp_path / "controller.json").write_text(json.dumps(
        {"format": "padl-expert-controller", "library": "lib", "experts": ["expert"]}))
    c = load_controller(tmp_path)
    # what the real-use chain tells standing from a gesture by: the one-shot clip, and the stand practised past it
    balance = float(lib.durations[lib.index("synthetic_balance")])
    assert c.one_shot_s == pytest.approx({"synthetic_balance": balance + 1.0})
    c.idle_after_s = 0.5
    assert c.one_shot_s == pytest.approx({"synthetic_balance": balance})
    c.idle_after_s = None
    qpos, qvel = c.initial_state()
    c.reset(qpos, qvel)
    for command, clip, after in (("stand on one leg", "synthetic_balance", "synthetic_stand"),
                                 ("sway from side to side", "synthetic_sway", "synthetic_sway")):
        c.set_command(command)
        assert c.clip == clip
        for _ in range(10):
            c.act(qpos, qvel)
        assert c.clip == clip and c.clip_time > 0
        c.reset(qpos, qvel)
        assert c.clip == after and c.clip_time == 0.0


def test_controller_folders_fail_clearly(folder, tmp_path, capsys):
    with pytest.raises(ValueError, match="controller.json: missing"):
        load_controller(tmp_path)
    (tmp_path / "controller.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a padl-expert-controller file"):
        load_controller(tmp_path)
    code = superpadl_main(["render", "--prompt", "sway", "-o", str(tmp_path / "x.mp4"), "--policy", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "not a padl-expert-controller file" in err and not (tmp_path / "x.mp4").exists()


def test_render_with_an_expert_controller(folder, tmp_path):
    import imageio.v2 as imageio

    out = tmp_path / "out.mp4"
    code = superpadl_main(["render", "--prompt", "swing your arms for 1s; then bend the knees for 1s", "-o",
                           str(out), "--policy", str(folder), "--width", "160", "--height", "120", "--fps", "15",
                           "--quiet"])
    assert code == 0
    frames = [f for f in imageio.get_reader(out)]
    assert abs(len(frames) - 30) <= 1 and np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5


def _with_a_standing_skill(folder, one_shot_s: dict | None):
    """The shipped policy saved to `folder` with a standing skill (the respond clip's caption renamed "stand still":
    only captions are read) and the one-shot clips `one_shot_s` recorded (None: none recorded, as older policies);
    returns its captions and the rows of the standing, bow and walk captions."""
    from padl import checkpoint
    from superpadl.policies import GlobalPolicy
    from superpadl.runtime import DEFAULT_MODEL

    policy = GlobalPolicy.load(DEFAULT_MODEL)
    meta, clips = {k: v for k, v in policy.meta.items() if k != "one_shot_s"}, policy.caption_clips
    captions = list(meta["captions"])
    stand, bow = clips.index("bandai_respond_normal_001"), clips.index("bandai_bow_normal_001")
    captions[stand] = "stand still"
    checkpoint.save(folder / "policy", policy.tree,
                    {**meta, "captions": captions, **({} if one_shot_s is None else {"one_shot_s": one_shot_s})})
    return captions, stand, bow, clips.index("deepmimic_walk")


def test_a_restart_ends_a_one_shot_command_in_standing_and_a_looping_one_goes_on(tmp_path):
    """After a fall without a get-up skill the loop restarts the character and the controller carries on: a one-shot
    command (a punch that fell) is not played again from the start pose, where it would fall again, but stands; a
    looping one (walk) goes on. The queue still holds what the user typed."""
    import mujoco

    from superpadl.host import SimLoop
    from superpadl.runtime import PolicyController

    captions, stand, bow, walk = _with_a_standing_skill(tmp_path / "p", {"bandai_bow_normal_001": 3.0})
    c = PolicyController(tmp_path / "p")
    loop = SimLoop(c.model, c)
    for command, stands in ((captions[bow], True), (captions[walk], False)):
        loop.command(command)
        loop.advance(0.5)
        assert not c.idling
        loop.data.qpos[2], loop.data.qvel[:] = 0.1, 0.0  # on the floor
        mujoco.mj_forward(loop.model, loop.data)
        restarts = loop.restarts
        loop.control_step()
        assert loop.restarts == restarts + 1 and loop.current.text == command
        assert c.idling == stands
        np.testing.assert_array_equal(c.condition, c.caption_emb[stand if stands else walk])


def test_a_one_shot_command_held_past_its_clip_turns_into_the_standing_skill(tmp_path):
    """The global policy's controller: a one-shot clip's command held past the clip's end (plus idle_after_s)
    conditions the policy on its standing skill, with a new start frame; a looping clip's command never does, and a
    policy that records no one-shot clips (those trained before they were recorded) goes on as commanded."""
    from superpadl.runtime import PolicyController

    captions, stand, bow, walk = _with_a_standing_skill(tmp_path / "recorded", {"bandai_bow_normal_001": 1.0})
    _with_a_standing_skill(tmp_path / "unrecorded", None)
    c = PolicyController(tmp_path / "recorded")
    np.testing.assert_array_equal(c.condition, c.caption_emb[stand])  # before any command it stands
    qpos, qvel = c.initial_state()
    c.reset(qpos, qvel)
    c.set_command(captions[bow])
    for _ in range(round((1.0 + c.idle_after_s) * c.control_hz) - 1):
        c.act(qpos, qvel)
    assert not c.idling and c.start is not None
    np.testing.assert_array_equal(c.condition, c.caption_emb[bow])
    c.act(qpos, qvel)
    c.act(qpos, qvel)
    assert c.idling and c.matched_caption == captions[bow]  # the command stays what the user typed
    np.testing.assert_array_equal(c.condition, c.caption_emb[stand])
    c.set_command(captions[walk])
    for _ in range(round(5 * c.control_hz)):
        c.act(qpos, qvel)
    assert not c.idling
    np.testing.assert_array_equal(c.condition, c.caption_emb[walk])
    old = PolicyController(tmp_path / "unrecorded")
    old.set_command(captions[bow])
    for _ in range(round(5 * old.control_hz)):
        old.act(qpos, qvel)
    assert not old.idling
    np.testing.assert_array_equal(old.condition, old.caption_emb[bow])
