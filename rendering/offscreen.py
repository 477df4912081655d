"""Offscreen rendering of the character with MuJoCo's renderer and mp4 writing through imageio-ffmpeg."""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import rendering  # noqa: F401  (chooses MUJOCO_GL before mujoco is imported)

import imageio.v2 as imageio
import mujoco
import numpy as np

from motions import tempfiles
from rendering.camera import TrackingCamera
from rendering.presets import DEFAULT, Quality, quality as _quality


class RenderError(RuntimeError):
    """MuJoCo cannot render offscreen here; the message says what to set."""


def make_renderer(model: mujoco.MjModel, width: int, height: int) -> mujoco.Renderer:
    """mujoco.Renderer, or RenderError naming the OpenGL backend and what to try instead of MuJoCo's own error."""
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except ValueError:
        raise  # a size beyond the model's offscreen buffer: MuJoCo's message says so
    except Exception as e:  # mujoco.FatalError (no display for GLFW, no EGL device), GL import errors
        raise RenderError(f"MuJoCo cannot render offscreen (MUJOCO_GL={os.environ.get('MUJOCO_GL', 'unset')}): "
                          f"{' '.join(str(e).split())}; set MUJOCO_GL=egl (or osmesa) before mujoco is imported"
                          ) from None


class FrameRenderer:
    """Renders a model's current state from a camera that follows the character (`rendering.camera`), at a
    quality preset (`rendering.presets`)."""

    def __init__(self, model: mujoco.MjModel, width: int = 640, height: int = 480,
                 quality: str | Quality = DEFAULT):
        self.model = model
        self.quality = _quality(quality)
        self.renderer = make_renderer(self.quality.model(model), width, height)
        self.quality.apply(self.renderer.scene)
        self.tracking = TrackingCamera(model)
        self.camera = self.tracking.camera

    def render(self, data: mujoco.MjData, caption: str | None = None) -> np.ndarray:
        self.renderer.update_scene(data, self.tracking.update(data))
        frame = self.renderer.render()
        return draw_caption(frame, caption) if caption else frame

    def close(self):
        self.renderer.close()


def draw_caption(frame: np.ndarray, text: str) -> np.ndarray:
    """The frame with `text` in white on a black band at the top (drawn in place when the frame is writable)."""
    band = _caption_band(text, frame.shape[1], frame.shape[0])
    if not frame.flags.writeable:
        frame = frame.copy()
    frame[: band.shape[0]] = band
    return frame


@functools.lru_cache(maxsize=64)
def _caption_band(text: str, width: int, height: int) -> np.ndarray:
    """The caption band, drawn by PIL once per text and frame size (a caption stays for seconds of frames)."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(12, height // 24)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:
        font = ImageFont.load_default()
    img = Image.new("RGB", (width, min(height, size + 12)), (0, 0, 0))
    ImageDraw.Draw(img).text((8, 6), text, fill=(255, 255, 255), font=font)
    band = np.asarray(img)
    band.flags.writeable = False
    return band


class VideoWriter:
    """mp4 written to a temporary name and renamed on close, so a failed render leaves no broken file."""

    def __init__(self, path: str | Path, fps: float, quality: str | Quality = DEFAULT):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tempfiles.sweep(self.path.parent, tempfiles.PARTIAL_VIDEO)  # what killed renders left here
        self.tmp = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}{self.path.suffix}")
        self.writer = imageio.get_writer(self.tmp, fps=fps, codec="libx264", macro_block_size=8,
                                         ffmpeg_log_level="error",
                                         output_params=["-pix_fmt", "yuv420p", "-preset", _quality(quality).x264_preset])

    def append(self, frame: np.ndarray):
        with warnings.catch_warnings():
            # the first frame starts ffmpeg; JAX warns about any fork in a process where it runs threads, but a
            # fork straight into exec (subprocess) is safe
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
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
