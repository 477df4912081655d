"""Plain-dataclass configs to and from JSON-able dicts (nested dataclasses, tuples kept as tuples)."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict) -> Any:
    """Rebuild dataclass `cls` from `to_dict` output; unknown keys are an error (a config of another version)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    data = _moved(cls, data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - names):
        raise ValueError(f"{cls.__name__}: unknown field {unknown[0]!r}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value)
    return cls(**kwargs)


def _moved(cls, data: dict) -> dict:
    """`data` with the flat keys of an older version of `cls` moved into the nested config that now holds them
    (`cls.MOVED`: old key -> field name), so that configs saved before the move still load."""
    moved = getattr(cls, "MOVED", {})
    if not any(k in data for k in moved):
        return data
    data = dict(data)
    for key, into in moved.items():
        if key in data:
            nested = data.get(into, {})
            if not isinstance(nested, dict):
                raise ValueError(f"{cls.__name__}: {into!r} is not a mapping")
            if key in nested:
                raise ValueError(f"{cls.__name__}: {key!r} is given both flat and in {into!r}")
            data[into] = {**nested, key: data.pop(key)}
    return data


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
