"""Contextual bandits: generative models, exact optimum/regret, bad input."""

import glob

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.envs.contextual import (
    LinearGaussianBandit, LogisticBandit, WheelBandit, wheel_means, wheel_uniform_regret,
)
from tests.conftest import REPO

N = 20_000  # samples for statistical checks


@pytest.fixture(scope="module")
def wheel_samples():
    """N contexts of the wheel bandit and their arm means at δ = 0.7, one compile."""
    env = WheelBandit(delta=0.7)
    params = env.default_params()
    keys = jax.random.split(jax.random.PRNGKey(0), N)
    x = jax.jit(jax.vmap(env._context))(keys)
    means = jax.jit(jax.vmap(lambda c: wheel_means(c, params)))(x)
    return np.asarray(x), np.asarray(means)


def test_wheel_means_by_hand():
    p = WheelBandit(delta=0.5).default_params()
    inside = np.asarray(wheel_means(jnp.array([0.1, -0.2]), p))
    np.testing.assert_allclose(inside, [1.2, 1.0, 1.0, 1.0, 1.0], rtol=1e-6)
    # outside: quadrant arms 1 (+,+), 2 (+,-), 3 (-,+), 4 (-,-)
    for x, arm in [((0.6, 0.6), 1), ((0.6, -0.6), 2), ((-0.6, 0.6), 3), ((-0.6, -0.6), 4)]:
        m = np.asarray(wheel_means(jnp.array(x), p))
        assert m[arm] == pytest.approx(50.0) and m[0] == pytest.approx(1.2)
        assert np.sum(m == 50.0) == 1


def test_wheel_contexts_uniform_in_disc(wheel_samples):
    x, _ = wheel_samples
    r2 = np.sum(x**2, 1)
    assert r2.max() <= 1.0 + 1e-6
    # P(||x|| <= δ) = δ² for the uniform distribution on the disc.
    inside = r2 <= 0.7**2
    se = np.sqrt(0.49 * 0.51 / N)
    assert abs(inside.mean() - 0.49) < 4 * se
    # each quadrant has probability 1/4
    q = (x[:, 0] > 0) * 2 + (x[:, 1] > 0)
    for k in range(4):
        assert abs(np.mean(q == k) - 0.25) < 4 * np.sqrt(0.25 * 0.75 / N)


def test_wheel_uniform_regret_is_exact(wheel_samples):
    _, means = wheel_samples
    per_round = means.max(1) - means.mean(1)
    se = per_round.std() / np.sqrt(N)
    assert abs(per_round.mean() - wheel_uniform_regret(0.7)) < 4 * se


def test_wheel_step_regret_and_noise():
    env = WheelBandit(delta=0.5)
    params = env.default_params()
    obs, state = env.reset(jax.random.PRNGKey(1), params)
    means = np.asarray(wheel_means(obs, params))
    best = int(np.argmax(means))
    _, state2, r, term, trunc, info = env.step(jax.random.PRNGKey(2), state, best, params)
    assert float(info["regret"]) == 0.0 and float(info["optimal_action"]) == 1.0
    assert abs(float(r) - means[best]) < 0.1  # σ = 0.01
    worst = int(np.argmin(means))
    _, _, _, _, _, info = env.step(jax.random.PRNGKey(2), state, worst, params)
    assert float(info["regret"]) == pytest.approx(means.max() - means.min(), rel=1e-5)
    assert not bool(term) and not bool(trunc) and int(state2.t) == 1


def test_linear_and_logistic_models():
    env = LinearGaussianBandit(dim=3, num_arms=4, noise_std=0.5)
    p = env.default_params()
    x = jnp.array([1.0, -1.0, 0.5])
    np.testing.assert_allclose(env.mean_rewards(x, p), np.asarray(p.theta) @ np.asarray(x),
                               rtol=1e-5, atol=1e-6)
    # reward = mean + σ ε: the sample mean over many keys matches within 4 SE.
    _, state = env.reset(jax.random.PRNGKey(0), p)
    keys = jax.random.split(jax.random.PRNGKey(3), 4000)
    r = jax.vmap(lambda k: env.step_env(k, state, 2, p)[2])(keys)
    mu = float(env.mean_rewards(state.context, p)[2])
    assert abs(float(r.mean()) - mu) < 4 * 0.5 / np.sqrt(4000)
    assert float(r.std()) == pytest.approx(0.5, rel=0.1)
    logit = LogisticBandit(dim=3, num_arms=4, base_logit=-2.0)
    lp = logit.default_params()
    np.testing.assert_allclose(logit.mean_rewards(x, lp),
                               jax.nn.sigmoid(lp.theta @ x - 2.0), rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(delta=0.0), "WheelBandit.delta must be > 0.0"),
    (dict(delta=1.0), "WheelBandit.delta must be < 1.0"),
    (dict(delta=1.5), "WheelBandit.delta"),
    (dict(std=0.0), "WheelBandit.std must be > 0"),
    (dict(mu_3=1.1), "mu_3 > mu_1 > mu_2"),
])
def test_wheel_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        WheelBandit(**kwargs)


def test_linear_bad_input():
    with pytest.raises(ConfigError, match="LinearGaussianBandit.noise_std must be > 0"):
        LinearGaussianBandit(noise_std=0.0)
    with pytest.raises(ConfigError, match="LinearGaussianBandit.num_arms must be >= 2"):
        LinearGaussianBandit(num_arms=1)
    with pytest.raises(ConfigError, match="LogisticBandit.dim must be >= 1"):
        LogisticBandit(dim=0)
    env = LinearGaussianBandit(dim=3, num_arms=4)
    bad = env.default_params().replace(theta=jnp.zeros((4, 5)))
    with pytest.raises(ConfigError, match="context dimension mismatch"):
        env.check_params(bad)
    with pytest.raises(ConfigError, match="WheelBandit.delta"):
        WheelBandit().check_params(WheelBandit().default_params().replace(delta=jnp.float32(1.0)))


def test_contextual_experiment_files_build():
    """Every experiment file of this issue parses and builds (no compilation)."""
    from mtrlrec.experiment import build
    import gin

    files = sorted(glob.glob(str(REPO / "experiments" / "contextual" / "*.gin")))
    files += sorted(glob.glob(str(REPO / "experiments" / "pricing" / "*.gin")))
    files += sorted(glob.glob(str(REPO / "experiments" / "ads" / "*.gin")))
    assert len(files) >= 10
    for f in files:
        if f.endswith("base.gin"):
            continue
        gin.clear_config()
        exp = build([f])
        assert callable(exp.runner)


def test_logistic_click_frequency():
    env = LogisticBandit(dim=3, num_arms=4, base_logit=-1.0)
    p = env.default_params()
    _, state = env.reset(jax.random.PRNGKey(0), p)
    keys = jax.random.split(jax.random.PRNGKey(4), 8000)
    r = np.asarray(jax.vmap(lambda k: env.step_env(k, state, 1, p)[2])(keys))
    mu = float(env.mean_rewards(state.context, p)[1])
    assert set(np.unique(r)) <= {0.0, 1.0}
    assert abs(r.mean() - mu) < 4 * np.sqrt(mu * (1 - mu) / len(r))
