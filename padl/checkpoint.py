"""Pickle-free checkpoints: a pytree of arrays in `<name>.npz` plus a `<name>.json` sidecar.

The sidecar holds the format name/version, a JSON-able config, each leaf's key path, shape
and dtype, and the sha256 of the npz. Arrays are loaded with allow_pickle=False, so a
checkpoint can never execute code. Both files are written to temporaries in the target
directory and moved into place with os.replace, JSON last: a save that fails part-way leaves
the previous checkpoint untouched, and a crash between the two renames is caught on load by
the checksum instead of silently mixing two saves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from motions import tempfiles

FORMAT = "padl-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is foreign, corrupted, or does not fit the requested template."""


SUFFIXES = (".npz", ".json")


@contextlib.contextmanager
def metadata_of(where: str | os.PathLike, what: str):
    """Reading the metadata of a `what` saved at `where`: a missing or mistyped entry is a one-line CheckpointError."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{where}: malformed {what} metadata ({e.__class__.__name__}: {e})") from None


def in_folder(path: str | os.PathLike, name: str) -> Path:
    """The checkpoint `name` inside folder `path`, or `path` itself when it names the files (ends in .npz or
    .json): a folder's name may hold a dot (a cut clip's id, '..._0-3.4s') and still be a folder."""
    p = Path(path)
    return p if p.suffix in SUFFIXES else p / name


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in SUFFIXES:
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _to_numpy(leaf: Any, key: str) -> np.ndarray:
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        raise TypeError(f"leaf {key} is a typed PRNG key; store jax.random.key_data(key) instead")
    arr = np.asarray(leaf)
    if arr.dtype.kind not in "biufc" and arr.dtype.type.__module__ != "ml_dtypes":
        raise TypeError(f"leaf {key} is not a numeric array (got {type(leaf).__name__} of dtype {arr.dtype})")
    return arr


def _write_temp(directory: Path, suffix: str, write) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=tempfiles.prefix(), suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def save(path: str | os.PathLike, tree: Any, config: dict | None = None) -> Path:
    """Write `tree` (any pytree of arrays / Python scalars) and `config`; returns the .json path."""
    npz_path, json_path = _paths(path)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    keys = [jax.tree_util.keystr(p) for p, _ in leaves]
    arrays = [_to_numpy(leaf, k) for k, (_, leaf) in zip(keys, leaves)]
    # Non-numpy dtypes (bfloat16 etc.) are stored as raw unsigned ints and viewed back on load.
    stored = {f"leaf_{i}": a if a.dtype.kind in "biufc" else a.view(f"u{a.dtype.itemsize}") for i, a in enumerate(arrays)}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config": config or {},
        "leaves": [{"key": k, "shape": list(a.shape), "dtype": a.dtype.name} for k, a in zip(keys, arrays)],
    }
    tmp_npz = _write_temp(npz_path.parent, ".npz", lambda f: np.savez(f, **stored))
    try:
        meta["npz"] = npz_path.name
        meta["sha256"] = file_sha256(tmp_npz)
        tmp_json = _write_temp(json_path.parent, ".json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    except BaseException:
        os.unlink(tmp_npz)
        raise
    os.replace(tmp_npz, npz_path)
    os.replace(tmp_json, json_path)
    return json_path


def write_npz_atomic(path: str | os.PathLike, **arrays) -> Path:
    """An npz of plain arrays written whole or not at all (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_write_temp(path.parent, ".npz", lambda f: np.savez(f, **arrays)), path)
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """A JSON file written whole or not at all (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_write_temp(path.parent, ".json", lambda f: f.write(json.dumps(obj, indent=1).encode())), path)
    return path


def read_spec(path: str | os.PathLike, fmt: str, what: str) -> dict:
    """A small JSON file that names its `format` (a controller or groups folder's index), or a one-line
    ValueError naming the file: missing (not a `what`), not JSON, or another format."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: missing (not a {what})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(spec, dict) or spec.get("format") != fmt:
        raise ValueError(f"{path}: not a {fmt} file")
    return spec


def sidecar_config(path: str | os.PathLike) -> dict:
    """A checkpoint's config read from its JSON sidecar alone (the arrays are neither read nor verified): cheap
    enough for progress displays. A missing sidecar is FileNotFoundError, an unreadable one ValueError."""
    json_path = _paths(path)[1]
    try:
        meta = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{json_path}: not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config", {}), dict):
        raise ValueError(f"{json_path}: not a {FORMAT} file (its JSON is a {type(meta).__name__}, not a sidecar)")
    return meta.get("config", {})


def kind_of(path: str | os.PathLike) -> str | None:
    """The `kind` a checkpoint's config declares (e.g. "padl-expert"), read from its JSON sidecar alone."""
    return sidecar_config(path).get("kind")


def resume_meta(out: str | os.PathLike, name: str, kind: str, what: str) -> dict | None:
    """The metadata of run checkpoint `out/name` to resume, None when there is none yet; a checkpoint of another
    kind is refused."""
    path = Path(out) / name
    if not _paths(path)[1].exists():
        return None
    _, meta = load(path)
    if meta.get("kind") != kind:
        raise CheckpointError(f"{_paths(path)[1]}: not a {what}")
    return meta


def kept_eval(out: str | os.PathLike, name: str) -> dict | None:
    """The evaluation recorded with the policy a run kept in `out/name` (None: none kept, or none recorded). A
    resumed run ranks new evaluations against it as well as against its checkpoint's best: a run killed after
    keeping a policy and before its next checkpoint must not replace that policy with a worse one."""
    json_path = _paths(Path(out) / name)[1]
    if not json_path.is_file():
        return None
    _, config = load(json_path)  # the kept policy must be intact to rank against it
    kept = config.get("eval")
    return kept if isinstance(kept, dict) and kept else None


def prepare_run(out: str | os.PathLike, policy: str, state: str, resumed: bool, force: bool = False) -> None:
    """Before a run starts in `out`: the temporaries of killed writers there are swept; a new run may not overwrite
    the policy an earlier run kept there (`out/policy`) unless forced, and a forced one drops the earlier run's
    state (`out/state`), so that a later resume cannot mix the two runs."""
    tempfiles.sweep(out)
    if resumed:
        return
    if _paths(Path(out) / policy)[1].exists() and not force:
        raise CheckpointError(f"{_paths(Path(out) / policy)[1]}: an earlier run's kept policy is here; resume that "
                              "run (--resume), overwrite it (--force), or choose another --out")
    if force:
        for p in reversed(_paths(Path(out) / state)):  # the sidecar first: no half of a checkpoint looks whole
            p.unlink(missing_ok=True)


def trim_log(path: str | os.PathLike, iteration: int) -> None:
    """Keep the rows of a run's JSON-lines log up to `iteration` (the checkpoint a run restarts from): what a
    killed run logged after its last checkpoint is logged again when it is redone, and a row cut short by the
    kill is no row. A new run (iteration 0) starts an empty log."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("iteration"), int) and row["iteration"] <= iteration:
            kept.append(line + "\n")
    os.replace(_write_temp(path.parent, ".json", lambda f: f.write("".join(kept).encode())), path)


def load(path: str | os.PathLike, template: Any = None) -> tuple[Any, dict]:
    """Return (tree, config). With a template, the tree has its structure and leaf types and every
    key, shape and dtype must match (jax.ShapeDtypeStruct leaves, as `jax.eval_shape` gives, load as jax arrays);
    without one, a flat {key path: np.ndarray} dict is returned."""
    npz_path, json_path = _paths(path)

    def fail(file: Path, problem: str):
        raise CheckpointError(f"{file}: {problem}")

    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError:
        fail(json_path, "no such checkpoint")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(json_path, f"not a valid JSON sidecar ({e.__class__.__name__})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fail(json_path, f"not a {FORMAT} file (format={meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        fail(json_path, f"unsupported version {meta.get('version')!r} (expected {VERSION})")
    try:
        leaves, sha, config = meta["leaves"], meta["sha256"], meta["config"]
        keys = [leaf["key"] for leaf in leaves]
    except (KeyError, TypeError) as e:
        fail(json_path, f"malformed sidecar (missing {e})")
    if not isinstance(config, dict):
        fail(json_path, f"malformed sidecar (its config is a {type(config).__name__})")
    if not npz_path.is_file():
        fail(npz_path, "array file is missing")
    if file_sha256(npz_path) != sha:
        fail(npz_path, "sha256 mismatch: corrupted, or not the file this sidecar describes")

    flat = {}
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            for i, info in enumerate(leaves):
                arr = npz[f"leaf_{i}"]
                if arr.dtype.name != info["dtype"]:
                    arr = arr.view(jnp.dtype(info["dtype"]))
                if list(arr.shape) != info["shape"]:
                    fail(npz_path, f"leaf {info['key']} has shape {arr.shape}, sidecar says {tuple(info['shape'])}")
                flat[info["key"]] = arr
    except CheckpointError:
        raise
    except (KeyError, ValueError, OSError, TypeError, zipfile.BadZipFile) as e:
        fail(npz_path, f"unreadable array file ({e.__class__.__name__}: {e})")
    if template is None:
        return flat, config

    t_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    t_keys = [jax.tree_util.keystr(p) for p, _ in t_leaves]
    if missing := [k for k in t_keys if k not in flat]:
        fail(npz_path, f"missing key {missing[0]} ({len(missing)} missing)")
    if extra := [k for k in keys if k not in set(t_keys)]:
        fail(npz_path, f"unexpected key {extra[0]} not in template ({len(extra)} extra)")
    out = []
    for k, (_, t) in zip(t_keys, t_leaves):
        arr = flat[k]
        t_arr = t if isinstance(t, jax.ShapeDtypeStruct) else _to_numpy(t, k)  # eval_shape templates: jax arrays
        if arr.shape != t_arr.shape or arr.dtype != t_arr.dtype:
            fail(npz_path, f"leaf {k} is {arr.dtype}{list(arr.shape)}, template wants {t_arr.dtype}{list(t_arr.shape)}")
        if isinstance(t, (bool, int, float, complex)):
            out.append(type(t)(arr.item()))
        elif isinstance(t, np.generic):
            out.append(arr[()])
        elif isinstance(t, np.ndarray):
            out.append(arr)
        else:
            out.append(jnp.asarray(arr))
    return jax.tree_util.tree_unflatten(treedef, out), config
