"""OBD OPE runner: the BTS action distribution by Monte Carlo, IPW/SNIPW against NumPy, bad bindings."""

import warnings

import jax
import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.data import obd
from mtrlrec.eval import ope
from mtrlrec.runners.ope import OBDOPERunner, bts_action_dist
from mtrlrec.train.result import RunContext


def test_bts_action_dist_monte_carlo():
    # arm 0 is (almost surely) the best; arms 1 and 2 are exchangeable
    d = np.asarray(bts_action_dist(jax.random.key(0), np.array([50.0, 1.0, 1.0]),
                                   np.array([50.0, 1000.0, 1000.0]), num_positions=3,
                                   num_samples=20_000))
    np.testing.assert_allclose(d.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(d[0], [1, 0, 0], atol=1e-3)
    se = np.sqrt(0.25 / 20_000)
    np.testing.assert_allclose(d[1:, 1:], 0.5, atol=4 * se)


def test_ope_runner_random_from_bts_matches_numpy():
    runner = OBDOPERunner(campaign="men", evaluation="random", estimator="ipw", num_bootstrap=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ope.OPESupportWarning)
        res = runner(RunContext(seed=0))
    log = obd.load("bts", "men")
    ipw = np.mean((1 / 34) / log.pscore * log.reward)
    snipw = np.sum(log.reward / log.pscore) / np.sum(1 / log.pscore)
    assert res.final["estimate"][0] == pytest.approx(100 * ipw, rel=1e-4)
    assert res.final["snipw/estimate"][0] == pytest.approx(100 * snipw, rel=1e-4)
    truth = obd.load("random", "men").reward.mean()
    assert res.final["ground_truth"][0] == pytest.approx(100 * truth, rel=1e-5)
    assert res.final["rel_error"][0] == pytest.approx(abs(ipw - truth) / truth, rel=1e-3)
    assert set(res.stderr) >= {"estimate", "rel_ee", "empirical_rel_ee", "ground_truth"}
    # obp's statistic: mean over resamples of |V_b - V| / V, never below |mean V_b - V| / V
    assert res.final["rel_ee"][0] >= 0 and res.stderr["rel_ee"] > 0
    # IPW needs no reward model: both models' rel-ee are the same resamples
    assert res.final["rel_ee"][0] == pytest.approx(res.final["empirical_rel_ee"][0], rel=1e-6)
    table = next(iter(res.tables.values()))
    assert "| DR-os (λ=0, obp default) |" in table and "Reward model: obp_logistic" in table
    # DR-os with λ = 0 is DM; with a huge λ it is DR
    assert res.final["dr_os_l0/estimate"][0] == pytest.approx(res.final["dm/estimate"][0], rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(campaign="kids"), "OBDOPERunner.campaign"),
        (dict(evaluation="greedy"), "OBDOPERunner.evaluation"),
        (dict(estimator="magic"), "OBDOPERunner.estimator"),
        (dict(switch_taus=(-1.0,)), "switch_tau must be >= 0"),
        (dict(logistic_C=0.0), "OBDOPERunner.logistic_C must be > 0"),
        (dict(num_bootstrap=1), "OBDOPERunner.num_bootstrap"),
        (dict(bts_dist="posterior"), "OBDOPERunner.bts_dist"),
        (dict(reward_model="forest"), "OBDOPERunner.reward_model"),
    ],
)
def test_ope_runner_bad_bindings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        OBDOPERunner(**kwargs)
