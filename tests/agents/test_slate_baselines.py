"""Tests of the baseline slate policies (mtrlrec/agents/slate_baselines.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents.slate_baselines import FixedTopicSlate, OracleGreedySlate, RandomSlate
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.spaces import Discrete, Slate
from mtrlrec.core.wrappers import EpisodeStatistics
from mtrlrec.envs import choice
from mtrlrec.envs.slate import recsim_interest_evolution
from mtrlrec.runners.episodes import evaluate_episodes, summarize
from mtrlrec.train import loop


@pytest.fixture(scope="module")
def env():
    return recsim_interest_evolution(num_candidates=10, slate_size=3)


def _init(agent, env):
    params = env.default_params()
    agent.check_compatible(env.observation_spec(params), env.action_spec(params))
    return agent.init(jax.random.PRNGKey(0), env.observation_spec(params), env.action_spec(params))


def _obs():
    user = jnp.linspace(-1.0, 1.0, 20)
    topics = jnp.array([0, 19, 5, 12, 19, 3, 18, 7, 9, 1])
    return {"user": user, "doc": jax.nn.one_hot(topics, 20)}, np.asarray(user)[np.asarray(topics)]


def test_random_slates_are_distinct_and_uniform(env):
    agent = RandomSlate()
    state = _init(agent, env)
    obs, _ = _obs()
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    slates = np.asarray(jax.jit(jax.vmap(lambda k: agent.act(k, state, obs)[0]))(keys))
    assert slates.shape == (n, 3)
    assert all(len(set(s)) == 3 for s in slates[:200])
    # each candidate in each position with probability 1/10
    freq = np.stack([(slates[:, j, None] == np.arange(10)).mean(0) for j in range(3)])
    se = np.sqrt(0.1 * 0.9 / n)
    assert np.all(np.abs(freq - 0.1) < 5 * se)


def test_random_ordered_subsets_uniform():
    """All 4·3·2 = 24 ordered 3-subsets of 4 candidates are equally likely (5 SE)."""
    agent = RandomSlate()
    agent.check_compatible(None, Slate(4, 3))
    n = 24_000
    keys = jax.random.split(jax.random.PRNGKey(2), n)
    slates = np.asarray(jax.jit(jax.vmap(lambda k: agent.act(k, None, None)[0]))(keys))
    codes = slates[:, 0] * 16 + slates[:, 1] * 4 + slates[:, 2]
    values, counts = np.unique(codes, return_counts=True)
    assert len(values) == 24
    p = 1 / 24
    assert np.all(np.abs(counts / n - p) < 5 * np.sqrt(p * (1 - p) / n))


def test_oracle_takes_top_k_by_click_probability(env):
    agent = OracleGreedySlate()
    state = _init(agent, env)
    obs, scores = _obs()
    slate, _, info = agent.act(jax.random.PRNGKey(0), state, obs)
    # affinities: topic 19 (two candidates, u=1), topic 18 (u≈0.89)
    assert set(np.asarray(slate)[:2].tolist()) == {1, 4} and int(slate[2]) == 6
    p = np.asarray(info["click_prob"])
    np.testing.assert_allclose(p, (scores + 1) / (scores + 1 + 2), rtol=1e-5)
    assert np.all(np.diff(p[np.asarray(slate)]) <= 1e-6)  # decreasing order


def test_oracle_with_cascade_orders_by_position(env):
    agent = OracleGreedySlate(choice_model=choice.ExponentialCascade())
    state = _init(agent, env)
    obs, scores = _obs()
    slate, _, _ = agent.act(jax.random.PRNGKey(0), state, obs)
    assert np.all(np.diff(scores[np.asarray(slate)]) <= 1e-6)


def test_fixed_topic(env):
    agent = FixedTopicSlate(topic=19)
    state = _init(agent, env)
    obs, _ = _obs()
    slate, _, _ = agent.act(jax.random.PRNGKey(0), state, obs)
    assert set(np.asarray(slate)[:2].tolist()) == {1, 4}


def test_bad_input(env):
    params = env.default_params()
    with pytest.raises(ConfigError, match="FixedTopicSlate.topic=25 is out of range for 20"):
        FixedTopicSlate(topic=25).check_compatible(env.observation_spec(params),
                                                   env.action_spec(params))
    with pytest.raises(ConfigError, match="FixedTopicSlate.topic must be >= 0"):
        FixedTopicSlate(topic=-1)
    with pytest.raises(ConfigError, match="needs a Slate action space"):
        RandomSlate().check_compatible(env.observation_spec(params), Discrete(3))
    with pytest.raises(ConfigError, match="OracleGreedySlate.choice_model must be a ChoiceModel"):
        OracleGreedySlate(choice_model="proportional")


def test_oracle_beats_random_in_episodes(env):
    """Myopic oracle > random in mean episode return (SlateQ §7.1: MYOP > Random), 4 SE."""
    n = 400
    rnd = summarize(evaluate_episodes(env, RandomSlate(), num_users=n, seed=3))
    orc = summarize(evaluate_episodes(env, OracleGreedySlate(), num_users=n, seed=3))
    diff = orc["episode_return"][0] - rnd["episode_return"][0]
    se = np.hypot(orc["episode_return"][1], rnd["episode_return"][1])
    assert diff > 4 * se, (orc, rnd)
    assert orc["ctr"][0] > rnd["ctr"][0]


def test_random_slates_in_online_loop():
    env = recsim_interest_evolution(num_candidates=5, slate_size=2)
    out = loop.run(EpisodeStatistics(env), RandomSlate(), num_steps=400, num_seeds=2,
                   log_every=200)
    assert out.metrics["reward"].shape == (2, 2)
    assert np.all(out.metrics["cumulative_click"][:, -1] > 0)
    assert np.all(out.metrics["episodes"].sum(-1) >= 1)
