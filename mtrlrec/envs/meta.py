r"""RL²'s observation: the previous action, reward and termination flag (Duan et al. 2016, §2.2).

A recurrent meta-learner adapts through its hidden state, so it must *see*
what happened at the last step, also when learning is off (the engine's
evaluation phase calls ``act`` only). :class:`RL2Inputs` appends to the inner
observation (flattened)

.. math:: x_t = [\,o_t,\ \mathrm{onehot}(a_{t-1}),\ r_{t-1},\ d_{t-1}\,]
          \in \mathbb R^{|o| + K + 2},

with :math:`d` the inner episode's termination or truncation flag; after a
reset (a new episode, or a new task at a trial end when put inside
``OnlineRunner.trials``) the last three parts are zero.

Gin: ``OnlineRunner.wrappers = [@RL2Inputs]`` (``experiments/meta/``).
"""

from __future__ import annotations

from typing import Any

import flax.struct
import gin
import jax
import jax.numpy as jnp

from mtrlrec.core.errors import ConfigError
from mtrlrec.core.spaces import Box, Discrete
from mtrlrec.core.wrappers import Wrapper


@flax.struct.dataclass
class RL2InputsState:
    inner: Any


@gin.configurable
class RL2Inputs(Wrapper):
    """Observation ``[o, onehot(a_prev), r_prev, done_prev]`` (module docstring).

    Needs a Discrete action space and a scalar reward.
    """

    def __init__(self, env):
        super().__init__(env)
        space = env.action_spec(env.default_params())
        if not isinstance(space, Discrete):
            raise ConfigError(f"RL2Inputs needs Discrete actions, {env.name} has {space}.")
        if len(env.reward_names) != 1:
            raise ConfigError(f"RL2Inputs needs a scalar reward, {env.name} has "
                              f"{list(env.reward_names)} (add ScalarizeReward first).")
        self.num_actions = int(space.n)
        obs = env.observation_spec(env.default_params())
        self.obs_size = int(jnp.prod(jnp.asarray(obs.shape))) if obs.shape else 1

    def observation_spec(self, params=None):
        return Box(-jnp.inf, jnp.inf, (self.obs_size + self.num_actions + 2,))

    def _inputs(self, obs, action, reward, done):
        o = jnp.reshape(jnp.asarray(obs, jnp.float32), (self.obs_size,))
        a = jax.nn.one_hot(action, self.num_actions, dtype=jnp.float32)
        rest = jnp.stack([jnp.asarray(reward, jnp.float32).reshape(()),
                          jnp.asarray(done, jnp.float32).reshape(())])
        return jnp.concatenate([o, a, rest])

    def reset_env(self, key, params):
        obs, inner = self.env.reset_env(key, params)
        o = jnp.reshape(jnp.asarray(obs, jnp.float32), (self.obs_size,))
        return (jnp.concatenate([o, jnp.zeros(self.num_actions + 2, jnp.float32)]),
                RL2InputsState(inner))

    def step_env(self, key, state, action, params):
        obs, inner, reward, terminated, truncated, info = self.env.step_env(
            key, state.inner, action, params)
        x = self._inputs(obs, action, reward, jnp.logical_or(terminated, truncated))
        return x, RL2InputsState(inner), reward, terminated, truncated, info


__all__ = ["RL2Inputs"]
