"""Teacher against student: the experts, the group controllers and the global policy on the same clips.

    python benchmarks/teacher_student.py LIB --experts DIR [DIR ...] --groups DIR --global DIR [--json OUT]

Every level is run by `superpadl.evaluate.evaluate` (same episodes, same initial noise, CPU backend): per clip,
success and G-MPJPE against the clip (the global policy: the mean over the clip's captions), then the summary
(mean over clips) with motion precision/recall AUC, retrieval top-1 among 4, and transition success for the
reference-free levels. The ratio column is the global policy's G-MPJPE over the experts' (target: within 2x).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motions.library import MotionLibrary  # noqa: E402
from superpadl.evaluate import evaluate, load_agent  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lib", type=Path)
    p.add_argument("--experts", type=Path, nargs="+", required=True)
    p.add_argument("--groups", type=Path, required=True)
    p.add_argument("--global", dest="global_", type=Path, required=True)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--transitions", type=int, default=40)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    lib = MotionLibrary(args.lib, include_flagged=True)
    results, wall = {}, {}
    for level, paths in (("expert", args.experts), ("group", [args.groups]), ("global", [args.global_])):
        t0 = time.time()
        merged = {"clips": {}, "summaries": []}
        for path in paths:
            r = evaluate(load_agent(path, lib), lib, episodes=args.episodes, transitions=args.transitions)
            merged["clips"].update(r["clips"])
            merged["summaries"].append(r)
        results[level], wall[level] = merged, time.time() - t0
    clips = [c for c in results["global"]["clips"]]
    header = f"{'clip':<30}" + "".join(f" {lvl + ' succ':>12} {lvl + ' mm':>11}" for lvl in results) + f" {'ratio':>6}"
    print(header + "\n" + "-" * len(header))
    for c in clips:
        row = f"{c:<30}"
        for lvl in results:
            m = results[lvl]["clips"].get(c)
            row += f" {m['success']:>12.0%} {m['g_mpjpe_mm']:>11.1f}" if m else f" {'-':>12} {'-':>11}"
        e, g = results["expert"]["clips"].get(c), results["global"]["clips"][c]
        row += f" {g['g_mpjpe_mm'] / e['g_mpjpe_mm']:>6.2f}" if e else f" {'-':>6}"
        print(row)
    print()
    keys = ("success", "g_mpjpe_mm", "precision_auc", "recall_auc", "retrieval_top1", "transition_success")
    print(f"{'level (mean over clips)':<26}" + "".join(f" {k:>18}" for k in keys) + f" {'eval wall s':>12}")
    for lvl, r in results.items():
        mean = {k: float(np.mean([m[k] for m in r["clips"].values() if k in m])) for k in keys[:5]}
        trans = [s["mean"]["transition_success"] for s in r["summaries"] if "transition_success" in s["mean"]]
        mean["transition_success"] = float(np.mean(trans)) if trans else float("nan")
        print(f"{lvl:<26}" + "".join(f" {mean[k]:>18.3f}" for k in keys) + f" {wall[lvl]:>12.0f}")
        r["mean"] = mean
    if args.json:
        args.json.write_text(json.dumps({k: {"clips": v["clips"], "mean": v["mean"],
                                             "summaries": v["summaries"]} for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
