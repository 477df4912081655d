"""Evaluation metrics for SuperPADL over short motion windows.

Motions are compared as windows of 1 s (30 frames at 30 Hz): long enough to capture a step or a gesture, short
enough that a generated clip can match a reference somewhere without reproducing it frame for frame.

Each window is expressed in the heading frame of its first frame (root x, y subtracted, rotated by -yaw about z;
z kept absolute so crouching differs from standing). The same motion performed at another place or facing then
gives identical features, so distances measure what the body does, not where it is.

precision: the fraction of generated windows whose nearest reference window is within eps, i.e. "the generated
motion looks like the reference somewhere". recall: the fraction of reference windows whose nearest generated
window is within eps, i.e. "the reference is covered". Neither depends on a single threshold: both are swept
over eps and summarised by the normalised area under the curve (AUC), which lies in [0, 1].
"""
from __future__ import annotations

import numpy as np

WINDOW = 30  # frames: 1 s at 30 Hz
STRIDE = 5
_CHUNK_ELEMS = 1 << 24  # float64 elements per temporary in window_distances (~128 MiB)


def window_features(body_pos, yaw, window: int = WINDOW, stride: int = STRIDE) -> np.ndarray:
    """(T, B, 3) positions and (T,) root yaw -> (M, window, B, 3) windows in their first frame's heading frame.

    A clip shorter than `window` is padded with its last frame so that even very short clips give one window.
    """
    pos = np.asarray(body_pos, dtype=np.float64)
    yaw = np.asarray(yaw, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[2] != 3 or yaw.shape != pos.shape[:1] or len(pos) == 0:
        raise ValueError(f"expected body_pos (T, B, 3) and yaw (T,), T > 0; got {pos.shape} and {yaw.shape}")
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    if len(pos) < window:
        pad = window - len(pos)
        pos = np.concatenate([pos, np.repeat(pos[-1:], pad, axis=0)])
        yaw = np.concatenate([yaw, np.repeat(yaw[-1:], pad)])
    starts = np.arange(0, len(pos) - window + 1, stride)
    win = pos[starts[:, None] + np.arange(window)]  # (M, window, B, 3)
    origin = np.zeros((len(starts), 3))
    origin[:, :2] = pos[starts, 0, :2]
    c, s = np.cos(yaw[starts]), np.sin(yaw[starts])
    rot = np.zeros((len(starts), 3, 3))  # rotation about z by -yaw
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, s, -s, c, 1.0
    return np.einsum("mij,mtbj->mtbi", rot, win - origin[:, None, None, :])


def window_distances(a, b) -> np.ndarray:
    """(Ma, Mb) mean point-to-point distance between windows; chunked over `a` to bound memory."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"windows differ in shape: {a.shape[1:]} vs {b.shape[1:]}")
    fa = a.reshape(len(a), -1, 3)
    fb = b.reshape(len(b), -1, 3)
    out = np.empty((len(fa), len(fb)))
    rows = max(1, _CHUNK_ELEMS // max(1, fb.size))
    for i in range(0, len(fa), rows):
        diff = fa[i:i + rows, None] - fb[None]  # (rows, Mb, P, 3)
        out[i:i + rows] = np.sqrt(np.einsum("abpk,abpk->abp", diff, diff)).mean(axis=-1)
    return out


def precision_recall(gen, ref, eps) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of generated vs reference windows at each threshold of `eps` (metres)."""
    eps = np.asarray(eps, dtype=np.float64).reshape(-1)
    d = window_distances(gen, ref)
    precision = (d.min(axis=1)[:, None] <= eps).mean(axis=0)
    recall = (d.min(axis=0)[:, None] <= eps).mean(axis=0)
    return precision, recall


def auc(values, eps) -> float:
    """Trapezoid area under values(eps), divided by the eps range so a curve in [0, 1] scores in [0, 1]."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(eps, dtype=np.float64)
    if v.shape != e.shape or e.ndim != 1 or len(e) < 2 or not np.all(np.diff(e) > 0):
        raise ValueError("auc needs values and strictly increasing eps of the same length >= 2")
    return float(np.sum(0.5 * (v[1:] + v[:-1]) * np.diff(e)) / (e[-1] - e[0]))


def retrieval_top1(dist, rng: np.random.Generator, candidates: int = 4, trials: int = 10, own=None) -> float:
    """Fraction of (row, trial) pairs where a row's own clip beats `candidates - 1` random distractor clips.

    dist[i, k]: distance from the motion generated for row i (a clip, or one of its captions) to clip k; row i's
    own clip is column own[i] (default i, for a square matrix). Ties count as misses.
    """
    dist = np.asarray(dist, dtype=np.float64)
    if own is None:
        if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
            raise ValueError(f"dist must be square (C, C), got {dist.shape}")
        own = np.arange(len(dist))
    if candidates < 2:
        raise ValueError(f"candidates must be at least 2 (the clip and a distractor), got {candidates}")
    C = dist.shape[1]
    if C < candidates:
        raise ValueError(f"retrieval needs at least {candidates} clips for {candidates} candidates, got {C}")
    hits = 0
    for i, k in enumerate(own):
        others = np.delete(np.arange(C), k)
        for _ in range(trials):
            distractors = rng.choice(others, size=candidates - 1, replace=False)
            hits += bool(dist[i, k] < dist[i, distractors].min())
    return hits / (len(own) * trials)


def motion_distance(gen, ref) -> float:
    """Mean over generated windows of the distance to the nearest reference window."""
    return float(window_distances(gen, ref).min(axis=1).mean())
