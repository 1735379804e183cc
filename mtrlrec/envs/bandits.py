r"""K-armed bandits: stationary, non-stationary, two-objective, and task distributions.

All environments here are never-ending (``episodic = False``); they report the
per-step pseudo-regret in ``info['regret']``, so the loop's
``cumulative_regret`` is the pseudo-regret (Lattimore & Szepesvári 2020, §4.5)

.. math:: \bar R_T = \sum_{t=1}^{T} (\mu^*_t - \mu_{A_t}),

and ``info['optimal_action']`` (1 when :math:`\mu_{A_t} = \mu^*_t`), whose window
mean is the fraction of optimal pulls.

* :class:`BernoulliBandit`: :math:`r_t \sim \mathrm{Bernoulli}(\mu_{A_t})`.
* :class:`GaussianBandit`: :math:`r_t \sim \mathcal N(\mu_{A_t}, \sigma^2)`
  (Sutton & Barto 2018, §2.3, the 10-armed testbed when the means are drawn
  from :math:`\mathcal N(0, 1)` per task).
* :class:`DriftingBandit`: means follow independent Gaussian random walks,
  :math:`\mu_{t+1} = \mu_t + \mathcal N(0, \sigma_d^2)` (Sutton & Barto 2018,
  Exercise 2.5), clipped to [0, 1] for Bernoulli rewards.
* :class:`SwitchingBandit`: piecewise-stationary; at every step, with
  probability :math:`h` (the hazard rate), all means are redrawn from
  Uniform[0, 1] (Garivier & Moulines 2011, §2 "abruptly changing").
* :class:`ClickConversionBandit`: two-objective arms; a click
  :math:`c \sim \mathrm{Bernoulli}(p_a)` and, given a click, a conversion
  :math:`v \sim \mathrm{Bernoulli}(q_a)`; the reward is the vector ``[c, v]``.
* :class:`BanditTaskDistribution`: draws the arm means of a batch of tasks
  (Uniform, Beta or Normal) as a ``BanditParams`` with a leading task axis,
  for ``loop.run(..., env_params_per_seed=True)`` and meta-RL.

Arm means live in the params (or, when they move, the state) so a batch of
tasks is a ``vmap`` over params.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core import rng
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.core.reductions import max_last
from mtrlrec.core.spaces import Box, Discrete


@flax.struct.dataclass
class BanditParams:
    means: jax.Array  # [K] expected reward of each arm


@flax.struct.dataclass
class BanditState:
    t: jax.Array  # steps taken


def _regret_info(means: jax.Array, action: jax.Array) -> dict[str, jax.Array]:
    mu = means[action]
    best = max_last(means)
    return {"regret": best - mu, "optimal_action": (mu >= best).astype(jnp.float32)}


def _check_means(name: str, means, num_arms: int, low=None, high=None) -> None:
    """Host-side check of concrete ``means`` (any leading batch axes)."""
    m = np.asarray(means)
    if m.ndim == 0 or m.shape[-1] != num_arms:
        raise ConfigError(f"{name} has shape {m.shape}, expected [..., {num_arms}] (one per arm).")
    if not np.all(np.isfinite(m)):
        raise ConfigError(f"{name} must be finite numbers, got {m}.")
    if low is not None and np.any(m < low) or high is not None and np.any(m > high):
        raise ConfigError(f"{name} must lie in [{low}, {high}], got {m}.")


class _ContextFreeBandit(Environment):
    """Never-ending K-armed bandits without context: a constant observation.

    ``episodic = False`` makes ``Environment.step`` skip the auto-reset (and
    its key split) entirely.
    """

    episodic = False
    num_arms: int

    def observation_spec(self, params=None):
        return Box(0.0, 0.0, ())

    def action_spec(self, params=None):
        return Discrete(self.num_arms)

    def reset_env(self, key, params):
        return jnp.zeros((), jnp.float32), BanditState(t=jnp.int32(0))


class _StationaryBandit(_ContextFreeBandit):
    """Shared code of stationary K-armed bandits with means in ``BanditParams``."""

    cumulative_metrics = ("regret", "reward")
    _low: float | None = None
    _high: float | None = None

    def default_params(self) -> BanditParams:
        return BanditParams(means=jnp.asarray(self.means, jnp.float32))

    def check_params(self, params: BanditParams) -> None:
        _check_means(f"{self.name}.means", params.means, self.num_arms, self._low, self._high)

    def sample_reward(self, key, mean):
        raise NotImplementedError

    def step_env(self, key, state, action, params):
        reward = self.sample_reward(key, params.means[action])
        info = _regret_info(params.means, action)
        obs = jnp.zeros((), jnp.float32)
        false = jnp.bool_(False)
        return obs, BanditState(t=state.t + 1), reward, false, false, info


@gin.configurable
class BernoulliBandit(_StationaryBandit):
    """K arms with Bernoulli rewards of means ``means``.

    Args:
      num_arms: K >= 2.
      means: K arm means in [0, 1]; default ``linspace(0.1, 0.9, K)``, or the
        Chapelle & Li (2011, §3) problem when ``gap`` is given.
      gap: if set (and ``means`` is not), the last arm has mean ``best_mean``
        and the K - 1 others ``best_mean - gap`` (the best arm is last so that
        agents whose argmax prefers low indices get no free advantage).
      best_mean: mean of the best arm for ``gap`` (default 0.5).
    """

    _low, _high = 0.0, 1.0

    def __init__(
        self,
        num_arms: int = 10,
        means: Sequence[float] | None = None,
        gap: float | None = None,
        best_mean: float = 0.5,
    ):
        self.num_arms = check_int("BernoulliBandit.num_arms", num_arms, min_value=2)
        if means is None and gap is not None:
            best = check_float("BernoulliBandit.best_mean", best_mean, low=0.0, high=1.0)
            gap = check_float("BernoulliBandit.gap", gap, low=0.0, high=best)
            means = [best - gap] * (self.num_arms - 1) + [best]
        elif means is None:
            means = np.linspace(0.1, 0.9, self.num_arms).tolist()
        self.means = check_floats(
            "BernoulliBandit.means", means, length=self.num_arms, low=0.0, high=1.0
        )

    def check_params(self, params: BanditParams) -> None:
        _check_means("BernoulliBandit.means", params.means, self.num_arms, 0.0, 1.0)

    def sample_reward(self, key, mean):
        # u < mu with u ~ U[0, 1): one 32-bit word per pull (rng.uniform is
        # jax.random.uniform, bit for bit, with Threefry fused into the step).
        return (rng.uniform(key) < mean).astype(jnp.float32)


@gin.configurable
class GaussianBandit(_StationaryBandit):
    """K arms with rewards :math:`\\mathcal N(\\mu_a, \\sigma^2)`.

    Args:
      num_arms: K >= 2.
      means: K arm means; default zeros (tasks usually come from
        :class:`BanditTaskDistribution`, e.g. the 10-armed testbed).
      noise_std: reward standard deviation σ >= 0 (Sutton & Barto: 1).
    """

    def __init__(self, num_arms: int = 10, means: Sequence[float] | None = None,
                 noise_std: float = 1.0):
        self.num_arms = check_int("GaussianBandit.num_arms", num_arms, min_value=2)
        if means is None:
            means = [0.0] * self.num_arms
        self.means = check_floats("GaussianBandit.means", means, length=self.num_arms)
        self.noise_std = check_float("GaussianBandit.noise_std", noise_std, low=0.0)

    def check_params(self, params: BanditParams) -> None:
        _check_means("GaussianBandit.means", params.means, self.num_arms)

    def sample_reward(self, key, mean):
        return mean + self.noise_std * jax.random.normal(key, (), jnp.float32)


@flax.struct.dataclass
class MovingBanditState:
    t: jax.Array
    means: jax.Array  # [K] current arm means


class _MovingBandit(Environment):
    """Shared code of non-stationary bandits whose means live in the state."""

    episodic = False
    cumulative_metrics = ("regret", "reward")

    def _init_common(self, prefix, num_arms, means, reward_type):
        self.num_arms = check_int(f"{prefix}.num_arms", num_arms, min_value=2)
        if reward_type not in ("bernoulli", "gaussian"):
            raise ConfigError(
                f"{prefix}.reward_type must be 'bernoulli' or 'gaussian', got {reward_type!r}."
            )
        self.reward_type = reward_type
        bounded = reward_type == "bernoulli"
        if means is None:
            means = [0.5] * self.num_arms if bounded else [0.0] * self.num_arms
        self.means = check_floats(
            f"{prefix}.means", means, length=self.num_arms,
            low=0.0 if bounded else None, high=1.0 if bounded else None,
        )

    def default_params(self) -> BanditParams:
        return BanditParams(means=jnp.asarray(self.means, jnp.float32))

    def check_params(self, params: BanditParams) -> None:
        b = self.reward_type == "bernoulli"
        _check_means(f"{self.name}.means", params.means, self.num_arms,
                     0.0 if b else None, 1.0 if b else None)

    def observation_spec(self, params=None):
        return Box(0.0, 0.0, ())

    def action_spec(self, params=None):
        return Discrete(self.num_arms)

    def reset_env(self, key, params):
        return jnp.zeros((), jnp.float32), MovingBanditState(jnp.int32(0), params.means)

    def _reward(self, key, mean):
        if self.reward_type == "bernoulli":
            return (rng.uniform(key) < mean).astype(jnp.float32)
        return mean + self.noise_std * jax.random.normal(key, (), jnp.float32)

    def _move(self, key, means):
        raise NotImplementedError

    def step_env(self, key, state, action, params):
        k_r, k_m = jax.random.split(key)
        reward = self._reward(k_r, state.means[action])
        info = _regret_info(state.means, action)
        new = MovingBanditState(state.t + 1, self._move(k_m, state.means))
        false = jnp.bool_(False)
        return jnp.zeros((), jnp.float32), new, reward, false, false, info


@gin.configurable
class DriftingBandit(_MovingBandit):
    """Means follow independent Gaussian random walks (Sutton & Barto 2018, Ex. 2.5).

    :math:`\\mu_{t+1,a} = \\mu_{t,a} + \\mathcal N(0, \\sigma_d^2)`, clipped to
    [0, 1] for Bernoulli rewards.

    Args:
      num_arms: K >= 2.
      means: initial means (default all 0.5 for Bernoulli, 0 for Gaussian).
      drift_std: σ_d >= 0 (the book uses 0.01).
      reward_type: 'bernoulli' or 'gaussian'.
      noise_std: reward noise σ for Gaussian rewards.
    """

    def __init__(self, num_arms: int = 10, means: Sequence[float] | None = None,
                 drift_std: float = 0.01, reward_type: str = "gaussian",
                 noise_std: float = 1.0):
        self._init_common("DriftingBandit", num_arms, means, reward_type)
        self.drift_std = check_float("DriftingBandit.drift_std", drift_std, low=0.0)
        self.noise_std = check_float("DriftingBandit.noise_std", noise_std, low=0.0)

    def _move(self, key, means):
        new = means + self.drift_std * jax.random.normal(key, means.shape, jnp.float32)
        if self.reward_type == "bernoulli":
            new = jnp.clip(new, 0.0, 1.0)
        return new


@gin.configurable
class SwitchingBandit(_MovingBandit):
    """Piecewise-stationary arms: all means are redrawn at rate ``hazard``.

    With probability ``hazard`` per step the means are redrawn i.i.d. from
    Uniform[low, high] (Garivier & Moulines 2011, §2); otherwise they stay.

    Args:
      num_arms: K >= 2.
      means: means before the first switch.
      hazard: switch probability per step, in [0, 1].
      low, high: range of redrawn means (within [0, 1] for Bernoulli rewards).
      reward_type: 'bernoulli' or 'gaussian'.
      noise_std: reward noise σ for Gaussian rewards.
    """

    def __init__(self, num_arms: int = 10, means: Sequence[float] | None = None,
                 hazard: float = 1e-3, low: float = 0.0, high: float = 1.0,
                 reward_type: str = "bernoulli", noise_std: float = 1.0):
        self._init_common("SwitchingBandit", num_arms, means, reward_type)
        self.hazard = check_float("SwitchingBandit.hazard", hazard, low=0.0, high=1.0)
        b = reward_type == "bernoulli"
        self.low = check_float("SwitchingBandit.low", low, low=0.0 if b else None)
        self.high = check_float("SwitchingBandit.high", high, low=self.low,
                                high=1.0 if b else None)
        self.noise_std = check_float("SwitchingBandit.noise_std", noise_std, low=0.0)

    def _move(self, key, means):
        k_s, k_m = jax.random.split(key)
        switch = jax.random.uniform(k_s) < self.hazard
        fresh = jax.random.uniform(k_m, means.shape, jnp.float32, self.low, self.high)
        return jnp.where(switch, fresh, means)

    def step_env(self, key, state, action, params):
        obs, new, reward, term, trunc, info = super().step_env(key, state, action, params)
        info["switched"] = jnp.any(new.means != state.means).astype(jnp.float32)
        return obs, new, reward, term, trunc, info


@flax.struct.dataclass
class ClickConversionParams:
    click: jax.Array       # [K] click probability p_a
    conversion: jax.Array  # [K] conversion probability given a click q_a


@gin.configurable
class ClickConversionBandit(_ContextFreeBandit):
    """Two-objective arms: click, then conversion given the click.

    :math:`c \\sim \\mathrm{Bernoulli}(p_a)`, :math:`v \\mid c \\sim
    \\mathrm{Bernoulli}(c\\, q_a)`; reward vector ``[c, v]`` named
    ``('click', 'conversion')``. Regret is measured on the scalarised expected
    reward :math:`w_c p_a + w_v p_a q_a` with ``regret_weights`` (the agent
    sees the vector; wrap with ``ScalarizeReward`` to give it a scalar).

    Args:
      num_arms: K >= 2.
      click: K click probabilities in [0, 1].
      conversion: K conversion-given-click probabilities in [0, 1].
      regret_weights: (w_c, w_v) >= 0 used for ``info['regret']``.
    """

    reward_names = ("click", "conversion")
    cumulative_metrics = ("regret",)

    def __init__(self, num_arms: int = 5, click: Sequence[float] | None = None,
                 conversion: Sequence[float] | None = None,
                 regret_weights: Sequence[float] = (1.0, 1.0)):
        self.num_arms = check_int("ClickConversionBandit.num_arms", num_arms, min_value=2)
        if click is None:
            click = np.linspace(0.02, 0.1, self.num_arms).tolist()
        if conversion is None:
            conversion = np.linspace(0.3, 0.05, self.num_arms).tolist()
        self.click = check_floats("ClickConversionBandit.click", click,
                                  length=self.num_arms, low=0.0, high=1.0)
        self.conversion = check_floats("ClickConversionBandit.conversion", conversion,
                                       length=self.num_arms, low=0.0, high=1.0)
        self.regret_weights = check_floats("ClickConversionBandit.regret_weights",
                                           regret_weights, length=2, low=0.0)

    def default_params(self):
        return ClickConversionParams(jnp.asarray(self.click, jnp.float32),
                                     jnp.asarray(self.conversion, jnp.float32))

    def check_params(self, params):
        _check_means("ClickConversionBandit.click", params.click, self.num_arms, 0.0, 1.0)
        _check_means("ClickConversionBandit.conversion", params.conversion, self.num_arms,
                     0.0, 1.0)

    def step_env(self, key, state, action, params):
        u = jax.random.uniform(key, (2,))
        click = u[0] < params.click[action]
        conv = click & (u[1] < params.conversion[action])
        reward = jnp.stack([click, conv]).astype(jnp.float32)
        wc, wv = self.regret_weights
        value = wc * params.click + wv * params.click * params.conversion
        info = _regret_info(value, action)
        false = jnp.bool_(False)
        return jnp.zeros((), jnp.float32), BanditState(state.t + 1), reward, false, false, info


@gin.configurable
class BanditTaskDistribution:
    """A distribution over K-armed bandit tasks (arm means), for batches of tasks.

    ``sample(key, num_tasks)`` returns ``BanditParams(means=[num_tasks, K])``:

    * ``'uniform'``: :math:`\\mu_a \\sim U[a, b]` (default U[0, 1]);
    * ``'beta'``: :math:`\\mu_a \\sim \\mathrm{Beta}(a, b)`;
    * ``'normal'``: :math:`\\mu_a \\sim \\mathcal N(a, b^2)` (the 10-armed testbed
      of Sutton & Barto 2018, §2.3, is ``'normal'`` with a=0, b=1).

    Args:
      num_arms: K >= 2.
      kind: 'uniform', 'beta' or 'normal'.
      a, b: the distribution's two parameters (see above).
    """

    def __init__(self, num_arms: int = 10, kind: str = "uniform", a: float = 0.0,
                 b: float = 1.0):
        self.num_arms = check_int("BanditTaskDistribution.num_arms", num_arms, min_value=2)
        if kind not in ("uniform", "beta", "normal"):
            raise ConfigError(
                f"BanditTaskDistribution.kind must be 'uniform', 'beta' or 'normal', got {kind!r}."
            )
        self.kind = kind
        if kind == "beta":
            a = check_float("BanditTaskDistribution.a", a, low=0.0, low_open=True)
            b = check_float("BanditTaskDistribution.b", b, low=0.0, low_open=True)
        elif kind == "normal":
            a = check_float("BanditTaskDistribution.a", a)
            b = check_float("BanditTaskDistribution.b", b, low=0.0)
        else:
            a = check_float("BanditTaskDistribution.a", a)
            b = check_float("BanditTaskDistribution.b", b, low=a)
        self.a, self.b = a, b

    def sample(self, key: jax.Array, num_tasks: int) -> BanditParams:
        """Means of ``num_tasks`` tasks: ``BanditParams(means=[num_tasks, K])``."""
        shape = (int(num_tasks), self.num_arms)
        if self.kind == "uniform":
            m = jax.random.uniform(key, shape, jnp.float32, self.a, self.b)
        elif self.kind == "beta":
            m = jax.random.beta(key, self.a, self.b, shape, jnp.float32)
        else:
            m = self.a + self.b * jax.random.normal(key, shape, jnp.float32)
        return BanditParams(means=m)
