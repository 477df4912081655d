"""Does each skill start from where the runtime starts? Every clip's command held from the start pose, and from the
clip's own first frame, for experts and group controllers.

    python benchmarks/start_pose.py --lib runs/default/library [--experts DIR ...] [--groups DIR ...]
                                    [--seconds 15] [--seeds 1] [--clips CLIP ...] [--lead CLIP SECONDS] [--start-at CLIP]

The runtime starts in the standing clip's first frame (`superpadl.endurance.start_pose`); training starts each clip
at its own first frame (or later). A teacher that can only start from its clip's first frame cannot teach a student
what a user's first command needs. Per controller and clip: the falls while the command is held `--seconds` from
the start pose, and from the clip's first frame (the baseline, measured in the same run), through `SimLoop` as the
viewer runs it; a fall restarts the character in the same pose, so a skill that cannot start from it falls again
and again. The largest joint-angle difference between the two poses is printed too. `--seeds N` holds each command N
times, the joints of the pose perturbed by 0.02 rad after the first, and sums the falls. `--lead CLIP SECONDS` replaces the
second column: the command from the start pose after that clip's command held so long (its own falls not counted): is a skill's trouble the pose it starts in, or starting the session? `--start-at CLIP` takes that clip's first
frame for the start pose.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl import endurance as E  # noqa: E402
from superpadl.runtime import GroupController  # noqa: E402


def hold_cell(controller, pose: np.ndarray, caption: str, clip: str, seconds: float, seeds: int,
              gesture: E.GestureCheck | None = None, lead: tuple[str, float] | None = None) -> str:
    """One table cell: the falls summed over the seeds (seed 0 from the pose itself, the others with its joints
    perturbed by 0.02 rad), the earliest, the farthest the character got from where the command began before a
    fall (a stand that walks off is no stand either), and for a gesture the holds that did it."""
    records = [E.hold_from_start(E.stand_at(controller, pose), caption, clip, seconds, seed=s,
                                 init_noise=0.02 if s else 0.0, gesture=gesture, lead=lead) for s in range(seeds)]
    times = [r.falls_s for r in records]
    first = min((t[0] for t in times if t), default=None)
    done = f", done {sum(map(E.performed, records))}/{seeds}" if gesture is not None else ""
    return (f"{sum(map(len, times))}" + (f" (first at {first:.1f} s)" if first is not None else "")
            + f", {max(r.wander_m for r in records):.2f} m off" + done)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", type=Path, required=True, help="library with the controllers' clips")
    p.add_argument("--experts", nargs="*", default=[], type=Path,
                   help="expert policy folders to measure, or expert controller folders (controller.json: its experts "
                   "together, under the given --lib)")
    p.add_argument("--groups", nargs="*", default=[], type=Path, help="groups folders (groups.json) to measure")
    p.add_argument("--seconds", type=float, default=15.0, help="how long each command is held")
    p.add_argument("--seeds", type=int, default=1, help="holds per command and pose (falls are summed)")
    p.add_argument("--clips", nargs="*", help="measure these clips only (default: every clip of each controller)")
    p.add_argument("--start-at", metavar="CLIP", help="start in this clip's first frame instead of the runtime's")
    p.add_argument("--lead", nargs=2, metavar=("CLIP", "SECONDS"),
                   help="give this clip's command first and hold it so long before each measured command")
    args = p.parse_args()
    if not (args.lib / "manifest.json").is_file():
        sys.exit(f"start_pose: {args.lib}: not a motion library")
    from motions.library import MotionLibrary
    from padl import checkpoint
    from superpadl.policies import GROUPS_FORMAT, ExpertPolicy
    from superpadl.runtime import FORMAT as CONTROLLER
    from superpadl.runtime import ExpertController

    library = MotionLibrary(args.lib, include_flagged=True)
    if args.start_at and args.start_at not in library.clip_ids:
        sys.exit(f"start_pose: --start-at {args.start_at}: not a clip of {args.lib}")
    start = E.first_frame(library, args.start_at) if args.start_at else E.start_pose(library, library.clip_ids)
    _, gestures = E.command_checks(library)
    controllers = []  # (name, controller, [(clip, caption)])
    try:
        for path in args.experts:
            # an expert controller folder runs its experts together (a lead command's skill hands over to another's)
            dirs = ([path / e for e in checkpoint.read_spec(path / "controller.json", CONTROLLER, "controller folder")
                     ["experts"]] if (path / "controller.json").is_file() else [path])
            clips = [c for d in dirs for c in ExpertPolicy.load(d).clips if c in library.clip_ids]
            controllers.append((str(path), ExpertController(library, dirs, library_dir=args.lib),
                                [(c, library.captions[library.index(c)][0]) for c in clips]))
        for folder in args.groups:
            for g in checkpoint.read_spec(folder / "groups.json", GROUPS_FORMAT, "groups folder")["groups"]:
                controllers.append((f"{folder}/{g['name']}", GroupController(folder / g["name"], start, library),
                                    [(c, c) for c in g["clips"]]))
    except ValueError as e:
        sys.exit(f"start_pose: {e}")
    rows = []
    for name, controller, commands in controllers:
        text = dict(commands)  # clip -> the command that gives it
        if args.lead and args.lead[0] not in text:
            sys.exit(f"start_pose: --lead {args.lead[0]}: not a clip of {name}")
        lead = (text[args.lead[0]], float(args.lead[1])) if args.lead else None
        for clip, caption in commands:
            if args.clips and clip not in args.clips:
                continue
            own = E.first_frame(library, clip)
            other = (hold_cell(controller, start, caption, clip, args.seconds, args.seeds, gestures.get(clip), lead)
                     if lead else hold_cell(controller, own, caption, clip, args.seconds, args.seeds, gestures.get(clip)))
            rows.append((name, clip, f"{np.abs(own[7:] - start[7:]).max():.2f}",
                         hold_cell(controller, start, caption, clip, args.seconds, args.seeds, gestures.get(clip)),
                         other))
    held = f"{args.seconds:g} s" + (f" x {args.seeds} seeds" if args.seeds > 1 else "")
    print(E.table(("controller", "clip", "pose gap (rad)", f"falls in {held} from " + (f"{args.start_at}'s first frame" if args.start_at else "the start pose"),
                   f"... after {args.lead[0]} held {args.lead[1]} s" if args.lead else "from the clip's first frame"),
                  rows))

if __name__ == "__main__":
    main()
