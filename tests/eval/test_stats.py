"""Statistics: Welch test and t distribution against SciPy, sample sizes by hand, simulated A/B tests."""

import math

import numpy as np
import pytest
import scipy.stats

from mtrlrec.agents.bandits import UniformAgent
from mtrlrec.agents.reference import OracleEpsilonGreedy
from mtrlrec.core.errors import ConfigError
from mtrlrec.envs.bandits import BernoulliBandit
from mtrlrec.eval import stats
from mtrlrec.train.result import RunContext


def test_t_distribution_matches_scipy():
    t = np.array([-3.0, -0.5, 0.0, 0.7, 2.5])
    for df in (2.0, 7.5, 60.0):
        np.testing.assert_allclose(stats.t_cdf(t, df), scipy.stats.t.cdf(t, df), atol=2e-6)
        assert float(stats.t_ppf(0.975, df)) == pytest.approx(scipy.stats.t.ppf(0.975, df), rel=1e-4)


def test_welch_test_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, 30)
    b = rng.normal(0.6, 2.0, 45)
    res = stats.welch_test(a, b)
    ref = scipy.stats.ttest_ind(b, a, equal_var=False)
    assert float(res.diff) == pytest.approx(b.mean() - a.mean(), rel=1e-5)
    assert float(res.p_value) == pytest.approx(ref.pvalue, rel=1e-3)
    se = math.sqrt(a.var(ddof=1) / 30 + b.var(ddof=1) / 45)
    assert float(res.se) == pytest.approx(se, rel=1e-5)
    q = scipy.stats.t.ppf(0.975, float(res.df))
    assert float(res.low) == pytest.approx(float(res.diff) - q * se, rel=1e-4)
    m, lo, hi = stats.confidence_interval(a)
    h = scipy.stats.t.ppf(0.975, 29) * a.std(ddof=1) / math.sqrt(30)
    assert (float(lo), float(hi)) == pytest.approx((a.mean() - h, a.mean() + h), rel=1e-4)


def test_sample_size_by_hand():
    z = scipy.stats.norm.ppf(0.975) + scipy.stats.norm.ppf(0.8)  # 2.8016
    assert stats.sample_size(0.1, std=1.0) == math.ceil(z * z * 2 / 0.01)  # 1570
    assert stats.sample_size(0.1, std=1.0) == 1570
    var = 0.1 * 0.9 + 0.12 * 0.88
    assert stats.sample_size(0.02, baseline=0.1) == math.ceil(z * z * var / 0.02 ** 2)
    # power at the computed size is about 0.8
    assert stats.power(1570, 0.1, 1.0) == pytest.approx(0.8, abs=0.002)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mde=0.0, std=1.0), "mde must be non-zero"),
        (dict(mde=0.1), "exactly one of std= or baseline="),
        (dict(mde=0.1, std=1.0, baseline=0.2), "exactly one"),
        (dict(mde=0.1, std=-1.0), "sample_size.std must be > 0"),
        (dict(mde=0.1, std=1.0, power=1.0), "sample_size.power must be < 1"),
        (dict(mde=0.5, baseline=0.6), r"baseline \+ mde = 1.1"),
    ],
)
def test_sample_size_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        stats.sample_size(**kwargs)


MEANS = [0.2, 0.4, 0.5, 0.3]
REPS, USERS, STEPS = 200, 40, 10


@pytest.fixture(scope="module")
def ab_results():
    env = BernoulliBandit(num_arms=4, means=MEANS)
    null = stats.ABTestRunner(env=env, agent_a=UniformAgent(), agent_b=UniformAgent(),
                              num_users=USERS, num_steps=STEPS)(RunContext(num_seeds=REPS, seed=3))
    alt = stats.ABTestRunner(env=env, agent_a=UniformAgent(),
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
        stats.ABTestRunner(env=env, agent_a=UniformAgent(), agent_b=UniformAgent(), num_users=3)
    with pytest.raises(ConfigError, match="ABTestRunner.alpha"):
        stats.ABTestRunner(env=env, agent_a=UniformAgent(), agent_b=UniformAgent(), alpha=0.0)
