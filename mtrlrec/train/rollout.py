r"""Advantages and returns over on-policy rollouts ``[T, N]`` (GAE, λ-returns).

A rollout is ``T`` loop steps of ``N`` users (the parallel actors of A2C/PPO),
stored time-major: ``rewards[t, i]`` is the reward after user ``i`` acted at
step ``t``. Rewards and values may carry trailing task axes (``[T, N, num_tasks]``
for per-task critics); episode flags are ``[T, N]`` and broadcast over them.
Leading axes after ``T`` are arbitrary, so ``[T]`` (one user) works too.

Episode ends, with environments that reset automatically:

* ``terminated[t]``: the episode ended by its own dynamics; nothing is
  bootstrapped, ``V(s_{t+1}) = 0``.
* ``truncated[t]``: a time limit cut the episode; the target bootstraps from
  the value of the *final observation* of that episode,
  ``final_values[t] = V(info['final_observation'][t])``, because the
  observation that follows in the rollout (``values[t+1]``) is already the first
  one of a new episode.
* after either, the recursion does not carry information across the boundary.

The value of the state after step ``t`` is therefore

.. math::

    v'_t = \begin{cases} \text{final\_values}_t & \text{truncated}_t \\
           \text{values}_{t+1} & t < T-1 \\ \text{last\_value} & t = T-1 \end{cases}

``final_values`` is read only where ``truncated`` is true (any values elsewhere,
e.g. ``values`` itself). Passing ``final_values=None`` states that the rollout
has no bootstrapped truncations: truncated steps are then treated as
terminations (the choice of PureJaxRL's ``done``; right when the caller has
already added ``gamma * V(s_final)`` to the reward, biased otherwise).

``gamma`` and ``lam`` may be Python floats or traced scalars (swept values in
an agent's ``hparams``), or arrays broadcasting over the task axes. All outputs
are float32; wrap the targets in ``jax.lax.stop_gradient`` if they are built
inside a loss.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mtrlrec.core.types import Array


def _flags(flag: Array, like: Array) -> Array:
    """``[T, N]`` flag as float32, with singleton axes to broadcast over ``like``'s task axes."""
    flag = jnp.asarray(flag, jnp.float32)
    return flag.reshape(flag.shape + (1,) * (like.ndim - flag.ndim))


def _prepare(
    rewards: Array,
    values: Array,
    last_value: Array,
    terminated: Array,
    truncated: Array,
    final_values: Array | None,
) -> tuple[Array, Array, Array, Array, Array]:
    """Checks shapes; returns ``(rewards, values, v_next, term, done)`` float32."""
    rewards = jnp.asarray(rewards, jnp.float32)
    values = jnp.asarray(values, jnp.float32)
    last_value = jnp.asarray(last_value, jnp.float32)
    terminated = jnp.asarray(terminated)
    truncated = jnp.asarray(truncated)
    if values.shape != rewards.shape:
        raise ValueError(f"values {values.shape} must have the shape of rewards {rewards.shape}.")
    if last_value.shape != rewards.shape[1:]:
        raise ValueError(
            f"last_value {last_value.shape} must be rewards[0]'s shape {rewards.shape[1:]}."
        )
    if terminated.shape != truncated.shape or rewards.shape[: terminated.ndim] != terminated.shape:
        raise ValueError(
            f"terminated {terminated.shape} and truncated {truncated.shape} must be a prefix "
            f"of the rewards' shape {rewards.shape} ([T, N] for [T, N, num_tasks] rewards)."
        )
    v_next = jnp.concatenate([values[1:], last_value[None]], axis=0)
    if final_values is None:
        term = jnp.logical_or(terminated, truncated)
    else:
        final_values = jnp.asarray(final_values, jnp.float32)
        if final_values.shape != rewards.shape:
            raise ValueError(
                f"final_values {final_values.shape} must have the shape of rewards {rewards.shape}."
            )
        v_next = jnp.where(_flags(truncated, rewards) > 0, final_values, v_next)
        term = terminated
    done = _flags(jnp.logical_or(terminated, truncated), rewards)
    return rewards, values, v_next, _flags(term, rewards), done


def _reverse_scan(coef: Array, inputs: Array, init: Array) -> Array:
    """``y_t = inputs_t + coef_t y_{t+1}`` backwards from ``y_T = init``; returns ``y [T, ...]``."""

    def body(acc, xs):
        x, c = xs
        acc = x + c * acc
        return acc, acc

    coef = jnp.broadcast_to(coef, inputs.shape)
    _, ys = jax.lax.scan(body, init, (inputs, coef), reverse=True)
    return ys


@jax.jit
def gae(
    rewards: Array,
    values: Array,
    last_value: Array,
    terminated: Array,
    truncated: Array,
    *,
    final_values: Array | None,
    gamma: Any,
    lam: Any,
) -> tuple[Array, Array]:
    r"""Generalized advantage estimation (Schulman et al. 2016, eq. 16).

    .. math::

        \delta_t = r_t + \gamma (1 - \text{terminated}_t) v'_t - V(s_t), \qquad
        \hat A_t = \delta_t + \gamma \lambda (1 - \text{done}_t) \hat A_{t+1},

    with ``done = terminated | truncated``, ``\hat A_T = 0`` and ``v'_t`` the
    next-state value of the module docstring. The value targets are
    ``returns = advantages + values`` (the λ-returns of :func:`lambda_returns`).

    Args:
      rewards: ``[T, N]`` or ``[T, N, num_tasks]`` float, ``r_t``.
      values: same shape, ``V(s_t)``.
      last_value: ``[N]`` / ``[N, num_tasks]``, the value of the observation after
        the last step (the next rollout's first obs).
      terminated: ``[T, N]`` bool.
      truncated: ``[T, N]`` bool.
      final_values: same shape as ``rewards``, ``V(info['final_observation'])``,
        read where ``truncated``; or ``None`` (truncation treated as termination).
      gamma: discount ``γ``.
      lam: GAE parameter ``λ``.

    Returns:
      ``(advantages, returns)``, both shaped like ``rewards``, float32.
    """
    rewards, values, v_next, term, done = _prepare(
        rewards, values, last_value, terminated, truncated, final_values
    )
    delta = rewards + gamma * (1.0 - term) * v_next - values
    advantages = _reverse_scan(gamma * lam * (1.0 - done), delta, jnp.zeros_like(delta[0]))
    return advantages, advantages + values


@jax.jit
def lambda_returns(
    rewards: Array,
    values: Array,
    last_value: Array,
    terminated: Array,
    truncated: Array,
    *,
    final_values: Array | None,
    gamma: Any,
    lam: Any,
) -> Array:
    r"""λ-returns (Sutton & Barto 2018, §12.1, recursive form).

    .. math::

        G_t = r_t + \gamma (1 - \text{terminated}_t)
              \big[(1 - \lambda_t) v'_t + \lambda_t G_{t+1}\big], \qquad
        \lambda_t = \lambda (1 - \text{done}_t), \quad G_T = \text{last\_value},

    so a truncated step bootstraps from its final value alone. Equal to
    ``gae(...)[1]``; ``values`` enter only through ``v'_t`` (pass ``max_a Q`` for
    Q(λ)). ``lam = 0`` gives one-step TD targets, ``lam = 1`` discounted returns.

    Args:
      rewards: ``[T, N]`` or ``[T, N, num_tasks]`` float.
      values: same shape, ``V(s_t)`` (``values[0]`` is not used).
      last_value: ``[N]`` / ``[N, num_tasks]``, value after the last step.
      terminated: ``[T, N]`` bool.
      truncated: ``[T, N]`` bool.
      final_values: like ``rewards``, read where ``truncated``; or ``None``.
      gamma: discount ``γ``.
      lam: ``λ``.

    Returns:
      ``G`` shaped like ``rewards``, float32.
    """
    rewards, _, v_next, term, done = _prepare(
        rewards, values, last_value, terminated, truncated, final_values
    )
    lam_t = lam * (1.0 - done)
    coef = gamma * (1.0 - term) * lam_t
    inputs = rewards + gamma * (1.0 - term) * (1.0 - lam_t) * v_next
    return _reverse_scan(coef, inputs, jnp.asarray(last_value, jnp.float32))


@jax.jit
def discounted_returns(
    rewards: Array,
    last_value: Array,
    terminated: Array,
    truncated: Array,
    *,
    final_values: Array | None,
    gamma: Any,
) -> Array:
    r"""Discounted returns to the episode end, bootstrapped where the rollout cuts it.

    .. math::

        G_t = r_t + \gamma (1 - \text{terminated}_t)
              \big[\text{done}_t\, v'_t + (1 - \text{done}_t) G_{t+1}\big], \quad
        G_T = \text{last\_value},

    i.e. :func:`lambda_returns` with ``λ = 1``: Monte Carlo returns within the
    rollout, ``final_values`` after a truncation, ``last_value`` after the last
    step (pass zeros for pure Monte Carlo of complete episodes, REINFORCE).

    Args:
      rewards: ``[T, N]`` or ``[T, N, num_tasks]`` float.
      last_value: ``[N]`` / ``[N, num_tasks]``.
      terminated: ``[T, N]`` bool.
      truncated: ``[T, N]`` bool.
      final_values: like ``rewards``, read where ``truncated``; or ``None``.
      gamma: discount ``γ``.

    Returns:
      ``G`` shaped like ``rewards``, float32.
    """
    zeros = jnp.zeros_like(jnp.asarray(rewards, jnp.float32))
    return lambda_returns(
        rewards, zeros, last_value, terminated, truncated,
        final_values=final_values, gamma=gamma, lam=1.0,
    )
