"""Offscreen rendering of the character with MuJoCo's renderer and mp4 writing through imageio-ffmpeg."""
from __future__ import annotations

import os
import sys
from pathlib import Path

if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"  # headless: Mesa's EGL works without a display

import imageio.v2 as imageio
import mujoco
import numpy as np


class FrameRenderer:
    """Renders a model's current state from a camera that follows the pelvis at a fixed offset."""

    def __init__(self, model: mujoco.MjModel, width: int = 640, height: int = 480, distance: float = 4.0,
                 elevation: float = -15.0, azimuth: float = 150.0):
        self.model = model
        self.renderer = mujoco.Renderer(model, height=height, width=width)
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.distance, self.camera.elevation, self.camera.azimuth = distance, elevation, azimuth
        self._root = model.body("pelvis").id

    def render(self, data: mujoco.MjData, caption: str | None = None) -> np.ndarray:
        self.camera.lookat[:] = data.xpos[self._root] * np.array([1, 1, 0]) + np.array([0, 0, 0.9])
        self.renderer.update_scene(data, self.camera)
        frame = self.renderer.render()
        return draw_caption(frame, caption) if caption else frame

    def close(self):
        self.renderer.close()


def draw_caption(frame: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    size = max(12, frame.shape[0] // 24)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:
        font = ImageFont.load_default()
    draw.rectangle([0, 0, frame.shape[1], size + 12], fill=(0, 0, 0))
    draw.text((8, 6), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)


class VideoWriter:
    """mp4 written to a temporary name and renamed on close, so a failed render leaves no broken file."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.writer = imageio.get_writer(self.tmp, fps=fps, codec="libx264", macro_block_size=8,
                                         ffmpeg_log_level="error", output_params=["-pix_fmt", "yuv420p"])

    def append(self, frame: np.ndarray):
        self.writer.append_data(frame)

    def close(self, ok: bool = True):
        self.writer.close()
        if ok:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close(ok=exc_type is None)
