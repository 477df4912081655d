"""SuperPADL stage 2: group controllers, each distilling up to `group_size` experts into one reference-free policy.

A group controller sees the character's own state, its strided history, its turn and sideways offset since its
command began (optionally also the time since then; here the command began at the clip's start; `superpadl.student`)
and a one-hot index of the clip it should perform within its
group (a learned per-clip embedding: the first layer's weights on the one-hot). It outputs absolute PD targets.
Training has two phases:

1. BC warm-up (DAgger): the controller drives the character (the experts drive a share `beta` of the envs, all
   at first, decaying to `beta_floor`), every visited state is labelled with its clip expert's action, the
   labelled states are aggregated, and the controller regresses onto them.
2. PADL: PPO on the adversarial reward of a discriminator that also sees the clip index (so each clip keeps its
   own style), plus `bc_weight` (0.01) x behaviour cloning of the experts on the states the controller visits.
   The value function is trained alone first, and the policy then moves at a small fine-tuning rate: with an
   untrained critic and the experts' rate, PPO took a 68 %-success warm-up to 0 % in 20 iterations.

`policy.*` is the controller with the best evaluation so far (`superpadl.evaluate.kept_score`); `train_state.*` the
latest.

Every `eval_every` iterations the deterministic controller is evaluated from each clip's start (success and
G-MPJPE against the clip, `padl.evaluate`). The run state (networks, optimisers, normalisers, discriminator and
its replay buffer, RNG, counters) is checkpointed like an expert's; the aggregated BC data are not (hundreds of MB):
a run resumed during the warm-up collects them afresh.

A groups folder: `groups.json` {"format": "superpadl-groups", "groups": [{"name", "clips"}]} and one run folder
per group with `train_state.*`, `policy.*` (kind "superpadl-group"), `progress.jsonl` and `logs/`.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from motions.library import MotionLibrary
from padl import checkpoint, discriminator, ppo
from padl.config import from_dict, replace, to_dict
from padl.env import ActionConfig, EnvConfig, ImitationEnv, StartConfig
from padl.expert import disc_phase
from padl.evaluate import evaluate_policy
from padl.falls import lying_clips
from padl.normalizer import update as update_normalizer
from padl.run import Run, Stage
from superpadl import endurance as E
from superpadl import student as S
from superpadl.evaluate import GroupAgent, kept_score, transition_success
from superpadl.policies import GROUP_KIND as KIND, GROUPS_FORMAT as FORMAT, GroupPolicy
from superpadl.runtime import GroupController
from superpadl.teachers import ExpertTeachers, GroupTeachers, load_experts

TRAIN_STATE, POLICY = "train_state", "policy"


@dataclass(frozen=True)
class GroupConfig:
    # 192 characters, not 64: the BC update's cost is per Adam step, not per sample, so 3x the states per iteration
    # cost 1.4x the wall time and learnt as fast per minute (docs/experiments.md)
    env: EnvConfig = field(default_factory=lambda: EnvConfig(num_envs=192, action=ActionConfig(mode="absolute"),
                                                             starts=StartConfig(first_frame_share=0.25)))
    # 2 PPO epochs, not 4: the PADL phase's update is compute-bound per sample, and 4 learnt no better per
    # iteration from the same warm-up (docs/experiments.md)
    ppo: ppo.PPOConfig = field(default_factory=lambda: ppo.PPOConfig(
        gamma=0.95, policy_lr=2e-4, value_lr=5e-4, num_epochs=2, num_minibatches=4, log_std_init=-2.5,
        fixed_log_std=True, policy_hidden=(1024, 512), value_hidden=(512, 256), layer_norm=True, bc_weight=0.01))
    # (1024, 512) with LayerNorm, as the global policy: better than (512, 256) without (docs/experiments.md)
    disc: discriminator.DiscConfig = field(default_factory=lambda: discriminator.DiscConfig(replay_size=16384))
    history: S.HistoryConfig = field(default_factory=lambda: S.HistoryConfig(heading=True))  # see `superpadl.student`
    group_size: int = 20
    grouping: str = "random"  # "random" or "cluster" (k-means on caption embeddings)
    rollout_steps: int = 32
    iterations: int = 300  # warm-up + PADL
    bc_warmup_iterations: int = 150
    # during the warm-up the experts drive a share of the envs, from all down to `beta_floor` over `beta_iterations`
    # (`superpadl.student.teacher_share`). A quarter throughout, not none: 84-93 % success against 77-84 % over the
    # last 60 of 240 warm-up iterations (docs/experiments.md)
    beta_iterations: int = 40
    beta_floor: float = 0.25
    bc_steps: int = 64  # Adam steps per warm-up iteration
    bc_batch: int = 512
    bc_lr: float = 1e-3
    bc_buffer: int = 131072  # aggregated (state, expert action) pairs, oldest dropped first
    prioritise: float = 4.0  # after each evaluation a clip's chance at a reset is 1 + prioritise x its failure rate
    critic_warmup_iterations: int = 10  # first PADL iterations train the value function only (policy lr 0)
    padl_policy_lr: float = 2e-5  # fine-tuning rate: PPO at the expert rate undid the warm-up within 20 iterations
    disc_weight: float = 1.0
    tracking_weight: float = 0.0
    disc_updates: int = 2
    eval_every: int = 25
    eval_episodes: int = 2
    eval_noise: float = 0.02
    # random pairs of the group's clips (the same each time) whose transitions each evaluation also scores
    # (`superpadl.evaluate`; 0: none, as a group trained without switches is not meant for them); then the controller
    # kept is the one with the best mean of success and transition success, as the global policy's
    eval_transitions: int = 0
    # simulated minutes of real use (`superpadl.endurance.training_eval`: commands by clip from the start pose, held
    # 2-20 s) each evaluation also scores, which `kept_score` weighs; 0: none
    eval_real_use_minutes: float = 0.0
    checkpoint_every: int = 10
    seed: int = 0


def make_groups(clips: list[str], cfg: GroupConfig, embeddings: np.ndarray | None = None,
                apart: tuple[str, ...] = ()) -> list[list[str]]:
    """Clips split into ceil(C / group_size) groups: a seeded random split, or k-means on (C, D) per-clip caption
    embeddings (`grouping="cluster"`); empty clusters are dropped. The clips in `apart` (get-ups, which begin lying
    where the others begin standing) make groups of their own, split so, after the others'."""
    if any(c in apart for c in clips):
        parts = [[i for i, c in enumerate(clips) if (c in apart) == side] for side in (False, True)]
        return [g for rows in parts if rows for g in make_groups(
            [clips[i] for i in rows], cfg, None if embeddings is None else np.asarray(embeddings)[rows])]
    k = max(1, math.ceil(len(clips) / cfg.group_size))
    rng = np.random.default_rng(cfg.seed)
    if cfg.grouping == "random":
        order = rng.permutation(len(clips))
        return [sorted(clips[i] for i in order[g::k]) for g in range(k)]
    if cfg.grouping != "cluster":
        raise ValueError(f"grouping must be 'random' or 'cluster', not {cfg.grouping!r}")
    if embeddings is None:
        raise ValueError("grouping='cluster' needs the clips' caption embeddings")
    x = np.asarray(embeddings, np.float64)
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(50):
        label = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        centres = np.stack([x[label == g].mean(0) if (label == g).any() else centres[g] for g in range(k)])
    return [sorted(clips[i] for i in np.flatnonzero(label == g)) for g in range(k) if (label == g).any()]


def clip_priorities(success, strength: float) -> np.ndarray:
    """(C,) reset weights from per-clip success rates: 1 + strength x failure rate. A clip the controller fails
    is practised more (its short failed episodes would otherwise give it fewer samples than the clips it
    performs), and none drops out."""
    return (1.0 + strength * (1.0 - np.clip(np.asarray(success, np.float32), 0.0, 1.0))).astype(np.float32)


def practised_success(success, clips: list[str], clip_served: dict[str, float]) -> list[float]:
    """What `clip_priorities` weighs when real use is measured: per clip the lower of its clip-start success and its
    share of commands served in real use (the slash succeeded from its clip's start at 90 % and fell every time from
    the start pose); a clip real use did not command keeps its clip-start success."""
    return [min(s, clip_served.get(c, 1.0)) for c, s in zip(clips, success)]


def _onehot(slot, n):
    return jax.nn.one_hot(slot, n, dtype=jnp.float32)


class _Stage(Stage):
    """A group controller's iteration: a rollout labelled by the experts, then a BC fit (warm-up) or a discriminator
    update and one PPO update (PADL); the aggregated BC data live here, not in the run state (`padl.run.Stage`)."""

    def __init__(self, library: MotionLibrary, teachers: ExpertTeachers, clips: list[str], cfg: GroupConfig,
                 name: str):
        base = teachers.env_config()
        env_cfg = replace(cfg.env, clips=tuple(clips), obs=base.obs, physics=dict(control_hz=base.physics.control_hz))
        self.cfg = cfg = dataclasses.replace(cfg, env=env_cfg)
        self.library, self.teachers, self.clips = library, teachers, list(clips)
        self.env = env = ImitationEnv(library, env_cfg)
        self.desc, self.label = f"group {name}", f"{name}: "
        self.G = G = len(clips)
        low = lying_clips(library)
        self.commands = sum(not low[library.index(c)] for c in clips)  # clips a user commands (no get-ups)
        slot_of = np.zeros(len(library.clip_ids), np.int32)
        slot_of[[library.index(c) for c in clips]] = np.arange(G)
        self.slot_of = jnp.asarray(slot_of)
        self.in_size = S.input_size(cfg.history, G)
        self.disc_dim = env.core.sizes["disc"] + G
        self.batch = cfg.rollout_steps * env.num_envs
        self.meta = {"kind": KIND, "group": to_dict(cfg), "clips": list(clips), "input_size": self.in_size,
                     "action_size": env.action_size, "character": env.character.name}
        self.bc_x = discriminator.ReplayBuffer.create(cfg.bc_buffer, self.in_size)
        self.bc_y = discriminator.ReplayBuffer.create(cfg.bc_buffer, env.action_size)
        self.starts = S.clip_starts(library)
        self.padl_ppo = dataclasses.replace(cfg.ppo, policy_lr=cfg.padl_policy_lr)
        self.env_state = self.hist = None  # started by the first iteration
        self._observe = jax.jit(self._observe_step)
        # what real use and transitions judge commands by (read once, not at every evaluation)
        judged = cfg.eval_real_use_minutes or cfg.eval_transitions
        self.directions, self.gestures = E.command_checks(library) if judged else ({}, {})
        if cfg.eval_real_use_minutes:
            self.start_qpos = E.start_pose(library, self.clips)

    def initial_state(self) -> dict:
        cfg = self.cfg
        key = jax.random.key(cfg.seed)
        k_ppo, k_disc, key = jax.random.split(key, 3)
        return {"ppo": ppo.init(k_ppo, self.in_size, self.env.action_size, cfg.ppo),
                "disc": discriminator.init(k_disc, self.disc_dim, cfg.disc),
                "replay": discriminator.ReplayBuffer.create(cfg.disc.replay_size, self.disc_dim),
                "key": jax.random.key_data(key), "iteration": np.int64(0), "samples": np.int64(0),
                "best": np.asarray([-1.0, -np.inf]),  # `kept_score` of the evaluation saved as the policy
                "clip_weights": np.ones(self.G, np.float32)}  # reset weights per clip (`clip_priorities`)

    def student_x(self, env_state, hist):  # the command began at its clip's first frame, where the reference is anchored
        start = S.anchored(self.starts[env_state.clip], env_state.anchor)
        return S.student_input(S.env_proprio(env_state)[0], hist, _onehot(self.slot_of[env_state.clip], self.G),
                               self.cfg.history, S.heading_features(start, S.root_frame(env_state.qpos)))

    def observe(self, hist, env_state, key=None, clip=None):
        """One jitted call after a step to `env_state`: the history (`S.push_step` with `key`; as it is without), the
        student's input, and with `clip` (the clip stepped from) the discriminator's observation of the step."""
        return self._observe(hist, S.view(env_state), key, clip)

    def _observe_step(self, hist, env_state, key, clip):
        if key is not None:
            hist = S.push_step(hist, self.env, env_state, self.cfg.history, jax.random.fold_in(key, 1))
        disc = None if clip is None else jnp.concatenate([env_state.disc_obs, _onehot(self.slot_of[clip], self.G)], -1)
        return hist, self.student_x(env_state, hist), disc

    def iterate(self, state: dict) -> dict:
        cfg, env, G, slot_of = self.cfg, self.env, self.G, self.slot_of
        T, N = cfg.rollout_steps, env.num_envs
        it = int(state["iteration"])
        key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
        if self.env_state is None:
            self.env_state, self.hist = S.start_training_envs(env, jax.random.fold_in(key, it), state["clip_weights"],
                                                              cfg.history)
        env_state, hist, ts, ds, replay = self.env_state, self.hist, state["ppo"], state["disc"], state["replay"]
        warmup = it < cfg.bc_warmup_iterations
        beta = S.teacher_share(it, cfg) if warmup else 0.0
        key, k_beta = jax.random.split(key)
        by_teacher = jax.random.uniform(k_beta, (N,)) < beta
        xs, actions, logps, values, teacher, tracking, dones, truncs, disc_obs = ([] for _ in range(9))
        x = self.observe(hist, env_state)[1]
        for _ in range(T):
            key, k_act = jax.random.split(key)
            a, lp, v = ppo.act(ts, x, k_act)
            a_teacher = self.teachers.act(env_state)
            a = jnp.where(by_teacher[:, None], a_teacher, a)
            new = env.step(env_state, a)
            xs.append(x), actions.append(a), logps.append(lp), values.append(v), teacher.append(a_teacher)
            tracking.append(new.reward), dones.append(new.done), truncs.append(new.truncated)
            hist, x, disc = self.observe(hist, new, k_act, env_state.clip)
            disc_obs.append(disc)
            env_state = new
        self.env_state, self.hist = env_state, hist
        stack = lambda v: jnp.stack([jnp.asarray(u) for u in v])
        xs, teacher, tracking, dones, truncs = map(stack, (xs, teacher, tracking, dones, truncs))
        scalars = {}
        if warmup:
            flat_x, flat_y = xs.reshape(T * N, -1), teacher.reshape(T * N, -1)
            self.bc_x, self.bc_y = self.bc_x.add(flat_x), self.bc_y.add(flat_y)
            ts = ts.replace(normalizer=update_normalizer(ts.normalizer, flat_x))
            key, k_bc = jax.random.split(key)
            ts, bc_loss = ppo.imitate(ts, self.bc_x.data, self.bc_y.data, self.bc_x.size, k_bc, cfg.bc_steps,
                                      cfg.bc_batch, cfg.bc_lr)
            scalars["bc/loss"] = float(bc_loss)
            scalars["bc/beta"] = beta
        else:
            disc_obs = stack(disc_obs)
            r_disc = discriminator.reward(ds, disc_obs)
            rewards = cfg.disc_weight * r_disc + cfg.tracking_weight * tracking
            key, k_real, k_disc, k_ppo = jax.random.split(key, 4)
            m = cfg.disc_updates * cfg.disc.batch_size
            real, real_clip = env.reference_disc_obs(k_real, m)
            real = jnp.concatenate([real, _onehot(slot_of[real_clip], G)], -1).reshape(cfg.disc_updates, -1,
                                                                                       self.disc_dim)
            ds, replay, d_metrics = disc_phase(ds, replay, real, disc_obs.reshape(T * N, -1), k_disc)
            rollout = ppo.Rollout(xs, stack(actions), stack(logps), stack(values), rewards, dones, truncs,
                                  ppo.value(ts, x), teacher_actions=teacher)
            new_ts, p_metrics = ppo.update(ts.replace(config=self.padl_ppo), rollout, k_ppo)
            if it - cfg.bc_warmup_iterations < cfg.critic_warmup_iterations:  # the critic learns, the policy waits
                new_ts = ppo.hold_policy(new_ts, ts)
            ts = new_ts.replace(config=cfg.ppo)
            scalars.update({"reward/disc": float(r_disc.mean()), "reward/total": float(rewards.mean()),
                            **{f"disc/{k}": float(v) for k, v in d_metrics.items()},
                            **{f"ppo/{k}": float(v) for k, v in p_metrics.items()}})
        state.update(ppo=ts, disc=ds, replay=replay, key=jax.random.key_data(key))
        ends = float(jnp.sum(dones) + jnp.sum(truncs))
        scalars.update({"reward/tracking": float(tracking.mean()),
                        "episode/length_s": T * N / max(ends, 1.0) / env.config.physics.control_hz})
        return scalars

    def evaluate(self, state: dict, scalars: dict) -> tuple[dict, dict]:
        cfg, ts, clips = self.cfg, state["ppo"], self.clips
        controller = S.student_actor(lambda x: ppo.act(ts, x, jax.random.key(0), deterministic=True)[0], cfg.history,
                                     lambda s: _onehot(self.slot_of[s.clip], self.G))
        per_clip = evaluate_policy(self.library, controller, clips=clips, episodes=cfg.eval_episodes,
                                   noise=cfg.eval_noise, env_config=replace(cfg.env, physics=dict(backend="mujoco")))
        ev, success = per_clip["mean"], [per_clip[c]["success"] for c in clips]
        ev["worst_clip_success"] = min(success)
        if cfg.eval_transitions and self.commands > 1:
            agent = GroupAgent(GroupTeachers(self.library, [GroupPolicy(ts, self.meta)]), self.library)
            ev["transition_success"] = transition_success(
                agent, self.library, cfg.eval_transitions, 2.0, 3.0, np.random.default_rng(cfg.seed),
                (self.directions, self.gestures))["success"]
        practised = success
        if cfg.eval_real_use_minutes and self.commands:
            use = E.training_eval(GroupController(GroupPolicy(ts, self.meta), self.start_qpos, self.library),
                                  self.directions, cfg.eval_real_use_minutes, cfg.seed, self.gestures)
            practised = practised_success(success, clips, use.pop("clip_served"))
            ev.update(use)
        state["clip_weights"] = clip_priorities(practised, cfg.prioritise)
        self.env_state = self.env_state._replace(clip_weights=jnp.asarray(state["clip_weights"]))
        warmup = "bc/loss" in scalars
        return ev, {"phase": "bc" if warmup else "padl", "clip_success": success,
                    "tracking": scalars["reward/tracking"],
                    **({"bc_loss": scalars["bc/loss"]} if warmup else {})}

    def policy(self, state: dict) -> ppo.TrainState:
        return state["ppo"]

    def score(self, evaluation: dict) -> tuple[float, float]:
        return kept_score(evaluation)

    def postfix(self, scalars: dict) -> dict:
        return {"track": f"{scalars['reward/tracking']:.3f}", "len": f"{scalars['episode/length_s']:.1f}s",
                **({"bc": f"{scalars['bc/loss']:.4f}"} if "bc/loss" in scalars else {})}


def train_group(library: MotionLibrary, teachers: ExpertTeachers, clips: list[str], out: str | Path,
                cfg: GroupConfig = GroupConfig(), resume: bool = False, iterations: int | None = None,
                progress: bool = True, log=print, time_limit_s: float | None = None,
                init_from: str | Path | None = None, force: bool = False) -> dict:
    """Train (or resume) the controller of one group of clips into `out`; returns its last evaluation. A new run
    refuses to overwrite a controller kept there by an earlier one unless `force` (`checkpoint.prepare_run`).
    `init_from` (a controller of the same clips and inputs) starts a new run from its networks and normaliser, with
    a new discriminator; its policy is held for `critic_warmup_iterations` after the warm-up (`--warmup 0` skips
    it)."""
    out = Path(out)
    run = Run(out, KIND, "SuperPADL group run", resume, force, log)
    if run.saved:
        cfg, clips = from_dict(GroupConfig, run.saved["group"]), run.saved["clips"]
    stage = _Stage(library, teachers, clips, cfg, out.name)
    state = stage.initial_state()
    if run.saved:
        state = run.resume(state, kept_score)
    elif init_from is not None:
        loaded = GroupPolicy.load(init_from)
        source, source_meta = loaded.ts, loaded.meta
        mine = (list(clips), stage.in_size, stage.cfg.history)
        theirs = (source_meta["clips"], source_meta["input_size"], S.saved_history(source_meta["group"]["history"]))
        if mine != theirs:
            raise checkpoint.CheckpointError(f"{init_from}: its clips, input size and history {theirs} are not "
                                             f"this group's {mine}")
        state["ppo"] = state["ppo"].replace(policy_params=source.policy_params, value_params=source.value_params,
                                            normalizer=source.normalizer)
        log(f"starting {out.name} from {init_from} (iteration {source_meta['iteration']})")
    return run.train(stage, state, stage.cfg.iterations if iterations is None else iterations, progress,
                     time_limit_s)


def distill_groups(library: MotionLibrary, expert_paths, out: str | Path, cfg: GroupConfig = GroupConfig(),
                   clips: list[str] | None = None, resume: bool = True, progress: bool = True, log=print,
                   time_limit_s: float | None = None, encoder=None, iterations: int | None = None,
                   init_from: str | Path | None = None, force: bool = False) -> dict:
    """Split the clips the experts cover into groups and train each group's controller (resuming finished or
    interrupted ones, to `iterations` in all when given); returns {group name: its last evaluation}. `init_from`
    (a groups folder) takes its split, and starts each new group run from that folder's controller. `force`
    starts over: a new split, and new runs over the group runs and controllers already in `out`."""
    out = Path(out)
    teachers = load_experts(library, expert_paths)
    covered = teachers.clips(library)
    clips = list(clips) if clips else covered
    if missing := [c for c in clips if c not in covered]:
        raise ValueError(f"clip {missing[0]!r} has no expert among {', '.join(map(str, expert_paths))}")
    spec_file = out / "groups.json"
    if spec_file.exists() and not force:
        spec = checkpoint.read_spec(spec_file, FORMAT, "groups folder")
    elif init_from is not None:
        spec = checkpoint.read_spec(Path(init_from) / "groups.json", FORMAT, "groups folder")
        if stray := sorted({c for g in spec["groups"] for c in g["clips"]} ^ set(clips)):
            raise ValueError(f"{init_from}: its groups and these clips differ in {stray[0]!r}")
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json_atomic(spec_file, spec)
    else:
        emb = None
        if cfg.grouping == "cluster":
            from superpadl.text import clip_caption_embeddings

            emb = np.stack([e.mean(0) for e in clip_caption_embeddings(library, clips, encoder)])
        get_ups = tuple(np.asarray(library.clip_ids)[lying_clips(library)])
        spec = {"format": FORMAT, "groups": [{"name": f"group_{g:03d}", "clips": members}
                                             for g, members in enumerate(make_groups(clips, cfg, emb, get_ups))]}
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json_atomic(spec_file, spec)
    if force:  # no group run of the earlier split is resumed later as one of this run
        for g in spec["groups"]:
            checkpoint.prepare_run(out / g["name"], POLICY, TRAIN_STATE, resumed=False, force=True)
    t_start, results = time.time(), {}
    for g in spec["groups"]:
        left = None if time_limit_s is None else time_limit_s - (time.time() - t_start)
        if left is not None and left <= 0:
            break
        log(f"{g['name']}: {len(g['clips'])} clips")
        results[g["name"]] = train_group(library, teachers, g["clips"], out / g["name"], cfg,
                                         resume=resume and not force, iterations=iterations, progress=progress,
                                         log=log, time_limit_s=left, force=force,
                                         init_from=None if init_from is None else Path(init_from) / g["name"])
    return results
