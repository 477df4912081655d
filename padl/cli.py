"""`padl`: train PADL skill experts, evaluate them, and record their rollouts for distillation.

    padl train-expert LIB CLIP [CLIP ...] --out DIR [--backend auto|mujoco|mjx] [--steps N] [--resume | --force]
    padl train-experts LIB [--clips ID ...] --out DIR [--jobs J | --ray-address ADDR]
    padl eval CHECKPOINT LIB [--clips ID ...] [--episodes K] --json OUT
    padl record CHECKPOINT LIB --out FILE [--steps T] [--num-envs N] [--noise S]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import rendering  # noqa: F401  (first: chooses MuJoCo's OpenGL backend before anything imports mujoco)
from motions import entry, interrupts
from motions import options as O
from motions.clip import LibraryError
from padl.config import replace


class CliError(Exception):
    """A user-facing problem, reported as one line."""


def _library(path: Path, clips=None):
    from motions.library import MotionLibrary

    lib = MotionLibrary(path, include_flagged=True)
    missing = [c for c in clips or () if c not in lib.clip_ids]
    if missing:
        raise CliError(f"{path}: no clip {missing[0]!r} in this library")
    return lib


def _expert_config(args, clips: tuple[str, ...], threads: int = 0):
    from padl.expert import ExpertConfig

    cfg = ExpertConfig()
    env = replace(cfg.env, clips=clips, physics=dict(backend=args.backend, num_threads=threads),
                  episode=dict(hold_s=args.hold_s), starts=dict(fall_starts=args.fall_starts),
                  **({"num_envs": args.num_envs} if args.num_envs is not None else {}))
    cfg = dataclasses.replace(cfg, env=env, seed=args.seed)
    for name in ("eval_every", "eval_episodes", "eval_hold_s", "checkpoint_every"):
        if getattr(args, name, None) is not None:
            cfg = dataclasses.replace(cfg, **{name: getattr(args, name)})
    if args.steps is not None:  # total environment samples -> iterations of rollout_steps x num_envs
        cfg = dataclasses.replace(cfg, iterations=math.ceil(args.steps / (cfg.rollout_steps * env.num_envs)))
    return cfg


def _finetune_config(args, cfg):
    """The config of a run started from `--init-from`: that run's (networks and rewards must match), with this
    call's environment choices and starts; early stopping is off, since its evaluation from the clip's start does
    not see what fine-tuning is for."""
    from padl.config import from_dict
    from padl.expert import ExpertConfig
    from padl.policy import load_source

    meta, _ = load_source(args.init_from)
    source = from_dict(ExpertConfig, meta["expert"])
    env = replace(source.env, clips=cfg.env.clips,
                  physics=dict(backend=cfg.env.physics.backend, num_threads=cfg.env.physics.num_threads),
                  num_envs=source.env.num_envs if args.num_envs is None else args.num_envs,
                  episode=dict(recover_s=args.recover_s, recover_follow=args.recover_follow is not None,
                               follow_heading=args.recover_follow != "position", hold_s=args.hold_s),
                  starts=dict(foreign_share=args.foreign_starts, fall_starts=args.fall_starts,
                              foreign_clips=tuple(args.foreign_clips) if args.foreign_clips else None,
                              init_noise=args.start_noise,
                              state_starts=str(args.state_starts.resolve()) if args.state_starts else None))
    iterations = source.iterations if args.steps is None else math.ceil(args.steps / (source.rollout_steps * env.num_envs))
    return dataclasses.replace(source, env=env, seed=cfg.seed, iterations=iterations, stop_success=2.0,
                               eval_every=cfg.eval_every, eval_episodes=cfg.eval_episodes,
                               eval_hold_s=cfg.eval_hold_s, checkpoint_every=cfg.checkpoint_every)


def train_one(lib_path: str, clip: str, out: str, args: dict, threads: int = 0) -> dict:
    """Train (or resume) the expert of one clip; importable by worker processes and Ray tasks."""
    from padl.expert import train

    ns = argparse.Namespace(**args)
    lib = _library(Path(lib_path), [clip])
    cfg = _expert_config(ns, (clip,), threads)
    result = train(lib, out, cfg, resume=True, progress=False, log=lambda m: print(f"[{clip}] {m}", flush=True),
                   iterations=cfg.iterations if ns.steps is not None else None,
                   time_limit_s=ns.minutes * 60 if ns.minutes is not None else None)
    return {"clip": clip, **result}


def cmd_train_expert(args) -> None:
    from padl.expert import train

    lib = _library(args.lib, list(args.clip) + list(args.foreign_clips or []))
    out = args.out
    state = out / "train_state.json"
    if args.resume and not state.exists():
        raise CliError(f"{state}: no run to resume (drop --resume to start a new one)")
    if state.exists() and not (args.resume or args.force):
        raise CliError(f"{out}: a run already exists here; pass --resume to continue it, --force to start over, or "
                       "choose another --out")
    cfg = _expert_config(args, tuple(args.clip), args.threads)
    if args.init_from is not None and not args.resume:
        cfg = _finetune_config(args, cfg)
    if args.state_starts is not None:
        from padl.env import load_state_starts

        if not args.foreign_starts:
            raise CliError("--state-starts: give --foreign-starts too (the share of starts it takes)")
        try:
            load_state_starts(args.state_starts, lib.character.model.nq, lib.character.model.nv)
        except ValueError as e:
            raise CliError(str(e)) from None
    result = train(lib, out, cfg, resume=args.resume, iterations=cfg.iterations if args.steps is not None else None,
                   progress=not args.quiet and sys.stderr.isatty(),
                   time_limit_s=args.minutes * 60 if args.minutes is not None else None,
                   init_from=None if args.resume else args.init_from, force=args.force)
    print(json.dumps({"clips": args.clip, **result}))


def cmd_train_experts(args) -> None:
    lib = _library(args.lib, args.clips)
    clips = list(args.clips or lib.clip_ids)
    settings = {k: v for k, v in vars(args).items()
                if k in ("backend", "num_envs", "steps", "seed", "minutes", "eval_every", "eval_episodes",
                          "eval_hold_s", "checkpoint_every", "hold_s", "fall_starts")}
    jobs = [(str(args.lib), c, str(args.out / c), settings) for c in clips]
    if args.ray_address:
        import ray

        ray.init(address=None if args.ray_address == "local" else args.ray_address,
                 **({"num_cpus": args.jobs} if args.ray_address == "local" and args.jobs is not None else {}),
                 include_dashboard=False, log_to_driver=True)
        remote = ray.remote(num_cpus=1)(train_one)
        results = ray.get([remote.remote(*job, 1) for job in jobs])
    else:
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing

        workers = args.jobs if args.jobs is not None else max(1, min(len(jobs), (os.cpu_count() or 1)))
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(train_one, *zip(*jobs), [threads] * len(jobs)))
    for r in results:
        print(json.dumps(r))


def cmd_eval(args) -> None:
    from padl.evaluate import evaluate_policy
    from padl.policy import ExpertPolicy

    policy = ExpertPolicy.load(args.checkpoint)
    meta = policy.meta
    clips = list(args.clips or meta["clips"])
    lib = _library(args.lib, clips)
    if lib.data.qpos.shape[1] != meta["action_size"] + 7:
        raise CliError(f"{args.lib}: library character does not match the policy's ({meta['character']})")
    env_cfg = replace(policy.env, physics=dict(backend=args.backend))
    result = evaluate_policy(lib, lambda s: policy.act(s.obs), clips, args.episodes, args.noise, args.seconds,
                             env_cfg)
    head = f"{'clip':<36} {'success':>8} {'G-MPJPE mm':>11} {'L-MPJPE mm':>11} {'root mm':>8} {'frames':>7}"
    print(head + "\n" + "-" * len(head))
    for clip, m in result.items():
        print(f"{clip:<36} {m['success']:>8.0%} {m['g_mpjpe_mm']:>11.1f} {m['l_mpjpe_mm']:>11.1f} "
              f"{m['root_error_mm']:>8.1f} {m['frames']:>7.0f}")
    if args.json is not None:  # its folder was checked writable when parsed, before the evaluation
        from padl.checkpoint import write_json_atomic

        try:
            write_json_atomic(args.json, result)
        except OSError as e:
            raise CliError(f"{args.json}: cannot write ({e.strerror or e})") from None


def cmd_record(args) -> None:
    from padl.policy import ExpertPolicy
    from padl.rollouts import record

    meta = ExpertPolicy.load(args.checkpoint).meta  # refuses a foreign or corrupted checkpoint before the library loads
    lib = _library(args.lib, meta["clips"])
    path = record(args.checkpoint, lib, args.out, args.steps, args.num_envs, args.noise, args.seed, args.backend)
    print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    p = O.Parser(prog="padl", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def training(q):
        q.add_argument("--backend", default="auto", choices=["auto", "mujoco", "mjx"])
        q.add_argument("--steps", type=O.positive_int, help="total environment samples (default: the config's "
                                                            "iterations)")
        q.add_argument("--num-envs", type=O.num_envs, help="parallel environments (default 64)")
        q.add_argument("--minutes", type=O.positive_float,
                       help="wall-clock budget of this call (a checkpoint is written)")
        q.add_argument("--seed", type=O.seed, default=0)
        q.add_argument("--eval-every", type=O.positive_int, help="iterations between evaluations (default 25)")
        q.add_argument("--eval-episodes", type=O.positive_int,
                       help="episodes per clip of each evaluation, which picks the policy kept (default 4; more "
                            "costs little and picks less by luck)")
        q.add_argument("--eval-hold-s", type=O.nonneg_float,
                       help="evaluation episodes of a non-looping clip go on this long past its end (default: "
                            "--hold-s within 10 s); long holds pick a policy that stands as long as a user holds it")
        q.add_argument("--checkpoint-every", type=O.positive_int, help="iterations between checkpoints (default 10)")
        q.add_argument("--hold-s", type=O.nonneg_float, default=0.0,
                       help="episodes of a non-looping clip go on this long past its end, its last frame held still "
                            "(practice for standing after the skill; default 0: they end with the clip)")
        q.add_argument("--fall-starts", type=O.fraction, default=0.0,
                       help="share of a get-up clip's starts where a simulated fall left the character (default 0)")

    t = sub.add_parser("train-expert", help="train (or resume) the expert of one clip (or of several at once)")
    t.add_argument("lib", type=Path)
    t.add_argument("clip", nargs="+", help="clip id; several make one expert that tracks whichever it is given")
    t.add_argument("--out", type=Path, required=True)
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in --out (its train_state)")
    again.add_argument("--force", action="store_true",
                       help="start a new run in --out even over an earlier run and the policy it kept")
    t.add_argument("--threads", type=O.nonneg_int, default=0, help="MuJoCo C threads (default: all CPUs)")
    t.add_argument("--quiet", action="store_true")
    t.add_argument("--init-from", type=Path, help="an expert run or policy export of these clips to fine-tune (a "
                   "new run); a policy alone (RUN/policy) may be of other clips")
    t.add_argument("--foreign-starts", type=O.fraction, default=0.0,
                   help="with --init-from: share of starts in another clip's state (practice for command switches)")
    t.add_argument("--foreign-clips", nargs="+", help="with --foreign-starts: the clips whose states they take "
                   "(default: all of the library)")
    t.add_argument("--state-starts", type=Path, metavar="NPZ",
                   help="with --foreign-starts: those starts take these simulated states instead of other clips' "
                   "reference states (`superpadl handover-states` records where the runtime hands commands over)")
    t.add_argument("--start-noise", type=O.nonneg_float, default=0.0,
                   help="with --init-from: std of the noise on every start's joint angles (rad; their velocities 10x): "
                   "the runtime hands a skill states near a reference, never on it (default 0)")
    t.add_argument("--recover-s", type=O.nonneg_float, default=1.0,
                   help="with --init-from: seconds into a clip without body-error terminations (default 1)")
    t.add_argument("--recover-follow", nargs="?", const="heading", choices=("heading", "position"),
                   help="with --init-from: in those seconds the reference stays anchored at the character (room to "
                   "brake), at its position and heading, or at its position alone (the heading stays the command's)")
    training(t)
    t.set_defaults(func=cmd_train_expert)

    m = sub.add_parser("train-experts", help="one expert per clip, in parallel locally or on a Ray cluster")
    m.add_argument("lib", type=Path)
    m.add_argument("--clips", nargs="+")
    m.add_argument("--out", type=Path, required=True, help="one sub-folder per clip; existing runs are resumed")
    m.add_argument("--jobs", type=O.positive_int, help="clips trained at once (default: one per CPU, at most the clip count)")
    m.add_argument("--ray-address", help="Ray cluster address, or 'local' to start a local Ray instance")
    training(m)
    m.set_defaults(func=cmd_train_experts)

    e = sub.add_parser("eval", help="success and MPJPE of an expert, per clip, from each clip's start")
    e.add_argument("checkpoint", type=Path, help="an expert's folder or its policy checkpoint")
    e.add_argument("lib", type=Path)
    e.add_argument("--clips", nargs="+")
    e.add_argument("--episodes", type=O.positive_int, default=4)
    e.add_argument("--noise", type=O.nonneg_float, default=0.02, help="initial-state perturbation (rad)")
    e.add_argument("--seconds", type=O.positive_float, default=10.0, help="episode length for looping clips")
    e.add_argument("--backend", default="mujoco", choices=["mujoco", "mjx"])
    e.add_argument("--json", type=O.output_file, help="write the result here (its folder must exist)")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("record", help="record an expert's (observation, action, reference) trajectories")
    r.add_argument("checkpoint", type=Path)
    r.add_argument("lib", type=Path)
    r.add_argument("--out", type=Path, required=True, help="output name (writes NAME.npz and NAME.json)")
    r.add_argument("--steps", type=O.positive_int, default=300)
    r.add_argument("--num-envs", type=O.num_envs, default=64)
    r.add_argument("--noise", type=O.nonneg_float, default=0.0,
                   help="scale of the expert's action noise while recording")
    r.add_argument("--seed", type=O.seed, default=0)
    r.add_argument("--backend", default="mujoco", choices=["mujoco", "mjx"])
    r.set_defaults(func=cmd_record)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from padl.checkpoint import CheckpointError

    interrupts.terminate_as_interrupt()
    entry.prepare()
    try:
        with interrupts.as_interrupt():
            args.func(args)
    except (CliError, CheckpointError, LibraryError) as e:
        print(f"padl: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # the last checkpoint of a training run stays, for --resume
        return interrupts.report("padl", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
