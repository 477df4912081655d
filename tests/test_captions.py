"""Captions: deterministic, varied, style-aware, and strict about unknown labels."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from motions.captions import (
    BANDAI_CONTENTS, BANDAI_STYLES, bandai_captions, captions_for, cmu_captions, load_cmu_descriptions,
    named_captions, style_cues,
)

REPO = Path(__file__).resolve().parents[1]
CONTENTS = ["walk", "run", "dash", "walk-back", "walk-left", "walk-right", "bow", "bye", "guide", "byebye",
            "respond", "call", "punch", "kick", "slash", "dance-long", "dance-short"]
STYLES = ["normal", "happy", "sad", "angry", "proud", "not-confident", "masculinity", "feminine", "childish",
          "old", "tired", "active", "musical", "giant", "chimpira"]


def _sample():
    return {
        "bandai": [bandai_captions(c, s) for c in ("walk", "bye", "slash") for s in ("normal", "tired", "giant")],
        "named": [named_captions(n) for n in ("backflip", "moon_walk")],
    }


def test_tables_cover_the_dataset_labels():
    assert list(BANDAI_CONTENTS) == CONTENTS
    assert list(BANDAI_STYLES) == STYLES


def test_deterministic_in_process_and_across_processes():
    assert _sample() == _sample()
    code = "import json; from tests.test_captions import _sample; print(json.dumps(_sample()))"
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": ""})
        assert json.loads(out.stdout) == _sample()


def test_examples():
    assert bandai_captions("walk", "normal")[:2] == ["a person walks forward", "walk forward"]
    tired = bandai_captions("walk", "tired")
    assert tired[:3] == ["a tired person walks forward", "someone walks forward wearily", "walk forward tiredly"]
    assert "a person does a backflip" in named_captions("backflip")
    assert "flip backwards" in named_captions("backflip")


@pytest.mark.parametrize("content", CONTENTS)
@pytest.mark.parametrize("style", STYLES)
def test_every_bandai_combination(content, style):
    caps = bandai_captions(content, style)
    assert 4 <= len(caps) <= 6 and len(set(caps)) == len(caps) >= 3
    assert all(c == c.strip() and "  " not in c for c in caps)
    if style != "normal":
        cues = style_cues(style)
        assert all(any(cue in c for cue in cues) for c in caps), (caps, cues)


def test_style_words_independent_of_table():
    expect = {"tired": ("tired", "weari", "exhausted"), "happy": ("happ", "cheerful", "joy"), "old": ("old", "elderly"),
              "chimpira": ("thug", "swagger", "punk"), "childish": ("child",), "giant": ("giant",)}
    for style, words in expect.items():
        assert all(any(w in c for w in words) for c in bandai_captions("run", style)), style
    normal = " ".join(bandai_captions("run", "normal"))
    assert not any(w in normal for ws in expect.values() for w in ws)


def test_unknown_bandai_labels_raise_naming_them():
    with pytest.raises(ValueError, match="moonwalk"):
        bandai_captions("moonwalk", "normal")
    with pytest.raises(ValueError, match="sleepy"):
        bandai_captions("walk", "sleepy")
    with pytest.raises(ValueError, match="children"):  # the upstream README's spelling, not the label
        bandai_captions("walk", "children")


def test_cmu_real_tsv(shared_data):
    tsv = shared_data / "cmu" / "cmu_clip_descriptions.tsv"
    subject, desc = load_cmu_descriptions(tsv)["02_01"]
    caps = cmu_captions("02_01", tsv)
    assert len(set(caps)) >= 3
    assert caps[0] == desc.lower()
    assert any(desc.lower() in c for c in caps[1:])
    assert any(subject.lower() in c for c in caps)
    assert len(load_cmu_descriptions(tsv)) > 2000
    with pytest.raises(ValueError, match="99_99"):
        cmu_captions("99_99", tsv)


def test_cmu_cleanup_and_cache(tmp_path):
    tsv = tmp_path / "d.tsv"
    tsv.write_text("clip_id\tsubject\tsubject_description\tclip_description\n"
                   "01_01\t1\tplayground\tplayground - climb, swing\n"
                   "02_02\t2\tweird walks\tSadWalk (2 subjects - subject A)\n"
                   "03_03\t3\tnursery rhymes\t\"nursery rhyme - \"\"I'm a little teapot...\"\"\"\n"
                   "04_04\t4\tvarious\tUnknown\n")
    assert load_cmu_descriptions(tsv) is load_cmu_descriptions(str(tsv))
    assert "playground: a person climbs, swing" in cmu_captions("01_01", tsv)
    assert cmu_captions("02_02", tsv)[0] == "sad walk"
    assert cmu_captions("03_03", tsv)[0] == "nursery rhyme - i'm a little teapot"
    assert cmu_captions("04_04", tsv)[0] == "various"
    with pytest.raises(ValueError, match="05_05"):
        cmu_captions("05_05", tsv)


def test_named():
    names = ["walk", "run", "jog", "jump", "kick", "punch", "spinkick", "backflip", "sideflip", "cartwheel", "crawl",
             "roll", "getup_facedown", "getup_faceup", "dance_a", "dance_b", "dance_spin", "spin", "stealthy_walk",
             "zombie_walk", "hop", "dance"]
    for n in names:
        caps = named_captions(n)
        assert len(set(caps)) == len(caps) >= 4, n
    assert named_captions("humanoid3d_backflip") == named_captions("backflip")
    assert named_captions("moon_walk")[0] == "a person moon walk"
    assert named_captions("")  # never fails


def test_captions_for_dispatch(tmp_path):
    assert captions_for({"content": "bow", "style": "sad"}, "bandai_bvh", "x", None) == bandai_captions("bow", "sad")
    assert captions_for({"name": "roll"}, "deepmimic", "x", None) == named_captions("roll")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("clip_id\tsubject\tsubject_description\tclip_description\n07_01\t7\twalk\twalk\n")
    assert captions_for({"cmu_clip_id": "07_01"}, "cmu_bvh", "x", tsv) == cmu_captions("07_01", tsv)
    with pytest.raises(ValueError):
        captions_for({"cmu_clip_id": "07_01"}, "cmu_bvh", "x", None)
    with pytest.raises(ValueError, match="clip9"):
        captions_for({}, "bvh", "clip9", None)
