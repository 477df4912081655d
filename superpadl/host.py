"""The simulation loop behind `superpadl view` and `superpadl render`: physics, a controller, a command queue.

A controller turns the character's state into PD position targets at its own rate (30 Hz for the policies);
physics runs at the model's timestep (120 Hz), so each control step is one `act` followed by
`round(1 / (timestep * control_hz))` physics steps with those targets held in `data.ctrl`.

Commands are text. `SimLoop.command("walk for 3s; then bow")` parses the text with `superpadl.script` into stages,
replaces the queue and switches the controller to the first stage at once; each stage plays for its duration
(a stage without one lasts `default_duration`), then the next one starts. The last stage keeps playing after
its duration runs out (an interactive command lasts until the next one). Stage ends are counted in control
steps from the start of the queue, rounded from cumulative time, so long scripts do not drift.

When the character falls (pelvis below 0.3 m; or a body other than a foot touching the floor while the pelvis is
below 0.6 m), `falls` counts it. A controller that knows how to get up (`get_up_command`, the text of its learned
get-up skill) is given that command: the queue's clock runs on, and once the character has stood for
`STOOD_S` the command due now is given again (`get_ups` records how long each took). If it is not standing
within `GET_UP_TIMEOUT_S`, or the controller has no get-up skill, it is restarted from
`controller.initial_state()` (`restarts` counts these), and the queue goes on where it was: the controller carries on
with the command it holds (a restart is not a new command; `reset` tells it, and a policy ends a one-shot command
there). A non-finite state
(MuJoCo's own instability warnings included) is restarted at once; so is an action that is not finite (a policy
that blew up: NaN targets would otherwise be zeroed by MuJoCo and the character freeze silently), also counted in
`bad_actions`.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Iterable, Protocol, runtime_checkable

import mujoco
import numpy as np

from superpadl.script import Stage, parse_script, total_duration

FALL_HEIGHT = 0.3         # pelvis below this: fallen
CONTACT_FALL_HEIGHT = 0.6  # a non-foot body on the floor with the pelvis below this: fallen
STAND_HEIGHT = 0.75        # pelvis above this and upright (its z axis within ~35 degrees of vertical): standing
STOOD_S = 0.5              # standing this long ends a get-up
GET_UP_TIMEOUT_S = 8.0     # a get-up not done by then is given up: the character is restarted
_UNSTABLE_WARNINGS = (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL,
                      mujoco.mjtWarning.mjWARN_BADQACC)


@runtime_checkable
class Controller(Protocol):
    """What the viewer and renderer drive. A trained text-conditioned policy implements this.

    Optional: a `character` (characters.Character) or `model` (mujoco.MjModel) attribute naming the character it
    drives (without one the default humanoid is used), and a `seed(int)` method, which SimLoop calls with its
    seed (for a stochastic policy).
    """

    control_hz: float

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(qpos, qvel) to start or restart the character from."""

    def reset(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Called after every (re)start, with the state the character starts from."""

    def set_command(self, text: str) -> None:
        """Switch to the skill for `text` now; ValueError (message: the problem) on a prompt it cannot perform."""

    def act(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """(nu,) PD position targets in radians, written to data.ctrl."""


class HoldController:
    """Placeholder controller until a trained policy is installed: holds the rest pose under PD control.

    Commands are validated (non-empty, one line, at most 200 characters) and otherwise ignored, so scripts and
    the viewer work end to end; the character just stands.
    """

    control_hz = 30.0

    def __init__(self, character=None):
        if character is None:
            from characters.character import Character

            character = Character()
        self.character = character
        self.model = character.model
        self._rest = character.rest_qpos()
        # position actuators drive hinges: target = the hinge's rest angle (qpos after the 7 root coordinates)
        self._targets = self._rest[7:][character.actuator_joint].astype(np.float64)
        self.command: str | None = None

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self._rest.copy(), np.zeros(self.model.nv)

    def reset(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
        pass

    def set_command(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty command")
        if "\n" in text or len(text) > 200:
            raise ValueError("a command is one line of at most 200 characters")
        self.command = text.strip()

    def act(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        return self._targets.copy()


class SimLoop:
    """Physics + controller + command queue. Deterministic for a seed: MuJoCo is deterministic, the seed drives
    the optional initial-state noise (`init_noise`, std of joint angles in radians, default 0) and is passed to
    the controller's `seed` method if it has one. Feet (exempt from the floor-contact fall rule) are the bodies
    named right_foot and left_foot."""

    def __init__(self, model: mujoco.MjModel, controller: Controller, seed: int = 0,
                 default_duration: float = 4.0, init_noise: float = 0.0, history_s: float = 30.0):
        self.model, self.controller = model, controller
        self.data = mujoco.MjData(model)
        self.timestep = float(model.opt.timestep)
        self.control_hz = float(controller.control_hz)
        if not self.control_hz > 0:
            raise ValueError(f"controller.control_hz must be positive, got {self.control_hz}")
        self.substeps = max(1, int(round(1.0 / (self.timestep * self.control_hz))))
        self.control_dt = self.substeps * self.timestep
        self.default_duration = float(default_duration)
        self.init_noise = float(init_noise)
        self.rng = np.random.default_rng(seed)
        if callable(getattr(controller, "seed", None)):
            controller.seed(seed)
        self.strict = False  # True: a controller refusing a queued stage raises instead of skipping it

        self._pelvis = model.body("pelvis").id
        self._floor_geoms = {g for g in range(model.ngeom) if model.geom_bodyid[g] == 0}
        feet = [model.body(n).id for n in ("right_foot", "left_foot") if _has_body(model, n)]
        self._foot_bodies = set(feet)

        self.physics_steps = 0      # since construction; sim time = physics_steps * timestep
        self.control_steps = 0
        self.falls = 0
        self.bad_actions = 0  # control steps whose action was not finite (each also counted in falls)
        self.restarts = 0  # falls ended by a restart (no get-up skill, a get-up timed out, a blow-up)
        self.get_ups: list[float] = []  # seconds from each fall to standing again, by the learned get-up
        self._getting_up: int | None = None  # control step of the fall being got up from
        self._stood = 0  # control steps stood so far in a get-up
        self.errors: list[str] = []  # stages the controller refused (non-strict mode), newest last
        self.current: Stage | None = None
        self._queue: deque[Stage] = deque()
        self._queue_step = 0        # control step at which the current queue started
        self._stage_end = 0         # control step (absolute) at which the current stage ends
        self._stage_start = 0
        self._cum = 0.0             # planned queue time up to the end of the current stage
        self._sub = 0               # physics substep within the current control step
        self._warnings = np.zeros(len(_UNSTABLE_WARNINGS), int)
        # for export (`recording`): qpos after every control step, the last history_s seconds, and the commands
        self.history: deque[np.ndarray] = deque(maxlen=int(round(history_s * self.control_hz)) + 1)
        self.timeline: deque[dict] = deque(maxlen=1000)
        self._start()
        self.history.append(self.data.qpos.copy())

    # ----- state ---------------------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Simulated seconds since the loop started (restarts do not reset it)."""
        return self.physics_steps * self.timestep

    @property
    def current_text(self) -> str | None:
        return self.current.text if self.current else None

    @property
    def queued(self) -> list[Stage]:
        """Stages waiting after the current one, in order."""
        return list(self._queue)

    @property
    def elapsed(self) -> float:
        """Seconds the current stage has been playing."""
        return (self.control_steps - self._stage_start) * self.control_dt

    @property
    def remaining(self) -> float:
        """Seconds until the current stage ends (0 once the last stage has run its time)."""
        return max(0, self._stage_end - self.control_steps) * self.control_dt

    @property
    def pelvis_height(self) -> float:
        return float(self.data.xpos[self._pelvis, 2])

    # ----- commands ------------------------------------------------------------------------------------------
    def command(self, text: str) -> list[Stage]:
        """Parse `text` (';' / 'then' separate stages), replace the queue and switch now.

        Raises ValueError (ScriptError included) for a bad script or a first command the controller refuses;
        the loop is then unchanged."""
        stages = parse_script(text, self.default_duration, source="<command>")
        self.queue(stages)
        return stages

    def queue(self, commands: Iterable[Stage]) -> None:
        """Replace the queue with `commands` and switch to the first one now (ValueError if it is refused)."""
        stages = list(commands)
        if not stages:
            raise ValueError("no commands")
        self.controller.set_command(stages[0].text)  # may raise: nothing changed yet
        self.current = stages[0]
        self._log_command()
        self._queue = deque(stages[1:])
        self._queue_step = self._stage_start = self.control_steps
        self._cum = stages[0].duration
        self._stage_end = self._queue_step + self._steps(self._cum)

    def _steps(self, seconds: float) -> int:
        return int(round(seconds / self.control_dt))

    def _advance_queue(self) -> None:
        while self.current is not None and self._queue and self.control_steps >= self._stage_end:
            stage = self._queue.popleft()
            self._cum += stage.duration
            self._stage_end = self._queue_step + self._steps(self._cum)
            try:
                if self._getting_up is None:  # else given once the character stands again
                    self.controller.set_command(stage.text)
            except ValueError as e:
                if self.strict:
                    raise ValueError(f"command {stage.text!r}: {e}") from None
                self.errors.append(f"{stage.text!r}: {e}")
                continue  # skip it; its time is still counted so later stages keep their schedule
            self.current = stage
            self._stage_start = self.control_steps
            self._log_command()

    # ----- stepping ------------------------------------------------------------------------------------------
    def step(self) -> None:
        """One physics step; the controller acts at the first substep of each control step."""
        m, d = self.model, self.data
        if self._sub == 0:
            action = np.asarray(self.controller.act(d.qpos.copy(), d.qvel.copy()), np.float64)
            if np.isfinite(action).all():
                d.ctrl[:] = action
            else:  # the controller blew up: counted, and restarted like a physics blow-up (not frozen in place)
                self.bad_actions += 1
                self.falls += 1
                self._restart()
        mujoco.mj_step(m, d)
        self.physics_steps += 1
        self._sub += 1
        if self._sub == self.substeps:
            self._sub = 0
            self.control_steps += 1
            if self._getting_up is not None:
                self._get_up_step()
            elif (fall := self._fallen()) is not None:
                self.falls += 1
                get_up = getattr(self.controller, "get_up_command", None)
                if fall == "fell" and get_up:
                    self._getting_up, self._stood = self.control_steps, 0
                    self.controller.set_command(get_up)
                else:
                    self._restart()
            self._advance_queue()
            self.history.append(d.qpos.copy())

    def control_step(self) -> None:
        """One controller action followed by `substeps` physics steps (finishes a partial one if mid-way)."""
        self.step()
        while self._sub:
            self.step()

    def advance(self, seconds: float) -> int:
        """Physics steps until `seconds` more have been simulated (to the nearest step); returns how many."""
        n = int(round(seconds / self.timestep))
        for _ in range(n):
            self.step()
        return n

    def reset(self) -> None:
        """Restart the character from the controller's initial state (not counted as a fall; queue kept)."""
        getting_up, self._getting_up = self._getting_up is not None, None
        self._start(reissue=getting_up)

    def _restart(self) -> None:
        self.restarts += 1
        self.reset()

    def _get_up_step(self) -> None:
        """During a get-up: a blow-up or the time-out restarts; standing for STOOD_S gives the due command again."""
        if self._fallen() == "unstable":
            return self._restart()
        if self.standing():
            self._stood += 1
        else:
            self._stood = 0
        if self._stood * self.control_dt >= STOOD_S:
            self.get_ups.append((self.control_steps - self._getting_up) * self.control_dt)
            self._getting_up = None
            if self.current is not None:
                try:
                    self.controller.set_command(self.current.text)
                except ValueError as e:  # a stage given during the get-up that the controller refuses
                    if self.strict:
                        raise ValueError(f"command {self.current.text!r}: {e}") from None
                    self.errors.append(f"{self.current.text!r}: {e}")
        elif (self.control_steps - self._getting_up) * self.control_dt >= GET_UP_TIMEOUT_S:
            self._restart()

    def standing(self) -> bool:
        """Pelvis above STAND_HEIGHT and upright."""
        up = self.data.xmat[self._pelvis].reshape(3, 3)[2, 2]  # the z component of the pelvis's z axis
        return bool(self.data.xpos[self._pelvis, 2] > STAND_HEIGHT and up > 0.8)

    def _start(self, reissue: bool = False) -> None:
        m, d = self.model, self.data
        qpos, qvel = self.controller.initial_state()
        qpos = np.array(qpos, np.float64).copy()
        qvel = np.array(qvel, np.float64).copy()
        if self.init_noise > 0:
            qpos[7:] += self.rng.normal(0.0, self.init_noise, qpos.shape[0] - 7)
        mujoco.mj_resetData(m, d)
        d.qpos[:], d.qvel[:] = qpos, qvel
        mujoco.mj_forward(m, d)
        self._warnings = self._warning_counts()
        self._sub = 0
        self.controller.reset(d.qpos.copy(), d.qvel.copy())
        if reissue and self.current is not None:  # a get-up given up: back to the current command
            self.controller.set_command(self.current.text)

    def _log_command(self) -> None:
        c = self.controller
        similarity = getattr(c, "similarity", None)
        self.timeline.append({"step": self.control_steps, "text": self.current.text,
                              "caption": getattr(c, "matched_caption", None),
                              "similarity": None if similarity is None else float(similarity)})

    def recording(self, seconds: float | None = None):
        """The last `seconds` (default: all the history holds) as a rendering.export.Recording: one frame per
        control step, and the commands given in that span (the one in progress at its start from time 0)."""
        from rendering.export import Recording

        frames = list(self.history)
        if seconds is not None:
            frames = frames[-(int(round(seconds * self.control_hz)) + 1):]
        first = self.control_steps - len(frames) + 1
        timeline = []
        for c in self.timeline:
            entry = {"start_s": max(0, c["step"] - first) / self.control_hz,
                     **{k: c[k] for k in ("text", "caption", "similarity")}}
            if timeline and c["step"] <= first:
                timeline[-1] = entry  # superseded before the span began
            else:
                timeline.append(entry)
        return Recording(self.model, np.array(frames), self.control_hz, timeline)

    def _warning_counts(self) -> np.ndarray:
        return np.array([self.data.warning[w].number for w in _UNSTABLE_WARNINGS])

    def _fallen(self) -> str | None:
        """"unstable" (a non-finite state, or MuJoCo reset it), "fell", or None."""
        d = self.data
        if not (np.isfinite(d.qpos).all() and np.isfinite(d.qvel).all()):
            return "unstable"
        if (self._warning_counts() > self._warnings).any():  # MuJoCo reset the state itself
            return "unstable"
        height = d.xpos[self._pelvis, 2]
        if height < FALL_HEIGHT:
            return "fell"
        if height < CONTACT_FALL_HEIGHT:
            bodyid = self.model.geom_bodyid
            for c in d.contact[: d.ncon]:
                g1, g2 = c.geom1, c.geom2
                other = g2 if g1 in self._floor_geoms else g1 if g2 in self._floor_geoms else None
                if other is not None and bodyid[other] not in self._foot_bodies and bodyid[other] != 0:
                    return "fell"
        return None

    # ----- scripted rendering --------------------------------------------------------------------------------
    def run_script(self, stages: list[Stage], fps: float,
                   on_frame: Callable[[mujoco.MjData, str | None], None]) -> int:
        """Play `stages` from the current state and call on_frame(data, caption) at the video rate.

        Frame k shows the state at time k / fps after the start (frame 0: before any action); the physics is
        advanced step by step until the sim time reaches the frame time, so the video rate may differ from the
        control rate. round(total duration * fps) frames; returns that number. A stage the controller refuses
        raises ValueError."""
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        strict, self.strict = self.strict, True
        try:
            stages = list(stages)
            try:
                self.queue(stages)
            except ValueError as e:
                raise ValueError(f"command {stages[0].text!r}: {e}") from None
            start = self.physics_steps
            n = int(round(total_duration(stages) * fps))
            for k in range(n):
                target = start + int(round(k / fps / self.timestep))
                while self.physics_steps < target:
                    self.step()
                on_frame(self.data, self.current_text)
        finally:
            self.strict = strict
        return n


def _has_body(model: mujoco.MjModel, name: str) -> bool:
    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) >= 0
