"""Replay evaluation of an agent on logged bandit feedback (Li et al., WSDM 2011).

:class:`ReplayAgent` wraps any agent so that it learns only from the steps of a
replay environment (:mod:`mtrlrec.envs.logged`) whose logged action matched
its own (``info['accepted']``), as Algorithm 1 of Li et al. (2011) requires.
"""

from __future__ import annotations

import gin
import jax

from mtrlrec.core.agent import Agent, AgentWrapper
from mtrlrec.core.errors import ConfigError


@gin.configurable
class ReplayAgent(AgentWrapper):
    """Wraps an agent so that it learns only from accepted replay steps.

    ``observe`` runs the wrapped agent's ``observe`` and keeps its result only
    where ``transition.info['accepted']`` is 1 (a ``lax.select`` over the
    state, no branching). Everything else is forwarded (``act``, ``learn`` on
    the wrapped agent's period, its hyperparameters, so sweeps still work).

    Args:
      agent: the agent to evaluate (e.g. ``@LinUCB()``).
    """

    def __init__(self, agent: Agent = gin.REQUIRED):
        if not isinstance(agent, Agent):
            raise ConfigError(f"ReplayAgent.agent must be an agent such as @LinUCB(), got {agent!r}.")
        super().__init__(agent)

    @property
    def name(self) -> str:
        return f"Replay({self.agent.name})"

    def observe(self, key, state, transition):
        if "accepted" not in transition.info:
            raise ConfigError(
                "ReplayAgent needs an environment reporting info['accepted'] "
                "(ContextualReplayBandit); use the agent directly elsewhere."
            )
        new_state = self.agent.observe(key, state, transition)
        ok = transition.info["accepted"] > 0
        return jax.tree.map(lambda n, o: jax.lax.select(ok, n, o), new_state, state)


__all__ = ["ReplayAgent"]
