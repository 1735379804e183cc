r"""Ad placement: a click, then possibly a conversion.

Generative model
----------------
Each round a user with context :math:`x_t \sim N(0, I_d)` arrives; the agent
places one of :math:`A` ads. Ad :math:`a` has a click embedding
:math:`e_a \in \mathbb{R}^d` and a conversion embedding
:math:`f_a \in \mathbb{R}^d` (its feature vectors) and offsets
:math:`b^c_a, b^v_a`. The user clicks with probability

.. math:: p^c_a(x) = \mathrm{sigmoid}(e_a^\top x + b^c_a)

and, only after a click, converts with probability

.. math:: p^v_a(x) = \mathrm{sigmoid}(f_a^\top x + b^v_a).

The reward is the vector ``(click, conversion)`` with
:math:`\mathrm{conversion} = \mathrm{click} \cdot V`,
:math:`V \sim \mathrm{Bernoulli}(p^v_a(x))`. The business objective is the
configurable scalarisation :math:`w_c\,\mathrm{click} + w_v\,\mathrm{conversion}`
with expected value :math:`u_a(x) = w_c p^c_a + w_v p^c_a p^v_a`, and
``info['regret']`` is :math:`\max_a u_a(x_t) - u_{a_t}(x_t)` (exact
pseudo-regret for the weights ``Params.weights``).

By default the click offsets rise and the conversion offsets fall with the ad
index ("click-bait" ads click well but rarely convert), so a click-only
policy and a click+conversion policy choose different ads.

Metrics (window means / cumulative sums logged by the loop): ``click``
(CTR), ``conversion`` (conversions per impression); the conversion rate
CVR = conversions / clicks is formed from the cumulative sums by
:func:`mtrlrec.runners.summaries.ads_summary`.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.core.spaces import Box, Discrete


@flax.struct.dataclass
class AdsParams:
    click_emb: jax.Array  # [A, d] e_a
    click_bias: jax.Array  # [A] b^c_a
    conv_emb: jax.Array  # [A, d] f_a
    conv_bias: jax.Array  # [A] b^v_a
    weights: jax.Array  # [2] (w_click, w_conversion) of the objective


@flax.struct.dataclass
class AdsState:
    context: jax.Array  # [d]
    t: jax.Array


def ad_probabilities(x: jax.Array, params: AdsParams) -> tuple[jax.Array, jax.Array]:
    """Click and post-click conversion probabilities ``([A], [A])`` at context ``x`` ``[d]``."""
    pc = jax.nn.sigmoid(params.click_emb @ x + params.click_bias)
    pv = jax.nn.sigmoid(params.conv_emb @ x + params.conv_bias)
    return pc, pv


@gin.configurable
class AdPlacement(Environment):
    """Contextual ad placement with click and conversion (see module docstring).

    Args:
      num_ads: A >= 2.
      dim: context dimension d >= 1.
      weights: (w_click, w_conversion) of the objective used for regret.
      click_bias_range: click offsets of the first and last ad (linearly spaced).
      conversion_bias_range: conversion offsets of the first and last ad.
      embedding_scale: standard deviation of every embedding entry times sqrt(d).
      task_seed: seed of the ad embeddings.
    """

    episodic = False
    reward_names = ("click", "conversion")
    cumulative_metrics = ("regret", "click", "conversion", "expected_click",
                          "expected_conversion")

    def __init__(self, num_ads: int = 8, dim: int = 5, weights: Sequence[float] = (1.0, 0.0),
                 click_bias_range: Sequence[float] = (-3.0, -1.0),
                 conversion_bias_range: Sequence[float] = (0.5, -3.0),
                 embedding_scale: float = 1.0, task_seed: int = 0):
        n = "AdPlacement"
        self.num_ads = check_int(f"{n}.num_ads", num_ads, min_value=2)
        self.dim = check_int(f"{n}.dim", dim, min_value=1)
        self.weights = check_floats(f"{n}.weights", weights, length=2, low=0.0)
        if sum(self.weights) <= 0:
            raise ConfigError(f"{n}.weights must not all be 0, got {list(self.weights)}.")
        self.click_bias_range = check_floats(f"{n}.click_bias_range", click_bias_range,
                                             length=2)
        self.conversion_bias_range = check_floats(f"{n}.conversion_bias_range",
                                                  conversion_bias_range, length=2)
        self.embedding_scale = check_float(f"{n}.embedding_scale", embedding_scale, low=0.0)
        self.task_seed = check_int(f"{n}.task_seed", task_seed, min_value=0)

    def default_params(self) -> AdsParams:
        k1, k2 = jax.random.split(jax.random.PRNGKey(self.task_seed))
        s = self.embedding_scale / np.sqrt(self.dim)
        shape = (self.num_ads, self.dim)
        return AdsParams(
            click_emb=s * jax.random.normal(k1, shape, jnp.float32),
            click_bias=jnp.linspace(*self.click_bias_range, self.num_ads, dtype=jnp.float32),
            conv_emb=s * jax.random.normal(k2, shape, jnp.float32),
            conv_bias=jnp.linspace(*self.conversion_bias_range, self.num_ads,
                                   dtype=jnp.float32),
            weights=jnp.asarray(self.weights, jnp.float32),
        )

    def check_params(self, params: AdsParams) -> None:
        for name in ("click_emb", "conv_emb"):
            shape = np.asarray(getattr(params, name)).shape
            if shape != (self.num_ads, self.dim):
                raise ConfigError(
                    f"AdPlacement params.{name} has shape {shape}, expected (num_ads, dim) = "
                    f"({self.num_ads}, {self.dim}): context dimension mismatch.")
        if np.asarray(params.weights).shape != (2,) or (np.asarray(params.weights) < 0).any():
            raise ConfigError("AdPlacement.weights must be two numbers >= 0.")

    def observation_spec(self, params=None):
        return Box(-jnp.inf, jnp.inf, (self.dim,))

    def action_spec(self, params=None):
        return Discrete(self.num_ads)

    def expected_utility(self, x: jax.Array, params: AdsParams) -> jax.Array:
        """:math:`u_a(x) = w_c p^c_a + w_v p^c_a p^v_a` for every ad, ``[A]``."""
        pc, pv = ad_probabilities(x, params)
        return params.weights[0] * pc + params.weights[1] * pc * pv

    def reset_env(self, key, params):
        x = jax.random.normal(key, (self.dim,), jnp.float32)
        return x, AdsState(context=x, t=jnp.int32(0))

    def step_env(self, key, state, action, params):
        k_c, k_v, k_x = jax.random.split(key, 3)
        pc, pv = ad_probabilities(state.context, params)
        click = jax.random.bernoulli(k_c, pc[action]).astype(jnp.float32)
        conv = click * jax.random.bernoulli(k_v, pv[action]).astype(jnp.float32)
        u = params.weights[0] * pc + params.weights[1] * pc * pv
        best = jnp.max(u)
        info = {
            "regret": best - u[action],
            "optimal_action": (u[action] >= best).astype(jnp.float32),
            "click": click,
            "conversion": conv,
            "expected_click": pc[action],
            "expected_conversion": pc[action] * pv[action],
        }
        x = jax.random.normal(k_x, (self.dim,), jnp.float32)
        false = jnp.bool_(False)
        reward = jnp.stack([click, conv])
        return x, AdsState(context=x, t=state.t + 1), reward, false, false, info
