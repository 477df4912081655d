"""The rendering layer: quality presets set the renderer's flags and change the picture, the camera keeps the
whole character at about half the frame height wherever it goes, captions are drawn once per text, and every
entry point renders without MUJOCO_GL set (no mujoco.FatalError traceback)."""
import os
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest

from characters.character import Character
from rendering import presets
from rendering.camera import TrackingCamera, standing_height
from rendering.offscreen import FrameRenderer, draw_caption
from synthetic import write_synthetic_library

REPO = Path(__file__).resolve().parents[1]
CHARACTER = Character()
MODEL = CHARACTER.model


def standing_data(x: float = 0.0, y: float = 0.0) -> mujoco.MjData:
    data = mujoco.MjData(MODEL)
    data.qpos[:] = CHARACTER.rest_qpos()
    data.qpos[:2] += (x, y)
    mujoco.mj_forward(MODEL, data)
    return data


@pytest.mark.parametrize("name, on", [("preview", False), ("final", True)])
def test_preset_sets_the_renderer_flags(name, on):
    r = FrameRenderer(MODEL, 64, 48, name)
    try:
        flags = r.renderer.scene.flags
        assert bool(flags[mujoco.mjtRndFlag.mjRND_SHADOW]) is on
        assert bool(flags[mujoco.mjtRndFlag.mjRND_REFLECTION]) is on
        assert r.renderer.model.vis.quality.offsamples == (MODEL.vis.quality.offsamples if on else 0)
        r.render(standing_data())
        assert bool(r.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW]) is on  # kept across update_scene
    finally:
        r.close()
    assert MODEL.vis.quality.offsamples == 4  # the caller's model is not changed


def test_presets_differ_in_the_picture():
    data = standing_data()
    frames = {}
    for name in presets.PRESETS:
        r = FrameRenderer(MODEL, 160, 120, name)
        frames[name] = r.render(data).astype(int)
        r.close()
    diff = np.abs(frames["final"] - frames["preview"]).max(axis=2)
    assert (diff > 30).mean() > 0.01  # the shadow and the floor's reflection


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown render quality 'draft'"):
        presets.quality("draft")


def character_rows(r: FrameRenderer, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns the character's geoms cover (segmentation render)."""
    r.renderer.enable_segmentation_rendering()
    try:
        r.renderer.update_scene(data, r.tracking.update(data))
        seg = r.renderer.render()
    finally:
        r.renderer.disable_segmentation_rendering()
    body_geoms = np.flatnonzero(MODEL.geom_bodyid != 0)
    mask = np.isin(seg[..., 0], body_geoms) & (seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM)
    return np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))


@pytest.mark.parametrize("where", [(0.0, 0.0), (6.0, -4.0)])
def test_camera_frames_the_whole_character_at_half_height_and_follows(where):
    r = FrameRenderer(MODEL, 320, 240)
    try:
        rows, cols = character_rows(r, standing_data(*where))
    finally:
        r.close()
    assert rows.size and 0 < rows.min() and rows.max() < 239  # whole: neither head nor feet cut
    assert 0.42 < (rows.max() - rows.min() + 1) / 240 < 0.58
    assert abs((cols.min() + cols.max()) / 2 - 160) < 24  # centred, also 7 m away from the origin


def test_camera_distance_scales_with_the_character():
    cam = TrackingCamera(MODEL)
    assert standing_height(MODEL) == pytest.approx(1.655, abs=0.05)
    half = TrackingCamera(MODEL, fraction=0.25)
    assert half.camera.distance == pytest.approx(2 * cam.camera.distance)


def test_caption_band_is_drawn_once_and_in_place():
    frame = np.full((120, 160, 3), 90, np.uint8)
    out = draw_caption(frame, "take a bow")
    assert out is frame and (out[:5] == 0).all()           # the black band
    assert (out[:17].max(axis=2) > 200).sum() > 20           # white text on it
    assert (out[30:] == 90).all()                            # the rest untouched
    again = draw_caption(np.full((120, 160, 3), 10, np.uint8), "take a bow")
    np.testing.assert_array_equal(again[:17], out[:17])
    readonly = np.zeros((120, 160, 3), np.uint8)
    readonly.flags.writeable = False
    assert draw_caption(readonly, "x") is not readonly


def _without_gl(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    return {**env, **extra}


def test_motions_render_and_gym_env_without_mujoco_gl(tmp_path):
    lib = write_synthetic_library(tmp_path / "lib", frames=10)
    out = tmp_path / "clip.mp4"
    p = subprocess.run([sys.executable, "-m", "motions.cli", "render", str(lib), "synthetic_sway", "-o", str(out),
                        "--width", "64", "--height", "48", "--quiet"], cwd=REPO, env=_without_gl(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and out.stat().st_size > 0
    code = ("import gymnasium, padl.gym_env; "
            f"env = gymnasium.make('padl/Imitation-v0', library_path={str(lib)!r}, render_mode='rgb_array', "
            "width=64, height=48); env.reset(seed=0); f = env.render(); print(f.shape, f.std() > 5)")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_without_gl(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "(48, 64, 3) True"
