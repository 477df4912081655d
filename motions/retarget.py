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
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from characters.character import Character
from motions import kinematics as K
from motions.fk import global_transforms
from motions.quat import quat_slerp
from motions.source import MotionImportError, SourceMotion

JOINT_MAP_DIR = Path(__file__).with_name("joint_maps")
# Chains whose summed lengths measure "height" the same way on the source and on the character.
HEIGHT_CHAIN = (("ankle", "knee"), ("knee", "hip"), ("pelvis", "spine"), ("spine", "chest"), ("chest", "neck"), ("neck", "head"))
KEY_POINTS = ("head", "left_wrist", "right_wrist", "left_ankle", "right_ankle")


@dataclass(frozen=True)
class JointMap:
    name: str
    points: dict  # character point -> source joint name, or [joint_a, joint_b, t] for a blend

    def joints(self) -> set[str]:
        out = set()
        for v in self.points.values():
            out.update([v] if isinstance(v, str) else v[:2])
        return out


def load_joint_maps(directory: Path = JOINT_MAP_DIR) -> list[JointMap]:
    return [JointMap(p.stem, json.loads(p.read_text())["points"]) for p in sorted(directory.glob("*.json"))]


def find_joint_map(src: SourceMotion, maps: list[JointMap] | None = None) -> JointMap:
    names = set(src.joint_names)
    for jm in maps if maps is not None else load_joint_maps():
        if jm.joints() <= names:
            return jm
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
    rot = quat_slerp(src.local_rot[i0], src.local_rot[i1], np.broadcast_to(a[:, None], src.local_rot.shape[:2]))
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


def chain_length(pts: np.ndarray, names: tuple[str, ...], mask: np.ndarray) -> float:
    """Average summed length of HEIGHT_CHAIN over frames (legs averaged over both sides)."""
    total = 0.0
    for a, b in HEIGHT_CHAIN:
        sides = ("left_", "right_") if a in ("ankle", "knee") else ("",)
        lens = []
        for s in sides:
            ia = names.index(a if a in names else s + a)
            ib = names.index(b if b in names and b != "hip" else s + b)
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
    mat = np.stack([x, y, z], axis=-1)
    from scipy.spatial.transform import Rotation
    xyzw = Rotation.from_matrix(mat).as_quat()
    return np.concatenate([xyzw[..., 3:], xyzw[..., :3]], axis=-1)


@dataclass(frozen=True)
class IKWeights:
    key_point: float = 1.0
    other_point: float = 0.3
    bone_direction: float = 0.3  # metres per unit of direction error
    joint_limit: float = 3.0
    rest_pose: float = 0.01
    iterations: int = 30
    damping: float = 1e-3


def _residual_fn(skel, bodies, offsets, bones, lo, hi, weights: IKWeights, point_w):
    def residual(x, init_rot, target, dirs, bone_w):
        root_rot = K.quat_mul(K.rotvec_to_quat(x[3:6]), init_rot)
        qpos = jnp.concatenate([x[:3], root_rot, x[6:]])
        state = K.forward_kinematics(skel, qpos)
        p = K.points(state, bodies, offsets)
        d = p[bones[:, 1]] - p[bones[:, 0]]
        d = d / jnp.linalg.norm(d, axis=-1, keepdims=True).clip(1e-6)
        q = x[6:]
        return jnp.concatenate([
            ((p - target) * point_w[:, None]).ravel(),
            ((d - dirs) * bone_w[:, None]).ravel() * weights.bone_direction,
            (jax.nn.relu(q - hi) + jax.nn.relu(lo - q)) * weights.joint_limit,
            q * weights.rest_pose,
        ])
    return residual


@partial(jax.jit, static_argnums=(0, 6))
def _solve(residual, x0, init_rot, target, dirs, bone_w, iterations: int, damping: float):
    def one(x, r_args):
        def step(x, _):
            r = residual(x, *r_args)
            J = jax.jacfwd(residual)(x, *r_args)
            JTJ = J.T @ J
            dx = jnp.linalg.solve(JTJ + damping * (jnp.diag(jnp.diag(JTJ)) + jnp.eye(x.shape[0])), -J.T @ r)
            return x + dx, None
        return jax.lax.scan(step, x, None, length=iterations)[0]
    return jax.vmap(one)(x0, (init_rot, target, dirs, bone_w))


class IKSolver:
    """Batched per-frame IK on the character; compiled once per padded batch size."""

    def __init__(self, character: Character, weights: IKWeights = IKWeights()):
        self.c, self.w = character, weights
        self.skel = K.Skeleton.from_model(character.model)
        self.key_mask = np.isin(character.point_names, KEY_POINTS)
        lo, hi = character.joint_limits.T
        self._lo, self._hi = lo, hi
        self._residuals = {}

    def _residual(self, mask: np.ndarray):
        key = mask.tobytes()
        if key not in self._residuals:
            point_w = np.where(self.key_mask, self.w.key_point, self.w.other_point) * mask
            self._residuals[key] = _residual_fn(self.skel, self.c.point_bodies, self.c.point_offsets, self.c.bones,
                                                self._lo, self._hi, self.w, jnp.asarray(point_w, jnp.float32))
        return self._residuals[key]

    def solve(self, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """qpos (T, 35) whose points best match target (T, P, 3) where mask is set."""
        c, T = self.c, target.shape[0]
        names = c.point_names
        idx = {n: names.index(n) for n in ("left_hip", "right_hip", "pelvis", "spine", "chest", "neck")}
        if not all(mask[idx[n]] for n in ("left_hip", "right_hip", "pelvis")):
            raise ValueError("the joint map must match pelvis, left_hip and right_hip")
        up = next(n for n in ("spine", "chest", "neck") if mask[idx[n]])
        init_rot = _frame_from_points(target[:, idx["left_hip"]], target[:, idx["right_hip"]], target[:, idx["pelvis"]], target[:, idx[up]])
        bones = c.bones
        dirs = target[:, bones[:, 1]] - target[:, bones[:, 0]]
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True).clip(1e-9)
        bone_w = (mask[bones[:, 0]] & mask[bones[:, 1]]).astype(np.float32)
        x0 = np.zeros((T, 6 + c.num_dof))
        x0[:, :3] = target[:, idx["pelvis"]]
        pad = -T % 64  # bucket sizes so clips of similar length share one compilation
        padf = lambda a: np.concatenate([a, np.repeat(a[-1:], pad, 0)]) if pad else a
        args = [jnp.asarray(padf(a), jnp.float32) for a in (x0, init_rot, target, dirs, np.broadcast_to(bone_w, (T, len(bone_w))))]
        x = np.asarray(_solve(self._residual(mask), *args, self.w.iterations, self.w.damping), np.float64)[:T]
        root_rot = np.asarray(K.quat_mul(K.rotvec_to_quat(jnp.asarray(x[:, 3:6])), jnp.asarray(init_rot, jnp.float32)), np.float64)
        root_rot /= np.linalg.norm(root_rot, axis=-1, keepdims=True)
        return np.concatenate([x[:, :3], root_rot, x[:, 6:]], axis=1)


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
    from motions.quality import lowest_points
    jm = joint_map or find_joint_map(src)
    rot, root_pos = resample(src, fps)
    pts, mask = source_points(src, jm, character, rot, root_pos)
    rest = K.points(K.forward_kinematics(K.Skeleton.from_model(character.model), jnp.asarray(character.rest_qpos(), jnp.float32)),
                    character.point_bodies, character.point_offsets)
    src_len = chain_length(pts, character.point_names, mask)
    if not np.isfinite(src_len) or src_len <= 1e-3:
        raise MotionImportError(src.source_file, "degenerate skeleton: zero height")
    scale = chain_length(np.asarray(rest)[None], character.point_names, mask) / src_len
    pts = pts * scale
    qpos = (solver or IKSolver(character)).solve(pts, mask)
    # Ground: lift or lower the whole clip so its low frames touch the floor (a robust low percentile of the
    # per-frame lowest point, so one noisy frame does not float the clip; jumps keep their flight).
    low = lowest_points(character, qpos).min(axis=1)
    shift = -np.percentile(low, 5)
    qpos[:, 2] += shift
    pts[..., 2] += shift
    return Retargeted(qpos, fps, pts, mask, float(scale), jm.name)
