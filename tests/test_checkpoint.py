"""Checkpoints: exact round trip, and clear errors for corrupted / foreign / half-written files."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from padl import checkpoint, ppo
from padl.checkpoint import CheckpointError
from padl.networks import MLP


def make_tree(seed=0):
    params = MLP((8, 8), 3, layer_norm=True).init(jax.random.key(seed), jnp.zeros((1, 4)))
    opt_state = optax.adam(1e-3).init(params)
    return {
        "params": params,
        "opt": opt_state,
        "step": 7,
        "rng": jax.random.key_data(jax.random.key(seed + 1)),
        "meta": [np.int64(3), np.arange(5, dtype=np.int16), jnp.ones((2, 2), jnp.bfloat16)],
    }


def assert_same(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array)), (type(x), type(y))
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_exact(tmp_path):
    tree = make_tree()
    config = {"lr": 1e-3, "hidden": [8, 8], "name": "walk"}
    json_path = checkpoint.save(tmp_path / "ckpt", tree, config)
    assert json_path.name == "ckpt.json" and (tmp_path / "ckpt.npz").is_file()
    meta = json.loads(json_path.read_text())
    assert meta["format"] == "padl-checkpoint" and meta["version"] == 1 and len(meta["sha256"]) == 64
    loaded, cfg = checkpoint.load(tmp_path / "ckpt", template=make_tree(seed=5))
    assert cfg == config
    assert_same(loaded, tree)
    flat, _ = checkpoint.load(tmp_path / "ckpt.json")  # no template: flat {key path: array}
    assert flat["['step']"] == 7 and flat["['rng']"].dtype == np.uint32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.npz"]  # no temp files left


def test_ppo_train_state_round_trip(tmp_path):
    config = ppo.PPOConfig(policy_hidden=(8,), value_hidden=(8,))
    ts = ppo.init(jax.random.key(0), 3, 2, config)
    checkpoint.save(tmp_path / "ts", ts, {"ppo": ppo.dataclasses.asdict(config)})
    loaded, cfg = checkpoint.load(tmp_path / "ts", template=ppo.init(jax.random.key(9), 3, 2, config))
    assert_same(loaded, ts)
    assert cfg["ppo"]["policy_hidden"] == [8]


def test_corrupted_npz_byte(tmp_path):
    checkpoint.save(tmp_path / "c", make_tree())
    npz = tmp_path / "c.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"c\.npz: sha256 mismatch"):
        checkpoint.load(tmp_path / "c")


def test_foreign_and_malformed_json(tmp_path):
    checkpoint.save(tmp_path / "c", make_tree())
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"format": "orbax", "version": 1}))
    with pytest.raises(CheckpointError, match=r"c\.json: not a padl-checkpoint file"):
        checkpoint.load(tmp_path / "c")
    js.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid JSON"):
        checkpoint.load(tmp_path / "c")
    js.write_text(json.dumps({"format": "padl-checkpoint", "version": 2}))
    with pytest.raises(CheckpointError, match="unsupported version 2"):
        checkpoint.load(tmp_path / "c")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing")
    assert issubclass(CheckpointError, ValueError)


def test_template_mismatch(tmp_path):
    checkpoint.save(tmp_path / "c", {"a": np.zeros((2, 3)), "b": np.ones(4)})
    with pytest.raises(CheckpointError, match=r"leaf \['a'\] is float64\[2, 3\], template wants float64\[3, 2\]"):
        checkpoint.load(tmp_path / "c", template={"a": np.zeros((3, 2)), "b": np.ones(4)})
    with pytest.raises(CheckpointError, match=r"missing key \['c'\]"):
        checkpoint.load(tmp_path / "c", template={"a": np.zeros((2, 3)), "b": np.ones(4), "c": np.ones(1)})
    with pytest.raises(CheckpointError, match=r"unexpected key \['b'\]"):
        checkpoint.load(tmp_path / "c", template={"a": np.zeros((2, 3))})


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    old = make_tree(seed=0)
    checkpoint.save(tmp_path / "c", old, {"v": 1})

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path / "c", make_tree(seed=1), {"v": 2})
    monkeypatch.undo()
    loaded, cfg = checkpoint.load(tmp_path / "c", template=old)
    assert cfg == {"v": 1}
    assert_same(loaded, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.npz"]  # temp file cleaned up


def test_rejects_non_array_leaves(tmp_path):
    with pytest.raises(TypeError, match="key_data"):
        checkpoint.save(tmp_path / "k", {"k": jax.random.key(0)})
    with pytest.raises(TypeError, match="not a numeric array"):
        checkpoint.save(tmp_path / "s", {"s": "text"})
