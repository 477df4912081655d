"""Expert scheduling in `superpadl train`: 1 worker (one trainer at a time, all cores to its physics) against W
workers (W trainers at once, the cores shared out), on the same clips and budgets, in one run.

    python benchmarks/pipeline_workers.py [--clips walk jog run zombie_walk] [--iterations 40] [--workers 1 2]
                                          [--out runs/bench_workers]

Each setting runs the pipeline's own import and experts stages (`superpadl.pipeline.Pipeline`) on the same recipe:
one expert per clip from scratch, a fixed number of iterations and no early stop, so every setting simulates the
same samples. Printed per setting: the experts stage's wall clock, its samples per second, the experts' mean success
and G-MPJPE at the end (the same budget should learn the same), and the speed-up over the first setting. The clips
are DeepMimic motions from ../shared/data. Run it on an otherwise idle machine (pause background training).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPE = """name = "bench_workers"
sources = [{sources}]
[experts]
iterations = {iterations}
eval_every = {iterations}
checkpoint_every = {iterations}
retries = 0
success = 0.0
g_mpjpe_mm = 1e6
stop_g_mpjpe_mm = 0.0
"""


def run_experts(recipe_path: Path, out: Path, workers: int) -> dict:
    """The import and experts stages of `recipe_path` into `out` with `workers` workers: wall clock and results."""
    from superpadl import pipeline as P
    from superpadl import recipe as R

    if out.exists():
        shutil.rmtree(out)
    recipe = R.load(recipe_path)
    data = P.open_run(recipe, out, resume=False)
    out.mkdir(parents=True)
    data["workers"] = workers
    status = P.Status(out / "status.json", data)
    try:
        pipe = P.Pipeline(recipe, out, status, None, workers, None, log=lambda *_: None)
        pipe.stage_import(data["stages"]["import"])
        t0 = time.perf_counter()
        pipe.stage_experts(data["stages"]["experts"])
        wall = time.perf_counter() - t0
    finally:
        status.close()
    evals = [e["eval"] for e in data["experts"].values() if e.get("eval")]
    samples = data["stages"]["experts"]["samples"]
    return {"workers": workers, "wall_s": wall, "samples": samples, "rate": samples / wall,
            "success": sum(e.get("success", 0.0) for e in evals) / max(1, len(evals)),
            "g_mpjpe_mm": sum(e.get("g_mpjpe_mm", 0.0) for e in evals) / max(1, len(evals))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", nargs="+", default=["walk", "jog", "run", "zombie_walk"],
                   help="DeepMimic motions (humanoid3d_NAME.txt)")
    p.add_argument("--iterations", type=int, default=40, help="iterations per expert")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench_workers")
    a = p.parse_args()
    motions = a.data / "deepmimic" / "motions"
    files = [motions / f"humanoid3d_{c}.txt" for c in a.clips]
    if missing := [f for f in files if not f.is_file()]:
        sys.exit(f"{missing[0]}: missing (this benchmark needs ../shared/data)")
    a.out.mkdir(parents=True, exist_ok=True)
    recipe = a.out / "recipe.toml"
    recipe.write_text(RECIPE.format(sources=", ".join(f'"{f}"' for f in files), iterations=a.iterations))
    rows = [run_experts(recipe, a.out / f"workers{w}", w) for w in a.workers]
    base = rows[0]["rate"]
    print(f"\n{len(files)} experts x {a.iterations} iterations, {os.cpu_count()} CPUs")
    print(f"{'workers':>7}  {'experts wall':>12}  {'samples':>9}  {'samples/s':>9}  {'success':>7}  "
          f"{'G-MPJPE mm':>10}  {'speed-up':>8}")
    for r in rows:
        print(f"{r['workers']:>7}  {r['wall_s']:>11.0f}s  {r['samples']:>9,}  {r['rate']:>9,.0f}  "
              f"{r['success']:>7.0%}  {r['g_mpjpe_mm']:>10.1f}  {r['rate'] / base:>7.2f}x")


if __name__ == "__main__":
    main()
