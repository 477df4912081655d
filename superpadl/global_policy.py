"""SuperPADL stage 3: one text-conditioned global policy, distilled from the group controllers by DAgger.

The global policy is an MLP with LayerNorm on [own state, strided history, caption embedding] (`superpadl.student`)
that outputs absolute PD targets. Each iteration it drives a batch of characters (the group teachers drive a share
`beta` of them, from all down to `beta_floor`: `teacher_share`); every env carries a command (a clip, and one of
that clip's captions drawn at random), which switches to a random other clip at random times (on average every
`switch_every_s`) and when a non-looping clip is over, so transitions between skills, also from a skill's end, are
in the data. Every visited state is labelled with the action of the command clip's group controller, the pairs are
aggregated, and the policy regresses onto them.

The environment's reference motion only starts episodes (reference-state initialisation) and ends them (a fall);
after a switch the character no longer follows it, so the body-error termination is off.

A run folder holds `train_state.*` (the latest), `policy.*` (kind "superpadl-global": the averaged network
(`GlobalConfig.average`) with the best evaluation so far (`superpadl.evaluate.kept_score`), its normaliser, the
caption table and a start pose, everything the runtime needs), `progress.jsonl` and `logs/`. Evaluations of 2
episodes per clip scatter by 10-20 points between neighbouring iterations, so the latest is rarely the best.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from motions.library import MotionLibrary
from padl import checkpoint, ppo
from padl.discriminator import ReplayBuffer
from padl.config import from_dict, replace, to_dict
from padl.env import ActionConfig, EnvConfig, EpisodeConfig, ImitationEnv, StartConfig, weighted_choice
from padl.evaluate import evaluate_policy
from padl.falls import lying_clips
from padl.normalizer import update as update_normalizer
from padl.policy import mean_action
from padl.run import Run, Stage
from superpadl import endurance as E
from superpadl import student as S
from superpadl.evaluate import GlobalAgent, kept_score, transition_success
from superpadl.groups import clip_priorities, practised_success
from superpadl.policies import GLOBAL_KIND as KIND, GlobalPolicy, check_encoder, encoder_record
from superpadl.teachers import GroupTeachers
from superpadl.text import EMBED_DIM

TRAIN_STATE, POLICY = "train_state", "policy"


@dataclass(frozen=True)
class CommandSchedule:
    """When a DAgger rollout's commands switch, and how long the teachers drive (`dagger_rollout`, `teacher_share`)."""

    switch_every_s: float = 3.0  # mean time between command switches in the rollouts (inf: none)
    # the share of non-looping clip ends that switch command; the others keep it, labelled by a teacher that learnt to
    # stand after the skill (`EpisodeConfig.hold_s`): a command at run time outlives its clip. 1: always switch, for
    # teachers that never learnt what follows a clip's end
    end_switch: float = 1.0
    # a command given in the last finish_s of a non-looping clip is labelled by that clip's teacher until it ends;
    # 0: every switch is labelled by the new command's teacher at once
    finish_s: float = 0.0
    rest_switch: float = 0.0  # share of first-frame episode starts commanded another clip at once
    beta_iterations: int = 40  # the teachers drive a share of the envs decaying from all over these iterations
    # the share of envs the teachers still drive once the decay is over; 0: the student alone
    beta_floor: float = 0.0
    # A switch to a clip that is not locomotion, given while the character moves faster than
    # `endurance.LOCOMOTION_SPEED`, is labelled by the idle clip's teacher until the character is slower than that or
    # brake_s seconds have passed, then by the new command's: the student learns to stop before a gesture, where no
    # gesture's teacher can start from a jog (in the expert-level chain, 9 of 15 commands given during locomotion
    # fell). 0: the new command's teacher at once
    brake_s: float = 0.0


@dataclass(frozen=True)
class GlobalConfig:
    env: EnvConfig = field(default_factory=lambda: EnvConfig(  # 192 characters: as `GroupConfig.env`
        num_envs=192, action=ActionConfig(mode="absolute"), starts=StartConfig(first_frame_share=0.25),
        episode=EpisodeConfig(max_body_error=1e6, end_with_clip=False)))
    ppo: ppo.PPOConfig = field(default_factory=lambda: ppo.PPOConfig(  # the policy network and its normaliser
        policy_hidden=(1024, 512), value_hidden=(8,), layer_norm=True, log_std_init=-2.5, fixed_log_std=True))
    rollout_steps: int = 32
    iterations: int = 300
    commands: CommandSchedule = field(default_factory=CommandSchedule)
    sgd_steps: int = 64  # Adam steps per iteration
    # Polyak averaging of the policy weights: each iteration the average moves (1 - average) of the way to the
    # weights just fitted. Evaluations and the kept policy use the average, which does not carry the last
    # iteration's minibatch noise (0: the latest weights)
    average: float = 0.95
    batch_size: int = 512
    lr: float = 1e-3
    buffer: int = 131072  # aggregated (state, teacher action) pairs, oldest dropped first
    prioritise: float = 4.0  # a clip's chance at a reset or a switch: 1 + prioritise x its last failure rate
    eval_every: int = 25
    eval_episodes: int = 2
    eval_noise: float = 0.02
    # random command pairs whose transitions each evaluation also scores (`superpadl.evaluate`; 0: none); the policy
    # kept is the one with the best `superpadl.evaluate.kept_score`. The same pairs each time: evaluations compare
    # alike, and their env compiles once (a new one cost 49 of an evaluation's 58 s on the CPU)
    eval_transitions: int = 40
    # simulated minutes of real use (`superpadl.endurance.training_eval`: captions from the start pose, held 2-20 s,
    # through the runtime) each evaluation also scores, which `kept_score` weighs; 0: none
    eval_real_use_minutes: float = 0.0
    checkpoint_every: int = 10
    seed: int = 0


def caption_table(library: MotionLibrary, clips: list[str], encoder=None):
    """(captions, their clip ids, embeddings (M, 384)) of the clips, from the library's cached table."""
    from superpadl.text import clip_caption_embeddings

    captions, owners, emb = [], [], []
    for clip, (caps, e) in zip(clips, clip_caption_embeddings(library, clips, encoder)):
        captions += caps
        owners += [clip] * len(caps)
        emb.append(e)
    return captions, owners, np.concatenate(emb).astype(np.float32)


class Carry(NamedTuple):
    """What a DAgger rollout carries from one iteration to the next."""

    env_state: Any
    hist: jax.Array  # (N, window + 1, 84)
    command: jax.Array  # (N,) library clip index each env is commanded to perform
    caption: jax.Array  # (N,) row of the caption table the student is shown
    clock: jax.Array  # (N,) seconds since the command began (the clip time after a reference-state start)
    start: jax.Array  # (N, 3) `student.root_frame` where it began (the clip's first frame after a reference-state start)
    # (N,) the clip commanded while the current one finishes (`CommandSchedule.finish_s`), -1 for none; None: none yet
    pending: jax.Array | None = None
    shown_start: jax.Array | None = None  # (N, 3) where the student's command began (the runtime's start); None: start


class Commands(NamedTuple):
    """The clips a DAgger rollout commands (library indices)."""

    clips: jax.Array  # (K,) the clips a command switches to, drawn by the env's clip weights
    draw_caption: Callable  # (key, (N,) clips) -> (N,) rows of the caption table
    starts: jax.Array  # (C, 3) each clip's first frame (`student.clip_starts`)
    ends: jax.Array  # (C,) a non-looping clip's duration, inf for a looping one (`student.clip_ends`)
    idle: int = -1  # the idle clip (`student.idle_clip`); -1: none
    moves: jax.Array | None = None  # (C,) bool: locomotion clips (`endurance.locomotion_directions`); None: none
    # (C,) bool: get-up clips (`padl.falls.lying_clips`), begun only where an episode starts lying (a fall) and not
    # switched away from until over, as `SimLoop` holds a get-up until the character stands; None: none
    lying: jax.Array | None = None


def dagger_rollout(env, carry: Carry, student, teacher, by_teacher, emb, hcfg, steps: int, key, commands: Commands,
                   schedule: CommandSchedule, stop_teacher=None):
    """`steps` control steps of DAgger data collection: each env is driven by the student (or by the teacher where
    by_teacher), and every state the batch visits is labelled with teacher(own state, history, command,
    heading), the teacher's action on that very state. Commands switch on average every `schedule.switch_every_s`,
    and with probability `end_switch` when the command's clip is over (`commands.ends`), to a clip drawn by the
    env's clip weights (to the idle clip, `commands.idle`, where there is one, its caption shown: the runtime
    conditions the policy on standing after a one-shot clip, `PolicyController`), restarting the clock and the start
    frame; after an episode ends, the command is the env's new clip, begun at its start (`commands.starts`).

    A switch that comes in the last `finish_s` of a non-looping clip is shown to the student at once but labelled
    by the old clip's teacher until that clip ends, then by the new one's: the student learns to finish a skill's
    recovery (stepping back out of a lunge) before the next, where no teacher of the next skill can start from the
    middle of it. The command's clock and the teacher's start frame count from the handover.

    A share `rest_switch` of the episodes that begin at a clip's first frame are commanded another clip at once: a
    user's first command, given in the rest pose the viewer starts in, which is rarely the commanded clip's own.

    With an idle clip (`commands.idle`), a command kept past its non-looping clip's end is
    labelled from then on by the idle clip's teacher, begun where the character stands, while the student still
    sees the command: a one-shot skill finishes and returns to standing, however long its command is held. With
    `schedule.brake_s` and `commands.moves`, a switch to a clip that is not locomotion while the character moves is
    labelled by the idle clip's teacher until it is slow (or brake_s is over), then by the new clip's; a user's
    switch to locomotion meanwhile takes over at once. With a
    `stop_teacher` (same arguments as `teacher`), the braking is labelled by it instead, "stand still" given while
    moving too: a teacher taught to stop from a jog stands in another stance than the one every gesture starts from,
    so it labels the stop alone.
    Returns (carry, (student inputs (T, N, D), teacher labels (T, N, A), executed actions (T, N, A)),
    (falls, switches))."""
    env_state, hist, command, caption, clock, start, pending, shown_start = carry
    n = hist.shape[0]
    pending = jnp.full((n,), -1, jnp.int32) if pending is None else pending
    shown_start = start if shown_start is None else shown_start
    cmd = (hist, command, caption, clock, start, pending, shown_start)
    xs, ys, executed, counts = [], [], [], jnp.zeros(2)
    for _ in range(steps):
        key, keys, x, t_in = dagger_inputs(S.view(env_state), cmd, emb, key, hcfg)
        a_teacher = teacher(*t_in)
        if stop_teacher is not None:
            a_teacher = jnp.where(braking(cmd, commands.idle)[:, None], stop_teacher(*t_in), a_teacher)
        a = jnp.where(by_teacher[:, None], a_teacher, student(x, keys[0]))
        new = env.step(env_state, a)
        xs.append(x), ys.append(a_teacher), executed.append(a)
        cmd, counts = dagger_commands(S.view(new), cmd, counts, keys, commands.clips, commands.starts, commands.ends,
                                      commands.moves,
                                      env=env, hcfg=hcfg, draw_caption=commands.draw_caption, idle=commands.idle,
                                      schedule=schedule, stop_teacher=stop_teacher is not None,
                                      lying=commands.lying)
        env_state = new
    falls, switches = map(float, counts)
    return Carry(env_state, *cmd), tuple(map(jnp.stack, (xs, ys, executed))), (falls, switches)


def braking(cmd, idle: int) -> jax.Array:
    """(N,) envs whose idle teacher stops the character before a pending command (`CommandSchedule.brake_s`)."""
    _, command, _, _, _, pending, _ = cmd
    return (command == idle) & (pending >= 0)


@functools.partial(jax.jit, static_argnames="hcfg")
def dagger_inputs(state, cmd, emb, key, hcfg):
    """A `dagger_rollout` step's inputs as one jitted call: (next key, the step's 6 keys (the student's first), the
    student's input, the teacher's arguments (policy observation, history, command, heading))."""
    hist, command, caption, _, start, _, shown_start = cmd
    key, *keys = jax.random.split(key, 7)
    pobs, _ = S.env_proprio(state)
    root = S.root_frame(state.qpos)
    x = S.student_input(pobs, hist, emb[caption], hcfg, S.heading_features(shown_start, root))
    return key, jnp.stack(keys), x, (pobs, hist, command, S.heading_features(start, root))


@functools.partial(jax.jit, static_argnames=("env", "hcfg", "draw_caption", "idle", "schedule", "stop_teacher"))
def dagger_commands(new, cmd, counts, keys, train_clips, starts, clip_end, moves, env, hcfg, draw_caption, idle: int,
                    schedule: CommandSchedule, stop_teacher: bool = False, lying=None):
    """A `dagger_rollout` step's commands after the env stepped to `new`, as one jitted call (no host sync): switches,
    handovers, idle holds and restarts, the history pushed in; `counts` (falls, user switches) accumulated."""
    hist, command, caption, clock, start, pending, shown_start = cmd
    k_act, k_sw, k_clip, k_cap, k_end, k_rest = keys
    n = hist.shape[0]
    dt = 1.0 / env.config.physics.control_hz
    end_switch, finish_s, rest_switch = schedule.end_switch, schedule.finish_s, schedule.rest_switch
    p_switch = dt / schedule.switch_every_s
    restart = new.done | new.truncated
    left = clip_end[command] - (clock + dt)  # of the command's clip after this step
    over = left <= 1e-6
    brakes = schedule.brake_s > 0 and idle >= 0 and moves is not None
    moving = jnp.linalg.norm(new.qvel[:, :2], axis=-1) > E.LOCOMOTION_SPEED
    # the idle teacher stopping the character before the pending command (`brake_s`) hands over once it is slow
    stopping = braking(cmd, idle) if brakes else jnp.zeros((n,), bool)
    handover = ~restart & (pending >= 0) & jnp.where(stopping, ~moving | (clock + dt >= schedule.brake_s), over)
    # end_switch 1: every command past its clip's end switches; below 1, a draw at the step the clip ends
    # decides, and a command kept past its end is not drawn for again
    if end_switch >= 1.0:
        ends_now = over
    else:
        ends_now = S.ending(clock, clip_end[command], dt) & (jax.random.uniform(k_end, (n,)) < end_switch)
    lying = jnp.zeros(clip_end.shape, bool) if lying is None else lying
    getting_up = lying[command] & ~over  # no command cuts a get-up short
    user = ~restart & ~handover & ~getting_up & ((jax.random.uniform(k_sw, (n,)) < p_switch)
                                                 | (ends_now & (pending < 0)))
    to_idle = (idle >= 0) & ~restart & ~handover & ~user & over & (command != idle)
    weights = jnp.where(lying[train_clips], 0.0, new.clip_weights)  # nothing switches to a get-up
    other = train_clips[weighted_choice(jax.random.uniform(k_clip, (n,)), weights)]
    # a command that switches at its clip's end switches to standing, shown to the student as the runtime shows it
    other = jnp.where((idle >= 0) & ends_now & ~restart & (command != idle), idle, other)
    # locomotion given while braking for a gesture takes over at once: nothing waits for the stop any more
    jump = user & stopping & moves[other] if brakes else jnp.zeros((n,), bool)
    finishing = user & ~jump & ((pending >= 0) | (~over & (left <= finish_s)))
    switch = user & ~finishing  # the teacher switches now
    # standing given while moving brakes too where another teacher labels the braking than the standing one
    brake = switch & moving & ~moves[other] & ((other != idle) | stop_teacher) if brakes else jnp.zeros((n,), bool)
    rest = restart & (new.clip_time <= 1e-6) & ~lying[new.clip] & (jax.random.uniform(k_rest, (n,)) < rest_switch)
    first = jnp.where(rest, other, new.clip)  # the command an episode begins with
    caption = jnp.where(restart | user, draw_caption(k_cap, jnp.where(restart, first, other)), caption)
    new_root = S.root_frame(new.qpos)
    began = switch | handover | rest | to_idle  # the teacher's command begins here, where the character stands
    # where the clip begins, re-anchored as the env started it (a foreign start, `starts.foreign_share`)
    restart_start = jnp.where(rest[:, None], new_root, S.anchored(starts[new.clip], new.anchor))
    command = jnp.where(restart, first, jnp.where(switch, jnp.where(brake, idle, other), jnp.where(
        handover, pending, jnp.where(to_idle, idle, command))))
    pending = jnp.where(restart | handover | jump, -1, jnp.where(finishing | brake, other, pending))
    clock = jnp.where(began, 0.0, jnp.where(restart, new.clip_time, clock + dt))
    start = jnp.where(began[:, None], new_root, jnp.where(restart[:, None], restart_start, start))
    shown_start = jnp.where(restart[:, None], restart_start, jnp.where(user[:, None], new_root, shown_start))
    hist = S.push_step(hist, env, new, hcfg, jax.random.fold_in(k_act, 1))
    counts = counts + jnp.stack([jnp.sum(new.done), jnp.sum(user)]).astype(counts.dtype)
    return (hist, command, caption, clock, start, pending, shown_start), counts


class _Stage(Stage):
    """The global policy's iteration: a DAgger rollout labelled by the group teachers, aggregated, one BC fit and a
    step of the Polyak average; the aggregated data and the rollout's carry live here (`padl.run.Stage`)."""

    desc = "global"

    def __init__(self, library: MotionLibrary, teachers: GroupTeachers, clips: list[str], cfg: GlobalConfig, encoder,
                 stop_teachers: GroupTeachers | None = None):
        hcfg = self.hcfg = teachers.history
        self.stop_teachers = stop_teachers
        group_env = teachers.env_config()
        env_cfg = replace(cfg.env, clips=tuple(clips), obs=group_env.obs,
                          physics=dict(control_hz=group_env.physics.control_hz))
        self.cfg = cfg = dataclasses.replace(cfg, env=env_cfg)
        self.library, self.teachers, self.clips = library, teachers, clips
        self.env = env = ImitationEnv(library, env_cfg)
        self.batch = cfg.rollout_steps * env.num_envs
        captions, owners, self.emb = caption_table(library, clips, encoder)
        self.encoder = encoder
        lib_index = np.asarray([library.index(c) for c in owners])
        rows = [np.flatnonzero(lib_index == library.index(c)) for c in library.clip_ids]
        width = max(len(r) for r in rows)
        row_table = jnp.asarray([np.resize(r, width) if len(r) else np.zeros(width, int) for r in rows])
        row_count = jnp.asarray([len(r) for r in rows])
        self.first_row = jnp.asarray([r[0] if len(r) else 0 for r in rows])
        self.emb_j = jnp.asarray(self.emb)

        def draw_caption(k, clip):
            u = jax.random.uniform(k, clip.shape)
            return row_table[clip, jnp.minimum((u * row_count[clip]).astype(jnp.int32), row_count[clip] - 1)]

        idle = S.idle_clip(library, clips)
        ends = S.clip_ends(library)  # standing has no end to switch at: it is held as long as a user holds it
        ends = ends if idle < 0 else ends.at[idle].set(jnp.inf)
        moving = E.locomotion_directions(library.path)  # the clips real use judges as locomotion
        self.commands = Commands(jnp.asarray([library.index(c) for c in clips]), draw_caption,
                                 S.clip_starts(library), ends, idle,
                                 jnp.asarray([c in moving for c in library.clip_ids]), jnp.asarray(lying_clips(library)))
        self.in_size = S.input_size(hcfg, EMBED_DIM)
        # the runtime's start pose: the standing skill's first frame, which it idles in before any command
        self.start_qpos = E.start_pose(library, clips).astype(np.float32)
        # what real use and transitions judge commands by (read once, not at every evaluation)
        self.directions, self.gestures = (E.command_checks(library) if cfg.eval_real_use_minutes or cfg.eval_transitions
                                          else ({}, {}))
        self.meta = {"kind": KIND, "global": to_dict(cfg), "history": to_dict(hcfg), "clips": clips,
                     "captions": captions, "caption_clips": owners, "input_size": self.in_size,
                     "action_size": env.action_size, "character": env.character.name,
                     "text_encoder": encoder_record(encoder), "one_shot_s": S.one_shot_durations(library, clips)}
        self.buf_x = ReplayBuffer.create(cfg.buffer, self.in_size)
        self.buf_y = ReplayBuffer.create(cfg.buffer, env.action_size)
        self.carry = None  # started by the first iteration

    def initial_state(self) -> dict:
        cfg = self.cfg
        state = {"ppo": ppo.init(jax.random.key(cfg.seed), self.in_size, self.env.action_size, cfg.ppo),
                 "key": jax.random.key_data(jax.random.key(cfg.seed + 1)), "iteration": np.int64(0),
                 "samples": np.int64(0), "clip_weights": np.ones(len(self.clips), np.float32),
                 "best": np.asarray([-1.0, -np.inf])}  # `kept_score` of the evaluation saved as the policy
        state["average"] = state["ppo"].policy_params
        return state

    def iterate(self, state: dict) -> dict:
        cfg, env = self.cfg, self.env
        T, N = cfg.rollout_steps, env.num_envs
        it, ts = int(state["iteration"]), state["ppo"]
        key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
        if self.carry is None:
            env_state, hist = S.start_training_envs(env, jax.random.fold_in(key, it), state["clip_weights"], self.hcfg)
            key, k0 = jax.random.split(key)
            command = jnp.asarray(env_state.clip)
            self.carry = Carry(env_state, hist, command, self.commands.draw_caption(k0, command),
                               jnp.asarray(env_state.clip_time),
                               S.anchored(self.commands.starts[command], jnp.asarray(env_state.anchor)))
        beta = S.teacher_share(it, cfg.commands)
        key, k_beta = jax.random.split(key)
        by_teacher = jax.random.uniform(k_beta, (N,)) < beta
        key, k_roll = jax.random.split(key)
        self.carry, (xs, ys, _), (dones, switches) = dagger_rollout(
            env, self.carry, lambda x, k: ppo.act(ts, x, k)[0], self.teachers.act, by_teacher, self.emb_j, self.hcfg,
            T, k_roll, self.commands, cfg.commands, self.stop_teachers and self.stop_teachers.act)
        flat_x = xs.reshape(T * N, -1)
        self.buf_x, self.buf_y = self.buf_x.add(flat_x), self.buf_y.add(ys.reshape(T * N, -1))
        ts = ts.replace(normalizer=update_normalizer(ts.normalizer, flat_x))
        key, k_bc = jax.random.split(key)
        ts, loss = ppo.imitate(ts, self.buf_x.data, self.buf_y.data, self.buf_x.size, k_bc, cfg.sgd_steps,
                               cfg.batch_size, cfg.lr)
        state.update(ppo=ts, key=jax.random.key_data(key),
                     average=optax.incremental_update(ts.policy_params, state["average"], 1.0 - cfg.average))
        return {"bc/loss": float(loss), "bc/beta": beta, "episode/fall_rate": dones / (T * N),
                "commands/switches_per_s": switches / (T * N) * cfg.env.physics.control_hz}

    def policy(self, state: dict) -> dict:
        """The averaged network, its normaliser, the caption table and a start pose: all the runtime needs."""
        return {"policy_params": state["average"], "normalizer": state["ppo"].normalizer, "caption_emb": self.emb,
                "start_qpos": self.start_qpos}

    def evaluate(self, state: dict, scalars: dict) -> tuple[dict, dict]:
        cfg, clips = self.cfg, self.clips
        averaged = state["ppo"].replace(policy_params=state["average"])
        per_clip = evaluate_policy(
            self.library, S.student_actor(functools.partial(mean_action, averaged), self.hcfg,
                                          lambda s: self.emb_j[self.first_row[jnp.asarray(s.clip)]]),
            clips=clips, episodes=cfg.eval_episodes, noise=cfg.eval_noise,
            env_config=replace(cfg.env, physics=dict(backend="mujoco"),  # as `superpadl eval`
                               episode=dict(max_body_error=EpisodeConfig.max_body_error, end_with_clip=True)))
        ev, success = per_clip["mean"], [per_clip[c]["success"] for c in clips]
        ev["worst_clip_success"] = min(success)
        if cfg.eval_transitions and len(clips) > 1:
            agent = GlobalAgent(GlobalPolicy(self.policy(state), self.meta), self.library)
            ev["transition_success"] = transition_success(agent, self.library, cfg.eval_transitions, 2.0, 3.0,
                                                          np.random.default_rng(cfg.seed),
                                                          (self.directions, self.gestures))["success"]
        practised = success
        if cfg.eval_real_use_minutes:
            from superpadl.runtime import PolicyController

            controller = PolicyController(GlobalPolicy(self.policy(state), self.meta), encoder=self.encoder)
            use = E.training_eval(controller, self.directions, cfg.eval_real_use_minutes, cfg.seed, self.gestures)
            practised = practised_success(success, clips, use.pop("clip_served"))
            ev.update(use)
        state["clip_weights"] = clip_priorities(practised, cfg.prioritise)
        self.carry = self.carry._replace(
            env_state=self.carry.env_state._replace(clip_weights=jnp.asarray(state["clip_weights"])))
        return ev, {**scalars, "clip_success": success}

    def score(self, evaluation: dict) -> tuple[float, float]:
        return kept_score(evaluation)

    def postfix(self, scalars: dict) -> dict:
        return {"bc": f"{scalars['bc/loss']:.4f}", "falls": f"{scalars['episode/fall_rate']:.4f}"}


def train_global(library: MotionLibrary, teachers: GroupTeachers, out: str | Path, cfg: GlobalConfig = GlobalConfig(),
                 clips: list[str] | None = None, resume: bool = False, iterations: int | None = None,
                 progress: bool = True, log=print, time_limit_s: float | None = None, encoder=None,
                 init_from: str | Path | None = None, force: bool = False,
                 stop_teachers: GroupTeachers | None = None) -> dict:
    """Train (or resume) the global policy on the clips the group teachers cover; returns its last evaluation.
    `init_from` (a global policy with the same inputs) starts a new run from its network and normaliser: new
    teachers are distilled into it by fine-tuning, not from scratch. A new run refuses to overwrite a policy kept in
    `out` by an earlier one unless `force` (`checkpoint.prepare_run`). `stop_teachers` (controllers covering the idle
    clip) label the braking before a command that is not locomotion (`dagger_rollout`)."""
    from superpadl.text import default_encoder

    out = Path(out)
    run = Run(out, KIND, "SuperPADL global run", resume, force, log)
    encoder = encoder or default_encoder()
    if run.saved:
        cfg, clips = from_dict(GlobalConfig, run.saved["global"]), run.saved["clips"]
        if "text_encoder" in run.saved:  # a run goes on with the encoder it began with
            check_encoder(run.saved["text_encoder"], encoder, out / f"{TRAIN_STATE}.json")
    covered = [c for i, c in enumerate(library.clip_ids) if teachers.clip_owner[i] >= 0]
    clips = list(clips or covered)
    if missing := [c for c in clips if c not in covered]:
        raise ValueError(f"clip {missing[0]!r} has no group controller")
    idle = S.idle_clip(library, clips)
    if stop_teachers is not None and (cfg.commands.brake_s <= 0 or idle < 0 or stop_teachers.clip_owner[idle] < 0):
        raise ValueError("stop teachers need commands.brake_s > 0 and a controller of the idle clip")
    stage = _Stage(library, teachers, clips, cfg, encoder, stop_teachers)
    state = stage.initial_state()
    if run.saved:
        state = run.resume(state, kept_score)
    elif init_from is not None:
        loaded = GlobalPolicy.load(init_from)
        tree, source = loaded.tree, loaded.meta
        if (source["input_size"], S.saved_history(source["history"])) != (stage.in_size, stage.hcfg):
            raise checkpoint.CheckpointError(f"{init_from}: its inputs ({source['input_size']}, history "
                                             f"{source['history']}) are not this run's ({stage.in_size}, "
                                             f"{stage.meta['history']})")
        state["ppo"] = state["ppo"].replace(policy_params=tree["policy_params"], normalizer=tree["normalizer"])
        state["average"] = tree["policy_params"]
        log(f"starting from {init_from} (iteration {source['iteration']})")
    return run.train(stage, state, stage.cfg.iterations if iterations is None else iterations, progress,
                     time_limit_s)
