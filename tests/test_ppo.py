"""PPO: GAE against a reference loop, the normaliser against numpy, and learning on a toy env."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padl import normalizer, ppo


def gae_reference(r, v, d, tr, last, gamma, lam, final=None):
    """Plain per-env backward loop, written independently of the vectorised version."""
    T, N = r.shape
    adv = np.zeros_like(r)
    for n in range(N):
        a = 0.0
        for t in reversed(range(T)):
            if d[t, n]:
                next_v, a_next = 0.0, 0.0
            elif tr[t, n]:
                next_v, a_next = (v[t, n] if final is None else final[t, n]), 0.0
            else:
                next_v, a_next = (v[t + 1, n] if t + 1 < T else last[n]), a
            a = r[t, n] + gamma * next_v - v[t, n] + gamma * lam * a_next
            adv[t, n] = a
    return adv, adv + v


@pytest.mark.parametrize("with_final", [False, True])
def test_gae_matches_reference_loop(with_final):
    rng = np.random.default_rng(0)
    T, N = 40, 7
    r = rng.normal(size=(T, N)).astype(np.float32)
    v = rng.normal(size=(T, N)).astype(np.float32)
    d = rng.random((T, N)) < 0.08
    tr = (rng.random((T, N)) < 0.08) & ~d
    tr[5, 0] = d[5, 0] = True  # terminated on the last step of the time limit: termination wins
    last = rng.normal(size=N).astype(np.float32)
    final = rng.normal(size=(T, N)).astype(np.float32) if with_final else None
    adv, ret = jax.jit(ppo.compute_gae, static_argnums=(5, 6))(
        r, v, d, tr, last, 0.97, 0.9, None if final is None else jnp.asarray(final)
    )
    adv_ref, ret_ref = gae_reference(r, v, d, tr, last, 0.97, 0.9, final)
    np.testing.assert_allclose(adv, adv_ref, atol=1e-5)
    np.testing.assert_allclose(ret, ret_ref, atol=1e-5)


def test_gae_hand_computed():
    # gamma = lam = 0.5, one env, three steps, r = 1 everywhere, V = [1, 2, 4], V(after) = 10.
    col = lambda *x: jnp.asarray(x, jnp.float32)[:, None]
    r, v, last = col(1, 1, 1), col(1, 2, 4), jnp.array([10.0])
    zeros = col(0, 0, 0)
    # No episode end: d2 = 1+.5*10-4 = 2; d1 = 1+.5*4-2 = 1; d0 = 1+.5*2-1 = 1; A = [1+.25*1.5, 1+.25*2, 2].
    adv, ret = ppo.compute_gae(r, v, zeros, zeros, last, 0.5, 0.5)
    np.testing.assert_allclose(adv[:, 0], [1.375, 1.5, 2.0], atol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [2.375, 3.5, 6.0], atol=1e-6)
    # Truncated at t=1 with V(final obs) = 6 -> A1 = 1+.5*6-2 = 2, no carry; terminated at t=2 -> A2 = 1-4 = -3.
    adv, _ = ppo.compute_gae(r, v, col(0, 0, 1), col(0, 1, 0), last, 0.5, 0.5, col(0, 6, 0))
    np.testing.assert_allclose(adv[:, 0], [1.0 + 0.25 * 2.0, 2.0, -3.0], atol=1e-6)
    # Without final values the truncated step bootstraps with its own V(obs[1]) = 2: A1 = 1+1-2 = 0.
    adv, _ = ppo.compute_gae(r, v, col(0, 0, 1), col(0, 1, 0), last, 0.5, 0.5)
    np.testing.assert_allclose(adv[:, 0], [1.0, 0.0, -3.0], atol=1e-6)


def test_normalizer_matches_numpy():
    rng = np.random.default_rng(1)
    batches = [rng.normal(100.0, 3.0, size=s).astype(np.float32) for s in [(1, 5), (37, 5), (4, 8, 5), (500, 5)]]
    state = normalizer.init(5)
    for b in batches:
        state = jax.jit(normalizer.update)(state, b)
    ref = np.concatenate([b.reshape(-1, 5) for b in batches]).astype(np.float64)
    assert float(state.count) == ref.shape[0]
    np.testing.assert_allclose(state.mean, ref.mean(0), rtol=1e-6)
    np.testing.assert_allclose(normalizer.variance(state), ref.var(0), rtol=1e-4)
    z = normalizer.normalize(state, ref.astype(np.float32), clip=None)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
    assert float(jnp.max(normalizer.normalize(state, jnp.full((5,), 1e6)))) == 5.0
    np.testing.assert_array_equal(normalizer.normalize(normalizer.init(3), jnp.arange(3.0)), jnp.arange(3.0))


# --- toy env: 2-D point mass that must reach a goal -------------------------------------------
N_ENVS, EP_LEN, T = 64, 50, 32


def env_reset(key, n):
    k_pos, k_goal = jax.random.split(key)
    pos = jax.random.uniform(k_pos, (n, 2), minval=-1.0, maxval=1.0)
    goal = jax.random.uniform(k_goal, (n, 2), minval=-1.0, maxval=1.0)
    return {"pos": pos, "vel": jnp.zeros((n, 2)), "goal": goal, "t": jnp.zeros((n,), jnp.int32)}


def env_obs(s):
    return jnp.concatenate([s["pos"], s["vel"], s["goal"] - s["pos"]], axis=-1)


def env_step(s, action, key):
    """Damped point mass; reward -distance; terminates at the goal, truncates after EP_LEN steps, auto-resets."""
    vel = 0.8 * s["vel"] + 0.1 * jnp.clip(action, -1.0, 1.0)
    pos = s["pos"] + vel
    dist = jnp.linalg.norm(s["goal"] - pos, axis=-1)
    t = s["t"] + 1
    done = dist < 0.05
    trunc = (t >= EP_LEN) & ~done
    stepped = {"pos": pos, "vel": vel, "goal": s["goal"], "t": t}
    fresh = env_reset(key, pos.shape[0])
    end = done | trunc
    new = jax.tree.map(lambda a, b: jnp.where(end.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), fresh, stepped)
    return new, -dist, done, trunc, env_obs(stepped)


@jax.jit
def collect(ts, s, key):
    """A generic lax.scan rollout for a pure-JAX env (the real env is stepped from Python)."""

    def step(s, k):
        k_act, k_env = jax.random.split(k)
        obs = env_obs(s)
        action, log_prob, value = ppo.act(ts, obs, k_act)
        s, reward, done, trunc, final_obs = env_step(s, action, k_env)
        return s, (obs, action, log_prob, value, reward, done, trunc, final_obs)

    s, (obs, act, logp, val, rew, done, trunc, final_obs) = jax.lax.scan(step, s, jax.random.split(key, T))
    final_values = ppo.value(ts, final_obs)
    return s, ppo.Rollout(obs, act, logp, val, rew, done, trunc, ppo.value(ts, env_obs(s)), final_values)


@jax.jit
def evaluate(ts, key):
    """Mean deterministic return of one episode from 256 fixed starts."""

    def step(carry, _):
        s, alive, ret = carry
        action, _, _ = ppo.act(ts, env_obs(s), key, deterministic=True)
        s2, reward, done, trunc, _ = env_step(s, action, key)
        ret = ret + alive * reward
        return (s2, alive * (1.0 - (done | trunc)), ret), None

    s = env_reset(key, 256)
    (_, _, ret), _ = jax.lax.scan(step, (s, jnp.ones(256), jnp.zeros(256)), None, length=EP_LEN)
    return ret.mean()


def test_ppo_learns_point_mass():
    t0 = time.perf_counter()
    config = ppo.PPOConfig(policy_hidden=(64, 64), value_hidden=(64, 64))
    key = jax.random.key(0)
    key, k_init, k_env, k_eval = jax.random.split(key, 4)
    ts = ppo.init(k_init, obs_dim=6, act_dim=2, config=config)
    s = env_reset(k_env, N_ENVS)
    s["t"] = jax.random.randint(k_env, (N_ENVS,), 0, EP_LEN)  # stagger episode ends across envs
    initial = float(evaluate(ts, k_eval))
    for _ in range(50):
        key, k_roll, k_upd = jax.random.split(key, 3)
        s, rollout = collect(ts, s, k_roll)
        ts, metrics = ppo.update(ts, rollout, k_upd)
    final = float(evaluate(ts, k_eval))
    print(f"\npoint mass: initial return {initial:.2f} -> final {final:.2f} "
          f"({time.perf_counter() - t0:.1f}s); last metrics "
          + ", ".join(f"{k}={float(v):.3g}" for k, v in metrics.items()))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(ts.step) == 50
    assert final > 0.25 * initial, (initial, final)  # returns are negative: >= 75% less distance-cost


def test_update_first_epoch_ratio_is_one():
    """Right after `act`, the update's first minibatch must see ratio 1 (no KL, no clipping)."""
    config = ppo.PPOConfig(policy_hidden=(16,), value_hidden=(16,), num_epochs=1, num_minibatches=1)
    ts = ppo.init(jax.random.key(1), 6, 2, config)
    ts = ts.replace(normalizer=normalizer.update(ts.normalizer, jax.random.normal(jax.random.key(2), (100, 6))))
    s = env_reset(jax.random.key(3), N_ENVS)
    _, rollout = collect(ts, s, jax.random.key(4))
    _, metrics = ppo.update(ts, rollout, jax.random.key(5))
    assert abs(float(metrics["approx_kl"])) < 1e-6 and float(metrics["clip_fraction"]) == 0.0
