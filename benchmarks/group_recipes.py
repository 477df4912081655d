"""Group-controller recipes against the default one, on the same clips and experts.

    python benchmarks/group_recipes.py LIB --experts DIR [DIR ...] --out DIR [--recipes NAME ...]

Each recipe trains one groups folder (`superpadl.groups.distill_groups`; an existing folder is resumed, so a
finished one is only evaluated) and is then evaluated by `superpadl.evaluate.evaluate` like `superpadl eval`
(2 episodes per clip, 20 transition pairs). The table gives success, G-MPJPE, precision/recall AUC and
transition success per recipe, and each one's G-MPJPE over the default recipe's, measured in the same run.

The recipes (everything else is `GroupConfig()`):
- default: the (1024, 512) LayerNorm network, prioritised clips, first-frame starts, reference-past restarts, and
  the heading features (turn and sideways offset since the command began);
- no_heading: the default without the heading features (the recipe before them);
- no_reference_restarts: no heading features, and restarts repeat their first frame only;
- small_network: the (512, 256) network without LayerNorm, neither start change (first_frame_share 0,
  reference_restarts 0), no heading features;
- small_network_reference_restarts: the same with reference-past restarts.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motions.library import MotionLibrary  # noqa: E402
from padl.config import replace  # noqa: E402
from superpadl.evaluate import evaluate, load_agent  # noqa: E402
from superpadl.groups import GroupConfig, distill_groups  # noqa: E402


def recipes(base: GroupConfig) -> dict[str, GroupConfig]:
    no_heading = dataclasses.replace(base.history, heading=False)
    small = dataclasses.replace(base, env=replace(base.env, starts=dict(first_frame_share=0.0)),
                                ppo=dataclasses.replace(base.ppo, policy_hidden=(512, 256), layer_norm=False))
    return {
        "default": base,
        "no_heading": dataclasses.replace(base, history=no_heading),
        "no_reference_restarts": dataclasses.replace(
            base, history=dataclasses.replace(no_heading, reference_restarts=0.0)),
        "small_network": dataclasses.replace(small, history=dataclasses.replace(no_heading, reference_restarts=0.0)),
        "small_network_reference_restarts": dataclasses.replace(small, history=no_heading),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lib", type=Path)
    p.add_argument("--experts", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True, help="one groups folder per recipe is made here")
    p.add_argument("--recipes", nargs="+", help="default: all; the default recipe is always run, as the baseline")
    p.add_argument("--iterations", type=int, default=260)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--transitions", type=int, default=20)
    args = p.parse_args()
    base = dataclasses.replace(GroupConfig(), iterations=args.iterations, bc_warmup_iterations=args.warmup,
                               eval_every=20)
    table = recipes(base)
    names = ["default"] + [n for n in (args.recipes or table) if n != "default"]
    if unknown := [n for n in names if n not in table]:
        p.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(table)}")
    lib = MotionLibrary(args.lib, include_flagged=True)
    rows = {}
    for name in names:
        t0 = time.time()
        distill_groups(lib, args.experts, args.out / name, table[name], progress=False)
        train_s = time.time() - t0
        r = evaluate(load_agent(args.out / name, lib), lib, episodes=args.episodes, transitions=args.transitions)
        rows[name] = (r["mean"], train_s)
    keys = ("success", "g_mpjpe_mm", "precision_auc", "recall_auc", "transition_success")
    header = f"{'recipe':<34}" + "".join(f" {k:>18}" for k in keys) + f" {'mm / default':>13} {'train s':>8}"
    print(header + "\n" + "-" * len(header))
    for name, (m, train_s) in rows.items():
        ratio = m["g_mpjpe_mm"] / rows["default"][0]["g_mpjpe_mm"]
        print(f"{name:<34}" + "".join(f" {m[k]:>18.3f}" for k in keys) + f" {ratio:>13.2f} {train_s:>8.0f}")


if __name__ == "__main__":
    main()
