"""Clip-start evaluation of several policies side by side, on the clips of one library (`superpadl eval`'s measure).

    python benchmarks/clip_start.py POLICY [POLICY ...] --lib LIB [--baseline models/default] [--episodes 4]
                                    [--transitions 100] [--seed 0]

A recipe's model is judged against the shipped one on the clips both know: LIB holds those (a policy's clips that
are not in LIB are left out of its evaluation, `superpadl.evaluate.GlobalAgent`), so a model with an extra skill is
compared on the shipped model's skills. Each policy is evaluated as `superpadl eval POLICY LIB` does (every caption
`--episodes` times from its clip's first frame; `--transitions` random caption pairs, drawn with the same seed, so
the same pairs where the policies know the same captions); the baseline (the shipped model unless `--baseline`) is
measured in the same run.
Prints per clip success and G-MPJPE, the means over clips, and transition success with its pairs leaving each clip.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    from motions import options as O

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("policies", nargs="+", type=Path)
    ap.add_argument("--lib", type=Path, required=True, help="a motion library of the clips to compare on")
    ap.add_argument("--baseline", type=Path, default=ROOT / "models" / "default")
    ap.add_argument("--episodes", type=O.positive_int, default=4)
    ap.add_argument("--transitions", type=O.nonneg_int, default=100)
    ap.add_argument("--seed", type=O.seed, default=0)
    args = ap.parse_args(argv)

    from motions.library import MotionLibrary
    from superpadl.endurance import table
    from superpadl.evaluate import evaluate, load_agent

    paths = [args.baseline, *args.policies]
    for path in (args.lib, *paths):
        if not path.is_dir():
            raise SystemExit(f"clip_start: {path}: no such folder")
    lib = MotionLibrary(args.lib, include_flagged=True)
    results = [evaluate(load_agent(p, lib), lib, episodes=args.episodes, transitions=args.transitions, seed=args.seed)
               for p in paths]
    names = [f"{p} (baseline)" if i == 0 else str(p) for i, p in enumerate(paths)]
    clips = [c for c in lib.clip_ids if all(c in r["clips"] for r in results)]
    rows = []
    for clip in clips:
        row = [clip]
        for r in results:
            m = r["clips"][clip]
            row.append(f"{m['success']:.0%}, {m['g_mpjpe_mm']:.1f} mm")
        rows.append(row)
    mean = lambda r, key: sum(r["clips"][c][key] for c in clips) / len(clips)  # over the clips shown, as `evaluate`
    rows.append(["mean over these clips"] + [f"{mean(r, 'success'):.0%}, {mean(r, 'g_mpjpe_mm'):.1f} mm"
                                             for r in results])
    switched = [r.get("transitions") for r in results]  # none for an expert
    rows.append(["transitions"] + [f"{t['success']:.0%} of {len(t['pairs'])} pairs" if t else "-" for t in switched])
    for clip in clips:
        rows.append([f"  pairs leaving {clip}"] + ["%d/%d" % tuple(t["by_clip"][clip]["from"]) if t else "-"
                                                   for t in switched])
    print(f"clip starts: {args.episodes} episodes per caption, on {args.lib} (success, G-MPJPE)")
    print(table(("clip", *names), [tuple(r) for r in rows]))


if __name__ == "__main__":
    main()
