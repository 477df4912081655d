"""`superpadl view`: a pyglet window showing the simulated character performing typed commands.

The scene is drawn by MuJoCo's own renderer offscreen (EGL on Linux) on a dedicated thread, read back as RGB and
blitted into the window as a texture, with the overlay (current command, queue, sim speed, FPS, command line)
drawn by pyglet on top. The offscreen context lives on its own thread because a thread can have only one
current OpenGL context, and pyglet's window context (GLX) and MuJoCo's (EGL) must not fight over it.

Keys. The command line has the focus at start: type, Enter sends (';' or 'then' queue several commands), Backspace
edits, Esc leaves the command line. Without the focus: space pauses, r resets the character, f toggles camera
follow, s saves the last 30 s (npz, BVH, glb; `save_recent`), q quits, Enter / Tab / '/' focus the command line
again. Mouse: drag orbits, scroll zooms.

Physics (120 Hz) and the controller (30 Hz) advance with the wall clock, at most `max_catchup` seconds per
frame, so a slow frame slows the simulation down instead of making it jump; the overlay shows the resulting
speed against real time. The scene is drawn at a quality preset (`rendering.presets`; preview by default).

The text model loads on a background thread as the window opens ("loading text model…" in the overlay); a
command sent before it is ready waits for it there, so typing never freezes the window.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import rendering  # noqa: F401  (chooses MUJOCO_GL before mujoco is imported: offscreen, on its own thread)

import numpy as np

from rendering.camera import TrackingCamera
from rendering.offscreen import RenderError, make_renderer
from rendering.presets import DEFAULT, Quality, quality as _quality
from superpadl.host import SimLoop


class ViewerError(RuntimeError):
    """The viewer cannot start (no pyglet, no display); the message says what to do."""


def _import_pyglet():
    try:
        import pyglet
    except ImportError:
        raise ViewerError("pyglet is not installed: pip install -e '.[viewer]'") from None
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise ViewerError("no display (DISPLAY is not set): run on a desktop, or under Xvfb "
                          "(xvfb-run superpadl view ...), or use `superpadl render` for a video")
    pyglet.options["shadow_window"] = False
    pyglet.options["vsync"] = False
    return pyglet


def check_display() -> None:
    """Raise ViewerError (saying what to do) when no window can be opened here."""
    _import_pyglet()


_KEY_NAMES = {"enter": "ENTER", "return": "ENTER", "escape": "ESCAPE", "esc": "ESCAPE", "space": "SPACE",
              "backspace": "BACKSPACE", "tab": "TAB", "slash": "SLASH", "/": "SLASH", " ": "SPACE"}


class Viewer:
    """The interactive viewer. Scriptable for tests: type_text, press, drag, scroll, tick, screenshot."""

    HUD_COLOR = (255, 255, 255, 255)
    ERROR_COLOR = (255, 110, 90, 255)

    def __init__(self, loop: SimLoop, width: int = 960, height: int = 720, max_catchup: float = 0.1,
                 quality: str | Quality = DEFAULT):
        self.pyglet = pyglet = _import_pyglet()
        self.loop = loop
        self.width, self.height = int(width), int(height)
        self.max_catchup = float(max_catchup)
        self.paused = False
        self.follow = True
        self.focused = True          # the command line has the keyboard
        self.text = ""               # command line contents
        self.error = ""              # last problem with a command, shown in red
        self.frames = 0
        self.fps = 0.0
        self.speed = 0.0             # sim seconds per wall second, smoothed
        self.closed = False
        self._debt = 0.0
        self._last_tick: float | None = None
        self._errors_seen = len(loop.errors)

        try:
            self.window = pyglet.window.Window(self.width, self.height, caption="superpadl view", resizable=False)
        except Exception as e:  # NoSuchDisplayException and friends
            raise ViewerError(f"cannot open a window: {e}") from None
        self.window.push_handlers(on_key_press=self._on_key_press, on_text=self._on_text,
                                  on_mouse_drag=self._on_mouse_drag, on_mouse_scroll=self._on_mouse_scroll,
                                  on_close=self._on_close, on_draw=self._draw)

        # MuJoCo renders offscreen on its own thread, at the quality preset (rendering.presets)
        self.quality = _quality(quality)
        self._render_thread = ThreadPoolExecutor(1, thread_name_prefix="mujoco-render")
        try:
            self._renderer = self._render_thread.submit(make_renderer, self.quality.model(loop.model), self.width,
                                                        self.height).result()
        except RenderError as e:
            self._render_thread.shutdown()
            self._render_thread = None
            self.window.close()
            raise ViewerError(str(e)) from None
        self.quality.apply(self._renderer.scene)
        self.tracking = TrackingCamera(loop.model)
        self.camera = self.tracking.camera
        self._update_camera(force=True)
        self.text_model = _TextModel(loop.controller)  # loads in the background from the first frame on
        self._pending = ""  # a command typed while the text model loads: sent once it is ready

        self.window.switch_to()
        self._texture = pyglet.image.Texture.create(self.width, self.height)
        self._batch = pyglet.graphics.Batch()
        bg, fg = pyglet.graphics.Group(order=0), pyglet.graphics.Group(order=1)
        W, H = self.width, self.height
        top = pyglet.shapes.Rectangle(0, H - 64, W, 64, color=(0, 0, 0, 150), batch=self._batch, group=bg)
        bottom = pyglet.shapes.Rectangle(0, 0, W, 46, color=(0, 0, 0, 150), batch=self._batch, group=bg)
        self._panels = (top, bottom)

        def label(x, y, size, color=self.HUD_COLOR, bold=False):
            return pyglet.text.Label("", x=x, y=y, anchor_y="top", font_size=size, color=color,
                                     weight="bold" if bold else "normal",
                                     batch=self._batch, group=fg)

        self.command_label = label(10, H - 6, 14, bold=True)   # the current command, exactly
        self.queue_label = label(10, H - 30, 9)
        self.status_label = label(10, H - 46, 9)
        self.input_label = label(10, 42, 11)                     # the command line
        self.help_label = label(10, 20, 8, color=(200, 200, 200, 255))
        self.error_label = label(10, H - 70, 10, color=self.ERROR_COLOR)
        self._frame: np.ndarray | None = None
        self.redraw()

    # ----- input (also the test API) --------------------------------------------------------------------------
    def type_text(self, text: str) -> None:
        """Characters as if typed (goes to the command line when it has the focus)."""
        for ch in text:
            self._on_text(ch)

    def press(self, key: str) -> None:
        """A named key: 'enter', 'escape', 'space', 'backspace', 'tab', or a letter such as 'r'."""
        k = self.pyglet.window.key
        name = _KEY_NAMES.get(key.lower(), key.upper())
        symbol = getattr(k, name, None)
        if symbol is None:
            raise ValueError(f"unknown key {key!r}")
        self._on_key_press(symbol, 0)
        if len(key) == 1 and key.isprintable():
            self._on_text(key)  # a real key press also produces its character
        elif name == "SPACE":
            self._on_text(" ")

    def drag(self, dx: float, dy: float) -> None:
        self._on_mouse_drag(0, 0, dx, dy, self.pyglet.window.mouse.LEFT, 0)

    def scroll(self, steps: float) -> None:
        self._on_mouse_scroll(0, 0, 0, steps)

    def send(self, text: str) -> bool:
        """Send a command to the loop; a bad one sets the error line. True if accepted."""
        text = text.strip()
        if not text:
            return False
        if not self.text_model.ready and not self.text_model.cached(text):
            self._pending = text  # sending now would wait for the model with the window frozen
            return True
        try:
            self.loop.command(text)
        except ValueError as e:  # ScriptError is one; controllers raise it for prompts they cannot perform
            self.error = f"cannot do that: {' '.join(str(e).split())}"
            return False
        except Exception as e:  # a controller bug must not take the window down with it
            self.error = f"controller failed on {text!r}: {type(e).__name__}: {' '.join(str(e).split())}"
            return False
        self.error = ""
        return True

    def _on_text(self, text: str):
        if not self.focused:
            return
        for ch in text:
            if ch in "\r\n":
                continue  # Enter is handled as a key
            if ch.isprintable() and len(self.text) < 200:
                self.text += ch
        self._update_labels()

    def _on_key_press(self, symbol, modifiers):
        k = self.pyglet.window.key
        if modifiers & k.MOD_CTRL and symbol == k.Q:
            self.close_request()
        elif self.focused:
            if symbol in (k.ENTER, k.RETURN, k.NUM_ENTER):
                if self.send(self.text):
                    self.text = ""
            elif symbol == k.BACKSPACE:
                self.text = self.text[:-1]
            elif symbol == k.ESCAPE:
                self.focused = False
        else:
            if symbol == k.SPACE:
                self.paused = not self.paused
            elif symbol == k.R:
                self.loop.reset()
            elif symbol == k.S:
                self.save_recent()
            elif symbol == k.F:
                self.follow = not self.follow
            elif symbol == k.Q:
                self.close_request()
            elif symbol in (k.ENTER, k.RETURN, k.TAB, k.SLASH):
                self.focused = True
        self._update_labels()
        return self.pyglet.event.EVENT_HANDLED  # keeps pyglet's default Esc-closes-the-window away

    def _on_mouse_drag(self, x, y, dx, dy, buttons, modifiers):
        if buttons & self.pyglet.window.mouse.LEFT:
            self.camera.azimuth = (self.camera.azimuth - 0.3 * dx) % 360
            self.camera.elevation = float(np.clip(self.camera.elevation - 0.3 * dy, -89, 89))

    def _on_mouse_scroll(self, x, y, scroll_x, scroll_y):
        self.camera.distance = float(np.clip(self.camera.distance * 0.9 ** scroll_y, 0.8, 30.0))

    def _on_close(self):
        self.close_request()
        return self.pyglet.event.EVENT_HANDLED

    def close_request(self):
        self.closed = True

    # ----- simulation and drawing -----------------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        """Advance the simulation by dt wall seconds (capped at max_catchup), unless paused."""
        if self.paused:
            self._debt = 0.0
            return
        self._debt += min(max(dt, 0.0), self.max_catchup)
        step = self.loop.timestep
        while self._debt >= step * 0.5:  # round to the nearest physics step; the remainder carries over
            self.loop.step()
            self._debt -= step

    def tick(self, dt: float) -> None:
        """One frame: advance the sim by dt, render the scene, draw the overlay and show it."""
        now = time.perf_counter()
        if self._pending and self.text_model.ready:
            text, self._pending = self._pending, ""
            self.send(text)
        t0 = self.loop.time
        self.advance(dt)
        if self._last_tick is not None:
            wall = now - self._last_tick
            if wall > 0:
                self.fps = 1.0 / wall if self.frames <= 1 else 0.9 * self.fps + 0.1 / wall
        if dt > 0:
            speed = (self.loop.time - t0) / dt
            self.speed = speed if self.frames == 0 else 0.9 * self.speed + 0.1 * speed
        self._last_tick = now
        self.redraw()
        self.window.switch_to()
        self._draw()
        self.window.flip()
        self.window.dispatch_events()
        self.frames += 1
        self.text_model.start()

    def _update_camera(self, force: bool = False) -> None:
        if self.follow or force:
            self.tracking.update(self.loop.data)

    def _render_scene(self) -> np.ndarray:
        def render():
            self._renderer.update_scene(self.loop.data, self.camera)
            return self._renderer.render()

        return self._render_thread.submit(render).result()

    def redraw(self) -> None:
        """Render the scene at the current state into the texture and refresh the overlay (no sim step)."""
        self._update_camera()
        frame = self._render_scene()
        self._frame = frame
        image = self.pyglet.image.ImageData(self.width, self.height, "RGB",
                                            np.ascontiguousarray(frame[::-1]).tobytes())
        self.window.switch_to()
        self._texture.blit_into(image, 0, 0, 0)
        self._update_labels()

    def _update_labels(self) -> None:
        loop = self.loop
        if len(loop.errors) > self._errors_seen:  # a queued command the controller refused
            self._errors_seen = len(loop.errors)
            self.error = f"skipped {loop.errors[-1]}"
        _set(self.command_label, _command_text(loop) or "(no command: type one below)")
        queue = " → ".join(f"{s.text} ({s.duration:g} s)" for s in loop.queued)
        if loop.current is not None and loop.remaining > 0:
            now = f"{loop.elapsed:.1f}/{loop.current.duration:g} s"
        else:
            now = f"{loop.elapsed:.1f} s"
        _set(self.queue_label, f"now {now}   next: {queue or '-'}")
        state = "PAUSED" if self.paused else f"sim {self.speed:.2f}× real time"
        if not self.text_model.ready:
            state = f"loading text model…{f' (then: {self._pending})' if self._pending else ''}   {state}"
        _set(self.status_label, f"{state}   {self.fps:.0f} FPS   t={loop.time:.1f} s   falls {loop.falls}   "
                                f"follow {'on' if self.follow else 'off'}")
        caret = "_" if self.focused else ""
        _set(self.input_label, f"> {self.text}{caret}")
        _set(self.help_label, "Enter: send   Esc: keys" if self.focused else
             "space: pause   r: reset   f: follow   s: save last 30 s   q: quit   Enter/Tab: type   drag: orbit   "
             "scroll: zoom")
        _set(self.error_label, self.error)

    def save_recent(self, seconds: float = 30.0, folder: Path | str = ".") -> list[Path]:
        """Write the last `seconds` of motion as npz, BVH and glb (rendering.export) into `folder`, named by the
        time; prints and shows where."""
        from rendering.export import save

        rec = self.loop.recording(seconds)
        stem = Path(folder) / time.strftime("superpadl-%Y%m%d-%H%M%S")
        try:
            paths = [save(stem.with_suffix(ext), rec) for ext in (".npz", ".bvh", ".glb")]
        except OSError as e:
            self.error = f"cannot save: {' '.join(str(e).split())}"
            return []
        self.error = f"saved {rec.num_frames / rec.fps:.1f} s: {stem}.npz, .bvh, .glb"
        print(f"saved {rec.num_frames / rec.fps:.1f} s to {', '.join(map(str, paths))}", flush=True)
        return paths

    def _draw(self) -> None:
        self.window.clear()
        self._texture.blit(0, 0)
        self._batch.draw()

    def screenshot(self) -> np.ndarray:
        """(height, width, 3) uint8 of what the window shows now (scene and overlay), top row first."""
        gl = self.pyglet.gl
        self.window.switch_to()
        self._draw()  # the back buffer is undefined after a flip: draw again, read it, do not show it
        w, h = self.window.get_framebuffer_size()
        buf = (gl.GLubyte * (w * h * 3))()
        gl.glReadBuffer(gl.GL_BACK)
        gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
        gl.glReadPixels(0, 0, w, h, gl.GL_RGB, gl.GL_UNSIGNED_BYTE, buf)
        return np.frombuffer(buf, np.uint8).reshape(h, w, 3)[::-1].copy()

    def save_screenshot(self, path) -> None:
        from PIL import Image

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.screenshot()).save(path)

    def label_box(self, label) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) of a label's text in screenshot() coordinates."""
        x0, top = int(label.x), int(label.y)
        w, h = int(label.content_width), int(label.content_height)
        return self.height - top, self.height - top + h, x0, x0 + w

    def run(self, frames: int | None = None, max_fps: float = 60.0) -> None:
        """The event loop, paced by the wall clock; returns when the window closes or after `frames` frames."""
        period = 1.0 / max_fps
        last = time.perf_counter()
        while not self.closed and (frames is None or self.frames < frames):
            now = time.perf_counter()
            self.pyglet.clock.tick()
            self.tick(now - last)
            last = now
            spare = period - (time.perf_counter() - now)
            if spare > 0:
                time.sleep(spare)

    def close(self) -> None:
        if getattr(self, "_render_thread", None) is not None:
            self._render_thread.submit(self._renderer.close).result()
            self._render_thread.shutdown()
            self._render_thread = None
        if getattr(self, "window", None) is not None:
            self.window.close()
            self.window = None
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def _command_text(loop: SimLoop) -> str | None:
    """The current command and what it was matched to; "not a known skill" below KNOWN_SIMILARITY."""
    c = loop.timeline[-1] if loop.timeline and loop.current is not None else None
    if c is None or c["similarity"] is None:  # no command yet, or a controller that does not match text
        return loop.current_text
    from superpadl.runtime import KNOWN_SIMILARITY, match_label

    if c["similarity"] < KNOWN_SIMILARITY:
        return f"{c['text']}: not a known skill — nearest: \"{c['caption']}\" ({c['similarity']:.2f})"
    done = " — done, standing" if getattr(loop.controller, "idling", False) else ""  # (PolicyController.idle_after_s)
    return match_label(c["text"], c["caption"], c["similarity"]) + done


class _TextModel:
    """The controller's text encoder (its `encoder.load()`), loaded on a background thread once the window shows
    its first frame: torch and the model take seconds, and the window keeps drawing and taking keys meanwhile.
    Ready at once for a controller without one. A failed load is left for the first command to report."""

    def __init__(self, controller):
        load = getattr(getattr(controller, "encoder", None), "load", None)
        self._cached = getattr(getattr(controller, "encoder", None), "cached", None)
        self._thread = threading.Thread(target=self._load, args=(load,), name="text-model", daemon=True) \
            if callable(load) else None

    def start(self) -> None:
        if self._thread is not None and self._thread.ident is None:
            self._thread.start()

    @staticmethod
    def _load(load) -> None:
        try:
            load()
        except Exception:  # noqa: BLE001  the first command loads again and shows the error
            pass

    @property
    def ready(self) -> bool:
        return self._thread is None or (self._thread.ident is not None and not self._thread.is_alive())

    def cached(self, command: str) -> bool:
        """Every stage of `command` is in the encoder's prompt cache: it can be performed before the model loads."""
        from superpadl.script import parse_script

        try:
            stages = parse_script(command, source="<command>")
        except ValueError:
            return True  # a bad script needs no model to be refused
        return callable(self._cached) and all(self._cached(s.text) for s in stages)

    def wait(self, timeout: float | None = None) -> bool:
        """Start the load if it has not started and wait for it (tests, benchmarks); True once ready."""
        self.start()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.ready


def _set(label, text: str) -> None:
    if label.text != text:  # relayout only on change
        label.text = text
