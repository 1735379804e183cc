"""Statistics: Welch test and t distribution against SciPy, sample sizes by hand.

The simulated A/B-test runner is tested in ``tests/runners/test_ab_test.py``.
"""

import math

import numpy as np
import pytest
import scipy.stats

from mtrlrec.core.errors import ConfigError
from mtrlrec.eval import stats


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
