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


# ---- contextual replay (rejection form) ---------------------------------------

import flax.struct  # noqa: E402

from mtrlrec.agents.linear import LinUCB  # noqa: E402
from mtrlrec.core.agent import Agent, AgentState  # noqa: E402
from mtrlrec.core.types import Transition  # noqa: E402
from mtrlrec.envs.logged import (  # noqa: E402
    ContextualReplayBandit, OBDContextualReplayBandit)
from mtrlrec.agents.replay import ReplayAgent

TYPE_P = np.array([0.5, 0.3, 0.2])
MU_CTX = np.array([[0.1, 0.2, 0.6, 0.3], [0.7, 0.1, 0.2, 0.2], [0.2, 0.3, 0.1, 0.5]])
TABLE = np.array([2, 0, 3])  # the evaluated policy: user type -> action
N_CTX, S_CTX = 2000, 100


class TablePolicy(Agent):
    """A fixed contextual policy: action = TABLE[type], type = argmax of the one-hot context."""

    def init(self, key, obs_spec, action_spec):
        return AgentState(hparams={})

    def act(self, key, state, obs, *, greedy=False):
        return jnp.asarray(TABLE)[jnp.argmax(obs)], state, {}


def contextual_logs(key):
    kt, ka, kr = jax.random.split(key, 3)
    types = jax.random.categorical(kt, jnp.log(TYPE_P), shape=(S_CTX, N_CTX))
    actions = jax.random.randint(ka, (S_CTX, N_CTX), 0, 4)
    rewards = jax.random.bernoulli(kr, jnp.asarray(MU_CTX)[types, actions]).astype(jnp.float32)
    return jax.nn.one_hot(types, 3), actions, rewards


def test_contextual_replay_is_unbiased_for_a_fixed_policy():
    x, a, r = contextual_logs(jax.random.key(5))
    env = ContextualReplayBandit(np.asarray(x[0]), np.asarray(a[0]), np.asarray(r[0]), 4)
    from mtrlrec.envs.logged import ContextualReplayParams
    params = ContextualReplayParams(contexts=x, actions=a.astype(jnp.int32), rewards=r)
    out = loop.run(env, ReplayAgent(TablePolicy()), num_steps=N_CTX, num_seeds=S_CTX,
                   env_params=params, env_params_per_seed=True, log_every=N_CTX, seed=0)
    value = (np.asarray(out.metrics["cumulative_reward"])[:, -1]
             / np.asarray(out.metrics["cumulative_accepted"])[:, -1])
    truth = float(np.sum(TYPE_P * MU_CTX[np.arange(3), TABLE]))  # 0.56
    se = value.std(ddof=1) / np.sqrt(S_CTX)
    assert abs(value.mean() - truth) < 4 * se, (value.mean(), truth, se)
    accepted = np.asarray(out.metrics["cumulative_accepted"])[:, -1]
    assert abs(accepted.mean() - N_CTX / 4) < 4 * accepted.std(ddof=1) / np.sqrt(S_CTX) + 1
    assert float(np.asarray(out.metrics["cumulative_exhausted"]).max()) == 0.0


def test_replay_agent_learns_only_from_accepted_steps():
    env = ContextualReplayBandit(np.eye(2, dtype=np.float32)[[0, 1, 0, 1]], np.array([0, 0, 1, 1]),
                                 np.array([1.0, 0.0, 1.0, 0.0]), 2, random_start=False)
    agent = ReplayAgent(LinUCB(alpha=0.0))
    params = env.default_params()
    obs, s_env = env.reset(jax.random.key(0), params)
    state = agent.init(jax.random.key(0), env.observation_spec(), env.action_spec())
    for step, action in enumerate([1, 0, 1, 0]):  # accepted at steps 1 and 2 only
        nobs, s_env, r, term, trunc, info = env.step(jax.random.key(1), s_env, jnp.int32(action), params)
        tr = Transition(obs, jnp.int32(action), r, nobs, term, trunc, {}, info)
        new_state = agent.observe(jax.random.key(2), state, tr)
        changed = any(not np.array_equal(u, v) for u, v in
                      zip(jax.tree.leaves(new_state), jax.tree.leaves(state)))
        assert changed == (step in (1, 2)), step
        state, obs = new_state, nobs


def test_linucb_runs_on_obd_contextual_replay():
    env = OBDContextualReplayBandit(campaign="men", position=0)
    assert env.context_dim == 21
    out = loop.run(env, ReplayAgent(LinUCB(alpha=0.5)), num_steps=340, num_seeds=2, log_every=340)
    acc = np.asarray(out.metrics["cumulative_accepted"])[:, -1]
    assert np.all((acc >= 1) & (acc <= 40))  # about 340 / 34 = 10 accepted events


def test_replay_agent_bad_input():
    with pytest.raises(ConfigError, match="ReplayAgent.agent must be an agent"):
        ReplayAgent("LinUCB")
    with pytest.raises(ConfigError, match="contexts must be"):
        ContextualReplayBandit(np.zeros((3, 2)), np.array([0, 1]), np.array([0.0, 1.0]), 2)
