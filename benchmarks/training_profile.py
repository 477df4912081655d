"""Where a trainer's wall time goes: exclusive timers wrapped around the calls it makes, from the benchmark side.

`Profile.patch(owner, name, category)` replaces a module function or class method by a timed wrapper that blocks on
its result (`jax.block_until_ready`), so asynchronously dispatched work is charged to the call that queued it, not to
the next one that waits. Timers nest: a call's time is charged to its own category minus its timed callees (the
physics inside `env.step` is physics, the rest of `env.step` its copies), except inside an `absorb` category
(evaluation, a teacher), which keeps everything it calls. What no timer covers is the loop's own Python, its eager
JAX ops and the `float()` syncs of its logging: the "rest".

The window (`patch_run`): every stage runs in `padl.run.Run.train`, one `Stage.iterate` per iteration. The first
`warmup` iterations are not counted (the compiles; the evaluation's are paid by one extra, untimed evaluation after the
first iteration): the next `iterate` zeroes the totals and starts the clock, and `stop()` after the trainer returns
ends it. Evaluations are charged at their steady rate, their mean time over `eval_every` iterations, however many fell
in the window (Run.train also evaluates at the end), and the end-to-end rate is that of the window so corrected.
"""
from __future__ import annotations

import functools
import json
import os
import time
from collections import defaultdict

import jax


PHYSICS = "physics: MuJoCo C (mujoco.batch step, all substeps)"
POLICY = "policy inference (ppo.act)"
OBS = "observation/reward: JAX after the physics (env post, jitted)"
GLUE = "host<->device: env.step's copies, PD targets, reset merge"
STACK = "host<->device: stacking the rollout (jnp.stack)"
DISC = "discriminator (reward, reference windows, disc_phase)"
UPDATE = "PPO update (ppo.update, value bootstraps)"
EVAL = "evaluation (Stage.evaluate: episodes, transition pairs)"
CKPT = "checkpointing and logging (checkpoint.save, add_scalar)"
TEACHER = "teacher inference (every teacher on every env)"
STUDENT = "student inputs and history (eager JAX)"
BC = "BC update (ppo.imitate: Adam steps)"
BC_DATA = "BC data: buffer add, normaliser, weight average (eager JAX)"
SWITCH = "command switching (dagger_rollout's own eager JAX)"
REST = "rest: loop Python, eager JAX ops, float() syncs"


def _block(out) -> None:
    leaves = jax.tree.leaves(out)
    if not any(isinstance(x, jax.core.Tracer) for x in leaves):  # a call made while tracing has nothing to wait for
        jax.block_until_ready(leaves)


class Profile:
    def __init__(self, warmup: int):
        self.warmup, self.markers = warmup, 0
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[list] = []  # [category, absorb, time of timed callees]
        self.t0 = self.t1 = None
        self.missing: list[str] = []
        self._undo: list = []

    def wrap(self, fn, category: str, absorb: bool = False, marker: bool = False, opens: bool = False):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.stack and self.stack[-1][1]:
                return fn(*args, **kwargs)
            if opens and self.t0 is None and self.markers >= self.warmup:
                self.totals.clear(), self.calls.clear()
                self.t0 = time.perf_counter()
            frame = [category, absorb, 0.0]
            self.stack.append(frame)
            start = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                _block(out)
            finally:
                dt = time.perf_counter() - start
                self.stack.pop()
                self.totals[category] += dt - frame[2]
                self.calls[category] += 1
                if self.stack:
                    self.stack[-1][2] += dt
            if marker:
                self.markers += 1
            return out

        return timed

    def patch(self, owner, name: str, category: str, **kw) -> None:
        """Time `owner.name` (a module function or a class's method); a name the code no longer has is listed in
        the report rather than failing (the trainers change under this benchmark)."""
        original = getattr(owner, name, None)
        if original is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return
        setattr(owner, name, self.wrap(original, category, **kw))
        self._undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()

    def stop(self) -> None:
        self.t1 = time.perf_counter()

    def result(self, iterations: int, samples_per_iteration: int, raw_physics: float, substeps: int,
               order: list[str], eval_every: int) -> dict:
        """Per-iteration means of the window: ms per category (and the rest), samples/s, share of raw physics."""
        if self.t0 is None or self.t1 is None:
            raise RuntimeError("the profile window never opened (fewer iterations than the warm-up?)")
        evals, eval_s = self.calls.get(EVAL, 0), self.totals.get(EVAL, 0.0)
        if not evals:
            raise RuntimeError("no evaluation in the profile window")
        self.totals[EVAL] = iterations * eval_s / evals / eval_every  # at the steady rate
        wall = self.t1 - self.t0 - eval_s + self.totals[EVAL]
        self.calls[EVAL] = iterations / eval_every
        ms = {c: 1e3 * self.totals.get(c, 0.0) / iterations for c in order}
        ms.update({c: 1e3 * v / iterations for c, v in self.totals.items() if c not in ms and c != REST})
        ms[REST] = 1e3 * wall / iterations - sum(ms.values())  # `iterate`'s own time and what Run.train adds
        rate = iterations * samples_per_iteration / wall
        return {"iterations": iterations, "warmup": self.warmup, "wall_s": wall, "ms_per_iteration": ms,
                "evaluations": evals, "evaluation_s": eval_s / evals, "eval_every": eval_every,
                "calls_per_iteration": {c: n / iterations for c, n in self.calls.items()},
                "samples_per_s": rate, "raw_physics_steps_per_s": raw_physics, "substeps": substeps,
                "physics_at_raw_ms": 1e3 * samples_per_iteration * substeps / raw_physics,
                "train_over_raw": rate * substeps / raw_physics, "missing_hooks": self.missing,
                "load_average": os.getloadavg()}


class _Batch:
    """A `mujoco.batch.Batch` whose `step` is timed (the C type takes no new attributes)."""

    def __init__(self, batch, step):
        self._batch, self.step = batch, step

    def __getattr__(self, name):
        return getattr(self._batch, name)


class _Module:
    """A module with some of its functions replaced (a trainer's `jnp` with a timed `stack`)."""

    def __init__(self, module, **overrides):
        self._module = module
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self._module, name)


def patch_run(prof: Profile) -> None:
    """Count iterations and time evaluations at the one loop every stage runs in (`padl.run.Run.train`): the stage's
    `iterate` opens the window and ends an iteration, its `evaluate` is `EVAL`'s whole."""
    from padl.run import Run

    original = Run.train

    def train(self, stage, *args, **kwargs):
        iterate = prof.wrap(stage.iterate, REST, opens=True, marker=True)
        stage.evaluate = prof.wrap(stage.evaluate, EVAL, absorb=True)

        def iterate_once_evaluated(state):
            scalars = iterate(state)
            if prof.markers == 1:  # compile the evaluation now, in the warm-up
                stage.evaluate(state, {**scalars, "perf/samples_per_s": 0.0})
            return scalars

        stage.iterate = iterate_once_evaluated
        return original(self, stage, *args, **kwargs)

    Run.train = train
    prof._undo.append((Run, "train", original))


def patch_env(prof: Profile) -> None:
    """Split `ImitationEnv.step` into the MuJoCo C physics, the jitted JAX after it and the rest (copies between
    NumPy and JAX, PD targets, the reset merge). With MJX the step is one jitted call: all of it is `GLUE`'s."""
    from padl.env import ImitationEnv

    original = getattr(ImitationEnv, "_init_mujoco", None)
    if original is None:
        prof.missing.append("padl.env.ImitationEnv._init_mujoco")
    else:
        def init_mujoco(self, model):
            original(self, model)
            self._batch = _Batch(self._batch, prof.wrap(self._batch.step, PHYSICS))
            self._post = prof.wrap(self._post, OBS)

        ImitationEnv._init_mujoco = init_mujoco
        prof._undo.append((ImitationEnv, "_init_mujoco", original))
    prof.patch(ImitationEnv, "step", GLUE)


def patch_stack(prof: Profile, module) -> None:
    """Time a trainer module's `jnp.stack` (how it turns a rollout's per-step arrays into (T, N, ...) ones)."""
    original = module.jnp
    module.jnp = _Module(original, stack=prof.wrap(original.stack, STACK))
    prof._undo.append((module, "jnp", original))


def print_table(title: str, r: dict) -> None:
    total = 1e3 * r["wall_s"] / r["iterations"]
    print(f"\n{title}\n{r['iterations']} iterations after {r['warmup']} of warm-up; {r['evaluations']} evaluation(s) of "
          f"{r['evaluation_s']:.1f} s each, charged as one per {r['eval_every']} iterations; load average at the end "
          + " / ".join(f"{x:.1f}" for x in r["load_average"]) + f" (1/5/15 min, on {os.cpu_count()} CPUs)")
    head = f"{'where':<62} {'ms/iter':>9} {'share':>6} {'calls/iter':>10}"
    print(head + "\n" + "-" * len(head))
    for c, v in r["ms_per_iteration"].items():
        calls = r["calls_per_iteration"].get(c)
        print(f"{c:<62} {v:>9.1f} {v / total:>6.1%} {'' if calls is None else f'{calls:>10.2f}'}")
    print("-" * len(head) + f"\n{'total':<62} {total:>9.1f} {1:>6.0%}")
    print(f"end to end {r['samples_per_s']:,.0f} samples/s = {r['samples_per_s'] * r['substeps']:,.0f} physics "
          f"steps/s; raw threaded physics {r['raw_physics_steps_per_s']:,.0f} steps/s (same batch, same run): the "
          f"trainer reaches {r['train_over_raw']:.1%} of it; this iteration's physics at the raw rate would take "
          f"{r['physics_at_raw_ms']:.0f} ms")
    if r["missing_hooks"]:
        print("not timed (no longer in the code): " + ", ".join(r["missing_hooks"]))


def save(path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
