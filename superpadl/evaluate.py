"""`superpadl eval`: one table for any policy of the pipeline (expert, group controllers, global policy).

Per command (a caption for the global policy, a clip for the teachers), from the start of the commanded clip:
- success and G-MPJPE / L-MPJPE against that clip (`padl.evaluate`, `padl.metrics`); a looping clip's reference is
  re-anchored at the character as each cycle begins (`EpisodeConfig.anchor_cycles`: a command names no heading);
- precision and recall over 1 s motion windows, as AUC over eps in [0, 0.3] m (`superpadl.metrics`);
- retrieval: the generated motion is nearer to its own clip than to 3 random others (top-1 among 4).
Over random pairs of commands: transition success, no fall within 3 s after switching from the first to the second
(at `switch_s` into the first, or at its clip's end when a non-looping clip is shorter; pairs that fell before the
switch count as failures too). Experts track a reference, so they have no transitions.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from motions.library import MotionLibrary
from padl import metrics as M
from padl.config import replace
from padl.env import EnvConfig
from padl.evaluate import evaluation_env, rollout
from padl.falls import lying_clips
from superpadl import metrics as W
from superpadl import policies
from superpadl import student as S
from superpadl.policies import ExpertPolicy, GlobalPolicy, GroupPolicy
from superpadl.teachers import GroupTeachers, load_groups
from superpadl.windows import reference_windows, yaws

EPS = np.linspace(0.0, 0.3, 31)


class Agent:
    """A policy with a uniform interface: `commands` (name, clip id) rows, an env config, and
    `actor(rows)` -> act(state) for envs whose env i performs command rows[i % len(rows)]."""

    kind: str
    commands: list[tuple[str, str]]
    env_config: EnvConfig

    def actor(self, rows, switch=None):
        raise NotImplementedError


class ExpertAgent(Agent):
    kind = "expert"

    def __init__(self, policy: ExpertPolicy, library):
        self.policy, self.env_config = policy, policy.env
        self.commands = [(c, c) for c in policy.clips if c in library.clip_ids]

    def actor(self, rows, switch=None):
        return lambda s: self.policy.act(s.obs)


class GroupAgent(Agent):
    kind = "group"

    def __init__(self, teachers: GroupTeachers, library):
        """Group controllers (`teachers.load_groups`, or a training run's current one) as one agent."""
        self.teachers, self.library = teachers, library
        self.env_config = teachers.env_config()
        self.commands = [(c, c) for i, c in enumerate(library.clip_ids) if teachers.clip_owner[i] >= 0]
        idle = S.idle_clip(library, [c for _, c in self.commands])  # as `runtime.GroupController` given its library
        self.standing = None if idle < 0 else _standing(
            idle, S.one_shot_durations(library, [c for _, c in self.commands]), library.clip_ids,
            self.env_config.physics.control_hz)

    def actor(self, rows, switch=None):
        clips = [self.library.index(self.commands[r][1]) for r in rows]
        return _commanded(self.teachers.act, self.teachers.history, np.asarray(clips), switch, self.standing)


class GlobalAgent(Agent):
    kind = "global"

    def __init__(self, policy: GlobalPolicy, library):
        """A global policy (loaded, or a training run's current one), commanded by its captions."""
        self.policy, self.env_config = policy, policy.env
        self.emb = jnp.asarray(policy.caption_emb)
        self._rows = [i for i, k in enumerate(policy.caption_clips) if k in library.clip_ids]
        self.commands = [(policy.captions[i], policy.caption_clips[i]) for i in self._rows]
        from motions.captions import STANDING_CAPTIONS

        idle = next((i for i, c in enumerate(policy.captions) if c in STANDING_CAPTIONS), None)
        # the one-shot clips the policy records, as `runtime.PolicyController` reads them (none: it never stands)
        self.standing = None if idle is None else _standing(idle, policy.one_shot_s, policy.caption_clips,
                                                            policy.env.physics.control_hz)

    def actor(self, rows, switch=None):
        idx = np.asarray([self._rows[r] for r in rows])
        return _commanded(lambda pobs, hist, cmd, heading: self.policy.act(
            self.policy.input(pobs, hist, self.emb[cmd], heading)), self.policy.history, idx, switch, self.standing)


def _standing(idle: int, one_shot_s: dict[str, float], clips: list[str], control_hz: float):
    """(the standing command's value, (V,) control steps after which command value v, of clip clips[v], turns into
    it): a one-shot clip's `one_shot_s` plus the runtime's `IDLE_AFTER_S`, never for any other clip."""
    from superpadl.runtime import IDLE_AFTER_S

    return idle, np.asarray([round((one_shot_s[c] + IDLE_AFTER_S) * control_hz) if c in one_shot_s else np.inf
                             for c in clips])


def _commanded(policy, hcfg, command, switch, standing=None):
    """act(state) for a batch whose env i follows command[i % len] (then switch[1][i % len] from control step
    switch[0][i % len] on, when given, with the start frame restarted), keeping the strided history:
    policy(pobs, hist, command, heading). With `standing` (`_standing`), a one-shot command held past its clip
    turns into the standing one, as at run time."""
    see = S.command_frames(hcfg)
    step, held = 0, None

    def act(state):
        nonlocal step, held
        n = state.qpos.shape[0]
        cmd, new_command = np.resize(command, n), np.zeros(n, bool)
        if switch is not None:
            at = np.resize(switch[0], n)
            new_command, after = step == at, step >= at
            cmd = np.where(after, np.resize(switch[1], n), cmd)
        if standing is not None:
            idle, after_steps = standing
            held = np.zeros(n) if held is None else np.where(new_command, 0, held + 1)
            new_command = new_command | (held == after_steps[cmd])
            cmd = np.where(held >= after_steps[cmd], idle, cmd)
        pobs, hist, heading = see(state, new_command)
        step += 1
        return policy(pobs, hist, jnp.asarray(cmd), heading)

    return act


def load_agent(path: str | Path, library: MotionLibrary) -> Agent:
    """The agent for a policy path: a groups folder (groups.json), or any policy `superpadl.policies.load` reads."""
    path = Path(path)
    if (path / "groups.json").is_file():
        return GroupAgent(load_groups(path, library), library)
    policy = policies.load(path)
    if isinstance(policy, GroupPolicy):
        return GroupAgent(GroupTeachers(library, [policy]), library)
    return GlobalAgent(policy, library) if isinstance(policy, GlobalPolicy) else ExpertAgent(policy, library)


def evaluate(agent: Agent, library: MotionLibrary, episodes: int = 2, noise: float = 0.02, seconds: float = 10.0,
             transitions: int = 100, switch_s: float = 2.0, after_s: float = 3.0, seed: int = 0) -> dict:
    """{"commands": {name: metrics}, "clips": {clip: mean metrics}, "mean": {...}}."""
    rng = np.random.default_rng(seed)
    cfg = replace(agent.env_config, physics=dict(backend="mujoco", num_threads=0),
                  episode=dict(max_body_error=0.5, end_with_clip=True, anchor_cycles=True))
    names = [n for n, _ in agent.commands]
    clips = [k for _, k in agent.commands]
    rows = list(range(len(names)))
    ref_windows = reference_windows(library, list(dict.fromkeys(clips)), seconds)
    per_cmd: dict[str, list] = {n: [] for n in names}
    gen_windows: dict[str, list] = {n: [] for n in names}
    episodes_out = rollout(library, agent.actor(rows), clips, episodes, noise, seconds, cfg, seed)
    episode_yaws = yaws([qpos for *_, qpos in episodes_out])
    for i, ((clip, sim, ref, failed, qpos), yaw) in enumerate(zip(episodes_out, episode_yaws)):
        name = names[i % len(names)]
        m = M.episode_metrics(sim, ref, failed)
        if len(sim):
            gen = W.window_features(sim, yaw)
            gen_windows[name].append(gen)
            p, r = W.precision_recall(gen, ref_windows[clip], EPS)
            m.update(precision_auc=W.auc(p, EPS), recall_auc=W.auc(r, EPS))
        per_cmd[name].append(m)
    table = M.summarize(per_cmd)
    table.pop("mean", None)
    clip_list = list(ref_windows)
    if len(clip_list) >= 4:
        dist = np.zeros((len(names), len(clip_list)))
        for a, n in enumerate(names):
            gen = np.concatenate(gen_windows[n]) if gen_windows[n] else None
            for b, k in enumerate(clip_list):
                dist[a, b] = np.inf if gen is None else W.motion_distance(gen, ref_windows[k])
        own = np.asarray([clip_list.index(k) for k in clips])
        for a, n in enumerate(names):  # top-1 among 4 for each command: its own clip against 3 random others
            table[n]["retrieval_top1"] = W.retrieval_top1(dist[a:a + 1], rng, own=own[a:a + 1])
    by_clip = {k: M.summarize({k: [table[n] for n, c in zip(names, clips) if c == k]})[k] for k in clip_list}
    out = {"kind": agent.kind, "commands": table, "clips": by_clip,
           "mean": {key: float(np.mean([v[key] for v in by_clip.values() if key in v]))
                    for key in next(iter(by_clip.values()))}}
    if agent.kind != "expert" and transitions and len(clip_list) > 1:
        out["transitions"] = transition_success(agent, library, transitions, switch_s, after_s, rng)
        out["mean"]["transition_success"] = out["transitions"]["success"]
    return out


def kept_score(row: dict) -> tuple[float, float]:
    """How a distillation run ranks its evaluations to keep the best: the mean of success and transition success
    (success alone when transitions were not scored), then the lower G-MPJPE. A policy that tracks every clip but
    falls after every switch is no better than one that does both half the time. Where real use was measured
    (`served_share`, `superpadl.endurance.served`), it weighs as much as those two together: keep points chosen by
    clip starts alone fell 3x as often in use as others of the same runs (docs/experiments.md). An evaluation with
    a clip that never succeeded (`worst_clip_success` 0) ranks below every one without: a skill lost is not made
    up for by a few more successes on the others, which a mean over a few episodes per clip would allow."""
    return evaluation_score(row) - (1.0 if lost_a_clip(row) else 0.0), -row["g_mpjpe_mm"]


def evaluation_score(row: dict) -> float:
    """`kept_score`'s mean of success, transition success and real use served, without its lost-clip penalty."""
    value = 0.5 * (row["success"] + row.get("transition_success", row["success"]))
    if "served_share" in row:
        value = 0.5 * (value + row["served_share"])
    return value


def lost_a_clip(row: dict) -> bool:
    return row.get("worst_clip_success", 1.0) == 0.0


def transition_success(agent: Agent, library: MotionLibrary, pairs: int, switch_s: float, after_s: float,
                       rng: np.random.Generator, checks: tuple | None = None) -> dict:
    """Random pairs (first != second clip) whose second command is served as real use serves one
    (`superpadl.endurance.served`): no fall from the first command's start to the end of the watch, and the second
    skill performed (a gesture done, `endurance.GestureCheck`, where the library has a standing clip to tell it from;
    locomotion SET_OFF_BAR_M on in SET_OFF_S). No fall alone passed a policy that stood through the gesture it was
    switched to (docs/experiments.md). The switch comes `switch_s` into the first command, or when its non-looping
    clip ends, if sooner (as a user would command the next skill once one is done); the second is watched `after_s`
    or longer: a one-shot clip to its end and the runtime's hand-over to standing, a gesture as long as its own
    reference passes the check, locomotion SET_OFF_S. `by_clip`: per clip,
    [succeeded, pairs] of the pairs that leave it ("from") and that go to it ("to"). `checks`: the library's
    `endurance.command_checks`, when the caller has them (a trainer's evaluations), else read here."""
    from superpadl.endurance import GESTURE_BAR, SET_OFF_BAR_M, SET_OFF_S, command_checks, heading_direction
    from superpadl.runtime import IDLE_AFTER_S

    names, clips = zip(*agent.commands)
    rows = list(range(len(clips)))
    if len(set(clips)) > 1:  # a get-up is no user's command (`SimLoop` gives it after a fall)
        lying = lying_clips(library)
        rows = [r for r in rows if not lying[library.index(clips[r])]]
    if (count := len({clips[r] for r in rows})) < 2:
        raise ValueError(f"transitions need two clips to switch between; the policy has {count}")
    first, second = [], []
    while len(first) < pairs:
        a, b = (rows[i] for i in rng.integers(len(rows), size=2))
        if clips[a] != clips[b]:
            first.append(int(a)), second.append(int(b))
    directions, gestures = checks if checks is not None else command_checks(library)
    hz = agent.env_config.physics.control_hz
    ends = np.asarray(S.clip_ends(library))
    at = np.round(hz * np.minimum(switch_s, ends[[library.index(clips[a]) for a in first]])).astype(int)
    to = [clips[b] for b in second]
    watch_s = [max(after_s, SET_OFF_S if c in directions else 0.0,  # a gesture as long as its own reference scores
                   gestures[c].bar_s / GESTURE_BAR if c in gestures else 0.0,
                   ends[library.index(c)] + IDLE_AFTER_S if np.isfinite(ends[library.index(c)]) else 0.0) for c in to]
    fall, qpos = switch_falls(agent, library, first, second, at, at + np.round(hz * np.asarray(watch_s)).astype(int),
                              record=True)
    fell_before, fell_after = (fall >= 0) & (fall < at), fall >= at
    performed = np.ones(len(first), bool)
    for i, c in enumerate(to):
        if fall[i] >= 0:
            continue
        if c in gestures:
            performed[i] = gestures[c].seconds(qpos[i, at[i]:at[i] + int(round(hz * watch_s[i]))]) >= gestures[c].bar_s
        elif c in directions:
            moved = qpos[i, at[i] + int(round(hz * SET_OFF_S)) - 1, :2] - qpos[i, at[i] - 1, :2]
            performed[i] = moved @ heading_direction(directions[c], qpos[i, at[i] - 1, 3:7]) >= SET_OFF_BAR_M
    ok = ~fell_before & ~fell_after & performed
    sides = {"from": np.asarray([clips[a] for a in first]), "to": np.asarray(to)}
    by_clip = {c: {side: [int(ok[of == c].sum()), int((of == c).sum())] for side, of in sides.items()}
               for c in dict.fromkeys(clips)}
    return {"success": float(ok.mean()), "fell_before_switch": int(fell_before.sum()),
            "fell_after_switch": int(fell_after.sum()), "not_performed": int((~performed).sum()),
            "gestures_checked": bool(gestures), "by_clip": by_clip, "pairs": [
                {"from": names[a], "to": names[b], "ok": bool(o)} for a, b, o in zip(first, second, ok)]}


def switch_falls(agent: Agent, library: MotionLibrary, first, second, at, horizon, record: bool = False):
    """(P,) the control step of each pair's first fall, -1 for none: env i performs command row first[i] from its
    clip's start, switches to row second[i] at step at[i] (never, if at[i] >= horizon[i]) and is watched until step
    horizon[i]. Only a fall ends an episode (no body-error or clip-end termination). With `record`, also the
    (P, max horizon, nq) qpos after each step."""
    first, horizon = list(first), np.asarray(horizon)
    clips = [agent.commands[a][1] for a in first]
    cfg = replace(agent.env_config, num_envs=len(first), clips=tuple(clips),
                  physics=dict(backend="mujoco", num_threads=0),
                  episode=dict(max_body_error=1e6, end_with_clip=False,
                               length_s=float(horizon.max()) / agent.env_config.physics.control_hz + 1.0),
                  starts=dict(init="start", reset_pool=1, init_noise=0.02, foreign_share=0.0, state_starts=None))
    env = evaluation_env(library, cfg)  # the same pairs again (a trainer's evaluations) compile nothing new
    act = agent.actor(first, switch=(np.asarray(at), np.asarray(second)))
    state = env.reset(jax.random.key(0))
    fall, qpos = np.full(len(first), -1), []
    for t in range(int(horizon.max())):
        state = env.step(state, act(state))
        fall = np.where(np.asarray(state.done) & (fall < 0) & (t < horizon), t, fall)
        if record:
            qpos.append(np.asarray(state.qpos))
    return (fall, np.stack(qpos, 1)) if record else fall
