"""PADL expert training: config round trip, evaluation on known cases, resumable checkpoints (also after
SIGKILL), the rollouts recorder, clear errors for foreign or corrupted files, and parallel training on Ray."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from motions.library import MotionLibrary
from padl import checkpoint, ppo, rollouts
from padl.cli import main as padl_main
from padl.config import from_dict, to_dict
from padl.env import EnvConfig, PhysicsConfig
from padl.evaluate import evaluate_policy
from padl.expert import ExpertConfig, train
from padl.policy import ExpertPolicy
from synthetic import write_synthetic_library

REPO = Path(__file__).resolve().parents[1]
TINY = ["--num-envs", "4", "--backend", "mujoco", "--eval-every", "1000", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def lib_path(tmp_path_factory) -> Path:
    return write_synthetic_library(tmp_path_factory.mktemp("lib") / "synthetic", kinds=("sway", "squat"))


@pytest.fixture(scope="module")
def lib(lib_path) -> MotionLibrary:
    return MotionLibrary(lib_path)


def tiny_config(**kw) -> ExpertConfig:
    """The config `padl train-expert LIB synthetic_sway TINY --threads 1` builds: in-process runs and the CLI's
    subprocesses then compile the same programs, once for the suite (the persistent compilation cache)."""
    cfg = ExpertConfig(env=EnvConfig(num_envs=4, clips=("synthetic_sway",),
                                     physics=PhysicsConfig(backend="mujoco", num_threads=1)),
                       eval_every=1000, checkpoint_every=2)
    return dataclasses.replace(cfg, **kw)


def test_config_round_trips_through_json():
    cfg = tiny_config(disc_weight=0.3)
    again = from_dict(ExpertConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg and isinstance(again.env.clips, tuple) and isinstance(again.ppo.policy_hidden, tuple)
    with pytest.raises(ValueError, match="unknown field 'bogus'"):
        from_dict(ExpertConfig, {**to_dict(cfg), "bogus": 1})


def test_evaluation_scores_a_good_and_a_bad_policy(lib):
    """Zero residual (PD on the reference) follows the standing sway; full-scale actions on every joint do not."""
    cfg = EnvConfig(physics=PhysicsConfig(num_threads=1))
    good = evaluate_policy(lib, lambda s: np.zeros((s.obs.shape[0], 28), np.float32), ["synthetic_sway"], episodes=2,
                           seconds=3.0, env_config=cfg)
    bad = evaluate_policy(lib, lambda s: np.ones((s.obs.shape[0], 28), np.float32), ["synthetic_sway"], episodes=2,
                          seconds=3.0, env_config=cfg)
    g, b = good["synthetic_sway"], bad["synthetic_sway"]
    assert g["success"] == 1.0 and g["g_mpjpe_mm"] < 40 and g["frames"] == pytest.approx(90, abs=1)
    assert b["success"] == 0.0 and b["g_mpjpe_mm"] > 3 * g["g_mpjpe_mm"] and b["frames"] < 90
    assert good["mean"]["success"] == 1.0
    # a policy that trained starting from clips of another library (foreign starts) is evaluated from its clips' starts
    trained_elsewhere = dataclasses.replace(cfg, starts=dataclasses.replace(
        cfg.starts, foreign_share=0.5, foreign_clips=("a_clip_of_another_library",)))
    again = evaluate_policy(lib, lambda s: np.zeros((s.obs.shape[0], 28), np.float32), ["synthetic_sway"],
                            episodes=2, seconds=3.0, env_config=trained_elsewhere)
    assert again == good


def test_killed_training_resumes_to_the_same_step_count(lib_path, tmp_path):
    """A `padl train-expert` process SIGKILLed after a checkpoint resumes with --resume and ends where the run would
    have ended uninterrupted: 6 iterations of 4 envs x 32 steps, and 6 PPO updates (the optimiser's schedule goes
    on rather than restarting)."""
    cmd = [sys.executable, "-m", "padl.cli", "train-expert", str(lib_path), "synthetic_sway", "--steps", "768",
           *TINY, "--threads", "1", "--quiet", "--out", str(tmp_path / "killed")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "train_state.json"
    deadline = time.time() + 600
    while not state.exists() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    first = json.loads(state.read_text())["config"]["iteration"]
    assert 2 <= first < 6, "killed after the end of the run"
    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    end = json.loads(state.read_text())["config"]
    assert (end["iteration"], end["samples"]) == (6, 6 * 4 * 32)
    ts = ExpertPolicy.load(tmp_path / "killed").ts
    assert int(ts.step) == 6


def test_corrupted_and_foreign_checkpoints_are_refused(lib, lib_path, tmp_path, capsys):
    train(lib, tmp_path / "run", tiny_config(), iterations=2, progress=False)
    npz = tmp_path / "run" / "train_state.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    code = padl_main(["train-expert", str(lib_path), "synthetic_sway", "--out", str(tmp_path / "run"), "--resume",
                      *TINY, "--steps", "64"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "train_state.npz" in err and "sha256 mismatch" in err and "\n" not in err
    # A checkpoint of another kind (a plain array file of this format) is not an expert policy.
    checkpoint.save(tmp_path / "other" / "policy", {"w": np.zeros(3)}, {"kind": "something-else"})
    code = padl_main(["eval", str(tmp_path / "other"), str(lib_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "not a PADL expert policy" in err and "\n" not in err
    code = padl_main(["eval", str(tmp_path / "missing"), str(lib_path)])
    assert code == 1 and "no such checkpoint" in capsys.readouterr().err


def test_eval_hold_s_judges_a_one_shot_clip_held_past_its_end(tmp_path):
    """The kept policy is chosen by evaluations as long as `eval_hold_s` asks: a one-shot clip's episodes go on that
    long past its end (a stand that falls after 10 s is then seen), not only to the clip's end."""
    from padl.expert import _Stage, _initial_state

    lib = MotionLibrary(write_synthetic_library(tmp_path / "lib", kinds=("stand",)))
    duration = lib.durations[lib.index("synthetic_stand")]
    frames = []
    for hold in (None, 1.0):
        stage = _Stage(lib, tiny_config(env=EnvConfig(num_envs=4, clips=("synthetic_stand",),
                                                      physics=PhysicsConfig(backend="mujoco", num_threads=1)),
                                        eval_hold_s=hold, eval_episodes=2))
        ev, _ = stage.evaluate(_initial_state(stage.cfg, stage.env), {"reward/tracking": 0.0})
        assert ev["success"] == 1.0, hold
        frames.append(ev["frames"])
    assert frames[0] == pytest.approx(duration * 30, abs=1.5) and frames[1] == pytest.approx((duration + 1) * 30, abs=1.5)


@pytest.mark.slow  # ~2.5 min of compiles; the fine-tune config and a policy's init run in the export test below
def test_init_from_fine_tunes_another_runs_networks_with_foreign_starts(lib, lib_path, tmp_path, capsys):
    train(lib, tmp_path / "src", tiny_config(), iterations=2, progress=False)
    code = padl_main(["train-expert", str(lib_path), "synthetic_sway", "--out", str(tmp_path / "ft"), *TINY,
                      "--init-from", str(tmp_path / "src"), "--foreign-starts", "0.5", "--start-noise", "0.05", "--steps", "256",
                      "--quiet"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "ft" / "train_state.json").read_text())["config"]
    assert meta["iteration"] == 2 and meta["expert"]["env"]["starts"]["foreign_share"] == 0.5
    assert meta["expert"]["env"]["starts"]["init_noise"] == 0.05
    assert meta["expert"]["env"]["episode"]["recover_s"] == 1.0 and meta["expert"]["stop_success"] > 1.0
    ts = ExpertPolicy.load(tmp_path / "ft").ts
    assert int(ts.step) == 4  # the source's 2 PPO updates, then 2 of its own: the networks came from the source
    capsys.readouterr()
    code = padl_main(["train-expert", str(lib_path), "synthetic_squat", "--out", str(tmp_path / "other"), *TINY,
                      "--init-from", str(tmp_path / "src"), "--steps", "64"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "synthetic_sway" in err and "\n" not in err
    assert not (tmp_path / "other" / "train_state.json").exists()
    # Its policy alone starts other skills, as many as wanted: held as it was while the new critic warms up.
    code = padl_main(["train-expert", str(lib_path), "synthetic_squat", "synthetic_sway", "--out",
                      str(tmp_path / "other"), *TINY,
                      "--init-from", str(tmp_path / "src" / "policy"), "--steps", "64", "--quiet"])
    assert code == 0, capsys.readouterr().err
    source = ExpertPolicy.load(tmp_path / "src").ts
    policy = ExpertPolicy.load(tmp_path / "other")
    started, meta = policy.ts, policy.meta
    assert meta["clips"] == ["synthetic_squat", "synthetic_sway"]
    assert jax.tree.all(jax.tree.map(np.array_equal, source.policy_params, started.policy_params))


def test_init_from_a_policy_export_holds_the_policy_while_its_new_critic_learns(lib, lib_path, tmp_path, capsys):
    """A shipped export has no critic or discriminator: the run makes new ones and leaves the policy exactly as it
    was for `critic_warmup_iterations`. With an evaluation every iteration (of the episodes asked), `policy` is the
    best one (success, then G-MPJPE; the earliest of ties), not the latest."""
    train(lib, tmp_path / "src", tiny_config(), iterations=2, progress=False)
    export = tmp_path / "synthetic_sway_0-1.5s"  # named by a clip cut from a take: a folder, though it has a dot
    ExpertPolicy.load(tmp_path / "src").export(export)
    assert sorted(p.name for p in export.iterdir()) == ["policy.json", "policy.npz"]
    code = padl_main(["train-expert", str(lib_path), "synthetic_sway", "--out", str(tmp_path / "ft"), *TINY,
                      "--init-from", str(export), "--steps", "384", "--eval-every", "1", "--eval-episodes", "3",
                      "--quiet"])
    assert code == 0, capsys.readouterr().err
    source = ExpertPolicy.load(export).ts
    policy = ExpertPolicy.load(tmp_path / "ft")
    tuned, meta = policy.ts, policy.meta
    assert meta["expert"]["eval_episodes"] == 3
    assert jax.tree.all(jax.tree.map(np.array_equal, source.policy_params, tuned.policy_params))
    curve = [json.loads(line) for line in (tmp_path / "ft" / "progress.jsonl").read_text().splitlines()]
    assert [c["iteration"] for c in curve] == [1, 2, 3]
    best = max(curve, key=lambda c: (c["success"], -c["g_mpjpe_mm"], -c["iteration"]))
    assert meta["iteration"] == best["iteration"] and meta["eval"]["g_mpjpe_mm"] == best["g_mpjpe_mm"]


def test_a_runs_latest_policy_loads_from_its_train_state(lib, tmp_path):
    """`RUN/train_state` is the run's latest policy, whatever its evaluations kept as `RUN/policy`."""
    from padl import checkpoint

    train(lib, tmp_path / "run", tiny_config(), iterations=2, progress=False)
    latest = ExpertPolicy.load(tmp_path / "run" / "train_state")
    flat, meta = checkpoint.load(tmp_path / "run" / "train_state")
    leaves = jax.tree_util.tree_flatten_with_path(latest.ts.policy_params)[0]
    assert leaves and all(np.array_equal(flat["['ppo'].policy_params" + jax.tree_util.keystr(p)], v) for p, v in leaves)
    assert latest.meta["iteration"] == meta["iteration"] == 2 and latest.clips == ExpertPolicy.load(tmp_path / "run").clips
    # an export names no file of the machine it trained on (state starts): elsewhere it would not load its env
    latest.meta["expert"]["env"]["starts"]["state_starts"] = str(tmp_path / "states.npz")
    latest.export(tmp_path / "export")
    exported = ExpertPolicy.load(tmp_path / "export")
    assert jax.tree.all(jax.tree.map(np.array_equal, exported.ts.policy_params, latest.ts.policy_params))
    assert exported.meta["expert"]["env"]["starts"]["state_starts"] is None


def test_recorder_writes_expert_actions_on_visited_states(lib, tmp_path):
    train(lib, tmp_path / "expert", tiny_config(), iterations=2, progress=False)
    path = rollouts.record(tmp_path / "expert", lib, tmp_path / "rec", steps=12, num_envs=3, noise=1.0)
    arrays, meta = rollouts.load(path)
    assert meta["clips"] == ["synthetic_sway"] and arrays["obs"].shape == (12, 3, meta["obs_layout"]["obs"])
    assert arrays["action"].shape == (12, 3, 28) and arrays["ref_qpos"].shape == (12, 3, 35)
    assert set(np.unique(arrays["clip"])) == {0}
    ts = ExpertPolicy.load(tmp_path / "expert").ts
    mean, _, _ = ppo.act(ts, arrays["obs"][5], jax.random.key(0), deterministic=True)
    np.testing.assert_allclose(arrays["action"][5], np.asarray(mean), atol=1e-5)  # the expert's label, not the noisy act
    # Noisy acting took the states away from the noise-free rollout: the recorder explores.
    quiet, _ = rollouts.load(rollouts.record(tmp_path / "expert", lib, tmp_path / "rec0", steps=12, num_envs=3))
    assert np.abs(quiet["qpos"][-1] - arrays["qpos"][-1]).max() > 1e-4
    with pytest.raises(checkpoint.CheckpointError, match="not a PADL rollout recording"):
        rollouts.load(tmp_path / "expert" / "policy")


@pytest.mark.slow  # starts a Ray cluster (the optional `dist` extra); the local --jobs path is the same function
def test_train_experts_on_a_local_ray_cluster(lib_path, tmp_path):
    pytest.importorskip("ray", reason="Ray is the `dist` extra")
    out = tmp_path / "experts"
    code = subprocess.run([sys.executable, "-m", "padl.cli", "train-experts", str(lib_path), "--out", str(out),
                           "--ray-address", "local", "--jobs", "2", "--steps", "128", *TINY],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=900)
    assert code.returncode == 0, code.stderr[-2000:]
    for clip in ("synthetic_sway", "synthetic_squat"):
        meta = json.loads((out / clip / "policy.json").read_text())["config"]
        assert meta["clips"] == [clip] and meta["samples"] == 128
