"""A single imitation environment behind the Gymnasium API, for tools that expect one (checkers, baselines).

Training uses the batched `padl.env.ImitationEnv` directly; this wraps one of it (num_envs=1, MuJoCo C).

    import gymnasium, padl.gym_env  # the import registers the id
    env = gymnasium.make("padl/Imitation-v0", library_path="path/to/library", clips=["deepmimic_walk"],
                         render_mode="rgb_array")
"""
from __future__ import annotations

import rendering  # noqa: F401  (first: chooses MuJoCo's OpenGL backend before mujoco is imported)

import gymnasium
import mujoco
import numpy as np
from gymnasium import spaces

from motions.library import MotionLibrary
from padl.config import replace
from padl.env import EnvConfig, ImitationEnv

ENV_ID = "padl/Imitation-v0"


class ImitationGymEnv(gymnasium.Env):
    """One environment: Box observations (float32) and actions in [-1, 1] (PD targets, see EnvConfig).

    Unlike the batched env, it does not reset by itself: a terminal step returns the episode's last
    observation, and the caller calls reset(). Extra keyword arguments override EnvConfig fields (a dict for
    a nested config updates its fields: `physics={"control_hz": 60}`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, library_path, clips: list[str] | None = None, render_mode: str | None = None,
                 width: int = 640, height: int = 480, **config):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', not {render_mode!r}")
        library = MotionLibrary(library_path, clips=clips)
        physics = {"num_threads": 1, **config.pop("physics", {}), "backend": "mujoco"}
        cfg = replace(EnvConfig(), **config, num_envs=1, physics=physics)
        self.env = ImitationEnv(library, cfg)
        self.metadata = {**self.metadata, "render_fps": cfg.physics.control_hz}
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.env.obs_size,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.env.action_size,), np.float32)
        self.render_mode, self._size = render_mode, (width, height)
        self._state = None
        self._renderer = self._data = None

    def _info(self, s) -> dict:
        info = {name: float(v[0]) for name, v in s.terms.items()}
        info.update(clip=self.env.library.clip_ids[int(s.clip[0])], clip_time=float(s.clip_time[0]),
                    body_error=float(s.info["body_error"][0]), fell=bool(s.info["fell"][0]),
                    blowup=bool(s.info["blowup"][0]), nan_action=bool(s.info["nan_action"][0]))
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = self.env.reset(int(self.np_random.integers(2**31 - 1)))
        return np.asarray(self._state.obs[0], np.float32), self._info(self._state)

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        s = self.env.step(self._state, np.asarray(action, np.float32)[None])
        self._state = s
        # final_obs is the observation the step ended in (before the batched env's automatic reset).
        return (np.asarray(s.final_obs[0], np.float32), float(s.reward[0]), bool(s.done[0]),
                bool(s.truncated[0]), self._info(s))

    def render(self):
        """RGB frame (H, W, 3) of the current state; after a terminal step that is the next episode's start."""
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        from rendering.offscreen import FrameRenderer

        model = self.env.character.model
        if self._renderer is None:
            self._renderer = FrameRenderer(model, *self._size)
            self._data = mujoco.MjData(model)
        self._data.qpos[:] = np.asarray(self._state.qpos[0], np.float64)
        mujoco.mj_forward(model, self._data)
        return self._renderer.render(self._data)

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="padl.gym_env:ImitationGymEnv")
