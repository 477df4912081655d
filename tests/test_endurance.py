"""The real-use evaluation (superpadl.endurance): falls, entering vs holding, set-off distance, locomotion clips."""
import re

import numpy as np
import pytest

from characters.character import Character
from motions.clip import LibraryWriter, velocities
from superpadl import endurance as E
from superpadl.host import HoldController


class Limp(HoldController):
    """Drives every hinge to its rest angle + 1.5 rad: the character folds up and falls."""

    def act(self, qpos, qvel):
        return self._targets + 1.5


def test_summary_counts_falls_per_hour_and_splits_entering_from_holding():
    records = [E.CommandRecord("walk", "walk", 0.0, 900.0, falls_s=[1.0, 10.0], set_off_m=2.5),
               E.CommandRecord("bow", "bow", 900.0, 900.0, falls_s=[E.ENTER_S + 0.1]),
               E.CommandRecord("walk", "walk", 1800.0, 1800.0, set_off_m=1.5)]
    s = E.summarize(records)
    assert s["simulated_minutes"] == 60.0 and s["falls"] == 3 and s["falls_per_hour"] == 3.0
    assert s["commands_with_a_fall"] == 2
    assert s["clips"]["walk"]["enter_falls"] == 1 and s["clips"]["walk"]["hold_falls"] == 1
    assert s["clips"]["bow"]["enter_falls"] == 0 and s["clips"]["bow"]["hold_falls"] == 1
    assert s["clips"]["walk"]["set_off_m"] == [2.5, 1.5]
    table = E.report({"a": s})
    assert "3.0" in table and "1+1 of 2, set off 2.00 m" in table
    # served: no fall, and a locomotion command SET_OFF_BAR_M on; a walk that set off short is not, a still wave is
    assert s["served_share"] == 0.0
    more = E.summarize(records + [E.CommandRecord("walk", "walk", 0, 5, set_off_m=E.SET_OFF_BAR_M + 0.1),
                                  E.CommandRecord("wave", "wave", 0, 5)])
    assert more["served_share"] == 2 / 5


def test_a_command_that_is_not_locomotion_but_runs_on_is_not_served():
    """A student that keeps running through "stand idle" (35 m in 17 s) falls no more than one that stops: served
    needs a stop (the root's mean speed from ENTER_S on at most LOCOMOTION_SPEED)."""
    ran = E.CommandRecord("stand", "stand", 0, 17.5, ran_on_speed=2.0)
    stopped = E.CommandRecord("stand", "stand", 17.5, 17.5, ran_on_speed=0.1)
    assert E.ran_on(ran) and not E.served(ran) and E.served(stopped)
    s = E.summarize([ran, stopped])
    assert s["served_share"] == 0.5 and s["clips"]["stand"]["ran_on"] == 1
    assert "0+0 of 2, ran on 1" in E.report({"a": s})
    # measured on every command held past ENTER_S + 1 s that is not locomotion; a held stand does not run on
    held = E.hold_from_start(HoldController(), "stand", "stand", E.ENTER_S + 2.0)
    assert held.ran_on_speed is not None and held.ran_on_speed < 0.01 and E.served(held)
    assert E.hold_from_start(HoldController(), "stand", "stand", E.ENTER_S + 0.5).ran_on_speed is None
    walk = E.hold_from_start(HoldController(), "walk", "walk", E.ENTER_S + 2.0, direction=np.array([1.0, 0.0]))
    assert walk.ran_on_speed is None


def test_standing_still_neither_falls_nor_travels():
    c = HoldController()
    r = E.hold_from_start(c, "stand", "stand", 5.0, direction=np.array([1.0, 0.0]))
    assert r.falls_s == [] and abs(r.set_off_m) < 0.05


def test_a_character_that_slides_off_is_seen_to_wander_without_a_fall():
    class Slides(HoldController):  # starts with the root moving at 0.3 m/s: it slides ~6 cm and stays up
        def initial_state(self):
            qpos, qvel = super().initial_state()
            qvel[0] = 0.3
            return qpos, qvel

    still, slid = (E.hold_from_start(c, "stand", "stand", 2.0) for c in (HoldController(), Slides()))
    assert still.falls_s == slid.falls_s == []
    assert still.wander_m < 0.01 and slid.wander_m > 0.04


def test_a_lead_command_is_held_first_then_the_measured_one():
    class Log(HoldController):  # (command, control steps acted under it)
        def __init__(self):
            super().__init__()
            self.log = []

        def set_command(self, text):
            self.log.append([text, 0])

        def act(self, qpos, qvel):
            self.log[-1][1] += 1
            return super().act(qpos, qvel)

    c = Log()
    r = E.hold_from_start(c, "stand", "stand", 2.0, lead=("wave", 3.0))
    assert c.log == [["wave", 90], ["stand", 60]] and r.start_s == pytest.approx(3.0) and r.held_s == 2.0


def test_a_fall_is_recorded_and_gets_no_set_off_distance():
    c = Limp()
    r = E.hold_from_start(c, "walk", "walk", 5.0, direction=np.array([1.0, 0.0]))
    assert r.falls_s and r.falls_s[0] < E.SET_OFF_S and r.set_off_m == 0.0


def test_set_off_distance_is_measured_along_the_heading_the_command_began_with():
    # facing +y (yaw 90 degrees): the heading frame's forward is the world's +y, its left the world's -x
    quat = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])
    assert np.allclose(E.heading_direction(np.array([1.0, 0.0]), quat), [0.0, 1.0])
    assert np.allclose(E.heading_direction(np.array([0.0, 1.0]), quat), [-1.0, 0.0])


def test_chain_holds_each_caption_for_2_to_20_s_and_fills_the_minutes():
    c = HoldController()
    c.captions, c.caption_clips = ["stand", "wait"], ["stand", "stand"]
    records = E.chain(c, 0.5, seed=1, directions={})
    assert abs(sum(r.held_s for r in records) - 30.0) < 1e-6
    assert all(2.0 <= r.held_s <= 20.0 for r in records[:-1])
    assert E.summarize(records)["falls"] == 0


def test_locomotion_is_a_clip_whose_reference_travels(tmp_path):
    character = Character()
    writer = LibraryWriter(tmp_path / "lib", character, {})
    yaw = 0.5
    for name, speed in (("stand", 0.0), ("sidestep", 1.0)):
        qpos = np.tile(character.rest_qpos(), (31, 1))
        qpos[:, 3:7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        qpos[:, :2] += speed * np.arange(31)[:, None] / 30.0 * [-np.sin(yaw), np.cos(yaw)]  # to its left
        entry = {"id": name, "captions": [name], "source_file": "test", "source_format": "test", "licence": "CC0",
                 "labels": {}, "loop": True, "num_frames": 31, "duration_s": 1.0, "joint_map": {}, "scale": 1.0,
                 "qa": {}, "flagged": False, "flag_reasons": []}
        writer.add(entry, qpos, 30.0, velocities(character, qpos, 30.0))
    writer.commit()
    d = E.locomotion_directions(tmp_path / "lib")
    assert list(d) == ["sidestep"] and np.allclose(d["sidestep"], [0.0, 1.0], atol=1e-6)


def test_start_pose_is_the_standing_clips_first_frame_and_stand_at_starts_a_controller_there(tmp_path):
    from motions.captions import STANDING_CAPTIONS
    from motions.library import MotionLibrary
    from superpadl.host import SimLoop

    character = Character()
    writer = LibraryWriter(tmp_path / "lib", character, {})
    for name, captions, x in (("wave", ["wave"], 0.7), ("stand", [STANDING_CAPTIONS[0]], -0.4)):
        qpos = np.tile(character.rest_qpos(), (31, 1))
        qpos[:, 0] = x + np.arange(31) / 30.0  # each clip starts at its own x
        entry = {"id": name, "captions": captions, "source_file": "test", "source_format": "test", "licence": "CC0",
                 "labels": {}, "loop": True, "num_frames": 31, "duration_s": 1.0, "joint_map": {}, "scale": 1.0,
                 "qa": {}, "flagged": False, "flag_reasons": []}
        writer.add(entry, qpos, 30.0, velocities(character, qpos, 30.0))
    writer.commit()
    library = MotionLibrary(tmp_path / "lib")
    assert E.first_frame(library, "wave")[0] == np.float32(0.7)
    start = E.start_pose(library, ["wave"])  # the standing clip gives it, though the policy's first clip is the wave
    assert start[0] == np.float32(-0.4)
    controller = E.stand_at(HoldController(), start)
    loop = SimLoop(controller.model, controller)
    loop.reset()
    assert abs(loop.data.qpos[0] - start[0]) < 1e-9


def test_a_gesture_stood_through_is_not_done_and_not_served(tmp_path):
    """`GestureCheck`: motion like the commanded clip's, not like standing, for GESTURE_BAR of the time the clip's
    own reference is. The wave's reference passes; standing through it (the standing clip's reference, or a
    character held still in SimLoop) does not, and a command so stood through is not served though it never fell."""
    from motions.captions import STANDING_CAPTIONS
    from motions.library import MotionLibrary

    character = Character()
    writer = LibraryWriter(tmp_path / "lib", character, {})
    shoulder = 7 + character.joint_names.index("right_shoulder_y")
    clips = {}
    for name, captions, swing in (("wave", ["wave"], 1.2), ("stand", [STANDING_CAPTIONS[0]], 0.0)):
        qpos = np.tile(character.rest_qpos(), (90, 1))
        qpos[:, shoulder] += swing * np.sin(np.linspace(0, 3 * np.pi, 90)) ** 2  # the arm swings up three times
        entry = {"id": name, "captions": captions, "source_file": "test", "source_format": "test", "licence": "CC0",
                 "labels": {}, "loop": False, "num_frames": 90, "duration_s": 89 / 30, "joint_map": {}, "scale": 1.0,
                 "qa": {}, "flagged": False, "flag_reasons": []}
        writer.add(entry, qpos, 30.0, velocities(character, qpos, 30.0))
        clips[name] = qpos
    writer.commit()
    library = MotionLibrary(tmp_path / "lib")
    checks = E.gesture_checks(library, directions={})
    assert list(checks) == ["wave"]  # the standing clip is not a gesture
    wave = checks["wave"]
    assert wave.seconds(clips["wave"]) >= 2.0 and wave.bar_s == E.GESTURE_BAR * wave.seconds(clips["wave"])
    assert wave.seconds(clips["stand"]) == 0.0
    still = E.hold_from_start(E.stand_at(HoldController(), clips["stand"][0]), "wave", "wave", 3.0,
                              gesture=checks["wave"])
    assert still.falls_s == [] and still.performed_s < still.performed_bar_s == wave.bar_s
    assert not E.served(still) and E.served(E.CommandRecord("wave", "wave", 0, 3, performed_s=2.0,
                                                            performed_bar_s=wave.bar_s))
    assert "done 0 of 1" in E.report({"a": E.summarize([still])})


def test_a_chain_command_is_told_by_what_it_was_given_after():
    """The start pose (first, or a one-shot or standing command restarted after a fall), a get-up, standing (the standing clip, or a one-shot
    command held past its clip and the hand-over), locomotion, or a gesture still going on; the summary and the
    table split the commands with a fall by it."""
    rec = lambda clip, held, **kw: E.CommandRecord(clip, clip, 0.0, held, **kw)
    directions, gestures, one_shot = {"walk": np.array([1.0, 0.0])}, {"bow": None, "wave": None}, {"bow": 4.0}
    after = lambda previous: E.given_after(previous, directions, gestures, one_shot, 0.5)
    assert after(None) == after(rec("bow", 9.0, falls_s=[1.0], restarts=1)) == "the start pose"
    assert after(rec("stand", 9.0, falls_s=[1.0], restarts=1)) == "the start pose"
    # a looping command restarted goes on from the start pose: what came next came after it
    assert after(rec("walk", 9.0, falls_s=[1.0], restarts=1)) == "locomotion"
    assert after(rec("wave", 9.0, falls_s=[1.0], restarts=1)) == "a gesture"
    assert after(rec("bow", 9.0, falls_s=[1.0])) == after(rec("walk", 9.0, falls_s=[1.0])) == "a get-up"
    assert after(rec("bow", 4.6)) == after(rec("stand", 3.0)) == "standing"
    assert after(rec("bow", 4.4)) == after(rec("wave", 30.0)) == "a gesture"
    assert after(rec("walk", 3.0)) == "locomotion"
    assert E.given_after(rec("stand", 3.0), directions, {}, {}, 0.5) == "a gesture"  # no standing clip known
    s = E.summarize([rec("bow", 5.0, after="standing", falls_s=[2.0]), rec("bow", 5.0, after="standing"),
                     rec("walk", 5.0, after="the start pose")])
    assert s["after"] == {"the start pose": {"commands": 1, "with_a_fall": 0},
                          "standing": {"commands": 2, "with_a_fall": 1}}
    assert re.search(r"given after standing: with a fall +1 of 2", E.report({"a": s}))


def test_a_chain_records_what_each_command_followed():
    c = Limp()
    c.captions, c.caption_clips = ["bow", "walk"], ["bow", "walk"]
    records = E.chain(c, 0.3, seed=0, directions={"walk": np.array([1.0, 0.0])})
    assert records[0].after == "the start pose" and all(r.falls_s for r in records)
    # each fell and was restarted: a bow stands on in the start pose, a walk walks on from it
    assert len({r.clip for r in records}) > 1
    assert all(r.after == ("locomotion" if p.clip == "walk" else "the start pose") for p, r in zip(records, records[1:]))


def test_handover_states_are_where_each_command_of_a_chain_was_given_upright_and_at_the_origin():
    class Slides(HoldController):  # starts moving at 0.3 m/s, comes to rest upright
        def initial_state(self):
            qpos, qvel = super().initial_state()
            qvel[0] = 0.3
            return qpos, qvel

    c = Slides()
    c.captions, c.caption_clips = ["stand", "wait"], ["stand", "stand"]
    given: list = []
    records = E.chain(c, 0.5, seed=1, directions={}, handovers=given)
    assert len(given) == len(records) > 1 and given[0][1][0] == pytest.approx(0.3)
    assert abs(given[1][1][0]) < 0.01  # the state of that moment (at rest by then), not the start state again
    qpos, qvel = E.handover_states(c, 0.5, seeds=2)
    assert qpos.dtype == np.float32 and qpos.shape == (len(qvel), c.model.nq) and len(qpos) > len(records)
    assert np.all(qpos[:, :2] == 0.0) and np.all(qpos[:, 2] > 0.8)
    # a character that folds up and falls at every command leaves no upright state to start from
    limp = Limp()
    limp.captions, limp.caption_clips = ["bow"], ["bow"]
    q, _ = E.handover_states(limp, 0.2, seeds=1)
    assert np.all(q[:, 2] > 0.3)
