"""What the command-line tools (`motions`, `padl`, `superpadl`) set up before they work: JAX's persistent
compilation cache in the user's cache folder, so a second run does not compile again, and third-party loggers
held to errors, so the tools print their own output only. (MuJoCo's OpenGL backend is chosen when the CLI
modules import `rendering`, before mujoco.)"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

MIN_COMPILE_S = 0.2  # compilations shorter than this are not worth a file


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/padl-motion (default ~/.cache/padl-motion)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "padl-motion"


def compile_cache() -> Path | None:
    """Turn the persistent compilation cache on in cache_dir()/jax, unless JAX_COMPILATION_CACHE_DIR names one
    already (the user's, or the tests'); None when the folder cannot be made (then every run compiles)."""
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if not path:
        path = cache_dir() / "jax"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)  # read when jax is imported, also by child processes
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(MIN_COMPILE_S))
    if "jax" in sys.modules:  # imported already: the variables came too late for it
        import jax

        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", MIN_COMPILE_S)))
    return Path(path)


def quiet() -> None:
    """Third-party libraries speak only of errors: JAX's platform notes, XLA's C++ log, absl."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA's C++ logging: errors only
    for name in ("jax", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def prepare() -> None:
    """Everything above; the first thing each CLI's main() does."""
    compile_cache()
    quiet()
