r"""K-armed bandits.

Bernoulli bandit (Lattimore & Szepesvári 2020, §4): arm ``a`` pays
:math:`r_t \sim \mathrm{Bernoulli}(\mu_a)`. The per-step info reports the
pseudo-regret :math:`\mu^* - \mu_{a_t}` (DESIGN §2), so the loop's
``cumulative_regret`` is :math:`\sum_{s \le t} (\mu^* - \mu_{a_s})`.

Arm means live in ``BanditParams`` so a batch of tasks is a ``vmap`` over params.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_floats, check_int
from mtrlrec.core.spaces import Box, Discrete


@flax.struct.dataclass
class BanditParams:
    means: jax.Array  # [K] expected reward of each arm


@flax.struct.dataclass
class BanditState:
    t: jax.Array  # steps taken


@gin.configurable
class BernoulliBandit(Environment):
    """K arms with Bernoulli rewards of means ``means``.

    Args:
      num_arms: K >= 2.
      means: K arm means in [0, 1]; default ``linspace(0.1, 0.9, K)``.
    """

    episodic = False
    cumulative_metrics = ("regret", "reward")

    def __init__(self, num_arms: int = 10, means: Sequence[float] | None = None):
        self.num_arms = check_int("BernoulliBandit.num_arms", num_arms, min_value=2)
        if means is None:
            means = jnp.linspace(0.1, 0.9, self.num_arms).tolist()
        self.means = check_floats(
            "BernoulliBandit.means", means, length=self.num_arms, low=0.0, high=1.0
        )

    def default_params(self) -> BanditParams:
        return BanditParams(means=jnp.asarray(self.means, jnp.float32))

    def check_params(self, params: BanditParams) -> None:
        means = jnp.asarray(params.means)
        if means.shape[-1] != self.num_arms:
            raise ConfigError(
                f"BernoulliBandit params.means has {means.shape[-1]} arms, expected {self.num_arms}."
            )
        if bool(jnp.any((means < 0) | (means > 1))):
            raise ConfigError("BernoulliBandit means must lie in [0, 1].")

    def observation_spec(self, params=None):
        return Box(0.0, 0.0, ())

    def action_spec(self, params=None):
        return Discrete(self.num_arms)

    def reset_env(self, key, params):
        return jnp.zeros((), jnp.float32), BanditState(t=jnp.int32(0))

    def step_env(self, key, state, action, params):
        mu = params.means[action]
        reward = jax.random.bernoulli(key, mu).astype(jnp.float32)
        best = jnp.max(params.means)
        info = {
            "regret": best - mu,
            "optimal_action": (mu == best).astype(jnp.float32),
        }
        obs = jnp.zeros((), jnp.float32)
        false = jnp.bool_(False)
        return obs, BanditState(t=state.t + 1), reward, false, false, info


