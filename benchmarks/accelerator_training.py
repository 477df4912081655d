"""Multi-clip expert training on the MJX backend: how far a time budget goes on an accelerator.

    python benchmarks/accelerator_training.py LIB --out RUN [--clips ID ...] [--num-envs 4096] [--minibatches 32]
                                              [--minutes 6] [--resume]

First the environment alone (zero actions) against bare vmapped `mjx.step` and, as the baseline, bare MuJoCo C
(`mujoco.batch`) on all of this host's CPUs, at the same batch, in the same run; then one expert tracking every clip
(or `--clips`) trained for `--minutes` (`padl.expert.train`, evaluation on the CPU backend every 10 iterations, one
episode per clip) and its learning curve as a table: wall clock, samples, samples/s, success and G-MPJPE.
`--resume` continues RUN for another `--minutes` (the env table is skipped).

With a few thousand envs a batch is 100k+ samples, so the PPO minibatches are more (default 32 of ~4k samples) to
keep the number of gradient steps per sample near the CPU recipe's (64 envs, 4 minibatches of 512).
Needs a GPU to be worth running; on a CPU it works, slowly (use --num-envs 64).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "disable")  # no rendering here; a GPU machine may lack libEGL

import jax  # noqa: E402

from benchmarks.env_throughput import env_rate, mjx_raw_rate, raw_rate  # noqa: E402
from motions.library import MotionLibrary  # noqa: E402
from padl.config import replace  # noqa: E402
from padl.env import EnvConfig, ImitationEnv, PhysicsConfig  # noqa: E402
from padl.expert import ExpertConfig, train  # noqa: E402


def env_table(library: MotionLibrary, clips: tuple[str, ...], n: int) -> None:
    mjx_env = ImitationEnv(library, EnvConfig(num_envs=n, clips=clips, physics=PhysicsConfig(backend="mjx")))
    rate, compile_s, _ = env_rate(mjx_env, 10.0)
    rows = [("MuJoCo C, bare (baseline)", raw_rate(ImitationEnv(library, EnvConfig(
        num_envs=n, clips=clips, physics=PhysicsConfig(backend="mujoco"))), 0, 10.0)),
            ("MJX, bare mjx.step", mjx_raw_rate(mjx_env, 10.0)),
            ("MJX, ImitationEnv.step", rate * mjx_env.substeps)]
    print(f"{n} envs on {jax.devices()[0].platform} (env compile {compile_s:.0f} s; {os.cpu_count()} CPUs)")
    print(f"{'physics':<28} {'physics steps/s':>16} {'vs baseline':>12}")
    for name, r in rows:
        print(f"{name:<28} {r:>16,.0f} {r / rows[0][1]:>11.1f}x")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("library", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--clips", nargs="+")
    p.add_argument("--num-envs", type=int, default=4096)
    p.add_argument("--minibatches", type=int, default=32)
    p.add_argument("--minutes", type=float, default=6.0)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    library = MotionLibrary(args.library)
    clips = tuple(args.clips or library.clip_ids)
    if not args.resume:
        env_table(library, clips, args.num_envs)
    base = ExpertConfig()
    cfg = dataclasses.replace(base, env=replace(base.env, num_envs=args.num_envs, clips=clips,
                                                physics=dict(backend="mjx")),
                              ppo=dataclasses.replace(base.ppo, num_minibatches=args.minibatches),
                              eval_every=10, eval_episodes=1, checkpoint_every=50, iterations=10 ** 6)
    t = time.time()
    train(library, args.out, cfg, resume=args.resume, progress=False, time_limit_s=args.minutes * 60)
    print(f"trained {time.time() - t:.0f} s")
    # wall_s counts from the start of each call (it restarts on --resume): rates are between evaluations of a call
    print(f"{'wall s':>7} {'samples':>12} {'samples/s':>10} {'success':>8} {'G-MPJPE mm':>11}")
    last = None
    for line in open(args.out / "progress.jsonl"):
        r = json.loads(line)
        rate = f"{(r['samples'] - last['samples']) / (r['wall_s'] - last['wall_s']):,.0f}" \
            if last and r["wall_s"] > last["wall_s"] else ""
        print(f"{r['wall_s']:>7.0f} {r['samples']:>12,} {rate:>10} {r['success']:>8.0%} {r['g_mpjpe_mm']:>11.1f}")
        last = r
    return 0


if __name__ == "__main__":
    sys.exit(main())
