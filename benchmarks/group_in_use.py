"""Group controllers in real use: each driven as the runtime drives the global policy (`runtime.GroupController`,
commanded by clip, a held one-shot command handed to the group's standing clip), through the real-use chain of
`benchmarks/endurance.py` from the start pose; one column per group, measured in the same run.

    python benchmarks/group_in_use.py --lib LIB GROUP [GROUP ...] [--minutes 10] [--seeds 2]

A global policy learns what its groups do where DAgger takes it, so a group that falls here teaches falls.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl import endurance as E  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("groups", nargs="+", type=Path, help="group controller folders (RUN/groups/group_000)")
    p.add_argument("--lib", type=Path, required=True, help="library holding the groups' clips")
    p.add_argument("--minutes", type=float, default=10.0, help="simulated minutes per seed")
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    if not (args.lib / "manifest.json").is_file():
        sys.exit(f"group_in_use: {args.lib}: not a motion library")
    from motions.library import MotionLibrary
    from superpadl.policies import GroupPolicy
    from superpadl.runtime import GroupController

    library = MotionLibrary(args.lib, include_flagged=True)
    directions, gestures = E.command_checks(library)
    summaries = {}
    for path in args.groups:
        policy = GroupPolicy.load(path)
        summaries[str(path)] = E.run(GroupController(policy, E.start_pose(library, policy.clips), library),
                                     args.minutes, args.seeds, directions, gestures)
    print(f"random clips held 2-20 s from the start pose: {args.seeds} seeds x {args.minutes:g} simulated min")
    print(E.report(summaries))


if __name__ == "__main__":
    main()
