"""AMP-style motion discriminator (logistic form, as in ASE) with a replay buffer.

D(x) is a logit: reference-motion samples are "real" (label 1), policy samples "fake" (0).
The style reward -log(1 - sigmoid(D)) grows as the policy's transitions look more like
the reference. Inputs are normalised with a running normaliser fitted to the reference
data only, so the reward function does not drift with the policy's own distribution.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from padl import normalizer
from padl.networks import MLP, activation_fn


@dataclasses.dataclass(frozen=True)
class DiscConfig:
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    lr: float = 1e-4
    grad_penalty: float = 5.0  # weight on E_real ||dD/dx||^2: keeps D smooth around the data (ASE uses 5)
    logit_reg: float = 0.01  # L2 on the final layer's weights: keeps logits, hence rewards, bounded
    weight_decay: float = 1e-4  # L2 on all kernels, added to the loss as in ASE
    max_grad_norm: float = 1.0
    replay_size: int = 100_000
    batch_size: int = 512
    obs_clip: float = 5.0


class DiscState(struct.PyTreeNode):
    params: Any
    opt_state: Any
    normalizer: normalizer.NormalizerState
    step: jax.Array
    config: DiscConfig = struct.field(pytree_node=False)


def _net(config: DiscConfig) -> MLP:
    return MLP(config.hidden, 1, activation=activation_fn(config.activation))


def _optimizer(config: DiscConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))


def init(key: jax.Array, obs_dim: int, config: DiscConfig = DiscConfig()) -> DiscState:
    params = _net(config).init(key, jnp.zeros((1, obs_dim), jnp.float32))
    return DiscState(params, _optimizer(config).init(params), normalizer.init(obs_dim), jnp.zeros((), jnp.int32), config)


def logits(params, x: jax.Array, config: DiscConfig) -> jax.Array:
    """D(x) for already-normalised inputs, shape (...,)."""
    return _net(config).apply(params, x)[..., 0]


def loss(params, real: jax.Array, fake: jax.Array, config: DiscConfig) -> tuple[jax.Array, dict]:
    """BCE(real -> 1, fake -> 0) + grad penalty on real + logit reg + weight decay; inputs normalised."""
    d_real, vjp = jax.vjp(lambda x: logits(params, x, config), real)
    d_fake = logits(params, fake, config)
    bce = 0.5 * (jnp.mean(optax.sigmoid_binary_cross_entropy(d_real, 1.0))
                 + jnp.mean(optax.sigmoid_binary_cross_entropy(d_fake, 0.0)))
    (grad_x,) = vjp(jnp.ones_like(d_real))  # per-sample dD/dx: rows of the batch are independent
    grad_penalty = jnp.mean(jnp.sum(jnp.square(grad_x), axis=-1))
    logit_l2 = jnp.sum(jnp.square(params["params"]["out"]["kernel"]))
    kernels = [p for path, p in jax.tree_util.tree_leaves_with_path(params) if path[-1].key == "kernel"]
    weight_l2 = sum(jnp.sum(jnp.square(k)) for k in kernels)
    total = bce + config.grad_penalty * grad_penalty + config.logit_reg * logit_l2 + config.weight_decay * weight_l2
    metrics = {
        "disc_loss": total,
        "bce": bce,
        "grad_penalty": grad_penalty,
        "logit_l2": logit_l2,
        "acc_real": jnp.mean((d_real > 0).astype(jnp.float32)),
        "acc_fake": jnp.mean((d_fake < 0).astype(jnp.float32)),
        "logit_real": jnp.mean(d_real),
        "logit_fake": jnp.mean(d_fake),
    }
    return total, metrics


@jax.jit
def update(state: DiscState, real_batch: jax.Array, fake_batch: jax.Array, key: jax.Array) -> tuple[DiscState, dict]:
    """One Adam step on `batch_size` rows drawn (with replacement) from each of real and fake.

    Passing whole pools (e.g. all motion samples, rollout + replay samples) is fine; the key
    picks the minibatch. The normaliser absorbs the real minibatch before it is used.
    """
    cfg = state.config
    k_real, k_fake = jax.random.split(key)
    real = real_batch[jax.random.randint(k_real, (cfg.batch_size,), 0, real_batch.shape[0])]
    fake = fake_batch[jax.random.randint(k_fake, (cfg.batch_size,), 0, fake_batch.shape[0])]
    norm = normalizer.update(state.normalizer, real)
    real_n = normalizer.normalize(norm, real, cfg.obs_clip)
    fake_n = normalizer.normalize(norm, fake, cfg.obs_clip)
    grads, metrics = jax.grad(loss, has_aux=True)(state.params, real_n, fake_n, cfg)
    updates, opt_state = _optimizer(cfg).update(grads, state.opt_state, state.params)
    new_state = state.replace(
        params=optax.apply_updates(state.params, updates), opt_state=opt_state, normalizer=norm, step=state.step + 1
    )
    return new_state, metrics


@jax.jit
def reward(state: DiscState, disc_obs: jax.Array) -> jax.Array:
    """Style reward -log(max(1 - sigmoid(D), 1e-4)), in [0, ~9.2]; 1 - sigmoid(d) = sigmoid(-d) avoids cancellation."""
    d = logits(state.params, normalizer.normalize(state.normalizer, disc_obs, state.config.obs_clip), state.config)
    return -jnp.log(jnp.maximum(jax.nn.sigmoid(-d), 1e-4))


class ReplayBuffer(NamedTuple):
    """Fixed-capacity ring buffer of past policy samples, as a pytree (so it can live in jit state).

    Mixing old samples into the fake batch keeps the discriminator from forgetting earlier
    policy behaviour and chasing only the latest one.
    """

    data: jax.Array  # (capacity, dim)
    head: jax.Array  # () int32: next row to write
    size: jax.Array  # () int32: rows filled so far, <= capacity

    @staticmethod
    def create(capacity: int, dim: int, dtype=jnp.float32) -> "ReplayBuffer":
        return ReplayBuffer(jnp.zeros((capacity, dim), dtype), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def add(self, batch: jax.Array) -> "ReplayBuffer":
        """Write rows in order, overwriting the oldest; of a batch larger than capacity only the newest rows survive.
        The buffer is donated (written in place: a copy of a 16384 x 840 buffer costs ~40 ms on the CPU), so the
        one added to is gone afterwards; inside another jit the caller's donation decides."""
        return _add(self, batch)

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n rows uniformly with replacement from the filled part (all zeros if the buffer is empty)."""
        return self.data[jax.random.randint(key, (n,), 0, jnp.maximum(self.size, 1))]


@functools.partial(jax.jit, donate_argnums=0)
def _add(buf: ReplayBuffer, batch: jax.Array) -> ReplayBuffer:
    capacity, n = buf.data.shape[0], batch.shape[0]
    skip = max(n - capacity, 0)  # static: shapes are known at trace time
    idx = (buf.head + skip + jnp.arange(n - skip)) % capacity
    data = buf.data.at[idx].set(batch[skip:].astype(buf.data.dtype))
    return ReplayBuffer(data, (buf.head + n) % capacity, jnp.minimum(buf.size + n, capacity))
