r"""Populations of users (or markets) whose preferences share structure: cold-start tasks.

A fixed catalogue of :math:`K` items has features :math:`x_i \in \mathbb R^d`,
offsets :math:`b_i` and values :math:`v_i`. Each task (a new user, or a new
market) draws a preference vector

.. math:: u = \mu + \sigma \odot \varepsilon, \qquad \varepsilon \sim N(0, I_d),

shared structure (:math:`\mu`: what the population likes on average) plus
individual taste (:math:`\sigma`). Showing item :math:`i` gives a click (a sale)
with probability :math:`p_i(u) = \mathrm{sigmoid}(u^\top x_i + b_i)` and the
reward :math:`r = v_i \cdot \mathrm{click}` (:math:`v_i = 1`: CTR;
:math:`v_i` = the effective price: revenue).

* :class:`UserPopulation`: a content catalogue, :math:`x_i \sim N(0, I_d / d)`,
  :math:`\mu` of norm ``mean_norm`` in a random direction, :math:`b_i = ` ``bias``,
  :math:`v_i = 1` (reward = click; cumulative CTR).
* :class:`AdPopulation`: ads with a click and a conversion (two rewards, a
  configurable scalarisation), click and conversion preferences drawn per user.
* :class:`MarketPopulation`: the logistic demand of
  :class:`mtrlrec.envs.pricing.DynamicPricing` with a population over markets:
  arms are (price, discount) pairs, :math:`x_a = [1, -\tilde p_a, [d_a > 0]]`,
  :math:`u = (\alpha, \beta, \gamma)` (willingness to pay, price elasticity,
  promotion uplift) drawn per market, :math:`v_a = \tilde p_a` (revenue).

Use as the task distribution of :class:`~mtrlrec.core.wrappers.Trials`
(``Trials.sampler = %ENV``: the env's :meth:`sample` draws users), one trial per
user. ``info`` reports ``click``, the expected ``regret``
:math:`\max_j v_j p_j(u) - v_a p_a(u)` and ``first<H>`` = :math:`r\,[t < H]`
for each horizon H in ``horizons`` (t = interactions with this user so far), so
the sum of ``first<H>`` over a user's steps divided by H is the cumulative CTR
(revenue per step) over the user's first H interactions
(:func:`mtrlrec.runners.cold_start.cold_start_summary`).

Observation: a constant ``[1.]`` (``observation='constant'``: a cold-start user
brings no features) or the catalogue's features flattened, ``[K·d]``
(``'items'``: for learners with an item encoder, :mod:`mtrlrec.agents.meta`).
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
class UserParams:
    u: jax.Array  # [d] the user's (market's) preference vector


@flax.struct.dataclass
class PopulationState:
    t: jax.Array  # interactions with this user so far


class _Population(Environment):
    """The shared model (module docstring); subclasses build the catalogue."""

    episodic = False
    cumulative_metrics = ("regret",)

    def _setup(self, owner: str, features: np.ndarray, item_bias: np.ndarray,
               values: np.ndarray, mean: np.ndarray, std: np.ndarray, observation: str,
               horizons: Sequence[int]):
        if observation not in ("constant", "items"):
            raise ConfigError(f"{owner}.observation must be 'constant' or 'items', got "
                              f"{observation!r}.")
        hs = [check_int(f"{owner}.horizons[{i}]", h, min_value=1) for i, h in enumerate(horizons)]
        if not hs or sorted(set(hs)) != hs:
            raise ConfigError(f"{owner}.horizons must be increasing integers >= 1, got "
                              f"{list(horizons)!r}.")
        if np.any(~np.isfinite(std)) or np.any(std < 0):
            raise ConfigError(f"{owner}: the population's standard deviations must be finite "
                              f"and >= 0, got {std.tolist()}.")
        self.observation = observation
        self.horizons = tuple(hs)
        self.features = np.asarray(features, np.float32)        # [K, d]
        self.item_bias = np.asarray(item_bias, np.float32)      # [K]
        self.values = np.asarray(values, np.float32)            # [K]
        self.mean = np.asarray(mean, np.float32)                # [d]
        self.std = np.asarray(std, np.float32)                  # [d]
        self.num_arms = int(self.features.shape[0])
        self.dim = int(self.features.shape[1])

    # -- the task distribution -------------------------------------------------------
    def sample(self, key: jax.Array, num_tasks: int) -> UserParams:
        """``num_tasks`` users: ``UserParams(u=[num_tasks, d])``, :math:`u = \\mu + \\sigma\\varepsilon`."""
        eps = jax.random.normal(key, (int(num_tasks), self.dim), jnp.float32)
        return UserParams(jnp.asarray(self.mean) + jnp.asarray(self.std) * eps)

    def default_params(self) -> UserParams:
        return UserParams(jnp.asarray(self.mean))

    def check_params(self, params: UserParams) -> None:
        u = np.asarray(params.u)
        if u.shape[-1] != self.dim or not np.all(np.isfinite(u)):
            raise ConfigError(f"{self.name}: a user is a finite vector of {self.dim} "
                              f"preferences, got shape {u.shape}.")

    # -- the model -------------------------------------------------------------------
    def click_probs(self, params: UserParams) -> jax.Array:
        """:math:`p_i(u)` ``[K]``."""
        return jax.nn.sigmoid(jnp.asarray(self.features) @ params.u + jnp.asarray(self.item_bias))

    def expected_rewards(self, params: UserParams) -> jax.Array:
        """:math:`v_i p_i(u)` ``[K]``."""
        return jnp.asarray(self.values) * self.click_probs(params)

    def observation_spec(self, params=None):
        if self.observation == "constant":
            return Box(0.0, 1.0, (1,))
        return Box(-jnp.inf, jnp.inf, (self.num_arms * self.dim,))

    def action_spec(self, params=None):
        return Discrete(self.num_arms)

    def _obs(self):
        if self.observation == "constant":
            return jnp.ones((1,), jnp.float32)
        return jnp.asarray(self.features).reshape(-1)

    def reset_env(self, key, params):
        return self._obs(), PopulationState(jnp.int32(0))

    def step_env(self, key, state, action, params):
        p = self.click_probs(params)
        click = (jax.random.uniform(key) < p[action]).astype(jnp.float32)
        reward = jnp.asarray(self.values)[action] * click
        exp = jnp.asarray(self.values) * p
        info = {"click": click, "regret": jnp.max(exp) - exp[action]}
        for h in self.horizons:
            info[f"first{h}"] = reward * (state.t < h).astype(jnp.float32)
        false = jnp.bool_(False)
        return self._obs(), PopulationState(state.t + 1), reward, false, false, info


@gin.configurable
class UserPopulation(_Population):
    """Users over a content catalogue; reward = click (module docstring).

    Args:
      num_items: catalogue size K >= 2.
      dim: feature dimension d >= 1.
      mean_norm: :math:`\\|\\mu\\|` >= 0, the shared taste (0: none).
      user_std: :math:`\\sigma` >= 0, individual taste (the same in every direction).
      bias: item offset :math:`b_i` (the CTR of an indifferent user is sigmoid(bias)).
      catalogue_seed: seed of the item features and of the direction of μ.
      observation: 'constant' or 'items'.
      horizons: the H of the ``first<H>`` info entries.
    """

    def __init__(self, num_items: int = 50, dim: int = 8, mean_norm: float = 1.5,
                 user_std: float = 1.5, bias: float = -3.0, catalogue_seed: int = 0,
                 observation: str = "constant", horizons: Sequence[int] = (10, 50, 200)):
        k = check_int("UserPopulation.num_items", num_items, min_value=2)
        d = check_int("UserPopulation.dim", dim, min_value=1)
        m = check_float("UserPopulation.mean_norm", mean_norm, low=0.0)
        s = check_float("UserPopulation.user_std", user_std, low=0.0)
        b = check_float("UserPopulation.bias", bias)
        rng = np.random.default_rng(check_int("UserPopulation.catalogue_seed", catalogue_seed,
                                              min_value=0))
        x = rng.normal(size=(k, d)) / np.sqrt(d)
        direction = rng.normal(size=d)
        mu = m * direction / np.linalg.norm(direction)
        self._setup("UserPopulation", x, np.full(k, b), np.ones(k), mu, np.full(d, s),
                    observation, horizons)


@gin.configurable
class MarketPopulation(_Population):
    """Markets with logistic demand; reward = revenue (module docstring).

    Args:
      prices: list prices :math:`p_i` > 0.
      discounts: discount levels :math:`d_j` in [0, 1).
      mean: :math:`\\mu = (\\alpha, \\beta, \\gamma)`, the average market.
      std: :math:`\\sigma` per component, >= 0.
      observation: 'constant' or 'items'.
      horizons: the H of the ``first<H>`` info entries.
    """

    def __init__(self, prices: Sequence[float] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0),
                 discounts: Sequence[float] = (0.0, 0.2),
                 mean: Sequence[float] = (3.0, 0.8, 0.3),
                 std: Sequence[float] = (1.0, 0.25, 0.2),
                 observation: str = "constant", horizons: Sequence[int] = (10, 50, 200)):
        p = np.asarray(check_floats("MarketPopulation.prices", prices, low=0.0), np.float64)
        if np.any(p <= 0):
            raise ConfigError(f"MarketPopulation.prices must be > 0, got {p.tolist()}.")
        dsc = np.asarray(check_floats("MarketPopulation.discounts", discounts, low=0.0, high=1.0))
        if np.any(dsc >= 1):
            raise ConfigError(f"MarketPopulation.discounts must be < 1, got {dsc.tolist()}.")
        mu = np.asarray(check_floats("MarketPopulation.mean", mean, length=3))
        sd = np.asarray(check_floats("MarketPopulation.std", std, length=3, low=0.0))
        eff = (p[:, None] * (1.0 - dsc[None, :])).reshape(-1)       # arm a = i J + j
        promo = np.broadcast_to((dsc > 0)[None, :], (p.size, dsc.size)).reshape(-1)
        x = np.stack([np.ones_like(eff), -eff, promo.astype(np.float64)], -1)
        self.prices, self.discounts = p, dsc
        self._setup("MarketPopulation", x, np.zeros(eff.size), eff, mu, sd, observation,
                    horizons)


@flax.struct.dataclass
class AdUserParams:
    u: jax.Array  # [d] the user's click preferences
    w: jax.Array  # [d] the user's conversion preferences


@gin.configurable
class AdPopulation(_Population):
    """Ads with a click, then possibly a conversion (:mod:`mtrlrec.envs.ads`), over a population.

    Ad :math:`a` has click features :math:`e_a` and conversion features
    :math:`f_a` (:math:`N(0, I_d/d)`) and offsets :math:`b^c, b^v`; a user draws
    click and conversion preferences :math:`u = \mu_c + \sigma\varepsilon`,
    :math:`w = \mu_v + \sigma\varepsilon'` and clicks with
    :math:`\mathrm{sigmoid}(u^\top e_a + b^c)`, then converts with
    :math:`\mathrm{sigmoid}(w^\top f_a + b^v)`. The reward is the vector
    ``(click, conversion)`` (scalarise it with ``@ScalarizeReward``);
    ``first<H>`` and ``regret`` are for the objective
    :math:`w_c\,\mathrm{click} + w_v\,\mathrm{conversion}` with ``weights``.
    By default the click offsets rise and the conversion offsets fall with the ad
    index (click-bait ads, as in :class:`~mtrlrec.envs.ads.AdsEnv`'s default).

    Args:
      num_ads: A >= 2.
      dim: d >= 1.
      mean_norm: :math:`\|\mu_c\| = \|\mu_v\|` >= 0.
      user_std: σ >= 0.
      click_bias: (low, high) of the click offsets, rising with the ad index.
      conversion_bias: (high, low) of the conversion offsets, falling with it.
      weights: (w_c, w_v) of the objective reported in ``first<H>`` and ``regret``.
      catalogue_seed: seed of the ad features and of the directions of μ.
      observation: 'constant' or 'items' (``[e_a, f_a]`` per ad).
      horizons: the H of the ``first<H>`` info entries.
    """

    reward_names = ("click", "conversion")

    def __init__(self, num_ads: int = 20, dim: int = 8, mean_norm: float = 1.5,
                 user_std: float = 1.0, click_bias: Sequence[float] = (-3.0, -1.5),
                 conversion_bias: Sequence[float] = (0.0, -3.0),
                 weights: Sequence[float] = (1.0, 5.0), catalogue_seed: int = 0,
                 observation: str = "constant", horizons: Sequence[int] = (10, 50, 200)):
        k = check_int("AdPopulation.num_ads", num_ads, min_value=2)
        d = check_int("AdPopulation.dim", dim, min_value=1)
        m = check_float("AdPopulation.mean_norm", mean_norm, low=0.0)
        sd = check_float("AdPopulation.user_std", user_std, low=0.0)
        cb = check_floats("AdPopulation.click_bias", click_bias, length=2)
        vb = check_floats("AdPopulation.conversion_bias", conversion_bias, length=2)
        self.weights = np.asarray(check_floats("AdPopulation.weights", weights, length=2),
                                  np.float32)
        rng = np.random.default_rng(check_int("AdPopulation.catalogue_seed", catalogue_seed,
                                              min_value=0))
        e = rng.normal(size=(k, d)) / np.sqrt(d)
        f = rng.normal(size=(k, d)) / np.sqrt(d)
        dirs = rng.normal(size=(2, d))
        mu = m * dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        self.conv_features = f.astype(np.float32)
        self.conv_bias = np.linspace(vb[0], vb[1], k).astype(np.float32)
        self.conv_mean = mu[1].astype(np.float32)
        self._setup("AdPopulation", e, np.linspace(cb[0], cb[1], k), np.ones(k), mu[0],
                    np.full(d, sd), observation, horizons)

    def sample(self, key, num_tasks):
        k_u, k_w = jax.random.split(key)
        shape = (int(num_tasks), self.dim)
        std = jnp.asarray(self.std)
        return AdUserParams(jnp.asarray(self.mean) + std * jax.random.normal(k_u, shape),
                            jnp.asarray(self.conv_mean) + std * jax.random.normal(k_w, shape))

    def default_params(self):
        return AdUserParams(jnp.asarray(self.mean), jnp.asarray(self.conv_mean))

    def check_params(self, params) -> None:
        for name in ("u", "w"):
            v = np.asarray(getattr(params, name))
            if v.shape[-1] != self.dim or not np.all(np.isfinite(v)):
                raise ConfigError(f"AdPopulation: a user's {name} is a finite vector of "
                                  f"{self.dim}, got shape {v.shape}.")

    def conversion_probs(self, params) -> jax.Array:
        """:math:`\mathrm{sigmoid}(w^\top f_a + b^v_a)` ``[A]``."""
        return jax.nn.sigmoid(jnp.asarray(self.conv_features) @ params.w
                              + jnp.asarray(self.conv_bias))

    def expected_rewards(self, params) -> jax.Array:
        """:math:`w_c p^c_a + w_v p^c_a p^v_a` ``[A]``."""
        pc = self.click_probs(params)
        return pc * (self.weights[0] + self.weights[1] * self.conversion_probs(params))

    def observation_spec(self, params=None):
        if self.observation == "constant":
            return Box(0.0, 1.0, (1,))
        return Box(-jnp.inf, jnp.inf, (self.num_arms * 2 * self.dim,))

    def _obs(self):
        if self.observation == "constant":
            return jnp.ones((1,), jnp.float32)
        return jnp.concatenate([jnp.asarray(self.features),
                                jnp.asarray(self.conv_features)], -1).reshape(-1)

    def step_env(self, key, state, action, params):
        k_c, k_v = jax.random.split(key)
        click = (jax.random.uniform(k_c) < self.click_probs(params)[action]).astype(jnp.float32)
        conv = click * (jax.random.uniform(k_v) < self.conversion_probs(params)[action]
                        ).astype(jnp.float32)
        reward = jnp.stack([click, conv])
        objective = self.weights[0] * click + self.weights[1] * conv
        exp = self.expected_rewards(params)
        info = {"regret": jnp.max(exp) - exp[action], "objective": objective}
        for h in self.horizons:
            info[f"first{h}"] = objective * (state.t < h).astype(jnp.float32)
        false = jnp.bool_(False)
        return self._obs(), PopulationState(state.t + 1), reward, false, false, info


@gin.configurable
def population_prior_logits(env: Environment = gin.REQUIRED, kind: str = "log_mean",
                            num_users: int = 10_000, seed: int = 0) -> list[float]:
    """An expert's prior over the items: what the *average* user does.

    The expert knows the population-average expected reward of each item,
    :math:`m_i = E_u[v_i p_i(u)]` (Monte Carlo over ``num_users`` users drawn
    with ``seed``, a fixed stream apart from any run's), e.g. from historic
    logs. Returns ``log m_i`` (``kind='log_mean'``: softmax logits that serve
    items in proportion to :math:`m_i`) or the log-odds of the average click
    probability (``'log_odds'``: for :class:`mtrlrec.agents.initial.ExpertPrior`
    of a Beta-Bernoulli Thompson sampler).
    """
    if not isinstance(env, _Population):
        raise ConfigError(f"population_prior_logits.env must be a UserPopulation or "
                          f"MarketPopulation, got {env!r}.")
    if kind not in ("log_mean", "log_odds"):
        raise ConfigError(f"population_prior_logits.kind must be 'log_mean' or 'log_odds', "
                          f"got {kind!r}.")
    n = check_int("population_prior_logits.num_users", num_users, min_value=1)
    users = env.sample(jax.random.PRNGKey(seed), n)
    if kind == "log_odds":
        p = np.asarray(jax.vmap(env.click_probs)(users), np.float64).mean(0)
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p)).tolist()
    m = np.asarray(jax.vmap(env.expected_rewards)(users), np.float64).mean(0)
    return np.log(np.maximum(m, 1e-9)).tolist()


__all__ = ["AdPopulation", "AdUserParams", "MarketPopulation", "PopulationState", "UserParams", "UserPopulation",
           "population_prior_logits"]
