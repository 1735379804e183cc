r"""Baseline slate policies for :class:`~mtrlrec.envs.slate.SlateEnv` (issue 5).

* :class:`RandomSlate`: ``k`` distinct candidates uniformly at random, in random
  order (RecSim ``RandomAgent``; the "Random" rows of SlateQ §7).
* :class:`OracleGreedySlate`: the myopic oracle. It is handed the true choice
  model and reads the true interests ``u`` from the observation (RecSim's
  observation is fully observed, SlateQ §6.2), scores each candidate ``j`` by
  its click probability when shown alone,
  :math:`p_j = P(\text{click } j \mid \{j\}, u)`, and shows the top ``k`` in
  decreasing order (RecSim ``GreedyPCTRAgent``). For the proportional, logit
  and cascade models :math:`p_j` is increasing in the affinity
  :math:`u \cdot d_j`, so this slate also maximises the slate's click
  probability; it ignores quality and the future (budget), so it is not the
  best policy for total watch time.
* :class:`FixedTopicSlate`: always fills the slate with candidates of one topic
  (feature coordinate), ties and the rest broken at random.

All three are stateless: ``update`` is a no-op, ``hparams`` is empty.
"""

from __future__ import annotations

import types

import gin
import jax
import jax.numpy as jnp

from mtrlrec.core.agent import Agent, AgentState
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.core.spaces import Dict, Slate
from mtrlrec.envs.choice import ChoiceModel, MultinomialProportional


def _check_slate_env(name: str, obs_spec, action_spec, need_obs: bool) -> None:
    if not isinstance(action_spec, Slate):
        raise ConfigError(f"{name} needs a Slate action space, got {action_spec}.")
    if need_obs and not (isinstance(obs_spec, Dict) and {"user", "doc"} <= set(obs_spec.spaces)):
        raise ConfigError(
            f"{name} needs observations {{'user': [D], 'doc': [m, D]}} (a SlateEnv), got "
            f"{obs_spec}.")


def _top_k(key, scores, k):
    """Indices of the ``k`` largest ``scores`` ``[m]``, decreasing; ties at random."""
    noise = jax.random.uniform(key, scores.shape, jnp.float32, 0.0, 1e-6)
    return jax.lax.top_k(scores + noise, k)[1].astype(jnp.int32)


class _StatelessSlateAgent(Agent):
    need_obs = True

    def init(self, key, obs_spec, action_spec):
        _check_slate_env(self.name, obs_spec, action_spec, self.need_obs)
        self.slate_size = int(action_spec.slate_size)
        self.num_candidates = int(action_spec.num_candidates)
        return AgentState(hparams={})

    def check_compatible(self, obs_spec, action_spec):
        _check_slate_env(self.name, obs_spec, action_spec, self.need_obs)
        self.slate_size = int(action_spec.slate_size)
        self.num_candidates = int(action_spec.num_candidates)

    def observe(self, key, state, transition):
        return state


@gin.configurable
class RandomSlate(_StatelessSlateAgent):
    """Uniformly random ordered slate of ``k`` distinct candidates."""

    need_obs = False

    def act(self, key, state, obs, *, greedy=False):
        """Sequential sampling without replacement from ``k`` uniforms.

        Position ``j`` takes the ``r``-th still unused candidate,
        ``r = floor(u_j (m - j))``: every ordered ``k``-subset has probability
        ``(m - k)! / m!``. Costs ``k`` random words and ``O(k^2)`` compares
        (instead of ``m`` words and a top-k), for ``k <= 8``.
        """
        m, k = self.num_candidates, self.slate_size
        if k > 8:
            u = jax.random.uniform(key, (m,), jnp.float32)
            return jax.lax.top_k(u, k)[1].astype(jnp.int32), state, {}
        u = jax.random.uniform(key, (k,), jnp.float32)
        chosen = []
        for j in range(k):
            r = jnp.minimum(jnp.floor(u[j] * (m - j)).astype(jnp.int32), m - j - 1)
            x = r
            for _ in range(j):  # fixed point: x = r + #{chosen <= x}
                x = r + sum((c <= x).astype(jnp.int32) for c in chosen)
            chosen.append(x)
        return jnp.stack(chosen).astype(jnp.int32), state, {}


@gin.configurable
class OracleGreedySlate(_StatelessSlateAgent):
    """Myopic oracle: top-``k`` candidates by true single-item click probability.

    Args:
      choice_model: the user's true choice model (default
        :class:`~mtrlrec.envs.choice.MultinomialProportional`); bind the same
        one as the environment's.
    """

    def __init__(self, choice_model: ChoiceModel | None = None):
        self.choice_model = MultinomialProportional() if choice_model is None else choice_model
        if not isinstance(self.choice_model, ChoiceModel):
            raise ConfigError(
                f"OracleGreedySlate.choice_model must be a ChoiceModel, got {choice_model!r}.")
        defaults = dict(no_click_mass=1.0, min_normalizer=-1.0, temperature=1.0,
                        attention_prob=0.65, score_scaling=0.05)
        defaults.update(self.choice_model.param_values())
        self._params = types.SimpleNamespace(**defaults)

    def click_probabilities(self, obs) -> jax.Array:
        """``[m]`` click probability of each candidate shown alone."""
        scores = obs["doc"] @ obs["user"]
        return jax.vmap(lambda s: self.choice_model.probabilities(s[None], self._params)[0])(
            scores)

    def act(self, key, state, obs, *, greedy=False):
        p = self.click_probabilities(obs)
        return _top_k(key, p, self.slate_size), state, {"click_prob": p}


@gin.configurable
class FixedTopicSlate(_StatelessSlateAgent):
    """Shows candidates of topic ``topic`` first (feature coordinate ``topic``).

    Args:
      topic: the topic index (19 = RecSim's most nutritious topic, mean quality 3).
    """

    def __init__(self, topic: int = 19):
        self.topic = check_int("FixedTopicSlate.topic", topic, min_value=0)

    def init(self, key, obs_spec, action_spec):
        state = super().init(key, obs_spec, action_spec)
        self._check_topic(obs_spec)
        return state

    def check_compatible(self, obs_spec, action_spec):
        super().check_compatible(obs_spec, action_spec)
        self._check_topic(obs_spec)

    def _check_topic(self, obs_spec):
        dim = obs_spec.spaces["doc"].shape[-1]
        if self.topic >= dim:
            raise ConfigError(
                f"FixedTopicSlate.topic={self.topic} is out of range for {dim} topics "
                f"(expected 0 <= topic < {dim}).")

    def act(self, key, state, obs, *, greedy=False):
        return _top_k(key, obs["doc"][:, self.topic], self.slate_size), state, {}


__all__ = ["FixedTopicSlate", "OracleGreedySlate", "RandomSlate"]
