"""Rollouts that compile once: `ImitationEnv.fuse` (a control step with the caller's JAX work compiled into the step's
jitted part) gives the same states as `step` followed by that work; evaluations whose episodes end at different
steps share one compiled reference and forward kinematics (a new length compiled them again: seconds each)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from motions.library import MotionLibrary
from padl.env import EnvConfig, ImitationEnv, PhysicsConfig
from padl.evaluate import evaluate_policy
from synthetic import write_synthetic_library


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> MotionLibrary:
    return MotionLibrary(write_synthetic_library(tmp_path_factory.mktemp("lib") / "synthetic", kinds=("sway",)))


@pytest.fixture(scope="module")
def env(lib) -> ImitationEnv:
    return ImitationEnv(lib, EnvConfig(num_envs=3, physics=PhysicsConfig(backend="mujoco", num_threads=1)))


def policy(obs, params):
    return params * jnp.tanh(obs[:, :28])


def after(new, carry, params):
    """Record the reward of the step and act on the new observation."""
    return {"t": carry["t"] + 1, "reward": carry["reward"].at[carry["t"]].set(new.reward)}, policy(new.obs, params)


def test_fused_steps_match_steps_then_the_policy(env):
    params, steps = jnp.float32(0.8), 6
    state = env.reset(0)
    action, rewards = policy(state.obs, params), []
    for _ in range(steps):
        state = env.step(state, action)
        rewards.append(np.asarray(state.reward))
        action = policy(state.obs, params)

    fused, f_state = env.fuse(after), env.reset(0)
    carry, f_action = {"t": jnp.zeros((), jnp.int32), "reward": jnp.zeros((steps, env.num_envs))}, policy(f_state.obs, params)
    for _ in range(steps):
        f_state, carry, f_action = fused(f_state, f_action, carry, params)
    assert int(carry["t"]) == steps
    np.testing.assert_allclose(np.asarray(carry["reward"]), np.stack(rewards), rtol=1e-6)
    np.testing.assert_allclose(f_state.qpos, state.qpos, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(f_state.obs), np.asarray(state.obs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(f_action), np.asarray(action), rtol=1e-5, atol=1e-6)


def test_evaluations_of_different_lengths_compile_once(lib):
    cfg = EnvConfig(physics=PhysicsConfig(num_threads=1))
    lengths, compiled = [], []
    for scale in (0.0, 1.0, 0.7):  # PD on the reference stays up; full-scale actions fall, at different steps
        ev = evaluate_policy(lib, lambda s: np.full((s.obs.shape[0], 28), scale, np.float32), episodes=2,
                             seconds=2.0, env_config=cfg)
        lengths.append(ev["mean"]["frames"])
        compiled.append((lib._bodies._cache_size(), lib._sample._cache_size()))
    assert len(set(lengths)) > 1
    assert compiled[0] == compiled[1] == compiled[2]
