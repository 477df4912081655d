"""Can each expert take over where the runtime hands it a command? Its clip from the simulated states real use gave
commands in (`superpadl handover-states`), in the training environment.

    python benchmarks/handover_success.py --lib LIB --states NPZ --experts DIR [DIR ...] [--baseline DIR ...]
                                          [--episodes 32] [--seconds 4]

Per expert (a policy folder or a run; `RUN/train_state` for a run's latest policy instead of the one its evaluations
kept): every episode starts in one of the recorded states, its clip at the first frame re-anchored at the character
(`StartConfig.state_starts`, the reference following the character's position for the expert's `recover_s`); success
is no fall and no body-error end in `--seconds`, with G-MPJPE and the frames survived. Clip-start evaluations (what
`padl train-expert` keeps a policy by) do not see these starts: a walk taught from the standing clip's reference
frame succeeds there and falls from the same stance held by a standing expert. `--baseline` experts (default: those
of `models/teachers` with the same clips) are measured in the same run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superpadl import endurance as E  # noqa: E402

TEACHERS = Path(__file__).resolve().parents[1] / "models" / "teachers"


def handover_success(library, path: Path, states: Path, episodes: int, seconds: float) -> dict:
    from padl.config import replace
    from padl.evaluate import evaluate_policy
    from padl.policy import ExpertPolicy, mean_action

    policy = ExpertPolicy.load(path)
    env = replace(policy.env, physics=dict(backend="mujoco"),
                  starts=dict(state_starts=str(states.resolve()), foreign_share=1.0))
    return evaluate_policy(library, lambda s: mean_action(policy.ts, s.obs), clips=policy.clips, episodes=episodes,
                           env_config=env, seconds=seconds, foreign_share=1.0)["mean"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lib", type=Path, required=True, help="library of the experts' clips")
    p.add_argument("--states", type=Path, required=True, help="npz of `superpadl handover-states`")
    p.add_argument("--experts", nargs="+", type=Path, required=True, help="expert policy folders or runs")
    p.add_argument("--baseline", nargs="*", type=Path, help="default: models/teachers/* of the same clips")
    p.add_argument("--episodes", type=int, default=32, help="episodes per expert (default 32)")
    p.add_argument("--seconds", type=float, default=4.0, help="episode length (default 4)")
    args = p.parse_args()
    if not (args.lib / "manifest.json").is_file():
        sys.exit(f"handover_success: {args.lib}: not a motion library")
    from motions.library import MotionLibrary
    from padl.checkpoint import CheckpointError
    from padl.env import load_state_starts
    from padl.policy import ExpertPolicy

    library = MotionLibrary(args.lib, include_flagged=True)
    try:
        load_state_starts(args.states, library.character.model.nq, library.character.model.nv)
        clips = {path: ExpertPolicy.load(path).clips for path in args.experts}
        teachers = [d for d in sorted(TEACHERS.iterdir()) if (d / "policy.json").is_file()]
        baseline = args.baseline if args.baseline is not None else [
            d for d in teachers if set(ExpertPolicy.load(d).clips) & {c for cs in clips.values() for c in cs}]
    except (ValueError, CheckpointError) as e:
        sys.exit(f"handover_success: {e}")
    rows = []
    for role, paths in (("measured", args.experts), ("baseline", baseline)):
        for path in paths:
            ev = handover_success(library, path, args.states, args.episodes, args.seconds)
            policy = ExpertPolicy.load(path)
            rows.append((role, str(path), ", ".join(policy.clips), f"{ev['success']:.0%}",
                         f"{ev['frames'] / policy.env.physics.control_hz:.1f} s", f"{ev['g_mpjpe_mm']:.0f}"))
    print(f"{args.episodes} episodes of {args.seconds:g} s per expert, each from a state of {args.states}")
    print(E.table(("", "expert", "clips", "success", "survived (mean)", "G-MPJPE mm"), rows))


if __name__ == "__main__":
    main()
