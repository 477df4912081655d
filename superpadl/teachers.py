"""Teachers of the distillation stages: each env's clip acted on by the policy that knows it.

`ExpertTeachers` (stage 2, group controllers learn from them): the expert of each env's clip acts on the env's full
observation (which has the reference), and its residual action becomes an absolute one. `GroupTeachers` (stage 3,
the global policy learns from them; also `superpadl eval` of a groups folder): the controller of each command clip's
group acts on the student input. Both are adapters over the policy classes (`padl.policy`, `superpadl.policies`).
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from motions.library import MotionLibrary
from padl import checkpoint
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


class ExpertTeachers:
    """Experts as teachers of reference-free students: `act(env_state)` -> (N, 28) absolute actions of each env's
    clip expert on its current state."""

    def __init__(self, library: MotionLibrary, experts: list[ExpertPolicy]):
        self.experts = experts
        self.owner, _ = _owners(library, [e.clips for e in experts])  # library clip -> expert index (-1: none)
        act_joint, low, high = S.joint_limits(library.character)
        self._abs = [jax.jit(lambda ref, a, c=e.env: S.to_absolute(
            pd_targets(ref, a, c.action_mode, c.action_scale, act_joint, low, high), low, high)) for e in experts]
        self._owner = jnp.asarray(self.owner)

    def clips(self, library: MotionLibrary) -> list[str]:
        return [c for i, c in enumerate(library.clip_ids) if self.owner[i] >= 0]

    def env_config(self) -> EnvConfig:
        """The experts' environment settings (all must agree on what the observation holds)."""
        first = self.experts[0].env
        for e in self.experts[1:]:
            c = e.env
            if (c.ref_frames, c.disc_frames, c.control_hz) != (first.ref_frames, first.disc_frames, first.control_hz):
                raise ValueError("experts disagree on ref_frames / disc_frames / control_hz; distil them separately")
        return first

    def act(self, state) -> jax.Array:
        out = None
        owner = self._owner[state.clip]
        for e, expert in enumerate(self.experts):
            a = self._abs[e](state.ref.qpos[:, 0, 7:], expert.act(state.obs))
            out = a if out is None else jnp.where((owner == e)[:, None], a, out)
        return out


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
    """Group controllers as teachers: `act(policy_obs, hist, command, clock, heading)` -> (N, 28), env i performing
    library clip `command[i]`, begun `clock[i]` s ago (`heading[i]`: `student.heading_features` since then), acted on
    by the controller of that clip's group with the shared history."""

    def __init__(self, library: MotionLibrary, groups: list[GroupPolicy]):
        self.policies = groups
        owner, slot = _owners(library, [g.clips for g in groups])
        self.clip_owner = owner  # library clip -> group index (-1: none)
        self.owner, self.slot = jnp.asarray(owner), jnp.asarray(slot)
        if len({g.history for g in groups}) != 1:
            raise ValueError("group controllers disagree on their history settings")
        self.history = groups[0].history

    def env_config(self) -> EnvConfig:
        """The first group's environment settings (the distillation stages take its frames and rate)."""
        return self.policies[0].env

    def act(self, policy_obs, hist, command, clock, heading) -> jax.Array:
        out = None
        owner = self.owner[command]
        for g, group in enumerate(self.policies):
            a = group.act(group.input(policy_obs, hist, self.slot[command], clock, heading))
            out = a if out is None else jnp.where((owner == g)[:, None], a, out)
        return out


def load_groups(path: str | Path, library: MotionLibrary) -> GroupTeachers:
    """The controllers of a groups folder (`groups.json` and one run folder per group) as teachers."""
    spec = checkpoint.read_spec(Path(path) / "groups.json", GROUPS_FORMAT, "groups folder")
    return GroupTeachers(library, [GroupPolicy.load(Path(path) / g["name"]) for g in spec["groups"]])
