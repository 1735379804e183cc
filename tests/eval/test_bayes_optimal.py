"""Exact Bayes-optimal values of Beta(1, 1) Bernoulli bandits (mtrlrec/eval/bayes_optimal.py)."""

import math

import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.eval import bayes_optimal as bo


@pytest.mark.parametrize("k", [1, 2, 5])
def test_one_pull_is_worth_one_half(k):
    # Any arm: E[p] = 1/2 under the uniform prior.
    assert bo.bayes_optimal_value(k, 1) == pytest.approx(0.5, abs=1e-12)


def test_two_pulls_by_hand():
    # k = 1: E[r1 + r2] = 2 E[p] = 1.
    assert bo.bayes_optimal_value(1, 2) == pytest.approx(1.0, abs=1e-12)
    # k >= 2: pull arm 1; after a success its posterior mean is 2/3 (keep it), after a
    # failure 1/3 < 1/2 (switch to a fresh arm): 1/2 + 1/2·2/3 + 1/2·1/2 = 13/12.
    for k in (2, 3):
        assert bo.bayes_optimal_value(k, 2) == pytest.approx(13 / 12, abs=1e-12)


def test_three_pulls_two_arms_by_hand():
    # After s/f on arm 1 the posterior mean is (s+1)/(s+f+2). Pull 1 on arm 1.
    # Success (1/2): arm 1 at 2/3; V2 = 2/3 + 2/3·3/4 + 1/3·max(2/4, 1/2) = 2/3 + 1/2 + 1/6 = 4/3
    #   (a fresh arm instead: 1/2 + ... is worse).
    # Failure (1/2): switch to arm 2 (1/2 > 1/3): V2 = 1/2 + 1/2·2/3 + 1/2·max(1/3, 1/3) = 1.
    # V = 1/2 + 1/2·4/3 + 1/2·1 = 5/3.
    assert bo.bayes_optimal_value(2, 3) == pytest.approx(5 / 3, abs=1e-12)


def test_state_count_matches_the_solver():
    for k, n in [(2, 6), (3, 5), (5, 4)]:
        assert bo.solve(k, n).num_states == bo.state_count(k, n)
    assert bo.state_count(2, 2) == 9  # 1 + 2 + 6 multisets, by hand


def test_values_order_and_ceiling():
    v = [bo.bayes_optimal_value(k, 6) for k in (1, 2, 3, 4)]
    assert all(a < b for a, b in zip(v, v[1:]))  # more arms never hurt
    assert v[0] == pytest.approx(3.0)  # one arm: n E[p], the oracle's value too
    for k, x in zip((2, 3, 4), v[1:]):
        assert x < 6 * k / (k + 1)  # below the oracle that knows p: n k / (k + 1)


@pytest.mark.parametrize("k,n", [(2, 10), (3, 6)])
def test_monte_carlo_of_the_dp_policy(k, n):
    sol = bo.solve(k, n)
    totals = bo.simulate(sol, 40_000, seed=1)
    se = totals.std(ddof=1) / math.sqrt(totals.size)
    assert abs(totals.mean() - sol.value) < 4 * se


def test_policy_is_greedy_when_one_pull_is_left():
    sol = bo.solve(2, 3)
    # Level 2 states: arm 0 with 2 successes vs an untouched arm -> arm 0 (3/4 > 1/2).
    assert bo.solve(2, 3).act(np.array([[2, 0]]), np.array([[0, 0]]))[0] == 0
    assert sol.act(np.array([[0, 0]]), np.array([[2, 0]]))[0] == 1


def test_too_many_states_is_refused():
    with pytest.raises(ConfigError, match="belief states"):
        bo.solve(5, 100)
