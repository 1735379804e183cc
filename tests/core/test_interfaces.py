"""The env/agent interfaces, spaces and wrappers."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents.bandits import EpsilonGreedy
from mtrlrec.core import spaces
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.wrappers import EpisodeStatistics, ScalarizeReward, TimeLimit
from mtrlrec.envs.bandits import BernoulliBandit


class CountdownEnv(Environment):
    """Terminates after ``n`` steps; reward vector (1, 2) per step."""

    reward_names = ("a", "b")

    def __init__(self, n=3):
        self.n = n

    def default_params(self):
        return None

    def reset_env(self, key, params):
        return jnp.float32(0.0), jnp.int32(0)

    def step_env(self, key, state, action, params):
        t = state + 1
        return (t.astype(jnp.float32), t, jnp.array([1.0, 2.0]), t >= self.n, jnp.bool_(False),
                {"t": t})

    def observation_spec(self, params=None):
        return spaces.Box(0.0, 100.0, ())

    def action_spec(self, params=None):
        return spaces.Discrete(2)


def test_bandit_step_shapes_and_regret():
    env = BernoulliBandit(num_arms=4, means=[0.1, 0.2, 0.3, 0.9])
    params = env.default_params()
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    obs, state, r, term, trunc, info = env.step(jax.random.PRNGKey(1), state, 1, params)
    chex.assert_shape(r, ())
    assert not bool(term) and not bool(trunc)
    np.testing.assert_allclose(info["regret"], 0.7, rtol=1e-6)
    assert env.action_spec().n == 4


def test_agent_init_act_update():
    env = BernoulliBandit(num_arms=3)
    agent = EpsilonGreedy(epsilon=0.0)
    st = agent.init(jax.random.PRNGKey(0), env.observation_spec(), env.action_spec())
    chex.assert_shape(st.values, (3,))
    a, _, _ = agent.act(jax.random.PRNGKey(1), st, jnp.zeros(()))
    assert 0 <= int(a) < 3


def test_auto_reset_and_episode_statistics():
    env = EpisodeStatistics(ScalarizeReward(CountdownEnv(3), [1.0, 0.5]))
    obs, state = env.reset(jax.random.PRNGKey(0))
    returns = []
    for i in range(7):
        obs, state, r, term, trunc, info = env.step(jax.random.PRNGKey(i), state, 0)
        np.testing.assert_allclose(r, 2.0)  # 1·1 + 0.5·2
        assert float(info["reward/b"]) == 2.0
        if bool(info["episode_done"]):
            returns.append(float(info["episode_return"]))
            assert float(obs) == 0.0  # auto-reset observation
            assert float(info["final_observation"]) == 3.0
    assert returns == [6.0, 6.0]


def test_time_limit_truncates():
    env = TimeLimit(CountdownEnv(100), max_steps=2)
    _, state = env.reset(jax.random.PRNGKey(0))
    _, state, _, term, trunc, _ = env.step(jax.random.PRNGKey(0), state, 0)
    assert not bool(trunc)
    _, state, _, term, trunc, _ = env.step(jax.random.PRNGKey(0), state, 0)
    assert bool(trunc) and not bool(term)


def test_spaces():
    s = spaces.Slate(num_candidates=5, slate_size=3)
    x = s.sample(jax.random.PRNGKey(0))
    assert x.shape == (3,) and len(set(np.asarray(x).tolist())) == 3
    assert bool(s.contains(x))
    assert not bool(s.contains(jnp.array([0, 0, 1])))
    with pytest.raises(ConfigError, match="exceeds the number of candidates"):
        spaces.Slate(num_candidates=2, slate_size=3)
    d = spaces.Dict({"u": spaces.Box(-1.0, 1.0, (4,)), "i": spaces.Discrete(3)})
    assert bool(d.contains(d.sample(jax.random.PRNGKey(1))))


def test_scalarize_weight_count_error():
    with pytest.raises(ConfigError, match="ScalarizeReward.weights has 3 entries"):
        ScalarizeReward(CountdownEnv(), [1.0, 2.0, 3.0])
