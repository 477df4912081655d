"""Running mean / variance normaliser as a pure pytree.

Statistics are merged batch-wise with Chan et al.'s parallel Welford update, which is
exact (population mean/var of everything seen so far) and numerically stable, unlike
accumulating sum and sum-of-squares.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class NormalizerState(NamedTuple):
    count: jax.Array  # () float32: number of rows seen
    mean: jax.Array  # (dim,)
    m2: jax.Array  # (dim,) sum of squared deviations from the mean


def init(dim: int) -> NormalizerState:
    return NormalizerState(jnp.zeros((), jnp.float32), jnp.zeros((dim,), jnp.float32), jnp.zeros((dim,), jnp.float32))


def update(state: NormalizerState, batch: jax.Array) -> NormalizerState:
    """Merge a batch of shape (..., dim) into the running statistics."""
    x = jnp.reshape(batch, (-1, state.mean.shape[-1])).astype(jnp.float32)
    n_b = jnp.asarray(x.shape[0], jnp.float32)
    mean_b = jnp.mean(x, axis=0)
    m2_b = jnp.sum(jnp.square(x - mean_b), axis=0)
    n = state.count + n_b
    delta = mean_b - state.mean
    mean = state.mean + delta * (n_b / n)
    m2 = state.m2 + m2_b + jnp.square(delta) * (state.count * n_b / n)
    return NormalizerState(n, mean, m2)


def variance(state: NormalizerState) -> jax.Array:
    """Population variance; 1 before any data so that normalize() is the identity."""
    return jnp.where(state.count > 0, state.m2 / jnp.maximum(state.count, 1.0), 1.0)


def normalize(state: NormalizerState, x: jax.Array, clip: float | None = 5.0, eps: float = 1e-8) -> jax.Array:
    """(x - mean) / std, clipped to [-clip, clip] so rare outliers cannot blow up the networks."""
    y = (x - state.mean) / jnp.sqrt(variance(state) + eps)
    return y if clip is None else jnp.clip(y, -clip, clip)
