"""SimLoop (command queue timing, falls, standing) and the interactive Viewer driven on an Xvfb display."""
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from characters.character import Character
from superpadl.host import HoldController, SimLoop
from superpadl.script import ScriptError, Stage

CHARACTER = Character()


def pose(**angles) -> np.ndarray:
    """PD targets: the rest pose with some hinges set (radians)."""
    q = CHARACTER.rest_qpos()[7:].copy()
    for name, value in angles.items():
        q[CHARACTER.joint_names.index(name)] = value
    return q[CHARACTER.actuator_joint]


ARMS_OUT = pose(right_shoulder_y=-1.5, left_shoulder_y=1.5)  # one forward, one back: balanced, clear in profile


class PoseController:
    """Test double: each known command holds one PD target pose; anything else is a bad prompt."""

    control_hz = 30.0

    def __init__(self, poses=None, lean_deg: float = 0.0):
        self.character = CHARACTER
        self.poses = poses or {"stand": pose(), "raise arms": ARMS_OUT}
        self.lean = np.radians(lean_deg)
        self.target = pose()
        self.acts = 0
        self.log: list[tuple[str, int]] = []  # (command, control steps done when it was set)
        self.resets = 0

    def initial_state(self):
        q = CHARACTER.rest_qpos()
        q[3:7] = [np.cos(self.lean / 2), 0, np.sin(self.lean / 2), 0]  # leaning forward: it topples
        return q, np.zeros(CHARACTER.model.nv)

    def reset(self, qpos, qvel):
        self.resets += 1

    def set_command(self, text):
        if text not in self.poses:
            raise ValueError(f"unknown command {text!r}")
        self.target = self.poses[text]
        self.log.append((text, self.acts))

    def act(self, qpos, qvel):
        self.acts += 1
        return self.target.copy()


def make_loop(controller=None, **kw) -> SimLoop:
    controller = controller or PoseController()
    return SimLoop(CHARACTER.model, controller, **kw)


def test_rates():
    loop = make_loop()
    assert loop.substeps == 4
    assert loop.control_dt == pytest.approx(1 / 30, rel=1e-6)
    loop.control_step()
    assert (loop.control_steps, loop.physics_steps, loop.controller.acts) == (1, 4, 1)
    assert loop.time == pytest.approx(4 / 120, rel=1e-6)


def test_queue_switches_in_order_on_time():
    loop = make_loop(PoseController({k: pose() for k in "abc"}))
    loop.command("a for 1s; then b for 0.5s; then c")
    assert loop.current == Stage("a", 1.0)
    assert loop.queued == [Stage("b", 0.5), Stage("c", 4.0)]
    seen = []
    for _ in range(120):
        seen.append(loop.current_text)
        loop.control_step()
    # a for 30 control steps (1 s at 30 Hz), b for 15, then c (default duration, and it keeps going)
    assert seen == ["a"] * 30 + ["b"] * 15 + ["c"] * 75
    assert loop.controller.log == [("a", 0), ("b", 30), ("c", 45)]
    assert loop.queued == []
    assert loop.elapsed == pytest.approx(75 / 30, rel=1e-6)


def test_command_replaces_queue_at_once_and_bad_prompt_changes_nothing():
    loop = make_loop(PoseController({k: pose() for k in "abxy"}))
    loop.command("a for 2s; then b")
    for _ in range(10):
        loop.control_step()
    loop.command("x for 0.2s then y")
    assert loop.current_text == "x" and loop.queued == [Stage("y", 4.0)] and loop.elapsed == 0
    with pytest.raises(ValueError, match="unknown command 'nope'"):
        loop.command("nope")
    with pytest.raises(ScriptError, match="bad duration"):
        loop.command("a for -2s")
    assert loop.current_text == "x" and loop.queued == [Stage("y", 4.0)]
    for _ in range(6):
        loop.control_step()
    assert loop.current_text == "y"


def test_refused_stage_is_skipped_or_raises_in_strict_mode():
    loop = make_loop(PoseController({"a": pose(), "c": pose()}))
    loop.command("a for 0.1s; then fly for 0.1s; then c")
    for _ in range(7):
        loop.control_step()
    assert loop.current_text == "c" and len(loop.errors) == 1 and "fly" in loop.errors[0]
    strict = make_loop(PoseController({"a": pose()}))
    with pytest.raises(ValueError, match="fly"):
        strict.run_script([Stage("a", 0.1), Stage("fly", 0.1)], 30, lambda d, c: None)


def test_fall_resets_and_queue_continues():
    controller = PoseController({k: pose() for k in "abc"}, lean_deg=35)
    loop = make_loop(controller)
    loop.command("a for 1s; then b for 1s; then c")
    heights, texts = [], []
    for _ in range(150):  # 5 s
        loop.control_step()
        heights.append(loop.pelvis_height)
        texts.append(loop.current_text)
    assert loop.falls >= 3  # it topples, restarts, topples again ...
    assert controller.resets == loop.falls + 1  # the first start, then one per fall
    assert min(heights) > 0.25  # never left lying on the floor
    assert texts[28] == "a" and texts[29] == "b" and texts[59] == "c"  # schedule unaffected by the restarts
    commands = [t for t, _ in controller.log]  # a restart re-sends the current command
    assert [t for i, t in enumerate(commands) if i == 0 or commands[i - 1] != t] == ["a", "b", "c"]
    assert loop.time == pytest.approx(5.0, rel=1e-6)


def test_non_finite_state_resets():
    loop = make_loop()
    loop.command("stand")
    loop.control_step()
    loop.data.qvel[0] = np.nan
    loop.control_step()
    assert loop.falls == 1
    assert np.isfinite(loop.data.qpos).all() and loop.pelvis_height > 0.9


def test_hold_controller_stands_for_5s():
    controller = HoldController(CHARACTER)
    loop = SimLoop(CHARACTER.model, controller)
    loop.command("stand still for 5s")
    heights = []
    for _ in range(150):
        loop.control_step()
        heights.append(loop.pelvis_height)
    assert loop.falls == 0
    assert min(heights) > 0.9
    with pytest.raises(ValueError):
        loop.command("   ")


def test_deterministic_for_a_seed():
    def run(seed):
        loop = make_loop(PoseController(), seed=seed, init_noise=0.05)
        loop.command("stand for 0.5s; then raise arms")
        for _ in range(40):
            loop.control_step()
        return loop.data.qpos.copy()

    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_run_script_frame_times_and_captions():
    loop = make_loop()
    got = []
    n = loop.run_script([Stage("stand", 1.0), Stage("raise arms", 0.5)], 60,
                        lambda data, caption: got.append((data.time, caption)))
    assert n == len(got) == 90
    times = np.array([t for t, _ in got])
    np.testing.assert_allclose(times, np.arange(90) / 60, atol=1e-6)  # 60 fps video from 30 Hz control
    assert [c for _, c in got] == ["stand"] * 60 + ["raise arms"] * 30


# ----- the interactive viewer on a virtual display ------------------------------------------------------------

def _free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number")


@pytest.fixture(scope="module")
def xvfb():
    """An Xvfb server for this module; DISPLAY points at it while the tests run."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb); the viewer needs a display")
    pytest.importorskip("pyglet", reason="pyglet (the `viewer` extra) is not installed")
    n = _free_display()
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.skip(f"Xvfb :{n} did not start")
        time.sleep(0.05)
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{n}"
    yield f":{n}"
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old
    proc.terminate()
    proc.wait(10)


def _viewer_session(width=320, height=240):
    from viewer.interactive import Viewer

    controller = PoseController()
    viewer = Viewer(make_loop(controller), width, height)
    return viewer, controller


def _check_viewer(viewer, controller, frames):
    loop = viewer.loop
    for _ in range(frames // 2):
        viewer.tick(1 / 60)
    viewer.type_text("raise arms")
    assert viewer.input_label.text == "> raise arms_"
    viewer.press("enter")
    for _ in range(frames - frames // 2):
        viewer.tick(1 / 60)
    assert loop.time == pytest.approx(frames / 60, abs=1e-6)  # real-time pacing: dt per tick
    assert controller.log[-1][0] == "raise arms" and loop.falls == 0
    assert viewer.command_label.text == "raise arms"
    assert viewer.input_label.text == "> _" and viewer.error == ""
    shot = viewer.screenshot()
    assert shot.shape == (viewer.height, viewer.width, 3)

    # the command label's pixels: bright text on the dark panel
    r0, r1, c0, c1 = viewer.label_box(viewer.command_label)
    box = shot[r0:r1, c0:c1].astype(int)
    assert box.size and (box.min(axis=2) > 200).sum() > 50
    assert (shot[r0:r1, c1 + 20:].max(axis=2) < 120).mean() > 0.9  # right of the text: the dark panel only

    # the character: compare with the same view after moving it under the floor (camera follows x, y only)
    h, w = shot.shape[:2]
    region = (slice(int(0.3 * h), int(0.8 * h)), slice(int(0.35 * w), int(0.65 * w)))  # where it stands
    body = shot[region].astype(int)
    loop.data.qpos[2] -= 50
    import mujoco

    mujoco.mj_forward(loop.model, loop.data)
    viewer.tick(0.0)
    empty = viewer.screenshot()[region].astype(int)
    diff = np.abs(body - empty).max(axis=2)
    assert (diff > 40).mean() > 0.05  # a character-sized blob differs
    np.testing.assert_array_equal(shot[-20:, -60:], viewer.screenshot()[-20:, -60:])  # background unchanged

    # a bad prompt shows an error line and changes nothing
    viewer.type_text("fly to the moon")
    viewer.press("enter")
    viewer.tick(1 / 60)
    assert "unknown command 'fly to the moon'" in viewer.error_label.text
    assert viewer.command_label.text == "raise arms"

    # keys once the command line is left
    viewer.press("escape")
    viewer.press("space")
    assert viewer.paused and viewer.input_label.text.startswith("> fly")
    t = loop.time
    viewer.tick(1 / 60)
    assert loop.time == t
    viewer.press("f")
    assert not viewer.follow
    distance = viewer.camera.distance
    viewer.drag(30, 10)
    viewer.scroll(2)
    assert viewer.camera.azimuth == pytest.approx(150.0 - 0.3 * 30) and viewer.camera.distance == pytest.approx(distance * 0.81)
    viewer.press("r")
    assert loop.pelvis_height > 0.9 and loop.falls == 0
    viewer.press("enter")
    assert viewer.focused


def test_viewer_300_frames(xvfb):
    viewer, controller = _viewer_session()
    try:
        _check_viewer(viewer, controller, 300)
    finally:
        viewer.close()


@pytest.mark.slow
def test_viewer_full_size(xvfb):
    viewer, controller = _viewer_session(960, 720)
    try:
        _check_viewer(viewer, controller, 300)
    finally:
        viewer.close()


def test_view_cli_smoke(xvfb, tmp_path, monkeypatch):
    import superpadl.cli as cli

    monkeypatch.setattr(cli, "resolve_controller", lambda policy: PoseController())
    png = tmp_path / "last.png"
    rc = cli.main(["view", "--frames", "5", "--screenshot", str(png), "--width", "200", "--height", "150",
                   "--command", "raise arms"])
    assert rc == 0
    from PIL import Image

    img = np.asarray(Image.open(png))
    assert img.shape == (150, 200, 3) and img.std() > 10


class SlowTextModel:
    """An encoder whose model takes `seconds` to load."""

    def __init__(self, seconds: float, cached=()):
        self.seconds, self.loaded, self.cached_texts = seconds, False, set(cached)

    def load(self):
        time.sleep(self.seconds)
        self.loaded = True

    def cached(self, text):  # embedded in an earlier session
        return text in self.cached_texts


def test_text_model_loads_in_the_background_and_a_command_waits_for_it(xvfb):
    from viewer.interactive import Viewer

    controller = PoseController()
    controller.encoder = SlowTextModel(1.5)
    viewer = Viewer(make_loop(controller), 200, 150)
    try:
        viewer.type_text("raise arms")
        viewer.press("enter")  # before the first frame: the model has not even started loading
        assert viewer.input_label.text == "> _" and controller.log == []
        t0 = time.perf_counter()
        viewer.tick(1 / 60)
        assert "loading text model… (then: raise arms)" in viewer.status_label.text
        slowest = 0.0
        while not controller.encoder.loaded:
            t = time.perf_counter()
            viewer.tick(1 / 60)
            slowest = max(slowest, time.perf_counter() - t)
            assert time.perf_counter() - t0 < 30
        assert slowest < 0.5 and viewer.frames > 5  # the window kept drawing while the model loaded
        assert controller.log == []
        assert viewer.text_model.wait(5)
        viewer.tick(1 / 60)
        assert [c for c, _ in controller.log] == ["raise arms"]
        assert "loading" not in viewer.status_label.text and viewer.command_label.text == "raise arms"
    finally:
        viewer.close()


def test_a_command_in_the_prompt_cache_plays_before_the_text_model_loads(xvfb):
    from viewer.interactive import Viewer

    controller = PoseController()
    controller.encoder = SlowTextModel(1.5, cached=["raise arms"])
    viewer = Viewer(make_loop(controller), 200, 150)
    try:
        viewer.tick(1 / 60)
        assert viewer.send("raise arms") and [c for c, _ in controller.log] == ["raise arms"]
        assert viewer.send("raise arms; then stand")  # the second stage is not cached: the whole command waits
        assert [c for c, _ in controller.log] == ["raise arms"] and not controller.encoder.loaded
    finally:
        viewer.close()


@pytest.mark.parametrize("name, shadows", [("preview", False), ("final", True)])
def test_viewer_quality_preset(xvfb, name, shadows):
    import mujoco
    from viewer.interactive import Viewer

    viewer = Viewer(make_loop(), 160, 120, quality=name)
    try:
        assert bool(viewer._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW]) is shadows
        assert (viewer._renderer.model.vis.quality.offsamples > 0) is shadows
    finally:
        viewer.close()
