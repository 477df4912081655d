"""Retargeting a source skeleton motion onto the character.

Source and character skeletons share no joint frames (the Bandai zero pose is not even a human pose), so the
mapping goes through geometry: a joint map names, for each character point (pelvis, knees, wrists, ...), the
source joint (or a blend of two) at the same anatomical place. The root orientation is aligned from the hip
and spine directions; the joint angles then come from a batched Levenberg-Marquardt inverse kinematics that
matches bone directions (proportion-free, so the pose is kept) and the height-scaled positions of the points
(so hands and feet land where the source put them), with soft joint limits.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from characters.character import Character
from motions.fk import global_transforms
from motions.quality import lowest_points
from motions.quat import quat_from_matrix, quat_slerp
from motions.source import MotionImportError, SourceMotion

JOINT_MAP_DIR = Path(__file__).with_name("joint_maps")
# "Height" is measured along bone chains (pose-independent): the legs, and the legs plus spine and neck.
# Skeletons split the torso differently, so the scale is the mean of the two ratios: legs alone put the
# hips right, the whole chain the head.
HEIGHT_CHAINS = ((("ankle", "knee"), ("knee", "hip")),
                 (("ankle", "knee"), ("knee", "hip"), ("pelvis", "spine"), ("spine", "chest"), ("chest", "neck"), ("neck", "head")))
KEY_POINTS = ("head", "left_wrist", "right_wrist", "left_ankle", "right_ankle")


@dataclass(frozen=True)
class JointMap:
    name: str
    points: dict  # character point -> source joint name, or [joint_a, joint_b, t] for a blend
    clean: bool = True  # level and lock the feet, re-ground; false for a source that is this character's own motion

    def joints(self) -> set[str]:
        out = set()
        for v in self.points.values():
            out.update([v] if isinstance(v, str) else v[:2])
        return out


def load_joint_maps(directory: Path = JOINT_MAP_DIR) -> list[JointMap]:
    specs = {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}
    return [JointMap(name, d["points"], d.get("clean", True)) for name, d in specs.items()]


def find_joint_map(src: SourceMotion, maps: list[JointMap] | None = None) -> JointMap:
    """The fitting map that names the most joints: skeletons that share names (the AMP humanoid and this
    character's own BVH export) each get their own map."""
    names = set(src.joint_names)
    fits = [jm for jm in (maps if maps is not None else load_joint_maps()) if jm.joints() <= names]
    if fits:
        return max(fits, key=lambda jm: len(jm.joints()))  # first of equals: file-name order
    unknown = sorted(n for n in names if not n.endswith("_end"))[:6]
    raise MotionImportError(src.source_file, f"no joint map fits this skeleton (joints {', '.join(unknown)}, ...); "
                            f"add one to {JOINT_MAP_DIR}")


def resample(src: SourceMotion, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations (slerp) and root positions (lerp) at a new frame rate."""
    duration = (src.num_frames - 1) / src.fps
    t = np.arange(int(np.floor(duration * fps + 1e-6)) + 1) / fps * src.fps
    i0 = np.minimum(np.floor(t).astype(int), src.num_frames - 1)
    i1 = np.minimum(i0 + 1, src.num_frames - 1)
    a = t - i0
    rot = quat_slerp(src.local_rot[i0], src.local_rot[i1], np.broadcast_to(a[:, None], (len(a), src.local_rot.shape[1])))
    pos = src.root_pos[i0] * (1 - a[:, None]) + src.root_pos[i1] * a[:, None]
    return rot, pos


def source_points(src: SourceMotion, jm: JointMap, character: Character, rot, root_pos):
    """(T, P, 3) positions of the source joints matched to the character's points, and a (P,) mask."""
    resampled = SourceMotion(src.joint_names, src.parents, src.offsets, rot, root_pos, src.fps, src.source_file, src.source_format)
    gpos, _ = global_transforms(resampled)
    pts = np.zeros((gpos.shape[0], len(character.point_names), 3))
    mask = np.zeros(len(character.point_names), bool)
    for name, v in jm.points.items():
        i = character.point_names.index(name)
        if isinstance(v, str):
            pts[:, i] = gpos[:, src.index(v)]
        else:
            a, b, t = v
            pts[:, i] = (1 - t) * gpos[:, src.index(a)] + t * gpos[:, src.index(b)]
        mask[i] = True
    return pts, mask


def chain_length(pts: np.ndarray, names: tuple[str, ...], mask: np.ndarray, chain) -> float:
    """Average summed length of a chain over frames (legs averaged over both sides)."""
    total = 0.0
    for a, b in chain:
        sides = ("left_", "right_") if a in ("ankle", "knee") else ("",)
        lens = []
        for s in sides:
            ia, ib = (names.index(x if x in names else s + x) for x in (a, b))
            if mask[ia] and mask[ib]:
                lens.append(np.linalg.norm(pts[:, ia] - pts[:, ib], axis=-1).mean())
        total += np.mean(lens) if lens else 0.0
    return total


def _frame_from_points(left, right, low, high):
    """Rotation (wxyz) of a frame with y along right->left and z along low->high, x = y cross z."""
    y = left - right
    y /= np.linalg.norm(y, axis=-1, keepdims=True).clip(1e-9)
    z = high - low
    z = z - np.sum(z * y, -1, keepdims=True) * y
    z /= np.linalg.norm(z, axis=-1, keepdims=True).clip(1e-9)
    x = np.cross(y, z)
    return quat_from_matrix(np.stack([x, y, z], axis=-1))


def character_points(character: Character, qpos: np.ndarray) -> np.ndarray:
    """(T, P, 3) world positions of the character's named points."""
    m, d = character.model, mujoco.MjData(character.model)
    bodies = character.point_bodies + 1
    out = np.zeros((len(qpos), len(bodies), 3))
    for t, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        out[t] = d.xpos[bodies] + np.einsum("pij,pj->pi", d.xmat[bodies].reshape(-1, 3, 3), character.point_offsets)
    return out


@dataclass(frozen=True)
class IKWeights:
    key_point: float = 1.0
    other_point: float = 0.3
    bone_direction: float = 0.3  # metres per unit of direction error
    joint_limit: float = 3.0
    rest_pose: float = 0.01
    first_iterations: int = 60
    iterations: int = 12  # later frames start from the previous solution
    damping: float = 1e-3


class IKSolver:
    """Per-frame Levenberg-Marquardt IK on MuJoCo's analytic Jacobians, warm-started frame to frame (which
    also keeps ambiguous degrees of freedom, like an arm's twist, from flipping between frames)."""

    def __init__(self, character: Character, weights: IKWeights = IKWeights()):
        self.c, self.w = character, weights
        self.m = character.model
        self.d = mujoco.MjData(self.m)
        self.key_mask = np.isin(character.point_names, KEY_POINTS)
        self.lo, self.hi = character.joint_limits.T

    def _eval(self, q, target, dirs, point_w, bone_w):
        m, d, c, w = self.m, self.d, self.c, self.w
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        bodies = c.point_bodies + 1
        p = d.xpos[bodies] + np.einsum("pij,pj->pi", d.xmat[bodies].reshape(-1, 3, 3), c.point_offsets)
        jac = np.zeros((len(bodies), 3, m.nv))
        for i in range(len(bodies)):
            mujoco.mj_jac(m, d, jac[i], None, p[i], bodies[i])
        a, b = c.bones[:, 0], c.bones[:, 1]
        v = p[b] - p[a]
        n = np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-6)
        u = v / n
        proj = (np.eye(3)[None] - u[:, :, None] * u[:, None, :]) / n[:, :, None]
        jd = np.einsum("bij,bjk->bik", proj, jac[b] - jac[a])
        hinge = q[7:]
        over = np.maximum(hinge - self.hi, 0) - np.maximum(self.lo - hinge, 0)
        jl = np.zeros((len(hinge), m.nv))
        jl[np.arange(len(hinge)), 6 + np.arange(len(hinge))] = (over != 0) * w.joint_limit
        jr = np.zeros((len(hinge), m.nv))
        jr[np.arange(len(hinge)), 6 + np.arange(len(hinge))] = w.rest_pose
        r = np.concatenate([((p - target) * point_w[:, None]).ravel(),
                            ((u - dirs) * bone_w[:, None]).ravel() * w.bone_direction,
                            over * w.joint_limit, hinge * w.rest_pose])
        J = np.concatenate([(jac * point_w[:, None, None]).reshape(-1, m.nv),
                            (jd * bone_w[:, None, None]).reshape(-1, m.nv) * w.bone_direction, jl, jr])
        return r, J

    def _refine(self, q, target, dirs, point_w, bone_w, iterations):
        """Levenberg-Marquardt with step acceptance: a step that raises the cost is retried more damped."""
        mu = self.w.damping
        r, J = self._eval(q, target, dirs, point_w, bone_w)
        for _ in range(iterations):
            JTJ, g = J.T @ J, J.T @ r
            for _ in range(6):
                dq = np.linalg.solve(JTJ + mu * (np.diag(np.diag(JTJ)) + np.eye(len(JTJ))), -g)
                trial = q.copy()
                mujoco.mj_integratePos(self.m, trial, dq, 1.0)
                r_new, J_new = self._eval(trial, target, dirs, point_w, bone_w)
                if r_new @ r_new < r @ r:
                    q, r, J, mu = trial, r_new, J_new, max(mu / 3, 1e-6)
                    break
                mu *= 10
            else:
                break
        return q

    def solve(self, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """qpos (T, 7 + J) whose points best match target (T, P, 3) where mask is set."""
        c = self.c
        names = c.point_names
        idx = {n: names.index(n) for n in ("left_hip", "right_hip", "pelvis", "spine", "chest", "neck")}
        if not all(mask[idx[n]] for n in ("left_hip", "right_hip", "pelvis")):
            raise ValueError("the joint map must match pelvis, left_hip and right_hip")
        up = next(n for n in ("spine", "chest", "neck") if mask[idx[n]])
        bones = c.bones
        dirs = target[:, bones[:, 1]] - target[:, bones[:, 0]]
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True).clip(1e-9)
        bone_w = (mask[bones[:, 0]] & mask[bones[:, 1]]).astype(np.float64)
        point_w = np.where(self.key_mask, self.w.key_point, self.w.other_point) * mask
        out = np.zeros((len(target), self.m.nq))
        q = c.rest_qpos()
        for t in range(len(target)):
            if t == 0:  # root aligned from the hip and spine directions, limbs at rest
                q[:3] = target[0, idx["pelvis"]]
                q[3:7] = _frame_from_points(target[0, idx["left_hip"]], target[0, idx["right_hip"]],
                                            target[0, idx["pelvis"]], target[0, idx[up]])
            else:  # keep the previous pose, move the root with the source
                q[:3] += target[t, idx["pelvis"]] - target[t - 1, idx["pelvis"]]
            iters = self.w.first_iterations if t == 0 else self.w.iterations
            out[t] = q = self._refine(q.copy(), target[t], dirs[t], point_w, bone_w, iters)
        return out


def _stance(pts: np.ndarray, idx: list[int], floor: float, fps: float, height: float, speed: float) -> np.ndarray:
    """(T,) bool: the foot (points idx) is low and slow."""
    low = pts[:, idx, 2].min(axis=1) - floor < height
    v = np.linalg.norm(np.gradient(pts[:, idx, :2], axis=0), axis=-1).max(axis=1) * fps
    return low & (v < speed)


def _floor(pts: np.ndarray, names: tuple[str, ...]) -> float:
    return float(np.percentile(pts[:, [names.index(f"{s}_{p}") for s in ("left", "right") for p in ("ankle", "toe")], 2], 5))


def level_feet(pts: np.ndarray, names: tuple[str, ...], mask: np.ndarray, fps: float, character_pitch: float,
               height: float = 0.05, speed: float = 0.4) -> np.ndarray:
    """Turn each toe point about its ankle so that the source's typical stance foot maps onto the character's
    flat foot. Skeletons place the toe joint differently (Bandai's sits on the ground well below the ankle, so
    a plain bone-direction transfer stood the character on its toe tips, ~17 deg toe-down, and it tipped
    over backwards); the correction is the median ankle->toe pitch over stance frames minus the character's
    own (`character_pitch`, rad, positive toe-down), applied to every frame of the clip when it exceeds 8 deg."""
    out = pts.copy()
    floor = _floor(pts, names)
    for side in ("left", "right"):
        a, t = names.index(f"{side}_ankle"), names.index(f"{side}_toe")
        if not (mask[a] and mask[t]):
            continue
        vec = pts[:, t] - pts[:, a]
        horiz = np.linalg.norm(vec[:, :2], axis=-1)
        pitch = np.arctan2(-vec[:, 2], horiz)
        stance = _stance(pts, [a, t], floor, fps, height, speed)
        if stance.sum() < 3:
            continue
        delta = float(np.median(pitch[stance])) - character_pitch
        if abs(delta) < np.radians(8.0):  # feet that already land flat (DeepMimic, AMP) are left as they are
            continue
        new_pitch = pitch - delta
        length = np.linalg.norm(vec, axis=-1)
        heading = vec[:, :2] / np.maximum(horiz, 1e-9)[:, None]
        out[:, t, :2] = pts[:, a, :2] + heading * (length * np.cos(new_pitch))[:, None]
        out[:, t, 2] = pts[:, a, 2] - length * np.sin(new_pitch)
    return out


def lock_feet(pts: np.ndarray, names: tuple[str, ...], mask: np.ndarray, fps: float,
              height: float = 0.05, speed: float = 0.4) -> np.ndarray:
    """Pin each foot's horizontal position during the source's stance phases (foot low and slow), so the
    small slides that retargeting onto other proportions introduces do not turn into skating."""
    out = pts.copy()
    floor = _floor(pts, names)
    for side in ("left", "right"):
        idx = [names.index(f"{side}_{p}") for p in ("ankle", "toe") if mask[names.index(f"{side}_{p}")]]
        if not idx:
            continue
        stance = _stance(pts, idx, floor, fps, height, speed)
        t = 0
        while t < len(stance):
            if not stance[t]:
                t += 1
                continue
            end = t
            while end + 1 < len(stance) and stance[end + 1]:
                end += 1
            out[t:end + 1, idx, :2] = pts[t:end + 1, idx, :2].mean(axis=0)
            t = end + 1
    return out


@dataclass
class Retargeted:
    qpos: np.ndarray  # (T, 7 + J) at fps
    fps: float
    target_points: np.ndarray  # (T, P, 3) height-scaled source points, same ground shift as qpos
    point_mask: np.ndarray  # (P,)
    scale: float
    joint_map: str


def retarget(src: SourceMotion, character: Character, solver: IKSolver | None = None, fps: float = 30.0,
             joint_map: JointMap | None = None) -> Retargeted:
    jm = joint_map or find_joint_map(src)
    rot, root_pos = resample(src, fps)
    pts, mask = source_points(src, jm, character, rot, root_pos)
    rest = character_points(character, character.rest_qpos()[None])
    ratios = []
    for chain in HEIGHT_CHAINS:
        src_len = chain_length(pts, character.point_names, mask, chain)
        if not np.isfinite(src_len) or src_len <= 1e-3:
            raise MotionImportError(src.source_file, "degenerate skeleton: zero-length legs")
        ratios.append(chain_length(rest, character.point_names, mask, chain) / src_len)
    scale = float(np.mean(ratios))
    pts = pts * scale
    names = character.point_names
    toe = rest[0, names.index("left_toe")] - rest[0, names.index("left_ankle")]
    if jm.clean:
        pts = level_feet(pts, names, mask, fps, float(np.arctan2(-toe[2], np.linalg.norm(toe[:2]))))
    qpos = (solver or IKSolver(character)).solve(lock_feet(pts, names, mask, fps) if jm.clean else pts, mask)
    # Ground: lift or lower the whole clip so its low frames touch the floor (a robust low percentile of the
    # per-frame lowest point, so one noisy frame does not float the clip; jumps keep their flight).
    low = lowest_points(character, qpos).min(axis=1)
    shift = -np.percentile(low, 5) if jm.clean else 0.0
    qpos[:, 2] += shift
    pts[..., 2] += shift
    return Retargeted(qpos, fps, pts, mask, float(scale), jm.name)
