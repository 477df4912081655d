"""`superpadl train` on a tiny recipe through every stage to an exported policy that `superpadl render` drives, and
a run SIGKILLed inside a stage that resumes to the same finished stages and step counts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

RECIPE = """
name = "tiny"
sources = ["humanoid3d_wave.txt", "humanoid3d_reach.txt"]
[experts]
iterations = 4
success = 0.0          # every expert passes: the bar is not what this test is about
g_mpjpe_mm = 1e6
retries = 0
eval_every = 2
checkpoint_every = 2
eval_episodes = 1
rollout_steps = 8
stop_g_mpjpe_mm = 0.0  # no early stop: the step counts are the budget's
[experts.env]
num_envs = 8
[experts.env.physics]
backend = "mujoco"
num_threads = 1
[handover]
clips = ["deepmimic_wave"]
record_minutes = 0.1
record_seeds = 1
iterations = 4
eval_episodes = 1
[groups]
iterations = 4
bc_warmup_iterations = 2
beta_iterations = 1
bc_steps = 8
critic_warmup_iterations = 1
eval_every = 2
checkpoint_every = 2
eval_episodes = 1
rollout_steps = 8
disc_updates = 1
[groups.env]
num_envs = 8
[groups.env.physics]
backend = "mujoco"
num_threads = 1
[groups.env.starts]
foreign_share = 0.5
state_starts = "states.npz"
[global]
iterations = 6
sgd_steps = 8
eval_every = 3
checkpoint_every = 2
eval_episodes = 1
eval_transitions = 2
rollout_steps = 8
[global.env]
num_envs = 8
[global.env.physics]
backend = "mujoco"
num_threads = 1
[global.env.starts]
foreign_share = 0.5
state_starts = "states.npz"
[global.commands]
beta_iterations = 2
[eval]
episodes = 1
transitions = 2
endurance_minutes = 0.1
"""


def _deepmimic(path: Path, joint: int, amplitude: float, loop: str, frames: int = 31) -> None:
    """A DeepMimic motion standing still with one elbow (joint 0: right, 1: left) bending and straightening; `loop`
    "wrap" (a cycle) or "none" (one-shot)."""
    ident = [1.0, 0.0, 0.0, 0.0]
    rows = []
    for i in range(frames):
        bend = amplitude * 0.5 * (1 - np.cos(2 * np.pi * i / (frames - 1)))
        elbows = [bend, 0.0] if joint == 0 else [0.0, bend]
        rows.append([1 / 30 if i < frames - 1 else 0.0, 0.0, 0.9, 0.0, *ident, *ident, *ident, *ident, 0.0, *ident,
                     *ident, elbows[0], *ident, 0.0, *ident, *ident, elbows[1]])
    path.write_text(json.dumps({"Loop": loop, "Frames": rows}))


def _recipe(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _deepmimic(folder / "humanoid3d_wave.txt", 0, 1.2, "wrap")
    _deepmimic(folder / "humanoid3d_reach.txt", 1, 0.8, "none")
    # two standing states, one moving forward at 1 m/s: where the group and global stages begin half their episodes
    qpos = np.zeros((2, 35), np.float32)
    qpos[:, 2], qpos[:, 3] = 0.9, 1.0
    qvel = np.zeros((2, 34), np.float32)
    qvel[1, 0] = 1.0
    np.savez(folder / "states.npz", qpos=qpos, qvel=qvel)
    (folder / "tiny.toml").write_text(RECIPE)
    return folder / "tiny.toml"


def _train(recipe: Path, run: Path, *extra: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "superpadl.cli", "train", str(recipe), "--out", str(run), *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _steps(run: Path) -> dict:
    """What a run did: its finished stages and each trainer's (iteration, samples)."""
    status = json.loads((run / "status.json").read_text())
    counts = {}
    for state in sorted(run.rglob("train_state.json")):
        config = json.loads(state.read_text())["config"]
        counts[str(state.parent.relative_to(run))] = (config["iteration"], config["samples"])
    return {"stages": {k: v["state"] for k, v in status["stages"].items()}, "steps": counts}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pipeline")
    recipe = _recipe(folder)
    proc = _train(recipe, folder / "run")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    return recipe, folder / "run"


def test_train_runs_every_stage_to_a_policy_render_drives(finished, tmp_path):
    recipe, run = finished
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "done" and all(s["state"] == "done" for s in status["stages"].values())
    assert sorted(status["clips"]) == ["deepmimic_reach", "deepmimic_wave"] and status["left_out"] == {}
    assert {e["state"] for e in status["experts"].values()} == {"done"}
    assert all(status["stages"][s]["wall_s"] > 0 for s in ("experts", "groups", "global", "eval"))  # the clock ran
    report = json.loads((run / "report.json").read_text())
    assert set(report["global"]["clips"]) == set(status["clips"])
    assert {"success", "g_mpjpe_mm", "precision_auc", "recall_auc"} <= set(report["global"]["mean"])
    assert report["compute"]["experts"]["samples"] == 2 * 4 * 8 * 8  # 2 experts x 4 iterations x 8 steps x 8 envs
    # the wave's expert fine-tuned from the states its real use gave commands in, and distilled as such
    (handover,) = status["handover"]
    assert handover["done"] and handover["states"] >= 1 and list(handover["experts"]) == ["deepmimic_wave"]
    tuned = run / "handover" / "round0" / "deepmimic_wave"
    assert status["experts"]["deepmimic_wave"]["path"] == str(tuned)
    assert status["experts"]["deepmimic_reach"]["path"].startswith(str(run / "experts"))
    starts = json.loads((tuned / "train_state.json").read_text())["config"]["expert"]["env"]["starts"]
    assert starts["state_starts"] == str(run / "handover" / "round0" / "states.npz") and starts["foreign_share"] == 0.5
    states = np.load(run / "handover" / "round0" / "states.npz")
    assert len(states["qpos"]) == handover["states"] and (states["qpos"][:, :2] == 0).all()
    assert report["compute"]["handover"]["samples"] == 4 * 8 * 8
    assert report["global"]["endurance"]["simulated_minutes"] == pytest.approx(0.1, abs=0.01)
    # the group and global stages began half their episodes in the recipe's states; the shipped model names no file
    for stage in ("groups", "global"):
        (state,) = (run / stage).rglob("train_state.json")
        config = json.loads(state.read_text())["config"]
        starts = (config.get("group") or config["global"])["env"]["starts"]
        assert starts["state_starts"] == str((recipe.parent / "states.npz").resolve()) and starts["foreign_share"] == 0.5
    shipped = json.loads((run / "model" / "policy.json").read_text())["config"]["global"]["env"]["starts"]
    assert shipped["state_starts"] is None
    assert "falls per hour" in (run / "report.md").read_text()  # real use is reported beside the clip starts
    for f in ("policy.npz", "policy.json", "sources.txt", "README.md"):
        assert (run / "model" / f).is_file()
    manifest = json.loads((run / "library" / "manifest.json").read_text())
    one_shot = json.loads((run / "model" / "policy.json").read_text())["config"]["one_shot_s"]
    assert one_shot == pytest.approx({"deepmimic_reach": 1.0})  # the wave loops
    assert {e["id"]: e["duration_s"] for e in manifest["clips"] if not e.get("loop")} == pytest.approx(one_shot)
    card = (run / "model" / "README.md").read_text()
    assert "MIT" in card and "G-MPJPE" in card and 'name = "tiny"' in card
    assert (run / "model" / "sources.txt").read_text().splitlines()[1:] == ["humanoid3d_wave.txt",
                                                                            "humanoid3d_reach.txt"]
    table = subprocess.run([sys.executable, "-m", "superpadl.cli", "status", str(run)], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "experts" in table.stdout and "2 / 0 / 0" in table.stdout, table.stdout
    video = tmp_path / "v.mp4"
    r = subprocess.run([sys.executable, "-m", "superpadl.cli", "render", "--policy", str(run / "model"), "--prompt",
                        "wave", "-o", str(video), "--width", "160", "--height", "120", "--fps", "10", "--quiet"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and video.stat().st_size > 0, r.stderr
    again = _train(recipe, run)  # a finished run is not started over
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 1 and "pass --resume" in out


@pytest.mark.slow
@pytest.mark.parametrize("kill_in", ["experts", "handover", "global"])
def test_sigkill_inside_a_stage_resumes_to_the_same_steps(finished, tmp_path, kill_in):
    recipe, reference = finished
    run = tmp_path / "run"
    proc = _train(recipe, run)
    deadline = time.time() + 600
    while time.time() < deadline:  # inside the stage, after a checkpoint of it
        try:
            status = json.loads((run / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        if status.get("stages", {}).get(kill_in, {}).get("state") == "running" and list(
                (run / kill_in).rglob("train_state.json")):
            break
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert _steps(run)["stages"][kill_in] == "running"
    resumed = _train(recipe, run, "--resume")
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out
    assert _steps(run) == _steps(reference)


def test_a_stand_start_clips_teacher_is_fine_tuned_with_starts_from_standing(tmp_path):
    """`stand_starts`: the teacher of such a clip is not reused but fine-tuned from itself, half its episodes starting
    in the standing clip's states and its reference following the character's position, not its heading, for 2 s;
    it trains its whole budget. A recipe naming the standing clip itself, or no clip of its sources, is refused."""
    from superpadl import recipe as R
    from superpadl.pipeline import Pipeline, Status

    _deepmimic(tmp_path / "humanoid3d_wave.txt", 0, 1.2, "wrap")
    _deepmimic(tmp_path / "humanoid3d_reach.txt", 1, 0.8, "none")
    _deepmimic(tmp_path / "humanoid3d_still.txt", 0, 0.0, "none")  # a span of it at rest: the standing clip
    teacher = tmp_path / "teachers" / "wave"
    teacher.mkdir(parents=True)
    (teacher / "policy.json").write_text(json.dumps({"config": {"clips": ["deepmimic_wave"], "eval": {}}}))
    body = ('sources = ["humanoid3d_wave.txt", "humanoid3d_reach.txt", "humanoid3d_still.txt@0:0.5"]\n'
            'stand_starts = ["{}"]\n[experts]\nteachers = "teachers"\n')
    (tmp_path / "r.toml").write_text('name = "r"\n' + body.format("deepmimic_wave"))
    pipe = Pipeline(R.load(tmp_path / "r.toml"), tmp_path / "run", Status(tmp_path / "status.json", {}), None, 1,
                    None, print)
    pipe.stage_import({})
    assert pipe.data["standing"] == "deepmimic_still_0-0.5s"
    plan = pipe._plan_experts()
    assert plan["wave"]["state"] == "pending" and plan["wave"]["init_from"] == str(teacher / "policy")
    pipe.data["experts"] = plan
    job = pipe._job("wave")
    env = job["config"]["env"]
    assert job["init_from"] == str(teacher / "policy") and job["config"]["stop_success"] > 1.0
    assert env["starts"]["foreign_share"] == 0.5 and list(env["starts"]["foreign_clips"]) == ["deepmimic_still_0-0.5s"]
    assert env["episode"]["recover_follow"] and not env["episode"]["follow_heading"]
    assert env["episode"]["recover_s"] == 2.0
    other = pipe._job("deepmimic_reach")["config"]["env"]  # not named: as the recipe says
    assert other["starts"]["foreign_share"] == 0.0 and not other["episode"]["recover_follow"]
    # start_from = "any": the same, from every other clip's states (a command given during another skill)
    (tmp_path / "r.toml").write_text('name = "r"\nstart_from = "any"\n' + body.format("deepmimic_wave"))
    pipe.recipe = R.load(tmp_path / "r.toml")
    env = pipe._job("wave")["config"]["env"]
    assert env["starts"]["foreign_share"] == 0.5 and env["starts"]["foreign_clips"] is None
    for clip, why in (("deepmimic_still_0-0.5s", "is the standing clip itself"), ("nope", "is not a clip")):
        (tmp_path / "r.toml").write_text('name = "r"\n' + body.format(clip))
        pipe = Pipeline(R.load(tmp_path / "r.toml"), tmp_path / "run2", Status(tmp_path / "s2.json", {}), None, 1,
                        None, print)
        with pytest.raises(ValueError, match=rf"r\.toml: stand_starts: '{clip}' {why}"):
            pipe.stage_import({})
    # a hold for a clip the sources do not have is refused on import, not after the experts have trained
    (tmp_path / "r.toml").write_text('name = "r"\n' + body.format("deepmimic_wave")
                                     + '[groups.env.episode]\nhold_s = 5.0\nhold_clips = ["deepmimic_stil"]\n')
    pipe = Pipeline(R.load(tmp_path / "r.toml"), tmp_path / "run3", Status(tmp_path / "s3.json", {}), None, 1, None,
                    print)
    with pytest.raises(ValueError, match=r"r\.toml: \[groups\.env\.episode\] hold_clips: 'deepmimic_stil' is not a clip"):
        pipe.stage_import({})


@pytest.mark.slow
def test_the_stop_stage_distils_its_teacher_into_a_group_of_the_standing_clip(tmp_path):
    """`[stop] teacher`: the stage distils that expert into `RUN/stop`, a group of the standing clip alone, with the
    stage's own group settings, and the global stage loads it as its stop teacher; without a teacher it does nothing."""
    import jax

    from motions.library import MotionLibrary
    from padl import ppo
    from padl.config import to_dict
    from padl.env import EnvConfig, ImitationEnv, PhysicsConfig
    from padl.expert import ExpertConfig
    from padl.policy import ExpertPolicy
    from superpadl import recipe as R
    from superpadl.pipeline import Pipeline, Status

    _deepmimic(tmp_path / "humanoid3d_wave.txt", 0, 1.2, "wrap")
    _deepmimic(tmp_path / "humanoid3d_still.txt", 0, 0.0, "none")
    stand = "deepmimic_still_0-0.5s"
    cfg = ExpertConfig(env=EnvConfig(num_envs=8, clips=(stand,), physics=PhysicsConfig(backend="mujoco", num_threads=1)))
    body = ('name = "r"\nsources = ["humanoid3d_wave.txt", "humanoid3d_still.txt@0:0.5"]\n'
            '[stop]\nteacher = "stop"\niterations = 2\nbc_warmup_iterations = 2\neval_every = 2\neval_episodes = 1\n'
            'rollout_steps = 4\nbc_steps = 4\n[stop.env]\nnum_envs = 4\n[stop.env.physics]\nbackend = "mujoco"\n'
            'num_threads = 1\n[stop.env.episode]\nlength_s = 6.0\n')
    (tmp_path / "stop").mkdir()
    (tmp_path / "r.toml").write_text(body)
    pipe = Pipeline(R.load(tmp_path / "r.toml"), tmp_path / "run", Status(tmp_path / "status.json", {}), None, 1,
                    None, print)
    pipe.stage_import({})
    lib = MotionLibrary(tmp_path / "run" / "library")
    obs_size = ImitationEnv(lib, cfg.env).obs_size
    ts = ppo.init(jax.random.key(0), obs_size, 28, cfg.ppo)
    ExpertPolicy(ts, {"kind": "padl-expert", "expert": to_dict(cfg), "clips": [stand], "obs_size": obs_size,
                      "action_size": 28}).export(tmp_path / "stop")
    pipe.data["clips"], pipe.data["left_out"] = [stand, "deepmimic_wave"], {}
    stage = {"wall_s": 0.0}
    pipe.stage_stop(stage)
    spec = json.loads((tmp_path / "run" / "stop" / "groups.json").read_text())
    assert [g["clips"] for g in spec["groups"]] == [[stand]] and stage["samples"] == 2 * 4 * 4
    config = json.loads((tmp_path / "run" / "stop" / "group_000" / "train_state.json").read_text())["config"]
    assert config["group"]["env"]["episode"]["length_s"] == 6.0
    (tmp_path / "r.toml").write_text(body.replace('teacher = "stop"\n', ""))
    pipe = Pipeline(R.load(tmp_path / "r.toml"), tmp_path / "run2", Status(tmp_path / "s2.json", {}), None, 1, None,
                    print)
    pipe.stage_stop({"wall_s": 0.0})
    assert not (tmp_path / "run2" / "stop").exists()
