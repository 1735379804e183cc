r"""The user's recent clicks as part of the observation, for agents that must infer the user.

:class:`ClickHistory` wraps a slate environment (:class:`~mtrlrec.envs.slate.SlateEnv`)
and adds the features of the user's last ``length`` clicked items, oldest first,
to every observation:

* ``obs['history']`` ``[L, D]``: :math:`(d_{c_{t-L+1}}, \dots, d_{c_t})`, zeros before
  the first click;
* ``obs['history_mask']`` ``[L]`` float: 1 where a position holds a click.

The history starts empty with each episode (a new user session). An agent's state
encoder (a GRU or a Transformer over the history, ``SlateDQN.user_state``) can then
replace the fully observed interest vector ``obs['user']``, as a recommender that
sees only behaviour would. The wrapper keeps the current candidates' features in
its state to know what was clicked; it reads ``info['slate_click']``.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.core.spaces import Box, Dict
from mtrlrec.core.wrappers import Wrapper


@flax.struct.dataclass
class ClickHistoryState:
    inner: Any
    history: jax.Array  # [L, D] clicked items' features, newest last
    mask: jax.Array     # [L] float32, 1 where a click is stored
    doc: jax.Array      # [m, D] the candidates of the current observation


@gin.configurable
class ClickHistory(Wrapper):
    """Adds ``history [L, D]`` and ``history_mask [L]`` of the last ``length`` clicks to the observation."""

    def __init__(self, env: Environment, length: int = 10):
        super().__init__(env)
        self.length = check_int("ClickHistory.length", length, min_value=1)
        spec = env.observation_spec()
        if not (isinstance(spec, Dict) and {"user", "doc"} <= set(spec.spaces)):
            raise ConfigError(f"ClickHistory wraps a slate environment (observations 'user' and "
                              f"'doc'), got {env.name} with {spec}.")
        self._dim = spec.spaces["doc"].shape[-1]

    def observation_spec(self, params=None):
        spaces = dict(self.env.observation_spec(params).spaces)
        spaces["history"] = Box(-np.inf, np.inf, (self.length, self._dim))
        spaces["history_mask"] = Box(0.0, 1.0, (self.length,))
        return Dict(spaces)

    def _obs(self, obs, history, mask):
        return {**obs, "history": history, "history_mask": mask}

    def reset_env(self, key, params):
        obs, inner = self.env.reset_env(key, params)
        history = jnp.zeros((self.length, self._dim), jnp.float32)
        mask = jnp.zeros((self.length,), jnp.float32)
        return self._obs(obs, history, mask), ClickHistoryState(inner, history, mask, obs["doc"])

    def step_env(self, key, state, action, params):
        obs, inner, reward, terminated, truncated, info = self.env.step_env(
            key, state.inner, action, params)
        click = jnp.asarray(info["slate_click"], jnp.float32)  # [k]
        clicked = jnp.sum(click) > 0
        item = state.doc[action[jnp.argmax(click)]]            # [D]
        history = jnp.where(clicked, jnp.concatenate([state.history[1:], item[None]]),
                            state.history)
        mask = jnp.where(clicked, jnp.concatenate([state.mask[1:], jnp.ones((1,))]), state.mask)
        new = ClickHistoryState(inner, history, mask, obs["doc"])
        return self._obs(obs, history, mask), new, reward, terminated, truncated, info
