"""Pytrees shared by environments, agents and the training loop."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Array = jax.Array
PRNGKey = jax.Array
Obs = Any
Action = Any
Info = dict[str, Any]
ActInfo = dict[str, Any]
Metrics = dict[str, Any]


class Transition(NamedTuple):
    """One environment step as seen by an agent's ``update``.

    A NamedTuple so that ``lax.scan`` stacks it into a trajectory for free.

    Attributes:
      obs: observation the action was chosen from.
      action: action taken (int for Discrete, int vector ``[k]`` for a slate).
      reward: scalar reward, or ``[num_objectives]`` vector (names in ``env.reward_names``).
      next_obs: observation after the step; after an auto-reset this is the
        first observation of the new episode, the last one is in
        ``info['final_observation']``.
      terminated: the episode ended by the environment's own dynamics (the user
        left, the budget ran out); value targets do not bootstrap.
      truncated: the episode was cut by a time limit; targets bootstrap.
      act_info: what ``Agent.act`` returned beside the action (probabilities,
        log-probabilities, values).
      info: the environment's per-step info dict.
    """

    obs: Obs
    action: Action
    reward: Array
    next_obs: Obs
    terminated: Array
    truncated: Array
    act_info: ActInfo
    info: Info
