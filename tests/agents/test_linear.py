"""Linear and neural-linear agents: rank-one algebra, closed forms, learning, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.runners.online import OnlineRunner
from mtrlrec.runners.summaries import wheel_summary
from mtrlrec.train.contextual import run_contextual
from mtrlrec.agents.linear import (
    ContextualUniform, LinTS, LinUCB, cholesky_rank1_update, nig_from_data, nig_mean_values,
    nig_observe, nig_prior, nig_sample_values, sherman_morrison,
)
from mtrlrec.agents.neural import NeuralEpsilonGreedy, NeuralLinear
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.spaces import Box, Discrete
from mtrlrec.core.types import Transition
from mtrlrec.envs.contextual import LinearGaussianBandit, WheelBandit
from mtrlrec.train import loop
from mtrlrec.train.result import RunContext

D, K = 4, 3
OBS, ACT = Box(-jnp.inf, jnp.inf, (D,)), Discrete(K)


def _data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    a = rng.integers(0, K, n)
    r = rng.normal(size=n).astype(np.float32)
    return x, a, r


def _tr(x, a, r):
    return Transition(jnp.asarray(x), jnp.int32(a), jnp.float32(r), jnp.asarray(x),
                      jnp.bool_(False), jnp.bool_(False), {}, {})


def _scan_updates(agent, state, x, a, r):
    """Applies ``agent.observe`` to a batch of transitions in one compiled scan."""
    def body(st, d):
        return agent.observe(None, st, _tr(d[0], d[1], d[2])), None
    xs = (jnp.asarray(x), jnp.asarray(a, jnp.int32), jnp.asarray(r))
    return jax.jit(lambda s0: jax.lax.scan(body, s0, xs)[0])(state)


def test_rank_one_updates_match_direct_computation():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 5))
    a = m @ m.T + np.eye(5)
    x = rng.normal(size=5)
    np.testing.assert_allclose(sherman_morrison(jnp.asarray(np.linalg.inv(a), jnp.float32),
                                                jnp.asarray(x, jnp.float32)),
                               np.linalg.inv(a + np.outer(x, x)), rtol=1e-4, atol=1e-5)
    l2 = np.asarray(cholesky_rank1_update(jnp.asarray(np.linalg.cholesky(a), jnp.float32),
                                          jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(l2 @ l2.T, a + np.outer(x, x), rtol=1e-4, atol=1e-4)
    assert np.allclose(np.triu(l2, 1), 0.0)


def test_linucb_matches_ridge_closed_form():
    agent = LinUCB(alpha=0.7, regularization=2.0, fit_intercept=False)
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT)
    x, a, r = _data()
    state = _scan_updates(agent, state, x, a, r)
    q = np.array([0.5, -1.0, 0.2, 1.0])
    scores = np.asarray(agent.scores(state, jnp.asarray(q)))
    for k in range(K):
        xa = x[a == k]
        A = 2.0 * np.eye(D) + xa.T @ xa
        theta = np.linalg.solve(A, xa.T @ r[a == k])
        ucb = theta @ q + 0.7 * np.sqrt(q @ np.linalg.solve(A, q))
        assert scores[k] == pytest.approx(ucb, rel=1e-4, abs=1e-4)


def test_nig_posterior_matches_batch_and_sampling_mean():
    x, a, r = _data(n=40)
    post = jax.jit(lambda p0, xs: jax.lax.scan(
        lambda p, d: (nig_observe(p, d[1], d[0], d[2]), None), p0, xs)[0])(
        nig_prior(K, D, 0.25), (jnp.asarray(x), jnp.asarray(a, jnp.int32), jnp.asarray(r)))
    batch = nig_from_data(jnp.asarray(x), jnp.asarray(a), jnp.asarray(r),
                          jnp.ones(len(a), bool), K, 0.25)
    for f in ("xy", "yy", "n"):
        np.testing.assert_allclose(getattr(post, f), getattr(batch, f), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(post.cov, batch.cov, rtol=1e-3, atol=1e-4)
    q = jnp.array([0.5, -1.0, 0.2, 1.0])
    mean = np.asarray(nig_mean_values(post, q))
    for k in range(K):
        xa = x[a == k]
        mu = np.linalg.solve(0.25 * np.eye(D) + xa.T @ xa, xa.T @ r[a == k])
        assert mean[k] == pytest.approx(mu @ np.asarray(q), rel=1e-4, abs=1e-4)
    # Thompson samples average to the posterior mean (4 SE over 4000 draws).
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    s = np.asarray(jax.vmap(lambda k: nig_sample_values(k, post, q, 6.0, 6.0))(keys))
    assert np.all(np.abs(s.mean(0) - mean) < 4 * s.std(0) / np.sqrt(4000))


def test_lints_round_robin_then_samples():
    agent = LinTS(initial_pulls=2)
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT)
    x = jnp.ones(D)
    for t in range(2 * K):
        a, state, _ = agent.act(jax.random.PRNGKey(t), state, x)
        assert int(a) == t % K
        state = agent.observe(None, state, _tr(np.ones(D), int(a), 1.0))


@pytest.fixture(scope="module")
def linear_runs():
    """LinUCB, LinTS and uniform on a small linear-Gaussian bandit, 16 seeds x 1000 steps."""
    env = LinearGaussianBandit(dim=D, num_arms=K, noise_std=0.3)
    out = {}
    for name, agent in [("linucb", LinUCB()), ("lints", LinTS(fit_intercept=True)),
                        ("uniform", ContextualUniform())]:
        out[name] = run_contextual(env, agent, num_steps=1000, num_seeds=16, block=100)
    return out


def test_linear_agents_learn(linear_runs):
    reg = {k: v["regret"].sum(-1) for k, v in linear_runs.items()}
    for name in ("linucb", "lints"):
        diff = reg["uniform"] - reg[name]
        # far below uniform (paired over seeds, tolerance from the standard error)
        assert diff.mean() - 4 * diff.std() / 4 > 0.5 * reg["uniform"].mean()
        # and sub-linear: the last block pays less than the first
        late = linear_runs[name]["regret"][:, -1] - linear_runs[name]["regret"][:, 0]
        assert late.mean() + 4 * late.std() / 4 < 0


def test_run_contextual_reproduces_the_common_loop(linear_runs):
    env = LinearGaussianBandit(dim=D, num_arms=K, noise_std=0.3)
    ref = loop.run(env, LinUCB(), num_steps=1000, num_seeds=16, log_every=100)
    np.testing.assert_allclose(np.cumsum(linear_runs["linucb"]["regret"], -1),
                               ref.metrics["cumulative_regret"], rtol=1e-4, atol=1e-3)


def test_neural_agents_on_the_wheel():
    """Smoke: both neural agents run in the block loop and train (learning: the slow test)."""
    ctx = RunContext(num_seeds=2, seed=0)
    small = dict(hidden_sizes=(8,), train_every=50, train_steps=20, batch_size=16,
                 buffer_size=300)
    for agent in (NeuralLinear(**small), NeuralEpsilonGreedy(**small)):
        res = OnlineRunner(WheelBandit(), agent, num_steps=300, log_every=50,
                           hparams={"env.delta": [0.5]}, summary=wheel_summary)(ctx)
        v = res.final["normalized_regret/0.5"]
        assert v.shape == (2,) and np.all(np.isfinite(v))
        assert res.curves["normalized_regret/0.5"].shape == (2, 6)


@pytest.mark.slow
def test_neural_linear_learns_the_wheel():
    """NeuralLinear beats the uniform policy (score 100) clearly at δ = 0.5, T = 2000."""
    res = OnlineRunner(WheelBandit(), NeuralLinear(buffer_size=2000), num_steps=2000, log_every=50,
                       hparams={"env.delta": [0.5]},
                       summary=wheel_summary)(RunContext(num_seeds=8, seed=0))
    v = res.final["normalized_regret/0.5"]
    assert v.mean() + 4 * v.std() / np.sqrt(8) < 60.0


def test_neural_learn_changes_params_and_posterior():
    agent = NeuralLinear(hidden_sizes=(8,), train_every=5, train_steps=3, batch_size=4,
                         buffer_size=10)
    obs = Box(-1.0, 1.0, (2,))
    state = agent.init(jax.random.PRNGKey(0), obs, Discrete(5))
    observe = jax.jit(lambda st, x, a: agent.observe(None, st, _tr(x, a, 1.0)))
    for t in range(5):
        state = observe(state, jnp.array([0.1 * t, 0.2]), jnp.int32(t))
    assert int(state.buffer.size) == 5 and float(state.post.n.sum()) == 5.0
    new, metrics = jax.jit(agent.learn)(jax.random.PRNGKey(1), state)
    assert float(metrics["loss"]) > 0
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.params, state.params)
    assert any(jax.tree.leaves(changed))
    np.testing.assert_allclose(new.post.n, np.ones(5))


@pytest.mark.parametrize("make, match", [
    (lambda: LinUCB(alpha=-1.0), "LinUCB.alpha must be >= 0"),
    (lambda: LinUCB(regularization=0.0), "LinUCB.regularization must be > 0"),
    (lambda: LinTS(a0=0.0), "LinTS.a0 must be > 0"),
    (lambda: LinTS(b0=-1.0), "LinTS.b0 must be > 0"),
    (lambda: LinTS(lambda_prior=0.0), "LinTS.lambda_prior must be > 0"),
    (lambda: NeuralLinear(hidden_sizes=()), "NeuralLinear.hidden_sizes must have"),
    (lambda: NeuralLinear(lambda_prior=-1.0), "NeuralLinear.lambda_prior must be > 0"),
    (lambda: NeuralEpsilonGreedy(epsilon=1.5), "NeuralEpsilonGreedy.epsilon must be <= 1"),
    (lambda: NeuralLinear(train_every=0), "NeuralLinear.train_every must be >= 1"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_bad_spaces_and_rewards():
    with pytest.raises(ConfigError, match="LinUCB needs a context vector"):
        LinUCB().check_compatible(Discrete(3), ACT)
    agent = LinTS()
    state = agent.init(jax.random.PRNGKey(0), OBS, ACT)
    vec = Transition(jnp.ones(D), jnp.int32(0), jnp.ones(2), jnp.ones(D), False, False, {}, {})
    with pytest.raises(ConfigError, match="set LinTS.reward_weights"):
        agent.observe(None, state, vec)
    with pytest.raises(ConfigError, match="LinTS.reward_weights has 3 entries"):
        LinTS(reward_weights=[1.0, 0.0, 0.0]).observe(None, state, vec)
    # a context of the wrong dimension is refused by the env/agent pairing
    env = LinearGaussianBandit(dim=D + 1, num_arms=K)
    with pytest.raises(ConfigError, match="context dimension mismatch"):
        env.check_params(env.default_params().replace(theta=jnp.zeros((K, D))))
