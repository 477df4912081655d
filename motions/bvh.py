"""BVH importer: any hierarchy and channel layout; Y-up file units in, Z-up metres out."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fk import forward_kinematics
from .quat import Y_UP_Z_FWD_TO_Z_UP, change_basis, quat_from_euler, quat_mul, quat_rotate
from .source import MotionImportError, SourceMotion, check_fps

CMU_UNIT = 0.056444  # metres per CMU BVH unit (the CMU release's inch-based scale)
_CMU_NAMES = {"LHipJoint", "RHipJoint", "LowerBack", "LeftUpLeg", "RightUpLeg"}
_CHANNELS = {"xposition": ("pos", 0), "yposition": ("pos", 1), "zposition": ("pos", 2),
             "xrotation": ("rot", "X"), "yrotation": ("rot", "Y"), "zrotation": ("rot", "Z")}
_BANDAI_NAME = re.compile(r"^dataset-1_(?P<content>[^_]+)_(?P<style>[^_]+)_(?P<take>\d+)$")
_CMU_CLIP = re.compile(r"^\d+_\d+$")
_COUNT = re.compile(r"[0-9]{1,12}")  # ASCII digits only ('²'.isdigit() is true), and no 4300-digit int()


@dataclass
class _Joint:
    name: str
    parent: int
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    channels: list = field(default_factory=list)


def is_cmu_skeleton(names) -> bool:
    """The CMU release's joint names are distinctive; their presence fixes both units and the T-pose frame."""
    return _CMU_NAMES <= set(names)


def read_text(path) -> str:
    """File text, with a one-line MotionImportError for the usual file-system failures."""
    try:
        return Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise MotionImportError(path, "file not found") from None
    except OSError as e:
        raise MotionImportError(path, f"cannot read file ({e.strerror})") from None


def snap_fps(fps: float) -> float:
    """Frame times are printed with few digits (0.0333333, .008333); snap to the integer rate they round."""
    r = round(fps)
    return float(r) if r > 0 and abs(fps - r) < 1e-3 * fps else float(fps)


def _number(path, tok, ln):
    try:
        v = float(tok)
    except ValueError:
        raise MotionImportError(path, f"line {ln + 1}: unparsable number {tok!r}") from None
    if not np.isfinite(v):
        raise MotionImportError(path, f"line {ln + 1}: non-finite value {tok!r}")
    return v


def _parse_hierarchy(path, lines, start, end) -> list[_Joint]:
    """Joints in file (depth-first) order, so parents precede children; End Sites become '<parent>_end'."""
    toks = [(t, ln) for ln in range(start, end) for t in lines[ln].split()]
    joints, stack, pending, i = [], [], None, 0

    def take(k, ln):
        if i + k > len(toks):
            raise MotionImportError(path, f"line {ln + 1}: HIERARCHY ends in the middle of a statement")
        return toks[i:i + k]

    while i < len(toks):
        tok, ln = toks[i]
        key = tok.upper()
        if key in ("ROOT", "JOINT", "END"):
            if key == "ROOT" and joints:
                raise MotionImportError(path, f"line {ln + 1}: more than one ROOT (only one skeleton per file)")
            if key != "ROOT" and not stack:
                raise MotionImportError(path, f"line {ln + 1}: {tok} outside the ROOT joint")
            name = take(2, ln)[1][0]
            if key == "END":
                base = joints[stack[-1]].name + "_end"
                taken = {j.name for j in joints}
                name, n = base, 1
                while name in taken:
                    name, n = f"{base}{n}", n + 1
            joints.append(_Joint(name, stack[-1] if stack else -1))
            pending, i = len(joints) - 1, i + 2
        elif tok == "{":
            if pending is None:
                raise MotionImportError(path, f"line {ln + 1}: '{{' without a joint")
            stack.append(pending)
            pending, i = None, i + 1
        elif tok == "}":
            if not stack:
                raise MotionImportError(path, f"line {ln + 1}: unmatched '}}'")
            stack.pop()
            i += 1
        elif key == "OFFSET" and stack:
            vals = take(4, ln)[1:]
            joints[stack[-1]].offset = np.array([_number(path, t, l) for t, l in vals])
            i += 4
        elif key == "CHANNELS" and stack:
            count_tok = take(2, ln)[1][0]
            if not _COUNT.fullmatch(count_tok):
                raise MotionImportError(path, f"line {ln + 1}: unparsable channel count {count_tok[:20]!r}")
            names = [t for t, _ in take(2 + int(count_tok), ln)[2:]]
            for name in names:
                if name.lower() not in _CHANNELS:
                    raise MotionImportError(path, f"line {ln + 1}: unknown channel name {name!r}")
            joints[stack[-1]].channels = names
            i += 2 + int(count_tok)
        else:
            raise MotionImportError(path, f"line {ln + 1}: unexpected {tok!r} in HIERARCHY")
    if not joints:
        raise MotionImportError(path, "HIERARCHY has no ROOT joint")
    if stack:
        raise MotionImportError(path, "HIERARCHY is not closed (missing '}')")
    return joints


def _parse_motion(path, lines, start, num_channels, labels):
    """(frames (T, C) float array, frame time); every malformed row is reported with its line number."""
    rows = [(ln, lines[ln]) for ln in range(start, len(lines)) if lines[ln].strip()]
    m = re.match(r"^\s*Frames:\s*(\S+)\s*$", rows[0][1], re.I) if rows else None
    if not m:
        raise MotionImportError(path, "MOTION section lacks a 'Frames:' line")
    if not m.group(1).isascii() or not m.group(1).isdigit():
        raise MotionImportError(path, f"line {rows[0][0] + 1}: unparsable frame count {m.group(1)[:20]!r}")
    declared = m.group(1) if len(m.group(1)) < 19 else m.group(1)[:18] + "..."
    num_frames = int(m.group(1)) if len(m.group(1)) < 19 else 10 ** 18  # more rows than any file holds
    if num_frames == 0:
        raise MotionImportError(path, "zero frames")
    m = re.match(r"^\s*Frame\s+Time:\s*(\S+)\s*$", rows[1][1], re.I) if len(rows) > 1 else None
    if not m:
        raise MotionImportError(path, "MOTION section lacks a 'Frame Time:' line")
    frame_time = _number(path, m.group(1), rows[1][0])
    if frame_time <= 0:
        raise MotionImportError(path, f"Frame Time must be positive, got {frame_time}")
    check_fps(path, 1.0 / frame_time)
    rows = rows[2:]
    if len(rows) > num_frames:
        raise MotionImportError(path, f"{len(rows)} frame rows but 'Frames:' says {num_frames}")
    data = np.empty((len(rows), num_channels))  # sized by the rows present, never by the header
    for k, (ln, line) in enumerate(rows):
        vals = line.split()
        if len(vals) != num_channels:
            if k == len(rows) - 1 and len(vals) < num_channels:
                raise MotionImportError(path, f"truncated: last frame row (frame {k}, line {ln + 1}) has "
                                              f"{len(vals)} of {num_channels} values")
            raise MotionImportError(path, f"frame {k} (line {ln + 1}): expected {num_channels} channel "
                                          f"values, got {len(vals)}")
        try:
            data[k] = np.array(vals, dtype=np.float64)
        except ValueError:
            bad = next(v for v in vals if not _is_float(v))
            raise MotionImportError(path, f"frame {k} (line {ln + 1}): unparsable number {bad!r}") from None
    if len(rows) < num_frames:
        raise MotionImportError(path, f"truncated: 'Frames:' says {declared} but the file has {len(rows)} "
                                      f"frame rows")
    bad = np.argwhere(~np.isfinite(data))
    if len(bad):
        k, c = bad[0]
        raise MotionImportError(path, f"non-finite value {data[k, c]} in frame {k} (line {rows[k][0] + 1}), "
                                      f"channel {labels[c]}")
    return data, frame_time


def _is_float(s) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _channels_to_pose(joints, data):
    """Per-frame local translations (T,J,3) (offset unless position channels override it) and rotations."""
    num_frames, num_joints = data.shape[0], len(joints)
    pos = np.broadcast_to(np.stack([j.offset for j in joints]), (num_frames, num_joints, 3)).copy()
    rot = np.zeros((num_frames, num_joints, 4))
    rot[..., 0] = 1.0
    translated = np.zeros(num_joints, dtype=bool)
    col = 0
    for j, joint in enumerate(joints):
        axes, cols = "", []
        for ch in joint.channels:
            kind, axis = _CHANNELS[ch.lower()]
            if kind == "pos":
                pos[:, j, axis] = data[:, col]
                translated[j] = True
            else:
                axes, cols = axes + axis, cols + [col]
            col += 1
        if axes:
            rot[:, j] = quat_from_euler(data[:, cols], axes)
    return pos, rot, translated


def _fold_root(path, names, parents, pos, rot, translated):
    """Only the root may translate in a SourceMotion. Files that animate the root's only child (Bandai: a
    floor-level joint_Root with the moving Hips under it) are made exact by merging the root into that child."""
    scale = 1.0 + np.abs(pos[0]).max()
    moving = [j for j in range(1, len(names)) if translated[j] and np.ptp(pos[:, j], axis=0).max() > 1e-6 * scale]
    if not moving:
        return names, parents, pos, rot, None
    children = [j for j in range(len(names)) if parents[j] == 0]
    if moving != [1] or children != [1]:
        raise MotionImportError(path, f"joint {names[moving[0]]!r} has animated translation; only the root "
                                      f"(or the root's only child) may translate")
    root_pos = pos[:, 0] + quat_rotate(rot[:, 0], pos[:, 1])
    root_rot = quat_mul(rot[:, 0], rot[:, 1])
    pos, rot = pos[:, 1:].copy(), rot[:, 1:].copy()
    pos[:, 0], rot[:, 0] = root_pos, root_rot
    parents = np.array([-1] + [p - 1 for p in parents[2:]])
    return names[1:], parents, pos, rot, names[0]


def _unit_scale(path, names, parents, pos, rot) -> float:
    """CMU names -> CMU units; otherwise guess m / cm / mm from the frame-0 bounding-box diagonal of the body."""
    if is_cmu_skeleton(names):
        return CMU_UNIT
    world, _ = forward_kinematics(parents, pos[0], rot[:1], pos[:1, 0])
    diag = float(np.linalg.norm(np.ptp(world[0], axis=0)))
    for lo, hi, scale in ((0.3, 3.0, 1.0), (30.0, 300.0, 0.01), (300.0, 3000.0, 0.001)):
        if lo <= diag < hi:
            return scale
    raise MotionImportError(path, f"cannot infer the length unit (frame-0 body size {diag:.3g}); pass unit_scale")


def _labels(stem: str, cmu: bool) -> dict:
    m = _BANDAI_NAME.match(stem)
    if m:
        return {"content": m["content"], "style": m["style"], "take": m["take"]}
    if cmu and _CMU_CLIP.match(stem):
        return {"cmu_clip_id": stem}
    return {"name": stem}  # any other BVH (e.g. `superpadl render --save X.bvh`): captioned from its file name


def load_bvh(path, unit_scale: float | None = None) -> SourceMotion:
    """Parse a BVH file into a Z-up, metre SourceMotion (CMU files lose their frame-0 T-pose)."""
    lines = read_text(path).splitlines()
    heads = [i for i, line in enumerate(lines) if line.strip().upper() == "HIERARCHY"]
    motions = [i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"]
    if not heads:
        raise MotionImportError(path, "no HIERARCHY section (not a BVH file?)")
    if not motions or motions[0] < heads[0]:
        raise MotionImportError(path, "no MOTION section after HIERARCHY")
    joints = _parse_hierarchy(path, lines, heads[0] + 1, motions[0])
    labels = [f"{j.name} {c}" for j in joints for c in j.channels]
    if not labels:
        raise MotionImportError(path, "no joint has any channel")
    data, frame_time = _parse_motion(path, lines, motions[0] + 1, len(labels), labels)

    names = [j.name for j in joints]
    parents = np.array([j.parent for j in joints])
    pos, rot, translated = _channels_to_pose(joints, data)
    names, parents, pos, rot, folded = _fold_root(path, names, parents, pos, rot, translated)
    scale = unit_scale if unit_scale is not None else _unit_scale(path, names, parents, pos, rot)

    cmu = is_cmu_skeleton(names)
    out_labels = _labels(Path(path).stem, cmu)
    if folded:
        out_labels["folded_root"] = folded
    if cmu and len(rot) > 1:
        pos, rot = pos[1:], rot[1:]
        out_labels["dropped_tpose_frame"] = True
    offsets = pos[0] * scale
    offsets[0] = 0.0  # the root's placement lives in root_pos
    # BVH characters conventionally face +z: (x, y, z) -> (z, x, y) makes them face +x, Z up
    local_rot, offsets, root_pos = change_basis(rot, offsets, pos[:, 0] * scale, Y_UP_Z_FWD_TO_Z_UP)
    return SourceMotion(joint_names=names, parents=parents, offsets=offsets, local_rot=local_rot,
                        root_pos=root_pos, fps=snap_fps(1.0 / frame_time), source_file=str(path),
                        source_format="bvh", labels=out_labels)
