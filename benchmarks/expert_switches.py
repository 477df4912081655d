"""How well experts recover from a command switch: falls of experts started in another clip's state.

    python benchmarks/expert_switches.py LIB --experts DIR [DIR ...] [--candidate DIR [DIR ...]]
        [--seconds 10] --foreign-clips CLIP ...

A batch of 64 envs on the experts' clips (reference-state starts) is driven by the experts alone
(`teachers.ExpertTeachers`) without switches, the baseline falls. The body-error termination is off, so a fall is
the only end. With `--foreign-clips`, a row starts every env in a reference state of one of those clips (e.g. a
sprint) at its own clip's first frame, its reference re-anchored where the character stands as a user's command
does at run time (`StartConfig.foreign_share`), and counts falls within 3 s; `--per-clip` adds a row per foreign
clip. (Switches drawn mid-episode, as group training once did, were measured here too: docs/experiments.md.)
The reference follows the character in a clip's first second when the experts were trained so
(`EpisodeConfig.recover_follow`), as `ExpertController` does at run time. `--candidate` runs the same for another set of experts of
the same clips (e.g. fine-tuned with foreign starts, `padl train-expert --init-from`). The table gives switches,
falls, falls per switch, and falls per switch over the baseline experts' (`--experts`) in the same row kind.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from motions.library import MotionLibrary  # noqa: E402
from padl.config import replace  # noqa: E402
from padl.env import ActionConfig, EnvConfig, EpisodeConfig, ImitationEnv, PhysicsConfig  # noqa: E402
from superpadl.teachers import load_experts  # noqa: E402


def _env(lib, teachers, clips, envs: int, **changes) -> ImitationEnv:
    """The experts' clips with their observation settings; a fall is the only end, and the reference follows the
    character in a clip's first second when the experts learnt so."""
    base = teachers.env_config()
    episode = EpisodeConfig(max_body_error=1e6, recover_s=1.0, recover_follow=base.episode.recover_follow)
    cfg = EnvConfig(num_envs=envs, clips=tuple(clips), obs=base.obs, physics=PhysicsConfig(backend="mujoco"),
                    action=ActionConfig(mode="absolute"), episode=episode)
    return ImitationEnv(lib, replace(cfg, **changes))


def run(lib, teachers, clips, seconds: float, seed: int = 0) -> dict:
    env = _env(lib, teachers, clips, 64)
    hz = env.config.physics.control_hz
    state, falls, t0, steps = env.reset(jax.random.key(seed)), 0, time.time(), int(seconds * hz)
    for _ in range(steps):
        state = env.step(state, teachers.act(state))
        falls += int(np.sum(state.info["fell"]))
    return {"env_s": steps * env.num_envs / hz, "switches": 0, "falls": falls, "wall_s": time.time() - t0}


def foreign(lib, teachers, clips, foreign_clips, after_s: float = 3.0, envs: int = 128) -> dict:
    """Falls within after_s of a start in another clip's state, the own clip beginning at its first frame."""
    env = _env(lib, teachers, clips, envs, starts=dict(foreign_share=1.0, foreign_clips=tuple(foreign_clips)),
               episode=dict(end_with_clip=False, length_s=after_s + 1.0))
    hz = env.config.physics.control_hz
    state, fell = env.reset(jax.random.key(1)), np.zeros(envs, bool)
    t0, steps = time.time(), int(after_s * hz)
    for _ in range(steps):
        state = env.step(state, teachers.act(state))
        fell |= np.asarray(state.info["fell"])
    return {"env_s": steps * envs / hz, "switches": envs, "falls": int(fell.sum()),
            "wall_s": time.time() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lib", type=Path)
    p.add_argument("--experts", type=Path, nargs="+", required=True)
    p.add_argument("--candidate", type=Path, nargs="+", help="other experts of the same clips, to compare")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--foreign-clips", nargs="+", help="also: starts in these clips' states (falls within 3 s)")
    p.add_argument("--per-clip", action="store_true", help="with --foreign-clips: a row per foreign clip (64 starts)")
    args = p.parse_args()
    lib = MotionLibrary(args.lib, include_flagged=True)
    sets = {"experts": args.experts, **({"candidate": args.candidate} if args.candidate else {})}
    rows, clips = {}, None
    for name, paths in sets.items():
        teachers = load_experts(lib, paths)
        if clips is not None and teachers.clips(lib) != clips:
            raise SystemExit(f"{name}: its experts cover other clips than --experts")
        clips = teachers.clips(lib)
        rows[name, "no switches"] = run(lib, teachers, clips, args.seconds)
        if args.foreign_clips:
            rows[name, "foreign starts"] = foreign(lib, teachers, clips, args.foreign_clips)
            for c in args.foreign_clips if args.per_clip else []:
                rows[name, f"from {c}"] = foreign(lib, teachers, clips, [c], envs=64)
    per = {k: r["falls"] / r["switches"] if r["switches"] else float("nan") for k, r in rows.items()}
    print(f"{len(clips)} clips")
    width = max(len(f"{n}, {k}") for n, k in rows)
    header = (f"{'run':<{width}} {'env s':>7} {'switches':>9} {'falls':>6} {'falls/switch':>13} {'ratio':>6}")
    print(header + "\n" + "-" * len(header))
    for (name, kind), r in rows.items():
        base = per["experts", kind]
        ratio = per[name, kind] / base if base else float("nan")
        print(f"{name + ', ' + kind:<{width}} {r['env_s']:>7.0f} {r['switches']:>9d} {r['falls']:>6d} "
              f"{per[name, kind]:>13.2f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
