"""Camera framing: a free camera that follows the character and keeps the whole of it at about half the frame
height, whatever the character's size.

The distance comes from the character's standing height and the model's vertical field of view (a standing
character of height h spans h / (2 d tan(fovy / 2)) of the frame at distance d); the camera looks at the middle
of that height above the pelvis's ground position, so crouching, bowing and lying down all stay in view and a
step does not bob the picture."""
from __future__ import annotations

import math

import mujoco
import numpy as np

FRACTION = 0.5      # of the frame height the standing character spans
ELEVATION = -15.0   # degrees: a little from above, so the feet and the floor contact read
AZIMUTH = 150.0     # degrees: three-quarter front view of a character facing +x


def standing_height(model: mujoco.MjModel) -> float:
    """Height (m) of the character's top in its model pose (qpos0; the humanoid's rest pose), floor excluded."""
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    body = model.geom_bodyid != 0
    top = data.geom_xpos[body, 2] + model.geom_rbound[body]
    return float(top.max()) if body.any() else 1.0


class TrackingCamera:
    """An mjvCamera that follows a body (default: the pelvis) in x and y at a framing distance."""

    def __init__(self, model: mujoco.MjModel, fraction: float = FRACTION, body: str = "pelvis",
                 elevation: float = ELEVATION, azimuth: float = AZIMUTH):
        self.height = standing_height(model)
        fovy = math.radians(model.vis.global_.fovy)
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.distance = self.height / (2 * fraction * math.tan(fovy / 2))
        self.camera.elevation, self.camera.azimuth = elevation, azimuth
        self._body = model.body(body).id

    def update(self, data: mujoco.MjData) -> mujoco.MjvCamera:
        """Move the look-at point over the body; returns the mjvCamera."""
        x, y = data.xpos[self._body, :2]
        self.camera.lookat[:] = np.array([x, y, self.height / 2])
        return self.camera
