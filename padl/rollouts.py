"""Expert rollouts for distillation: (observation, expert action, reference) trajectories of a trained expert.

Format: a `padl.checkpoint` pair `<name>.npz` + `<name>.json` (plain arrays, sha256-checked, no pickle) holding
a dict of arrays with leading axes (T, N) = (control steps, parallel envs):

    obs          (T, N, O)  float32  the expert's observation (policy part first, then the reference part;
                                     sizes in the JSON's obs_layout)
    action       (T, N, 28) float32  the expert's mean action (residual PD offsets, ActionConfig.scale rad)
    ref_qpos     (T, N, 35) float32  the reference pose the step tracks (root pos, root quat wxyz, 28 joints)
    qpos, qvel   (T, N, 35 / 34)     the simulated state the observation was taken in
    clip         (T, N)     int32    index into `clips` (JSON), the clip each env follows
    clip_time    (T, N)     float32  reference time (s) of the observation
    done         (T, N)     bool     the step ended the episode (the env restarted at a new reference state)

The JSON's config holds `clips`, `expert` (the policy's path), `env` (EnvConfig), `obs_layout` and `noise`.
Episodes start at random reference states, as in training; `noise` > 0 acts with the expert's Gaussian policy
scaled by it (exploring states around the expert's own), while the recorded action is always the mean.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from motions.library import MotionLibrary
from padl import checkpoint, ppo
from padl.config import replace, to_dict
from padl.env import ImitationEnv
from padl.policy import ExpertPolicy


def record(expert: str | Path, library: MotionLibrary, out: str | Path, steps: int = 300, num_envs: int = 64,
           noise: float = 0.0, seed: int = 0, backend: str = "auto") -> Path:
    policy = ExpertPolicy.load(expert)
    ts, meta = policy.ts, policy.meta
    cfg = replace(policy.env, num_envs=num_envs, physics=dict(backend=backend), seed=seed, clips=tuple(policy.clips))
    env = ImitationEnv(library, cfg)
    state = env.reset(jax.random.key(seed))
    key = jax.random.key(seed + 1)
    fields = {k: [] for k in ("obs", "action", "ref_qpos", "qpos", "qvel", "clip", "clip_time", "done")}
    std = jnp.float32(noise)
    for _ in range(steps):
        key, k = jax.random.split(key)
        mean, _, _ = ppo.act(ts, state.obs, k, deterministic=True)
        if noise > 0:
            sample, _, _ = ppo.act(ts, state.obs, k)
            act = mean + std * (sample - mean)
        else:
            act = mean
        for name, value in (("obs", state.obs), ("action", mean), ("ref_qpos", state.ref.qpos[:, 0]),
                            ("qpos", state.qpos), ("qvel", state.qvel), ("clip", state.clip),
                            ("clip_time", state.clip_time)):
            fields[name].append(np.asarray(value))
        state = env.step(state, act)
        fields["done"].append(np.asarray(state.done) | np.asarray(state.truncated))
    arrays = {k: np.stack(v).astype(np.float32 if np.asarray(v[0]).dtype.kind == "f" else np.asarray(v[0]).dtype)
              for k, v in fields.items()}
    # clip ids are library indices in the env; store them as indices into the recorded `clips` list.
    lib_to_local = {library.index(c): i for i, c in enumerate(meta["clips"])}
    arrays["clip"] = np.vectorize(lib_to_local.get)(arrays["clip"]).astype(np.int32)
    return checkpoint.save(out, arrays, {"kind": "padl-rollouts", "clips": list(meta["clips"]), "expert": str(expert),
                                         "env": to_dict(cfg), "obs_layout": meta["obs_layout"], "noise": noise})


def load(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, metadata) of a recording; a file of another kind is refused."""
    flat, meta = checkpoint.load(path)
    if meta.get("kind") != "padl-rollouts":
        raise checkpoint.CheckpointError(f"{Path(path)}: not a PADL rollout recording (kind={meta.get('kind')!r})")
    return {k.strip("[]'\""): v for k, v in flat.items()}, meta
