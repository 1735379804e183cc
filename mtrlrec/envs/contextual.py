r"""Contextual bandits: linear-Gaussian, logistic (click) and the wheel bandit.

Every environment here is a never-ending bandit (``episodic = False``). At
each round a context :math:`x_t \in \mathbb{R}^d` is drawn i.i.d. and shown as
the observation; the agent picks an arm :math:`a_t \in \{0..K-1\}` and
receives a reward whose mean :math:`\mu_{a}(x_t)` depends on the arm and the
context. ``info['regret']`` is the *pseudo-regret* of the round,

.. math:: \rho_t = \max_a \mu_a(x_t) - \mu_{a_t}(x_t),

so the loop's ``cumulative_regret`` is :math:`\sum_{s \le t} \rho_s` (the
expected regret given the contexts, without reward noise).
``info['optimal_action']`` is 1 when :math:`a_t` attains the maximum.

Models
------
* :class:`LinearGaussianBandit`: :math:`x \sim N(0, I_d)`,
  :math:`r = \theta_a^\top x + \sigma\varepsilon`, :math:`\varepsilon \sim N(0, 1)`.
* :class:`LogisticBandit`: :math:`x \sim N(0, I_d)`,
  :math:`r \sim \mathrm{Bernoulli}(\mathrm{sigmoid}(\theta_a^\top x + b_a))`
  (a click model, Chapelle & Li 2011 §4).
* :class:`WheelBandit` (Riquelme, Tucker & Snoek, ICLR 2018, "Deep Bayesian
  Bandits Showdown", §5 / Appendix "wheel bandit"): :math:`x` uniform in the
  unit disc, :math:`K = 5`. Arm 0 always pays :math:`N(\mu_1, \sigma^2)`,
  :math:`\mu_1 = 1.2`. If :math:`\|x\| \le \delta` every other arm pays
  :math:`N(\mu_2, \sigma^2)`, :math:`\mu_2 = 1.0`; otherwise the arm of
  :math:`x`'s quadrant pays :math:`N(\mu_3, \sigma^2)`, :math:`\mu_3 = 50`, and
  the other two-to-four arms :math:`N(\mu_2, \sigma^2)`; :math:`\sigma = 0.01`.
  Quadrant arms: 1 for :math:`(x_0>0, x_1>0)`, 2 for :math:`(x_0>0, x_1\le0)`,
  3 for :math:`(x_0\le0, x_1>0)`, 4 for :math:`(x_0\le0, x_1\le0)`.
  The probability of the outer region is :math:`1-\delta^2`, so as
  :math:`\delta \to 1` the informative contexts become rare.

  The expected regret of the uniform policy per round is exact:
  :math:`\delta^2(\mu_1 - \tfrac{\mu_1 + 4\mu_2}{5}) + (1-\delta^2)(\mu_3 -
  \tfrac{\mu_1 + 3\mu_2 + \mu_3}{5})` (:func:`wheel_uniform_regret`), which
  :func:`mtrlrec.runners.summaries.wheel_summary` uses to normalise regrets.

Parameters that vary per task (weights, :math:`\delta`, noise) live in the
``Params`` pytrees so a batch of tasks or a sweep over :math:`\delta` is a
``vmap``.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.sampling import fast_normals
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.core.spaces import Box, Discrete


@flax.struct.dataclass
class ContextState:
    """State of a contextual bandit: the context shown to the agent."""

    context: jax.Array  # [d]
    t: jax.Array  # rounds played


def _regret_info(means: jax.Array, action: jax.Array) -> dict[str, jax.Array]:
    """Pseudo-regret and optimality of ``action`` given arm means ``[K]``."""
    best = jnp.max(means)
    mu = means[action]
    return {
        "regret": best - mu,
        "optimal_action": (mu >= best).astype(jnp.float32),
    }


# --------------------------------------------------------------------------
# Linear-Gaussian and logistic bandits
# --------------------------------------------------------------------------


@flax.struct.dataclass
class LinearBanditParams:
    theta: jax.Array  # [K, d] arm weight vectors
    bias: jax.Array  # [K] arm offsets
    noise_std: jax.Array  # [] reward noise σ (Gaussian only)


def _default_theta(task_seed: int, num_arms: int, dim: int) -> jax.Array:
    """Task weights :math:`\\theta_a \\sim N(0, I_d / d)` from a fixed seed."""
    key = jax.random.PRNGKey(task_seed)
    return jax.random.normal(key, (num_arms, dim), jnp.float32) / np.sqrt(dim)


class _LinearFamily(Environment):
    """Shared code of the linear-Gaussian and logistic bandits."""

    episodic = False
    cumulative_metrics = ("regret", "reward")
    _gin_name = "LinearGaussianBandit"

    def __init__(self, dim: int, num_arms: int, noise_std: float, task_seed: int):
        n = self._gin_name
        self.dim = check_int(f"{n}.dim", dim, min_value=1)
        self.num_arms = check_int(f"{n}.num_arms", num_arms, min_value=2)
        self.noise_std = check_float(f"{n}.noise_std", noise_std, low=0.0, low_open=True)
        self.task_seed = check_int(f"{n}.task_seed", task_seed, min_value=0)

    def default_params(self) -> LinearBanditParams:
        return LinearBanditParams(
            theta=_default_theta(self.task_seed, self.num_arms, self.dim),
            bias=jnp.zeros(self.num_arms, jnp.float32),
            noise_std=jnp.float32(self.noise_std),
        )

    def check_params(self, params: LinearBanditParams) -> None:
        n = self._gin_name
        theta = np.asarray(params.theta)
        if theta.shape != (self.num_arms, self.dim):
            raise ConfigError(
                f"{n} params.theta has shape {theta.shape}, expected "
                f"(num_arms, dim) = ({self.num_arms}, {self.dim}): context dimension mismatch."
            )
        if np.asarray(params.bias).shape != (self.num_arms,):
            raise ConfigError(f"{n} params.bias must have shape ({self.num_arms},).")
        if not float(np.min(params.noise_std)) > 0:
            raise ConfigError(f"{n}.noise_std must be > 0, got {params.noise_std}.")

    def observation_spec(self, params=None):
        return Box(-jnp.inf, jnp.inf, (self.dim,))

    def action_spec(self, params=None):
        return Discrete(self.num_arms)

    def _context(self, key):
        return fast_normals(key, self.dim)

    def reset_env(self, key, params):
        x = self._context(key)
        return x, ContextState(context=x, t=jnp.int32(0))

    def mean_rewards(self, context: jax.Array, params: LinearBanditParams) -> jax.Array:
        """Expected reward of every arm, ``[K]``, for one context ``[d]``."""
        raise NotImplementedError

    def _sample(self, z, mean, params):
        """A reward of mean ``mean`` from one standard normal ``z``."""
        raise NotImplementedError

    def step_env(self, key, state, action, params):
        # one draw of d + 1 normals: the next context and the reward noise
        z = fast_normals(key, self.dim + 1)
        means = self.mean_rewards(state.context, params)
        reward = self._sample(z[self.dim], means[action], params)
        info = _regret_info(means, action)
        x = z[: self.dim]
        false = jnp.bool_(False)
        return x, ContextState(context=x, t=state.t + 1), reward, false, false, info


@gin.configurable
class LinearGaussianBandit(_LinearFamily):
    r"""Linear-Gaussian contextual bandit: :math:`r = \theta_a^\top x + b_a + \sigma\varepsilon`.

    Contexts :math:`x \sim N(0, I_d)`; default weights
    :math:`\theta_a \sim N(0, I_d/d)` drawn once from ``task_seed``.

    Args:
      dim: context dimension d >= 1.
      num_arms: K >= 2.
      noise_std: σ > 0.
      task_seed: seed of the default weights (vary it for other tasks).
    """

    _gin_name = "LinearGaussianBandit"

    def __init__(self, dim: int = 10, num_arms: int = 10, noise_std: float = 0.1,
                 task_seed: int = 0):
        super().__init__(dim, num_arms, noise_std, task_seed)

    def mean_rewards(self, context, params):
        return params.theta @ context + params.bias

    def _sample(self, z, mean, params):
        return mean + params.noise_std * z


@gin.configurable
class LogisticBandit(_LinearFamily):
    r"""Logistic (click) bandit: :math:`r \sim \mathrm{Bernoulli}(\sigma(\theta_a^\top x + b_a))`.

    Args:
      dim: context dimension d >= 1.
      num_arms: K >= 2.
      base_logit: offset :math:`b_a` of every arm (e.g. -2 for a CTR near 12 %).
      task_seed: seed of the default weights.
    """

    _gin_name = "LogisticBandit"

    def __init__(self, dim: int = 10, num_arms: int = 10, base_logit: float = -1.0,
                 task_seed: int = 0):
        super().__init__(dim, num_arms, 1.0, task_seed)
        self.base_logit = check_float("LogisticBandit.base_logit", base_logit)

    def default_params(self):
        p = super().default_params()
        return p.replace(bias=jnp.full(self.num_arms, self.base_logit, jnp.float32))

    def mean_rewards(self, context, params):
        return jax.nn.sigmoid(params.theta @ context + params.bias)

    def _sample(self, z, mean, params):
        # Bernoulli(mean) from the standard normal z: 1{Φ(z) < mean}
        return (jax.scipy.special.ndtr(z) < mean).astype(jnp.float32)


# --------------------------------------------------------------------------
# Wheel bandit
# --------------------------------------------------------------------------


@flax.struct.dataclass
class WheelParams:
    delta: jax.Array  # [] radius of the inner disc, in (0, 1)
    mu_1: jax.Array  # [] mean of arm 0 (always)
    mu_2: jax.Array  # [] mean of the other arms in the inner disc / wrong quadrant
    mu_3: jax.Array  # [] mean of the quadrant arm outside the inner disc
    std: jax.Array  # [] reward noise σ


def wheel_means(x: jax.Array, params: WheelParams) -> jax.Array:
    """Expected rewards ``[5]`` of the wheel bandit's arms at context ``x`` ``[2]``."""
    outside = jnp.sum(x * x) > params.delta**2
    quadrant = 1 + 2 * (x[0] <= 0).astype(jnp.int32) + (x[1] <= 0).astype(jnp.int32)
    arms = jnp.arange(5)
    other = jnp.where(outside & (arms == quadrant), params.mu_3, params.mu_2)
    return jnp.where(arms == 0, params.mu_1, other).astype(jnp.float32)


def wheel_uniform_regret(delta, mu_1=1.2, mu_2=1.0, mu_3=50.0):
    r"""Exact expected per-round regret of the uniform policy on the wheel bandit.

    :math:`\delta^2(\mu_1 - \bar\mu_{in}) + (1-\delta^2)(\mu_3 - \bar\mu_{out})`
    with :math:`\bar\mu_{in} = (\mu_1 + 4\mu_2)/5` and
    :math:`\bar\mu_{out} = (\mu_1 + 3\mu_2 + \mu_3)/5` (valid when
    :math:`\mu_3 > \mu_1 > \mu_2`). Works on floats and arrays.
    """
    inner = mu_1 - (mu_1 + 4 * mu_2) / 5
    outer = mu_3 - (mu_1 + 3 * mu_2 + mu_3) / 5
    d2 = np.asarray(delta, np.float64) ** 2
    return d2 * inner + (1 - d2) * outer


def check_wheel_delta(name: str, delta: Any) -> float:
    """Validates a wheel radius: a number strictly inside (0, 1)."""
    return check_float(name, delta, low=0.0, high=1.0, low_open=True, high_open=True)


@gin.configurable
class WheelBandit(Environment):
    r"""The wheel bandit of Riquelme, Tucker & Snoek (ICLR 2018).

    See the module docstring for the generative model. Contexts are uniform in
    the unit disc: :math:`x = \sqrt{u}\,(\cos\phi, \sin\phi)`,
    :math:`u \sim U(0,1)`, :math:`\phi \sim U(0, 2\pi)`.

    Args:
      delta: exploration parameter δ in (0, 1): radius of the inner disc.
      mu_1: mean of arm 0 (1.2).
      mu_2: mean of the other arms where they are not best (1.0).
      mu_3: mean of the quadrant arm outside the disc (50).
      std: reward noise σ > 0 (0.01).
    """

    episodic = False
    cumulative_metrics = ("regret", "reward")
    num_arms = 5
    dim = 2

    def __init__(self, delta: float = 0.5, mu_1: float = 1.2, mu_2: float = 1.0,
                 mu_3: float = 50.0, std: float = 0.01):
        self.delta = check_wheel_delta("WheelBandit.delta", delta)
        self.mu_1 = check_float("WheelBandit.mu_1", mu_1)
        self.mu_2 = check_float("WheelBandit.mu_2", mu_2)
        self.mu_3 = check_float("WheelBandit.mu_3", mu_3)
        self.std = check_float("WheelBandit.std", std, low=0.0, low_open=True)
        if not self.mu_3 > self.mu_1 > self.mu_2:
            raise ConfigError(
                "WheelBandit needs mu_3 > mu_1 > mu_2 (the outer quadrant arm best, arm 0 "
                f"best inside), got mu_1={self.mu_1}, mu_2={self.mu_2}, mu_3={self.mu_3}."
            )

    def default_params(self) -> WheelParams:
        f = jnp.float32
        return WheelParams(f(self.delta), f(self.mu_1), f(self.mu_2), f(self.mu_3), f(self.std))

    def check_params(self, params: WheelParams) -> None:
        for d in np.atleast_1d(np.asarray(params.delta)):
            check_wheel_delta("WheelBandit.delta", float(d))
        if not float(np.min(params.std)) > 0:
            raise ConfigError(f"WheelBandit.std must be > 0, got {params.std}.")

    def observation_spec(self, params=None):
        return Box(-1.0, 1.0, (2,))

    def action_spec(self, params=None):
        return Discrete(5)

    @staticmethod
    def _context(key):
        k_r, k_phi = jax.random.split(key)
        r = jnp.sqrt(jax.random.uniform(k_r, (), jnp.float32))
        phi = jax.random.uniform(k_phi, (), jnp.float32, 0.0, 2 * jnp.pi)
        return jnp.stack([r * jnp.cos(phi), r * jnp.sin(phi)])

    def mean_rewards(self, context, params):
        return wheel_means(context, params)

    def reset_env(self, key, params):
        x = self._context(key)
        return x, ContextState(context=x, t=jnp.int32(0))

    def step_env(self, key, state, action, params):
        k_r, k_x = jax.random.split(key)
        means = wheel_means(state.context, params)
        reward = means[action] + params.std * jax.random.normal(k_r, (), jnp.float32)
        info = _regret_info(means, action)
        x = self._context(k_x)
        false = jnp.bool_(False)
        return x, ContextState(context=x, t=state.t + 1), reward, false, false, info
