r"""Classic multi-armed bandit agents.

ε-greedy (Sutton & Barto 2018, §2.2-2.4): with probability ε pull a uniformly
random arm, otherwise the arm of highest sample mean (ties broken uniformly);
sample means are updated incrementally, :math:`Q_a \leftarrow Q_a + (r - Q_a)/N_a`.
"""

from __future__ import annotations

import flax.struct
import gin
import jax
import jax.numpy as jnp

from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import check_float
from mtrlrec.core.spaces import num_actions


def argmax_random_tiebreak(key: jax.Array, values: jax.Array) -> jax.Array:
    """Index of a maximum of ``values`` ``[K]``, chosen uniformly among ties."""
    ties = values >= jnp.max(values)
    noise = jax.random.uniform(key, values.shape)
    return jnp.argmax(jnp.where(ties, noise, -1.0)).astype(jnp.int32)


@flax.struct.dataclass
class EpsilonGreedyHParams:
    epsilon: jax.Array


@flax.struct.dataclass
class ArmStatsState:
    """Per-arm pull counts and sample-mean estimates; shared by index policies."""

    hparams: flax.struct.PyTreeNode
    counts: jax.Array  # [K]
    values: jax.Array  # [K]
    t: jax.Array


def update_arm_stats(state: ArmStatsState, action: jax.Array, reward: jax.Array) -> ArmStatsState:
    """Incremental sample mean of the pulled arm."""
    counts = state.counts.at[action].add(1.0)
    values = state.values.at[action].add((reward - state.values[action]) / counts[action])
    return state.replace(counts=counts, values=values, t=state.t + 1)


@gin.configurable
class EpsilonGreedy(Agent):
    """ε-greedy with sample-mean estimates.

    Args:
      epsilon: exploration probability in [0, 1] (swept as ``hparams.epsilon``).
    """

    def __init__(self, epsilon: float = 0.1):
        self.epsilon = check_float("EpsilonGreedy.epsilon", epsilon, low=0.0, high=1.0)

    def hparams(self):
        return EpsilonGreedyHParams(epsilon=jnp.float32(self.epsilon))

    def init(self, key, obs_spec, action_spec):
        k = num_actions(action_spec)
        return ArmStatsState(
            hparams=self.hparams(),
            counts=jnp.zeros(k, jnp.float32),
            values=jnp.zeros(k, jnp.float32),
            t=jnp.int32(0),
        )

    def act(self, key, state, obs):
        k_explore, k_arm, k_tie = jax.random.split(key, 3)
        k = state.values.shape[0]
        greedy = argmax_random_tiebreak(k_tie, state.values)
        random_arm = jax.random.randint(k_arm, (), 0, k, dtype=jnp.int32)
        explore = jax.random.uniform(k_explore) < state.hparams.epsilon
        return jnp.where(explore, random_arm, greedy), {}

    def update(self, key, state, transition):
        return update_arm_stats(state, transition.action, transition.reward), {}
