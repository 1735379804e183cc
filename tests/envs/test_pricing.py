"""Dynamic pricing: demand model, exact optima (incl. the budget LP), bad input."""

import itertools

import jax
import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.envs.pricing import DynamicPricing, expected_tables


def _by_hand(env):
    """R(s, a) and D(s, a) from the module docstring's formulas, in NumPy."""
    rev = np.zeros((env.num_segments, env.num_arms))
    spend = np.zeros_like(rev)
    for s, (a, (p, d)) in itertools.product(range(env.num_segments),
                                           enumerate(env.arm_table())):
        eff = p * (1 - d)
        logit = env.willingness[s] - env.elasticities[s] * eff + env.promo_uplift * (d > 0)
        buy = 1 / (1 + np.exp(-logit))
        rev[s, a] = (eff - env.unit_cost) * buy
        spend[s, a] = p * d * buy
    return rev, spend


def test_expected_tables_and_optimum_by_hand():
    env = DynamicPricing(unit_cost=1.0)
    rev, spend = _by_hand(env)
    _, r, d = expected_tables(env.default_params())
    np.testing.assert_allclose(r, rev, rtol=1e-5)
    np.testing.assert_allclose(d, spend, rtol=1e-5)
    q = np.asarray(env.segment_probs)
    opt = env.optimum()
    assert opt["value"] == pytest.approx(q @ rev.max(1), rel=1e-6)
    np.testing.assert_array_equal(opt["best_arms"], rev.argmax(1))
    assert opt["pooled_value"] == pytest.approx((q @ rev).max(), rel=1e-6)
    assert opt["pooled_value"] <= opt["value"]


def test_budget_lp_limits():
    base = DynamicPricing()
    opt = base.optimum()
    # a budget above the optimum's spend does not bind
    loose = DynamicPricing(max_discount_spend=opt["spend_at_optimum"] + 0.1).optimum()
    assert loose["constrained_value"] == pytest.approx(opt["value"], rel=1e-6)
    # a zero budget forbids promotions: the best no-promotion arm per segment
    rev, _ = _by_hand(base)
    no_promo = [a for a, (_, d) in enumerate(base.arm_table()) if d == 0]
    q = np.asarray(base.segment_probs)
    zero = DynamicPricing(max_discount_spend=0.0).optimum()
    assert zero["constrained_value"] == pytest.approx(q @ rev[:, no_promo].max(1), rel=1e-6)
    # in between, the value is between the two and the policy is a distribution
    mid = DynamicPricing(max_discount_spend=0.2).optimum()
    assert zero["constrained_value"] - 1e-9 <= mid["constrained_value"] <= opt["value"] + 1e-9
    np.testing.assert_allclose(mid["constrained_policy"].sum(1), 1.0, atol=1e-6)
    _, spend = _by_hand(base)
    assert q @ (mid["constrained_policy"] * spend).sum(1) <= 0.2 + 1e-6


def test_step_regret_purchase_rate_and_floor():
    env = DynamicPricing(price_floor=5.0)
    p = env.default_params()
    feasible = np.asarray(p.feasible) > 0
    assert not feasible[0] and not feasible[1]  # effective prices 4 and 3.2 < 5
    state = env.reset(jax.random.PRNGKey(0), p)[1]
    s = int(state.segment)
    rev, _ = _by_hand(env)
    best = int(np.argmax(np.where(feasible, rev[s], -np.inf)))
    info = env.step(jax.random.PRNGKey(1), state, best, p)[5]
    assert float(info["regret"]) == 0.0
    # an infeasible arm never sells
    keys = jax.random.split(jax.random.PRNGKey(2), 4000)
    step = jax.jit(jax.vmap(lambda k, a: env.step_env(k, state, a, p), in_axes=(0, None)))
    out = step(keys, 0)
    assert float(out[2].sum()) == 0.0 and float(out[5]["infeasible"].mean()) == 1.0
    # purchase frequency of a feasible arm matches sigmoid demand within 4 SE
    out = step(keys, 4)
    buy = np.asarray(out[5]["purchase"])
    pi = float(expected_tables(p)[0][s, 4])
    assert abs(buy.mean() - pi) < 4 * np.sqrt(pi * (1 - pi) / len(buy))
    np.testing.assert_allclose(np.asarray(out[2]), buy * 8.0)  # arm 4 = price 8, no discount


def test_segment_frequencies_and_observation():
    env = DynamicPricing()
    p = env.default_params()
    keys = jax.random.split(jax.random.PRNGKey(5), 6000)
    obs, st = jax.vmap(lambda k: env.reset(k, p))(keys)
    freq = np.bincount(np.asarray(st.segment), minlength=3) / 6000
    se = np.sqrt(np.asarray(env.segment_probs) * (1 - np.asarray(env.segment_probs)) / 6000)
    assert np.all(np.abs(freq - env.segment_probs) < 4 * se)
    np.testing.assert_array_equal(np.asarray(obs).argmax(1), np.asarray(st.segment))
    assert DynamicPricing(context="none").observation_spec().shape == (1,)
    env_v = DynamicPricing(vector_reward=True)
    assert env_v.reward_names == ("revenue", "spend")
    r = env_v.step(jax.random.PRNGKey(0), env_v.reset(jax.random.PRNGKey(0))[1], 1)[2]
    assert r.shape == (2,)


@pytest.mark.parametrize("kwargs, match", [
    (dict(prices=[4.0, 0.0]), r"DynamicPricing.prices\[1\] must be > 0"),
    (dict(prices=[-1.0]), r"DynamicPricing.prices\[0\] must be > 0"),
    (dict(discounts=[0.0, 1.0]), r"DynamicPricing.discounts\[1\] must be < 1.0"),
    (dict(segment_probs=[0.5, 0.4, 0.2]), "must sum to 1"),
    (dict(elasticities=[0.5, 0.0, 0.1]), r"elasticities\[1\] must be > 0"),
    (dict(willingness=[1.0, 2.0]), "willingness must have 3 entries"),
    (dict(price_floor=10.0, price_ceiling=5.0), "exceeds price_ceiling"),
    (dict(price_floor=20.0), "no arm has an effective price"),
    (dict(max_discount_spend=-0.1), "max_discount_spend must be >= 0"),
    (dict(discounts=[0.2], max_discount_spend=0.01), "max_discount_spend=0.01 is infeasible"),
    (dict(context="user"), "context must be 'segment' or 'none'"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DynamicPricing(**kwargs)
