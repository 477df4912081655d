"""Throughput of the imitation environment against raw MuJoCo C physics, on the same model in one run.

    python benchmarks/env_throughput.py [--quick] [--library PATH] [--clips ID ...]

Raw physics: `mujoco.batch.Batch` stepping N simulations 4 substeps per call from reference states, PD targets
held at the reference, states re-set every second (closed loop, no observation or reward). Env: `ImitationEnv.step`
with zero (residual) actions, i.e. PD tracking of the reference, automatic resets included. `env/raw` divides the
env's physics rate by the raw rate at the same batch size on all threads. The library defaults to the DeepMimic
walk and run clips from the shared mocap folder, or a synthetic arm-swing clip where that is absent.
Set XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false on a CPU (see DESIGN.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from mujoco import batch as mjbatch  # noqa: E402

from characters.character import Character  # noqa: E402
from motions.clip import LibraryWriter, velocities  # noqa: E402
from motions.library import MotionLibrary  # noqa: E402
from padl.env import EnvConfig, ImitationEnv, PhysicsConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def default_library(tmp: Path) -> Path:
    data = Path(os.environ.get("PADL_SHARED_DATA", REPO.parent / "shared" / "data")) / "deepmimic" / "motions"
    sources = [data / f"humanoid3d_{name}.txt" for name in ("walk", "run")]
    if all(p.is_file() for p in sources):
        from motions.importer import import_clips

        import_clips(sources, tmp / "lib", progress=False)
        return tmp / "lib"
    character, frames = Character(), 60
    qpos = np.tile(character.rest_qpos(), (frames, 1))
    phase = 2 * np.pi * np.arange(frames) / (frames - 1)
    qpos[:, 7 + character.joint_names.index("right_shoulder_y")] = 0.4 * np.sin(phase)
    qpos[:, 7 + character.joint_names.index("left_shoulder_y")] = -0.4 * np.sin(phase)
    entry = {"id": "synthetic_sway", "captions": ["arm swing"], "source_file": "synthetic", "source_format": "synthetic",
             "licence": "CC0", "labels": {}, "loop": True, "num_frames": frames, "duration_s": (frames - 1) / 30.0,
             "joint_map": {}, "scale": 1.0, "qa": {}, "flagged": False, "flag_reasons": []}
    writer = LibraryWriter(tmp / "lib", character, {})
    writer.add(entry, qpos, 30.0, velocities(character, qpos, 30.0))
    writer.commit()
    return tmp / "lib"


def timed(fn, seconds: float) -> float:
    """Calls per second of fn over about `seconds` (after one untimed call)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        fn()
        n += 1
    return n / elapsed


def raw_rate(env: ImitationEnv, nthread: int, seconds: float) -> float:
    """Physics steps/s of a bare Batch on the env's model, from the env's reset states."""
    state = env.reset(0)
    n, sub = env.num_envs, env.substeps
    b = mjbatch.Batch(env.character.model, n, nthread=nthread)
    qpos0, qvel0 = np.asarray(state.qpos, np.float64), np.asarray(state.qvel, np.float64)
    target = np.asarray(state.ref.qpos)[:, 0, 7:][:, env.core.act_joint]
    qpos, qvel, ctrl = b.bind("qpos"), b.bind("qvel"), b.bind("ctrl")
    count = [0]

    def one():
        if count[0] % int(env.config.physics.control_hz) == 0:  # back to the reference every second
            qpos[:], qvel[:] = qpos0, qvel0
        ctrl[:] = target
        b.step(nstep=sub)
        count[0] += 1

    return timed(one, seconds) * n * sub


def mjx_raw_rate(env: ImitationEnv, seconds: float) -> float:
    """Physics steps/s of bare vmapped `mjx.step` (same solver settings as the env's MJX model), from reset states."""
    import copy

    from mujoco import mjx

    m = copy.copy(env.character.model)
    m.opt.iterations, m.opt.ls_iterations = env.config.physics.mjx_iterations, env.config.physics.mjx_ls_iterations
    mx = mjx.put_model(m)
    state = env.reset(0)
    target = jnp.asarray(np.asarray(state.ref.qpos)[:, 0, 7:][:, env.core.act_joint])
    d = jax.vmap(lambda q, v, c: mjx.make_data(mx).replace(qpos=q, qvel=v, ctrl=c))(
        jnp.asarray(state.qpos), jnp.asarray(state.qvel), target)
    step = jax.jit(lambda d: jax.lax.fori_loop(0, env.substeps, lambda _, d: jax.vmap(mjx.step, (None, 0))(mx, d), d))
    box = [step(d)]
    jax.block_until_ready(box[0].qpos)

    def one():
        box[0] = step(box[0])
        jax.block_until_ready(box[0].qpos)

    return timed(one, seconds) * env.num_envs * env.substeps


def env_rate(env: ImitationEnv, seconds: float) -> tuple[float, float, float]:
    """(control steps/s summed over envs, compile+first-call seconds, episodes ended per second)."""
    t0 = time.perf_counter()
    state = [env.reset(1)]
    zeros = np.zeros((env.num_envs, env.action_size), np.float32)
    if env.backend == "mjx":
        zeros = jnp.asarray(zeros)
    for _ in range(2):  # compile, then once more (a jitted step may compile again on its second call)
        state[0] = env.step(state[0], zeros)
    jax.block_until_ready(state[0].obs)
    compile_s = time.perf_counter() - t0
    episodes0 = int(state[0].info["episodes"])

    def one():
        state[0] = env.step(state[0], zeros)

    t = time.perf_counter()
    rate = timed(one, seconds)
    jax.block_until_ready(state[0].obs)
    resets = (int(state[0].info["episodes"]) - episodes0) / (time.perf_counter() - t)
    return rate * env.num_envs, compile_s, resets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short measurements and fewer batch sizes")
    ap.add_argument("--library", type=Path, help="motion library folder (default: DeepMimic walk+run, or synthetic)")
    ap.add_argument("--clips", nargs="*", help="clip ids to use")
    ap.add_argument("--seconds", type=float, help="seconds per measurement (default 4, 1 with --quick)")
    ap.add_argument("--no-mjx", action="store_true", help="skip the MJX backend")
    ap.add_argument("--mjx-batches", type=int, nargs="*", help="MJX batch sizes (default 16 64, plus 1024 4096 on an "
                    "accelerator); on an accelerator MJX rows compare with bare vmapped mjx.step at the same batch")
    args = ap.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    accel = jax.default_backend() != "cpu"
    cpu_batches = [16, 64] if args.quick else [16, 64, 256]
    mjx_batches = args.mjx_batches or (([64] if args.quick else [16, 64]) + ([1024, 4096] if accel else []))
    threads = os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        path = args.library or default_library(Path(tmp))
        library = MotionLibrary(path, clips=args.clips, include_flagged=args.clips is not None)
        print(f"library: {path} ({', '.join(library.clip_ids)}); jax backend: {jax.default_backend()}; "
              f"{threads} CPU threads", flush=True)
        rows = []
        for n in cpu_batches:
            env = ImitationEnv(library, EnvConfig(num_envs=n, physics=PhysicsConfig(backend="mujoco")))
            raw1, rawn = raw_rate(env, 1, seconds), raw_rate(env, threads, seconds)
            ctrl, compile_s, resets = env_rate(env, seconds)
            rows.append(("mujoco", n, raw1, rawn, ctrl, compile_s, resets))
            print(f"  mujoco N={n}: done", flush=True)
        for n in [] if args.no_mjx else mjx_batches:
            env = ImitationEnv(library, EnvConfig(num_envs=n, physics=PhysicsConfig(backend="mjx")))
            ctrl, compile_s, resets = env_rate(env, seconds)
            raw = next((r for r in rows if r[1] == n), None)
            raw1, rawn = (raw[2], raw[3]) if raw else (float("nan"), float("nan"))
            if accel:  # against the accelerator's own bare physics
                raw1 = rawn = mjx_raw_rate(env, seconds)
            rows.append(("mjx", n, raw1, rawn, ctrl, compile_s, resets))
            print(f"  mjx N={n}: done", flush=True)

    sub = 4
    head = (f"{'backend':<8} {'batch':>6} {'raw phys/s 1 thr':>17} {f'raw phys/s {threads} thr':>17} "
            f"{'env ctrl/s':>11} {'env phys/s':>11} {'env/raw':>8} {'resets/s':>9} {'compile s':>10}")
    print("\n" + head + "\n" + "-" * len(head))
    for backend, n, raw1, rawn, ctrl, compile_s, resets in rows:
        print(f"{backend:<8} {n:>6} {raw1:>17,.0f} {rawn:>17,.0f} {ctrl:>11,.0f} {ctrl * sub:>11,.0f} "
              f"{ctrl * sub / rawn:>8.0%} {resets:>9.0f} {compile_s:>10.1f}")
    print("raw: bare mujoco.batch physics (on a CPU, MJX rows repeat the MuJoCo C raw rate at the same batch; on an "
          "accelerator they show bare vmapped mjx.step there); "
          "env phys/s = 4 x ctrl/s; resets/s: episodes ended and restarted inside step.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
