r"""Bandit regret metrics and the classic bounds (NumPy, host side).

* :func:`pseudo_regret` / :func:`cumulative_regret`:
  :math:`\bar R_T = \sum_{t \le T} (\mu^* - \mu_{A_t})` (Lattimore &
  Szepesvári 2020, §4.5).
* :func:`fraction_optimal`, :func:`average_reward`.
* :func:`lai_robbins_constant` / :func:`lai_robbins_bound`: the asymptotic lower
  bound of Lai & Robbins (1985, Theorem 2) for Bernoulli arms; every uniformly
  good policy has
  :math:`\liminf_T \mathbb E R_T / \ln T \ge \sum_{i:\mu_i<\mu^*}
  (\mu^* - \mu_i)/\mathrm{kl}(\mu_i, \mu^*)`.
* :func:`ucb1_regret_bound`: Auer, Cesa-Bianchi & Fischer (2002), Theorem 1.
* :func:`regret_slope`: the slope of regret against ln t over the last decade,
  :math:`(R_T - R_{T/10}) / \ln 10`, which tends to the Lai–Robbins constant for
  asymptotically optimal policies.

The loop computes cumulative regret on device (``cumulative_regret``); these
functions serve runners, tests and analysis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtrlrec.core.errors import ConfigError, check_int


def _means(means: Any, name: str = "means", bernoulli: bool = False) -> np.ndarray:
    m = np.asarray(means, np.float64)
    if m.ndim < 1 or m.shape[-1] < 2:
        raise ConfigError(f"{name} must list at least 2 arm means, got shape {m.shape}.")
    if not np.all(np.isfinite(m)):
        raise ConfigError(f"{name} must be finite, got {m}.")
    if bernoulli and (np.any(m < 0) or np.any(m > 1)):
        raise ConfigError(f"{name} must lie in [0, 1] for Bernoulli arms, got {m}.")
    return m


def pseudo_regret(means: Any, actions: Any) -> np.ndarray:
    """Per-step pseudo-regret :math:`\\mu^* - \\mu_{A_t}`.

    Args:
      means: ``[K]`` (or ``[..., K]`` broadcasting against ``actions``) arm means.
      actions: ``[..., T]`` integer arms.

    Returns:
      ``[..., T]`` float64.
    """
    m = _means(means)
    a = np.asarray(actions)
    mu = np.take_along_axis(np.broadcast_to(m[..., None, :], a.shape + m.shape[-1:]),
                            a[..., None], -1)[..., 0]
    return m.max(-1)[..., None] - mu


def cumulative_regret(means: Any, actions: Any) -> np.ndarray:
    """``[..., T]`` running sum of :func:`pseudo_regret`."""
    return np.cumsum(pseudo_regret(means, actions), axis=-1)


def fraction_optimal(means: Any, actions: Any) -> np.ndarray:
    """``[...]`` fraction of steps whose arm has the maximal mean."""
    m = _means(means)
    a = np.asarray(actions)
    best = np.isclose(np.take_along_axis(
        np.broadcast_to(m[..., None, :], a.shape + m.shape[-1:]), a[..., None], -1)[..., 0],
        m.max(-1)[..., None])
    return best.mean(-1)


def average_reward(rewards: Any) -> np.ndarray:
    """``[...]`` mean of ``rewards`` ``[..., T]`` over time."""
    return np.asarray(rewards, np.float64).mean(-1)


def bernoulli_kl(p: Any, q: Any) -> np.ndarray:
    """:math:`\\mathrm{kl}(p, q)` of Bernoulli distributions (float64, 0 ln 0 = 0)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0)
        t2 = np.where(p < 1, (1 - p) * np.log(np.where(p < 1, 1 - p, 1.0) / (1 - q)), 0.0)
    return t1 + t2


def lai_robbins_constant(means: Any) -> float:
    """:math:`C(\\mu) = \\sum_{i:\\mu_i<\\mu^*} (\\mu^* - \\mu_i)/\\mathrm{kl}(\\mu_i, \\mu^*)`.

    Lai & Robbins (1985), "Asymptotically efficient adaptive allocation rules",
    Adv. Appl. Math. 6, Theorem 2, for Bernoulli arms. Infinite when μ* = 1 and
    some arm is worse (kl(μ_i, 1) = ∞ makes that term 0, so it is in fact 0 for
    such arms); arms tied with the best contribute nothing.

    Args:
      means: ``[K]`` Bernoulli means in [0, 1].
    """
    m = _means(means, "lai_robbins means", bernoulli=True)
    if m.ndim != 1:
        raise ConfigError(f"lai_robbins means must be one list of K means, got shape {m.shape}.")
    best = m.max()
    worse = m < best
    gaps = best - m[worse]
    kls = bernoulli_kl(m[worse], best)
    with np.errstate(divide="ignore"):
        terms = np.where(np.isfinite(kls), gaps / kls, 0.0)
    return float(terms.sum())


def lai_robbins_bound(means: Any, horizon: Any) -> np.ndarray:
    """:math:`C(\\mu) \\ln T`, the asymptotic lower bound on regret at horizon T.

    Args:
      means: ``[K]`` Bernoulli means.
      horizon: T >= 1 (scalar or array of horizons).
    """
    t = np.asarray(horizon, np.float64)
    if np.any(t < 1) or not np.all(np.isfinite(t)):
        raise ConfigError(f"horizon T must be >= 1, got {horizon}.")
    return lai_robbins_constant(means) * np.log(t)


def ucb1_regret_bound(means: Any, horizon: int) -> float:
    """Auer et al. (2002), Theorem 1: :math:`\\sum_{\\Delta_i>0} 8\\ln T/\\Delta_i + (1+\\pi^2/3)\\sum_i \\Delta_i`.

    Holds for UCB1 (index :math:`\\bar x_i + \\sqrt{2\\ln n / n_i}`, i.e.
    ``UCB1(c=sqrt(2))``) with rewards in [0, 1].
    """
    t = check_int("horizon", horizon, min_value=1)
    m = _means(means)
    gaps = m.max() - m
    pos = gaps[gaps > 0]
    return float(np.sum(8.0 * math.log(t) / pos) + (1.0 + math.pi ** 2 / 3.0) * gaps.sum())


def regret_slope(steps: Any, regret: Any, decades: float = 1.0) -> np.ndarray:
    """Slope of regret against ln t over the last ``decades`` decades of the run.

    :math:`(R(T) - R(T_0)) / (\\ln T - \\ln T_0)` with :math:`T_0` the logged step
    closest to :math:`T / 10^{decades}`.

    Args:
      steps: ``[L]`` logged steps (increasing).
      regret: ``[..., L]`` cumulative regret at those steps.
      decades: how far back (1: the last decade).

    Returns:
      ``[...]`` slopes.
    """
    s = np.asarray(steps, np.float64)
    r = np.asarray(regret, np.float64)
    t = s[-1]
    i0 = int(np.argmin(np.abs(np.log(s) - (np.log(t) - decades * np.log(10.0)))))
    if s[i0] >= t:
        raise ConfigError("regret_slope needs logged steps before the last one.")
    return (r[..., -1] - r[..., i0]) / (np.log(t) - np.log(s[i0]))
