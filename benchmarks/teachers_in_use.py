"""Can the teachers serve real use? The experts of a set of clips, run as the expert-level runtime runs them
(`superpadl.runtime.ExpertController`: a command picks the clip of the nearest caption, whose expert tracks it from
wherever the character stands; a one-shot clip that ends hands over to the standing clip's expert once the stand its
expert practised past the end is over), through the real-use chain of `benchmarks/endurance.py`: random captions
held 2-20 s from the start pose.

    python benchmarks/teachers_in_use.py --lib runs/default/library --experts DIR [DIR ...]
                                         [--baseline DIR ...] [--idle-after S|hold ...] [--hold-anchored]
                                         [--minutes 10] [--seeds 2]

A student learns what its teachers do (DAgger labels its states with their actions), so teachers that fall in this
chain cannot teach a global policy that does not. The baseline is `models/teachers` (the shipped model's), measured in
the same run; an expert of a clip missing from `--experts` is taken from the baseline set (but for its standing
clip's when `--experts` hold one: the runtime starts in it and hands one-shot skills to it). `--idle-after` measures the
experts once per handover time instead (seconds past a one-shot clip's end before the standing expert takes over, or
`hold`: the stand its expert practised, the runtime's default), the first value being the baseline.
`--hold-anchored` measures them with the reference held past a one-shot clip's end anchored where the command began
(the baseline) and following the character (the runtime's default, `ExpertController.hold_follow`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl import endurance as E  # noqa: E402

TEACHERS = Path(__file__).resolve().parents[1] / "models" / "teachers"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", type=Path, required=True, help="library of the experts' clips")
    p.add_argument("--experts", nargs="+", type=Path, required=True, help="expert policy folders to measure")
    p.add_argument("--baseline", nargs="*", type=Path, help="expert folders (default: models/teachers/*)")
    p.add_argument("--minutes", type=float, default=10.0, help="simulated minutes per seed")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--idle-after", nargs="+", metavar="S",
                   help="measure the experts once per handover time (seconds past a one-shot clip's end, or 'hold')")
    p.add_argument("--hold-anchored", action="store_true",
                   help="measure the experts with the held last frame anchored where the command began, and following")
    args = p.parse_args()
    try:
        idle_after = [None if v == "hold" else float(v) for v in args.idle_after or []]
    except ValueError:
        sys.exit(f"teachers_in_use: --idle-after takes seconds or 'hold', not {args.idle_after}")
    if not (args.lib / "manifest.json").is_file():
        sys.exit(f"teachers_in_use: {args.lib}: not a motion library")
    from motions.captions import STANDING_CAPTIONS
    from motions.library import MotionLibrary
    from superpadl.policies import ExpertPolicy
    from superpadl.runtime import ExpertController

    library = MotionLibrary(args.lib, include_flagged=True)
    baseline = args.baseline or sorted(d for d in TEACHERS.iterdir() if (d / "policy.json").is_file())
    try:
        covered = {c for d in args.experts for c in ExpertPolicy.load(d).clips}
        # one standing skill per set: experts with a standing clip of their own replace the baseline's
        standing = {c for c in library.clip_ids if set(library.captions[library.index(c)]) & set(STANDING_CAPTIONS)}
        taken = covered | (standing if covered & standing else set())
        filled = [d for d in baseline if not set(ExpertPolicy.load(d).clips) & taken]
        experts = list(args.experts) + filled
        if idle_after:
            sets = {f"experts, idle after {v}": experts for v in args.idle_after}
            options = {name: dict(idle_after_s=v) for name, v in zip(sets, idle_after)}
        elif args.hold_anchored:
            sets = {"experts, hold anchored": experts, "experts, hold follows": experts}
            options = {name: dict(hold_follow=name.endswith("follows")) for name in sets}
        else:
            sets, options = {"experts": experts, "baseline": baseline}, {}
        controllers = {name: ExpertController(library, dirs, library_dir=args.lib, **options.get(name, {}))
                       for name, dirs in sets.items()}
    except ValueError as e:
        sys.exit(f"teachers_in_use: {e}")
    directions, gestures = E.command_checks(library)
    for name, dirs in sets.items():
        print(f"{name}: {', '.join(str(d) for d in dirs)}")
    summaries = {name: E.run(c, args.minutes, args.seeds, directions, gestures) for name, c in controllers.items()}
    print(f"\nrandom captions held 2-20 s from the start pose: {args.seeds} seeds x {args.minutes:g} simulated min")
    print(E.report(summaries))


if __name__ == "__main__":
    main()
