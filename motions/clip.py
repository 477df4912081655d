"""On-disk library format: one .npz per clip plus manifest.json, written atomically."""
from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from characters.character import Character
from motions import tempfiles

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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise LibraryError(f"{path}: not a {FORMAT} v{VERSION} manifest")
    clips = manifest.get("clips")
    if not isinstance(clips, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str)
                                              and isinstance(e.get("file"), str) for e in clips):
        raise LibraryError(f"{path}: 'clips' must be a list of entries with an 'id' and a 'file'")
    return manifest


def library_target(out: Path) -> Path:
    """The folder an import may (re)write: absent, empty, or a motion library (a symlink is followed). Anything
    else belongs to the user and is refused."""
    out = Path(out)
    if out.is_symlink():
        out = out.resolve()
    if not out.exists():
        above = next((p for p in out.parents if p.exists()), None)
        if above is not None and not above.is_dir():
            raise LibraryError(f"{above}: is a file, so {out} cannot be created there")
        return out
    if not out.is_dir():
        raise LibraryError(f"{out}: exists and is not a folder; refusing to replace it (choose another --out)")
    if (out / "manifest.json").exists():
        read_manifest(out)  # a foreign or damaged manifest is refused, not overwritten
    elif any(out.iterdir()):
        raise LibraryError(f"{out}: folder holds other files and is not a motion library (no manifest.json); "
                           f"refusing to replace it (choose another --out)")
    return out


_TMP_TAG = "motions-import"


def sweep_stale(out: Path) -> None:
    """Clean up after imports into out that were killed: drop their temporary folders and, if one died between
    moving the previous library aside and moving the new one in, put the previous library back."""
    out = Path(out).resolve() if Path(out).is_symlink() else Path(out)
    if not out.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(out.name)}\.{_TMP_TAG}-(\d+)-[0-9a-f]+(\.old)?")
    for p in sorted(out.parent.glob(f".{out.name}.{_TMP_TAG}-*"), key=lambda p: not p.name.endswith(".old")):
        m = pattern.fullmatch(p.name)
        if not m or not p.is_dir() or tempfiles.alive(int(m[1])):
            continue
        if m[2] and not out.exists():
            os.replace(p, out)
        else:
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the block ends, so the two renames of a commit are never split by them."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _link_or_copy(src, dst):
    """Hard links make carrying a big library over cheap; nothing writes into a carried file (add() unlinks a
    clip before saving it), so the previous library stays as it was until the commit."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class LibraryWriter:
    """Builds a library in a temporary sibling folder and swaps it in at commit(), so a failed import leaves
    the previous library (or nothing) behind, never a half-written one. Everything else in a previous library
    (notes, the caption-embedding cache, which checks itself against the captions) is carried over, and so is
    the folder's mode."""

    def __init__(self, out: Path, character: Character, thresholds: dict):
        self.out = library_target(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(self.out)
        self.tmp = self.out.with_name(f".{self.out.name}.{_TMP_TAG}-{os.getpid()}-{secrets.token_hex(4)}")
        self.clips: dict[str, dict] = {}
        try:
            self.tmp.mkdir()  # the umask's mode, as any new folder
            if self.out.is_dir():
                old = read_manifest(self.out)["clips"] if (self.out / "manifest.json").exists() else []
                for entry in old:
                    if not (self.out / entry["file"]).is_file():
                        raise LibraryError(f"{self.out / entry['file']}: missing (the library is damaged)")
                    self.clips[entry["id"]] = entry
                shutil.copytree(self.out, self.tmp, symlinks=True, dirs_exist_ok=True, copy_function=_link_or_copy,
                                ignore=lambda d, names: ["manifest.json"] if Path(d) == self.out else [])
            (self.tmp / "clips").mkdir(exist_ok=True)
        except BaseException:
            self.abort()
            raise
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
        (self.tmp / entry["file"]).unlink(missing_ok=True)  # it may be a link to the previous library's file
        save_clip(self.tmp / entry["file"], qpos, fps, derived)
        self.clips[entry["id"]] = entry
        self.manifest["fps"] = fps

    def commit(self) -> None:
        self.manifest["clips"] = sorted(self.clips.values(), key=lambda e: e["id"])
        (self.tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=1))
        library_target(self.out)  # still ours to replace
        old = None
        with _signals_held():  # a SIGKILL in between is undone by the next import's sweep_stale
            if self.out.exists():
                old = self.out.with_name(self.tmp.name + ".old")
                os.replace(self.out, old)
            os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
