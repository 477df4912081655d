"""Offscreen rendering, quality presets, camera framing and motion export writers: below `motions` and `padl`,
so data and learning code can draw frames without depending on the UI."""
