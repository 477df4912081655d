"""SuperPADL's policies loaded for acting, one class per kind, and `load(path)` for any policy of the pipeline.

- `padl.policy.ExpertPolicy` ("padl-expert"): a clip tracker, acting on the expert observation (with reference);
- `GroupPolicy` ("superpadl-group"): a group controller, acting on the student input with a clip's one-hot slot;
- `GlobalPolicy` ("superpadl-global"): the text policy, acting on the student input with a caption embedding; its
  checkpoint also holds the caption table, a start pose and a record of the text encoder (`encoder_record`).

Each loads from a run folder or its `policy` checkpoint, and `act(x)` is its deterministic (mean) action, batched.
Teachers (`superpadl.teachers`), evaluation agents (`superpadl.evaluate`) and runtime controllers
(`superpadl.runtime`) are adapters over these; the trainers import this module, never the reverse.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from padl import checkpoint, ppo
from padl.config import from_dict
from padl.env import EnvConfig
from padl.policy import POLICY, ExpertPolicy, mean_action
from superpadl import student as S
from superpadl.text import EMBED_DIM, MODEL_NAME

GROUP_KIND = "superpadl-group"
GLOBAL_KIND = "superpadl-global"
GROUPS_FORMAT = "superpadl-groups"  # <groups>/groups.json: {"format", "groups": [{"name", "clips"}]}


def _policy_file(path: str | Path) -> Path:
    path = Path(path)
    return path / POLICY if path.is_dir() else path


def _read(path: Path, kind: str, what: str, section: str, build) -> tuple:
    """(tree, metadata, built) of the checkpoint at `path`: its kind checked, `build(meta, ppo config)` -> (template,
    built) on its metadata, then the arrays loaded into the template; malformed metadata is a CheckpointError."""
    _, meta = checkpoint.load(path)  # validates format and checksum before anything is trusted
    if meta.get("kind") != kind:
        raise checkpoint.CheckpointError(f"{path}.json: not a SuperPADL {what} (kind={meta.get('kind')!r})")
    with checkpoint.metadata_of(f"{path}.json", what):
        template = build(meta, from_dict(ppo.PPOConfig, meta[section]["ppo"]))
    tree, _ = checkpoint.load(path, template)
    return tree, meta


class GroupPolicy:
    """A group controller: `act(x)` on `input(...)`, the student input whose condition is the one-hot slot of the
    clip to perform among its group's `clips`."""

    kind = GROUP_KIND

    def __init__(self, ts: ppo.TrainState, meta: dict, where: str | Path = POLICY):
        with checkpoint.metadata_of(where, "group controller"):
            self.env = from_dict(EnvConfig, meta["group"]["env"])
            self.history = from_dict(S.HistoryConfig, meta["group"]["history"])
            self.clips = list(meta["clips"])
        self.ts, self.meta = ts, meta

    @classmethod
    def load(cls, path: str | Path) -> "GroupPolicy":
        path = _policy_file(path)
        ts, meta = _read(path, GROUP_KIND, "group controller", "group",
                         lambda m, cfg: ppo.template(m["input_size"], m["action_size"], cfg))
        return cls(ts, meta, f"{path}.json")

    def input(self, policy_obs, hist, slot, heading) -> jax.Array:
        """The student input of envs performing their group's clip number `slot` (N,)."""
        condition = jax.nn.one_hot(slot, len(self.clips), dtype=jnp.float32)
        return S.student_input(policy_obs, hist, condition, self.history, heading)

    def act(self, x: jax.Array) -> jax.Array:
        return mean_action(self.ts, x)


class GlobalPolicy:
    """The text-conditioned policy: `act(x)` on `input(...)`, the student input whose condition is a caption
    embedding; `captions`, `caption_clips` and `caption_emb` its caption table, `start_qpos` a start pose."""

    kind = GLOBAL_KIND

    def __init__(self, tree: dict, meta: dict, where: str | Path = POLICY):
        with checkpoint.metadata_of(where, "global policy"):
            cfg = meta["global"]
            self.ppo = from_dict(ppo.PPOConfig, cfg["ppo"])
            self.env = from_dict(EnvConfig, cfg["env"])
            self.history = from_dict(S.HistoryConfig, meta["history"])
            self.clips, self.character = list(meta["clips"]), meta["character"]
            self.captions, self.caption_clips = list(meta["captions"]), list(meta["caption_clips"])
            # {clip: seconds} of its one-shot clips (none recorded by policies trained before it was)
            self.one_shot_s = {str(c): float(s) for c, s in meta.get("one_shot_s", {}).items()}
        self.tree, self.meta, self.where = tree, meta, where
        self.caption_emb = np.asarray(tree["caption_emb"], np.float32)
        self.start_qpos = np.asarray(tree["start_qpos"], np.float64)
        self._state = ppo.policy_state(tree["policy_params"], tree["normalizer"], self.ppo)

    @classmethod
    def load(cls, path: str | Path) -> "GlobalPolicy":
        path = _policy_file(path)

        def template(meta, cfg):
            ts = ppo.template(meta["input_size"], meta["action_size"], cfg)
            return {"policy_params": ts.policy_params, "normalizer": ts.normalizer,
                    "caption_emb": np.zeros((len(meta["captions"]), EMBED_DIM), np.float32),
                    "start_qpos": np.zeros((meta["action_size"] + 7,), np.float32)}

        tree, meta = _read(path, GLOBAL_KIND, "global policy", "global", template)
        return cls(tree, meta, f"{path}.json")

    def input(self, policy_obs, hist, condition, heading) -> jax.Array:
        """The student input of envs conditioned on caption embeddings `condition` (N, 384)."""
        return S.student_input(policy_obs, hist, condition, self.history, heading)

    def act(self, x: jax.Array) -> jax.Array:
        return mean_action(self._state, x)

    def encoder(self) -> dict:
        """The record of the text encoder its captions were embedded with (`policy_encoder`)."""
        return policy_encoder(self.meta, self.caption_emb, self.where)


KINDS = {c.kind: c for c in (ExpertPolicy, GroupPolicy, GlobalPolicy)}


def kind(path: str | Path) -> str | None:
    """The kind of the policy at `path` (a folder with policy.json, or a checkpoint), read from its JSON alone;
    None when there is no policy there."""
    spec = _policy_file(path).with_suffix(".json")
    return checkpoint.kind_of(spec) if spec.is_file() else None


def load(path: str | Path) -> ExpertPolicy | GroupPolicy | GlobalPolicy:
    """The policy at `path` (a run or policy folder, or its checkpoint), of the class its checkpoint's kind names."""
    k = kind(path)
    if k is None:
        raise ValueError(f"{path}: not a policy (no policy.json)")
    if k not in KINDS:
        raise ValueError(f"{_policy_file(path).with_suffix('.json')}: not a policy of a kind this version knows "
                         f"(kind={k!r})")
    return KINDS[k].load(path)


FINGERPRINT_TEXT = "a person walks forward"
FINGERPRINT_SIZE = 16  # leading components of the fingerprint embedding recorded
FINGERPRINT_TOLERANCE = 2e-3  # rounding (5e-5) and float noise across machines (~1e-6) stay far below it


def encoder_record(encoder) -> dict:
    """What a policy records of the text encoder its captions were embedded with: the model's name, the embedding
    size, and a fingerprint (a fixed sentence and the leading components of its embedding, rounded). The runtime
    refuses a policy whose encoder differs (`check_encoder`): it would condition on embeddings it never saw."""
    e = np.asarray(encoder.encode(FINGERPRINT_TEXT)[0], np.float64)
    return {"name": getattr(encoder, "model_name", MODEL_NAME), "dim": int(e.shape[0]),
            "fingerprint": {"text": FINGERPRINT_TEXT, "values": [round(float(x), 4) for x in e[:FINGERPRINT_SIZE]]}}


def policy_encoder(meta: dict, caption_emb: np.ndarray, where) -> dict:
    """The encoder record of a loaded policy. A policy distilled before records existed (the shipped
    models/default) used the default encoder; its own first caption and embedding are then the fingerprint."""
    record = meta.get("text_encoder")
    if isinstance(record, dict):
        return record
    if record is not None:
        raise checkpoint.CheckpointError(f"{where}: malformed text_encoder record {record!r}")
    return {"name": MODEL_NAME, "dim": int(caption_emb.shape[1]),
            "fingerprint": {"text": meta["captions"][0], "values": [float(x) for x in caption_emb[0][:FINGERPRINT_SIZE]]}}


def check_encoder(record: dict, encoder, where, embed: bool = True) -> None:
    """ValueError (one line naming `where`) unless `encoder` is the one `record` describes; `embed=False` checks
    the name alone (no model is loaded)."""
    name = getattr(encoder, "model_name", MODEL_NAME)
    if name != record.get("name"):
        raise ValueError(f"{where}: distilled with text encoder {record.get('name')!r}, not this runtime's {name!r}")
    if not embed:
        return
    fp = record.get("fingerprint") or {}
    e = np.asarray(encoder.encode(fp.get("text", FINGERPRINT_TEXT))[0], np.float64)
    values = np.asarray(fp.get("values", []), np.float64)
    if e.shape[0] != record.get("dim") or len(values) > e.shape[0] or \
            not np.all(np.abs(e[:len(values)] - values) <= FINGERPRINT_TOLERANCE):
        raise ValueError(f"{where}: distilled with a text encoder named {name!r} whose embeddings differ from this "
                         f"runtime's (fingerprint {fp.get('text')!r}, dimension {record.get('dim')} vs {e.shape[0]})")
