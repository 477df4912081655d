"""Expert training benchmark: learning curve and end-to-end throughput of `padl.expert.train` on one clip.

    python benchmarks/expert_training.py --library LIB [--clip deepmimic_walk] [--backend mujoco] [--minutes 60]
                                         [--num-envs 64] [--epochs E] [--minibatches M] [--out runs/bench_expert]
                                         [--resume]
    python benchmarks/expert_training.py --library LIB --profile 23 [--warmup 2] [--out runs/bench_expert_profile]

Trains until early stopping (success 100 % and G-MPJPE under the threshold) or the time budget, with the
run's own evaluation every `eval_every` iterations, and writes the learning curve (wall time, samples,
success, G-MPJPE, ...) to `<out>/progress.jsonl` (one JSON object per evaluation). Then prints the curve and a
table of the end-to-end training rate (samples/s, i.e. control steps of all envs per second of wall time,
including policy, discriminator and PPO updates and evaluations) against the raw physics rate of the same
backend and batch measured in the same run (bare mujoco.batch / bare vmapped mjx.step, 4 substeps per sample).

`--profile N` instead trains a new run in --out for `--warmup` + N iterations and prints where the N iterations after
the warm-up spent their wall time (`training_profile`): physics, policy inference, observation/reward, discriminator,
PPO update, evaluation (at its steady rate, one per eval_every iterations), checkpointing and logging, host<->device
copies and the rest, per iteration and as shares, with the end-to-end samples/s against the raw physics rate of the
same run; also written to <out>/profile.json. warmup + N = eval_every (the default 2 + 23) ends the run on its
periodic evaluation. Its timers block on each call's result, which costs the trainer the little overlap of dispatch
with work it had: the end-to-end rate is a little below an untimed run's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import training_profile as TP  # noqa: E402
from env_throughput import mjx_raw_rate, raw_rate  # noqa: E402

from motions.library import MotionLibrary  # noqa: E402
from padl.config import replace  # noqa: E402
from padl.env import ImitationEnv  # noqa: E402
from padl.expert import ExpertConfig, train  # noqa: E402


FUSED = "policy + observation/reward: env.fuse's jitted call, copies"


def profile(library: MotionLibrary, cfg: ExpertConfig, out: Path, warmup: int, iterations: int) -> dict:
    """Train a new run for warmup + iterations and time the last `iterations` (`training_profile`)."""
    from tensorboardX import SummaryWriter

    from padl import checkpoint, expert, ppo

    prof = TP.Profile(warmup)
    TP.patch_run(prof)
    TP.patch_env(prof)
    fuse = ImitationEnv.fuse  # the trainer's control step: physics (timed inside), then one jitted call
    ImitationEnv.fuse = lambda self, after: prof.wrap(fuse(self, after), FUSED)
    prof._undo.append((ImitationEnv, "fuse", fuse))
    prof.patch(expert, "_begin", TP.POLICY)
    for owner, name in ((expert, "_rewards"), (expert, "disc_phase"), (ImitationEnv, "reference_disc_obs")):
        prof.patch(owner, name, TP.DISC)
    for name in ("update", "value", "hold_policy"):
        prof.patch(ppo, name, TP.UPDATE)
    prof.patch(checkpoint, "save", TP.CKPT, absorb=True)
    prof.patch(SummaryWriter, "add_scalar", TP.CKPT, absorb=True)
    try:
        train(library, out, cfg, iterations=warmup + iterations, progress=False, force=True, log=lambda *a: None)
        prof.stop()
    finally:
        prof.restore()
    env = ImitationEnv(library, cfg.env)
    raw = raw_rate(env, os.cpu_count() or 1, 3.0) if env.backend == "mujoco" else mjx_raw_rate(env, 3.0)
    order = [TP.PHYSICS, FUSED, TP.POLICY, TP.DISC, TP.UPDATE, TP.EVAL, TP.CKPT]
    return prof.result(iterations, cfg.rollout_steps * env.num_envs, raw, env.substeps, order, cfg.eval_every)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", type=Path, required=True)
    ap.add_argument("--clip", default="deepmimic_walk")
    ap.add_argument("--backend", default="mujoco", choices=["mujoco", "mjx"])
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--out", type=Path, help="default runs/bench_expert (with --profile: runs/bench_expert_profile)")
    ap.add_argument("--resume", action="store_true", help="continue a run in --out (its time budget restarts)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="profile N iterations of a new run in --out (overwritten) instead of the learning curve")
    ap.add_argument("--warmup", type=int, default=2, help="iterations before the profiled ones")
    ap.add_argument("--epochs", type=int, help="PPO epochs per iteration (default: ExpertConfig's); with "
                    "--minibatches, for curves of learning per wall-clock second")
    ap.add_argument("--minibatches", type=int, help="PPO minibatches per epoch (default: ExpertConfig's)")
    args = ap.parse_args(argv)
    args.out = args.out or Path("runs/bench_expert_profile" if args.profile else "runs/bench_expert")

    library = MotionLibrary(args.library, clips=[args.clip], include_flagged=True)
    base = ExpertConfig()
    cfg = replace(base, eval_every=args.eval_every, env=dict(num_envs=args.num_envs, physics=dict(backend=args.backend),
                                                             clips=(args.clip,)),
                  ppo=dict(num_epochs=args.epochs or base.ppo.num_epochs,
                           num_minibatches=args.minibatches or base.ppo.num_minibatches))
    if args.profile:
        r = profile(library, cfg, args.out, args.warmup, args.profile)
        TP.print_table(f"expert training profile: {args.clip}, {args.backend}, {args.num_envs} envs x "
                       f"{cfg.rollout_steps} steps per iteration, evaluation every {cfg.eval_every}", r)
        TP.save(args.out / "profile.json", {"stage": "expert", "clip": args.clip, "backend": args.backend, **r})
        return 0
    meta = args.out / "train_state.json"
    samples0 = json.loads(meta.read_text())["config"]["samples"] if args.resume and meta.exists() else 0
    t0 = time.time()
    # only early stopping or the time budget end the run (the default iteration cap ended a 60-minute run at 41)
    kept = train(library, args.out, cfg, resume=args.resume, iterations=10**9, time_limit_s=args.minutes * 60,
                 progress=False)
    wall = time.time() - t0
    curve = [json.loads(line) for line in (args.out / "progress.jsonl").read_text().splitlines() if line.strip()]

    env = ImitationEnv(library, cfg.env)
    if args.backend == "mujoco":
        raw = raw_rate(env, os.cpu_count() or 1, 3.0)
    else:
        raw = mjx_raw_rate(env, 3.0)
    print(f"\nlearning curve ({args.out / 'progress.jsonl'}):")
    print(f"{'iter':>6} {'samples':>10} {'wall min':>9} {'success':>8} {'G-MPJPE mm':>11} {'L-MPJPE mm':>11} {'tracking':>9}")
    for row in curve:
        print(f"{row['iteration']:>6} {row['samples']:>10,} {row['wall_s'] / 60:>9.1f} {row['success']:>8.0%} "
              f"{row['g_mpjpe_mm']:>11.1f} {row['l_mpjpe_mm']:>11.1f} {row['tracking']:>9.3f}")
    samples = json.loads(meta.read_text())["config"]["samples"]
    first = next((r for r in curve if r["success"] >= 1.0 and r["g_mpjpe_mm"] <= cfg.stop_g_mpjpe_mm), None)
    rate = (samples - samples0) / max(wall, 1e-9)  # compile time and evaluations included
    head = f"{'backend':<8} {'envs':>5} {'samples/s':>10} {'phys/s (x4)':>12} {'raw phys/s':>11} {'train/raw':>10}"
    print("\n" + head + "\n" + "-" * len(head))
    print(f"{args.backend:<8} {args.num_envs:>5} {rate:>10,.0f} {4 * rate:>12,.0f} {raw:>11,.0f} {4 * rate / raw:>10.0%}")
    print(f"\nkept policy (best evaluation): success {kept.get('success', 0):.0%}, "
          f"G-MPJPE {kept.get('g_mpjpe_mm', float('nan')):.1f} mm; "
          + (f"target (100 % success, G-MPJPE <= {cfg.stop_g_mpjpe_mm:.0f} mm) reached after "
             f"{first['wall_s'] / 60:.1f} min of this run's curve" if first else "target not reached"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
