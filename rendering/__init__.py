"""Offscreen rendering, quality presets, camera framing and motion export writers: below `motions` and `padl`,
so data and learning code can draw frames without depending on the UI.

Importing the package chooses MuJoCo's OpenGL backend (`rendering.gl`), so entry points import it before mujoco."""
from rendering import gl

gl.choose()
