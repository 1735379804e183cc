"""Regret metrics and bounds, checked on hand-computed values."""

import math

import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.eval import regret as R


def test_pseudo_and_cumulative_regret():
    means = [0.2, 0.5, 0.9]
    actions = [[0, 2, 1, 2], [2, 2, 2, 2]]
    np.testing.assert_allclose(R.pseudo_regret(means, actions), [[0.7, 0, 0.4, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(R.cumulative_regret(means, actions)[0], [0.7, 0.7, 1.1, 1.1])
    np.testing.assert_allclose(R.fraction_optimal(means, actions), [0.5, 1.0])
    np.testing.assert_allclose(R.average_reward([[1, 0, 1, 1]]), [0.75])


def test_bernoulli_kl_and_lai_robbins():
    kl = 0.4 * math.log(0.4 / 0.5) + 0.6 * math.log(0.6 / 0.5)
    np.testing.assert_allclose(R.bernoulli_kl(0.4, 0.5), kl)
    np.testing.assert_allclose(R.bernoulli_kl(0.0, 0.5), math.log(2))
    c = R.lai_robbins_constant([0.4, 0.4, 0.5])
    np.testing.assert_allclose(c, 2 * 0.1 / kl)
    np.testing.assert_allclose(R.lai_robbins_bound([0.4, 0.4, 0.5], 1000), c * math.log(1000))
    # Arms tied with the best contribute nothing; an arm below a best of 1 has kl = inf.
    np.testing.assert_allclose(R.lai_robbins_constant([0.5, 0.5]), 0.0)
    np.testing.assert_allclose(R.lai_robbins_constant([0.3, 1.0]), 0.0)


def test_ucb1_bound():
    gaps = np.array([0.4, 0.1, 0.0])
    expect = 8 * math.log(100) * (1 / 0.4 + 1 / 0.1) + (1 + math.pi ** 2 / 3) * gaps.sum()
    np.testing.assert_allclose(R.ucb1_regret_bound([0.1, 0.4, 0.5], 100), expect)


def test_regret_slope_recovers_log_rate():
    steps = np.arange(1, 101) * 1000
    reg = 7.0 * np.log(steps)[None, :] + np.array([[0.0], [3.0]])
    np.testing.assert_allclose(R.regret_slope(steps, reg), [7.0, 7.0])


@pytest.mark.parametrize("call, match", [
    (lambda: R.lai_robbins_bound([0.2, 0.5], 0), "horizon T must be >= 1"),
    (lambda: R.ucb1_regret_bound([0.2, 0.5], 0), "horizon must be >= 1"),
    (lambda: R.lai_robbins_constant([0.5]), "at least 2 arm means"),
    (lambda: R.lai_robbins_constant([0.5, 1.2]), r"must lie in \[0, 1\]"),
    (lambda: R.regret_slope([10], [[1.0]]), "needs logged steps"),
])
def test_bad_input(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
