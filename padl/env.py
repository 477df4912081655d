"""The batched imitation environment: one functional interface, two physics backends.

`ImitationEnv(library, config)` has `reset(key) -> EnvState` and `step(state, action) -> EnvState`. Everything
after the physics (observation, reward, termination, automatic reset by reference-state initialisation) is one
pure JAX function of arrays, `_Core.post`, shared by both backends:

- `mujoco`: MuJoCo C, many MjData stepped on a thread pool by `mujoco.batch.Batch`; the state arrays are
  copied in and out each step (so `step` stays a function of its input state) and `post` runs as one jit.
- `mjx`: `mujoco.mjx`, physics plus `post` compiled into one XLA program (vmapped), sharded over local devices
  when there are several. The MJX model uses 2 solver / 4 line-search iterations (stable, ~4x faster than the
  defaults on CPU); the MuJoCo C model keeps the MJCF's settings.

Finished environments are reset inside `step`; `final_obs` and `disc_obs` keep what the finished episode saw
last (for bootstrapping truncated returns and for the discriminator). A physics blow-up (non-finite or huge
state, or MuJoCo resetting an unstable simulation) or a non-finite action ends only that environment, with
reward 0, and is counted in `info`; the batch never raises for it.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from characters.character import Character
from motions import kinematics as K
from motions.library import MotionLibrary, sample_reference
from padl import observations as O
from padl.falls import facing_z, fallen_states, lying_clips
from padl.rewards import RewardConfig, mean_body_pos_error, tracking_terms

COUNTERS = ("episodes", "falls", "body_error_terminations", "blowups", "nan_actions")
TERMS = ("pose", "vel", "key_body", "root", "tracking")


@dataclass(frozen=True)
class PhysicsConfig:
    backend: str = "auto"  # "auto" (mjx on an accelerator, else mujoco), "mjx" or "mujoco"
    num_threads: int = 0  # MuJoCo C threads; 0: all CPUs
    control_hz: float = 30.0
    physics_hz: float = 120.0  # must match the model's timestep
    mjx_iterations: int = 2
    mjx_ls_iterations: int = 4
    max_qvel: float = 1000.0  # |qvel| above this counts as a blow-up before it turns into NaN


@dataclass(frozen=True)
class ActionConfig:
    mode: str = "residual"  # residual: PD target = reference angle + scale * action; absolute: action -> joint range
    scale: float = 0.5  # rad per unit action (residual mode)


@dataclass(frozen=True)
class ObsConfig:
    ref_frames: int = 2  # future reference frames in the observation, at control-step spacing
    disc_frames: int = 10  # discriminator frames stacked in the state


@dataclass(frozen=True)
class EpisodeConfig:
    """When an episode ends, and where its reference is anchored."""

    length_s: float = 10.0
    end_with_clip: bool = True  # a non-looping clip's end ends the episode; False: the reference holds its last frame
    fall_height: float = 0.15  # m: a non-foot body origin below this, while its reference is ...
    fall_margin: float = 0.1  # m: ... at least this much above fall_height, is a fall
    max_body_error: float = 0.5  # m: mean body-position error that ends an episode
    # A non-looping clip's episode goes on this long past the clip's end, the reference held still in its last
    # frame, and starts are drawn over that span too: what follows a gesture is standing, not a new episode (a
    # command at run time outlives its clip). 0: episodes end with the clip (with `end_with_clip`).
    hold_s: float = 0.0
    recover_s: float = 0.0  # body-error terminations are waived in a clip's first recover_s (after a foreign start
    # or a switch the character cannot be on the new reference at once); falls still end the episode
    # In a clip's first recover_s, re-anchor the reference at the character's root and heading every step (it then
    # stays where the character got to): momentum carried over from the last skill (a sprint) may take steps to
    # brake, and a reference left where the command began would reward running back to that spot instead.
    recover_follow: bool = False
    # With recover_follow, also turn the reference to the character's heading (else only its position follows and
    # the heading stays the command's): a set-off from standing that may turn freely while it follows walked off
    # another way, up to 2 m backwards in 4 s (benchmarks/set_off.py, docs/experiments.md)
    follow_heading: bool = True
    # In the hold past a one-shot clip's end, re-anchor the reference at the character every step (heading as
    # `follow_heading`): standing is judged where the character stands, as the runtime anchors each command where it
    # begins, not by how far it swayed from where the clip ended (evaluations of long holds, `eval_hold_s`)
    hold_follow: bool = False
    # The clips whose episodes hold past their end (library ids); None: every non-looping clip. A distillation stage
    # practises standing on for as long as a user holds the command with the standing clip's expert alone, where
    # the other experts never learnt to stand on past their clips
    hold_clips: tuple[str, ...] | None = None
    # Re-anchor a looping clip's reference at the character's root and heading as each cycle begins, so body error
    # counts one cycle's drift, not ten seconds of it. For a policy that never sees the reference (a text command
    # names no heading), a jog 3 degrees off course is still a jog; evaluation of distilled policies uses this.
    anchor_cycles: bool = False


@dataclass(frozen=True)
class StartConfig:
    """Where episodes begin (reference-state initialisation, `_Core.start`)."""

    init: str = "random"  # "random" (time and clip) or "start" (t=0, env i on clip i mod C): evaluation
    first_frame_share: float = 0.0  # with init "random": the share of starts at a clip's first frame, where
    # evaluation and a student's commands begin (uniform times alone rarely start there)
    init_noise: float = 0.0  # std of Gaussian noise on joint angles (rad) and joint velocities (rad/s / 10) at a start
    # The share of starts in a foreign state, a reference state of another library clip at a random time, with the
    # own clip beginning at its first frame re-anchored at the character (as after a user's command switch,
    # `switch`): the stand-still teacher learnt to come to a stand from the other skills so (models/teachers). With
    # init "start" (evaluation) too, where `padl.evaluate.rollout` sets it explicitly.
    foreign_share: float = 0.0
    foreign_clips: tuple[str, ...] | None = None  # library clips whose states are foreign starts; None: all but get-ups
    # An npz of simulated states (`qpos` (P, nq), `qvel` (P, nv); `load_state_starts`) that foreign starts take
    # instead of other clips' reference states: where the runtime really hands a skill over (`superpadl
    # handover-states` records them). A teacher taught from the standing clip's reference frame fell from the same
    # stance a standing expert had held for 0.1 s (docs/experiments.md): a reference state is not a simulated one.
    state_starts: str | None = None
    # The share of a get-up clip's starts (a clip whose first frame lies on the floor) in a state a simulated fall
    # left the character in (`padl.falls`), face down or up as the clip begins, its reference re-anchored there: a
    # get-up has to work from where falls really end, not only from the clip's own first frame.
    fall_starts: float = 0.0
    reset_pool: int = 0  # new episode starts drawn ahead, refilled when used up (0: max(8, N/4)); see _Core.post


@dataclass(frozen=True)
class EnvConfig:
    num_envs: int = 64
    clips: tuple[str, ...] | None = None  # clip ids of the library to sample; None: all
    seed: int = 0  # used by reset() without a key
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    obs: ObsConfig = field(default_factory=ObsConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    starts: StartConfig = field(default_factory=StartConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)


class EnvState(NamedTuple):
    """Everything about a batch of N environments; arrays lead with N except `key` and the counters.

    qpos/qvel/warmstart are float64 numpy arrays with the mujoco backend (MuJoCo's own precision is kept
    between steps) and float32 JAX arrays with mjx.
    """

    qpos: jax.Array  # (N, 35)
    qvel: jax.Array  # (N, 34)
    warmstart: jax.Array  # (N, 34) solver warm start (qacc_warmstart), zero after a reset
    time: jax.Array  # (N,) physics time since the episode began
    clip: jax.Array  # (N,) int32 clip index into the library
    clip_time: jax.Array  # (N,) time in the clip (reference time)
    step: jax.Array  # (N,) int32 control steps since the episode began
    disc_hist: jax.Array  # (N, H, 84) discriminator frames, newest first
    ref: "RefWindow"  # (N, K, ...) the reference at the next K control steps; ref.qpos[:, 0] is the residual base
    obs: jax.Array  # (N, obs) policy observation (after any automatic reset)
    reward: jax.Array  # (N,) tracking reward of the last step
    terms: dict  # name -> (N,) reward terms of the last step
    done: jax.Array  # (N,) bool: terminated (fall, body error, blow-up, bad action)
    truncated: jax.Array  # (N,) bool: time limit or end of a non-looping clip, not terminated
    final_obs: jax.Array  # (N, obs) observation before the automatic reset (== obs where not reset)
    final_qpos: jax.Array  # (N, 35) simulated pose before the automatic reset (float32)
    disc_obs: jax.Array  # (N, H*84) stacked discriminator frames before the automatic reset
    info: dict  # per-env flags of the last step and cumulative counters (scalars, COUNTERS)
    key: jax.Array  # typed PRNG key
    pool: dict  # (P, ...) the fields above for P episode starts drawn ahead (reference-state initialisation)
    pool_next: jax.Array  # () int32: the first unused start in the pool
    clip_weights: jax.Array  # (C,) relative chance of each configured clip at a reset (uniform unless a trainer
    # prioritises, e.g. the clips it fails); new weights take effect when the pool is next drawn
    anchor: jax.Array  # (N, 3) yaw, x, y: the horizontal transform of this episode's reference (`anchor_ref`);
    # zero after a reset, set by `ImitationEnv.switch` so that a new clip begins where the character stands


def pd_targets(ref_joints, action, mode: str, scale: float, act_joint, low, high):
    """PD position targets per actuator from actions in [-1, 1] (numpy or JAX arrays alike). Actions are clipped
    here, as the environment clips what it trains on: a policy's mean action goes well past 1 in states off its clips,
    and unclipped in the runtime and in DAgger's expert labels it drove the experts unlike their training (a jog that set
    off in the environment fell from the same state in `SimLoop`, docs/experiments.md)."""
    action = action.clip(-1.0, 1.0)
    if mode == "residual":
        target = ref_joints[..., act_joint] + scale * action
    else:
        target = low + 0.5 * (action + 1.0) * (high - low)
    return target.clip(low, high)


def weighted_choice(u, weights):
    """Indices into `weights` (C,) drawn in proportion to them, from uniform numbers u in [0, 1) (inverse CDF)."""
    cdf = jnp.cumsum(jnp.asarray(weights, jnp.float32))
    return jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1], side="right"), cdf.shape[0] - 1)


def fallen(body_pos, ref_body_pos, non_foot: np.ndarray, fall_height: float, fall_margin: float):
    """(...,) bool: a non-foot body's origin is below fall_height while the reference's is clearly above it
    (by fall_margin). Comparing with the reference keeps crawls, rolls and get-ups (hands or knees on the floor
    by design) from counting as falls; for upright motions it is the usual "body below a height" rule."""
    z, zr = body_pos[..., non_foot, 2], ref_body_pos[..., non_foot, 2]
    return jnp.any((z < fall_height) & (zr >= fall_height + fall_margin), axis=-1)


class RefWindow(NamedTuple):
    """Reference frames per env: (N, T, ...) arrays, the parts of RefState the environment uses."""

    qpos: jax.Array
    qvel: jax.Array
    body_pos: jax.Array
    body_rot: jax.Array


def _yaw_quat(anchor):
    half = 0.5 * anchor[..., 0]
    return jnp.stack([jnp.cos(half), jnp.zeros_like(half), jnp.zeros_like(half), jnp.sin(half)], -1)


def _turn(v, q):
    return K.quat_rotate(jnp.broadcast_to(q, v.shape[:-1] + (4,)), v)


def anchor_points(pos, anchor):
    """Points (..., P, 3) turned and shifted by anchor (..., 3) = (yaw, x, y), as `anchor_ref` moves a reference."""
    shift = jnp.concatenate([anchor[..., 1:], jnp.zeros_like(anchor[..., :1])], -1)
    return _turn(pos, _yaw_quat(anchor)[..., None, :]) + shift[..., None, :]


def anchor_ref(ref: RefWindow, anchor) -> RefWindow:
    """Reference frames (N, T, ...) turned by yaw about z and shifted in xy by anchor (N, 3) = (yaw, x, y). MuJoCo's
    free-joint linear velocity is in the world frame (turned); its angular velocity is local (kept)."""
    q, per_frame = _yaw_quat(anchor), anchor[:, None]
    pos = anchor_points(ref.body_pos, per_frame)
    rot = K.quat_mul(jnp.broadcast_to(q[:, None, None], ref.body_rot.shape), ref.body_rot)
    qpos = jnp.concatenate([anchor_points(ref.qpos[..., None, :3], per_frame)[..., 0, :],
                            K.quat_mul(jnp.broadcast_to(q[:, None], ref.qpos[..., 3:7].shape), ref.qpos[..., 3:7]),
                            ref.qpos[..., 7:]], -1)
    qvel = jnp.concatenate([_turn(ref.qvel[..., :3], q[:, None]), ref.qvel[..., 3:]], -1)
    return RefWindow(qpos, qvel, pos, rot)


def anchor_between(ref_qpos, qpos, yaw=None):
    """(N, 3) the anchor that puts reference roots (N, 35) where the character's roots (N, 35) are, in xy and
    heading (the yaw of the root's forward axis, as the observations' heading frame); given `yaw` (N,), the
    reference is turned by that instead and only its position follows."""
    if yaw is None:
        yaw = K.heading_yaw(qpos[:, 3:7]) - K.heading_yaw(ref_qpos[:, 3:7])
    c, s = jnp.cos(yaw), jnp.sin(yaw)
    x, y = ref_qpos[:, 0], ref_qpos[:, 1]
    return jnp.stack([yaw, qpos[:, 0] - (c * x - s * y), qpos[:, 1] - (s * x + c * y)], -1)


def load_state_starts(path, nq: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
    """((P, nq) qpos, (P, nv) qvel) float32 of a state-starts file; ValueError naming the file when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as f:
            qpos, qvel = np.asarray(f["qpos"], np.float32), np.asarray(f["qvel"], np.float32)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such state-starts file") from None
    except (OSError, KeyError, ValueError, EOFError):
        raise ValueError(f"{path}: not a state-starts file (an npz of arrays qpos and qvel)") from None
    if qpos.ndim != 2 or qpos.shape[1] != nq or qvel.shape != (len(qpos), nv) or not len(qpos):
        raise ValueError(f"{path}: state starts must be qpos (P, {nq}) and qvel (P, {nv}) with P > 0, not "
                         f"{qpos.shape} and {qvel.shape}")
    if not (np.isfinite(qpos).all() and np.isfinite(qvel).all()):
        raise ValueError(f"{path}: state starts hold non-finite values")
    return qpos, qvel


def _take(ref, i):
    return jax.tree.map(lambda x: x[:, i], ref)


def _where(mask, new, old):
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (b.ndim - 1)), a, b), new, old)


class _Core:
    """The backend-independent, pure parts of the environment, closed over the library's arrays.

    Cost matters here (it runs after every physics step on the CPU path), and forward kinematics is most of
    it, so each step evaluates it only for the simulated bodies, for the one reference frame that enters the
    K-frame window, and for a pool of episode starts drawn ahead only when the pool runs out.
    """

    def __init__(self, library: MotionLibrary, config: EnvConfig, character: Character):
        if config.obs.ref_frames < 1:
            raise ValueError("obs.ref_frames must be at least 1 (the next frame is the reward's and the PD base)")
        self.cfg = config
        self.n = config.num_envs
        self.pool = config.starts.reset_pool or max(8, -(-self.n // 4))
        self.data = library.data
        self.skel = library.skeleton
        ids = list(config.clips) if config.clips is not None else library.clip_ids
        missing = [c for c in ids if c not in library.clip_ids]
        if missing:
            raise ValueError(f"clip {missing[0]!r} is not in the library")
        self.clips = jnp.asarray([library.index(c) for c in ids], jnp.int32)
        self.foreign = None  # the clips whose states foreign starts take: needed only where there are some
        low = lying_clips(library)
        if config.starts.foreign_share > 0:
            foreign = (list(config.starts.foreign_clips) if config.starts.foreign_clips is not None
                       else [c for c, lying in zip(library.clip_ids, low) if not lying])
            if missing := [c for c in foreign if c not in library.clip_ids]:
                raise ValueError(f"foreign clip {missing[0]!r} is not in the library")
            self.foreign = jnp.asarray([library.index(c) for c in foreign], jnp.int32)
        self.duration = jnp.asarray(np.maximum(library.durations, 1e-6), jnp.float32)
        # an episode's clip time
        held = config.episode.hold_clips
        if held is not None and (missing := [c for c in held if c not in library.clip_ids]):
            raise ValueError(f"episode.hold_clips: clip {missing[0]!r} is not in the library")
        self.holds = ~self.data.loop & (True if held is None else
                                        jnp.asarray([c in held for c in library.clip_ids]))  # (library clips,)
        self.span = jnp.where(self.holds, self.duration + config.episode.hold_s, self.duration)
        self.dt = 1.0 / config.physics.control_hz
        self.max_steps = int(round(config.episode.length_s * config.physics.control_hz))
        self.key_bodies = np.asarray(character.key_bodies)
        self.non_foot = np.setdiff1d(np.arange(len(character.body_names)), character.foot_bodies)
        m = character.model
        self.act_joint = np.asarray(character.actuator_joint)
        self.low, self.high = (np.asarray(m.actuator_ctrlrange[:, i], np.float32) for i in (0, 1))
        self.nv = m.nv
        self.sizes = O.obs_sizes(config.obs)
        first = np.asarray(library.sample(np.arange(len(library.clip_ids)), np.zeros(len(library.clip_ids))).qpos)
        self.lying = jnp.asarray(low)  # being low on a get-up's reference is the skill, not a fall
        self.handover = None  # the simulated states foreign starts take (`StartConfig.state_starts`)
        if config.starts.state_starts:
            q, v = load_state_starts(config.starts.state_starts, m.nq, m.nv)
            body = library.bodies(q)
            self.handover = RefWindow(*(jnp.asarray(x)[:, None] for x in (q, v, body.pos, body.rot)))
        if config.starts.fall_starts > 0:
            q, v = fallen_states(library, 256, seed=config.seed)
            body = library.bodies(q)
            self.fallen = RefWindow(*(jnp.asarray(x)[:, None] for x in (q, v, body.pos, body.rot)))
            same_side = np.sign(facing_z(q))[None] == np.sign(facing_z(first))[:, None]  # (C, P)
            self.fallen_logits = jnp.log(np.where(same_side.any(1, keepdims=True), same_side, True).astype(np.float32))

    # -- reference and observation ------------------------------------------------------------------------
    def refs(self, clip, times, anchor=None) -> RefWindow:
        """Reference frames (N, T, ...) of each env's clip at times (N, T): one batched library query; turned and
        shifted by `anchor` (N, 3) when given."""
        n, t = times.shape
        r = sample_reference(self.data, self.skel, jnp.repeat(clip, t), times.reshape(-1))
        ref = jax.tree.map(lambda x: x.reshape((n, t) + x.shape[1:]), RefWindow(r.qpos, r.qvel, r.body_pos, r.body_rot))
        return ref if anchor is None else anchor_ref(ref, anchor)

    def phase(self, clip, clip_time):
        p = clip_time / self.duration[clip]
        return jnp.where(self.data.loop[clip], p - jnp.floor(p), jnp.clip(p, 0.0, 1.0))

    def observe(self, qpos, qvel, clip, clip_time, ref: RefWindow, body: K.BodyState | None = None):
        """(policy+reference obs, discriminator frame, body state) of simulated states (N, ...); ref is the
        (N, K) window of coming reference frames; body the forward kinematics of qpos when already known."""
        body = K.forward_kinematics(self.skel, qpos) if body is None else body
        lin, ang = O.body_velocities(self.skel, qpos, qvel, body.pos, body.rot)
        obs = jnp.concatenate([
            O.policy_obs(body.pos, body.rot, lin, ang),
            O.reference_obs(qpos[:, :3], body.rot[:, 0], ref.body_pos, ref.body_rot, self.phase(clip, clip_time)),
        ], axis=-1)
        return obs, O.disc_obs_frame(qpos, qvel, body.pos[:, self.key_bodies]), body

    # -- reset ----------------------------------------------------------------------------------------------
    def _draw(self, key, m: int, weights=None):
        """m random (clip, time) pairs: a clip of the configured ones (uniform, or in proportion to `weights` (C,)),
        a uniform time in it (or in its hold, `EpisodeConfig.hold_s`)."""
        u = jax.random.uniform(key, (2, m))  # one PRNG call: each costs a loop on the CPU
        slot = (u[0] * len(self.clips)).astype(jnp.int32) if weights is None else weighted_choice(u[0], weights)
        clip = self.clips[jnp.minimum(slot, len(self.clips) - 1)]
        return clip, u[1] * self.span[clip]

    def reference_disc_obs(self, key, m: int):
        """((m, H*84) discriminator observations of the reference motion at random times, (m,) their clips):
        the "real" samples."""
        clip, time = self._draw(key, m)
        return self.past_frames(clip, time, self.cfg.obs.disc_frames).reshape(m, -1), clip

    def past_frames(self, clip, time, h: int):
        """(N, h, 84) discriminator frames of the reference at time, time - dt, ..., newest first."""
        past = self.refs(clip, time[:, None] - jnp.arange(h) * self.dt)
        return O.disc_obs_frame(past.qpos, past.qvel, past.body_pos[:, :, self.key_bodies])

    def start(self, key, m: int, weights=None) -> dict:
        """EnvState fields of m new episodes: reference-state initialisation at a random time of a random
        clip. The discriminator history is filled from the reference's past frames, as ASE does."""
        h, k = self.cfg.obs.disc_frames, self.cfg.obs.ref_frames
        key, noise_key = jax.random.split(key)
        anchor = jnp.zeros((m, 3), jnp.float32)
        if self.cfg.starts.init == "start":
            clip, time = self.clips[jnp.arange(m) % len(self.clips)], jnp.zeros((m,), jnp.float32)
        else:
            clip, time = self._draw(key, m, weights)
            if self.cfg.starts.first_frame_share > 0:
                first = jax.random.uniform(jax.random.fold_in(noise_key, 1), (m,)) < self.cfg.starts.first_frame_share
                time = jnp.where(first, 0.0, time)
        if self.cfg.starts.foreign_share > 0:
            u = jax.random.uniform(jax.random.fold_in(noise_key, 2), (3, m))
            if self.handover is None:
                other = self.foreign[jnp.minimum((u[0] * len(self.foreign)).astype(jnp.int32), len(self.foreign) - 1)]
                foreign = (u[1] < self.cfg.starts.foreign_share) & (other != clip) & ~self.lying[clip]
                src_clip = jnp.where(foreign, other, clip)
                src_time = jnp.where(foreign, u[2] * self.duration[other], time)
                time = jnp.where(foreign, 0.0, time)
                past = self.refs(src_clip, src_time[:, None] - jnp.arange(h) * self.dt)
            else:  # a simulated state, its history the state repeated (as a fall's)
                size = self.handover.qpos.shape[0]
                which = jnp.minimum((u[0] * size).astype(jnp.int32), size - 1)
                foreign = (u[1] < self.cfg.starts.foreign_share) & ~self.lying[clip]  # a get-up begins lying
                own_past = self.refs(clip, time[:, None] - jnp.arange(h) * self.dt)
                time = jnp.where(foreign, 0.0, time)
                past = _where(foreign, jax.tree.map(lambda x: jnp.repeat(x[which], h, axis=1), self.handover),
                              own_past)
            own = self.refs(clip, time[:, None] + jnp.arange(k + 1) * self.dt)
            anchor = jnp.where(foreign[:, None], anchor_between(own.qpos[:, 0], past.qpos[:, 0]), anchor)
            ref = anchor_ref(_take(own, slice(1, None)), anchor)
        else:
            frames = self.refs(clip, time[:, None] + jnp.concatenate([-jnp.arange(h), jnp.arange(1, k + 1)]) * self.dt)
            past, ref = _take(frames, slice(0, h)), _take(frames, slice(h, None))
        if self.cfg.starts.fall_starts > 0:
            k_fall, k_state = jax.random.split(jax.random.fold_in(noise_key, 3))
            fall = (jax.random.uniform(k_fall, (m,)) < self.cfg.starts.fall_starts) & self.lying[clip]
            which = jax.random.categorical(k_state, self.fallen_logits[clip])
            lying = jax.tree.map(lambda x: jnp.repeat(x[which], h, axis=1), self.fallen)  # (m, h, ...), at rest
            time = jnp.where(fall, 0.0, time)
            own = self.refs(clip, time[:, None] + jnp.arange(k + 1) * self.dt)
            at = anchor_between(own.qpos[:, 0], lying.qpos[:, 0])
            anchor = jnp.where(fall[:, None], at, anchor)
            past, ref = _where(fall, (lying, anchor_ref(_take(own, slice(1, None)), at)), (past, ref))
        hist = O.disc_obs_frame(past.qpos, past.qvel, past.body_pos[:, :, self.key_bodies])
        qpos, qvel = past.qpos[:, 0], past.qvel[:, 0]
        body = K.BodyState(past.body_pos[:, 0], past.body_rot[:, 0])
        if self.cfg.starts.init_noise > 0:
            eps = self.cfg.starts.init_noise * jax.random.normal(noise_key, (2, m, qpos.shape[1] - 7))
            qpos, qvel, body = qpos.at[:, 7:].add(eps[0]), qvel.at[:, 6:].add(10.0 * eps[1]), None
        obs, _, _ = self.observe(qpos, qvel, clip, time, ref, body)
        return dict(qpos=qpos, qvel=qvel, warmstart=jnp.zeros_like(qvel), time=jnp.zeros_like(time), clip=clip,
                    clip_time=time, step=jnp.zeros((m,), jnp.int32), disc_hist=hist, ref=ref, obs=obs, anchor=anchor)

    def switch(self, state: EnvState, mask, clip) -> dict:
        """EnvState fields after envs (N,) bool `mask` switch to library clips `clip` (N,) at their first frame,
        re-anchored at the character (as a user's new command begins where the character stands); the
        simulation, the discriminator history and the episode's step count go on."""
        qpos, qvel = jnp.asarray(state.qpos, jnp.float32), jnp.asarray(state.qvel, jnp.float32)
        k = self.cfg.obs.ref_frames
        clip = jnp.where(mask, clip, state.clip)
        first = self.refs(clip, jnp.zeros((self.n, 1), jnp.float32))
        anchor = jnp.where(mask[:, None], anchor_between(first.qpos[:, 0], qpos), state.anchor)
        clip_time = jnp.where(mask, 0.0, state.clip_time)
        ref = _where(mask, self.refs(clip, clip_time[:, None] + jnp.arange(1, k + 1) * self.dt, anchor), state.ref)
        obs = jnp.where(mask[:, None], self.observe(qpos, qvel, clip, clip_time, ref)[0], state.obs)
        return dict(clip=clip, clip_time=clip_time, anchor=anchor, ref=ref, obs=obs)

    def reset(self, key) -> EnvState:
        key, sub = jax.random.split(key)
        c = self.start(sub, self.n + self.pool)
        pool = jax.tree.map(lambda x: x[self.n:], c)
        c = jax.tree.map(lambda x: x[:self.n], c)
        zeros, false = jnp.zeros((self.n,), jnp.float32), jnp.zeros((self.n,), bool)
        info = {"fell": false, "body_error_exceeded": false, "blowup": false, "nan_action": false,
                "body_error": zeros, **{name: jnp.zeros((), jnp.int32) for name in COUNTERS}}
        return EnvState(**c, reward=zeros, terms={t: zeros for t in TERMS}, done=false, truncated=false,
                        final_obs=c["obs"], final_qpos=c["qpos"], disc_obs=c["disc_hist"].reshape(self.n, -1),
                        info=info, key=key,
                        pool=pool, pool_next=jnp.zeros((), jnp.int32),
                        clip_weights=jnp.ones((len(self.clips),), jnp.float32))

    # -- after the physics ----------------------------------------------------------------------------------
    def post(self, state: EnvState, qpos, qvel, warmstart, bad, nan_action) -> EnvState:
        """Observation, reward, termination and automatic reset after one control step of physics.

        bad (N,) marks envs whose physics failed; nan_action (N,) those that were given a non-finite action.
        Envs that finish take the next unused starts of the pool; the pool is drawn again (a real branch, run
        only then) when it has too few left. So resets cost little per step, and no two envs get the same
        start unless more than P finish in one step.
        """
        cfg, n = self.cfg, self.n
        qpos, qvel, warmstart = (jnp.asarray(x, jnp.float32) for x in (qpos, qvel, warmstart))
        bad = (bad | ~jnp.isfinite(qpos).all(-1) | ~jnp.isfinite(qvel).all(-1) | ~jnp.isfinite(warmstart).all(-1)
               | (jnp.abs(qvel).max(-1) > cfg.physics.max_qvel))
        clip_time, step = state.clip_time + self.dt, state.step + 1
        now = _take(state.ref, 0)  # the reference at clip_time, sampled K steps ago
        entering = self.refs(state.clip, (clip_time + cfg.obs.ref_frames * self.dt)[:, None], state.anchor)
        ref = jax.tree.map(lambda a, b: jnp.concatenate([a[:, 1:], b], axis=1), state.ref, entering)
        anchor = state.anchor
        follows = []  # envs whose reference moves to the character at this step (static choices: no cost when off)
        if cfg.episode.recover_follow and cfg.episode.recover_s > 0:
            follows.append(state.clip_time < cfg.episode.recover_s)
        if cfg.episode.hold_follow and cfg.episode.hold_s > 0:
            follows.append(self.holds[state.clip] & (state.clip_time >= self.duration[state.clip]))
        if cfg.episode.anchor_cycles:
            cycle = self.duration[state.clip]
            begins = jnp.floor(clip_time / cycle) > jnp.floor(state.clip_time / cycle)
            follows.append(self.data.loop[state.clip] & begins)
        if follows:
            follow = jnp.stack(follows).any(0)
            window = self.refs(state.clip, clip_time[:, None] + jnp.arange(cfg.obs.ref_frames + 1) * self.dt)
            keep_yaw = None if cfg.episode.follow_heading else anchor[:, 0]
            anchor = jnp.where(follow[:, None], anchor_between(window.qpos[:, 0], jnp.where(bad[:, None], now.qpos, qpos),
                                                               keep_yaw), anchor)
            window = anchor_ref(window, anchor)
            now, ref = _where(follow, (_take(window, 0), jax.tree.map(lambda x: x[:, 1:], window)), (now, ref))
        # A blown-up env is shown the reference instead, so no NaN reaches observations or statistics.
        qpos, qvel = _where(bad, (now.qpos, now.qvel), (qpos, qvel))
        warmstart = jnp.where(bad[:, None], 0.0, warmstart)
        obs, frame, body = self.observe(qpos, qvel, state.clip, clip_time, ref)
        terms = tracking_terms(cfg.reward, self.skel.parent, self.key_bodies, qpos, qvel, body.pos, body.rot,
                               now.qpos, now.qvel, now.body_pos, now.body_rot)
        failed = bad | nan_action
        terms = {name: jnp.where(failed, 0.0, v) for name, v in terms.items()}
        err = mean_body_pos_error(body.pos, now.body_pos)
        ep = cfg.episode
        fell = fallen(body.pos, now.body_pos, self.non_foot, ep.fall_height, ep.fall_margin) & ~self.lying[state.clip]
        recovering = clip_time < cfg.episode.recover_s
        too_far = (err > cfg.episode.max_body_error) & ~recovering
        done = fell | too_far | failed
        clip_end = cfg.episode.end_with_clip & ~self.data.loop[state.clip] & (clip_time >= self.span[state.clip] - 1e-6)
        truncated = ~done & ((step >= self.max_steps) | clip_end)
        hist = jnp.concatenate([frame[:, None], state.disc_hist[:, :-1]], axis=1)

        key, sub = jax.random.split(state.key)
        reset = done | truncated
        count = jnp.sum(reset, dtype=jnp.int32)
        refill = state.pool_next + count > self.pool
        # A real branch (also: its outputs are materialised, which keeps XLA from fusing, i.e. recomputing,
        # the starts' observations into every gathered element below).
        pool = jax.lax.cond(refill, lambda k: self.start(k, self.pool, state.clip_weights), lambda k: state.pool, sub)
        first = jnp.where(refill, 0, state.pool_next)
        slot = (first + jnp.cumsum(reset) - 1) % self.pool
        kept = dict(qpos=qpos, qvel=qvel, warmstart=warmstart, time=state.time + self.dt, clip=state.clip,
                    clip_time=clip_time, step=step, disc_hist=hist, ref=ref, obs=obs, anchor=anchor)
        new = _where(reset, jax.tree.map(lambda x: x[slot], pool), kept)
        info = {"fell": fell, "body_error_exceeded": too_far, "blowup": bad, "nan_action": nan_action,
                "body_error": err}
        for name, flag in zip(COUNTERS, (reset, fell, too_far, bad, nan_action)):
            info[name] = state.info[name] + jnp.sum(flag, dtype=jnp.int32)
        return EnvState(**new, reward=terms["tracking"], terms=terms, done=done, truncated=truncated,
                        final_obs=obs, final_qpos=qpos, disc_obs=hist.reshape(n, -1), info=info, key=key, pool=pool,
                        pool_next=first + count, clip_weights=state.clip_weights)


class ImitationEnv:
    """A batch of `config.num_envs` imitation environments on the chosen physics backend."""

    def __init__(self, library: MotionLibrary, config: EnvConfig = EnvConfig(), character: Character | None = None):
        self.library, self.config = library, config
        self.character = character or library.character
        model = self.character.model
        if abs(model.opt.timestep * config.physics.physics_hz - 1.0) > 1e-6:
            raise ValueError(f"model timestep {model.opt.timestep} s does not match "
                             f"physics.physics_hz={config.physics.physics_hz}")
        substeps = config.physics.physics_hz / config.physics.control_hz
        if abs(substeps - round(substeps)) > 1e-9:
            raise ValueError("physics.physics_hz must be a multiple of physics.control_hz")
        self.substeps = int(round(substeps))
        if config.starts.init not in ("random", "start"):
            raise ValueError(f"starts.init must be 'random' or 'start', not {config.starts.init!r}")
        if not 0.0 <= config.starts.first_frame_share <= 1.0:
            raise ValueError(f"starts.first_frame_share must be in [0, 1], not {config.starts.first_frame_share}")
        if not 0.0 <= config.starts.foreign_share <= 1.0:
            raise ValueError(f"starts.foreign_share must be in [0, 1], not {config.starts.foreign_share}")
        if not 0.0 <= config.starts.fall_starts <= 1.0:
            raise ValueError(f"starts.fall_starts must be in [0, 1], not {config.starts.fall_starts}")
        if config.starts.state_starts and not config.starts.foreign_share > 0:
            raise ValueError("starts.state_starts needs starts.foreign_share > 0 (the share of starts it gives)")
        if config.episode.hold_s < 0:
            raise ValueError(f"episode.hold_s must be >= 0, not {config.episode.hold_s}")
        if config.action.mode not in ("residual", "absolute"):
            raise ValueError(f"action.mode must be 'residual' or 'absolute', not {config.action.mode!r}")
        backend = config.physics.backend
        if backend == "auto":
            backend = "mjx" if jax.default_backend() != "cpu" else "mujoco"
        if backend not in ("mjx", "mujoco"):
            raise ValueError(f"physics.backend must be 'auto', 'mjx' or 'mujoco', not {config.physics.backend!r}")
        self.backend = backend
        self.core = _Core(library, config, self.character)
        self._ref_disc = {}
        self._switch = jax.jit(self.core.switch)
        self.num_envs = config.num_envs
        self.obs_size = self.core.sizes["obs"]
        self.action_size = model.nu
        self._targets = lambda ref_joints, a: pd_targets(ref_joints, a, config.action.mode, config.action.scale,
                                                         self.core.act_joint, self.core.low, self.core.high)
        if backend == "mujoco":
            self._init_mujoco(model)
        else:
            self._init_mjx(model)

    # -- public interface -------------------------------------------------------------------------------------
    def reset(self, key=None) -> EnvState:
        """Every env at a random time of a random clip, exactly on the reference."""
        if key is None:
            key = self.config.seed
        if isinstance(key, (int, np.integer)):
            key = jax.random.key(int(key))
        elif not jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
        state = self._reset(key)
        if self.backend == "mujoco":
            state = state._replace(qpos=np.asarray(state.qpos, np.float64), qvel=np.asarray(state.qvel, np.float64),
                                   warmstart=np.zeros((self.num_envs, self.core.nv)))
        return state

    def reference_disc_obs(self, key, m: int):
        """((m, disc) discriminator observations of the reference clips at random times, (m,) their library clip
        indices) (jitted per m)."""
        if m not in self._ref_disc:
            self._ref_disc[m] = jax.jit(lambda k: self.core.reference_disc_obs(k, m))
        return self._ref_disc[m](key)

    def reference_history(self, state: EnvState, h: int):
        """(N, h, 84) the reference's discriminator frames over the last h control steps of each env's clip, at its
        clip time (a reference-state start's past; jitted per h)."""
        if ("past", h) not in self._ref_disc:
            self._ref_disc[("past", h)] = jax.jit(lambda c, t: self.core.past_frames(c, t, h))
        return self._ref_disc[("past", h)](jnp.asarray(state.clip), jnp.asarray(state.clip_time))

    def switch(self, state: EnvState, mask, clip) -> EnvState:
        """Envs (N,) bool `mask` begin library clips `clip` (N,) from their first frame, re-anchored at where the
        character stands and faces (`_Core.switch`); the others are unchanged."""
        mask = jnp.asarray(mask, bool)
        return state._replace(**self._switch(state._replace(pool=None), mask, jnp.asarray(clip, jnp.int32)))

    def step(self, state: EnvState, action) -> EnvState:
        """Apply actions (N, 28) in [-1, 1] (clipped) for one control step; finished envs are reset."""
        return self._step(state, action)

    def fuse(self, after):
        """`step` with `after(new_state, carry, params) -> (carry, next_action)` (pure JAX, e.g. a policy acting
        and a rollout's buffers written) compiled into the step's jitted part: `fused(state, action, carry, params)
        -> (new_state, carry, next_action)`, so a JAX policy costs no dispatch or host sync of its own per control
        step. MuJoCo C: `after` joins the post-physics jit (the physics stays on the host); MJX: one program for
        the whole step. `carry` is donated (its buffers are written in place), `params` is not."""
        then = lambda new, carry, params: (new, *after(new, carry, params))
        if self.backend == "mujoco":
            post = jax.jit(lambda s, q, v, w, b, n, carry, params: then(self.core.post(s, q, v, w, b, n), carry, params),
                           donate_argnums=6)
            return lambda state, action, carry, params: self._step_mujoco(
                state, action, lambda *a: post(*a, carry, params))
        step = self._step
        return jax.jit(lambda state, action, carry, params: then(step(state, action), carry, params), donate_argnums=2)

    # -- MuJoCo C ---------------------------------------------------------------------------------------------
    def _init_mujoco(self, model):
        from mujoco import batch as mjbatch

        self._SimulationError = mjbatch.SimulationError
        nthread = self.config.physics.num_threads or os.cpu_count() or 1
        self._batch = mjbatch.Batch(model, self.num_envs, nthread=nthread)
        self._qpos, self._qvel, self._warm, self._time, self._ctrl = (
            self._batch.bind(f) for f in ("qpos", "qvel", "qacc_warmstart", "time", "ctrl"))
        self._reset = jax.jit(self.core.reset)
        self._post = jax.jit(self.core.post)
        self._step = self._step_mujoco

    def _step_mujoco(self, state: EnvState, action, post=None):
        """A step; with `post` (`fuse`) its jitted part is post's, whose first output is the new state."""
        n = self.num_envs
        a = np.asarray(action, np.float32).reshape(n, self.action_size)
        nan_action = ~np.isfinite(a).all(-1)
        a = np.clip(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
        self._ctrl[:] = self._targets(np.asarray(state.ref.qpos)[:, 0, 7:], a)
        self._qpos[:] = state.qpos
        self._qvel[:] = state.qvel
        self._warm[:] = state.warmstart
        # MuJoCo resets a simulation that goes unstable (time restarts at 0) and only warns: a clock that
        # starts at 1 and ends below it reveals that.
        self._time[:] = 1.0
        bad = np.zeros(n, bool)
        try:
            self._batch.step(nstep=self.substeps)
        except self._SimulationError as e:
            bad[np.asarray(e.ids)] = True
        bad |= self._time < 1.0 + 0.5 * self.substeps * self.character.model.opt.timestep
        qpos, qvel, warm = np.array(self._qpos), np.array(self._qvel), np.array(self._warm)
        # post does not read the state's physics arrays: leave them out rather than convert them.
        out = (post or self._post)(state._replace(qpos=None, qvel=None, warmstart=None), qpos, qvel, warm, bad,
                                   nan_action)
        new = out[0] if post else out
        # Keep MuJoCo's float64 state where the env goes on; take the (float32) reset state elsewhere.
        reset = (np.asarray(new.done) | np.asarray(new.truncated))[:, None]
        new = new._replace(qpos=np.where(reset, np.asarray(new.qpos), qpos),
                           qvel=np.where(reset, np.asarray(new.qvel), qvel),
                           warmstart=np.where(reset, 0.0, warm))
        return (new, *out[1:]) if post else new

    # -- MJX --------------------------------------------------------------------------------------------------
    def _init_mjx(self, model):
        from mujoco import mjx

        m = copy.copy(model)
        m.opt.iterations = self.config.physics.mjx_iterations
        m.opt.ls_iterations = self.config.physics.mjx_ls_iterations
        mx = mjx.put_model(m)
        d0 = mjx.make_data(mx)
        substeps = self.substeps

        def physics(qpos, qvel, warmstart, ctrl):
            d = d0.replace(qpos=qpos, qvel=qvel, qacc_warmstart=warmstart, ctrl=ctrl)
            d = jax.lax.fori_loop(0, substeps, lambda _, d: mjx.step(mx, d), d)
            return d.qpos, d.qvel, d.qacc_warmstart

        def step(state: EnvState, action):
            a = jnp.asarray(action, jnp.float32)
            nan_action = ~jnp.isfinite(a).all(-1)
            a = jnp.clip(jnp.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0)
            ctrl = self._targets(state.ref.qpos[:, 0, 7:], a)
            qpos, qvel, warm = jax.vmap(physics)(state.qpos, state.qvel, state.warmstart, ctrl)
            return self.core.post(state, qpos, qvel, warm, jnp.zeros_like(nan_action), nan_action)

        self.mesh = None
        devices = jax.local_devices()
        if len(devices) > 1 and self.num_envs % len(devices) == 0:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

            self.mesh = Mesh(np.array(devices), ("batch",))
            shape = jax.eval_shape(self.core.reset, jax.random.key(0))
            batch, whole = NamedSharding(self.mesh, P("batch")), NamedSharding(self.mesh, P())
            spec = shape._replace(**{f: jax.tree.map(lambda _: batch, getattr(shape, f)) for f in shape._fields})
            spec = spec._replace(key=whole, info={k: whole if k in COUNTERS else batch for k in shape.info},
                                 pool=jax.tree.map(lambda _: whole, shape.pool), pool_next=whole,
                                 clip_weights=whole)
            self._reset = jax.jit(self.core.reset, out_shardings=spec)
            self._step = jax.jit(step, in_shardings=(spec, batch), out_shardings=spec)
        else:
            self._reset = jax.jit(self.core.reset)
            self._step = jax.jit(step)
