"""Motion windows (`superpadl.metrics.window_features`) of simulated and reference motion: what the clip-start
evaluation's precision, recall and retrieval compare, and what real use's gesture check compares."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from motions import kinematics as K
from motions.library import MotionLibrary
from superpadl import metrics as W


def yaws(qpos_list):
    """Heading yaws of several (T_i, 35) trajectories in one query (one compile, whatever their lengths)."""
    if not qpos_list:
        return []
    yaw = np.asarray(K.heading_yaw(jnp.asarray(np.concatenate(qpos_list))[:, 3:7]))
    return np.split(yaw, np.cumsum([len(q) for q in qpos_list])[:-1])


def reference_windows(library: MotionLibrary, clips: list[str], seconds: float) -> dict:
    """{clip: its reference's motion windows} (a looping clip over `seconds`), from one library query."""
    idx = [library.index(k) for k in clips]
    times = [np.arange(0, (seconds if library.data.loop[i] else float(library.durations[i])) + 1e-9, 1.0 / 30.0,
                       dtype=np.float32) for i in idx]
    index = np.concatenate([np.full(len(t), i) for i, t in zip(idx, times)])
    ref = library.sample(jnp.asarray(index), jnp.asarray(np.concatenate(times)))
    cuts = np.cumsum([len(t) for t in times])[:-1]
    pos = np.split(np.asarray(ref.body_pos), cuts)
    return {k: W.window_features(p, y) for k, p, y in zip(clips, pos, yaws(np.split(np.asarray(ref.qpos), cuts)))}
