"""Teachers of the distillation stages: each env's clip acted on by the policy that knows it.

`ExpertTeachers` (stage 2, group controllers learn from them): the expert of each env's clip acts on the env's full
observation (which has the reference), and its residual action becomes an absolute one. `GroupTeachers` (stage 3,
the global policy learns from them; also `superpadl eval` of a groups folder): the controller of each command clip's
group acts on the student input. Both are adapters over the policy classes (`padl.policy`, `superpadl.policies`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from motions.library import MotionLibrary
from padl import checkpoint, ppo
from padl.env import EnvConfig, pd_targets
from padl.policy import ExpertPolicy
from superpadl import student as S
from superpadl.policies import GROUPS_FORMAT, GroupPolicy


def _owners(library: MotionLibrary, clip_lists) -> tuple[np.ndarray, np.ndarray]:
    """(C,) per library clip: the index of the first clip list holding it (-1: none), and its slot in that list."""
    owner = np.full(len(library.clip_ids), -1)
    slot = np.zeros(len(library.clip_ids), np.int32)
    for g, clips in enumerate(clip_lists):
        for s, c in enumerate(clips):
            if c in library.clip_ids and owner[library.index(c)] < 0:
                owner[library.index(c)], slot[library.index(c)] = g, s
    return owner, slot


def _owned(owner, count: int, act) -> jax.Array:
    """(N, A): each env's action `act(k)` by its owner k of `count` (owner -1: the first). An owner's network runs
    only when some env has it (`lax.cond`), on every env: gathering its envs would change shapes each step."""
    owner = jnp.maximum(owner, 0)
    shape = jax.eval_shape(lambda: act(0))
    out = jnp.zeros(shape.shape, shape.dtype)
    for k in range(count):
        out = jax.lax.cond(jnp.any(owner == k), lambda o, k=k: jnp.where((owner == k)[:, None], act(k), o),
                           lambda o: o, out)
    return out


@functools.partial(jax.jit, static_argnames="modes")
def _expert_act(policies, owner, obs, ref_qpos, clip, limits, modes):
    """`ExpertTeachers.act` as one call: the experts' PD targets (residual to the reference, `modes` (mode, scale) per
    expert) as absolute actions."""
    act_joint, low, high = limits

    def expert(k):
        a = ppo.mean_action(policies[k], obs)
        return S.to_absolute(pd_targets(ref_qpos[:, 0, 7:], a, *modes[k], act_joint, low, high), low, high)

    return _owned(owner[clip], len(policies), expert)


@functools.partial(jax.jit, static_argnames=("sizes", "hcfg"))
def _group_act(policies, owner, slot, policy_obs, hist, command, heading, sizes, hcfg):
    """`GroupTeachers.act` as one call; `sizes`: each group's clip count (its one-hot's width)."""
    def group(k):
        condition = jax.nn.one_hot(slot[command], sizes[k], dtype=jnp.float32)
        return ppo.mean_action(policies[k], S.student_input(policy_obs, hist, condition, hcfg, heading))

    return _owned(owner[command], len(policies), group)


def _acting(policy) -> ppo.TrainState:
    """What `ppo.mean_action` reads of a policy: its network and normaliser, not its value network or optimisers."""
    return ppo.policy_state(policy.ts.policy_params, policy.ts.normalizer, policy.ts.config)


class ExpertTeachers:
    """Experts as teachers of reference-free students: `act(env_state)` -> (N, 28) absolute actions of each env's
    clip expert on its current state."""

    def __init__(self, library: MotionLibrary, experts: list[ExpertPolicy]):
        self.experts = experts
        self.owner, _ = _owners(library, [e.clips for e in experts])  # library clip -> expert index (-1: none)
        self._limits = tuple(map(jnp.asarray, S.joint_limits(library.character)))
        self._modes = tuple((e.env.action.mode, e.env.action.scale) for e in experts)
        self._policies = [_acting(e) for e in experts]
        self._owner = jnp.asarray(self.owner)

    def clips(self, library: MotionLibrary) -> list[str]:
        return [c for i, c in enumerate(library.clip_ids) if self.owner[i] >= 0]

    def env_config(self) -> EnvConfig:
        """The experts' environment settings (all must agree on what the observation holds)."""
        first = self.experts[0].env
        for e in self.experts[1:]:
            c = e.env
            if (c.obs, c.physics.control_hz) != (first.obs, first.physics.control_hz):
                raise ValueError("experts disagree on ref_frames / disc_frames / control_hz; distil them separately")
        return first

    def act(self, state) -> jax.Array:
        return _expert_act(self._policies, self._owner, state.obs, state.ref.qpos, state.clip, self._limits,
                           self._modes)


def find_experts(paths) -> list[Path]:
    """Expert run folders (holding policy.json) named directly or as sub-folders of the given folders."""
    found = []
    for p in map(Path, paths):
        if (p / "policy.json").is_file():
            found.append(p)
        elif p.is_dir():
            found += sorted(d for d in p.iterdir() if (d / "policy.json").is_file())
        else:
            raise ValueError(f"{p}: no such expert folder")
    if not found:
        raise ValueError(f"{', '.join(map(str, paths))}: no expert (a folder with policy.json) found")
    return found


def load_experts(library: MotionLibrary, paths) -> ExpertTeachers:
    """The experts in the given folders (`find_experts`) as teachers."""
    return ExpertTeachers(library, [ExpertPolicy.load(p) for p in find_experts(paths)])


class GroupTeachers:
    """Group controllers as teachers: `act(policy_obs, hist, command, heading)` -> (N, 28), env i performing
    library clip `command[i]` (`heading[i]`: `student.heading_features` since it began), acted on by the controller
    of that clip's group with the shared history."""

    def __init__(self, library: MotionLibrary, groups: list[GroupPolicy]):
        self.policies = groups
        owner, slot = _owners(library, [g.clips for g in groups])
        self.clip_owner = owner  # library clip -> group index (-1: none)
        self.owner, self.slot = jnp.asarray(owner), jnp.asarray(slot)
        if len({g.history for g in groups}) != 1:
            raise ValueError("group controllers disagree on their history settings")
        self.history = groups[0].history
        self._policies, self._sizes = [_acting(g) for g in groups], tuple(len(g.clips) for g in groups)

    def env_config(self) -> EnvConfig:
        """The first group's environment settings (the distillation stages take its frames and rate)."""
        return self.policies[0].env

    def act(self, policy_obs, hist, command, heading) -> jax.Array:
        return _group_act(self._policies, self.owner, self.slot, policy_obs, hist, command, heading,
                          self._sizes, self.history)


def load_groups(path: str | Path, library: MotionLibrary) -> GroupTeachers:
    """The controllers of a groups folder (`groups.json` and one run folder per group) as teachers."""
    spec = checkpoint.read_spec(Path(path) / "groups.json", GROUPS_FORMAT, "groups folder")
    return GroupTeachers(library, [GroupPolicy.load(Path(path) / g["name"]) for g in spec["groups"]])
