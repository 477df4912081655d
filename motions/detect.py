"""Pick the importer for a mocap file from its first bytes (falling back to the extension)."""
from __future__ import annotations

from pathlib import Path

from .amass import load_amass
from .bvh import load_bvh
from .deepmimic import load_deepmimic
from .poselib import load_poselib
from .source import MotionImportError, SourceMotion

LOADERS = {"bvh": load_bvh, "deepmimic": load_deepmimic, "poselib": load_poselib, "amass": load_amass}
_EXTENSIONS = {".bvh": "bvh", ".json": "deepmimic", ".txt": "deepmimic", ".npy": "poselib", ".npz": "amass"}


def detect_format(path) -> str:
    """'bvh', 'deepmimic', 'poselib' or 'amass'; content wins over the extension (DeepMimic clips are .txt)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise MotionImportError(path, "file not found") from None
    except OSError as e:
        raise MotionImportError(path, f"cannot read file ({e.strerror})") from None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:9].upper() == b"HIERARCHY":
        return "bvh"
    if head.startswith(b"\x93NUMPY"):
        return "poselib"
    if head.startswith(b"PK\x03\x04"):
        return "amass"
    if text.startswith(b"{"):
        return "deepmimic"
    fmt = _EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise MotionImportError(path, "unknown motion format (expected BVH, DeepMimic JSON, poselib .npy "
                                      "or AMASS .npz)")
    return fmt


def load_source(path, fmt: str | None = None) -> SourceMotion:
    """Load any supported mocap file into a SourceMotion; fmt overrides detection."""
    fmt = fmt or detect_format(path)
    if fmt not in LOADERS:
        raise MotionImportError(path, f"unknown motion format {fmt!r} (expected one of {sorted(LOADERS)})")
    return LOADERS[fmt](path)
