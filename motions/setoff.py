"""Set-off clips: a standing pose blended into a locomotion cycle.

A locomotion clip (the DeepMimic walk, a Bandai walk take) starts mid-stride, so neither its expert nor anything
distilled from it learnt to start walking from standing: from the viewer's start pose the character shuffles
(0.7 m in 4 s, docs/experiments.md). A set-off clip is the reference for that start: `rest_s` of the standing pose,
then over `blend_s` the cycle's clock speeds up from standing still to its own pace (smoothstep weight w) while the
joints, root height and tilt ease from the standing pose into it by w; then `cycle_s` of the cycle (looped, its
root advancing each cycle as `motions.library.sample_reference` does). The root travels w times the cycle's
displacement at the warped clock: strides of w times the cycle's length cover w times its ground, so the feet do not
skate (the root at the cycle's full travel left the walk's expert 0.5 m behind its reference within 2 s: root error
170 mm against 44 mm of local pose). The standing pose is turned to the cycle's heading and put where the cycle
begins. Its captions are the cycle's: the same command, given from standing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from motions import kinematics as K
from motions.clip import LibraryError, LibraryWriter, load_clip, read_manifest, velocities

REST_S, BLEND_S, CYCLE_S = 0.3, 1.5, 3.0
SUFFIX = "_setoff"


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def loop_cycle(cycle: np.ndarray, fps: float, times: np.ndarray) -> np.ndarray:
    """qpos of a looping clip (F, 7 + J) at `times` (seconds, may exceed its duration), frames interpolated."""
    cycle = np.asarray(cycle, np.float32)
    duration = (len(cycle) - 1) / fps
    cycles = np.floor(times / duration)
    f = (times - cycles * duration) * fps
    i0 = np.clip(np.floor(f).astype(int), 0, len(cycle) - 1)
    i1 = np.minimum(i0 + 1, len(cycle) - 1)
    a = (f - i0)[:, None]
    shift = (cycle[-1, :3] - cycle[0, :3]) * np.array([1.0, 1.0, 0.0])
    pos = cycle[i0, :3] * (1 - a) + cycle[i1, :3] * a + cycles[:, None] * shift
    rot = np.asarray(K.quat_slerp(cycle[i0, 3:7], cycle[i1, 3:7], a[:, 0]))
    joints = cycle[i0, 7:] * (1 - a) + cycle[i1, 7:] * a
    return np.concatenate([pos, rot, joints], axis=1)


def blend_set_off(rest: np.ndarray, cycle: np.ndarray, fps: float, rest_s: float = REST_S, blend_s: float = BLEND_S,
                  cycle_s: float = CYCLE_S) -> np.ndarray:
    """The set-off clip's frames (T, 7 + J) at `fps`, from a standing pose `rest` (7 + J,) into the looping `cycle`."""
    rest, cycle = np.asarray(rest, np.float32), np.asarray(cycle, np.float32)  # (as JAX computes)
    t = np.arange(int(round((rest_s + blend_s + cycle_s) * fps)) + 1) / fps
    w = _smoothstep((t - rest_s) / blend_s)
    clock = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]))]) / fps  # the cycle's time, at pace w
    walk = loop_cycle(cycle, fps, clock)
    yaw = float(K.heading_yaw(cycle[0, 3:7]) - K.heading_yaw(rest[3:7]))
    turn = np.asarray(K.axis_angle_to_quat(np.array([0.0, 0.0, 1.0]), np.array(yaw)))
    rest_rot = np.asarray(K.quat_normalize(K.quat_mul(turn, rest[3:7])))
    out = np.empty_like(walk)
    step = np.diff(walk[:, :2], axis=0, prepend=walk[:1, :2])  # the cycle's travel per frame at the warped clock
    out[:, :2] = cycle[0, :2] + np.cumsum(w[:, None] * step, axis=0)
    out[:, 2] = (1 - w) * rest[2] + w * walk[:, 2]
    out[:, 3:7] = np.asarray(K.quat_slerp(np.broadcast_to(rest_rot, (len(t), 4)), walk[:, 3:7], w))
    out[:, 7:] = (1 - w[:, None]) * rest[7:] + w[:, None] * walk[:, 7:]
    return out


def add_set_offs(library: Path, cycles: list[str], rest: str) -> list[str]:
    """Add a set-off clip `<cycle>_setoff` for each looping clip of `cycles` to the library, from the first frame of
    clip `rest` (the standing skill); all-or-nothing. Returns the new clip ids."""
    from characters.character import Character
    from motions.importer import measure
    from motions.quality import Thresholds, assess
    from motions.retarget import character_points

    library = Path(library)
    manifest = read_manifest(library)
    entries = {e["id"]: e for e in manifest["clips"]}
    for name in [*cycles, rest]:
        if name not in entries:
            raise LibraryError(f"{library}: no clip {name!r} to make a set-off clip from")
    for name in cycles:
        if not entries[name].get("loop"):
            raise LibraryError(f"{library}: clip {name!r} does not loop; a set-off clip blends into a cycle")
    character = Character()
    stand = load_clip(library / entries[rest]["file"])["qpos"][0]
    writer = LibraryWriter(library, character, manifest.get("thresholds") or {})
    added = []
    try:
        for name in cycles:
            src, clip = entries[name], load_clip(library / entries[name]["file"])
            fps = float(clip["fps"])
            qpos = blend_set_off(stand, clip["qpos"], fps)
            qa = measure(character, qpos, fps, character_points(character, qpos))
            reasons = assess(qa, Thresholds(**manifest.get("thresholds") or {}))
            entry = {**{k: v for k, v in src.items() if k not in ("file", "qa", "flagged", "flag_reasons")},
                     "id": name + SUFFIX, "loop": False, "num_frames": len(qpos), "duration_s": (len(qpos) - 1) / fps,
                     "labels": {**src.get("labels", {}), "set_off": {"cycle": name, "rest": rest, "rest_s": REST_S,
                                                                     "blend_s": BLEND_S}},
                     "qa": qa, "flagged": bool(reasons), "flag_reasons": reasons}
            writer.add(entry, qpos, fps, velocities(character, qpos, fps))
            added.append(entry["id"])
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return added


def cycle_of(clip: str, clips) -> str | None:
    """The cycle clip of the set-off clip `clip` when that cycle is among `clips`, else None."""
    if clip.endswith(SUFFIX) and clip[:-len(SUFFIX)] in clips:
        return clip[:-len(SUFFIX)]
    return None
