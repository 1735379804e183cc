r"""Dynamic pricing with promotions: arms are (price level × promotion) pairs.

Generative model
----------------
Each round a customer of segment :math:`s \in \{0..S-1\}` arrives,
:math:`s \sim \mathrm{Categorical}(q)`, and the seller shows one arm
:math:`a = (i, j)` — list price :math:`p_i` and discount level :math:`d_j`
(arm index :math:`a = i J + j`). The customer pays the effective price
:math:`\tilde p_a = p_i (1 - d_j)` and buys with probability

.. math:: \pi(s, a) = \mathrm{sigmoid}(\alpha_s - \beta_s \tilde p_a + \gamma\,[d_j > 0])

(logistic demand with per-segment willingness :math:`\alpha_s`, price
elasticity :math:`\beta_s` and a promotion uplift :math:`\gamma`, e.g. the
visibility of a "sale" badge). The reward is the margin of the sale,
:math:`r = (\tilde p_a - c)\,B`, :math:`B \sim \mathrm{Bernoulli}(\pi(s,a))`
(revenue when the unit cost :math:`c = 0`), and the discount spend is
:math:`p_i d_j B`. Expected values:

.. math:: R(s, a) = (\tilde p_a - c)\,\pi(s, a), \qquad D(s, a) = p_i d_j\,\pi(s, a).

Constraints: arms whose effective price lies outside
``[price_floor, price_ceiling]`` are infeasible (playing one sells nothing and
sets ``info['infeasible']``); ``max_discount_spend`` b bounds the expected
discount spend per round (a long-run budget).

Optimum (so regret is exact)
----------------------------
* Segment-aware optimum: :math:`V^* = \sum_s q_s \max_{a \in F} R(s,a)`,
  :math:`F` the feasible arms. ``info['regret']`` is
  :math:`\max_{a\in F} R(s_t,a) - R(s_t,a_t)` (pseudo-regret), so
  ``cumulative_regret`` is exact given the segments drawn.
* Context-free optimum (an agent that ignores the segment):
  :math:`V_0 = \max_{a\in F} \sum_s q_s R(s,a)`.
* Budget-constrained optimum: the linear programme over randomised policies
  :math:`\pi(a|s)`: maximise :math:`\sum_s q_s \sum_a \pi(a|s) R(s,a)` subject to
  :math:`\sum_s q_s \sum_a \pi(a|s) D(s,a) \le b`, solved exactly on the host by
  :meth:`DynamicPricing.optimum` (``scipy.optimize.linprog``). The constrained
  regret after T rounds is :math:`T V^*_b - \sum_t R(s_t, a_t)`.

Observation: the one-hot segment ``[S]`` (``context='segment'``) or a
constant ``[1.]`` (``context='none'``, for K-armed agents over price arms).
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_float, check_floats
from mtrlrec.core.spaces import Box, Discrete


@flax.struct.dataclass
class PricingParams:
    price: jax.Array  # [K] list price of each arm
    discount: jax.Array  # [K] discount fraction of each arm
    segment_probs: jax.Array  # [S]
    alpha: jax.Array  # [S] willingness-to-buy logit
    beta: jax.Array  # [S] price elasticity (> 0)
    uplift: jax.Array  # [] promotion uplift γ
    unit_cost: jax.Array  # [] c
    feasible: jax.Array  # [K] 1. where the effective price is within the floor/ceiling


@flax.struct.dataclass
class PricingState:
    segment: jax.Array  # [] current customer segment
    t: jax.Array


def expected_tables(params: PricingParams) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""Purchase probabilities, expected margins and spends, each ``[S, K]``.

    :math:`\pi(s,a)`, :math:`R(s,a) = (\tilde p_a - c)\pi(s,a)`,
    :math:`D(s,a) = p_a d_a \pi(s,a)`.
    """
    eff = params.price * (1.0 - params.discount)
    promo = (params.discount > 0).astype(jnp.float32)
    logit = params.alpha[:, None] - params.beta[:, None] * eff[None, :] + params.uplift * promo
    buy = jax.nn.sigmoid(logit)
    return buy, (eff - params.unit_cost)[None, :] * buy, (params.price * params.discount) * buy


@gin.configurable
class DynamicPricing(Environment):
    """Price × promotion arms with logistic per-segment demand (see module docstring).

    Args:
      prices: list price levels, each > 0.
      discounts: discount levels in [0, 1); 0 means no promotion.
      segment_probs: customer segment probabilities q (sum to 1).
      willingness: α_s per segment.
      elasticities: β_s > 0 per segment.
      promo_uplift: γ, logit uplift of a promotion.
      unit_cost: c >= 0 (reward = margin; 0 gives revenue).
      price_floor, price_ceiling: optional bounds on the effective price.
      max_discount_spend: optional budget b >= min achievable spend per round.
      context: 'segment' (one-hot observation) or 'none' (constant).
      vector_reward: return ``(margin, discount_spend)`` instead of the margin.
    """

    episodic = False
    cumulative_metrics = ("regret", "reward", "expected_revenue", "expected_spend",
                          "purchase", "infeasible")

    def __init__(
        self,
        prices: Sequence[float] = (4.0, 6.0, 8.0, 10.0, 12.0),
        discounts: Sequence[float] = (0.0, 0.2),
        segment_probs: Sequence[float] = (0.5, 0.3, 0.2),
        willingness: Sequence[float] = (2.0, 2.5, 3.0),
        elasticities: Sequence[float] = (0.5, 0.3, 0.15),
        promo_uplift: float = 0.3,
        unit_cost: float = 0.0,
        price_floor: float | None = None,
        price_ceiling: float | None = None,
        max_discount_spend: float | None = None,
        context: str = "segment",
        vector_reward: bool = False,
    ):
        n = "DynamicPricing"
        self.prices = check_floats(f"{n}.prices", prices)
        for i, p in enumerate(self.prices):
            if not p > 0:
                raise ConfigError(f"{n}.prices[{i}] must be > 0, got {p}.")
        if not self.prices:
            raise ConfigError(f"{n}.prices must not be empty.")
        self.discounts = check_floats(f"{n}.discounts", discounts, low=0.0)
        for i, d in enumerate(self.discounts):
            check_float(f"{n}.discounts[{i}]", d, low=0.0, high=1.0, high_open=True)
        self.segment_probs = check_floats(f"{n}.segment_probs", segment_probs, low=0.0)
        num_segments = len(self.segment_probs)
        if num_segments < 1 or abs(sum(self.segment_probs) - 1.0) > 1e-6:
            raise ConfigError(
                f"{n}.segment_probs must sum to 1, got {list(self.segment_probs)}.")
        self.willingness = check_floats(f"{n}.willingness", willingness, length=num_segments)
        self.elasticities = check_floats(f"{n}.elasticities", elasticities,
                                         length=num_segments)
        for i, b in enumerate(self.elasticities):
            if not b > 0:
                raise ConfigError(f"{n}.elasticities[{i}] must be > 0, got {b}.")
        self.promo_uplift = check_float(f"{n}.promo_uplift", promo_uplift)
        self.unit_cost = check_float(f"{n}.unit_cost", unit_cost, low=0.0)
        self.price_floor = (None if price_floor is None else
                            check_float(f"{n}.price_floor", price_floor, low=0.0))
        self.price_ceiling = (None if price_ceiling is None else
                              check_float(f"{n}.price_ceiling", price_ceiling, low=0.0,
                                          low_open=True))
        if (self.price_floor is not None and self.price_ceiling is not None
                and self.price_floor > self.price_ceiling):
            raise ConfigError(
                f"{n}.price_floor={self.price_floor} exceeds price_ceiling={self.price_ceiling}.")
        if context not in ("segment", "none"):
            raise ConfigError(f"{n}.context must be 'segment' or 'none', got {context!r}.")
        self.context = context
        self.vector_reward = bool(vector_reward)
        self.reward_names = ("revenue", "spend") if self.vector_reward else ("reward",)
        self.num_segments = num_segments
        self.num_arms = len(self.prices) * len(self.discounts)
        feasible = np.asarray(self.default_params().feasible)
        if not feasible.any():
            raise ConfigError(
                f"no arm has an effective price within [{self.price_floor}, "
                f"{self.price_ceiling}] ({n}.price_floor/price_ceiling).")
        self.max_discount_spend = None
        if max_discount_spend is not None:
            b = check_float(f"{n}.max_discount_spend", max_discount_spend, low=0.0)
            lo = self.optimum()["min_spend"]
            if b < lo - 1e-9:
                raise ConfigError(
                    f"{n}.max_discount_spend={b} is infeasible: the least expected discount "
                    f"spend per round of any policy is {lo:.4f}.")
            self.max_discount_spend = b

    # -- params -------------------------------------------------------------
    def arm_table(self) -> list[tuple[float, float]]:
        """(list price, discount) of each arm, in arm order."""
        return [(p, d) for p in self.prices for d in self.discounts]

    def default_params(self) -> PricingParams:
        arms = np.asarray(self.arm_table(), np.float32)
        eff = arms[:, 0] * (1 - arms[:, 1])
        ok = np.ones(len(arms), bool)
        if self.price_floor is not None:
            ok &= eff >= self.price_floor - 1e-6
        if self.price_ceiling is not None:
            ok &= eff <= self.price_ceiling + 1e-6
        f = jnp.float32
        return PricingParams(
            price=jnp.asarray(arms[:, 0]), discount=jnp.asarray(arms[:, 1]),
            segment_probs=jnp.asarray(self.segment_probs, f),
            alpha=jnp.asarray(self.willingness, f), beta=jnp.asarray(self.elasticities, f),
            uplift=f(self.promo_uplift), unit_cost=f(self.unit_cost),
            feasible=jnp.asarray(ok, f),
        )

    def check_params(self, params: PricingParams) -> None:
        price = np.asarray(params.price)
        if price.shape != (self.num_arms,):
            raise ConfigError(f"DynamicPricing params.price must have shape ({self.num_arms},).")
        if (price <= 0).any():
            raise ConfigError("DynamicPricing prices must be > 0.")
        if (np.asarray(params.beta) <= 0).any():
            raise ConfigError("DynamicPricing elasticities must be > 0.")

    def optimum(self, params: PricingParams | None = None) -> dict:
        """The documented optima of the module docstring, computed on the host.

        Returns a dict with ``value`` (V*), ``best_arms`` ``[S]``,
        ``pooled_value`` (V_0), ``pooled_arm``, ``min_spend`` and, when
        ``max_discount_spend`` is set, ``constrained_value`` (V*_b) and
        ``constrained_policy`` ``[S, K]``.
        """
        params = self.default_params() if params is None else params
        _, rev, spend = (np.asarray(t, np.float64) for t in expected_tables(params))
        q = np.asarray(params.segment_probs, np.float64)
        feas = np.asarray(params.feasible) > 0
        rev_f = np.where(feas[None, :], rev, -np.inf)
        best = rev_f.argmax(1)
        out = {
            "value": float(q @ rev_f.max(1)),
            "best_arms": best,
            "pooled_value": float((q @ np.where(feas[None, :], rev, 0.0))[feas].max()),
            "pooled_arm": int(np.where(feas, q @ np.where(feas[None, :], rev, 0.0),
                                       -np.inf).argmax()),
            "min_spend": float(q @ np.where(feas[None, :], spend, np.inf).min(1)),
            "spend_at_optimum": float(q @ spend[np.arange(len(q)), best]),
        }
        b = getattr(self, "max_discount_spend", None)
        if b is not None:
            value, policy = _constrained_lp(q, rev, spend, feas, b)
            out["constrained_value"] = value
            out["constrained_policy"] = policy
        return out

    # -- dynamics -----------------------------------------------------------
    def observation_spec(self, params=None):
        n = self.num_segments if self.context == "segment" else 1
        return Box(0.0, 1.0, (n,))

    def action_spec(self, params=None):
        return Discrete(self.num_arms)

    def _obs(self, segment):
        if self.context == "segment":
            return jax.nn.one_hot(segment, self.num_segments, dtype=jnp.float32)
        return jnp.ones((1,), jnp.float32)

    def _segment(self, key, params):
        return jax.random.categorical(key, jnp.log(params.segment_probs)).astype(jnp.int32)

    def reset_env(self, key, params):
        s = self._segment(key, params)
        return self._obs(s), PricingState(segment=s, t=jnp.int32(0))

    def step_env(self, key, state, action, params):
        k_b, k_s = jax.random.split(key)
        buy_p, rev, spend = expected_tables(params)
        s = state.segment
        feasible = params.feasible[action] > 0
        buy = (jax.random.bernoulli(k_b, buy_p[s, action]) & feasible).astype(jnp.float32)
        eff = params.price[action] * (1.0 - params.discount[action])
        margin = (eff - params.unit_cost) * buy
        spent = params.price[action] * params.discount[action] * buy
        row = jnp.where(params.feasible > 0, rev[s], -jnp.inf)
        best = jnp.max(row)
        exp_rev = jnp.where(feasible, rev[s, action], 0.0)
        info = {
            "regret": best - exp_rev,
            "optimal_action": (exp_rev >= best).astype(jnp.float32),
            "purchase": buy,
            "spend": spent,
            "expected_revenue": exp_rev,
            "expected_spend": jnp.where(feasible, spend[s, action], 0.0),
            "infeasible": 1.0 - feasible.astype(jnp.float32),
        }
        reward = jnp.stack([margin, spent]) if self.vector_reward else margin
        s2 = self._segment(k_s, params)
        false = jnp.bool_(False)
        return self._obs(s2), PricingState(segment=s2, t=state.t + 1), reward, false, false, info


def _constrained_lp(q, rev, spend, feas, budget):
    """Best randomised per-segment policy with expected spend <= budget (exact LP)."""
    from scipy.optimize import linprog

    s, k = rev.shape
    c = -(q[:, None] * rev).reshape(-1)
    a_ub = (q[:, None] * spend).reshape(1, -1)
    a_eq = np.kron(np.eye(s), np.ones((1, k)))
    bounds = [(0.0, 1.0 if feas[j] else 0.0) for _ in range(s) for j in range(k)]
    res = linprog(c, A_ub=a_ub, b_ub=[budget], A_eq=a_eq, b_eq=np.ones(s), bounds=bounds,
                  method="highs")
    if not res.success:  # pragma: no cover - guarded by the min-spend check
        raise ConfigError(f"DynamicPricing: the budget LP failed: {res.message}")
    return float(-res.fun), res.x.reshape(s, k)
