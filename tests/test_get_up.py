"""After a fall, `SimLoop` gets the character up by the controller's learned get-up skill and carries on with the
queue; without one, or when the get-up times out, it restarts the character."""
from __future__ import annotations

import mujoco
import numpy as np

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
