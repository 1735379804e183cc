r"""User choice models for slates (RecSim ``recsim/choice_model.py``; SlateQ §3, §7.3).

A choice model turns the affinities :math:`s_i = u \cdot d_i` of the ``k``
items of a slate (in slate order) into the probabilities of the ``k + 1``
outcomes "click item i" and "no click" (last entry). The user clicks at most one
item per step. Models are static strategy objects (picked with Gin); their
numeric parameters are copied into :class:`~mtrlrec.envs.slate.SlateParams` by
the environment, so they can be swept under ``vmap`` without recompiling.

* :class:`MultinomialProportional` (RecSim default, conditional choice model of
  SlateQ §3):  with :math:`w_i = s_i - n_{\min}` and
  :math:`w_\varnothing = m_\varnothing - n_{\min}`,
  :math:`P(i) = w_i / (\sum_j w_j + w_\varnothing)`. Defaults
  :math:`m_\varnothing = 1`, :math:`n_{\min} = -1` (weights in [0, 2], no-click
  weight 2).
* :class:`MultinomialLogit`: :math:`P(i) \propto \exp(s_i / \tau)`,
  :math:`P(\varnothing) \propto \exp(m_\varnothing / \tau)`.
* :class:`ExponentialCascade` (position matters; SlateQ §7.3, RecSim
  ``ExponentialCascadeChoiceModel``): the user examines positions in order;
  with :math:`c_i = \min(1, a \, \sigma \, e^{s_i})`, attention ``a`` and score
  scaling :math:`\sigma`, :math:`P(i) = c_i \prod_{j<i} (1 - c_j)` and
  :math:`P(\varnothing) = \prod_j (1 - c_j)`.
"""

from __future__ import annotations

import math

import gin
import jax
import jax.numpy as jnp

from mtrlrec.core.errors import ConfigError, check_float


class ChoiceModel:
    """Interface: ``probabilities(scores [k], params) -> [k+1]`` (last = no click)."""

    #: whether the order of the slate changes the outcome probabilities.
    positional: bool = False

    def param_values(self) -> dict[str, float]:
        """Values of the ``SlateParams`` choice fields this model configures."""
        return {}

    def probabilities(self, scores: jax.Array, params) -> jax.Array:
        raise NotImplementedError

    def item_utility(self, score: jax.Array, params) -> jax.Array:
        """RecSim's ``expected_utility`` of one clicked item scored alone."""
        return self.probabilities(score[None], params)[0]

    def check_scores_bound(self, max_abs_score: float, name: str) -> None:
        """Raises ``ConfigError`` if scores up to ``max_abs_score`` give invalid probabilities."""

    def weights(self, scores: jax.Array, params) -> tuple[jax.Array, jax.Array]:
        r"""Item and no-click weights ``(v [..., m], v_null [...])`` of a *conditional*
        choice model, :math:`P(i \mid A) = v_i / (v_\varnothing + \sum_{j \in A} v_j)`
        (SlateQ, Ie et al. 2019, §3), which SlateQ's slate decomposition assumes.
        Models whose outcome depends on the order of the slate have none."""
        raise ConfigError(
            f"{type(self).__name__} is not a conditional choice model (the probability of a "
            "click depends on the slate's order); SlateQ needs MultinomialProportional or "
            "MultinomialLogit as the agent's choice model.")


@gin.configurable
class MultinomialProportional(ChoiceModel):
    """RecSim's ``MultinomialProportionalChoiceModel``.

    Args:
      no_click_mass: score :math:`m_\\varnothing` of the no-click option (1.0).
      min_normalizer: :math:`n_{\\min} \\le 0` subtracted from every score (-1.0).
    """

    def __init__(self, no_click_mass: float = 1.0, min_normalizer: float = -1.0):
        self.no_click_mass = check_float("MultinomialProportional.no_click_mass", no_click_mass)
        self.min_normalizer = check_float(
            "MultinomialProportional.min_normalizer", min_normalizer, high=0.0)
        if self.no_click_mass - self.min_normalizer < 0:
            raise ConfigError(
                "MultinomialProportional.no_click_mass - min_normalizer must be >= 0, got "
                f"{self.no_click_mass} - ({self.min_normalizer}).")

    def param_values(self):
        return {"no_click_mass": self.no_click_mass, "min_normalizer": self.min_normalizer}

    def probabilities(self, scores, params):
        w = jnp.append(scores, params.no_click_mass) - params.min_normalizer
        w = jnp.maximum(w, 0.0)
        return w / jnp.maximum(jnp.sum(w), 1e-12)

    def item_utility(self, score, params):
        return score - params.min_normalizer

    def weights(self, scores, params):
        v = jnp.maximum(scores - params.min_normalizer, 0.0)
        null = jnp.maximum(params.no_click_mass - params.min_normalizer, 0.0)
        return v, jnp.broadcast_to(jnp.asarray(null, jnp.float32), scores.shape[:-1])

    def check_scores_bound(self, max_abs_score, name):
        if -max_abs_score - self.min_normalizer < -1e-6:
            raise ConfigError(
                f"MultinomialProportional.min_normalizer={self.min_normalizer} leaves negative "
                f"weights for affinities down to -{max_abs_score} ({name}); expected "
                f"min_normalizer <= -{max_abs_score}.")


@gin.configurable
class MultinomialLogit(ChoiceModel):
    """Multinomial logit (softmax) choice with a temperature.

    Args:
      no_click_mass: logit of the no-click option (1.0).
      temperature: :math:`\\tau > 0` (1.0); small values make the user greedy.
    """

    def __init__(self, no_click_mass: float = 1.0, temperature: float = 1.0):
        self.no_click_mass = check_float("MultinomialLogit.no_click_mass", no_click_mass)
        self.temperature = check_float(
            "MultinomialLogit.temperature", temperature, low=0.0, low_open=True)

    def param_values(self):
        return {"no_click_mass": self.no_click_mass, "temperature": self.temperature}

    def probabilities(self, scores, params):
        logits = jnp.append(scores, params.no_click_mass) / params.temperature
        return jax.nn.softmax(logits)

    def weights(self, scores, params):
        # exp(logit - c) with one shift c per slate: the ratios are those of the model.
        null = jnp.broadcast_to(jnp.asarray(params.no_click_mass, jnp.float32), scores.shape[:-1])
        c = jnp.maximum(jnp.max(scores, -1), null)[..., None]
        v = jnp.exp((scores - c) / params.temperature)
        return v, jnp.exp((null - c[..., 0]) / params.temperature)


@gin.configurable
class ExponentialCascade(ChoiceModel):
    """RecSim's ``ExponentialCascadeChoiceModel`` (position-dependent).

    Args:
      attention_prob: :math:`a \\in [0, 1]`, probability of examining the next
        position (0.65, RecSim's ``UtilityModelUserSampler``).
      score_scaling: :math:`\\sigma \\ge 0` (0.05, idem);
        :math:`a \\sigma e^{s}` must stay <= 1 (RecSim asserts it).
    """

    positional = True

    def __init__(self, attention_prob: float = 0.65, score_scaling: float = 0.05):
        self.attention_prob = check_float(
            "ExponentialCascade.attention_prob", attention_prob, low=0.0, high=1.0)
        self.score_scaling = check_float("ExponentialCascade.score_scaling", score_scaling,
                                         low=0.0)

    def param_values(self):
        return {"attention_prob": self.attention_prob, "score_scaling": self.score_scaling}

    def probabilities(self, scores, params):
        c = jnp.clip(params.attention_prob * params.score_scaling * jnp.exp(scores), 0.0, 1.0)
        survive = jnp.cumprod(1.0 - c)  # P(no click in positions 0..i)
        before = jnp.concatenate([jnp.ones((1,), c.dtype), survive[:-1]])
        return jnp.append(c * before, survive[-1])

    def check_scores_bound(self, max_abs_score, name):
        if self.score_scaling * math.exp(max_abs_score) > 1.0 + 1e-6:
            raise ConfigError(
                f"ExponentialCascade.score_scaling={self.score_scaling} times exp({max_abs_score}) "
                f"exceeds 1 ({name}), so it is not a click probability; expected "
                f"score_scaling <= {math.exp(-max_abs_score):.4f}.")


__all__ = ["ChoiceModel", "ExponentialCascade", "MultinomialLogit", "MultinomialProportional"]
