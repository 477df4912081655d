"""PADL skill experts: PPO on a tracking reward plus an adversarial (AMP-style) discriminator reward.

One iteration: roll the batched `ImitationEnv` out for `rollout_steps` control steps with the current policy;
score each transition with r = tracking_weight * tracking + disc_weight * (-log(1 - sigmoid(D(disc_obs))));
train the discriminator on reference windows ("real") against the rollout and a replay buffer ("fake"); one
PPO update. Every `eval_every` iterations the deterministic policy is evaluated from the start of each clip
(`padl.evaluate`; a run with foreign starts starts as large a share of them in other clips' states): the best evaluation so far (success, then G-MPJPE) is kept as `policy`, since evaluations
scatter and a run's last one is often not its best, and training stops early once every episode succeeds with
G-MPJPE below the threshold.

The whole run state (networks, optimisers, normalisers, replay buffer, RNG, counters) is one pytree saved with
`padl.checkpoint` every `checkpoint_every` iterations, so `train(..., resume=True)` continues the same run;
the environment itself is not saved: on resume the episodes in flight restart from fresh reference states.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from motions.library import MotionLibrary
from padl import checkpoint, discriminator, ppo
from padl.config import from_dict, to_dict
from padl.env import EnvConfig, ImitationEnv
from padl.evaluate import evaluate_policy

TRAIN_STATE = "train_state"  # <out>/train_state.{npz,json}: the whole run, for --resume
POLICY = "policy"  # <out>/policy.{npz,json}: the best-evaluated policy, for evaluation, recording and distillation
KIND = "padl-expert"


@dataclass(frozen=True)
class ExpertConfig:
    env: EnvConfig = field(default_factory=lambda: EnvConfig(num_envs=64))
    ppo: ppo.PPOConfig = field(default_factory=lambda: ppo.PPOConfig(
        gamma=0.95, policy_lr=2e-4, value_lr=5e-4, num_epochs=4, num_minibatches=4, log_std_init=-1.9,
        fixed_log_std=True, policy_hidden=(512, 256), value_hidden=(512, 256)))
    disc: discriminator.DiscConfig = field(default_factory=lambda: discriminator.DiscConfig(replay_size=16384))
    rollout_steps: int = 32  # control steps per env per iteration
    tracking_weight: float = 0.6
    disc_weight: float = 0.4
    disc_updates: int = 2  # discriminator minibatch steps per iteration
    iterations: int = 2000  # upper bound; early stopping usually ends sooner
    eval_every: int = 25
    eval_episodes: int = 4
    eval_noise: float = 0.02  # initial-state perturbation of evaluation episodes (see EnvConfig.init_noise)
    stop_success: float = 1.0
    stop_g_mpjpe_mm: float = 60.0
    checkpoint_every: int = 10
    critic_warmup_iterations: int = 20  # iterations the new critic learns alone when a run starts from a policy-only export
    seed: int = 0


def _initial_state(cfg: ExpertConfig, env: ImitationEnv) -> dict:
    key = jax.random.key(cfg.seed)
    k_ppo, k_disc, key = jax.random.split(key, 3)
    disc_dim = env.core.sizes["disc"]
    return {
        "ppo": ppo.init(k_ppo, env.obs_size, env.action_size, cfg.ppo),
        "disc": discriminator.init(k_disc, disc_dim, cfg.disc),
        "replay": discriminator.ReplayBuffer.create(cfg.disc.replay_size, disc_dim),
        "key": jax.random.key_data(key),
        "iteration": np.int64(0),
        "samples": np.int64(0),
        "best": np.asarray([-1.0, -np.inf]),  # (success, -G-MPJPE) of the evaluation saved as the policy
        "stopped": np.int64(0),  # 1 once early stopping fired
        "policy_frozen_until": np.int64(0),  # the policy does not move before this iteration (a new critic learns)
    }


def _config_json(cfg: ExpertConfig, library: MotionLibrary, env: ImitationEnv) -> dict:
    return {"kind": KIND, "expert": to_dict(cfg), "clips": list(cfg.env.clips or library.clip_ids),
            "obs_size": env.obs_size, "action_size": env.action_size, "obs_layout": env.core.sizes,
            "character": env.character.name}


def load_source(path: str | Path) -> tuple[dict, ppo.TrainState | None]:
    """What `init_from` names: (its metadata, None) for an expert run (its `train_state`), or (metadata, policy)
    for an expert policy alone, such as a shipped export."""
    meta = checkpoint.resume_meta(path, TRAIN_STATE, KIND, "PADL expert run")
    if meta is not None:
        return meta, None
    policy, meta = load_policy(path)
    return meta, policy


def load_policy(path: str | Path) -> tuple[ppo.TrainState, dict]:
    """The PPO state and metadata of an expert's `policy` checkpoint (of an `export_policy` one: the policy and
    its normaliser, with the value network and optimisers left at their initial values)."""
    path = Path(path)
    if path.is_dir():
        path = path / POLICY
    _, meta = checkpoint.load(path)  # validates format and checksum before anything is trusted
    if meta.get("kind") != KIND:
        raise checkpoint.CheckpointError(f"{path}.json: not a PADL expert policy (kind={meta.get('kind')!r})")
    try:
        cfg = from_dict(ExpertConfig, meta["expert"])
        shape = (meta["obs_size"], meta["action_size"], cfg.ppo)
        # an export's value network and optimisers start at their initial values, so they are built for real; a
        # full checkpoint replaces every leaf, so its template is shapes alone
        template = ppo.init(jax.random.key(0), *shape) if meta.get("policy_only") else ppo.template(*shape)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise checkpoint.CheckpointError(f"{path}.json: malformed expert policy metadata "
                                         f"({e.__class__.__name__}: {e})") from None
    if meta.get("policy_only"):
        part, _ = checkpoint.load(path, {"policy_params": template.policy_params, "normalizer": template.normalizer})
        return template.replace(**part), meta
    ts, _ = checkpoint.load(path, template)
    return ts, meta


def export_policy(src: str | Path, dst: str | Path) -> Path:
    """Write the policy network and its observation normaliser alone (about a sixth of a `policy` checkpoint):
    what acting needs, for shipping."""
    ts, meta = load_policy(src)
    return checkpoint.save(checkpoint.in_folder(dst, POLICY),
                           {"policy_params": ts.policy_params, "normalizer": ts.normalizer},
                           {**meta, "policy_only": True})


def _score(evaluation: dict) -> tuple[float, float]:
    """How a run ranks its evaluations to keep the best: success, then the lower G-MPJPE."""
    return float(evaluation["success"]), -float(evaluation["g_mpjpe_mm"])


@jax.jit
def _rewards(ds, tracking, disc_obs, w_track, w_disc):
    r_disc = discriminator.reward(ds, disc_obs)
    return w_track * tracking + w_disc * r_disc, r_disc


def eval_line(it: int, total: int, ev: dict) -> str:
    """An evaluation as one log line: what a run piped to a file shows (the progress bar is for terminals)."""
    parts = [f"success {ev['success']:.0%}", f"G-MPJPE {ev['g_mpjpe_mm']:.1f} mm"]
    parts += [f"{name} {ev[key]:.0%}" for key, name in (("worst_clip_success", "worst clip"),
                                                         ("transition_success", "transitions")) if key in ev]
    return f"iteration {it}/{total}: " + ", ".join(parts)


def log_evaluation(log, progress: bool, line: str) -> None:
    """Log an evaluation's line, flushed (a pipe would hold it back for minutes), unless the progress bar shows on
    the terminal stdout goes to."""
    if not (progress and sys.stdout.isatty()):
        log(line)
        sys.stdout.flush()


@jax.jit
def disc_phase(ds, replay, real, fake, key):
    """`disc_updates` steps against fakes half from this rollout, half from the replay buffer; then store."""
    steps, half = real.shape[0], real.shape[1] // 2

    def body(ds, x):
        r, k = x
        k_new, k_old, k_up = jax.random.split(k, 3)
        f = jnp.concatenate([fake[jax.random.randint(k_new, (half,), 0, fake.shape[0])], replay.sample(k_old, half)])
        return discriminator.update(ds, r, f, k_up)

    replay = replay.add(fake)  # before sampling, so the first iteration's "old" half is not the empty buffer's zeros
    ds, metrics = jax.lax.scan(body, ds, (real, jax.random.split(key, steps)))
    return ds, replay, jax.tree.map(jnp.mean, metrics)


def train(library: MotionLibrary, out: str | Path, cfg: ExpertConfig = ExpertConfig(), resume: bool = False,
          iterations: int | None = None, progress: bool = True, log=print, time_limit_s: float | None = None,
          init_from: str | Path | None = None, force: bool = False) -> dict:
    """Train (or resume) an expert on `cfg.env.clips` of the library into `out`; returns the evaluation of the
    policy kept (the best so far; {} when none was evaluated).

    `resume` continues the run checkpointed in `out` if there is one; a new run refuses to overwrite a policy kept
    there by an earlier one unless `force` (`checkpoint.prepare_run`).

    `iterations` overrides cfg.iterations (the total, counted from the start of the run, also on resume);
    `time_limit_s` ends this call (after an evaluation and a checkpoint) once that much wall time has passed;
    `init_from` (another expert run of the same clips and networks) starts a new run from that run's networks,
    discriminator and replay (fine-tuning, e.g. with `foreign_share`), its counters at zero. From a policy alone
    (an export, or a run's `policy`), the critic and discriminator are new: the policy then holds still for
    `critic_warmup_iterations`, so that the first updates it sees do not come from an untrained value function.
    Such a policy may come from other clips (any number: the observation names no clip): a tracker of one skill is
    a head start on a similar one."""
    from tensorboardX import SummaryWriter
    from tqdm import tqdm

    out = Path(out)
    saved = checkpoint.resume_meta(out, TRAIN_STATE, KIND, "PADL expert run") if resume else None
    checkpoint.prepare_run(out, POLICY, TRAIN_STATE, resumed=saved is not None, force=force)
    if saved:
        cfg = from_dict(ExpertConfig, saved["expert"])
    env = ImitationEnv(library, cfg.env)
    state = _initial_state(cfg, env)
    meta = _config_json(cfg, library, env)
    if saved:
        state, _ = checkpoint.load(out / TRAIN_STATE, state)
        if kept := checkpoint.kept_eval(out, POLICY):  # kept after the checkpoint, before a kill
            state["best"] = np.asarray(max(tuple(state["best"]), _score(kept)), np.float64)
        log(f"resumed {out} at iteration {int(state['iteration'])}")
    elif init_from is not None:
        source, policy = load_source(init_from)
        sizes = lambda m: (m["obs_size"], m["action_size"])
        if source["clips"] != meta["clips"] and (policy is None or sizes(source) != sizes(meta)):
            raise checkpoint.CheckpointError(
                f"{init_from}: its clips {source['clips']} are not {meta['clips']} (a policy alone, such as "
                f"RUN/policy, of the same observation size can start another skill)")
        if policy is not None:
            state["ppo"] = state["ppo"].replace(policy_params=policy.policy_params, normalizer=policy.normalizer)
            state["policy_frozen_until"] = np.int64(cfg.critic_warmup_iterations)
        else:
            loaded, _ = checkpoint.load(Path(init_from) / TRAIN_STATE, state)
            state.update(ppo=loaded["ppo"], disc=loaded["disc"], replay=loaded["replay"])
        log(f"starting from {init_from} (iteration {source['iteration']})")
    out.mkdir(parents=True, exist_ok=True)
    total = cfg.iterations if iterations is None else iterations
    writer = SummaryWriter(str(out / "logs"))
    checkpoint.trim_log(out / "progress.jsonl", int(state["iteration"]))
    curve = open(out / "progress.jsonl", "a")
    T, N = cfg.rollout_steps, env.num_envs
    key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
    env_state = env.reset(jax.random.fold_in(key, int(state["iteration"])))
    ts, ds, replay = state["ppo"], state["disc"], state["replay"]
    last_eval: dict = {}
    start_iter = int(state["iteration"])
    t_start = time.time()
    bar = tqdm(total=total, initial=start_iter, disable=not progress, desc="expert", dynamic_ncols=True)

    def save(it, samples, key):
        state.update(ppo=ts, disc=ds, replay=replay, key=jax.random.key_data(key), iteration=np.int64(it),
                     samples=np.int64(samples))
        checkpoint.save(out / TRAIN_STATE, state, {**meta, "iteration": it, "samples": samples})

    def save_policy(it, samples):
        checkpoint.save(out / POLICY, ts, {**meta, "iteration": it, "samples": samples, "eval": last_eval})

    it, samples = start_iter, int(state["samples"])
    while it < total and not int(state["stopped"]):
        t0 = time.time()
        obs, actions, logps, values, tracking, dones, truncs, final_obs, disc_obs = ([] for _ in range(9))
        terms = {k: 0.0 for k in env_state.terms}
        for _ in range(T):
            key, k_act = jax.random.split(key)
            a, lp, v = ppo.act(ts, env_state.obs, k_act)
            new = env.step(env_state, a)
            obs.append(env_state.obs), actions.append(a), logps.append(lp), values.append(v)
            tracking.append(new.reward), dones.append(new.done), truncs.append(new.truncated)
            final_obs.append(new.final_obs), disc_obs.append(new.disc_obs)
            for k in terms:
                terms[k] += new.terms[k]
            env_state = new
        stack = lambda xs: jnp.stack([jnp.asarray(x) for x in xs])
        disc_obs = stack(disc_obs)
        rewards, r_disc = _rewards(ds, stack(tracking), disc_obs, cfg.tracking_weight, cfg.disc_weight)
        key, k_real, k_disc, k_ppo = jax.random.split(key, 4)
        real, _ = env.reference_disc_obs(k_real, cfg.disc_updates * cfg.disc.batch_size)
        real = real.reshape(cfg.disc_updates, cfg.disc.batch_size, -1)
        ds, replay, d_metrics = disc_phase(ds, replay, real, disc_obs.reshape(T * N, -1), k_disc)
        rollout = ppo.Rollout(stack(obs), stack(actions), stack(logps), stack(values), rewards, stack(dones),
                              stack(truncs), ppo.value(ts, env_state.obs),
                              ppo.value(ts, stack(final_obs).reshape(T * N, -1)).reshape(T, N))
        moved, p_metrics = ppo.update(ts, rollout, k_ppo)
        ts = moved if it >= int(state["policy_frozen_until"]) else ppo.hold_policy(moved, ts)
        it, samples = it + 1, samples + T * N
        dt = time.time() - t0
        ends = float(jnp.sum(rollout.dones) + jnp.sum(rollout.truncations))
        scalars = {"reward/total": float(rewards.mean()), "reward/disc": float(r_disc.mean()),
                   **{f"reward/{k}": float(np.mean(v)) / T for k, v in terms.items()},
                   "episode/length_s": T * N / max(ends, 1.0) / env.config.control_hz,
                   "episode/fall_rate": float(jnp.sum(rollout.dones)) / (T * N),
                   "perf/samples_per_s": T * N / dt, **{f"disc/{k}": float(v) for k, v in d_metrics.items()},
                   **{f"ppo/{k}": float(v) for k, v in p_metrics.items()}}
        for k, v in scalars.items():
            writer.add_scalar(k, v, samples)
        bar.update(1)
        bar.set_postfix(track=f"{scalars['reward/tracking']:.3f}", len=f"{scalars['episode/length_s']:.1f}s",
                        sps=f"{scalars['perf/samples_per_s']:.0f}")
        out_of_time = time_limit_s is not None and time.time() - t_start >= time_limit_s
        if it % cfg.eval_every == 0 or it == total or out_of_time:
            last_eval = evaluate_policy(library, lambda s: ppo.act(ts, s.obs, key, deterministic=True)[0],
                                        clips=meta["clips"], episodes=cfg.eval_episodes, noise=cfg.eval_noise,
                                        env_config=dataclasses.replace(cfg.env, backend="mujoco"),
                                        foreign_share=cfg.env.foreign_share)["mean"]
            for k, v in last_eval.items():
                writer.add_scalar(f"eval/{k}", v, samples)
            score = _score(last_eval)
            if score > tuple(state["best"]):
                state["best"] = np.asarray(score, np.float64)
                save_policy(it, samples)
            wall = time.time() - t_start
            curve.write(json.dumps({"iteration": it, "samples": samples, "wall_s": wall, **last_eval,
                                    "tracking": scalars["reward/tracking"]}) + "\n")
            curve.flush()
            log_evaluation(log, progress, eval_line(it, total, last_eval))
            if last_eval["success"] >= cfg.stop_success and last_eval["g_mpjpe_mm"] <= cfg.stop_g_mpjpe_mm:
                state["stopped"] = np.int64(1)
                log(f"early stop at iteration {it}: success {last_eval['success']:.2f}, "
                    f"G-MPJPE {last_eval['g_mpjpe_mm']:.1f} mm")
        if it % cfg.checkpoint_every == 0 or it == total or int(state["stopped"]) or out_of_time:
            save(it, samples, key)
        if out_of_time:
            break
    if it == start_iter and not (out / POLICY).with_suffix(".json").exists():
        save(it, samples, key)  # a run of no iterations still leaves its (initial) policy, e.g. as a baseline
        save_policy(it, samples)
    bar.close()
    writer.close()
    curve.close()
    return checkpoint.resume_meta(out, POLICY, KIND, "PADL expert policy")["eval"]
