"""RL² (mtrlrec/agents/rl2.py), its inputs (envs/meta.py), the table's summary
(runners/meta.py) and the bandit options the RL² table needs (agents/bandits.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec import experiment as experiment_lib
from mtrlrec.agents.bandits import UCB1, EpsilonGreedy, ThompsonSampling
from mtrlrec.agents.rl2 import RL2
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.types import Transition
from mtrlrec.core.wrappers import Trials
from mtrlrec.envs.bandits import BanditTaskDistribution, BernoulliBandit
from mtrlrec.envs.meta import RL2Inputs
from mtrlrec.eval import bayes_optimal
from mtrlrec.models.recurrent import unroll
from mtrlrec.train.result import RunContext


def _env(k=3, n=4):
    return Trials(RL2Inputs(BernoulliBandit(num_arms=k)), BanditTaskDistribution(num_arms=k), n)


def test_rl2_inputs_previous_action_reward_and_reset_at_trial_end():
    env = _env(k=3, n=2)
    obs, state = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(obs, np.zeros(1 + 3 + 2))  # [o, onehot(a), r, done]
    obs, state, r, *_ , info = env.step(jax.random.PRNGKey(1), state, 2)
    assert not info["trial_done"]
    np.testing.assert_array_equal(obs[1:4], [0, 0, 1])
    assert obs[4] == r and obs[5] == 0
    obs, state, r, *_, info = env.step(jax.random.PRNGKey(2), state, 0)
    assert info["trial_done"]
    np.testing.assert_array_equal(obs, np.zeros(6))  # a new task starts from nothing


def _rollout(agent, env, num_envs, steps, key):
    """Acts, observes and resets trials as the engine does; returns the agent state."""
    agent.check_num_envs(num_envs)
    params = env.default_params()
    k_env, k_agent, key = jax.random.split(key, 3)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(k_env, num_envs), params)
    state = agent.init(k_agent, env.observation_spec(params), env.action_spec(params))

    @jax.jit
    def one(carry, key):
        state, obs, env_state = carry
        k_act, k_step = jax.random.split(key)
        action, state, act_info = agent.act(k_act, state, obs)
        nobs, env_state, reward, term, trunc, info = jax.vmap(
            env.step, in_axes=(0, 0, 0, None))(jax.random.split(k_step, num_envs), env_state,
                                                 action, params)
        state = agent.observe(k_act, state, Transition(obs, action, reward, nobs, term, trunc,
                                                       act_info, info))
        state = agent.reset_trial(k_act, state, info["trial_done"])
        return (state, nobs, env_state), None

    (state, _, _), _ = jax.lax.scan(one, (state, obs, env_state), jax.random.split(key, steps))
    return state


def test_learn_reruns_the_rollout_as_acted_and_reset_keeps_params():
    env = _env(k=3, n=3)
    agent = RL2(hidden_size=8, rollout_length=5, learning_rate=1e-2)
    state = _rollout(agent, env, num_envs=4, steps=5, key=jax.random.PRNGKey(3))
    ro = state.rollout
    assert bool(ro.resets[2].all()) and not bool(ro.resets[4].any())  # a trial ended at t = 2
    # Re-running the GRU from the stored start state, with the trial resets, gives the
    # log-probabilities the actions were sampled with (BPTT sees what acting saw).
    logits, _, h_last = unroll(agent.network(3), state.params, ro.h0, ro.xs, ro.resets)
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), ro.actions[..., None], -1)[..., 0]
    np.testing.assert_allclose(logp, ro.logp, atol=1e-5)
    np.testing.assert_allclose(h_last, state.h, atol=1e-5)
    new, metrics = agent.learn(jax.random.PRNGKey(0), state)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["ratio"]) == pytest.approx(1.0)
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.any(a != b), new.params, state.params))
    assert any(bool(c) for c in changed)
    # A new task: hidden state of the masked users zeroed, parameters untouched.
    mask = jnp.array([True, False, True, False])
    h = new.h.at[:].set(1.0)
    reset = agent.reset_trial(jax.random.PRNGKey(0), new.replace(h=h), mask)
    np.testing.assert_array_equal(reset.h[:, 0], [0.0, 1.0, 0.0, 1.0])
    assert jax.tree.all(jax.tree.map(lambda a, b: jnp.array_equal(a, b), reset.params,
                                     new.params))


@pytest.mark.parametrize("binding,match", [
    ("RL2.learning_rate = 0.0", "RL2.learning_rate"),
    ("RL2.gamma = 1.5", "RL2.gamma"),
    ("RL2.lam = -0.1", "RL2.lam"),
    ("Trials.length = 0", "Trials.length"),
    ("BanditTaskDistribution.b = -1.0", "BanditTaskDistribution.b"),
    ("OnlineRunner.wrappers = []", "RL2Inputs"),
])
def test_bad_input_is_refused_before_compilation(binding, match):
    with pytest.raises(ConfigError, match=match):
        exp = experiment_lib.build(["experiments/meta/rl2.gin"],
                                   [binding, "TRAIN_STEPS = 20", "LOG_EVERY = 20",
                                    "EVAL_EVERY = 20", "ROLLOUT = 20"])
        exp.runner(RunContext(num_seeds=1, seed=0, run_dir=None, progress=False))


def test_rl2_evaluates_on_its_own_number_of_users():
    agent = RL2(hidden_size=4, rollout_length=2)
    env = _env(k=2, n=2)
    state = _rollout(agent, env, num_envs=2, steps=1, key=jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="eval_users"):
        agent.act(jax.random.PRNGKey(0), state, jnp.zeros((3, 5)))


def test_pseudo_counts_start_every_arm_at_one_success_in_two():
    env = BernoulliBandit(num_arms=3)
    p = env.default_params()
    for agent in (UCB1(c=0.3, pseudo_successes=1.0, pseudo_pulls=2),
                  EpsilonGreedy(epsilon=0.0, pseudo_successes=1.0, pseudo_pulls=2)):
        s = agent.init(jax.random.PRNGKey(0), env.observation_spec(p), env.action_spec(p))
        np.testing.assert_array_equal(s.counts, [2, 2, 2])
        np.testing.assert_allclose(s.values, [0.5, 0.5, 0.5])
        tr = Transition(0.0, jnp.int32(1), jnp.float32(0.0), 0.0, False, False, {}, {})
        s = agent.observe(jax.random.PRNGKey(0), s, tr)
        np.testing.assert_allclose(s.values, [0.5, 1 / 3, 0.5], rtol=1e-6)  # (1 + 0) / 3
    with pytest.raises(ConfigError, match="UCB1.pseudo_successes"):
        UCB1(pseudo_successes=3.0, pseudo_pulls=2)


def test_optimistic_ts_prefers_the_posterior_mode():
    env = BernoulliBandit(num_arms=2)
    p = env.default_params()
    picks = {}
    for m in (1, 20):
        agent = ThompsonSampling(optimistic_samples=m)
        s = agent.init(jax.random.PRNGKey(0), env.observation_spec(p), env.action_spec(p))
        s = s.replace(alpha=jnp.array([3.0, 2.0]), beta=jnp.array([2.0, 3.0]))
        keys = jax.random.split(jax.random.PRNGKey(1), 2000)
        a = jax.jit(jax.vmap(lambda k: agent.act(k, s, None)[0]))(keys)
        picks[m] = float(jnp.mean(a == 0))
    # TS plays arm 0 with P(θ0 > θ1) ≈ 0.76; the highest-density of 20 draws is near the
    # mode (2/3, 1/3) and plays it almost always.
    assert 0.70 < picks[1] < 0.82 and picks[20] > picks[1] + 0.1
    with pytest.raises(ConfigError, match="num_samples"):
        ThompsonSampling(optimistic_samples=4).check_hparam("num_samples", 5.0)


def test_summary_of_baselines_against_the_bayes_optimal_value(tmp_path):
    exp = experiment_lib.build(["experiments/meta/ucb1.gin"],
                               ["ARMS = 2", "PULLS = 4", "Experiment.num_seeds = 400"])
    result = exp.runner(RunContext(num_seeds=400, seed=0, run_dir=None, progress=False))
    tot = result.final["total_reward"]
    v = bayes_optimal.bayes_optimal_value(2, 4)
    assert tot.shape == (400,)
    np.testing.assert_allclose(result.final["bayes_optimal"], v)
    se = tot.std(ddof=1) / np.sqrt(tot.size)
    assert tot.mean() < v + 4 * se  # nothing beats the Bayes-optimal policy
    assert 0.0 <= result.final["tuned/c"][0] <= 1.5
