"""The batched motion library: reference states for many (clip, time) queries at once, in JAX.

All clips' frames are concatenated into flat arrays (as in ASE's MotionLib) so a query is a gather plus
interpolation plus forward kinematics: one jit-compatible pure function of arrays, `sample_reference`.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from characters.character import Character
from motions import kinematics as K
from motions.clip import LibraryError, load_clip, read_manifest


class MotionData(NamedTuple):
    qpos: jnp.ndarray  # (F, 7 + J) all clips' frames
    qvel: jnp.ndarray  # (F, 6 + J)
    body_vel: jnp.ndarray  # (F, B, 3)
    body_angvel: jnp.ndarray  # (F, B, 3)
    start: jnp.ndarray  # (C,) first frame of each clip
    length: jnp.ndarray  # (C,) frames per clip
    loop: jnp.ndarray  # (C,) bool: time wraps (root advances by the clip's displacement each cycle)
    fps: float


class RefState(NamedTuple):
    qpos: jnp.ndarray  # (N, 7 + J)
    qvel: jnp.ndarray  # (N, 6 + J)
    body_pos: jnp.ndarray  # (N, B, 3)
    body_rot: jnp.ndarray  # (N, B, 4)
    body_vel: jnp.ndarray  # (N, B, 3)
    body_angvel: jnp.ndarray  # (N, B, 3)

    @property
    def root_pos(self):
        return self.qpos[..., :3]

    @property
    def root_rot(self):
        return self.qpos[..., 3:7]


def sample_reference(data: MotionData, skel: K.Skeleton, clip, time) -> RefState:
    """Reference state of clip (N,) int at time (N,) seconds; non-looping clips hold their last frame, still (zero
    velocities) once it is past."""
    length = data.length[clip]
    duration = (length - 1) / data.fps
    loop = data.loop[clip]
    cycles = jnp.where(loop & (duration > 0), jnp.floor(time / jnp.where(duration > 0, duration, 1.0)), 0.0)
    t = jnp.clip(time - cycles * duration, 0.0, duration)
    f = t * data.fps
    i0 = jnp.clip(jnp.floor(f).astype(jnp.int32), 0, length - 1)
    i1 = jnp.minimum(i0 + 1, length - 1)
    a = (f - i0)[:, None]
    g0, g1 = data.start[clip] + i0, data.start[clip] + i1
    q0, q1 = data.qpos[g0], data.qpos[g1]
    first, last = data.qpos[data.start[clip]], data.qpos[data.start[clip] + length - 1]
    shift = (last[:, :3] - first[:, :3]).at[:, 2].set(0.0) * cycles[:, None]
    root_pos = q0[:, :3] * (1 - a) + q1[:, :3] * a + shift
    root_rot = K.quat_slerp(q0[:, 3:7], q1[:, 3:7], a[:, 0])
    joints = q0[:, 7:] * (1 - a) + q1[:, 7:] * a
    qpos = jnp.concatenate([root_pos, root_rot, joints], axis=-1)
    moving = (loop | (time <= duration)).astype(jnp.float32)

    def lerp(x):  # velocities
        w = a.reshape(a.shape + (1,) * (x.ndim - 2))
        return (x[g0] * (1 - w) + x[g1] * w) * moving.reshape((-1,) + (1,) * (x.ndim - 1))

    body = K.forward_kinematics(skel, qpos)
    return RefState(qpos, lerp(data.qvel), body.pos, body.rot, lerp(data.body_vel), lerp(data.body_angvel))


class MotionLibrary:
    """Loads a library folder (by default only clips that passed quality checks)."""

    def __init__(self, path: str | Path, clips: list[str] | None = None, include_flagged: bool = False,
                 character: Character | None = None):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.character = character or Character()
        if self.manifest["character"] != self.character.name:
            raise LibraryError(f"{self.path}: made for character {self.manifest['character']!r}, not {self.character.name!r}")
        entries = {e["id"]: e for e in self.manifest["clips"]}
        if clips is None:
            chosen = [e for e in self.manifest["clips"] if include_flagged or not e["flagged"]]
        else:
            missing = [c for c in clips if c not in entries]
            if missing:
                raise LibraryError(f"{self.path}: no clip named {missing[0]!r}")
            chosen = [entries[c] for c in clips]
        if not chosen:
            raise LibraryError(f"{self.path}: no clips to load")
        self.entries = chosen
        arrays = [load_clip(self.path / e["file"]) for e in chosen]
        lengths = np.array([len(a["qpos"]) for a in arrays])
        self.skeleton = K.Skeleton.from_model(self.character.model)
        cat = lambda k: jnp.asarray(np.concatenate([a[k] for a in arrays]), jnp.float32)
        self.data = MotionData(
            qpos=cat("qpos"), qvel=cat("qvel"), body_vel=cat("body_vel"), body_angvel=cat("body_angvel"),
            start=jnp.asarray(np.concatenate([[0], np.cumsum(lengths)[:-1]]), jnp.int32),
            length=jnp.asarray(lengths, jnp.int32),
            loop=jnp.asarray([bool(e.get("loop", False)) for e in chosen]),
            fps=float(self.manifest["fps"]),
        )
        self._sample = jax.jit(lambda data, clip, time: sample_reference(data, self.skeleton, clip, time))
        self._bodies = jax.jit(lambda qpos: K.forward_kinematics(self.skeleton, qpos))

    @property
    def clip_ids(self) -> list[str]:
        return [e["id"] for e in self.entries]

    @property
    def captions(self) -> list[list[str]]:
        return [e["captions"] for e in self.entries]

    @property
    def num_clips(self) -> int:
        return len(self.entries)

    @property
    def fps(self) -> float:
        return self.data.fps

    @property
    def durations(self) -> np.ndarray:
        return (np.asarray(self.data.length) - 1) / self.fps

    def index(self, clip_id: str) -> int:
        return self.clip_ids.index(clip_id)

    def sample(self, clip, time) -> RefState:
        return self._sample(self.data, jnp.asarray(clip, jnp.int32), jnp.asarray(time, jnp.float32))

    def bodies(self, qpos) -> K.BodyState:
        """Body positions and rotations of poses (..., 35) of this library's character (compiled once per shape,
        where eager JAX would compile each of forward kinematics' operations)."""
        return self._bodies(jnp.asarray(qpos, jnp.float32))
