"""Can the viewer and `superpadl render` keep up? SimLoop speed on one CPU core, and render rates end to end.

    python benchmarks/realtime.py [--seconds 10] [--frames 60] [--sizes 320x240 640x480 960x720]

SimLoop: physics at the model's timestep (120 Hz) and the controller at its rate (30 Hz), fall checks and
command queue included, timed over `--seconds` of simulated time; reported as sim seconds per wall second
(× real time), against a target of 10× (headroom for rendering and several characters). Controllers: the
HoldController placeholder and, when installed, superpadl.runtime.default_controller().

Render, for both quality presets (rendering.presets) at each size:
- mujoco.Renderer: the raw rate of MuJoCo's offscreen renderer on the same scene and camera at that preset,
  the baseline (nothing else runs);
- end to end: what `superpadl render` does per frame of a 30 fps video, timed over `--frames` frames of a
  two-command script after a warm-up: the policy (default controller), physics, the render, the caption and the
  libx264 encoding (the file is written to a temporary folder), through SimLoop.run_script.
Rendering runs on all the process's cores (Mesa's software renderer is multithreaded when there is no GPU).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rendering  # noqa: E402,F401  (chooses MUJOCO_GL before mujoco is imported)

import mujoco  # noqa: E402

from characters.character import Character  # noqa: E402
from rendering.camera import TrackingCamera  # noqa: E402
from rendering.offscreen import FrameRenderer, VideoWriter  # noqa: E402
from rendering.presets import PRESETS, quality  # noqa: E402
from superpadl.host import HoldController, SimLoop  # noqa: E402
from superpadl.script import parse_script  # noqa: E402

SIM_TARGET = 10.0   # × real time
VIDEO_FPS = 30.0
COMMANDS = ("take a bow", "wave goodbye")


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
    loop.command(COMMANDS[0])
    for _ in range(10):
        loop.control_step()  # warm-up (a policy's first call may compile)
    n = int(round(seconds * loop.control_hz))
    t0, s0 = time.perf_counter(), loop.time
    for _ in range(n):
        loop.control_step()
    return (loop.time - s0) / (time.perf_counter() - t0), loop.falls


def raw_fps(model, width: int, height: int, preset: str, frames: int) -> float:
    """mujoco.Renderer alone: update_scene + render of the standing character, at the preset."""
    q = quality(preset)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(q.model(model), height=height, width=width)
    q.apply(renderer.scene)
    camera = TrackingCamera(model).update(data)
    try:
        renderer.update_scene(data, camera)
        renderer.render()
        t0 = time.perf_counter()
        for _ in range(frames):
            renderer.update_scene(data, camera)
            renderer.render()
        return frames / (time.perf_counter() - t0)
    finally:
        renderer.close()


def end_to_end_fps(controller, model, width: int, height: int, preset: str, frames: int, folder: Path) -> float:
    """Frames per second of `superpadl render`'s loop: policy, physics, render, caption, mp4 encoding."""
    loop = SimLoop(model, controller)
    renderer = FrameRenderer(model, width, height, preset)
    half = frames / VIDEO_FPS / 2
    script = parse_script(f"{COMMANDS[0]} for {half:g}s; then {COMMANDS[1]} for {half:g}s")
    try:
        with VideoWriter(folder / "warm-up.mp4", VIDEO_FPS, preset) as video:  # text model, compilation, ffmpeg
            loop.run_script(parse_script(f"{COMMANDS[0]} for 0.2s"), VIDEO_FPS,
                            lambda data, caption: video.append(renderer.render(data, caption)))
        t0 = time.perf_counter()
        with VideoWriter(folder / f"{preset}-{width}x{height}.mp4", VIDEO_FPS, preset) as video:
            n = loop.run_script(script, VIDEO_FPS, lambda data, caption: video.append(renderer.render(data, caption)))
        return n / (time.perf_counter() - t0)
    finally:
        renderer.close()


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    print("  ".join("-" * w for w in widths).rstrip())
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"WIDTHxHEIGHT expected, got {text!r}") from None
    return w, h


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="simulated seconds per controller (default 10)")
    p.add_argument("--frames", type=int, default=60, help="frames per render measurement (default 60)")
    p.add_argument("--sizes", type=size, nargs="+", default=[(320, 240), (640, 480), (960, 720)],
                   help="frame sizes (default 320x240 640x480 960x720)")
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
    print(f"SimLoop on one CPU core ({pinned}), physics {1 / model.opt.timestep:.0f} Hz, controller 30 Hz")
    table(rows, ("what", "rate", "ratio", ""))

    if affinity is not None:
        os.sched_setaffinity(0, affinity)  # the renderer (Mesa llvmpipe without a GPU) may use every core
    cores = len(affinity) if affinity is not None else os.cpu_count()
    name, controller = controllers[-1]
    m = getattr(controller, "model", None) or model
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in args.sizes:
            for preset in PRESETS:
                raw = raw_fps(m, w, h, preset, args.frames)
                e2e = end_to_end_fps(controller, m, w, h, preset, args.frames, Path(tmp))
                rows.append((f"{w}x{h}", preset, f"{raw:7.1f}", f"{e2e:7.1f}", f"{e2e / VIDEO_FPS:5.2f}×"))
    print(f"\nRender frames/s on {cores} cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')}; end to end = {name} + "
          f"physics + render + caption + libx264, as `superpadl render` at {VIDEO_FPS:g} fps")
    table(rows, ("size", "preset", "mujoco.Renderer", "end to end", "real time"))


if __name__ == "__main__":
    main()
