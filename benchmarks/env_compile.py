"""Compile time of the environment's JAX programs: level-batched kinematics against the per-body baseline, one run.

    python benchmarks/env_compile.py [--num-envs N]

Compiling `ImitationEnv`'s programs, not running them, dominates short jobs on a CPU: a test, a CLI that evaluates a
policy, the first seconds of training. Rows time XLA's compile (after tracing, no persistent cache) of forward
kinematics, body velocities and the env's `post` (everything after the physics) and `reset`. The baseline is the
former formulation, one quaternion product per body and per hinge, kept here only to measure against; `ratio` is
level-batched / baseline. The step rates of both are printed too, since a smaller program must not run slower.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # time real compiles
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from motions import kinematics as K  # noqa: E402
from motions.library import MotionLibrary  # noqa: E402
from padl import observations as O  # noqa: E402
from padl.env import EnvConfig, ImitationEnv, PhysicsConfig  # noqa: E402


def per_body_fk(skel: K.Skeleton, qpos) -> K.BodyState:
    """Baseline: forward kinematics one body and one hinge at a time."""
    root_pos, root_rot, angles = qpos[..., :3], K.quat_normalize(qpos[..., 3:7]), qpos[..., 7:]
    joint_q = K.axis_angle_to_quat(jnp.asarray(skel.joint_axis, qpos.dtype), angles)
    pos, rot = [], []
    for b, p in enumerate(skel.parent):
        if p < 0:
            r, x = root_rot, root_pos
        else:
            r = K.quat_mul(rot[p], jnp.broadcast_to(jnp.asarray(skel.local_quat[b], qpos.dtype), root_rot.shape))
            x = pos[p] + K.quat_rotate(rot[p], jnp.broadcast_to(jnp.asarray(skel.offset[b], qpos.dtype),
                                                               root_pos.shape))
        for j in np.flatnonzero(skel.joint_body == b):
            r = K.quat_mul(r, joint_q[..., j, :])
        pos.append(x)
        rot.append(r)
    return K.BodyState(jnp.stack(pos, axis=-2), jnp.stack(rot, axis=-2))


def per_body_velocities(skel: K.Skeleton, qpos, qvel, body_pos, body_rot):
    """Baseline: body velocities propagated one body and one hinge at a time."""
    joint_q = K.axis_angle_to_quat(jnp.asarray(skel.joint_axis, qpos.dtype), qpos[..., 7:])
    lin, ang = [qvel[..., :3]], [K.quat_rotate(body_rot[..., 0, :], qvel[..., 3:6])]
    for b in range(1, len(skel.parent)):
        p = int(skel.parent[b])
        w, r = ang[p], body_rot[..., b, :]
        for j in np.flatnonzero(skel.joint_body == b)[::-1]:
            axis = jnp.broadcast_to(jnp.asarray(skel.joint_axis[j], qpos.dtype), w.shape)
            w = w + K.quat_rotate(r, axis) * qvel[..., 6 + j, None]
            r = K.quat_mul(r, K.quat_conj(joint_q[..., j, :]))
        lin.append(lin[p] + jnp.cross(ang[p], body_pos[..., b, :] - body_pos[..., p, :]))
        ang.append(w)
    return jnp.stack(lin, axis=-2), jnp.stack(ang, axis=-2)


@contextmanager
def baseline(on: bool):
    saved = K.forward_kinematics, O.body_velocities
    if on:
        K.forward_kinematics, O.body_velocities = per_body_fk, per_body_velocities
    try:
        yield
    finally:
        K.forward_kinematics, O.body_velocities = saved


def compile_s(f, *args) -> tuple[float, object]:
    """(seconds XLA took to compile f for these arguments, the compiled program)."""
    lowered = jax.jit(f).lower(*args)
    t = time.perf_counter()
    compiled = lowered.compile()
    return time.perf_counter() - t, compiled


def measure(lib: MotionLibrary, n: int) -> dict:
    env = ImitationEnv(lib, EnvConfig(num_envs=n, physics=PhysicsConfig(backend="mujoco")))
    core, state = env.core, env.reset(jax.random.key(0))
    q, v = jnp.asarray(state.qpos, jnp.float32), jnp.asarray(state.qvel, jnp.float32)
    body = K.forward_kinematics(core.skel, q)
    bare = state._replace(qpos=None, qvel=None, warmstart=None)
    zeros, false = np.zeros((n, core.nv)), np.zeros(n, bool)
    args = (bare, np.asarray(state.qpos), np.asarray(state.qvel), zeros, false, false)
    post_s, step = compile_s(lambda *a: core.post(*a), *args)
    out = {
        "forward kinematics": compile_s(lambda q: K.forward_kinematics(core.skel, q), q)[0],
        "body velocities": compile_s(lambda q, v: O.body_velocities(core.skel, q, v, body.pos, body.rot), q, v)[0],
        "env post": post_s,
        "env reset": compile_s(lambda k: core.reset(k), jax.random.key(0))[0],  # a new function: no in-memory hit
    }
    jax.block_until_ready(step(*args))  # the program timed above, not a second compile
    t, reps = time.perf_counter(), 50
    for _ in range(reps):
        jax.block_until_ready(step(*args))
    out["post calls/s"] = reps / (time.perf_counter() - t)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-envs", type=int, default=64)
    args = ap.parse_args(argv)
    from synthetic import write_synthetic_library

    lib = MotionLibrary(write_synthetic_library(Path(tempfile.mkdtemp()) / "lib"))
    with baseline(True):
        base = measure(lib, args.num_envs)
    new = measure(lib, args.num_envs)
    print(f"{args.num_envs} envs, {jax.devices()[0].platform}, compile seconds (rates: calls/s)")
    print(f"| {'program':<20} | {'per-body baseline':>17} | {'level-batched':>13} | {'ratio':>5} |")
    print(f"|{'-' * 22}|{'-' * 19}|{'-' * 15}|{'-' * 7}|")
    for k in base:
        print(f"| {k:<20} | {base[k]:>17.2f} | {new[k]:>13.2f} | {new[k] / base[k]:>5.2f} |")


if __name__ == "__main__":
    main()
