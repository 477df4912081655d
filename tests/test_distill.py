"""SuperPADL distillation: the strided history, DAgger relabelling, short group and global runs that learn, the
runtime policy controller, `superpadl eval`, and clear errors for foreign checkpoints."""
import dataclasses
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motions.library import MotionLibrary
from padl import checkpoint, ppo
from padl.config import to_dict
from padl.env import ActionConfig, EnvConfig, EpisodeConfig, ImitationEnv, PhysicsConfig, StartConfig
from padl.evaluate import evaluate_policy
from padl.expert import ExpertConfig
from padl.policy import ExpertPolicy
from superpadl import endurance as E
from superpadl import student as S
from superpadl.cli import main as superpadl_main
from superpadl.evaluate import GroupAgent, kept_score, transition_success
from superpadl.global_policy import Carry, CommandSchedule, Commands, GlobalConfig, dagger_rollout, train_global
from superpadl.groups import GroupConfig, clip_priorities, make_groups, practised_success, train_group
from superpadl.policies import GlobalPolicy, GroupPolicy
from superpadl.teachers import ExpertTeachers, GroupTeachers, load_groups
from superpadl.runtime import GroupController, PolicyController, load_controller
from synthetic import write_synthetic_library

CLIPS = ["synthetic_sway", "synthetic_squat"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> MotionLibrary:
    return MotionLibrary(write_synthetic_library(tmp_path_factory.mktemp("lib") / "synthetic", kinds=("sway", "squat")))


def test_history_is_strided_and_restarts():
    cfg = S.HistoryConfig(frames=5, window=40)
    frame = lambda t: jnp.full((2, 3), float(t))
    hist = S.init_history(frame(0), cfg)
    for t in range(1, 60):
        hist = S.push_history(hist, frame(t), jnp.array([False, t == 50]))
    x = np.asarray(S.strided(hist, cfg)).reshape(2, 5, 3)[:, :, 0]
    np.testing.assert_array_equal(x[0], [51, 43, 35, 27, 19])  # t = 59 - 8k: every 8th frame over the last 40
    np.testing.assert_array_equal(x[1], [51, 50, 50, 50, 50])  # restarted at t = 50: its first frame fills the past
    with pytest.raises(ValueError, match="multiple"):
        S.history_offsets(S.HistoryConfig(frames=3, window=40))


def test_student_input_layout():
    pobs, hist, cond = jnp.zeros((3, 223)), jnp.zeros((3, 41, 84)), jnp.ones((3, 7))
    heading = jnp.full((3, 3), 0.5)
    for with_heading in (False, True):
        cfg = S.HistoryConfig(heading=with_heading)
        x = S.student_input(pobs, hist, cond, cfg, heading)
        assert x.shape == (3, S.input_size(cfg, 7))
    np.testing.assert_allclose(x[:, -10:-3], 1.0)  # the condition, then the heading features last
    np.testing.assert_allclose(x[:, -3:], 0.5)
    with pytest.raises(ValueError, match="heading"):
        S.student_input(pobs, hist, cond, cfg)


def test_heading_features_measure_turn_and_sideways_offset_in_the_start_frame():
    q = np.zeros((3, 35), np.float32)
    q[:, 3] = 1.0
    q[1, :2] = [1.0, 0.0]
    q[1, 3], q[1, 6] = np.cos(np.pi / 4), np.sin(np.pi / 4)  # facing +y (yaw 90 deg)
    start = S.root_frame(q)
    np.testing.assert_allclose(start[1], [1.0, 0.0, np.pi / 2], atol=1e-6)
    root = start.at[:, :2].add(jnp.asarray([[0.0, 0.3], [0.5, 2.0], [0.0, -3.0]])).at[:, 2].add(
        jnp.asarray([0.0, np.pi / 6, 0.0]))
    f = np.asarray(S.heading_features(start, root))
    # facing +x, 0.3 m to the left; facing +y, 0.5 m along x is to the right and 2 m forward (not seen), turned
    # 30 deg; 3 m to the right is clipped to 1
    np.testing.assert_allclose(f, [[0, 1, 0.3], [0.5, np.cos(np.pi / 6), -0.5], [0, 1, -1.0]], atol=1e-6)


@pytest.fixture(scope="module")
def small_env(lib) -> ImitationEnv:
    return ImitationEnv(lib, EnvConfig(num_envs=4, physics=PhysicsConfig(backend="mujoco", num_threads=1),
                                       action=ActionConfig(mode="absolute")))


def test_anchored_start_is_where_the_reanchored_clip_begins(lib):
    """A group student's command start after a switch, `anchored(clip start, anchor)`, is the `root_frame` of the
    re-anchored reference's first frame (`padl.env.anchor_ref`)."""
    from padl.env import RefWindow, anchor_ref

    n = len(lib.clip_ids)
    r = lib.sample(jnp.arange(n), jnp.zeros(n, jnp.float32))
    away = jnp.asarray([1.0, 0.5, 0.0])  # clips that begin off the origin, so the turn moves their start too
    qpos, body_pos = r.qpos.at[:, :3].add(away), r.body_pos + away
    anchor = jnp.asarray([[2.5, 1.0, -3.0], [-1.0, 0.2, 0.7]], jnp.float32)[:n]
    moved = anchor_ref(RefWindow(*(x[:, None] for x in (qpos, r.qvel, body_pos, r.body_rot))), anchor)
    start = S.root_frame(qpos)
    got, want = S.anchored(start, anchor), S.root_frame(moved.qpos[:, 0])
    np.testing.assert_allclose(got[:, :2], want[:, :2], atol=1e-5)
    np.testing.assert_allclose(np.sin(got[:, 2] - want[:, 2]), 0.0, atol=1e-5)
    assert np.linalg.norm(np.asarray(got[:, :2] - start[:, :2]), axis=-1).min() > 0.3


def _schedule(p_switch: float, **kw) -> CommandSchedule:
    """The command schedule that switches with probability `p_switch` (0 or 1) per control step (30 Hz)."""
    return CommandSchedule(switch_every_s=1 / 30 / p_switch if p_switch else np.inf, **kw)


def _labelled(lib, env, state, command: int, steps: int, commands: Commands, schedule: CommandSchedule):
    """A DAgger rollout of zero actions from `state`, every env commanded `command` (just begun), each step labelled
    by a teacher whose action is the clip it is commanded: (carry, student inputs, labels (steps, N), falls,
    switches)."""
    hcfg = S.HistoryConfig()
    teacher = lambda pobs, hist, cmd, heading: jnp.broadcast_to(cmd[:, None].astype(jnp.float32), (len(cmd), 28))
    command = jnp.full(env.num_envs, command, jnp.int32)
    carry = Carry(state, S.init_history(S.env_proprio(state)[1], hcfg), command, command, jnp.zeros(env.num_envs),
                  S.clip_starts(lib)[command])
    carry, (xs, ys, _), (falls, switches) = dagger_rollout(
        env, carry, lambda x, k: jnp.zeros((x.shape[0], 28)), teacher, jnp.zeros(env.num_envs, bool),
        jnp.eye(len(lib.clip_ids), 384), hcfg, steps, jax.random.key(1), commands, schedule)
    return carry, xs, np.asarray(ys[:, :, 0]), falls, switches


def test_dagger_commands_outlive_their_clip_by_end_switch(lib, small_env):
    """A command whose clip ends (here after 0.1 s) switches with probability `end_switch`: always with 1, never with
    0, when its teacher learnt to stand after the skill (`EpisodeConfig.hold_s`), so its clock runs on past the end."""
    hcfg = S.HistoryConfig()
    starts, clips = S.clip_starts(lib), jnp.asarray([lib.index(c) for c in CLIPS])
    ends = jnp.full((len(lib.clip_ids),), 0.1)
    seen = {}
    for end_switch in (1.0, 0.0):
        state = small_env.reset(jax.random.key(0))
        carry = Carry(state, S.init_history(S.env_proprio(state)[1], hcfg), jnp.asarray(state.clip),
                      jnp.zeros(4, jnp.int32), jnp.zeros(4), starts[jnp.asarray(state.clip)])  # commands just begun
        carry, _, (falls, switches) = dagger_rollout(
            small_env, carry, lambda x, k: jnp.zeros((x.shape[0], 28)), lambda *a: jnp.zeros((a[0].shape[0], 28)),
            jnp.zeros(4, bool), jnp.eye(2, 384), hcfg, 6, jax.random.key(1),
            Commands(clips, lambda k, c: jnp.zeros_like(c), starts, ends), _schedule(0.0, end_switch=end_switch))
        assert falls == 0
        seen[end_switch] = (switches, np.asarray(carry.clock))
    assert seen[1.0][0] == 8 and seen[0.0][0] == 0  # each env crossed 0.1 s twice in six steps (3 steps apiece)
    np.testing.assert_allclose(seen[0.0][1], 6 / 30, atol=1e-5)  # never restarted
    np.testing.assert_allclose(seen[1.0][1], 0.0, atol=1e-5)  # restarted at the third step and the sixth


def test_a_switch_near_a_clips_end_is_labelled_by_its_teacher_until_it_ends(lib, small_env):
    """`finish_s`: a command given in the last finish_s of a clip (here 0.2 s long, switched at every step) is shown
    to the student at once, but the old clip's teacher labels until the clip ends (its 6th step), the new one's
    after; with finish_s 0 the new teacher labels from the switch on."""
    hcfg = S.HistoryConfig()
    starts, ends = S.clip_starts(lib), jnp.full((len(lib.clip_ids),), 0.2)
    a, b = lib.index(CLIPS[0]), lib.index(CLIPS[1])
    teacher = lambda pobs, hist, cmd, heading: jnp.broadcast_to(cmd[:, None].astype(jnp.float32), (len(cmd), 28))
    state = small_env.reset(jax.random.key(0))
    on_a = np.asarray(state.clip) == a
    assert on_a.any() and not on_a.all()
    labels, shown = {}, {}
    for finish_s in (0.0, 0.5):
        carry = Carry(state, S.init_history(S.env_proprio(state)[1], hcfg), jnp.asarray(state.clip),
                      jnp.asarray(state.clip), jnp.zeros(4), starts[jnp.asarray(state.clip)])
        carry, (xs, ys, _), (falls, switches) = dagger_rollout(
            small_env, carry, lambda x, k: jnp.zeros((x.shape[0], 28)), teacher, jnp.zeros(4, bool),
            jnp.eye(len(lib.clip_ids), 384), hcfg, 8, jax.random.key(1),
            Commands(jnp.asarray([b]), lambda k, c: c, starts, ends), _schedule(1.0, finish_s=finish_s))
        assert falls == 0
        labels[finish_s], shown[finish_s] = np.asarray(ys[:, on_a, 0]), np.asarray(xs[:, on_a, -384 + b])
    for finish_s, handover in ((0.0, 1), (0.5, 6)):
        want = np.where(np.arange(8)[:, None] < handover, a, b)
        np.testing.assert_array_equal(labels[finish_s], np.broadcast_to(want, labels[finish_s].shape))
    for s in shown.values():  # the student is told clip b from the step after the first switch on
        np.testing.assert_array_equal(s[1:], 1.0)
        np.testing.assert_array_equal(s[0], 0.0)


def test_a_command_held_past_its_clips_end_is_labelled_by_the_idle_teacher(lib, small_env):
    """With an idle clip, a command kept past its non-looping clip's end (0.2 s: the 6th step) is labelled by the
    idle clip's teacher from then on, while the student is still shown the command; without one its own teacher
    labels on (holding the clip's last frame)."""
    starts, ends = S.clip_starts(lib), jnp.full((len(lib.clip_ids),), 0.2)
    a, b = lib.index(CLIPS[0]), lib.index(CLIPS[1])
    state = small_env.reset(jax.random.key(0))
    labels, shown = {}, {}
    for idle in (-1, b):
        _, xs, labels[idle], falls, switches = _labelled(
            lib, small_env, state, a, 8, Commands(jnp.asarray([a, b]), lambda k, c: c, starts, ends, idle),
            _schedule(0.0, end_switch=0.0))
        assert falls == 0 and switches == 0
        shown[idle] = np.asarray(xs[:, :, -384 + a])
    np.testing.assert_array_equal(labels[-1], a)
    np.testing.assert_array_equal(labels[b], np.broadcast_to(np.where(np.arange(8)[:, None] < 6, a, b), (8, 4)))
    for s in shown.values():
        np.testing.assert_array_equal(s, 1.0)


def test_a_gesture_commanded_while_moving_is_labelled_by_the_idle_teacher_until_the_character_stops(lib, small_env):
    """`brake_s`: clip a (the idle clip here) ends at its 3rd step and the command switches to clip b, which is not
    locomotion. Characters moving at 1 m/s are labelled by the idle teacher from then on, until they are slow or
    brake_s (0.2 s: 6 steps) is over, while the student is shown b at once; characters at rest, and every character
    with brake_s 0, are labelled by b's teacher at once."""
    starts = S.clip_starts(lib)
    a, b = lib.index(CLIPS[0]), lib.index(CLIPS[1])
    ends = jnp.full((len(lib.clip_ids),), jnp.inf).at[a].set(0.1)
    state = small_env.reset(jax.random.key(0))
    qvel = np.array(state.qvel)
    qvel[:2, 0] = 1.0  # the first two move forward at a walk's speed
    state = state._replace(qvel=qvel)
    moves = jnp.zeros(len(lib.clip_ids), bool)
    labels = {}
    for brake_s in (0.0, 0.2):
        _, xs, labels[brake_s], _, switches = _labelled(
            lib, small_env, state, a, 12, Commands(jnp.asarray([b]), lambda k, c: c, starts, ends, a, moves),
            _schedule(0.0, end_switch=1.0, brake_s=brake_s))
        assert switches == 4
        np.testing.assert_array_equal(np.asarray(xs[3:, :, -384 + b]), 1.0)  # the student is shown b at once
    np.testing.assert_array_equal(labels[0.0][3:6], b)
    np.testing.assert_array_equal(labels[0.2][:6, :2], a)  # braking for 3 steps at least
    np.testing.assert_array_equal(labels[0.2][3:, 2:], b)  # at rest: b at once
    assert (labels[0.2][3:3 + 6 + 1, :2] == b).any(0).all()  # handed over by brake_s at the latest


def _moving(lib, env, speed: float):
    """(a, b, the history config, the clips' starts, env states reset and moving forward at `speed` m/s)."""
    a, b = lib.index(CLIPS[0]), lib.index(CLIPS[1])
    state = env.reset(jax.random.key(0))
    qvel = np.array(state.qvel)
    qvel[:, 0] = speed
    return a, b, S.HistoryConfig(), S.clip_starts(lib), state._replace(qvel=qvel)


def _label_by_command(pobs, hist, cmd, heading):
    """A teacher whose action is the clip it is commanded."""
    return jnp.broadcast_to(cmd[:, None].astype(jnp.float32), (len(cmd), 28))


def test_locomotion_commanded_while_braking_for_a_gesture_takes_over_at_once(lib, small_env):
    """Characters braking (commanded the idle clip a, a command pending, moving at 1 m/s) and switched by the user
    to a locomotion clip (b, marked so here) every step: with brake_s they are labelled by b's teacher from the first
    step, as the runtime plays a walk given while it stops; the pending command is dropped."""
    a, b, hcfg, starts, state = _moving(lib, small_env, 1.0)
    command = jnp.full(4, a, jnp.int32)
    carry = Carry(state, S.init_history(S.env_proprio(state)[1], hcfg), command, command, jnp.zeros(4),
                  starts[command], jnp.full(4, b, jnp.int32))
    commands = Commands(jnp.asarray([b]), lambda k, c: c, starts, jnp.full((len(lib.clip_ids),), jnp.inf), a,
                        jnp.zeros(len(lib.clip_ids), bool).at[b].set(True))
    carry, (_, ys, _), _ = dagger_rollout(
        small_env, carry, lambda x, k: jnp.zeros((x.shape[0], 28)), _label_by_command, jnp.zeros(4, bool),
        jnp.eye(len(lib.clip_ids), 384), hcfg, 3, jax.random.key(1), commands, _schedule(1.0, brake_s=2.0))
    labels = np.asarray(ys[:, :, 0])
    np.testing.assert_array_equal(labels[1:], b)  # switched by the first step's commands, labelled b from the next
    np.testing.assert_array_equal(np.asarray(carry.pending), -1)


def test_a_stop_teacher_labels_the_braking_and_standing_given_while_moving(lib, small_env):
    """Characters doing b at 3 m/s, the user commanding the idle clip a ("stand still") at the first step: with a stop
    teacher they brake (a pending) and its labels (-1 here) replace the idle teacher's; without one, standing given
    while moving is the idle teacher's at once (nothing pending)."""
    a, b, hcfg, starts, state = _moving(lib, small_env, 3.0)
    stop = lambda pobs, hist, cmd, heading: jnp.full((len(cmd), 28), -1.0)
    commands = Commands(jnp.asarray([a]), lambda k, c: c, starts, jnp.full((len(lib.clip_ids),), jnp.inf), a,
                        jnp.zeros(len(lib.clip_ids), bool))
    got = {}
    for stop_teacher in (None, stop):
        command = jnp.full(4, b, jnp.int32)
        carry = Carry(state, S.init_history(S.env_proprio(state)[1], hcfg), command, command, jnp.zeros(4),
                      starts[command])
        carry, (_, ys, _), _ = dagger_rollout(
            small_env, carry, lambda x, k: jnp.zeros((x.shape[0], 28)), _label_by_command, jnp.zeros(4, bool),
            jnp.eye(len(lib.clip_ids), 384), hcfg, 2, jax.random.key(1), commands, _schedule(1.0, brake_s=2.0),
            stop_teacher)
        got[stop_teacher is None] = (np.asarray(ys[1, :, 0]), np.asarray(carry.pending), np.asarray(carry.command))
    np.testing.assert_array_equal(got[True][0], a)
    np.testing.assert_array_equal(got[True][1], -1)
    np.testing.assert_array_equal(got[False][0], -1)  # braking, then commanded a again: still braking
    np.testing.assert_array_equal(got[False][1], a)
    np.testing.assert_array_equal(got[False][2], a)


def test_a_command_switching_at_its_clips_end_switches_to_the_idle_clip_shown_as_such(lib, small_env):
    """`end_switch` 1 with an idle clip: a command whose clip ends (0.2 s: the 6th step) switches to the idle clip,
    labelled by its teacher and shown to the student by its caption, as the runtime conditions a held one-shot
    command on standing; the idle clip is never drawn otherwise here (`clips` holds a alone)."""
    starts, ends = S.clip_starts(lib), jnp.full((len(lib.clip_ids),), 0.2)
    a, b = lib.index(CLIPS[0]), lib.index(CLIPS[1])
    carry, xs, labels, falls, switches = _labelled(
        lib, small_env, small_env.reset(jax.random.key(0)), a, 8,
        Commands(jnp.asarray([a]), lambda k, c: c, starts, ends, b), _schedule(0.0, end_switch=1.0))
    assert falls == 0 and switches == 4
    after = np.arange(8)[:, None] >= 6
    np.testing.assert_array_equal(labels, np.broadcast_to(np.where(after, b, a), (8, 4)))
    np.testing.assert_array_equal(np.asarray(xs[:, :, -384 + b]), np.broadcast_to(after, (8, 4)).astype(float))
    np.testing.assert_array_equal(np.asarray(carry.command), b)


def test_a_get_up_is_neither_cut_short_nor_switched_to(lib, small_env):
    """A get-up clip (`Commands.lying`) keeps its command until its clip is over however often a switch is drawn, as
    `SimLoop` holds a get-up until the character stands, and no switch goes to it: clip a is the get-up here, over at
    0.2 s (the 6th step), and a switch is drawn at every step among both clips."""
    starts, ends = S.clip_starts(lib), jnp.full((len(lib.clip_ids),), 0.2)
    a, b = lib.index(CLIPS[0]), lib.index(CLIPS[1])
    for lying, want in ((a, np.where(np.arange(9) >= 6, b, a)), (None, None)):
        flags = None if lying is None else jnp.zeros(len(lib.clip_ids), bool).at[lying].set(True)
        _, _, labels, falls, switches = _labelled(
            lib, small_env, small_env.reset(jax.random.key(0)), a, 9,
            Commands(jnp.asarray([a, b]), lambda k, c: c, starts, ends, lying=flags), _schedule(1.0))
        assert falls == 0
        if want is not None:
            np.testing.assert_array_equal(labels, np.broadcast_to(want[:, None], (9, 4)))
            assert switches == 4 * 4  # at the clip's end, then every step (to b again)
        else:  # without it the first step switches already, to a as well as to b
            assert switches == 4 * 9 and (labels[1:6] == b).any() and (labels[1:] == a).any()


def test_rest_switch_commands_another_clip_from_a_first_frame_start(lib):
    """`rest_switch` 1: every episode begun at a clip's first frame (0.1 s episodes, all begun there) is commanded
    a clip of `train_clips` at once (here clip b only), as a user's first command from the viewer's rest pose; with
    0 the command is the episode's own clip."""
    env = ImitationEnv(lib, EnvConfig(num_envs=4, physics=PhysicsConfig(backend="mujoco", num_threads=1),
                                      action=ActionConfig(mode="absolute"), episode=EpisodeConfig(length_s=0.1),
                                      starts=StartConfig(first_frame_share=1.0)))
    hcfg, starts, looping = S.HistoryConfig(), S.clip_starts(lib), jnp.full((len(lib.clip_ids),), jnp.inf)
    b = lib.index(CLIPS[1])
    teacher = lambda pobs, hist, cmd, heading: jnp.broadcast_to(cmd[:, None].astype(jnp.float32), (len(cmd), 28))
    got = {}
    for rest_switch in (0.0, 1.0):
        state = env.reset(jax.random.key(0))
        carry = Carry(state, S.init_history(S.env_proprio(state)[1], hcfg), jnp.asarray(state.clip),
                      jnp.asarray(state.clip), jnp.zeros(4), starts[jnp.asarray(state.clip)])
        carry, (_, ys, _), _ = dagger_rollout(
            env, carry, lambda x, k: jnp.zeros((x.shape[0], 28)), teacher, jnp.zeros(4, bool),
            jnp.eye(len(lib.clip_ids), 384), hcfg, 5, jax.random.key(1),
            Commands(jnp.asarray([b]), lambda k, c: c, starts, looping), _schedule(0.0, rest_switch=rest_switch))
        assert (np.asarray(carry.env_state.step) == 2).all()  # restarted after the third step
        got[rest_switch] = (np.asarray(ys[3:, :, 0]), np.asarray(carry.env_state.clip), np.asarray(carry.clock))
    own, clips, _ = got[0.0]
    assert (clips != b).any()  # some episodes restarted on another clip than b
    np.testing.assert_array_equal(own, np.broadcast_to(clips, own.shape))
    np.testing.assert_array_equal(got[1.0][0], b)
    np.testing.assert_allclose(got[1.0][2], 2 / 30, atol=1e-6)  # the command's clock began at the restart


def test_an_episode_begun_in_a_foreign_state_commands_from_where_the_character_stands(tmp_path):
    """With the env's foreign starts (another clip's states, the own clip re-anchored at the character), a
    restarted episode's command begins where the character stands: its start frame is the re-anchored clip's, not
    the clip's own first frame 2 m away."""
    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("sway", "squat"), shift={"squat": (2.0, 0)}))
    env = ImitationEnv(lib, EnvConfig(num_envs=8, physics=PhysicsConfig(backend="mujoco", num_threads=1),
                                      action=ActionConfig(mode="absolute"), episode=EpisodeConfig(length_s=0.1),
                                      starts=StartConfig(foreign_share=1.0)))
    hcfg, starts, looping = S.HistoryConfig(), S.clip_starts(lib), jnp.full((len(lib.clip_ids),), jnp.inf)
    state = env.reset(jax.random.key(0))
    carry = Carry(state, S.init_history(S.env_proprio(state)[1], hcfg), jnp.asarray(state.clip),
                  jnp.asarray(state.clip), jnp.zeros(8), starts[jnp.asarray(state.clip)])
    teacher = lambda pobs, hist, cmd, heading: jnp.zeros((len(cmd), 28))
    carry, _, _ = dagger_rollout(env, carry, lambda x, k: jnp.zeros((x.shape[0], 28)), teacher, jnp.zeros(8, bool),
                                 jnp.eye(len(lib.clip_ids), 384), hcfg, 4, jax.random.key(1),
                                 Commands(jnp.asarray([0]), lambda k, c: c, starts, looping), _schedule(0.0))
    assert (np.asarray(carry.env_state.step) == 1).all()  # restarted one step ago
    here = np.asarray(S.root_frame(carry.env_state.qpos))
    gap = lambda start: np.abs(np.asarray(start) - here)[:, :2].max()
    assert gap(carry.start) < 0.06, gap(carry.start)  # one control step from where it began
    assert gap(starts[jnp.asarray(carry.env_state.clip)]) > 1.5  # the clip's own first frame is elsewhere


def test_restart_history_is_the_reference_past_or_the_first_frame(small_env):
    state = small_env.reset(jax.random.key(3))
    frame = S.env_proprio(state)[1]
    cfg = S.HistoryConfig()
    past = np.asarray(S.restart_fill(small_env, state, frame, dataclasses.replace(cfg, reference_restarts=1.0),
                                     jax.random.key(0)))
    assert past.shape == (4, cfg.window + 1, frame.shape[1])
    np.testing.assert_allclose(past[:, 0], frame)  # the real (noisy) first frame
    # the reference's past as the env's own reference-state start computes it for the discriminator
    h = state.disc_hist.shape[1]
    np.testing.assert_allclose(past[:, 1:h], np.asarray(state.disc_hist)[:, 1:h], atol=1e-5)
    assert np.abs(past[:, -1] - past[:, 0]).max() > 0.05  # a moving clip: the far past differs from now
    still = S.restart_fill(small_env, state, frame, dataclasses.replace(cfg, reference_restarts=0.0), jax.random.key(0))
    np.testing.assert_allclose(still, np.repeat(np.asarray(frame)[:, None], cfg.window + 1, 1))


def test_push_step_fills_restarted_envs_as_the_full_reference_past_does(small_env):
    """`push_step` computes the reference's past only for the envs that restarted (up to `restart_rows`, or all
    when more did); every count gives the histories that filling every env with `restart_fill` gives."""
    n = 32
    assert S.restart_rows(n) == 2
    tile = lambda x: jnp.tile(x, (n // 4,) + (1,) * (x.ndim - 1))
    state = S.view(small_env.reset(jax.random.key(5)))
    state = state._replace(**{f: tile(getattr(state, f)) for f in ("clip", "disc_hist", "obs", "done", "truncated")},
                           clip_time=jnp.linspace(0.1, 1.5, n))
    cfg = S.HistoryConfig(reference_restarts=0.5)
    hist = jax.random.normal(jax.random.key(1), (n, cfg.window + 1, state.disc_hist.shape[-1]))
    frame = S.env_proprio(state)[1]
    step = jax.jit(lambda h, s, k: S.push_step(h, small_env, s, cfg, k))
    for restarted, seed in itertools.product(([], [7], [3, 30], [0, 5, 9, 31], list(range(n))), range(4)):
        done = jnp.zeros(n, bool).at[jnp.asarray(restarted, jnp.int32)].set(True)
        new = state._replace(done=done, truncated=jnp.zeros(n, bool))
        key = jax.random.key(seed)
        want = S.push_history(hist, frame, done, S.restart_fill(small_env, new, frame, cfg, key))
        got = step(hist, new, key)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6, err_msg=f"restarted {restarted}")
    # the draw between the reference's past and a repeated frame went both ways among the 32
    uses_past = np.abs(np.asarray(got)[:, -1] - np.asarray(frame)).max(-1) > 1e-4
    assert 0 < uses_past.sum() < n


def test_dagger_labels_are_the_teachers_actions_on_the_students_states(lib, small_env):
    """The student drives (beta = 0): actions executed are the student's, labels are teacher(state) of the states
    the student reached. With beta = 1 the teacher drives and executed == labels."""
    env = small_env
    hcfg = S.HistoryConfig(heading=True)
    # a known function of the state and the sideways offset the student saw
    teacher = lambda pobs, hist, cmd, heading: jnp.tanh(pobs[:, 1:29]) + heading[:, 2:]
    student = lambda x, k: jnp.full((x.shape[0], 28), 0.3)
    emb = jnp.eye(2, 384)
    clips = jnp.asarray([lib.index(c) for c in CLIPS])
    starts = S.clip_starts(lib)
    looping = jnp.full((len(lib.clip_ids),), jnp.inf)
    for beta, p_switch, clip_end in ((0.0, 0.0, looping), (1.0, 0.0, looping), (0.0, 1.0, looping),
                                     (0.0, 0.0, jnp.full((len(lib.clip_ids),), 0.01))):
        state = env.reset(jax.random.key(0))
        carry = Carry(state, S.init_history(S.env_proprio(state)[1], hcfg), jnp.asarray(state.clip),
                      jnp.zeros(4, jnp.int32), jnp.asarray(state.clip_time), starts[jnp.asarray(state.clip)])
        carry, (xs, ys, executed), _ = dagger_rollout(
            env, carry, student, teacher, jnp.full((4,), beta > 0), emb, hcfg, 6, jax.random.key(1),
            Commands(clips, lambda k, c: jnp.zeros_like(c), starts, clip_end), _schedule(p_switch))
        seen_lateral = np.asarray(xs[..., -1])
        # the labels are the teacher's on the student's own state (xs[..., :223]) and the offset the student saw
        np.testing.assert_allclose(ys, np.tanh(xs[..., 1:29]) + seen_lateral[..., None], atol=1e-5)
        np.testing.assert_allclose(executed, ys if beta else 0.3, atol=1e-5)
        if p_switch or clip_end is not looping:
            # every step switched the command (at random, or since a clip is over after 0.01 s, i.e. at each step
            # after a restart): the clock and the start frame restarted each time (but in restarted envs)
            kept = np.asarray(carry.env_state.step) == 6
            assert kept.any()
            np.testing.assert_allclose(np.asarray(carry.clock)[kept], 0.0, atol=1e-6)
            np.testing.assert_allclose(xs[1:, kept, -3:], np.tile([0.0, 1.0, 0.0], (5, kept.sum(), 1)), atol=1e-6)
        else:  # no switch: the clock is the time in the clip, the start its first frame
            np.testing.assert_allclose(carry.clock, carry.env_state.clip_time, atol=1e-5)
            np.testing.assert_allclose(carry.start, starts[jnp.asarray(carry.env_state.clip)])
            assert float(np.asarray(carry.clock).min()) > 0
    assert not np.allclose(ys[-1], 0.3)


def _zero_residual_expert(lib) -> ExpertPolicy:
    """An untrained expert: its mean action is ~0, i.e. PD on the reference, which follows these clips."""
    cfg = ExpertConfig(env=EnvConfig(num_envs=8, clips=tuple(CLIPS),
                                     physics=PhysicsConfig(backend="mujoco", num_threads=1)))
    ts = ppo.init(jax.random.key(0), ImitationEnv(lib, cfg.env).obs_size, 28, cfg.ppo)
    return ExpertPolicy(ts, {"expert": to_dict(cfg), "clips": CLIPS})


def _tiny_group_config(**kw) -> GroupConfig:
    return dataclasses.replace(GroupConfig(
        env=EnvConfig(num_envs=8, physics=PhysicsConfig(backend="mujoco", num_threads=1),
                      action=ActionConfig(mode="absolute")), rollout_steps=8,
        history=S.HistoryConfig(heading=True),
        iterations=12, bc_warmup_iterations=10, beta_iterations=3, bc_steps=48, critic_warmup_iterations=1,
        eval_every=1000, eval_episodes=1, checkpoint_every=4, disc_updates=1), **kw)


@pytest.fixture(scope="module")
def groups_dir(lib, tmp_path_factory):
    out = tmp_path_factory.mktemp("groups")
    teachers = ExpertTeachers(lib, [_zero_residual_expert(lib)])
    train_group(lib, teachers, CLIPS, out / "group_000", _tiny_group_config(), progress=False, log=lambda m: None)
    (out / "groups.json").write_text(json.dumps({"format": "superpadl-groups",
                                                 "groups": [{"name": "group_000", "clips": CLIPS}]}))
    return out


def _episode_frames(lib, ts, cfg):
    slot = {lib.index(c): i for i, c in enumerate(CLIPS)}
    act = S.student_actor(lambda x: ppo.act(ts, x, jax.random.key(0), deterministic=True)[0], cfg.history,
                          lambda s: jax.nn.one_hot(jnp.asarray([slot[int(c)] for c in s.clip]), len(CLIPS)))
    # the settings of train_group's own final evaluation, so its compiled environment is reused
    return evaluate_policy(lib, act, CLIPS, noise=cfg.eval_noise, env_config=cfg.env)


def test_group_warmup_lowers_bc_loss_and_keeps_the_character_up(lib, groups_dir):
    curve = [json.loads(line) for line in (groups_dir / "group_000" / "progress.jsonl").read_text().splitlines()]
    policy = GroupPolicy.load(groups_dir / "group_000")
    ts, meta = policy.ts, policy.meta
    assert meta["iteration"] == 12 and meta["clips"] == CLIPS
    cfg = _tiny_group_config()
    trained = _episode_frames(lib, ts, cfg)["mean"]
    untrained = _episode_frames(lib, ppo.init(jax.random.key(0), meta["input_size"], 28, cfg.ppo), cfg)["mean"]
    assert trained["frames"] >= 2 * untrained["frames"], (trained, untrained)
    assert any((groups_dir / "group_000" / "logs").iterdir())
    assert curve and curve[-1]["phase"] == "padl"  # the PPO + discriminator + BC phase ran after the warm-up
    # The clips' reset weights follow the last evaluation and are kept for a resume.
    state, _ = checkpoint.load(groups_dir / "group_000" / "train_state")
    assert np.allclose(state["['clip_weights']"], clip_priorities(curve[-1]["clip_success"], cfg.prioritise))
    with pytest.raises(checkpoint.CheckpointError, match="not a SuperPADL global policy"):
        GlobalPolicy.load(groups_dir / "group_000")


def test_group_run_resumes_to_more_iterations(lib, groups_dir, tmp_path):
    import shutil

    run = shutil.copytree(groups_dir / "group_000", tmp_path / "group_000")
    teachers = ExpertTeachers(lib, [_zero_residual_expert(lib)])
    train_group(lib, teachers, CLIPS, run, _tiny_group_config(), resume=True, iterations=14, progress=False,
                log=lambda m: None)
    _, meta = checkpoint.load(run / "train_state")
    assert meta["iteration"] == 14 and meta["samples"] == 14 * 8 * 8


def test_group_init_from_holds_its_controller_while_the_critic_learns_and_scores_transitions(lib, groups_dir, tmp_path):
    """A fine-tuning run (`init_from`, no warm-up) starts from the controller's networks: held bit for bit through
    the critic warm-up; its evaluations also switch commands, and the kept policy is scored by both. A controller
    of other clips is refused."""
    teachers = ExpertTeachers(lib, [_zero_residual_expert(lib)])
    source = GroupPolicy.load(groups_dir / "group_000").ts
    cfg = _tiny_group_config(bc_warmup_iterations=0, critic_warmup_iterations=2, iterations=2, eval_every=2,
                             eval_transitions=4, eval_real_use_minutes=0.1)
    run = tmp_path / "group_000"
    train_group(lib, teachers, CLIPS, run, cfg, progress=False, log=lambda m: None, init_from=groups_dir / "group_000")
    policy = GroupPolicy.load(run)
    ts, meta = policy.ts, policy.meta
    for a, b in zip(jax.tree.leaves(ts.policy_params), jax.tree.leaves(source.policy_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    row = json.loads((run / "progress.jsonl").read_text().splitlines()[-1])
    assert row["phase"] == "padl" and meta["eval"]["transition_success"] == row["transition_success"]
    # the held controller's own transitions, drawn as the evaluation at iteration 2 draws them
    agent = GroupAgent(GroupTeachers(lib, [GroupPolicy.load(groups_dir / "group_000")]), lib)
    assert row["transition_success"] == transition_success(agent, lib, 4, 2.0, 3.0, np.random.default_rng(2))["success"]
    # and its real use: the kept controller (held networks, the normaliser that went on learning) commanded by clip
    # from the start pose, the chain of the same seed
    held = GroupController(run, E.start_pose(lib, CLIPS), lib)
    directions, gestures = E.command_checks(lib)
    use = E.training_eval(held, directions, 0.1, cfg.seed, gestures)
    served = use.pop("clip_served")
    assert 0.0 <= row["served_share"] <= 1.0 and {k: row[k] for k in use} == use
    assert set(served) <= set(CLIPS) and all(0.0 <= v <= 1.0 for v in served.values())
    state, _ = checkpoint.load(run / "train_state")  # what the group practises next weighs both
    assert np.allclose(state["['clip_weights']"],
                       clip_priorities(practised_success(row["clip_success"], CLIPS, served), cfg.prioritise))
    with pytest.raises(checkpoint.CheckpointError, match="not this group's"):
        train_group(lib, teachers, CLIPS[:1], tmp_path / "other", cfg, progress=False, log=lambda m: None,
                    init_from=groups_dir / "group_000")


def test_a_group_controller_given_its_library_turns_a_held_one_shot_command_into_standing(groups_dir, tmp_path):
    """Measured as the runtime drives the global policy: with its library, a group's one-shot command held past its
    clip's end (plus idle_after_s) turns into the group's standing clip; without it, it goes on as commanded."""
    from superpadl.runtime import GroupController

    other = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("stand", "balance")))
    policy = GroupPolicy.load(groups_dir / "group_000")  # two slots, as the two clips below
    policy = GroupPolicy(policy.ts, {**policy.meta, "clips": ["synthetic_balance", "synthetic_stand"]})
    pose = E.start_pose(other, other.clip_ids)
    with_lib, without = GroupController(policy, pose, other), GroupController(policy, pose)
    one_shot = float(other.durations[other.index("synthetic_balance")])
    assert with_lib.idle == 1 and with_lib.one_shot_s["synthetic_balance"] == pytest.approx(one_shot)
    for c in (with_lib, without):
        qpos, qvel = c.initial_state()
        c.reset(qpos, qvel)
        c.set_command("synthetic_balance")
        for _ in range(round((one_shot + 0.1 + c.idle_after_s) * c.control_hz)):
            c.act(qpos, qvel)
    assert with_lib.idling and with_lib.condition.tolist() == [0.0, 1.0]
    assert not without.idling and without.condition.tolist() == [1.0, 0.0]
    with_lib.set_command("synthetic_balance")  # a new command is held afresh
    assert not with_lib.idling and with_lib.held_steps == 0 and with_lib.condition.tolist() == [1.0, 0.0]


def test_clip_priorities_favour_failed_clips():
    w = clip_priorities([1.0, 0.5, 0.0, 1.2], 4.0)
    assert w.tolist() == [1.0, 3.0, 5.0, 1.0]  # success outside [0, 1] is clipped; a mastered clip keeps weight 1
    assert clip_priorities([0.0, 1.0], 0.0).tolist() == [1.0, 1.0]  # strength 0: uniform


def test_clips_are_practised_by_the_worse_of_clip_start_success_and_real_use():
    got = practised_success([0.9, 0.5, 1.0], ["slash", "bow", "walk"], {"slash": 0.0, "bow": 0.75})
    assert got == [0.0, 0.5, 1.0]  # the walk, not commanded in real use, keeps its clip-start success


def test_group_split_random_and_cluster():
    cfg = GroupConfig(group_size=2)
    clips = [f"c{i}" for i in range(5)]
    groups = make_groups(clips, cfg)
    assert sorted(sum(groups, [])) == clips and len(groups) == 3
    emb = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [0.05, 1]], float)
    clustered = make_groups(clips, dataclasses.replace(cfg, grouping="cluster", group_size=3), emb)
    assert sorted(map(sorted, clustered)) == [["c0", "c1"], ["c2", "c3", "c4"]]
    # get-ups (here c1 and c3) make groups of their own, whatever their captions are near
    apart = make_groups(clips, dataclasses.replace(cfg, grouping="cluster", group_size=3), emb, apart=("c1", "c3"))
    assert apart == [["c0", "c2", "c4"], ["c1", "c3"]]
    assert make_groups(clips, cfg, apart=("c1", "c3"))[-1] == ["c1", "c3"]


def _tiny_global_config(**kw) -> GlobalConfig:
    return GlobalConfig(env=EnvConfig(num_envs=8, physics=PhysicsConfig(backend="mujoco", num_threads=1),
                                      action=ActionConfig(mode="absolute"),
                                      episode=EpisodeConfig(max_body_error=1e6, end_with_clip=False)),
                        rollout_steps=8, iterations=16, commands=CommandSchedule(beta_iterations=4), sgd_steps=32, eval_every=8,
                        eval_episodes=1, checkpoint_every=8, eval_transitions=6, eval_real_use_minutes=0.1, **kw)


@pytest.fixture(scope="module")
def global_dir(lib, groups_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("global")
    train_global(lib, load_groups(groups_dir, lib), out, _tiny_global_config(), progress=False, log=lambda m: None)
    return out


@pytest.mark.slow
def test_global_dagger_lowers_bc_loss(global_dir):
    curve = [json.loads(line) for line in (global_dir / "progress.jsonl").read_text().splitlines()]
    assert [c["iteration"] for c in curve] == [8, 16]
    assert curve[-1]["bc/loss"] < curve[0]["bc/loss"]
    policy = GlobalPolicy.load(global_dir)
    tree, meta = policy.tree, policy.meta
    assert meta["captions"] and tree["caption_emb"].shape == (len(meta["captions"]), 384)
    # the policy kept is the best evaluated: skills, switches and real use, then the closest to its clips
    assert all(0.0 <= c["served_share"] <= 1.0 and c["falls_per_hour"] >= 0.0 for c in curve)
    best = max(curve, key=lambda c: (c["success"] + c["transition_success"] + 2 * c["served_share"], -c["g_mpjpe_mm"]))
    assert meta["iteration"] == best["iteration"] and meta["eval"]["g_mpjpe_mm"] == best["g_mpjpe_mm"]


@pytest.mark.slow
def test_global_init_from_fine_tunes_a_trained_policy(lib, global_dir, groups_dir, tmp_path):
    """A run started from a trained global policy begins where that one ended: after its first iteration its BC
    loss is below that of the same run from a new network. A checkpoint of another kind is refused."""
    cfg = dataclasses.replace(_tiny_global_config(), iterations=1, eval_every=1, eval_transitions=0,
                              commands=CommandSchedule(beta_iterations=0))
    first = {}
    for name, source in (("ft", global_dir), ("scratch", None)):
        train_global(lib, load_groups(groups_dir, lib), tmp_path / name, cfg, progress=False, log=lambda m: None,
                     init_from=source)
        first[name] = json.loads((tmp_path / name / "progress.jsonl").read_text().splitlines()[0])
    assert first["ft"]["iteration"] == 1 and first["ft"]["bc/loss"] < 0.5 * first["scratch"]["bc/loss"], first
    # what is evaluated and kept is the Polyak average: (average) of the way from the start to the weights fitted
    start, kept = (checkpoint.load(d / "policy")[0] for d in (global_dir, tmp_path / "ft"))
    fitted = checkpoint.load(tmp_path / "ft" / "train_state")[0]
    a, moved = cfg.average, 0
    for k in [k for k in kept if k.startswith("['policy_params']")]:
        raw = fitted["['ppo'].policy_params" + k.removeprefix("['policy_params']")]
        assert np.allclose(kept[k], a * start[k] + (1 - a) * raw, atol=1e-6), k
        moved += not np.allclose(raw, start[k])
    assert moved >= 4
    with pytest.raises(checkpoint.CheckpointError, match="not a SuperPADL global policy"):
        train_global(lib, load_groups(groups_dir, lib), tmp_path / "bad", cfg, progress=False, log=lambda m: None,
                     init_from=groups_dir / "group_000")


@pytest.mark.slow  # the shipped policy's regression tests run PolicyController in the default suite
def test_policy_controller_commands_history_and_bad_prompts(global_dir):
    c = load_controller(global_dir)
    assert isinstance(c, PolicyController)
    qpos, qvel = c.initial_state()
    c.reset(qpos, qvel)
    c.set_command("someone swings their arms while standing")
    assert c.matched_caption == "a person stands and swings their arms"
    targets = [c.act(qpos, qvel) for _ in range(3)]
    assert all(t.shape == (28,) and np.isfinite(t).all() for t in targets)
    assert c.history.heading and c.start is not None  # the groups' setting, inherited
    hist = np.asarray(c.hist)
    c.set_command("a person slowly bends their knees")  # a switch keeps the body's history, restarts the start ...
    np.testing.assert_array_equal(np.asarray(c.hist), hist)
    assert c.start is None
    assert c.matched_caption == "a person slowly bends their knees"
    c.reset(qpos, qvel)  # ... a restart clears it
    c.act(qpos, qvel)
    assert np.asarray(c.hist).shape == (1, 41, 84) and np.ptp(np.asarray(c.hist), axis=1).max() == 0
    with pytest.raises(ValueError):
        c.set_command("   ")


@pytest.mark.slow
def test_eval_cli_and_foreign_checkpoints(lib, global_dir, groups_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert superpadl_main(["eval", str(global_dir), str(lib.path), "--episodes", "1", "--transitions", "4",
                           "--endurance-minutes", "0.2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["endurance"]["simulated_minutes"] == pytest.approx(0.2) and result["endurance"]["commands"] >= 1
    assert set(result["clips"]) == set(CLIPS) and 0.0 <= result["mean"]["transition_success"] <= 1.0
    by_clip = result["transitions"]["by_clip"]  # also printed, a row per clip: pairs leaving it and going to it
    rows = [r for r in map(str.split, capsys.readouterr().out.splitlines())  # the endurance table has clip rows too
            if r[:1] in ([c] for c in by_clip) and "/" in r[1]]
    assert {r[0]: [r[1], r[2]] for r in rows} == {c: [f"{a}/{n}" for a, n in (v["from"], v["to"])]
                                                  for c, v in by_clip.items()}
    assert sum(int(r[1].split("/")[1]) for r in rows) == 4
    for m in result["commands"].values():
        assert 0.0 <= m["precision_auc"] <= 1.0 and 0.0 <= m["recall_auc"] <= 1.0 and m["g_mpjpe_mm"] > 0
    with pytest.raises(checkpoint.CheckpointError, match="not a SuperPADL group controller"):
        GroupPolicy.load(global_dir)
    capsys.readouterr()
    assert superpadl_main(["eval", str(tmp_path), str(lib.path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("superpadl: error:") and "not a policy" in err and "\n" not in err
    assert superpadl_main(["distill", "global", str(lib.path), str(tmp_path), "--out", str(tmp_path / "g")]) == 1
    assert "groups.json" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_transitions_of_a_policy_with_one_clip_are_refused_not_drawn_for_ever():
    """Pairs must switch between two clips: with one (a global stage of a single skill), the draw never ended."""
    class OneClip:
        commands = [("stand still", "stand"), ("wait", "stand")]

    with pytest.raises(ValueError, match="two clips"):
        transition_success(OneClip(), None, 4, 2.0, 3.0, np.random.default_rng(0))


def test_the_kept_policy_weighs_success_and_transitions_alike():
    rows = {"tracks, falls after switches": {"success": 1.0, "transition_success": 0.2, "g_mpjpe_mm": 40.0},
            "both, often": {"success": 0.8, "transition_success": 0.8, "g_mpjpe_mm": 90.0},
            "both, often, closer": {"success": 0.9, "transition_success": 0.7, "g_mpjpe_mm": 80.0},
            "no transitions scored": {"success": 0.85, "g_mpjpe_mm": 10.0}}
    ranked = sorted(rows, key=lambda name: kept_score(rows[name]), reverse=True)
    assert ranked == ["no transitions scored", "both, often, closer", "both, often", "tracks, falls after switches"]


def test_real_use_weighs_as_much_as_the_clip_start_figures_together():
    """A policy that tracks its clips but falls in use ranks below one a little worse from clip starts that holds."""
    tracks = {"success": 0.95, "transition_success": 0.95, "g_mpjpe_mm": 60.0, "served_share": 0.3}
    holds = {"success": 0.8, "transition_success": 0.8, "g_mpjpe_mm": 80.0, "served_share": 0.7}
    assert kept_score(holds) > kept_score(tracks)
    assert kept_score({**tracks, "served_share": 0.6}) > kept_score(holds)  # 0.775 against 0.75


def test_teachers_drive_a_share_that_decays_to_the_floor():
    from superpadl.student import teacher_share

    cfg = CommandSchedule(beta_iterations=40)
    assert [teacher_share(i, cfg) for i in (0, 10, 40, 400)] == [1.0, 0.75, 0.0, 0.0]
    floored = CommandSchedule(beta_iterations=40, beta_floor=0.2)
    assert [teacher_share(i, floored) for i in (0, 10, 39, 40, 400)] == [1.0, 0.75, 0.2, 0.2, 0.2]
    assert teacher_share(0, CommandSchedule(beta_iterations=0, beta_floor=0.2)) == 0.2
    from superpadl.groups import GroupConfig  # the group stage's warm-up takes the same schedule from its config

    assert [teacher_share(i, GroupConfig(beta_iterations=40, beta_floor=0.25)) for i in (0, 20, 40)] == [1.0, 0.5, 0.25]


def test_the_kept_policy_never_lost_a_skill():
    """More success on average does not make up for a clip that never succeeded."""
    every_clip = {"success": 0.8, "transition_success": 0.8, "g_mpjpe_mm": 90.0, "worst_clip_success": 0.5}
    one_lost = {"success": 0.9, "transition_success": 0.95, "g_mpjpe_mm": 60.0, "worst_clip_success": 0.0}
    assert kept_score(every_clip) > kept_score(one_lost)
    assert kept_score({**one_lost, "worst_clip_success": 0.5}) > kept_score(every_clip)
    assert kept_score(one_lost) > (-1.0, -np.inf)  # still kept over nothing (a run's initial best)


def test_transitions_switch_at_two_seconds_or_when_a_short_clip_ends(tmp_path):
    """A pair's switch comes `switch_s` into its first command, or at the end of a shorter non-looping clip; the
    policy then gets the second command, with its start frame restarted."""
    from superpadl.evaluate import Agent, _commanded, transition_success

    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("sway", "balance"), frames=31))
    seen = {}

    class Recorder(Agent):
        kind = "global"
        commands = [("sway", "synthetic_sway"), ("balance", "synthetic_balance")]
        env_config = EnvConfig(num_envs=4, physics=PhysicsConfig(backend="mujoco", num_threads=1),
                               action=ActionConfig(mode="absolute"))

        def actor(self, rows, switch=None):
            seen["at"], seen["first"] = np.asarray(switch[0]), [self.commands[r][1] for r in rows]
            return _commanded(lambda pobs, hist, cmd, heading: (
                seen.setdefault("calls", []).append((np.asarray(cmd), np.asarray(heading)))
                or jnp.zeros((cmd.shape[0], 28))), S.HistoryConfig(), np.asarray(rows), switch)

    out = transition_success(Recorder(), lib, 4, 2.0, 0.5, np.random.default_rng(0))
    assert len(out["pairs"]) == 4
    for side in ("from", "to"):  # the per-clip counts add up to the pairs, and those that succeeded
        assert sum(v[side][1] for v in out["by_clip"].values()) == 4
        assert sum(v[side][0] for v in out["by_clip"].values()) == sum(p["ok"] for p in out["pairs"])
    assert out["by_clip"]["synthetic_balance"]["from"][1] == seen["first"].count("synthetic_balance")
    assert lib.durations[lib.index("synthetic_balance")] == pytest.approx(1.0)
    expected = [30 if c == "synthetic_balance" else 60 for c in seen["first"]]
    assert seen["at"].tolist() == expected and 30 in expected and 60 in expected
    calls = seen["calls"]
    assert len(calls) == 60 + 45  # the latest switch, then the 1-s clip and the 0.5 s before standing
    for i, at in enumerate(expected):  # the second command from its switch on, from a restarted start
        assert calls[at - 1][0][i] != calls[at][0][i]
        np.testing.assert_allclose(calls[at][1][i], [0.0, 1.0, 0.0], atol=1e-6)


def test_a_held_one_shot_command_turns_into_standing_in_evaluations_as_at_run_time(monkeypatch):
    """Transition pairs hold their second command 3 s: a 2-s punch past its clip was shown "punch" still, which
    the runtime never does (`PolicyController` stands IDLE_AFTER_S after a one-shot clip's end)."""
    from superpadl import evaluate as E
    from superpadl.runtime import IDLE_AFTER_S

    seen = []
    monkeypatch.setattr(E.S, "command_frames", lambda cfg: lambda state, new: (None, None, np.asarray(new)))
    bow, walk, stand = 0, 1, 2
    standing = (stand, np.asarray([round((1.5 + IDLE_AFTER_S) * 30), np.inf, np.inf]))
    act = E._commanded(lambda pobs, hist, cmd, heading: seen.append((np.asarray(cmd), heading)), None,
                       np.asarray([bow, walk, walk]), (np.asarray([10**6, 10**6, 20]), np.asarray([walk, walk, bow])),
                       standing)
    state = type("State", (), {"qpos": np.zeros((3, 35))})
    for _ in range(150):
        act(state)
    cmds, new = np.stack([c for c, _ in seen]), np.stack([h for _, h in seen])
    assert (cmds[:60, 0] == bow).all() and (cmds[60:, 0] == stand).all()  # 1.5 s + 0.5 s at 30 Hz
    assert (cmds[:, 1] == walk).all() and not new[:, 1].any()  # a looping command goes on
    assert (cmds[:20, 2] == walk).all() and (cmds[20:80, 2] == bow).all() and (cmds[80:, 2] == stand).all()
    assert np.flatnonzero(new[:, 0]).tolist() == [60] and np.flatnonzero(new[:, 2]).tolist() == [20, 80]


def test_a_transition_to_a_gesture_stood_through_is_not_a_success(tmp_path, monkeypatch):
    """A pair succeeds when its second skill is served as in real use: no fall, and the gesture done. No fall alone
    passed a policy that stood through every gesture it was switched to."""
    from characters.character import Character
    from superpadl import evaluate as V
    from synthetic import _clip

    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("sway", "stand"), frames=60))
    character = Character()
    rest, sway = character.rest_qpos(), _clip(character, "sway", 60)

    class Agent(V.Agent):
        kind = "global"
        commands = [("sway", "synthetic_sway"), ("stand", "synthetic_stand")]
        env_config = EnvConfig()

    def played(agent, library, first, second, at, horizon, record=False):  # even envs sway after the switch
        qpos = np.tile(rest, (len(first), int(np.max(horizon)), 1))
        for i in range(0, len(first), 2):
            qpos[i, at[i]:] = np.resize(sway, (qpos.shape[1] - at[i], sway.shape[1]))
        return np.full(len(first), -1), qpos

    monkeypatch.setattr(V, "switch_falls", played)
    out = V.transition_success(Agent(), lib, 40, 2.0, 3.0, np.random.default_rng(0))
    to_sway = np.asarray([p["to"] == "sway" for p in out["pairs"]])
    ok, swayed = np.asarray([p["ok"] for p in out["pairs"]]), np.arange(40) % 2 == 0
    assert out["gestures_checked"] and to_sway.any() and (~to_sway).any()
    assert (ok == (~to_sway | swayed)).all()  # standing is served by not falling; the sway only when swayed
    assert out["not_performed"] == int((to_sway & ~swayed).sum()) > 0
    assert out["success"] == pytest.approx(ok.mean())
