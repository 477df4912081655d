"""AMP discriminator: separates two Gaussians, reward ordering, gradient penalty, replay buffer."""

import jax
import jax.numpy as jnp
import numpy as np

from padl import discriminator as disc


def test_discriminator_learns_two_gaussians():
    cfg = disc.DiscConfig(batch_size=256)
    state = disc.init(jax.random.key(0), 8, cfg)
    key = jax.random.key(1)
    for _ in range(200):
        key, k_real, k_fake, k_upd = jax.random.split(key, 4)
        real = 1.0 + 0.5 * jax.random.normal(k_real, (256, 8))
        fake = -1.0 + 0.5 * jax.random.normal(k_fake, (256, 8))
        state, metrics = disc.update(state, real, fake, k_upd)
    assert int(state.step) == 200
    assert float(metrics["acc_real"]) > 0.9 and float(metrics["acc_fake"]) > 0.9, metrics
    assert float(metrics["grad_penalty"]) >= 0.0
    k_real, k_fake = jax.random.split(key)
    r_real = disc.reward(state, 1.0 + 0.5 * jax.random.normal(k_real, (1000, 8)))
    r_fake = disc.reward(state, -1.0 + 0.5 * jax.random.normal(k_fake, (1000, 8)))
    assert float(r_real.mean()) > float(r_fake.mean()) + 0.5, (r_real.mean(), r_fake.mean())
    assert float(r_real.min()) >= 0.0 and float(r_real.max()) <= -np.log(1e-4) + 1e-4


def test_loss_terms_for_constant_discriminator():
    cfg = disc.DiscConfig(hidden=(32, 32))
    params = disc.init(jax.random.key(0), 8, cfg).params
    real = jax.random.normal(jax.random.key(1), (64, 8))
    fake = jax.random.normal(jax.random.key(2), (64, 8)) - 1.0
    _, m = disc.loss(params, real, fake, cfg)
    assert float(m["grad_penalty"]) > 0.0 and float(m["logit_l2"]) > 0.0
    zero = jax.tree.map(jnp.zeros_like, params)  # D(x) = 0 for every x
    total, m = disc.loss(zero, real, fake, cfg)
    assert float(m["grad_penalty"]) == 0.0 and float(m["logit_l2"]) == 0.0
    np.testing.assert_allclose(total, np.log(2.0), rtol=1e-6)  # BCE of logit 0 is log 2; no reg terms
    # Grad penalty is E||dD/dx||^2 on real rows: for a linear D(x) = w.x it is exactly ||w||^2.
    lin = disc.DiscConfig(hidden=())
    w = jnp.arange(8.0)
    lin_params = {"params": {"out": {"kernel": w[:, None], "bias": jnp.zeros(1)}}}
    _, m = disc.loss(lin_params, real, fake, lin)
    np.testing.assert_allclose(m["grad_penalty"], jnp.sum(w**2), rtol=1e-6)


def test_reward_is_monotone_in_logit():
    cfg = disc.DiscConfig(hidden=())
    state = disc.init(jax.random.key(0), 1, cfg)
    state = state.replace(params={"params": {"out": {"kernel": jnp.full((1, 1), 20.0), "bias": jnp.zeros(1)}}})
    r = disc.reward(state, jnp.array([[-5.0], [-0.1], [0.0], [0.1], [5.0]]))  # inputs are clipped to +-5
    np.testing.assert_allclose(r[2], np.log(2.0), rtol=1e-6)
    assert bool(jnp.all(jnp.diff(r) > 0)) and float(r[0]) >= 0.0
    np.testing.assert_allclose(r[-1], -np.log(1e-4), rtol=1e-5)  # clipped instead of inf


def test_replay_buffer_wraps_around():
    rows = lambda a, b: jnp.arange(a, b, dtype=jnp.float32)[:, None] * jnp.ones((1, 2))
    buf = disc.ReplayBuffer.create(5, 2)
    buf = jax.jit(disc.ReplayBuffer.add)(buf, rows(0, 3))
    assert int(buf.size) == 3 and int(buf.head) == 3
    buf = buf.add(rows(3, 7))  # overfills: 5 and 6 overwrite 0 and 1
    np.testing.assert_array_equal(buf.data[:, 0], [5, 6, 2, 3, 4])
    assert int(buf.size) == 5 and int(buf.head) == 2
    buf = buf.add(rows(7, 15))  # larger than capacity: only 10..14 survive, written as if one by one
    np.testing.assert_array_equal(buf.data[:, 0], [10, 11, 12, 13, 14])
    assert int(buf.head) == 0 and int(buf.size) == 5
    buf = buf.add(rows(15, 16))
    np.testing.assert_array_equal(buf.data[:, 0], [15, 11, 12, 13, 14])
    sample = buf.sample(jax.random.key(0), 1000)
    assert sample.shape == (1000, 2) and set(np.unique(sample[:, 0]).tolist()) == {11, 12, 13, 14, 15}
    half = disc.ReplayBuffer.create(10, 2).add(rows(0, 3))
    assert set(np.unique(half.sample(jax.random.key(1), 500)[:, 0]).tolist()) == {0, 1, 2}  # only filled rows
