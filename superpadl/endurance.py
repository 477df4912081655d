"""Real use, measured: commands given from the viewer's start pose and held as a user holds them.

Clip-start metrics (`superpadl eval`) start every skill at its clip's first frame and stop at its end. A user
starts at the rest pose, types a command, leaves it running for a while and types another. Here a controller is
driven exactly so, through `SimLoop` (the loop behind the viewer and the renderer):

- `chain`: random captions, each held for a random 2-20 s, one after the other from the start pose, for a number
  of simulated minutes; falls per hour, and per clip the falls on entering a command (its first `enter_s`) and
  while holding it;
- `hold_from_start`: one caption given from the start pose and held (every caption for 30 s is the bar);
- for locomotion (a clip whose reference travels, `locomotion_directions`), the distance covered in the first
  `set_off_s` of the command along the direction its clip travels, turned by the heading the character had when
  the command came;
- for a gesture, whether it was done at all (`GestureCheck`): a policy that stands through every gesture never falls.
A fall restarts the character from the start pose unless the loop can get up by a learned skill (`SimLoop`), so
the time to get up is recorded as well (None: restarted).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from superpadl.host import FALL_HEIGHT, SimLoop

ENTER_S = 3.0         # a fall this soon after a command counts as entering it, later as holding it
SET_OFF_S = 4.0       # locomotion is judged on the distance it covers this soon after the command
LOCOMOTION_SPEED = 0.5  # m/s of the clip's reference root: at least this, and a command of it is locomotion
SET_OFF_BAR_M = 2.0   # a locomotion command that covers less in SET_OFF_S did not set off (issue 29's bar)
# A gesture command was performed if the character's motion (1-s windows, `superpadl.metrics`) looks more like the
# commanded clip than like standing, by GESTURE_MARGIN_M, for at least GESTURE_BAR of the time the clip's own
# reference does (a 2-s punch: 1.2 s; a bow: 3.7 s): a policy that stands through a "bow" never falls, and no fall
# count sees it
GESTURE_BAR = 0.5
GESTURE_MARGIN_M = 0.02


@dataclass
class CommandRecord:
    caption: str
    clip: str
    start_s: float            # simulated time the command was given
    held_s: float             # how long it was held
    falls_s: list[float] = field(default_factory=list)  # seconds after the command of each fall
    set_off_m: float | None = None   # locomotion: metres along the commanded direction after SET_OFF_S
    get_ups_s: list[float] = field(default_factory=list)  # seconds each get-up that ended in it took
    restarts: int = 0  # falls that ended in a restart (no get-up skill, or it timed out)
    # the root's largest horizontal distance from where the command began, before any fall: a stand that shuffles
    # off, which counts no fall, shows here
    wander_m: float = 0.0
    performed_s: float | None = None  # a gesture: seconds of motion like its clip's, not standing (`GestureCheck`)
    performed_bar_s: float = 0.0  # ... and how many make it done
    # not locomotion, held past ENTER_S + 1 s without a fall: the root's mean horizontal speed (m/s) from ENTER_S on.
    # A student that keeps running through "stand still" or a gesture given during a jog falls no more than one that
    # stops (35 m on through a 17-s "stand idle"), and did not do what was asked
    ran_on_speed: float | None = None
    after: str = ""  # what the command was given after, in a chain (`given_after`)


@dataclass
class GestureCheck:
    """Whether a gesture was done: the character's motion windows nearer the commanded clip's than the standing
    clip's (both the library's references, `superpadl.metrics.window_features`)."""
    library: object
    clip_windows: np.ndarray
    stand_windows: np.ndarray
    bar_s: float = 0.0  # seconds that make it done: GESTURE_BAR of what the clip's own reference scores

    def __post_init__(self):
        self.bar_s = GESTURE_BAR * self._seconds(self.clip_windows)

    def seconds(self, qpos: np.ndarray) -> float:
        from superpadl import metrics as W
        from superpadl.windows import yaws

        n = len(qpos)
        if n < 2:
            return 0.0
        # padded to a power of two (the last pose repeated): kinematics compile per shape, and every hold's length
        # would compile anew
        padded = np.concatenate([qpos, np.repeat(qpos[-1:], (1 << max(6, (n - 1).bit_length())) - n, axis=0)])
        pos, yaw = np.asarray(self.library.bodies(padded).pos)[:n], yaws([padded])[0][:n]
        return self._seconds(W.window_features(pos, yaw))

    def _seconds(self, windows: np.ndarray) -> float:
        from superpadl import metrics as W

        own = W.window_distances(windows, self.clip_windows).min(1)
        stand = W.window_distances(windows, self.stand_windows).min(1)
        return float((own < stand - GESTURE_MARGIN_M).sum()) * W.STRIDE / 30.0


def command_checks(library) -> tuple[dict[str, np.ndarray], dict[str, GestureCheck]]:
    """What a command of each clip of `library` (a `MotionLibrary`) is judged by: (`locomotion_directions`,
    `gesture_checks`), as `run`, `chain` and `training_eval` take them."""
    directions = locomotion_directions(library.path)
    return directions, gesture_checks(library, directions)


def gesture_checks(library, directions: dict[str, np.ndarray]) -> dict[str, GestureCheck]:
    """{clip: its check} for the library's gestures: every clip but the standing one, locomotion (`directions`,
    judged by its set-off) and lying clips (get-ups); none without a standing clip to tell them from."""
    from motions.captions import GET_UP_CAPTIONS
    from superpadl.windows import reference_windows
    from superpadl.student import idle_clip

    idle = idle_clip(library, library.clip_ids)
    if idle < 0:
        return {}
    stand = library.clip_ids[idle]
    clips = [c for c in library.clip_ids if c != stand and c not in directions
             and not set(library.captions[library.index(c)]) & set(GET_UP_CAPTIONS)]
    windows = reference_windows(library, clips + [stand], 10.0)
    return {c: GestureCheck(library, windows[c], windows[stand]) for c in clips}


def yaw_of(quat_wxyz: np.ndarray) -> float:
    w, x, y, z = quat_wxyz
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def heading_direction(direction_local: np.ndarray, quat_wxyz: np.ndarray) -> np.ndarray:
    """A direction given in the heading frame (x forward, y left), in the world's horizontal plane."""
    yaw = yaw_of(quat_wxyz)
    c, s = np.cos(yaw), np.sin(yaw)
    x, y = direction_local
    return np.array([c * x - s * y, s * x + c * y])


def locomotion_directions(library: Path, speed: float = LOCOMOTION_SPEED) -> dict[str, np.ndarray]:
    """{clip id: unit direction of travel in the clip's starting heading frame} for clips whose root travels at
    `speed` m/s or more, averaged over the clip (one cycle of a looping clip)."""
    from motions.clip import load_clip, read_manifest

    out = {}
    for e in read_manifest(Path(library))["clips"]:
        qpos = load_clip(Path(library) / e["file"])["qpos"]
        if len(qpos) < 2:
            continue
        travel = qpos[-1, :2] - qpos[0, :2]
        if np.linalg.norm(travel) / e["duration_s"] < speed:
            continue
        yaw = yaw_of(qpos[0, 3:7])
        c, s = np.cos(-yaw), np.sin(-yaw)
        local = np.array([c * travel[0] - s * travel[1], s * travel[0] + c * travel[1]])
        out[e["id"]] = local / np.linalg.norm(local)
    return out


def _play(loop: SimLoop, caption: str, clip: str, seconds: float, direction: np.ndarray | None,
          gesture: GestureCheck | None = None) -> CommandRecord:
    """Give `caption` now and hold it for `seconds` of simulation."""
    loop.command(caption)
    rec = CommandRecord(caption, clip, loop.time, seconds)
    start_xy, start_quat = loop.data.qpos[:2].copy(), loop.data.qpos[3:7].copy()
    falls, steps = loop.falls, int(round(seconds * loop.control_hz))
    get_ups, restarts = len(loop.get_ups), loop.restarts
    set_off_step, enter_step = int(round(SET_OFF_S * loop.control_hz)), int(round(ENTER_S * loop.control_hz))
    upright = []  # qpos before any fall: what the gesture check sees
    enter_xy = start_xy
    for k in range(1, steps + 1):
        loop.control_step()
        if loop.falls > falls:
            rec.falls_s.append(k / loop.control_hz)
            falls = loop.falls
        if k == enter_step:
            enter_xy = loop.data.qpos[:2].copy()
        moved = loop.data.qpos[:2] - start_xy
        if not rec.falls_s:
            rec.wander_m = max(rec.wander_m, float(np.linalg.norm(moved)))
            if gesture is not None:
                upright.append(loop.data.qpos.copy())
        if direction is not None and k == set_off_step:
            # a fall within the window restarted the character: it did not get there upright
            rec.set_off_m = 0.0 if rec.falls_s else float(moved @ heading_direction(direction, start_quat))
    rec.get_ups_s, rec.restarts = loop.get_ups[get_ups:], loop.restarts - restarts
    if direction is None and not rec.falls_s and steps >= enter_step + loop.control_hz:
        rec.ran_on_speed = float(np.linalg.norm(loop.data.qpos[:2] - enter_xy)) * loop.control_hz / (steps - enter_step)
    if gesture is not None:
        rec.performed_s, rec.performed_bar_s = gesture.seconds(np.asarray(upright)), gesture.bar_s
    return rec


def hold_from_start(controller, caption: str, clip: str, seconds: float,
                    direction: np.ndarray | None = None, seed: int = 0, init_noise: float = 0.0,
                    gesture: GestureCheck | None = None, lead: tuple[str, float] | None = None) -> CommandRecord:
    """`caption` given from the start pose, as the first command of a viewer session, and held; `init_noise` (rad)
    perturbs the start pose's joints, so that seeds differ. `lead` (command, seconds): that command is given first and
    held so long (its falls are not the record's), as a user may begin with something else."""
    loop = SimLoop(controller.model, controller, seed=seed, init_noise=init_noise)
    if lead is not None:
        loop.command(lead[0])
        loop.advance(lead[1])
    return _play(loop, caption, clip, seconds, direction, gesture)


def chain(controller, minutes: float, seed: int, directions: dict[str, np.ndarray],
          hold_s: tuple[float, float] = (2.0, 20.0), gestures: dict[str, GestureCheck] | None = None,
          handovers: list | None = None) -> list[CommandRecord]:
    """Random captions of the controller, each held U(hold_s) seconds, from the start pose for `minutes` of
    simulation (the last one cut at the end); a gesture's command is checked for being done (`gestures`).
    `handovers` gets the (qpos, qvel) each command was given in."""
    rng = np.random.default_rng(seed)
    loop = SimLoop(controller.model, controller, seed=seed)
    records, left = [], minutes * 60.0
    one_shot_s, idle_after_s = getattr(controller, "one_shot_s", {}), getattr(controller, "idle_after_s", None) or 0.0
    while left > 1e-6:
        i = int(rng.integers(len(controller.captions)))
        seconds = min(float(rng.uniform(*hold_s)), left)
        clip = controller.caption_clips[i]
        after = given_after(records[-1] if records else None, directions, gestures or {}, one_shot_s, idle_after_s)
        if handovers is not None:
            handovers.append((loop.data.qpos.copy(), loop.data.qvel.copy()))
        records.append(_play(loop, controller.captions[i], clip, seconds, directions.get(clip),
                             (gestures or {}).get(clip)))
        records[-1].after = after
        left -= seconds
    return records


def handover_states(controller, minutes: float, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """((P, nq) qpos, (P, nv) qvel): the simulated states real use gives commands in (`chain`, `seeds` chains of
    `minutes`), upright ones, moved to the origin in xy: starts for experts to learn the hand-overs from
    (`padl.env.StartConfig.state_starts`), where reference states are not what the runtime hands over."""
    got: list = []
    for seed in range(seeds):
        chain(controller, minutes, seed, {}, handovers=got)
    qpos, qvel = np.array([g[0] for g in got]), np.array([g[1] for g in got])
    qpos[:, :2] = 0.0
    keep = (qpos[:, 2] > FALL_HEIGHT) & np.isfinite(qpos).all(1) & np.isfinite(qvel).all(1)
    return qpos[keep].astype(np.float32), qvel[keep].astype(np.float32)


AFTER = ("the start pose", "a get-up", "standing", "locomotion", "a gesture")


def given_after(previous: CommandRecord | None, directions: dict, gestures: dict, one_shot_s: dict[str, float],
                idle_after_s: float) -> str:
    """What a chain's command was given after (one of AFTER): the start pose (the first command, or a fall restarted
    there, after which a one-shot or standing command stands on in it), a get-up, standing (the standing skill, or a
    one-shot command held past its clip and the hand-over to standing, `one_shot_s` and `idle_after_s` as the
    controller has them), locomotion (also restarted: it walks on from the start pose) or a gesture still going on.
    The same skill can hold from one and fall from another: the chain's mean hides it, the split shows it."""
    if previous is None:
        return AFTER[0]
    if previous.clip in directions:
        return AFTER[1] if previous.falls_s and not previous.restarts else AFTER[3]
    if previous.restarts:
        looping_gesture = previous.clip in gestures and previous.clip not in one_shot_s
        return AFTER[4] if looping_gesture else AFTER[0]
    if previous.falls_s:
        return AFTER[1]
    end = one_shot_s.get(previous.clip)
    if end is not None:
        return AFTER[2] if previous.held_s > end + idle_after_s else AFTER[4]
    # the standing clip is the one clip neither travelling nor checked as a gesture (none known without gestures)
    return AFTER[4] if previous.clip in gestures or not gestures else AFTER[2]


SHOVE_SPEED = 4.0  # m/s added to the root, horizontally: no standing skill stays up under it
GET_UP_BAR_S = 5.0


def shove(controller, trials: int, seed: int = 0, settle_s: float = 2.0, watch_s: float = 10.0) -> list[dict]:
    """Forced falls: from the start pose (idle for `settle_s`), the character is shoved at SHOVE_SPEED in a random
    direction and watched for `watch_s`; per trial whether it fell, the seconds from the fall to standing again by
    its learned get-up (None: it did not), and whether the loop restarted it."""
    rng, out = np.random.default_rng(seed), []
    for t in range(trials):
        loop = SimLoop(controller.model, controller, seed=seed + t)
        loop.advance(settle_s)
        heading = rng.uniform(-np.pi, np.pi)
        loop.data.qvel[:2] += SHOVE_SPEED * np.array([np.cos(heading), np.sin(heading)])
        falls, restarts = loop.falls, loop.restarts
        loop.advance(watch_s)
        out.append({"fell": loop.falls > falls, "get_up_s": loop.get_ups[0] if loop.get_ups else None,
                    "restarted": loop.restarts > restarts})
    return out


def shove_summary(trials: list[dict]) -> dict:
    """How many shoves felled the character, and of those the share standing again within GET_UP_BAR_S by its
    own get-up, without a restart."""
    fell = [t for t in trials if t["fell"]]
    quick = [t for t in fell if t["get_up_s"] is not None and t["get_up_s"] <= GET_UP_BAR_S and not t["restarted"]]
    times = [t["get_up_s"] for t in fell if t["get_up_s"] is not None]
    return {"trials": len(trials), "fell": len(fell), "got_up_in_time": len(quick),
            "got_up_share": len(quick) / len(fell) if fell else None,
            "get_up_median_s": float(np.median(times)) if times else None}


def first_frame(library, clip: str) -> np.ndarray:
    """qpos of `clip`'s first frame."""
    import jax.numpy as jnp

    return np.asarray(library.sample(jnp.asarray([library.index(clip)]), jnp.zeros(1)).qpos[0], np.float64)


def start_pose(library, clips: list[str]) -> np.ndarray:
    """qpos where the runtime starts a policy of `clips`: the first frame of the library's standing clip (`idle_clip`),
    else of the first clip."""
    from superpadl.student import idle_clip

    idle = idle_clip(library, library.clip_ids)
    return first_frame(library, library.clip_ids[idle] if idle >= 0 else clips[0])


def stand_at(controller, qpos: np.ndarray):
    """`controller`, (re)started at rest in `qpos` instead of where it would start."""
    controller.initial_state = lambda: (qpos.copy(), np.zeros(controller.model.nv))
    return controller


def ran_on(record: CommandRecord) -> bool:
    """A command that is not locomotion still travelling like locomotion after ENTER_S (it never stopped)."""
    return record.ran_on_speed is not None and record.ran_on_speed > LOCOMOTION_SPEED


def performed(record: CommandRecord) -> bool:
    """Did what was asked: a locomotion command set off, a gesture was done (unchecked ones count as done), anything
    else came to a stop."""
    return ((record.set_off_m is None or record.set_off_m >= SET_OFF_BAR_M)
            and (record.performed_s is None or record.performed_s >= record.performed_bar_s) and not ran_on(record))


def served(record: CommandRecord) -> bool:
    """The user got what they asked for: held without a fall, and performed."""
    return not record.falls_s and performed(record)


def summarize(records: list[CommandRecord]) -> dict:
    """Falls per hour, per-clip falls on entering and while holding, and locomotion set-off distances."""
    hours = sum(r.held_s for r in records) / 3600.0
    falls = [t for r in records for t in r.falls_s]
    clips: dict[str, dict] = {}
    for r in records:
        c = clips.setdefault(r.clip, {"commands": 0, "held_s": 0.0, "enter_falls": 0, "hold_falls": 0,
                                      "set_off_m": [], "checked": 0, "performed": 0, "ran_on": 0, "served": 0})
        c["commands"] += 1
        c["served"] += served(r)
        c["ran_on"] += ran_on(r)
        c["held_s"] += r.held_s
        c["enter_falls"] += sum(t <= ENTER_S for t in r.falls_s)
        c["hold_falls"] += sum(t > ENTER_S for t in r.falls_s)
        if r.set_off_m is not None:
            c["set_off_m"].append(r.set_off_m)
        if r.performed_s is not None:
            c["checked"] += 1
            c["performed"] += performed(r)
    get_ups = [t for r in records for t in r.get_ups_s]
    after = {k: {"commands": sum(r.after == k for r in records),
                 "with_a_fall": sum(r.after == k and bool(r.falls_s) for r in records)} for k in AFTER}
    return {"simulated_minutes": hours * 60.0, "commands": len(records), "falls": len(falls),
            "after": {k: v for k, v in after.items() if v["commands"]},
            "falls_per_hour": len(falls) / hours if hours else 0.0,
            "commands_with_a_fall": sum(bool(r.falls_s) for r in records), "clips": clips,
            "served_share": sum(map(served, records)) / len(records) if records else 0.0,
            "get_ups": len(get_ups), "restarts": sum(r.restarts for r in records),
            "get_up_median_s": float(np.median(get_ups)) if get_ups else None}


TRAINING_HOLD_S = 10.0  # each clip's command held this long from the start pose in a training evaluation


def training_eval(controller, directions: dict[str, np.ndarray], minutes: float, seed: int,
                  gestures: dict[str, GestureCheck] | None = None) -> dict:
    """What a distillation run's evaluation records of real use (`kept_score` weighs `served_share`; `clip_served`,
    each clip's share of commands served, weighs what DAgger practises): one chain of
    `minutes` from `seed`, the same each time, so that evaluations compare alike, and each clip's first caption
    held TRAINING_HOLD_S from the start pose (a user's first command: a chain of a few minutes gives each clip only
    a few commands, and rarely from standing)."""
    first = dict(zip(reversed(controller.caption_clips), reversed(controller.captions)))  # each clip's first caption
    gestures = gestures or {}
    held = [hold_from_start(controller, caption, clip, TRAINING_HOLD_S, directions.get(clip), gesture=gestures.get(clip))
            for clip, caption in first.items()]
    s = summarize(chain(controller, minutes, seed, directions, gestures=gestures) + held)
    return {"served_share": s["served_share"], "falls_per_hour": s["falls_per_hour"],
            "clip_served": {clip: c["served"] / c["commands"] for clip, c in s["clips"].items()}}


def run(controller, minutes: float, seeds: int, directions: dict[str, np.ndarray],
        gestures: dict[str, GestureCheck] | None = None) -> dict:
    """`chain` for `minutes` per seed (seeds 0..seeds-1), summarized over all of them."""
    return summarize([r for s in range(seeds) for r in chain(controller, minutes, s, directions, gestures=gestures)])


def table(header: tuple, rows: list[tuple]) -> str:
    """Left-aligned columns under a header and a rule."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths))
                     for r in [header, tuple("-" * w for w in widths), *rows])


def report(summaries: dict[str, dict]) -> str:
    """One table, a column per summary: falls per hour, then per clip the falls on entering + holding over the
    commands given (and the median set-off distance of locomotion)."""
    names = list(summaries)
    rows = [("simulated minutes", *(f"{s['simulated_minutes']:.0f}" for s in summaries.values())),
            ("commands / with a fall", *(f"{s['commands']} / {s['commands_with_a_fall']}" for s in summaries.values())),
            ("commands served", *(f"{s['served_share']:.0%}" for s in summaries.values())),
            ("falls per hour", *(f"{s['falls_per_hour']:.1f}" for s in summaries.values())),
            ("got up / restarted", *(f"{s['get_ups']} / {s['restarts']}" for s in summaries.values())),
            ("median time to get up", *("-" if s["get_up_median_s"] is None else f"{s['get_up_median_s']:.1f} s"
                                        for s in summaries.values()))]
    for kind in AFTER:
        if any(kind in s.get("after", {}) for s in summaries.values()):
            rows.append((f"given after {kind}: with a fall", *(
                f"{a['with_a_fall']} of {a['commands']}" if (a := s.get("after", {}).get(kind)) else "-"
                for s in summaries.values())))
    clips = dict.fromkeys(c for s in summaries.values() for c in s["clips"])
    for clip in clips:
        cells = []
        for s in summaries.values():
            c = s["clips"].get(clip)
            if c is None:
                cells.append("-")
                continue
            cell = f"{c['enter_falls']}+{c['hold_falls']} of {c['commands']}"
            if c["set_off_m"]:
                cell += f", set off {np.median(c['set_off_m']):.2f} m"
            if c.get("checked"):
                cell += f", done {c['performed']} of {c['checked']}"
            if c.get("ran_on"):
                cell += f", ran on {c['ran_on']}"
            cells.append(cell)
        rows.append((clip, *cells))
    lines = [table(("", *names), rows)]
    lines.append(f"served: held without a fall, locomotion {SET_OFF_BAR_M:g} m on in {SET_OFF_S:g} s, and a gesture "
                 f"done (motion more like its clip than like standing for {GESTURE_BAR:.0%} of the time its clip is), "
                 f"anything else stopped (ran on: the root still faster than {LOCOMOTION_SPEED:g} m/s from {ENTER_S:g} "
                 "s on)")
    lines.append(f"per clip: falls entering (first {ENTER_S:g} s) + holding, of the commands given; set off: median "
                 f"metres along the clip's direction {SET_OFF_S:g} s after a locomotion command held that long")
    return "\n".join(lines)
