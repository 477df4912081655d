"""Runtime controllers: text command in, PD targets out (the `superpadl.host.Controller` protocol).

`PolicyController` runs the distilled global policy (`superpadl.policies.GlobalPolicy`): the prompt's embedding (by
default snapped to the nearest caption the policy was trained on, since 30-odd clips' captions cover the text
space sparsely) conditions one network that needs no motion library. A policy folder holds its `policy.*`.

`ExpertController` is the expert-level runtime (PADL's language-to-skill step without distillation): a command
is embedded with the text encoder and matched to the closest caption of the clips that have an expert; that
clip's expert then tracks the clip's reference, re-anchored at the character's current position and heading
(so a new command continues from wherever the character stands). When a non-looping clip ends, and the second(s) of
standing past it that its expert practised (`EpisodeConfig.hold_s`) are over, the standing clip's expert takes over (as
a one-shot command held past its end does with the global policy and in DAgger's labels; without a standing expert the
clip is restarted). Handing over at the clip's end instead cut into that practised stand and fell more
(`benchmarks/teachers_in_use.py --idle-after`). Past the clip's end its held last frame follows the character
(`hold_follow`), so it stands where it got to. The character starts, and restarts, in the standing clip's first
frame, where the global policy starts too. Get-up clips (their first frame lying) take no user's command: after a
fall `SimLoop` gives `get_up_command`, which plays the get-up whose first frame lies on the character's side.
It needs the motion library the experts were trained on, since experts are conditioned on the reference.

A controller folder holds `controller.json` {"format": "padl-expert-controller", "library": PATH,
"experts": [DIR, ...]} (paths relative to the folder) and is loaded with `load_controller(DIR)`.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from motions import kinematics as K
from motions.captions import GET_UP_CAPTIONS
from motions.library import MotionLibrary, sample_reference
from padl import observations as O
from padl import checkpoint
from padl.env import anchor_between, pd_targets
from padl.falls import facing_z, lying_clips
from padl.policy import ExpertPolicy
from superpadl import policies
from superpadl.endurance import first_frame

FORMAT = "padl-expert-controller"
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"
# A command whose nearest caption is less similar than this (cosine, all-MiniLM-L6-v2) names no skill the policy
# knows: measured by benchmarks/prompt_matching.py between paraphrases of the default model's captions and
# unrelated prompts.
KNOWN_SIMILARITY = 0.55
# seconds after a one-shot clip's end that a command still held turns into standing (PolicyController); chosen by
# benchmarks/endurance.py --idle-after (docs/experiments.md: 0, 0.5 and 1 s measured alike, within the noise)
IDLE_AFTER_S = 0.5
_anchor_between = jax.jit(anchor_between)  # the training env's anchor; every step while an expert recovers


def _yaw_quat(a: float) -> np.ndarray:
    return np.array([np.cos(a / 2), 0.0, 0.0, np.sin(a / 2)])


def _qmul(a, b):
    w1, x1, y1, z1 = np.moveaxis(a, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(b, -1, 0)
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], -1)


class Anchor:
    """A horizontal rigid transform (yaw about z, then an xy shift) applied to reference frames."""

    def __init__(self, yaw: float = 0.0, shift=(0.0, 0.0)):
        self.yaw, self.q = yaw, _yaw_quat(yaw)
        c, s = np.cos(yaw), np.sin(yaw)
        self.rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        self.shift = np.array([shift[0], shift[1], 0.0])

    @staticmethod
    def between(ref_qpos: np.ndarray, qpos: np.ndarray, yaw: float | None = None) -> "Anchor":
        """The transform that puts the reference root (xy, heading) where the character's root is; given `yaw`,
        turned by that instead (only the position follows)."""
        yaw, x, y = np.asarray(_anchor_between(jnp.asarray(ref_qpos[None]), jnp.asarray(qpos[None]),
                                               None if yaw is None else jnp.asarray([yaw])), np.float64)[0]
        return Anchor(float(yaw), (x, y))

    def points(self, p):
        return p @ self.rot.T + self.shift

    def rotations(self, q):
        return _qmul(np.broadcast_to(self.q, q.shape), q)

    def qpos(self, q):
        q = np.array(q, np.float64)
        q[..., :3] = self.points(q[..., :3])
        q[..., 3:7] = self.rotations(q[..., 3:7])
        return q

    def qvel(self, v):
        v = np.array(v, np.float64)
        v[..., :3] = v[..., :3] @ self.rot.T  # MuJoCo free joint: world linear velocity, local angular velocity
        return v


class ExpertController:
    """Tracks the clip whose caption best matches the command, with that clip's expert."""

    control_hz = 30.0

    def __init__(self, library: MotionLibrary, experts: list[str | Path], encoder=None, library_dir=None,
                 idle_after_s: float | None = None, hold_follow: bool = True):
        """`idle_after_s`: seconds past a one-shot clip's end before the standing expert takes over; None: the
        hold that clip's expert practised. `hold_follow`: past a one-shot clip's end its held last frame follows the
        character, so it stands where it got to; anchored where the command began, a stand that swayed steps back to
        that spot and falls (the standing teacher held 60 s: 5 falls, 1 following; the chain of
        `benchmarks/teachers_in_use.py --hold-anchored`: 306 against 288 falls per hour, 50 % against 63 % served)."""
        self.library, self.character = library, library.character
        self.idle_after_s, self.hold_follow = idle_after_s, hold_follow
        self.model = self.character.model
        self.experts, self.clip_expert = [], {}
        for path in experts:
            self.experts.append(ExpertPolicy.load(path))
            for clip in self.experts[-1].clips:
                if clip in library.clip_ids:
                    self.clip_expert.setdefault(clip, len(self.experts) - 1)
        if not self.clip_expert:
            raise ValueError("none of the experts' clips is in the library")
        from superpadl.text import caption_embeddings, default_encoder

        self.encoder = encoder or default_encoder()
        captions, emb, idx = caption_embeddings(library_dir or library.path, self.encoder, include_flagged=True)
        # a get-up clip (its first frame lying) is no user's command: `SimLoop` gives `get_up_command` after a fall,
        # and the clip whose first frame lies on the same side as the character is played
        low = lying_clips(library)
        self.get_up_clips = [c for c in self.clip_expert if low[library.index(c)]]
        self._get_up_facing = {c: np.sign(facing_z(first_frame(library, c))) for c in self.get_up_clips}
        self.get_up_command = GET_UP_CAPTIONS[0] if self.get_up_clips else None
        keep = [i for i, c in enumerate(idx) if library.clip_ids[c] in self.clip_expert
                and library.clip_ids[c] not in self.get_up_clips]
        self.captions = [captions[i] for i in keep]
        self.caption_emb, self.caption_clip = emb[keep], np.asarray(idx)[keep]
        self.caption_clips = [library.clip_ids[i] for i in self.caption_clip]
        from superpadl.student import idle_clip

        idle = idle_clip(library, list(self.clip_expert))
        self.idle = library.clip_ids[idle] if idle >= 0 else None
        act = np.asarray(self.character.actuator_joint)
        low, high = (np.asarray(self.model.actuator_ctrlrange[:, i], np.float32) for i in (0, 1))
        self._pd = lambda ref_joints, a, cfg: pd_targets(ref_joints, a, cfg.action.mode, cfg.action.scale, act,
                                                          low, high)
        skel = library.skeleton

        @jax.jit
        def observe(qpos, qvel, ref_pos, ref_rot, phase):
            body = K.forward_kinematics(skel, qpos[None])
            lin, ang = O.body_velocities(skel, qpos[None], qvel[None], body.pos, body.rot)
            return jnp.concatenate([O.policy_obs(body.pos, body.rot, lin, ang),
                                    O.reference_obs(qpos[None, :3], body.rot[:, 0], ref_pos[None], ref_rot[None],
                                                    phase[None])], axis=-1)

        self._observe = observe
        sample = jax.jit(lambda data, clip, t: sample_reference(data, skel, clip, t))
        self._sample = lambda clip, t: sample(library.data, clip, t)
        self.command_text, self.clip = None, next(iter(self.clip_expert))
        self.clip_time, self.anchor = 0.0, Anchor()
        self.matched_caption, self.similarity = None, None

    @property
    def one_shot_s(self) -> dict[str, float]:
        """{one-shot clip: seconds it plays before the hand-over, less `idle_after_s`} (as `PolicyController`'s, whose
        hand-over comes `idle_after_s` past each clip's end; here, unless set, after the stand its expert practised):
        what the real-use chain tells standing from a gesture by. None without a standing expert."""
        if self.idle is None:
            return {}
        lib = self.library
        return {c: float(lib.durations[lib.index(c)])
                + (self.experts[e].env.episode.hold_s if self.idle_after_s is None else 0.0)
                for c, e in self.clip_expert.items()
                if not bool(lib.data.loop[lib.index(c)]) and c != self.idle and c not in self.get_up_clips}

    # -- text -> clip -------------------------------------------------------------------------------------
    def match(self, text: str) -> tuple[str, str, float]:
        """(clip id, matched caption, cosine similarity) for a command."""
        e = self.encoder.encode(text)[0]
        sim = self.caption_emb @ e
        i = int(np.argmax(sim))
        return self.library.clip_ids[int(self.caption_clip[i])], self.captions[i], float(sim[i])

    def set_command(self, text: str) -> None:
        if text == self.get_up_command:
            side = np.sign(facing_z(self._qpos)) if self._qpos is not None else 0.0
            clip = next((c for c in self.get_up_clips if self._get_up_facing[c] == side), self.get_up_clips[0])
            caption, similarity = text, 1.0
        else:
            clip, caption, similarity = self.match(text)
        self.command_text, self.matched_caption, self.similarity = text, caption, similarity
        if clip != self.clip or self._qpos is None:
            self.clip, self.clip_time = clip, 0.0
            self._reanchor()

    # -- protocol -----------------------------------------------------------------------------------------
    _qpos = None

    def _ref(self, times) -> tuple[np.ndarray, ...]:
        i = self.library.index(self.clip)
        r = self._sample(jnp.full((len(times),), i), jnp.asarray(times, jnp.float32))
        return tuple(np.asarray(x, np.float64) for x in (r.qpos, r.qvel, r.body_pos, r.body_rot))

    def _reanchor(self, keep_heading: bool = False):
        """Put the reference where the character is (position, and heading unless `keep_heading`)."""
        ref_qpos = self._ref([self.clip_time])[0][0]
        if self._qpos is None:
            self.anchor = Anchor()
        else:
            self.anchor = Anchor.between(ref_qpos, self._qpos, self.anchor.yaw if keep_heading else None)

    def initial_state(self):
        return first_frame(self.library, self.idle or next(iter(self.clip_expert))), np.zeros(self.model.nv)

    def reset(self, qpos, qvel) -> None:
        self._qpos, self.clip_time = np.asarray(qpos, np.float64), 0.0
        if self.idle and self.clip is not None and not bool(self.library.data.loop[self.library.index(self.clip)]):
            self.clip = self.idle  # a restart ends a gesture in standing, as PolicyController's
        self._reanchor()

    def act(self, qpos, qvel) -> np.ndarray:
        self._qpos = np.asarray(qpos, np.float64)
        i = self.library.index(self.clip)
        env = self.experts[self.clip_expert[self.clip]].env
        after = env.episode.hold_s if self.idle_after_s is None else self.idle_after_s
        ending = self.clip_time + env.obs.ref_frames / self.control_hz  # the reference window's last frame
        if not bool(self.library.data.loop[i]) and ending > float(self.library.durations[i]) + after:
            # a gesture ended: stand (or, with no standing expert, play it again) from where the character now is
            self.clip, self.clip_time = self.idle or self.clip, 0.0
            self._reanchor()
            i = self.library.index(self.clip)
        expert = self.experts[self.clip_expert[self.clip]]
        cfg = expert.env
        duration = float(self.library.durations[i])
        if cfg.episode.recover_follow and self.clip_time < cfg.episode.recover_s:
            self._reanchor(not cfg.episode.follow_heading)  # as the expert learnt it (`EpisodeConfig.recover_follow`)
        elif self.hold_follow and not bool(self.library.data.loop[i]) and self.clip_time >= duration:
            self._reanchor(not cfg.episode.follow_heading)
        times = self.clip_time + np.arange(1, cfg.obs.ref_frames + 1) / self.control_hz
        ref_qpos, _, ref_pos, ref_rot = self._ref(times)
        ref_pos, ref_rot = self.anchor.points(ref_pos), self.anchor.rotations(ref_rot)
        p = self.clip_time / max(duration, 1e-6)
        phase = p - np.floor(p) if bool(self.library.data.loop[i]) else min(p, 1.0)
        obs = self._observe(jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32),
                            jnp.asarray(ref_pos, jnp.float32), jnp.asarray(ref_rot, jnp.float32),
                            jnp.asarray(phase, jnp.float32))
        action = np.asarray(expert.act(obs))[0]
        self.clip_time += 1.0 / self.control_hz
        return np.asarray(self._pd(ref_qpos[0, 7:].astype(np.float32), action, cfg))


class PolicyController:
    """The global text-conditioned policy with its strided history of the character's own motion.

    `set_command` changes the text condition and restarts the start frame (where and facing which way the command
    began, taken at the next `act`); the
    history is the body's real past and stays, so a switch starts from the motion in progress (as in the
    distillation rollouts). `reset` (a restart) clears it; the next `act` fills it with the current frame.
    """

    def __init__(self, path: str | Path | policies.GlobalPolicy, encoder=None, snap: bool = True):
        """`path`: a policy folder, or a policy already loaded (a training run's evaluation)."""
        from superpadl.text import default_encoder

        policy = path if isinstance(path, policies.GlobalPolicy) else policies.GlobalPolicy.load(path)
        # the prompts must be embedded as the captions were: the name is checked now, the embeddings at the first
        # command (that loads the model)
        self._where, self._encoder_record = policy.where, policy.encoder()
        encoder = encoder or default_encoder()
        policies.check_encoder(self._encoder_record, encoder, self._where, embed=False)
        self._drive(policy.character, policy.env.physics.control_hz, policy.history, policy.act)
        # a get-up clip (one captioned with GET_UP_CAPTIONS) is no user's command: what `SimLoop` commands after a
        # fall, when the policy learnt to get up (else it restarts the character); it lasts until the character
        # stands, not a one-shot clip's length
        get_up = [i for i, c in enumerate(policy.captions) if c in GET_UP_CAPTIONS]
        up_clips = {policy.caption_clips[i] for i in get_up}
        self.get_up_command = policy.captions[get_up[0]] if get_up else None
        self._get_up = (policy.caption_clips[get_up[0]], policy.caption_emb[get_up[0]]) if get_up else None
        keep = [i for i, c in enumerate(policy.caption_clips) if c not in up_clips]
        self.captions, self.caption_clips = [policy.captions[i] for i in keep], [policy.caption_clips[i] for i in keep]
        self.caption_emb, self.start_qpos = policy.caption_emb[keep], policy.start_qpos
        self.encoder, self.snap = encoder, snap
        # before the first command the character idles: the policy's standing skill if it knows one, else the
        # PD servos hold the character's rest pose (conditioning on some caption would play that skill, unasked;
        # the policy's start pose held so toppled within 2 s here, the rest pose stands: tests/test_default_model.py)
        from motions.captions import STANDING_CAPTIONS

        self._stand_by(next((i for i, c in enumerate(self.captions) if c in STANDING_CAPTIONS), None),
                       {c: s for c, s in policy.one_shot_s.items() if c not in up_clips})
        self.command_text, self.matched_caption, self.similarity = None, None, None

    def _stand_by(self, idle: int | None, one_shot_s: dict[str, float]) -> None:
        """Condition on the standing skill (row `idle`; None: none, the PD servos hold the rest pose) until the
        first command. A one-shot command (bow, punch) outlives its clip (`one_shot_s`): IDLE_AFTER_S past the clip's
        end the policy is conditioned on its standing skill, which holds; without one it goes on as trained."""
        self.idle, self.condition = idle, None if idle is None else self.caption_emb[idle]
        self.one_shot_s = one_shot_s if idle is not None else {}
        self.clip, self.held_steps, self.idling, self.idle_after_s = None, 0, False, IDLE_AFTER_S

    def _begin(self, clip: str, condition) -> None:
        """A new command: its clip, its condition, a new start frame and its held time from zero."""
        self.clip, self.condition, self.start, self.held_steps, self.idling = clip, condition, None, 0, False

    def _drive(self, character: str, control_hz: float, history, act) -> None:
        """What stepping a student policy `act` needs: the character, its history config, the jitted step."""
        from characters.character import load_character
        from superpadl import student as S

        self.character = load_character(character)
        self.model, self.control_hz, self.history = self.character.model, control_hz, history
        self._S, self._policy, self._proprio = S, act, S.make_proprio(self.character)
        _, self._low, self._high = S.joint_limits(self.character)
        self._hold = self.character.rest_qpos()[7:][self.character.actuator_joint].astype(np.float64)
        self.hist, self.start = None, None
        self._step = self._make_step()

    def match(self, text: str) -> tuple[str, float, np.ndarray]:
        """(nearest training caption, cosine similarity, the embedding to condition on) for a command."""
        i, sim, e = self._nearest(text)
        return self.captions[i], sim, self.caption_emb[i] if self.snap else e

    def _nearest(self, text: str) -> tuple[int, float, np.ndarray]:
        """(row of the nearest training caption, its cosine similarity, the command's embedding)."""
        if self._encoder_record is not None:
            policies.check_encoder(self._encoder_record, self.encoder, self._where)
            self._encoder_record = None  # checked
        e = np.asarray(self.encoder.encode(text)[0], np.float32)
        sim = self.caption_emb @ e
        i = int(np.argmax(sim))
        return i, float(sim[i]), e

    def set_command(self, text: str) -> None:
        if self._get_up is not None and text == self.get_up_command:
            self.similarity, self.matched_caption, self.command_text = 1.0, text, text
            return self._begin(*self._get_up)
        i, self.similarity, e = self._nearest(text)
        self.matched_caption, self.command_text = self.captions[i], text
        self._begin(self.caption_clips[i], self.caption_emb[i] if self.snap else e)

    def initial_state(self):
        return self.start_qpos.copy(), np.zeros(self.model.nv)

    def reset(self, qpos, qvel) -> None:
        self.hist, self.start = None, None
        # A restart ends a one-shot command in standing: given again from the start pose, a punch that fell fell
        # again, every time, for as long as the user held it (docs/experiments.md)
        if self.idle is not None and self.clip in self.one_shot_s:
            self.idling, self.condition = True, self.caption_emb[self.idle]

    def act(self, qpos, qvel) -> np.ndarray:
        if self.condition is None:
            return self._hold.copy()
        if not self.idling and self.clip in self.one_shot_s:
            self.held_steps += 1
            if self.held_steps > (self.one_shot_s[self.clip] + self.idle_after_s) * self.control_hz + 1e-6:
                self.idling, self.condition, self.start = True, self.caption_emb[self.idle], None
        fresh, new_start = self.hist is None, self.start is None  # the step fills these placeholders
        hist = jnp.zeros((1, self.history.window + 1, O.obs_sizes()["disc_frame"]), jnp.float32) if fresh else self.hist
        start = jnp.zeros((1, 3), jnp.float32) if new_start else self.start
        self.hist, self.start, target = self._step(hist, start, new_start, jnp.asarray(qpos, jnp.float32),
                                                   jnp.asarray(qvel, jnp.float32), jnp.asarray(self.condition), fresh)
        return np.asarray(target, np.float64)

    def _make_step(self):
        """One jitted control step (history, start frame, policy, PD targets): a few hundred microseconds where the
        same operations one by one take milliseconds."""
        S, hcfg, policy, proprio, low, high = self._S, self.history, self._policy, self._proprio, self._low, self._high

        @jax.jit
        def step(hist, start, new_start, qpos, qvel, condition, fresh):
            pobs, frame = proprio(qpos[None], qvel[None])
            hist = jnp.where(fresh, S.init_history(frame, hcfg), S.push_history(hist, frame, jnp.zeros(1, bool)))
            root = S.root_frame(qpos[None])
            start = jnp.where(new_start, root, start)
            x = S.student_input(pobs, hist, condition[None], hcfg, S.heading_features(start, root))
            return hist, start, S.from_absolute(policy(x)[0], low, high)

        return step


class GroupController(PolicyController):
    """A group controller driven as the global policy is (`PolicyController`'s step), commanded by clip id (its
    condition the clip's one-hot slot) from `start_qpos`; no text. Given its `library`, a held one-shot command
    turns into the group's standing clip at its clip's end as the global policy's does (the hand-over DAgger asks
    of it), else it goes on under the command. Its real use is measured so (`superpadl.endurance`, benchmarks)."""

    def __init__(self, path: str | Path | policies.GroupPolicy, start_qpos: np.ndarray, library=None):
        # not super().__init__, which loads a global policy and its text encoder
        from superpadl.student import idle_clip, one_shot_durations

        policy = path if isinstance(path, policies.GroupPolicy) else policies.GroupPolicy.load(path)
        self._drive(policy.meta.get("character", "humanoid"), policy.env.physics.control_hz, policy.history,
                    policy.act)
        lying = set() if library is None else {c for c, low in zip(library.clip_ids, lying_clips(library)) if low}
        self.captions = self.caption_clips = [c for c in policy.clips if c not in lying]  # commands: no get-ups
        self.caption_emb = np.eye(len(policy.clips), dtype=np.float32)[[policy.clips.index(c) for c in self.captions]]
        self.start_qpos = np.asarray(start_qpos)
        self.get_up_command, self._get_up = None, None
        idle = idle_clip(library, policy.clips) if library is not None else -1
        self._stand_by(self.captions.index(library.clip_ids[idle]) if idle >= 0 else None,
                       one_shot_durations(library, self.captions) if idle >= 0 else {})

    def set_command(self, text: str) -> None:
        self._begin(text, self.caption_emb[self.captions.index(text)])


def match_label(text: str, caption: str | None, similarity: float | None) -> str:
    """What a command was matched to, for captions and overlays: 'wave -> "a person waves" (0.82)', or the text
    alone from a controller that does not match (caption None)."""
    if caption is None or similarity is None:
        return text
    return f'{text} -> "{caption}" ({similarity:.2f})'


def known_skills(path: str | Path | None = None) -> dict[str, list[str]]:
    """{clip: its captions} a controller folder (default: the shipped model) performs. A global policy's come from
    its checkpoint's metadata, without building the network; an expert controller is loaded."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    out: dict[str, list[str]] = {}
    if policies.kind(path) == policies.GLOBAL_KIND:
        meta = checkpoint.load(path / "policy")[1]
        pairs = zip(meta["caption_clips"], meta["captions"])
    else:
        c = load_controller(path)
        pairs = zip((c.library.clip_ids[int(i)] for i in c.caption_clip), c.captions)
    for clip, caption in pairs:
        out.setdefault(clip, []).append(caption)
    return out


def load_controller(path: str | Path):
    """The controller in a folder: a global policy (`policy.json` of kind superpadl-global) or an expert
    controller (`controller.json`)."""
    path = Path(path)
    if policies.kind(path) == policies.GLOBAL_KIND:
        return PolicyController(path)
    spec = checkpoint.read_spec(path / "controller.json", FORMAT, "controller folder")
    lib_dir = (path / spec["library"]).resolve()
    library = MotionLibrary(lib_dir, include_flagged=True)
    return ExpertController(library, [path / e for e in spec["experts"]], library_dir=lib_dir)


def default_controller():
    """The shipped model (models/default): the global policy when one is there (it needs nothing else), else
    the expert controller, whose experts track clips of a library that `scripts/demo.sh` imports from the mocap
    (models/default/sources.txt); without that library this raises a ValueError saying so."""
    if (DEFAULT_MODEL / "policy.json").is_file():
        return load_controller(DEFAULT_MODEL)
    spec = checkpoint.read_spec(DEFAULT_MODEL / "controller.json", FORMAT, "controller folder")
    lib = (DEFAULT_MODEL / spec["library"]).resolve()
    if not (lib / "manifest.json").is_file():
        raise ValueError(f"{lib}: the default model's motion library is not imported (bash scripts/demo.sh does it)")
    return load_controller(DEFAULT_MODEL)
