"""Replay of logged feedback: agrees with on-policy simulation on synthetic uniform logs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents.bandits import EpsilonGreedy
from mtrlrec.core.errors import ConfigError
from mtrlrec.envs.bandits import BernoulliBandit
from mtrlrec.envs.logged import OBDReplayBandit, ReplayBandit, replay_params
from mtrlrec.train import loop

MEANS = (0.2, 0.4, 0.6, 0.5)
K, N_EVENTS, N_SEEDS, T = 4, 4000, 200, 400


def test_replay_returns_each_arms_rewards_in_log_order_by_hand():
    env = ReplayBandit(np.array([1, 0, 1, 1, 0]), np.array([1.0, 0.0, 0.0, 1.0, 1.0]), num_actions=3)
    params = env.default_params()
    np.testing.assert_array_equal(params.counts, [2, 3, 0])
    np.testing.assert_allclose(params.means, [0.5, 2 / 3, 0.0], rtol=1e-6)
    _, s = env.reset(jax.random.key(0), params)
    got = []
    for a in (1, 1, 0, 1, 1, 2):
        _, s, r, _, _, info = env.step(jax.random.key(0), s, a, params)
        got.append((float(r), float(info["exhausted"])))
    # arm 1 stream: 1, 0, 1 then wraps; arm 2 was never logged
    assert got == [(1, 0), (0, 0), (0, 0), (1, 0), (1, 1), (0, 1)]


def synthetic_logs(key):
    """One uniformly logged Bernoulli bandit log per seed: [S, n] actions and rewards."""
    ka, kr = jax.random.split(key)
    actions = jax.random.randint(ka, (N_SEEDS, N_EVENTS), 0, K)
    rewards = jax.random.bernoulli(kr, jnp.asarray(MEANS)[actions]).astype(jnp.float32)
    return np.asarray(actions), np.asarray(rewards)


@pytest.fixture(scope="module")
def replay_vs_online():
    actions, rewards = synthetic_logs(jax.random.key(42))
    per_seed = [replay_params(a, r, K) for a, r in zip(actions, rewards)]
    params = jax.tree.map(lambda *x: jnp.stack(x), *per_seed)
    env = ReplayBandit(actions[0], rewards[0], K)
    agent = EpsilonGreedy(epsilon=0.1)
    replay = loop.run(env, agent, num_steps=T, num_seeds=N_SEEDS, env_params=params,
                      env_params_per_seed=True, log_every=T, seed=1)
    online = loop.run(BernoulliBandit(num_arms=K, means=MEANS), agent, num_steps=T,
                      num_seeds=N_SEEDS, log_every=T, seed=2)
    return replay, online


def test_replay_agrees_with_online_simulation(replay_vs_online):
    replay, online = replay_vs_online
    a = np.asarray(replay.metrics["cumulative_reward"])[:, -1]
    b = np.asarray(online.metrics["cumulative_reward"])[:, -1]
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    # ... and the check can fail: a greedy-free uniform policy would earn 0.425 T
    assert abs(a.mean() - 0.425 * T) > 4 * se
    assert float(np.asarray(replay.metrics["cumulative_exhausted"]).max()) == 0.0


def test_obd_replay_builds_from_the_committed_sample():
    env = OBDReplayBandit(campaign="men", position=0)
    p = env.default_params()
    assert env.num_actions == 34 and int(p.counts.sum()) == env.num_events
    assert 3000 < env.num_events < 3700  # about a third of the 10,000 rows


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ReplayBandit(np.array([0, 5]), np.array([1.0, 0.0]), 3), "row 1: action 5 outside"),
        (lambda: ReplayBandit(np.array([0, 1]), np.array([1.0]), 3), "equal length"),
        (lambda: ReplayBandit(np.array([0, 1]), np.array([1.0, np.nan]), 3), "row 1: reward must be finite"),
        (lambda: OBDReplayBandit(position=3), "OBDReplayBandit.position"),
        (lambda: OBDReplayBandit(campaign="kids"), "campaign must be one of"),
    ],
)
def test_bad_input(make, match):
    with pytest.raises(ConfigError, match=match):
        make()
