r"""Replay of logged bandit feedback: evaluate any context-free bandit agent on real logs.

The replay method (Li, Chu, Langford & Wang, *Unbiased Offline Evaluation of
Contextual-bandit-based News Article Recommendation Algorithms*, WSDM 2011,
§3.1, Algorithm 1) turns a log of events :math:`(a_i, r_i)` collected by a
policy whose choices do not depend on the rewards (ideally uniform random)
into an online environment: a step in which the agent chooses arm :math:`a`
returns the reward of a logged event with :math:`a_i = a` that was never used
before.

For a context-free agent (every agent of :mod:`mtrlrec.agents.bandits`) this is
implemented without rejection: the log is split into one stream per arm (in
time order) and a cursor per arm; choosing arm :math:`a` returns the next
unused reward of stream :math:`a`:

.. math:: r_t = r_{\sigma_a(c_a)}, \qquad c_a \leftarrow c_a + 1,

where :math:`\sigma_a(j)` is the index of the j-th logged event with action
:math:`a`. If the logged rewards of each arm are i.i.d. draws of
:math:`P(r \mid a)` — true for uniform logging, or any logging policy that
ignores the rewards and context — the rewards the agent sees have exactly the
distribution of online interaction, so every metric of the online loop
(reward, regret, learning curves) is an unbiased estimate of its online value.
It is Li et al.'s Algorithm 1 with the rejected events skipped ahead of time
(for a context-free policy the choice at an event does not depend on the
event), and it wastes no events on arms the agent does not pull.

A stream can run out: at most ``count_a`` pulls of arm :math:`a` are backed by
data. The ``exhausted`` info flag (summed by the loop as
``cumulative_exhausted``) counts pulls beyond the data, which then *wrap
around* to the start of the stream (reusing rewards, no longer unbiased).
Keep ``num_steps`` below the smallest stream the agent will use heavily: on
OBD's 10,000-row random sample with 80 items that is about 125 pulls per item
(all positions pooled); use the full dataset for long runs.

``regret`` is the pseudo-regret against the log's empirical arm means,
:math:`\max_b \bar r_b - \bar r_{a_t}` (empirical, so noisy for rare arms).

**Contextual agents** (LinUCB, LinTS, ...) need the original rejection form,
because their choice depends on the event's context:
:class:`ContextualReplayBandit` shows event :math:`t`'s context, and the step
is *accepted* only if the agent picks the logged action :math:`a_t`
(``info['accepted']``; reward :math:`r_t`, else 0). Wrap the agent in
:class:`ReplayAgent`, which discards the updates of rejected steps, so the agent
learns only from accepted events exactly as in Algorithm 1. With uniform
logging over K actions about one step in K is accepted; the policy's value is
``cumulative_reward / cumulative_accepted`` (the loop reports both).
"""

from __future__ import annotations

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.core.spaces import Box, Discrete


@flax.struct.dataclass
class ReplayParams:
    """The log, regrouped by arm (n events, K arms).

    Attributes:
      rewards: ``[n]`` float32 rewards sorted by arm (stable, so in log order within an arm).
      offsets: ``[K]`` int32 start of each arm's stream in ``rewards``.
      counts: ``[K]`` int32 length of each arm's stream.
      means: ``[K]`` float32 empirical mean reward of each arm (0 if never logged).
    """

    rewards: jax.Array
    offsets: jax.Array
    counts: jax.Array
    means: jax.Array


@flax.struct.dataclass
class ReplayState:
    cursor: jax.Array  # [K] int32, pulls of each arm so far
    t: jax.Array  # steps taken


def replay_params(actions, rewards, num_actions: int, name: str = "logged data") -> ReplayParams:
    """Builds :class:`ReplayParams` from a log on the host (validated).

    Args:
      actions: ``[n]`` int arms in ``0 .. num_actions-1``.
      rewards: ``[n]`` float rewards.
      num_actions: K.
      name: used in error messages.

    Raises:
      ConfigError: shapes differ, actions out of range, non-finite rewards.
    """
    actions = np.asarray(actions)
    rewards = np.asarray(rewards, np.float64)
    if actions.ndim != 1 or rewards.shape != actions.shape:
        raise ConfigError(
            f"{name}: actions and rewards must be 1-D of equal length, got {actions.shape}, {rewards.shape}."
        )
    if actions.size == 0:
        raise ConfigError(f"{name}: the log is empty.")
    bad = np.flatnonzero((actions < 0) | (actions >= num_actions))
    if bad.size:
        raise ConfigError(
            f"{name}: row {bad[0]}: action {actions[bad[0]]} outside the item range 0..{num_actions - 1}."
        )
    if not np.all(np.isfinite(rewards)):
        raise ConfigError(f"{name}: row {np.flatnonzero(~np.isfinite(rewards))[0]}: reward must be finite.")
    order = np.argsort(actions, kind="stable")
    counts = np.bincount(actions, minlength=num_actions)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sums = np.bincount(actions, weights=rewards, minlength=num_actions)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return ReplayParams(
        rewards=jnp.asarray(rewards[order], jnp.float32),
        offsets=jnp.asarray(offsets, jnp.int32),
        counts=jnp.asarray(counts, jnp.int32),
        means=jnp.asarray(means, jnp.float32),
    )


class ReplayBandit(Environment):
    """A K-armed bandit whose rewards are replayed from a log (see module docstring).

    Args:
      actions: ``[n]`` logged arms.
      rewards: ``[n]`` logged rewards.
      num_actions: K >= 2.
      name: label for error messages.
    """

    episodic = False
    cumulative_metrics = ("reward", "regret", "exhausted")

    def __init__(self, actions, rewards, num_actions: int, name: str = "ReplayBandit"):
        self.num_actions = check_int(f"{name}.num_actions", num_actions, min_value=2)
        self._params = replay_params(actions, rewards, self.num_actions, name)
        self.num_events = int(np.asarray(actions).shape[0])

    def default_params(self) -> ReplayParams:
        return self._params

    def check_params(self, params: ReplayParams) -> None:
        if np.asarray(params.counts).shape[-1] != self.num_actions:
            raise ConfigError(
                f"{self.name} params have {np.asarray(params.counts).shape[-1]} arms, expected {self.num_actions}."
            )

    def observation_spec(self, params=None):
        return Box(0.0, 0.0, ())

    def action_spec(self, params=None):
        return Discrete(self.num_actions)

    def reset_env(self, key, params):
        state = ReplayState(cursor=jnp.zeros(self.num_actions, jnp.int32), t=jnp.int32(0))
        return jnp.zeros((), jnp.float32), state

    def step_env(self, key, state, action, params):
        c = state.cursor[action]
        n_a = params.counts[action]
        idx = params.offsets[action] + c % jnp.maximum(n_a, 1)
        reward = jnp.where(n_a > 0, params.rewards[idx], 0.0)
        info = {
            "regret": jnp.max(params.means) - params.means[action],
            "exhausted": (c >= n_a).astype(jnp.float32),
        }
        new_state = ReplayState(cursor=state.cursor.at[action].add(1), t=state.t + 1)
        false = jnp.bool_(False)
        return jnp.zeros((), jnp.float32), new_state, reward, false, false, info


@gin.configurable
class OBDReplayBandit(ReplayBandit):
    """Replay of an Open Bandit Dataset log: items are arms, clicks are rewards.

    Args:
      campaign: ``'all'`` (80 items), ``'men'`` (34) or ``'women'`` (46).
      behavior: the log to replay, ``'random'`` (uniform logging, the standard
        choice) or ``'bts'``.
      position: use only events at this position (0, 1, 2), or -1 to pool the
        three positions (their click rates differ; pooling replays the average
        slot).
      data_path: None for the committed sample, else an OBD directory.
    """

    def __init__(self, campaign: str = "all", behavior: str = "random", position: int = -1,
                 data_path: str | None = None):
        from mtrlrec.data import obd  # local import: data loading is host-side only

        position = check_int("OBDReplayBandit.position", position, min_value=-1)
        if position > 2:
            raise ConfigError(f"OBDReplayBandit.position must be -1, 0, 1 or 2, got {position}.")
        log = obd.load(behavior, campaign, data_path)
        keep = np.ones(log.num_rounds, bool) if position < 0 else log.position == position
        self.campaign, self.behavior, self.position = campaign, behavior, position
        super().__init__(log.action[keep], log.reward[keep], log.num_actions,
                         name="OBDReplayBandit")


@flax.struct.dataclass
class ContextualReplayParams:
    """A logged contextual bandit dataset (n events, d features).

    Attributes:
      contexts: ``[n, d]`` float32.
      actions: ``[n]`` int32 logged actions.
      rewards: ``[n]`` float32 logged rewards.
    """

    contexts: jax.Array
    actions: jax.Array
    rewards: jax.Array


@flax.struct.dataclass
class ContextualReplayState:
    start: jax.Array  # first event replayed by this run
    t: jax.Array  # events consumed


class ContextualReplayBandit(Environment):
    """Li et al. (2011) Algorithm 1 for contextual agents (see module docstring).

    Each run starts at a random event (drawn in ``reset`` from its key) and
    walks the log cyclically, so seeds replay different stretches of it;
    ``exhausted`` flags steps after the whole log was used once.

    Args:
      contexts: ``[n, d]``; actions: ``[n]`` ints in ``0 .. num_actions-1``;
      rewards: ``[n]``; num_actions: K >= 2.
      random_start: start each run at a random event (else at event 0).
    """

    episodic = False
    cumulative_metrics = ("reward", "accepted", "exhausted")

    def __init__(self, contexts, actions, rewards, num_actions: int, random_start: bool = True,
                 name: str = "ContextualReplayBandit"):
        self.num_actions = check_int(f"{name}.num_actions", num_actions, min_value=2)
        contexts = np.asarray(contexts, np.float32)
        if contexts.ndim != 2 or contexts.shape[0] != np.asarray(actions).shape[0]:
            raise ConfigError(
                f"{name}: contexts must be [n, d] with n = len(actions), got {contexts.shape} "
                f"and {np.asarray(actions).shape}."
            )
        if not np.all(np.isfinite(contexts)):
            raise ConfigError(f"{name}: contexts must be finite.")
        replay_params(actions, rewards, self.num_actions, name)  # validates actions/rewards
        self._params = ContextualReplayParams(
            contexts=jnp.asarray(contexts), actions=jnp.asarray(actions, jnp.int32),
            rewards=jnp.asarray(rewards, jnp.float32))
        self.num_events, self.context_dim = contexts.shape
        self.random_start = bool(random_start)

    def default_params(self) -> ContextualReplayParams:
        return self._params

    def observation_spec(self, params=None):
        return Box(-np.inf, np.inf, (self.context_dim,))

    def action_spec(self, params=None):
        return Discrete(self.num_actions)

    def reset_env(self, key, params):
        n = params.actions.shape[0]
        start = jax.random.randint(key, (), 0, n) if self.random_start else jnp.int32(0)
        return params.contexts[start], ContextualReplayState(start=start, t=jnp.int32(0))

    def step_env(self, key, state, action, params):
        n = params.actions.shape[0]
        i = (state.start + state.t) % n
        accepted = action == params.actions[i]
        reward = jnp.where(accepted, params.rewards[i], 0.0)
        info = {
            "accepted": accepted.astype(jnp.float32),
            "exhausted": (state.t >= n).astype(jnp.float32),
        }
        new_state = ContextualReplayState(start=state.start, t=state.t + 1)
        obs = params.contexts[(i + 1) % n]
        false = jnp.bool_(False)
        return obs, new_state, reward, false, false, info


@gin.configurable
class OBDContextualReplayBandit(ContextualReplayBandit):
    """OBD's uniform-random log as a contextual replay (context: one-hot user features).

    Args:
      campaign: ``'all'``, ``'men'`` or ``'women'``.
      position: events at this position only (0, 1, 2) or -1 for all.
      affinity: append the user-item affinities to the context.
      data_path: None for the committed sample, else an OBD directory.
    """

    def __init__(self, campaign: str = "all", position: int = -1, affinity: bool = False,
                 data_path: str | None = None):
        from mtrlrec.data import obd

        position = check_int("OBDContextualReplayBandit.position", position, min_value=-1)
        if position > 2:
            raise ConfigError(f"OBDContextualReplayBandit.position must be -1, 0, 1 or 2, got {position}.")
        log = obd.load("random", campaign, data_path)
        keep = np.ones(log.num_rounds, bool) if position < 0 else log.position == position
        super().__init__(log.context(affinity=affinity)[keep], log.action[keep], log.reward[keep],
                         log.num_actions, name="OBDContextualReplayBandit")


__all__ = [
    "ContextualReplayBandit", "ContextualReplayParams", "OBDContextualReplayBandit",
    "OBDReplayBandit", "ReplayBandit", "ReplayParams", "ReplayState",
    "replay_params",
]
