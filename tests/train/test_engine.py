"""The engine's contract: wrappers forward it, many users per learner, evaluation,
trials, swept learning rates and swept values checked like bindings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.agents.bandits import EpsilonGreedy, UCB1
from mtrlrec.agents.initial import SoftmaxWarmStart
from mtrlrec.agents.neural import NeuralEpsilonGreedy
from mtrlrec.core.agent import Agent, AgentState, PerUser
from mtrlrec.core.errors import ConfigError
from mtrlrec.core.wrappers import EpisodeStatistics, TimeLimit, Trials
from mtrlrec.envs.bandits import BanditTaskDistribution, BernoulliBandit
from mtrlrec.envs.contextual import LinearGaussianBandit
from mtrlrec.train import loop

from test_loop import ENV, KW, _PeriodicCounter


def test_wrapped_periodic_learner_learns_every_n_steps():
    # SoftmaxWarmStart forwards observe on every step and learn on the inner period only.
    wrapped = SoftmaxWarmStart(_PeriodicCounter(epsilon=0.1), num_steps=10)
    assert wrapped.learn_every == 5
    out = loop.run(ENV, wrapped, num_seeds=2, **KW)
    np.testing.assert_array_equal(np.asarray(out.carry.agent_state.inner[1]), [[200, 40]] * 2)


class _CountingUsers(Agent):
    """A batched toy learner: counts the users' rewards; acts with arm 0."""

    batched = True

    def init(self, key, obs_spec, action_spec):
        return AgentState(hparams={})

    def act(self, key, state, obs, *, greedy=False):
        return jnp.zeros(obs.shape[0], jnp.int32), state, {}


def test_users_are_a_batch_and_metrics_average_over_them():
    env = BernoulliBandit(num_arms=2, means=[0.25, 0.75])
    out = loop.run(env, _CountingUsers(), num_envs=64, num_seeds=2, num_steps=100, log_every=100)
    # arm 0 always: regret 0.5 per step, reward ~ 0.25 averaged over 64 users x 100 steps
    np.testing.assert_allclose(out.metrics["regret"], 0.5)
    assert abs(out.metrics["reward"].mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 12_800)
    assert jax.tree.leaves(out.carry.env_state)[0].shape[:2] == (2, 64)


def test_a_learner_built_for_another_batch_is_refused():
    class Sized(_CountingUsers):
        def __init__(self, num_envs=8):
            self.num_envs = num_envs

        def check_num_envs(self, num_envs):
            if num_envs != self.num_envs:
                raise ConfigError(f"Sized.num_envs={self.num_envs}, but the loop has {num_envs} "
                                  "users per learner.")

    env = BernoulliBandit(num_arms=2)
    with pytest.raises(ConfigError, match="Sized.num_envs=8, but the loop has 4"):
        loop.run(env, Sized(), num_envs=4, num_steps=10, log_every=10)
    out = loop.run(env, Sized(), num_envs=8, num_steps=10, log_every=10)
    assert out.metrics["regret"].shape == (1, 1)


def test_per_user_wrapper_shares_one_learner():
    env = BernoulliBandit(num_arms=3, means=[0.1, 0.5, 0.9])
    out = loop.run(env, UCB1(c=1.0), num_envs=8, num_seeds=1, num_steps=50, log_every=50)
    # every user's pull went into the one learner's counts: 8 users x 50 steps
    assert float(out.carry.agent_state.counts.sum()) == 400
    assert isinstance(PerUser(UCB1()).agent, UCB1)


def test_evaluation_phase_is_greedy_with_learning_off():
    env = BernoulliBandit(num_arms=5, means=[0.1, 0.3, 0.5, 0.7, 0.9])
    ev = loop.Evaluation(every=100, max_steps=50)
    out = loop.run(env, EpsilonGreedy(epsilon=0.5), num_seeds=3, num_steps=400, log_every=100,
                   evaluation=ev)
    np.testing.assert_array_equal(out.eval_steps, [100, 200, 300, 400])
    assert out.eval_metrics["eval/steps"].shape == (3, 4)
    np.testing.assert_array_equal(out.eval_metrics["eval/steps"], 50)
    # ε = 0.5 explores half the time in training; the greedy evaluation of its
    # estimates after 400 pulls is on the best arm far more often
    assert out.eval_metrics["eval/optimal_action"][:, -1].mean() > 0.9
    assert out.metrics["optimal_action"][:, -1].mean() < 0.7
    # learning is off: the training carry is what training left
    again = loop.run(env, EpsilonGreedy(epsilon=0.5), num_seeds=3, num_steps=400, log_every=100,
                     num_chunks=4)
    np.testing.assert_array_equal(out.carry.agent_state.counts, again.carry.agent_state.counts)


def test_episodic_evaluation_counts_episodes_per_user():
    env = EpisodeStatistics(TimeLimit(BernoulliBandit(num_arms=2, means=[0.2, 0.8]), 7))
    out = loop.run(env, EpsilonGreedy(0.1), num_seeds=2, num_envs=3, num_steps=0,
                   evaluation=loop.Evaluation(episodes=2))
    np.testing.assert_array_equal(out.eval_metrics["eval/episodes"], 2)
    np.testing.assert_array_equal(out.eval_metrics["eval/steps"], 14)
    np.testing.assert_array_equal(out.eval_metrics["eval/episode_length"], 7)


def test_evaluation_needs_a_greedy_mode():
    class NoGreedy(EpsilonGreedy):
        has_greedy = False

    with pytest.raises(ConfigError, match="no greedy"):
        loop.run(ENV, NoGreedy(0.1), num_steps=0, evaluation=loop.Evaluation(max_steps=5))


def test_trials_resample_the_task_and_reset_the_learner():
    tasks = BanditTaskDistribution(num_arms=3, kind="uniform")
    env = Trials(BernoulliBandit(num_arms=3), tasks, length=25)
    out = loop.run(env, UCB1(c=1.0), num_seeds=2, num_steps=100, log_every=25)
    # the learner forgot everything at the last trial end (step 100)
    np.testing.assert_array_equal(out.carry.agent_state.counts, 0)
    np.testing.assert_array_equal(out.carry.env_state.count, 0)
    means = out.carry.env_state.task.means
    assert means.shape == (2, 3) and len(np.unique(np.asarray(means))) == 6
    with pytest.raises(ConfigError, match="Trials.length"):
        Trials(BernoulliBandit(num_arms=3), tasks, length=0)


def test_learning_rate_sweep_is_one_call_and_matters():
    env = LinearGaussianBandit(num_arms=3, dim=2)
    agent = NeuralEpsilonGreedy(epsilon=0.1, hidden_sizes=(8,), train_every=10, train_steps=2,
                                batch_size=8, buffer_size=64, initial_pulls=1)
    out = loop.run(env, agent, num_seeds=2, num_steps=40, log_every=20,
                   hparams={"learning_rate": [1e-3, 3e-2]})
    loss = out.metrics["agent/loss"]
    assert loss.shape == (2, 2, 2) and np.all(loss > 0)
    assert not np.array_equal(loss[0], loss[1])
    # the same seeds (common random numbers) with a bigger step move the weights further
    init = loop.run(env, agent, num_seeds=2, num_steps=0, evaluation=loop.Evaluation(max_steps=1))
    pairs = list(zip(jax.tree.leaves(out.carry.agent_state.params),
                     jax.tree.leaves(init.carry.agent_state.params)))
    small = sum(np.abs(np.asarray(a[0]) - np.asarray(b)).sum() for a, b in pairs)
    large = sum(np.abs(np.asarray(a[1]) - np.asarray(b)).sum() for a, b in pairs)
    assert large > 5 * small > 0


@pytest.mark.parametrize("sweep, message", [
    ({"epsilon": [0.1, 1.5]}, r"hparams\['epsilon'\]\[1\] = 1.5: EpsilonGreedy.epsilon must be <= 1"),
    ({"epsilon": [0.1, float("nan")]}, r"\[1\] must be finite"),
    ({"env.means": [[0.1, 0.2, 0.3, 0.4, 1.5]]}, r"hparams\['env.means'\]\[0\]"),
    ({"env.nope": [1.0]}, "no parameter 'nope'"),
])
def test_swept_values_get_the_checks_of_a_binding(sweep, message):
    with pytest.raises(ConfigError, match=message):
        loop.run(ENV, EpsilonGreedy(0.1), hparams=sweep, **KW)


def test_step_counts_beyond_int32_are_refused():
    with pytest.raises(ConfigError, match="2\\^31 - 1"):
        loop.run(ENV, EpsilonGreedy(0.1), num_steps=2**31, log_every=2**31)


def test_large_vector_info_must_be_reduced_explicitly():
    class Noisy(BernoulliBandit):
        def step_env(self, key, state, action, params):
            out = super().step_env(key, state, action, params)
            return out[:5] + ({**out[5], "big": jnp.zeros(20)},)

    with pytest.raises(ConfigError, match=r"info\['big'\] with shape \(20,\)"):
        loop.run(Noisy(num_arms=2), EpsilonGreedy(0.1), num_steps=10, log_every=10)

    class Declared(Noisy):
        info_reductions = {"big": "mean"}

    out = loop.run(Declared(num_arms=2), EpsilonGreedy(0.1), num_steps=10, log_every=10)
    np.testing.assert_array_equal(out.metrics["big"], 0.0)


class _Diverging(EpsilonGreedy):
    """ε-greedy whose learn reports a loss that turns NaN for odd seeds after 120 steps."""

    def learn(self, key, state):
        nan_now = (state.t > 120) & (state.hparams.epsilon > 0.15)
        return state, {"loss": jnp.where(nan_now, jnp.nan, 1.0)}


def test_divergence_stops_the_run_naming_seeds_and_step():
    saved = []
    with pytest.raises(loop.Diverged, match=r"'agent/loss' became NaN in the window ending at "
                                            r"step 140 for seed\(s\) 0"):
        # sweep point ε = 0.2 diverges; seeds are numbered within it
        loop.run(ENV, _Diverging(0.1), num_seeds=1, num_steps=200, log_every=20, num_chunks=5,
                 on_chunk=lambda c, n, o: saved.append(int(o.steps[-1])),
                 hparams={"epsilon": [0.1, 0.2]})
    # the chunks before the diverged one were handed on (logged, checkpointed); not that one
    assert saved == [40, 80, 120]


def test_ctrl_c_stops_within_a_slice_and_resumes_exactly():
    import os
    import signal
    import threading

    # about a second of work, cut into calls of ~20 ms; Ctrl-C a third of the way in
    kw = dict(num_seeds=4, num_steps=2_000_000, log_every=2_000, num_chunks=2,
              slice_seconds=0.02)
    agent = EpsilonGreedy(0.1)  # one instance: the second run reuses the compiled program
    full = loop.run(ENV, agent, **kw)
    partial = {}
    timer = threading.Timer(full.seconds / 3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(loop.Interrupted):
        loop.run(ENV, agent, on_interrupt=lambda o: partial.update(out=o), **kw)
    timer.cancel()
    out = partial["out"]
    done = len(out.steps)
    assert 0 < done < 1000  # stopped inside the run (of 1,000 windows), not at its end
    from flax import serialization
    import jax

    resumed = loop.run(ENV, agent, resume=loop.LoopResume(
        serialization.to_state_dict(jax.device_get(out.carry)), out.metrics, done), **kw)
    for k in full.metrics:
        np.testing.assert_array_equal(resumed.metrics[k], full.metrics[k])
