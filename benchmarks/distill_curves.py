"""Distillation learning curves: success against wall clock for variants of a stage's settings, trained side by side.

    python benchmarks/distill_curves.py groups --recipe configs/default.toml --library runs/default/library \
        --variants bc_steps=64 bc_steps=16 [--iterations 200] [--minutes M] [--eval-every 20] \
        [--init-from GROUP_CONTROLLER] [--out runs/bench_curves_groups]
    python benchmarks/distill_curves.py global --recipe configs/default.toml --library runs/default/library \
        --groups runs/default2/groups --variants sgd_steps=64 sgd_steps=16 [--iterations 300]

Each variant (`KEY=VALUE[,KEY=VALUE...]`, fields of the recipe's `GroupConfig` / `GlobalConfig`, nested ones
dotted (`env.num_envs=128`), values as JSON)
trains a new run of the stage in <out>/<variant> from the recipe's settings, with the same seed; all variants run at
once, one process each, so they share the machine alike and their wall clocks compare (the first variant is the
baseline, measured in the same run); `--minutes` gives each the same wall-clock budget. A run killed midway
resumes with --resume. `groups` trains one controller of
every clip the recipe's teachers cover, `global` the global policy with the group controllers of --groups as
teachers. Prints each variant's curve (success and transition success of each periodic evaluation, which are
noisy: a few episodes per clip) and a summary: end-to-end samples/s, the best evaluation (`kept_score`), and the
wall clock to the first evaluation at or above the baseline's best minus 10 points.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_enable_concurrency_optimized_scheduler=false")
ROOT = Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> dict:
    """`bc_steps=16,env.num_envs=128` -> {"bc_steps": 16, "env": {"num_envs": 128}} (`padl.config.replace`)."""
    out = {}
    for item in re.split(r",(?=[\w.]+=)", text):  # a comma inside a JSON list value does not split
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"distill_curves: variant {text!r}: expected KEY=VALUE[,KEY=VALUE...]")
        *path, last = key.strip().split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        try:
            node[last] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"distill_curves: variant {text!r}: {key}: {value!r} is not a JSON value") from None
    return out


def train_variant(stage: str, recipe: Path, library: Path, groups: Path | None, variant: dict, iterations: int,
                  minutes: float | None, eval_every: int, out: Path, resume: bool, init_from: Path | None) -> None:
    """One variant's run (a worker process)."""
    from motions.library import MotionLibrary
    from padl.config import replace
    from superpadl import recipe as R

    rec = R.load(recipe)
    lib = MotionLibrary(library, include_flagged=True)
    common = dict(resume=resume, iterations=iterations, progress=False, log=lambda *a: None, force=not resume,
                  time_limit_s=None if minutes is None else 60 * minutes)
    if stage == "groups":
        from superpadl.groups import train_group
        from superpadl.teachers import load_experts

        teachers = load_experts(lib, [rec.experts.teachers])
        cfg = replace(rec.groups.config, eval_every=eval_every, **variant)
        train_group(lib, teachers, teachers.clips(lib), out, cfg, init_from=init_from, **common)
    else:
        from superpadl.global_policy import train_global
        from superpadl.teachers import load_groups

        cfg = replace(rec.global_.config, eval_every=eval_every, **variant)
        train_global(lib, load_groups(groups, lib), out, cfg, **common)


def curve(run: Path) -> list[dict]:
    rows = []
    if (run / "progress.jsonl").exists():
        for line in (run / "progress.jsonl").read_text().splitlines():
            row = json.loads(line)
            if "success" in row:
                rows.append(row)
    return rows


def report(names: list[str], curves: list[list[dict]]) -> None:
    from superpadl.evaluate import evaluation_score, kept_score, lost_a_clip

    its = sorted({r["iteration"] for c in curves for r in c})
    print("\nlearning curves: success / transition success, wall minutes, at each evaluation")
    print("| iteration | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for it in its:
        cells = []
        for c in curves:
            r = next((r for r in c if r["iteration"] == it), None)
            cells.append("-" if r is None else f"{r['success']:.0%} / {r.get('transition_success', float('nan')):.0%}, "
                                               f"{r['wall_s'] / 60:.1f} min")
        print(f"| {it} | " + " | ".join(cells) + " |")
    base_best = max((evaluation_score(r) for r in curves[0]), default=float("nan"))
    bar = base_best - 0.10
    print(f"\nsummary (score: `kept_score`'s mean of success, transition success and real use served; bar: the "
          f"baseline's best score - 10 points = {bar:.0%}; the best evaluation is the one `kept_score` keeps)")
    print("| variant | iterations | samples/s | best score (iteration) | G-MPJPE there | wall min to the bar |")
    print("|---|---|---|---|---|---|")
    for name, c in zip(names, curves):
        if not c:
            print(f"| {name} | 0 | - | - | - | - |")
            continue
        last = c[-1]
        best = max(c, key=kept_score)
        reached = next((r for r in c if evaluation_score(r) >= bar), None)
        lost = " with a clip at 0 %" if lost_a_clip(best) else ""
        print(f"| {name} | {last['iteration']} | {last['samples'] / last['wall_s']:,.0f} | "
              f"{evaluation_score(best):.0%}{lost} ({best['iteration']}) | {best['g_mpjpe_mm']:.1f} | "
              f"{'-' if reached is None else format(reached['wall_s'] / 60, '.1f')} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("groups", "global"))
    ap.add_argument("--recipe", type=Path, default=ROOT / "configs" / "default.toml")
    ap.add_argument("--library", type=Path, required=True, help="the recipe's imported library (RUN/library)")
    ap.add_argument("--groups", type=Path, help="the global stage's teachers (a groups folder)")
    ap.add_argument("--variants", nargs="+", required=True, metavar="KEY=VALUE[,...]")
    ap.add_argument("--init-from", type=Path, help="groups: start every variant from this group controller "
                    "(e.g. with bc_warmup_iterations=0, to compare settings of the PADL phase)")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--minutes", type=float, help="each variant's wall-clock budget (default: none)")
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # the index of the variant this process trains
    args = ap.parse_args(argv)
    if args.stage == "global" and args.groups is None:
        ap.error("the global stage needs --groups (its teachers)")
    if args.stage == "global" and args.init_from is not None:
        ap.error("--init-from is for the groups stage")
    out = args.out or Path(f"runs/bench_curves_{args.stage}")
    variants = [parse_variant(v) for v in args.variants]
    names = [v.replace(",", " ") for v in args.variants]
    dirs = [v.replace(",", "_").replace("=", "") for v in args.variants]
    runs = [out / (d if len(d) <= 100 else f"variant{i}") for i, d in enumerate(dirs)]  # a file name's limit
    if args.worker is not None:
        train_variant(args.stage, args.recipe, args.library, args.groups, variants[args.worker], args.iterations,
                      args.minutes, args.eval_every, runs[args.worker], args.resume, args.init_from)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, run in enumerate(runs):
        run.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--worker", str(i)]
        procs.append(subprocess.Popen(cmd, stdout=open(out / f"worker{i}.log", "w"), stderr=subprocess.STDOUT))
    codes = [p.wait() for p in procs]
    for i, code in enumerate(codes):
        if code:
            print(f"distill_curves: variant {names[i]} failed (exit {code}); see {out / f'worker{i}.log'}")
    report(names, [curve(r) for r in runs])
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
