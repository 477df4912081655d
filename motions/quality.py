"""Quality figures of a retargeted clip, computed from the character's own geometry with MuJoCo."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import mujoco
import numpy as np

from characters.character import Character

CONTACT_HEIGHT = 0.03  # a foot whose lowest point is below this is on the ground (m)


@dataclass(frozen=True)
class Thresholds:
    key_body_error_cm: float = 5.0
    penetration_cm: float = 2.0
    joint_limit_deg: float = 5.0


def geom_states(character: Character, qpos: np.ndarray):
    """(T, G, 3) geom positions and (T, G, 3, 3) rotations."""
    m, d = character.model, mujoco.MjData(character.model)
    gp, gr = [], []
    for q in qpos:
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        gp.append(d.geom_xpos.copy())
        gr.append(d.geom_xmat.reshape(-1, 3, 3).copy())
    return np.array(gp), np.array(gr)


def lowest_points(character: Character, qpos: np.ndarray) -> np.ndarray:
    """(T, G) height of the lowest point of each body geom (the floor plane excluded)."""
    m = character.model
    gp, gr = geom_states(character, qpos)
    size = m.geom_size
    low = np.full(gp.shape[:2], np.inf)
    for g in range(m.ngeom):
        t = m.geom_type[g]
        if t == mujoco.mjtGeom.mjGEOM_CAPSULE:
            low[:, g] = gp[:, g, 2] - np.abs(gr[:, g, 2, 2]) * size[g, 1] - size[g, 0]
        elif t == mujoco.mjtGeom.mjGEOM_SPHERE:
            low[:, g] = gp[:, g, 2] - size[g, 0]
        elif t == mujoco.mjtGeom.mjGEOM_BOX:
            low[:, g] = gp[:, g, 2] - np.abs(gr[:, g, 2, :]) @ size[g]
    return low[:, np.isfinite(low).all(axis=0)]


def foot_metrics(character: Character, qpos: np.ndarray, fps: float) -> dict:
    """Penetration (cm); skating: mean horizontal foot speed while the foot is flat on the ground (cm/s) and
    the largest slide within one stance (cm). A foot is in stance when its sole corners are on average within
    CONTACT_HEIGHT of the floor, so heel-to-toe rolling is not mistaken for sliding."""
    m = character.model
    feet = [m.geom(n).id for n in character.foot_body_names]
    gp, gr = geom_states(character, qpos)
    signs = np.array([[sx, sy, -1.0] for sx in (-1, 1) for sy in (-1, 1)])
    corners = np.stack([gp[:, g, None, :] + np.einsum("tij,cj->tci", gr[:, g], signs * m.geom_size[g]) for g in feet], 1)
    heights = corners[..., 2]  # (T, feet, 4)
    xy = gp[:, feet, :2]
    contact = heights.mean(axis=-1) < CONTACT_HEIGHT
    speed = np.linalg.norm(np.diff(xy, axis=0), axis=-1) * fps
    both = contact[1:] & contact[:-1]
    slide = 0.0
    for f in range(len(feet)):
        start = None
        for t in range(len(qpos)):
            if contact[t, f]:
                start = t if start is None else start
                slide = max(slide, float(np.linalg.norm(xy[t, f] - xy[start, f])))
            else:
                start = None
    return {
        "penetration_cm": float(max(0.0, -heights.min()) * 100),
        "skate_speed_cm_s": float(speed[both].mean() * 100) if both.any() else 0.0,
        "max_stance_slide_cm": slide * 100,
    }


def joint_limit_violation_deg(character: Character, qpos: np.ndarray) -> tuple[float, str]:
    lo, hi = character.joint_limits.T
    q = qpos[:, 7:]
    over = np.maximum(q - hi, lo - q).max(axis=0)
    j = int(np.argmax(over))
    return float(np.rad2deg(max(over[j], 0.0))), character.joint_names[j]


def key_body_error_cm(character_points: np.ndarray, target_points: np.ndarray, key_idx: np.ndarray) -> tuple[float, float]:
    err = np.linalg.norm(character_points[:, key_idx] - target_points[:, key_idx], axis=-1) * 100
    return float(err.mean()), float(err.max())


def assess(figures: dict, thresholds: Thresholds = Thresholds()) -> list[str]:
    """Reasons a clip is flagged (empty when it passes)."""
    reasons = []
    if figures["key_body_error_mean_cm"] > thresholds.key_body_error_cm:
        reasons.append(f"key-body error {figures['key_body_error_mean_cm']:.1f} cm > {thresholds.key_body_error_cm:g}")
    if figures["penetration_cm"] > thresholds.penetration_cm:
        reasons.append(f"foot penetration {figures['penetration_cm']:.1f} cm > {thresholds.penetration_cm:g}")
    if figures["joint_limit_deg"] > thresholds.joint_limit_deg:
        reasons.append(f"{figures['joint_limit_joint']} {figures['joint_limit_deg']:.0f} deg past its limit")
    return reasons


def thresholds_dict(t: Thresholds) -> dict:
    return asdict(t)


def speed_profile(qpos: np.ndarray, qvel: np.ndarray, fps: float, every_s: float = 0.1) -> np.ndarray:
    """(W, 5) rows [start s, root height m, root horizontal speed m/s, mean joint speed rad/s, root xy distance from
    the first frame m], each the mean over a window of `every_s`: where a take is at rest, to choose the span of one
    skill (`motions import FILE@START:END`)."""
    starts = np.arange(0, len(qpos), max(1, round(every_s * fps)))
    per_frame = np.stack([qpos[:, 2], np.linalg.norm(qvel[:, :2], axis=1), np.abs(qvel[:, 6:]).mean(1),
                          np.linalg.norm(qpos[:, :2] - qpos[:1, :2], axis=1)], 1)
    means = np.add.reduceat(per_frame, starts) / np.diff(starts, append=len(qpos))[:, None]
    return np.column_stack([starts / fps, means])


def at_rest(qpos: np.ndarray, qvel: np.ndarray, fps: float, joint_speed: float = 0.15, travel_m: float = 0.1) -> bool:
    """Whether a clip only stands: every 0.5 s window's mean joint speed below `joint_speed` rad/s, and the root
    never `travel_m` from where it began (the Bandai takes rest for a second or more before their skill)."""
    profile = speed_profile(qpos, qvel, fps, 0.5)
    return bool((profile[:, 3] < joint_speed).all() and (profile[:, 4] < travel_m).all())
