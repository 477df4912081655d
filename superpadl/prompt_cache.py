"""Prompt embeddings kept on disk between processes, so a prompt embedded once needs no text model again.

Loading the text model (torch, transformers, sentence-transformers and the weights) takes 5-15 s on a 2-core
CPU, longer than everything else `superpadl render` does before its first frame; a script rendered again (an
animator's loop) or a command typed again then starts at once. One .npy file per prompt, named by the SHA-256
of its text, in a folder named by the model's files (names, sizes, modification times), so another model or
another version of its files misses. Written atomically; an unreadable or malformed entry counts as a miss.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np


class PromptCache:
    def __init__(self, folder: Path, dim: int):
        self.folder, self.dim = Path(folder), dim

    @classmethod
    def for_model(cls, model_dir: str | Path, dim: int, root: Path | None = None) -> "PromptCache | None":
        """The cache of the model in `model_dir` under `root` (default: the user's cache folder,
        motions.entry.cache_dir()/text); None when the model folder cannot be read."""
        from motions.entry import cache_dir

        try:
            files = sorted((p.relative_to(model_dir).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                           for p in Path(model_dir).rglob("*") if p.is_file())
        except OSError:
            return None
        key = hashlib.sha256(repr(files).encode()).hexdigest()[:16]
        return cls((root or cache_dir() / "text") / f"{Path(model_dir).name}-{key}", dim)

    def _path(self, text: str) -> Path:
        return self.folder / f"{hashlib.sha256(text.encode()).hexdigest()}.npy"

    def get(self, text: str) -> np.ndarray | None:
        try:
            e = np.load(self._path(text), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        ok = e.dtype == np.float32 and e.shape == (self.dim,) and np.isfinite(e).all()
        return e if ok else None

    def put(self, text: str, embedding: np.ndarray) -> None:
        """Store (best effort: a read-only or full disk just means no cache)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, np.asarray(embedding, np.float32))
                os.replace(tmp, self._path(text))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            pass
