"""Is a prompt script's run without a fall luck? The script played as written, then with every stage's duration
jittered (uniform +-`--jitter` s, at least 1 s): how many of the variants fell, and in which stage each fall came.

    python benchmarks/demo_variants.py [POLICY] [--baseline none|DIR] [--script prompts/demo.txt] [--variants 10]

MuJoCo is deterministic on one machine, so a script as written falls or not every time; the demo test
(`tests/test_default_model.py`) plays it so. A user's timing is never the script's: the variants show how far from
that one run the policy still holds. The baseline (the shipped model by default) plays the same variants in the run.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from superpadl.endurance import table  # noqa: E402
from superpadl.host import SimLoop  # noqa: E402
from superpadl.runtime import DEFAULT_MODEL, load_controller  # noqa: E402
from superpadl.script import load_script  # noqa: E402


def falls_in(controller, stages) -> list[str]:
    """The stage text of each fall of one play of `stages` from the start pose."""
    loop = SimLoop(controller.model, controller, seed=0)
    where, seen = [], [0]

    def watch(data, caption):
        if loop.falls > seen[0]:
            where.append(caption)
            seen[0] = loop.falls

    loop.run_script(stages, 30.0, watch)
    return where


def variants(stages, count: int, jitter: float, seed: int) -> list[list]:
    """The script as written, then `count` - 1 copies with jittered durations."""
    rng = np.random.default_rng(seed)
    out = [stages]
    for _ in range(count - 1):
        out.append([dataclasses.replace(s, duration=max(1.0, s.duration + float(rng.uniform(-jitter, jitter))))
                    for s in stages])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("policy", nargs="?", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--baseline", default=str(DEFAULT_MODEL), help="a policy folder, or 'none'")
    p.add_argument("--script", type=Path, default=Path(__file__).resolve().parents[1] / "prompts" / "demo.txt")
    p.add_argument("--variants", type=int, default=10, help="plays, the first as written")
    p.add_argument("--jitter", type=float, default=1.0, help="seconds each stage's duration may move either way")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    stages = load_script(args.script)
    plays = variants(stages, args.variants, args.jitter, args.seed)
    policies = {str(args.policy): args.policy}
    if args.baseline != "none" and Path(args.baseline).resolve() != args.policy.resolve():
        policies[f"baseline {args.baseline}"] = Path(args.baseline)
    results = {}
    for name, path in policies.items():
        controller = load_controller(path)
        results[name] = [falls_in(controller, play) for play in plays]
    texts = list(dict.fromkeys(s.text for s in stages))
    rows = [("as written: falls", *(str(len(r[0])) for r in results.values())),
            (f"variants with a fall (of {len(plays)})", *(str(sum(map(bool, r))) for r in results.values()))]
    rows += [(f"falls in '{t}'", *(str(sum(w.count(t) for w in r)) for r in results.values())) for t in texts]
    print(f"{args.script}: as written, then {len(plays) - 1} plays with each stage's duration moved up to "
          f"{args.jitter:g} s")
    print(table(("", *results), rows))


if __name__ == "__main__":
    main()
