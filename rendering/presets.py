"""Render quality presets: `preview` (fast: shadows, floor reflection and multisampling off, quick mp4 encoding)
and `final` (the model's own look, as before presets existed).

On a CPU (Mesa's llvmpipe) each of the three costs a large share of a frame and they only pay off together:
640x480 renders at about 60 frames/s with all three off and about 10 with any one of them on
(`benchmarks/realtime.py`)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import mujoco

DEFAULT = "preview"


@dataclass(frozen=True)
class Quality:
    name: str
    shadows: bool
    reflection: bool
    multisample: bool  # the offscreen buffer's samples: the model's (vis.quality.offsamples) or none
    x264_preset: str   # libx264 speed/size trade-off of written videos

    def model(self, model: mujoco.MjModel) -> mujoco.MjModel:
        """The model to build a renderer on: a copy without multisampling when the preset turns it off (MuJoCo
        reads the sample count once, when the render context is made); the model itself otherwise."""
        if self.multisample or model.vis.quality.offsamples == 0:
            return model
        model = copy.deepcopy(model)
        model.vis.quality.offsamples = 0
        return model

    def apply(self, scene: mujoco.MjvScene) -> None:
        """Set the scene's render flags (they persist across update_scene)."""
        scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.shadows
        scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = self.reflection


PRESETS = {"preview": Quality("preview", shadows=False, reflection=False, multisample=False, x264_preset="veryfast"),
           "final": Quality("final", shadows=True, reflection=True, multisample=True, x264_preset="medium")}


def quality(name: str | Quality) -> Quality:
    """A preset by name (ValueError naming the choices for an unknown one)."""
    if isinstance(name, Quality):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown render quality {name!r} (choose {' or '.join(PRESETS)})") from None
