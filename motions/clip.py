"""On-disk library format: one .npz per clip plus manifest.json, written atomically."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from characters.character import Character

FORMAT = "padl-motion-library"
VERSION = 1
CLIP_ARRAYS = ("qpos", "qvel", "body_vel", "body_angvel")


class LibraryError(ValueError):
    """A library folder that is missing, foreign or damaged; the message names the path."""


def velocities(character: Character, qpos: np.ndarray, fps: float) -> dict[str, np.ndarray]:
    """Finite-difference velocities (central inside, one-sided at the ends), in MuJoCo's conventions:
    qvel with the free joint's linear velocity in world and angular velocity in the root frame; body linear
    and angular velocities in world."""
    m, d = character.model, mujoco.MjData(character.model)
    T = len(qpos)
    prev = np.maximum(np.arange(T) - 1, 0)
    nxt = np.minimum(np.arange(T) + 1, T - 1)
    dt = (nxt - prev) / fps
    qvel = np.zeros((T, m.nv))
    for t in range(T):
        if dt[t] > 0:
            mujoco.mj_differentiatePos(m, qvel[t], dt[t], qpos[prev[t]], qpos[nxt[t]])
    pos, quat = np.zeros((T, m.nbody - 1, 3)), np.zeros((T, m.nbody - 1, 4))
    for t in range(T):
        d.qpos[:] = qpos[t]
        mujoco.mj_kinematics(m, d)
        pos[t], quat[t] = d.xpos[1:], d.xquat[1:]
    safe_dt = np.where(dt > 0, dt, 1.0)[:, None, None]
    body_vel = (pos[nxt] - pos[prev]) / safe_dt
    r0 = Rotation.from_quat(quat[prev].reshape(-1, 4)[:, [1, 2, 3, 0]])
    r1 = Rotation.from_quat(quat[nxt].reshape(-1, 4)[:, [1, 2, 3, 0]])
    body_angvel = (r1 * r0.inv()).as_rotvec().reshape(pos.shape) / safe_dt
    if T == 1:
        body_vel[:] = body_angvel[:] = 0
    return {"qvel": qvel, "body_vel": body_vel, "body_angvel": body_angvel}


def save_clip(path: Path, qpos: np.ndarray, fps: float, derived: dict[str, np.ndarray]) -> None:
    np.savez(path, fps=np.float64(fps), qpos=qpos, **derived)


def load_clip(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in ("fps", *CLIP_ARRAYS)}
    except (OSError, ValueError, KeyError) as e:
        raise LibraryError(f"{path}: not a clip file ({e})") from None
    if not all(np.isfinite(v).all() for v in out.values()):
        raise LibraryError(f"{path}: non-finite values")
    return out


def read_manifest(lib: Path) -> dict:
    path = Path(lib) / "manifest.json"
    if not path.is_file():
        raise LibraryError(f"{lib}: not a motion library (no manifest.json)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LibraryError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise LibraryError(f"{path}: not a {FORMAT} v{VERSION} manifest")
    return manifest


class LibraryWriter:
    """Builds a library in a temporary sibling folder and swaps it in at commit(), so a failed import leaves
    the previous library (or nothing) behind, never a half-written one."""

    def __init__(self, out: Path, character: Character, thresholds: dict):
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))
        (self.tmp / "clips").mkdir()
        self.clips: dict[str, dict] = {}
        if (self.out / "manifest.json").exists():
            old = read_manifest(self.out)
            for entry in old["clips"]:
                shutil.copy2(self.out / entry["file"], self.tmp / entry["file"])
                self.clips[entry["id"]] = entry
        self.manifest = {"format": FORMAT, "version": VERSION, "character": character.name, "fps": None,
                         "thresholds": thresholds}

    def unique_id(self, clip_id: str, source_file: Path, span) -> str:
        """The first of clip_id, clip_id_2, ... that is free or already holds this file and span: re-running an
        import replaces its clips instead of duplicating them."""
        for n in itertools.count(1):
            cid = clip_id if n == 1 else f"{clip_id}_{n}"
            old = self.clips.get(cid)
            if old is None or (Path(old["source_file"]).resolve() == Path(source_file).resolve()
                               and old.get("labels", {}).get("span_s") == span):
                return cid

    def add(self, entry: dict, qpos: np.ndarray, fps: float, derived: dict) -> None:
        entry = {**entry, "file": f"clips/{entry['id']}.npz"}
        save_clip(self.tmp / entry["file"], qpos, fps, derived)
        self.clips[entry["id"]] = entry
        self.manifest["fps"] = fps

    def commit(self) -> None:
        self.manifest["clips"] = sorted(self.clips.values(), key=lambda e: e["id"])
        (self.tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=1))
        old = None
        if self.out.exists():
            old = self.out.with_name(self.tmp.name + ".old")
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
