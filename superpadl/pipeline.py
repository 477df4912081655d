"""`superpadl train RECIPE --out RUN`: import -> experts -> handover -> groups -> global -> evaluation -> export,
unattended.

RUN holds `recipe.toml` (a copy), `status.json` (stage states, each expert's attempts, wall clock, samples; written
atomically, and every HEARTBEAT_S while a stage runs, so a SIGKILL loses at most that much of the clock),
`library/`, `experts/<name>/try<k>/`, `handover/round<k>/` (`states.npz` and a fine-tune per expert), `groups/`,
`global/`, `eval/`, `model/` and `report.{md,json}`. Each stage calls the existing trainer with `resume=True`, so a
killed stage goes on from its last checkpoint; a stage or an expert recorded as finished is never run again.

Experts: one per clip, or per caption-embedding cluster of `clips_per_expert` clips; clips with an expert in the
recipe's `teachers` folder take it ("reused"). An expert below its bar is retried (`retry_plan`); one still below
it after `retries` retries is left out of the later stages, and the report says so.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import os
import shutil
import threading
import time
from pathlib import Path

from padl import checkpoint
from padl.config import from_dict, replace, to_dict
from superpadl import recipe as R
from superpadl import report
from superpadl.report import STAGES, kept_eval, progress_of

FORMAT = "superpadl-run"
HEARTBEAT_S = 15.0
RETRY_BUDGET = 1.5  # each retry's budget (iterations and minutes) is this times the attempt's before


class BudgetSpent(Exception):
    """--max-hours ran out: the run stops after a checkpoint; `--resume` continues it."""


class Status:
    """status.json, one writer (this process): changes under a lock, saved whole; a heartbeat thread advances the
    wall clock of what is running."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data, self.lock, self.running = path, data, threading.Lock(), {}
        self._stop = threading.Event()
        threading.Thread(target=self._beat, daemon=True).start()

    def save(self) -> None:
        with self.lock:
            self._advance()
            checkpoint.write_json_atomic(self.path, self.data)

    def start(self, entry: dict) -> None:
        """From now on `entry["wall_s"]` counts up (until `stop`)."""
        with self.lock:
            entry.setdefault("wall_s", 0.0)
            self.running[id(entry)] = (entry, entry["wall_s"], time.time())
        self.save()

    def stop(self, entry: dict) -> None:
        with self.lock:
            self._advance()
            self.running.pop(id(entry), None)
        self.save()

    def _advance(self) -> None:
        now = time.time()
        for entry, base, t0 in self.running.values():
            entry["wall_s"] = round(base + now - t0, 1)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.save()
            except OSError:
                pass  # the next beat, or the stage's own save, writes it

    def close(self) -> None:
        self._stop.set()


def retry_plan(attempt: int, base_iterations: int, base_minutes: float | None, seed: int) -> dict:
    """Attempt k (0 = the first) of an expert: seed + k, and RETRY_BUDGET^k of the budget; attempts after the first
    also start from the nearest finished expert (`_nearest`), since a related skill is a head start."""
    scale = RETRY_BUDGET ** attempt
    return {"seed": seed + attempt, "iterations": int(round(base_iterations * scale)),
            "minutes": None if base_minutes is None else base_minutes * scale}


# An expert learns to start its skill from standing (`stand_starts`): this share of its episodes begin in the
# standing skill's states with its clip at the first frame, the reference following the character's position (not
# its heading: the command names the way it faces) for the first STAND_START_RECOVER_S. The runtime starts in that
# pose, up to 0.7 rad from a gesture's own first frame (more for punch and slash): the shipped walk and jog experts
# fell from it in 8 of 8 tries, the gestures' expert in 2 of its 6 skills, punch and slash too, and group controllers
# taught by them fell so where they held from each clip's own first frame. The walk expert fine-tuned so covered a
# median 2.8 m in 4 s from the start pose (benchmarks/set_off.py, docs/experiments.md). It trains its whole budget
# (no early stop: the teacher already tracks its clips).
STAND_START_SHARE, STAND_START_RECOVER_S = 0.5, 2.0


def stand_start_config(cfg, standing: str | None):
    """An expert config whose episodes also start from the standing clip `standing` (`STAND_START_SHARE`); None:
    from any other clip's states (a recipe's `start_from = "any"`)."""
    env = replace(cfg.env, starts=dict(foreign_share=STAND_START_SHARE,
                                       foreign_clips=None if standing is None else (standing,)),
                  episode=dict(recover_s=STAND_START_RECOVER_S, recover_follow=True, follow_heading=False))
    return dataclasses.replace(cfg, env=env, stop_success=2.0)


def expert_config(policy: Path):
    """The ExpertConfig an expert policy (a run's `policy`, or an export) was trained with."""
    from padl.expert import ExpertConfig

    meta = checkpoint.sidecar_config(policy)
    with checkpoint.metadata_of(f"{policy}.json", "expert policy"):
        return from_dict(ExpertConfig, meta["expert"])


def handover_config(cfg, h: R.HandoverStage, states: Path):
    """An expert's own config with `h.share` of its episodes starting in the recorded `states` (its clip at the
    first frame, the reference following the character's position for STAND_START_RECOVER_S, as from standing),
    `h.start_noise` on every start; it trains its whole budget."""
    env = replace(cfg.env, starts=dict(foreign_share=h.share, foreign_clips=None, state_starts=str(states.resolve()),
                                       init_noise=h.start_noise),
                  episode=dict(recover_s=STAND_START_RECOVER_S, recover_follow=True, follow_heading=False))
    return dataclasses.replace(cfg, env=env, stop_success=2.0, iterations=h.iterations, eval_episodes=h.eval_episodes)


def meets_bar(ev: dict, stage: R.ExpertStage) -> bool:
    return bool(ev) and ev.get("success", 0.0) >= stage.success and ev.get("g_mpjpe_mm", math.inf) <= stage.g_mpjpe_mm


def expert_job(job: dict) -> dict:
    """One expert attempt (resumed if it has a checkpoint): what a worker process or Ray task runs."""
    from motions.library import MotionLibrary
    from padl import expert

    out = Path(job["dir"])
    fresh = not (out / "train_state.json").exists()  # a kill before the first checkpoint starts it again
    lib = MotionLibrary(job["library"], include_flagged=True)
    t0 = time.time()
    ev = expert.train(lib, out, from_dict(expert.ExpertConfig, job["config"]), resume=True,
                      iterations=job["iterations"], progress=False, time_limit_s=job["time_limit_s"],
                      log=lambda m: print(f"experts/{job['name']}: {m}", flush=True),
                      init_from=job["init_from"] if fresh else None, force=fresh)
    return {"eval": ev, "call_s": time.time() - t0}


def _die_with_parent() -> None:
    """Worker initialiser: SIGKILL this process when its parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the call
        os._exit(1)


class _InProcess:
    """An executor that runs each job at once in this process (one worker: no process to spawn, nothing to
    outlive a killed parent)."""

    def submit(self, fn, *args):
        future = cf.Future()
        future.set_result(fn(*args))  # exceptions propagate: an interrupt must stop the run
        return future

    def shutdown(self, **_):
        pass


class _Ray:
    """Jobs as Ray tasks of the same function (`--ray-address`)."""

    def __init__(self, address: str):
        import ray

        ray.init(address=address)
        self.remote = ray.remote(expert_job)

    def submit(self, fn, *args):
        return self.remote.remote(*args).future()

    def shutdown(self, **_):
        pass


def check_ray(address: str | None) -> None:
    if address is not None:
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError:
            raise ValueError(f"--ray-address {address}: Ray is not installed (pip install ray)") from None


class Pipeline:
    def __init__(self, recipe: R.Recipe, out: Path, status: Status, deadline: float | None, workers: int,
                 ray_address: str | None, log):
        self.recipe, self.out, self.status, self.deadline = recipe, out, status, deadline
        self.workers, self.ray_address, self.log = workers, ray_address, log
        self.library = None

    @property
    def data(self) -> dict:
        return self.status.data

    def lib(self):
        from motions.library import MotionLibrary

        if self.library is None:
            self.library = MotionLibrary(self.out / "library", include_flagged=True)
        return self.library

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    def limit(self, budget_s: float | None) -> tuple[float | None, bool]:
        """(time limit of a trainer call, whether --max-hours is the tighter one)."""
        left = self.left()
        if left is not None and left <= 0:
            raise BudgetSpent()
        if left is None or (budget_s is not None and budget_s <= left):
            return budget_s, False
        return left, True

    def run(self) -> None:
        for name in STAGES:
            stage = self.data["stages"][name]
            if stage["state"] == "done":
                continue
            stage["state"] = "running"
            self.status.start(stage)
            self.log(f"stage {name}")
            try:
                getattr(self, f"stage_{name}")(stage)
            finally:
                self.status.stop(stage)
            stage["state"] = "done"
            self.status.save()

    # --- stages ---------------------------------------------------------------------------------------------

    def stage_import(self, stage: dict) -> None:
        from motions.importer import import_clips

        lib = self.out / "library"
        if lib.exists():  # a killed import (the import itself is all-or-nothing, its record here was not)
            shutil.rmtree(lib)
        entries = import_clips(list(self.recipe.sources), lib, progress=False)
        self.data["clips"] = [e["id"] for e in entries]
        for key, st in (("experts", self.recipe.experts), ("groups", self.recipe.groups), ("global", self.recipe.global_)):
            for clip in st.config.env.episode.hold_clips or ():
                if clip not in self.data["clips"]:
                    raise ValueError(f"{self.recipe.path}: [{key}.env.episode] hold_clips: {clip!r} is not a clip of "
                                     "the sources")
        for clip in self.recipe.handover.clips:
            if clip not in self.data["clips"]:
                raise ValueError(f"{self.recipe.path}: handover.clips: {clip!r} is not a clip of the sources")
        if self.recipe.stand_starts:
            from motions.captions import STANDING_CAPTIONS

            rest = next((e["id"] for e in entries if set(e["captions"]) & set(STANDING_CAPTIONS)), None)
            if rest is None:
                raise ValueError(f"{self.recipe.path}: stand_starts: no standing clip among the sources to start from")
            for clip in self.recipe.stand_starts:
                if clip not in self.data["clips"]:
                    raise ValueError(f"{self.recipe.path}: stand_starts: {clip!r} is not a clip of the sources")
                if clip == rest:
                    raise ValueError(f"{self.recipe.path}: stand_starts: {clip!r} is the standing clip itself")
            self.data["standing"] = rest

    def stage_experts(self, stage: dict) -> None:
        experts = self.data.setdefault("experts", {})
        if not experts:
            experts.update(self._plan_experts())
            self.status.save()
        queue = [n for n, e in experts.items() if e["state"] not in ("done", "failed", "reused")]

        def start(name: str) -> dict:
            job = self._job(name)
            experts[name]["state"] = "running"
            self.status.start(experts[name]["attempts"][-1])
            return job

        self._run_jobs(queue, start, self._finish)
        stage["samples"] = sum(a.get("samples", 0) for e in experts.values() for a in e["attempts"])
        for e in experts.values():
            if e["state"] == "failed":
                for clip in e["clips"]:
                    self.data["left_out"][clip] = e["why"]

    def _shared_threads(self, env):
        """`env` with its trainer's share of the CPUs when several train at once (num_threads 0: all of them)."""
        if env.physics.num_threads == 0 and self.workers > 1:
            env = replace(env, physics=dict(num_threads=max(1, (os.cpu_count() or 1) // self.workers)))
        return env

    def _run_jobs(self, queue: list[str], start, finish) -> None:
        """Expert trainer jobs, `self.workers` at once: `start(name) -> job` as one begins, `finish(name, job,
        future) -> again` as it ends (True: queue it again)."""
        executor = self._executor(len(queue))
        running: dict = {}
        try:
            while queue or running:
                while queue and len(running) < max(1, self.workers):
                    name = queue.pop(0)
                    job = start(name)
                    running[executor.submit(expert_job, job)] = (name, job)
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    name, job = running.pop(future)
                    if finish(name, job, future):
                        queue.append(name)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def _executor(self, jobs: int):
        if self.ray_address is not None:
            return _Ray(self.ray_address)
        if self.workers <= 1 or jobs <= 1:
            return _InProcess()
        import multiprocessing as mp

        return cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_die_with_parent)

    def _plan_experts(self) -> dict:
        """{expert name: its entry}: reused teachers first, the other clips one per expert or clustered."""
        from superpadl.groups import GroupConfig, make_groups
        from superpadl.teachers import find_experts

        st, clips, plan = self.recipe.experts, list(self.data["clips"]), {}
        if st.teachers is not None:
            for path in find_experts([st.teachers]):
                meta = json.loads((path / "policy.json").read_text()).get("config", {})
                mine = [c for c in meta.get("clips", []) if c in clips]
                if set(mine) & set(self.recipe.stand_starts):  # fine-tuned from this one to start from standing
                    plan[path.name] = {"clips": mine, "state": "pending", "attempts": [],
                                       "init_from": str(path / "policy")}
                elif mine:
                    plan[path.name] = {"clips": mine, "state": "reused", "path": str(path), "attempts": [],
                                       "eval": meta.get("eval") or {}}
                clips = [c for c in clips if c not in meta.get("clips", [])]
        if st.clips_per_expert <= 1 or len(clips) <= 1:
            units = [[c] for c in clips]
        else:
            units = make_groups(clips, GroupConfig(group_size=st.clips_per_expert, grouping="cluster"),
                                self._embeddings(clips))
        for i, members in enumerate(units):
            name = members[0] if len(members) == 1 else f"experts_{i:03d}"
            plan[name] = {"clips": members, "state": "pending", "attempts": []}
        return plan

    def _embeddings(self, clips: list[str]):
        import numpy as np

        from superpadl.text import clip_caption_embeddings

        return np.stack([e.mean(0) for _, e in clip_caption_embeddings(self.lib(), clips)])

    def _nearest(self, name: str) -> str | None:
        """The policy of the finished expert whose clips' captions are nearest (cosine) to `name`'s."""
        import numpy as np

        experts = self.data["experts"]
        finished = [n for n, e in experts.items() if n != name and e["state"] in ("done", "reused")]
        if not finished:
            return None
        emb = self._embeddings(self.data["clips"])
        row = {c: emb[i] / np.linalg.norm(emb[i]) for i, c in enumerate(self.data["clips"])}
        mean = lambda n: np.mean([row[c] for c in experts[n]["clips"]], 0)
        mine = mean(name)
        best = max(finished, key=lambda n: float(mine @ mean(n)))
        return str(Path(experts[best]["path"]) / "policy")

    def _job(self, name: str) -> dict:
        st, entry = self.recipe.experts, self.data["experts"][name]
        attempts = entry["attempts"]
        if not attempts or attempts[-1].get("finished"):
            k = len(attempts)
            plan = retry_plan(k, st.config.iterations, st.minutes, st.config.seed)
            attempts.append({**plan, "dir": str(self.out / "experts" / name / f"try{k}"),
                             # a set-off expert starts from the cycle's teacher, each time
                             "init_from": entry.get("init_from") or (self._nearest(name) if k
                                                                      else st.init_from and str(st.init_from)),
                             "wall_s": 0.0})
            self.status.save()
        attempt = attempts[-1]
        env = self._shared_threads(dataclasses.replace(st.config.env, clips=tuple(entry["clips"])))
        cfg = dataclasses.replace(st.config, env=env, seed=attempt["seed"], iterations=attempt["iterations"])
        if set(entry["clips"]) & set(self.recipe.stand_starts):
            cfg = stand_start_config(cfg, self.data["standing"] if self.recipe.start_from == "standing" else None)
        budget = None if attempt["minutes"] is None else max(1.0, attempt["minutes"] * 60 - attempt["wall_s"])
        limit, by_run = self.limit(budget)
        return {"name": name, "dir": attempt["dir"], "library": str(self.out / "library"), "config": to_dict(cfg),
                "iterations": attempt["iterations"], "init_from": attempt["init_from"], "time_limit_s": limit,
                "by_run": by_run}

    def _finish(self, name: str, job: dict, future) -> bool:
        """Record an attempt's end; True when the expert is to be tried again."""
        st, entry = self.recipe.experts, self.data["experts"][name]
        attempt = attempts_last = entry["attempts"][-1]
        self.status.stop(attempts_last)
        try:
            result = future.result()
        except cf.CancelledError:
            entry["state"] = "pending"
            return False
        except Exception as e:  # noqa: BLE001 (a worker that crashed: an attempt that failed, said why)
            result = {"eval": {}, "error": " ".join(str(e).split()) or type(e).__name__, "call_s": 0.0}
        attempt["iteration"], attempt["samples"] = progress_of(Path(attempt["dir"]))
        attempt["eval"] = result["eval"] or kept_eval(Path(attempt["dir"]))
        if "error" in result:
            attempt["error"] = result["error"]
            self.log(f"experts/{name}: attempt {len(entry['attempts'])} failed: {result['error']}")
        elif job["by_run"] and result["call_s"] >= job["time_limit_s"] - 1.0:
            entry["state"] = "pending"
            self.status.save()
            raise BudgetSpent()
        attempt["finished"] = True
        if meets_bar(attempt["eval"], st):
            entry.update(state="done", path=attempt["dir"], eval=attempt["eval"])
            self.status.save()
            return False
        if len(entry["attempts"]) <= st.retries:
            entry["state"] = "pending"
            self.status.save()
            return True
        ev = attempt["eval"]
        entry.update(state="failed", eval=ev, why=attempt.get("error") or (
            f"below the bar after {len(entry['attempts'])} attempts (success {ev.get('success', 0):.0%}, "
            f"G-MPJPE {ev.get('g_mpjpe_mm', math.nan):.1f} mm; bar {st.success:.0%}, {st.g_mpjpe_mm:g} mm)"))
        self.status.save()
        return False

    def stage_handover(self, stage: dict) -> None:
        """`HandoverStage`: per round, the states real use gives commands in, recorded with the run's experts
        (`RUN/handover/round<k>/states.npz`), then the experts of its clips fine-tuned from them
        (`RUN/handover/round<k>/<expert>`), which the later stages take as those experts."""
        h, experts = self.recipe.handover, self.data["experts"]
        rounds = self.data.setdefault("handover", [])
        names = [n for n, e in experts.items() if e["state"] in ("done", "reused") and set(e["clips"]) & set(h.clips)]
        for k in range(h.rounds if names else 0):
            folder = self.out / "handover" / f"round{k}"
            if k == len(rounds):
                rounds.append({"experts": {}})
            entry = rounds[k]
            if entry.get("done"):
                continue
            if "states" not in entry:
                entry["states"] = self._record_handovers(folder / "states.npz")
                self.status.save()
            todo = [n for n in names if not entry["experts"].get(n, {}).get("finished")]
            self._run_jobs(todo, lambda n: self._handover_job(n, folder, entry), self._handover_finish(entry))
            entry["done"] = True
            self.status.save()
        stage["samples"] = report.stage_samples(self.out, "handover", self.data)

    def _record_handovers(self, path: Path) -> int:
        from superpadl.endurance import handover_states
        from superpadl.runtime import ExpertController

        self.limit(None)
        h = self.recipe.handover
        experts = sorted({e["path"] for e in self.data["experts"].values() if e["state"] in ("done", "reused")})
        controller = ExpertController(self.lib(), experts, library_dir=self.out / "library")
        qpos, qvel = handover_states(controller, h.record_minutes, h.record_seeds)
        if not len(qpos):
            raise ValueError(f"{self.out}: no upright state at any command of {h.record_seeds} x "
                             f"{h.record_minutes:g} min of the experts' real use to fine-tune them from")
        checkpoint.write_npz_atomic(path, qpos=qpos, qvel=qvel)
        self.log(f"handover: {len(qpos)} states recorded ({path})")
        return len(qpos)

    def _handover_job(self, name: str, folder: Path, entry: dict) -> dict:
        h, expert = self.recipe.handover, self.data["experts"][name]
        job = entry["experts"].setdefault(name, {"dir": str(folder / name), "wall_s": 0.0,
                                                 "init_from": str(Path(expert["path"]) / "policy")})
        self.status.start(job)
        cfg = handover_config(expert_config(Path(job["init_from"])), h, folder / "states.npz")
        cfg = dataclasses.replace(cfg, env=self._shared_threads(replace(cfg.env, physics=dict(num_threads=0))))
        budget = None if h.minutes is None else max(1.0, h.minutes * 60 - job["wall_s"])
        limit, by_run = self.limit(budget)
        return {"name": name, "dir": job["dir"], "library": str(self.out / "library"), "config": to_dict(cfg),
                "iterations": h.iterations, "init_from": job["init_from"], "time_limit_s": limit, "by_run": by_run}

    def _handover_finish(self, entry: dict):
        def finish(name: str, job: dict, future) -> bool:
            record = entry["experts"][name]
            self.status.stop(record)
            result = future.result()  # a fine-tune that fails stops the run: the expert it started from is fine
            if job["by_run"] and result["call_s"] >= job["time_limit_s"] - 1.0:
                raise BudgetSpent()
            record.update(finished=True, eval=result["eval"] or kept_eval(Path(job["dir"])))
            record["iteration"], record["samples"] = progress_of(Path(job["dir"]))
            self.data["experts"][name].update(path=job["dir"], eval=record["eval"])
            self.status.save()
            return False
        return finish

    def kept_clips(self) -> list[str]:
        return [c for c in self.data["clips"] if c not in self.data["left_out"]]

    def _trainer_call(self, stage: dict, cfg_minutes: float | None, call) -> None:
        budget = None if cfg_minutes is None else max(1.0, cfg_minutes * 60 - stage["wall_s"])
        limit, by_run = self.limit(budget)
        t0 = time.time()
        call(limit)
        if by_run and time.time() - t0 >= limit - 1.0:
            raise BudgetSpent()

    def stage_groups(self, stage: dict) -> None:
        from superpadl.groups import distill_groups

        experts = [e["path"] for e in self.data["experts"].values() if e["state"] in ("done", "reused")]
        clips = self.kept_clips()
        if not clips:
            raise ValueError(f"{self.out}: no clip has an expert that reached its bar (see {self.out / 'status.json'})")
        out = self.out / "groups"
        self._trainer_call(stage, self.recipe.groups.minutes, lambda limit: distill_groups(
            self.lib(), sorted(set(experts)), out, self.recipe.groups.config, clips=clips, resume=True,
            progress=False, log=self.log, time_limit_s=limit, init_from=self.recipe.groups.init_from))
        spec = json.loads((out / "groups.json").read_text())
        stage["samples"] = sum(progress_of(out / g["name"])[1] for g in spec["groups"])

    def stage_stop(self, stage: dict) -> None:
        from superpadl.groups import distill_groups
        from superpadl.student import idle_clip

        teacher = self.recipe.stop.teacher
        if teacher is None:
            return
        lib = self.lib()
        idle = idle_clip(lib, self.kept_clips())
        if idle < 0:
            raise ValueError(f"{self.recipe.path}: stop.teacher: the recipe has no standing clip to stop into")
        self._trainer_call(stage, self.recipe.stop.minutes, lambda limit: distill_groups(
            lib, [teacher], self.out / "stop", self.recipe.stop.config, clips=[lib.clip_ids[idle]], resume=True,
            progress=False, log=self.log, time_limit_s=limit))
        stage["samples"] = report.stage_samples(self.out, "stop", self.data)

    def stage_global(self, stage: dict) -> None:
        from superpadl.global_policy import train_global
        from superpadl.teachers import load_groups

        out = self.out / "global"
        teachers = load_groups(self.out / "groups", self.lib())
        stop = self.out / "stop" if (self.out / "stop" / "groups.json").is_file() else None
        self._trainer_call(stage, self.recipe.global_.minutes, lambda limit: train_global(
            self.lib(), teachers, out, self.recipe.global_.config, clips=self.kept_clips(), resume=True,
            progress=False, log=self.log, time_limit_s=limit, force=not (out / "train_state.json").exists(),
            init_from=self.recipe.global_.init_from, stop_teachers=stop and load_groups(stop, self.lib())))
        stage["samples"] = progress_of(out)[1]

    def stage_eval(self, stage: dict) -> None:
        from superpadl.evaluate import evaluate, load_agent

        ev = self.recipe.eval
        self.limit(None)
        result = evaluate(load_agent(self.out / "global", self.lib()), self.lib(), episodes=ev.episodes,
                          transitions=ev.transitions, seed=ev.seed)
        if ev.endurance_minutes > 0:
            from superpadl import endurance as E
            from superpadl.runtime import load_controller

            result["endurance"] = E.run(load_controller(self.out / "global"), ev.endurance_minutes,
                                        ev.endurance_seeds, *E.command_checks(self.lib()))
        checkpoint.write_json_atomic(self.out / "eval" / "global.json", result)

    def stage_export(self, stage: dict) -> None:
        from padl.policy import shippable_meta
        from superpadl.policies import GlobalPolicy

        model = self.out / "model"
        policy = GlobalPolicy.load(self.out / "global")
        checkpoint.save(checkpoint.in_folder(model, "policy"), policy.tree,  # atomic, the sidecar last
                        shippable_meta(policy.meta, "global"))
        stage["state"] = "done"  # the report lists this stage's compute as well
        self.status.save()
        rep = report.build(self.out)
        checkpoint.write_json_atomic(self.out / "report.json", rep)
        (self.out / "report.md").write_text(report.markdown(rep))
        listing = "".join(f"{s}\n" for s in self.recipe.listed)
        (model / "sources.txt").write_text(f"# sources of recipe {self.recipe.name} ({self.recipe.path.name}), "
                                           "relative to its data folder\n" + listing)
        (model / "README.md").write_text(report.model_card(rep, (self.out / "recipe.toml").read_text(),
                                                           self.out / "library"))


def _new_status(recipe: R.Recipe) -> dict:
    return {"format": FORMAT, "recipe": recipe.raw, "name": recipe.name, "sources": list(recipe.sources),
            "stages": {s: {"state": "pending", "wall_s": 0.0} for s in STAGES}, "clips": [], "experts": {},
            "left_out": {}, "workers": 1, "pid": os.getpid(), "state": "running"}


# The stage a recipe key sets up; every other key (the sources, the name) is the import's.
STAGE_OF_KEY = {"stand_starts": "experts", "start_from": "experts", "experts": "experts", "handover": "handover",
                "groups": "groups", "stop": "stop", "global": "global", "eval": "eval"}


def changed_stages(before: dict, after: dict) -> set[str]:
    """The stages whose recipe keys differ between two parsed recipes."""
    return {STAGE_OF_KEY.get(k, "import") for k in set(before) | set(after) if before.get(k) != after.get(k)}


def _add_new_stages(data: dict) -> dict:
    """A run begun before a stage existed gets it: done if a later stage has begun, else pending."""
    for name in STAGES:
        later = [data["stages"][s]["state"] for s in STAGES[STAGES.index(name) + 1:] if s in data["stages"]]
        data["stages"].setdefault(name, {"state": "done" if set(later) - {"pending"} else "pending", "wall_s": 0.0})
    return data


def open_run(recipe: R.Recipe, out: Path, resume: bool) -> dict:
    """The status of RUN to continue (--resume) or a new one; nothing is written before every check passed. A run
    resumes under a recipe changed only in stages it has not begun (e.g. the global stage's budget while the experts
    train)."""
    status_file = out / "status.json"
    if resume:
        try:
            data = checkpoint.read_spec(status_file, FORMAT, "training run")
        except ValueError:
            if not status_file.exists():
                raise ValueError(f"{status_file}: no run to resume (drop --resume to start a new one)") from None
            raise
        _add_new_stages(data)
        changed = changed_stages(data.get("recipe", {}), recipe.raw)
        if data.get("sources") != list(recipe.sources):
            changed.add("import")
        begun = [s for s in STAGES if s in changed and data["stages"][s]["state"] != "pending"]
        if begun:
            raise ValueError(f"{out}: the run was started from another recipe (its copy: {out / 'recipe.toml'}), "
                             f"which differs in the {begun[0]} stage, begun already; resume it with that recipe, "
                             "or choose another --out")
        data["recipe"] = recipe.raw  # changes to stages not begun yet are taken
        return data
    if status_file.exists():
        raise ValueError(f"{out}: a run already exists here; pass --resume to continue it, or choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder; choose another --out")
    return _new_status(recipe)


def train(recipe_path: Path, out: Path, resume: bool = False, max_hours: float | None = None, workers: int | None = None,
          ray_address: str | None = None, log=print) -> bool:
    """Run (or continue) the recipe into `out`; True when every stage is done, False when --max-hours stopped it."""
    recipe = R.load(recipe_path)
    check_ray(ray_address)
    out = Path(out)
    data = open_run(recipe, out, resume)
    deadline = None if max_hours is None else time.time() + max_hours * 3600
    workers = workers or recipe.experts.workers or os.cpu_count() or 1
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(recipe.path, out / "recipe.toml")  # the recipe the run follows now
    data.update(pid=os.getpid(), state="running", workers=workers)
    status = Status(out / "status.json", data)
    status.save()
    try:
        Pipeline(recipe, out, status, deadline, workers, ray_address, log).run()
    except BudgetSpent:
        data["state"] = "stopped"
        status.save()
        log(f"stopped: --max-hours {max_hours:g} spent; continue with `superpadl train {recipe_path} --out {out} "
            "--resume`")
        return False
    finally:
        status.close()
    data["state"] = "done"
    status.save()
    log(f"done: {out / 'model'} (report: {out / 'report.md'})")
    return True


def status_table(out: Path) -> str:
    """`superpadl status RUN`: stage, clips done / failed / running, samples, wall clock, estimated time left."""
    data = _add_new_stages(checkpoint.read_spec(Path(out) / "status.json", FORMAT, "training run"))
    alive = _alive(data.get("pid"))
    rows = []
    for name in STAGES:
        st = data["stages"][name]
        state = st["state"] if st["state"] != "running" or alive else "stopped"
        counts, samples, left = "", report.stage_samples(Path(out), name, data), _eta(Path(out), name, data)
        if name == "experts" and data.get("experts"):
            es = data["experts"].values()
            n = lambda *s: sum(len(e["clips"]) for e in es if e["state"] in s)
            counts = f"{n('done', 'reused')} / {n('failed')} / {n('running') if alive else 0}"
        elif name != "import" and data.get("clips"):
            kept = len([c for c in data["clips"] if c not in data["left_out"]])
            counts = f"{kept if st['state'] == 'done' else 0} / {len(data['left_out'])} / " \
                     f"{kept if state == 'running' else 0}"
        rows.append((name, state, counts or "-", f"{samples:,}" if samples else "-", _clock(st["wall_s"]),
                     "-" if left is None else _clock(left)))
    head = ("stage", "state", "clips done / failed / running", "samples", "wall clock", "est. left")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
    run_state = data.get("state") if data.get("state") != "running" or alive else "not running (resume it)"
    return "\n".join([f"{out}: recipe {data.get('name')}, {run_state}", line(head), line(["-" * w for w in widths]),
                      *map(line, rows)])


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return int(pid) != os.getpid()


def _eta(out: Path, name: str, data: dict) -> float | None:
    """Seconds left in a stage: its minutes budget less its clock, else its iterations at its rate so far."""
    st = data["stages"][name]
    if st["state"] == "done":
        return 0.0
    raw = data.get("recipe", {}).get(name, {})
    if name == "experts" and data.get("experts"):
        entries = data["experts"].values()
        tries = [a for e in entries for a in e["attempts"] if a.get("finished")]
        per = (sum(a["wall_s"] for a in tries) / len(tries)) if tries else (raw.get("minutes") or math.nan) * 60
        todo = sum(1 for e in entries if e["state"] in ("pending", "running"))
        value = per * todo / max(1, data.get("workers", 1))
        return None if math.isnan(value) else value
    if name in ("groups", "global"):
        if raw.get("minutes"):
            return max(0.0, raw["minutes"] * 60 - st["wall_s"])
        it, _ = progress_of(out / "global") if name == "global" else (0, 0)
        total = raw.get("iterations")
        if it and total:
            return st["wall_s"] * (total - it) / it
    return None


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
