"""How well experts recover from a command switch: falls of experts tracking their clips with and without switches.

    python benchmarks/expert_switches.py LIB --experts DIR [DIR ...] [--candidate DIR [DIR ...]]
        [--rate 0.5] [--end-share 1] [--seconds 10] [--foreign-clips CLIP ...]

A batch of 64 envs on the experts' clips (reference-state starts) is driven by the experts alone
(`teachers.ExpertTeachers`), once without switches and once with envs switching as group training with
`switch_rate` does (`groups.draw_switches`: at `--rate` per second once 0.5 s into a clip, and at a share
`--end-share` of non-looping clip ends, to another clip), whose reference `ImitationEnv.switch` re-anchors where the
character stands, as a user's command does at run time. The body-error termination is off, so a fall is the only
end. With `--foreign-clips`, a third row starts every env in a reference state of one of those clips (e.g. a sprint)
at its own clip's first frame (`EnvConfig.foreign_share`) and counts falls within 3 s: the switches the experts' own
clips cannot produce; `--per-clip` adds a row per foreign clip. The reference follows the character in a clip's first second when the experts were trained so
(`recover_follow`), as `ExpertController` does at run time. `--candidate` runs the same for another set of experts of
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from motions.library import MotionLibrary  # noqa: E402
from padl.env import EnvConfig, ImitationEnv  # noqa: E402
from superpadl import student as S  # noqa: E402
from superpadl.groups import draw_switches  # noqa: E402
from superpadl.teachers import load_experts  # noqa: E402


def _env(lib, teachers, clips, envs: int, **extra) -> ImitationEnv:
    """The experts' clips with their observation settings; a fall is the only end, and the reference follows the
    character in a clip's first second when the experts learnt so."""
    base = teachers.env_config()
    return ImitationEnv(lib, EnvConfig(num_envs=envs, backend="mujoco", action_mode="absolute", clips=tuple(clips),
                                       ref_frames=base.ref_frames, disc_frames=base.disc_frames, max_body_error=1e6,
                                       recover_s=1.0, recover_follow=base.recover_follow, **extra))


def run(lib, teachers, clips, rate: float, end_share: float, seconds: float, seed: int = 0) -> dict:
    env = _env(lib, teachers, clips, 64)
    cfg = env.config
    idx, ends = jnp.asarray([lib.index(c) for c in clips]), S.clip_ends(lib)
    draw = jax.jit(lambda k, clip, time: draw_switches(k, clip, time, jnp.ones(len(clips)), idx, ends, rate,
                                                       end_share, 1.0 / cfg.control_hz))
    key = jax.random.key(seed)
    state = env.reset(key)
    switches = falls = 0
    t0 = time.time()
    steps = int(seconds * cfg.control_hz)
    for _ in range(steps):
        key, k = jax.random.split(key)
        if rate > 0 or end_share > 0:
            mask, new = draw(k, state.clip, state.clip_time)
            state, switches = env.switch(state, mask, new), switches + int(mask.sum())
        state = env.step(state, teachers.act(state))
        falls += int(np.sum(state.info["fell"]))
    return {"env_s": steps * env.num_envs / cfg.control_hz, "switches": switches, "falls": falls,
            "wall_s": time.time() - t0}


def foreign(lib, teachers, clips, foreign_clips, after_s: float = 3.0, envs: int = 128) -> dict:
    """Falls within after_s of a start in another clip's state, the own clip beginning at its first frame."""
    env = _env(lib, teachers, clips, envs, foreign_share=1.0, foreign_clips=tuple(foreign_clips), end_with_clip=False,
               episode_length_s=after_s + 1.0)
    cfg = env.config
    state, fell = env.reset(jax.random.key(1)), np.zeros(envs, bool)
    t0, steps = time.time(), int(after_s * cfg.control_hz)
    for _ in range(steps):
        state = env.step(state, teachers.act(state))
        fell |= np.asarray(state.info["fell"])
    return {"env_s": steps * envs / cfg.control_hz, "switches": envs, "falls": int(fell.sum()),
            "wall_s": time.time() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lib", type=Path)
    p.add_argument("--experts", type=Path, nargs="+", required=True)
    p.add_argument("--candidate", type=Path, nargs="+", help="other experts of the same clips, to compare")
    p.add_argument("--rate", type=float, default=0.5, help="switches per second")
    p.add_argument("--end-share", type=float, default=1.0, help="share of non-looping clip ends that switch")
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
        rows[name, "no switches"] = run(lib, teachers, clips, 0.0, 0.0, args.seconds)
        if len(clips) > 1:  # a switch goes to another of the experts' clips
            rows[name, "switches"] = run(lib, teachers, clips, args.rate, args.end_share, args.seconds)
        if args.foreign_clips:
            rows[name, "foreign starts"] = foreign(lib, teachers, clips, args.foreign_clips)
            for c in args.foreign_clips if args.per_clip else []:
                rows[name, f"from {c}"] = foreign(lib, teachers, clips, [c], envs=64)
    per = {k: r["falls"] / r["switches"] if r["switches"] else float("nan") for k, r in rows.items()}
    print(f"{len(clips)} clips, {args.rate:g} switches/s and {args.end_share:.0%} of clip ends")
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
