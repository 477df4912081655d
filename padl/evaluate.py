"""Evaluation of a policy on motion clips: every episode starts at the clip's first frame and runs to its end
(non-looping clips) or for `seconds` (looping clips), with the deterministic policy; metrics from
`padl.metrics` (success, G-MPJPE, L-MPJPE, root error) per clip and their mean.

Episodes of one clip differ only by a small random perturbation of the initial joint angles and velocities
(`noise`), since the simulator and the mean action are deterministic.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import jax
import numpy as np

from motions.library import MotionLibrary
from padl import metrics
from padl.config import replace
from padl.env import EnvConfig, ImitationEnv, anchor_points

_ENVS: OrderedDict = OrderedDict()  # (library id, config) -> env: each new shape costs a jit compile
_ENVS_KEPT = 4  # a pipeline evaluates many libraries in turn; the least recently used env (and its library) goes


def evaluation_env(library: MotionLibrary, cfg: EnvConfig) -> ImitationEnv:
    """The environment evaluations of `cfg` on `library` share: a trainer's evaluations compile once. (The cached env
    holds its library, so no other library can take that id while the entry lives.)"""
    key = (id(library), cfg)
    if key not in _ENVS:
        _ENVS[key] = ImitationEnv(library, cfg)
        while len(_ENVS) > _ENVS_KEPT:
            _ENVS.popitem(last=False)
    _ENVS.move_to_end(key)
    return _ENVS[key]


def rollout(library: MotionLibrary, act: Callable, clips, episodes: int = 1, noise: float = 0.0,
            seconds: float = 10.0, env_config: EnvConfig = EnvConfig(), seed: int = 0, foreign_share: float = 0.0):
    """Run each clip `episodes` times from its start (a `foreign_share` of them in another clip's state at a random
    time, as after a command switch; `env_config.starts.foreign_clips`, `episode.recover_s` apply); returns per env
    (clip id, sim body pos (T,B,3), reference body pos (T,B,3), failed (T,) bool, sim qpos (T,35)) up to and
    including the step the episode ended.

    `act(state)` gets the whole `EnvState` (a policy with memory, like the distilled ones, keeps its own)."""
    clips = list(clips)
    durations = [library.durations[library.index(c)] for c in clips]
    length = max([seconds] + [d for c, d in zip(clips, durations) if not library.data.loop[library.index(c)]])
    cfg = replace(env_config, num_envs=len(clips) * episodes, clips=tuple(clips), episode=dict(length_s=float(length)),
                  starts=dict(init="start", init_noise=noise, foreign_share=foreign_share, reset_pool=1,
                              state_starts=env_config.starts.state_starts if foreign_share else None))
    env = evaluation_env(library, cfg)
    state = env.reset(jax.random.key(seed))
    n, alive = env.num_envs, np.ones(env.num_envs, bool)
    qpos, anchor, failed, valid = [], [], [], []
    steps = int(round(length * cfg.physics.control_hz)) + 1
    for _ in range(steps):
        before = np.asarray(state.anchor)
        state = env.step(state, act(state))
        done, trunc = np.asarray(state.done), np.asarray(state.truncated)
        # where the reference this step was compared with stood (an ended episode's state is already the next one's)
        anchor.append(np.where((done | trunc)[:, None], before, np.asarray(state.anchor)))
        valid.append(alive.copy())
        qpos.append(np.asarray(state.final_qpos))
        failed.append(done & ~np.asarray(state.info["body_error_exceeded"]))
        alive &= ~(done | trunc)
        if not alive.any():
            break
    # Padded to the whole episode (last rows repeated, never valid): the reference and forward kinematics below
    # then compile once per clip set, not once per length the episodes happened to reach.
    valid += [np.zeros(n, bool)] * (steps - len(valid))
    qpos, anchor, failed, valid = (np.stack(x + x[-1:] * (steps - len(x)), 1) for x in (qpos, anchor, failed, valid))
    times = (np.arange(steps) + 1) / cfg.physics.control_hz
    clip_idx = np.asarray(env.core.clips)[np.arange(n) % len(clips)]
    ref = library.sample(np.repeat(clip_idx, steps), np.tile(times, n))
    ref_pos = np.asarray(anchor_points(ref.body_pos.reshape(n, steps, -1, 3), anchor))
    sim_pos = np.asarray(library.bodies(qpos).pos)
    out = []
    for i in range(n):
        t = valid[i]
        out.append((library.clip_ids[clip_idx[i]], sim_pos[i, t], ref_pos[i, t], failed[i, t], qpos[i, t]))
    return out


def evaluate_policy(library: MotionLibrary, act: Callable, clips=None, episodes: int = 1, noise: float = 0.0,
                    seconds: float = 10.0, env_config: EnvConfig = EnvConfig(), seed: int = 0,
                    foreign_share: float = 0.0) -> dict:
    """{clip id: mean metrics over its episodes, ..., "mean": mean over clips} (see padl.metrics.summarize);
    `act(state) -> actions` as in `rollout`."""
    clips = list(clips or library.clip_ids)
    per_clip: dict[str, list] = {c: [] for c in clips}
    for clip, sim, ref, failed, _ in rollout(library, act, clips, episodes, noise, seconds, env_config, seed,
                                                 foreign_share):
        per_clip[clip].append(metrics.episode_metrics(sim, ref, failed))
    return metrics.summarize(per_clip)
