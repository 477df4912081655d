"""A PADL expert loaded for acting: the one reader of `padl-expert` checkpoints, without the trainer.

An expert run folder holds `policy.*` (the best-evaluated PPO state, kept by `padl.expert.train`) and
`train_state.*` (the whole run); an export (`ExpertPolicy.export`) holds the policy network and its observation
normaliser alone, with `policy_only` set in its metadata. Evaluation, recording, teachers and the runtime act
with an `ExpertPolicy`; the trainer imports this module, never the reverse.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp

from padl import checkpoint, ppo
from padl.config import from_dict
from padl.env import EnvConfig

KIND = "padl-expert"
POLICY = "policy"  # <run>/policy.{npz,json}: the best-evaluated policy
TRAIN_STATE = "train_state"  # <run>/train_state.{npz,json}: the whole run, for --resume

mean_action = jax.jit(ppo.mean_action)  # one compilation per network shape, shared by every policy kind


class ExpertPolicy:
    """An expert's PPO state and metadata: `act(obs)` is its deterministic (mean) action on the expert's
    observation (policy part, then the reference part); `env` the environment it was trained in, `clips` its clips."""

    kind = KIND

    def __init__(self, ts: ppo.TrainState, meta: dict, where: str | Path = POLICY):
        with checkpoint.metadata_of(where, "expert policy"):
            self.env = from_dict(EnvConfig, meta["expert"]["env"])
            self.clips = list(meta["clips"])
        self.ts, self.meta = ts, meta

    @classmethod
    def load(cls, path: str | Path) -> "ExpertPolicy":
        """From a run folder, its `policy` checkpoint, or an export (whose value network and optimisers are left
        at their initial values)."""
        path = Path(path)
        path = path / POLICY if path.is_dir() else path
        if path.name == TRAIN_STATE:
            return cls._latest(path)
        where = f"{path}.json"
        _, meta = checkpoint.load(path)  # validates format and checksum before anything is trusted
        if meta.get("kind") != KIND:
            raise checkpoint.CheckpointError(f"{where}: not a PADL expert policy (kind={meta.get('kind')!r})")
        with checkpoint.metadata_of(where, "expert policy"):
            shape = (meta["obs_size"], meta["action_size"], from_dict(ppo.PPOConfig, meta["expert"]["ppo"]))
            # an export's value network and optimisers start at their initial values, so they are built for real;
            # a full checkpoint replaces every leaf, so its template is shapes alone
            template = ppo.init(jax.random.key(0), *shape) if meta.get("policy_only") else ppo.template(*shape)
        if meta.get("policy_only"):
            part, _ = checkpoint.load(path, {"policy_params": template.policy_params,
                                             "normalizer": template.normalizer})
            return cls(template.replace(**part), meta, where)
        ts, _ = checkpoint.load(path, template)
        return cls(ts, meta, where)

    @classmethod
    def _latest(cls, path: Path) -> "ExpertPolicy":
        """A run's latest policy (`RUN/train_state`), where `RUN/policy` is the one its evaluations kept: a fine-tune
        from other states can be judged by what its clip-start evaluations do not see (benchmarks/handover_success.py)."""
        flat, meta = checkpoint.load(path)
        kept = cls.load(path.parent / POLICY)  # the same networks
        leaves, treedef = jax.tree_util.tree_flatten_with_path(kept.ts)
        keys = ["['ppo']" + jax.tree_util.keystr(p) for p, _ in leaves]
        wanted = [k for k in keys if k.startswith(("['ppo'].policy_params", "['ppo'].normalizer"))]
        if not wanted or (missing := [k for k in wanted if k not in flat]):
            raise checkpoint.CheckpointError(f"{path}.json: not a PADL expert run's state (no {missing[0] if wanted else 'policy'})")
        ts = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(flat[k]) if k in wanted else leaf
                                                    for k, (_, leaf) in zip(keys, leaves)])
        return cls(ts, {**kept.meta, "iteration": meta.get("iteration"), "eval": None}, f"{path}.json")

    def act(self, obs: jax.Array) -> jax.Array:
        """(N, action) mean actions on (N, obs) expert observations."""
        return mean_action(self.ts, obs)

    def export(self, dst: str | Path) -> Path:
        """Write the policy network and its observation normaliser alone (about a sixth of a `policy`
        checkpoint): what acting needs, for shipping."""
        return checkpoint.save(checkpoint.in_folder(dst, POLICY),
                               {"policy_params": self.ts.policy_params, "normalizer": self.ts.normalizer},
                               {**shippable_meta(self.meta, "expert"), "policy_only": True})


def shippable_meta(meta: dict, section: str) -> dict:
    """A copy of a policy's metadata without its `state_starts` file: a file of the machine it trained on, which
    acting never reads (elsewhere its starts are other clips')."""
    meta = json.loads(json.dumps(meta))
    starts = meta.get(section, {}).get("env", {}).get("starts", {})
    if starts.get("state_starts"):
        starts["state_starts"] = None
    return meta


def load_source(path: str | Path) -> tuple[dict, ppo.TrainState | None]:
    """What a run's `init_from` names: (its metadata, None) for an expert run (its `train_state`), or (metadata,
    PPO state) for an expert policy alone, such as a shipped export."""
    meta = checkpoint.resume_meta(path, TRAIN_STATE, KIND, "PADL expert run")
    if meta is not None:
        return meta, None
    policy = ExpertPolicy.load(path)
    return policy.meta, policy.ts
