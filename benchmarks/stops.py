"""Can the policy stop? From the start pose, a locomotion caption held 2 or 5 s, then a standing or gesture caption:
when it fell after the switch, and the root speed (m/s) every 0.2 s of the first 3 s after it. With `--via CAPTION
SECONDS`, that caption is given for that long in between (a jog slowed through a walk).

    python benchmarks/stops.py [POLICY] [--baseline none|DIR] [--via "walk forward" 2]

One simulated seed (MuJoCo is deterministic on one machine); the baseline (the shipped model by default) in the same
run. docs/experiments.md ("where the shipped student falls") quotes it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from superpadl.host import SimLoop  # noqa: E402
from superpadl.runtime import DEFAULT_MODEL, PolicyController  # noqa: E402

PAIRS = [("jog", "stand still"), ("walk forward", "stand still"), ("jog", "take a bow"), ("walk forward", "take a bow")]


def stop(controller, first: str, hold_s: float, then: str, via: tuple[str, float] | None = None
         ) -> tuple[float | None, list[float]]:
    """(seconds after the switch away from `first` to a fall, None: none; the root speed every 0.2 s since)."""
    loop = SimLoop(controller.model, controller, seed=0)
    loop.command(first)
    loop.advance(hold_s)
    falls = loop.falls
    fell, speeds = None, []
    steps = [(via[0], round(via[1] / 0.2)), (then, 15)] if via else [(then, 15)]
    for caption, count in steps:
        loop.command(caption)
        for _ in range(count):
            loop.advance(0.2)
            speeds.append(float(np.linalg.norm(loop.data.qvel[:2])))
            if fell is None and loop.falls > falls:
                fell = len(speeds) * 0.2
    return fell, speeds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("policy", nargs="?", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--baseline", default=str(DEFAULT_MODEL), help="a policy folder, or 'none'")
    p.add_argument("--via", nargs=2, metavar=("CAPTION", "SECONDS"), help="a caption given in between, this long")
    args = p.parse_args()
    via = (args.via[0], float(args.via[1])) if args.via else None
    paths = [args.policy] + ([] if args.baseline == "none" or Path(args.baseline).resolve() == args.policy.resolve()
                             else [Path(args.baseline)])
    for path in paths:
        c = PolicyController(path)
        print(f"{path}")
        for first, then in PAIRS:
            for hold_s in (2.0, 5.0):
                fell, speeds = stop(c, first, hold_s, then, via)
                when = "no fall" if fell is None else f"fell at {fell:.1f} s"
                middle = f"{via[0]} {via[1]:g} s -> " if via else ""
                print(f"  {first} {hold_s:g} s -> {middle}{then}: {when}; speed " + " ".join(f"{v:.1f}" for v in speeds))


if __name__ == "__main__":
    main()
