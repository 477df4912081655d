"""One training loop for every stage (experts, group controllers, the global policy), as MimicKit's base agent.

A `Run` owns a run folder: `train_state.*` (the whole run state, for `--resume`), `policy.*` (the best-evaluated
policy), `progress.jsonl` (one row per evaluation) and `logs/` (TensorBoard). It resumes a run (the state saved,
its best raised to the kept policy's score: a run killed after keeping a policy and before its next checkpoint must
not replace that policy with a worse one), and runs a `Stage` to its total: an evaluation every `eval_every`
iterations, at the end and when time is up; the best kept as `policy`; a checkpoint every `checkpoint_every`, at
the end, on an early stop and when time is up. A stage supplies only what is its own: its state and metadata,
one iteration, one evaluation, the policy to keep and how evaluations rank.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from padl import checkpoint

TRAIN_STATE, POLICY, PROGRESS = "train_state", "policy", "progress.jsonl"


class Stage:
    """What a stage supplies to `Run.train`. Its state is a dict pytree with "iteration", "samples" and "best" (the
    score of the policy kept, as an array), and "stopped" when the stage can stop early; live values that are not
    saved (environments, aggregated data) are the stage's own attributes."""

    cfg: Any  # eval_every, checkpoint_every
    meta: dict  # JSON saved with every checkpoint (its `kind` among it)
    batch: int  # samples collected per iteration
    desc: str  # the progress bar's label
    label: str = ""  # what starts its evaluation log lines

    def iterate(self, state: dict) -> dict:
        """One iteration (collect and update) from `state["iteration"]`, its results written into `state`; its
        TensorBoard scalars."""
        raise NotImplementedError

    def evaluate(self, state: dict, scalars: dict) -> tuple[dict, dict]:
        """(The evaluation of the policy now: TensorBoard scalars, kept with the policy; more progress row fields)."""
        raise NotImplementedError

    def policy(self, state: dict) -> Any:
        """The tree saved as `policy`."""
        raise NotImplementedError

    def score(self, evaluation: dict) -> tuple:
        """How evaluations rank (the higher kept)."""
        raise NotImplementedError

    def stop(self, evaluation: dict) -> bool:
        """Whether the run is done early (a stage that can stop keeps "stopped" in its state)."""
        return False

    def postfix(self, scalars: dict) -> dict:
        """The progress bar's fields."""
        return {}


def eval_line(it: int, total: int, ev: dict) -> str:
    """An evaluation as one log line: what a run piped to a file shows (the progress bar is for terminals)."""
    parts = [f"success {ev['success']:.0%}", f"G-MPJPE {ev['g_mpjpe_mm']:.1f} mm"]
    parts += [f"{name} {ev[key]:.0%}" for key, name in (("worst_clip_success", "worst clip"),
                                                         ("transition_success", "transitions")) if key in ev]
    if "served_share" in ev:
        parts.append(f"real use {ev['served_share']:.0%} served, {ev['falls_per_hour']:.0f} falls/h")
    return f"iteration {it}/{total}: " + ", ".join(parts)


def log_evaluation(log, progress: bool, line: str) -> None:
    """Log an evaluation's line, flushed (a pipe would hold it back for minutes), unless the progress bar shows on
    the terminal stdout goes to."""
    if not (progress and sys.stdout.isatty()):
        log(line)
        sys.stdout.flush()


class Run:
    """The run folder `out` of a run of checkpoint kind `kind` (`what` names it in errors): `saved` is the metadata
    of the run to resume (None: a new run). A new run refuses to overwrite a policy kept there by an earlier one
    unless `force` (`checkpoint.prepare_run`)."""

    def __init__(self, out: str | Path, kind: str, what: str, resume: bool, force: bool = False, log=print):
        self.out, self.log = Path(out), log
        self.saved = checkpoint.resume_meta(self.out, TRAIN_STATE, kind, what) if resume else None
        checkpoint.prepare_run(self.out, POLICY, TRAIN_STATE, resumed=self.saved is not None, force=force)

    def resume(self, state: dict, score) -> dict:
        """The saved run state (`state`, a new one, is its template); its best at least `score` of the policy kept."""
        state, _ = checkpoint.load(self.out / TRAIN_STATE, state)
        if kept := checkpoint.kept_eval(self.out, POLICY):  # kept after the checkpoint, before a kill
            state["best"] = np.asarray(max(tuple(state["best"]), score(kept)), np.float64)
        self.log(f"resumed {self.out} at iteration {int(state['iteration'])}")
        return state

    def train(self, stage: Stage, state: dict, total: int, progress: bool = True,
              time_limit_s: float | None = None) -> dict:
        """Run `stage` from `state` to `total` iterations (or its early stop, or `time_limit_s` of wall time, after an
        evaluation and a checkpoint); returns its last evaluation ({}: none). A run of no iterations still leaves
        its initial policy (e.g. as a baseline) where none is kept."""
        from tensorboardX import SummaryWriter
        from tqdm import tqdm

        out, cfg = self.out, stage.cfg
        out.mkdir(parents=True, exist_ok=True)
        it = start = int(state["iteration"])
        samples = int(state["samples"])
        checkpoint.trim_log(out / PROGRESS, it)
        writer, curve = SummaryWriter(str(out / "logs")), open(out / PROGRESS, "a")
        bar = tqdm(total=total, initial=it, disable=not progress, desc=stage.desc, dynamic_ncols=True)
        stopped = lambda: bool(int(state.get("stopped", 0)))
        last_eval: dict = {}
        t_start = time.time()

        def save(name: str, tree, **extra) -> None:
            checkpoint.save(out / name, tree, {**stage.meta, "iteration": it, "samples": samples, **extra})

        try:
            while it < total and not stopped():
                t0 = time.time()
                scalars = stage.iterate(state)
                it, samples = it + 1, samples + stage.batch
                state.update(iteration=np.int64(it), samples=np.int64(samples))
                scalars["perf/samples_per_s"] = stage.batch / (time.time() - t0)
                for k, v in scalars.items():
                    writer.add_scalar(k, v, samples)
                bar.update(1)
                bar.set_postfix(**stage.postfix(scalars))
                out_of_time = time_limit_s is not None and time.time() - t_start >= time_limit_s
                if it % cfg.eval_every == 0 or it == total or out_of_time:
                    last_eval, row = stage.evaluate(state, scalars)
                    for k, v in last_eval.items():
                        writer.add_scalar(f"eval/{k}", v, samples)
                    curve.write(json.dumps({"iteration": it, "samples": samples, "wall_s": time.time() - t_start,
                                            **last_eval, **row}) + "\n")
                    curve.flush()
                    log_evaluation(self.log, progress, stage.label + eval_line(it, total, last_eval))
                    if (score := stage.score(last_eval)) > tuple(state["best"]):
                        state["best"] = np.asarray(score, np.float64)
                        save(POLICY, stage.policy(state), eval=last_eval)
                    if stage.stop(last_eval):
                        state["stopped"] = np.int64(1)
                        self.log(f"early stop at iteration {it}: success {last_eval['success']:.2f}, "
                                 f"G-MPJPE {last_eval['g_mpjpe_mm']:.1f} mm")
                if it % cfg.checkpoint_every == 0 or it == total or stopped() or out_of_time:
                    save(TRAIN_STATE, state)
                if out_of_time:
                    break
            if it == start and not (out / f"{POLICY}.json").exists():
                save(TRAIN_STATE, state)
                save(POLICY, stage.policy(state), eval={})
        finally:
            bar.close()
            writer.close()
            curve.close()
        return last_eval
