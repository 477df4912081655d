"""States the character really reaches by falling: where a get-up skill has to start.

As ASE's get-up task does, falls are simulated rather than taken from mocap: the character starts on reference states
of the library's clips, is shoved in a random direction (1-3 m/s) and falls limp, each PD target re-set every `hold_s`
to where its joint is; the states where it has come to rest lying down are kept. Measured on the default clips (128
falls): limp falls end 67 face down, 38 face up, all lying; ASE's random targets left 58 of 128 lying after 3 s, and
those nearly all face up. A get-up clip's reference then starts there, re-anchored at the
character (`padl.env`, `EnvConfig.fall_starts`), so the skill is learnt from the poses a fall leaves, not only from
the clip's own first frame.
"""
from __future__ import annotations

import numpy as np
from mujoco import batch as mjbatch

LYING_HEIGHT = 0.35  # m: a root below this has fallen (standing: ~0.9)


def fallen_states(library, count: int, seed: int = 0, seconds: float = 3.0, hold_s: float = 0.3,
                  physics_hz: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    """((P, nq) qpos, (P, nv) qvel) float32 of at most `count` lying states, at rest (after `seconds` of falling
    and one more second)."""
    rng = np.random.default_rng(seed)
    character = library.character
    model = character.model
    clip = rng.integers(0, len(library.clip_ids), count)
    start = library.sample(clip, rng.uniform(0.0, 1.0, count) * library.durations[clip])
    b = mjbatch.Batch(model, count, nthread=0)
    qpos, qvel, ctrl = b.bind("qpos"), b.bind("qvel"), b.bind("ctrl")
    qpos[:], qvel[:] = np.asarray(start.qpos, np.float64), np.asarray(start.qvel, np.float64)
    heading = rng.uniform(-np.pi, np.pi, count)  # a shove in a random direction: random targets alone fall backwards
    qvel[:, :2] += rng.uniform(1.0, 3.0, (count, 1)) * np.stack([np.cos(heading), np.sin(heading)], -1)
    low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    joint = 7 + np.asarray(character.actuator_joint)
    per_hold = max(1, int(round(hold_s * physics_hz)))
    for _ in range(int(round((seconds + 1.0) * physics_hz / per_hold))):  # the last second: coming to rest
        ctrl[:] = np.clip(np.asarray(qpos)[:, joint], low, high)
        b.step(nstep=per_hold)
    q, v = np.array(qpos, np.float32), np.array(qvel, np.float32)
    keep = (q[:, 2] < LYING_HEIGHT) & np.isfinite(q).all(1) & np.isfinite(v).all(1) & (np.abs(v).max(1) < 5.0)
    return q[keep], v[keep]


def lying_clips(library) -> np.ndarray:
    """(C,) bool: the library's get-up clips, whose first frame lies on the floor. They are no user's command (a
    fall gives theirs) and nothing switches to them from standing; a character low on their reference has not
    fallen."""
    n = len(library.clip_ids)
    return np.asarray(library.sample(np.arange(n), np.zeros(n)).qpos)[:, 2] < LYING_HEIGHT


def facing_z(qpos) -> np.ndarray:
    """(...,) the vertical component of the root's forward (x) axis: about -1 lying face down, +1 face up, 0 upright
    (`EnvConfig.fall_starts` matches fallen states to a get-up clip's first frame by its sign)."""
    w, x, y, z = (np.asarray(qpos, np.float64)[..., 3 + i] for i in range(4))
    return 2 * (x * z - w * y)
