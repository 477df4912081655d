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
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from motions.library import MotionLibrary
from padl import checkpoint, ppo
from padl.discriminator import ReplayBuffer
from padl.config import from_dict, to_dict
from padl.env import EnvConfig, ImitationEnv, weighted_choice
from padl.evaluate import evaluate_policy
from padl.expert import eval_line, log_evaluation
from padl.normalizer import update as update_normalizer
from superpadl import student as S
from superpadl.evaluate import GlobalAgent, kept_score, transition_success
from superpadl.groups import GroupTeachers, clip_priorities

KIND = "superpadl-global"
TRAIN_STATE, POLICY = "train_state", "policy"
EMBED_DIM = 384


@dataclass(frozen=True)
class GlobalConfig:
    env: EnvConfig = field(default_factory=lambda: EnvConfig(num_envs=64, action_mode="absolute",
                                                             max_body_error=1e6, end_with_clip=False,
                                                             first_frame_share=0.25))
    ppo: ppo.PPOConfig = field(default_factory=lambda: ppo.PPOConfig(  # the policy network and its normaliser
        policy_hidden=(1024, 512), value_hidden=(8,), layer_norm=True, log_std_init=-2.5, fixed_log_std=True))
    rollout_steps: int = 32
    iterations: int = 300
    beta_iterations: int = 40
    # the share of envs the teachers still drive once the decay is over (`teacher_share`); 0: the student alone
    beta_floor: float = 0.0
    switch_every_s: float = 3.0  # mean time between command switches in the rollouts
    # the share of non-looping clip ends that switch command; the others keep it, labelled by a teacher that learnt to
    # stand after the skill (`EnvConfig.hold_s`): a command at run time outlives its clip. 1: always switch, for
    # teachers that never learnt what follows a clip's end
    end_switch: float = 1.0
    # a command given in the last finish_s of a non-looping clip is labelled by that clip's teacher until it ends
    # (`dagger_rollout`); 0: every switch is labelled by the new command's teacher at once
    finish_s: float = 0.0
    rest_switch: float = 0.0  # share of first-frame episode starts commanded another clip at once (`dagger_rollout`)
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
    # kept is the one with the best `superpadl.evaluate.kept_score`
    eval_transitions: int = 40
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


FINGERPRINT_TEXT = "a person walks forward"
FINGERPRINT_SIZE = 16  # leading components of the fingerprint embedding recorded
FINGERPRINT_TOLERANCE = 2e-3  # rounding (5e-5) and float noise across machines (~1e-6) stay far below it


def encoder_record(encoder) -> dict:
    """What a policy records of the text encoder its captions were embedded with: the model's name, the embedding
    size, and a fingerprint (a fixed sentence and the leading components of its embedding, rounded). The runtime
    refuses a policy whose encoder differs (`check_encoder`): it would condition on embeddings it never saw."""
    from superpadl.text import MODEL_NAME

    e = np.asarray(encoder.encode(FINGERPRINT_TEXT)[0], np.float64)
    return {"name": getattr(encoder, "model_name", MODEL_NAME), "dim": int(e.shape[0]),
            "fingerprint": {"text": FINGERPRINT_TEXT, "values": [round(float(x), 4) for x in e[:FINGERPRINT_SIZE]]}}


def policy_encoder(meta: dict, caption_emb: np.ndarray, where) -> dict:
    """The encoder record of a loaded policy. A policy distilled before records existed (the shipped
    models/default) used the default encoder; its own first caption and embedding are then the fingerprint."""
    from superpadl.text import MODEL_NAME

    record = meta.get("text_encoder")
    if isinstance(record, dict):
        return record
    if record is not None:
        raise checkpoint.CheckpointError(f"{where}: malformed text_encoder record {record!r}")
    return {"name": MODEL_NAME, "dim": int(caption_emb.shape[1]),
            "fingerprint": {"text": meta["captions"][0], "values": [float(x) for x in caption_emb[0][:FINGERPRINT_SIZE]]}}


def check_encoder(record: dict, encoder, where, embed: bool = True) -> None:
    """ValueError (one line naming `where`) unless `encoder` is the one `record` describes; `embed=False` checks
    the name alone (no model is loaded)."""
    from superpadl.text import MODEL_NAME

    name = getattr(encoder, "model_name", MODEL_NAME)
    if name != record.get("name"):
        raise ValueError(f"{where}: distilled with text encoder {record.get('name')!r}, not this runtime's {name!r}")
    if not embed:
        return
    fp = record.get("fingerprint") or {}
    e = np.asarray(encoder.encode(fp.get("text", FINGERPRINT_TEXT))[0], np.float64)
    values = np.asarray(fp.get("values", []), np.float64)
    if e.shape[0] != record.get("dim") or len(values) > e.shape[0] or \
            not np.all(np.abs(e[:len(values)] - values) <= FINGERPRINT_TOLERANCE):
        raise ValueError(f"{where}: distilled with a text encoder named {name!r} whose embeddings differ from this "
                         f"runtime's (fingerprint {fp.get('text')!r}, dimension {record.get('dim')} vs {e.shape[0]})")


def teacher_share(iteration: int, cfg: GlobalConfig) -> float:
    """The share of envs the teachers drive (DAgger's beta): from all, down to `beta_floor` over `beta_iterations`.
    A floor keeps states the teachers know in the aggregated data: once only the student drives, labels come from
    states ever further from the teachers' own, where their actions are guesses too."""
    decay = max(0.0, 1.0 - iteration / cfg.beta_iterations) if cfg.beta_iterations else 0.0
    return max(cfg.beta_floor, decay)


def _policy_template(meta: dict, cfg: GlobalConfig) -> dict:
    ts = ppo.template(meta["input_size"], meta["action_size"], cfg.ppo)
    return {"policy_params": ts.policy_params, "normalizer": ts.normalizer,
            "caption_emb": np.zeros((len(meta["captions"]), EMBED_DIM), np.float32),
            "start_qpos": np.zeros((meta["action_size"] + 7,), np.float32)}


def load_global(path: str | Path) -> tuple[dict, dict]:
    """A global policy checkpoint: ({policy_params, normalizer, caption_emb, start_qpos}, metadata)."""
    path = Path(path)
    path = path / POLICY if path.is_dir() else path
    _, meta = checkpoint.load(path)
    if meta.get("kind") != KIND:
        raise checkpoint.CheckpointError(f"{path}.json: not a SuperPADL global policy (kind={meta.get('kind')!r})")
    try:
        template = _policy_template(meta, from_dict(GlobalConfig, meta["global"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise checkpoint.CheckpointError(f"{path}.json: malformed global policy metadata "
                                         f"({e.__class__.__name__}: {e})") from None
    tree, _ = checkpoint.load(path, template)
    return tree, meta


_mean_action = jax.jit(ppo.mean_action)


def policy_act(tree: dict, cfg: GlobalConfig):
    """x -> mean action of a loaded global policy (one compilation per network shape, not per policy: a training
    run builds one at every evaluation)."""
    return functools.partial(_mean_action, ppo.policy_state(tree["policy_params"], tree["normalizer"], cfg.ppo))


class Carry(NamedTuple):
    """What a DAgger rollout carries from one iteration to the next."""

    env_state: Any
    hist: jax.Array  # (N, window + 1, 84)
    command: jax.Array  # (N,) library clip index each env is commanded to perform
    caption: jax.Array  # (N,) row of the caption table the student is shown
    clock: jax.Array  # (N,) seconds since the command began (the clip time after a reference-state start)
    start: jax.Array  # (N, 3) `student.root_frame` where it began (the clip's first frame after a reference-state start)
    # (N,) the clip commanded while the current one finishes (`GlobalConfig.finish_s`), -1 for none; None: none yet
    pending: jax.Array | None = None
    shown_start: jax.Array | None = None  # (N, 3) where the student's command began (the runtime's start); None: start


def idle_clip(library: MotionLibrary, clips: list[str]) -> int:
    """Library index of the first of `clips` captioned as standing (`motions.captions.STANDING_CAPTIONS`): the
    skill a held one-shot command returns to (`dagger_rollout`); -1 when there is none."""
    from motions.captions import STANDING_CAPTIONS

    for clip in clips:
        if set(library.captions[library.index(clip)]) & set(STANDING_CAPTIONS):
            return library.index(clip)
    return -1


def dagger_rollout(env, carry: Carry, student, teacher, by_teacher, emb, hcfg, steps: int, key, p_switch: float,
                   train_clips, draw_caption, starts, clip_end, end_switch: float = 1.0, finish_s: float = 0.0,
                   rest_switch: float = 0.0, idle: int = -1):
    """`steps` control steps of DAgger data collection: each env is driven by the student (or by the teacher where
    by_teacher), and every state the batch visits is labelled with teacher(own state, history, command, clock,
    heading), the teacher's action on that very state. Commands switch with probability p_switch per step, and with
    probability `end_switch` when the command's clip is over (`clip_end` (C,): a non-looping clip's duration, inf
    for looping ones), to a clip drawn by the env's clip weights, restarting the clock and the start
    frame; after an episode ends, the command is the env's new clip, begun at its start (`starts` (C, 3)).

    A switch that comes in the last `finish_s` of a non-looping clip is shown to the student at once but labelled
    by the old clip's teacher until that clip ends, then by the new one's: the student learns to finish a skill's
    recovery (stepping back out of a lunge) before the next, where no teacher of the next skill can start from the
    middle of it. Its clock (for a student that sees one) and the teacher's start frame count from the handover.

    A share `rest_switch` of the episodes that begin at a clip's first frame are commanded another clip at once: a
    user's first command, given in the rest pose the viewer starts in, which is rarely the commanded clip's own.

    With an idle clip (`idle`, a library clip index; -1: none), a command kept past its non-looping clip's end is
    labelled from then on by the idle clip's teacher, begun where the character stands, while the student still
    sees the command: a one-shot skill finishes and returns to standing, however long its command is held.
    Returns (carry, (student inputs (T, N, D), teacher labels (T, N, A), executed actions (T, N, A)),
    (falls, switches))."""
    env_state, hist, command, caption, clock, start, pending, shown_start = carry
    n = hist.shape[0]
    pending = jnp.full((n,), -1, jnp.int32) if pending is None else pending
    shown_start = start if shown_start is None else shown_start
    dt = 1.0 / env.config.control_hz
    xs, ys, executed, falls, switches = [], [], [], 0.0, 0.0
    for _ in range(steps):
        key, k_act, k_sw, k_clip, k_cap, k_end, k_rest = jax.random.split(key, 7)
        pobs, _ = S.env_proprio(env_state)
        root = S.root_frame(env_state.qpos)
        x = S.student_input(pobs, hist, emb[caption], hcfg, clock, S.heading_features(shown_start, root))
        a_teacher = teacher(pobs, hist, command, clock, S.heading_features(start, root))
        a = jnp.where(by_teacher[:, None], a_teacher, student(x, k_act))
        new = env.step(env_state, a)
        xs.append(x), ys.append(a_teacher), executed.append(a)
        restart = jnp.asarray(new.done | new.truncated)
        left = clip_end[command] - (clock + dt)  # of the command's clip after this step
        over = left <= 1e-6
        handover = ~restart & (pending >= 0) & over
        # end_switch 1: every command past its clip's end switches; below 1, a draw at the step the clip ends
        # decides, and a command kept past its end is not drawn for again
        if end_switch >= 1.0:
            ends_now = over
        else:
            ends_now = S.ending(clock, clip_end[command], dt) & (jax.random.uniform(k_end, (n,)) < end_switch)
        user = ~restart & ~handover & ((jax.random.uniform(k_sw, (n,)) < p_switch) | (ends_now & (pending < 0)))
        to_idle = (idle >= 0) & ~restart & ~handover & ~user & over & (command != idle)
        finishing = user & ((pending >= 0) | (~over & (left <= finish_s)))
        switch = user & ~finishing  # the teacher switches now
        other = train_clips[weighted_choice(jax.random.uniform(k_clip, (n,)), env_state.clip_weights)]
        rest = restart & (jnp.asarray(new.clip_time) <= 1e-6) & (jax.random.uniform(k_rest, (n,)) < rest_switch)
        first = jnp.where(rest, other, jnp.asarray(new.clip))  # the command an episode begins with
        caption = jnp.where(restart | user, draw_caption(k_cap, jnp.where(restart, first, other)), caption)
        new_root = S.root_frame(new.qpos)
        began = switch | handover | rest | to_idle  # the teacher's command begins here, where the character stands
        restart_start = jnp.where(rest[:, None], new_root, starts[jnp.asarray(new.clip)])
        command = jnp.where(restart, first, jnp.where(switch, other, jnp.where(handover, pending,
                                                                               jnp.where(to_idle, idle, command))))
        pending = jnp.where(restart | handover, -1, jnp.where(finishing, other, pending))
        clock = jnp.where(began, 0.0, jnp.where(restart, jnp.asarray(new.clip_time), clock + dt))
        start = jnp.where(began[:, None], new_root, jnp.where(restart[:, None], restart_start, start))
        shown_start = jnp.where(restart[:, None], restart_start, jnp.where(user[:, None], new_root, shown_start))
        hist = S.push_step(hist, env, new, hcfg, jax.random.fold_in(k_act, 1))
        falls += float(jnp.sum(jnp.asarray(new.done)))
        switches += float(jnp.sum(user))
        env_state = new
    return (Carry(env_state, hist, command, caption, clock, start, pending, shown_start),
            tuple(map(jnp.stack, (xs, ys, executed))), (falls, switches))


def train_global(library: MotionLibrary, teachers: GroupTeachers, out: str | Path, cfg: GlobalConfig = GlobalConfig(),
                 clips: list[str] | None = None, resume: bool = False, iterations: int | None = None,
                 progress: bool = True, log=print, time_limit_s: float | None = None, encoder=None,
                 init_from: str | Path | None = None, force: bool = False) -> dict:
    """Train (or resume) the global policy on the clips the group teachers cover; returns its last evaluation.
    `init_from` (a global policy with the same inputs) starts a new run from its network and normaliser: new
    teachers are distilled into it by fine-tuning, not from scratch. A new run refuses to overwrite a policy kept in
    `out` by an earlier one unless `force` (`checkpoint.prepare_run`)."""
    from tensorboardX import SummaryWriter
    from tqdm import tqdm

    from superpadl.text import default_encoder

    out = Path(out)
    saved = checkpoint.resume_meta(out, TRAIN_STATE, KIND, "SuperPADL global run") if resume else None
    checkpoint.prepare_run(out, POLICY, TRAIN_STATE, resumed=saved is not None, force=force)
    encoder = encoder or default_encoder()
    if saved:
        cfg, clips = from_dict(GlobalConfig, saved["global"]), saved["clips"]
        if "text_encoder" in saved:  # a run goes on with the encoder it began with
            check_encoder(saved["text_encoder"], encoder, out / f"{TRAIN_STATE}.json")
    covered = [c for i, c in enumerate(library.clip_ids) if teachers.clip_owner[i] >= 0]
    clips = list(clips or covered)
    if missing := [c for c in clips if c not in covered]:
        raise ValueError(f"clip {missing[0]!r} has no group controller")
    hcfg = teachers.history
    group_env = teachers.groups[0][1].env
    env_cfg = dataclasses.replace(cfg.env, clips=tuple(clips), ref_frames=group_env.ref_frames,
                                  disc_frames=group_env.disc_frames, control_hz=group_env.control_hz)
    cfg = dataclasses.replace(cfg, env=env_cfg)
    env = ImitationEnv(library, env_cfg)
    captions, owners, emb = caption_table(library, clips, encoder)
    lib_index = np.asarray([library.index(c) for c in owners])
    rows = [np.flatnonzero(lib_index == library.index(c)) for c in library.clip_ids]
    width = max(len(r) for r in rows)
    row_table = jnp.asarray([np.resize(r, width) if len(r) else np.zeros(width, int) for r in rows])
    row_count = jnp.asarray([len(r) for r in rows])
    first_row = jnp.asarray([r[0] if len(r) else 0 for r in rows])
    emb_j = jnp.asarray(emb)
    train_clips = jnp.asarray([library.index(c) for c in clips])
    in_size = S.input_size(hcfg, EMBED_DIM)
    state = {"ppo": ppo.init(jax.random.key(cfg.seed), in_size, env.action_size, cfg.ppo),
             "key": jax.random.key_data(jax.random.key(cfg.seed + 1)), "iteration": np.int64(0),
             "samples": np.int64(0), "clip_weights": np.ones(len(clips), np.float32),
             "best": np.asarray([-1.0, -np.inf])}  # (score, -G-MPJPE) of the evaluation saved as the policy
    start_qpos = np.asarray(library.sample(jnp.asarray([library.index(clips[0])]), jnp.zeros(1)).qpos[0], np.float32)
    meta = {"kind": KIND, "global": to_dict(cfg), "history": to_dict(hcfg), "clips": clips, "captions": captions,
            "caption_clips": owners, "input_size": in_size, "action_size": env.action_size,
            "character": env.character.name, "text_encoder": encoder_record(encoder)}
    state["average"] = state["ppo"].policy_params
    if saved:
        state, _ = checkpoint.load(out / TRAIN_STATE, state)
        if kept := checkpoint.kept_eval(out, POLICY):  # kept after the checkpoint, before a kill
            state["best"] = np.asarray(max(tuple(state["best"]), kept_score(kept)), np.float64)
        log(f"resumed {out} at iteration {int(state['iteration'])}")
    elif init_from is not None:
        tree, source = load_global(init_from)
        if (source["input_size"], source["history"]) != (in_size, meta["history"]):
            raise checkpoint.CheckpointError(f"{init_from}: its inputs ({source['input_size']}, history "
                                             f"{source['history']}) are not this run's ({in_size}, {meta['history']})")
        state["ppo"] = state["ppo"].replace(policy_params=tree["policy_params"], normalizer=tree["normalizer"])
        state["average"] = tree["policy_params"]
        log(f"starting from {init_from} (iteration {source['iteration']})")
    out.mkdir(parents=True, exist_ok=True)
    total = cfg.iterations if iterations is None else iterations
    checkpoint.trim_log(out / "progress.jsonl", int(state["iteration"]))
    writer, curve = SummaryWriter(str(out / "logs")), open(out / "progress.jsonl", "a")
    T, N = cfg.rollout_steps, env.num_envs
    p_switch = 1.0 / (cfg.switch_every_s * env_cfg.control_hz)
    key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
    ts = state["ppo"]
    buf_x = ReplayBuffer.create(cfg.buffer, in_size)
    buf_y = ReplayBuffer.create(cfg.buffer, env.action_size)
    it, samples = int(state["iteration"]), int(state["samples"])
    env_state, hist = S.start_training_envs(env, jax.random.fold_in(key, it), state["clip_weights"], hcfg)

    def draw_caption(k, clip):
        u = jax.random.uniform(k, clip.shape)
        return row_table[clip, jnp.minimum((u * row_count[clip]).astype(jnp.int32), row_count[clip] - 1)]

    key, k0 = jax.random.split(key)
    starts = S.clip_starts(library)
    command = jnp.asarray(env_state.clip)
    carry = Carry(env_state, hist, command, draw_caption(k0, command), jnp.asarray(env_state.clip_time),
                  starts[command])
    clip_end = S.clip_ends(library)
    idle = idle_clip(library, clips)
    last_eval: dict = {}
    t_start = time.time()
    bar = tqdm(total=total, initial=it, disable=not progress, desc="global", dynamic_ncols=True)

    def policy_tree(ts):
        return {"policy_params": ts.policy_params, "normalizer": ts.normalizer, "caption_emb": emb,
                "start_qpos": start_qpos}

    def save_policy(ts):
        checkpoint.save(out / POLICY, policy_tree(ts), {**meta, "iteration": it, "samples": samples,
                                                         "eval": last_eval})

    while it < total:
        t0 = time.time()
        beta = teacher_share(it, cfg)
        key, k_beta = jax.random.split(key)
        by_teacher = jax.random.uniform(k_beta, (N,)) < beta
        key, k_roll = jax.random.split(key)
        carry, (xs, ys, _), stats = dagger_rollout(
            env, carry, lambda x, k: ppo.act(ts, x, k)[0], teachers.act, by_teacher, emb_j, hcfg, T, k_roll,
            p_switch, train_clips, draw_caption, starts, clip_end, cfg.end_switch, cfg.finish_s, cfg.rest_switch,
            idle)
        dones, switches = stats
        flat_x = xs.reshape(T * N, -1)
        buf_x, buf_y = buf_x.add(flat_x), buf_y.add(ys.reshape(T * N, -1))
        ts = ts.replace(normalizer=update_normalizer(ts.normalizer, flat_x))
        key, k_bc = jax.random.split(key)
        ts, loss = ppo.imitate(ts, buf_x.data, buf_y.data, buf_x.size, k_bc, cfg.sgd_steps, cfg.batch_size, cfg.lr)
        state["average"] = optax.incremental_update(ts.policy_params, state["average"], 1.0 - cfg.average)
        averaged = ts.replace(policy_params=state["average"])
        it, samples = it + 1, samples + T * N
        scalars = {"bc/loss": float(loss), "bc/beta": beta, "episode/fall_rate": dones / (T * N),
                   "commands/switches_per_s": switches / (T * N) * env_cfg.control_hz,
                   "perf/samples_per_s": T * N / (time.time() - t0)}
        for k, v in scalars.items():
            writer.add_scalar(k, v, samples)
        bar.update(1)
        bar.set_postfix(bc=f"{scalars['bc/loss']:.4f}", falls=f"{scalars['episode/fall_rate']:.4f}")
        out_of_time = time_limit_s is not None and time.time() - t_start >= time_limit_s
        if it % cfg.eval_every == 0 or it == total or out_of_time:
            per_clip = evaluate_policy(
                library, S.student_actor(functools.partial(_mean_action, averaged), hcfg,
                                         lambda s: emb_j[first_row[jnp.asarray(s.clip)]]),
                clips=clips, episodes=cfg.eval_episodes, noise=cfg.eval_noise,
                env_config=dataclasses.replace(env_cfg, backend="mujoco", max_body_error=EnvConfig.max_body_error,
                                               end_with_clip=True))  # as `superpadl eval`
            last_eval, success = per_clip["mean"], [per_clip[c]["success"] for c in clips]
            last_eval["worst_clip_success"] = min(success)
            if cfg.eval_transitions:
                agent = GlobalAgent(policy_tree(averaged), meta, library)
                last_eval["transition_success"] = transition_success(
                    agent, library, cfg.eval_transitions, 2.0, 3.0, np.random.default_rng(it))["success"]
            state["clip_weights"] = clip_priorities(success, cfg.prioritise)
            carry = carry._replace(env_state=carry.env_state._replace(clip_weights=jnp.asarray(state["clip_weights"])))
            for k, v in last_eval.items():
                writer.add_scalar(f"eval/{k}", v, samples)
            curve.write(json.dumps({"iteration": it, "samples": samples, "wall_s": time.time() - t_start,
                                    **last_eval, **scalars, "clip_success": success}) + "\n")
            curve.flush()
            log_evaluation(log, progress, eval_line(it, total, last_eval))
            score = kept_score(last_eval)
            if score > tuple(state["best"]):
                state["best"] = np.asarray(score, np.float64)
                save_policy(averaged)
        if it % cfg.checkpoint_every == 0 or it == total or out_of_time:
            state.update(ppo=ts, key=jax.random.key_data(key), iteration=np.int64(it), samples=np.int64(samples))
            checkpoint.save(out / TRAIN_STATE, state, {**meta, "iteration": it, "samples": samples})
        if out_of_time:
            break
    bar.close(), writer.close(), curve.close()
    return last_eval
