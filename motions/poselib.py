"""poselib SkeletonMotion / SkeletonState .npy importer (the AMP clips), without trusting the pickle.

These files are pickled dicts inside an object .npy; np.load(allow_pickle=True) would run whatever the
pickle names. We read the .npy header ourselves and unpickle with a loader that can only build numpy
arrays, dtypes, numpy scalars and (Ordered)dicts, so a hostile file is refused before anything runs.
"""
from __future__ import annotations

import collections
import io
import math
import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from .bvh import CMU_UNIT, is_cmu_skeleton, snap_fps
from .quat import quat_conj, quat_mul, quat_normalize
from .source import MotionImportError, SourceMotion, check_fps

try:  # numpy >= 2 keeps the internals in numpy._core; old pickles still name numpy.core
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "dtype"): np.dtype,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "scalar")] = _multiarray.scalar
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_SLACK_BYTES = 1 << 16  # room for a legitimate file's 0-d and empty arrays beyond its inline data

# The AMP humanoid has hand, foot and head bodies, but they sit at the wrist, ankle and neck joints; give it
# the same toe and head-top end sites as DeepMimic's humanoid3d (the same skeleton) so both import alike.
_AMP_NODES = ["pelvis", "torso", "head", "right_upper_arm", "right_lower_arm", "right_hand", "left_upper_arm",
              "left_lower_arm", "left_hand", "right_thigh", "right_shin", "right_foot", "left_thigh", "left_shin",
              "left_foot"]
_AMP_ENDS = [("head_end", "head", (0.0, 0.0, 0.25)),
             ("right_foot_end", "right_foot", (0.17, 0.0, -0.06)),
             ("left_foot_end", "left_foot", (0.17, 0.0, -0.06))]


def _nbytes(path, shape, dtype) -> int:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
        raise MotionImportError(path, f"pickled array with a malformed shape {str(shape)[:40]}")
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals numpy needs to rebuild arrays; anything else stops the load. Every array is
    charged its declared bytes before numpy allocates it, against a budget of the file's own size: a legitimate
    pickle carries its arrays' data inline, a hostile one declares shapes its bytes cannot fill."""

    def __init__(self, data: bytes, path):
        super().__init__(io.BytesIO(data))
        self._path = path
        self._left = len(data) + _SLACK_BYTES
        charge = self._charge

        class BoundedArray(np.ndarray):  # what the pickle's 'numpy.ndarray' resolves to
            def __new__(cls, shape, dtype=float, *args, **kwargs):
                charge(shape, dtype)
                return super().__new__(cls, shape, dtype, *args, **kwargs)

            def __setstate__(self, state):
                if isinstance(state, tuple) and len(state) in (4, 5):
                    charge(*state[-4:-2])
                super().__setstate__(state)

        self._array_type = BoundedArray

    def _charge(self, shape, dtype) -> None:
        n = _nbytes(self._path, shape, dtype)
        if n > self._left:
            raise MotionImportError(self._path, f"pickled arrays declare more bytes than the file holds (an array "
                                                f"of shape {shape} needs {n}); refusing to build them")
        self._left -= n

    def _reconstruct(self, subtype, shape, dtype):
        if subtype is not self._array_type:
            raise MotionImportError(self._path, "pickled array of a type other than numpy.ndarray; refusing it")
        self._charge(shape, dtype)
        return _multiarray._reconstruct(subtype, shape, dtype)

    def find_class(self, module, name):
        if (module, name) == ("numpy", "ndarray"):
            return self._array_type
        if (module, name) in _RECONSTRUCT:
            return self._reconstruct
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise MotionImportError(self._path, f"carries a non-array object {module}.{name}; refusing to unpickle")
        return obj

    def persistent_load(self, pid):
        raise MotionImportError(self._path, "carries a persistent-id reference; refusing to unpickle")


def _plain(obj, seen=None):
    """The unpickled tree with every bounded array turned back into a plain ndarray (cycles visited once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        obj = obj.view(np.ndarray)
        if obj.dtype.hasobject:
            for idx in np.ndindex(obj.shape):
                obj[idx] = _plain(obj[idx], seen)
    elif isinstance(obj, dict):
        for k in obj:
            obj[k] = _plain(obj[k], seen)
    elif isinstance(obj, list):
        obj[:] = [_plain(v, seen) for v in obj]
    return obj


def read_pickled_npy(path):
    """The object stored in an object-dtype .npy file, unpickled with the array-only loader."""
    try:
        with open(path, "rb") as f:
            version = npy_format.read_magic(f)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            payload = f.read()
    except FileNotFoundError:
        raise MotionImportError(path, "file not found") from None
    except OSError as e:
        raise MotionImportError(path, f"cannot read file ({e.strerror})") from None
    except ValueError as e:
        raise MotionImportError(path, f"not a .npy file ({str(e).splitlines()[0]})") from None
    if not dtype.hasobject or shape != ():
        raise MotionImportError(path, f"holds a plain {dtype} array of shape {shape}, not a pickled skeleton dict")
    try:
        obj = _plain(_ArrayOnlyUnpickler(payload, path).load())
    except MotionImportError:
        raise
    except Exception as e:  # truncated or malformed pickle streams raise a zoo of types
        raise MotionImportError(path, f"corrupt pickle payload ({type(e).__name__})") from None
    return obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj


def _get(path, d, dotted: str):
    """d['a']['b'] for 'a.b', with the missing key named in the error."""
    cur = d
    for key in dotted.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise MotionImportError(path, f"missing key {dotted!r}")
        cur = cur[key]
    return cur


def _array(path, d, dotted, shape_desc, ndims):
    a = np.asarray(_get(path, d, dotted))
    if a.dtype.kind not in "fiu" or a.ndim not in ndims:
        raise MotionImportError(path, f"{dotted} has shape {a.shape} ({a.dtype}), expected {shape_desc}")
    return a.astype(np.float64)


def load_poselib(path, unit_scale: float | None = None) -> SourceMotion:
    """Parse a poselib SkeletonMotion (or a one-frame SkeletonState such as a T-pose) into a SourceMotion."""
    d = read_pickled_npy(path)
    if not isinstance(d, dict):
        raise MotionImportError(path, f"holds a {type(d).__name__}, not a poselib skeleton dict")
    names = [str(n) for n in np.asarray(_get(path, d, "skeleton_tree.node_names")).reshape(-1)]
    parents = _array(path, d, "skeleton_tree.parent_indices.arr", "(J,)", (1,)).astype(int)
    offsets = _array(path, d, "skeleton_tree.local_translation.arr", "(J, 3)", (2,))
    rot = _array(path, d, "rotation.arr", "(T, J, 4)", (2, 3))
    root_pos = _array(path, d, "root_translation.arr", "(T, 3)", (1, 2))
    single = rot.ndim == 2  # a SkeletonState: one pose, no time axis, no fps
    if single:
        rot, root_pos = rot[None], root_pos[None]
    num_joints = len(names)
    if parents.shape != (num_joints,) or offsets.shape != (num_joints, 3):
        raise MotionImportError(path, f"skeleton_tree has {num_joints} names, parent_indices {parents.shape}, "
                                      f"local_translation {offsets.shape}")
    if rot.shape[1:] != (num_joints, 4) or root_pos.shape != (rot.shape[0], 3):
        raise MotionImportError(path, f"rotation.arr has shape {rot.shape} and root_translation.arr "
                                      f"{root_pos.shape}, expected (T, {num_joints}, 4) and (T, 3)")
    if rot.shape[0] == 0:
        raise MotionImportError(path, "zero frames")
    if parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents[1:], 1)):
        raise MotionImportError(path, "parent_indices must list parents before children with the root first")
    for key, a in (("rotation.arr", rot), ("root_translation.arr", root_pos),
                   ("skeleton_tree.local_translation.arr", offsets)):
        bad = np.argwhere(~np.isfinite(a))
        if len(bad):
            where = "joint" if key.startswith("skeleton_tree") else "frame"
            raise MotionImportError(path, f"non-finite value in {key} ({where} {bad[0][0]})")
    if (np.linalg.norm(rot, axis=-1) < 1e-6).any():
        raise MotionImportError(path, "zero-length quaternion in rotation.arr")

    rot = quat_normalize(rot[..., [3, 0, 1, 2]])  # xyzw -> wxyz
    if not bool(d.get("is_local", True)):  # global rotations: local = parent_global^-1 * global
        glob = rot.copy()
        for j in range(1, num_joints):
            rot[:, j] = quat_mul(quat_conj(glob[:, parents[j]]), glob[:, j])
    if single:
        fps = 1.0
    else:
        fps_value = np.asarray(_get(path, d, "fps"))
        if fps_value.size != 1 or fps_value.dtype.kind not in "fiu" or not np.isfinite(fps_value).all() \
                or float(fps_value.item()) <= 0:
            raise MotionImportError(path, f"fps must be a positive number, got {fps_value!r}")
        check_fps(path, float(fps_value.item()))
        fps = snap_fps(float(fps_value.item()))

    scale = unit_scale if unit_scale is not None else (CMU_UNIT if is_cmu_skeleton(names) else 1.0)
    offsets, root_pos = offsets * scale, root_pos * scale
    offsets[0] = 0.0  # the root's placement lives in root_pos
    parents = list(parents)
    if names == _AMP_NODES:
        for name, parent, off in _AMP_ENDS:
            names.append(name)
            parents.append(names.index(parent))
            offsets = np.vstack([offsets, off])
        rot = np.concatenate([rot, np.tile([1.0, 0, 0, 0], rot.shape[:1] + (len(_AMP_ENDS), 1))], axis=1)

    stem = Path(path).stem
    labels = {"name": stem.removeprefix("amp_humanoid_")}
    if single:
        labels["single_pose"] = True
    return SourceMotion(joint_names=names, parents=np.array(parents), offsets=offsets, local_rot=rot,
                        root_pos=root_pos, fps=fps, source_file=str(path), source_format="poselib", labels=labels)
