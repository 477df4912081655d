"""Prompt scripts: exact parses of good scripts, one-line errors with source and line for bad ones."""
import re

import pytest

from superpadl.script import ScriptError, Stage, load_script, parse_script, schedule, total_duration

FILE = """\
# greeting routine
walk forward happily for 4s

bow                      # default duration
wave goodbye for 3 s
run for 2.5 seconds
jump for 1 sec; spin for 2secs
turn around for 5
"""


def test_file_form(tmp_path):
    path = tmp_path / "routine.txt"
    path.write_text(FILE)
    assert load_script(path) == [
        Stage("walk forward happily", 4.0), Stage("bow", 4.0), Stage("wave goodbye", 3.0), Stage("run", 2.5),
        Stage("jump", 1.0), Stage("spin", 2.0), Stage("turn around", 5.0),
    ]


def test_inline_form_and_separators():
    assert parse_script("walk for 4s; then bow; then wave") == [Stage("walk", 4.0), Stage("bow", 4.0),
                                                                Stage("wave", 4.0)]
    assert parse_script("walk forward, then bow and then wave for 2 seconds;") == [
        Stage("walk forward", 4.0), Stage("bow", 4.0), Stage("wave", 2.0)]
    assert parse_script("Then run for .5s\nand then Walk For 3 S.") == [Stage("run", 0.5), Stage("Walk", 3.0)]
    assert parse_script("bow", default_duration=1.5) == [Stage("bow", 1.5)]


def test_for_as_plain_text():
    assert parse_script("look for keys; wait for a while") == [Stage("look for keys", 4.0),
                                                                Stage("wait for a while", 4.0)]


def test_total_and_schedule():
    stages = parse_script("a for 1.5s; b for 1.5s; c for 0.1s")
    assert total_duration(stages) == pytest.approx(3.1)
    assert schedule(stages, 30) == [(0, "a"), (45, "b"), (90, "c")]
    assert schedule(stages, 60)[1:] == [(90, "b"), (180, "c")]
    with pytest.raises(ValueError):
        schedule(stages, 0)


@pytest.mark.parametrize("text, line, problem", [
    ("then", 1, "empty command"),
    ("walk\n; ;", 2, "empty command"),
    ("walk, then", 1, "empty command"),
    ("walk\n\nfor 4s", 3, "empty command"),
    ("walk for 0s", 1, "must be positive"),
    ("# c\nwalk for -2 s", 2, "must be positive"),
    ("walk for xs", 1, "not a number"),
    ("walk for ten seconds", 1, "not a number"),
    ("bow\nwalk for 601s", 2, "longer than 600"),
    ("walk for 4min", 1, "unit 'min'"),
])
def test_bad_inputs(text, line, problem):
    with pytest.raises(ScriptError) as e:
        parse_script(text)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"<prompt>, line {line}: ") and problem in msg
    assert e.value.line == line


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("walk for 2s\n# fine\nbow for nothing s\n")
    with pytest.raises(ScriptError, match="^" + re.escape(f"{path}, line 3: bad duration")):
        load_script(path)
    with pytest.raises(ScriptError, match="cannot read"):
        load_script(tmp_path / "missing.txt")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n\n"])
def test_no_stages(text):
    with pytest.raises(ScriptError, match="^<prompt>: script has no commands$"):
        parse_script(text)
