"""The pure agent interface (DESIGN §3).

An :class:`Agent` holds static configuration only (network definitions, buffer
sizes, update period). Everything that changes (statistics, parameters,
optimiser state, buffers) lives in an ``AgentState`` pytree returned by
``init`` and threaded through ``act``/``update`` by the loop.

Swept hyperparameters (ε, the c of UCB, step sizes, discounts) are floats in
``AgentState.hparams`` (a flax struct): the loop overrides them per sweep point
with ``state.replace(hparams=...)`` under ``vmap``, so a sweep is one compiled
call, not a recompile per value. ``Agent.hparams()`` returns the configured
defaults.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import flax.struct
import jax

from mtrlrec.core.spaces import Space
from mtrlrec.core.types import ActInfo, Metrics, PRNGKey, Transition

S = TypeVar("S")


@flax.struct.dataclass
class AgentState:
    """Minimal agent state: subclasses add fields; ``hparams`` holds swept values."""

    hparams: Any


class Agent(Generic[S]):
    """Base class of pure agents.

    Periodic learners (neural bandits, DQN, PPO) set ``learn_every`` to an int
    and implement ``observe`` (the cheap per-step part: store the transition)
    and ``learn`` (the expensive part: gradient steps). The loop then scans
    blocks of ``learn_every`` steps and calls ``learn`` between blocks, for all
    seeds at once. A ``lax.cond(t % n == 0, learn)`` inside ``update`` would be
    turned into a ``select`` by ``vmap`` (its predicate is per seed) and would
    run ``learn`` on every step. ``update`` stays the single-step fallback.
    """

    learn_every: int | None = None

    def observe(self, key: PRNGKey, state: S, transition: Transition) -> S:
        """Per-step bookkeeping of a periodic learner (only with ``learn_every``)."""
        raise NotImplementedError

    def learn(self, key: PRNGKey, state: S) -> S:
        """The periodic learning phase (only with ``learn_every``)."""
        raise NotImplementedError

    def hparams(self) -> Any:
        """The default hyperparameter struct (float arrays) stored in the state."""
        return {}

    def init(self, key: PRNGKey, obs_spec: Space, action_spec: Space) -> S:
        raise NotImplementedError

    def act(self, key: PRNGKey, state: S, obs: Any) -> tuple[Any, ActInfo]:
        raise NotImplementedError

    def update(self, key: PRNGKey, state: S, transition: Transition) -> tuple[S, Metrics]:
        raise NotImplementedError

    def check_compatible(self, obs_spec: Space, action_spec: Space) -> None:
        """Raises ``ConfigError`` when this agent cannot act in these spaces."""

    @property
    def name(self) -> str:
        return type(self).__name__


def with_hparams(state: Any, overrides: dict[str, jax.Array]) -> Any:
    """Returns ``state`` with some ``state.hparams`` fields replaced (used by sweeps)."""
    if not overrides:
        return state
    hp = state.hparams
    if isinstance(hp, dict):
        missing = set(overrides) - set(hp)
        new_hp = {**hp, **overrides}
    else:
        fields = set(hp.__dataclass_fields__)
        missing = set(overrides) - fields
        new_hp = hp.replace(**overrides) if not missing else hp
    if missing:
        from mtrlrec.core.errors import ConfigError

        known = sorted(hp) if isinstance(hp, dict) else sorted(hp.__dataclass_fields__)
        raise ConfigError(
            f"cannot sweep {sorted(missing)}: the agent's hyperparameters are {known}."
        )
    return state.replace(hparams=new_hp)
