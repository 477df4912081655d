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

import functools
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from motions.library import MotionLibrary
from padl import checkpoint, discriminator, ppo
from padl.config import from_dict, replace, to_dict
from padl.env import TERMS, EnvConfig, ImitationEnv
from padl.evaluate import evaluate_policy
from padl.policy import KIND, POLICY, TRAIN_STATE, load_source, mean_action  # <out>/policy.*, <out>/train_state.*
from padl.run import Run, Stage


@dataclass(frozen=True)
class ExpertConfig:
    env: EnvConfig = field(default_factory=lambda: EnvConfig(num_envs=64))
    # 2 PPO epochs, not 4: the DeepMimic walk reached the bar (100 % of 10 episodes, <= 60 mm) in 6.7 min at 5.1k
    # samples/s, where 4 epochs ran at 4.1k and had not in 16 min (benchmarks/expert_training.py --variants 4x4 2x4)
    ppo: ppo.PPOConfig = field(default_factory=lambda: ppo.PPOConfig(
        gamma=0.95, policy_lr=2e-4, value_lr=5e-4, num_epochs=2, num_minibatches=4, log_std_init=-1.9,
        fixed_log_std=True, policy_hidden=(512, 256), value_hidden=(512, 256)))
    disc: discriminator.DiscConfig = field(default_factory=lambda: discriminator.DiscConfig(replay_size=16384))
    rollout_steps: int = 32  # control steps per env per iteration
    tracking_weight: float = 0.6
    disc_weight: float = 0.4
    disc_updates: int = 2  # discriminator minibatch steps per iteration
    iterations: int = 2000  # upper bound; early stopping usually ends sooner
    eval_every: int = 25
    eval_episodes: int = 4
    eval_noise: float = 0.02  # initial-state perturbation of evaluation episodes (see StartConfig.init_noise)
    # evaluation episodes of a one-shot clip go on this long past its end, its last frame held where the character
    # stands (`EpisodeConfig.hold_follow`; None: the training's hold_s, within 10-s episodes). The kept policy is
    # chosen by these episodes, and a 10-s evaluation cannot see a stand that falls at 12 s, as a user holding
    # "stand still" does (docs/experiments.md)
    eval_hold_s: float | None = None
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


def _score(evaluation: dict) -> tuple[float, float]:
    """How a run ranks its evaluations to keep the best: success, then the lower G-MPJPE."""
    return float(evaluation["success"]), -float(evaluation["g_mpjpe_mm"])


@jax.jit
def _rewards(ds, tracking, disc_obs, w_track, w_disc):
    r_disc = discriminator.reward(ds, disc_obs)
    return w_track * tracking + w_disc * r_disc, r_disc


def _rollout_buffers(T: int, N: int, obs: int, act: int, disc: int) -> dict:
    """An expert rollout's (T, N, ...) arrays on the device, written step by step in place (`_begin`, `_after_step`);
    `values` has a row T more: V of the observation after the last step, the bootstrap."""
    f = lambda *shape: jnp.zeros(shape, jnp.float32)
    return {"t": jnp.zeros((), jnp.int32), "key": jax.random.key(0), "obs": f(T, N, obs), "actions": f(T, N, act),
            "logps": f(T, N), "values": f(T + 1, N), "tracking": f(T, N), "dones": jnp.zeros((T, N), bool),
            "truncs": jnp.zeros((T, N), bool), "final_obs": f(T, N, obs), "disc_obs": f(T, N, disc),
            "terms": {k: f(N) for k in TERMS}}


def _act_into(buf: dict, ts, obs):
    """The policy acts on obs; the row `t` of obs, actions, log-probabilities and values is written."""
    key, k = jax.random.split(buf["key"])
    a, lp, v = ppo.act(ts, obs, k)
    rows = {"obs": obs, "actions": a, "logps": lp, "values": v}
    return {**buf, "key": key, **{n: buf[n].at[buf["t"]].set(x, mode="drop") for n, x in rows.items()}}, a


@functools.partial(jax.jit, donate_argnums=0)
def _begin(buf: dict, ts, obs, key):
    """A rollout's first action, its buffers (donated, reused from the last iteration) rewound."""
    return _act_into({**buf, "t": jnp.zeros((), jnp.int32), "key": key,
                      "terms": jax.tree.map(jnp.zeros_like, buf["terms"])}, ts, obs)


def _after_step(new, buf: dict, ts):
    """`ImitationEnv.fuse`'s part of a control step: step t's results written, the next action taken (the
    counters stay on the device until the iteration ends)."""
    t = buf["t"]
    rows = {"tracking": new.reward, "dones": new.done, "truncs": new.truncated, "final_obs": new.final_obs,
            "disc_obs": new.disc_obs}
    buf = {**buf, **{n: buf[n].at[t].set(x) for n, x in rows.items()}, "t": t + 1,
           "terms": {k: v + new.terms[k] for k, v in buf["terms"].items()}}
    return _act_into(buf, ts, new.obs)


@functools.partial(jax.jit, donate_argnums=1)
def disc_phase(ds, replay, real, fake, key):
    """`disc_updates` steps against fakes half from this rollout, half from the replay buffer; then store. The
    replay buffer is donated (updated in place)."""
    steps, half = real.shape[0], real.shape[1] // 2

    def body(ds, x):
        r, k = x
        k_new, k_old, k_up = jax.random.split(k, 3)
        f = jnp.concatenate([fake[jax.random.randint(k_new, (half,), 0, fake.shape[0])], replay.sample(k_old, half)])
        return discriminator.update(ds, r, f, k_up)

    replay = replay.add(fake)  # before sampling, so the first iteration's "old" half is not the empty buffer's zeros
    ds, metrics = jax.lax.scan(body, ds, (real, jax.random.split(key, steps)))
    return ds, replay, jax.tree.map(jnp.mean, metrics)


class _Stage(Stage):
    """An expert's iteration: a rollout, the discriminator's update, one PPO update (`padl.run.Stage`)."""

    desc = "expert"

    def __init__(self, library: MotionLibrary, cfg: ExpertConfig):
        self.library, self.cfg = library, cfg
        self.env = ImitationEnv(library, cfg.env)
        self.meta = _config_json(cfg, library, self.env)
        self.batch = cfg.rollout_steps * self.env.num_envs
        self.env_state = None  # started by the first iteration; on resume the episodes in flight restart
        self.step = self.env.fuse(_after_step)
        self.buf = _rollout_buffers(cfg.rollout_steps, self.env.num_envs, self.env.obs_size, self.env.action_size,
                                    self.env.core.sizes["disc"])

    def iterate(self, state: dict) -> dict:
        cfg, env, T, N = self.cfg, self.env, self.cfg.rollout_steps, self.env.num_envs
        it = int(state["iteration"])
        key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
        env_state = self.env_state if self.env_state is not None else env.reset(jax.random.fold_in(key, it))
        ts, ds, replay = state["ppo"], state["disc"], state["replay"]
        key, k_roll = jax.random.split(key)
        buf, a = _begin(self.buf, ts, env_state.obs, k_roll)
        for _ in range(T):
            env_state, buf, a = self.step(env_state, a, buf, ts)
        self.env_state, self.buf = env_state, buf
        rewards, r_disc = _rewards(ds, buf["tracking"], buf["disc_obs"], cfg.tracking_weight, cfg.disc_weight)
        key, k_real, k_disc, k_ppo = jax.random.split(key, 4)
        real, _ = env.reference_disc_obs(k_real, cfg.disc_updates * cfg.disc.batch_size)
        real = real.reshape(cfg.disc_updates, cfg.disc.batch_size, -1)
        ds, replay, d_metrics = disc_phase(ds, replay, real, buf["disc_obs"].reshape(T * N, -1), k_disc)
        rollout = ppo.Rollout(buf["obs"], buf["actions"], buf["logps"], buf["values"][:T], rewards, buf["dones"],
                              buf["truncs"], buf["values"][T],
                              ppo.value(ts, buf["final_obs"].reshape(T * N, -1)).reshape(T, N))
        moved, p_metrics = ppo.update(ts, rollout, k_ppo)
        ts = moved if it >= int(state["policy_frozen_until"]) else ppo.hold_policy(moved, ts)
        state.update(ppo=ts, disc=ds, replay=replay, key=jax.random.key_data(key))
        falls, ends = jnp.sum(rollout.dones), jnp.sum(rollout.dones) + jnp.sum(rollout.truncations)
        host = jax.device_get({"total": rewards.mean(), "disc": r_disc.mean(), "falls": falls, "ends": ends,
                               "terms": {k: v.mean() for k, v in buf["terms"].items()}, "d": d_metrics, "p": p_metrics})
        return {"reward/total": float(host["total"]), "reward/disc": float(host["disc"]),
                **{f"reward/{k}": float(v) / T for k, v in host["terms"].items()},
                "episode/length_s": T * N / max(float(host["ends"]), 1.0) / env.config.physics.control_hz,
                "episode/fall_rate": float(host["falls"]) / (T * N),
                **{f"disc/{k}": float(v) for k, v in host["d"].items()},
                **{f"ppo/{k}": float(v) for k, v in host["p"].items()}}

    def evaluate(self, state: dict, scalars: dict) -> tuple[dict, dict]:
        ts, cfg = state["ppo"], self.cfg
        env, seconds = replace(cfg.env, physics=dict(backend="mujoco")), 10.0
        if cfg.eval_hold_s is not None:
            clips = [self.library.index(c) for c in self.meta["clips"]]
            env = replace(env, episode=dict(hold_s=cfg.eval_hold_s, hold_follow=True))
            seconds = max([seconds] + [self.library.durations[i] + cfg.eval_hold_s for i in clips])
        ev = evaluate_policy(self.library, lambda s: mean_action(ts, s.obs),
                             clips=self.meta["clips"], episodes=cfg.eval_episodes, noise=cfg.eval_noise,
                             env_config=env, seconds=seconds, foreign_share=cfg.env.starts.foreign_share)["mean"]
        return ev, {"tracking": scalars["reward/tracking"]}

    def policy(self, state: dict) -> ppo.TrainState:
        return state["ppo"]

    def score(self, evaluation: dict) -> tuple[float, float]:
        return _score(evaluation)

    def stop(self, evaluation: dict) -> bool:
        return evaluation["success"] >= self.cfg.stop_success and evaluation["g_mpjpe_mm"] <= self.cfg.stop_g_mpjpe_mm

    def postfix(self, scalars: dict) -> dict:
        return {"track": f"{scalars['reward/tracking']:.3f}", "len": f"{scalars['episode/length_s']:.1f}s",
                "sps": f"{scalars['perf/samples_per_s']:.0f}"}


def _start_from(init_from: str | Path, state: dict, meta: dict, cfg: ExpertConfig, log) -> dict:
    """A new run's state started from another run's networks, discriminator and replay, or from a policy alone."""
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
    return state


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
    discriminator and replay (fine-tuning, e.g. with `starts.foreign_share`), its counters at zero. From a policy alone
    (an export, or a run's `policy`), the critic and discriminator are new: the policy then holds still for
    `critic_warmup_iterations`, so that the first updates it sees do not come from an untrained value function.
    Such a policy may come from other clips (any number: the observation names no clip): a tracker of one skill is
    a head start on a similar one."""
    run = Run(out, KIND, "PADL expert run", resume, force, log)
    if run.saved:
        cfg = from_dict(ExpertConfig, run.saved["expert"])
    stage = _Stage(library, cfg)
    state = _initial_state(cfg, stage.env)
    if run.saved:
        state = run.resume(state, _score)
    elif init_from is not None:
        state = _start_from(init_from, state, stage.meta, cfg, log)
    run.train(stage, state, cfg.iterations if iterations is None else iterations, progress, time_limit_s)
    return checkpoint.resume_meta(out, POLICY, KIND, "PADL expert policy")["eval"]
