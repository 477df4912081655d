"""Plain-dataclass configs to and from JSON-able dicts (nested dataclasses, tuples kept as tuples), and the one
table that migrates configs saved by earlier versions (checkpoints, run folders, models/*)."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, NamedTuple


class Removed(NamedTuple):
    """An option that no longer exists: a saved config may hold it only at `no_op`, the value that did nothing."""

    no_op: Any


_ENV_MOVED = {  # EnvConfig's flat fields before it was split by concern
    **{k: f"physics.{k}" for k in ("backend", "num_threads", "control_hz", "physics_hz", "mjx_iterations",
                                   "mjx_ls_iterations", "max_qvel")},
    "action_mode": "action.mode", "action_scale": "action.scale",
    "ref_frames": "obs.ref_frames", "disc_frames": "obs.disc_frames",
    "episode_length_s": "episode.length_s",
    **{k: f"episode.{k}" for k in ("end_with_clip", "fall_height", "fall_margin", "max_body_error", "hold_s",
                                   "recover_s", "recover_follow", "anchor_cycles")},
    **{k: f"starts.{k}" for k in ("init", "first_frame_share", "init_noise", "foreign_share", "foreign_clips",
                                  "fall_starts", "reset_pool")},
}

# Per config class (by name): an old key -> its dotted path now, or `Removed` (see docs/experiments.md for why).
MIGRATIONS: dict[str, dict[str, str | Removed]] = {
    "EnvConfig": _ENV_MOVED,
    "GlobalConfig": {k: f"commands.{k}" for k in ("switch_every_s", "end_switch", "finish_s", "rest_switch",
                                                  "beta_iterations", "beta_floor")},
    "GroupConfig": {"switch_rate": Removed(0.0), "end_switch": Removed(0.0)},
    "HistoryConfig": {"clock": Removed(False)},
    "StartConfig": {"foreign_for": Removed(None)},
}


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict) -> Any:
    """Rebuild dataclass `cls` from `to_dict` output; unknown keys are an error (a config of another version)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    data = migrate(cls.__name__, data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - names):
        raise ValueError(f"{cls.__name__}: unknown field {unknown[0]!r}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value)
    return cls(**kwargs)


def migrate(name: str, data: dict) -> dict:
    """`data` (a saved config of class `name`) with the keys of earlier versions moved to where they are now
    (`MIGRATIONS`) and removed options dropped; a removed option set to anything but its no-op value is an error:
    that policy was trained with something that no longer exists."""
    table = MIGRATIONS.get(name, {})
    if not any(k in data for k in table):
        return data
    data = dict(data)
    for key, to in table.items():
        if key not in data:
            continue
        value = data.pop(key)
        if isinstance(to, Removed):
            if value != to.no_op:
                raise ValueError(f"{name}: {key!r} = {value!r} is an option that no longer exists "
                                 f"(only {to.no_op!r} loads; docs/experiments.md)")
            continue
        *parents, leaf = to.split(".")
        nested = data
        for p in parents:
            if not isinstance(nested.get(p, {}), dict):
                raise ValueError(f"{name}: {p!r} is not a mapping")
            nested[p] = dict(nested.get(p, {}))
            nested = nested[p]
        if leaf in nested:
            raise ValueError(f"{name}: {key!r} is given both flat and as {to!r}")
        nested[leaf] = value
    return data


def replace(cfg, **changes):
    """`dataclasses.replace` into nested configs: a dict value for a dataclass field updates that field's fields,
    e.g. `replace(env, clips=c, physics=dict(backend="mujoco"))`. A list for a tuple field becomes a tuple (configs
    are hashed: a variant's JSON list broke an evaluation's env cache)."""
    hints = typing.get_type_hints(type(cfg))
    for name, value in changes.items():
        current = getattr(cfg, name)
        if isinstance(value, dict) and dataclasses.is_dataclass(current):
            changes[name] = replace(current, **value)
        elif name in hints:
            changes[name] = _convert(hints[name], value)
    return dataclasses.replace(cfg, **changes)


def _convert(hint, value):
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_dict(arg, value)
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return tuple(value)
        return value
    if (origin is tuple or hint is tuple) and isinstance(value, list):
        return tuple(value)
    return value
