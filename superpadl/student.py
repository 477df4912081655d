"""What the distilled policies (group controllers and the global policy) see and do, shared by training and runtime.

A student sees no reference motion: only the character's own state (the environment's 223-D policy observation),
a strided history of its discriminator frames (84-D: root height, rotation and velocities, joint angles and
velocities, key bodies; default 5 frames spaced 8 control steps apart over the last 40, as in SuperPADL) and a
condition (a clip's one-hot index in its group, or a text embedding); with `heading` also how far its root has
turned and stepped sideways since its command began (`heading_features`), the drift its experts see against their
reference. The command's start is where the
character stood when it was given; in training, after a reference-state start, the clip's first frame. It outputs
absolute PD targets, since there is no reference pose to be residual to; teachers' residual actions are converted
with `to_absolute`.

The history buffer holds the last `window + 1` frames, newest first. The runtime and evaluation start it with the
first frame repeated; in training, an episode (re)started at a reference state gets either that or the
reference's own past (`restart_fill`), so a student that starts mid-skill sees a past it can meet later.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from motions import kinematics as K
from motions.library import MotionLibrary
from padl import observations as O


@dataclass(frozen=True)
class HistoryConfig:
    frames: int = 5  # history frames the policy sees
    window: int = 40  # control steps they span: frames at t - window/frames * (1..frames)
    # Also see how far the root has turned and stepped sideways since the command began (`heading_features`): a
    # reference-free student cannot otherwise tell a straight walk from one that veers, and its experts' labels
    # correct a drift it cannot see.
    heading: bool = False
    # Training only: the share of reference-state (re)starts whose history is the reference's own past; the rest
    # repeat their first frame, as the runtime and `padl.evaluate` start. Repeating alone shows a student
    # that starts mid-skill a still past it never meets later, during the first `window` steps of every episode.
    reference_restarts: float = 0.5


def saved_history(saved: dict) -> HistoryConfig:
    """The history a saved policy was trained with, in today's terms (removed options dropped: `padl.config`), to
    compare with a run's."""
    from padl.config import from_dict

    return from_dict(HistoryConfig, saved)


def history_offsets(cfg: HistoryConfig) -> np.ndarray:
    if cfg.frames < 1 or cfg.window % cfg.frames:
        raise ValueError(f"history window {cfg.window} must be a positive multiple of frames {cfg.frames}")
    return (cfg.window // cfg.frames) * np.arange(1, cfg.frames + 1)


def init_history(frame: jax.Array, cfg: HistoryConfig) -> jax.Array:
    """(N, window + 1, F): every slot holds the current frame."""
    return jnp.repeat(frame[:, None], cfg.window + 1, axis=1)


def push_history(hist: jax.Array, frame: jax.Array, restart: jax.Array, fill: jax.Array | None = None) -> jax.Array:
    """Shift the newest frame in; envs that restarted (N,) bool get `fill` (N, window + 1, F), by default a
    history of their first frame only."""
    shifted = jnp.concatenate([frame[:, None], hist[:, :-1]], axis=1)
    return jnp.where(restart[:, None, None], frame[:, None] if fill is None else fill, shifted)


def restart_fill(env, state, frame: jax.Array, cfg: HistoryConfig, key, rows: jax.Array | None = None) -> jax.Array:
    """(N, window + 1, F) histories for envs that (re)started at a reference state: the reference's past up to
    the current frame for a share `cfg.reference_restarts` of them (drawn per env), the current frame repeated
    for the others. With `rows` (K,), only those envs' (K, window + 1, F), drawn as among all N."""
    use = jax.random.uniform(key, (frame.shape[0],)) < cfg.reference_restarts
    if rows is not None:
        state = state._replace(clip=state.clip[rows], clip_time=state.clip_time[rows])
        frame, use = frame[rows], use[rows]
    past = env.reference_history(state, cfg.window + 1).at[:, 0].set(frame)
    return jnp.where(use[:, None, None], past, frame[:, None])


def restart_rows(n: int) -> int:
    """How many restarted envs of n `push_step` fills per step without computing every env's reference past: a few
    of 192 restart in a step, and the past of all 192 (41 reference frames each) cost 8.5 ms a step, 2 with this
    (`benchmarks/distill_training.py`)."""
    return max(1, n // 16)


def start_training_envs(env, key, clip_weights, cfg: HistoryConfig):
    """(env state, history) of a trainer's fresh batch: reference-state starts drawn by `clip_weights` (C,), and
    their histories from `restart_fill`."""
    state = env.reset(key)._replace(clip_weights=jnp.asarray(clip_weights))
    return state, restart_fill(env, state, env_proprio(state)[1], cfg, jax.random.fold_in(key, 1))


def push_step(hist: jax.Array, env, new, cfg: HistoryConfig, key) -> jax.Array:
    """The history after a training env's step to `new`: its frame pushed in, and `restart_fill` for the envs
    that (re)started. Meant for a trainer's jitted step, with no host sync: the reference's past is computed only
    for the envs that restarted, up to `restart_rows` of them, or for all when more did (`lax.cond`)."""
    restart, frame = jnp.asarray(new.done | new.truncated), env_proprio(new)[1]
    k, count = restart_rows(restart.shape[0]), restart.sum()
    none = lambda: jnp.broadcast_to(frame[:, None], hist.shape)

    def some():  # the first k restarted envs (padded with duplicates of one, which write the same rows)
        rows = jnp.nonzero(restart, size=k, fill_value=jnp.argmax(restart))[0]
        return none().at[rows].set(restart_fill(env, new, frame, cfg, key, rows))

    every = lambda: restart_fill(env, new, frame, cfg, key)
    fill = jax.lax.switch(jnp.minimum(count, 1) + (count > k), [none, some, every])
    return push_history(hist, frame, restart, fill)


def teacher_share(iteration: int, schedule) -> float:
    """The share of envs the teachers drive (DAgger's beta): from all, down to `beta_floor` over `beta_iterations`
    (fields of a `GroupConfig` or of the global stage's `CommandSchedule`). A floor keeps states the teachers know
    in the aggregated data: once only the student drives, labels come from states ever further from the teachers'
    own, where their actions are guesses too."""
    decay = max(0.0, 1.0 - iteration / schedule.beta_iterations) if schedule.beta_iterations else 0.0
    return max(schedule.beta_floor, decay)


def view(state):
    """The fields of an `EnvState` the students' jitted steps read, the others None: a jitted call flattens and
    checks every leaf it is passed, and the reset pool alone has dozens."""
    keep = ("qpos", "qvel", "clip", "clip_time", "disc_hist", "obs", "done", "truncated", "disc_obs", "clip_weights",
            "anchor")
    return state._replace(**{f: None for f in state._fields if f not in keep})


def strided(hist: jax.Array, cfg: HistoryConfig) -> jax.Array:
    """(N, frames * F): the frames at the history offsets, nearest first."""
    return hist[:, history_offsets(cfg)].reshape(hist.shape[0], -1)


HEADING_SIZE = 3


def root_frame(qpos) -> jax.Array:
    """(N, 3) root x, y and heading (yaw about z) of simulation states (N, 35)."""
    q = jnp.asarray(qpos, jnp.float32)
    w, x, y, z = (q[:, 3 + i] for i in range(4))
    return jnp.stack([q[:, 0], q[:, 1], jnp.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))], axis=-1)


def clip_starts(library) -> jax.Array:
    """(C, 3) `root_frame` of each library clip's first frame: where a command begins in training, when an episode
    starts on the reference (the env places the character on the reference as it is, not re-anchored)."""
    n = len(library.clip_ids)
    return root_frame(library.sample(jnp.arange(n), jnp.zeros(n, jnp.float32)).qpos)


def clip_ends(library) -> jax.Array:
    """(C,) seconds after which each library clip's command is over: a non-looping clip's duration, inf for a
    looping one."""
    return jnp.where(library.data.loop, jnp.inf, jnp.asarray(library.durations, jnp.float32))


def ending(clock: jax.Array, end: jax.Array, dt: float) -> jax.Array:
    """(N,) bool: the command's clip (`end` (N,) s from `clip_ends`) ends at this control step of `dt` s. A
    command already past its end (a clip's hold) is not ending."""
    return (clock < end - 1e-6) & (clock + dt >= end - 1e-6)


def anchored(start: jax.Array, anchor: jax.Array) -> jax.Array:
    """`root_frame`s (N, 3) moved by env anchors (N, 3) = (yaw, x, y) (`padl.env.anchor_ref`): where a clip
    re-anchored at the character begins."""
    c, s = jnp.cos(anchor[:, 0]), jnp.sin(anchor[:, 0])
    x, y = start[:, 0], start[:, 1]
    return jnp.stack([c * x - s * y + anchor[:, 1], s * x + c * y + anchor[:, 2], start[:, 2] + anchor[:, 0]], -1)


def heading_features(start: jax.Array, root: jax.Array) -> jax.Array:
    """(N, 3): sine and cosine of the heading change since the command began, and the sideways offset (m, in the
    start's heading frame, clipped to +-1) from where it began; both `root_frame`s (N, 3). Forward progress is left
    out: it grows without bound on a looping walk and would act as a clock."""
    dyaw = root[:, 2] - start[:, 2]
    d = root[:, :2] - start[:, :2]
    lateral = -jnp.sin(start[:, 2]) * d[:, 0] + jnp.cos(start[:, 2]) * d[:, 1]
    return jnp.stack([jnp.sin(dyaw), jnp.cos(dyaw), jnp.clip(lateral, -1.0, 1.0)], axis=-1)


def student_input(policy_obs: jax.Array, hist: jax.Array, condition: jax.Array, cfg: HistoryConfig,
                  heading: jax.Array | None = None) -> jax.Array:
    """The student's input; `heading` (N, 3) `heading_features` is needed when cfg.heading."""
    if cfg.heading and heading is None:
        raise ValueError("this student sees its heading since the command: pass heading_features")
    parts = [policy_obs, strided(hist, cfg), condition] + ([heading] if cfg.heading else [])
    return jnp.concatenate(parts, axis=-1)


def input_size(cfg: HistoryConfig, condition: int) -> int:
    sizes = O.obs_sizes()
    return (sizes["policy"] + cfg.frames * sizes["disc_frame"] + condition
            + (HEADING_SIZE if cfg.heading else 0))


def env_proprio(state) -> tuple[jax.Array, jax.Array]:
    """(policy observation (N, 223), current discriminator frame (N, 84)) of an `EnvState`."""
    return state.obs[:, :O.obs_sizes()["policy"]], state.disc_hist[:, 0]


def make_proprio(character):
    """A jitted (qpos, qvel) (N, ...) -> (policy observation, discriminator frame): what `env_proprio` reads, from
    a bare simulation state (the runtime's view)."""
    skel, key_bodies = K.Skeleton.from_model(character.model), np.asarray(character.key_bodies)

    @jax.jit
    def proprio(qpos, qvel):
        body = K.forward_kinematics(skel, qpos)
        lin, ang = O.body_velocities(skel, qpos, qvel, body.pos, body.rot)
        return O.policy_obs(body.pos, body.rot, lin, ang), O.disc_obs_frame(qpos, qvel, body.pos[:, key_bodies])

    return proprio


def joint_limits(character) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(actuated joint index per actuator, lower, upper PD target limits)."""
    m = character.model
    return (np.asarray(character.actuator_joint), np.asarray(m.actuator_ctrlrange[:, 0], np.float32),
            np.asarray(m.actuator_ctrlrange[:, 1], np.float32))


def to_absolute(targets, low, high):
    """PD targets (rad) -> absolute actions in [-1, 1] (the inverse of the environment's absolute mode)."""
    return 2.0 * (targets - low) / (high - low) - 1.0


def from_absolute(action, low, high):
    return (low + 0.5 * (jnp.clip(action, -1.0, 1.0) + 1.0) * (high - low)).clip(low, high)


@functools.partial(jax.jit, static_argnames="cfg")
def _see(hist, start, state, new_command, cfg: HistoryConfig):
    """`command_frames`' step as one jitted call: (policy observation, history, start, heading features)."""
    pobs, frame = env_proprio(state)
    root = root_frame(state.qpos)
    if hist is None:
        hist, start = init_history(frame, cfg), root
    else:
        hist = push_history(hist, frame, jnp.zeros(frame.shape[0], bool))
    if new_command is not None:
        start = jnp.where(jnp.asarray(new_command)[:, None], root, start)
    return pobs, hist, start, heading_features(start, root)


def command_frames(cfg: HistoryConfig):
    """A stateful see(env_state, new_command=None) -> (policy observation, history, heading features) for an env
    batch a student drives: the history and the command's start frame both begin at the first state seen; the start
    frame restarts where the (N,) bool `new_command` is set."""
    hist = start = None

    def see(state, new_command=None):
        nonlocal hist, start
        pobs, hist, start, heading = _see(hist, start, view(state), new_command, cfg)
        return pobs, hist, heading

    return see


_student_input = jax.jit(student_input, static_argnames="cfg")


def student_actor(policy, cfg: HistoryConfig, condition):
    """A stateful `act(env_state)` for `padl.evaluate` (`command_frames`) that calls policy(student input) with
    condition(env_state)."""
    see = command_frames(cfg)

    def act(state):
        pobs, hist, heading = see(state)
        return policy(_student_input(pobs, hist, condition(state), cfg=cfg, heading=heading))

    return act


def one_shot_durations(library: MotionLibrary, clips: list[str]) -> dict[str, float]:
    """{clip: seconds} of the non-looping clips: a runtime command of one outlives it, and the controller then
    idles in the standing skill (`superpadl.runtime.PolicyController`)."""
    return {c: float(library.durations[library.index(c)]) for c in clips
            if not bool(library.data.loop[library.index(c)])}


def idle_clip(library: MotionLibrary, clips: list[str]) -> int:
    """Library index of the first of `clips` captioned as standing (`motions.captions.STANDING_CAPTIONS`): the
    skill a held one-shot command returns to (`dagger_rollout`); -1 when there is none."""
    from motions.captions import STANDING_CAPTIONS

    for clip in clips:
        if set(library.captions[library.index(clip)]) & set(STANDING_CAPTIONS):
            return library.index(clip)
    return -1
