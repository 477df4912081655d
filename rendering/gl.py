"""The OpenGL backend MuJoCo renders with, chosen once per process before `mujoco` is imported.

MuJoCo reads MUJOCO_GL when it is imported; unset on Linux it means GLFW, which needs a display and otherwise
fails with a `mujoco.FatalError` at the first render. Every entry point (the `motions`, `padl` and `superpadl`
CLIs, `padl.gym_env`, the viewer) imports `rendering` before anything imports mujoco, which runs `choose()`:
on Linux EGL (Mesa's or a GPU driver's; works with and without a display), else OSMesa when only that is
installed. A MUJOCO_GL the user set is kept. Other systems keep MuJoCo's own default (CGL, WGL, GLFW).
"""
from __future__ import annotations

import ctypes.util
import os
import sys


def choose() -> str | None:
    """Set MUJOCO_GL for this process if it is unset; returns the backend in effect (None: MuJoCo's default)."""
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    if not sys.platform.startswith("linux"):
        return None
    if "mujoco" in sys.modules:
        return None  # too late to choose: mujoco has read the variable; FrameRenderer's error says so
    for backend, lib in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(lib):
            os.environ["MUJOCO_GL"] = backend
            return backend
    return None
