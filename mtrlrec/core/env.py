"""The pure, gymnax-style environment interface (DESIGN §2).

An :class:`Environment` is a stateless object holding only static sizes
(numbers of arms, slate size, candidates), fixed at construction so that array
shapes are static under ``jit``. Everything that varies per task or per user
(arm means, interests, prices) lives in ``Params`` or ``State``, both
``flax.struct.dataclass`` pytrees, so a batch of tasks or users is a ``vmap``.

Subclasses implement ``reset_env`` and ``step_env``; :meth:`Environment.step`
adds auto-reset without branching (gymnax): the reset state is computed every
step and selected where the episode ended, so a ``vmap`` over users whose
episodes end at different times needs no Python control flow.

Step signature (gymnax >= 1.0 / Gymnasium)::

    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

``reward`` is a scalar, or a vector ``[len(env.reward_names)]`` of per-task
rewards (click, purchase, watch time, ...). ``info`` is a flat dict of arrays;
every scalar entry is logged by the training loop.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp

from mtrlrec.core.spaces import Space
from mtrlrec.core.types import Info, PRNGKey

State = TypeVar("State")
Params = TypeVar("Params")


class Environment(Generic[State, Params]):
    """Base class of pure environments.

    Class attributes:
      reward_names: names of the reward components (length 1 for scalar rewards).
      cumulative_metrics: info keys whose running sums the loop reports as
        ``cumulative_<key>`` (e.g. ``regret`` -> ``cumulative_regret``).
      episodic: False for environments that never terminate (bandits); then
        ``step`` skips the auto-reset computation entirely.
    """

    reward_names: tuple[str, ...] = ("reward",)
    cumulative_metrics: tuple[str, ...] = ()
    episodic: bool = True

    # -- to implement -------------------------------------------------------
    def default_params(self) -> Params:
        raise NotImplementedError

    def reset_env(self, key: PRNGKey, params: Params) -> tuple[Any, State]:
        raise NotImplementedError

    def step_env(
        self, key: PRNGKey, state: State, action: Any, params: Params
    ) -> tuple[Any, State, jax.Array, jax.Array, jax.Array, Info]:
        raise NotImplementedError

    def observation_spec(self, params: Params | None = None) -> Space:
        raise NotImplementedError

    def action_spec(self, params: Params | None = None) -> Space:
        raise NotImplementedError

    def check_params(self, params: Params) -> None:
        """Validates concrete ``params`` on the host; raises ``ConfigError``.

        Called by the training loop before compilation. The default accepts all.
        """

    # -- provided -----------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    def reset(self, key: PRNGKey, params: Params | None = None) -> tuple[Any, State]:
        if params is None:
            params = self.default_params()
        return self.reset_env(key, params)

    def step(
        self, key: PRNGKey, state: State, action: Any, params: Params | None = None
    ) -> tuple[Any, State, jax.Array, jax.Array, jax.Array, Info]:
        """One step with auto-reset; ``info['final_observation']`` keeps the last obs."""
        if params is None:
            params = self.default_params()
        if not self.episodic:
            return self.step_env(key, state, action, params)
        key_step, key_reset = jax.random.split(key)
        obs, new_state, reward, terminated, truncated, info = self.step_env(
            key_step, state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        reset_obs, reset_state = self.reset_env(key_reset, params)
        info = dict(info)
        info["final_observation"] = obs
        new_state = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), reset_state, new_state)
        obs = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), reset_obs, obs)
        return obs, new_state, reward, terminated, truncated, info
