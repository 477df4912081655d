"""Proximal Policy Optimisation (clipped surrogate) as pure, jitted functions.

The caller owns the environment loop: it calls `act` each step, stacks the results into a
`Rollout` of shape (T, N, ...), and hands it to `update`. Policy and value are separate
networks with separate Adam optimisers (as in MimicKit), so no value-loss coefficient is
needed to balance them; each gets its own learning rate and gradient clipping.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from flax import struct

from padl import normalizer
from padl.networks import GaussianPolicy, ValueNet, activation_fn, gaussian_entropy, gaussian_log_prob


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    policy_lr: float = 3e-4
    value_lr: float = 3e-4
    num_epochs: int = 5
    num_minibatches: int = 4
    entropy_coef: float = 0.0
    max_grad_norm: float = 1.0
    value_clip: Optional[float] = None  # clip V around the rollout's V, like PPO2; None = plain MSE
    normalize_advantages: bool = True
    policy_hidden: tuple[int, ...] = (256, 256)
    value_hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    log_std_init: float = -1.0
    fixed_log_std: bool = False
    normalize_obs: bool = True
    obs_clip: float = 5.0
    bc_weight: float = 0.0  # weight of the behaviour-cloning term (Rollout.teacher_actions), as in SuperPADL's groups


class TrainState(struct.PyTreeNode):
    policy_params: Any
    value_params: Any
    policy_opt_state: Any
    value_opt_state: Any
    normalizer: normalizer.NormalizerState
    step: jax.Array  # number of `update` calls so far
    config: PPOConfig = struct.field(pytree_node=False)


class Rollout(NamedTuple):
    """One batch of experience; leading axes are (T, N) = (time, parallel envs).

    `dones` marks termination (no bootstrap); `truncations` marks time-limit ends, where the
    return is bootstrapped with the value of the final (pre-reset) observation. Because the
    env auto-resets, `obs[t + 1]` after such a step is a fresh episode, so pass that value as
    `final_values[t]` (from `value(ts, final_obs)`); without it V(obs[t]) stands in for it.
    """

    obs: jax.Array  # (T, N, obs_dim) raw, unnormalised
    actions: jax.Array  # (T, N, act_dim)
    log_probs: jax.Array  # (T, N)
    values: jax.Array  # (T, N)
    rewards: jax.Array  # (T, N)
    dones: jax.Array  # (T, N) terminated
    truncations: jax.Array  # (T, N) time limit
    last_value: jax.Array  # (N,) V of the observation after the last step
    final_values: Optional[jax.Array] = None  # (T, N) V(final obs), read only where truncated
    teacher_actions: Optional[jax.Array] = None  # (T, N, act_dim) a teacher's actions on these states (BC term)


def _policy(config: PPOConfig, act_dim: int) -> GaussianPolicy:
    act = activation_fn(config.activation)
    return GaussianPolicy(config.policy_hidden, act_dim, config.layer_norm, act, config.log_std_init, config.fixed_log_std)


def _value_net(config: PPOConfig) -> ValueNet:
    return ValueNet(config.value_hidden, config.layer_norm, activation_fn(config.activation))


def _optimizers(config: PPOConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    def make(lr: float) -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr))

    return make(config.policy_lr), make(config.value_lr)


def init(key: jax.Array, obs_dim: int, act_dim: int, config: PPOConfig = PPOConfig()) -> TrainState:
    k_pi, k_v = jax.random.split(key)
    dummy = jnp.zeros((1, obs_dim), jnp.float32)
    policy_params = _policy(config, act_dim).init(k_pi, dummy)
    value_params = _value_net(config).init(k_v, dummy)
    pi_tx, v_tx = _optimizers(config)
    return TrainState(
        policy_params=policy_params,
        value_params=value_params,
        policy_opt_state=pi_tx.init(policy_params),
        value_opt_state=v_tx.init(value_params),
        normalizer=normalizer.init(obs_dim),
        step=jnp.zeros((), jnp.int32),
        config=config,
    )


def template(obs_dim: int, act_dim: int, config: PPOConfig = PPOConfig()) -> TrainState:
    """The structure, shapes and dtypes of `init`'s state (jax.ShapeDtypeStruct leaves) without building it: the
    template a checkpoint is loaded into. Building a random state only to overwrite it costs seconds, op by op."""
    return jax.eval_shape(functools.partial(init, obs_dim=obs_dim, act_dim=act_dim, config=config), jax.random.key(0))


def policy_state(policy_params: Any, normalizer_state: normalizer.NormalizerState, config: PPOConfig) -> TrainState:
    """A state holding only what `mean_action` uses: a loaded policy, without value network or optimisers."""
    return TrainState(policy_params=policy_params, value_params=None, policy_opt_state=None, value_opt_state=None,
                      normalizer=normalizer_state, step=None, config=config)


def mean_action(ts: TrainState, obs: jax.Array) -> jax.Array:
    """The policy's mean action (`act`'s deterministic action), from the policy network alone."""
    return _policy(ts.config, _act_dim(ts)).apply(ts.policy_params, _norm_obs(ts, obs))[0]


def _act_dim(ts: TrainState) -> int:
    return ts.policy_params["params"]["mean"]["out"]["bias"].shape[-1]


def _norm_obs(ts: TrainState, obs: jax.Array) -> jax.Array:
    if not ts.config.normalize_obs:
        return obs
    return normalizer.normalize(ts.normalizer, obs, ts.config.obs_clip)


@jax.jit
def value(ts: TrainState, obs: jax.Array) -> jax.Array:
    """V(obs); use for `last_value` and for the final observation of truncated episodes."""
    return _value_net(ts.config).apply(ts.value_params, _norm_obs(ts, obs))


@jax.jit(static_argnames="deterministic")
def act(ts: TrainState, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """Sample (or take the mean) action; returns (action, log_prob, value), each batched over obs."""
    x = _norm_obs(ts, obs)
    mean, log_std = _policy(ts.config, _act_dim(ts)).apply(ts.policy_params, x)
    action = mean if deterministic else mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    v = _value_net(ts.config).apply(ts.value_params, x)
    return action, gaussian_log_prob(mean, log_std, action), v


def compute_gae(rewards, values, dones, truncations, last_value, gamma, lam, final_values=None):
    """Generalised advantage estimation over (T, N) arrays; returns (advantages, returns).

    delta_t = r_t + gamma * (1 - done_t) * V_next - V_t, where V_next is V(obs[t+1]) mid-episode,
    V(final obs) on truncation (defaults to V(obs[t])), and irrelevant on termination.
    The lambda-recursion stops at both kinds of episode end, since obs[t+1] starts a new episode.
    """
    dones = dones.astype(rewards.dtype)
    truncations = truncations.astype(rewards.dtype)
    next_values = jnp.concatenate([values[1:], last_value[None]], axis=0)
    bootstrap = values if final_values is None else final_values
    next_values = jnp.where(truncations > 0, bootstrap, next_values)
    deltas = rewards + gamma * (1.0 - dones) * next_values - values
    cont = (1.0 - dones) * (1.0 - truncations)

    def step(acc, x):
        delta, c = x
        acc = delta + gamma * lam * c * acc
        return acc, acc

    _, adv = jax.lax.scan(step, jnp.zeros_like(last_value), (deltas, cont), reverse=True)
    return adv, adv + values


def _loss(params, ts: TrainState, batch: dict):
    policy_params, value_params = params
    cfg = ts.config
    mean, log_std = _policy(cfg, batch["actions"].shape[-1]).apply(policy_params, batch["obs"])
    log_prob = gaussian_log_prob(mean, log_std, batch["actions"])
    log_ratio = log_prob - batch["log_probs"]
    ratio = jnp.exp(log_ratio)
    adv = batch["advantages"]
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps) * adv)
    policy_loss = -jnp.mean(surrogate)
    bc = jnp.mean(jnp.square(mean - batch["teacher_actions"])) if "teacher_actions" in batch else 0.0
    entropy = jnp.mean(gaussian_entropy(log_std))

    v = _value_net(cfg).apply(value_params, batch["obs"])
    value_err = jnp.square(v - batch["returns"])
    if cfg.value_clip is not None:
        v_clipped = batch["values"] + jnp.clip(v - batch["values"], -cfg.value_clip, cfg.value_clip)
        value_err = jnp.maximum(value_err, jnp.square(v_clipped - batch["returns"]))
    value_loss = 0.5 * jnp.mean(value_err)

    metrics = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),  # the low-variance k3 estimator
        "clip_fraction": jnp.mean((jnp.abs(ratio - 1.0) > cfg.clip_eps).astype(jnp.float32)),
        "bc_loss": bc,
    }
    # The two losses touch disjoint parameters, so one gradient call serves both optimisers.
    return policy_loss + cfg.bc_weight * bc - cfg.entropy_coef * entropy + value_loss, metrics


@jax.jit
def update(ts: TrainState, rollout: Rollout, key: jax.Array) -> tuple[TrainState, dict]:
    """Several epochs of minibatch SGD on one rollout, then fold its observations into the normaliser.

    The normaliser is updated *after* the epochs so that, at the first step, the policy sees
    the same inputs it acted on and the importance ratio starts at exactly 1.
    """
    cfg = ts.config
    adv, returns = compute_gae(
        rollout.rewards, rollout.values, rollout.dones, rollout.truncations,
        rollout.last_value, cfg.gamma, cfg.gae_lambda, rollout.final_values,
    )
    if cfg.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)

    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    data = {
        "obs": flat(_norm_obs(ts, rollout.obs)),
        "actions": flat(rollout.actions),
        "log_probs": flat(rollout.log_probs),
        "values": flat(rollout.values),
        "advantages": flat(adv),
        "returns": flat(returns),
    }
    if rollout.teacher_actions is not None:
        data["teacher_actions"] = flat(rollout.teacher_actions)
    n = data["obs"].shape[0]
    mb = n // cfg.num_minibatches  # a remainder of n % num_minibatches samples is dropped each epoch
    pi_tx, v_tx = _optimizers(cfg)
    grad_fn = jax.grad(_loss, has_aux=True)

    def sgd_step(ts: TrainState, batch):
        grads, metrics = grad_fn((ts.policy_params, ts.value_params), ts, batch)
        pi_upd, pi_opt = pi_tx.update(grads[0], ts.policy_opt_state, ts.policy_params)
        v_upd, v_opt = v_tx.update(grads[1], ts.value_opt_state, ts.value_params)
        ts = ts.replace(
            policy_params=optax.apply_updates(ts.policy_params, pi_upd),
            value_params=optax.apply_updates(ts.value_params, v_upd),
            policy_opt_state=pi_opt,
            value_opt_state=v_opt,
        )
        return ts, metrics

    def epoch(ts: TrainState, k):
        perm = jax.random.permutation(k, n)[: mb * cfg.num_minibatches]
        batches = jax.tree.map(lambda x: x[perm].reshape((cfg.num_minibatches, mb) + x.shape[1:]), data)
        return jax.lax.scan(sgd_step, ts, batches)

    ts, metrics = jax.lax.scan(epoch, ts, jax.random.split(key, cfg.num_epochs))
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics["explained_variance"] = 1.0 - jnp.var(returns - rollout.values) / (jnp.var(returns) + 1e-8)
    metrics["mean_return_target"] = jnp.mean(returns)

    if cfg.normalize_obs:
        ts = ts.replace(normalizer=normalizer.update(ts.normalizer, rollout.obs))
    return ts.replace(step=ts.step + 1), metrics


def hold_policy(updated: TrainState, before: TrainState) -> TrainState:
    """`updated` with `before`'s policy and policy optimiser: the critic (and normaliser) learnt from an update, the
    policy waits, as while a new critic warms up under a trained policy."""
    return updated.replace(policy_params=before.policy_params, policy_opt_state=before.policy_opt_state)


def bc_loss(policy_params, ts: TrainState, obs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error between the policy mean on (normalised) obs and target actions."""
    mean, _ = _policy(ts.config, targets.shape[-1]).apply(policy_params, obs)
    return jnp.mean(jnp.square(mean - targets))


@functools.partial(jax.jit, static_argnames=("steps", "batch_size", "lr"))
def imitate(ts: TrainState, obs: jax.Array, targets: jax.Array, count: jax.Array, key: jax.Array, steps: int,
            batch_size: int, lr: float | None = None) -> tuple[TrainState, jax.Array]:
    """`steps` Adam steps of behaviour cloning (the policy mean regressed on target actions) on minibatches drawn
    with replacement from the first `count` rows of (obs, targets): the supervised half of DAgger, on an
    aggregated dataset. `lr` overrides the policy learning rate (Adam's moments do not depend on it, so the
    optimiser state is shared with PPO). The normaliser is left alone (the caller folds new states in as it
    collects them). Returns the new state and the mean loss over the steps."""
    pi_tx = optax.chain(optax.clip_by_global_norm(ts.config.max_grad_norm), optax.adam(lr or ts.config.policy_lr))
    grad_fn = jax.value_and_grad(bc_loss)

    def sgd_step(ts, k):
        idx = jax.random.randint(k, (batch_size,), 0, jnp.maximum(count, 1))
        loss, grads = grad_fn(ts.policy_params, ts, _norm_obs(ts, obs[idx]), targets[idx])
        upd, opt = pi_tx.update(grads, ts.policy_opt_state, ts.policy_params)
        return ts.replace(policy_params=optax.apply_updates(ts.policy_params, upd), policy_opt_state=opt), loss

    ts, losses = jax.lax.scan(sgd_step, ts, jax.random.split(key, steps))
    return ts, jnp.mean(losses)
