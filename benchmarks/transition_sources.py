"""Which skills a student can leave: falls after a command switch out of each clip, by when the switch comes.

    python benchmarks/transition_sources.py POLICY LIB [--after 3] [--times 0.5 1.0]

POLICY is a global policy or a groups folder (`superpadl eval` takes the same). For every source clip, the character
performs it from its start (its first caption, for a global policy) and switches to each other clip (its first
caption) at each of `--times` seconds and at the source's end (2 s for a looping clip); a pair fails on a fall before
the switch or within `--after` seconds of it. The baseline, in the same run: the source command held, no switch, and
watched until `--after` seconds past its end. `ratio` is the failure share after a switch at the end over the held
baseline's: near 1, leaving the skill is no harder than carrying on with it, and the fall comes from the state the
skill left the character in, not from the switch.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from motions.library import MotionLibrary  # noqa: E402
from superpadl import student as S  # noqa: E402
from superpadl.evaluate import load_agent, switch_falls  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", type=Path)
    p.add_argument("lib", type=Path)
    p.add_argument("--after", type=float, default=3.0, help="seconds watched after the switch")
    p.add_argument("--times", type=float, nargs="+", default=[0.5, 1.0], help="switch times (s) besides the end")
    args = p.parse_args()
    lib = MotionLibrary(args.lib, include_flagged=True)
    agent = load_agent(args.policy, lib)
    if agent.kind == "expert":
        raise SystemExit(f"{args.policy}: an expert tracks its reference and takes no commands")
    hz = agent.env_config.physics.control_hz
    after = int(round(args.after * hz))
    row = {}  # clip -> its first command row
    for r, (_, clip) in enumerate(agent.commands):
        row.setdefault(clip, r)
    clips = list(row)
    ends = np.asarray(S.clip_ends(lib))
    end_s = {c: min(2.0, float(ends[lib.index(c)])) for c in clips}
    timings = [f"{t:g} s" for t in args.times] + ["end", "held"]
    cases = []  # (source, timing, first row, second row, switch step, horizon)
    for a in clips:
        end = int(round(end_s[a] * hz))
        for b in clips:
            if b == a:
                continue
            for t, name in zip(args.times + [end_s[a]], timings):
                at = int(round(t * hz))
                cases.append((a, name, row[a], row[b], at, at + after))
        cases.append((a, "held", row[a], row[a], end + after, end + after))  # never switches
    t0 = time.time()
    fall = switch_falls(agent, lib, [c[2] for c in cases], [c[3] for c in cases], [c[4] for c in cases],
                        [c[5] for c in cases])
    wall = time.time() - t0
    failed = {}
    for (a, name, *_), f in zip(cases, fall):
        failed.setdefault((a, name), []).append(f >= 0)
    share = {k: float(np.mean(v)) for k, v in failed.items()}
    print(f"{args.policy}: {len(cases)} runs in {wall:.0f} s; failure share (fall before the switch or within "
          f"{args.after:g} s after it)")
    head = f"{'from':<30} {'end s':>6}" + "".join(f" {n:>7}" for n in timings) + f" {'ratio':>6}"
    print(head + "\n" + "-" * len(head))
    for a in clips + ["all clips"]:
        if a == "all clips":
            vals = {n: float(np.mean([share[c, n] for c in clips])) for n in timings}
            label, end = a, ""
        else:
            vals, label, end = {n: share[a, n] for n in timings}, a, f"{end_s[a]:.2f}"
        ratio = f"{vals['end'] / vals['held']:.2f}" if vals["held"] else "-"  # held without a fall: no baseline
        print(f"{label[:30]:<30} {end:>6}" + "".join(f" {vals[n]:>7.0%}" for n in timings) + f" {ratio:>6}")


if __name__ == "__main__":
    main()
