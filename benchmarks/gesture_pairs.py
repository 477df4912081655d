"""Does a gesture start from the stance the previous one ends in? Every non-locomotion caption held HOLD s from the
start pose (past its clip: the policy standing), then every one given: the second after the switch it fell at ('-':
no fall in 6 s; 'A': the first fell already).

    python benchmarks/gesture_pairs.py [POLICY] [--hold-s 8]

One simulated seed per pair; docs/experiments.md ("where the falls after standing come from") quotes it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl.host import SimLoop  # noqa: E402
from superpadl.runtime import DEFAULT_MODEL, PolicyController  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("policy", nargs="?", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--hold-s", type=float, default=8.0, help="seconds the first caption is held")
    args = p.parse_args()
    c = PolicyController(args.policy)
    first = {}
    for caption, clip in zip(c.captions, c.caption_clips):
        first.setdefault(clip, caption)
    clips = [k for k in first if "walk" not in k and "jog" not in k]
    short = lambda k: k.replace("bandai_", "").replace("_normal_001", "")[:10]
    print("first \\ then".ljust(13) + " ".join(short(b).ljust(10) for b in clips))
    total = 0
    for a in clips:
        row = []
        for b in clips:
            loop = SimLoop(c.model, c, seed=0)
            loop.command(first[a])
            loop.advance(args.hold_s)
            before = loop.falls
            loop.command(first[b])
            fell = None
            for k in range(30):
                loop.advance(0.2)
                if loop.falls > before:
                    fell = (k + 1) * 0.2
                    break
            row.append("A" if before else "-" if fell is None else f"{fell:.1f}")
            total += fell is not None
        print(short(a).ljust(13) + " ".join(r.ljust(10) for r in row), flush=True)
    print(f"pairs with a fall after the switch: {total} of {len(clips) ** 2}")


if __name__ == "__main__":
    main()
