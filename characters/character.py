"""The simulated humanoid: its MJCF and the facts every other package needs about it."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mujoco
import numpy as np

HUMANOID_XML = Path(__file__).with_name("humanoid.xml")

# Points on the character that motion sources are matched to (retargeting, key-body metrics): a body and an
# offset in that body's frame. Body origins are the joint centres.
POINTS: dict[str, tuple[str, tuple[float, float, float]]] = {
    "pelvis": ("pelvis", (0, 0, 0)),
    "spine": ("torso", (0, 0, 0)),
    "chest": ("torso", (0, 0, 0.26)),
    "neck": ("head", (0, 0, 0)),
    "head": ("head", (0, 0, 0.12)),
    **{
        f"{s}_{p}": (f"{s}_{b}", off)
        for s in ("left", "right")
        for p, b, off in (
            ("shoulder", "upper_arm", (0, 0, 0)),
            ("elbow", "lower_arm", (0, 0, 0)),
            ("wrist", "hand", (0, 0, 0)),
            ("hand_end", "hand", (0, 0, -0.08)),
            ("hip", "thigh", (0, 0, 0)),
            ("knee", "shin", (0, 0, 0)),
            ("ankle", "foot", (0, 0, 0)),
            ("toe", "foot", (0.12, 0, -0.05)),
        )
    },
}

# Bones whose directions retargeting matches (pairs of points). Directions, unlike positions, do not depend on
# the source's proportions.
BONES: tuple[tuple[str, str], ...] = (
    ("pelvis", "spine"), ("spine", "chest"), ("chest", "neck"), ("neck", "head"),
    ("right_hip", "left_hip"), ("right_shoulder", "left_shoulder"),
    *(
        (f"{s}_{a}", f"{s}_{b}")
        for s in ("left", "right")
        for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "hand_end"),
                     ("hip", "knee"), ("knee", "ankle"), ("ankle", "toe"))
    ),
)


@dataclass(frozen=True)
class Character:
    """Body/joint/actuator order, key bodies, limits and gains of an MJCF humanoid with a free root.

    qpos layout: root position (3), root quaternion wxyz (4), then one angle per hinge in MJCF order.
    """

    xml_path: Path = HUMANOID_XML
    key_body_names: tuple[str, ...] = ("head", "right_hand", "left_hand", "right_foot", "left_foot")
    foot_body_names: tuple[str, ...] = ("right_foot", "left_foot")

    @cached_property
    def model(self) -> mujoco.MjModel:
        return mujoco.MjModel.from_xml_path(str(self.xml_path))

    @property
    def name(self) -> str:
        return self.model.names[: self.model.names.index(b"\0")].decode()

    @cached_property
    def body_names(self) -> tuple[str, ...]:
        """Bodies without the world body; index i here is MuJoCo body i + 1."""
        return tuple(self.model.body(i).name for i in range(1, self.model.nbody))

    @cached_property
    def joint_names(self) -> tuple[str, ...]:
        """The hinge joints, in qpos order after the free root."""
        m = self.model
        return tuple(m.joint(i).name for i in range(m.njnt) if m.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE)

    @cached_property
    def actuator_names(self) -> tuple[str, ...]:
        return tuple(self.model.actuator(i).name for i in range(self.model.nu))

    @property
    def num_dof(self) -> int:
        return len(self.joint_names)

    @cached_property
    def actuator_joint(self) -> np.ndarray:
        """Hinge index (into joint_names) that each actuator drives."""
        names = [self.model.joint(j).name for j in self.model.actuator_trnid[:, 0]]
        return np.array([self.joint_names.index(n) for n in names])

    @cached_property
    def joint_limits(self) -> np.ndarray:
        """(num_dof, 2) radians."""
        m = self.model
        ids = [m.joint(n).id for n in self.joint_names]
        return m.jnt_range[ids].copy()

    @cached_property
    def pd_gains(self) -> tuple[np.ndarray, np.ndarray]:
        """(kp, kd) per actuator."""
        m = self.model
        return m.actuator_gainprm[:, 0].copy(), -m.actuator_biasprm[:, 2].copy()

    def body_index(self, name: str) -> int:
        return self.body_names.index(name)

    @cached_property
    def key_bodies(self) -> np.ndarray:
        return np.array([self.body_index(n) for n in self.key_body_names])

    @cached_property
    def foot_bodies(self) -> np.ndarray:
        return np.array([self.body_index(n) for n in self.foot_body_names])

    @cached_property
    def mass(self) -> float:
        return float(self.model.body_subtreemass[1])

    def rest_qpos(self) -> np.ndarray:
        return self.model.qpos0.copy()

    @cached_property
    def standing_height(self) -> float:
        """Floor to the top of the head in the rest pose, metres."""
        m, d = self.model, mujoco.MjData(self.model)
        mujoco.mj_kinematics(m, d)
        head = m.geom("head").id
        return float(d.geom_xpos[head, 2] + m.geom_size[head, 0])

    @cached_property
    def point_names(self) -> tuple[str, ...]:
        return tuple(POINTS)

    @cached_property
    def point_bodies(self) -> np.ndarray:
        return np.array([self.body_index(POINTS[p][0]) for p in self.point_names])

    @cached_property
    def point_offsets(self) -> np.ndarray:
        return np.array([POINTS[p][1] for p in self.point_names], dtype=np.float64)

    @cached_property
    def bones(self) -> np.ndarray:
        """(B, 2) point indices of the bones used for direction matching."""
        return np.array([[self.point_names.index(a), self.point_names.index(b)] for a, b in BONES])


def load_character(name: str = "humanoid") -> Character:
    if name not in ("humanoid", "padl_humanoid"):
        raise ValueError(f"unknown character {name!r}; available: humanoid")
    return Character()
