"""Can the viewer keep up? Simulation + controller speed of SimLoop, and headless render rate, on one CPU core.

    python benchmarks/realtime.py [--seconds 10] [--width 640 --height 480] [--frames 60]

SimLoop: physics at the model's timestep (120 Hz) and the controller at its rate (30 Hz), fall checks and
command queue included, timed over `--seconds` of simulated time; reported as sim seconds per wall second
(× real time), against a target of 10× (headroom for rendering and several characters). Controllers: the
HoldController placeholder and, when installed, superpadl.runtime.default_controller().

Render: FrameRenderer (tracking camera, MuJoCo's renderer offscreen, EGL on Linux) frames per second at the given
size against real time at 30 fps video, with and without the caption overlay, one control step per frame
included as in `superpadl render`. It runs on all the process's cores (Mesa's software renderer is
multithreaded when there is no GPU).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux"):
    os.environ["MUJOCO_GL"] = "egl"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from characters.character import Character  # noqa: E402
from superpadl.host import HoldController, SimLoop  # noqa: E402

SIM_TARGET = 10.0   # × real time
VIDEO_FPS = 30.0


def pin_one_core() -> tuple[str, set | None]:
    """Pin to one core; returns a description and the previous affinity (to restore)."""
    if hasattr(os, "sched_setaffinity"):
        before = os.sched_getaffinity(0)
        core = min(before)
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}", before
    return "not pinned (no sched_setaffinity)", None


def sim_speed(controller, model, seconds: float) -> tuple[float, int]:
    loop = SimLoop(model, controller)
    loop.command("stand still")
    for _ in range(10):
        loop.control_step()  # warm-up (a policy's first call may compile)
    n = int(round(seconds * loop.control_hz))
    t0, s0 = time.perf_counter(), loop.time
    for _ in range(n):
        loop.control_step()
    return (loop.time - s0) / (time.perf_counter() - t0), loop.falls


def render_fps(model, width: int, height: int, frames: int, caption: str | None) -> float:
    from rendering.offscreen import FrameRenderer

    controller = HoldController()
    loop = SimLoop(model, controller)
    loop.command("stand still")
    renderer = FrameRenderer(model, width, height)
    try:
        renderer.render(loop.data, caption)
        t0 = time.perf_counter()
        for _ in range(frames):
            loop.control_step()
            renderer.render(loop.data, caption)
        wall = time.perf_counter() - t0
    finally:
        renderer.close()
    return frames / wall  # one control step per frame included, as in `superpadl render` at 30 fps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="simulated seconds per controller (default 10)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--frames", type=int, default=60, help="frames to render (default 60)")
    args = p.parse_args()

    pinned, affinity = pin_one_core()
    character = Character()
    model = character.model
    controllers = [("HoldController (placeholder)", HoldController(character))]
    try:
        runtime = importlib.import_module("superpadl.runtime")
    except ModuleNotFoundError as e:
        if e.name not in ("superpadl.runtime", "superpadl"):
            raise
        runtime = None
    if runtime is not None and hasattr(runtime, "default_controller"):
        controllers.append(("superpadl.runtime.default_controller()", runtime.default_controller()))
    else:
        print("(superpadl.runtime.default_controller not installed: only the placeholder is timed)")

    rows = []
    for name, controller in controllers:
        m = getattr(controller, "model", None) or model
        speed, falls = sim_speed(controller, m, args.seconds)
        rows.append((f"SimLoop {name}", f"{speed:8.1f}× real time", f"{speed / SIM_TARGET:6.2f}× target 10×",
                     f"falls {falls}"))
    if affinity is not None:
        os.sched_setaffinity(0, affinity)  # the renderer (Mesa llvmpipe without a GPU) may use every core
    cores = len(affinity) if affinity is not None else os.cpu_count()
    for cap in (None, "walk forward happily"):
        fps = render_fps(model, args.width, args.height, args.frames, cap)
        label = "with caption" if cap else "no caption"
        rows.append((f"FrameRenderer {args.width}x{args.height} {label}", f"{fps:8.1f} frames/s",
                     f"{fps / VIDEO_FPS:6.2f}× real time at {VIDEO_FPS:g} fps", ""))

    print(f"SimLoop on one CPU core ({pinned}), physics {1 / model.opt.timestep:.0f} Hz, controller 30 Hz; "
          f"render on {cores} cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')}")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("what", "rate", "ratio", "")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    print("  ".join("-" * w for w in widths).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    main()
