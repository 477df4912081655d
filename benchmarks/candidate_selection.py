"""Does choosing a global run's policy by a longer real-use measure beat the one its training evaluations kept?

    python benchmarks/candidate_selection.py RUN [RUN ...] --lib LIB [--select-minutes 5] [--select-seeds 2]
                                            [--minutes 10] [--seeds 2]

RUN: global runs that kept candidates (`[global] candidates`, `padl.run.CANDIDATES`). Each candidate is measured
twice in real use (`superpadl.endurance` chains of random captions held 2-20 s from the start pose): on the
selection's seeds (`superpadl.selection.SELECT_SEED`..., what `superpadl.selection.select` would choose by) and on
the benchmark's seeds 0.. (`benchmarks/endurance.py`'s, unseen by the choice). Per run it prints every candidate,
then the benchmark's figures of the candidate training kept (best `kept_score`) against the one the selection
chooses: a gain there is not the selection's own noise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl import endurance as E  # noqa: E402
from superpadl import selection  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--lib", type=Path, required=True, help="the runs' motion library")
    p.add_argument("--select-minutes", type=float, default=5.0)
    p.add_argument("--select-seeds", type=int, default=2)
    p.add_argument("--minutes", type=float, default=10.0, help="the benchmark's simulated minutes per seed")
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    if not (args.lib / "manifest.json").is_file():
        sys.exit(f"candidate_selection: {args.lib}: not a motion library")
    from motions.library import MotionLibrary
    from padl.run import CANDIDATES, candidates
    from superpadl.evaluate import evaluation_score, kept_score
    from superpadl.policies import GlobalPolicy
    from superpadl.runtime import PolicyController
    from superpadl.text import default_encoder

    library, encoder = MotionLibrary(args.lib, include_flagged=True), default_encoder()
    directions, gestures = E.command_checks(library)
    for run in args.runs:
        if not candidates(run / CANDIDATES):
            sys.exit(f"candidate_selection: {run}: no candidates kept (train with [global] candidates > 0)")
        rows = selection.measure(run, library, args.select_minutes, args.select_seeds, encoder)
        for r in rows:
            c = PolicyController(GlobalPolicy.load(run / CANDIDATES / r["candidate"]), encoder=encoder)
            r["bench"] = E.run(c, args.minutes, args.seeds, directions, gestures)
        kept, chosen = max(rows, key=lambda r: kept_score(r["eval"])), selection.best(rows)
        print(f"\n{run}: selection {args.select_seeds} x {args.select_minutes:g} min from seed "
              f"{selection.SELECT_SEED}; benchmark {args.seeds} x {args.minutes:g} min from seed 0")
        print(E.table(("iteration", "training score", "served / falls per h (selection)",
                       "served / falls per h (benchmark)", ""),
                      [(str(r["iteration"]), f"{evaluation_score(r['eval']):.3f}",
                        f"{r['served_share']:.0%} / {r['falls_per_hour']:.0f}",
                        f"{r['bench']['served_share']:.0%} / {r['bench']['falls_per_hour']:.0f}",
                        " ".join(n for n, x in (("kept", kept), ("chosen", chosen)) if x is r)) for r in rows]))
        print(f"benchmark: kept by training (iteration {kept['iteration']}) served "
              f"{kept['bench']['served_share']:.0%}, {kept['bench']['falls_per_hour']:.0f} falls per hour; chosen by "
              f"the selection (iteration {chosen['iteration']}) {chosen['bench']['served_share']:.0%}, "
              f"{chosen['bench']['falls_per_hour']:.0f}")


if __name__ == "__main__":
    main()
