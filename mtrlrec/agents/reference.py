r"""Reference policies with analytic regret, used to validate the loop and the bench harness.

``OracleEpsilonGreedy`` knows the arm means: with probability ε it pulls a
uniformly random arm, otherwise the best arm. Its expected cumulative
pseudo-regret after :math:`T` steps is exact:

.. math:: \mathbb{E}[R_T] = T \, \varepsilon \, (\mu^* - \bar\mu),
          \qquad \bar\mu = \tfrac1K \textstyle\sum_a \mu_a,

and ε = 1 is the uniform policy, :math:`\mathbb{E}[R_T] = T(\mu^* - \bar\mu)`.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import ConfigError, check_float, check_floats
from mtrlrec.core.spaces import num_actions


@flax.struct.dataclass
class OracleHParams:
    epsilon: jax.Array


@flax.struct.dataclass
class OracleState:
    hparams: OracleHParams
    best: jax.Array


@gin.configurable
class OracleEpsilonGreedy(Agent):
    """ε-greedy around the true best arm (a policy, it does not learn).

    Args:
      means: the arm means (the same values the environment uses).
      epsilon: probability of a uniformly random arm, in [0, 1].
    """

    def __init__(self, means: Sequence[float] = gin.REQUIRED, epsilon: float = 0.1):
        self.means = check_floats("OracleEpsilonGreedy.means", means)
        self.epsilon = check_float("OracleEpsilonGreedy.epsilon", epsilon, low=0.0, high=1.0)

    def hparams(self):
        return OracleHParams(epsilon=jnp.float32(self.epsilon))

    def check_compatible(self, obs_spec, action_spec):
        if num_actions(action_spec) != len(self.means):
            raise ConfigError(
                f"OracleEpsilonGreedy.means has {len(self.means)} entries but the environment "
                f"has {num_actions(action_spec)} arms."
            )

    def init(self, key, obs_spec, action_spec):
        return OracleState(self.hparams(), jnp.int32(int(np.argmax(self.means))))

    def act(self, key, state, obs, *, greedy=False):
        k1, k2 = jax.random.split(key)
        arm = jax.random.randint(k2, (), 0, len(self.means), dtype=jnp.int32)
        explore = jax.random.uniform(k1) < state.hparams.epsilon
        return jnp.where(explore, arm, state.best), state, {}

    def observe(self, key, state, transition):
        return state


def expected_regret(means: Sequence[float], epsilon: float, num_steps: int) -> float:
    """:math:`T \\varepsilon (\\mu^* - \\bar\\mu)`, the exact expected regret of the oracle."""
    means = np.asarray(means, np.float64)
    return float(num_steps * epsilon * (means.max() - means.mean()))
