"""Which stage can set off from standing: each locomotion clip's expert(s) and global policies, from the start pose.

    python benchmarks/set_off.py --lib runs/default/library [--experts [NAME=]DIR ...] [--groups DIR ...]
                                 [--policies DIR ...] [--seconds 10] [--seeds 3]

A global policy can only learn to start walking from standing if its teachers can (DAgger labels the student's
states with its group controllers' actions, and those learnt from the experts). This measures the experts (and
group controllers, `--groups`: a groups folder, each group's controller given its clip's one-hot slot) the way
`benchmarks/endurance.py` measures a global policy: the character stands in the start pose (the first frame of the
library's standing clip, where the runtime starts), the clip's caption is given and held `--seconds`, through
`superpadl.host.SimLoop`. Per controller and clip: metres along the clip's direction of travel 4 s after the
command (the bar is `endurance.SET_OFF_BAR_M`, upright), and the falls while it is held. The baseline is each clip's
shipped expert (`models/teachers/<clip>`), measured in the same run; the seeds differ by a small noise on the start
pose's joints.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl import endurance as E  # noqa: E402
from superpadl.runtime import GroupController, PolicyController  # noqa: E402

INIT_NOISE = 0.02  # rad of joint-angle noise on the start pose: the seeds differ by it
TEACHERS = Path(__file__).resolve().parents[1] / "models" / "teachers"


def expert_controller(library, lib_dir: Path, expert: Path, start: np.ndarray):
    from superpadl.runtime import ExpertController

    return E.stand_at(ExpertController(library, [expert], library_dir=lib_dir), start)  # where a user starts


def measure(controller, clip: str, caption: str, seconds: float, direction: np.ndarray, seeds: int) -> list:
    return [E.hold_from_start(controller, caption, clip, seconds, direction, seed=s, init_noise=INIT_NOISE)
            for s in range(seeds)]


def cell(records: list[E.CommandRecord]) -> str:
    moved = [r.set_off_m for r in records]
    first = [r.falls_s[0] for r in records if r.falls_s]
    at = f" (first at {min(first):.1f}-{max(first):.1f} s)" if first else ""
    return f"{np.median(moved):.2f} m ({min(moved):.2f}-{max(moved):.2f}), fell {len(first)}/{len(records)}{at}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", type=Path, required=True, help="library of the clips (its standing clip: the start pose)")
    p.add_argument("--experts", nargs="*", default=[], metavar="[NAME=]DIR", help="expert policies to measure")
    p.add_argument("--groups", nargs="*", default=[], type=Path, help="groups folders (groups.json) to measure")
    p.add_argument("--policies", nargs="*", default=[], type=Path, help="global policy folders to measure")
    p.add_argument("--seconds", type=float, default=10.0, help="how long each caption is held")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    if not (args.lib / "manifest.json").is_file():
        sys.exit(f"set_off: {args.lib}: not a motion library")
    if args.seconds < E.SET_OFF_S:
        sys.exit(f"set_off: --seconds must be at least {E.SET_OFF_S:g} (the set-off is judged then)")
    from motions.library import MotionLibrary
    from superpadl.policies import GROUPS_FORMAT, ExpertPolicy
    from padl import checkpoint

    directions = E.locomotion_directions(args.lib)
    if not directions:
        sys.exit(f"set_off: {args.lib}: no locomotion clip")
    library = MotionLibrary(args.lib, include_flagged=True)
    start = E.start_pose(library, list(directions))
    rows = []  # (controller, clip, caption, cell)
    named = [("shipped " + c, TEACHERS / c) for c in directions if (TEACHERS / c / "policy.json").is_file()]
    for spec in args.experts:
        name, _, path = spec.rpartition("=")
        named.append((name or path, Path(path)))
    for name, path in named:
        try:
            clips = [c for c in ExpertPolicy.load(path).clips if c in directions]
        except ValueError as e:
            sys.exit(f"set_off: {e}")
        if not clips:
            sys.exit(f"set_off: {path}: none of its clips is a locomotion clip of {args.lib}")
        c = expert_controller(library, args.lib, path, start)
        for clip in clips:
            caption = library.captions[library.index(clip)][0]
            rows.append((name, clip, caption, cell(measure(c, clip, caption, args.seconds, directions[clip],
                                                           args.seeds))))
    for folder in args.groups:
        try:
            groups = checkpoint.read_spec(folder / "groups.json", GROUPS_FORMAT, "groups folder")["groups"]
        except ValueError as e:
            sys.exit(f"set_off: {e}")
        for g in groups:
            c = GroupController(folder / g["name"], start) if set(g["clips"]) & set(directions) else None
            for clip in [k for k in g["clips"] if k in directions]:
                rows.append((f"{folder}/{g['name']}", clip, clip, cell(measure(c, clip, clip, args.seconds,
                                                                                directions[clip], args.seeds))))
    for path in args.policies:
        c = PolicyController(path)
        for clip in directions:
            if clip in c.caption_clips:
                caption = c.captions[c.caption_clips.index(clip)]
                rows.append((str(path), clip, caption, cell(measure(c, clip, caption, args.seconds, directions[clip],
                                                                    args.seeds))))
    print(E.table(("controller", "clip", "caption", f"set-off in {E.SET_OFF_S:g} s (median, range), falls in "
                   f"{args.seconds:g} s"), rows))


if __name__ == "__main__":
    main()
