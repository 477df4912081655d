"""The shared training loop (`padl.run`) on a toy stage: keep-best, resume, progress log, time limit, early stop."""
import dataclasses
import json

import numpy as np
import pytest

from padl import checkpoint
from padl.config import MIGRATIONS, from_dict, to_dict
from padl.run import Run, Stage

KIND = "toy"


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    eval_every: int = 1
    checkpoint_every: int = 2


class Toy(Stage):
    """Each iteration adds 1 to `w`; an evaluation's success is `scores[iteration]` (0.1 when not given)."""

    desc, batch = "toy", 5

    def __init__(self, cfg=ToyConfig(), scores=None, crash_at=None, stop_at=None):
        self.cfg, self.meta = cfg, {"kind": KIND}
        self.scores, self.crash_at, self.stop_at = scores or {}, crash_at, stop_at

    @staticmethod
    def initial_state():
        return {"w": np.zeros(3), "iteration": np.int64(0), "samples": np.int64(0),
                "best": np.asarray([-1.0, -np.inf]), "stopped": np.int64(0)}

    def iterate(self, state):
        if int(state["iteration"]) == self.crash_at:
            raise KeyboardInterrupt  # a kill: nothing after the last checkpoint is saved
        state["w"] = state["w"] + 1.0
        return {"loss": 1.0 / (1 + int(state["iteration"]))}

    def evaluate(self, state, scalars):
        it = int(state["iteration"])
        return {"success": self.scores.get(it, 0.1), "g_mpjpe_mm": 50.0}, {"loss": scalars["loss"]}

    def policy(self, state):
        return {"w": state["w"]}

    def score(self, evaluation):
        return evaluation["success"], -evaluation["g_mpjpe_mm"]

    def stop(self, evaluation):
        return self.stop_at is not None and evaluation["success"] >= self.stop_at


def _train(out, stage, total, resume=False, **kw):
    run = Run(out, KIND, "toy run", resume, log=lambda m: None)
    state = run.resume(stage.initial_state(), stage.score) if run.saved else stage.initial_state()
    return run.train(stage, state, total, progress=False, **kw)


def _rows(out):
    return [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]


def test_keeps_the_best_evaluation(tmp_path):
    last = _train(tmp_path, Toy(scores={2: 0.5, 3: 0.9, 5: 0.7}), 6)
    assert last["success"] == 0.1  # the last evaluation is returned, the best is kept
    tree, meta = checkpoint.load(tmp_path / "policy")
    assert meta["iteration"] == 3 and meta["eval"]["success"] == 0.9 and meta["samples"] == 15
    np.testing.assert_array_equal(tree["['w']"], 3.0)
    assert [r["iteration"] for r in _rows(tmp_path)] == [1, 2, 3, 4, 5, 6]
    assert _rows(tmp_path)[0]["loss"] == 1.0 and (tmp_path / "logs").is_dir()


def test_a_killed_run_resumes_to_the_same_counters_and_trims_its_log(tmp_path):
    """Killed during iteration 6 (checkpoint at 4, evaluations logged to 5, the best kept at 5): the resumed run goes
    on from 4, logs 5 again once, reaches the uninterrupted run's state, and keeps the policy kept before the kill
    (recorded here as better than any evaluation the run reaches) over its own evaluations."""
    scores = {5: 0.6, 7: 0.8}
    _train(tmp_path / "whole", Toy(scores=scores), 8)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", Toy(scores=scores, crash_at=5), 8)
    run = tmp_path / "run"
    assert checkpoint.load(run / "train_state")[1]["iteration"] == 4
    assert [r["iteration"] for r in _rows(run)] == [1, 2, 3, 4, 5]
    sidecar = json.loads((run / "policy.json").read_text())
    sidecar["config"]["eval"]["success"] = 1.0  # the checksum covers the arrays alone
    (run / "policy.json").write_text(json.dumps(sidecar))
    kept = (run / "policy.npz").read_bytes(), (run / "policy.json").read_text()

    _train(run, Toy(scores=scores), 8, resume=True)
    assert [r["iteration"] for r in _rows(run)] == list(range(1, 9))
    whole, resumed = (checkpoint.load(d / "train_state")[0] for d in (tmp_path / "whole", run))
    for k in ("['iteration']", "['samples']", "['w']"):
        np.testing.assert_array_equal(resumed[k], whole[k])
    assert int(resumed["['samples']"]) == 40
    assert ((run / "policy.npz").read_bytes(), (run / "policy.json").read_text()) == kept


def test_stops_at_the_time_limit_after_an_evaluation_and_a_checkpoint(tmp_path):
    stage = Toy(ToyConfig(eval_every=100, checkpoint_every=100))
    last = _train(tmp_path, stage, 50, time_limit_s=0.0)
    assert last["success"] == 0.1
    assert checkpoint.load(tmp_path / "train_state")[1]["iteration"] == 1
    assert [r["iteration"] for r in _rows(tmp_path)] == [1]


def test_an_early_stop_is_checkpointed_and_ends_the_run_for_good(tmp_path):
    stage = Toy(ToyConfig(checkpoint_every=100), scores={3: 1.0}, stop_at=1.0)
    _train(tmp_path, stage, 10)
    state, meta = checkpoint.load(tmp_path / "train_state")
    assert meta["iteration"] == 3 and int(state["['stopped']"]) == 1
    assert _train(tmp_path, stage, 10, resume=True) == {}  # resumed: nothing left to do
    assert checkpoint.load(tmp_path / "train_state")[1]["iteration"] == 3


def test_a_run_of_no_iterations_still_leaves_its_policy(tmp_path):
    assert _train(tmp_path, Toy(), 0) == {}
    tree, meta = checkpoint.load(tmp_path / "policy")
    assert meta["iteration"] == 0 and meta["eval"] == {}
    np.testing.assert_array_equal(tree["['w']"], 0.0)


def test_a_global_config_saved_with_flat_command_keys_loads_into_its_schedule():
    """A global policy distilled before `GlobalConfig.commands` (the default model shipped until then): its flat
    keys load into the schedule."""
    from pathlib import Path

    from superpadl.global_policy import CommandSchedule, GlobalConfig

    flat = json.loads((Path(__file__).parent / "data" / "flat_global_config.json").read_text())["global"]
    cfg = from_dict(GlobalConfig, flat)
    assert cfg.commands == CommandSchedule(**{k: flat[k] for k in MIGRATIONS["GlobalConfig"]})
    assert from_dict(GlobalConfig, to_dict(cfg)) == cfg and "finish_s" not in to_dict(cfg)
    with pytest.raises(ValueError, match="'finish_s' is given both flat and as 'commands.finish_s'"):
        from_dict(GlobalConfig, {"finish_s": 1.0, "commands": {"finish_s": 2.0}})
