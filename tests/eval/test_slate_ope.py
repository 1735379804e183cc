"""Slate estimators: hand-computed terms, exact expectations by enumerating slates, bad input."""

import itertools

import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.eval import slate_ope
from mtrlrec.runners.slate_ope import SlateOPERunner


def test_round_terms_by_hand():
    pe = np.array([[0.5, 0.2]])
    pb = np.array([[0.25, 0.4]])  # rho = (2, 0.5)
    r = np.array([[1.0, 1.0]])
    t = {k: float(v[0]) for k, v in slate_ope.slate_round_terms(pe, pb, r).items()}
    assert t["sips"] == pytest.approx(2 * 0.5 * 2)
    assert t["iips"] == pytest.approx(2 * 1 + 0.5 * 1)
    assert t["rips"] == pytest.approx(2 * 1 + 1.0 * 1)
    assert t["pi"] == pytest.approx((2 + 0.5 - 1) * 2)
    est = slate_ope.slate_estimates(np.tile(pe, (3, 1)), np.tile(pb, (3, 1)), np.tile(r, (3, 1)))
    assert float(est["pi"][0]) == pytest.approx(3.0) and float(est["pi"][1]) == pytest.approx(0.0, abs=1e-7)


def _expectation(reward_fn, pb, pe):
    """E over slates drawn from pb of every estimator's term, and the truth under pe (K = 2 slots)."""
    g = pb.shape[1]
    exp = {k: 0.0 for k in slate_ope.SLATE_ESTIMATORS}
    truth = 0.0
    for s in itertools.product(range(g), repeat=2):
        r = reward_fn(s)  # [2] expected slot rewards given the slate
        p_b = pb[0, s[0]] * pb[1, s[1]]
        p_e = pe[0, s[0]] * pe[1, s[1]]
        truth += p_e * r.sum()
        t = slate_ope.slate_round_terms(np.array([[pe[0, s[0]], pe[1, s[1]]]]),
                                        np.array([[pb[0, s[0]], pb[1, s[1]]]]), r[None])
        for k in exp:
            exp[k] += p_b * float(t[k][0])
    return exp, truth


PB = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
PE = np.array([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1]])
PHI = np.array([[0.1, 0.4, 0.2], [0.3, 0.05, 0.5]])


def test_every_estimator_is_unbiased_for_independent_slot_rewards():
    exp, truth = _expectation(lambda s: np.array([PHI[0, s[0]], PHI[1, s[1]]]), PB, PE)
    for k, v in exp.items():
        assert v == pytest.approx(truth, rel=1e-5), k


def test_pi_unbiased_for_additive_slate_rewards_iips_not():
    # slot 1's click also depends on slot 0's item, the slate total stays additive:
    # r0 = phi0(s0) + c(s0), r1 = phi1(s1) - c(s0) -> sum additive, slots interact
    c = np.array([0.05, -0.1, 0.08])
    exp, truth = _expectation(lambda s: np.array([PHI[0, s[0]] + c[s[0]], PHI[1, s[1]] - c[s[0]]]), PB, PE)
    assert exp["pi"] == pytest.approx(truth, rel=1e-5)
    assert exp["sips"] == pytest.approx(truth, rel=1e-5)
    assert exp["rips"] == pytest.approx(truth, rel=1e-5)  # a cascade: slot 1 sees slot 0
    assert abs(exp["iips"] - truth) > 1e-3


def test_only_sips_unbiased_when_slots_compete():
    # one click at most: slot 1 is clicked only if slot 0 is not (non-additive)
    def reward(s):
        p0 = PHI[0, s[0]]
        return np.array([p0, (1 - p0) * PHI[1, s[1]] * (1 + s[0])])

    exp, truth = _expectation(reward, PB, PE)
    assert exp["sips"] == pytest.approx(truth, rel=1e-5)
    assert exp["rips"] == pytest.approx(truth, rel=1e-5)  # still a cascade
    assert abs(exp["pi"] - truth) > 1e-3 and abs(exp["iips"] - truth) > 1e-3


@pytest.mark.parametrize("kwargs, match", [
    (dict(click_model="dbn"), "SlateOPERunner.click_model"),
    (dict(estimator="magic"), "SlateOPERunner.estimator"),
    (dict(log_size=123), "SlateOPERunner.log_size 123 must be one of"),
    (dict(num_logs=1), "SlateOPERunner.num_logs"),
])
def test_runner_bad_bindings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SlateOPERunner(**kwargs)
