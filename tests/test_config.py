"""Configs saved by earlier versions: the one migration table (`padl.config.MIGRATIONS`) moves EnvConfig's flat keys
to their nested places and drops removed options only at their no-op value; the shipped models load and act as
they did."""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from padl.config import MIGRATIONS, from_dict, replace, to_dict
from padl.env import EnvConfig, PhysicsConfig, StartConfig
from padl.expert import ExpertConfig
from padl.policy import ExpertPolicy
from superpadl.global_policy import GlobalConfig
from superpadl.groups import GroupConfig
from superpadl.student import HistoryConfig

REPO = Path(__file__).resolve().parents[1]
# the shipped experts: teachers and warm starts (the flat layout below survives in a warm start)
SHIPPED = sorted(p.parent for folder in ("teachers", "warmstarts")
                 for p in (REPO / "models" / folder).glob("*/policy.json"))
# the shipped experts saved before EnvConfig was split by concern (the others were saved in the nested layout)
FLAT = [p for p in SHIPPED if "control_hz" in json.loads((p / "policy.json").read_text())["config"]["expert"]["env"]]


def _at(cfg, path: str):
    return functools.reduce(getattr, path.split("."), cfg)


def _json_value(v):
    return tuple(v) if isinstance(v, list) else v


@pytest.mark.parametrize("path", FLAT, ids=lambda p: p.name)
def test_a_shipped_expert_loads_every_flat_value_into_its_nested_place_and_acts_as_resaved(path, tmp_path):
    flat = json.loads((path / "policy.json").read_text())["config"]["expert"]
    cfg = from_dict(ExpertConfig, flat)
    for old, new in MIGRATIONS["EnvConfig"].items():  # a key added after the model was saved has its default
        assert _at(cfg.env, new) == _json_value(flat["env"].get(old, _at(EnvConfig(), new))), old
    assert from_dict(ExpertConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    # the same policy saved in the new layout: the same config and, on one observation, the same action
    shutil.copytree(path, tmp_path / "nested")
    sidecar = json.loads((path / "policy.json").read_text())
    sidecar["config"]["expert"] = to_dict(cfg)
    (tmp_path / "nested" / "policy.json").write_text(json.dumps(sidecar))
    old, nested = ExpertPolicy.load(path), ExpertPolicy.load(tmp_path / "nested")
    assert old.env == nested.env == cfg.env and old.env.physics.control_hz == 30.0
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(2, old.meta["obs_size"])), jnp.float32)
    np.testing.assert_array_equal(np.asarray(old.act(obs)), np.asarray(nested.act(obs)))


def test_a_global_policy_saved_flat_loads_its_env_schedule_and_history():
    """A global policy distilled before the nested configs (the config of the default model shipped until then)."""
    saved = json.loads((REPO / "tests" / "data" / "flat_global_config.json").read_text())
    flat = saved["global"]
    cfg = from_dict(GlobalConfig, flat)
    assert cfg.env.action.mode == "absolute" and cfg.env.episode.max_body_error == flat["env"]["max_body_error"]
    assert cfg.commands.finish_s == flat["finish_s"]
    history = {k: v for k, v in saved["history"].items() if k != "clock"}  # saved at its no-op value
    assert saved["history"]["clock"] is False and from_dict(HistoryConfig, saved["history"]) == HistoryConfig(**history)


def test_a_removed_option_loads_only_at_its_no_op_value():
    group = to_dict(GroupConfig())
    assert from_dict(GroupConfig, {**group, "switch_rate": 0.0, "end_switch": 0.0}) == GroupConfig()
    with pytest.raises(ValueError, match="GroupConfig: 'switch_rate' = 0.3 is an option that no longer exists"):
        from_dict(GroupConfig, {**group, "switch_rate": 0.3})
    with pytest.raises(ValueError, match="'clock' = True"):
        from_dict(HistoryConfig, {"frames": 5, "clock": True})
    starts = {**to_dict(StartConfig()), "foreign_for": None}
    assert from_dict(StartConfig, starts) == StartConfig()
    with pytest.raises(ValueError, match="'foreign_for'"):
        from_dict(StartConfig, {**starts, "foreign_for": ["walk"]})


def test_a_key_given_flat_and_nested_or_unknown_is_refused():
    with pytest.raises(ValueError, match="'backend' is given both flat and as 'physics.backend'"):
        from_dict(EnvConfig, {"backend": "mjx", "physics": {"backend": "mujoco"}})
    with pytest.raises(ValueError, match="PhysicsConfig: unknown field 'hz'"):
        from_dict(EnvConfig, {"physics": {"hz": 60.0}})
    # flat keys of different concerns land beside nested ones the saved config already holds
    cfg = from_dict(EnvConfig, {"control_hz": 60.0, "physics": {"backend": "mujoco"}, "hold_s": 1.0})
    assert cfg.physics == PhysicsConfig(backend="mujoco", control_hz=60.0) and cfg.episode.hold_s == 1.0


def test_replace_updates_nested_configs_by_dict():
    cfg = replace(EnvConfig(), num_envs=3, physics=dict(backend="mujoco"), episode=dict(hold_s=2.0))
    assert cfg.num_envs == 3 and cfg.physics == PhysicsConfig(backend="mujoco") and cfg.episode.hold_s == 2.0
    assert cfg.episode.length_s == EnvConfig().episode.length_s  # the other fields of a nested config are kept
    assert replace(cfg, physics=PhysicsConfig()).physics == PhysicsConfig()  # a config value replaces outright


def test_replace_turns_a_list_into_the_tuple_a_config_holds_so_it_stays_hashable():
    # a recipe variant's JSON list (benchmarks/distill_curves.py) for a tuple field: evaluation envs are cached by config
    cfg = replace(EnvConfig(), clips=["a", "b"], starts=dict(foreign_clips=["c"]))
    assert cfg.clips == ("a", "b") and cfg.starts.foreign_clips == ("c",)
    assert hash(cfg) == hash(replace(EnvConfig(), clips=("a", "b"), starts=dict(foreign_clips=("c",))))
