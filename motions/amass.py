"""AMASS .npz importer (SMPL / SMPL-H / SMPL-X axis-angle poses) onto a fixed mean-shape SMPL skeleton.

The body shape (betas) is ignored: rest offsets come from the neutral SMPL mean-shape joint template, which
is what a retargeter needs for joint directions; per-subject bone lengths would need the SMPL model files.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from .quat import Y_UP_Z_FWD_TO_Z_UP, axis_angle_to_quat, quat_conj, quat_mul, quat_rotate
from .source import MotionImportError, SourceMotion, check_fps

JOINT_NAMES = ["pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
               "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
               "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hand", "right_hand"]
PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])
# Neutral SMPL, mean shape: pelvis rest position, then each joint minus its parent (metres, SMPL rest
# frame: +y up, +x the body's left, +z forward), from the J regressor applied to the template mesh.
PELVIS_REST = np.array([-0.0018, -0.2233, 0.0282])
REST_OFFSETS = np.array([
    [0.0, 0.0, 0.0], [0.0695, -0.0914, -0.0068], [-0.0677, -0.0905, -0.0043], [-0.0025, 0.1090, -0.0267],
    [0.0343, -0.3752, -0.0045], [-0.0383, -0.3826, -0.0089], [0.0055, 0.1352, 0.0011],
    [-0.0136, -0.3980, -0.0437], [0.0158, -0.3984, -0.0423], [0.0015, 0.0529, 0.0254],
    [0.0264, -0.0558, 0.1193], [-0.0254, -0.0481, 0.1233], [-0.0028, 0.2139, -0.0429],
    [0.0788, 0.1217, -0.0341], [-0.0818, 0.1188, -0.0386], [0.0052, 0.0650, 0.0513],
    [0.0910, 0.0305, -0.0089], [-0.0960, 0.0326, -0.0091], [0.2596, -0.0128, -0.0275],
    [-0.2537, -0.0133, -0.0214], [0.2492, 0.0090, -0.0012], [-0.2553, 0.0078, -0.0056],
    [0.0840, -0.0082, -0.0149], [-0.0846, -0.0061, -0.0103]])
# SMPL rest frame -> Z-up, x-forward axes: (x, y, z) -> (z, x, y). Only the local frames are re-expressed
# (AMASS's global_orient already places the body in its Z-up world, so world positions do not change).
_SMPL_TO_ZUP = Y_UP_Z_FWD_TO_Z_UP
_POSE_WIDTHS = {72: "SMPL", 156: "SMPL-H", 165: "SMPL-X"}


# Deflate expands at most ~1032:1; a member that claims more than that per stored byte is lying.
_MAX_DEFLATE_RATIO = 1100


def _member_header(path, zf: zipfile.ZipFile, key: str) -> tuple[tuple, np.dtype]:
    """(shape, dtype) of an .npz member, refused when it declares more bytes than the archive can give back."""
    info = zf.getinfo(f"{key}.npy")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise MotionImportError(path, f"'{key}' uses an unsupported zip compression (type {info.compress_type})")
    limit = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED else _MAX_DEFLATE_RATIO)
    with zf.open(info) as f:
        version = npy_format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise MotionImportError(path, f"'{key}' has an unsupported .npy version {version}")
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > min(info.file_size, limit):
        raise MotionImportError(path, f"'{key}' declares shape {shape} ({nbytes} bytes) but the archive holds "
                                      f"{min(info.file_size, limit)} bytes for it")
    return shape, dtype


def _load_arrays(path) -> dict:
    """Every array the loader needs, read with allow_pickle=False (object arrays are refused by numpy), each
    declared size checked against the archive before anything is allocated."""
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                raise MotionImportError(path, "not an .npz archive (AMASS sequences are .npz)")
        with zipfile.ZipFile(path) as zf:
            keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
            for key in ("poses", "trans"):
                if key not in keys:
                    raise MotionImportError(path, f"missing key {key!r}")
            rate_key = next((k for k in ("mocap_framerate", "mocap_frame_rate") if k in keys), None)
            if rate_key is None:
                raise MotionImportError(path, "missing frame rate (mocap_framerate / mocap_frame_rate)")
            wanted = ("poses", "trans", rate_key) + (("gender",) if "gender" in keys else ())
            headers = {k: _member_header(path, zf, k) for k in wanted}
            if math.prod(headers[rate_key][0]) != 1:
                raise MotionImportError(path, f"frame rate has shape {headers[rate_key][0]}, expected one number")

            def read(key):
                with zf.open(f"{key}.npy") as f:
                    return npy_format.read_array(f, allow_pickle=False)

            out = {"fps": read(rate_key)}
            if out["fps"].dtype.kind not in "fiu" or not np.isfinite(out["fps"]).all():
                raise MotionImportError(path, f"frame rate must be a positive number, got {out['fps']!r}")
            check_fps(path, float(out["fps"].item()))
            out.update({k: read(k) for k in ("poses", "trans")})
            out["gender"] = read("gender") if "gender" in keys else None
            return out
    except MotionImportError:
        raise
    except FileNotFoundError:
        raise MotionImportError(path, "file not found") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise MotionImportError(path, f"not a readable .npz ({type(e).__name__})") from None
    except ValueError as e:  # object arrays under allow_pickle=False, a damaged .npy header
        raise MotionImportError(path, f"unreadable array ({str(e).splitlines()[0]})") from None


def load_amass(path) -> SourceMotion:
    """Parse an AMASS sequence: 22 body joints plus the two SMPL hand joints (finger articulation dropped)."""
    a = _load_arrays(path)
    poses, trans, fps = a["poses"], a["trans"], a["fps"]
    if poses.ndim != 2 or poses.shape[1] not in _POSE_WIDTHS or poses.dtype.kind not in "fiu":
        raise MotionImportError(path, f"'poses' has shape {poses.shape}, expected (T, 72), (T, 156) or (T, 165)")
    if trans.shape != (poses.shape[0], 3) or trans.dtype.kind not in "fiu":
        raise MotionImportError(path, f"'trans' has shape {trans.shape}, expected ({poses.shape[0]}, 3)")
    if poses.shape[0] == 0:
        raise MotionImportError(path, "zero frames")
    for key, arr in (("poses", poses), ("trans", trans)):
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            raise MotionImportError(path, f"non-finite value in '{key}' at frame {bad[0][0]}")

    num_frames = poses.shape[0]
    aa = np.zeros((num_frames, 24, 3))
    aa[:, :22] = poses[:, :66].reshape(num_frames, 22, 3)
    if poses.shape[1] == 72:  # plain SMPL animates its two hand joints; SMPL-H/X put fingers there instead
        aa[:, 22:] = poses[:, 66:72].reshape(num_frames, 2, 3)
    rot = axis_angle_to_quat(aa)
    c, c_inv = _SMPL_TO_ZUP, quat_conj(_SMPL_TO_ZUP)
    local_rot = quat_mul(quat_mul(c, rot), c_inv)
    local_rot[:, 0] = quat_mul(rot[:, 0], c_inv)  # world = global_orient applied to SMPL-frame offsets
    offsets = quat_rotate(c, REST_OFFSETS)
    root_pos = trans.astype(np.float64) + PELVIS_REST  # SMPL rotates about the pelvis, then adds trans

    labels = {"name": Path(path).stem, "body_model": _POSE_WIDTHS[poses.shape[1]]}
    if a["gender"] is not None and a["gender"].size == 1:
        g = a["gender"].item()
        labels["gender"] = g.decode() if isinstance(g, bytes) else str(g)
    return SourceMotion(joint_names=list(JOINT_NAMES), parents=PARENTS.copy(), offsets=offsets,
                        local_rot=local_rot, root_pos=root_pos, fps=float(fps.item()), source_file=str(path),
                        source_format="amass", labels=labels)
