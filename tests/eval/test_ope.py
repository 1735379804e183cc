"""Off-policy estimators: hand-computed values, unbiasedness over many seeds, bootstrap, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.eval import ope
from mtrlrec.eval import reward_models

# tiny log: pi_e = (0.8, 0.2) everywhere, q_hat = (0.5, 0.25)
A_LOG = np.array([0, 1, 0, 1])
P_LOG = np.array([0.5, 0.5, 0.25, 0.75])
R_LOG = np.array([1.0, 0.0, 0.0, 1.0])
POS = np.zeros(4, np.int32)
PI_E = np.tile(np.array([0.8, 0.2])[None, :, None], (4, 1, 1))
Q_HAT = np.tile(np.array([0.5, 0.25])[None, :, None], (4, 1, 1))


def tiny_inputs(reward=R_LOG, q_hat=Q_HAT):
    return ope.make_inputs(PI_E, A_LOG, POS, P_LOG, reward, q_hat)


def test_estimators_against_hand_computed_values():
    # w = (1.6, 0.4, 3.2, 4/15); sum w = 5.4667; sum w r = 1.8667
    # DM = 0.8*0.5 + 0.2*0.25 = 0.45; sum w (r - q) = 0.8 - 0.1 - 1.6 + 0.2 = -0.7
    est = ope.estimate(tiny_inputs(), switch_tau=1.0)
    sw, swr = 1.6 + 0.4 + 3.2 + 4 / 15, 1.6 + 4 / 15
    expected = {
        "ipw": swr / 4,
        "snipw": swr / sw,
        "dm": 0.45,
        "dr": 0.45 - 0.7 / 4,
        "sndr": 0.45 - 0.7 / sw,
        "switch_dr": 0.45 + (-0.1 + 0.2) / 4,  # only w <= 1 keep their residual
    }
    for k, v in expected.items():
        assert float(est[k]) == pytest.approx(v, rel=1e-5), k


def test_clipping_by_hand():
    est = ope.estimate(tiny_inputs(), clip=2.0)
    # clipped w = (1.6, 0.4, 2.0, 4/15)
    assert float(est["ipw"]) == pytest.approx((1.6 + 4 / 15) / 4, rel=1e-5)
    assert float(est["snipw"]) == pytest.approx((1.6 + 4 / 15) / (4 + 4 / 15), rel=1e-5)
    assert float(est["dr"]) == pytest.approx(0.45 + (0.8 - 0.1 - 1.0 + 0.2) / 4, rel=1e-5)


def test_vector_rewards_give_per_objective_estimates():
    reward = np.stack([R_LOG, 2 * R_LOG], axis=1)
    q_hat = np.stack([Q_HAT, 2 * Q_HAT], axis=-1)
    est = ope.estimate(tiny_inputs(reward, q_hat))
    scalar = ope.estimate(tiny_inputs())
    for k in ope.ESTIMATORS:
        assert est[k].shape == (2,)
        np.testing.assert_allclose(est[k], [scalar[k], 2 * scalar[k]], rtol=1e-5)


def test_by_position_and_sample_weights():
    pos = np.array([0, 1, 0, 1])
    pi = np.tile(PI_E, (1, 1, 2))
    inp = ope.make_inputs(pi, A_LOG, pos, P_LOG, R_LOG, np.tile(Q_HAT, (1, 1, 2)))
    byp = ope.estimate_by_position(inp, 2)
    # position 0 holds rows 0 and 2: IPS = (1.6*1 + 3.2*0)/2
    assert float(byp["ipw"][0]) == pytest.approx(0.8, rel=1e-5)
    assert float(byp["ipw"][1]) == pytest.approx((4 / 15) / 2, rel=1e-5)
    # integer sample weights equal duplicated rows
    dup = ope.make_inputs(
        np.concatenate([pi, pi[:1]]), np.r_[A_LOG, A_LOG[0]], np.r_[pos, pos[0]],
        np.r_[P_LOG, P_LOG[0]], np.r_[R_LOG, R_LOG[0]], np.tile(Q_HAT, (1, 1, 2))[[0, 1, 2, 3, 0]])
    a = ope.estimate(inp, sample_weight=jnp.array([2.0, 1, 1, 1]))
    b = ope.estimate(dup)
    for k in ope.ESTIMATORS:
        assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-5), k


def test_empirical_reward_model_by_hand():
    a = np.array([0, 0, 0, 1])
    r = np.array([1.0, 1.0, 0.0, 0.0])
    q = reward_models.empirical_reward_model(a, np.zeros(4, int), r, num_actions=2, prior_strength=2.0)
    assert q.shape == (4, 2, 1)
    np.testing.assert_allclose(q[0, :, 0], [(2 + 1) / 5, 1 / 3], rtol=1e-5)
    # cross-fitting: fold 0 (rows 0, 2) learns from rows 1 (a=0, r=1) and 3 (a=1, r=0)
    qf = reward_models.empirical_reward_model(a, np.zeros(4, int), r, num_actions=2, prior_strength=0.0,
                                    fold=np.array([0, 1, 0, 1]), num_folds=2)
    np.testing.assert_allclose(qf[0, :, 0], [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(qf[1, :, 0], [0.5, 0.0], atol=1e-6)  # rows 0, 2: a=0, r=(1, 0)


# ---- unbiasedness on a synthetic logged bandit with a known value ----------

MU = jnp.array([0.2, 0.5, 0.7, 0.4])
PI_B = jnp.array([0.4, 0.3, 0.2, 0.1])
PI_EVAL = jnp.array([0.1, 0.2, 0.6, 0.1])
N_ROWS, N_SEEDS = 200, 2000


@jax.jit
def synthetic_estimates(keys):
    def one(key):
        ka, kr = jax.random.split(key)
        a = jax.random.categorical(ka, jnp.log(PI_B), shape=(N_ROWS,))
        r = jax.random.bernoulli(kr, MU[a]).astype(jnp.float32)
        dist = jnp.broadcast_to(PI_EVAL[None, :, None], (N_ROWS, 4, 1))
        wrong_q = jnp.full((N_ROWS, 4, 1), 0.3)  # a deliberately wrong model
        inp = ope.make_inputs(dist, a, jnp.zeros(N_ROWS, jnp.int32), PI_B[a], r, wrong_q)
        return ope.estimate(inp)

    return jax.vmap(one)(keys)


@pytest.fixture(scope="module")
def synthetic():
    return jax.tree.map(np.asarray, synthetic_estimates(jax.random.split(jax.random.key(0), N_SEEDS)))


@pytest.mark.parametrize("name", ["ipw", "dr"])
def test_ipw_and_dr_are_unbiased(synthetic, name):
    true_value = float(jnp.sum(PI_EVAL * MU))
    est = synthetic[name]
    se = est.std(ddof=1) / np.sqrt(N_SEEDS)
    assert abs(est.mean() - true_value) < 4 * se, (est.mean(), true_value, se)


def test_dm_with_wrong_model_is_biased(synthetic):
    # the check above can fail: DM with q = 0.3 is far from the true value 0.56
    true_value = float(jnp.sum(PI_EVAL * MU))
    est = synthetic["dm"]
    assert abs(est.mean() - true_value) > 0.2


def test_bootstrap_se_matches_analytic_ipw_se():
    key = jax.random.key(1)
    n = 500
    ka, kr, kb = jax.random.split(key, 3)
    a = jax.random.categorical(ka, jnp.log(PI_B), shape=(n,))
    r = jax.random.bernoulli(kr, MU[a]).astype(jnp.float32)
    dist = jnp.broadcast_to(PI_EVAL[None, :, None], (n, 4, 1))
    inp = ope.make_inputs(dist, a, jnp.zeros(n, jnp.int32), PI_B[a], r)
    res = ope.bootstrap(inp, kb, num_samples=400, batch_size=64)
    wr = np.asarray(inp.weight * r)
    analytic = wr.std(ddof=1) / np.sqrt(n)
    b = res["ipw"]
    assert b.samples.shape == (400,)
    # the SE of a bootstrap SE from B=400 replicates is about 1/sqrt(2B) = 3.5% relative
    assert float(b.se) == pytest.approx(analytic, rel=0.15)
    assert float(b.low) < float(b.estimate) < float(b.high)


# ---- bad input ---------------------------------------------------------------

@pytest.mark.parametrize(
    "pscore, action, match",
    [
        ([0.5, 0.0, 0.5, 0.5], A_LOG, r"row 1: propensity 0.0 must be in \(0, 1\]"),
        ([0.5, -0.1, 0.5, 0.5], A_LOG, r"row 1: propensity -0.1"),
        ([0.5, 0.5, 1.5, 0.5], A_LOG, r"row 2: propensity 1.5"),
        (P_LOG, [0, 1, 2, 1], r"row 2: action 2 outside the item range 0..1"),
    ],
)
def test_bad_logs(pscore, action, match):
    with pytest.raises(ConfigError, match=match):
        ope.check_logged(np.array(action), R_LOG, np.array(pscore), num_actions=2)


def test_bad_positions_and_lengths():
    with pytest.raises(ConfigError, match="position 3 outside"):
        ope.check_logged(A_LOG, R_LOG, P_LOG, np.array([0, 3, 0, 0]), num_actions=2, num_positions=3)
    with pytest.raises(ConfigError, match="must share n"):
        ope.check_logged(A_LOG, R_LOG[:3], P_LOG, num_actions=2)


def test_action_dist_must_sum_to_one():
    bad = PI_E.copy()
    bad[2, 0, 0] = 0.7
    with pytest.raises(ConfigError, match="row 2, position 0 sums to 0.900000"):
        ope.check_action_dist(bad)
    neg = PI_E.copy()
    neg[1, 1, 0] = -0.2
    with pytest.raises(ConfigError, match=r"action_dist\[1, 1, 0\]"):
        ope.check_action_dist(neg)
    ope.check_action_dist(PI_E)


def test_unsupported_mass_warns_with_share():
    behavior = np.array([0.5, 0.5, 0.0])[None, :, None]
    evaluation = np.array([0.6, 0.2, 0.2])[None, :, None]
    with pytest.warns(ope.OPESupportWarning, match=r"20.00% of its mass .* IPS, SNIPS, DR"):
        share = ope.check_support(evaluation, behavior)
    assert share == pytest.approx(0.2)


def test_bootstrap_bad_arguments():
    with pytest.raises(ConfigError, match="bootstrap.num_samples"):
        ope.bootstrap(tiny_inputs(), jax.random.key(0), num_samples=1)
    with pytest.raises(ConfigError, match="bootstrap.alpha"):
        ope.bootstrap(tiny_inputs(), jax.random.key(0), alpha=1.5)


def test_logistic_reward_model_recovers_click_probabilities():
    key = jax.random.key(3)
    kt, ka, kr = jax.random.split(key, 3)
    n = 20_000
    types = jax.random.randint(kt, (n,), 0, 2)
    x = jax.nn.one_hot(types, 2)
    a = jax.random.randint(ka, (n,), 0, 3)
    probs = jnp.array([[0.2, 0.5, 0.3], [0.6, 0.2, 0.4]])  # [type, action]
    r = jax.random.bernoulli(kr, probs[types, a]).astype(jnp.float32)
    pos = jnp.zeros(n, jnp.int32)
    params = reward_models.fit_logistic_reward_model(x, a, pos, r, num_actions=3, l2=0.1, steps=500)
    policy = jnp.full((3, 1), 1 / 3)
    inp = reward_models.logistic_inputs(params, x, policy, a, pos, jnp.full(n, 1 / 3), r)
    # q at the logged action: compare cell means of predictions with the truth
    q = np.asarray(inp.q_logged)
    for t in range(2):
        for act in range(3):
            cell = (np.asarray(types) == t) & (np.asarray(a) == act)
            assert q[cell].mean() == pytest.approx(float(probs[t, act]), abs=0.04)
    # on-policy sanity: DM of the logging policy itself is close to the mean reward
    est = ope.estimate(inp)
    assert float(est["dm"]) == pytest.approx(float(r.mean()), abs=0.01)
    assert float(est["ipw"]) == pytest.approx(float(r.mean()), rel=1e-5)


def test_dr_os_and_grid_by_hand():
    # w = (1.6, 0.4, 3.2, 4/15); residuals r - q = (0.5, -0.25, -0.5, 0.75)
    w = np.array([1.6, 0.4, 3.2, 4 / 15])
    resid = np.array([0.5, -0.25, -0.5, 0.75])
    specs = ope.obp_estimators(switch_taus=(1.0, 2.0), os_lambdas=(0.0, 4.0), clip_lambdas=(2.0,))
    est = ope.estimate_specs(tiny_inputs(), specs)
    lam = 4.0
    assert float(est["dr_os_l4"]) == pytest.approx(0.45 + np.mean(lam * w / (w ** 2 + lam) * resid), rel=1e-5)
    assert float(est["dr_os_l0"]) == pytest.approx(0.45, rel=1e-6)  # obp's default: DM
    assert float(est["switch_dr_t2"]) == pytest.approx(0.45 + np.mean((w <= 2) * w * resid), rel=1e-5)
    assert float(est["dr_clip_l2"]) == pytest.approx(0.45 + np.mean(np.minimum(w, 2) * resid), rel=1e-5)
    assert [s.name for s in specs][:5] == ["ipw", "snipw", "dm", "dr", "sndr"]
    assert "obp default" in specs[5].label and "obp default" in specs[7].label
    # lambda -> infinity is DR
    np.testing.assert_allclose(ope.shrink_weights(w, np.inf), w, rtol=1e-6)
    with pytest.raises(ConfigError, match="shrink_lambda must be >= 0"):
        ope.obp_estimators(os_lambdas=(-1.0,))


def test_obp_logistic_solves_sklearns_problem():
    """Newton's fixed point: the gradient of C * sum(logloss) + |w|^2 / 2 vanishes (per position and fold)."""
    rng = np.random.default_rng(0)
    n, A = 600, 4
    x = (rng.random((n, 3)) < 0.5).astype(np.float32)
    ac = rng.normal(size=(A, 2)).astype(np.float32)
    a = rng.integers(0, A, n)
    k = rng.integers(0, 2, n)
    logit = -1.0 + x @ np.array([1.0, -0.5, 0.3]) + ac[a] @ np.array([0.8, -0.4]) + 0.5 * k
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    fold = reward_models.kfold_ids(0, n, 2)
    assert np.bincount(fold).tolist() == [300, 300]
    p = reward_models.fit_obp_logistic(x, ac, a, k, y, num_positions=2, fold=fold, num_folds=2, C=10.0)
    z = np.c_[x, ac[a]]
    for f in range(2):
        for pos in range(2):
            m = (fold != f) & (k == pos)
            s = z[m] @ np.asarray(p.w[f, pos]) + float(p.b[f, pos])
            resid = 1 / (1 + np.exp(-s)) - y[m]
            grad_w = 10.0 * z[m].T @ resid + np.asarray(p.w[f, pos])
            grad_b = 10.0 * resid.sum()
            assert np.abs(grad_w).max() < 1e-2 and abs(grad_b) < 1e-2, (f, pos, grad_w, grad_b)
    q = np.asarray(reward_models.predict_obp_logistic(p, x, ac, fold))
    assert q.shape == (n, A, 2)
    inp = reward_models.obp_logistic_inputs(p, x, ac, np.full((A, 2), 1 / A), a, k, np.full(n, 1 / A), y, fold)
    np.testing.assert_allclose(inp.q_logged, q[np.arange(n), a, k], rtol=1e-5)


def test_slate_size_mismatch_and_bad_slates_name_the_field():
    from mtrlrec.eval.ope_checks import check_slate_log

    slates = np.array([[0, 1], [2, 1]])
    ok = dict(num_items=3, slate_size=2)
    check_slate_log(slates, np.array([0.5, 0.5]), np.zeros((2, 2)), **ok)
    with pytest.raises(ConfigError, match="slate size 2 differs from the policy's slate_size 3"):
        check_slate_log(slates, np.array([0.5, 0.5]), np.zeros((2, 2)), num_items=3, slate_size=3)
    with pytest.raises(ConfigError, match=r"slates\[1, 0\] = 5 outside the item range 0..2"):
        check_slate_log(np.array([[0, 1], [5, 1]]), np.array([0.5, 0.5]), np.zeros((2, 2)), **ok)
    with pytest.raises(ConfigError, match=r"pscore\[1\] = 0.0 must be in \(0, 1\]"):
        check_slate_log(slates, np.array([0.5, 0.0]), np.zeros((2, 2)), **ok)
    with pytest.raises(ConfigError, match=r"pscore\[0, 1\] = 1.5 must be in \(0, 1\]"):
        check_slate_log(slates, np.array([[0.5, 1.5], [1, 1]]), np.zeros((2, 2)), **ok)


def test_switch_threshold_decided_as_in_float64():
    """Weights equal to tau up to float32 rounding: NumPy inputs decide w <= tau as float64 does."""
    n, a = 6, 46
    pscore = np.array([1 / 46 * (1 + 1e-8), 1 / 46 * (1 - 1e-8)] * 3)  # w64 just below / above 1
    dist = np.full((n, a, 1), 1 / 46)
    action = np.zeros(n, int)
    reward = np.ones(n)
    inp = ope.make_inputs(dist, action, np.zeros(n, int), pscore, reward)
    w64 = (1 / 46) / pscore
    keep = w64 <= 1.0
    expected = np.mean(np.where(keep, w64 * reward, 0.0))  # q_hat = 0: switch-DR = sum of kept terms
    est = float(ope.estimate(inp, switch_tau=1.0)["switch_dr"])
    assert keep.tolist() == [True, False] * 3
    assert est == pytest.approx(expected, rel=1e-6)
    # without the float64 remainder float32 cannot tell the two kinds of rows apart
    same = np.asarray(inp.weight)
    assert same[0] == same[1]
