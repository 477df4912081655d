"""Small Flax (linen) networks shared by PPO, the AMP discriminator and distillation.

Linen keeps parameters as plain nested dicts, which makes them easy to checkpoint
(see padl.checkpoint) and to pass through jit as ordinary pytrees.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


class MLP(nn.Module):
    """Dense stack: [Dense -> (LayerNorm) -> activation] * len(hidden) -> Dense(out).

    Orthogonal init (gain sqrt(2) on hidden layers) is the usual PPO choice; `out_scale`
    sets the gain of the last layer so heads can start near zero (policy mean) or not.
    """

    hidden: Sequence[int]
    out: int
    layer_norm: bool = False
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)), name=f"hidden_{i}")(x)
            if self.layer_norm:
                x = nn.LayerNorm(name=f"norm_{i}")(x)
            x = self.activation(x)
        return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(self.out_scale), name="out")(x)


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian with a state-independent log-std (as in MimicKit / DeepMimic).

    A state-independent std keeps exploration noise predictable; `fixed_log_std=True`
    makes it a constant (no parameter), which is the usual choice for motion imitation.
    The mean head starts near zero (out_scale 0.01) so the initial policy is ~N(0, std).
    """

    hidden: Sequence[int]
    act_dim: int
    layer_norm: bool = False
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    log_std_init: float = -1.0
    fixed_log_std: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(self.hidden, self.act_dim, self.layer_norm, self.activation, out_scale=0.01, name="mean")(x)
        if self.fixed_log_std:
            log_std = jnp.full((self.act_dim,), self.log_std_init, mean.dtype)
        else:
            log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.act_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class ValueNet(nn.Module):
    """Scalar state-value head; returns shape (...,) rather than (..., 1)."""

    hidden: Sequence[int]
    layer_norm: bool = False
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return MLP(self.hidden, 1, self.layer_norm, self.activation, name="value")(x)[..., 0]


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, x: jax.Array) -> jax.Array:
    """log N(x; mean, exp(log_std)^2), summed over the last (action) axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2.0 * math.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy of the diagonal Gaussian, summed over the action axis."""
    return jnp.sum(log_std + 0.5 * _LOG_2PI_E, axis=-1)


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """Map a config string ("relu", "tanh", "elu", "swish", ...) to a flax activation, keeping configs JSON-able."""
    return getattr(nn, name)
