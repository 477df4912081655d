"""Reference-state queries per second of MotionLibrary on this machine (batch 4096 by default).

Baseline in the same run: the same interpolation + forward kinematics done frame by frame with MuJoCo C
(mj_kinematics per query), which is what a non-batched library would do.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")

import jax
import mujoco
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from motions.importer import import_clips  # noqa: E402
from motions.library import MotionLibrary  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lib", type=Path, help="library to query (default: import the DeepMimic clips to a temp folder)")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    lib_path = args.lib
    if lib_path is None:
        lib_path = Path(tempfile.mkdtemp()) / "lib"
        import_clips(sorted((DATA / "deepmimic/motions").glob("*.txt")), lib_path, progress=False)
    lib = MotionLibrary(lib_path)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, lib.num_clips, args.batch).astype(np.int32)
    t = (rng.random(args.batch) * lib.durations[clip]).astype(np.float32)
    jax.block_until_ready(lib.sample(clip, t))  # compile
    start = time.perf_counter()
    for _ in range(args.repeats):
        jax.block_until_ready(lib.sample(clip, t))
    jax_qps = args.batch * args.repeats / (time.perf_counter() - start)

    m, d = lib.character.model, mujoco.MjData(lib.character.model)
    n = min(args.batch, 2048)
    qpos = np.asarray(lib.sample(clip[:n], t[:n]).qpos, np.float64)
    start = time.perf_counter()
    for q in qpos:
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
    c_qps = n / (time.perf_counter() - start)
    print(f"library: {lib.num_clips} clips, {int(np.asarray(lib.data.length).sum())} frames, batch {args.batch}")
    print(f"{'method':<44} {'queries/s':>12} {'ratio':>7}")
    print(f"{'MuJoCo C mj_kinematics, one query at a time':<44} {c_qps:>12,.0f} {1.0:>7.2f}")
    print(f"{'MotionLibrary.sample (JAX, batched, jit)':<44} {jax_qps:>12,.0f} {jax_qps / c_qps:>7.2f}")


if __name__ == "__main__":
    main()
