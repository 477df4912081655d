"""Startup and quiet output: checkpoints load into `jax.eval_shape` templates with the same numbers as into
randomly initialised ones, the runtime's jitted control step acts as the step-by-step one did, prompts embedded
once come back without the text model, the CLIs cache compilations in the user's cache folder, show their
defaults in --help and `superpadl render` prints nothing but its own result, training logs a line per evaluation."""
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padl import checkpoint, ppo
from padl.config import from_dict

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "models" / "default"


def _random_init_tree(meta, cfg):
    """How load_global's template was built before: a random PPO state."""
    ts = ppo.init(jax.random.key(0), meta["input_size"], meta["action_size"], cfg.ppo)
    return {"policy_params": ts.policy_params, "normalizer": ts.normalizer,
            "caption_emb": np.zeros((len(meta["captions"]), 384), np.float32),
            "start_qpos": np.zeros((meta["action_size"] + 7,), np.float32)}, ts


def test_eval_shape_template_loads_the_same_policy_and_actions():
    from superpadl.global_policy import GlobalConfig
    from superpadl.policies import GlobalPolicy

    policy = GlobalPolicy.load(DEFAULT)
    tree, meta = policy.tree, policy.meta
    cfg = from_dict(GlobalConfig, meta["global"])
    template, ts = _random_init_tree(meta, cfg)
    before, _ = checkpoint.load(DEFAULT / "policy", template)
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(before), strict=True):
        assert type(a) is type(b) and a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = jax.random.normal(jax.random.key(1), (5, meta["input_size"]))
    old = ppo.act(ts.replace(policy_params=before["policy_params"], normalizer=before["normalizer"]), x,
                  jax.random.key(0), deterministic=True)[0]
    np.testing.assert_allclose(np.asarray(policy.act(x)), np.asarray(old), atol=1e-6)


def test_template_has_init_shapes_without_building_it():
    t = ppo.template(7, 3, ppo.PPOConfig(policy_hidden=(8,), value_hidden=(8,)))
    ts = ppo.init(jax.random.key(0), 7, 3, ppo.PPOConfig(policy_hidden=(8,), value_hidden=(8,)))
    assert jax.tree.structure(t) == jax.tree.structure(ts)
    for a, b in zip(jax.tree.leaves(t), jax.tree.leaves(ts)):
        assert isinstance(a, jax.ShapeDtypeStruct) and (a.shape, a.dtype) == (b.shape, b.dtype)


def test_checkpoint_refuses_a_shape_that_does_not_fit_an_eval_shape_template(tmp_path):
    cfg = ppo.PPOConfig(policy_hidden=(8,), value_hidden=(8,))
    checkpoint.save(tmp_path / "ts", ppo.init(jax.random.key(0), 7, 3, cfg), {})
    loaded, _ = checkpoint.load(tmp_path / "ts", ppo.template(7, 3, cfg))
    assert int(loaded.step) == 0 and loaded.config == cfg
    with pytest.raises(checkpoint.CheckpointError, match="template wants"):
        checkpoint.load(tmp_path / "ts", ppo.template(9, 3, cfg))


def test_jitted_control_step_acts_as_the_step_by_step_one():
    """PolicyController.act against the same operations one by one (how it acted before), on a real rollout."""
    import mujoco

    from superpadl import student as S
    from superpadl.host import SimLoop
    from superpadl.runtime import PolicyController

    c = PolicyController(DEFAULT)
    c.condition = c.caption_emb[3]  # a caption, as set_command would, without the text model
    loop = SimLoop(c.model, c)
    hist = start = None
    for step in range(40):
        if step == 20:  # a new command: the start frame restarts, the history stays
            c.condition, c.start, start = c.caption_emb[7], None, None
        qpos, qvel = loop.data.qpos.copy(), loop.data.qvel.copy()
        pobs, frame = c._proprio(jnp.asarray(qpos, jnp.float32)[None], jnp.asarray(qvel, jnp.float32)[None])
        hist = S.init_history(frame, c.history) if hist is None else S.push_history(hist, frame, jnp.zeros(1, bool))
        root = S.root_frame(np.asarray(qpos, np.float32)[None])
        start = root if start is None else start
        x = S.student_input(pobs, hist, c.condition[None], c.history, S.heading_features(start, root))
        want = np.asarray(S.from_absolute(np.asarray(c._policy(x))[0], c._low, c._high), np.float64)
        np.testing.assert_allclose(c.act(qpos, qvel), want, atol=1e-5)
        loop.data.ctrl[:] = want
        for _ in range(loop.substeps):
            mujoco.mj_step(loop.model, loop.data)


def test_prompt_embedded_once_needs_no_model_later(tmp_path, monkeypatch):
    from superpadl.text import TextEncoder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = TextEncoder()
    e = first.encode("take a bow")
    assert first._model is not None and list((tmp_path / "padl-motion" / "text").rglob("*.npy"))
    later = TextEncoder()
    np.testing.assert_array_equal(later.encode("  take a bow "), e)
    assert later._model is None  # served from the cache
    np.testing.assert_array_equal(TextEncoder(cache=False).encode("take a bow"), e)  # what the model says alone
    assert TextEncoder()._prompt_cache().get("take a bow!") is None


def test_damaged_prompt_cache_entry_is_a_miss(tmp_path, monkeypatch):
    from superpadl.prompt_cache import PromptCache

    cache = PromptCache(tmp_path, 4)
    cache.put("wave", np.ones(4, np.float32))
    np.testing.assert_array_equal(cache.get("wave"), np.ones(4))
    cache._path("wave").write_bytes(b"not a numpy file")
    assert cache.get("wave") is None
    cache.put("jump", np.ones(5, np.float32))  # another size: not this model's
    assert cache.get("jump") is None


def test_clis_cache_compilations_in_the_user_cache_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    code = ("from motions import entry; print(entry.compile_cache()); import jax; "
            "print(jax.config.jax_compilation_cache_dir)")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "XDG_CACHE_HOME": str(tmp_path)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    want = str(tmp_path / "padl-motion" / "jax")
    assert p.stdout.split() == [want, want]
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**env, "XDG_CACHE_HOME": str(tmp_path), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "mine")})
    assert p.stdout.split() == [str(tmp_path / "mine")] * 2  # the user's own choice is kept


@pytest.mark.parametrize("cli", ["motions.cli", "padl.cli", "superpadl.cli"])
def test_help_shows_every_default(cli):
    import argparse
    import importlib

    def parsers(p):
        yield p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    yield from parsers(sub)

    n = 0
    for p in parsers(importlib.import_module(cli).build_parser()):
        text = " ".join(p.format_help().split())
        for a in p._actions:
            if a.option_strings and a.default not in (None, False, argparse.SUPPRESS) and a.help != argparse.SUPPRESS:
                shown = str(a.default)
                assert f"default: {shown}" in text or "default" in (a.help or ""), (p.prog, a.dest)
                n += 1
    assert n > 5


def test_render_prints_only_its_result_without_mujoco_gl(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    out = tmp_path / "bow.mp4"
    p = subprocess.run([sys.executable, "-m", "superpadl.cli", "render", "--prompt", "take a bow for 0.5s", "-o",
                        str(out), "--width", "160", "--height", "120"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # no warning, progress bar (not a terminal) or traceback
    assert p.stdout.splitlines() == [f"wrote {out} (15 frames, 0.5 s, 0 falls)"]


def test_training_logs_a_line_per_evaluation_when_not_on_a_terminal(capsys):
    from padl.run import eval_line, log_evaluation

    ev = {"success": 0.92, "g_mpjpe_mm": 69.24, "worst_clip_success": 0.5, "transition_success": 0.8}
    assert eval_line(50, 400, ev) == "iteration 50/400: success 92%, G-MPJPE 69.2 mm, worst clip 50%, transitions 80%"
    lines = []
    log_evaluation(lines.append, progress=True, line="a")  # pytest's stdout is not a terminal
    log_evaluation(lines.append, progress=False, line="b")
    assert lines == ["a", "b"]
