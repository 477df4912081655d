"""Distillation training profile: where `distill groups` and `distill global` spend an iteration's wall time.

    python benchmarks/distill_training.py [--library libs/default] [--experts models/teachers] [--groups DIR]
                                          [--stages groups-bc groups-padl global] [--profile 23] [--warmup 2]
                                          [--num-envs 64 [192 ...]] [--out runs/bench_distill_profile]
                                          [--recipe configs/default.toml]

Each stage trains a new run in <out>/<stage> with its trainer's default configuration for `--warmup` + `--profile`
iterations and times the last `--profile` (`training_profile`; warmup + profile = eval_every, 25, ends the run on its
periodic evaluation): physics, student policy inference, teacher inference, observation/reward, the student's inputs
and history, discriminator and PPO update or BC update and its data, evaluation (at its steady rate), checkpointing and
logging, host<->device copies and the rest, per iteration and as shares, with the end-to-end samples/s against the raw
threaded physics rate of the same batch measured in the same run. Several `--num-envs` profile each stage at each
batch size in turn (the first is the baseline), in <out>/<stage>@<envs>, and end with one table of them, with the whole
group stage's rate in the mix of BC and PADL iterations --recipe runs (default: configs/default.toml). All go to
<out>/profile.json.

- groups-bc: `superpadl.groups.train_group`'s DAgger warm-up (BC) on the clips the experts of --experts cover.
- groups-padl: its PADL phase (PPO on the discriminator reward plus BC), started at once (no warm-up).
- global: `superpadl.global_policy.train_global` (DAgger) with the group controllers of --groups as teachers, or,
  without --groups, a freshly initialised group controller of those clips: the cost is measured, not the learning
  (an untrained teacher's characters fall more often, and each restart costs a reference past).

The library: `motions import $(grep -v '^#' models/default/sources.txt | sed 's#^#../shared/data/#') --out libs/default`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import training_profile as TP  # noqa: E402
from env_throughput import raw_rate  # noqa: E402

STAGES = ("groups-bc", "groups-padl", "global")


def _patch_common(prof: TP.Profile, trainer) -> None:
    """The hooks both distillation stages share (`trainer`: the stage's module)."""
    import optax
    from tensorboardX import SummaryWriter

    from padl import checkpoint, discriminator, ppo
    from padl.env import ImitationEnv
    from superpadl.teachers import ExpertTeachers, GroupTeachers

    TP.patch_run(prof)
    TP.patch_env(prof)
    prof.patch(ppo, "act", TP.POLICY)
    prof.patch(ExpertTeachers, "act", TP.TEACHER, absorb=True)
    prof.patch(GroupTeachers, "act", TP.TEACHER, absorb=True)
    for name in ("update", "value", "hold_policy"):
        prof.patch(ppo, name, TP.UPDATE)
    prof.patch(ppo, "imitate", TP.BC)
    prof.patch(trainer, "update_normalizer", TP.BC_DATA)
    prof.patch(discriminator.ReplayBuffer, "add", TP.BC_DATA)  # in a jitted disc_phase it runs only while tracing
    prof.patch(optax, "incremental_update", TP.BC_DATA)
    prof.patch(discriminator, "reward", TP.DISC)
    prof.patch(ImitationEnv, "reference_disc_obs", TP.DISC)
    prof.patch(checkpoint, "save", TP.CKPT, absorb=True)
    prof.patch(SummaryWriter, "add_scalar", TP.CKPT, absorb=True)
    TP.patch_stack(prof, trainer)


def profile_groups(library, experts, out: Path, padl: bool, warmup: int, iterations: int, num_envs: int):
    from superpadl import groups as G
    from superpadl.teachers import load_experts

    teachers = load_experts(library, [experts])
    clips = teachers.clips(library)
    cfg = G.GroupConfig()
    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, num_envs=num_envs),
                              **({"bc_warmup_iterations": 0} if padl else {}))
    if not padl and cfg.bc_warmup_iterations < warmup + iterations:
        raise ValueError(f"the BC warm-up is {cfg.bc_warmup_iterations} iterations, fewer than {warmup + iterations}")
    prof = TP.Profile(warmup)
    _patch_common(prof, G)
    prof.patch(G, "disc_phase", TP.DISC)
    prof.patch(G._Stage, "observe", TP.STUDENT)  # history push, student input and discriminator row: one jitted call
    try:
        G.train_group(library, teachers, clips, out, cfg, iterations=warmup + iterations, progress=False,
                      force=True, log=lambda *a: None)
        prof.stop()
    finally:
        prof.restore()
    order = [TP.PHYSICS, TP.POLICY, TP.TEACHER, TP.OBS, TP.STUDENT] + \
        ([TP.DISC, TP.UPDATE] if padl else [TP.BC, TP.BC_DATA]) + [TP.EVAL, TP.CKPT, TP.GLUE, TP.STACK]
    return prof, dataclasses.replace(cfg.env, clips=tuple(clips)), cfg, order, len(clips)


def fresh_groups(library, clips):
    """A group controller of `clips` at its initial weights, as `GroupTeachers` (the global stage's teachers when no
    groups folder is given)."""
    import jax

    from padl import ppo
    from padl.config import to_dict
    from superpadl import student as S
    from superpadl.groups import GroupConfig
    from superpadl.policies import GroupPolicy
    from superpadl.teachers import GroupTeachers

    cfg = GroupConfig()
    ts = ppo.init(jax.random.key(0), S.input_size(cfg.history, len(clips)), library.character.model.nu, cfg.ppo)
    return GroupTeachers(library, [GroupPolicy(ts, {"group": to_dict(cfg), "clips": list(clips)})])


def profile_global(library, experts, groups, out: Path, warmup: int, iterations: int, num_envs: int):
    from superpadl import global_policy as GP
    from superpadl.teachers import load_experts, load_groups

    if groups is not None:
        teachers = load_groups(groups, library)
    else:
        teachers = fresh_groups(library, load_experts(library, [experts]).clips(library))
    cfg = GP.GlobalConfig()
    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, num_envs=num_envs))
    prof = TP.Profile(warmup)
    _patch_common(prof, GP)
    prof.patch(GP, "dagger_rollout", TP.SWITCH)
    prof.patch(GP, "dagger_inputs", TP.STUDENT)  # one jitted call per step each
    prof.patch(GP, "dagger_commands", TP.SWITCH)
    try:
        GP.train_global(library, teachers, out, cfg, iterations=warmup + iterations, progress=False, force=True,
                        log=lambda *a: None)
        prof.stop()
    finally:
        prof.restore()
    clips = [c for i, c in enumerate(library.clip_ids) if teachers.clip_owner[i] >= 0]
    order = [TP.PHYSICS, TP.POLICY, TP.TEACHER, TP.OBS, TP.STUDENT, TP.SWITCH, TP.BC, TP.BC_DATA, TP.EVAL, TP.CKPT, TP.GLUE,
             TP.STACK]
    return prof, dataclasses.replace(cfg.env, clips=tuple(clips)), cfg, order, len(clips)


def group_mix(recipe: Path) -> tuple[int, int]:
    """(BC warm-up, PADL) iterations of the recipe's group stage, `GroupConfig`'s defaults where it is silent (read
    from its [groups] table alone: the summary needs no motion sources)."""
    import tomllib

    from superpadl.groups import GroupConfig

    table = tomllib.loads(recipe.read_text()).get("groups", {})
    total = table.get("iterations", GroupConfig.iterations)
    bc = min(total, table.get("bc_warmup_iterations", GroupConfig.bc_warmup_iterations))
    return bc, total - bc


def whole_stage_rate(bc_rate: float, padl_rate: float, bc: int, padl: int) -> float:
    """Samples/s of a group run of `bc` warm-up and `padl` PADL iterations (the same samples per iteration)."""
    return (bc + padl) / (bc / bc_rate + padl / padl_rate)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", type=Path, default=Path("libs/default"))
    ap.add_argument("--experts", type=Path, default=Path("models/teachers"))
    ap.add_argument("--groups", type=Path, help="a groups folder for the global stage (default: a fresh controller)")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--profile", type=int, default=23, metavar="N", help="iterations timed per stage")
    ap.add_argument("--warmup", type=int, default=2, help="iterations before the timed ones")
    ap.add_argument("--num-envs", type=int, nargs="+", default=[64])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_distill_profile"))
    ap.add_argument("--recipe", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "default.toml",
                    help="whose group stage (BC warm-up and PADL iterations) the summary's whole-stage row weighs")
    args = ap.parse_args(argv)
    named = lambda stage, n: stage if len(args.num_envs) == 1 else f"{stage}@{n}"

    from motions.library import MotionLibrary
    from padl.config import replace
    from padl.env import ImitationEnv

    library = MotionLibrary(args.library, include_flagged=True)  # as the distill commands load it
    results = {}
    for stage in args.stages:
        for num_envs in args.num_envs:
            name = named(stage, num_envs)
            if stage == "global":
                prof, env_cfg, cfg, order, n_clips = profile_global(library, args.experts, args.groups,
                                                                  args.out / name, args.warmup, args.profile, num_envs)
            else:
                prof, env_cfg, cfg, order, n_clips = profile_groups(library, args.experts, args.out / name,
                                                                  stage == "groups-padl", args.warmup, args.profile,
                                                                  num_envs)
            env = ImitationEnv(library, replace(env_cfg, physics=dict(backend="mujoco")))
            T = cfg.rollout_steps
            r = prof.result(args.profile, T * env.num_envs, raw_rate(env, os.cpu_count() or 1, 3.0), env.substeps,
                            order, cfg.eval_every)
            teachers = f"groups of {args.groups}" if args.groups else "a fresh group controller"
            TP.print_table(f"{name} profile: {n_clips} clips of {args.library}, {env.num_envs} envs x {T} steps per "
                           f"iteration" + (f", teachers: {teachers}" if stage == "global" else ""), r)
            results[name] = r
            TP.save(args.out / "profile.json", results)
    if len(results) > 1:
        print("\n| stage | envs | ms per iteration | samples/s | x the first | of raw physics |")
        print("|---|---|---|---|---|---|")
        for stage in args.stages:
            base = results[named(stage, args.num_envs[0])]["samples_per_s"]
            for num_envs in args.num_envs:
                r = results[named(stage, num_envs)]
                print(f"| {stage} | {num_envs} | {1e3 * r['wall_s'] / r['iterations']:,.0f} | "
                      f"{r['samples_per_s']:,.0f} | {r['samples_per_s'] / base:.2f} | "
                      f"{r['train_over_raw']:.0%} |")
        if {"groups-bc", "groups-padl"} <= set(args.stages):
            bc, padl = group_mix(args.recipe)
            rate = lambda n: whole_stage_rate(results[named("groups-bc", n)]["samples_per_s"],
                                              results[named("groups-padl", n)]["samples_per_s"], bc, padl)
            for num_envs in args.num_envs:
                print(f"| groups: {bc} BC + {padl} PADL iterations ({args.recipe.name}) | {num_envs} | - | "
                      f"{rate(num_envs):,.0f} | {rate(num_envs) / rate(args.num_envs[0]):.2f} | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
