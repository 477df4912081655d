"""Interrupts of the long learning commands, through their CLIs in subprocesses (issue 34): `distill groups` and
`distill global` killed (SIGKILL) after a checkpoint and resumed to the same total (it finishes there, logs each
evaluation once, and never replaces the kept policy with a worse one), and `padl eval` / `superpadl eval` ended by
SIGINT or SIGTERM mid-evaluation, while XLA compiles (one line, exit code 128 + the signal, no half-written --json),
also when the signal comes during a garbage collection."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from motions.library import MotionLibrary
from padl import checkpoint, ppo
from padl.config import to_dict
from padl.env import ActionConfig, EnvConfig, ImitationEnv, PhysicsConfig
from padl.expert import ExpertConfig, _config_json
from superpadl import student as S
from superpadl.evaluate import kept_score
from superpadl.groups import KIND as GROUP_KIND, GroupConfig
from synthetic import write_synthetic_library

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}
CLIPS = ["synthetic_sway", "synthetic_squat"]
TIMEOUT = 600  # a subprocess on a loaded 2-core machine; no test asserts a duration


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> MotionLibrary:
    return MotionLibrary(write_synthetic_library(tmp_path_factory.mktemp("lib") / "synthetic", kinds=("sway", "squat")))


@pytest.fixture(scope="module")
def expert(lib, tmp_path_factory) -> Path:
    """An untrained expert run folder of both clips: its mean action is ~0, i.e. PD on the reference."""
    cfg = ExpertConfig(env=EnvConfig(num_envs=8, clips=tuple(CLIPS),
                                     physics=PhysicsConfig(backend="mujoco", num_threads=1)))
    env = ImitationEnv(lib, cfg.env)
    out = tmp_path_factory.mktemp("expert") / "expert"
    checkpoint.save(out / "policy", ppo.init(jax.random.key(0), env.obs_size, env.action_size, cfg.ppo),
                    {**_config_json(cfg, lib, env), "iteration": 0})
    return out


@pytest.fixture(scope="module")
def groups(lib, tmp_path_factory) -> Path:
    """A groups folder of one untrained group controller of both clips (a teacher whose labels are ~0 targets)."""
    cfg = GroupConfig(env=EnvConfig(num_envs=8, clips=tuple(CLIPS),
                                    physics=PhysicsConfig(backend="mujoco", num_threads=1),
                                    action=ActionConfig(mode="absolute")))
    size = S.input_size(cfg.history, len(CLIPS))
    out = tmp_path_factory.mktemp("groups")
    checkpoint.save(out / "group_000" / "policy", ppo.init(jax.random.key(0), size, 28, cfg.ppo),
                    {"kind": GROUP_KIND, "group": to_dict(cfg), "clips": CLIPS, "input_size": size, "action_size": 28,
                     "character": lib.character.name, "iteration": 0})
    (out / "groups.json").write_text(json.dumps({"format": "superpadl-groups",
                                                 "groups": [{"name": "group_000", "clips": CLIPS}]}))
    return out


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def _wait_for(paths: list[Path], proc: subprocess.Popen) -> None:
    deadline = time.time() + TIMEOUT
    while not all(p.exists() for p in paths) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert all(p.exists() for p in paths), proc.stderr.read() if proc.poll() is not None else "timed out"
    assert proc.poll() is None, "the run ended before it could be interrupted"


# --- distill groups|global: SIGKILL after a checkpoint, then --resume to the same total ---------------------------

# The first run of each gets smaller defaults (the options the CLI does not expose: a checkpoint every 2 iterations,
# short rollouts and fits, few transitions scored); the resumed run is the plain CLI, which takes its config from
# the checkpoint.
TINY_RUN = """
import dataclasses, sys
from superpadl import cli, global_policy as P, groups as G

@dataclasses.dataclass(frozen=True)
class TinyGroupConfig(G.GroupConfig):
    rollout_steps: int = 8
    bc_steps: int = 16
    beta_iterations: int = 3
    critic_warmup_iterations: int = 1
    disc_updates: int = 1
    checkpoint_every: int = 2

@dataclasses.dataclass(frozen=True)
class TinyGlobalConfig(P.GlobalConfig):
    rollout_steps: int = 8
    sgd_steps: int = 16
    commands: P.CommandSchedule = P.CommandSchedule(beta_iterations=4)
    eval_episodes: int = 1
    eval_transitions: int = 4
    checkpoint_every: int = 2

G.GroupConfig, P.GlobalConfig = TinyGroupConfig, TinyGlobalConfig
sys.exit(cli.main(sys.argv[1:]))
"""
ITERATIONS, EVAL_EVERY = 6, 3  # evaluations at 3 and 6; checkpoints at 2, 4 and 6


def _kill_and_resume(argv: list[str], run: Path) -> None:
    """Start `superpadl distill ...` (argv, with --out), SIGKILL it once it has kept a policy after its first
    checkpoint, resume it to the same total, and check what a resume promises. The policy kept before the kill is
    recorded as better than any this run can reach (every clip tracked, every switch held): the resumed run's own
    evaluations, from its checkpoint's best on, must not replace it."""
    common = [*argv, "--iterations", str(ITERATIONS), "--eval-every", str(EVAL_EVERY), "--num-envs", "8",
              "--threads", "1", "--backend", "mujoco"]
    proc = subprocess.Popen([sys.executable, "-c", TINY_RUN, *common], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for([run / "train_state.json", run / "policy.json"], proc)  # kept at 3, after the checkpoint at 2
    finally:
        proc.kill()
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    _, state = checkpoint.load(run / "train_state")
    sidecar = json.loads((run / "policy.json").read_text())  # its checksum covers the arrays alone
    scored = sidecar["config"]["eval"]
    scored.update(success=1.0, worst_clip_success=1.0, g_mpjpe_mm=0.5,
                  **({"transition_success": 1.0} if "transition_success" in scored else {}))
    (run / "policy.json").write_text(json.dumps(sidecar))
    kept = (run / "policy.npz").read_bytes(), (run / "policy.json").read_text()
    logged = [json.loads(r)["iteration"] for r in (run / "progress.jsonl").read_text().splitlines() if r.endswith("}")]
    assert state["iteration"] >= 2 and logged and max(logged) - state["iteration"] <= 2  # one checkpoint interval

    done = subprocess.run([sys.executable, "-m", "superpadl.cli", *common, "--resume"], env=ENV, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert f"resumed {run} at iteration {state['iteration']}" in done.stdout  # from the last checkpoint
    _, final = checkpoint.load(run / "train_state")
    assert final["iteration"] == ITERATIONS
    rows = [json.loads(r) for r in (run / "progress.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [3, 6]  # each evaluation logged once, none lost
    assert max(kept_score(r) for r in rows) < kept_score(scored)
    assert ((run / "policy.npz").read_bytes(), (run / "policy.json").read_text()) == kept  # not replaced
    assert not list(run.glob(".tmp-*"))


@pytest.mark.slow  # ~1 min; the same resume machinery (checkpoint.kept_eval, trim_log) runs in tests/test_bad_input_learning.py
def test_distill_groups_killed_after_keeping_a_controller_resumes_to_its_total(lib, expert, tmp_path):
    out = tmp_path / "groups"
    _kill_and_resume(["distill", "groups", str(lib.path), str(expert), "--out", str(out), "--group-size", "2",
                      "--warmup", "4"], out / "group_000")  # the PADL phase from iteration 5
    assert json.loads((out / "groups.json").read_text())["groups"] == [{"name": "group_000", "clips": sorted(CLIPS)}]


@pytest.mark.slow  # ~2 min; every stage resumes by one loop (padl.run), SIGKILLed in tests/test_expert.py
def test_distill_global_killed_after_keeping_a_policy_resumes_to_its_total(lib, groups, tmp_path):
    out = tmp_path / "global"
    _kill_and_resume(["distill", "global", str(lib.path), str(groups), "--out", str(out)], out)


# --- padl eval and superpadl eval: SIGINT / SIGTERM mid-evaluation --------------------------------------------------

# The CLI, with a marker file touched when the evaluation begins (what the test waits for before it signals), and
# Ctrl-C raising KeyboardInterrupt as in a terminal (a test run in the background may have it ignored).
MARKED_EVAL = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
import importlib
cli = importlib.import_module(sys.argv[1] + ".cli")
evaluation = importlib.import_module(sys.argv[1] + ".evaluate")
name = {"padl": "evaluate_policy", "superpadl": "evaluate"}[sys.argv[1]]
run = getattr(evaluation, name)

def marked(*a, **k):
    Path(sys.argv[2]).touch()
    return run(*a, **k)

setattr(evaluation, name, marked)
sys.exit(cli.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("tool", ["padl", "superpadl"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_evaluation_ends_with_one_line_and_no_json(tool, sig, lib, expert, tmp_path):
    """With an empty compilation cache the signal comes while XLA compiles the evaluation on a worker thread, which
    goes on: exiting through JAX's exit handler then crashed (SIGSEGV) after the one line."""
    results, marker = tmp_path / "results", tmp_path / "evaluating"
    results.mkdir()
    slow = {"padl": ["--episodes", "200", "--seconds", "60"], "superpadl": ["--episodes", "500"]}[tool]
    proc = subprocess.Popen([sys.executable, "-c", MARKED_EVAL, tool, str(marker), "eval", str(expert),
                             str(lib.path), *slow, "--json", str(results / "eval.json")],
                            env={**ENV, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for([marker], proc)
        time.sleep(1.0)  # into the evaluation's compilations
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert one_line(err) == f"{tool}: interrupted ({sig.name})"
    assert list(results.iterdir()) == []  # no --json, nor a temporary of it


GC_INTERRUPT = """
import gc, signal, sys, time
from motions import interrupts

interrupts.terminate_as_interrupt()

def on_collection(phase, info):  # JAX runs such a callback at every collection
    if phase == "start":  # the handler raises here, inside the callback, where Python prints the exception, goes on
        signal.raise_signal(signal.SIGTERM)

gc.callbacks.append(on_collection)
try:
    gc.collect()
    gc.callbacks.remove(on_collection)
    time.sleep(60)  # the rest of the work
    print("not interrupted")
except KeyboardInterrupt as e:
    interrupts.report("tool", e)
"""


def test_an_interrupt_during_a_garbage_collection_callback_is_not_lost():
    proc = subprocess.run([sys.executable, "-c", GC_INTERRUPT], env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert (proc.returncode, proc.stdout) == (128 + signal.SIGTERM, ""), proc.stderr
    assert one_line(proc.stderr) == "tool: interrupted (SIGTERM)"
