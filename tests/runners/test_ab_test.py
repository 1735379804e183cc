"""Simulated A/B-test runner: type-I error and power against the normal approximation, bad input."""

import math

import numpy as np
import pytest
import scipy.stats

from mtrlrec.agents.bandits import UniformAgent
from mtrlrec.agents.reference import OracleEpsilonGreedy
from mtrlrec.core.errors import ConfigError
from mtrlrec.envs.bandits import BernoulliBandit
from mtrlrec.runners.ab_test import ABTestRunner
from mtrlrec.train.result import RunContext

MEANS = [0.2, 0.4, 0.5, 0.3]
REPS, USERS, STEPS = 200, 40, 10


@pytest.fixture(scope="module")
def ab_results():
    env = BernoulliBandit(num_arms=4, means=MEANS)
    null = ABTestRunner(env=env, agent_a=UniformAgent(), agent_b=UniformAgent(),
                        num_users=USERS, num_steps=STEPS)(RunContext(num_seeds=REPS, seed=3))
    alt = ABTestRunner(env=env, agent_a=UniformAgent(),
                       agent_b=OracleEpsilonGreedy(means=MEANS, epsilon=0.1),
                       num_users=USERS, num_steps=STEPS)(RunContext(num_seeds=REPS, seed=4))
    return null, alt


def test_ab_test_type_one_error(ab_results):
    null, _ = ab_results
    rate = null.final["reject"].mean()
    se = math.sqrt(0.05 * 0.95 / REPS)
    assert abs(rate - 0.05) < 4 * se, rate
    assert np.all(null.final["n_a"] + null.final["n_b"] == USERS)


def test_ab_test_estimates_the_true_effect_and_has_power(ab_results):
    _, alt = ab_results
    # per step: uniform earns mean(MEANS) = 0.35, oracle eps-greedy 0.9*0.5 + 0.1*0.35
    effect = STEPS * (0.9 * 0.5 + 0.1 * 0.35 - 0.35)
    d = alt.final["diff"]
    assert abs(d.mean() - effect) < 4 * d.std(ddof=1) / math.sqrt(REPS)
    # per-user sd: uniform sqrt(T (0.35*0.65 + var of means)); the oracle's is smaller.
    # The measured power must match the normal-approximation power within 4 SE.
    sd_a = math.sqrt(STEPS * 0.35 * 0.65)
    p_b = 0.9 * 0.5 + 0.1 * 0.35
    sd_b = math.sqrt(STEPS * p_b * (1 - p_b))
    se = math.sqrt(sd_a ** 2 / (USERS / 2) + sd_b ** 2 / (USERS / 2))
    expected_power = scipy.stats.norm.cdf(effect / se - 1.96)
    rate = alt.final["reject"].mean()
    assert abs(rate - expected_power) < 4 * math.sqrt(expected_power * (1 - expected_power) / REPS) + 0.03


def test_ab_runner_bad_input():
    env = BernoulliBandit(num_arms=4, means=MEANS)
    with pytest.raises(ConfigError, match="ABTestRunner.num_users must be >= 4"):
        ABTestRunner(env=env, agent_a=UniformAgent(), agent_b=UniformAgent(), num_users=3)
    with pytest.raises(ConfigError, match="ABTestRunner.alpha"):
        ABTestRunner(env=env, agent_a=UniformAgent(), agent_b=UniformAgent(), alpha=0.0)
