"""Bandit environments: reward distributions, regret info, non-stationarity,
two-objective rewards, task distributions and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.core.wrappers import ScalarizeReward
from mtrlrec.envs import bandits as E

N = 4000  # vmapped steps per check


def _rewards(env, params, action, n=N, state=None):
    """``n`` independent rewards of ``action`` from the initial state."""
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    _, s0 = env.reset_env(jax.random.PRNGKey(1), params)
    step = jax.jit(jax.vmap(lambda k: env.step_env(k, s0, jnp.int32(action), params)))
    _, _, r, term, trunc, info = step(keys)
    return np.asarray(r), info, np.asarray(term), np.asarray(trunc)


def test_bernoulli_rewards_and_regret():
    env = E.BernoulliBandit(3, means=[0.2, 0.5, 0.7])
    r, info, term, trunc = _rewards(env, env.default_params(), 1)
    assert abs(r.mean() - 0.5) <= 5 * np.sqrt(0.25 / N)
    assert set(np.unique(r)) <= {0.0, 1.0}
    np.testing.assert_allclose(np.asarray(info["regret"]), 0.2, atol=1e-6)
    assert not term.any() and not trunc.any() and not env.episodic
    _, info, _, _ = _rewards(env, env.default_params(), 2, n=4)
    np.testing.assert_allclose(np.asarray(info["optimal_action"]), 1.0)


def test_chapelle_li_means_best_arm_last():
    env = E.BernoulliBandit(4, gap=0.1)
    np.testing.assert_allclose(env.means, [0.4, 0.4, 0.4, 0.5])
    np.testing.assert_allclose(E.BernoulliBandit(3).means, [0.1, 0.5, 0.9])


def test_gaussian_rewards():
    env = E.GaussianBandit(2, means=[1.0, -0.5], noise_std=2.0)
    r, info, _, _ = _rewards(env, env.default_params(), 1)
    assert abs(r.mean() + 0.5) <= 5 * 2.0 / np.sqrt(N)
    assert abs(r.std() - 2.0) <= 5 * 2.0 / np.sqrt(2 * N)
    np.testing.assert_allclose(np.asarray(info["regret"]), 1.5)


def test_drifting_means_random_walk():
    env = E.DriftingBandit(3, drift_std=0.1, reward_type="gaussian")
    params = env.default_params()
    _, s = env.reset_env(jax.random.PRNGKey(0), params)

    def body(s, k):
        _, s, _, _, _, _ = env.step_env(k, s, jnp.int32(0), params)
        return s, None

    run = jax.jit(jax.vmap(lambda k: jax.lax.scan(body, s, jax.random.split(k, 100))[0].means))
    m = np.asarray(run(jax.random.split(jax.random.PRNGKey(1), 2000)))  # [2000, 3]
    # After 100 steps each mean is N(0, 100 * 0.01): variance 1.
    assert abs(m.mean()) <= 5 * 1.0 / np.sqrt(m.size)
    assert abs(m.var() - 1.0) <= 5 * np.sqrt(2.0 / m.size)
    bern = E.DriftingBandit(3, drift_std=0.5, reward_type="bernoulli")
    _, sb = bern.reset_env(jax.random.PRNGKey(0), bern.default_params())
    _, sb, _, _, _, _ = bern.step_env(jax.random.PRNGKey(2), sb, 0, bern.default_params())
    assert np.all((np.asarray(sb.means) >= 0) & (np.asarray(sb.means) <= 1))


def test_switching_rate():
    env = E.SwitchingBandit(4, hazard=0.2)
    _, _, _, _ = None, None, None, None
    r, info, _, _ = _rewards(env, env.default_params(), 0)
    sw = np.asarray(info["switched"])
    assert abs(sw.mean() - 0.2) <= 5 * np.sqrt(0.16 / N)


def test_click_conversion_vector_reward():
    env = E.ClickConversionBandit(2, click=[0.5, 0.2], conversion=[0.2, 1.0],
                                  regret_weights=[1.0, 5.0])
    r, info, _, _ = _rewards(env, env.default_params(), 0)
    assert r.shape == (N, 2) and env.reward_names == ("click", "conversion")
    assert np.all(r[:, 1] <= r[:, 0])  # no conversion without a click
    assert abs(r[:, 0].mean() - 0.5) <= 5 * np.sqrt(0.25 / N)
    assert abs(r[:, 1].mean() - 0.1) <= 5 * np.sqrt(0.09 / N)
    # values: 0.5 + 5*0.1 = 1.0 vs 0.2 + 5*0.2 = 1.2 -> arm 0 has regret 0.2.
    np.testing.assert_allclose(np.asarray(info["regret"]), 0.2, atol=1e-6)
    scalar = ScalarizeReward(env, [1.0, 5.0])
    _, _, rs, _, _, info = scalar.step_env(jax.random.PRNGKey(0), scalar.reset_env(
        jax.random.PRNGKey(0), env.default_params())[1], 0, env.default_params())
    assert np.ndim(rs) == 0 and "reward/conversion" in info


def test_task_distribution():
    for kind, a, b, mean, var in [("uniform", 0.0, 1.0, 0.5, 1 / 12), ("beta", 2.0, 3.0, 0.4, 0.04),
                                  ("normal", 0.0, 1.0, 0.0, 1.0)]:
        dist = E.BanditTaskDistribution(5, kind, a, b)
        p = dist.sample(jax.random.PRNGKey(0), 2000)
        m = np.asarray(p.means)
        assert m.shape == (2000, 5)
        assert abs(m.mean() - mean) <= 5 * np.sqrt(var / m.size)
    env = E.BernoulliBandit(5)
    env.check_params(E.BanditTaskDistribution(5).sample(jax.random.PRNGKey(0), 3))


@pytest.mark.parametrize("make, match", [
    (lambda: E.BernoulliBandit(1), "BernoulliBandit.num_arms must be >= 2"),
    (lambda: E.BernoulliBandit(2, means=[-0.1, 0.5]), r"BernoulliBandit.means\[0\] must be >= 0"),
    (lambda: E.BernoulliBandit(2, means=[0.1]), "BernoulliBandit.means must have 2 entries"),
    (lambda: E.BernoulliBandit(2, means=[float("nan"), 0.5]), "got NaN"),
    (lambda: E.BernoulliBandit(3, gap=0.7), "BernoulliBandit.gap must be <= 0.5"),
    (lambda: E.GaussianBandit(2, noise_std=-1.0), "GaussianBandit.noise_std must be >= 0"),
    (lambda: E.DriftingBandit(2, reward_type="poisson"), "DriftingBandit.reward_type"),
    (lambda: E.SwitchingBandit(2, hazard=1.5), "SwitchingBandit.hazard must be <= 1"),
    (lambda: E.ClickConversionBandit(2, click=[0.1, 1.2]), r"ClickConversionBandit.click\[1\]"),
    (lambda: E.BanditTaskDistribution(5, "beta", 0.0, 1.0), "BanditTaskDistribution.a must be > 0"),
    (lambda: E.BanditTaskDistribution(5, "cauchy"), "BanditTaskDistribution.kind"),
])
def test_bad_input(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_bad_params_fail_before_compilation():
    env = E.BernoulliBandit(3)
    with pytest.raises(ConfigError, match=r"must lie in \[0.0, 1.0\]"):
        env.check_params(E.BanditParams(means=jnp.asarray([0.1, 0.2, 1.3])))
    with pytest.raises(ConfigError, match=r"expected \[..., 3\]"):
        env.check_params(E.BanditParams(means=jnp.asarray([0.1, 0.2])))
