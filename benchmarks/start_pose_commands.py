"""Does each command hold up as a user first gives it: from the pose the viewer and renderer start in?

    python benchmarks/start_pose_commands.py POLICY [--baseline models/default] [--seconds 6]

`superpadl eval` starts every command from its own clip's first frame. The viewer and `superpadl render` start the
character in the policy's stored start pose (the first frame of its first clip) and a command then runs until the
next one, past its clip's end. Here every caption of POLICY and of the baseline (in the same run) is given once
from that start pose and held for `--seconds` of simulation (`superpadl.host.SimLoop`, as the viewer runs it); a
caption fails on a fall. Per clip: captions that fell / captions, and the time of the first fall. `ratio`: POLICY's
falls over the baseline's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl.runtime import DEFAULT_MODEL, load_controller  # noqa: E402
from superpadl.host import SimLoop  # noqa: E402


def first_falls(policy: Path, seconds: float) -> dict[str, list]:
    """{clip: [seconds to the first fall, or None, per caption]}."""
    controller = load_controller(policy)
    out: dict[str, list] = {}
    for caption, clip in zip(controller.captions, controller.caption_clips):
        loop = SimLoop(controller.model, controller, seed=0)
        loop.command(caption)
        fell = None
        for step in range(round(seconds * loop.control_hz)):
            loop.control_step()
            if loop.falls:
                fell = (step + 1) / loop.control_hz
                break
        out.setdefault(clip, []).append(fell)
    return out


def cell(times: list | None) -> str:
    if times is None:
        return "-"
    fell = [t for t in times if t is not None]
    return f"{len(fell)}/{len(times)}" + (f" at {min(fell):.1f}-{max(fell):.1f} s" if fell else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", type=Path)
    p.add_argument("--baseline", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--seconds", type=float, default=6.0)
    args = p.parse_args()
    new, base = first_falls(args.policy, args.seconds), first_falls(args.baseline, args.seconds)
    rows = [(clip, cell(new.get(clip)), cell(base.get(clip))) for clip in dict.fromkeys([*new, *base])]
    header = ("clip", str(args.policy), f"baseline {args.baseline}")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(3)]
    print(f"captions that fell within {args.seconds:g} s of being given from the start pose")
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    count = [sum(t is not None for ts in d.values() for t in ts) for d in (new, base)]
    total = [sum(len(ts) for ts in d.values()) for d in (new, base)]
    ratio = f"{count[0] / count[1]:.2f}" if count[1] else "-"
    print(f"all: {count[0]}/{total[0]} against {count[1]}/{total[1]}; ratio {ratio}")


if __name__ == "__main__":
    main()
