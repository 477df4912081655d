"""How each clip stands where it begins and ends: the stance a skill must start from and leaves behind.

    python benchmarks/stances.py LIB [--clips CLIP ...]

The runtime starts in the standing clip's first frame, and one-shot skills hand over to standing at their end: a
standing clip whose stance no other clip begins or ends in must be stepped into and out of at every command. Per clip
(reference frames of the library): the feet's separation sideways and fore-aft in the root's heading frame (metres;
sideways: left foot minus right foot along the heading's left, fore-aft: along the heading) at the first and the last
frame, and the 1-s spans at rest (`motions.quality.at_rest`, what makes an imported span "stand still"). The
baseline is the standing clip of LIB (`superpadl.student.idle_clip`), marked in the table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl import endurance as E  # noqa: E402


def feet(library, clip: str, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sideways, fore-aft separation of the feet, qpos, qvel) of `clip` at `times`."""
    import jax.numpy as jnp

    i = library.index(clip)
    ref = library.sample(jnp.full(len(times), i), jnp.asarray(times, jnp.float32))
    qpos, qvel, body = (np.asarray(x, np.float64) for x in (ref.qpos, ref.qvel, ref.body_pos))
    right, left = (library.character.body_index(n) for n in ("right_foot", "left_foot"))
    yaw = np.array([E.yaw_of(q[3:7]) for q in qpos])
    d = body[:, left, :2] - body[:, right, :2]
    forward = np.stack([np.cos(yaw), np.sin(yaw)], 1)
    leftward = np.stack([-np.sin(yaw), np.cos(yaw)], 1)
    return (d * leftward).sum(1), (d * forward).sum(1), qpos, qvel


def rest_spans(qpos: np.ndarray, qvel: np.ndarray, fps: float, step_s: float = 0.25) -> list[float]:
    """Start times of the 1-s spans at rest."""
    from motions.quality import at_rest

    n = int(round(fps))
    return [k / fps for k in range(0, len(qpos) - n + 1, int(round(step_s * fps)))
            if at_rest(qpos[k:k + n], qvel[k:k + n], fps)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lib", type=Path)
    p.add_argument("--clips", nargs="*", help="these clips only (default: all)")
    args = p.parse_args()
    if not (args.lib / "manifest.json").is_file():
        sys.exit(f"stances: {args.lib}: not a motion library")
    from motions.library import MotionLibrary
    from superpadl.student import idle_clip

    library = MotionLibrary(args.lib, include_flagged=True)
    if missing := [c for c in args.clips or [] if c not in library.clip_ids]:
        sys.exit(f"stances: {missing[0]}: not a clip of {args.lib}")
    idle = idle_clip(library, library.clip_ids)
    fps = 30.0
    rows = []
    for clip in args.clips or library.clip_ids:
        duration = float(library.durations[library.index(clip)])
        times = np.arange(0.0, duration + 1e-6, 1 / fps)
        side, fore, qpos, qvel = feet(library, clip, times)
        spans = rest_spans(qpos, qvel, fps)
        rest = "-" if not spans else f"{len(spans)} from {spans[0]:.2f}-{spans[-1]:.2f} s"
        name = clip + (" (standing, the baseline)" if idle >= 0 and clip == library.clip_ids[idle] else "")
        rows.append((name, f"{duration:.2f}", f"{side[0]:+.3f} / {fore[0]:+.3f}", f"{side[-1]:+.3f} / {fore[-1]:+.3f}",
                     rest))
    print(E.table(("clip", "seconds", "feet first frame: sideways / fore-aft (m)", "last frame", "1-s spans at rest"),
                  rows))


if __name__ == "__main__":
    main()
