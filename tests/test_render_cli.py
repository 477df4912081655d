"""`superpadl render`, in process: frame count, motion on command switches, the character in view, caption,
determinism, and one-line errors that leave no mp4 behind."""
import imageio.v2 as imageio
import mujoco
import numpy as np
import pytest

import superpadl.cli as cli
from characters.character import Character

CHARACTER = Character()
FPS = 15
W, H = 160, 120
PROMPT = "stand still for 1s; then stand for 1s"


def pose(**angles) -> np.ndarray:
    q = CHARACTER.rest_qpos()[7:].copy()
    for name, value in angles.items():
        q[CHARACTER.joint_names.index(name)] = value
    return q[CHARACTER.actuator_joint]


class PoseController:
    """Test double: 'stand still' holds the rest pose, 'stand' one arm forward and one back; else a bad prompt."""

    control_hz = 30.0

    def __init__(self):
        self.character = CHARACTER
        self.poses = {"stand still": pose(), "stand": pose(right_shoulder_y=-1.5, left_shoulder_y=1.5)}
        self.target = self.poses["stand still"]

    def initial_state(self):
        return CHARACTER.rest_qpos(), np.zeros(CHARACTER.model.nv)

    def reset(self, qpos, qvel):
        pass

    def set_command(self, text):
        if text not in self.poses:
            raise ValueError(f"unknown command {text!r}")
        self.target = self.poses[text]

    def act(self, qpos, qvel):
        return self.target.copy()


@pytest.fixture(autouse=True)
def pose_controller(monkeypatch):
    monkeypatch.setattr(cli, "resolve_controller", lambda policy: PoseController())


def render(out, *extra, prompt=PROMPT):
    return cli.main(["render", "--prompt", prompt, "-o", str(out), "--width", str(W), "--height", str(H),
                     "--fps", str(FPS), "--quiet", *extra])


def read(path) -> np.ndarray:
    return np.stack(imageio.mimread(path, memtest=False))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    import superpadl.cli as c

    mp = pytest.MonkeyPatch()
    mp.setattr(c, "resolve_controller", lambda policy: PoseController())
    out = tmp_path_factory.mktemp("render") / "two_stages.mp4"
    try:
        assert render(out) == 0
    finally:
        mp.undo()
    return out, read(out)


def empty_scene_frame() -> np.ndarray:
    """What the tracking camera sees at the start with the character sunk under the floor (same x, y)."""
    from rendering.offscreen import FrameRenderer

    data = mujoco.MjData(CHARACTER.model)
    data.qpos[:] = CHARACTER.rest_qpos()
    data.qpos[2] -= 50
    mujoco.mj_forward(CHARACTER.model, data)
    r = FrameRenderer(CHARACTER.model, W, H)
    try:
        return r.render(data)
    finally:
        r.close()


def test_frame_count_and_size(video):
    path, frames = video
    assert abs(len(frames) - 2 * FPS) <= 1
    assert frames.shape[1:] == (H, W, 3)
    assert not list(path.parent.glob(".*partial*"))


def test_frames_change_when_the_command_switches(video):
    _, f = video
    body = (slice(int(0.3 * H), int(0.8 * H)), slice(int(0.25 * W), int(0.75 * W)))
    a = f.astype(int)

    def d(i, j):
        return np.abs(a[i][body] - a[j][body]).mean()

    still = d(2, FPS - 1)           # inside 'stand still': the character holds its pose
    moved = d(FPS - 1, 2 * FPS - 1)  # 'stand' moved the arms
    assert moved > 3.0 and moved > 5 * still, (still, moved)


def test_character_visible(video):
    _, f = video
    empty = empty_scene_frame().astype(int)
    first = f[0].astype(int)
    below_caption = slice(H // 4, H)
    diff = np.abs(first[below_caption] - empty[below_caption]).max(axis=2)
    centre = diff[:, int(0.35 * W):int(0.65 * W)]
    edges = np.concatenate([diff[:, :int(0.15 * W)], diff[:, -int(0.15 * W):]], axis=1)
    assert (centre > 40).sum() > 150  # the character (thin in profile at this size: ~300 px)
    assert (edges > 40).mean() < 0.02  # same floor and sky elsewhere (only compression noise)


def test_caption_shows_the_current_command(video):
    _, f = video
    bar = f[:, : max(12, H // 24) + 10]  # the caption bar: black with white text
    assert (bar.max(axis=3) < 60).mean() > 0.7
    assert ((bar.min(axis=3) > 180).sum(axis=(1, 2)) > 10).all()
    # the caption changes with the command ('stand still' is longer than 'stand')
    assert (bar[2].min(axis=2) > 180).sum() > (bar[-1].min(axis=2) > 180).sum()


def test_same_seed_same_frames(video, tmp_path):
    _, first = video
    out = tmp_path / "again.mp4"
    assert render(out, "--seed", "0") == 0
    again = read(out)
    assert len(again) == len(first)
    assert first[0].tobytes() == again[0].tobytes()
    assert first[-1].tobytes() == again[-1].tobytes()


def test_no_caption(tmp_path):
    out = tmp_path / "plain.mp4"
    assert render(out, "--no-caption", prompt="stand still for 0.2s") == 0
    f = read(out)
    assert len(f) == 3
    assert f[0][:8].mean() > 60  # sky, no black bar


def test_bad_script_one_line_error_no_output(tmp_path, capsys):
    script = tmp_path / "routine.txt"
    script.write_text("stand still for 1s\nstand for -2s\n")
    out = tmp_path / "out.mp4"
    rc = cli.main(["render", "--script", str(script), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err == f"superpadl: error: {script}, line 2: bad duration '-2s': must be positive\n"
    assert not out.exists() and not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("args, message", [
    (["--script", "{tmp}/missing.txt"], "{tmp}/missing.txt: no such script file"),
    (["--prompt", "stand for 3 min"], "<prompt>, line 1: bad duration '3 min': unit 'min' not one of"),
    (["--prompt", "dance for 1s; then stand"], "<prompt>: command 'dance': unknown command 'dance'"),
    (["--prompt", "stand for 0.1s; then fly"], "<prompt>: command 'fly': unknown command 'fly'"),
])
def test_errors_leave_no_partial_mp4(tmp_path, capsys, args, message):
    out = tmp_path / "out.mp4"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    rc = cli.main(["render", *args, "-o", str(out), "--quiet", "--width", "64", "--height", "48"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("superpadl: error: " + message.replace("{tmp}", str(tmp_path)))
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # neither the mp4 nor its partial file


def test_policy_resolution(tmp_path, monkeypatch, capsys):
    monkeypatch.undo()  # the real resolve_controller
    from superpadl.host import HoldController

    with pytest.raises(cli.CliError, match="no such policy directory"):
        cli.resolve_controller(tmp_path / "nope")
    import superpadl.runtime as runtime

    with pytest.raises(cli.CliError, match=f"{tmp_path}: not a readable policy"):
        cli.resolve_controller(tmp_path)  # a folder without controller.json
    # The shipped model needs its motion library; without it the commands fall back to the placeholder.
    model = tmp_path / "model"
    model.mkdir()
    (model / "controller.json").write_text('{"format": "padl-expert-controller", "library": "absent", "experts": []}')
    monkeypatch.setattr(runtime, "DEFAULT_MODEL", model)
    assert isinstance(cli.resolve_controller(None), HoldController)
    err = capsys.readouterr().err
    assert err.startswith("superpadl: warning: no trained policy is installed") and err.count("\n") == 1
    assert "motion library is not imported" in err
    rc = cli.main(["render", "--prompt", "x", "-o", str(tmp_path / "o.mp4"), "--policy", str(tmp_path / "nope")])
    assert rc == 1 and capsys.readouterr().err == f"superpadl: error: {tmp_path / 'nope'}: no such policy directory\n"
