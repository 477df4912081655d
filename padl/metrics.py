"""Motion-tracking evaluation metrics in the PHC convention (Luo et al. 2023, Perpetual Humanoid Control).

All functions are pure and take arrays shaped (T, B, 3) — T frames, B bodies, world positions in metres —
for the simulated and the reference motion. They accept numpy or jax arrays: numpy in, numpy (float64) out, so
hand-checked numbers stay exact; jax in, jax out, so the array functions also run under `jax.jit`.

Conventions (as in PHC's evaluation):
- G-MPJPE: mean per-joint position error in world space, millimetres; includes global drift.
- L-MPJPE: the same after making both motions root-relative per frame; measures pose quality alone.
- success: no fall, and the per-frame mean body-position error never exceeds 0.5 m over the whole clip.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

SUCCESS_THRESHOLD_M = 0.5
MEAN_KEY = "mean"


def _xp(*arrays):
    """jnp when any input is a jax array (including tracers under jit), numpy otherwise (keeps float64)."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _check_pair(sim, ref) -> None:
    if sim.shape != ref.shape:
        raise ValueError(f"sim and ref shapes differ: {sim.shape} vs {ref.shape}")
    if sim.shape[-1] != 3:
        raise ValueError(f"positions must end in 3 coordinates, got shape {sim.shape}")


def body_pos_error(sim_pos, ref_pos):
    """(T, B, 3) x2 -> (T,): per-frame mean over bodies of the Euclidean position error, metres.

    This is the quantity PHC thresholds for success/termination, so it is kept per frame.
    """
    xp = _xp(sim_pos, ref_pos)
    sim, ref = xp.asarray(sim_pos), xp.asarray(ref_pos)
    _check_pair(sim, ref)
    return xp.linalg.norm(sim - ref, axis=-1).mean(axis=-1)


def g_mpjpe_mm(sim_pos, ref_pos):
    """Global MPJPE over all frames and bodies, millimetres: how far each body is from where it should be in the
    world, so global drift of the character counts against it."""
    xp = _xp(sim_pos, ref_pos)
    sim, ref = xp.asarray(sim_pos), xp.asarray(ref_pos)
    _check_pair(sim, ref)
    return xp.linalg.norm(sim - ref, axis=-1).mean() * 1000.0


def l_mpjpe_mm(sim_pos, ref_pos, root_index: int = 0):
    """Local (root-relative) MPJPE, millimetres: both motions have their own root position removed per frame, which
    separates pose quality from global drift (a perfectly posed but translated character scores 0)."""
    xp = _xp(sim_pos, ref_pos)
    sim, ref = xp.asarray(sim_pos), xp.asarray(ref_pos)
    _check_pair(sim, ref)
    sim_local = sim - sim[:, root_index : root_index + 1]
    ref_local = ref - ref[:, root_index : root_index + 1]
    return xp.linalg.norm(sim_local - ref_local, axis=-1).mean() * 1000.0


def root_pos_error_mm(sim_root, ref_root):
    """Mean root position error, millimetres, over (T, 3) root trajectories: isolates global drift on its own."""
    xp = _xp(sim_root, ref_root)
    sim, ref = xp.asarray(sim_root), xp.asarray(ref_root)
    _check_pair(sim, ref)
    return xp.linalg.norm(sim - ref, axis=-1).mean() * 1000.0


def success(sim_pos, ref_pos, fell, threshold: float = SUCCESS_THRESHOLD_M):
    """True when the clip was tracked to the end: no fall at any frame (`fell` is (T,) bool or one bool) and the
    per-frame mean body-position error stays <= `threshold` (PHC: 0.5 m) at every frame — a clip that drifts away
    and later comes back still fails, as PHC terminates the episode at the first violation."""
    xp = _xp(sim_pos, ref_pos, fell)
    err = body_pos_error(sim_pos, ref_pos)
    fell_any = xp.any(xp.asarray(fell, dtype=bool))
    return xp.logical_and(xp.logical_not(fell_any), xp.all(err <= threshold))


def episode_metrics(sim_pos, ref_pos, fell, root_index: int = 0,
                    threshold: float = SUCCESS_THRESHOLD_M) -> dict[str, Any]:
    """All metrics of one episode as Python scalars (ready for JSON / `summarize`).

    max_body_error_m is the largest per-frame mean body error, i.e. how close the clip came to the success threshold.
    """
    sim, ref = np.asarray(sim_pos, dtype=np.float64), np.asarray(ref_pos, dtype=np.float64)
    err = body_pos_error(sim, ref)
    return {
        "success": bool(success(sim, ref, np.asarray(fell), threshold)),
        "g_mpjpe_mm": float(g_mpjpe_mm(sim, ref)),
        "l_mpjpe_mm": float(l_mpjpe_mm(sim, ref, root_index)),
        "root_error_mm": float(root_pos_error_mm(sim[:, root_index], ref[:, root_index])),
        "max_body_error_m": float(err.max()) if err.size else 0.0,
        "frames": int(sim.shape[0]),
    }


def _mean_dicts(dicts: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    keys: list[str] = []
    for d in dicts:
        keys.extend(k for k in d if k not in keys)
    out = {}
    for k in keys:
        vals = [float(d[k]) for d in dicts if k in d]  # bool -> 0/1, so success becomes a rate in [0, 1]
        out[k] = float(np.mean(vals))
    return out


def summarize(per_clip: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per clip: mean of each metric over its episodes (success as a rate in [0, 1]); plus "mean": the mean over
    clips of those per-clip means, so every clip weighs the same however many episodes it had."""
    if MEAN_KEY in per_clip:
        raise ValueError(f"clip name {MEAN_KEY!r} is reserved for the overall mean")
    out: dict[str, dict[str, float]] = {}
    for clip, episodes in per_clip.items():
        if not episodes:
            raise ValueError(f"clip {clip!r} has no episodes")
        out[clip] = _mean_dicts(episodes)
    out[MEAN_KEY] = _mean_dicts(list(out.values())) if out else {}
    return out
