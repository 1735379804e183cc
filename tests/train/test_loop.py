"""The jitted loop: determinism, seeds, sweeps, resume, episodic metrics."""

import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents.bandits import EpsilonGreedy
from mtrlrec.core.errors import ConfigError
from mtrlrec.envs.bandits import BernoulliBandit
from mtrlrec.train import loop

ENV = BernoulliBandit(num_arms=5, means=[0.1, 0.3, 0.5, 0.7, 0.9])
AGENT = EpsilonGreedy(epsilon=0.1)
KW = dict(num_steps=200, log_every=20, num_chunks=2)


@pytest.fixture(scope="module")
def four_seeds():
    return loop.run(ENV, AGENT, num_seeds=4, **KW)


def test_shapes(four_seeds):
    m = four_seeds.metrics
    assert set(m) >= {"reward", "regret", "optimal_action", "cumulative_regret"}
    for v in m.values():
        assert v.shape == (4, 10)
    np.testing.assert_array_equal(four_seeds.steps, np.arange(20, 201, 20))


def test_cumulative_is_sum_of_window_means(four_seeds):
    m = four_seeds.metrics
    np.testing.assert_allclose(m["cumulative_regret"], np.cumsum(m["regret"] * 20, -1), rtol=1e-5)


def test_same_seed_identical_and_seeds_differ(four_seeds):
    again = loop.run(ENV, AGENT, num_seeds=4, **KW)
    for k in four_seeds.metrics:
        np.testing.assert_array_equal(again.metrics[k], four_seeds.metrics[k])
    reg = four_seeds.metrics["cumulative_regret"][:, -1]
    assert len(set(reg.tolist())) > 1
    other = loop.run(ENV, AGENT, num_seeds=4, seed=1, **KW)
    assert not np.array_equal(other.metrics["reward"], four_seeds.metrics["reward"])


def test_vmap_equals_one_by_one(four_seeds):
    # Bit for bit: window sums are accumulated per seed, not reduced over a batch.
    for i in range(4):
        one = loop.run(ENV, AGENT, num_seeds=1, seed_offset=i, **KW)
        for k in four_seeds.metrics:
            np.testing.assert_array_equal(one.metrics[k][0], four_seeds.metrics[k][i], err_msg=k)


def test_window_means_are_accurate_sums():
    # Noise-free Gaussian arms and UCB1: the trajectory does not depend on the keys,
    # so one-step windows give the per-step values, whose float64 sums are the
    # reference for the compensated float32 sums over windows of 1,000 steps.
    from mtrlrec.agents.bandits import UCB1
    from mtrlrec.envs.bandits import GaussianBandit

    env = GaussianBandit(5, means=[0.1234, 0.3, 0.5678, 0.7, 0.8765], noise_std=0.0)
    kw = dict(num_seeds=2, num_steps=2000, num_chunks=1)
    steps = loop.run(env, UCB1(), log_every=1, **kw).metrics
    windows = loop.run(env, UCB1(), log_every=1000, **kw).metrics
    for k in ("reward", "regret"):
        ref = steps[k].astype(np.float64).reshape(2, 2, 1000)
        np.testing.assert_allclose(windows[k], ref.mean(-1), rtol=2.5e-7, err_msg=k)  # 2 ulps: the sum and the division
    ref = steps["regret"].astype(np.float64).reshape(2, 2000).cumsum(-1)[:, 999::1000]
    np.testing.assert_allclose(windows["cumulative_regret"], ref, rtol=2.5e-7)


def test_sweep_equals_separate_runs():
    eps = [0.0, 0.3]
    swept = loop.run(ENV, AGENT, num_seeds=4, hparams={"epsilon": eps}, **KW)
    assert swept.metrics["reward"].shape == (2, 4, 10)
    for h, e in enumerate(eps):
        single = loop.run(ENV, EpsilonGreedy(epsilon=e), num_seeds=4, **KW)
        np.testing.assert_allclose(swept.metrics["cumulative_regret"][h],
                                   single.metrics["cumulative_regret"], rtol=1e-6)


def test_env_param_sweep():
    means = jnp.array([[0.1, 0.3, 0.5, 0.7, 0.9], [0.5, 0.5, 0.5, 0.5, 0.5]])
    swept = loop.run(ENV, AGENT, num_seeds=4, hparams={"env.means": means}, **KW)
    # with equal means there is no regret
    assert np.all(swept.metrics["cumulative_regret"][1] == 0)
    assert np.all(swept.metrics["cumulative_regret"][0][:, -1] > 0)


def test_resume_equals_uninterrupted(four_seeds):
    saved = {}

    def on_chunk(c, n, out):
        if c == 0:
            from flax import serialization
            import jax

            saved["carry"] = serialization.to_state_dict(jax.device_get(out.carry))
            saved["metrics"] = {k: v.copy() for k, v in out.metrics.items()}

    loop.run(ENV, AGENT, num_seeds=4, on_chunk=on_chunk, **KW)
    resumed = loop.run(ENV, AGENT, num_seeds=4,
                       resume=loop.LoopResume(saved["carry"], saved["metrics"], 5), **KW)
    for k in four_seeds.metrics:
        np.testing.assert_array_equal(resumed.metrics[k], four_seeds.metrics[k])


def test_bad_arguments():
    with pytest.raises(ConfigError, match="multiple of log_every"):
        loop.run(ENV, AGENT, num_steps=210, log_every=20)
    with pytest.raises(ConfigError, match="num_seeds"):
        loop.run(ENV, AGENT, num_steps=200, log_every=20, num_seeds=0)
    with pytest.raises(ConfigError, match="cannot sweep"):
        loop.run(ENV, AGENT, num_seeds=2, hparams={"epsilonn": [0.1, 0.2]}, **KW)


class _PeriodicCounter(EpsilonGreedy):
    """ε-greedy that also counts observe/learn calls, to test the periodic protocol."""

    learn_every = 5

    def init(self, key, obs_spec, action_spec):
        st = super().init(key, obs_spec, action_spec)
        return st.replace(t=jnp.int32(0)), jnp.zeros((2,), jnp.int32)

    def act(self, key, state, obs, *, greedy=False):
        action, _, info = super().act(key, state[0], obs, greedy=greedy)
        return action, state, info

    def observe(self, key, state, transition):
        st, n = state
        st = super().observe(key, st, transition)
        return st, n.at[0].add(1)

    def learn(self, key, state):
        st, n = state
        # learn sees exactly learn_every new observations since the last call
        n = n.at[1].add(jnp.where(n[0] == (n[1] + 1) * 5, 1, -1000))
        return (st, n), {"learn_calls": n[1].astype(jnp.float32)}


def test_periodic_learner_learns_between_blocks():
    out = loop.run(ENV, _PeriodicCounter(epsilon=0.1), num_seeds=3, **KW)
    counts = np.asarray(out.carry.agent_state[1])
    np.testing.assert_array_equal(counts, [[200, 40]] * 3)
    # learn's metrics: averaged over the 4 calls of each 20-step window (calls 1..4, 5..8, ...)
    np.testing.assert_array_equal(out.metrics["agent/learn_calls"][0], 2.5 + 4 * np.arange(10))
    with pytest.raises(ConfigError, match="multiple of the agent's learn_every=5"):
        loop.run(ENV, _PeriodicCounter(epsilon=0.1), num_steps=14, log_every=7)
