"""How policies perform one clip from its start: how episodes end, and where the pelvis is against the reference.

    python benchmarks/clip_trace.py LIB CLIP POLICY [POLICY ...] [--episodes 10] [--times 1 1.5 2 2.5 3 3.5]

Each POLICY (an expert, a groups folder or a global policy, as `superpadl eval` takes) performs CLIP from its first
frame `--episodes` times, with 0.02 rad of initial noise, ended as `superpadl eval` ends an episode: a fall, a mean
body error over 0.5 m, or the clip's end. Per policy: the share of episodes that completed the clip, fell, or left
it on body error, with the median end time of those that did not complete; then the median pelvis height (z) and
forward position (x, from the start) at each of `--times`, over the episodes still running then. The reference row
is the clip itself; the first POLICY is the baseline the others' completion ratio is against (a teacher, so that a
student's lost skill shows as a ratio below 1 and where in the clip it goes wrong shows in z and x).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from motions.library import MotionLibrary  # noqa: E402
from padl.config import replace  # noqa: E402
from padl.env import EpisodeConfig  # noqa: E402
from padl.evaluate import rollout  # noqa: E402
from superpadl.evaluate import load_agent  # noqa: E402


def trace(agent, lib: MotionLibrary, clip: str, episodes: int) -> list[tuple[np.ndarray, bool, bool]]:
    """Per episode: (qpos (T, 35) up to its end, fell, completed)."""
    rows = [r for r, (_, c) in enumerate(agent.commands) if c == clip]
    if not rows:
        raise SystemExit(f"{clip}: not a clip this policy was trained on")
    cfg = replace(agent.env_config, physics=dict(backend="mujoco"),
                  episode=dict(max_body_error=EpisodeConfig.max_body_error, end_with_clip=True))
    rows = [rows[i % len(rows)] for i in range(episodes)]  # each caption in turn, for a global policy
    steps = int(round(lib.durations[lib.index(clip)] * cfg.physics.control_hz))
    out = []
    for _, _, _, failed, q in rollout(lib, agent.actor(rows), [clip], episodes=episodes, noise=0.02, env_config=cfg):
        out.append((q, bool(failed.any()), not failed.any() and len(q) >= steps - 1))  # a body-error end comes sooner
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lib", type=Path)
    p.add_argument("clip")
    p.add_argument("policies", type=Path, nargs="+")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--times", type=float, nargs="+", default=[1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    args = p.parse_args()
    lib = MotionLibrary(args.lib, include_flagged=True)
    if args.clip not in lib.clip_ids:
        raise SystemExit(f"{args.lib}: no clip {args.clip!r}")
    agents = [load_agent(path, lib) for path in args.policies]
    hz = agents[0].env_config.physics.control_hz
    duration = float(lib.durations[lib.index(args.clip)])
    times = [t for t in args.times if t <= duration]
    steps = np.round(np.asarray(times) * hz).astype(int)
    clip = lib.index(args.clip)
    ref = np.asarray(lib.sample(np.full(len(steps) + 1, clip), np.r_[0, steps] / hz).qpos)  # the start, then times
    x0, ref = float(ref[0, 0]), ref[1:]

    head = (f"{'policy':<34} {'done':>5} {'fell':>5} {'error':>5} {'end s':>6} {'ratio':>6} |"
            + "".join(f" {f'z@{t:g}':>6}" for t in times) + " |" + "".join(f" {f'x@{t:g}':>6}" for t in times))
    print(f"{args.clip} ({duration:.2f} s), {args.episodes} episodes per policy from its first frame")
    print(head + "\n" + "-" * len(head))
    print(f"{'reference':<34} {'':>5} {'':>5} {'':>5} {'':>6} {'':>6} |" + "".join(f" {z:6.2f}" for z in ref[:, 2])
          + " |" + "".join(f" {x - x0:6.2f}" for x in ref[:, 0]))
    baseline = None
    for path, agent in zip(args.policies, agents):
        episodes = trace(agent, lib, args.clip, args.episodes)
        done = np.mean([c for _, _, c in episodes])
        fell = np.mean([f for _, f, _ in episodes])
        ends = [len(q) / hz for q, _, c in episodes if not c]
        baseline = done if baseline is None else baseline
        ratio = f"{done / baseline:.2f}" if baseline else "-"
        z, x = [], []
        for s in steps:
            running = [q[s - 1] for q, _, _ in episodes if len(q) >= s]
            z.append(np.median([q[2] for q in running]) if running else np.nan)
            x.append(np.median([q[0] for q in running]) - x0 if running else np.nan)
        print(f"{str(path)[-34:]:<34} {done:>5.0%} {fell:>5.0%} {1 - done - fell:>5.0%} "
              f"{np.median(ends) if ends else float('nan'):>6.2f} {ratio:>6} |" + "".join(f" {v:6.2f}" for v in z)
              + " |" + "".join(f" {v:6.2f}" for v in x))


if __name__ == "__main__":
    main()
