"""Expert training benchmark: learning curve and end-to-end throughput of `padl.expert.train` on one clip.

    python benchmarks/expert_training.py --library LIB [--clip deepmimic_walk] [--backend mujoco] [--minutes 60]
                                         [--num-envs 64] [--variants 4x4 2x4] [--eval-episodes 10]
                                         [--out runs/bench_expert] [--resume]
    python benchmarks/expert_training.py --library LIB --profile 23 [--warmup 2] [--out runs/bench_expert_profile]

Trains until early stopping (success 100 % and G-MPJPE under the threshold) or the time budget, with the
run's own evaluation every `eval_every` iterations (10 episodes: the bar is all of them), and writes the learning curve (wall time, samples,
success, G-MPJPE, ...) to `<out>/progress.jsonl` (one JSON object per evaluation). Then prints the curve and a
table of the end-to-end training rate (samples/s, i.e. control steps of all envs per second of wall time,
including policy, discriminator and PPO updates and evaluations) against the raw physics rate of the same
backend and batch measured in the same run (bare mujoco.batch / bare vmapped mjx.step, 4 substeps per sample).
`--variants 4x4 2x4` trains one run per PPO epochs x minibatches setting, one after the other, and compares their
learning per wall-clock second in one table (minutes to the bar).

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
    ap.add_argument("--variants", nargs="+", metavar="ExM",
                    help="PPO epochs x minibatches per iteration, e.g. 4x4 2x4: one run each (in --out/ExM) for "
                    "--minutes, compared in one table: learning per wall-clock second (default: ExpertConfig's)")
    ap.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (the bar: all succeed)")
    args = ap.parse_args(argv)
    args.out = args.out or Path("runs/bench_expert_profile" if args.profile else "runs/bench_expert")

    library = MotionLibrary(args.library, clips=[args.clip], include_flagged=True)
    cfg = replace(ExpertConfig(), eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                  env=dict(num_envs=args.num_envs, physics=dict(backend=args.backend), clips=(args.clip,)))
    if args.profile:
        r = profile(library, cfg, args.out, args.warmup, args.profile)
        TP.print_table(f"expert training profile: {args.clip}, {args.backend}, {args.num_envs} envs x "
                       f"{cfg.rollout_steps} steps per iteration, evaluation every {cfg.eval_every}", r)
        TP.save(args.out / "profile.json", {"stage": "expert", "clip": args.clip, "backend": args.backend, **r})
        return 0
    env = ImitationEnv(library, cfg.env)
    raw = raw_rate(env, os.cpu_count() or 1, 3.0) if args.backend == "mujoco" else mjx_raw_rate(env, 3.0)
    rows = []
    for variant in args.variants or [f"{cfg.ppo.num_epochs}x{cfg.ppo.num_minibatches}"]:
        epochs, minibatches = map(int, variant.split("x"))
        out = args.out / variant if args.variants else args.out
        rows.append((variant, curve_run(library, replace(cfg, ppo=dict(num_epochs=epochs, num_minibatches=minibatches)),
                                        out, args)))
    head = (f"{'epochs x minibatches':<20} {'samples/s':>10} {'phys/s (x4)':>12} {'train/raw':>10} "
            f"{'to the bar':>10} {'kept success':>12} {'kept G-MPJPE':>12}")
    print(f"\n{args.clip}, {args.backend}, {args.num_envs} envs, {args.minutes:g} min per run, evaluation every "
          f"{cfg.eval_every} iterations of {cfg.eval_episodes} episodes; raw threaded physics {raw:,.0f} steps/s")
    print(head + "\n" + "-" * len(head))
    for variant, r in rows:
        bar = "-" if r["first"] is None else f"{r['first']['wall_s'] / 60:.1f} min"
        print(f"{variant:<20} {r['rate']:>10,.0f} {4 * r['rate']:>12,.0f} {4 * r['rate'] / raw:>10.0%} {bar:>10} "
              f"{r['kept'].get('success', 0):>12.0%} {r['kept'].get('g_mpjpe_mm', float('nan')):>9.1f} mm")
    return 0


def curve_run(library: MotionLibrary, cfg: ExpertConfig, out: Path, args) -> dict:
    """Train (or resume) one run in `out` until early stopping or --minutes; print its learning curve."""
    meta = out / "train_state.json"
    samples0 = json.loads(meta.read_text())["config"]["samples"] if args.resume and meta.exists() else 0
    t0 = time.time()
    # only early stopping or the time budget end the run (the default iteration cap ended a 60-minute run at 41)
    kept = train(library, out, cfg, resume=args.resume, iterations=10**9, time_limit_s=args.minutes * 60,
                 progress=False, force=not args.resume)
    wall = time.time() - t0
    curve = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines() if line.strip()]
    print(f"\nlearning curve ({out / 'progress.jsonl'}):")
    print(f"{'iter':>6} {'samples':>10} {'wall min':>9} {'success':>8} {'G-MPJPE mm':>11} {'L-MPJPE mm':>11} {'tracking':>9}")
    for row in curve:
        print(f"{row['iteration']:>6} {row['samples']:>10,} {row['wall_s'] / 60:>9.1f} {row['success']:>8.0%} "
              f"{row['g_mpjpe_mm']:>11.1f} {row['l_mpjpe_mm']:>11.1f} {row['tracking']:>9.3f}")
    samples = json.loads(meta.read_text())["config"]["samples"]
    first = next((r for r in curve if r["success"] >= 1.0 and r["g_mpjpe_mm"] <= cfg.stop_g_mpjpe_mm), None)
    return {"rate": (samples - samples0) / max(wall, 1e-9),  # compile time and evaluations included
            "first": first, "kept": kept}


if __name__ == "__main__":
    sys.exit(main())
