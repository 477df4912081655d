"""Recipes: defaults that work, overrides at any depth, and bad recipes refused in one line naming the file and key,
with nothing written."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from superpadl import cli
from superpadl import recipe as R

GOOD = """
name = "tiny"
sources = ["a.txt", "b.txt@0:1"]
[experts]
iterations = 7
retries = 1
[experts.env]
num_envs = 4
[experts.env.episode]
hold_s = 1
[groups]
minutes = 2.5
[global.commands]
finish_s = 2
[eval]
episodes = 1
"""


def write(tmp_path, text: str, files=("a.txt", "b.txt")):
    for f in files:
        (tmp_path / f).write_text("# no entries\n" if f.startswith("s") else "x")
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_a_recipe_states_only_what_differs(tmp_path):
    r = R.load(write(tmp_path, GOOD))
    assert r.sources == (str(tmp_path / "a.txt"), f"{tmp_path / 'b.txt'}@0:1") and r.listed == ("a.txt", "b.txt@0:1")
    assert r.experts.config.iterations == 7 and r.experts.retries == 1 and r.experts.config.env.num_envs == 4
    default = R.ExpertStage().config
    assert r.experts.config.env.action == default.env.action and r.experts.config.ppo == default.ppo
    assert r.experts.config.env.episode == dataclasses.replace(default.env.episode, hold_s=1.0)  # a nested table too
    assert r.groups.minutes == 2.5 and r.global_.minutes is None
    assert r.global_.config.commands.finish_s == 2.0 and isinstance(r.global_.config.commands.finish_s, float)
    assert r.global_.config.commands.rest_switch == R.Recipe.__dataclass_fields__["global_"].default_factory() \
        .config.commands.rest_switch
    assert r.eval.episodes == 1 and r.eval.transitions == 100
    assert r.groups.init_from is None and r.global_.init_from is None


def test_a_stage_warm_start_is_a_folder_relative_to_the_recipe(tmp_path):
    (tmp_path / "models" / "earlier").mkdir(parents=True)
    r = R.load(write(tmp_path, 'sources = ["a.txt"]\n[global]\ninit_from = "models/earlier"\niterations = 3\n'))
    assert r.global_.init_from == tmp_path / "models" / "earlier" and r.global_.config.iterations == 3


def test_the_stop_stage_is_its_teacher_folder_and_group_settings(tmp_path):
    (tmp_path / "models" / "stop").mkdir(parents=True)
    r = R.load(write(tmp_path, 'sources = ["a.txt"]\n[stop]\nteacher = "models/stop"\niterations = 7\nminutes = 3\n'
                               '[stop.env.episode]\nlength_s = 6.0\n'))
    assert r.stop.teacher == tmp_path / "models" / "stop" and r.stop.minutes == 3
    assert r.stop.config.iterations == 7 and r.stop.config.env.episode.length_s == 6.0
    assert r.groups.config.iterations != 7 and R.load(write(tmp_path, 'sources = ["a.txt"]\n')).stop.teacher is None


def test_a_stage_state_starts_file_is_relative_to_the_recipe(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "states.npz").write_bytes(b"x")
    r = R.load(write(tmp_path, 'sources = ["a.txt"]\n[groups.env.starts]\nforeign_share = 0.3\n'
                               'state_starts = "models/states.npz"\n'))
    assert r.groups.config.env.starts.state_starts == str(tmp_path / "models" / "states.npz")
    assert r.groups.config.env.starts.foreign_share == 0.3 and r.global_.config.env.starts.state_starts is None


def test_sources_file_entries_are_relative_to_data(tmp_path):
    (tmp_path / "mocap").mkdir()
    (tmp_path / "mocap" / "w.txt").write_text("x")
    (tmp_path / "sources.txt").write_text("# a comment\nw.txt\n\nw.txt@0:2\n")
    path = tmp_path / "r.toml"
    path.write_text('sources_file = "sources.txt"\ndata = "mocap"\n')
    r = R.load(path)
    assert r.sources == (str(tmp_path / "mocap" / "w.txt"), f"{tmp_path / 'mocap' / 'w.txt'}@0:2")
    assert r.name == "r"


@pytest.mark.parametrize("text, files, key, problem", [
    ('sources = ["a.txt"]\nepochs = 3\n', ("a.txt",), "epochs", "unknown key"),
    ('sources = ["a.txt"]\n[groups.env]\nnum_env = 3\n', ("a.txt",), "groups.env.num_env", "unknown key"),
    ('sources = ["a.txt"]\n[global.commands]\nfinish = 3\n', ("a.txt",), "global.commands.finish", "unknown key"),
    ('sources = ["a.txt"]\n[experts]\nminutes = -5\n', ("a.txt",), "experts.minutes", "negative"),
    ('sources = ["a.txt"]\n[groups]\niterations = -1\n', ("a.txt",), "groups.iterations", "negative"),
    ('sources = ["a.txt"]\n[experts]\niterations = "many"\n', ("a.txt",), "experts.iterations", "integer"),
    ('sources = ["a.txt", "gone.bvh@0:2"]\n', ("a.txt",), "sources", "gone.bvh is missing"),
    ('sources = []\n', (), "sources", "empty clip list"),
    ('sources = ["a.txt"]\n[experts]\ninit_from = "warm"\n', ("a.txt",), "experts.init_from", "no such folder"),
    ('sources = ["a.txt"]\n[global]\ninit_from = "warm"\n', ("a.txt",), "global.init_from", "no such folder"),
    ('sources = ["a.txt"]\n[groups]\ninit_from = 3\n', ("a.txt",), "groups.init_from", "path (string)"),
    ('sources = ["a.txt"]\n[stop]\nteacher = "gone"\n', ("a.txt",), "stop.teacher", "no such folder"),
    ('sources = ["a.txt"]\n[stop]\niterations = -2\n', ("a.txt",), "stop.iterations", "negative"),
    ('sources = ["a.txt"]\n[global.env.starts]\nstate_starts = "s.npz"\n', ("a.txt",),
     "global.env.starts.state_starts", "no such file"),
    ('sources_file = "s.txt"\n', ("s.txt",), "sources_file", "empty clip list"),
    ('sources = ["a.txt"\n', ("a.txt",), "", "not valid TOML"),
    ('stand_starts = "deepmimic_walk"\nsources = ["a.txt"]\n', ("a.txt",), "stand_starts", "list of clip ids"),
    ('start_from = "walk"\nsources = ["a.txt"]\n', ("a.txt",), "start_from", "'standing' or 'any'"),
    ('sources = ["a.txt"]\n[handover]\nshare = 0\n', ("a.txt",), "handover.share", "in (0, 1]"),
    ('sources = ["a.txt"]\n[handover]\nclips = "walk"\n', ("a.txt",), "handover.clips", "must be a list"),
    ('sources = ["a.txt"]\n[handover]\nrounds = -1\n', ("a.txt",), "handover.rounds", "negative"),
])
def test_bad_recipes_are_one_line_errors_and_write_nothing(tmp_path, capsys, text, files, key, problem):
    path = write(tmp_path, text, files)
    run = tmp_path / "run"
    assert cli.main(["train", str(path), "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"superpadl: error: {path}: {key}") and problem in err, err
    assert not run.exists()


def test_a_run_is_resumed_only_with_resume_and_from_its_recipe(tmp_path, capsys):
    from superpadl import pipeline

    path = write(tmp_path, 'sources = ["a.txt"]\n', ("a.txt",))
    run = tmp_path / "run"
    recipe = R.load(path)
    assert cli.main(["train", str(path), "--out", str(run), "--resume"]) == 1
    assert "no run to resume" in capsys.readouterr().err and not run.exists()
    run.mkdir()
    from padl.checkpoint import write_json_atomic

    write_json_atomic(run / "status.json", pipeline.open_run(recipe, run, resume=False))
    assert cli.main(["train", str(path), "--out", str(run)]) == 1
    assert "pass --resume" in capsys.readouterr().err
    data = pipeline.open_run(recipe, run, resume=True)
    data["stages"]["import"]["state"] = data["stages"]["experts"]["state"] = "done"
    write_json_atomic(run / "status.json", data)
    # a stage not begun yet may change (the run goes on under the new recipe); one begun may not
    path.write_text('sources = ["a.txt"]\n[eval]\nepisodes = 3\n')
    resumed = pipeline.open_run(R.load(path), run, resume=True)
    assert resumed["recipe"] == {"sources": ["a.txt"], "eval": {"episodes": 3}}
    # a run begun before a stage existed gets it: done where a later stage has begun, else to run
    for groups, handover in (("running", "done"), ("pending", "pending")):
        old = json.loads((run / "status.json").read_text())
        old["stages"].pop("handover", None)
        old["stages"]["groups"]["state"] = groups
        write_json_atomic(run / "status.json", old)
        assert pipeline.open_run(recipe, run, resume=True)["stages"]["handover"]["state"] == handover
    data["stages"]["handover"]["state"] = "running"
    write_json_atomic(run / "status.json", data)
    for changed, stage in (('[experts]\nminutes = 3\n', "experts"), ('stand_starts = ["a"]\n', "experts"),
                           ('[handover]\nrounds = 2\n', "handover"), ('name = "b"\n', "import")):
        path.write_text('sources = ["a.txt"]\n' + changed)
        assert cli.main(["train", str(path), "--out", str(run), "--resume"]) == 1
        err = capsys.readouterr().err
        assert "another recipe" in err and f"in the {stage} stage" in err


def test_ray_address_without_ray_is_one_line(tmp_path, capsys):
    pytest.importorskip("superpadl.pipeline")
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed")
    except ModuleNotFoundError:
        pass
    path = write(tmp_path, 'sources = ["a.txt"]\n', ("a.txt",))
    assert cli.main(["train", str(path), "--out", str(tmp_path / "run"), "--ray-address", "auto"]) == 1
    err = capsys.readouterr().err
    assert "Ray is not installed" in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_recipes_parse(recipe):
    if not (Path(__file__).resolve().parents[2] / "shared" / "data").is_dir():
        pytest.skip("the shared mocap folder (../shared/data) is absent: the recipes' sources cannot be checked")
    r = R.load(recipe)
    assert r.sources and all(Path(s.rpartition("@")[0] or s).is_file() for s in r.sources)
